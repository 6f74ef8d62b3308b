#!/usr/bin/env bash
# The balancer against HAProxy the way users compare balancers (issue 15): wrk (2 threads) against
# two nginx backends (one worker each, a 100-byte /small and a 1 MiB /big, no access log) on
# 127.0.0.2 and 127.0.0.3, through the real `mailfleet balancer` binary and through Debian's
# HAProxy (mode tcp, balance leastconn, nbthread 2, check inter 2s), runs interleaved (haproxy,
# mailfleet, haproxy, ...), ROUNDS repetitions, medians. Measures:
#   ka50    keep-alive req/s of /small at 50 connections
#   ka10    keep-alive req/s of /small at 10 connections, with p50 and p99 latency
#   close50 new connections/s (`Connection: close`) of /small at 50 connections
#   big8    MiB/s of /big at 8 connections
# and for each run the balancer process's CPU (utime+stime from /proc/PID/stat) per request (per
# MiB for big8), and the CPU the machine spent outside the bench's own processes (other people's
# builds) while it ran. `uptime` is printed before each round.
#
#   bench/balancer/wrk.sh     (apt-get install -y wrk nginx-light haproxy)
#
# Environment: ROUNDS (3; 5 gives a steadier median), DURATION seconds per run (10), RELAY (copy|splice, copy),
# MAILFLEET (a mailfleet binary to use instead of building one; RUST_LOG is passed on),
# ALT (a second mailfleet binary, measured as "alt" in each round too),
# PROFILE=DIR: instead of the rounds, profile each balancer under PROFILE_MEASURE (ka10; or ka50,
# close50, big8, or close4: new connections from 4 clients, where the relay threads often sleep) with perf stat, perf record -g and strace -c (needs linux-perf and strace), and
# leave the reports in DIR.
# Stops by itself; everything it starts is killed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
RELAY="${RELAY:-copy}"

for tool in wrk nginx haproxy python3; do
  if ! command -v "$tool" >/dev/null && [ ! -x "/usr/sbin/$tool" ]; then
    echo "$tool not found: apt-get install -y wrk nginx-light haproxy" >&2
    exit 1
  fi
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)

if [ -z "${MAILFLEET:-}" ]; then
  cargo build --release -q -p mailfleet
  MAILFLEET="${CARGO_TARGET_DIR:-$ROOT/target}/release/mailfleet"
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  # Whatever did not stop on TERM within 3 s.
  for _ in 1 2 3 4 5 6; do
    alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.5
  done
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("0.0.0.0",0)); print(s.getsockname()[1])'; }
BP=$(free_port); MF=$(free_port); HA=$(free_port); ALTP=$(free_port)

# The documents.
mkdir -p "$WORK/www"
head -c 100 /dev/zero | tr '\0' x > "$WORK/www/small"
head -c $((1024 * 1024)) /dev/urandom > "$WORK/www/big"

# Two nginx backends, one process each, in the foreground with their own files.
for ip in 127.0.0.2 127.0.0.3; do
  d="$WORK/nginx-$ip"
  mkdir -p "$d/tmp"
  cat > "$d/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type application/octet-stream;
  sendfile on;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  server {
    listen $ip:$BP;
    root $WORK/www;
  }
}
CONF
  "$NGINX" -p "$d" -c "$d/nginx.conf" -e "$d/error.log" & PIDS+=($!)
done
NGINX_PIDS=("${PIDS[@]}")

mf_config() {
  cat > "$WORK/mf-$1.toml" <<TOML
[[service]]
name = "bench"
listen = ["127.0.0.1:$2"]
scheduler = "leastconn"
timeouts = { connect = "5s", client = "1h", server = "1h" }
max_connections = 9000
relay = "$RELAY"
health = { check = "tcp", interval = "2s", rise = 2, fall = 3, timeout = "1s" }

[[service.server]]
name = "n1"
address = "127.0.0.2:$BP"

[[service.server]]
name = "n2"
address = "127.0.0.3:$BP"
TOML
}
declare -A PID_OF PORT_OF
mf_config mailfleet "$MF"
"$MAILFLEET" balancer --config "$WORK/mf-mailfleet.toml" 2> "$WORK/mailfleet.log" & PIDS+=($!)
PID_OF[mailfleet]=$!; PORT_OF[mailfleet]=$MF
TARGETS=(haproxy mailfleet)
if [ -n "${ALT:-}" ]; then
  mf_config alt "$ALTP"
  "$ALT" balancer --config "$WORK/mf-alt.toml" 2> "$WORK/alt.log" & PIDS+=($!)
  PID_OF[alt]=$!; PORT_OF[alt]=$ALTP
  TARGETS+=(alt)
fi

cat > "$WORK/haproxy.cfg" <<CFG
global
  nbthread 2
  maxconn 9000
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend bench
  bind 127.0.0.1:$HA
  default_backend servers
backend servers
  balance leastconn
  server n1 127.0.0.2:$BP check inter 2s rise 2 fall 3
  server n2 127.0.0.3:$BP check inter 2s rise 2 fall 3
CFG
"$HAPROXY" -f "$WORK/haproxy.cfg" -db & PIDS+=($!)
PID_OF[haproxy]=$!; PORT_OF[haproxy]=$HA

# wrk prints one machine-readable line at the end of a run.
cat > "$WORK/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\n", summary.requests, summary.bytes,
    summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
LUA

# Ready: every listener answers through its balancer (health checks need rise 2 × 2 s).
for t in "${TARGETS[@]}"; do
  ok=0
  for _ in $(seq 1 100); do
    if python3 - "${PORT_OF[$t]}" <<'PY' 2>/dev/null; then ok=1; break; fi
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
data = b""
while True:
    b = s.recv(4096)
    if not b: break
    data += b
sys.exit(0 if data.startswith(b"HTTP/1.1 200") else 1)
PY
    sleep 0.2
  done
  if [ $ok = 0 ]; then
    echo "$t does not answer on 127.0.0.1:${PORT_OF[$t]}" >&2
    cat "$WORK"/*.log >&2 || true
    exit 1
  fi
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# CPU ticks of waited-for children of this shell (wrk).
child_ticks() { awk '{print $16 + $17}' "/proc/$$/stat"; }
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
nginx_ticks() { local s=0; for p in "${NGINX_PIDS[@]}"; do s=$((s + $(cpu_ticks "$p"))); done; echo $s; }

RESULTS="$WORK/results"
: > "$RESULTS"
# run TARGET MEASURE CONNECTIONS PATH [wrk options...]
run() {
  local t=$1 m=$2 c=$3 path=$4
  shift 4
  local pid=${PID_OF[$t]} p0 w0 n0 b0 p1 w1 n1 b1 line
  p0=$(cpu_ticks "$pid"); w0=$(child_ticks); n0=$(nginx_ticks); b0=$(busy_ticks)
  wrk -t2 -c"$c" -d"${DURATION}s" -s "$WORK/report.lua" "$@" \
    "http://127.0.0.1:${PORT_OF[$t]}$path" > "$WORK/wrk.out" 2>&1 || true
  p1=$(cpu_ticks "$pid"); w1=$(child_ticks); n1=$(nginx_ticks); b1=$(busy_ticks)
  line=$(grep '^RESULT' "$WORK/wrk.out" || true)
  if [ -z "$line" ]; then
    echo "wrk failed against $t:" >&2
    cat "$WORK/wrk.out" >&2
    exit 1
  fi
  # target measure requests bytes duration_us p50_us p99_us errors proxy_ticks other_ticks
  # wrk_ticks nginx_ticks
  echo "$t $m ${line#RESULT } $((p1 - p0)) $(((b1 - b0) - (p1 - p0) - (w1 - w0) - (n1 - n0)))" \
    "$((w1 - w0)) $((n1 - n0))" >> "$RESULTS"
}

echo "machine: $(nproc) cores; $("$HAPROXY" -v | head -1 | cut -d' ' -f1-3); $("$NGINX" -v 2>&1); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "mailfleet: $MAILFLEET (relay = $RELAY)${ALT:+; alt: $ALT}"
echo "runs of ${DURATION}s, ${ROUNDS} rounds"
# Warm-up: a short keep-alive run through each.
for t in "${TARGETS[@]}"; do
  wrk -t2 -c10 -d2s "http://127.0.0.1:${PORT_OF[$t]}/small" > /dev/null 2>&1 || true
done
if [ -n "${PROFILE:-}" ]; then
  mkdir -p "$PROFILE"
  case "${PROFILE_MEASURE:=ka10}" in
    ka10) load=(-t2 -c10) doc=small ;;
    ka50) load=(-t2 -c50) doc=small ;;
    close50) load=(-t2 -c50 -H "Connection: close") doc=small ;;
    close4) load=(-t2 -c4 -H "Connection: close") doc=small ;;
    big8) load=(-t2 -c8) doc=big ;;
    *) echo "PROFILE_MEASURE: ka10, ka50, close50, close4 or big8" >&2; exit 1 ;;
  esac
  for t in "${TARGETS[@]}"; do
    pid=${PID_OF[$t]}
    url="http://127.0.0.1:${PORT_OF[$t]}/$doc"
    echo "profiling $t (pid $pid) under $PROFILE_MEASURE: load$(uptime | sed 's/.*load average//')"
    wrk "${load[@]}" -d"$((DURATION + 2))s" "$url" > "$PROFILE/$t.wrk-stat" 2>&1 &
    sleep 1
    perf stat -e task-clock,context-switches,cpu-migrations,cycles,instructions -p "$pid" \
      -o "$PROFILE/$t.perf-stat" -- sleep "$DURATION" || true
    wait $!
    wrk "${load[@]}" -d"$((DURATION + 2))s" "$url" > "$PROFILE/$t.wrk-record" 2>&1 &
    sleep 1
    perf record -F 999 -g -p "$pid" -o "$PROFILE/$t.perf.data" -- sleep "$DURATION" 2>/dev/null || true
    wait $!
    perf report -i "$PROFILE/$t.perf.data" --no-children --sort symbol --stdio 2>/dev/null \
      | grep -v '^$' | head -150 > "$PROFILE/$t.perf-report" || true
    wrk "${load[@]}" -d"$((DURATION + 2))s" "$url" > "$PROFILE/$t.wrk-strace" 2>&1 &
    sleep 1
    timeout -s INT "$DURATION" strace -c -f -p "$pid" -o "$PROFILE/$t.strace" || true
    wait $!
    echo "  $(grep Requests/sec "$PROFILE/$t.wrk-stat") (under perf stat)"
    grep -E 'task-clock|context-switches|cpu-migrations|instructions' "$PROFILE/$t.perf-stat" | sed 's/^/  /'
    head -12 "$PROFILE/$t.strace" | sed 's/^/  /'
  done
  echo "reports in $PROFILE"
  exit 0
fi
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r: load$(uptime | sed 's/.*load average//')"
  for m in ka50 ka10 close50 big8; do
    for t in "${TARGETS[@]}"; do
      case $m in
        ka50) run "$t" ka50 50 /small ;;
        ka10) run "$t" ka10 10 /small ;;
        close50) run "$t" close50 50 /small -H "Connection: close" ;;
        big8) run "$t" big8 8 /big ;;
      esac
    done
  done
done
echo "after: load$(uptime | sed 's/.*load average//')"

python3 - "$RESULTS" "$DURATION" "$(getconf CLK_TCK)" "${TARGETS[@]}" <<'PY'
import statistics, sys
path, duration, hz, targets = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
rows = {}
for line in open(path):
    t, m, req, byt, dur, p50, p99, err, pt, ot, wt, nt = line.split()
    secs = int(dur) / 1e6
    req, byt, pt, ot, wt, nt = int(req), int(byt), int(pt), int(ot), int(wt), int(nt)
    cpu_us = pt * 1e6 / hz
    rows.setdefault((t, m), []).append({
        "rate": req / secs,
        "mib": byt / secs / 2**20,
        "p50": int(p50), "p99": int(p99), "err": int(err),
        "cpu_req": cpu_us / max(req, 1),
        "cpu_mib": cpu_us / 1000 / max(byt / 2**20, 1e-9),
        "cores": cpu_us / 1e6 / secs,
        "other": ot / hz / secs,
        "wrk_req": wt * 1e6 / hz / max(req, 1),
        "nginx_req": nt * 1e6 / hz / max(req, 1),
    })

def med(t, m, k):
    v = rows.get((t, m))
    return statistics.median(r[k] for r in v) if v else float("nan")

# (label, measure, key, format, higher is better)
lines = [
    ("keep-alive req/s, 50 conns", "ka50", "rate", "{:.0f}", True),
    ("keep-alive req/s, 10 conns", "ka10", "rate", "{:.0f}", True),
    ("p50 latency, 10 conns (us)", "ka10", "p50", "{:.0f}", False),
    ("p99 latency, 10 conns (us)", "ka10", "p99", "{:.0f}", False),
    ("new connections/s, 50 conns", "close50", "rate", "{:.0f}", True),
    ("MiB/s of /big, 8 conns", "big8", "mib", "{:.0f}", True),
    ("CPU us/request, ka50", "ka50", "cpu_req", "{:.2f}", False),
    ("CPU us/request, ka10", "ka10", "cpu_req", "{:.2f}", False),
    ("CPU us/request, close50", "close50", "cpu_req", "{:.2f}", False),
    ("CPU ms/MiB, big8", "big8", "cpu_mib", "{:.3f}", False),
    ("wrk CPU us/request, ka50", "ka50", "wrk_req", "{:.2f}", None),
    ("nginx CPU us/request, ka50", "ka50", "nginx_req", "{:.2f}", None),
    ("wrk CPU us/request, ka10", "ka10", "wrk_req", "{:.2f}", None),
    ("nginx CPU us/request, ka10", "ka10", "nginx_req", "{:.2f}", None),
    ("balancer CPU (cores), ka50", "ka50", "cores", "{:.2f}", None),
    ("balancer CPU (cores), ka10", "ka10", "cores", "{:.2f}", None),
    ("other CPU (cores), ka10", "ka10", "other", "{:.2f}", None),
    ("wrk errors, close50", "close50", "err", "{:.0f}", None),
]
others = [t for t in targets if t != "haproxy"]
head = f"{'medians':30}" + "".join(f"{t:>11}" for t in targets) + "".join(f"{t + ':ha':>14}" for t in others)
print()
print(head)
for label, m, k, fmt, higher in lines:
    ha = med("haproxy", m, k)
    s = f"{label:30}" + "".join(f"{fmt.format(med(t, m, k)):>11}" for t in targets)
    for t in others:
        v = med(t, m, k)
        if higher is None or ha == 0:
            s += f"{'':>14}"
            continue
        ratio = v / ha
        ok = ratio >= 1.0 if higher else ratio <= 1.0
        s += f"{ratio:>10.2f} {'ok' if ok else '--':>3}"
    print(s)
# Each round's run against the HAProxy run beside it: how far apart the rounds are, and in how
# many rounds the target was missed. A miss in some rounds with medians on either side of 1.0
# means the two are level within this machine's run-to-run noise.
for t in others:
    print(f"\nper round, {t}:haproxy (rounds in order; misses of the target / rounds)")
    for label, m, k, fmt, higher in lines:
        if higher is None:
            continue
        pairs = [(a[k], b[k]) for a, b in zip(rows.get((t, m), []), rows.get(("haproxy", m), []))]
        ratios = [a / b for a, b in pairs if b]
        missed = sum(1 for r in ratios if (r < 1.0 if higher else r > 1.0))
        print(f"  {label:28}" + "".join(f"{r:6.2f}" for r in ratios) + f"   {missed}/{len(ratios)}")
print("\nper run (target measure: rate, p50/p99 us, balancer us/req, other cores):")
for (t, m), v in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    key = "mib" if m == "big8" else "rate"
    print(f"  {t:9} {m:8} " + "  ".join(
        f"{r[key]:.0f} {r['p50']}/{r['p99']} {r['cpu_mib' if m == 'big8' else 'cpu_req']:.2f} {r['other']:.2f}"
        for r in v))
PY
