//! A closed pipe ends a command quietly (issue 30): `kappa-query … | head -1`,
//! `kappa-consumer describe … | head -1` and `inspect … | head -1` exit 0 with nothing on
//! stderr, where they said "Broken pipe" (exit 1) or panicked (exit 101). And errors that
//! say where: an unknown table lists the tables, a statement cut short names its end.

use std::process::{Command, Stdio};

use kappa_tests::kappa;

/// Runs `command` with its standard output a pipe whose reader is closed before it writes.
fn with_reader_gone(mut command: Command) -> (Option<i32>, String) {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starts");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("runs");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).to_string())
}

#[test]
fn a_closed_pipe_ends_query_describe_and_inspect_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = crate::support::sales_log(dir.path(), 2_000);
    let lake = dir.path().join("lake");
    let output = kappa_tests::run(kappa("kappa-consumer", None).args(["--from", &log, "--lake"]).arg(&lake).args(["--table", "sales", "--until-idle", "0s"]));
    kappa_tests::expect_status(&output, 0);

    let lake_arg = lake.display().to_string();
    let commands: Vec<(&str, Vec<&str>)> = vec![
        ("kappa-query", vec!["--lake", &lake_arg, "--table", "sales", "--format", "csv", "--quiet", "SELECT * FROM sales"]),
        ("kappa-query", vec!["--lake", &lake_arg, "--table", "sales", "--format", "table", "--quiet", "SELECT * FROM sales LIMIT 50"]),
        ("kappa-consumer", vec!["describe", "--lake", &lake_arg, "--table", "sales"]),
        ("kappa-consumer", vec!["inspect", "--from", &log, "--limit", "100"]),
    ];
    for (binary, args) in commands {
        let mut command = kappa(binary, None);
        command.env("KAPPA_LOG", "warn").args(&args);
        let (status, stderr) = with_reader_gone(command);
        assert_eq!(status, Some(0), "{binary} {args:?}: {stderr}");
        assert!(!stderr.contains("error") && !stderr.contains("panicked"), "{binary} {args:?}: {stderr}");
    }
}

#[test]
fn an_unknown_table_lists_the_tables_and_a_statement_cut_short_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = crate::support::sales_log(dir.path(), 500);
    let lake = dir.path().join("lake");
    kappa_tests::expect_status(
        &kappa_tests::run(kappa("kappa-consumer", None).args(["--from", &log, "--lake"]).arg(&lake).args(["--table", "sales", "--until-idle", "0s"])),
        0,
    );
    let query = |sql: &str| kappa_tests::run(kappa("kappa-query", None).arg("--lake").arg(&lake).args(["--table", "sales", sql]));
    let output = query("SELECT * FROM nosuch");
    kappa_tests::expect_status(&output, 1);
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("table 'datafusion.public.nosuch' not found; the tables are: sales"), "{text}");
    let output = query("SELECT *\nFROM sales WHERE  ");
    kappa_tests::expect_status(&output, 1);
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("at the end of the statement, line 2 column 17"), "{text}");
}
