//! The replay itself: the log (or Kinesis), read to its end, through the consumer's own
//! pipeline into a new generation; then verify, compare, switch.
//!
//! Step by step:
//! 1. Resolve the current generation (it keeps serving throughout) and create the next one.
//! 2. Read every shard from its start (or `--at-timestamp`) up to what it held when the replay
//!    started (or `--until`), through the same decode → partition → buffer → Parquet → commit
//!    path as the live consumer. With the consumer's settings, the files are the same bytes.
//! 3. Write what is still buffered and commit: the generation is complete, and its last
//!    commit holds the positions the live consumer continues from after a switch.
//! 4. `--verify` (and `--compare`) read the new generation back; `--switch` then creates the
//!    next pointer record, conditional on the current generation being the one of step 1.
//!
//! 5. With `--switch` under a running consumer, catch up to what it committed meanwhile, then
//!    switch on that version only (see `catch_up.rs`); the consumer continues on the new
//!    generation by itself.
//!
//! Interrupted (SIGINT/SIGTERM, or killed), a replay leaves an unswitched generation behind:
//! readers never see it. The same replay run again (the same settings) continues it from its
//! last commit, reading each shard after the positions that commit recorded; `--fresh` starts a
//! new one, and `kappa-replay gc` removes it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_common::aws::AwsContext;
use kappa_common::log::Log;
use kappa_common::schema::TableSchema;
use kappa_common::shutdown::Shutdown;
use kappa_common::store::Store;
use kappa_consumer::feed::Feed;
use kappa_consumer::pipeline::Pipeline;
use kappa_consumer::source::log::LogSource;
use kappa_consumer::source::{Source, SourceError};
use kappa_table::lake::LakeLocation;

pub(crate) use crate::error::ReplayError;
use kappa_consumer::stats::Stats;
use kappa_table::Table;
use kappa_table::generation;
use serde::Serialize;
use tokio::runtime::Runtime;

use crate::config::{ReplayConfig, ReplaySource, TableLocation};
use crate::progress::Progress;
use crate::verify::{CompareReport, VerifyReport};

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReplaySummary {
    pub table: String,
    pub generation: String,
    /// The table's root, where every Delta reader reads it (the new generation once switched).
    pub location: String,
    /// It continued a generation an interrupted replay with the same settings left.
    pub continued: bool,
    /// The pipeline's counters, as the consumer reports them (elapsed: the whole replay).
    #[serde(flatten)]
    pub run: kappa_consumer::stats::Summary,
    /// Rows read after the main read to catch up with a live consumer before the switch.
    pub caught_up_rows: u64,
    pub verify: Option<VerifyReport>,
    pub compare: Option<CompareReport>,
    /// The generation current before; `switched` says whether readers moved.
    pub previous: Option<String>,
    pub switched: bool,
    /// Files and rows other writers appended, carried into the new generation by the switch.
    pub carried_files: usize,
    pub carried_rows: u64,
    /// Other writers' changes the switch dropped (--discard-foreign-changes).
    pub discarded: Vec<String>,
    /// A shared replay (`--leases`) that another process of the job finished: this process
    /// wrote its part of the generation only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub finished_elsewhere: bool,
}

/// The store of a table location, and the AWS configuration when a service is involved.
pub(crate) fn open_store(runtime: &Runtime, location: &TableLocation, needs_aws: bool) -> Result<(Store, Option<AwsContext>), ReplayError> {
    let needs_aws = needs_aws || matches!(location.lake, LakeLocation::S3 { .. });
    let aws = if needs_aws { Some(runtime.block_on(AwsContext::load(&location.aws))?) } else { None };
    Ok((kappa_table::lake::open_store(&location.lake, aws.as_ref()), aws))
}

pub(crate) fn replay(config: ReplayConfig, runtime: &Runtime, shutdown: &Shutdown) -> Result<ReplaySummary, ReplayError> {
    let started = Instant::now();
    let needs_aws = matches!(config.source, ReplaySource::Kinesis(_) | ReplaySource::Raw(LakeLocation::S3 { .. })) || config.glue_database.is_some();
    let (store, aws) = open_store(runtime, &config.location, needs_aws)?;
    let name = config.location.table.clone();
    // A wrong --from fails before any generation is made.
    crate::source::check(&config, runtime, aws.as_ref())?;

    // 1. The current generation keeps serving. The source is opened first, so a wrong --from
    //    fails before any generation is made.
    let (previous, live_state, schema) = current_and_schema(&config, runtime, &store, &name)?;
    if let (ReplaySource::Raw(_), true, Some(live)) = (&config.source, config.switch, &live_state) {
        // A raw replay numbers events itself: a consumer fed by the log or Kinesis could not
        // continue the new generation from its positions.
        let positioned: Vec<&String> =
            live.resume.keys().filter(|s| !kappa_consumer::source::sqs::is_sqs_shard(s) && s.as_str() != kappa_consumer::source::raw::SHARD).collect();
        if !positioned.is_empty() {
            return Err(ReplayError::Refused(format!(
                "--switch: the current generation is fed from a positioned source (shards {positioned:?}); a generation rebuilt from raw objects carries no positions for it. Replay from the log or Kinesis instead, or switch by hand after deciding where the consumer resumes"
            )));
        }
    }
    // 2. The generation: the incomplete one an interrupted replay with these settings left
    //    (continued from its last commit), or a new one. This replay announces it first (its
    //    writer record, renewed while it runs): `gc` and every other deleting tool leave an
    //    announced generation alone, and an announcement made before the generation's record
    //    exists leaves gc no moment to take it for abandoned.
    let writer = runtime.block_on(kappa_table::writers::Writer::register(&store, &name, "replay", None))?;
    let chosen = runtime.block_on(async {
        if !config.fresh
            && let Some(generation) = resumable(&store, &name, &config.origin, config.switch).await?
        {
            writer.writes(&generation).await?;
            // A gc that took it before the announcement, or another replay that chose it at the
            // same moment: start a new one instead.
            let record = generation::records(&store, &name).await?.into_iter().find(|r| r.generation == generation);
            let host = kappa_table::writers::host_name();
            let rivals = kappa_table::writers::alive(&store, &name)
                .await?
                .into_iter()
                .any(|w| w.generation.as_deref() == Some(generation.as_str()) && !(w.host == host && w.pid == std::process::id()));
            if record.is_some_and(|r| r.removed_ms.is_none()) && !rivals {
                return Ok::<_, kappa_table::TableError>((generation, true));
            }
        }
        loop {
            let generation = generation::next_name(&store, &name).await?;
            writer.writes(&generation).await?;
            if generation::claim(&store, &name, &generation, &config.origin).await? {
                return Ok((generation, false));
            }
        }
    });
    let (new_generation, continued) = match chosen {
        Ok((generation, continued)) => (generation.clone(), continued.then_some(generation)),
        Err(e) => {
            let _ = runtime.block_on(writer.finish());
            return Err(e.into());
        }
    };
    let table = Table::open_generation(store.clone(), &name, &new_generation);
    let location = format!("{}/{name}", config.location.lake);
    match &continued {
        Some(generation) => {
            tracing::info!(generation = %generation, current = previous.as_deref().unwrap_or("none"), "continuing the generation an interrupted replay with these settings left (--fresh starts a new one)")
        }
        None => tracing::info!(generation = %new_generation, current = previous.as_deref().unwrap_or("none"), "replaying {}", config.source),
    }
    let writer_done = move || {
        if let Err(e) = runtime.block_on(writer.finish()) {
            tracing::warn!(error = %e, "cannot remove the replay's writer record; other tools take it for dead once this process exits");
        }
    };

    // 3. Read the source to its end through the consumer's pipeline, from where the
    //    generation's last commit stands.
    let stats = Arc::new(Stats::default());
    let log = match &config.source {
        ReplaySource::Log(path) => Some(Log::open(path).map_err(SourceError::from)?),
        _ => None,
    };
    let shards = log.as_ref().map(LogSource::shard_names).unwrap_or_else(|| match &config.source {
        ReplaySource::Raw(_) => vec![kappa_consumer::source::raw::SHARD.to_string()],
        _ => Vec::new(),
    });
    let (mut pipeline, _) = Pipeline::open(table, runtime.handle().clone(), config.pipeline.clone(), shards, schema, stats.clone())?;
    // The live table as the replay begins: a raw replay's switch needs it unchanged at the end.
    let at_start = match previous {
        Some(_) => runtime.block_on(crate::catch_up::live_at(&store, &name, &[]))?,
        None => None,
    };
    let mut source = match crate::source::open(&config, runtime, aws.as_ref(), &store, &name, log, &pipeline) {
        Ok(source) => source,
        Err(e) => {
            writer_done();
            return Err(e);
        }
    };
    let total = match &source {
        Source::Log(s) => Some(s.total()),
        _ => None,
    };
    let mut progress = Progress::new(total, config.progress_interval);
    let result = (|| -> Result<(), ReplayError> {
        let mut feed = Feed::new();
        while !source.finished() || !feed.is_empty() {
            if shutdown.is_requested() {
                return Err(ReplayError::Interrupted { generation: new_generation.clone() });
            }
            if feed.step(&mut source, &mut pipeline, Duration::from_millis(200))? {
                progress.set(stats.read(), stats.written());
            }
            pipeline.flush_due()?;
        }
        Ok(())
    })();
    source.stop();
    progress.finish(stats.read(), stats.written());
    if let Err(e) = result {
        writer_done();
        return Err(e);
    }

    // 4. The rest, committed: the generation is complete.
    let completed = (|| -> Result<(), ReplayError> {
        pipeline.flush_all()?;
        if let (ReplaySource::Raw(_), Some(live)) = (&config.source, &live_state) {
            pipeline.acks().adopt(&live.unacknowledged);
            pipeline.commit_acknowledgements()?;
        }
        Ok(runtime.block_on(generation::mark_complete_for(&store, &name, &new_generation, config.switch))?)
    })();
    if let Err(e) = completed {
        writer_done();
        return Err(e);
    }

    // The generation stays announced until readers are switched to it: a gc meanwhile must not
    // take a complete generation waiting for its switch for an abandoned one.
    let finishing = Finishing {
        config: &config,
        runtime,
        aws: aws.as_ref(),
        store: &store,
        name: &name,
        at_start,
        shutdown,
        previous,
        new_generation: &new_generation,
        location,
        started,
        stats: &stats,
        accounted: &stats,
        continued: continued.is_some(),
    };
    let finished = finishing.finish(&mut pipeline);
    writer_done();
    finished
}

/// The generation current as the replay begins, its state, and the schema the replay writes.
type CurrentAndSchema = (Option<String>, Option<kappa_table::TableState>, Option<TableSchema>);

/// The generation current as the replay begins, its state, and the schema the replay writes:
/// the current table's columns and types, retyped by --schema.
pub(crate) fn current_and_schema(config: &ReplayConfig, runtime: &Runtime, store: &Store, name: &str) -> Result<CurrentAndSchema, ReplayError> {
    let previous = runtime.block_on(generation::current(store, name))?.map(|p| p.generation);
    let (live_state, live_schema) = match &previous {
        Some(_) => {
            let (state, schema) = runtime.block_on(async {
                let live = Table::open_or_create(store.clone(), name).await?;
                Ok::<_, kappa_table::TableError>((live.load_state().await?, live.live_schema().await?))
            })?;
            (Some(state), schema)
        }
        None => (None, None),
    };
    // A replay keeps the table's column types unless told otherwise: inferred again, a
    // timestamp the table holds could come back a string, and a switch would change it for
    // every reader.
    let schema = match (&config.schema, live_schema) {
        // --schema retypes the columns it names (the fix a quarantine reason proposes:
        // "replay with a --schema that types x as float64"); the table's other columns keep
        // their types.
        (Some(given), Some(live)) => Some(retyped(live, given)),
        (Some(given), None) => Some(given.clone()),
        (None, Some(live)) => {
            tracing::info!(columns = live.fields.len(), "keeping the current table's columns and types (--schema changes them)");
            Some(live)
        }
        (None, None) => None,
    };
    Ok((previous, live_state, schema))
}

/// What the steps after a generation is complete need: catch up, check, compare, switch.
pub(crate) struct Finishing<'a> {
    pub config: &'a ReplayConfig,
    pub runtime: &'a Runtime,
    pub aws: Option<&'a AwsContext>,
    pub store: &'a Store,
    pub name: &'a str,
    /// The live table when the replay began.
    pub at_start: Option<crate::catch_up::LiveAt>,
    pub shutdown: &'a Shutdown,
    /// The generation current when the replay began.
    pub previous: Option<String>,
    pub new_generation: &'a str,
    pub location: String,
    pub started: Instant,
    pub stats: &'a Arc<Stats>,
    /// The counters of the pipeline that `finish` reads with, every event of which `--verify`
    /// accounts for: `stats`, but for a shared replay's finisher, whose process's other reads
    /// include sessions dropped when shards moved.
    pub accounted: &'a Arc<Stats>,
    /// The generation was begun by an earlier run (or other processes wrote part of it): its
    /// verification counts the rows its commits recorded, not those this run routed.
    pub continued: bool,
}

impl Finishing<'_> {
    /// Steps 5 and 6: with `pipeline` on the complete generation.
    pub(crate) fn finish(self, pipeline: &mut Pipeline) -> Result<ReplaySummary, ReplayError> {
        let Finishing { config, runtime, aws, store, name, at_start, shutdown, previous, new_generation, location, started, stats, accounted, continued } =
            self;
        let (config, name) = (config, name.to_string());
        let new_generation = new_generation.to_string();
        // 5. With --switch under a live consumer: catch up to what it committed (see catch_up.rs).
        let catching = CatchUp { config, runtime, aws, store, name: &name, at_start, shutdown };
        let mut live_at = None;
        let mut caught_up_rows = 0;
        if config.switch && previous.is_some() {
            let (at, rows) = catching.round(pipeline)?;
            live_at = at;
            caught_up_rows += rows;
        }
        // 6. Check, compare, switch.
        let mut scan = match &previous {
            Some(_) => runtime.block_on(kappa_table::switch::foreign_scan(store, &name, None))?,
            None => None,
        };
        let check = |pipeline: &Pipeline| -> Result<VerifyReport, ReplayError> {
            // A continued generation's earlier rows were routed by the runs before: for them,
            // the rows each flush recorded stand in.
            let table = pipeline.table().clone();
            let routed = match continued {
                true => runtime.block_on(crate::verify::committed_rows(&table))?,
                false => pipeline.routed_rows(),
            };
            runtime.block_on(crate::verify::verify(&table, &routed, &accounted.summary()))
        };
        let mut verify = if config.verify { Some(check(pipeline)?) } else { None };
        let compare = match (&previous, config.compare) {
            (Some(live), true) => {
                let carried: Vec<String> = scan.as_ref().map(|f| f.changes.appended.keys().cloned().collect()).unwrap_or_default();
                let at = live_at.as_ref().map(|l| l.version);
                // Rows the replay read past what the live consumer had committed are expected
                // to be only in the new generation (the consumer goes on after them).
                let ahead = live_at.as_ref().is_some_and(|live| crate::catch_up::ahead_of(pipeline, live));
                let what = crate::verify::Comparison {
                    live,
                    at,
                    carried: &carried,
                    new: &new_generation,
                    schema_change_asked: config.schema.is_some(),
                    new_rows_expected: ahead,
                };
                Some(runtime.block_on(crate::verify::compare(store, &name, what))?)
            }
            (None, true) => {
                tracing::warn!("--compare: the table had no current generation to compare with");
                None
            }
            _ => None,
        };
        let mut switched = None;
        let checks_pass = |verify: &Option<VerifyReport>| verify.as_ref().is_none_or(|v| v.ok) && compare.as_ref().is_none_or(|c| c.ok);
        if config.switch && !checks_pass(&verify) {
            tracing::error!("not switching: the checks found differences (see above)");
        } else if config.switch {
            let mut rounds = 0;
            switched = loop {
                let request = kappa_table::switch::SwitchRequest {
                    generation: new_generation.clone(),
                    expected: previous.clone(),
                    at_version: live_at.as_ref().map(|l| l.version),
                    discard_foreign: config.discard_foreign,
                    scan: scan.clone(),
                };
                match runtime.block_on(kappa_table::switch::switch(store, &name, &request)) {
                    Ok(done) => break Some(done),
                    // The live consumer committed between the catch-up and the switch (the
                    // table still holds the same generation): catch up again.
                    Err(kappa_table::TableError::VersionMoved { .. }) if live_at.is_some() && rounds < SWITCH_ROUNDS => {
                        rounds += 1;
                        tracing::info!(round = rounds, "the live consumer committed meanwhile: catching up again before the switch");
                        let (at, rows) = catching.round(pipeline)?;
                        live_at = at;
                        caught_up_rows += rows;
                        scan = runtime.block_on(kappa_table::switch::foreign_scan(store, &name, scan.take()))?;
                        if config.verify {
                            // What the rounds added is checked too.
                            verify = Some(check(pipeline)?);
                            if !checks_pass(&verify) {
                                tracing::error!("not switching: the checks found differences after catching up (see above)");
                                break None;
                            }
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            if let Some(done) = &switched {
                tracing::info!(generation = %new_generation, switch = done.pointer.switch, "readers now resolve the new generation");
                if let (Some(database), Some(aws)) = (&config.glue_database, aws) {
                    // The switch is made; a catalog that did not follow is said, and the next
                    // consumer run registers the table again.
                    match runtime.block_on(generation::register_in_glue(store, &name, &aws.glue(), database)) {
                        Ok(registered) => tracing::info!(database = %database, outcome = ?registered, "Glue table registered (Athena reads it as Delta)"),
                        Err(e) => tracing::warn!(error = %e, "could not register the table in Glue after the switch"),
                    }
                }
            }
        }
        let mut run = stats.summary();
        run.elapsed_seconds = started.elapsed().as_secs_f64();
        run.rows_per_second = if run.elapsed_seconds > 0.0 { run.rows_written as f64 / run.elapsed_seconds } else { 0.0 };
        Ok(ReplaySummary {
            table: name,
            generation: new_generation,
            location,
            continued,
            run,
            caught_up_rows,
            verify,
            compare,
            previous,
            switched: switched.is_some(),
            carried_rows: switched.as_ref().map_or(0, |s| s.carried_rows),
            carried_files: switched.as_ref().map_or(0, |s| s.carried_files),
            discarded: switched.map(|s| s.discarded).unwrap_or_default(),
            finished_elsewhere: false,
        })
    }
}

/// Switch attempts that find the live consumer committed since the last catch-up, at most.
const SWITCH_ROUNDS: usize = 30;

/// What a catch-up round needs besides the pipeline.
struct CatchUp<'a> {
    config: &'a ReplayConfig,
    runtime: &'a Runtime,
    aws: Option<&'a AwsContext>,
    store: &'a Store,
    name: &'a str,
    /// The live table when the replay began.
    at_start: Option<crate::catch_up::LiveAt>,
    shutdown: &'a Shutdown,
}

impl CatchUp<'_> {
    /// One round: the live table's version and committed positions, read up to them.
    fn round(&self, pipeline: &mut Pipeline) -> Result<(Option<crate::catch_up::LiveAt>, u64), ReplayError> {
        let Some(live) = self.runtime.block_on(crate::catch_up::live_at(self.store, self.name, pipeline.shard_names()))? else { return Ok((None, 0)) };
        let rows = crate::catch_up::read_up_to(self.config, self.runtime, self.aws, pipeline, &live, self.at_start.as_ref(), self.shutdown)?;
        Ok((Some(live), rows))
    }
}

/// The newest incomplete generation that an interrupted replay with the same settings left
/// and that no running replay writes; with `switch`, also a complete one whose replay was
/// killed between finishing it and switching to it (the next finishes the switch: it reads what
/// the log gained since, verifies and switches). A generation completed by a replay without
/// `--switch` is not continued: running a replay again makes another, as it always did.
async fn resumable(store: &Store, table: &str, origin: &str, switch: bool) -> Result<Option<String>, kappa_table::TableError> {
    for record in generation::records(store, table).await?.into_iter().rev() {
        if record.removed_ms.is_some() || record.retired_ms.is_some() || record.origin != origin {
            continue;
        }
        let finished = generation::is_complete(store, table, &record.generation).await?
            && !(switch && generation::awaits_switch(store, table, &record.generation).await?);
        if finished || generation::is_being_written(store, table, &record.generation).await? {
            continue;
        }
        if generation::current(store, table).await?.is_some_and(|p| p.generation == record.generation) {
            continue;
        }
        return Ok(Some(record.generation));
    }
    Ok(None)
}

impl ReplaySummary {
    /// A shared replay's process whose part is done while another finishes the generation.
    pub(crate) fn shared_part(
        table: &str,
        generation: &str,
        location: String,
        continued: bool,
        run: kappa_consumer::stats::Summary,
        previous: Option<String>,
    ) -> ReplaySummary {
        ReplaySummary {
            table: table.to_string(),
            generation: generation.to_string(),
            location,
            continued,
            run,
            caught_up_rows: 0,
            verify: None,
            compare: None,
            previous,
            switched: false,
            carried_files: 0,
            carried_rows: 0,
            discarded: Vec::new(),
            finished_elsewhere: true,
        }
    }

    pub(crate) fn render(&self) -> String {
        let what = if self.continued { "continued generation" } else { "new generation" };
        let mut text = self.run.render(&format!("{}, {what} {}", self.table, self.generation), &self.location);
        if self.caught_up_rows > 0 {
            text.push_str(&format!("  caught up          {} rows the live consumer committed while the replay ran\n", self.caught_up_rows));
        }
        if let Some(v) = &self.verify {
            text.push_str(&format!("  verify             {}\n", if v.ok { "ok: every partition holds the rows routed to it" } else { "FAILED (see above)" }));
        }
        if let Some(c) = &self.compare {
            let rows_same = c.only_new == 0 && c.only_live == 0;
            text.push_str(&format!(
                "  compare            {} ({} rows only in the new generation, {} only in {})\n",
                if rows_same { "same rows as the current generation" } else { "DIFFERENT rows" },
                c.only_new,
                c.only_live,
                c.live
            ));
            if !c.schema_differences.is_empty() {
                let verdict = if c.schema_change_asked { "changed as --schema asked" } else { "DIFFERENT column types" };
                text.push_str(&format!("  compare columns    {verdict}: {}\n", c.schema_differences.join("; ")));
            }
        }
        if self.carried_files > 0 {
            text.push_str(&format!(
                "  carried            {} rows in {} files other writers appended, into {}\n",
                self.carried_rows, self.carried_files, self.generation
            ));
        }
        for change in &self.discarded {
            text.push_str(&format!("  DISCARDED          {change} (--discard-foreign-changes)\n"));
        }
        if self.finished_elsewhere {
            text.push_str(&format!(
                "  shared             this process's part of {} is written; another process of the job verified and finished it\n",
                self.generation
            ));
            return text;
        }
        text.push_str(&match (self.switched, &self.previous) {
            (true, Some(previous)) => format!("  switched           readers moved from {previous} to {}\n", self.generation),
            (true, None) => format!("  switched           {} is the table's first current generation\n", self.generation),
            (false, _) => format!(
                "  switched           no (current: {}); `kappa-replay switch --generation {}` to switch\n",
                self.previous.as_deref().unwrap_or("none"),
                self.generation
            ),
        });
        text
    }
}

/// The live table's columns with the types `given` names, then `given`'s other columns.
fn retyped(live: TableSchema, given: &TableSchema) -> TableSchema {
    let mut fields: Vec<_> = live.fields.into_iter().map(|c| given.fields.iter().find(|g| g.name == c.name).cloned().unwrap_or(c)).collect();
    for column in &given.fields {
        if !fields.iter().any(|c| c.name == column.name) {
            fields.push(column.clone());
        }
    }
    TableSchema { fields }
}
