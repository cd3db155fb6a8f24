//! Issue 61, 2: a lake on S3 whose answers are cut mid-body now and then, or fail with a 500,
//! as real S3's are: every start of the consumer must ride over them (reads, bodies and
//! listings tried again), and the table stay exact. The fault proxy injects the faults,
//! seeded, in front of moto.

use std::process::Stdio;

use kappa_tests::{expect_status, kappa, run};

use crate::support::{S3Lake, assert_exactly_once, committed_rows, download, s3_lake, unique_sales_csv};

/// Runs of the consumer (`KAPPA_S3_FAULT_RUNS`, 25 unless set: the 100 are a run of
/// this test with it set), each on 40 more rows of the log, under 2% of answers cut mid-body
/// and 5% of requests answered 500, with one answer of each kind a start reads cut on
/// purpose now and then: a writer record, a schema object, a listing, the Delta log's
/// `_last_checkpoint`. Every run exits 0; the table holds every row once.
#[test]
fn starts_under_cut_answers_and_server_errors_exit_0_and_the_table_stays_exact() {
    let runs: u64 = std::env::var("KAPPA_S3_FAULT_RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(25);
    let S3Lake { moto: _moto, runtime, s3, proxy } = s3_lake();
    let dir = tempfile::tempdir().unwrap();
    let log = format!("log:{}", dir.path().join("log").display());
    let (mut retried, mut put_retries) = (0, 0);
    for round in 0..runs {
        let csv = unique_sales_csv(&dir.path().join(format!("in-{round}")), 40, &format!("F{round:03}"));
        expect_status(&run(kappa("kappa-producer", None).arg("-i").arg(&csv).args(["--to", &log, "--shards", "2"])), 0);
        proxy.chaos(&["GET", "PUT", "HEAD", "DELETE", "POST"], "/lake", 0.02, 0.05, round);
        if round % 4 == 1 {
            for path in ["/_kappa/writers/", "/_kappa/gen-000001/schema/", "list-type", "/_delta_log/_last_checkpoint"] {
                proxy.cut("GET", path, 1);
            }
        }
        let output = kappa("kappa-consumer", Some(&proxy.endpoint))
            .args(["--from", &log, "--lake", "s3://lake/warehouse", "--table", "sales", "--event-time", "sale_time", "--until-idle", "1s"])
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "run {round} exited with {}:\n{text}", output.status);
        retried += text.matches("trying again").count();
        put_retries += text.lines().filter(|l| l.contains("S3 request attempt failed") && l.contains("PUT ")).count();
    }
    proxy.calm();
    let faults = proxy.requests_matching("chaos-500:").values().sum::<u64>() + proxy.requests_matching("cut:").values().sum::<u64>();
    eprintln!("{runs} runs: {faults} faults injected, {retried} reads tried again, {put_retries} PUT attempts logged");
    assert!(faults >= runs, "the proxy injected {faults} faults in {runs} runs");
    assert!(retried > 0, "no read was tried again");
    assert!(put_retries > 0, "the SDK's retries of PUTs (data files, writer records) are logged");
    let local = dir.path().join("downloaded");
    runtime.block_on(download(&s3, "lake", "warehouse/", &local));
    let table = local.join("sales");
    assert_eq!(committed_rows(&table), 40 * runs, "no row twice in the Delta log's statistics");
    assert_exactly_once(&table, 40 * runs);
}
