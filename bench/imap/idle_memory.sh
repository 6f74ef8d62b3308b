#!/usr/bin/env bash
# Idle-connection memory: N IMAP sessions (logged in, INBOX selected, in IDLE) held open on one
# mailfleet node and on Dovecot, each without and with TLS, each on a freshly started server, on
# loopback. Prints one table: server, plain/TLS, sessions held, RSS and PSS of the server (Dovecot:
# summed over its master and every child process, one `imap` process per session), KiB per
# session (growth over the idle server's figure), and mailfleet's verdict against the 300 MB limit
# (300,000,000 bytes of RSS at the full count; issue 12 §5).
#
#   bench/imap/idle_memory.sh [--connections 10000] [--dovecot-connections N] [--modes "plain tls"]
#                             [--servers "mailfleet dovecot"] [--sources 1] [--timeout 600]
#                             [--min-available-mib 8192]
#   MF_BIN=/path/to/mailfleet MF_OFFSET=24000 bench/imap/idle_memory.sh
#
#   --connections          sessions per run (default 10000)
#   --dovecot-connections  Dovecot's count when it should be lower: each Dovecot session is a
#                          process of its own (default: --connections)
#   --sources K            open the sessions from 127.0.0.1 .. 127.0.0.K (for when one source
#                          address's ephemeral ports run short)
#   --timeout              seconds each run may take to open its sessions (default 600)
#   --min-available-mib    no more sessions are opened once the machine's MemAvailable is under
#                          this (default 8192), nor once fewer than 4096 process ids are free; the
#                          run's figures are then for the sessions held, and the table says so
#
# mailfleet: one `mailfleet node` (MF_MODE=node, as run.sh and bigbox.sh), MF_BIN (or a cargo
# build), port_offset MF_OFFSET (IMAP 143 + offset, IMAPS 993 + offset with the node's self-signed
# certificate), accounts user1..user5@example.test, imap.max_connections and
# imap.max_connections_per_ip raised above the count. Dovecot: tests/imaptest/dovecot.sh (--tls:
# an IMAPS listener with an openssl self-signed certificate; --sessions: its process and client
# limits above the count; imap-login in high-performance mode, so TLS sessions are proxied by one
# login process per core rather than one each). Both started through tests/imaptest/servers.sh.
# The open-file limit is raised for the client and the servers (as root, the hard limit too).
set -euo pipefail

CONNS=10000
DC_CONNS=
MODES="plain tls"
SERVERS="mailfleet dovecot"
SOURCES=1
TIMEOUT=600
MIN_AVAIL=8192
while [ $# -gt 0 ]; do
    case $1 in
        --connections) CONNS=$2; shift 2 ;;
        --dovecot-connections) DC_CONNS=$2; shift 2 ;;
        --modes) MODES=$2; shift 2 ;;
        --servers) SERVERS=$2; shift 2 ;;
        --sources) SOURCES=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --min-available-mib) MIN_AVAIL=$2; shift 2 ;;
        -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
DC_CONNS=${DC_CONNS:-$CONNS}
for v in "$CONNS" "$DC_CONNS" "$SOURCES" "$TIMEOUT" "$MIN_AVAIL"; do
    case $v in '' | *[!0-9]*) echo "not a number: '$v'" >&2; exit 2 ;; esac
done

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /var/tmp/mailfleet-imap-idle.XXXXXX)
chmod 755 "$WORK"
USER_TMPL='user%d@example.test'
PASS=secret
NUSERS=5
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export MF_MODE=${MF_MODE:-node}
MAX=$((CONNS > DC_CONNS ? CONNS : DC_CONNS))
export MF_SETTINGS="imap.max_connections $((MAX + 100)),imap.max_connections_per_ip $((MAX + 100))"
# shellcheck source=../../tests/imaptest/servers.sh
. "$ROOT/tests/imaptest/servers.sh"

# Open files, per process: the client and mailfleet hold one per session; Dovecot's imap
# processes one each, its login processes two per TLS session (the client's and the one to its
# imap process) for at most client_limit (1000) sessions each.
want=$((MAX + 1024))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$want" ]; then
    ulimit -Hn "$want" 2>/dev/null || { echo "cannot raise the open-file limit to $want (hard limit $(ulimit -Hn))" >&2; exit 1; }
fi
[ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt "$want" ] && ulimit -Sn "$want"

CLIENT=$ROOT/bench/imap/idle_memory.py
# client PORT PID LABEL COUNT JSON [extra client args...]
client() {
    local port=$1 pid=$2 label=$3 count=$4 json=$5
    shift 5
    python3 "$CLIENT" --port "$port" --pid "$pid" --label "$label" --connections "$count" \
        --user "$USER_TMPL" --users "$NUSERS" --pass "$PASS" --sources "$SOURCES" \
        --timeout "$TIMEOUT" --min-available-mib "$MIN_AVAIL" --json "$json" "$@" >&2 \
        || echo "$label: the client reported no session held" >&2
}

echo "idle IMAP sessions: $CONNS (Dovecot: $DC_CONNS), modes: $MODES; scripts at" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); MF_BIN=${MF_BIN:-(cargo build)}" >&2
echo "start: $(date -u '+%F %T UTC'); $(uptime)" >&2
runs=()
for server in $SERVERS; do
    for mode in $MODES; do
        tls=()
        [ "$mode" = tls ] && tls=(--tls)
        json=$WORK/$server-$mode.json
        runs+=("$json")
        case $server in
            mailfleet)
                if ! mf_build || ! mf_start "$WORK/mf"; then
                    echo "mailfleet: not started; skipping its $mode run" >&2
                    continue
                fi
                port=$MF_IMAP_PORT
                if [ "$mode" = tls ]; then
                    port=$((993 + MF_OFFSET))
                    for _ in $(seq 1 50); do port_open "$port" && break; sleep 0.1; done
                fi
                client "$port" "$MF_PID" mailfleet "$CONNS" "$json" "${tls[@]}"
                mf_stop
                rm -rf "$WORK/mf"
                ;;
            dovecot)
                if ! dc_start "" --sessions $((DC_CONNS + 100)) "${tls[@]}"; then
                    echo "dovecot: not started; skipping its $mode run" >&2
                    continue
                fi
                port=$DC_PORT
                [ "$mode" = tls ] && port=$(sed -n 2p "$WORK/dc.port")
                # Measure Dovecot's master and its children, not dovecot.sh's shell around it.
                master=$(pgrep -P "$DC_PID" -x dovecot | head -n1)
                [ -n "$master" ] || { echo "dovecot: master process not found" >&2; exit 1; }
                client "$port" "$master" dovecot "$DC_CONNS" "$json" --with-children "${tls[@]}"
                dc_stop
                ;;
            *) echo "unknown server $server (mailfleet, dovecot)" >&2; exit 2 ;;
        esac
    done
done

echo "end: $(date -u '+%F %T UTC'); $(uptime)" >&2
python3 - "$CONNS" "${runs[@]}" <<'EOF'
import json, os, sys
full = int(sys.argv[1])
LIMIT = 300_000_000  # bytes: issue 12 §5's 300 MB
rows = [json.load(open(p)) for p in sys.argv[2:] if os.path.exists(p)]
print(f"\n{'server':<10} {'mode':<6} {'held':>11} {'procs':>6} {'idle RSS':>8} {'RSS MiB':>8} "
      f"{'PSS MiB':>8} {'RSS KiB/conn':>13} {'PSS KiB/conn':>13}  verdict (RSS <= 300 MB = "
      f"{LIMIT / 2**20:.1f} MiB)")
notes = []
for r in rows:
    held = f"{r['held']}/{r['asked']}"
    if r["label"] == "mailfleet":
        rss = r["rss_kib"] * 1024
        if r["held"] < full:
            verdict = f"not measured at {full}"
        else:
            verdict = ("PASS" if rss <= LIMIT else "FAIL") + f" ({rss / LIMIT * 100:.0f}% of the limit)"
    else:
        verdict = "(reference)"
    print(f"{r['label']:<10} {r['mode']:<6} {held:>11} {r['procs']:>6} "
          f"{r['rss_before_kib'] / 1024:8.0f} {r['rss_kib'] / 1024:8.0f} "
          f"{r['pss_kib'] / 1024:8.0f} {r['rss_per_conn_kib']:13.1f} {r['pss_per_conn_kib']:13.1f}  {verdict}")
    if r["stopped"]:
        notes.append(f"{r['label']} {r['mode']}: stopped at {r['held']} sessions: {r['stopped']}")
    if r["held"] and r["held"] < full:
        est = (r["pss_before_kib"] + r["pss_per_conn_kib"] * full) / 1024
        notes.append(f"{r['label']} {r['mode']}: {r['held']} sessions held, not {full}; at its "
                     f"{r['pss_per_conn_kib']:.0f} KiB of PSS per session, {full} would be about "
                     f"{est:.0f} MiB of PSS (extrapolated, not measured)")
missing = len(sys.argv[2:]) - len(rows)
if missing:
    notes.append(f"{missing} run(s) gave no figures (see the messages above)")
print("idle RSS: the server's before the first session. RSS of several processes counts their\n"
      "shared pages once per process (Dovecot's is the sum over all its processes); PSS shares\n"
      "them out. Per-connection: growth over the idle server's figure / sessions held.")
for n in notes:
    print("note: " + n)
EOF
