//! The program `kappa-consumer`: its flags parsed, its runtime built, the run, its exit status.
//! Called by the `kappa-consumer` binary and by the image's multi-call `kappa-lake` binary.

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches};
use kappa_common::logging::exit_with;

use crate::config::{Cli, Command};

/// Runs the program with `args` (the first names the program, as `std::env::args_os`), the
/// version naming `commit`.
///
/// Exit status: 0 done; 1 an error while running (source, lake, I/O); 2 misconfiguration,
/// found from the flags or once the data is seen; 3 more quarantined events than
/// --max-quarantine-ratio allows (see `--help`).
pub fn main(args: Vec<OsString>, commit: Option<&str>) {
    let version = kappa_common::logging::version_line(commit);
    let cli = Cli::from_arg_matches(&Cli::command().version(version).get_matches_from(args)).unwrap_or_else(|e| e.exit());
    kappa_common::logging::init(cli.log_format);
    let runtime = kappa_common::memory::runtime();
    // Named, so `top -H` and profiles tell decoding and encoding from the pipeline's thread.
    let _ = rayon::ThreadPoolBuilder::new().thread_name(|i| format!("kappa-work-{i}")).build_global();
    let subcommand = match cli.command {
        Some(Command::Inspect { from, limit, follow, quick }) => Some(crate::inspect::inspect(&from, limit, follow, !quick)),
        Some(Command::Describe { lake, table, limit }) => Some(crate::describe::describe(&runtime, &lake, &table, limit)),
        Some(Command::Workers { leases, from, failover, endpoint_url, region }) => {
            let aws = kappa_common::aws::AwsOptions { endpoint_url, region };
            Some(crate::workers::workers(&runtime, &leases, &from, failover, &aws))
        }
        Some(Command::Health { addr, path }) => match crate::metrics::check(addr, &path) {
            Ok(answer) => {
                println!("{answer}");
                return;
            }
            Err(e) => exit_with(&e, 1),
        },
        None => None,
    };
    if let Some(result) = subcommand {
        match result {
            // `describe … | head`: the reader has what it wanted.
            Err(e) if crate::stdout::reader_gone(&e) => {}
            Err(e) => exit_with(&format!("{e:#}"), 1),
            Ok(()) => {}
        }
        return;
    }
    let config = cli.run.validate().unwrap_or_else(|e| exit_with(&e, 2));
    let table = config.table.clone();
    let summary_json = config.summary_json.clone();
    let shutdown = kappa_common::shutdown::Shutdown::default();
    shutdown.listen(runtime.handle(), "stopping after the current chunk: flushing, committing, then exiting");
    match crate::run::run(config, &runtime, &shutdown) {
        Ok((summary, prefix)) => {
            // The JSON line names the table and where readers read it, as the text does.
            let mut fields = serde_json::to_value(&summary).expect("the summary serializes");
            fields["table"] = table.clone().into();
            fields["location"] = prefix.clone().into();
            kappa_common::logging::summary(&summary.render(&table, &prefix), &fields);
            if let Some(path) = summary_json
                && let Err(e) = std::fs::write(&path, serde_json::to_vec_pretty(&summary).expect("the summary serializes"))
            {
                exit_with(&format!("--summary-json {}: {e}", path.display()), 1);
            }
        }
        Err(e) => exit_with(&e, e.exit_code()),
    }
}
