//! kappa-replay: rebuilds a lake table from the log into a new generation, verifies it, and
//! switches readers to it atomically. See `rebuild.rs` for the steps.

mod config;
mod progress;
mod rebuild;
mod status;
mod verify;

use clap::Parser;

use crate::config::{Cli, Command};

// The system allocator, as the consumer's pipeline (run here too) holds less memory with it.

fn main() -> anyhow::Result<()> {
    kappa_common::memory::keep_freed_memory();
    kappa_common::logging::init();
    let cli = Cli::parse();
    let fail = |e: &dyn std::fmt::Display, code: i32| -> ! {
        eprintln!("error: {e}");
        std::process::exit(code)
    };
    if let Some(command) = cli.command {
        let location = |table: config::TableArgs| table.validate().unwrap_or_else(|e| fail(&e, 2));
        let result = match command {
            Command::Status(table) => status::status(&location(table)),
            Command::Gc { table, keep } => status::gc(&location(table), keep),
            Command::Switch { table, generation } => status::switch(&location(table), &generation),
        };
        return result.map_err(Into::into);
    }
    let config = cli.run.validate().unwrap_or_else(|e| fail(&e, 2));
    let summary_json = config.summary_json.clone();
    match rebuild::replay(config) {
        Ok(summary) => {
            eprint!("{}", summary.render());
            if let Some(path) = summary_json {
                std::fs::write(&path, serde_json::to_vec_pretty(&summary)?)?;
            }
            let checks_failed = summary.verify.as_ref().is_some_and(|v| !v.ok) || summary.compare.as_ref().is_some_and(|c| !c.ok);
            if checks_failed {
                std::process::exit(1);
            }
            Ok(())
        }
        Err(e) => fail(&e, 1),
    }
}
