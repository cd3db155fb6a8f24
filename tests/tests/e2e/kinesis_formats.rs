//! Kinesis as other tools write it: KPL aggregates made by AWS's reference library
//! (`aws-kinesis-agg`), read exactly once across kills in the middle of aggregates, damaged
//! ones quarantined with the reason; aggregates our producer packs, unpacked by that library to
//! the rows sent; CloudWatch Logs subscription batches as one row per log event.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kappa_tests::{Moto, aws_config, expect_status, kappa, python, read_lake, run};
use serde_json::Value;

use crate::support::{kill_repeatedly, summary};

async fn create_stream(endpoint: &str, stream: &str, shards: i32) {
    let client = aws_sdk_kinesis::Client::new(&aws_config(endpoint).await);
    client.create_stream().stream_name(stream).shard_count(shards).send().await.unwrap();
    for _ in 0..200 {
        let summary = client.describe_stream_summary().stream_name(stream).send().await.unwrap();
        if summary.stream_description_summary().unwrap().stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("stream {stream} never became ACTIVE");
}

/// Python that puts records onto `stream` at moto's `endpoint` with boto3: `records` is a
/// Python expression of a list of (partition key, explicit hash key or None, bytes).
fn put_records_python(endpoint: &str, stream: &str, setup: &str, records: &str) -> String {
    format!(
        "import boto3, json, gzip\n\
         import aws_kinesis_agg.aggregator as agg\n\
         client = boto3.client('kinesis', endpoint_url='{endpoint}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\n\
         {setup}\n\
         for pk, ehk, data in {records}:\n\
         \x20   args = dict(StreamName='{stream}', PartitionKey=pk, Data=data)\n\
         \x20   if ehk: args['ExplicitHashKey'] = ehk\n\
         \x20   client.put_record(**args)\n"
    )
}

fn consumer(endpoint: &str, stream: &str, lake: &Path, table: &str, extra: &[&str]) -> std::process::Command {
    let mut command = kappa("kappa-consumer", Some(endpoint));
    command.args(["--from", &format!("kinesis:{stream}"), "--table", table, "--poll-interval", "200ms", "--shard-refresh", "1s", "--until-idle", "3s"]);
    command.arg("--lake").arg(lake).args(extra);
    command
}

fn quarantined(table: &Path) -> Vec<Value> {
    let mut records = Vec::new();
    let Ok(generations) = std::fs::read_dir(table.join("_errors")) else { return records };
    for generation in generations {
        for file in std::fs::read_dir(generation.unwrap().path()).unwrap() {
            let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
            records.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
        }
    }
    records
}

/// (count, distinct ids) as DuckDB and python deltalake read the table.
fn outside_counts(table: &Path) -> (String, String) {
    let duck = kappa_tests::duckdb_delta(table, "SELECT count(*), count(DISTINCT id), sum(id) FROM {table}");
    let delta = kappa_tests::python_deltalake(
        table,
        None,
        "t = table.to_pyarrow_table(); ids = t.column('id').to_pylist(); print([(len(ids), len(set(ids)), sum(ids))])",
    );
    (duck.trim().to_string(), delta.trim().to_string())
}

#[tokio::test]
async fn kpl_aggregates_of_the_aws_library_are_read_exactly_once_across_kills_and_a_damaged_one_is_quarantined() {
    let moto = Moto::start();
    create_stream(&moto.endpoint, "agg", 2).await;
    // 3,000 rows in aggregates of at most 4 KiB (~45 rows each), keys spread over both
    // shards; then one plain record, and one aggregate whose MD5 trailer is damaged.
    let setup = "rows = [json.dumps({'id': i, 'shop': 's%d' % (i % 7), 'amount': i * 1.25, 'at': '2025-03-%02dT10:00:00Z' % (19 + i % 4)}).encode() for i in range(3000)]\n\
                 out = []\n\
                 a = agg.RecordAggregator(max_size=4096)\n\
                 for i, row in enumerate(rows):\n\
                 \x20   full = a.add_user_record('key-%d' % (i % 13), row)\n\
                 \x20   if full: out.append(full.get_contents())\n\
                 last = a.clear_and_get()\n\
                 if last: out.append(last.get_contents())\n\
                 out.append(('plain', None, json.dumps({'id': 3000, 'shop': 'plain', 'amount': 1.0, 'at': '2025-03-19T11:00:00Z'}).encode()))\n\
                 a.add_user_record('bad', json.dumps({'id': 99999, 'shop': 'x', 'amount': 0.0, 'at': '2025-03-19T11:00:00Z'}).encode())\n\
                 pk, ehk, data = a.clear_and_get().get_contents()\n\
                 out.append((pk, ehk, data[:-1] + bytes([data[-1] ^ 0xff])))\n\
                 print(len(out))";
    let printed = python(&put_records_python(&moto.endpoint, "agg", setup, "out"));
    let records: usize = printed.trim().parse().unwrap();
    assert!(records > 60, "{records} Kinesis records hold the 3,000 rows");

    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // Small flushes: commits fall inside aggregates, so a kill resumes in the middle of one.
    let args = ["--event-time", "at", "--flush-rows", "17", "--flush-interval", "300ms"];
    let kills = kill_repeatedly(5, (900, 2_500), Duration::from_secs(120), || consumer(&moto.endpoint, "agg", &lake, "t", &args));
    eprintln!("{kills} kills");
    let summary_path = dir.path().join("summary.json");
    let output = run(consumer(&moto.endpoint, "agg", &lake, "t", &args).arg("--summary-json").arg(&summary_path));
    expect_status(&output, 0);

    let table = lake.join("t");
    let expected_sum: u64 = (0..=3000).sum();
    let (duck, delta) = outside_counts(&table);
    assert_eq!(duck, format!("[(3001, 3001, {expected_sum})]"), "DuckDB: every user record once");
    assert_eq!(delta, format!("[(3001, 3001, {expected_sum})]"), "python deltalake: every user record once");
    // Values as sent, in the partition of their time.
    let rows = read_lake(&table.join("gen-000001"));
    let row = rows.iter().find(|r| r.row["id"] == 1234).unwrap();
    assert_eq!((row.row["shop"].as_str(), row.row["amount"].as_f64(), row.partition.as_str()), (Some("s2"), Some(1542.5), "year=2025/month=03/day=21"));

    // Commits fell inside aggregates: positions `<sequence>.<index>` are in the log.
    let inside = std::fs::read_dir(table.join("_delta_log")).unwrap().any(|entry| {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        text.split('"').any(|token| {
            token
                .split_once('.')
                .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit()))
        })
    });
    assert!(inside, "a commit recorded a position inside an aggregate");
    let bad = quarantined(&table);
    assert_eq!(bad.len(), 1, "{bad:#?}");
    assert!(bad[0]["reason"].as_str().unwrap().contains("fails its MD5 check"), "{bad:#?}");
    assert!(!bad[0]["seq"].as_str().unwrap().contains('.'), "the whole record is quarantined, at its own position");
    // A replay of the stream reads the aggregates alike: the same rows.
    let replay_summary = dir.path().join("replay.json");
    let output = run(kappa("kappa-replay", Some(&moto.endpoint))
        .args(["--from", "kinesis:agg", "--table", "t", "--event-time", "at", "--verify", "--compare", "--poll-interval", "200ms", "--summary-json"])
        .arg(&replay_summary)
        .arg("--lake")
        .arg(&lake));
    expect_status(&output, 0);
    let s = summary(&replay_summary);
    assert_eq!((s["rows_written"].as_u64(), s["compare"]["ok"].as_bool()), (Some(3001), Some(true)), "{s}");
    // Its bytes as they arrived, base64 (they are not text): F3 89 9A is "84ma".
    assert_eq!(bad[0]["payload_encoding"], "base64");
    assert!(bad[0]["payload"].as_str().unwrap().starts_with("84ma"), "{bad:#?}");
}

#[tokio::test]
async fn our_aggregates_unpack_with_the_aws_library_to_the_rows_sent_in_a_twentieth_of_the_calls() {
    let moto = Moto::start();
    create_stream(&moto.endpoint, "plain", 4).await;
    create_stream(&moto.endpoint, "packed", 4).await;
    let dir = tempfile::tempdir().unwrap();
    let mut calls = BTreeMap::new();
    let mut bytes = BTreeMap::new();
    for (stream, extra) in [("plain", &[][..]), ("packed", &["--aggregate"][..])] {
        let summary_path = dir.path().join(format!("{stream}.json"));
        let output = run(kappa("kappa-producer", Some(&moto.endpoint))
            .args(crate::support::sales_args())
            .args(["--to", &format!("kinesis:{stream}"), "--loop", "50"])
            .args(extra)
            .arg("--summary-json")
            .arg(&summary_path));
        expect_status(&output, 0);
        let summary = summary(&summary_path);
        calls.insert(stream, summary["requests"]["PutRecords"].as_u64().unwrap());
        assert_eq!(summary["events_sent"], 20_000, "{summary}");
        // Bytes of the rows sent (not of the records): the same with or without --aggregate.
        bytes.insert(stream, summary["bytes_sent"].as_u64().unwrap());
    }
    // Read both streams back with boto3; unpack with the AWS library; compare row for row.
    let code = format!(
        "import boto3, json, base64\n\
         from aws_kinesis_agg.deaggregator import iter_deaggregate_records\n\
         client = boto3.client('kinesis', endpoint_url='{}', region_name='us-east-1', aws_access_key_id='test', aws_secret_access_key='test')\n\
         def read(stream):\n\
         \x20   rows, records = [], 0\n\
         \x20   for shard in client.list_shards(StreamName=stream)['Shards']:\n\
         \x20       it = client.get_shard_iterator(StreamName=stream, ShardId=shard['ShardId'], ShardIteratorType='TRIM_HORIZON')['ShardIterator']\n\
         \x20       while it:\n\
         \x20           out = client.get_records(ShardIterator=it, Limit=10000)\n\
         \x20           if not out['Records']: break\n\
         \x20           records += len(out['Records'])\n\
         \x20           for user in iter_deaggregate_records(out['Records'], data_format='Boto3'):\n\
         \x20               k = user['kinesis']\n\
         \x20               data = base64.b64decode(k['data']) if k.get('aggregated') else k['data']\n\
         \x20               rows.append((k['partitionKey'], json.loads(data)))\n\
         \x20           it = out.get('NextShardIterator')\n\
         \x20   return sorted(rows, key=lambda r: r[1]['_kappa_id']), records\n\
         plain, plain_records = read('plain')\n\
         packed, packed_records = read('packed')\n\
         print(json.dumps([len(plain), plain_records, len(packed), packed_records, plain == packed]))",
        moto.endpoint
    );
    let result: Value = serde_json::from_str(python(&code).trim()).unwrap();
    eprintln!("{result}");
    let rows = result[0].as_u64().unwrap();
    assert_eq!(rows, 20_000, "{result}");
    assert_eq!(result[1], rows, "one record per row without --aggregate");
    assert_eq!(result[2], rows, "the AWS library unpacks every row from our aggregates");
    assert!(result[3].as_u64().unwrap() * 20 <= rows, "aggregates hold 20+ rows each: {result}");
    assert_eq!(result[4], true, "the same rows (values, identities) with the same partition keys");
    assert!(calls["packed"] * 20 <= calls["plain"], "PutRecords calls: {calls:?}");
    assert!(bytes["plain"] > 2_000_000 && bytes["plain"] == bytes["packed"], "bytes sent: {bytes:?}");

    // And the consumer reads them back into the same table a plain stream gives.
    let lake = dir.path().join("lake");
    for stream in ["plain", "packed"] {
        let output = run(&mut consumer(&moto.endpoint, stream, &lake, stream, &[]));
        expect_status(&output, 0);
    }
    let digest = |table: &str| {
        let mut rows: Vec<String> = read_lake(&lake.join(table).join("gen-000001")).iter().map(|r| serde_json::to_string(&r.row).unwrap()).collect();
        rows.sort();
        rows
    };
    assert_eq!(digest("packed").len() as u64, rows);
    assert_eq!(digest("packed"), digest("plain"));
}

#[tokio::test]
async fn cloudwatch_logs_batches_become_a_row_per_log_event_in_the_hour_of_its_timestamp() {
    let moto = Moto::start();
    create_stream(&moto.endpoint, "logs", 2).await;
    // Three batches as a subscription filter writes them (gzip JSON), a control message first.
    let setup = "def batch(kind, events):\n\
                 \x20   return gzip.compress(json.dumps({'messageType': kind, 'owner': '123456789012', 'logGroup': '/aws/lambda/orders', 'logStream': '2026/11/25/[$LATEST]abc', 'subscriptionFilters': ['to-kinesis'], 'logEvents': events}).encode())\n\
                 def event(i, ts):\n\
                 \x20   msg = json.dumps({'order': i, 'total': i + 0.5}) if i % 2 == 0 else 'START RequestId: %d' % i\n\
                 \x20   return {'id': str(37921638716346193785616281516424925217284478553236471808 + i), 'timestamp': ts, 'message': msg}\n\
                 base = 1764064800000\n\
                 out = [('c', None, batch('CONTROL_MESSAGE', [{'id': '', 'timestamp': base, 'message': 'CWL CONTROL MESSAGE: Checking health of destination Kinesis stream.'}]))]\n\
                 out.append(('a', None, batch('DATA_MESSAGE', [event(i, base + i * 60000) for i in range(50)])))\n\
                 out.append(('b', None, batch('DATA_MESSAGE', [event(i, base + 3600000 + i * 1000) for i in range(50, 80)])))\n\
                 out.append(('c', None, batch('DATA_MESSAGE', [event(i, base + 7200000) for i in range(80, 81)])))";
    python(&put_records_python(&moto.endpoint, "logs", setup, "out"));
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let summary_path = dir.path().join("summary.json");
    let output = run(consumer(&moto.endpoint, "logs", &lake, "t", &["--payload", "cloudwatch-logs", "--parse-message", "json", "--partition-by", "hour"])
        .arg("--summary-json")
        .arg(&summary_path));
    expect_status(&output, 0);
    let rows = read_lake(&lake.join("t/gen-000001"));
    assert_eq!(rows.len(), 81, "a row per log event; the control message holds none");
    let mut per_hour: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &rows {
        *per_hour.entry(row.partition.as_str()).or_default() += 1;
    }
    // base = 2025-11-25T10:00Z; 50 events a minute apart → hour 10; 30 at 11:00 + s; 1 at 12:00.
    let expected: BTreeMap<&str, usize> =
        [("year=2025/month=11/day=25/hour=10", 50), ("year=2025/month=11/day=25/hour=11", 30), ("year=2025/month=11/day=25/hour=12", 1)].into_iter().collect();
    assert_eq!(per_hour, expected);
    let four = rows.iter().find(|r| r.row.get("message_order") == Some(&Value::from(4))).unwrap_or_else(|| panic!("a parsed message: {:?}", rows[0].row));
    assert_eq!(four.row["message"], "{\"order\": 4, \"total\": 4.5}");
    assert_eq!(four.row["log_group"], "/aws/lambda/orders");
    assert_eq!(four.row["id"], "37921638716346193785616281516424925217284478553236471812");
    assert_eq!(four.row["timestamp"], 1764064800000i64 + 4 * 60000);
    let five = rows.iter().find(|r| r.row["message"] == "START RequestId: 5").unwrap();
    assert!(five.row.get("message_order").is_none_or(Value::is_null), "a message that is text adds no column value");
    assert!(quarantined(&lake.join("t")).is_empty());
    assert_eq!(summary(&summary_path)["rows_written"], 81);
    // kappa-replay reads the batches as the consumer did (given the same --payload).
    let replay_summary = dir.path().join("replay.json");
    let output = run(kappa("kappa-replay", Some(&moto.endpoint))
        .args(["--from", "kinesis:logs", "--table", "t", "--payload", "cloudwatch-logs", "--parse-message", "json", "--partition-by", "hour"])
        .args(["--verify", "--compare", "--poll-interval", "200ms", "--summary-json"])
        .arg(&replay_summary)
        .arg("--lake")
        .arg(&lake));
    expect_status(&output, 0);
    let s = summary(&replay_summary);
    assert_eq!((s["rows_written"].as_u64(), s["compare"]["ok"].as_bool()), (Some(81), Some(true)), "{s}");
}

#[tokio::test]
async fn start_latest_and_at_timestamp_skip_what_came_before_and_a_table_with_positions_resumes_after_them() {
    let moto = Moto::start();
    create_stream(&moto.endpoint, "s", 2).await;
    let put = |first: u32, count: u32| {
        let setup = format!("rows = [('k%d' % i, None, json.dumps({{'id': i}}).encode()) for i in range({first}, {})]", first + count);
        python(&put_records_python(&moto.endpoint, "s", &setup, "rows"));
    };
    put(0, 50);
    std::thread::sleep(Duration::from_millis(1_100));
    let middle = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    std::thread::sleep(Duration::from_millis(1_100));
    put(50, 50);
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");

    // at-timestamp: the rows put after the time, in every shard.
    let start = format!("at-timestamp:{middle}");
    expect_status(&run(&mut consumer(&moto.endpoint, "s", &lake, "at", &["--start", &start])), 0);
    let ids = |table: &str| {
        let mut ids: Vec<i64> = read_lake(&lake.join(table).join("gen-000001")).iter().map(|r| r.row["id"].as_i64().unwrap()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids("at"), (50..100).collect::<Vec<_>>());

    // latest: only what is written while the consumer runs.
    let port = kappa_tests::free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child =
        consumer(&moto.endpoint, "s", &lake, "latest", &["--start", "latest", "--metrics-addr", &addr]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // Ready once every shard answered a read: their LATEST iterators are taken by then.
    kappa_tests::wait_until(&mut child, "the consumer", Duration::from_secs(30), || kappa_tests::ready(port)).unwrap();
    put(100, 30);
    let output = child.wait_with_output().unwrap();
    expect_status(&output, 0);
    assert_eq!(ids("latest"), (100..130).collect::<Vec<_>>(), "{}", String::from_utf8_lossy(&output.stderr));

    // A table with positions resumes after them, whatever --start says.
    put(130, 10);
    expect_status(&run(&mut consumer(&moto.endpoint, "s", &lake, "at", &["--start", "latest"])), 0);
    assert_eq!(ids("at"), (50..140).collect::<Vec<_>>());
    // And --start is refused where it means nothing.
    let output = run(kappa("kappa-consumer", None).args(["--from", "log:./nowhere", "--start", "latest"]));
    expect_status(&output, 2);
    assert!(String::from_utf8_lossy(&output.stderr).contains("--start applies to kinesis:STREAM"));
}
