//! How the consumer's commits appear in the Delta table: partition column names, the table's
//! `kappa.*` properties, and each data file as an `add` action.

use std::collections::BTreeMap;

use kappa_common::schema::TableSchema;

use crate::TableError;
use crate::state::{DataFile, GENERATION_PROPERTY, Layout};

/// Table property: the schema version (of `_kappa/<generation>/schema/`) the Delta schema is at.
pub(crate) const SCHEMA_VERSION_PROPERTY: &str = "kappa.schemaVersion";

/// The prefix a partition column gets when the data has a column of the key's name: a user's
/// `day` keeps its name and values, and the table's day partition is `kappa_day`.
pub const PARTITION_COLUMN_PREFIX: &str = "kappa_";

/// The partition columns for `layout`: the keys (`year`, `month`, `day`, `hour`), each
/// prefixed with [`PARTITION_COLUMN_PREFIX`] if a data column has that name (compared without
/// case, as Athena and Spark compare names). Decided when the table is created, and kept.
pub fn partition_columns(schema: &TableSchema, layout: &Layout) -> Vec<String> {
    let keys = layout_keys(layout);
    let taken = |name: &str| schema.fields.iter().any(|c| c.name.eq_ignore_ascii_case(name));
    keys.iter().map(|key| if taken(key) { format!("{PARTITION_COLUMN_PREFIX}{key}") } else { key.to_string() }).collect()
}

/// The partition key a column stands for: `kappa_day` is the day.
fn key_of(column: &str) -> &str {
    column.strip_prefix(PARTITION_COLUMN_PREFIX).unwrap_or(column)
}

/// The partition a directory stands for, by key: `kappa_year=2025/month=03` is
/// `year=2025/month=03` (see [`partition_dir`]), the form the consumer counts rows by.
pub fn partition_of_dir(dir: &str) -> String {
    dir.split('/')
        .map(|segment| match segment.split_once('=') {
            Some((column, value)) => format!("{}={value}", key_of(column)),
            None => segment.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The directory of partition `partition` (`year=2025/month=03`, by key) in a table whose
/// partition columns are `columns`: each key named as its column is stored
/// (`kappa_year=2025/kappa_month=03` where the data has a `year` and a `month`). A reader of
/// the plain Parquet files that takes directories for columns (DuckDB's `read_parquet` and
/// Spark by default, Athena over the raw files) then finds the partition values under the
/// names the Delta table gives them, never in place of the data's own `year`. A key no column
/// stands for keeps its name.
pub fn partition_dir(partition: &str, columns: &[String]) -> String {
    partition
        .split('/')
        .map(|segment| match segment.split_once('=') {
            Some((key, value)) => match columns.iter().find(|c| key_of(c) == key) {
                Some(column) => format!("{column}={value}"),
                None => segment.to_string(),
            },
            None => segment.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn layout_keys(layout: &Layout) -> &'static [&'static str] {
    match layout.partition_by.as_str() {
        "year" => &["year"],
        "month" => &["year", "month"],
        "day" => &["year", "month", "day"],
        _ => &["year", "month", "day", "hour"],
    }
}

/// Checks that a table partitioned by `columns` is one a writer with `layout` can write: its
/// partition columns are the layout's keys, by name (`day` or `kappa_day`), in any order. A
/// table another tool re-partitioned (python deltalake's `partition_by=["branch"]`) would
/// otherwise get our year in its branch column.
pub(crate) fn check_partitioning(columns: &[String], layout: &Layout) -> Result<(), Partitioning> {
    let mut found: Vec<&str> = columns.iter().map(|c| key_of(c)).collect();
    let mut expected = layout_keys(layout).to_vec();
    found.sort_unstable();
    expected.sort_unstable();
    if found == expected {
        return Ok(());
    }
    // Another of kappa-lake's granularities (a consumer started with another --partition-by).
    let ours = ["year", "month", "day", "hour"];
    if !found.is_empty() && found.iter().all(|k| ours.contains(k)) {
        return Err(Partitioning::OtherGranularity);
    }
    Err(Partitioning::Foreign(format!(
        "the Delta table is partitioned by [{}], and this writer partitions by {} of {} ([{}]): it cannot fill those columns",
        columns.join(", "),
        layout.partition_by,
        layout.event_time.as_deref().unwrap_or("the arrival time"),
        layout_keys(layout).join(", ")
    )))
}

/// Why a table's partition columns do not fit a writer's layout.
#[derive(Debug)]
pub(crate) enum Partitioning {
    /// kappa-lake's keys at another granularity.
    OtherGranularity,
    /// Columns another tool chose; the text says which.
    Foreign(String),
}

pub(crate) fn properties(generation: &str, layout: &Layout, schema_version: u32) -> BTreeMap<String, String> {
    let mut properties = BTreeMap::from([
        (GENERATION_PROPERTY.to_string(), generation.to_string()),
        ("kappa.partitionBy".to_string(), layout.partition_by.clone()),
        (SCHEMA_VERSION_PROPERTY.to_string(), schema_version.to_string()),
    ]);
    if let Some(column) = &layout.event_time {
        properties.insert("kappa.eventTime".to_string(), column.clone());
    }
    properties
}

/// A committed file as the Delta log names it: under its generation, partition values as
/// integers (`month=03` is 3), each in the table's column for its key, matched by name.
pub(crate) fn delta_file(generation: &str, file: &DataFile, partition_columns: &[String]) -> Result<crate::delta::DataFile, TableError> {
    let invalid = |why: &str| TableError::Invalid {
        table: generation.to_string(),
        reason: format!(
            "file {} has the partition {:?}, which the table's partition columns [{}] cannot name: {why}",
            file.path,
            file.partition,
            partition_columns.join(", ")
        ),
    };
    let mut partition_values = std::collections::HashMap::new();
    for segment in file.partition.split('/').filter(|s| !s.is_empty()) {
        let (key, value) = segment.split_once('=').ok_or_else(|| invalid("not key=value"))?;
        let value = value.parse::<i64>().map_err(|_| invalid("not a number"))?;
        // By key (`year`), or by the column's own name (`kappa_year`, a directory named by
        // [`partition_dir`], as a compaction's files say their partition).
        let column = partition_columns.iter().find(|c| c.as_str() == key || key_of(c) == key).ok_or_else(|| invalid("no column for that key"))?;
        partition_values.insert(column.clone(), Some(value.to_string()));
    }
    if partition_values.len() != partition_columns.len() {
        return Err(invalid("a column gets no value"));
    }
    Ok(crate::delta::DataFile { path: format!("{generation}/{}", file.path), partition_values, size: file.bytes as i64, stats: file.stats.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_go_to_their_columns_by_name() {
        let file = DataFile { path: "p/f.parquet".into(), partition: "year=2025/month=03/day=19".into(), rows: 1, bytes: 1, stats: None };
        let columns = ["kappa_day".to_string(), "year".to_string(), "month".to_string()];
        let added = delta_file("gen-000001", &file, &columns).unwrap();
        assert_eq!(added.partition_values["kappa_day"].as_deref(), Some("19"));
        assert_eq!(added.partition_values["year"].as_deref(), Some("2025"));
        // A table re-partitioned by someone else: refused, never matched by position.
        assert!(delta_file("gen-000001", &file, &["branch".to_string(), "year".to_string(), "month".to_string()]).is_err());
        assert!(delta_file("gen-000001", &file, &["year".to_string(), "month".to_string(), "day".to_string(), "branch".to_string()]).is_err());
        let day = Layout { partition_by: "day".into(), event_time: Some("sale_date".into()) };
        assert!(check_partitioning(&columns, &day).is_ok());
        let Err(Partitioning::Foreign(refused)) = check_partitioning(&["branch".to_string()], &day) else { panic!("refused") };
        assert_eq!(
            refused,
            "the Delta table is partitioned by [branch], and this writer partitions by day of sale_date ([year, month, day]): it cannot fill those columns"
        );
        assert!(matches!(check_partitioning(&["year".to_string()], &day), Err(Partitioning::OtherGranularity)));
    }

    #[test]
    fn directories_are_named_after_the_partition_columns_as_stored() {
        let columns = ["kappa_year".to_string(), "month".to_string(), "kappa_day".to_string()];
        assert_eq!(partition_dir("year=2025/month=03/day=19", &columns), "kappa_year=2025/month=03/kappa_day=19");
        assert_eq!(partition_of_dir("kappa_year=2025/month=03/kappa_day=19"), "year=2025/month=03/day=19");
        assert_eq!(partition_dir("year=2025/month=03/day=19", &["year".to_string(), "month".to_string(), "day".to_string()]), "year=2025/month=03/day=19");
        // A file in such a directory says its partition by the columns' names: still placed.
        let file = DataFile { path: "f.parquet".into(), partition: "kappa_year=2025/month=03/kappa_day=19".into(), rows: 1, bytes: 1, stats: None };
        let added = delta_file("gen-000001", &file, &columns).unwrap();
        assert_eq!((added.partition_values["kappa_year"].as_deref(), added.partition_values["kappa_day"].as_deref()), (Some("2025"), Some("19")));
    }
}
