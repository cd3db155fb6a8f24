#!/usr/bin/env bash
# Benchmark: real consumer processes sharing a log's shards through local leases
# (`--leases local`), on this machine:
#   1. rows/s with 1, 2 and 3 workers on unordered, wide rows with nulls (kappa-gen-wide, 6
#      shards so that 1, 2 and 3 workers split them evenly), ROUNDS alternating rounds, medians.
#      Unpinned (each worker may use every core), and pinned one core per worker (taskset), which
#      shows what a second machine would add: 1 worker on 1 core against 2 workers on 2 cores.
#   2. failover of real processes: 3 idle workers (default --failover 10s), KILLS times one of
#      them SIGKILLed; the time until every shard it held has another owner, then it restarts.
#
#   bench/scale-out-consumer.sh [ROWS] [ROUNDS] [KILLS]     (defaults: 1,000,000, 3, 20)
#
# Figures go to bench/out/scale-out-consumer.jsonl and a table at the end; the lease protocol
# alone (DynamoDB requests per hour, 8 and 64 shards) is bench/scale-out.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-1000000}
ROUNDS=${2:-3}
KILLS=${3:-20}
./scripts/setup-test-env >/dev/null
cargo build --release --locked -q -p kappa-bench -p kappa-producer -p kappa-consumer 2>&1 \
  | grep -E "^(error|warning)" || true
command -v taskset >/dev/null || { echo "taskset is missing: apt-get install util-linux" >&2; exit 1; }
OUT=bench/out/scale-out-consumer
mkdir -p "$OUT"
RESULTS=bench/out/scale-out-consumer.jsonl
: > "$RESULTS"
CSV=$OUT/wide-$ROWS.csv
[ -s "$CSV" ] || ./target/release/kappa-gen-wide "$ROWS" > "$CSV"
if [ "$(cat "$OUT/log.rows" 2>/dev/null)" != "$ROWS" ]; then
  rm -rf "$OUT/log"
  ./target/release/kappa-producer --input "$CSV" --to "log:$OUT/log" --shards 6 --write-schema "$OUT/wide.schema.json" 2>&1 | grep -E "throughput"
  echo "$ROWS" > "$OUT/log.rows"
fi
CORES=$(nproc)
IDLE=2

# Rows in the table's current version, from the Delta log's statistics.
committed() {
  .venv/bin/python - "$1" <<'PY'
import glob, json, sys
files = {}
for path in sorted(glob.glob(sys.argv[1] + "/_delta_log/*.json")):
    for line in open(path):
        action = json.loads(line)
        if "add" in action:
            files[action["add"]["path"]] = json.loads(action["add"].get("stats") or "{}").get("numRecords", 0)
        elif "remove" in action:
            files.pop(action["remove"]["path"], None)
print(sum(files.values()))
PY
}

# One run: N workers (pinned to a core each when PIN=1) consume the whole log; rows/s over the
# time until the last exits, less its --until-idle.
run_workers() {
  local n=$1 pin=$2 lake=$OUT/lake-$1-$2
  rm -rf "$lake" "$OUT/log/_leases"
  local pids=() started ended
  started=$(date +%s.%N)
  for i in $(seq 0 $((n - 1))); do
    local prefix=()
    [ "$pin" = 1 ] && prefix=(taskset -c $((i % CORES)))
    "${prefix[@]}" ./target/release/kappa-consumer --from "log:$OUT/log" --lake "$lake" --table wide --schema "$OUT/wide.schema.json" \
      --event-time event_time --partition-by day --leases local --worker-id "w$i" --failover 2s --until-idle ${IDLE}s 2>"$OUT/w$i.log" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  ended=$(date +%s.%N)
  local rows
  rows=$(committed "$lake/wide")
  [ "$rows" = "$ROWS" ] || { echo "$n workers committed $rows of $ROWS rows" >&2; exit 1; }
  .venv/bin/python -c "import json; s=$ended-$started-$IDLE; print(json.dumps({'bench': 'rows', 'workers': $n, 'pinned': $pin == 1, 'seconds': round(s, 2), 'rows_per_s': round($ROWS / s)}))" | tee -a "$RESULTS"
  rm -rf "$lake"
}

echo "==> rows/s: $ROWS wide unordered rows, 6 shards, $ROUNDS alternating rounds"
for _ in $(seq "$ROUNDS"); do
  for n in 1 2 3; do run_workers "$n" 0; done
  for n in 1 2; do [ "$n" -le "$CORES" ] && run_workers "$n" 1; done
done

echo "==> failover: 3 idle workers, --failover 10s, $KILLS SIGKILLs"
lake=$OUT/lake-failover
rm -rf "$lake" "$OUT/log/_leases"
declare -A worker
start_worker() {
  ./target/release/kappa-consumer --from "log:$OUT/log" --lake "$lake" --table wide --schema "$OUT/wide.schema.json" \
    --event-time event_time --partition-by day --leases local --worker-id "$1" 2>>"$OUT/$1.failover.log" &
  worker[$1]=$!
}
for id in a b c; do start_worker $id; done
# Owners per the lease store: "shard=owner ..." ("-" for none).
owners() { .venv/bin/python -c "import json; d=json.load(open('$OUT/log/_leases/leases.json')); print(' '.join(f\"{s}={l['owner'] or '-'}\" for s, l in sorted(d['leases'].items())))" 2>/dev/null || true; }
balanced() { owners | .venv/bin/python -c "import sys, collections; o=[p.split('=')[1] for p in sys.stdin.read().split()]; c=collections.Counter(o); sys.exit(0 if len(o)==6 and '-' not in c and sorted(c.values())==[2,2,2] else 1)"; }
wait_balanced() { for _ in $(seq 600); do balanced && return; sleep 0.1; done; echo "not balanced: $(owners)" >&2; exit 1; }
wait_balanced
for k in $(seq "$KILLS"); do
  victim=$(printf 'a\nb\nc\n' | shuf -n 1)
  kill -KILL "${worker[$victim]}"; wait "${worker[$victim]}" 2>/dev/null || true
  killed=$(date +%s.%N)
  while owners | grep -q "=$victim\b"; do sleep 0.05; done
  now=$(date +%s.%N)
  .venv/bin/python -c "import json; print(json.dumps({'bench': 'failover', 'kill': $k, 'seconds': round($now-$killed, 2)}))" | tee -a "$RESULTS"
  start_worker "$victim"
  wait_balanced
done
for id in a b c; do kill -TERM "${worker[$id]}"; done
wait || true
rows=$(committed "$lake/wide")
[ "$rows" = "$ROWS" ] || { echo "after $KILLS kills the table holds $rows of $ROWS rows" >&2; exit 1; }

.venv/bin/python - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
runs = [r for r in rows if r["bench"] == "rows"]
base = {p: statistics.median(r["rows_per_s"] for r in runs if r["workers"] == 1 and r["pinned"] == p) for p in (False, True)}
print(f"{'workers':>7} {'pinned':>6} {'rows/s (median)':>16} {'vs 1 worker':>11}")
for pinned in (False, True):
    for n in (1, 2, 3):
        got = [r["rows_per_s"] for r in runs if r["workers"] == n and r["pinned"] == pinned]
        if got:
            m = statistics.median(got)
            print(f"{n:>7} {str(pinned):>6} {m:>16,.0f} {m / base[pinned]:>10.2f}x")
fail = [r["seconds"] for r in rows if r["bench"] == "failover"]
if fail:
    print(f"failover over {len(fail)} kills: median {statistics.median(fail):.2f} s, max {max(fail):.2f} s")
PY
