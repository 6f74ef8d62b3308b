#!/usr/bin/env bash
# IMAP throughput benchmark: imaptest's stress mode (simulated clients doing LOGIN, LIST, STATUS,
# SELECT, FETCH, STORE, EXPUNGE, APPEND, LOGOUT at random, with every answer checked) against
# Dovecot and against mailfleet in the same run, interleaved (dovecot, mailfleet, dovecot, ...),
# each run on a freshly started server, on loopback. Prints each command's rate per server (median
# of the repetitions), the total, and mailfleet:Dovecot ratios (>1: mailfleet does more per second).
#
#   bench/imap/run.sh [--reps 3] [--secs 10] [--clients "10 50"] [--users 5] [--messages 300]
#   MF_BIN=target/release/mailfleet bench/imap/run.sh      skip the cargo build
#   DOVECOT_TUNED=0 bench/imap/run.sh                       Dovecot's stock one-login-process-per-connection
#
# Needs: dovecot-imapd (Debian), python3, cargo; imaptest is built on first use into target/imaptest
# by ../shared/tools/imaptest/build.sh. Starts no system daemon: Dovecot runs in the foreground from
# tests/imaptest/dovecot.sh (own config, 127.0.0.1, ssl = no, Maildir, mail_fsync optimized, its
# imap-login in high-performance mode unless DOVECOT_TUNED=0); mailfleet is one `mailfleet node` on
# 127.0.0.1 (MF_MODE=node; MF_MODE=up measures `mailfleet up`'s balancer and two nodes instead),
# port_offset MF_OFFSET (default 23000: IMAP on 23143), on its embedded SQLite store, with accounts
# user1..user5@example.test made beforehand by `mailfleet domain add` / `mailfleet account add`.
# When mailfleet has no IMAP listener (or does not build), it says so and the run is Dovecot only.
# imaptest's errors are counted per run and summarized by kind: rates from a run with errors
# (refused LOGINs, failed FETCHes) are not comparable one for one.
set -euo pipefail

REPS=3
SECS=10
CLIENTS="10 50"
NUSERS=5
MESSAGES=300
while [ $# -gt 0 ]; do
    case $1 in
        --reps) REPS=$2; shift 2 ;;
        --secs) SECS=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --users) NUSERS=$2; shift 2 ;;
        --messages) MESSAGES=$2; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /var/tmp/mailfleet-imap-bench.XXXXXX)
chmod 755 "$WORK"
USER_TMPL='user%d@example.test'
PASS=secret
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

IT=$(bash "$ROOT/../shared/tools/imaptest/build.sh" "${IMAPTEST_DIR:-$ROOT/target/imaptest}")
MBOX=$WORK/stress.mbox
python3 "$ROOT/tests/imaptest/gen_mbox.py" mbox "$MBOX" "$MESSAGES"

MF=1
mf_build || MF=

# tree_cpu PID: CPU seconds (user + system) used so far by PID and every process below it, those
# already reaped included (their parents' cutime/cstime), from /proc/PID/stat.
tree_cpu() {
    python3 - "$1" <<'EOF'
import os, sys
tick = os.sysconf("SC_CLK_TCK")
stats = {}
for d in os.listdir("/proc"):
    if d.isdigit():
        try:
            s = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        f = s[s.rindex(")") + 2:].split()
        # fields after the name: state ppid ...; utime stime cutime cstime are f[11:15]
        stats[int(d)] = (int(f[1]), sum(int(x) for x in f[11:15]))
total, todo = 0, [int(sys.argv[1])]
while todo:
    p = todo.pop()
    if p in stats:
        total += stats[p][1]
        todo.extend(c for c, (pp, _) in stats.items() if pp == p)
print(f"{total / tick:.2f}")
EOF
}

# stress NAME PORT CLIENTS REP SERVER_PID: one imaptest run; its JSON report goes to
# WORK/res/NAME-CLIENTS-REP.json, with the CPU seconds the server's processes used during the run
# ("cpu_s", from tree_cpu before and after).
mkdir -p "$WORK/res"
stress() {
    local name=$1 port=$2 clients=$3 rep=$4 pid=$5
    local out=$WORK/res/$name-$clients-$rep.out
    local cpu0 cpu1
    cpu0=$(tree_cpu "$pid")
    timeout $((SECS + 90)) "$IT" host=127.0.0.1 port="$port" user="$USER_TMPL" pass="$PASS" \
        users="$NUSERS" clients="$clients" secs="$SECS" seed="$rep" mbox="$MBOX" >"$out" 2>&1 || true
    cpu1=$(tree_cpu "$pid")
    python3 "$ROOT/tests/imaptest/imaptest_report.py" stress "$out" "$SECS" >"${out%.out}.json"
    python3 - "${out%.out}.json" "$name" "$clients" "$rep" "$cpu0" "$cpu1" <<'EOF'
import json, sys
path = sys.argv[1]
r = json.load(open(path))
r["cpu_s"] = float(sys.argv[6]) - float(sys.argv[5])
json.dump(r, open(path, "w"))
t = r["totals"]
n = sum(t.values())
extra = f", {r['errors']} ERRORS: {r['error_lines'][0] if r['error_lines'] else ''}" if r["errors"] else ""
cpu = f", server CPU {r['cpu_s']:.2f} s ({1e6 * r['cpu_s'] / n:.0f} us/command)" if n else ""
print(f"  rep {sys.argv[4]} {sys.argv[2]:<9} clients={sys.argv[3]:<3} "
      + ("INCOMPLETE" if not r["complete"] else f"{n} commands, {t.get('Logi', 0)} LOGINs{cpu}") + extra,
      file=sys.stderr)
EOF
}

echo "imaptest stress: users=$NUSERS secs=$SECS clients=[$CLIENTS] mbox=$MESSAGES messages, $REPS repetitions, interleaved" >&2
for rep in $(seq 1 "$REPS"); do
    for c in $CLIENTS; do
        dc_start "" && stress dovecot "$DC_PORT" "$c" "$rep" "$DC_PID"
        dc_stop
        if [ -n "$MF" ]; then
            if mf_start "$WORK/mf"; then
                stress mailfleet "$MF_IMAP_PORT" "$c" "$rep" "$MF_PID"
                mf_stop
            else
                MF=
            fi
        fi
    done
done

python3 - "$WORK/res" "$SECS" "$CLIENTS" <<'EOF'
import glob, json, os, statistics, sys
res, secs, clients = sys.argv[1], float(sys.argv[2]), sys.argv[3].split()
def load(name, c):
    runs = []
    for f in sorted(glob.glob(os.path.join(res, f"{name}-{c}-*.json"))):
        runs.append(json.load(open(f)))
    return runs
for c in clients:
    dc, mf = load("dovecot", c), load("mailfleet", c)
    names = []
    for r in dc + mf:
        for n in r["totals"]:
            if n not in names:
                names.append(n)
    def med(runs, n):
        v = [r["rates"].get(n, 0.0) for r in runs if r["complete"]]
        return statistics.median(v) if v else None
    def tot(runs):
        v = [sum(r["rates"].values()) for r in runs if r["complete"]]
        return statistics.median(v) if v else None
    print(f"\nclients={c}: commands per second, median of {len(dc)} Dovecot / {len(mf)} mailfleet runs of {secs:.0f}s")
    print(f"{'command':<9} {'dovecot/s':>10} {'mailfleet/s':>12} {'mf:dc':>7}")
    rows = [(n, med(dc, n), med(mf, n)) for n in names] + [("total", tot(dc), tot(mf))]
    for n, d, m in rows:
        ds = f"{d:10.1f}" if d is not None else f"{'-':>10}"
        ms = f"{m:12.1f}" if m is not None else f"{'n/a':>12}"
        ratio = f"{m / d:7.2f}" if (d and m is not None) else f"{'-':>7}"
        print(f"{n:<9} {ds} {ms} {ratio}")
    for name, runs in (("dovecot", dc), ("mailfleet", mf)):
        errs = [r["errors"] for r in runs]
        if runs:
            print(f"{name}: errors per run {errs}; total/s per run "
                  + " ".join(f"{sum(r['rates'].values()):.0f}" for r in runs)
                  + "; server CPU us/command per run "
                  + " ".join(f"{1e6 * r['cpu_s'] / max(1, sum(r['totals'].values())):.0f}"
                             for r in runs if "cpu_s" in r))
            kinds = {}
            for r in runs:
                for n, k in r.get("error_kinds", []):
                    kinds[k] = kinds.get(k, 0) + n
            for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])[:5]:
                print(f"  {n:6d}  {k}")
if not any(glob.glob(os.path.join(res, "mailfleet-*.json"))):
    print("\nmailfleet: not measured (see above: IMAP not available or build failed)")
EOF
echo "(Dovecot $(/usr/sbin/dovecot --version | cut -d' ' -f1), imap-login $([ "$DOVECOT_TUNED" = 1 ] && echo 'high-performance mode' || echo 'stock'); $(nproc) cores; imaptest counts commands completed, so a rate is count/secs)"
