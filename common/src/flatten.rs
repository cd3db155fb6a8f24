//! Nested JSON into flat rows, the shape a Parquet table and Athena want.
//!
//! - A nested object becomes `parent_child` columns, at any depth (`customer_address_city`).
//! - The array field named by `explode` (an array of objects, or of scalars) becomes one row per
//!   element, the parent's fields repeated on each; element fields are prefixed with the array's
//!   name (`products_price`). An empty or missing array keeps the parent as one row, so an order
//!   without products is not lost.
//! - Any other array is kept as its JSON text in a string column: nothing is dropped.
//!
//! Column order follows the input: the exploded element's fields stand where the array stood.
//! Values are [`Json`], so numbers keep their digits as written all the way to the event.

use crate::json::{Json, Object};

/// A flat row: column name → scalar JSON value (no objects, no arrays).
pub type Row = Object;

#[derive(Debug, Clone)]
pub struct FlattenOptions {
    /// Joins a parent's name to a child's. Default `_`.
    pub separator: String,
    /// The top-level field (dotted path for a nested one, e.g. `order.items`) whose array
    /// becomes one row per element.
    pub explode: Option<String>,
}

impl Default for FlattenOptions {
    fn default() -> Self {
        FlattenOptions { separator: "_".to_string(), explode: None }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlattenError {
    #[error("expected a JSON object, found {found}")]
    NotAnObject { found: &'static str },
    #[error("column {column:?} would be produced twice (a nested field flattens onto an existing name)")]
    Collision { column: String },
    #[error("field {field:?} to explode is {found}, not an array")]
    NotAnArray { field: String, found: &'static str },
}

/// Flattens one input record into one row, or into one row per element of the exploded array.
pub fn flatten_record(record: &Json, options: &FlattenOptions) -> Result<Vec<Row>, FlattenError> {
    let Json::Object(object) = record else {
        return Err(FlattenError::NotAnObject { found: record.kind() });
    };
    let explode_path: Option<Vec<&str>> = options.explode.as_deref().map(|p| p.split('.').collect());
    let mut flattener = Flattener { separator: &options.separator, explode_path, exploded: None };
    let mut base = Row::new();
    flattener.flatten_into(&mut base, "", object, 0)?;

    let Some(Exploded { insert_at, prefix, elements }) = flattener.exploded.take() else {
        return Ok(vec![base]);
    };
    if elements.is_empty() {
        return Ok(vec![base]);
    }
    let mut rows = Vec::with_capacity(elements.len());
    for element in &elements {
        let mut element_columns = Row::new();
        match element {
            Json::Object(fields) => flattener.flatten_into(&mut element_columns, &prefix, fields, usize::MAX)?,
            scalar => flattener.insert(&mut element_columns, prefix.clone(), scalar.clone())?,
        }
        let mut row = Row::with_capacity(base.len() + element_columns.len());
        for (i, (name, value)) in base.iter().enumerate() {
            if i == insert_at {
                for (n, v) in &element_columns {
                    insert_unique(&mut row, n, v)?;
                }
            }
            insert_unique(&mut row, name, value)?;
        }
        if insert_at >= base.len() {
            for (n, v) in &element_columns {
                insert_unique(&mut row, n, v)?;
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

fn insert_unique(row: &mut Row, name: &str, value: &Json) -> Result<(), FlattenError> {
    if row.insert(name.to_string(), value.clone()).is_some() {
        return Err(FlattenError::Collision { column: name.to_string() });
    }
    Ok(())
}

struct Exploded {
    /// Index in the base row's columns where the element's columns go.
    insert_at: usize,
    prefix: String,
    elements: Vec<Json>,
}

struct Flattener<'a> {
    separator: &'a str,
    explode_path: Option<Vec<&'a str>>,
    exploded: Option<Exploded>,
}

impl Flattener<'_> {
    fn name(&self, prefix: &str, key: &str) -> String {
        if prefix.is_empty() { key.to_string() } else { format!("{prefix}{}{key}", self.separator) }
    }

    fn insert(&self, row: &mut Row, name: String, value: Json) -> Result<(), FlattenError> {
        insert_unique(row, &name, &value)
    }

    /// `depth` is how far down the explode path we are; `usize::MAX` once inside an element
    /// (nothing below an exploded element is exploded again).
    fn flatten_into(&mut self, row: &mut Row, prefix: &str, object: &Object, depth: usize) -> Result<(), FlattenError> {
        for (key, value) in object {
            let name = self.name(prefix, key);
            let on_explode_path = self.explode_path.as_ref().is_some_and(|path| depth < path.len() && path[depth] == key.as_str());
            let is_explode_target = on_explode_path && self.explode_path.as_ref().is_some_and(|p| depth + 1 == p.len());
            match value {
                _ if is_explode_target => match value {
                    Json::Array(elements) => {
                        self.exploded = Some(Exploded { insert_at: row.len(), prefix: name, elements: elements.clone() });
                    }
                    Json::Null => {}
                    other => {
                        return Err(FlattenError::NotAnArray { field: name, found: other.kind() });
                    }
                },
                Json::Object(child) => {
                    let next_depth = if on_explode_path { depth + 1 } else { usize::MAX };
                    self.flatten_into(row, &name, child, next_depth)?;
                }
                Json::Array(_) => {
                    self.insert(row, name, Json::String(value.to_json_string()))?;
                }
                scalar => self.insert(row, name, scalar.clone())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `json!` value as a [`Json`].
    fn j(value: Value) -> Json {
        Json::parse(&value.to_string()).unwrap()
    }

    fn flatten_record(record: &Value, options: &FlattenOptions) -> Result<Vec<Value>, FlattenError> {
        super::flatten_record(&j(record.clone()), options)
            .map(|rows| rows.into_iter().map(|r| serde_json::from_str(&Json::Object(r).to_json_string()).unwrap()).collect())
    }

    use serde_json::{Value, json};

    fn explode(field: &str) -> FlattenOptions {
        FlattenOptions { explode: Some(field.to_string()), ..Default::default() }
    }

    #[test]
    fn nested_objects_become_prefixed_columns() {
        let rows =
            flatten_record(&json!({"id": 1, "customer": {"name": "A", "address": {"city": "X"}}, "tags": ["a", "b"]}), &FlattenOptions::default()).unwrap();
        assert_eq!(rows, vec![json!({"id": 1, "customer_name": "A", "customer_address_city": "X", "tags": "[\"a\",\"b\"]"})]);
    }

    #[test]
    fn explode_repeats_parent_fields_in_input_order() {
        let order = json!({"order_id": 1, "products": [{"name": "M", "price": 25.0}, {"name": "K", "price": 45.0}], "total": 70.0});
        let rows = flatten_record(&order, &explode("products")).unwrap();
        let keys: Vec<_> = rows[0].as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["order_id", "products_name", "products_price", "total"]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["products_name"], json!("K"));
        assert_eq!(rows[1]["order_id"], json!(1));
        assert_eq!(rows[1]["total"], json!(70.0));
    }

    #[test]
    fn empty_or_missing_array_keeps_the_parent() {
        assert_eq!(flatten_record(&json!({"id": 1, "products": []}), &explode("products")).unwrap().len(), 1);
        assert_eq!(flatten_record(&json!({"id": 1}), &explode("products")).unwrap().len(), 1);
        assert_eq!(flatten_record(&json!({"id": 1, "products": null}), &explode("products")).unwrap().len(), 1);
    }

    #[test]
    fn nested_explode_path_and_scalar_elements() {
        let rows = flatten_record(&json!({"o": {"id": 7, "items": [1, 2, 3]}}), &explode("o.items")).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2], json!({"o_id": 7, "o_items": 3}));
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(flatten_record(&json!([1]), &FlattenOptions::default()), Err(FlattenError::NotAnObject { found: "an array" }));
        assert!(
            matches!(flatten_record(&json!({"a_b": 1, "a": {"b": 2}}), &FlattenOptions::default()), Err(FlattenError::Collision { column }) if column == "a_b")
        );
        assert!(matches!(flatten_record(&json!({"p": 5}), &explode("p")), Err(FlattenError::NotAnArray { .. })));
        assert!(matches!(flatten_record(&json!({"products_x": 1, "products": [{"x": 2}]}), &explode("products")), Err(FlattenError::Collision { .. })));
    }

    #[test]
    fn seed_orders_become_23_rows() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/seed-data/orders/orders_ETL.json");
        let orders: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("seed data beside the repo")).unwrap();
        let rows: Vec<Value> = orders.as_array().unwrap().iter().flat_map(|o| flatten_record(o, &explode("products")).unwrap()).collect();
        assert_eq!(rows.len(), 23);
        assert!(rows.iter().all(|r| r.get("customer_email").is_some() && r.get("products_price").is_some()));
    }

    #[test]
    fn numbers_keep_their_digits() {
        let record = Json::parse(r#"{"a": {"x": 1e3, "y": -0}, "big": 12345678901234567890123, "list": [1.50, 2E2]}"#).unwrap();
        let rows = super::flatten_record(&record, &FlattenOptions::default()).unwrap();
        assert_eq!(Json::Object(rows[0].clone()).to_json_string(), r#"{"a_x":1e3,"a_y":-0,"big":12345678901234567890123,"list":"[1.50,2E2]"}"#);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::from), any::<i64>().prop_map(Value::from), "[a-z]{0,6}".prop_map(Value::from)]
    }

    fn nested() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| prop::collection::btree_map("[a-z]{1,3}", inner, 1..4).prop_map(|m| Value::Object(m.into_iter().collect())))
    }

    proptest! {
        #[test]
        fn rows_are_flat_and_one_per_element(parent in prop::collection::btree_map("[a-z]{1,3}", nested(), 0..4), items in prop::collection::vec(prop::collection::btree_map("[a-z]{1,3}", leaf(), 0..3), 0..5)) {
            let mut record: Map<String, Value> = parent.into_iter().collect();
            record.insert("items".into(), json!(items.iter().map(|m| Value::Object(m.clone().into_iter().collect())).collect::<Vec<_>>()));
            let options = FlattenOptions { explode: Some("items".into()), ..Default::default() };
            match flatten_record(&Json::parse(&Value::Object(record).to_string()).unwrap(), &options) {
                Ok(rows) => {
                    prop_assert_eq!(rows.len(), items.len().max(1));
                    for row in &rows {
                        prop_assert!(row.values().all(|v| !matches!(v, Json::Object(_) | Json::Array(_))));
                    }
                }
                // Generated names may genuinely collide (`a_b` beside `a: {b}`); that must be
                // the only way to fail.
                Err(e) => prop_assert!(matches!(e, FlattenError::Collision { .. }), "{e}"),
            }
        }
    }
}
