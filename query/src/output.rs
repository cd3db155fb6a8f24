//! Results as a person or a program wants them: an aligned table on a terminal, CSV (with a
//! header row), JSON, or Parquet.

use std::io::Write;

use deltalake_core::datafusion::arrow::datatypes::SchemaRef;
use deltalake_core::datafusion::arrow::record_batch::RecordBatch;
use deltalake_core::datafusion::arrow::util::pretty::pretty_format_batches_with_schema;
use futures::TryStreamExt;

use crate::counting::Scanned;
use crate::error::QueryError;
use crate::session::{Outcome, Running, sql_error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned table (the default on a terminal), at most --max-rows rows.
    Table,
    /// CSV with a header row (the default otherwise).
    Csv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// A Parquet file (needs --output).
    Parquet,
}

/// Standard output that notes when its reader closed the pipe (`kappa-query … | head -1`):
/// the query then ends quietly with status 0 instead of reporting the failed write. Buffered
/// here (stdout's own buffer flushes at each line), and `Send`, as Parquet's writer needs.
pub struct Stdout(std::io::BufWriter<std::io::Stdout>);

static READER_GONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Stdout {
    pub fn new() -> Stdout {
        Stdout(std::io::BufWriter::with_capacity(64 << 10, std::io::stdout()))
    }

    /// True once a write or flush found the pipe closed.
    pub fn reader_gone() -> bool {
        READER_GONE.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn noted<T>(result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &result
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            READER_GONE.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }
}

impl Default for Stdout {
    fn default() -> Stdout {
        Stdout::new()
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Stdout::noted(self.0.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Stdout::noted(self.0.flush())
    }
}

/// What [`write`] wrote: every row of the result, and for `--format table` how many of them
/// it showed when it showed fewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub rows: u64,
    pub shown: Option<u64>,
}

/// Writes the rows of `running` to `out` as `format`, batch by batch as they come: memory stays
/// that of a batch, whatever the result's size. `--format table` aligns its columns to the
/// widest value, so it holds what it shows: at most `max_rows` rows (`None`: all), written as
/// soon as there are more; the rest are counted, not shown.
pub async fn write(running: &mut Running, origin: &str, format: Format, max_rows: Option<u64>, out: &mut (dyn Write + Send)) -> Result<Written, QueryError> {
    let failed = |e: &dyn std::fmt::Display| QueryError::Output(e.to_string());
    let schema = running.rows.schema();
    let mut rows = 0;
    macro_rules! next {
        () => {
            running.rows.try_next().await.map_err(|e| sql_error(origin, e))?.inspect(|batch| rows += batch.num_rows() as u64)
        };
    }
    // A statement without columns (CREATE VIEW …) writes nothing.
    if schema.fields().is_empty() {
        while next!().is_some() {}
        return Ok(Written { rows, shown: None });
    }
    match format {
        Format::Table => {
            let mut held = Vec::new();
            let mut shown = None;
            while let Some(batch) = next!() {
                if shown.is_some() {
                    continue;
                }
                held.push(batch);
                if max_rows.is_some_and(|max| rows > max) {
                    let max = max_rows.expect("a cap");
                    show(&schema, &first_rows(&held, max as usize), out)?;
                    held = Vec::new();
                    shown = Some(max);
                }
            }
            if shown.is_none() {
                show(&schema, &held, out)?;
            }
            return Ok(Written { rows, shown });
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(out);
            // The header row even when no row follows.
            writer.write(&RecordBatch::new_empty(schema.clone())).map_err(|e| failed(&e))?;
            while let Some(batch) = next!() {
                writer.write(&batch).map_err(|e| failed(&e))?;
            }
        }
        Format::Json | Format::Ndjson => {
            let (mut array, mut lines) = match format {
                Format::Json => (Some(arrow::json::ArrayWriter::new(&mut *out)), None),
                _ => (None, Some(arrow::json::LineDelimitedWriter::new(&mut *out))),
            };
            while let Some(batch) = next!() {
                match (&mut array, &mut lines) {
                    (Some(writer), _) => writer.write(&batch),
                    (_, Some(writer)) => writer.write(&batch),
                    _ => unreachable!("one writer"),
                }
                .map_err(|e| failed(&e))?;
            }
            match (array, lines) {
                (Some(mut writer), _) => writer.finish(),
                (_, Some(mut writer)) => writer.finish(),
                _ => unreachable!("one writer"),
            }
            .map_err(|e| failed(&e))?;
        }
        Format::Parquet => {
            let mut writer = parquet::arrow::ArrowWriter::try_new(out, schema.clone(), None).map_err(|e| failed(&e))?;
            while let Some(batch) = next!() {
                writer.write(&batch).map_err(|e| failed(&e))?;
            }
            writer.close().map_err(|e| failed(&e))?;
        }
    }
    Ok(Written { rows, shown: None })
}

/// The aligned table of `batches` (its header alone when there are none).
fn show(schema: &SchemaRef, batches: &[RecordBatch], out: &mut (dyn Write + Send)) -> Result<(), QueryError> {
    let failed = |e: &dyn std::fmt::Display| QueryError::Output(e.to_string());
    writeln!(out, "{}", pretty_format_batches_with_schema(schema.clone(), batches).map_err(|e| failed(&e))?).map_err(|e| failed(&e))
}

/// The first `n` rows of `batches`.
fn first_rows(batches: &[RecordBatch], n: usize) -> Vec<RecordBatch> {
    let mut left = n;
    let mut first = Vec::new();
    for batch in batches {
        if left == 0 {
            break;
        }
        let take = batch.num_rows().min(left);
        first.push(batch.slice(0, take));
        left -= take;
    }
    first
}

/// The line after a table cut short: how many rows it showed, of how many, and how to see all.
pub fn cut_notice(written: Written) -> Option<String> {
    let shown = written.shown?;
    Some(format!(
        "showing the first {shown} of {} rows: --max-rows N shows more (0: all of them), --format csv or --output FILE writes every row",
        written.rows
    ))
}

/// The line after a statement, in the manner of Athena's "Data scanned": what it read of the
/// lake's table (files and bytes, of the version's total), the rows it returned, its time.
pub fn summary(outcome: &Outcome, table: &str, total_files: u64, total_bytes: u64) -> String {
    let Scanned { bytes, files } = outcome.scanned;
    let share = if total_bytes == 0 { 0.0 } else { bytes as f64 * 100.0 / total_bytes as f64 };
    format!(
        "{} row{} in {:.2} s; data scanned from {table}: {} of {} ({share:.2}%), {files} of {total_files} files",
        outcome.rows,
        if outcome.rows == 1 { "" } else { "s" },
        outcome.elapsed.as_secs_f64(),
        human_bytes(bytes),
        human_bytes(total_bytes),
    )
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(674_410_000), "643.2 MiB");
    }
}
