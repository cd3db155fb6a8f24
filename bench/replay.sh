#!/usr/bin/env bash
# Benchmark: rebuilding a lake from the log. On the 10M-row log that bench/consumer.sh
# produces, the live consumer builds generation 1 and kappa-replay rebuilds it as generation 2
# (same settings), alternately three times, then once more with --verify; target: replay
# rows/s >= consumer rows/s.
#
#   bench/replay.sh [ROWS] [CODEC]      (defaults: 10,000,000 rows, snappy)
#
# Reuses bench/out/log when it holds ROWS events (run bench/consumer.sh first, or this script
# produces it). Writes under bench/out/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

cargo build --release --locked -q -p kappa-bench -p kappa-producer -p kappa-consumer -p kappa-replay
ensure_log

RESULTS=$OUT/replay-results.jsonl
: > "$RESULTS"
SETTINGS=(--table sales --event-time sale_time --partition-by day --compression "$CODEC")
# This machine's timings vary by ±25% from run to run: three alternating rounds, medians.
for round in 1 2 3; do
  rm -rf "$OUT/replay-lake"
  measure kappa_consumer -- ./target/release/kappa-consumer --from "log:$OUT/log" --lake "$OUT/replay-lake" "${SETTINGS[@]}" \
    --until-idle 100ms --status-interval 10s
  measure kappa_replay -- ./target/release/kappa-replay --from "log:$OUT/log" --lake "$OUT/replay-lake" "${SETTINGS[@]}" \
    --progress-interval 10s --summary-json "$OUT/replay-summary.json"
done
measure kappa_replay_verify -- ./target/release/kappa-replay --from "log:$OUT/log" --lake "$OUT/replay-lake" "${SETTINGS[@]}" \
  --verify --progress-interval 10s

"$BENCH_PY" - "$RESULTS" "$ROWS" <<'PY'
import json, statistics, sys
results, rows = sys.argv[1], int(sys.argv[2])
runs = {}
for line in open(results):
    r = json.loads(line)
    runs.setdefault(r["name"], []).append(r)
print(f"{'command':<22}{'runs':>5}{'median s':>10}{'rows/s':>14}{'max RSS MiB':>13}   all seconds")
for name, rs in runs.items():
    median = statistics.median(r["seconds"] for r in rs)
    rss = max(r["max_rss_mib"] for r in rs)
    print(f"{name:<22}{len(rs):>5}{median:>10.2f}{rows / median:>14,.0f}{rss:>13.1f}   {' / '.join(str(r['seconds']) for r in rs)}")
PY
