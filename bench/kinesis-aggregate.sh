#!/usr/bin/env bash
# KPL aggregation both ways (docs/kinesis.md): per million rows, the PutRecords calls, Kinesis
# records and PUT payload units (25 KB each) of `kappa-producer` with and without --aggregate,
# and the consumer's rows/s reading each stream.
#
#   bench/kinesis-aggregate.sh [ROWS] [ROUNDS]      (defaults: 100000 rows, 3 rounds)
#
# Data: kappa-gen-wide (16 columns, nulls, random time order). Kinesis is moto's (on loopback,
# reset between rounds); rounds alternate which stream goes first; figures are medians. The
# debug build serves, as in bench/cost.sh: request counts do not depend on the build, and moto's
# GetRecords (~5k records/s) bounds a plain stream's read rate, not the consumer. Set BIN to a
# directory of release binaries to measure those instead.
# Output: bench/out/kinesis-aggregate/results.jsonl (one line per run) and a table.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-100000}
ROUNDS=${2:-3}
./scripts/setup-test-env >/dev/null
if [ -z "${BIN:-}" ]; then
  cargo build --locked -q -p kappa-bench -p kappa-producer -p kappa-consumer
  BIN=target/debug
fi
cargo build --locked -q -p kappa-bench
OUT=bench/out/kinesis-aggregate
rm -rf "$OUT" && mkdir -p "$OUT"
CSV=$OUT/wide-$ROWS.csv
./target/debug/kappa-gen-wide "$ROWS" > "$CSV"
port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOTO_PORT=$(port)
.venv/bin/moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$OUT/moto.log" 2>&1 &
MOTO=$!
trap 'kill $MOTO 2>/dev/null || true' EXIT
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$MOTO_PORT) 2>/dev/null && break; sleep 0.1; done
export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1

# One run: produce ROWS rows onto a new 4-shard stream (plain or packed), count its records and
# payload units, then time a consumer reading it into a new table.
run() {
  local mode=$1 round=$2 extra=()
  [ "$mode" = packed ] && extra=(--aggregate)
  curl -s -X POST "http://127.0.0.1:$MOTO_PORT/moto-api/reset" >/dev/null
  .venv/bin/python -c 'import boto3; boto3.client("kinesis").create_stream(StreamName="s", ShardCount=4)'
  "$BIN/kappa-producer" --input "$CSV" --to kinesis:s --summary-json "$OUT/producer.json" "${extra[@]}" 2>"$OUT/producer.log"
  local units
  units=$(.venv/bin/python - <<'PY'
import boto3, json
k = boto3.client("kinesis")
records = units = 0
for shard in k.list_shards(StreamName="s")["Shards"]:
    it = k.get_shard_iterator(StreamName="s", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    while it:
        out = k.get_records(ShardIterator=it, Limit=10000)
        if not out["Records"]:
            break
        for r in out["Records"]:
            records += 1
            size = len(r["Data"]) + len(r["PartitionKey"].encode())
            units += -(-size // (25 * 1024))
        it = out.get("NextShardIterator")
print(json.dumps({"records": records, "payload_units": units}))
PY
)
  rm -rf "$OUT/lake"
  local started ended
  started=$(date +%s.%N)
  "$BIN/kappa-consumer" --from kinesis:s --lake "$OUT/lake" --table t --poll-interval 200ms --until-idle 1s \
    --summary-json "$OUT/consumer.json" 2>"$OUT/consumer.log"
  ended=$(date +%s.%N)
  .venv/bin/python - "$mode" "$round" "$started" "$ended" "$units" <<'PY' | tee -a "$OUT/results.jsonl"
import json, sys
mode, round_, started, ended, units = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), json.loads(sys.argv[5])
producer = json.load(open("bench/out/kinesis-aggregate/producer.json"))
consumer = json.load(open("bench/out/kinesis-aggregate/consumer.json"))
rows = consumer["rows_written"]
assert rows == producer["events_sent"], (rows, producer["events_sent"])
print(json.dumps({"mode": mode, "round": round_, "rows": rows, "put_records_calls": producer["requests"]["PutRecords"],
                  "records": units["records"], "payload_units": units["payload_units"],
                  "consumer_seconds": round(ended - started, 2), "consumer_rows_per_s": round(rows / (ended - started))}))
PY
}

for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order=(plain packed); else order=(packed plain); fi
  for mode in "${order[@]}"; do run "$mode" "$round"; done
done

.venv/bin/python - <<'PY'
import json, statistics
runs = [json.loads(l) for l in open("bench/out/kinesis-aggregate/results.jsonl")]
print(f"{'':28}{'plain':>14}{'--aggregate':>14}")
def med(mode, key):
    return statistics.median(r[key] for r in runs if r["mode"] == mode)
rows = med("plain", "rows")
for key, label, per_million in [("put_records_calls", "PutRecords calls / 1M rows", True), ("records", "records / 1M rows", True),
                                ("payload_units", "payload units / 1M rows", True), ("consumer_rows_per_s", "consumer rows/s", False)]:
    scale = 1e6 / rows if per_million else 1
    print(f"{label:28}{med('plain', key) * scale:>14,.0f}{med('packed', key) * scale:>14,.0f}")
PY
