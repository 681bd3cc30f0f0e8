#!/usr/bin/env bash
# The production-profile load test (issue 10), behind no test flag: run it by hand, record the output in
# BENCHMARKS.md. One run with one hub replica, one with two, on the same machine in the same session:
# PostgreSQL catalog (DATABASE_URL, default the local server's `test` database server), blobs on a
# real S3-compatible server (s3s-fs from scripts/deps), release binaries. Each run gets a fresh
# database and bucket prefix.
#
#   benches/replica_load.sh [SECS] [REPLICAS...]      e.g. benches/replica_load.sh 60 1 2
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 2)
pg="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -p yilian --bin yilian -p yilian-benches --bin mixed-load >&2
bin="$target/release/yilian"
load="$target/release/mixed-load"

work=$(mktemp -d)
# shellcheck source=../scripts/lib/s3s.sh
. scripts/lib/s3s.sh
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  stop_s3s
  rm -rf "$work"
}
trap cleanup EXIT
start_s3s "$work/s3" yilian-load || { cat "$work/s3/server.log" >&2; exit 1; }

# The demo alliance, a one-second sweep, and per-token limits above what the harness sends.
sed 's/^sweep_interval_secs = .*/sweep_interval_secs = 1/' config/demo.toml >"$work/alliance.toml"
cat >>"$work/alliance.toml" <<'TOML'

[server.limits]
requests_per_minute = 600000
burst = 10000
concurrent_requests = 256
TOML

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

for n in "${counts[@]}"; do
  db="yilian_load_$(date +%s)_$n"
  psql "$pg" -qc "CREATE DATABASE $db" >/dev/null
  url="${pg%/*}/$db"
  export YILIAN_DATABASE_URL="$url" YILIAN_CONFIG="$work/alliance.toml" \
    YILIAN_BLOBS_URL="s3://yilian-load/run-$db" YILIAN_BLOBS_ENDPOINT="$S3_ENDPOINT" \
    YILIAN_BLOBS_REGION=us-east-1 YILIAN_BLOBS_ACCESS_KEY_ID="$S3_KEY" \
    YILIAN_BLOBS_SECRET_ACCESS_KEY="$S3_SECRET" YILIAN_BLOBS_ALLOW_HTTP=1 \
    YILIAN_KEYS_DIR="$work/keys" YILIAN_BLOBS_STAGING_DIR="$work/staging" \
    YILIAN_DICOM_ENABLED=0 YILIAN_MLLP_ENABLED=0 YILIAN_LOG=warn
  hubs=()
  run_pids=()
  for i in $(seq 1 "$n"); do
    port=$(free_port)
    YILIAN_HTTP_ADDR="127.0.0.1:$port" "$bin" serve --config "$work/alliance.toml" \
      >"$work/hub-$n-$i.log" 2>&1 &
    pids+=($!)
    run_pids+=($!)
    hubs+=(--hub "http://127.0.0.1:$port")
    for _ in $(seq 1 100); do
      curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
      sleep 0.1
    done
  done
  tech=$("$bin" user token wang.tech --config "$work/alliance.toml")
  reader=$("$bin" user token li.reader --config "$work/alliance.toml")
  clinician=$("$bin" user token zhao.clinician --config "$work/alliance.toml")
  pid_args=()
  for p in "${run_pids[@]}"; do pid_args+=(--pid "$p"); done
  echo "== $n replica(s), $secs s =="
  "$load" "${hubs[@]}" --tech "$tech" --reader "$reader" --clinician "$clinician" \
    --secs "$secs" --uploaders 4 --readers 2 --clinicians 2 "${pid_args[@]}"
  for p in "${run_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  psql "$pg" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
done
