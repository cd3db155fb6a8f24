//! The program `kappa-replay`: its flags parsed, its runtime built, the run, its exit status.
//! Called by the `kappa-replay` binary and by the image's multi-call `kappa-lake` binary.

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches};

use crate::config::{Cli, Command, TableArgs};
use crate::{rebuild, shared, status};

/// Runs the program with `args` (the first names the program, as `std::env::args_os`), the
/// version naming `commit`.
///
/// Exit status: 0 done; 1 an error, or --verify/--compare found a difference; 2
/// misconfiguration; 3 more quarantined events than --max-quarantine-ratio allows.
pub fn main(args: Vec<OsString>, commit: Option<&str>) {
    let version = kappa_common::logging::version_line(commit);
    let cli = Cli::from_arg_matches(&Cli::command().version(version).get_matches_from(args)).unwrap_or_else(|e| e.exit());
    kappa_common::logging::init(cli.log_format);
    let fail = |e: &dyn std::fmt::Display, code: i32| -> ! { kappa_common::logging::exit_with(e, code) };
    let runtime = kappa_common::memory::runtime();
    if let Some(command) = cli.command {
        let location = |table: TableArgs| table.validate().unwrap_or_else(|e| fail(&e, 2));
        let result = match command {
            Command::Status(table) => status::status(&runtime, &location(table)),
            Command::Gc { table, keep, retention } => status::gc(&runtime, &location(table), keep, retention),
            Command::Switch { table, generation, discard_foreign_changes } => status::switch(&runtime, &location(table), &generation, discard_foreign_changes),
            Command::Compact { table, target_file_size, min_age, retention, compression, commit_every, dry_run, summary_json } => {
                let name = table.table.clone();
                let options = kappa_consumer::settings::CompactOptions { target_file_size, min_age, retention, codec: compression, dry_run, commit_every };
                status::compact(&runtime, &location(table), &options).map(|report| {
                    kappa_common::logging::summary(&report.render(&name), &report);
                    if let Some(path) = summary_json
                        && let Err(e) = std::fs::write(&path, serde_json::to_vec_pretty(&report).expect("the report serializes"))
                    {
                        fail(&format!("--summary-json {}: {e}", path.display()), 1);
                    }
                })
            }
        };
        if let Err(e) = result {
            fail(&e, 1);
        }
        return;
    }
    let config = cli.run.validate().unwrap_or_else(|e| fail(&e, 2));
    let summary_json = config.summary_json.clone();
    let shutdown = kappa_common::shutdown::Shutdown::default();
    shutdown.listen(runtime.handle(), "stopping: the new generation stays unswitched");
    // With --leases, one of several processes sharing the replay (see shared.rs).
    let replayed = match config.leases.is_some() {
        true => shared::replay_shared(config, &runtime, &shutdown),
        false => rebuild::replay(config, &runtime, &shutdown),
    };
    match replayed {
        Ok(summary) => {
            kappa_common::logging::summary(&summary.render(), &summary);
            if let Some(path) = summary_json
                && let Err(e) = std::fs::write(&path, serde_json::to_vec_pretty(&summary).expect("the summary serializes"))
            {
                fail(&format!("--summary-json {}: {e}", path.display()), 1);
            }
            let checks_failed = summary.verify.as_ref().is_some_and(|v| !v.ok) || summary.compare.as_ref().is_some_and(|c| !c.ok);
            if checks_failed {
                std::process::exit(1);
            }
        }
        Err(e) => fail(&e, e.exit_code()),
    }
}
