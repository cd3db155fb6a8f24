#!/usr/bin/env python3
"""Prices a month of kappa-lake from a measured run (bench/cost.sh's bench/out/cost.json), at a
stated load, beside Firehose + a Glue crawler + Athena for the same load.

How: requests that follow the rows (Kinesis PutRecords, GetRecords) are scaled by rows; those
that follow time (lease heartbeats and scans, commits and files per flush, writer records) are
scaled by hours. Prices are us-east-1 list prices (the PRICES table below, with the date they
were read): check them against the AWS price pages before relying on the totals.

    bench/cost.py bench/out/cost.json [ROWS_PER_SECOND] [ROW_BYTES]   (defaults 1000, 500)
"""
import json
import math
import sys

# us-east-1 list prices used (USD), as published by AWS (read 2025; they change: check).
PRICES = {
    "kinesis_shard_hour": 0.015,
    "kinesis_put_unit_million": 0.014,  # 25 KB payload units
    "dynamodb_write_million": 0.625,  # on-demand write request units
    "dynamodb_read_million": 0.125,  # on-demand read request units
    "s3_put_thousand": 0.005,  # PUT, COPY, POST, LIST
    "s3_get_thousand": 0.0004,  # GET and all other
    "s3_gb_month": 0.023,  # S3 Standard, first 50 TB
    "fargate_vcpu_hour": 0.04048,
    "fargate_gb_hour": 0.004445,
    "athena_tb": 5.0,
    "firehose_gb": 0.029,  # Direct PUT ingestion, first 500 TB, billed in 5 KB record increments
    "firehose_parquet_gb": 0.018,  # record format conversion
    "glue_dpu_hour": 0.44,  # crawler
    "public_ipv4_hour": 0.005,  # each task's public address (the stack's egress without a NAT gateway)
    "kms_key_month": 1.0,
    "cloudwatch_alarm_month": 0.10,
    "cloudwatch_metric_month": 0.30,
    "logs_ingest_gb": 0.50,
}
HOURS = 730


def main():
    run = json.load(open(sys.argv[1]))
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 1000.0
    row_bytes = float(sys.argv[3]) if len(sys.argv) > 3 else 500.0
    hours = run["seconds"] / 3600
    scale_rows = rate * 3600 * HOURS / run["rows"]  # the month's rows over the run's
    requests = run["requests"]
    methods = run.get("methods", {})
    per_hour = lambda n: n / hours * HOURS  # noqa: E731 (a time-driven count, for a month)
    rows_month = rate * 3600 * HOURS

    # Kinesis: shards for the load (1 MB/s and 1,000 records/s written per shard, with room),
    # PUT payload units per record (one row per record: a row under 25 KB is one unit).
    shards = max(math.ceil(rate * row_bytes / 1e6 / 0.8), math.ceil(rate / 800), 1)
    put_calls = requests.get("PutRecords", 0) * scale_rows
    get_calls = requests.get("GetRecords", 0)
    kinesis = shards * HOURS * PRICES["kinesis_shard_hour"] + rows_month / 1e6 * PRICES["kinesis_put_unit_million"]

    # DynamoDB leases: time-driven (heartbeats, scans, takes), not row-driven.
    ddb_writes = per_hour(sum(requests.get(a, 0) for a in ("PutItem", "DeleteItem", "UpdateItem")))
    ddb_reads = per_hour(sum(requests.get(a, 0) for a in ("Scan", "GetItem", "Query")))
    dynamodb = ddb_writes / 1e6 * PRICES["dynamodb_write_million"] + ddb_reads / 1e6 * PRICES["dynamodb_read_million"]

    # S3: per flush (commits, files, archive objects, writer records): time-driven at this load.
    s3_puts = per_hour(methods.get("PUT", 0) + methods.get("POST", 0) + methods.get("COPY", 0) + methods.get("LIST", 0))
    s3_gets = per_hour(methods.get("GET", 0) + methods.get("HEAD", 0))
    s3_deletes = per_hour(methods.get("DELETE", 0))
    s3_requests = s3_puts / 1000 * PRICES["s3_put_thousand"] + (s3_gets + s3_deletes) / 1000 * PRICES["s3_get_thousand"]
    # Storage: the lake's Parquet at the run's bytes per row (measured: the objects written),
    # plus the raw archive (zstd NDJSON, 30 days), the month's average (half of what it adds).
    # Scaled from the run's rows to ROW_BYTES-byte rows (compressed sizes follow the raw ones).
    measured_row_bytes = run["bytes_sent"] / run["rows"]
    widen = row_bytes / measured_row_bytes
    lake_bytes_per_row = run.get("lake_bytes", 0) / max(run["rows_written"], 1) * widen
    archive_bytes_per_row = run.get("archive_bytes", 0) / max(run["rows_written"], 1) * widen
    added_gb = rows_month * (lake_bytes_per_row + archive_bytes_per_row) / 1e9
    storage = added_gb / 2 * PRICES["s3_gb_month"]

    # Fargate: the stack's default, 2 tasks of 0.5 vCPU and 1 GB.
    fargate = 2 * HOURS * (0.5 * PRICES["fargate_vcpu_hour"] + 1 * PRICES["fargate_gb_hour"])

    # Athena, the star-schema question over one day: the day's rows, the columns it reads
    # (customer, amount, date: about a fifth of a wide row's compressed bytes).
    day_scan_tb = rate * 86400 * lake_bytes_per_row * 0.2 / 1e12
    athena_query = max(day_scan_tb, 10e6 / 1e12) * PRICES["athena_tb"]  # 10 MB minimum per query

    # What the stack adds around them: the tasks' public addresses, the lake's key, two alarms
    # and the two metrics their filters make, and the logs (a status line per task every 5 s,
    # ~400 bytes as JSON).
    addresses = 2 * HOURS * PRICES["public_ipv4_hour"]
    logs_gb = 2 * (HOURS * 3600 / 5) * 400 / 1e9
    around = PRICES["kms_key_month"] + 2 * PRICES["cloudwatch_alarm_month"] + 2 * PRICES["cloudwatch_metric_month"] + logs_gb * PRICES["logs_ingest_gb"]

    ours = {"Kinesis": kinesis, "DynamoDB (leases)": dynamodb, "S3 requests": s3_requests, "S3 storage": storage, "Fargate (2 tasks)": fargate,
            "Public IPv4 (2 tasks)": addresses, "KMS key, alarms, metrics, logs": around}

    # Firehose (Direct PUT) + Parquet conversion + an hourly Glue crawler, same rows.
    billed_gb = rows_month * max(row_bytes, 5000) / 1e9  # ingestion: each record billed as at least 5 KB
    converted_gb = rows_month * row_bytes / 1e9  # conversion, assumed on the bytes sent
    firehose = billed_gb * PRICES["firehose_gb"] + converted_gb * PRICES["firehose_parquet_gb"]
    crawler = HOURS * 2 * (10 / 60) * PRICES["glue_dpu_hour"]  # hourly, 2 DPU, 10 minutes each
    theirs = {"Firehose ingestion + Parquet conversion": firehose, "Glue crawler (hourly)": crawler, "S3 storage": storage}
    # The same with rows packed into records of at least 5 KB (a producer that batches), and a
    # Glue table defined once instead of crawled.
    packed = converted_gb * (PRICES["firehose_gb"] + PRICES["firehose_parquet_gb"])
    theirs_packed = {"Firehose, rows packed into 5 KB records": packed, "S3 storage": storage}

    print(f"measured: {run['rows']:,} rows in {run['seconds']} s; requests {json.dumps(requests, sort_keys=True)}; S3 by method {json.dumps(methods, sort_keys=True)}")
    print(f"load: {rate:,.0f} rows/s of {row_bytes:.0f} bytes = {rows_month / 1e9:.2f} billion rows a month (the run's rows: {measured_row_bytes:.0f} bytes)")
    print(f"per month: Kinesis {shards} shards, {put_calls:,.0f} PutRecords calls ({rows_month / max(put_calls, 1):,.0f} rows each); "
          f"{get_calls} GetRecords in the run; DynamoDB {ddb_writes:,.0f} writes, {ddb_reads:,.0f} reads; S3 {s3_puts:,.0f} PUTs, "
          f"{s3_gets:,.0f} GETs, {s3_deletes:,.0f} DELETEs; {lake_bytes_per_row:.1f} B/row in Parquet, {archive_bytes_per_row:.1f} B/row archived")
    print("| kappa-lake | USD/month |\n|---|---:|")
    for k, v in ours.items():
        print(f"| {k} | {v:,.2f} |")
    print(f"| **total** | **{sum(ours.values()):,.2f}** |")
    print(f"\nAthena, the star-schema question over one day: {athena_query:.4f} USD per query ({day_scan_tb * 1e3:.2f} GB scanned)")
    print("\n| Firehose + Glue crawler + Athena | USD/month |\n|---|---:|")
    for k, v in theirs.items():
        print(f"| {k} | {v:,.2f} |")
    print(f"| **total** | **{sum(theirs.values()):,.2f}** |")
    print("\n| Firehose, packed records, no crawler | USD/month |\n|---|---:|")
    for k, v in theirs_packed.items():
        print(f"| {k} | {v:,.2f} |")
    print(f"| **total** | **{sum(theirs_packed.values()):,.2f}** |")


if __name__ == "__main__":
    main()
