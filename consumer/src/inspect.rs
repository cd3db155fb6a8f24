//! `kappa-consumer inspect`: what a log holds.
//!
//! Every frame counted is read and checked (its CRC, and that sequence numbers run on without
//! a gap), so a damaged log is never reported healthy; `--quick` counts from each shard's
//! last segment only and says so.

use crate::stdout::say;
use std::time::Duration;

use anyhow::{Context, bail};
use kappa_common::endpoint::Endpoint;
use kappa_common::log::{Log, Record, StartAt};
use kappa_common::shaped::split_shaped;

pub fn inspect(from: &str, limit: usize, follow: bool, verify: bool) -> anyhow::Result<()> {
    let endpoint: Endpoint = from.parse()?;
    let Endpoint::Log(dir) = endpoint else {
        bail!("--from {from}: inspect reads the embedded log (log:PATH)");
    };
    let log = Log::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
    let arrival = |r: &Option<Record>| {
        r.as_ref().and_then(|r| chrono::DateTime::from_timestamp_millis(r.arrival_ms)).map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into())
    };
    let mut total = 0;
    say!("log {} — {} shards", dir.display(), log.shard_count());
    for shard in 0..log.shard_count() {
        let first_position = log.first_retained(shard)?.unwrap_or(0);
        let end = log.shard_end(shard)?;
        if verify {
            let verified = verify_shard(&log, shard).with_context(|| format!("verifying shard {shard}"))?;
            // A writer may append while this reads: more is fine, less is damage.
            if verified < end - first_position {
                bail!("shard {shard}: {verified} records read from position {first_position}, but its last segment ends at {end}");
            }
        }
        total += end - first_position;
        let first = log.reader(shard, StartAt::Earliest)?.next()?;
        let gone = if first_position > 0 { format!(" (records before {first_position} are gone)") } else { String::new() };
        say!("  shard {shard:>4}: {:>10} records, positions {first_position}..{end}, first arrival {}{gone}", end - first_position, arrival(&first));
    }
    say!("  total      {total:>10} records");
    if verify {
        say!("  verified: every frame read back, its CRC and sequence number checked");
    } else {
        say!("  not verified (--quick): counted from each shard's last segment; run without --quick to check every frame");
    }
    let mut printed = 0;
    for shard in 0..log.shard_count() {
        let mut reader = log.reader(shard, StartAt::Earliest)?;
        while printed < limit {
            let Some(record) = reader.next()? else { break };
            say!("{}/{}: {}", shard, record.seq, event_text(&log, &record.payload)?);
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
                    say!("{}/{}: {}", record.shard, record.seq, event_text(&log, &record.payload)?);
                }
            }
            if idle {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Ok(())
}

/// A record's event as a JSON object, as the producer would have sent it anywhere else (a
/// shaped event is shown as the object it stands for).
fn event_text(log: &Log, payload: &[u8]) -> anyhow::Result<String> {
    Ok(String::from_utf8_lossy(&log.event_object(payload)?).into_owned())
}

/// Reads a shard from its first record to its end, checking every frame, and that the shape
/// of every shaped event is there; returns the count.
fn verify_shard(log: &Log, shard: u32) -> Result<u64, kappa_common::log::LogError> {
    let mut reader = log.reader(shard, StartAt::Earliest)?;
    let mut payloads = Vec::with_capacity(1 << 20);
    let mut records = 0;
    let mut last_shape = None;
    while let Some((_, _, range)) = reader.next_appending(&mut payloads)? {
        if let Some((id, _)) = split_shaped(&payloads[range])
            && last_shape != Some(id)
        {
            log.shape(id)?;
            last_shape = Some(id);
        }
        records += 1;
        payloads.clear();
    }
    Ok(records)
}
