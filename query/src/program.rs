//! The program `kappa-query`: its flags parsed, its runtime built, the run, its exit status.
//! Called by the `kappa-query` binary and by the image's multi-call `kappa-lake` binary.

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches};
use kappa_common::logging::exit_with;

use crate::config::{Cli, Run};

/// Runs the program with `args` (the first names the program, as `std::env::args_os`), the
/// version naming `commit`.
///
/// Exit status: 0 done; 1 the query or report failed (SQL, the lake, I/O); 2 misconfiguration
/// (a flag to change: no such table, a version out of reach, a bad --register).
pub fn main(args: Vec<OsString>, commit: Option<&str>) {
    let version = kappa_common::logging::version_line(commit);
    let cli = Cli::from_arg_matches(&Cli::command().version(version).get_matches_from(args)).unwrap_or_else(|e| e.exit());
    kappa_common::logging::init(cli.log_format);
    let run = cli.validate().unwrap_or_else(|e| exit_with(&e, 2));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let outcome = match run {
        Run::Query(config) => runtime.block_on(crate::run(config)),
        Run::Report(config) => runtime.block_on(crate::report::write(&config)).map(|drawn| {
            eprintln!(
                "wrote {} ({}): {} partitions, {} files, {} rows, {} versions drawn",
                config.output.display(),
                crate::output::human_bytes(drawn.html_bytes as u64),
                drawn.partitions,
                drawn.files,
                drawn.rows,
                drawn.versions
            );
        }),
    };
    if let Err(e) = outcome {
        // `kappa-query … | head -1`: the reader has what it wanted.
        if !crate::output::Stdout::reader_gone() {
            exit_with(&e, e.status());
        }
    }
    // Every output is written and flushed: end here, without shutting the runtime down thread
    // by thread (part of the per-statement cost a short query pays).
    std::process::exit(0);
}
