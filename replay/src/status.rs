//! `kappa-replay status`, `gc` and `switch`: the table's generations.

use kappa_table::generation;

use crate::config::TableLocation;
use tokio::runtime::Runtime;

use crate::rebuild::{ReplayError, open_store};

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

pub(crate) fn status(runtime: &Runtime, location: &TableLocation) -> Result<(), ReplayError> {
    let (store, _) = open_store(runtime, location, false)?;
    let name = &location.table;
    let summaries = runtime.block_on(generation::summaries(&store, name))?;
    match summaries.iter().find(|s| s.current) {
        Some(current) => {
            let version = runtime.block_on(generation::current(&store, name))?.map_or(0, |p| p.switch);
            println!("table {name}: current generation {}, Delta table version {version}", current.record.generation);
            println!("read it at {}/{name}/ (a Delta table: DuckDB delta_scan, python deltalake, Spark, Athena through Glue)", location.lake);
        }
        None => println!("table {name}: no Delta table yet (no consumer has committed and no replay has switched)"),
    }
    println!("(* current, … incomplete; rows, files and bytes as readers read them: the current version, or the last version that held the generation)");
    println!("{:<3}{:<12} {:>12} {:>8} {:>14} {:>8} {:>13}  {:<21} origin", "", "generation", "rows", "files", "bytes", "commits", "versions", "created");
    for s in &summaries {
        let versions = s.versions.map_or_else(|| "-".to_string(), |(first, last)| format!("{first}-{last}"));
        println!(
            "{:<3}{:<12} {:>12} {:>8} {:>14} {:>8} {:>13}  {:<21} {}",
            if s.current {
                "*"
            } else if s.complete {
                ""
            } else {
                "…"
            },
            s.record.generation,
            s.totals.rows,
            s.totals.files,
            s.totals.bytes,
            s.commits,
            versions,
            if s.record.created_ms == 0 { "?".to_string() } else { time(s.record.created_ms) },
            s.record.origin
        );
    }
    Ok(())
}

pub(crate) fn gc(runtime: &Runtime, location: &TableLocation, keep: usize, retention: std::time::Duration) -> Result<(), ReplayError> {
    let (store, _) = open_store(runtime, location, false)?;
    let name = &location.table;
    let mut others: Vec<_> = runtime.block_on(generation::summaries(&store, name))?.into_iter().filter(|s| !s.current).collect();
    // Newest first; the current one is never a candidate. Incomplete generations (interrupted
    // replays) neither count among the kept nor stay, unless a replay is still writing one.
    others.sort_by(|a, b| b.record.generation.cmp(&a.record.generation));
    let (complete, incomplete): (Vec<_>, Vec<_>) = others.into_iter().partition(|s| s.complete);
    let mut removed = 0;
    for old in complete.iter().skip(keep).chain(incomplete.iter()) {
        let generation = &old.record.generation;
        // Time travel to the versions before the switch away from it reads its files for the
        // retention (also when the log's memory of removed files is shorter than that).
        let readable_until = old.record.retired_ms.map(|at| at + retention.as_millis() as i64);
        if let Some(until) = readable_until.filter(|until| *until > chrono::Utc::now().timestamp_millis()) {
            println!("left {generation}: versions before the switch away from it stay readable by time travel until {} (--retention)", time(until));
            continue;
        }
        // Incomplete when listed, but a replay may have finished it since: then it is the
        // newest complete one, not an abandoned one.
        if !old.complete && runtime.block_on(generation::is_complete(&store, name, generation))? {
            println!("left {generation}: its replay finished it just now");
            continue;
        }
        if !old.complete && runtime.block_on(generation::is_being_written(&store, name, generation))? {
            println!("left {generation}: a replay is writing it (it said so within the last minute)");
            continue;
        }
        let removal = runtime.block_on(generation::remove(&store, name, generation, retention))?;
        if removal.kept > 0 {
            println!(
                "left {generation}: versions of the Delta log name {} of its files, removed less than --retention ({}) ago: time travel reads them",
                removal.kept,
                humantime::format_duration(retention)
            );
            continue;
        }
        if removal.deleted == 0 && runtime.block_on(generation::is_being_written(&store, name, generation))? {
            println!("left {generation}: a writer is at work on it");
            continue;
        }
        println!("removed {generation} ({} objects, {} rows)", removal.deleted, old.totals.rows);
        removed += 1;
    }
    let swept = runtime.block_on(generation::sweep_removed(&store, name))?;
    if swept > 0 {
        println!("swept {swept} objects written into generations after gc removed them");
    }
    println!("kept the current generation and {} other(s); removed {removed}", complete.len().min(keep));
    Ok(())
}

pub(crate) fn switch(runtime: &Runtime, location: &TableLocation, target: &str, discard_foreign: bool) -> Result<(), ReplayError> {
    let (store, _) = open_store(runtime, location, false)?;
    let request = kappa_table::switch::SwitchRequest { generation: target.to_string(), discard_foreign, ..Default::default() };
    let done = runtime.block_on(kappa_table::switch::switch(&store, &location.table, &request))?;
    let pointer = &done.pointer;
    println!(
        "table {}: readers now resolve {} (was {}), Delta table version {}",
        location.table,
        pointer.generation,
        pointer.previous.as_deref().unwrap_or("none"),
        pointer.switch
    );
    if done.carried_files > 0 {
        println!("carried {} rows in {} files other writers appended", done.carried_rows, done.carried_files);
    }
    for change in &done.discarded {
        println!("discarded: {change}");
    }
    Ok(())
}

/// `kappa-replay compact`: the table's live generation (see `kappa_consumer::compact`).
pub(crate) fn compact(
    runtime: &Runtime,
    location: &TableLocation,
    options: &kappa_consumer::settings::CompactOptions,
) -> Result<kappa_consumer::compact::CompactReport, ReplayError> {
    let (store, _) = open_store(runtime, location, false)?;
    let table = runtime.block_on(kappa_table::Table::open_or_create(store, &location.table))?;
    Ok(kappa_consumer::compact::compact(runtime.handle(), &table, options, &|| false)?)
}
