//! `kappa-query report`: a picture of the lake in one static HTML file.
//!
//! Everything comes from the Delta log of the current version (the files' partition values,
//! sizes and row counts from their statistics; the versions' commit infos), through the table
//! crate, so drawing a lake of thousands of files reads no data file. The page is assembled as
//! text with inline SVG and CSS: it opens offline, in a mail attachment or a CI artifact.

mod charts;
mod page;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kappa_table::GENERATION_PROPERTY;
use kappa_table::delta::{FileDetail, LakeTable, VersionInfo};

use crate::config::ReportConfig;
use crate::error::QueryError;

/// What the page shows, gathered from the table.
#[derive(Debug)]
pub struct Picture {
    pub table: String,
    pub lake: String,
    pub version: u64,
    pub generation: Option<String>,
    pub partition_columns: Vec<String>,
    /// In partition order (numbers compared as numbers: hour 9 before hour 10).
    pub partitions: Vec<Partition>,
    pub file_sizes: Vec<u64>,
    /// Oldest first; the newest `--history` of them.
    pub versions: Vec<VersionInfo>,
    /// Files whose statistics have no row count (their rows are not in the totals).
    pub files_without_rows: u64,
    pub columns: Vec<(String, String, bool)>,
    pub drawn_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    /// The partition values in partition-column order, joined by `/` (`2025/03/20`).
    pub label: String,
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
}

/// What the command prints when the page is written.
#[derive(Debug)]
pub struct Drawn {
    pub partitions: usize,
    pub files: usize,
    pub rows: u64,
    pub versions: usize,
    pub html_bytes: usize,
}

/// Reads the table and writes the page to `--output`.
pub async fn write(config: &ReportConfig) -> Result<Drawn, QueryError> {
    let location = crate::lake::location(&config.lake, &config.table, &config.aws).await?;
    let mut table = LakeTable::open(&config.table, &location).await?.ok_or_else(|| QueryError::NoTable {
        lake: config.lake.clone(),
        table: config.table.clone(),
        tables: Vec::new(),
    })?;
    let files = table.file_details().await?;
    let mut versions = table.history(config.history).await?;
    versions.reverse();
    let partition_columns = table.partition_columns()?;
    let picture = Picture {
        table: config.table.clone(),
        lake: config.lake.clone(),
        version: table.version().unwrap_or_default(),
        generation: table.configuration()?.get(GENERATION_PROPERTY).cloned(),
        partitions: partitions(&files, &partition_columns),
        partition_columns,
        file_sizes: files.iter().map(|f| f.size.max(0) as u64).collect(),
        files_without_rows: files.iter().filter(|f| f.num_records.is_none()).count() as u64,
        versions,
        columns: table.columns()?,
        drawn_at: Utc::now(),
    };
    let html = page::render(&picture);
    std::fs::write(&config.output, &html).map_err(|source| QueryError::Io { what: format!("--output {}", config.output.display()), source })?;
    Ok(Drawn {
        partitions: picture.partitions.len(),
        files: picture.file_sizes.len(),
        rows: picture.partitions.iter().map(|p| p.rows).sum(),
        versions: picture.versions.len(),
        html_bytes: html.len(),
    })
}

/// One value of a partition key, ordered as a person reads it: absent first, then numbers by
/// value, then text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Null,
    Number(i64),
    Text(String),
}

/// The files grouped by partition, in partition order.
fn partitions(files: &[FileDetail], columns: &[String]) -> Vec<Partition> {
    let mut grouped: BTreeMap<Vec<Key>, Partition> = BTreeMap::new();
    for file in files {
        let values: Vec<Option<&str>> = columns.iter().map(|c| file.partition_values.get(c).and_then(|v| v.as_deref())).collect();
        let key = values
            .iter()
            .map(|v| match v {
                None => Key::Null,
                Some(text) => text.parse().map_or_else(|_| Key::Text(text.to_string()), Key::Number),
            })
            .collect();
        let partition = grouped.entry(key).or_insert_with(|| Partition {
            label: if columns.is_empty() { "(unpartitioned)".to_string() } else { values.iter().map(|v| v.unwrap_or("null")).collect::<Vec<_>>().join("/") },
            files: 0,
            rows: 0,
            bytes: 0,
        });
        partition.files += 1;
        partition.rows += file.num_records.unwrap_or(0);
        partition.bytes += file.size.max(0) as u64;
    }
    grouped.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn file(values: &[(&str, Option<&str>)], size: i64, rows: Option<u64>) -> FileDetail {
        FileDetail {
            path: format!("part-{size}.parquet"),
            partition_values: values.iter().map(|(k, v)| (k.to_string(), v.map(str::to_string))).collect::<HashMap<_, _>>(),
            size,
            modification_time: 0,
            num_records: rows,
        }
    }

    #[test]
    fn partitions_group_files_and_sort_numbers_as_numbers() {
        let columns = vec!["day".to_string(), "hour".to_string()];
        let files = vec![
            file(&[("day", Some("20")), ("hour", Some("10"))], 100, Some(5)),
            file(&[("day", Some("20")), ("hour", Some("9"))], 50, Some(2)),
            file(&[("day", Some("20")), ("hour", Some("10"))], 30, None),
            file(&[("day", None), ("hour", Some("1"))], 7, Some(1)),
        ];
        let got = partitions(&files, &columns);
        let labels: Vec<&str> = got.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["null/1", "20/9", "20/10"]);
        assert_eq!(got[2], Partition { label: "20/10".into(), files: 2, rows: 5, bytes: 130 });
        assert_eq!(partitions(&files[..1], &[])[0].label, "(unpartitioned)");
    }
}
