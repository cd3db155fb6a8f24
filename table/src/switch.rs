//! The switch: one Delta commit that moves every reader from the current generation to
//! another, and hands the consumer the positions it continues from.
//!
//! Two kinds of target:
//! - a replay's generation, complete, that readers never saw: its files and state come from
//!   its own log (`_kappa/<generation>/commits/`);
//! - a generation a switch replaced (a switch back): its files and the consumer's state come
//!   from the last version of the Delta log that held it; its files must still be there.
//!
//! What the switch must not do, step by step:
//! 1. make a committed row disappear: with `at_version`, the commit is made only on that
//!    version (a replay caught up to the live consumer's positions there); a consumer commit
//!    made meanwhile fails the switch, and the replay catches up again;
//! 2. drop what other writers changed without a word: the files another writer appended are
//!    carried into the new table as they are (see [`crate::delta::ForeignChanges`]); a change
//!    that cannot be carried (a foreign DELETE, an OPTIMIZE that mixed appended rows with ours,
//!    a re-partitioned target) refuses the switch, naming the versions and rows, unless the
//!    caller says to discard them;
//! 3. race `gc`: the switch announces itself (a writer record naming the target) before it
//!    reads anything; a gc removing the target either sees that and leaves it, or marked it
//!    removed first, and the switch refuses.

use std::collections::HashSet;

use kappa_common::store::Store;

use crate::TableError;
use crate::delta::{DeltaError, ForeignChanges, ForeignScan, GENERATION_SINCE_PROPERTY, LakeTable, TableSetup};
use crate::generation::{Pointer, current};
use crate::registry::{is_complete, records, retire};
use crate::state::{CONSUMER_APP_ID, Commit, FORMAT, GENERATION_PROPERTY, Layout};
use crate::table::{Table, delta_file, location, partition_columns, properties};

/// What a switch is asked to do.
#[derive(Debug, Clone, Default)]
pub struct SwitchRequest {
    pub generation: String,
    /// Fails unless the current generation is still this one.
    pub expected: Option<String>,
    /// Fails unless the table is still at this version.
    pub at_version: Option<u64>,
    /// Switch even when other writers' changes cannot be carried over (they are dropped).
    pub discard_foreign: bool,
    /// What other writers did, as scanned up to an earlier version (a replay scans before it
    /// switches): only the versions since are read, so the switch is not held up by the whole
    /// history while a consumer commits.
    pub scan: Option<ForeignScan>,
}

/// What a switch did.
#[derive(Debug, Clone)]
pub struct Switched {
    pub pointer: Pointer,
    /// Other writers' files carried into the new table, and their rows.
    pub carried_files: usize,
    pub carried_rows: u64,
    /// Changes of other writers that were dropped (asked for with `discard_foreign`).
    pub discarded: Vec<String>,
}

/// Switches readers to `request.generation` (see the module doc).
pub async fn switch(store: &Store, table: &str, request: &SwitchRequest) -> Result<Switched, TableError> {
    let writer = crate::writers::Writer::register(store, table, "switch", Some(&request.generation)).await?;
    writer.pending(&format!("{}/", request.generation)).await?;
    let switched = announced(store, table, request).await;
    // The switch is made (or not) whatever happens to the record: it goes stale by itself.
    if let Err(e) = writer.finish().await {
        tracing::warn!(error = %e, "could not remove the switch's writer record; it goes stale once this process exits");
    }
    switched
}

/// Other writers' changes to the current generation, as a switch would find them now,
/// continuing `previous` (see [`SwitchRequest::scan`]).
pub async fn foreign_scan(store: &Store, table: &str, previous: Option<ForeignScan>) -> Result<Option<ForeignScan>, TableError> {
    match LakeTable::open(table, &location(store, table)?).await? {
        Some(lake) => Ok(Some(lake.foreign_scan(previous).await?)),
        None => Ok(None),
    }
}

/// The target's files, schema and the state the consumer continues from.
struct Target {
    /// A replay's files, named by the generation's paths.
    files: Vec<crate::state::DataFile>,
    /// A replaced generation's files, as the log had them.
    restore: Vec<deltalake_core::kernel::Add>,
    setup: TableSetup,
    state: Commit,
    /// The table the target's own commits make (the consumer's counter goes on above them).
    last_commit: u64,
}

async fn announced(store: &Store, table: &str, request: &SwitchRequest) -> Result<Switched, TableError> {
    let generation = request.generation.as_str();
    let conflict = || TableError::SwitchConflict { table: table.to_string(), generation: generation.to_string() };
    let invalid = |reason: String| TableError::Invalid { table: table.to_string(), reason };
    let Some(record) = records(store, table).await?.into_iter().find(|r| r.generation == generation) else {
        return Err(invalid(format!("there is no generation {generation}")));
    };
    if record.removed_ms.is_some() {
        return Err(invalid(format!("{generation} was removed by gc")));
    }
    if current(store, table).await?.is_some_and(|p| p.generation == generation) {
        return Err(invalid(format!("{generation} is already current")));
    }
    let location = location(store, table)?;
    let lake = LakeTable::open(table, &location).await?;
    let live = match &lake {
        Some(lake) => Some(lake.configuration()?.get(GENERATION_PROPERTY).cloned().unwrap_or_default()),
        None => None,
    };
    if request.expected.is_some() && live != request.expected {
        return Err(conflict());
    }
    let moved = |version: u64| TableError::VersionMoved { table: table.to_string(), generation: generation.to_string(), version };
    if let (Some(version), Some(lake)) = (request.at_version, &lake)
        && lake.version() != Some(version)
    {
        return Err(moved(version));
    }
    // A generation readers read before (a switch replaced it) comes back as the log last held
    // it; its own log, if it has one, stopped when it went live.
    let target = match (&lake, record.retired_ms) {
        (Some(lake), Some(_)) => match lake.spans().await?.into_iter().rev().find(|s| s.generation == generation) {
            Some(span) => replaced(table, &location, store, generation, span.first..=span.last).await?,
            None => {
                return Err(invalid(format!(
                    "{generation} was current before, but the Delta log no longer holds its versions (log retention): it cannot come back as \
                     readers last read it; replay the source into a new generation instead"
                )));
            }
        },
        _ => staged(store, table, generation, lake.as_ref()).await?,
    };
    // Other writers' changes since the current generation became current.
    let (mut keep, mut carried_rows, mut discarded) = (Vec::new(), 0, Vec::new());
    if let Some(lake) = &lake {
        let mut changes = lake.foreign_scan(request.scan.clone()).await?.changes;
        if !changes.appended.is_empty()
            && let Some(why) = uncarriable(lake, &target.setup)?
        {
            changes.uncarriable.push(format!(
                "{} files ({} rows) other writers appended cannot be carried: {why}",
                changes.appended.len(),
                changes.appended_rows()
            ));
        }
        if !changes.uncarriable.is_empty() {
            if !request.discard_foreign {
                return Err(TableError::Refused { table: table.to_string(), reason: refusal(generation, &changes) });
            }
            discarded = changes.uncarriable.clone();
            tracing::warn!(changes = ?changes.uncarriable, "dropping what other writers changed, as asked (--discard-foreign-changes)");
        } else {
            carried_rows = changes.appended_rows();
            keep = changes.appended.into_keys().collect();
        }
    }
    let (mut lake, previous) = match lake {
        Some(lake) => {
            let previous = lake.writer_counter(CONSUMER_APP_ID).await?;
            (lake, previous)
        }
        None => (LakeTable::create(table, &location, &target.setup).await?, None),
    };
    // The consumer goes on numbering from here: above the target's own commits, whose
    // quarantine and archive objects are named by their numbers.
    let counter = previous.unwrap_or(0).max(target.last_commit as i64) + 1;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let handed_over = Commit {
        format: FORMAT,
        commit: counter as u64,
        generation: generation.to_string(),
        created_ms: now_ms,
        added: Vec::new(),
        removed: Vec::new(),
        errors: Vec::new(),
        archived: Vec::new(),
        carried: keep.clone(),
        ..target.state
    };
    let handed_over = Table::open_generation(store.clone(), table, generation).externalized(&handed_over).await?;
    let add = target.files.iter().map(|f| delta_file(generation, f, &target.setup.partition_columns)).collect::<Result<Vec<_>, _>>()?;
    // A file both carried and restored (an appended file the replaced generation also had)
    // stays where it is.
    let kept: HashSet<&str> = keep.iter().map(String::as_str).collect();
    let restore: Vec<_> = target.restore.into_iter().filter(|a| !kept.contains(a.path.as_str())).collect();
    // Marked before the commit: a switch that then fails leaves a mark on the generation that
    // stays current (gc never removes that one), never a retired generation without one.
    if let Some(live) = &live {
        retire(store, table, live, now_ms).await?;
    }
    let carried_files = keep.len();
    // The switch's own version (made on the loaded version only): where the next switch reads
    // what happened to this generation from.
    let mut setup = target.setup;
    setup.configuration.insert(GENERATION_SINCE_PROPERTY.to_string(), (lake.version().map_or(0, |v| v + 1)).to_string());
    let commit = crate::delta::Commit {
        also: Vec::new(),
        fence: false,
        generation: None,
        app_id: CONSUMER_APP_ID.to_string(),
        counter,
        previous,
        commit_id: format!("switch-{generation}-{now_ms}"),
        add,
        remove: Vec::new(),
        data_change: true,
        replace_all: true,
        keep,
        restore,
        setup: Some(setup),
        state: serde_json::to_value(&handed_over).expect("serializes"),
    };
    match lake.commit(commit).await {
        Ok(version) => {
            // The switch removed every file of the old generation: readers open the new one
            // from a checkpoint rather than by replaying the old one's history.
            lake.checkpoint_latest().await;
            let pointer = Pointer { switch: version, generation: generation.to_string(), switched_ms: now_ms, previous: live };
            Ok(Switched { pointer, carried_files, carried_rows, discarded })
        }
        // Lost to a commit made meanwhile: a consumer's (the same generation, moved on), or
        // another switch's.
        Err(DeltaError::ConcurrentWriter { .. } | DeltaError::Raced { .. } | DeltaError::FilesGone { .. }) => {
            let now = LakeTable::open(table, &location).await?;
            let still = now.as_ref().and_then(|l| l.configuration().ok()?.get(GENERATION_PROPERTY).cloned());
            match (request.at_version, still == live) {
                (Some(version), true) => Err(moved(version)),
                _ => Err(conflict()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// A replay's generation, from its own log.
async fn staged(store: &Store, table: &str, generation: &str, lake: Option<&LakeTable>) -> Result<Target, TableError> {
    let invalid = |reason: String| TableError::Invalid { table: table.to_string(), reason };
    if !is_complete(store, table, generation).await? {
        return Err(invalid(format!("{generation} is incomplete (its replay did not finish); readers would see part of the data")));
    }
    let staged = Table::open_generation(store.clone(), table, generation);
    let (files, state) = staged.staged().await?;
    let Some((schema_version, schema)) = staged.latest_schema().await? else {
        return Err(invalid(format!("{generation} has no schema (it never read an event); nothing to switch to")));
    };
    let layout = match staged.layout().await? {
        Some(layout) => layout,
        None => Layout {
            partition_by: lake.and_then(|l| l.configuration().ok()?.get("kappa.partitionBy").cloned()).unwrap_or_else(|| "day".into()),
            event_time: None,
        },
    };
    let partition_columns = partition_columns(&schema, &layout);
    let setup = TableSetup { schema, partition_columns, configuration: properties(generation, &layout, schema_version) };
    let last_commit = state.last_commit;
    let state = Commit {
        format: FORMAT,
        commit: state.last_commit,
        generation: generation.to_string(),
        created_ms: 0,
        schema_version: state.schema_version,
        added: Vec::new(),
        removed: Vec::new(),
        errors: Vec::new(),
        resume: state.resume,
        written: state.written,
        quarantined: state.quarantined,
        totals: state.totals,
        unacknowledged: state.unacknowledged,
        unacknowledged_ref: None,
        archived: Vec::new(),
        archive_positions: state.archive_positions,
        // The files the replay read stay recognised when they are sent again.
        seen: state.seen,
        seen_ref: None,
        horizons: state.horizons,
        carried: Vec::new(),
        claims: None,
        claims_ref: None,
        epochs: Default::default(),
    };
    Ok(Target { files, restore: Vec::new(), setup, state, last_commit })
}

/// A generation a switch replaced: its files and the consumer's state as of the last version
/// of `span`, the versions that held it.
async fn replaced(
    table: &str,
    location: &crate::delta::TableLocation,
    store: &Store,
    generation: &str,
    span: std::ops::RangeInclusive<u64>,
) -> Result<Target, TableError> {
    let version = *span.end();
    let invalid = |reason: String| TableError::Invalid { table: table.to_string(), reason };
    let mut then = LakeTable::open_at(table, location, version).await.map_err(|e| {
        invalid(format!(
            "{generation} was last current at version {version}, which the log no longer holds ({e}); replay the source into a new generation instead"
        ))
    })?;
    let restore = then.add_actions().await?;
    // Every file must still be there: a vacuum after the switch may have removed them.
    let present: HashSet<String> = store.list(&format!("{table}/")).await?.into_iter().map(|o| o.path[table.len() + 1..].to_string()).collect();
    // The snapshot's paths are decoded, as the store names objects.
    let missing: Vec<&str> = restore.iter().map(|a| a.path.as_str()).filter(|p| !present.contains(*p)).collect();
    if let Some(example) = missing.first() {
        return Err(invalid(format!(
            "{generation} cannot come back: {} of its {} files are gone (vacuumed after the switch replaced it; e.g. {example}); replay the source into a new generation instead",
            missing.len(),
            restore.len()
        )));
    }
    let parse = |found| crate::table::commit_of(table, found);
    let staged = Table::open_generation(store.clone(), table, generation);
    let Some(consumer) = then.writer_state(CONSUMER_APP_ID).await? else {
        return Err(invalid(format!("{generation}: no consumer state in the log at version {version}; replay the source into a new generation instead")));
    };
    let since = consumer.version;
    let mut state = staged.internalized(parse(consumer)?).await?;
    // Workers sharing the shards through leases commit each shard under its own `txn`: a
    // shard's commit of this generation newer than the consumer's state says where it stood.
    // Without it, a switch back handed over the older positions, and the workers read again
    // rows the restored files hold.
    for app_id in then.shard_writers(*span.start(), version).await? {
        let Some(own) = then.writer_state(&app_id).await? else { continue };
        if own.version <= since {
            continue;
        }
        let record = parse(own)?;
        if record.generation == generation {
            let shard = app_id.strip_prefix(crate::state::SHARD_APP_PREFIX).unwrap_or(&app_id);
            record.shard_part(shard).into_commit(shard, &mut state);
        }
    }
    let setup =
        TableSetup { schema: then.data_schema()?, partition_columns: then.partition_columns()?, configuration: then.configuration()?.into_iter().collect() };
    tracing::info!(generation, version, files = restore.len(), "switching back to a generation as the log held it at that version");
    Ok(Target { files: Vec::new(), restore, setup, last_commit: state.commit, state: Commit { generation: generation.to_string(), ..state } })
}

/// Why files appended to the current table cannot join the target's, if they cannot.
fn uncarriable(lake: &LakeTable, target: &TableSetup) -> Result<Option<String>, TableError> {
    let columns = lake.partition_columns()?;
    if columns != target.partition_columns {
        return Ok(Some(format!("the new generation is partitioned by [{}], the table by [{}]", target.partition_columns.join(", "), columns.join(", "))));
    }
    let live = lake.data_schema()?;
    for column in &live.fields {
        match target.schema.fields.iter().find(|c| c.name == column.name) {
            Some(found) if found.column_type == column.column_type => {}
            Some(found) => {
                return Ok(Some(format!("column {} is {} in the table and {} in the new generation", column.name, column.column_type, found.column_type)));
            }
            None => return Ok(Some(format!("the new generation has no column {}", column.name))),
        }
    }
    Ok(None)
}

/// The refusal: what other writers did, the rows concerned, what to do.
fn refusal(generation: &str, changes: &ForeignChanges) -> String {
    format!(
        "other writers changed the table since its current generation became current (version {}), in ways the new generation cannot \
         carry: {}. {generation} holds what the log holds, so switching to it would undo this ({} rows they added, {} rows they removed, {} \
         rows they appended). Nothing was switched. Pass --discard-foreign-changes to switch anyway",
        changes.since,
        changes.uncarriable.join("; "),
        changes.rows_added,
        changes.rows_removed,
        changes.appended_rows()
    )
}
