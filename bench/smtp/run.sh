#!/usr/bin/env bash
# SMTP intake benchmark: messages per second accepted AND delivered into local mailboxes,
# mailfleet against Postfix (virtual(8) to Maildir, fsync on, Debian defaults otherwise), both
# driven by Postfix's smtp-source with the same arguments in the same run, on loopback.
#
#   bench/smtp/run.sh [MESSAGES] [CONCURRENCY...]      default: 1000 messages at 1 10 50
#   MF_BLOBS=db bench/smtp/run.sh                       mailfleet keeps blobs in its store
#   MF_INLINE=64K bench/smtp/run.sh                     blob files, messages up to 64K in the store
#
# Needs: postfix (smtp-source comes with it), python3, cargo. Installs nothing, starts no
# system daemon: Postfix runs in the foreground from its own config dir under the work dir.
# mailfleet's figure is the wall time until smtp-source has its last 250 (mailfleet answers 250
# only after the message is committed to the mailbox); Postfix's is the wall time until the
# last message file is in the Maildir (Postfix answers 250 once the message is queued).
set -euo pipefail

MESSAGES=${1:-1000}
shift || true
CONCURRENCY=${*:-1 10 50}
SIZE=4096
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-smtp}
WORK=$(mktemp -d /var/tmp/mailfleet-smtp-bench.XXXXXX)
chmod 755 "$WORK" # Postfix daemons run as postfix and must reach their dirs
MF_OFFSET=31000
PF_PORT=32525
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "${PF_DIR:-}" ]; then postfix -c "$PF_DIR" stop >/dev/null 2>&1 || true; fi
    sleep 0.5
    rm -rf "$WORK"
}
trap cleanup EXIT

command -v smtp-source >/dev/null || { echo "smtp-source not found (apt-get install postfix)"; exit 1; }

echo "building mailfleet (release)..." >&2
(cd "$ROOT" && cargo build --release -q -p mailfleet-smtp --example serve)
SERVE=$CARGO_TARGET_DIR/release/examples/serve

wait_port() {
    for _ in $(seq 1 200); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

# ---- mailfleet ----
start_mailfleet() {
    MF_DIR=$WORK/mf-$1
    mkdir -p "$MF_DIR"
    cat >"$MF_DIR/node.toml" <<EOF
server_id = "b1"
hostname = "mx.bench.test"
store = "sqlite:$MF_DIR/store.db"
data_dir = "$MF_DIR/data"
bind = "127.0.0.1"
port_offset = $MF_OFFSET
${MF_BLOBS:+blobs = \"$MF_BLOBS\"}
${MF_INLINE:+blobs_inline_max = \"$MF_INLINE\"}
EOF
    # All load comes from one address; Postfix exempts $mynetworks from its per-client limits.
    "$SERVE" "$MF_DIR/node.toml" smtp.max_connections_per_ip=1000 user@bench.test secret >"$MF_DIR/out" 2>"$MF_DIR/err" &
    MF_PID=$!
    PIDS+=("$MF_PID")
    wait_port $((25 + MF_OFFSET))
}

mailfleet_count() {
    python3 - "$MF_DIR/store.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(db.execute("SELECT count(*) FROM messages").fetchone()[0])
EOF
}

# ---- postfix ----
setup_postfix() {
    PF_DIR=$WORK/pf
    mkdir -p "$PF_DIR/etc" "$PF_DIR/vmail" "$PF_DIR/data" "$PF_DIR/queue"
    chown postfix:postfix "$PF_DIR/vmail" "$PF_DIR/data"
    local uid gid
    uid=$(id -u postfix)
    gid=$(id -g postfix)
    cat >"$PF_DIR/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF_DIR/queue
data_directory = $PF_DIR/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = pf.bench.test
mydestination =
mynetworks = 127.0.0.0/8
relayhost =
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = bench.test
virtual_mailbox_base = $PF_DIR/vmail
virtual_mailbox_maps = texthash:$PF_DIR/etc/vmailbox
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_minimum_uid = 1
maillog_file = /dev/stdout
biff = no
EOF
    echo "user@bench.test bench.test/user/" >"$PF_DIR/etc/vmailbox"
    cat >"$PF_DIR/etc/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
    postfix -c "$PF_DIR/etc" check >/dev/null 2>&1 || true
}

start_postfix() {
    rm -rf "$PF_DIR/vmail/bench.test"
    postfix -c "$PF_DIR/etc" start-fg >"$PF_DIR/start.log" 2>&1 &
    PIDS+=("$!")
    wait_port "$PF_PORT" || { cat "$PF_DIR/start.log" >&2; return 1; }
}

stop_postfix() {
    postfix -c "$PF_DIR/etc" stop >/dev/null 2>&1 || true
    sleep 1
}

postfix_count() {
    local d=$PF_DIR/vmail/bench.test/user
    local n=0
    for sub in new cur; do
        if [ -d "$d/$sub" ]; then n=$((n + $(find "$d/$sub" -type f | wc -l))); fi
    done
    echo "$n"
}

now() { date +%s.%N; }

# Runs smtp-source and waits until `count_fn` reaches the target; prints seconds.
drive() {
    local port=$1 conc=$2 count_fn=$3 base=$4
    local target=$((base + MESSAGES))
    local t0 t1
    t0=$(now)
    smtp-source -s "$conc" -m "$MESSAGES" -l "$SIZE" -f sender@remote.test -t user@bench.test \
        "127.0.0.1:$port" >/dev/null
    local deadline=$((SECONDS + 300))
    while [ "$($count_fn)" -lt "$target" ]; do
        if [ $SECONDS -gt $deadline ]; then echo "timeout: $($count_fn) of $target delivered" >&2; return 1; fi
        sleep 0.05
    done
    t1=$(now)
    python3 -c "print(f'{$t1 - $t0:.3f}')"
}

setup_postfix
printf '%-12s %14s %14s %8s\n' "senders" "mailfleet/s" "postfix/s" "ratio"
for c in $CONCURRENCY; do
    start_mailfleet "$c"
    base=$(mailfleet_count)
    mf_secs=$(drive $((25 + MF_OFFSET)) "$c" mailfleet_count "$base")
    kill "$MF_PID"; wait "$MF_PID" 2>/dev/null || true
    start_postfix
    pf_secs=$(drive "$PF_PORT" "$c" postfix_count 0)
    stop_postfix
    python3 - "$c" "$MESSAGES" "$mf_secs" "$pf_secs" <<'EOF'
import sys
c, n, mf, pf = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
print(f"{c:<12} {n / mf:14.1f} {n / pf:14.1f} {pf / mf:7.2f}x")
EOF
done
echo "($MESSAGES messages of $SIZE bytes per run; disk: $(python3 - <<'EOF'
import os, time
fd = os.open('/var/tmp/.mf-fsync-probe', os.O_WRONLY | os.O_CREAT)
t = time.time(); n = 0
while time.time() - t < 1:
    os.write(fd, b'x' * 4096); os.fsync(fd); n += 1
os.close(fd); os.unlink('/var/tmp/.mf-fsync-probe')
print(f"{n / (time.time() - t):.0f} fsync/s single stream")
EOF
))"
