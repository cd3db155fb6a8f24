#!/usr/bin/env bash
# Benchmark: a long-running consumer's memory does not grow with its commits (issue 61, 8).
# A consumer that follows its stream for months commits every second or so: whatever it kept
# per commit would reach the task's memory limit in days. This runs one consumer through
# COMMITS commits (default 5,000) on one table and samples its resident memory as it goes.
#
# The log is filled first (kappa-gen-sales rows, 4 shards, random keys); the consumer reads it
# with --flush-rows ROWS_PER_COMMIT/4 so that each commit is small and commits come back to
# back (a follower at 1,000 rows/s committing once a second makes the same commits, slower).
# It prints the RSS (VmRSS, MiB) after 500, 1,000, 2,000, ... commits and the ratio of the last
# to the one at 500. Target: the RSS at 5,000 commits within 10% of the RSS at 500.
#
#   bench/soak.sh [COMMITS] [ROWS_PER_COMMIT]        (defaults: 5000, 800)
#
# Writes under bench/out/soak/ (ignored by git); the samples in samples.csv (seconds, commits,
# rss_kib).
set -euo pipefail
cd "$(dirname "$0")/.."
COMMITS=${1:-5000}
PER_COMMIT=${2:-800}
OUT=bench/out/soak
ROWS=$((COMMITS * PER_COMMIT))
cargo build --release --locked -q -p kappa-bench -p kappa-producer -p kappa-consumer
rm -rf "$OUT"
mkdir -p "$OUT"
echo "==> $ROWS rows into the log ($COMMITS commits of $PER_COMMIT rows)" >&2
./target/release/kappa-gen-sales "$ROWS" > "$OUT/sales.csv"
./target/release/kappa-producer --input "$OUT/sales.csv" --to "log:$OUT/log" --shards 4 >/dev/null 2>&1
rm "$OUT/sales.csv"

KAPPA_LOG=warn ./target/release/kappa-consumer --from "log:$OUT/log" --lake "$OUT/lake" --table sales \
  --event-time sale_time --flush-rows $((PER_COMMIT / 4)) --flush-interval 1h --until-idle 2s >"$OUT/consumer.out" 2>"$OUT/consumer.err" &
pid=$!
echo "seconds,commits,rss_kib" > "$OUT/samples.csv"
start=$(date +%s.%N)
# Commits are counted by the Delta log's JSON files (checkpoints are Parquet); the newest
# listing, every second.
while kill -0 "$pid" 2>/dev/null; do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  commits=$(find "$OUT/lake/sales/_delta_log" -maxdepth 1 -name '*.json' 2>/dev/null | wc -l)
  [ -n "$rss" ] && echo "$(echo "$(date +%s.%N) - $start" | bc),$commits,$rss" >> "$OUT/samples.csv"
  sleep 1
done
wait "$pid" || { echo "the consumer failed:" >&2; tail -5 "$OUT/consumer.err" >&2; exit 1; }

python3 - "$OUT/samples.csv" "$COMMITS" <<'EOF'
import csv, sys
rows = [(float(r["seconds"]), int(r["commits"]), int(r["rss_kib"])) for r in csv.DictReader(open(sys.argv[1]))]
last_commits = max(c for _, c, _ in rows)
def rss_at(commits):
    # The largest RSS sampled up to that many commits: memory that grows shows in it.
    seen = [r for _, c, r in rows if c <= commits]
    return max(seen) / 1024 if seen else None
marks = [m for m in (500, 1000, 2000, 3000, 4000, 5000, 10000) if m <= last_commits] + [last_commits]
print(f"commits  max RSS so far (MiB)   ({rows[-1][0]:.0f} s, {last_commits} commits)")
for m in sorted(set(marks)):
    print(f"{m:7d}  {rss_at(m):8.1f}")
base, end = rss_at(500), rss_at(last_commits)
print(f"RSS at {last_commits} commits / RSS at 500: {end / base:.3f} (target <= 1.10)")
EOF
