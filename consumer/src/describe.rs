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
    let prefix = root.join(table.data_prefix());
    let lake_table = runtime
        .block_on(kappa_table::delta::LakeTable::open(table_name, &kappa_table::location(table.store(), table_name)?))?
        .context("the Delta table vanished")?;
    say!(
        "table {table_name} — Delta table version {}, generation {}, {} consumer commits",
        lake_table.version().unwrap_or_default(),
        table.generation(),
        state.last_commit
    );
    say!("read it at {} (a Delta table: DuckDB delta_scan, python deltalake, Spark, Athena through Glue)", root.join(table_name).display());
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
    if let Some((version, schema)) = runtime.block_on(table.latest_schema())? {
        let columns: Vec<String> = schema.fields.iter().map(|c| format!("{} {}", c.name, c.column_type)).collect();
        say!("schema v{version}: {}", columns.join(", "));
    }
    let mut partitions: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for file in &state.files {
        let path = prefix.join(file);
        let reader = SerializedFileReader::new(std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?)?;
        let rows = reader.metadata().file_metadata().num_rows() as u64;
        let partition = file.rsplit_once('/').map_or("", |(p, _)| p).to_string();
        let entry = partitions.entry(partition).or_default();
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
        say!("quarantined events: {} (in {}/_errors/)", state.totals.quarantined, root.join(table_name).display());
    }
    let mut printed = 0;
    for file in &state.files {
        if printed >= limit {
            break;
        }
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(prefix.join(file))?)?.with_batch_size(limit).build()?;
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
