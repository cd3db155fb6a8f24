#!/usr/bin/env bash
# Benchmark (issue 35): a commit of many small files to S3, at 1, 8, 32 and 64 PUTs in flight
# (`kappa-consumer --max-puts`), against moto behind tests/support/fault_proxy.py holding every
# request 20 ms (a round trip to a region, which loopback does not have). The data:
# kappa-gen-wide's rows (16 columns, random time order over 120 days) in one shard of the
# embedded log, by hour: one file per hour, 2,880 files of ~35 rows (~10 KB) in 3 commits. Three alternating rounds;
# medians of the consumer's whole run (reading, encoding, storing, the commit) and files/s by it,
# with the most PUTs moto saw in flight at once.
#
#   bench/s3-puts.sh [ROWS] [LATENCY_MS] [LEVELS]   (defaults: 100,000 rows, 20 ms, "1 8 32 64")
#
# Needs the test venv (./scripts/setup-test-env: moto). Writes under bench/out/s3-puts/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-100000}
LATENCY_MS=${2:-20}
read -r -a LEVELS <<< "${3:-1 8 32 64}"
OUT=bench/out/s3-puts
RESULTS=$OUT/results.jsonl
cargo build --release --locked -q -p kappa-bench -p kappa-producer -p kappa-consumer
rm -rf "$OUT" && mkdir -p "$OUT"
: > "$RESULTS"
source bench/moto.sh
start_moto "$OUT" "$LATENCY_MS"
.venv/bin/python -c "import boto3; boto3.client('s3').create_bucket(Bucket='bench')"

./target/release/kappa-gen-wide "$ROWS" > "$OUT/wide.csv"
./target/release/kappa-producer --input "$OUT/wide.csv" --to "log:$OUT/log" --shards 1 --write-schema "$OUT/wide.schema.json" >/dev/null 2>&1

for round in 1 2 3; do
  for puts in "${LEVELS[@]}"; do
    table=w${puts}r$round
    curl -sf -X POST "$PROXY/_proxy/reset" >/dev/null
    start=$(date +%s.%N)
    KAPPA_LOG=warn ./target/release/kappa-consumer --from "log:$OUT/log" --lake s3://bench/lake --table "$table" \
      --schema "$OUT/wide.schema.json" --event-time event_time --partition-by hour --max-puts "$puts" \
      --until-idle 0s --summary-json "$OUT/summary.json" >/dev/null
    end=$(date +%s.%N)
    curl -sf "$PROXY/_proxy/stats" | .venv/bin/python -c "
import json, sys
stats = json.load(sys.stdin)
summary = json.load(open('$OUT/summary.json'))
print(json.dumps({'puts': $puts, 'round': $round, 'seconds': round($end - $start, 3),
                  'files': summary['files'], 'rows': summary['rows_written'],
                  'put_requests': stats['methods'].get('PUT', 0), 'in_flight_max': stats['in_flight_max'].get('PUT', 0)}))
" | tee -a "$RESULTS"
  done
done

.venv/bin/python - "$RESULTS" "$LATENCY_MS" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs.setdefault(r["puts"], []).append(r)
print(f"{sys.argv[2]} ms per request")
print(f"{'--max-puts':>10}{'median s':>10}{'files':>7}{'files/s':>9}{'PUTs in flight (max)':>22}   all seconds")
for puts, rs in sorted(runs.items()):
    seconds = statistics.median(r["seconds"] for r in rs)
    files = rs[0]["files"]
    print(f"{puts:>10}{seconds:>10.2f}{files:>7}{files / seconds:>9.0f}{max(r['in_flight_max'] for r in rs):>22}   {' / '.join(str(r['seconds']) for r in rs)}")
PY
