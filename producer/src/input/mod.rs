//! Input files into events: format detection, file identity, and the reading thread.
//!
//! Parsing and encoding are CPU work, so they run on a plain thread that hands batches of
//! events to the async sending side through a bounded channel (back-pressure: a slow sink
//! slows the reader instead of growing memory).

mod csv;
mod json;
mod rejects;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kappa_common::event::event_id;
use kappa_common::flatten::FlattenOptions;
use kappa_common::schema::{NullTokens, TableSchema};

pub use self::csv::CsvInput;
pub use self::json::JsonInput;
pub use self::rejects::{Reject, RejectError, RejectRatio, RejectWriter};
use crate::encode::RowEncoder;
use crate::pace::EventTimeParser;
use crate::stats::Stats;

/// The input formats the producer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// A JSON array of objects, or one object (use --explode to turn its array into rows).
    Json,
}

impl InputFormat {
    /// Chooses the format from a file name's extension: `.csv`, `.tsv` and `.txt` are CSV,
    /// `.ndjson` and `.jsonl` NDJSON, `.json` JSON; a `.gz`, `.zst` or `.zstd` after it is
    /// looked through (the content is decompressed whatever the name says).
    pub fn from_path(path: &Path) -> Option<InputFormat> {
        match plain_extension(path)?.as_str() {
            "csv" | "tsv" | "txt" => Some(InputFormat::Csv),
            "ndjson" | "jsonl" => Some(InputFormat::Ndjson),
            "json" => Some(InputFormat::Json),
            _ => None,
        }
    }
}

/// A file's extension in lowercase, past a compression suffix: `sales.tsv.gz` gives `tsv`.
pub fn plain_extension(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let name = [".gz", ".zst", ".zstd"].iter().find_map(|suffix| name.strip_suffix(suffix)).unwrap_or(&name);
    Path::new(name).extension()?.to_str().map(str::to_string)
}

/// Exported files are usually compressed: gzip and zstd content is read through a decoder,
/// told by its magic bytes rather than by the file name.
fn decompressed(raw: Box<dyn Read + Send>) -> std::io::Result<Box<dyn Read + Send>> {
    let mut reader = BufReader::with_capacity(1 << 16, raw);
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Ok(Box::new(zstd::stream::read::Decoder::with_buffer(reader)?));
    }
    Ok(Box::new(reader))
}

/// One `--input`: a file or standard input (`-`), with its resolved format.
#[derive(Debug, Clone)]
pub struct InputSpec {
    /// `None` is standard input.
    pub path: Option<PathBuf>,
    pub format: InputFormat,
    /// CSV field delimiter: `--delimiter`, else tab for `.tsv` files, else comma.
    pub delimiter: u8,
}

impl InputSpec {
    pub fn display(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "<stdin>".to_string(),
        }
    }

    /// The input's content, decompressed if it is gzip or zstd.
    pub fn open(&self) -> std::io::Result<Box<dyn Read + Send>> {
        decompressed(match &self.path {
            Some(p) => Box::new(std::fs::File::open(p)?),
            None => Box::new(std::io::stdin()),
        })
    }

    /// Checks what can be checked before any row is sent: that the input opens and
    /// decompresses, a CSV's header row, that a JSON document begins as an array or an object.
    /// Standard input is not checked here: it cannot be read twice.
    pub fn check(&self) -> Result<(), InputError> {
        if self.path.is_none() {
            return Ok(());
        }
        match self.format {
            InputFormat::Csv => CsvInput::check(self),
            InputFormat::Json => json::check_document(self),
            InputFormat::Ndjson => {
                let mut first = [0u8; 1];
                self.open().and_then(|mut r| r.read(&mut first)).map(|_| ()).map_err(|source| InputError::Io { input: self.display(), source })
            }
        }
    }
}

/// How much of an input is read ahead (for sampling, and for the identity of standard input).
const IDENTITY_SAMPLE: usize = 1 << 20;

/// A stable identity for an input's content: 16 hex digits of xxh3 over the whole file (about
/// 0.1 s per GB from the page cache) and its length. The same file re-sent — after a crash, or
/// from another path — gets the same event identities, so the consumer keeps each row once,
/// and two files that differ anywhere get different ones. Standard input cannot be read twice:
/// its identity covers its first MiB only, so give it a `--source-id`.
pub fn content_identity(spec: &InputSpec, head: &[u8]) -> std::io::Result<String> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    match &spec.path {
        Some(path) => {
            let mut file = std::fs::File::open(path)?;
            let mut buffer = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                let n = file.read(&mut buffer)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
                total += n as u64;
            }
            hasher.update(&total.to_le_bytes());
        }
        None => {
            hasher.update(head);
            hasher.update(&u64::MAX.to_le_bytes());
        }
    }
    Ok(format!("{:016x}", hasher.digest()))
}

/// Reads the first MiB of an input, for its identity and for sampling, and returns a reader
/// that still yields the input from its first byte.
pub fn open_with_head(spec: &InputSpec) -> std::io::Result<(Vec<u8>, Box<dyn Read + Send>)> {
    let mut reader = BufReader::with_capacity(1 << 20, spec.open()?);
    let mut head = Vec::with_capacity(IDENTITY_SAMPLE);
    (&mut reader).take(IDENTITY_SAMPLE as u64).read_to_end(&mut head)?;
    let rest = std::io::Cursor::new(head.clone()).chain(reader);
    Ok((head, Box::new(rest)))
}

/// One event ready for a sink.
#[derive(Debug, Clone)]
pub struct Event {
    /// The partition key: the `--partition-key` column's value, else the event identity.
    pub key: String,
    /// The key is the event identity (no `--partition-key` value): sinks that store the
    /// payload anyway need not store the key too.
    pub key_is_identity: bool,
    /// The JSON object, without a trailing newline.
    pub payload: Vec<u8>,
    /// Event time in ms since the epoch, when `--event-time` is set (for `--speedup`).
    pub event_time_ms: Option<i64>,
}

/// What every input reader needs to turn rows into events.
pub struct RowContext {
    pub encoder: RowEncoder,
    pub schema: TableSchema,
    pub null_tokens: NullTokens,
    pub flatten: FlattenOptions,
    pub partition_key: Option<String>,
    pub event_time: Option<(String, EventTimeParser)>,
    pub source_id_override: Option<String>,
    pub stats: Arc<Stats>,
    /// `--max-reject-ratio` over the first rows (see [`RejectRatio`]).
    pub reject_ratio: std::sync::Mutex<RejectRatio>,
}

/// Where a row came from, for its identity and for reject records.
#[derive(Debug, Clone, Copy)]
pub struct RowOrigin {
    pub pass: u64,
    /// Zero-based index of the output row within the input.
    pub row: u64,
    /// One-based line in the input where the row starts (0 when unknown).
    pub line: u64,
}

impl RowContext {
    pub fn event_id(&self, source: &str, origin: RowOrigin) -> String {
        event_id(self.source_id_override.as_deref().unwrap_or(source), origin.pass, origin.row)
    }
}

/// Sends events downstream in batches and stops early once `--limit` is reached.
pub struct Batcher {
    sender: tokio::sync::mpsc::Sender<Vec<Event>>,
    batch: Vec<Event>,
    batch_size: usize,
    remaining: Option<u64>,
    shutdown: kappa_common::shutdown::Shutdown,
}

/// The receiving side hung up (the sink failed); readers stop quietly, the sink reports why.
#[derive(Debug)]
pub struct Stopped;

impl Batcher {
    pub fn new(sender: tokio::sync::mpsc::Sender<Vec<Event>>, batch_size: usize, limit: Option<u64>, shutdown: kappa_common::shutdown::Shutdown) -> Batcher {
        Batcher { sender, batch: Vec::with_capacity(batch_size), batch_size, remaining: limit, shutdown }
    }

    /// True once `--limit` rows were taken, or reading was interrupted.
    pub fn done(&self) -> bool {
        self.remaining == Some(0) || self.shutdown.is_requested()
    }

    /// Counts a row against `--limit` (rejected rows count too: the limit is on rows read);
    /// false when no more rows should be read.
    pub fn take_row(&mut self) -> bool {
        if self.shutdown.is_requested() {
            return false;
        }
        match &mut self.remaining {
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
            None => true,
        }
    }

    pub fn push(&mut self, event: Event) -> Result<(), Stopped> {
        self.batch.push(event);
        if self.batch.len() >= self.batch_size { self.flush() } else { Ok(()) }
    }

    pub fn flush(&mut self) -> Result<(), Stopped> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.batch_size));
        self.sender.blocking_send(batch).map_err(|_| Stopped)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {input}: {source}")]
    Io { input: String, source: std::io::Error },
    #[error("{input}: {reason}")]
    Invalid { input: String, reason: String },
    #[error(transparent)]
    Rejects(#[from] RejectError),
}

/// Reads every input, `passes` times, into the batcher. Runs on its own thread. Whatever ends
/// the reading, the rows already read are handed on: the summary must account for each one.
pub fn read_all(
    inputs: &[InputSpec],
    first_csv: Option<CsvInput>,
    passes: u64,
    context: &RowContext,
    rejects: &RejectWriter,
    batcher: &mut Batcher,
) -> Result<(), InputError> {
    let result = read_inputs(inputs, first_csv, passes, context, rejects, batcher);
    // An input shorter than the ratio's sample is judged on all of it, before its last batch
    // goes: a run that rejects every row of a small file does not end in success.
    let result = result.and_then(|()| Ok(context.reject_ratio.lock().expect("reject ratio").finish(rejects)?));
    // A closed channel means the sink already failed; it reports the error.
    let _ = batcher.flush();
    match result {
        Ok(()) | Err(ReadStop::Stopped) => Ok(()),
        Err(ReadStop::Failed(e)) => Err(e),
    }
}

fn read_inputs(
    inputs: &[InputSpec],
    mut first_csv: Option<CsvInput>,
    passes: u64,
    context: &RowContext,
    rejects: &RejectWriter,
    batcher: &mut Batcher,
) -> Result<(), ReadStop> {
    for pass in 0..passes {
        for (index, spec) in inputs.iter().enumerate() {
            if batcher.done() {
                return Ok(());
            }
            match spec.format {
                InputFormat::Csv => {
                    let input = match first_csv.take().filter(|_| index == 0 && pass == 0) {
                        Some(input) => input,
                        None => CsvInput::open(spec)?,
                    };
                    input.read(pass, context, rejects, batcher)?
                }
                InputFormat::Ndjson | InputFormat::Json => JsonInput::open(spec)?.read(pass, context, rejects, batcher)?,
            }
        }
    }
    Ok(())
}

/// Why reading an input ended early.
pub enum ReadStop {
    Stopped,
    Failed(InputError),
}

impl From<Stopped> for ReadStop {
    fn from(_: Stopped) -> Self {
        ReadStop::Stopped
    }
}

impl From<InputError> for ReadStop {
    fn from(e: InputError) -> Self {
        ReadStop::Failed(e)
    }
}

impl From<RejectError> for ReadStop {
    fn from(e: RejectError) -> Self {
        ReadStop::Failed(e.into())
    }
}

/// Shared by the CSV and JSON readers: an encoded row becomes an event, or a reject.
pub fn emit(context: &RowContext, batcher: &mut Batcher, rejects: &RejectWriter, encoded: Result<Event, Reject>) -> Result<(), ReadStop> {
    context.stats.add_rows_read(1);
    let mut ratio = context.reject_ratio.lock().expect("reject ratio");
    match encoded {
        Ok(event) => {
            ratio.row(None, rejects)?;
            batcher.push(event)?
        }
        Err(reject) => {
            rejects.write(&reject)?;
            context.stats.add_rejected(1);
            ratio.row(Some(&reject.reason), rejects)?;
        }
    }
    Ok(())
}
