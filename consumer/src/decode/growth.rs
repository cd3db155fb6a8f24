//! What a chunk's events add to the table's schema, and the member names no column can have.

use std::sync::Arc;

use indexmap::IndexMap;
use kappa_common::event::EVENT_ID_FIELD;
use kappa_common::json::Json;
use kappa_common::schema::{Column, ColumnType, JsonTypeGuess, TableSchema};
use kappa_common::shaped::Shape;

/// Why an object cannot be a row because of a member's name: one that differs from a column's
/// only in case, or one named like a partition column (see [`Decoder::set_partition_columns`]).
/// Such an event would otherwise stop every start of the consumer at the Delta log's refusal.
pub(super) fn clashing_member(object: &kappa_common::json::Object, table: &TableSchema, reserved: &[String]) -> Option<String> {
    object.iter().find_map(|(name, _)| {
        if name == EVENT_ID_FIELD || table.index_of(name).is_some() {
            return None;
        }
        let lower = name.to_lowercase();
        if let Some(column) = table.fields.iter().find(|c| c.name.to_lowercase() == lower) {
            return Some(format!(
                "member {name:?} differs from the table's column {:?} only in case: Delta (and Spark, Athena, Glue) take them for one \
                 column, so it cannot be a column of its own; send it as {:?}, or rename it",
                column.name, column.name
            ));
        }
        reserved.contains(&lower).then(|| {
            format!(
                "member {name:?} is named like the table's partition column {lower:?}, which a data column cannot be: rename it, or \
                 rebuild the table with `kappa-replay --switch`, which names the partition columns apart from the data's (kappa_{lower})"
            )
        })
    })
}

/// What a chunk's events add to a schema: the columns, with new ones after the existing (in the
/// order they first appear), and the members seen only with null values.
#[derive(Debug)]
pub struct Growth {
    pub columns: Vec<Column>,
    pub null_only: Vec<String>,
}

/// Grows `columns` for the members of `events` that are not columns: a member with a type from
/// its event's shape (the producer's) becomes a column of that type; another becomes a column
/// of the type its values in the chunk call for ([`JsonTypeGuess`]); one that is only ever
/// null is noted in `null_only`, and one only ever nested adds nothing (its events are
/// quarantined with the reason). A name no column can have adds nothing either: empty, one
/// that differs from another column's only in case (the first seen becomes the column), or
/// one of the `reserved` partition columns (lowercase).
pub fn grow(columns: &[Column], null_only: &[String], reserved: &[String], events: &[&[u8]], shapes: &[Option<Arc<Shape>>]) -> Growth {
    #[derive(Default)]
    struct Seen {
        guess: JsonTypeGuess,
        producer_type: Option<ColumnType>,
        nested: bool,
    }
    let mut seen: IndexMap<String, Seen> = IndexMap::new();
    for (index, event) in events.iter().enumerate() {
        let Ok(Json::Object(object)) = Json::from_slice(event) else { continue };
        let shape = shapes.get(index).and_then(Option::as_deref);
        for (name, value) in &object {
            if name == EVENT_ID_FIELD || columns.iter().any(|c| &c.name == name) {
                continue;
            }
            let entry = seen.entry(name.clone()).or_default();
            entry.guess.add(value);
            entry.nested |= matches!(value, Json::Object(_) | Json::Array(_));
            if entry.producer_type.is_none() {
                entry.producer_type = shape.and_then(|s| s.names().iter().position(|n| n == name).and_then(|at| s.type_of(at)));
            }
        }
    }
    let mut growth = Growth { columns: columns.to_vec(), null_only: null_only.to_vec() };
    for (name, seen) in seen {
        match seen.producer_type.or(seen.guess.column_type()) {
            Some(column_type) => {
                let column = Column { name: name.clone(), column_type, nullable: true };
                let mut candidate = growth.columns.clone();
                candidate.push(column.clone());
                if !reserved.contains(&name.to_lowercase()) && TableSchema::new(candidate).is_ok() {
                    tracing::info!(column = %name, r#type = %column_type, "new column");
                    growth.columns.push(column);
                    growth.null_only.retain(|n| n != &name);
                }
            }
            None if !seen.nested && !growth.null_only.contains(&name) => growth.null_only.push(name),
            None => {}
        }
    }
    growth
}
