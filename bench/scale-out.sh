#!/usr/bin/env bash
# Benchmark: the lease protocol on DynamoDB (moto's server on loopback) — what the scale-out
# issue measures of the leases alone: time for 3 workers to balance 8 and 64 shards, lease
# store requests per hour in steady state (the goal: flat in shards), and failover times over
# KILLS crashes (a coordinator dropped without releasing; goal: median <= the failover time,
# 10 s by default). KCL's figure is beside ours: it renews every lease every failover/3
# (~3.3 s), one DynamoDB write per shard each time.
#
#   bench/scale-out.sh [STEADY_SECONDS] [KILLS]      (defaults: 120 s, 20 kills)
#
# Real consumer processes (failover over SIGKILLs, rows/s with 1-3 workers): see
# bench/scale-out-consumer.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
STEADY=${1:-120}
KILLS=${2:-20}
./scripts/setup-test-env >/dev/null
cargo build --release -p kappa-bench --bin kappa-lease-load 2>&1 | grep -E "^(error|warning)" || true
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.venv/bin/moto_server -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
mkdir -p bench/out
RESULTS=bench/out/scale-out.jsonl
: > "$RESULTS"
for shards in 8 64; do
  echo "==> 3 workers, $shards shards: ${STEADY} s steady, $KILLS crashes"
  ./target/release/kappa-lease-load "http://127.0.0.1:$port" "$shards" 3 "$STEADY" "$KILLS" | tee -a "$RESULTS"
done
.venv/bin/python - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"{'shards':>6} {'balanced':>9} {'writes/h':>9} {'scans/h':>8} {'KCL writes/h':>12} {'failover median':>15} {'max':>6}")
for r in rows:
    kcl = r["shards"] * 3600 / (r["failover_setting_s"] / 3)
    print(f"{r['shards']:>6} {r['balanced_after_s']:>8.2f}s {r['writes_per_hour']:>9.0f} {r['scans_per_hour']:>8.0f} {kcl:>12.0f} "
          f"{r['failover_median_s'] or float('nan'):>14.2f}s {r['failover_max_s'] or float('nan'):>5.2f}s")
PY
