#!/usr/bin/env bash
# Balancer benchmark, two views:
# 1. bench/balancer/wrk.sh, the comparison issue 15 asks for: wrk against two nginx backends
#    through the real `mailfleet balancer` binary and through HAProxy, runs interleaved, medians
#    and ratios (keep-alive req/s at 50 and 10 connections, p50/p99 at 10, new connections/s,
#    MiB/s of 1 MiB documents, CPU per request). Its environment (ROUNDS, DURATION, RELAY,
#    MAILFLEET, ALT, PROFILE) is described there.
# 2. The crate's own load generator: the same backends and load through mailfleet's balancer
#    (copy relay and splice relay, an example program) and HAProxy (mode tcp, leastconn, health
#    checks), 2 threads each: new connections/s, 1 MiB transfer throughput, and p50/p99 added
#    latency at a fixed rate, then the ratios against HAProxy.
#
#   bench/balancer/run.sh    (needs: apt-get install -y wrk nginx-light haproxy)
#   VIEW=wrk or VIEW=loadgen runs only one of them.
#
# Not a test: it takes about six minutes and its figures depend on the machine (and on whatever
# else runs on it: both views print the load).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
VIEW="${VIEW:-both}"
if [ "$VIEW" != loadgen ]; then
  bench/balancer/wrk.sh
  [ "$VIEW" = wrk ] && exit 0
  echo
  echo "the load generator's view:"
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-balancer}"
HAPROXY="${HAPROXY:-$(command -v haproxy || true)}"
[ -x "$HAPROXY" ] || HAPROXY=/usr/sbin/haproxy
if [ ! -x "$HAPROXY" ]; then
  echo "haproxy not found: apt-get install -y haproxy" >&2
  exit 1
fi

cargo build --release -q -p mailfleet-balancer --example loadgen
LOADGEN="$CARGO_TARGET_DIR/release/examples/loadgen"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BP=$(free_port); MF_COPY=$(free_port); MF_SPLICE=$(free_port); HA=$(free_port)

# Two backends, one process each.
"$LOADGEN" backend "127.0.0.2:$BP" & PIDS+=($!)
"$LOADGEN" backend "127.0.0.3:$BP" & PIDS+=($!)

for relay in copy splice; do
  port=$MF_COPY; [ "$relay" = splice ] && port=$MF_SPLICE
  cat > "$WORK/mf-$relay.toml" <<TOML
[[service]]
name = "bench"
listen = ["127.0.0.1:$port"]
scheduler = "leastconn"
timeouts = { connect = "5s", client = "1h", server = "1h" }
max_connections = 9000
relay = "$relay"
health = { check = "tcp", interval = "2s", rise = 2, fall = 3, timeout = "1s" }

[[service.server]]
name = "n1"
address = "127.0.0.2:$BP"

[[service.server]]
name = "n2"
address = "127.0.0.3:$BP"
TOML
  THREADS=2 "$LOADGEN" balancer "$WORK/mf-$relay.toml" & PIDS+=($!)
done

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

sleep 1
echo "machine: $(nproc) cores; $("$HAPROXY" -v | head -1); load$(uptime | sed 's/.*load average//')"
THREADS=2 "$LOADGEN" bench --direct "127.0.0.2:$BP" \
  "haproxy=127.0.0.1:$HA" \
  "mailfleet-copy=127.0.0.1:$MF_COPY" \
  "mailfleet-splice=127.0.0.1:$MF_SPLICE"
