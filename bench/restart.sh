#!/usr/bin/env bash
# Benchmark: a consumer's restart does not grow with the table's history. For each commit
# count (default 100 and 1,000) it builds a table on moto's S3 with that many Delta commits
# (one shard, one partition, a commit every 2,048 rows: one per chunk the log source reads),
# then restarts the consumer on it three times with nothing new to read, behind
# tests/support/fault_proxy.py, which counts every request by object. Target (issue 16): a
# restart reads one checkpoint and fewer than 100 JSON commits, and takes as long at 1,000
# commits as at 100.
#
#   bench/restart.sh [COMMITS ...]        (default: 100 1000)
#
# Needs the test venv (./scripts/setup-test-env: moto, boto3). Writes under bench/out/restart/.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(100 1000)
OUT=bench/out/restart
RESULTS=$OUT/results.jsonl
cargo build --release --locked -q -p kappa-bench -p kappa-producer -p kappa-consumer
rm -rf "$OUT"
mkdir -p "$OUT"
: > "$RESULTS"

source bench/moto.sh
start_moto "$OUT"
.venv/bin/python -c "import boto3; boto3.client('s3', endpoint_url='$PROXY').create_bucket(Bucket='bench')"

for commits in "${COUNTS[@]}"; do
  rows=$((commits * 2048))
  dir=$OUT/$commits
  mkdir -p "$dir"
  ./target/release/kappa-gen-sales "$rows" > "$dir/sales.csv"
  ./target/release/kappa-producer --input "$dir/sales.csv" --to "log:$dir/log" --shards 1 >/dev/null 2>&1
  consumer=(./target/release/kappa-consumer --from "log:$dir/log" --lake "s3://bench/t$commits" --table sales
    --event-time sale_time --partition-by year --flush-rows 2048 --flush-interval 1h --max-memory 1GiB --until-idle 0s)
  echo "==> building a table of $commits commits ($rows rows, a commit every 2,048)" >&2
  KAPPA_LOG=warn "${consumer[@]}" >/dev/null
  for round in 1 2 3; do
    curl -sf -X POST "$PROXY/_proxy/reset" >/dev/null
    start=$(date +%s.%N)
    KAPPA_LOG=warn "${consumer[@]}" >/dev/null
    end=$(date +%s.%N)
    curl -sf "$PROXY/_proxy/stats" | .venv/bin/python -c "
import json, sys
stats = json.load(sys.stdin)['requests']
log = {k: n for k, n in stats.items() if '/_delta_log/' in k}
json_commits = [k for k in log if k.endswith('.json') and not k.endswith('_last_checkpoint')]
checkpoints = [k for k in log if '.checkpoint.' in k]
print(json.dumps({'commits': $commits, 'round': $round, 'seconds': round($end - $start, 3),
                  'json_commits_read': len(json_commits), 'json_requests': sum(log[k] for k in json_commits),
                  'checkpoints_read': len(checkpoints), 'requests': sum(stats.values()),
                  'delta_log_requests': sum(log.values())}))
" | tee -a "$RESULTS"
  done
done

.venv/bin/python - "$RESULTS" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs.setdefault(r["commits"], []).append(r)
print(f"{'commits':>8}{'restart s (median)':>20}{'JSON commits read':>19}{'checkpoints':>13}{'_delta_log reqs':>17}{'all reqs':>10}")
for commits, rs in runs.items():
    median = statistics.median(r["seconds"] for r in rs)
    last = rs[-1]
    print(f"{commits:>8}{median:>20.3f}{last['json_commits_read']:>19}{last['checkpoints_read']:>13}{last['delta_log_requests']:>17}{last['requests']:>10}")
PY
