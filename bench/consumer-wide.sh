#!/usr/bin/env bash
# Benchmark: what users have rather than what suits the code. ROWS of kappa-gen-wide's table
# (16 columns with nulls, event times in random order over 120 days) produced into a 4-shard
# log, then consumed into a day-partitioned lake, beside DuckDB's COPY ... (PARTITION_BY ...) on
# the same CSV, three alternating rounds compared by medians, with the files and bytes each
# wrote. Issue 17's targets: rows/s >= DuckDB's, max RSS <= 256 MiB, Parquet <= 1.05x DuckDB's,
# files <= one per partition and shard per flush window.
#
#   bench/consumer-wide.sh [ROWS] [CODEC]      (defaults: 10,000,000 rows, snappy)
#
# Writes under bench/out/wide/ (ignored by git); reuses its log when it holds ROWS events.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-10000000}
CODEC=${2:-snappy}
OUT=bench/out/wide
CSV=$OUT/wide-$ROWS.csv
mkdir -p "$OUT"
[ -x .venv/bin/python ] || python3 -m venv .venv
cargo build --release --locked -q -p kappa-bench -p kappa-producer -p kappa-consumer
.venv/bin/python -c 'import duckdb' 2>/dev/null || .venv/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
if [ "$(cat "$OUT/log.rows" 2>/dev/null)" != "$ROWS" ]; then
  [ -s "$CSV" ] || ./target/release/kappa-gen-wide "$ROWS" > "$CSV"
  echo "==> producing $ROWS wide rows into $OUT/log"
  rm -rf "$OUT/log"
  ./target/release/kappa-producer --input "$CSV" --to "log:$OUT/log" --shards 4 --progress-interval 60s \
    --write-schema "$OUT/wide.schema.json" 2>&1 | grep -E "rows read|throughput"
  echo "$ROWS" > "$OUT/log.rows"
fi

RESULTS=$OUT/results.jsonl
: > "$RESULTS"
measure() { .venv/bin/python bench/measure.py "$@" | tee -a "$RESULTS"; }
for round in 1 2 3; do
  rm -rf "$OUT/duck" "$OUT/lake"
  measure duckdb_copy_partitioned -- .venv/bin/python -c "
import duckdb
con = duckdb.connect()
con.execute(\"\"\"COPY (SELECT *, year(event_time) AS year, month(event_time) AS month, day(event_time) AS day
                  FROM read_csv('$CSV', header=true))
             TO '$OUT/duck' (FORMAT parquet, PARTITION_BY (year, month, day), COMPRESSION $CODEC)\"\"\")
"
  measure kappa_consumer -- ./target/release/kappa-consumer --from "log:$OUT/log" --lake "$OUT/lake" --table wide \
    --schema "$OUT/wide.schema.json" --event-time event_time --partition-by day --compression "$CODEC" \
    --until-idle 0s --status-interval 10s
done

.venv/bin/python - "$RESULTS" "$ROWS" "$OUT" <<'PY'
import json, os, statistics, sys
results, rows, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def files(path):
    found = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith(".parquet")]
    return len(found), sum(os.path.getsize(p) for p in found)
written = {"duckdb_copy_partitioned": files(f"{out}/duck"), "kappa_consumer": files(f"{out}/lake")}
runs = {}
for line in open(results):
    r = json.loads(line)
    runs.setdefault(r["name"], []).append(r)
print(f"{'command':<26}{'median s':>9}{'rows/s':>14}{'max RSS MiB':>13}{'files':>8}{'Parquet MiB':>13}   all seconds")
medians = {}
for name, rs in runs.items():
    medians[name] = statistics.median(r["seconds"] for r in rs)
    rss = max(r["max_rss_mib"] for r in rs)
    count, size = written[name]
    print(f"{name:<26}{medians[name]:>9.2f}{rows / medians[name]:>14,.0f}{rss:>13.1f}{count:>8}{size / 2**20:>13.1f}   {' / '.join(str(r['seconds']) for r in rs)}")
print(f"rows/s kappa/duckdb (medians): {medians['duckdb_copy_partitioned'] / medians['kappa_consumer']:.2f}")
print(f"Parquet bytes kappa/duckdb: {written['kappa_consumer'][1] / written['duckdb_copy_partitioned'][1]:.3f}")
PY
