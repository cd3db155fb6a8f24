#!/usr/bin/env bash
# What a month of kappa-lake costs, from the requests the tools make: a measured run on moto
# (behind tests/support/fault_proxy.py, which counts every request by API and method), scaled
# to a stated load and priced (bench/cost.py, docs/cost.md).
#
#   bench/cost.sh [SECONDS] [RATE]      (defaults: 300 s at 500 rows/s)
#
# The run: a Kinesis stream of 2 shards; kappa-producer sending wide rows (kappa-gen-wide:
# 16 columns, nulls) at RATE rows/s for SECONDS; 2 kappa-consumer workers sharing the shards
# through a DynamoDB lease table, writing a Delta table partitioned by arrival day and the raw
# archive to S3, with the deployment's settings (deploy/kappa-lake.yaml: default flushes,
# --archive). The debug build serves: moto, not the tools, bounds the rate.
# Output: bench/out/cost.json (requests per API, rows, bytes, seconds), then the priced table.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN=${1:-300}
RATE=${2:-500}
ROWS=$((SECONDS_RUN * RATE))
./scripts/setup-test-env >/dev/null
cargo build --locked -q -p kappa-bench -p kappa-producer -p kappa-consumer
OUT=bench/out/cost
rm -rf "$OUT" && mkdir -p "$OUT"
source bench/moto.sh
start_moto "$OUT"
.venv/bin/python - <<'PY'
import boto3
kinesis = boto3.client("kinesis")
kinesis.create_stream(StreamName="events", ShardCount=2)
boto3.client("s3").create_bucket(Bucket="lake")
PY
CSV=$OUT/wide-$ROWS.csv
./target/debug/kappa-gen-wide "$ROWS" > "$CSV"
curl -s -X POST "http://127.0.0.1:$PROXY_PORT/_proxy/reset" >/dev/null

# As the stack runs them: partitioned by arrival time (a live stream's events are of now: one
# day's partition takes them), with the raw archive. `exec`: $! is the consumer itself.
consumer() {
  exec ./target/debug/kappa-consumer --from kinesis:events --lake s3://lake/lake --table events \
    --archive s3://lake/archive --leases dynamodb:leases --worker-id "$1" --log-format json 2>"$OUT/$1.log"
}
consumer w1 & W1=$!
consumer w2 & W2=$!
started=$(date +%s)
./target/debug/kappa-producer --input "$CSV" --to kinesis:events --rate "$RATE" --summary-json "$OUT/producer.json" 2>"$OUT/producer.log"
# The last rows' flush (the default minute), then a graceful stop.
sleep 75
kill -TERM $W1 $W2
wait $W1 $W2 || true
elapsed=$(( $(date +%s) - started ))
curl -s "http://127.0.0.1:$PROXY_PORT/_proxy/stats" > "$OUT/proxy.json"
.venv/bin/python - "$OUT" "$ROWS" "$elapsed" <<'PY'
import json, sys
out, rows, elapsed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
stats = json.load(open(f"{out}/proxy.json"))
producer = json.load(open(f"{out}/producer.json"))
written = 0
for worker in ("w1", "w2"):
    for line in open(f"{out}/{worker}.log"):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("message") == "summary":
            written += event.get("rows_written", 0)
import boto3
sizes = {"lake": 0, "archive": 0}
for page in boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket="lake"):
    for o in page.get("Contents", []):
        if o["Key"].startswith("lake/events/") and o["Key"].endswith(".parquet"):
            sizes["lake"] += o["Size"]
        elif o["Key"].startswith("archive/"):
            sizes["archive"] += o["Size"]
json.dump({"rows": rows, "rows_written": written, "seconds": elapsed, "bytes_sent": producer["bytes_sent"],
           "lake_bytes": sizes["lake"], "archive_bytes": sizes["archive"],
           "requests": stats["requests"], "methods": stats.get("methods", {})}, open(f"{out}/../cost.json", "w"), indent=1)
print(f"{rows} rows sent, {written} written, {elapsed} s")
PY
.venv/bin/python bench/cost.py bench/out/cost.json
