#!/usr/bin/env bash
# Big-mailbox benchmark: one INBOX of --messages messages (default 100,000; gen_mbox.py's
# deterministic mail, ~7.5 KB average, one in ten containing "zebrafish") loaded into Dovecot and
# into mailfleet, then timed with a python3 imaplib client (bench/imap/bigbox.py), in 1 + 3 rounds
# on one connection: SELECT; UID FETCH 1:* (UID FLAGS); FETCH 1:1000 (ENVELOPE BODYSTRUCTURE);
# UID SEARCH TEXT zebrafish; UID SORT (DATE) UTF-8 ALL; THREAD REFERENCES UTF-8 ALL.
# Prints seconds per operation per server and mailfleet:Dovecot time ratios (<1: mailfleet faster),
# with each answer's size (and for SORT/THREAD a digest) beside the time.
# Round 1 includes what a server builds lazily (Dovecot: its index, cache and, for a Maildir it
# has never seen, the uidlist); the warm figure is each operation's median over rounds 2-4
# (BIGBOX_WARM_ROUNDS=N for another number). A third set of figures times the same operations,
# warm, on a plain socket that reads each answer without parsing it: imaplib's parsing bounds
# the long answers (UID FETCH 1:* of 100,000 messages) on both servers.
#
#   bench/imap/bigbox.sh [--messages N] [--conns 16] [--dovecot-load maildir|append]
#
# Loading: Dovecot's Maildir files are written directly, in order (fast; --dovecot-load append
# uses IMAP APPEND like mailfleet, for a like-for-like load time); mailfleet gets IMAP APPEND over
# --conns connections. With --conns 1 the load is in order, 200 messages per MULTIAPPEND, so UID i
# is message i on both servers and the SORT/THREAD digests printed must be equal (2000 messages:
# equal for Dovecot and mailfleet; mailfleet's MULTIAPPEND took 4.0 s). With
# several connections (the default, 16) UIDs come in no fixed order, so the digests and even the
# number of threads differ between servers (for Dovecot too: 671 threads in order, 782 not) (each APPEND is acknowledged after the server's fsync, so this is bound by the
# disk: on the 2-core machine this was written on, Dovecot took ~160 APPENDs/s over 16
# connections, ~100/s over 4, so 100,000 messages load in 10-15 min; --messages 10000 for a
# quicker look). Load times are printed.
# mailfleet is started as in run.sh (one `mailfleet node`, MF_MODE, MF_OFFSET, MF_BIN; see tests/imaptest/servers.sh); without an
# IMAP listener it prints "mailfleet IMAP not available" and the run is Dovecot only.
set -euo pipefail

MESSAGES=100000
CONNS=16
DC_LOAD=maildir
while [ $# -gt 0 ]; do
    case $1 in
        --messages) MESSAGES=$2; shift 2 ;;
        --conns) CONNS=$2; shift 2 ;;
        --dovecot-load) DC_LOAD=$2; shift 2 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /var/tmp/mailfleet-imap-bigbox.XXXXXX)
chmod 755 "$WORK"
USER_TMPL='user%d@example.test'
PASS=secret
NUSERS=1
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# One IMAP server against Dovecot's one: a single node, no balancer in front (MF_MODE=up for that).
export MF_MODE=${MF_MODE:-node}
# shellcheck source=../../tests/imaptest/servers.sh
. "$ROOT/tests/imaptest/servers.sh"
ACCOUNT=${USER_TMPL//%d/1}
CLIENT=$ROOT/bench/imap/bigbox.py
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

echo "big mailbox: $MESSAGES messages in $ACCOUNT's INBOX" >&2

# ---- Dovecot ----
DC_DIR=$WORK/dc
t0=$(now)
if [ "$DC_LOAD" = maildir ]; then
    mkdir -p "$DC_DIR/mail/$ACCOUNT"
    python3 "$ROOT/tests/imaptest/gen_mbox.py" maildir "$DC_DIR/mail/$ACCOUNT/Maildir" "$MESSAGES"
    [ "$(id -u)" -eq 0 ] && chown -R mail:mail "$DC_DIR/mail"  # dovecot.sh's mail user as root
    dc_load="$(elapsed "$t0")s writing Maildir files"
    dc_start "$DC_DIR"
else
    dc_start "$DC_DIR"
    secs=$(python3 "$CLIENT" load 127.0.0.1 "$DC_PORT" "$ACCOUNT" "$PASS" "$MESSAGES" "$CONNS")
    dc_load="${secs}s by APPEND over $CONNS connections"
fi
echo "Dovecot loaded: $dc_load; timing..." >&2
python3 "$CLIENT" time 127.0.0.1 "$DC_PORT" "$ACCOUNT" "$PASS" "$MESSAGES" >"$WORK/dc.json"
dc_stop
rm -rf "$DC_DIR"

# ---- mailfleet ----
mf_load="not measured"
if mf_build && mf_start "$WORK/mf"; then
    echo "mailfleet: loading by APPEND over $CONNS connections..." >&2
    if secs=$(python3 "$CLIENT" load 127.0.0.1 "$MF_IMAP_PORT" "$ACCOUNT" "$PASS" "$MESSAGES" "$CONNS"); then
        mf_load="${secs}s by APPEND over $CONNS connections"
        echo "mailfleet loaded: $mf_load; timing..." >&2
        python3 "$CLIENT" time 127.0.0.1 "$MF_IMAP_PORT" "$ACCOUNT" "$PASS" "$MESSAGES" >"$WORK/mf.json" \
            || echo "mailfleet: the timing client failed" >&2
    fi
    mf_stop
fi

python3 - "$WORK/dc.json" "$WORK/mf.json" "$MESSAGES" "$dc_load" "$mf_load" <<'EOF'
import json, os, sys
dc = json.load(open(sys.argv[1]))
mf = json.load(open(sys.argv[2])) if os.path.exists(sys.argv[2]) else None
print(f"\n{sys.argv[3]} messages. Load: Dovecot {sys.argv[4]}; mailfleet {sys.argv[5]}")
for rnd in range(len(dc)):
    label = ["cold: lazy indexes/caches built here", "warm: median of the warm rounds",
             "warm, answers read off a plain socket without parsing: the servers' own time"][min(rnd, 2)]
    print(f"\nround {rnd + 1} ({label})")
    print(f"{'operation':<40} {'dovecot s':>10} {'mailfleet s':>12} {'mf:dc':>7}   answers (dovecot | mailfleet)")
    for i, d in enumerate(dc[rnd]):
        m = mf[rnd][i] if mf else None
        ds = f"{d['secs']:10.4f}" if d["secs"] is not None else f"{'refused':>10}"
        ms = (f"{m['secs']:12.4f}" if m["secs"] is not None else f"{'refused':>12}") if m else f"{'n/a':>12}"
        ratio = f"{m['secs'] / d['secs']:7.2f}" if (m and m["secs"] is not None and d["secs"]) else f"{'-':>7}"
        print(f"{d['op']:<40} {ds} {ms} {ratio}   {d['note']} | {m['note'] if m else '-'}")
if mf is None:
    print("\nmailfleet: not measured (see above: IMAP not available or build failed)")
EOF
