#!/usr/bin/env bash
# Benchmark: a long-running consumer's memory does not grow with its commits (issue 61, 8).
# A consumer that follows its stream for months commits every second or so: whatever it kept
# per commit would reach the task's memory limit in days. This runs one consumer through
# COMMITS commits (default 5,000) on one table and samples its resident memory as it goes.
#
# The producer sends kappa-gen-sales rows at a steady rate into the embedded log (4 shards) while
# the consumer follows it with a short --flush-interval, so commits come one after the other
# as a follower's do (a follower at 1,000 rows/s committing once a second makes the same
# commits, ten times slower). It prints, after 500, 1,000, 2,000, ... commits, the RSS (VmRSS,
# MiB) at the mark (the median of the samples within 50 commits of it), the largest sample so
# far (a compaction pass's passing peak shows there), and the median and 90th percentile of the
# 500 commits before; and the ratios to the 500 mark. Target: the RSS at 5,000 commits within
# 10% of the RSS at 500.
#
#   bench/soak.sh [COMMITS] [ROWS_PER_COMMIT] [FLUSH_INTERVAL]    (defaults: 5000, 1000, 100ms)
#
# Writes under bench/out/soak/ (ignored by git); the samples in samples.csv (seconds, commits,
# rss_kib).
set -euo pipefail
cd "$(dirname "$0")/.."
COMMITS=${1:-5000}
PER_COMMIT=${2:-1000}
INTERVAL=${3:-100ms}
OUT=bench/out/soak
ROWS=$((COMMITS * PER_COMMIT))
MS=$(python3 -c "import re,sys; v,u=re.fullmatch(r'(\d+)(ms|s)', sys.argv[1]).groups(); print(int(v)*(1 if u=='ms' else 1000))" "$INTERVAL")
RATE=$((PER_COMMIT * 1000 / MS))
cargo build --release --locked -q -p kappa-bench -p kappa-producer -p kappa-consumer
rm -rf "$OUT"
mkdir -p "$OUT"
./target/release/kappa-gen-sales "$ROWS" > "$OUT/sales.csv"
# (A commit takes longer than a 100 ms interval here: ~5 commits a second, so about half of
# COMMITS are made; the table below counts those made.)
echo "==> $ROWS rows at $RATE rows/s for $((ROWS / RATE)) s, flushes every $INTERVAL" >&2
./target/release/kappa-producer --input "$OUT/sales.csv" --to "log:$OUT/log" --shards 4 --rate "$RATE" >"$OUT/producer.out" 2>&1 &
producer=$!
while [ ! -s "$OUT/log/log.json" ]; do sleep 0.1; done
KAPPA_LOG=warn ./target/release/kappa-consumer --from "log:$OUT/log" --lake "$OUT/lake" --table sales \
  --event-time sale_time --flush-interval "$INTERVAL" --until-idle 5s ${SOAK_ARGS:-} >"$OUT/consumer.out" 2>"$OUT/consumer.err" &
pid=$!
sleep 1
echo "seconds,commits,rss_kib" > "$OUT/samples.csv"
start=$(date +%s%N)
# Commits are counted by the Delta log's JSON files (checkpoints are Parquet), every second.
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  commits=$( (find "$OUT/lake/sales/_delta_log" -maxdepth 1 -name '*.json' 2>/dev/null || true) | wc -l)
  if [ -n "$rss" ]; then echo "$(( ($(date +%s%N) - start) / 1000000000 )),$commits,$rss" >> "$OUT/samples.csv"; fi
  sleep 1
done
wait "$producer"
wait "$pid" || { echo "the consumer failed:" >&2; tail -5 "$OUT/consumer.err" >&2; exit 1; }
rm "$OUT/sales.csv"

python3 - "$OUT/samples.csv" "$COMMITS" <<'EOF'
import csv, statistics, sys
rows = [(float(r["seconds"]), int(r["commits"]), int(r["rss_kib"])) for r in csv.DictReader(open(sys.argv[1]))]
last_commits = max(c for _, c, _ in rows)
def rss_at(commits):
    # The largest RSS sampled up to that many commits: memory that grows shows in it, and so
    # does every passing peak (a compaction pass, a checkpoint) that the run reached by then.
    seen = [r for _, c, r in rows if c <= commits]
    return max(seen) / 1024 if seen else None
def window(commits):
    # The samples of the 500 commits up to that many: where a follower's memory stands then,
    # its median and 90th percentile.
    seen = sorted(r / 1024 for _, c, r in rows if commits - 500 < c <= commits)
    return (statistics.median(seen), seen[int(0.9 * (len(seen) - 1))]) if seen else (float("nan"), float("nan"))
def at_mark(commits):
    # The RSS when the run stood at that many commits: the median of the samples within 50
    # commits of it (a sample a second, ~5 commits a second here).
    seen = [r / 1024 for _, c, r in rows if abs(c - commits) <= 50]
    return statistics.median(seen) if seen else float("nan")
marks = [m for m in (500, 1000, 2000, 3000, 4000, 5000, 10000) if m <= last_commits] + [last_commits]
print(f"commits  at the mark  max RSS so far  median  p90 of the last 500 commits (MiB)   ({rows[-1][0]:.0f} s, {last_commits} commits)")
for m in sorted(set(marks)):
    median, p90 = window(m)
    print(f"{m:7d}  {at_mark(m):11.1f}  {rss_at(m):13.1f}  {median:6.1f}  {p90:5.1f}")
last_mark = max(m for m in marks if m <= 10000 and m % 1000 == 0) if last_commits >= 1000 else last_commits
print(f"RSS at {last_mark} commits / at 500: {at_mark(last_mark) / at_mark(500):.3f} (target <= 1.10)")
base, end = rss_at(500), rss_at(last_commits)
print(f"max RSS so far at {last_commits} commits / at 500: {end / base:.3f}")
print(f"median of the last 500 commits at {last_commits} / at 500: {window(last_commits)[0] / window(500)[0]:.3f}; "
      f"90th percentile: {window(last_commits)[1] / window(500)[1]:.3f}")
EOF
