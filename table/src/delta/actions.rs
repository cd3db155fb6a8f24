//! The actions of the commits this crate writes, built from our types: `add`, `metaData` for a
//! new schema or partitioning, the protocol a grown schema needs; and commits parsed back.

use deltalake_core::DeltaTableError;
use deltalake_core::kernel::{Add, Metadata, Protocol, StructType};
use serde_json::Value;

use super::{DataFile, DeltaError, TableSetup};

pub(crate) fn parse_commit(table: &str, version: u64, commit: &[u8]) -> Result<Vec<Value>, DeltaError> {
    commit
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| serde_json::from_slice(line).map_err(|source| DeltaError::CorruptCommit { table: table.to_string(), version, source }))
        .collect()
}

/// The table's metadata with a new schema, partitioning and properties; its id and creation
/// time stay.
pub(crate) fn metadata(current: &Metadata, schema: &StructType, setup: &TableSetup) -> Result<Metadata, DeltaTableError> {
    let mut configuration = current.configuration().clone();
    configuration.extend(setup.configuration.clone());
    let value = serde_json::json!({
        "id": current.id(),
        "name": current.name(),
        "description": current.description(),
        "format": { "provider": "parquet", "options": {} },
        "schemaString": serde_json::to_string(schema)?,
        "partitionColumns": setup.partition_columns,
        "configuration": configuration,
        "createdTime": current.created_time(),
    });
    Ok(serde_json::from_value(value)?)
}

/// The protocol a grown schema needs, if the current one does not do: a timestamp column added
/// later needs the `timestampNtz` feature that a create would have enabled.
pub(crate) fn protocol_for(current: &Protocol, schema: &StructType) -> Result<Option<Protocol>, DeltaTableError> {
    if !deltalake_core::kernel::contains_timestampntz(schema.fields()) {
        return Ok(None);
    }
    let mut value = serde_json::to_value(current)?;
    if value["readerFeatures"].as_array().is_some_and(|features| features.iter().any(|f| f == "timestampNtz")) {
        return Ok(None);
    }
    value["minReaderVersion"] = 3.into();
    value["minWriterVersion"] = 7.into();
    for key in ["readerFeatures", "writerFeatures"] {
        let mut features = value[key].as_array().cloned().unwrap_or_default();
        features.push("timestampNtz".into());
        value[key] = features.into();
    }
    Ok(Some(serde_json::from_value(value)?))
}

pub(crate) fn add_action(file: DataFile, data_change: bool) -> Add {
    Add {
        path: file.path,
        partition_values: file.partition_values,
        size: file.size,
        modification_time: chrono::Utc::now().timestamp_millis(),
        data_change,
        stats: file.stats,
        ..Default::default()
    }
}
