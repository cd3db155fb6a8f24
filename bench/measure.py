#!/usr/bin/env python3
"""Runs one command and reports its wall time and peak memory (max RSS) as one JSON line.

Usage: measure.py NAME -- COMMAND [ARGS...]
Peak RSS comes from wait4() for that very child, so earlier runs do not leak into it.
Writeback of an earlier run's files is flushed (sync) before the clock starts.
"""
import json
import os
import subprocess
import sys
import time

name = sys.argv[1]
command = sys.argv[sys.argv.index("--") + 1:]
os.sync()
time.sleep(1)
start = time.monotonic()
child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
wall = time.monotonic() - start
code = os.waitstatus_to_exitcode(status)
result = {"name": name, "seconds": round(wall, 3), "max_rss_mib": round(usage.ru_maxrss / 1024, 1),
          "user_s": round(usage.ru_utime, 2), "sys_s": round(usage.ru_stime, 2), "exit": code}
print(json.dumps(result), flush=True)
sys.exit(0 if code == 0 else 1)
