# Sourced (not run) by tests/imaptest/run.sh, bench/imap/run.sh and bench/imap/bigbox.sh: start
# and stop the servers measured. Expects ROOT (the repository), WORK (a scratch dir), PIDS (an
# array the caller's EXIT trap kills) and USER_TMPL, PASS, NUSERS.
#
# Dovecot: tests/imaptest/dovecot.sh (foreground, loopback, own config). DOVECOT_TUNED=1 (the
# default here) runs its imap-login in "high-performance mode"; DOVECOT_TUNED=0 keeps Dovecot's
# default of one login process per connection.
# mailfleet: the release binary (`cargo build --release -p mailfleet`, or MF_BIN=PATH), started as
# a user would: `mailfleet up --data DIR --port-offset MF_OFFSET`, the accounts made beforehand
# with `mailfleet domain add` / `mailfleet account add --password-stdin` on the same SQLite store,
# and `mailfleet settings set imap.auth.allow_cleartext true` (imaptest has no STARTTLS, and
# mailfleet refuses LOGIN before TLS by default; Dovecot here runs with ssl = no) and
# imap.max_connections_per_ip 10000 (all load comes from 127.0.0.1; Dovecot's limit here is as high)
# and auth.lockout_failures 0 (no per-address login lockout, as in Dovecot here and as
# bench/smtp exempts its load generator): mailfleet's lockout counts login attempts in flight
# from one address, so 10 imaptest clients logging in at once from 127.0.0.1 are refused with
# "too many failed logins" although none failed. MF_KEEP_LOCKOUT=1 keeps mailfleet's default (5).
# MF_SETTINGS="key value,key value" adds settings after these (a key given twice: the last wins);
# bench/imap/idle_memory.sh raises imap.max_connections with it.
# Its IMAP port is 143 + MF_OFFSET; when nothing listens there, mf_start says
# "mailfleet IMAP not available" and returns 1 (the caller skips mailfleet).

# 23000: every port it gives (25..995 and the balancer API's 8404, plus the offset) stays below
# Linux's ephemeral range (32768-60999), where a client connection of another run that has not
# ended yet may hold the port and make the listen fail.
MF_OFFSET=${MF_OFFSET:-23000}
DOVECOT_TUNED=${DOVECOT_TUNED:-1}

port_open() {
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.5).close()" "$1" 2>/dev/null
}

# dc_start [DIR] [extra dovecot.sh args...]: sets DC_PID, DC_PORT.
dc_start() {
    local dir=${1:-}
    shift || true
    local args=(--user "$USER_TMPL" --pass "$PASS" --users "$NUSERS")
    [ "$DOVECOT_TUNED" = 1 ] && args+=(--tuned)
    [ -n "$dir" ] && args+=(--dir "$dir")
    rm -f "$WORK/dc.port"
    bash "$ROOT/tests/imaptest/dovecot.sh" "${args[@]}" "$@" >"$WORK/dc.port" 2>>"$WORK/dc.err" &
    DC_PID=$!
    PIDS+=("$DC_PID")
    until [ -s "$WORK/dc.port" ]; do
        kill -0 "$DC_PID" 2>/dev/null || { cat "$WORK/dc.err" >&2; return 1; }
        sleep 0.1
    done
    DC_PORT=$(head -n1 "$WORK/dc.port")
}

dc_stop() {
    if [ -n "${DC_PID:-}" ]; then kill "$DC_PID" 2>/dev/null || true; wait "$DC_PID" 2>/dev/null || true; fi
    DC_PID=
}

# mf_build: sets MF_BIN, or returns 1 (build failed: the log's tail is printed).
mf_build() {
    if [ -n "${MF_BIN:-}" ]; then return 0; fi
    echo "building mailfleet (cargo build --release -p mailfleet)..." >&2
    if ! (cd "$ROOT" && cargo build --release -q -p mailfleet) >"$WORK/mf-build.log" 2>&1; then
        tail -n 15 "$WORK/mf-build.log" >&2
        echo "mailfleet build failed: skipping mailfleet" >&2
        return 1
    fi
    MF_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/mailfleet
}

# mf_start DIR: fresh store in DIR with accounts USER_TMPL%d=1..NUSERS, then `mailfleet up`
# (the balancer on 127.0.0.1 in front of two nodes), or with MF_MODE=node one `mailfleet node`
# listening on 127.0.0.1 itself (what the benchmarks against Dovecot compare: one IMAP server).
# Sets MF_PID and MF_IMAP_PORT; returns 1 when the node starts but has no IMAP listener.
mf_start() {
    local dir=$1 i
    rm -rf "$dir"
    mkdir -p "$dir"
    export MAILFLEET_STORE="sqlite:$dir/mailfleet.db"
    local domain=${USER_TMPL#*@}
    if [ "$domain" != "$USER_TMPL" ]; then
        "$MF_BIN" domain add "$domain" >"$dir/admin.log" 2>&1 \
            || { cat "$dir/admin.log" >&2; echo "mailfleet: '$MF_BIN domain add $domain' failed: skipping mailfleet" >&2; return 1; }
    fi
    for i in $(seq 1 "$NUSERS"); do
        printf '%s\n' "$PASS" | "$MF_BIN" account add "${USER_TMPL//%d/$i}" --password-stdin >>"$dir/admin.log" 2>&1 \
            || { cat "$dir/admin.log" >&2; echo "mailfleet: 'account add' failed: skipping mailfleet" >&2; return 1; }
    done
    local kv
    local settings=("imap.auth.allow_cleartext true" "imap.max_connections_per_ip 10000")
    [ "${MF_KEEP_LOCKOUT:-0}" = 1 ] || settings+=("auth.lockout_failures 0")
    if [ -n "${MF_SETTINGS:-}" ]; then
        local extra
        IFS=, read -ra extra <<<"$MF_SETTINGS"
        settings+=("${extra[@]}")
    fi
    for kv in "${settings[@]}"; do
        # shellcheck disable=SC2086
        "$MF_BIN" settings set $kv >>"$dir/admin.log" 2>&1 \
            || echo "mailfleet: 'settings set $kv' failed (this build does not know the key?); continuing" >&2
    done
    if [ "${MF_MODE:-up}" = node ]; then
        printf 'server_id = "bench"\nhostname = "localhost"\nstore = "sqlite:%s/mailfleet.db"\ndata_dir = "%s"\nport_offset = %s\n' \
            "$dir" "$dir" "$MF_OFFSET" >"$dir/node.toml"
        "$MF_BIN" node --config "$dir/node.toml" >"$dir/up.out" 2>"$dir/up.err" &
    else
        "$MF_BIN" up --data "$dir" --port-offset "$MF_OFFSET" >"$dir/up.out" 2>"$dir/up.err" &
    fi
    MF_PID=$!
    PIDS+=("$MF_PID")
    MF_IMAP_PORT=$((143 + MF_OFFSET))
    # SMTP (25+offset) answering means the node is up; IMAP is then there or not at all.
    local n
    for n in $(seq 1 300); do
        port_open $((25 + MF_OFFSET)) && break
        kill -0 "$MF_PID" 2>/dev/null || break
        sleep 0.1
    done
    if ! kill -0 "$MF_PID" 2>/dev/null; then
        echo "mailfleet up exited:" >&2; tail -n 20 "$dir/up.out" "$dir/up.err" >&2
        MF_PID=
        return 1
    fi
    for n in $(seq 1 20); do port_open "$MF_IMAP_PORT" && return 0; sleep 0.1; done
    echo "mailfleet IMAP not available (nothing listens on 127.0.0.1:$MF_IMAP_PORT; mailfleet up printed:" \
        "$(grep -E '^  [a-z0-9]+ +[0-9.]+:[0-9]+' "$dir/up.out" | awk '{print $1"="$2}' | tr '\n' ' '))" >&2
    mf_stop
    return 1
}

mf_stop() {
    if [ -n "${MF_PID:-}" ]; then
        kill "$MF_PID" 2>/dev/null || true
        wait "$MF_PID" 2>/dev/null || true
    fi
    MF_PID=
}
