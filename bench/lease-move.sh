#!/usr/bin/env bash
# Benchmark (issue 60, 7): how long a lease move takes on a local lake whose taken shards last
# committed COMMITS commits ago: the taker opens the table, finds where each shard stands and
# fences them. The goal: under 1 s at 10,000 commits, found without walking the log (which a
# move did before 2026-11-29: one read per commit back to the shards' last commit). Prints
# the JSON line of each round and the median of ROUNDS rounds, each on a table of its own.
#
#   bench/lease-move.sh [COMMITS] [ROUNDS]      (defaults: 10000, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
COMMITS=${1:-10000}
ROUNDS=${2:-3}
cargo build --release -p kappa-bench --bin kappa-lease-move 2>&1 | grep -E "^(error|warning)" || true
mkdir -p bench/out
RESULTS=bench/out/lease-move.jsonl
: > "$RESULTS"
for round in $(seq "$ROUNDS"); do
  echo "==> round $round: $COMMITS commits since the taken shards' last commit"
  ./target/release/kappa-lease-move "$COMMITS" 8 | tee -a "$RESULTS"
done
python3 - "$RESULTS" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
moves = [r["lease_move_ms"] for r in rows]
walks = [r["reading_every_commit_since_ms"] for r in rows]
print(f"lease move: median {statistics.median(moves):.1f} ms (rounds: {', '.join(f'{m:.1f}' for m in moves)}); "
      f"reading every commit since: median {statistics.median(walks):.0f} ms, {rows[0]['commit_bytes_since'] / 1e6:.1f} MB")
PY
