//! Results as a person or a program wants them: an aligned table on a terminal, CSV (with a
//! header row), JSON, or Parquet.

use std::io::Write;

use deltalake_core::datafusion::arrow::record_batch::RecordBatch;
use deltalake_core::datafusion::arrow::util::pretty::pretty_format_batches;

use crate::counting::Scanned;
use crate::error::QueryError;
use crate::session::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned table (the default on a terminal).
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
/// the query then ends quietly with status 0 instead of reporting the failed write.
pub struct Stdout(std::io::StdoutLock<'static>);

static READER_GONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Stdout {
    pub fn new() -> Stdout {
        Stdout(std::io::stdout().lock())
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

/// Writes `batches` to `out` as `format`.
pub fn write(batches: &[RecordBatch], format: Format, out: &mut dyn Write) -> Result<(), QueryError> {
    let failed = |e: &dyn std::fmt::Display| QueryError::Output(e.to_string());
    match format {
        Format::Table => {
            if batches.iter().all(|b| b.num_columns() == 0) {
                return Ok(());
            }
            writeln!(out, "{}", pretty_format_batches(batches).map_err(|e| failed(&e))?).map_err(|e| failed(&e))?;
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(out);
            for batch in batches {
                writer.write(batch).map_err(|e| failed(&e))?;
            }
        }
        Format::Json => write_json(arrow::json::ArrayWriter::new(out), batches).map_err(|e| failed(&e))?,
        Format::Ndjson => write_json(arrow::json::LineDelimitedWriter::new(out), batches).map_err(|e| failed(&e))?,
        Format::Parquet => {
            let Some(first) = batches.first() else { return Ok(()) };
            // Encoded in memory: the writer needs a `Send` sink, and results are small.
            let mut writer = parquet::arrow::ArrowWriter::try_new(Vec::new(), first.schema(), None).map_err(|e| failed(&e))?;
            for batch in batches {
                writer.write(batch).map_err(|e| failed(&e))?;
            }
            out.write_all(&writer.into_inner().map_err(|e| failed(&e))?).map_err(|e| failed(&e))?;
        }
    }
    Ok(())
}

/// Writes `batches` with a JSON writer of either kind (one array, or a line per row).
fn write_json<W: Write, F: arrow::json::writer::JsonFormat>(
    mut writer: arrow::json::Writer<W, F>,
    batches: &[RecordBatch],
) -> Result<(), arrow::error::ArrowError> {
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()
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
