//! Every hand at once on one table (issue 31): a consumer committing as rows arrive, two
//! compactions, replays with a switch, gc and a foreign python writer appending, at random
//! moments over many rounds, while a reader polls the latest version throughout. No read ever
//! fails, no committed row ever disappears from a later version, and the final counts are
//! exact. The schedule's seed is printed; `KAPPA_CONCURRENCY_SEED` replays it.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kappa_tests::{expect_status, kappa, python_command, run};

use crate::hands::{assert_files_there, counted};
use crate::support::{produce_csv, sales_log, unique_sales_csv};
use crate::switching::assert_no_row_disappears;

const ARGS: [&str; 4] = ["--table", "sales", "--event-time", "sale_time"];

/// A small deterministic generator for the schedule.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// A python process that reads the latest version again and again until `stop` exists, and
/// writes what it saw: reads, failures, and versions whose rows lost some of an earlier one's.
fn start_reader(table: &Path, stop: &Path, report: &Path) -> Child {
    let code = format!(
        "import json, os, time\n\
         from deltalake import DeltaTable\n\
         reads, failures, lost, before, versions = 0, [], [], None, set()\n\
         while not os.path.exists(r'''{stop}'''):\n\
         \x20   try:\n\
         \x20       t = DeltaTable(r'''{table}''')\n\
         \x20       v = t.version()\n\
         \x20       ids = set(t.to_pyarrow_table(columns=['sale_id']).column('sale_id').to_pylist())\n\
         \x20       reads += 1\n\
         \x20       versions.add(v)\n\
         \x20       if before is not None and before[0] < v and not before[1] <= ids:\n\
         \x20           lost.append((before[0], v, len(before[1] - ids)))\n\
         \x20       if before is None or before[0] < v:\n\
         \x20           before = (v, ids)\n\
         \x20   except Exception as e:\n\
         \x20       if 'No such file' in str(e) and not os.path.exists(r'''{table}/_delta_log'''):\n\
         \x20           time.sleep(0.05); continue\n\
         \x20       failures.append(str(e)[:300])\n\
         json.dump({{'reads': reads, 'failures': failures, 'lost': lost, 'versions': len(versions)}}, open(r'''{report}''', 'w'))\n\
         os._exit(0)\n",
        stop = stop.display(),
        table = table.display(),
        report = report.display()
    );
    python_command(&code).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("the reader starts")
}

fn spawn(mut command: Command) -> Child {
    command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

fn finish(child: Child, what: &str) -> String {
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{what} failed: {}\n{text}", output.status);
    text
}

#[test]
fn every_hand_at_once_loses_nothing_a_reader_ever_read() {
    let seed = std::env::var("KAPPA_CONCURRENCY_SEED")
        .map(|s| s.parse().expect("KAPPA_CONCURRENCY_SEED is a number"))
        .unwrap_or_else(|_| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    eprintln!("concurrency schedule seed: {seed} (KAPPA_CONCURRENCY_SEED={seed} replays it)");
    let mut random = Lcg(seed);
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 8_000);
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    let port = kappa_tests::free_port();
    let mut consumer = kappa("kappa-consumer", None)
        .args(["--from", &log, "--lake"])
        .arg(&lake)
        .args(ARGS)
        .args(["--flush-interval", "300ms", "--status-interval", "300ms", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    kappa_tests::wait_for_metric(&mut consumer, port, "rows_written_total", 8_000, Duration::from_secs(120));
    let (stop, report) = (dir.path().join("stop"), dir.path().join("reader.json"));
    let reader = start_reader(&table, &stop, &report);

    let (mut produced, mut appended) = (8_000u64, 0u64);
    let rounds = 12;
    for round in 0..rounds {
        // More rows into the log, which the consumer commits as it reads them.
        produce_csv(&unique_sales_csv(&dir.path().join(format!("batch-{round}")), 200, &format!("R{round:02}-")), &log);
        produced += 200;
        // Then, at random moments, some of the other hands at once.
        let mut running: Vec<(Child, String)> = Vec::new();
        let hands = random.next(16);
        if hands & 1 != 0 {
            for _ in 0..2 {
                let mut command = kappa("kappa-replay", None);
                command.args(["compact", "--table", "sales", "--min-age", "0s", "--lake"]).arg(&lake);
                running.push((spawn(command), "a compaction".into()));
                std::thread::sleep(Duration::from_millis(random.next(300)));
            }
        }
        if hands & 2 != 0 {
            let mut command = kappa("kappa-replay", None);
            command.args(["--from", &log, "--lake"]).arg(&lake).args(ARGS).arg("--switch");
            running.push((spawn(command), "a replay with --switch".into()));
        }
        if hands & 4 != 0 {
            let mut command = kappa("kappa-replay", None);
            command.args(["gc", "--keep", "1", "--table", "sales", "--lake"]).arg(&lake);
            running.push((spawn(command), "gc".into()));
        }
        // Another tool's append: three rows of its own. A switch changes the table's metadata,
        // and an append that raced it fails as Delta says it must: like any Delta writer, it
        // tries again.
        std::thread::sleep(Duration::from_millis(random.next(500)));
        let append = format!(
            "import pyarrow as pa, deltalake, time\n\
             for attempt in range(10):\n\
             \x20   t = deltalake.DeltaTable(r'''{table}''').to_pyarrow_table().slice(0, 3)\n\
             \x20   t = t.set_column(t.schema.get_field_index('sale_id'), 'sale_id', pa.array([f'FOREIGN-{round}-{{i}}' for i in range(3)]))\n\
             \x20   try:\n\
             \x20       deltalake.write_deltalake(r'''{table}''', t, mode='append')\n\
             \x20       break\n\
             \x20   except deltalake.exceptions.CommitFailedError:\n\
             \x20       time.sleep(0.2)\n\
             else:\n\
             \x20   raise SystemExit('the append never committed')\n",
            table = table.display()
        );
        running.push((python_command(&append).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap(), "python deltalake's append".into()));
        appended += 3;
        for (child, what) in running {
            let text = finish(child, &what);
            eprintln!("round {round}: {what} done{}", if text.contains("carried") { " (carried appended rows)" } else { "" });
        }
    }
    // Everything is committed once the consumer has caught up.
    let expected = (produced + appended).to_string();
    let started = Instant::now();
    while counted(&table).1 != expected {
        assert!(consumer.try_wait().unwrap().is_none(), "the consumer stopped");
        assert!(started.elapsed() < Duration::from_secs(120), "not every row was committed: {:?} of {expected}", counted(&table));
        std::thread::sleep(Duration::from_millis(300));
    }
    std::fs::write(&stop, b"").unwrap();
    expect_status(&run(Command::new("kill").args(["-TERM", &consumer.id().to_string()])), 0);
    finish(consumer, "the consumer");
    finish(reader, "the reader");
    let seen: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    eprintln!("the reader: {seen}");
    assert!(seen["reads"].as_u64().unwrap() > 10, "{seen}");
    assert_eq!(seen["failures"], serde_json::json!([]), "no read may fail");
    assert_eq!(seen["lost"], serde_json::json!([]), "no committed row may disappear");
    assert_eq!(counted(&table), (format!("[({expected}, {expected})]"), expected.clone()));
    assert_files_there(&table);
    assert_no_row_disappears(&table, 0);
}
