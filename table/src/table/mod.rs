//! A lake table: its layout, its generations, and the exactly-once protocol of DESIGN.md on
//! top of the Delta table that `kappa-table` keeps.
//!
//! ```text
//! <table>/_delta_log/…                               the Delta log: what readers read
//! <table>/<generation>/year=…/month=…/day=…/part-<shard>-<first>-<last>.parquet
//! <table>/_kappa/generations/<generation>.json       when and how the generation was made
//! <table>/_kappa/<generation>/layout.json            partition granularity and event-time column
//! <table>/_kappa/<generation>/schema/v000001.json    schema versions (our types and formats)
//! <table>/_kappa/<generation>/commits/<n:020>.json   a replay's own log, before its switch
//! <table>/_kappa/<generation>/complete.json          a replay finished it (switchable)
//! <table>/_errors/<generation>/<commit>.ndjson       quarantined events
//! ```
//!
//! The live generation is the one the Delta table's files belong to (its `kappa.generation`
//! property). A flush writes its Parquet objects, then one Delta commit that adds them and
//! carries the whole resume state (so a restart reads one state, not the history): per shard
//! the safe resume point (reading resumes after it: just before the earliest event still
//! buffered anywhere, or the last one read), and per partition and shard the last position
//! written, pruned once every shard's resume point has passed it. Objects that no commit names
//! are leftovers of a flush that crashed before its commit; a restart deletes them, and the
//! redone flush writes the same names again.
//!
//! A replay writes a new generation beside the live one and tracks it in its own commit log,
//! where readers do not look; its switch is one Delta commit that removes the live files and
//! adds the new ones (see [`crate::generation`]).

use std::collections::BTreeMap;

use bytes::Bytes;
use kappa_common::schema::TableSchema;
use kappa_common::store::{Store, StoreError};

use crate::TableError;
use crate::delta::{LakeTable, TableLocation};
use crate::state::{CONSUMER_APP_ID, Commit, DataFile, FORMAT, GENERATION_PROPERTY, Layout, TableState, parse, state_of};

#[derive(Debug, Clone)]
pub struct Table {
    store: Store,
    name: String,
    generation: String,
    /// Per part of the state, the object this writer last wrote it to (see `side.rs`).
    side_objects: std::sync::Arc<tokio::sync::Mutex<std::collections::HashMap<String, String>>>,
    /// The Delta table, for the live generation; `None` for a replay's generation, which keeps
    /// its own log until its switch.
    live: Option<std::sync::Arc<Live>>,
    /// The shards this worker holds, when workers share them through leases.
    leased: Option<std::sync::Arc<std::sync::Mutex<leased::Leased>>>,
    /// This consumer's place among those competing for an SQS queue.
    competing: Option<std::sync::Arc<std::sync::Mutex<competing::Competing>>>,
    /// Unique to this handle (this run of a writer): names its data files apart when another
    /// writer stored other bytes under theirs (see [`Table::put_new_object`]).
    token: std::sync::Arc<str>,
}

/// A token unique to a writer's run (12 hex digits of a random UUID).
fn new_token() -> std::sync::Arc<str> {
    uuid::Uuid::new_v4().simple().to_string()[..12].into()
}

#[derive(Debug)]
struct Live {
    location: TableLocation,
    /// `None` until the first commit creates the table.
    lake: tokio::sync::Mutex<Option<LakeTable>>,
    /// The Glue database the table is registered in (`--glue-database`), and whether this run
    /// registered it yet.
    glue: std::sync::OnceLock<(aws_sdk_glue::Client, String)>,
    registered: std::sync::atomic::AtomicBool,
}

pub use crate::lake::table_location as location;

/// The generation the Delta table holds, if there is a table.
pub async fn live_generation(store: &Store, name: &str) -> Result<Option<(String, u64)>, TableError> {
    let Some(lake) = LakeTable::open(name, &location(store, name)?).await? else { return Ok(None) };
    Ok(Some((generation_of(&lake)?, lake.version().unwrap_or_default())))
}

/// The resume state a kappa-lake writer stored with its commit `found` of table `table`.
pub fn commit_of(table: &str, found: crate::delta::WriterState) -> Result<Commit, TableError> {
    let path = format!("{table}/_delta_log version {}", found.version);
    serde_json::from_value(found.state).map_err(|source| TableError::Corrupt { path, source })
}

fn generation_of(lake: &LakeTable) -> Result<String, TableError> {
    lake.configuration()?.get(GENERATION_PROPERTY).cloned().ok_or_else(|| TableError::Invalid {
        table: lake.name().to_string(),
        reason: format!("the Delta table has no {GENERATION_PROPERTY} property: it was not made by kappa-lake; write to another table name"),
    })
}

/// `relative` (a data file's path) with `token` before its extension: the name a file takes
/// when another writer stored other bytes under its own (see [`Table::put_new_object`]).
fn own_name(relative: &str, token: &str) -> String {
    match relative.strip_suffix(".parquet") {
        Some(stem) => format!("{stem}.w{token}.parquet"),
        None => format!("{relative}.w{token}"),
    }
}

/// `schema`, then the columns of `live` it lacks.
fn with_columns_of(schema: &TableSchema, live: &TableSchema) -> TableSchema {
    let mut fields = schema.fields.clone();
    fields.extend(live.fields.iter().filter(|c| !schema.fields.iter().any(|f| f.name == c.name)).cloned());
    TableSchema { fields }
}

impl Table {
    /// Opens a table's live generation. A table without a Delta table yet gets a new
    /// generation, which its first commit makes live.
    pub async fn open_or_create(store: Store, name: &str) -> Result<Table, TableError> {
        let location = location(&store, name)?;
        let lake = LakeTable::open(name, &location).await?;
        let generation = match &lake {
            Some(lake) => generation_of(lake)?,
            None => crate::registry::unborn(&store, name).await?,
        };
        let live = Live { location, lake: tokio::sync::Mutex::new(lake), glue: std::sync::OnceLock::new(), registered: Default::default() };
        Ok(Table {
            store,
            name: name.to_string(),
            generation,
            side_objects: Default::default(),
            live: Some(std::sync::Arc::new(live)),
            leased: None,
            competing: None,
            token: new_token(),
        })
    }

    /// Opens any generation: the live one through the Delta table, another through its log.
    pub async fn open_existing(store: Store, name: &str, generation: &str) -> Result<Table, TableError> {
        match live_generation(&store, name).await? {
            Some((live, _)) if live == generation => Table::open_or_create(store, name).await,
            _ => Ok(Table::open_generation(store, name, generation)),
        }
    }

    /// Opens a replay's generation (it must exist), which keeps its own commit log.
    pub fn open_generation(store: Store, name: &str, generation: &str) -> Table {
        Table {
            store,
            name: name.to_string(),
            generation: generation.to_string(),
            side_objects: Default::default(),
            live: None,
            leased: None,
            competing: None,
            token: new_token(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// True for the live generation (the Delta table's), false for a replay's own.
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    pub fn generation(&self) -> &str {
        &self.generation
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Registers the table in a Glue database after its commits (`--glue-database`): at the
    /// first commit of this run, and whenever a commit changes the schema.
    pub fn register_in_glue(&self, client: aws_sdk_glue::Client, database: String) {
        if let Some(live) = &self.live {
            let _ = live.glue.set((client, database));
        }
    }

    /// Where this generation's data files are (the Delta table's root is the table itself).
    pub fn data_prefix(&self) -> String {
        format!("{}/{}", self.name, self.generation)
    }

    fn commit_path(&self, n: u64) -> String {
        format!("{}/_kappa/{}/commits/{n:020}.json", self.name, self.generation)
    }

    fn schema_path(&self, version: u32) -> String {
        format!("{}/_kappa/{}/schema/v{version:06}.json", self.name, self.generation)
    }

    /// The state to resume from: the last commit's, with the files the table holds.
    pub async fn load_state(&self) -> Result<TableState, TableError> {
        match &self.live {
            Some(live) => {
                let mut lake = live.lake.lock().await;
                let Some(lake) = lake.as_mut() else { return Ok(TableState::default()) };
                let prefix = format!("{}/", self.generation);
                let files = lake.files().await?.into_iter().filter_map(|f| f.strip_prefix(&prefix).map(str::to_string)).collect();
                if self.leased.is_some() {
                    return self.leased_state(lake, files).await;
                }
                if self.competing.is_some() {
                    return self.competing_state(lake, files).await;
                }
                // A table fed from an SQS queue: the newer of the queue's chain and the consumer's
                // own (a switch hands its state over under the consumer's id).
                let consumer = lake.writer_state(CONSUMER_APP_ID).await?;
                let chain = lake.writer_state(crate::state::SQS_APP_ID).await?;
                let newest = match (consumer, chain) {
                    (Some(consumer), Some(chain)) if chain.version > consumer.version => Some(chain),
                    (None, chain) => chain,
                    (consumer, _) => consumer,
                };
                match newest {
                    Some(found) => {
                        let commit = commit_of(&self.name, found)?;
                        Ok(TableState { files, ..state_of(self.internalized(commit).await?) })
                    }
                    None => Ok(TableState { files, ..TableState::default() }),
                }
            }
            None => Ok(self.staged_commits(true).await?.1),
        }
    }

    /// A replay generation's commit count and totals, from its own log (its resume state's
    /// side objects not read: a generation that went live may have had them cleaned up).
    pub async fn staged_totals(&self) -> Result<(u64, crate::Totals), TableError> {
        let (_, state) = self.staged_commits(false).await?;
        Ok((state.last_commit, state.totals))
    }

    /// A replay's commit log: every file it added (not removed since), and the state.
    async fn staged_commits(&self, with_side_objects: bool) -> Result<(BTreeMap<String, DataFile>, TableState), TableError> {
        let prefix = format!("{}/_kappa/{}/commits/", self.name, self.generation);
        let mut commits = Vec::new();
        for object in self.store.list(&prefix).await? {
            let data = self.store.get(&object.path).await?;
            let commit = parse::<Commit>(&object.path, &data)?;
            commits.push((object.path, commit));
        }
        // Several writers sharing the shards through leases (see `shared.rs`).
        if commits.iter().any(|(_, c)| !c.epochs.is_empty()) || self.leased.is_some() {
            let mut log = shared::SharedLog::default();
            for (path, commit) in commits {
                self.check_staged(&path, &commit, log.last)?;
                if with_side_objects {
                    log.add(self.internalized(commit).await?);
                } else {
                    log.add(commit);
                }
            }
            let state = match self.leased.is_some() {
                true => self.shared_state(&log)?,
                false => log.state(None),
            };
            return Ok((std::mem::take(&mut log.files), state));
        }
        let mut state = TableState::default();
        let mut last = None;
        let mut files = BTreeMap::new();
        for (path, commit) in commits {
            self.check_staged(&path, &commit, state.last_commit)?;
            for removed in &commit.removed {
                files.remove(removed);
            }
            for file in &commit.added {
                files.insert(file.path.clone(), file.clone());
            }
            state.last_commit = commit.commit;
            last = Some(commit);
        }
        if let Some(commit) = last {
            state = state_of(if with_side_objects { self.internalized(commit).await? } else { commit });
        }
        state.files = files.keys().cloned().collect();
        Ok((files, state))
    }

    /// Refuses a replay's commit record of another format, or one that leaves a gap after
    /// commit `last`.
    fn check_staged(&self, path: &str, commit: &Commit, last: u64) -> Result<(), TableError> {
        if commit.format != FORMAT {
            return Err(TableError::Invalid {
                table: self.name.clone(),
                reason: format!("{path} has commit format {}, this kappa-consumer reads format {FORMAT}: write a new table (or lake)", commit.format),
            });
        }
        if commit.commit != last + 1 {
            return Err(TableError::Invalid { table: self.name.clone(), reason: format!("commit log has a gap: {} follows {last}", commit.commit) });
        }
        Ok(())
    }

    /// Commits a flush: a Delta commit for the live generation, the next record of its own
    /// log for a replay's. `schema` is the data schema at `commit.schema_version`; `layout`
    /// decides the partition columns of a table this commit creates.
    pub async fn commit(&self, commit: &Commit, schema: &TableSchema, layout: &Layout) -> Result<(), TableError> {
        let recorded = self.externalized(commit).await?;
        self.commit_recorded(commit, &recorded, schema, layout).await?;
        // Only once the commit is durable: it is then the last one, the one a restart reads.
        // Not under leases: each worker's last commit names its own state objects, and one
        // worker's cleanup would take another's.
        // Consumers competing for an SQS queue too: right after this commit it is the chain's
        // last, the only one read back for the state; the others name young objects only (see
        // `side.rs`), and a claims object older than the cleanup's hour is one no consumer
        // still needs (one that looks later reads the chain's last state instead).
        if commit.commit.is_multiple_of(side::CLEANUP_EVERY)
            && self.leased.is_none()
            && let Err(e) = self.remove_unreferenced_state(&recorded).await
        {
            tracing::warn!(error = %e, "could not remove state objects no commit names; trying again later");
        }
        Ok(())
    }

    async fn commit_recorded(&self, commit: &Commit, recorded: &Commit, schema: &TableSchema, layout: &Layout) -> Result<(), TableError> {
        let Some(live) = &self.live else {
            if self.leased.is_some() {
                return self.commit_shared(recorded).await;
            }
            let data = Bytes::from(serde_json::to_vec_pretty(recorded).expect("commit serializes"));
            return match self.store.put_if_absent(&self.commit_path(commit.commit), data).await {
                Ok(()) => Ok(()),
                Err(StoreError::AlreadyExists { .. }) => Err(TableError::ConcurrentWriter {
                    table: self.name.clone(),
                    commit: commit.commit,
                    by: format!("another writer wrote that commit of generation {} first: run one replay per generation", self.generation),
                }),
                Err(e) => Err(e.into()),
            };
        };
        let mut lake = live.lake.lock().await;
        let partition_columns = match lake.as_ref() {
            Some(lake) => {
                let columns = lake.partition_columns()?;
                self.check_partitioning(lake, &columns, layout).await?;
                columns
            }
            None => partition_columns(schema, layout),
        };
        let setup = |schema: &TableSchema| crate::delta::TableSetup {
            schema: schema.clone(),
            partition_columns: partition_columns.clone(),
            configuration: properties(&self.generation, layout, commit.schema_version),
        };
        let created = lake.is_none();
        let grown = match lake.as_ref() {
            None => {
                let created = LakeTable::create(&self.name, &live.location, &setup(schema)).await?;
                if generation_of(&created)? != self.generation {
                    // Another consumer created the table at the same moment, for its own generation.
                    return Err(TableError::ConcurrentWriter {
                        table: self.name.clone(),
                        commit: commit.commit,
                        by: format!(
                            "another consumer created the table at the same moment, for its own generation {}: run one consumer per table and source",
                            generation_of(&created)?
                        ),
                    });
                }
                *lake = Some(created);
                None
            }
            Some(existing) => {
                let recorded: u32 = existing.configuration()?.get(SCHEMA_VERSION_PROPERTY).and_then(|v| v.parse().ok()).unwrap_or(0);
                match commit.schema_version > recorded {
                    // The grown schema keeps every column the table has now, also those another
                    // writer added while this one ran: a commit that wrote only its own columns
                    // would hide theirs from every reader.
                    true => Some(setup(&with_columns_of(schema, &existing.data_schema()?))),
                    false => None,
                }
            }
        };
        let changed = created || grown.is_some();
        let lake = lake.as_mut().expect("created above");
        let add = commit.added.iter().map(|f| delta_file(&self.generation, f, &partition_columns)).collect::<Result<_, _>>()?;
        let state = serde_json::to_value(Commit { added: Vec::new(), ..recorded.clone() }).expect("commit serializes");
        // Under leases, one `txn` per held shard (see `leased.rs`); else the consumer's own,
        // numbered one after another (a switch hands it its number).
        let (primary, also) = match (self.leased_txns(), self.competing_txn()) {
            (Some(txns), _) => txns,
            (None, Some(txn)) => (txn, Vec::new()),
            (None, None) => (
                crate::delta::TxnCheck {
                    app_id: CONSUMER_APP_ID.to_string(),
                    counter: commit.commit as i64,
                    previous: (commit.commit > 1).then(|| commit.commit as i64 - 1),
                },
                Vec::new(),
            ),
        };
        let carried: Vec<_> = std::iter::once(primary.clone()).chain(also.iter().cloned()).collect();
        let delta_commit = crate::delta::Commit {
            fence: self.leased.is_some(),
            generation: Some(self.generation.clone()),
            also,
            app_id: primary.app_id,
            counter: primary.counter,
            previous: primary.previous,
            // Unique to this attempt: tells our own commit from another writer's after an
            // ambiguous failure.
            commit_id: format!("{}-{}-{}", std::process::id(), chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default(), commit.commit),
            add,
            remove: Vec::new(),
            data_change: true,
            replace_all: false,
            keep: Vec::new(),
            restore: Vec::new(),
            setup: grown,
            state,
        };
        match lake.commit(delta_commit).await {
            Ok(version) => {
                self.leased_committed(&carried);
                self.competing_committed(version, carried[0].counter);
                if let Some((client, database)) = live.glue.get()
                    && (changed || !live.registered.load(std::sync::atomic::Ordering::Relaxed))
                {
                    let setup = crate::delta::TableSetup {
                        schema: schema.clone(),
                        partition_columns: partition_columns.clone(),
                        configuration: properties(&self.generation, layout, commit.schema_version),
                    };
                    // The rows are committed whatever the catalog answers: a failed registration
                    // is said and tried again at the next commit.
                    match crate::glue::register(client, database, &self.name, live.location.url.as_str(), &setup).await {
                        Ok(done) => {
                            live.registered.store(true, std::sync::atomic::Ordering::Relaxed);
                            tracing::info!(database = %database, table = %self.name, outcome = ?done, "Glue table registered (Athena reads it as Delta)");
                        }
                        Err(e) => tracing::warn!(error = %e, "could not register the table in Glue; trying again at the next commit"),
                    }
                }
                Ok(())
            }
            // Another consumer of the queue committed first: its claims decide what of this
            // commit is left to make (see `competing.rs`).
            Err(crate::delta::DeltaError::ConcurrentWriter { app_id, .. }) if self.competing.is_some() && app_id == crate::state::SQS_APP_ID => {
                Err(TableError::PeerCommitted { table: self.name.clone() })
            }
            Err(e) => Err(TableError::lost(&self.name, commit.commit, e)),
        }
    }

    /// Refuses a live table whose partition columns are not `layout`'s (another tool
    /// re-partitioned it), naming who did and what to do.
    pub async fn check_layout(&self, layout: &Layout) -> Result<(), TableError> {
        let Some(live) = &self.live else { return Ok(()) };
        let lake = live.lake.lock().await;
        match lake.as_ref() {
            Some(lake) => self.check_partitioning(lake, &lake.partition_columns()?, layout).await,
            None => Ok(()),
        }
    }

    async fn check_partitioning(&self, lake: &LakeTable, columns: &[String], layout: &Layout) -> Result<(), TableError> {
        let why = match check_partitioning(columns, layout) {
            Ok(()) => return Ok(()),
            Err(naming::Partitioning::Foreign(why)) => why,
            Err(naming::Partitioning::OtherGranularity) => {
                let partitioned_by = lake.configuration()?.get("kappa.partitionBy").cloned().unwrap_or_else(|| columns.join(", "));
                return Err(TableError::Refused {
                    table: self.name.clone(),
                    reason: format!(
                        "the table is partitioned by {partitioned_by}; this run asks for {} (on {}). Use the table's --partition-by, or write \
                         the new layout as a new generation with kappa-replay --partition-by {} --switch",
                        layout.partition_by,
                        layout.event_time.as_deref().unwrap_or("the arrival time"),
                        layout.partition_by
                    ),
                });
            }
        };
        let by = match lake.last_setup_change(1000).await {
            Ok(Some(change)) => format!(" ({change})"),
            _ => String::new(),
        };
        Err(TableError::Refused {
            table: self.name.clone(),
            reason: format!(
                "{why}{by}. Nothing was written. Rebuild the table from the log as kappa-lake partitions it (`kappa-replay … --switch`: \
                 a new generation, and every reader moves to it in one commit), or write to another --table"
            ),
        })
    }

    /// The generation the table holds now, read again from the Delta log (a replay may have
    /// switched it).
    pub async fn current_generation(&self) -> Result<Option<String>, TableError> {
        let Some(live) = &self.live else { return Ok(live_generation(&self.store, &self.name).await?.map(|(g, _)| g)) };
        let mut lake = live.lake.lock().await;
        match lake.as_mut() {
            Some(lake) => {
                lake.reload().await?;
                Ok(Some(generation_of(lake)?))
            }
            None => Ok(live_generation(&self.store, &self.name).await?.map(|(g, _)| g)),
        }
    }

    /// Every file of a replay's generation with its partition and statistics, and the state
    /// its last commit left: what its switch commits.
    pub async fn staged(&self) -> Result<(Vec<DataFile>, TableState), TableError> {
        let (files, state) = self.staged_commits(true).await?;
        Ok((files.into_values().collect(), state))
    }

    /// The partition columns of the live Delta table (`year`, or `kappa_year` where the data
    /// has a `year`); empty before the first commit, and for a replay's generation.
    pub async fn partition_column_names(&self) -> Result<Vec<String>, TableError> {
        let Some(live) = &self.live else { return Ok(Vec::new()) };
        let lake = live.lake.lock().await;
        Ok(lake.as_ref().map(LakeTable::partition_columns).transpose()?.unwrap_or_default())
    }

    /// The data columns the live Delta table has (as it was when this handle opened it or last
    /// committed): the truth every reader reads, whoever changed it. `None` before the first
    /// commit, and for a replay's generation.
    pub async fn live_schema(&self) -> Result<Option<TableSchema>, TableError> {
        let Some(live) = &self.live else { return Ok(None) };
        let lake = live.lake.lock().await;
        Ok(lake.as_ref().map(LakeTable::data_schema).transpose()?)
    }

    pub async fn read_schema(&self, version: u32) -> Result<TableSchema, TableError> {
        let path = self.schema_path(version);
        let data = self.store.get(&path).await?;
        parse(&path, &data)
    }

    /// The newest stored schema version, if any (versions may be written ahead of the commit
    /// that first uses them).
    pub async fn latest_schema(&self) -> Result<Option<(u32, TableSchema)>, TableError> {
        let prefix = format!("{}/_kappa/{}/schema/", self.name, self.generation);
        let Some(last) = self.store.list(&prefix).await?.pop() else { return Ok(None) };
        let version: u32 = last.path[prefix.len()..]
            .trim_start_matches('v')
            .trim_end_matches(".json")
            .parse()
            .map_err(|_| TableError::Invalid { table: self.name.clone(), reason: format!("unexpected schema object {}", last.path) })?;
        Ok(Some((version, self.read_schema(version).await?)))
    }

    /// Stores a schema version. Writing the same version twice with the same content (a
    /// restarted consumer redoing an evolution) is fine; different content is a conflict.
    pub async fn write_schema(&self, version: u32, schema: &TableSchema) -> Result<(), TableError> {
        match self.put_once(&self.schema_path(version), schema).await? {
            None => Ok(()),
            Some(_) => {
                Err(TableError::Invalid { table: self.name.clone(), reason: format!("schema version {version} was written differently by another writer") })
            }
        }
    }

    /// Writes `value` at `path` unless an object is there already; returns that object if it
    /// differs from `value` (the same content written again, by a restarted writer, is fine).
    async fn put_once<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq>(&self, path: &str, value: &T) -> Result<Option<T>, TableError> {
        let data = Bytes::from(serde_json::to_vec_pretty(value).expect("serializes"));
        match self.store.put_if_absent(path, data).await {
            Ok(()) => Ok(None),
            Err(StoreError::AlreadyExists { .. }) => {
                let existing: T = parse(path, &self.store.get(path).await?)?;
                Ok((&existing != value).then_some(existing))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Where `--start latest` begins for this table, for good: the instant (ms) the first run
    /// asked for it, recorded once (`_kappa/start-latest.json`; of racing workers one
    /// records it, all read it). A shard with no position in the table is read from there
    /// (`AT_TIMESTAMP`), whenever a run first reads it: a child shard a reshard opened later
    /// from its start, and a shard whose first rows were read but not yet committed when its
    /// reader stopped (a lease move, a restart) from the same point again. Read from "latest"
    /// again each time, those rows were skipped.
    pub async fn latest_start(&self, now_ms: i64) -> Result<i64, TableError> {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Start {
            at_ms: i64,
        }
        let path = format!("{}/_kappa/start-latest.json", self.name);
        match self.put_once(&path, &Start { at_ms: now_ms }).await? {
            None => Ok(now_ms),
            Some(recorded) => Ok(recorded.at_ms),
        }
    }

    /// The recorded layout, if a commit with rows recorded one.
    pub async fn layout(&self) -> Result<Option<Layout>, TableError> {
        let path = format!("{}/_kappa/{}/layout.json", self.name, self.generation);
        match self.store.get(&path).await {
            Ok(data) => Ok(Some(parse(&path, &data)?)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Records the settings that shape this generation's layout on first use, and refuses
    /// different ones later: a consumer restarted with another `--partition-by` or
    /// `--event-time` would mix two layouts in one generation.
    pub async fn settle_layout(&self, layout: &Layout) -> Result<(), TableError> {
        let path = format!("{}/_kappa/{}/layout.json", self.name, self.generation);
        match self.put_once(&path, layout).await? {
            None => Ok(()),
            Some(existing) => Err(TableError::Refused {
                table: self.name.clone(),
                reason: format!(
                    "generation {} is partitioned by {} on {}; this run asks for {} on {}. Use the generation's settings, \
                         or write the new layout as a new generation with kappa-replay",
                    self.generation,
                    existing.partition_by,
                    existing.event_time.as_deref().unwrap_or("arrival time"),
                    layout.partition_by,
                    layout.event_time.as_deref().unwrap_or("arrival time"),
                ),
            }),
        }
    }

    pub async fn put_object(&self, relative_to_generation: &str, data: Bytes) -> Result<(), TableError> {
        Ok(self.store.put(&format!("{}/{relative_to_generation}", self.data_prefix()), data).await?)
    }

    /// A data object's contents (named as [`Table::put_object`] names it).
    pub async fn get_object(&self, relative_to_generation: &str) -> Result<Bytes, TableError> {
        Ok(self.store.get(&format!("{}/{relative_to_generation}", self.data_prefix())).await?)
    }

    /// Puts a data object without making it durable yet: a commit's files are then made durable
    /// together by [`Table::sync_objects`] before the commit (one `syncfs` on a local lake
    /// instead of two fsyncs per file).
    pub async fn put_object_unsynced(&self, relative_to_generation: &str, data: Bytes) -> Result<(), TableError> {
        Ok(self.store.put_unsynced(&format!("{}/{relative_to_generation}", self.data_prefix()), data).await?)
    }

    /// Stores a commit's data file at `relative` (to the generation) unless something is there
    /// already, not made durable yet (as [`Table::put_object_unsynced`]); returns the path it is
    /// stored under. Names are functions of the rows, so the same name may be stored by a
    /// writer that lost its shard while paused, or by a flush before a crash:
    /// - nothing there: stored at `relative`;
    /// - the same bytes there (a flush redone after a crash or a lease move, or a paused writer
    ///   that stored what this one would): that object is this file;
    /// - other bytes there (another writer's binary, schema or codec): left as they are, and
    ///   this file goes under a name of this writer's own (`….w<token>.parquet`). Replacing
    ///   them could replace a file another writer has committed, under the log's size and
    ///   statistics of those bytes.
    pub async fn put_new_object(&self, relative_to_generation: &str, data: Bytes) -> Result<String, TableError> {
        let mut relative = relative_to_generation.to_string();
        for _ in 0..2 {
            let path = format!("{}/{relative}", self.data_prefix());
            match self.store.put_new_unsynced(&path, data.clone()).await {
                Ok(()) => return Ok(relative),
                Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            match self.store.get(&path).await {
                Ok(existing) if existing == data => return Ok(relative),
                // Other bytes: once more under this writer's own name.
                Ok(_) => {
                    tracing::warn!(object = %path, "a file of this name with other contents is already stored (another writer's, or another version's): storing this one under a name of its own");
                    relative = own_name(relative_to_generation, &self.token);
                }
                // Deleted between the two (vacuum of a stale leftover): stored again.
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(TableError::Invalid { table: self.name.clone(), reason: format!("{relative} is stored with other contents under this writer's own name too") })
    }

    /// Makes the objects put by [`Table::put_object_unsynced`] durable.
    pub async fn sync_objects(&self) -> Result<(), TableError> {
        Ok(self.store.sync_written().await?)
    }

    /// Writes a quarantine object; returns its path relative to the table.
    pub async fn put_errors(&self, commit: u64, data: Bytes) -> Result<String, TableError> {
        // Leased workers number their commits each on their own: their files are named apart
        // (and a restart's cleanup, which reads numbers only, leaves them).
        let relative = match self.leased_tag().or_else(|| self.competing_tag()) {
            Some(tag) => format!("_errors/{}/{commit:020}-{tag}.ndjson", self.generation),
            None => format!("_errors/{}/{commit:020}.ndjson", self.generation),
        };
        self.store.put(&format!("{}/{relative}", self.name), data).await?;
        Ok(relative)
    }
}

mod cleanup;
mod compaction;
mod competing;
mod leased;
mod naming;
mod shared;
mod side;
#[cfg(test)]
mod tests;

pub(crate) use self::cleanup::delete_unprotected;
pub use self::cleanup::{PART_PREFIX, Protected};
pub use self::compaction::{COMPACTED_PREFIX, COMPACTION_APP_ID, LiveFile};
pub use self::naming::{PARTITION_COLUMN_PREFIX, partition_columns, partition_dir, partition_of_dir};
pub(crate) use self::naming::{SCHEMA_VERSION_PROPERTY, check_partitioning, delta_file, properties};
