//! What a careful user feeds the producer: a bad file after a good one, a disk that fills,
//! compressed exports, JSON that is bad in one place only. Every row read is accounted for,
//! and a bad later input fails the run before anything is sent.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use kappa_tests::{expect_status, kappa, run};
use serde_json::Value;

use crate::support::{generate_sales_csv, read_log, summary};

fn producer_to_log(inputs: &[&Path], log: &Path, extra: &[&str]) -> Command {
    let mut command = kappa("kappa-producer", None);
    command.arg("-i").args(inputs).args(["--to", &format!("log:{}", log.display())]).args(extra);
    command
}

#[test]
fn a_bad_later_input_fails_the_run_before_any_row_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let good = generate_sales_csv(dir.path(), 50_000);
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, b"").unwrap();
    let twice = dir.path().join("twice.csv");
    std::fs::write(&twice, b"id,name,id\n1,a,2\n").unwrap();
    for (bad, says) in [(&empty, "the file is empty"), (&twice, "names column \"id\" twice")] {
        let log = dir.path().join(format!("log-{}", bad.file_name().unwrap().to_string_lossy()));
        let output = run(&mut producer_to_log(&[&good, bad], &log, &[]));
        expect_status(&output, 1);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&bad.display().to_string()) && stderr.contains(says), "{stderr}");
        assert!(!log.join("log.json").exists() || read_log(&log).is_empty(), "nothing of {} was sent", good.display());
    }
}

/// A tmpfs of `size` mounted at a fresh directory, unmounted on drop: a disk that really fills.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(parent: &Path, size: &str) -> SmallDisk {
        let path = parent.join("small-disk");
        std::fs::create_dir(&path).unwrap();
        let output = run(Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&path));
        assert!(
            output.status.success(),
            "mounting a {size} tmpfs failed ({}): this test fills a real disk and needs root (CI runs as root)",
            String::from_utf8_lossy(&output.stderr)
        );
        SmallDisk { path }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

#[test]
fn when_the_logs_disk_fills_the_summary_accounts_for_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let csv = generate_sales_csv(dir.path(), 30_000);
    let disk = SmallDisk::mount(dir.path(), "2m");
    let log = disk.path.join("log");
    let summary_path = dir.path().join("summary.json");
    let rejects = dir.path().join("rejects.ndjson");
    let output = run(producer_to_log(&[&csv], &log, &["--log-segment-bytes", "262144", "--summary-json"]).arg(&summary_path).arg("--rejects").arg(&rejects));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    let s = summary(&summary_path);
    let field = |name: &str| s[name].as_u64().unwrap();
    let held = read_log(&log).len() as u64;
    assert!(held > 1000 && held < 30_000, "the disk held part of the file: {held}");
    assert_eq!(field("events_sent"), held, "events sent is what the log holds\n{stderr}");
    assert_eq!(field("rows_read"), field("events_sent") + field("rejected") + field("undelivered"), "{s:#}");
    assert_eq!(field("unsent"), field("undelivered"), "nothing was given up on, the rest was never sent");
    assert!(stderr.contains("never sent: the run stopped first"), "{stderr}");
}

#[test]
fn compressed_exports_are_read_like_plain_files() {
    let dir = tempfile::tempdir().unwrap();
    let csv = generate_sales_csv(dir.path(), 2_000);
    let plain = std::fs::read(&csv).unwrap();
    let gz = dir.path().join("sales.csv.gz");
    let mut encoder = flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), flate2::Compression::default());
    encoder.write_all(&plain).unwrap();
    encoder.finish().unwrap();
    let zst = dir.path().join("sales-copy.csv.zst");
    std::fs::write(&zst, zstd::encode_all(&plain[..], 3).unwrap()).unwrap();
    let log = dir.path().join("log");
    let output = run(&mut producer_to_log(&[&gz, &zst], &log, &["--shards", "1"]));
    expect_status(&output, 0);
    let events = read_log(&log);
    assert_eq!(events.len(), 4_000, "{}", String::from_utf8_lossy(&output.stderr));
    let expected: Vec<String> = kappa_tests::read_csv(&csv).iter().map(|r| r["sale_id"].as_str().unwrap().to_string()).collect();
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event["sale_id"].as_str().unwrap(), expected[index % 2_000], "row {index}");
    }
}

#[test]
fn a_bad_json_element_or_ndjson_row_is_rejected_alone() {
    let dir = tempfile::tempdir().unwrap();
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let document = dir.path().join("orders.json");
    std::fs::write(&document, format!("[\n{{\"id\":1,\"v\":\"a\"}},\n{{\"id\":2,\"v\":{deep}}},\n{{\"id\":3,\"v\":\"c\"}}\n]\n")).unwrap();
    let lines = dir.path().join("orders.ndjson");
    std::fs::write(&lines, "{\"id\":1,\"v\":\"a\"}\n{\"id\":2,\"v\":\"b\"}\n{\"id\":3,\"_kappa_id\":\"forged\"}\n{\"id\":4,\"v\":\"d\"}\n").unwrap();
    for (input, bad_id, reason) in [(&document, 2, "recursion limit"), (&lines, 3, "reserved")] {
        let log = dir.path().join(format!("log-{}", input.extension().unwrap().to_string_lossy()));
        let rejects = dir.path().join(format!("rejects-{}.ndjson", input.extension().unwrap().to_string_lossy()));
        let output = run(producer_to_log(&[input], &log, &["--rejects"]).arg(&rejects));
        expect_status(&output, 0);
        let mut ids: Vec<i64> = read_log(&log).iter().map(|e| e["id"].as_i64().unwrap()).collect();
        ids.sort();
        let expected: Vec<i64> = (1..=if bad_id == 2 { 3 } else { 4 }).filter(|id| *id != bad_id).collect();
        assert_eq!(ids, expected, "{}", String::from_utf8_lossy(&output.stderr));
        let rejected: Vec<Value> = std::fs::read_to_string(&rejects).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(rejected.len(), 1, "{rejected:?}");
        assert_eq!(rejected[0]["line"], bad_id + 1 - i64::from(input == &lines), "the line of the bad record");
        assert!(rejected[0]["reason"].as_str().unwrap().contains(reason), "{rejected:?}");
    }
}
