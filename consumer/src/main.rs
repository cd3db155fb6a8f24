use clap::Parser;
use kappa_consumer::config::{Cli, Command};

// Decoded batches are built on the pipeline thread and freed after encoding; mimalloc keeps
// fragmentation and RSS down under that churn.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    kappa_common::logging::init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Inspect { from, limit, follow }) => return kappa_consumer::inspect::inspect(&from, limit, follow),
        Some(Command::Describe { lake, table, limit }) => return kappa_consumer::describe::describe(&lake, &table, limit),
        None => {}
    }
    let config = match cli.run.validate() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let table = config.table.clone();
    let summary_json = config.summary_json.clone();
    match kappa_consumer::run::run(config) {
        Ok((summary, prefix)) => {
            eprint!("{}", summary.render(&table, &prefix));
            if let Some(path) = summary_json {
                std::fs::write(&path, serde_json::to_vec_pretty(&summary)?)?;
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
