//! `kappa-consumer describe`: what a lake table holds, read back from its files.
//!
//! Partitions, files and rows come from the Parquet footers of the committed files (not only
//! from the commit log), so the command also checks the lake is readable; the first rows are
//! printed as JSON.

use crate::stdout::say;
use std::collections::BTreeMap;

use anyhow::Context;
use kappa_common::store::{LocalStore, Store};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};

use kappa_table::Table;

pub fn describe(runtime: &tokio::runtime::Runtime, lake: &str, table_name: &str, limit: usize) -> anyhow::Result<()> {
    crate::config::validate_table(table_name)?;
    let root = std::path::PathBuf::from(lake);
    let store = Store::Local(LocalStore::new(&root));
    if !root.join(table_name).join("_delta_log").exists() {
        anyhow::bail!("no table {table_name:?} in the lake {lake} (looked for the Delta log {}/{table_name}/_delta_log)", root.display());
    }
    let table = runtime.block_on(Table::open_or_create(store, table_name))?;
    let state = runtime.block_on(table.load_state())?;
    let table_root = root.join(table_name);
    let mut lake_table = runtime
        .block_on(kappa_table::delta::LakeTable::open(table_name, &kappa_table::location(table.store(), table_name)?))?
        .context("the Delta table vanished")?;
    say!(
        "table {table_name} — Delta table version {}, generation {}, {} consumer commits",
        lake_table.version().unwrap_or_default(),
        table.generation(),
        state.last_commit
    );
    say!("read it at {} (a Delta table: DuckDB delta_scan, python deltalake, Spark, Athena through Glue)", table_root.display());
    say!(
        "partition columns: {} (named `{}<key>` where a data column has the key's name)",
        lake_table.partition_columns()?.join(", "),
        kappa_table::PARTITION_COLUMN_PREFIX
    );
    for version in runtime.block_on(lake_table.history(5))? {
        let when =
            version.timestamp_ms.and_then(chrono::DateTime::from_timestamp_millis).map_or_else(String::new, |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        let counter = version.kappa["counter"].as_i64().map_or_else(String::new, |c| format!("consumer commit {c}"));
        say!("  version {:<6} {when:<21} {:<10} {counter}", version.version, version.operation);
    }
    let columns: Vec<String> = lake_table.columns()?.into_iter().map(|(name, data_type, _)| format!("{name} {data_type}")).collect();
    say!("columns: {}", columns.join(", "));
    // Every file the current version holds, whoever wrote it (a foreign compaction's, an
    // append by another tool): what every reader reads. Rows from the files' own footers.
    let files = runtime.block_on(lake_table.file_details())?;
    let partition_columns = lake_table.partition_columns()?;
    let mut partitions: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for file in &files {
        let path = table_root.join(&file.path);
        let reader =
            SerializedFileReader::new(std::fs::File::open(&path).with_context(|| format!("opening {} (a file the Delta log names)", path.display()))?)?;
        let rows = reader.metadata().file_metadata().num_rows() as u64;
        let values: Vec<String> = partition_columns
            .iter()
            .map(|column| format!("{column}={}", file.partition_values.get(column).cloned().flatten().as_deref().unwrap_or("null")))
            .collect();
        let entry = partitions.entry(if values.is_empty() { "(unpartitioned)".into() } else { values.join("/") }).or_default();
        entry.0 += 1;
        entry.1 += rows;
        entry.2 += std::fs::metadata(&path)?.len();
    }
    say!("{:<36} {:>7} {:>12} {:>12}", "partition", "files", "rows", "bytes");
    let mut total = (0, 0, 0);
    for (partition, (files, rows, bytes)) in &partitions {
        say!("{partition:<36} {files:>7} {rows:>12} {bytes:>12}");
        total = (total.0 + files, total.1 + rows, total.2 + bytes);
    }
    say!("{:<36} {:>7} {:>12} {:>12}", "total", total.0, total.1, total.2);
    if state.totals.quarantined > 0 {
        say!("quarantined events: {} (in {}/_errors/)", state.totals.quarantined, table_root.display());
    }
    let mut printed = 0;
    for file in &files {
        if printed >= limit {
            break;
        }
        let path = table_root.join(&file.path);
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?.with_batch_size(limit).build()?;
        for batch in reader {
            let batch = batch?;
            let take = batch.num_rows().min(limit - printed);
            let mut writer = arrow::json::LineDelimitedWriter::new(std::io::stdout());
            writer.write(&batch.slice(0, take))?;
            writer.finish()?;
            printed += take;
            if printed >= limit {
                break;
            }
        }
    }
    Ok(())
}
