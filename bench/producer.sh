#!/usr/bin/env bash
# Benchmark: CSV -> embedded log with kappa-producer, beside `cat` and DuckDB's CSV reader on
# the same file. Reproducible: the data comes from a deterministic generator.
#
#   bench/producer.sh [ROWS]        (default 10,000,000 rows, ~725 MB of CSV)
#
# Needs: a Rust toolchain and python3 3.11+ (DuckDB 2.x from bench/requirements.txt, installed
# into .venv-bench from PyPI by bench/lib.sh; its row names the release it ran on).
# Writes its data and results under bench/out/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=sales
source bench/lib.sh "${1:-10000000}"   # ROWS, OUT=bench/out, CSV=$OUT/sales-$ROWS.csv, BENCH_PY, measure

cargo build --release --locked -q -p kappa-bench -p kappa-producer

if [ ! -s "$CSV" ]; then
  echo "==> generating $ROWS rows into $CSV"
  ./target/release/kappa-gen-sales "$ROWS" > "$CSV"
fi
echo "==> input: $CSV ($(du -h "$CSV" | cut -f1), sha256 $(sha256sum "$CSV" | cut -c1-16)…)"
echo "==> DuckDB $DUCKDB_VERSION ($BENCH_VENV)"
RESULTS=$OUT/producer-results.jsonl
: > "$RESULTS"

# The floor: reading the file at all.
measure cat -- cat "$CSV"
# A fast CSV parser parsing every column (DuckDB, both cores), results discarded.
measure duckdb_read_csv -- "$BENCH_PY" -c "
import duckdb, sys
con = duckdb.connect()
con.execute(\"SELECT count(sale_id), count(customer_id), count(product_id), count(branch_id), max(sale_time), sum(quantity), sum(unit_price), sum(total_amount) FROM read_csv('$CSV', header=true)\").fetchall()
"
# kappa-producer into a fresh 4-shard log with its default durability (fsync every 1 s).
for run in 1 2 3; do
  rm -rf "$OUT/log"
  measure "kappa_producer_run$run" -- ./target/release/kappa-producer --input "$CSV" --to "log:$OUT/log" --shards 4 \
    --progress-interval 60s --summary-json "$OUT/producer-summary.json"
done
echo "==> log size: $(du -sh "$OUT/log" | cut -f1)"
"$BENCH_PY" - "$RESULTS" "$ROWS" "$DUCKDB_VERSION" <<'PY'
import json, sys
rows = int(sys.argv[2])
print(f"{'command':<38}{'seconds':>9}{'rows/s':>14}{'max RSS MiB':>13}")
for line in open(sys.argv[1]):
    r = json.loads(line)
    label = f"{r['name']} (DuckDB {sys.argv[3]})" if r["name"].startswith("duckdb") else r["name"]
    print(f"{label:<38}{r['seconds']:>9.2f}{rows / r['seconds']:>14,.0f}{r['max_rss_mib']:>13.1f}")
PY
rm -rf "$OUT/log"
