//! Columns of text typed by the rules of [`kappa_common::values`]: the general decoding path.
//!
//! arrow-json reads events whole (structure, escapes, strictness) into a column of text per
//! table column — a string's contents, a number's digits as written, `true`/`false` — and this
//! module gives each column its type. arrow-json's own typed decoding is not used for that: it
//! truncates a fraction that reaches an integer column (`100.5` became `100`) and reads a
//! string column's numbers only as an error. Here a value that does not fit its column is a
//! [`Misfit`], and its event is quarantined with the reason; the fast path
//! ([`crate::plain_columns`]) applies the same rules, and the differential tests hold the two
//! to the same rows.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder, RecordBatch, RecordBatchOptions, StringArray,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use kappa_common::schema::{ColumnType, NullTokens, TableSchema};
use kappa_common::values::{self, Misfit};

/// The null tokens every path reads in typed columns (`""`, `NA`, `N/A`, `NULL`, `null`, `NaN`):
/// the producer's default, so an event reads the same whether the producer typed it or not.
pub fn null_tokens() -> &'static NullTokens {
    static TOKENS: std::sync::OnceLock<NullTokens> = std::sync::OnceLock::new();
    TOKENS.get_or_init(NullTokens::default)
}

/// A row whose value does not fit its column: the row's index and the quarantine reason.
pub type Rejected = (usize, String);

/// Types `texts` (one text column per column of `schema`, in order) into a batch of `data`
/// (the typed schema). Rows with a value that does not fit are left out and returned with the
/// reason of their first misfit, in row order.
pub fn type_columns(texts: &[ArrayRef], schema: &TableSchema, data: &SchemaRef) -> Result<(RecordBatch, Vec<Rejected>), arrow::error::ArrowError> {
    let rows = texts.first().map_or(0, |t| t.len());
    let mut first_misfit: Vec<Option<String>> = vec![None; rows];
    let mut columns = Vec::with_capacity(texts.len());
    for ((text, column), field) in texts.iter().zip(&schema.fields).zip(data.fields()) {
        let strings = text.as_any().downcast_ref::<StringArray>().ok_or_else(|| arrow::error::ArrowError::SchemaError("a text column is not text".into()))?;
        let typed = type_column(strings, column.column_type, |row, misfit| {
            first_misfit[row].get_or_insert_with(|| misfit_reason(&column.name, &misfit));
        });
        debug_assert_eq!(typed.data_type(), field.data_type());
        columns.push(typed);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    let batch = RecordBatch::try_new_with_options(data.clone(), columns, &options)?;
    let rejected: Vec<Rejected> = first_misfit.into_iter().enumerate().filter_map(|(row, reason)| reason.map(|r| (row, r))).collect();
    if rejected.is_empty() {
        return Ok((batch, rejected));
    }
    let keep: arrow::array::BooleanArray = (0..rows).map(|row| Some(rejected.binary_search_by_key(&row, |(r, _)| *r).is_err())).collect();
    Ok((arrow::compute::filter_record_batch(&batch, &keep)?, rejected))
}

/// One column typed; `misfit(row, why)` for each value that does not fit (the row gets null).
fn type_column(texts: &StringArray, column_type: ColumnType, mut misfit: impl FnMut(usize, Misfit)) -> ArrayRef {
    let nulls = null_tokens();
    macro_rules! typed {
        ($builder:expr, $parse:expr) => {{
            let mut builder = $builder;
            for (row, text) in texts.iter().enumerate() {
                match text.map($parse).transpose() {
                    Ok(value) => builder.append_option(value.flatten()),
                    Err(why) => {
                        misfit(row, why);
                        builder.append_null();
                    }
                }
            }
            Arc::new(builder.finish()) as ArrayRef
        }};
    }
    let rows = texts.len();
    match column_type {
        ColumnType::String => Arc::new(texts.clone()),
        ColumnType::Int64 => typed!(Int64Builder::with_capacity(rows), |t| values::int64(t, nulls)),
        ColumnType::Float64 => typed!(Float64Builder::with_capacity(rows), |t| values::float64(t, nulls)),
        ColumnType::Boolean => typed!(BooleanBuilder::with_capacity(rows), |t| values::boolean(t, nulls)),
        ColumnType::Date => typed!(Date32Builder::with_capacity(rows), |t| values::date(t, nulls)),
        ColumnType::Timestamp | ColumnType::TimestampNtz => {
            let array = typed!(TimestampMicrosecondBuilder::with_capacity(rows), |t| values::timestamp(t, column_type, nulls));
            match column_type {
                ColumnType::Timestamp => Arc::new(
                    array
                        .as_any()
                        .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
                        .expect("built above")
                        .clone()
                        .with_timezone(kappa_common::schema::UTC),
                ),
                _ => array,
            }
        }
        ColumnType::Decimal { precision, scale } => {
            let array = typed!(Decimal128Builder::with_capacity(rows), |t| values::decimal(t, precision, scale, nulls));
            let decimals = array.as_any().downcast_ref::<arrow::array::Decimal128Array>().expect("built above").clone();
            Arc::new(decimals.with_precision_and_scale(precision, scale as i8).expect("a valid decimal type"))
        }
    }
}

/// The quarantine reason of a value that does not fit its column: the column, the value, the
/// rule, and what to do (the event stays in the log, so a replay can still store it).
pub fn misfit_reason(column: &str, misfit: &Misfit) -> String {
    let mut reason = format!("column {column:?}: {misfit}");
    if misfit.why == values::NESTED {
        return reason;
    }
    if let Some(fit) = misfit.would_fit() {
        reason.push_str(&format!(
            ". A value is never altered: to keep such values, replay with a --schema that types {column} as {fit}, then switch (the event stays in the log)"
        ));
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    use kappa_common::schema::Column;

    #[test]
    fn misfits_leave_their_rows_out_with_the_first_reason() {
        let schema = TableSchema::new(vec![
            Column { name: "x".into(), column_type: ColumnType::Int64, nullable: true },
            Column { name: "s".into(), column_type: ColumnType::String, nullable: true },
        ])
        .unwrap();
        let data = crate::decode::data_schema(&schema);
        let texts: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("1"), Some("100.5"), None, Some("NA"), Some("1e3")])),
            Arc::new(StringArray::from(vec![Some("a"), Some("b"), Some("c"), Some(" d "), Some("e")])),
        ];
        let (batch, rejected) = type_columns(&texts, &schema, &data).unwrap();
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().iter().collect::<Vec<_>>(), vec![Some(1), None, None]);
        assert_eq!(batch.column(1).as_string::<i32>().iter().collect::<Vec<_>>(), vec![Some("a"), Some("c"), Some(" d ")]);
        assert_eq!(rejected.iter().map(|(row, _)| *row).collect::<Vec<_>>(), vec![1, 4]);
        assert!(rejected[0].1.starts_with("column \"x\": \"100.5\" is not a valid int64: it has a fraction"), "{}", rejected[0].1);
        assert!(rejected[0].1.contains("replay with a --schema that types x as float64"), "{}", rejected[0].1);
    }
}
