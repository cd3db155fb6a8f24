//! Checking a new generation before readers move to it.
//!
//! - `verify`: per partition, the rows in the committed files' Parquet footers (read back from
//!   the store, so the files are also known to be readable) against the rows the replay routed
//!   there from the source.
//! - `compare`: the two generations' columns (names and types: a column that became a string
//!   is a difference even when its text is the same), and every row of the new generation
//!   against every row of the current one, as a multiset of row values, whatever the two
//!   partitionings; differences are reported by partition. Rows are compared by their values
//!   only (partition directories are derived from them), and a data column stored as
//!   `<key>_data` because it collides with a partition key compares under its own name.

use std::collections::{BTreeMap, HashMap};

use arrow::json::LineDelimitedWriter;
use kappa_common::store::Store;
use kappa_table::Table;
use kappa_table::delta::LakeTable;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde::Serialize;

use crate::error::ReplayError;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PartitionCounts {
    pub partition: String,
    pub routed: u64,
    pub in_files: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct VerifyReport {
    pub ok: bool,
    pub partitions: usize,
    pub rows: u64,
    /// Partitions whose files do not hold the rows routed to them.
    pub mismatches: Vec<PartitionCounts>,
}

/// The partition a file lies in, by key (`year=…`, whatever its directory calls the column).
fn partition_of(file: &str) -> String {
    file.rsplit_once('/').map_or(String::new(), |(dir, _)| kappa_table::partition_of_dir(dir))
}

async fn read_object(table: &Table, file: &str) -> Result<bytes::Bytes, ReplayError> {
    let path = format!("{}/{file}", table.data_prefix());
    table.store().get(&path).await.map_err(|e| ReplayError::ReadBack(format!("{path} (of the new generation): {e}")))
}

/// Per partition, the rows the generation's commits recorded for their files.
pub(crate) async fn committed_rows(table: &Table) -> Result<BTreeMap<String, u64>, ReplayError> {
    let mut rows = BTreeMap::new();
    for file in table.staged().await?.0 {
        *rows.entry(file.partition).or_default() += file.rows;
    }
    Ok(rows)
}

/// `routed`: per partition, the rows routed there (for a continued generation, what its
/// commits recorded); `run`: this run's counters, whose every event must be accounted for.
pub(crate) async fn verify(table: &Table, routed: &BTreeMap<String, u64>, run: &kappa_consumer::stats::Summary) -> Result<VerifyReport, ReplayError> {
    // The files as the generation's log names them (the pipeline keeps no list of its files:
    // a consumer running for months would hold every name).
    let state = table.load_state().await?;
    let mut in_files: BTreeMap<String, u64> = BTreeMap::new();
    for file in &state.files {
        let data = read_object(table, file).await?;
        let reader = SerializedFileReader::new(data).map_err(|e| ReplayError::ReadBack(format!("{file} (of the new generation): {e}")))?;
        *in_files.entry(partition_of(file)).or_default() += reader.metadata().file_metadata().num_rows() as u64;
    }
    let mut mismatches = Vec::new();
    for partition in routed.keys().chain(in_files.keys()).collect::<std::collections::BTreeSet<_>>() {
        let (r, f) = (routed.get(partition).copied().unwrap_or(0), in_files.get(partition).copied().unwrap_or(0));
        if r != f {
            tracing::error!(partition = %partition, routed = r, in_files = f, "verify: the partition's files do not hold the rows routed to it");
            mismatches.push(PartitionCounts { partition: partition.clone(), routed: r, in_files: f });
        }
    }
    let rows: u64 = in_files.values().sum();
    if rows != state.totals.rows {
        tracing::error!(in_files = rows, committed = state.totals.rows, "verify: the files' rows differ from the commit log's total");
    }
    // Every event read is accounted for: a row, a quarantined event or a dropped duplicate.
    let accounted = run.rows_written + run.quarantined + run.duplicates_dropped + run.already_committed_skipped;
    if accounted != run.events_read {
        tracing::error!(events_read = run.events_read, accounted, "verify: events read from the source are not all accounted for");
    }
    let ok = mismatches.is_empty() && rows == state.totals.rows && accounted == run.events_read;
    tracing::info!(partitions = in_files.len(), rows, ok, "verify: rows per partition read back from the Parquet footers");
    Ok(VerifyReport { ok, partitions: in_files.len(), rows, mismatches })
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PartitionDifference {
    pub generation: String,
    pub partition: String,
    /// Rows of this partition that the other generation lacks.
    pub rows: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CompareReport {
    pub ok: bool,
    pub live: String,
    /// Columns whose type differs, or that only one generation has: `column: type in one, type
    /// in the other`.
    pub schema_differences: Vec<String>,
    /// The replay was given a --schema: its differences are the change asked for, and do not
    /// fail the comparison.
    pub schema_change_asked: bool,
    pub rows_new: u64,
    pub rows_live: u64,
    pub only_new: u64,
    pub only_live: u64,
    pub differences: Vec<PartitionDifference>,
}

/// Every committed row of a generation: row hash → (count, partition index); and its columns'
/// types, as its files hold them.
struct RowSet {
    rows: HashMap<u128, (u64, u32)>,
    partitions: Vec<String>,
    total: u64,
    columns: BTreeMap<String, String>,
}

/// A column's name as rows compare it (see [`canonical_hash`]).
fn compared_name(name: &str) -> &str {
    match name.strip_suffix("_data") {
        Some(key) if PARTITION_KEYS.contains(&key) => key,
        _ => name,
    }
}

const PARTITION_KEYS: [&str; 4] = ["year", "month", "day", "hour"];

/// A row's values in a form that does not depend on column order, on the collision rename, or
/// on whether a whole number is held as an integer or a float (`6` and `6.0`: a column a
/// `--schema` retyped compares by its values).
fn canonical_hash(line: &[u8]) -> Result<u128, serde_json::Error> {
    let row: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line)?;
    let sorted: BTreeMap<String, serde_json::Value> = row
        .into_iter()
        .map(|(name, value)| {
            let value = whole_as_integer(value);
            match name.strip_suffix("_data") {
                Some(key) if PARTITION_KEYS.contains(&key) => (key.to_string(), value),
                _ => (name, value),
            }
        })
        .collect();
    Ok(xxhash_rust::xxh3::xxh3_128(&serde_json::to_vec(&sorted)?))
}

/// A float that is a whole number within a double's exact integers, as that integer.
fn whole_as_integer(value: serde_json::Value) -> serde_json::Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match value.as_f64() {
        Some(float) if value.is_f64() && float.fract() == 0.0 && float.abs() <= EXACT => serde_json::Value::from(float as i64),
        _ => value,
    }
}

/// The files whose rows a comparison reads, relative to the store: a replay's generation (its
/// own log's files), or the live table at a version (every file readers read there, another
/// writer's too, but those a switch carries over).
async fn generation_files(store: &Store, name: &str, generation: &str) -> Result<Vec<(String, String)>, ReplayError> {
    let table = Table::open_existing(store.clone(), name, generation).await?;
    let state = table.load_state().await?;
    Ok(state.files.iter().map(|file| (format!("{}/{file}", table.data_prefix()), partition_of(file))).collect())
}

async fn live_files(store: &Store, name: &str, at: Option<u64>, carried: &[String]) -> Result<Vec<(String, String)>, ReplayError> {
    let location = kappa_table::location(store, name)?;
    let mut lake = match at {
        Some(version) => LakeTable::open_at(name, &location, version).await.map_err(kappa_table::TableError::from)?,
        None => LakeTable::open(name, &location).await?.ok_or_else(|| ReplayError::ReadBack(format!("table {name} has no Delta table")))?,
    };
    let files = lake.file_details().await.map_err(kappa_table::TableError::from)?;
    Ok(files
        .into_iter()
        .filter(|f| !carried.contains(&f.path))
        .map(|f| {
            // The snapshot's paths are decoded, as the store names objects.
            let partition = partition_of(f.path.split_once('/').map_or(f.path.as_str(), |(_, rest)| rest));
            (format!("{name}/{}", f.path), partition)
        })
        .collect())
}

async fn row_set(store: &Store, what: &str, files: Vec<(String, String)>) -> Result<RowSet, ReplayError> {
    let mut set = RowSet { rows: HashMap::new(), partitions: Vec::new(), total: 0, columns: BTreeMap::new() };
    let mut partition_index: HashMap<String, u32> = HashMap::new();
    for (path, partition) in files {
        let index = *partition_index.entry(partition.clone()).or_insert_with(|| {
            set.partitions.push(partition.clone());
            (set.partitions.len() - 1) as u32
        });
        let fail = |e: &dyn std::fmt::Display| ReplayError::ReadBack(format!("{path} (of {what}): {e}"));
        let data = store.get(&path).await.map_err(|e| fail(&e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(data).map_err(|e| fail(&e))?;
        for field in builder.schema().fields() {
            set.columns.entry(compared_name(field.name()).to_string()).or_insert_with(|| column_type_name(field.data_type()));
        }
        let reader = builder.build().map_err(|e| fail(&e))?;
        for batch in reader {
            let batch = batch.map_err(|e| fail(&e))?;
            let mut writer = LineDelimitedWriter::new(Vec::new());
            writer.write(&batch).map_err(|e| fail(&e))?;
            writer.finish().map_err(|e| fail(&e))?;
            for line in writer.into_inner().split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let hash = canonical_hash(line).map_err(|e| fail(&e))?;
                set.rows.entry(hash).or_insert((0, index)).0 += 1;
                set.total += 1;
            }
        }
    }
    Ok(set)
}

/// A column's type as kappa-lake names it (`timestamp`, `decimal(20,0)`), else Arrow's name.
fn column_type_name(data_type: &arrow::datatypes::DataType) -> String {
    kappa_common::schema::ColumnType::of_table_column(data_type).map_or_else(|| data_type.to_string(), |t| t.to_string())
}

/// The columns whose type differs between the two generations, or that one lacks.
fn schema_differences(live: &str, live_columns: &BTreeMap<String, String>, new: &str, new_columns: &BTreeMap<String, String>) -> Vec<String> {
    let mut differences = Vec::new();
    for name in live_columns.keys().chain(new_columns.keys()).collect::<std::collections::BTreeSet<_>>() {
        let (before, after) = (live_columns.get(name), new_columns.get(name));
        if before != after {
            let shown = |t: Option<&String>| t.map_or_else(|| "absent".to_string(), Clone::clone);
            differences.push(format!("{name}: {} in {live}, {} in {new}", shown(before), shown(after)));
        }
    }
    differences
}

/// What `compare` compares.
pub(crate) struct Comparison<'a> {
    /// The current generation, and the version of the table to read (the latest without).
    pub live: &'a str,
    pub at: Option<u64>,
    /// Files other writers appended that a switch carries over: left out.
    pub carried: &'a [String],
    pub new: &'a str,
    /// The replay was given a --schema: type differences are asked for.
    pub schema_change_asked: bool,
    /// The replay read past what a running consumer had committed: rows only in the new
    /// generation are expected.
    pub new_rows_expected: bool,
}

/// Compares the new generation with the live table as readers read it.
pub(crate) async fn compare(store: &Store, name: &str, what: Comparison<'_>) -> Result<CompareReport, ReplayError> {
    let Comparison { live, at, carried, new, schema_change_asked, new_rows_expected } = what;
    let live_rows = row_set(store, &format!("the current table ({live})"), live_files(store, name, at, carried).await?).await?;
    let new_rows = row_set(store, &format!("the new generation ({new})"), generation_files(store, name, new).await?).await?;
    let schema_differences = schema_differences(live, &live_rows.columns, new, &new_rows.columns);
    for difference in &schema_differences {
        if schema_change_asked {
            tracing::info!(column = %difference, "compare: a column's type changed, as --schema asked");
        } else {
            tracing::warn!(column = %difference, "compare: the generations type a column differently (pass --schema to change a type on purpose)");
        }
    }
    let mut by_partition: BTreeMap<(String, String), u64> = BTreeMap::new();
    let (mut only_new, mut only_live) = (0, 0);
    for (hash, (count, partition)) in &new_rows.rows {
        let other = live_rows.rows.get(hash).map_or(0, |(c, _)| *c);
        if *count > other {
            only_new += count - other;
            *by_partition.entry((new.to_string(), new_rows.partitions[*partition as usize].clone())).or_default() += count - other;
        }
    }
    for (hash, (count, partition)) in &live_rows.rows {
        let other = new_rows.rows.get(hash).map_or(0, |(c, _)| *c);
        if *count > other {
            only_live += count - other;
            *by_partition.entry((live.to_string(), live_rows.partitions[*partition as usize].clone())).or_default() += count - other;
        }
    }
    let differences: Vec<PartitionDifference> =
        by_partition.into_iter().map(|((generation, partition), rows)| PartitionDifference { generation, partition, rows }).collect();
    for d in &differences {
        tracing::warn!(generation = %d.generation, partition = %d.partition, rows = d.rows, "compare: rows the other generation lacks");
    }
    // Rows only in the new generation are expected where the replay read past what a running
    // consumer had committed; a row only in the current table would disappear at a switch.
    let differences_fail = differences.iter().any(|d| d.generation == live) || (!new_rows_expected && only_new > 0);
    if new_rows_expected && only_new > 0 {
        tracing::info!(only_new, "compare: rows only in the new generation that the running consumer had not committed yet (it goes on after them)");
    }
    let ok = !differences_fail && (schema_differences.is_empty() || schema_change_asked);
    tracing::info!(live, rows_live = live_rows.total, rows_new = new_rows.total, only_new, only_live, "compare: row multisets of the two generations");
    Ok(CompareReport {
        ok,
        live: live.to_string(),
        schema_differences,
        schema_change_asked,
        rows_new: new_rows.total,
        rows_live: live_rows.total,
        only_new,
        only_live,
        differences,
    })
}
