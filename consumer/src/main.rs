//! kappa-consumer: reads events from a log.
//!
//! This first version has `inspect` only: what is in a log, shard by shard, and its first
//! events. Ingestion into the Parquet lake comes with the consumer's own issue.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use kappa_common::endpoint::Endpoint;
use kappa_common::log::{Log, StartAt};

#[derive(Debug, Parser)]
#[command(name = "kappa-consumer", version, about = "Reads events from a log (inspect)", max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Shows a log's shards (records, first and last arrival) and prints its first events.
    Inspect {
        /// The log to read: log:PATH.
        #[arg(long, value_name = "URI", default_value = "log:./data/log")]
        from: String,
        /// Events to print (from the start of each shard in turn); 0 prints none.
        #[arg(long, value_name = "N", default_value_t = 5)]
        limit: usize,
        /// Keep printing events as they are appended (stop with Ctrl-C).
        #[arg(long)]
        follow: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Inspect { from, limit, follow } => inspect(&from, limit, follow),
    }
}

fn inspect(from: &str, limit: usize, follow: bool) -> anyhow::Result<()> {
    let endpoint: Endpoint = from.parse()?;
    let Endpoint::Log(dir) = endpoint else {
        bail!("--from {from}: inspect reads the embedded log (log:PATH)");
    };
    let log = Log::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
    let mut total = 0;
    println!("log {} — {} shards", dir.display(), log.shard_count());
    for shard in 0..log.shard_count() {
        let end = log.shard_end(shard)?;
        total += end;
        let first = log.reader(shard, StartAt::Earliest)?.next()?;
        let arrival = |r: &Option<kappa_common::log::Record>| {
            r.as_ref().and_then(|r| chrono::DateTime::from_timestamp_millis(r.arrival_ms)).map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into())
        };
        println!("  shard {shard:>4}: {end:>10} records, first arrival {}", arrival(&first));
    }
    println!("  total      {total:>10} records");
    let mut printed = 0;
    for shard in 0..log.shard_count() {
        let mut reader = log.reader(shard, StartAt::Earliest)?;
        while printed < limit {
            let Some(record) = reader.next()? else { break };
            println!("{}/{}: {}", shard, record.seq, String::from_utf8_lossy(&record.payload));
            printed += 1;
        }
    }
    if follow {
        let mut readers: Vec<_> = (0..log.shard_count()).map(|s| log.reader(s, StartAt::Latest)).collect::<Result<_, _>>()?;
        loop {
            let mut idle = true;
            for reader in &mut readers {
                while let Some(record) = reader.next()? {
                    idle = false;
                    println!("{}/{}: {}", record.shard, record.seq, String::from_utf8_lossy(&record.payload));
                }
            }
            if idle {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Ok(())
}
