//! The program `kappa-producer`: its flags parsed, its runtime built, the run, its exit status.
//! Called by the `kappa-producer` binary and by the image's multi-call `kappa-lake` binary.

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches};
use kappa_common::logging::exit_with;

use crate::config::Cli;

/// Runs the program with `args` (the first names the program, as `std::env::args_os`), the
/// version naming `commit`.
///
/// Exit status: see `Cli`'s documentation (`--help`).
pub fn main(args: Vec<OsString>, commit: Option<&str>) {
    let version = kappa_common::logging::version_line(commit);
    let cli = Cli::from_arg_matches(&Cli::command().version(version).get_matches_from(args)).unwrap_or_else(|e| e.exit());
    kappa_common::logging::init(cli.log_format);
    let config = cli.validate().unwrap_or_else(|e| exit_with(&e, 2));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let shutdown = kappa_common::shutdown::Shutdown::default();
    shutdown.listen(runtime.handle(), "sending what was read, then stopping");
    let outcome = runtime.block_on(crate::run(config, shutdown)).unwrap_or_else(|e| exit_with(&e, e.exit_code()));
    kappa_common::logging::summary(&outcome.summary.render(), &outcome.summary);
    if let Some(e) = outcome.error {
        exit_with(&e, e.exit_code());
    }
    let given_up = outcome.summary.undelivered - outcome.summary.unsent;
    if given_up > 0 {
        exit_with(&format!("{given_up} events could not be delivered; they are in the reject file"), 4);
    }
}
