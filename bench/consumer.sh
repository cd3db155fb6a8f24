#!/usr/bin/env bash
# Benchmark: the 10M-row CSV produced into the embedded log, then consumed into a
# day-partitioned Parquet lake — beside DuckDB's COPY ... TO ... (PARTITION_BY ...) on the same
# CSV with the same codec, in the same run, five alternating rounds compared by medians.
# Targets: consumer rows/s >= DuckDB's, consumer max RSS <= 256 MiB, Parquet <= 1.05x DuckDB's.
#
#   bench/consumer.sh [ROWS] [CODEC]      (defaults: 10,000,000 rows, snappy)
#
# Reuses bench/out/log when it holds ROWS events. Writes under bench/out/ (ignored by git).
# Needs a Rust toolchain and python3 (DuckDB is installed into .venv from PyPI if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

cargo build --release --locked -q -p kappa-bench -p kappa-producer -p kappa-consumer
.venv/bin/python -c 'import duckdb' 2>/dev/null || .venv/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
ensure_log

RESULTS=$OUT/consumer-results.jsonl
: > "$RESULTS"

# This machine's timings vary by ±25% from run to run (both programs alike): five alternating
# rounds, compared by their medians (with three, the ratio of one run to the next still moved
# by ±15%). Each round starts from an empty output.
for round in 1 2 3 4 5; do
  rm -rf "$OUT/duck" "$OUT/lake"
  measure duckdb_copy_partitioned -- .venv/bin/python -c "
import duckdb
con = duckdb.connect()
con.execute(\"\"\"COPY (SELECT *, year(sale_time) AS year, month(sale_time) AS month, day(sale_time) AS day
                  FROM read_csv('$CSV', header=true))
             TO '$OUT/duck' (FORMAT parquet, PARTITION_BY (year, month, day), COMPRESSION $CODEC)\"\"\")
"
  # --until-idle 0s: the consumer stops as soon as it has read the log to its end, then writes
  # and commits what it holds (included in its time), as DuckDB's COPY ends with its input.
  measure kappa_consumer -- ./target/release/kappa-consumer --from "log:$OUT/log" --lake "$OUT/lake" --table sales \
    --schema "$OUT/sales.schema.json" --event-time sale_time --partition-by day --compression "$CODEC" \
    --until-idle 0s --status-interval 10s \
    --summary-json "$OUT/consumer-summary.json"
done

.venv/bin/python - "$RESULTS" "$ROWS" "$OUT" <<'PY'
import json, os, statistics, sys
results, rows, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs if f.endswith(".parquet"))
sizes = {"duckdb_copy_partitioned": size(f"{out}/duck"), "kappa_consumer": size(f"{out}/lake")}
runs = {}
for line in open(results):
    r = json.loads(line)
    runs.setdefault(r["name"], []).append(r)
print(f"{'command':<26}{'median s':>9}{'rows/s':>14}{'max RSS MiB':>13}{'Parquet MiB':>13}{'CPU s':>8}   all seconds")
medians = {}
for name, rs in runs.items():
    medians[name] = statistics.median(r["seconds"] for r in rs)
    rss = max(r["max_rss_mib"] for r in rs)
    cpu = statistics.median(r["user_s"] + r["sys_s"] for r in rs)
    print(f"{name:<26}{medians[name]:>9.2f}{rows / medians[name]:>14,.0f}{rss:>13.1f}{sizes[name] / 2**20:>13.1f}{cpu:>8.2f}   {' / '.join(str(r['seconds']) for r in rs)}")
print(f"rows/s kappa/duckdb (medians): {medians['duckdb_copy_partitioned'] / medians['kappa_consumer']:.2f}")
print(f"Parquet bytes kappa/duckdb: {sizes['kappa_consumer'] / sizes['duckdb_copy_partitioned']:.3f}")
PY
