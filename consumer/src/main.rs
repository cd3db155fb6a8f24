use clap::Parser;
use kappa_consumer::config::{Cli, Command};

// The system allocator, on purpose: with decoding and encoding spread over threads, mimalloc
// held 250 MiB where glibc holds 157 MiB on bench/consumer.sh, at the same speed.

fn main() -> anyhow::Result<()> {
    kappa_common::memory::keep_freed_memory();
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
