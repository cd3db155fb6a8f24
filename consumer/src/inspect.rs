//! `kappa-consumer inspect`: what a log holds.

use std::time::Duration;

use anyhow::{Context, bail};
use kappa_common::endpoint::Endpoint;
use kappa_common::log::{Log, Record, StartAt};

pub fn inspect(from: &str, limit: usize, follow: bool) -> anyhow::Result<()> {
    let endpoint: Endpoint = from.parse()?;
    let Endpoint::Log(dir) = endpoint else {
        bail!("--from {from}: inspect reads the embedded log (log:PATH)");
    };
    let log = Log::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
    let arrival = |r: &Option<Record>| {
        r.as_ref().and_then(|r| chrono::DateTime::from_timestamp_millis(r.arrival_ms)).map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into())
    };
    let mut total = 0;
    println!("log {} — {} shards", dir.display(), log.shard_count());
    for shard in 0..log.shard_count() {
        let end = log.shard_end(shard)?;
        total += end;
        let first = log.reader(shard, StartAt::Earliest)?.next()?;
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
