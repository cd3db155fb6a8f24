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
    let keys: &[&str] = match layout.partition_by.as_str() {
        "year" => &["year"],
        "month" => &["year", "month"],
        "day" => &["year", "month", "day"],
        _ => &["year", "month", "day", "hour"],
    };
    let taken = |name: &str| schema.fields.iter().any(|c| c.name.eq_ignore_ascii_case(name));
    keys.iter().map(|key| if taken(key) { format!("{PARTITION_COLUMN_PREFIX}{key}") } else { key.to_string() }).collect()
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
/// integers (`month=03` is 3).
pub(crate) fn delta_file(generation: &str, file: &DataFile, partition_columns: &[String]) -> Result<crate::delta::DataFile, TableError> {
    let mut partition_values = std::collections::HashMap::new();
    for (segment, column) in file.partition.split('/').zip(partition_columns) {
        let value = segment.split_once('=').and_then(|(_, v)| v.parse::<i64>().ok()).ok_or_else(|| TableError::Invalid {
            table: generation.to_string(),
            reason: format!("file {} has a partition {:?} this table cannot name", file.path, file.partition),
        })?;
        partition_values.insert(column.clone(), Some(value.to_string()));
    }
    Ok(crate::delta::DataFile { path: format!("{generation}/{}", file.path), partition_values, size: file.bytes as i64, stats: file.stats.clone() })
}
