# Sourced by the benchmark scripts (from the repository root, with the script's arguments):
# their settings, and the log of generated data they measure. DATA names the data set and its
# generator: `sales` (kappa-gen-sales, in time order, 8 columns) unless the script sets `wide`
# (kappa-gen-wide: random time order, 16 columns, nulls), which lives in bench/out/wide/.
ROWS=${1:-10000000}
CODEC=${2:-snappy}
DATA=${DATA:-sales}
OUT=bench/out
[ "$DATA" = sales ] || OUT=bench/out/$DATA
CSV=$OUT/$DATA-$ROWS.csv
mkdir -p "$OUT"
[ -x .venv/bin/python ] || python3 -m venv .venv

# Produces ROWS generated rows of $DATA into $OUT/log (4 shards) and their schema into
# $OUT/$DATA.schema.json, unless the log already holds them.
ensure_log() {
  if [ -s "$OUT/log/log.json" ] && [ -s "$OUT/$DATA.schema.json" ] && [ "$(cat "$OUT/log.rows" 2>/dev/null)" = "$ROWS" ]; then
    return
  fi
  [ -s "$CSV" ] || "./target/release/kappa-gen-$DATA" "$ROWS" > "$CSV"
  echo "==> producing $ROWS rows into $OUT/log"
  rm -rf "$OUT/log"
  ./target/release/kappa-producer --input "$CSV" --to "log:$OUT/log" --shards 4 --progress-interval 60s \
    --write-schema "$OUT/$DATA.schema.json" 2>&1 | grep -E "rows read|throughput"
  echo "$ROWS" > "$OUT/log.rows"
}

# Runs one measured command (bench/measure.py), its JSON line appended to $RESULTS.
measure() { .venv/bin/python bench/measure.py "$@" | tee -a "$RESULTS"; }
