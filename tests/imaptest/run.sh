#!/usr/bin/env bash
# IMAP compliance and stress check with Dovecot's imaptest against any IMAP server (mailfleet, or
# Dovecot itself as the reference).
#
#   bash tests/imaptest/run.sh --host 127.0.0.1 --port 10143 --user 'user%d@example.test' --pass secret
#   bash tests/imaptest/run.sh --dovecot           # against a throwaway Dovecot (tests/imaptest/dovecot.sh)
#
# Options (environment variable in brackets):
#   --host H [IMAP_HOST, default 127.0.0.1]   --port P [IMAP_PORT, default 143]
#   --user T [IMAP_USER, default user%d@example.test]: account template; %d is the account number.
#        The scripted tests log in as T with %d=1 and (second user) %d=2; the stress run uses
#        accounts 1..--users. So the server needs accounts user1..user5 with the one password.
#        A name without %d is used as-is by every client (the tests then need --user2).
#   --user2 NAME [IMAP_USER2]  second account of the scripted tests (default: T with %d=2)
#   --pass P [IMAP_PASS, default secret]
#   --tls      implicit TLS (port 993+offset), certificate not checked (imaptest's ssl=any-cert)
#   --users N [5]  --clients N [10]  --secs N [10]  --messages N [300]   stress parameters
#   --only-tests | --only-stress       run one part
#   --dovecot  start tests/imaptest/dovecot.sh (accounts from --user/--pass) and test it
#   --mailfleet  build (cargo build --release -p mailfleet; MF_BIN=PATH skips it) and start
#        `mailfleet up --port-offset $MF_OFFSET` (default 23000) with accounts from --user/--pass,
#        as tests/imaptest/servers.sh does, and test its IMAP port (143 + offset); exit 2 with
#        "mailfleet IMAP not available" while mailfleet has no IMAP listener
#   --out DIR  keep imaptest's full output there (default: a temp dir, removed)
#
# Builds imaptest once with ../shared/tools/imaptest/build.sh into target/imaptest (IMAPTEST_DIR
# overrides; about a minute on 2 cores the first time, installs dovecot-dev & co. from Debian).
# Part (a): every scripted test group shipped with imaptest (test=DIR: ~110 files, 71 groups;
# groups whose capability the server does not advertise count as skipped). Part (b): a stress run
# (users=5 clients=10 secs=10, APPENDs taken from a 300-message mbox made by gen_mbox.py).
# Exit status: 0 if no scripted group failed and the stress run reported no error; 1 otherwise;
# 2 if nothing listens on HOST:PORT or imaptest could not run.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

HOST=${IMAP_HOST:-127.0.0.1}
PORT=${IMAP_PORT:-143}
USER_TMPL=${IMAP_USER:-user%d@example.test}
USER2=${IMAP_USER2:-}
PASS=${IMAP_PASS:-secret}
TLS=
USERS=5
CLIENTS=10
SECS=10
MESSAGES=300
DO_TESTS=1
DO_STRESS=1
DOVECOT=
MAILFLEET=
OUT=
while [ $# -gt 0 ]; do
    case $1 in
        --host) HOST=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --user) USER_TMPL=$2; shift 2 ;;
        --user2) USER2=$2; shift 2 ;;
        --pass) PASS=$2; shift 2 ;;
        --tls) TLS=1; shift ;;
        --users) USERS=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --secs) SECS=$2; shift 2 ;;
        --messages) MESSAGES=$2; shift 2 ;;
        --only-tests) DO_STRESS=; shift ;;
        --only-stress) DO_TESTS=; shift ;;
        --dovecot) DOVECOT=1; shift ;;
        --mailfleet) MAILFLEET=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

WORK=$(mktemp -d /var/tmp/mailfleet-imaptest.XXXXXX)
chmod 755 "$WORK"
DC_PID=
PIDS=()
cleanup() {
    if [ -n "$DC_PID" ]; then kill "$DC_PID" 2>/dev/null || true; wait "$DC_PID" 2>/dev/null || true; fi
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ -n "$OUT" ]; then mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd); else OUT=$WORK; fi

t0=$SECONDS
IT=$(bash "$ROOT/../shared/tools/imaptest/build.sh" "${IMAPTEST_DIR:-$ROOT/target/imaptest}")
TESTS_DIR=$(dirname "$IT")/tests
echo "imaptest: $IT (ready in $((SECONDS - t0))s)"

if [ -n "$DOVECOT" ]; then
    bash "$HERE/dovecot.sh" --user "$USER_TMPL" --pass "$PASS" --users "$USERS" >"$WORK/dovecot.port" 2>"$WORK/dovecot.err" &
    DC_PID=$!
    until [ -s "$WORK/dovecot.port" ]; do
        kill -0 "$DC_PID" 2>/dev/null || { cat "$WORK/dovecot.err" >&2; exit 2; }
        sleep 0.1
    done
    HOST=127.0.0.1
    PORT=$(head -n1 "$WORK/dovecot.port")
    TLS=
    echo "server: throwaway $(/usr/sbin/dovecot --version | cut -d' ' -f1 | sed 's/^/Dovecot /') on $HOST:$PORT"
fi

if [ -n "$MAILFLEET" ]; then
    NUSERS=$USERS
    # shellcheck source=servers.sh
    . "$HERE/servers.sh"
    mf_build || exit 2
    mf_start "$WORK/mf" || exit 2
    HOST=127.0.0.1
    PORT=$MF_IMAP_PORT
    TLS=
    echo "server: mailfleet up ($MF_BIN) on $HOST:$PORT"
fi

if ! python3 -c "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3).close()" "$HOST" "$PORT" 2>/dev/null; then
    echo "run.sh: nothing listens on $HOST:$PORT" >&2
    exit 2
fi

conn=(host="$HOST" port="$PORT" pass="$PASS")
[ -n "$TLS" ] && conn+=(ssl=any-cert)
status=0
summary=()

if [ -n "$DO_TESTS" ]; then
    u1=${USER_TMPL//%d/1}
    u2=${USER2:-${USER_TMPL//%d/2}}
    echo "== scripted tests: $TESTS_DIR as $u1 and $u2 on $HOST:$PORT${TLS:+ (TLS)}"
    t=$SECONDS
    # imaptest exits non-zero when a test fails; the summary lines are what count.
    timeout 900 "$IT" "${conn[@]}" user="$u1" user2="$u2" test="$TESTS_DIR" >"$OUT/tests.out" 2>&1 || true
    rep=$(python3 "$HERE/imaptest_report.py" tests "$OUT/tests.out")
    read -r complete groups passed failed skipped bf bt ef et fgroups < <(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print(int(r["complete"]), r["groups"], r["passed"], r["failed"], r["skipped"], r["base_failed"],
      r["base_total"], r["ext_failed"], r["ext_total"], ",".join(r["failed_groups"]) or "-")' "$rep")
    grep -E '^\*\*\* Test' "$OUT/tests.out" | head -n 40 || true
    if [ "$complete" != 1 ]; then
        echo "imaptest did not finish the scripted tests; last lines:"; tail -n 20 "$OUT/tests.out"
        summary+=("scripted tests: INCOMPLETE (imaptest died or timed out)")
        status=1
    else
        summary+=("scripted tests: $passed/$groups groups passed, $failed failed, $skipped skipped (capability not advertised) [$((SECONDS - t))s]")
        summary+=("  failed commands: base protocol $bf/$bt, extensions $ef/$et")
        [ "$failed" -gt 0 ] && { summary+=("  failed groups: $fgroups"); status=1; }
    fi
fi

if [ -n "$DO_STRESS" ]; then
    MBOX=$WORK/stress-$MESSAGES.mbox
    python3 "$HERE/gen_mbox.py" mbox "$MBOX" "$MESSAGES"
    echo "== stress: user=$USER_TMPL users=$USERS clients=$CLIENTS secs=$SECS mbox=$MESSAGES messages on $HOST:$PORT${TLS:+ (TLS)}"
    timeout $((SECS + 90)) "$IT" "${conn[@]}" user="$USER_TMPL" users="$USERS" clients="$CLIENTS" secs="$SECS" \
        mbox="$MBOX" >"$OUT/stress.out" 2>&1 || echo "(imaptest exited with status $?)"
    rep=$(python3 "$HERE/imaptest_report.py" stress "$OUT/stress.out" "$SECS")
    python3 - "$rep" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
if r["totals"]:
    names = list(r["totals"])
    print("command " + " ".join(f"{n:>7}" for n in names))
    print("total   " + " ".join(f"{r['totals'][n]:>7}" for n in names))
    print("per sec " + " ".join(f"{r['rates'][n]:>7.1f}" for n in names))
if r["errors"]:
    print(f"stress errors by kind ({r['errors']} in all; first lines in stress.out):")
for n, k in r["error_kinds"]:
    print(f"  {n:6d}  {k}")
EOF
    read -r complete errors logins < <(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print(int(r["complete"]), r["errors"], r["totals"].get("Logi", 0))' "$rep")
    if [ "$complete" != 1 ]; then
        echo "imaptest did not finish the stress run; last lines:"; tail -n 20 "$OUT/stress.out"
        summary+=("stress: INCOMPLETE (no Totals from imaptest)")
        status=1
    elif [ "$logins" -eq 0 ]; then
        summary+=("stress: no successful LOGIN; $errors errors")
        status=1
    else
        summary+=("stress: $errors errors; $logins logins in ${SECS}s ($CLIENTS clients, $USERS users)")
        [ "$errors" -gt 0 ] && status=1
    fi
fi

echo "== summary ($HOST:$PORT${TLS:+, TLS})"
for l in "${summary[@]}"; do echo "$l"; done
[ "$OUT" != "$WORK" ] && echo "(full imaptest output in $OUT)"
echo "result: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
