#!/usr/bin/env python3
"""Two builds of kappa-query on the same table: the same answers, and the speed of each question
(bench/questions.py), rounds alternating between the builds, medians. For a change of build
settings (optimization levels, panic strategy, allocator) that must not cost query speed.

Usage: query-builds.py A B LAKE TABLE DATA DIMENSION_CSV [ROUNDS]
  A, B       two kappa-query binaries (A is the reference: the ratio is A's time over B's)
  LAKE       a lake directory; TABLE the table in it; DATA `wide` or `flights`
  ROUNDS     rounds per question (default 7)

Each timing is the statement's own (`--summary-json` seconds: planning and execution) and the
whole process's (start, opening the table, the statement, output).
"""
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

from questions import questions

A, B, LAKE, TABLE, DATA, DIMENSION = sys.argv[1:7]
ROUNDS = int(sys.argv[7]) if len(sys.argv) > 7 else 7
DIMENSION_NAME, _, QUESTIONS = questions(DATA)


def same(a, b):
    """Equal answers, numbers to a relative 1e-9: a parallel sum's last digits depend on the
    order its partial sums meet, in either build (and rounding to a fixed number of digits
    still splits two such sums that straddle a rounding boundary)."""
    def field_same(x, y):
        try:
            return math.isclose(float(x), float(y), rel_tol=1e-9)
        except ValueError:
            return x == y
    a, b = [[line.split(",") for line in text.splitlines()] for text in (a, b)]
    return len(a) == len(b) and all(len(x) == len(y) and all(map(field_same, x, y)) for x, y in zip(a, b))


def run(binary, sql):
    with tempfile.NamedTemporaryFile(suffix=".json") as summary:
        command = [binary, "--lake", LAKE, "--table", TABLE, "--format", "csv", "--quiet",
                   "--register", f"{DIMENSION_NAME}={DIMENSION}", "--summary-json", summary.name, "--", sql]
        start = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True)
        process = time.monotonic() - start
        if done.returncode != 0:
            sys.exit(f"{binary} failed on {sql!r}: {done.stderr}")
        statement = json.load(summary)["seconds"]
    return done.stdout, statement, process


print(f"{'question':<22} {'A statement':>12} {'B statement':>12} {'A/B':>6} {'A process':>10} {'B process':>10} {'A/B':>6}")
for name, sql, _ in QUESTIONS:
    if not same(run(A, sql)[0], run(B, sql)[0]):  # (warms the page cache too)
        sys.exit(f"{name}: the builds' answers differ")
    times = {A: ([], []), B: ([], [])}
    for round in range(ROUNDS):
        for binary in ((A, B) if round % 2 == 0 else (B, A)):
            _, statement, process = run(binary, sql)
            times[binary][0].append(statement)
            times[binary][1].append(process)
    (a_s, a_p), (b_s, b_p) = ([statistics.median(t) for t in times[x]] for x in (A, B))
    print(f"{name:<22} {a_s:>11.3f}s {b_s:>11.3f}s {a_s / b_s:>6.2f} {a_p:>9.3f}s {b_p:>9.3f}s {a_p / b_p:>6.2f}", flush=True)
print(f"sizes: A {os.path.getsize(A) / 1e6:.1f} MB, B {os.path.getsize(B) / 1e6:.1f} MB (as given: strip them to compare what ships)")
