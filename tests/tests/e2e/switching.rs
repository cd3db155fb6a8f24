//! Switches beside other hands (issue 31): under a live consumer no committed row disappears
//! and the consumer goes on by itself; rows another writer appended are carried over and
//! other changes refused without a flag; an interrupted replay continues; a switch back to a
//! consumer's generation restores its positions.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use kappa_tests::{current_generation, delta_log, expect_status, kappa, lake_digest, python_deltalake, run};

use crate::hands::{assert_files_there, consume, counted, stderr};
use crate::support::{copy_tree, kill_repeatedly, produce_csv, sales_log, unique_sales_csv};

const ARGS: [&str; 4] = ["--table", "sales", "--event-time", "sale_time"];

/// Per version of the table, its sale ids: every version's rows are in every later version
/// (no committed row ever disappears), checked by python deltalake over the whole history.
pub(crate) fn assert_no_row_disappears(table: &Path, from_version: u64) {
    let out = python_deltalake(
        table,
        None,
        &format!(
            "from deltalake import DeltaTable\n\
             latest = table.version()\n\
             before = None\n\
             for v in range({from_version}, latest + 1):\n\
             \x20   ids = set(DeltaTable(table.table_uri, version=v).to_pyarrow_table(columns=['sale_id']).column('sale_id').to_pylist())\n\
             \x20   if before is not None and not before <= ids:\n\
             \x20       print(f'version {{v}} lost {{len(before - ids)}} rows of version {{v-1}}')\n\
             \x20   before = ids\n\
             print('checked', latest - {from_version} + 1, 'versions')"
        ),
    );
    assert!(!out.contains("lost"), "{out}");
    assert!(out.contains("checked"), "{out}");
}

/// `kappa-replay --verify --switch` while the consumer commits: the consumer once exited ("run
/// one consumer per table"), or the switch version held 1,409 fewer committed rows than the
/// version before. Now the replay catches up to the consumer's committed positions and
/// switches on that version; the consumer goes on in the new generation by itself.
#[test]
fn a_switch_under_a_live_consumer_keeps_every_committed_row_and_the_consumer_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 20_000);
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    let port = kappa_tests::free_port();
    let mut live = kappa("kappa-consumer", None)
        .args(["--from", &log, "--lake"])
        .arg(&lake)
        .args(ARGS)
        .args(["--flush-interval", "300ms", "--status-interval", "500ms", "--metrics-addr", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    kappa_tests::wait_for_metric(&mut live, port, "events_read_total", 20_000, Duration::from_secs(120));
    let started = Instant::now();
    let first_version = loop {
        if let Some(log) = delta_log(&table) {
            break log.version;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the consumer made no table");
        std::thread::sleep(Duration::from_millis(50));
    };
    // More rows arrive while the replay runs: the consumer commits them as it reads them.
    let producing = {
        let (dir, log) = (dir.path().to_path_buf(), log.clone());
        std::thread::spawn(move || {
            for batch in 0..12 {
                produce_csv(&unique_sales_csv(&dir.join(format!("more-{batch}")), 250, &format!("B{batch:02}-")), &log);
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    let replay = run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args(ARGS).args(["--verify", "--switch"]));
    expect_status(&replay, 0);
    producing.join().unwrap();
    assert_eq!(current_generation(&lake, "sales"), "gen-000002");
    // The consumer goes on: it reads everything and is still running.
    kappa_tests::wait_for_metric(&mut live, port, "events_read_total", 23_000, Duration::from_secs(120));
    let started = Instant::now();
    while counted(&table).1 != "23000" {
        assert!(live.try_wait().unwrap().is_none(), "the consumer stopped");
        assert!(started.elapsed() < Duration::from_secs(120), "the consumer did not commit every row: {:?}", counted(&table));
        std::thread::sleep(Duration::from_millis(300));
    }
    nix_term(&live);
    let output = live.wait_with_output().unwrap();
    expect_status(&output, 0);
    assert!(stderr(&output).contains("continuing on it from the positions the switch handed over"), "{}", stderr(&output));
    assert_eq!(counted(&table), ("[(23000, 23000)]".to_string(), "23000".to_string()));
    assert_files_there(&table);
    assert_no_row_disappears(&table, first_version);
}

/// SIGTERM, as an orchestrator stops a service.
fn nix_term(child: &std::process::Child) {
    expect_status(&run(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()])), 0);
}

/// Rows python deltalake appended: a switch once dropped them without a word (1,000,005 rows
/// before, 1,000,000 after). Now they are carried into the new generation; a change that
/// cannot be carried (a DELETE) refuses the switch, naming it and its rows, unless
/// `--discard-foreign-changes` says to drop it.
#[test]
fn rows_another_writer_appended_are_carried_and_its_deletes_refuse_the_switch() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 1_000);
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    expect_status(&consume(&log, &lake, &ARGS), 0);
    let append = "import pyarrow as pa, deltalake\n\
                  t = table.to_pyarrow_table().slice(0, 5)\n\
                  t = t.set_column(t.schema.get_field_index('sale_id'), 'sale_id', pa.array([f'FOREIGN{i}' for i in range(5)]))\n\
                  deltalake.write_deltalake(table.table_uri, t, mode='append')";
    python_deltalake(&table, None, append);
    assert_eq!(counted(&table), ("[(1005, 1005)]".to_string(), "1005".to_string()));
    let summary = dir.path().join("replay.json");
    let replay = run(kappa("kappa-replay", None)
        .args(["--from", &log, "--lake"])
        .arg(&lake)
        .args(ARGS)
        .args(["--verify", "--compare", "--switch", "--summary-json"])
        .arg(&summary));
    expect_status(&replay, 0);
    assert!(stderr(&replay).contains("carried            5 rows in 1 files other writers appended"), "{}", stderr(&replay));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    assert_eq!((report["carried_rows"].as_u64(), report["compare"]["ok"].as_bool()), (Some(5), Some(true)), "{report}");
    assert_eq!(counted(&table), ("[(1005, 1005)]".to_string(), "1005".to_string()));
    // A second replay carries them again.
    expect_status(&run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args(ARGS).arg("--switch")), 0);
    assert_eq!(current_generation(&lake, "sales"), "gen-000003");
    assert_eq!(counted(&table), ("[(1005, 1005)]".to_string(), "1005".to_string()));

    // A DELETE by another writer: refused, with the version, the writer and the rows.
    python_deltalake(&table, None, "table.delete(\"quantity > 7\")");
    let (deleted_rows, _) = counted(&table);
    let version = delta_log(&table).unwrap().version;
    let refused = run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args(ARGS).arg("--switch"));
    expect_status(&refused, 2);
    let message = stderr(&refused);
    assert!(message.contains(&format!("version {version} by python deltalake")), "{message}");
    assert!(message.contains("DELETE") && message.contains("--discard-foreign-changes"), "{message}");
    assert_eq!(current_generation(&lake, "sales"), "gen-000003", "nothing was switched");
    assert_eq!(counted(&table).0, deleted_rows);
    // Asked for: the deleted rows come back from the log, and the appended rows are dropped.
    let discarded = run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args(ARGS).args(["--switch", "--discard-foreign-changes"]));
    expect_status(&discarded, 0);
    assert!(stderr(&discarded).contains("DISCARDED"), "{}", stderr(&discarded));
    assert_eq!(counted(&table), ("[(1000, 1000)]".to_string(), "1000".to_string()));
}

/// Three kills during `--verify --switch` once left four generations, each started over. Now
/// the replay continues its generation from its last commit, and ends with the bytes an
/// uninterrupted replay writes.
#[test]
fn an_interrupted_replay_continues_its_generation() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 40_000);
    let lake = dir.path().join("lake");
    let data_driven = ["--flush-rows", "500", "--flush-interval", "1h"];
    expect_status(&consume(&log, &lake, &[&ARGS[..], &data_driven[..]].concat()), 0);
    let uninterrupted = dir.path().join("uninterrupted");
    copy_tree(&lake, &uninterrupted);
    let replay = |lake: &Path| {
        let mut command = kappa("kappa-replay", None);
        command.args(["--from", &log, "--lake"]).arg(lake).args(ARGS).args(data_driven).args(["--verify", "--switch"]);
        command
    };
    let started = Instant::now();
    expect_status(&run(&mut replay(&uninterrupted)), 0);
    let took = started.elapsed().as_millis() as u64;
    let kills = kill_repeatedly(3, (took / 5, (took * 3 / 5).max(took / 5 + 10)), Duration::from_secs(300), || replay(&lake));
    assert!(kills >= 1, "no kill landed");
    // Whatever the kills left, one more run finishes the same generation, unless a run in the
    // loop already did: a continuation can end within its kill window, and a run after it would
    // be a new replay, rightly starting a new generation (the loop's one kill, then a run that
    // ended on its own, left gen-000003 once).
    if current_generation(&lake, "sales") != "gen-000002" {
        expect_status(&run(&mut replay(&lake)), 0);
    }
    let generations: Vec<String> =
        std::fs::read_dir(lake.join("sales/_kappa/generations")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert_eq!(generations.len(), 2, "one replayed generation, however often it was killed: {generations:?}");
    assert_eq!(current_generation(&lake, "sales"), "gen-000002");
    assert_eq!(counted(&lake.join("sales")), ("[(40000, 40000)]".to_string(), "40000".to_string()));
    assert_eq!(lake_digest(&lake.join("sales/gen-000002")), lake_digest(&uninterrupted.join("sales/gen-000002")), "the same files as an uninterrupted replay");
    // --fresh starts a new one.
    let fresh = run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args(ARGS).args(data_driven).arg("--fresh"));
    expect_status(&fresh, 0);
    assert!(lake.join("sales/_kappa/generations/gen-000003.json").exists());
}

/// Switching back to the generation a consumer wrote: its files as the log last held them,
/// and the consumer continues from the positions its last commit there recorded (so the rows
/// committed in the generation left are read again into it).
#[test]
fn a_switch_back_to_a_consumers_generation_restores_its_positions() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 3_000);
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    expect_status(&consume(&log, &lake, &ARGS), 0);
    expect_status(&run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args(ARGS).arg("--switch")), 0);
    produce_csv(&unique_sales_csv(&dir.path().join("more"), 500, "MORE"), &log);
    expect_status(&consume(&log, &lake, &ARGS), 0);
    assert_eq!(counted(&table), ("[(3500, 3500)]".to_string(), "3500".to_string()));
    let back = run(kappa("kappa-replay", None).args(["switch", "--table", "sales", "--generation", "gen-000001", "--lake"]).arg(&lake));
    expect_status(&back, 0);
    assert_eq!(current_generation(&lake, "sales"), "gen-000001");
    assert_eq!(counted(&table), ("[(3000, 3000)]".to_string(), "3000".to_string()), "gen-000001 as it was");
    let output = consume(&log, &lake, &ARGS);
    expect_status(&output, 0);
    assert_eq!(counted(&table), ("[(3500, 3500)]".to_string(), "3500".to_string()), "the consumer read on from gen-000001's positions");
    assert_files_there(&table);
    // And forward again to the replay's generation, which the consumer had gone on writing.
    expect_status(&run(kappa("kappa-replay", None).args(["switch", "--table", "sales", "--generation", "gen-000002", "--lake"]).arg(&lake)), 0);
    assert_eq!(counted(&table), ("[(3500, 3500)]".to_string(), "3500".to_string()));
}

/// Once log retention has removed the commits from where the current generation began, whose
/// rows another writer's files hold can no longer be told: a switch once dropped them then.
/// Now it refuses, naming them.
#[test]
fn after_log_cleanup_a_switch_refuses_files_of_unknown_origin() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = sales_log(dir.path(), 1_000);
    let lake = dir.path().join("lake");
    let table = lake.join("sales");
    expect_status(&consume(&log, &lake, &ARGS), 0);
    python_deltalake(
        &table,
        None,
        "import pyarrow as pa, deltalake\n\
         t = table.to_pyarrow_table().slice(0, 5)\n\
         t = t.set_column(t.schema.get_field_index('sale_id'), 'sale_id', pa.array([f'FOREIGN{i}' for i in range(5)]))\n\
         deltalake.write_deltalake(table.table_uri, t, mode='append')\n\
         table = deltalake.DeltaTable(table.table_uri)\n\
         table.alter.set_table_properties({'delta.logRetentionDuration': 'interval 0 seconds'})",
    );
    // The consumer commits more; then the log is cleaned up to its latest commit.
    produce_csv(&unique_sales_csv(&dir.path().join("more"), 100, "MORE"), &log);
    expect_status(&consume(&log, &lake, &ARGS), 0);
    python_deltalake(&table, None, "table.create_checkpoint(); table.cleanup_metadata()");
    assert!(!table.join("_delta_log/00000000000000000000.json").exists(), "the log's start is gone");
    let refused = run(kappa("kappa-replay", None).args(["--from", &log, "--lake"]).arg(&lake).args(ARGS).arg("--switch"));
    expect_status(&refused, 2);
    assert!(stderr(&refused).contains("that kappa-lake did not write were in the table at version"), "{}", stderr(&refused));
    assert_eq!(counted(&table), ("[(1105, 1105)]".to_string(), "1105".to_string()));
}
