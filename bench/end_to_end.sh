#!/usr/bin/env bash
# Benchmark: the whole path, CSV -> kappa-producer -> embedded log -> kappa-consumer -> lake,
# timed as one command, beside DuckDB's COPY ... TO ... (PARTITION_BY ...) from the same CSV
# with the same codec, five alternating rounds compared by medians (issue 17's target: at most
# 2x DuckDB's time).
#
#   bench/end_to_end.sh [ROWS] [CODEC] [DATA]      (defaults: 10,000,000 rows, snappy, wide)
#
# DATA as in bench/consumer.sh (wide: random time order, 16 columns, nulls, day partitions).
# Each round starts from an empty log and lake; the producer writes a fresh 4-shard log with
# its default durability and the consumer reads it to its end (--until-idle 0s). DuckDB is 2.x
# (bench/requirements.txt, in .venv-bench: bench/lib.sh); its row names the release it ran on.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${3:-wide}
case "$DATA" in
  sales) TIME_COLUMN=sale_time KEY=() ;;
  wide) TIME_COLUMN=event_time KEY=() ;;
  *) echo "error: DATA $DATA: use sales or wide" >&2; exit 2 ;;
esac
source bench/lib.sh

cargo build --release --locked -q -p kappa-bench -p kappa-producer -p kappa-consumer
echo "==> DuckDB $DUCKDB_VERSION ($BENCH_VENV) beside kappa-producer then kappa-consumer"
[ -s "$CSV" ] || "./target/release/kappa-gen-$DATA" "$ROWS" > "$CSV"

RESULTS=$OUT/end-to-end-results.jsonl
: > "$RESULTS"
E2E=$OUT/e2e
for round in 1 2 3 4 5; do
  rm -rf "$OUT/duck" "$E2E"
  measure duckdb_copy_partitioned -- "$BENCH_PY" bench/duckdb_copy.py "$CSV" "$OUT/duck" "$TIME_COLUMN" day "$CODEC"
  mkdir -p "$E2E"
  measure kappa_producer_then_consumer -- bash -c "
set -e
./target/release/kappa-producer --input '$CSV' --to 'log:$E2E/log' --shards 4 --progress-interval 60s ${KEY[*]} --write-schema '$E2E/schema.json' >/dev/null 2>&1
./target/release/kappa-consumer --from 'log:$E2E/log' --lake '$E2E/lake' --table '$DATA' --schema '$E2E/schema.json' \
  --event-time '$TIME_COLUMN' --partition-by day --compression '$CODEC' --until-idle 0s --status-interval 60s >/dev/null 2>&1
"
done

"$BENCH_PY" - "$RESULTS" "$ROWS" "$DUCKDB_VERSION" <<'PY'
import json, statistics, sys
duckdb_version = sys.argv[3]
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs.setdefault(r["name"], []).append(r)
medians = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
for name, rs in runs.items():
    rss = max(r["max_rss_mib"] for r in rs)
    label = f"{name} (DuckDB {duckdb_version})" if name.startswith("duckdb") else name
    print(f"{label:<46}{medians[name]:>9.2f} s   max RSS {rss:>7.1f} MiB   all: {' / '.join(str(r['seconds']) for r in rs)}")
print(f"time kappa (producer + consumer) / DuckDB {duckdb_version} COPY (medians): {medians['kappa_producer_then_consumer'] / medians['duckdb_copy_partitioned']:.2f}x")
PY
rm -rf "$E2E"
