//! The table in the AWS Glue Data Catalog, so Athena reads it as Delta without a crawler: a
//! Glue table at the table's root with `table_type=DELTA` (Athena then reads the Delta log:
//! the committed files, their partition values, time travel), and the columns listed for
//! people browsing the catalog. No partitions are registered: the Delta log holds them.

use std::collections::HashMap;

use aws_sdk_glue::Client;
use aws_sdk_glue::types::{Column, DatabaseInput, SerDeInfo, StorageDescriptor, TableInput};
use kappa_common::schema::ColumnType;

use crate::delta::{DeltaError, TableSetup};

/// What registration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Created,
    Updated,
    Unchanged,
}

/// Creates the database (if missing) and the table, or brings the table up to `setup` and
/// `location` (an `s3://` URL of the table's root).
pub async fn register(client: &Client, database: &str, table: &str, location: &str, setup: &TableSetup) -> Result<Registered, DeltaError> {
    let failed = |action: &str, e: String| DeltaError::Invalid { table: table.to_string(), reason: format!("Glue {action} in database {database}: {e}") };
    match client.get_database().name(database).send().await {
        Ok(_) => {}
        Err(e) if e.as_service_error().is_some_and(|e| e.is_entity_not_found_exception()) => {
            let input =
                DatabaseInput::builder().name(database).description("kappa-lake tables").build().map_err(|e| failed("CreateDatabase", e.to_string()))?;
            if let Err(e) = client.create_database().database_input(input).send().await
                && !e.as_service_error().is_some_and(|e| e.is_already_exists_exception())
            {
                return Err(failed("CreateDatabase", describe(&e)));
            }
        }
        Err(e) => return Err(failed("GetDatabase", describe(&e))),
    }
    let wanted = table_input(table, location, setup).map_err(|e| failed("TableInput", e))?;
    match client.get_table().database_name(database).name(table).send().await {
        Ok(found) => {
            let current = found.table();
            let same = current.is_some_and(|t| {
                t.storage_descriptor().and_then(|s| s.location()) == wanted.storage_descriptor().and_then(|s| s.location())
                    && t.storage_descriptor().map(|s| s.columns()) == wanted.storage_descriptor().map(|s| s.columns())
                    && t.parameters().and_then(|p| p.get("table_type")).map(String::as_str) == Some("DELTA")
            });
            if same {
                return Ok(Registered::Unchanged);
            }
            client.update_table().database_name(database).table_input(wanted).send().await.map_err(|e| failed("UpdateTable", describe(&e)))?;
            Ok(Registered::Updated)
        }
        Err(e) if e.as_service_error().is_some_and(|e| e.is_entity_not_found_exception()) => {
            match client.create_table().database_name(database).table_input(wanted).send().await {
                Ok(_) => Ok(Registered::Created),
                // Another writer registered it meanwhile: the next registration compares.
                Err(e) if e.as_service_error().is_some_and(|e| e.is_already_exists_exception()) => Ok(Registered::Unchanged),
                Err(e) => Err(failed("CreateTable", describe(&e))),
            }
        }
        Err(e) => Err(failed("GetTable", describe(&e))),
    }
}

fn describe<E: std::error::Error + 'static>(error: &E) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Hive types, as Athena shows them. A `timestamp_ntz` column shows as `timestamp` too (Hive
/// has no other), though Athena's Delta reader may not read the `timestampNtz` table feature:
/// docs/athena.md says which to use.
fn hive_type(column_type: ColumnType) -> String {
    match column_type {
        ColumnType::String => "string".into(),
        ColumnType::Int64 => "bigint".into(),
        ColumnType::Float64 => "double".into(),
        ColumnType::Boolean => "boolean".into(),
        ColumnType::Date => "date".into(),
        ColumnType::Timestamp | ColumnType::TimestampNtz => "timestamp".into(),
        ColumnType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
    }
}

fn table_input(table: &str, location: &str, setup: &TableSetup) -> Result<TableInput, String> {
    let mut columns = Vec::new();
    for column in &setup.schema.fields {
        columns.push(Column::builder().name(&column.name).r#type(hive_type(column.column_type)).build().map_err(|e| e.to_string())?);
    }
    for partition in &setup.partition_columns {
        columns.push(Column::builder().name(partition).r#type("int").comment("partition column (from the Delta log)").build().map_err(|e| e.to_string())?);
    }
    let storage = StorageDescriptor::builder()
        .location(location)
        .set_columns(Some(columns))
        .input_format("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat")
        .output_format("org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat")
        .serde_info(SerDeInfo::builder().serialization_library("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe").build())
        .build();
    let parameters: HashMap<String, String> = [
        ("table_type", "DELTA"),
        ("EXTERNAL", "TRUE"),
        ("classification", "delta"),
        ("spark.sql.sources.provider", "delta"),
        ("kappa.generation", setup.configuration.get("kappa.generation").map(String::as_str).unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    TableInput::builder()
        .name(table)
        .table_type("EXTERNAL_TABLE")
        .description("kappa-lake Delta table (registered by kappa-lake; Athena reads it as Delta)")
        .storage_descriptor(storage)
        .set_parameters(Some(parameters))
        .build()
        .map_err(|e| e.to_string())
}
