#!/usr/bin/env bash
# Store append benchmark: appends/s with 1, 8, 64 writers on SQLite and PostgreSQL, beside the
# disk's fsync/s measured in the same run. Needs PostgreSQL's server binaries (apt-get install
# postgresql). BENCH_DIR selects the disk (default: the current directory).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --release -q -p mailfleet-store --example store_bench
