#!/usr/bin/env bash
# A throwaway Dovecot (Debian's dovecot-imapd, 2.3) in the foreground on loopback, the reference
# server for tests/imaptest/run.sh and bench/imap/*.sh. It prints its IMAP port on stdout as soon as
# it answers, then stays until it gets SIGTERM/SIGINT/SIGHUP or its parent process exits; it then
# stops Dovecot and removes its directory. No system service is touched: its own config file,
# base_dir, state_dir and log file are all under its directory, listen = 127.0.0.1, ssl = no
# (ssl = yes with --tls).
#
#   tests/imaptest/dovecot.sh [--user 'user%d@example.test'] [--pass secret] [--users 5]
#                             [--port N] [--dir DIR] [--fsync optimized|always|never] [--tuned]
#                             [--tls [--tls-port N]] [--sessions N]
#
#   --user    account name template; %d is replaced by 1..--users (accounts user1..user5)
#   --port    IMAP port (default: a free one chosen on 127.0.0.1)
#   --dir     use (and keep) DIR instead of a temp dir; mail is DIR/mail/ACCOUNT/Maildir, so a
#             caller may put Maildir files there before the start (bench/imap/bigbox.sh does)
#   --fsync   Dovecot's mail_fsync (default: Dovecot's own default, optimized)
#   --tuned   Dovecot's "high-performance mode" for imap-login (service_count = 0, one
#             long-lived login process per core) instead of its default of one login process
#             per connection; imap processes stay one per session either way
#   --tls     also an IMAPS listener (implicit TLS) on --tls-port (default: another free port on
#             127.0.0.1), with a self-signed certificate (EC P-256, CN localhost) made by openssl
#             in DIR; its port is the SECOND line of stdout. The plain listener stays (first line).
#   --sessions  room for N simultaneous sessions: imap's process_limit (10000 without it) and the
#             client_limit of the services that every imap process stays connected to
#
# Typical use from a script (the port is the first line of its stdout):
#   bash tests/imaptest/dovecot.sh --pass secret >"$WORK/dc.port" &  DC=$!
#   trap 'kill $DC; wait $DC' EXIT
#   until [ -s "$WORK/dc.port" ]; do kill -0 $DC || exit 1; sleep 0.1; done
#   PORT=$(head -n1 "$WORK/dc.port")        # with --tls: TLS_PORT=$(sed -n 2p "$WORK/dc.port")
# The log is DIR/dovecot.log (printed on stderr if Dovecot fails to start).
set -euo pipefail

USER_TMPL='user%d@example.test'
PASS=secret
NUSERS=5
PORT=
DIR=
KEEP=
FSYNC=
TUNED=
TLS=
TLS_PORT=
SESSIONS=
while [ $# -gt 0 ]; do
    case $1 in
        --user) USER_TMPL=$2; shift 2 ;;
        --pass) PASS=$2; shift 2 ;;
        --users) NUSERS=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --dir) DIR=$2; KEEP=1; shift 2 ;;
        --fsync) FSYNC=$2; shift 2 ;;
        --tuned) TUNED=1; shift ;;
        --tls) TLS=1; shift ;;
        --tls-port) TLS_PORT=$2; shift 2 ;;
        --sessions) SESSIONS=$2; shift 2 ;;
        -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
        *) echo "dovecot.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

DOVECOT=$(command -v dovecot || echo /usr/sbin/dovecot)
[ -x "$DOVECOT" ] || { echo "dovecot.sh: dovecot not found (apt-get install dovecot-imapd)" >&2; exit 1; }
[ -x /usr/lib/dovecot/imap ] || { echo "dovecot.sh: /usr/lib/dovecot/imap missing (apt-get install dovecot-imapd)" >&2; exit 1; }

if [ -z "$DIR" ]; then DIR=$(mktemp -d /var/tmp/mailfleet-dovecot.XXXXXX); fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
# Dovecot's login and auth processes run as its unprivileged users and must reach base_dir.
chmod 755 "$DIR"
rm -rf "$DIR/run" "$DIR/state"
mkdir -p "$DIR/run" "$DIR/state" "$DIR/mail"
: >"$DIR/dovecot.log"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
if [ -z "$PORT" ]; then PORT=$(free_port); fi
if [ -n "$TLS" ]; then
    if [ -z "$TLS_PORT" ]; then
        TLS_PORT=$(free_port)
        while [ "$TLS_PORT" = "$PORT" ]; do TLS_PORT=$(free_port); done
    fi
    command -v openssl >/dev/null || { echo "dovecot.sh: --tls needs openssl" >&2; exit 1; }
    # Self-signed, for loopback only; Dovecot reads both files when it starts (as root or as us).
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$DIR/tls.key" -out "$DIR/tls.crt" 2>"$DIR/openssl.log" \
        || { cat "$DIR/openssl.log" >&2; echo "dovecot.sh: openssl could not make a certificate" >&2; exit 1; }
    chmod 600 "$DIR/tls.key"
fi

# Mail processes run as the current user, except for root: Dovecot refuses a userdb uid of 0
# ("userdb returned 0 as uid"), so as root mail is owned by Debian's `mail` user (uid 8).
if [ "$(id -u)" -eq 0 ]; then
    UID_=$(id -u mail); GID_=$(id -g mail)
    chown "$UID_:$GID_" "$DIR/mail"
else
    UID_=$(id -u); GID_=$(id -g)
fi
: >"$DIR/passwd"
for i in $(seq 1 "$NUSERS"); do
    name=${USER_TMPL//%d/$i}
    printf '%s:{PLAIN}%s::::::\n' "$name" "$PASS" >>"$DIR/passwd"
done
chmod 644 "$DIR/passwd"

if [ "$(id -u)" -eq 0 ]; then
    users=""
else
    # Not root: every Dovecot process runs as the current user.
    me=$(id -un); grp=$(id -gn)
    users="default_internal_user = $me
default_internal_group = $grp
default_login_user = $me"
fi

cat >"$DIR/dovecot.conf" <<EOF
# Written by tests/imaptest/dovecot.sh; throwaway.
protocols = imap
listen = 127.0.0.1
base_dir = $DIR/run
state_dir = $DIR/state
instance_name = mailfleet-test-$PORT
log_path = $DIR/dovecot.log
info_log_path = $DIR/dovecot.log
$(if [ -n "$TLS" ]; then printf 'ssl = yes\nssl_cert = <%s/tls.crt\nssl_key = <%s/tls.key' "$DIR" "$DIR"; else echo 'ssl = no'; fi)
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 0
first_valid_gid = 0
$users
mail_location = maildir:$DIR/mail/%u/Maildir
${FSYNC:+mail_fsync = $FSYNC}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DIR/passwd
}
userdb {
  driver = static
  args = uid=$UID_ gid=$GID_ home=$DIR/mail/%u
}
namespace inbox {
  inbox = yes
  separator = /
}
protocol imap {
  # imaptest opens many sessions per account from one address (Dovecot's default is 10).
  mail_max_userip_connections = 10000
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $PORT
  }
  inet_listener imaps {
$(if [ -n "$TLS" ]; then printf '    address = 127.0.0.1\n    port = %s\n    ssl = yes' "$TLS_PORT"; else printf '    port = 0'; fi)
  }
$(if [ -n "$TUNED" ]; then printf '  service_count = 0\n  process_min_avail = %s' "$(nproc)"; else printf '  process_min_avail = 1'; fi)
}
service imap {
  process_limit = ${SESSIONS:-10000}
}
service anvil {
  chroot =
$(if [ -n "$SESSIONS" ]; then printf '  client_limit = %s' $((SESSIONS + 1000)); fi)
}
$(if [ -n "$SESSIONS" ]; then for svc in stats auth; do printf 'service %s {\n  client_limit = %s\n}\n' "$svc" $((SESSIONS + 1000)); done; fi)
EOF

MASTER=
stop() {
    trap - EXIT TERM INT HUP
    if [ -n "$MASTER" ] && kill -0 "$MASTER" 2>/dev/null; then
        kill -TERM "$MASTER" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$MASTER" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$MASTER" 2>/dev/null || true
        wait "$MASTER" 2>/dev/null || true
    fi
    if [ -z "$KEEP" ]; then rm -rf "$DIR"; fi
}
trap stop EXIT
trap 'exit 0' TERM INT HUP

# Something else on the port would answer the readiness check below in Dovecot's place.
for p in $PORT $TLS_PORT; do
    if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close()' "$p" 2>/dev/null; then
        echo "dovecot.sh: 127.0.0.1:$p is already in use" >&2
        exit 1
    fi
done
"$DOVECOT" -F -c "$DIR/dovecot.conf" </dev/null >>"$DIR/dovecot.log" 2>&1 &
MASTER=$!

ready=
for _ in $(seq 1 100); do
    if ! kill -0 "$MASTER" 2>/dev/null; then break; fi
    if python3 - "$PORT" $TLS_PORT <<'PY' 2>/dev/null; then ready=1; break; fi
import socket, ssl, sys
for i, port in enumerate(sys.argv[1:]):
    s = socket.create_connection(("127.0.0.1", int(port)), 0.5)
    s.settimeout(2)
    if i == 1:  # the IMAPS listener: implicit TLS, certificate not checked (self-signed)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s)
    g = s.recv(300)
    assert g.startswith(b"* OK") and b"Dovecot" in g
    s.close()
PY
    sleep 0.1
done
if [ -z "$ready" ]; then
    echo "dovecot.sh: Dovecot did not come up on 127.0.0.1:$PORT; its log:" >&2
    cat "$DIR/dovecot.log" >&2
    exit 1
fi
# One write for both lines, so a reader never sees the first without the second.
if [ -n "$TLS" ]; then printf '%s\n%s\n' "$PORT" "$TLS_PORT"; else echo "$PORT"; fi
echo "dovecot.sh: Dovecot $("$DOVECOT" --version | cut -d' ' -f1) on 127.0.0.1:$PORT${TLS:+ (IMAPS on $TLS_PORT)}, dir $DIR, pid $MASTER" >&2

# Stay until told to stop: SIGTERM/SIGINT/SIGHUP, Dovecot dying on its own, or the process that
# started this script going away (so a killed caller leaves no Dovecot behind).
PARENT=$PPID
while kill -0 "$MASTER" 2>/dev/null && kill -0 "$PARENT" 2>/dev/null; do
    sleep 0.5 &
    wait $! || true
done
