//! kappa-producer: rows from CSV and JSON files, as events, onto a log.
//!
//! ```text
//!  reading thread                         async task
//!  ──────────────                         ──────────
//!  parse → flatten → type → encode ─batches─► pace → sink (batch to API limits, retry failures)
//!        └─► reject file (bad rows)                 └─► reject file (undeliverable events)
//! ```

pub mod config;
pub mod encode;
pub mod input;
pub mod pace;
pub mod program;
pub mod sink;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use kappa_common::aws::AwsContext;
use kappa_common::endpoint::Endpoint;
use kappa_common::schema::TableSchema;
use kappa_common::shutdown::Shutdown;

use crate::config::ProducerConfig;
use crate::encode::RowEncoder;
use crate::input::{Batcher, CsvInput, InputError, InputFormat, JsonInput, RejectWriter, RowContext};
use crate::pace::{EventTimeParser, Pacer};
use crate::sink::{Sink, SinkContext, SinkError};
use crate::stats::{Stats, Summary};

/// Events handed from the reading thread to the sender in one channel message.
const BATCH_EVENTS: usize = 1024;
/// Batches in flight between the two: enough to ride out a slow API call, small enough to
/// bound memory (about 8k events).
const CHANNEL_BATCHES: usize = 8;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProducerError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Aws(#[from] kappa_common::aws::AwsConfigError),
    #[error("schema: {0}")]
    Schema(#[from] kappa_common::schema::SchemaError),
    #[error("interrupted")]
    Interrupted,
}

impl ProducerError {
    /// The process exit status for this error (see `--help`): 2 for a schema file that cannot
    /// be used (misconfiguration, as a bad flag), 3 for more rejected rows than --max-errors.
    pub fn exit_code(&self) -> i32 {
        match self {
            ProducerError::Input(InputError::Rejects(input::RejectError::TooMany { .. } | input::RejectError::TooManyShare { .. })) => 3,
            ProducerError::Sink(SinkError::Rejects(input::RejectError::TooMany { .. })) => 3,
            ProducerError::Schema(_) => 2,
            ProducerError::Interrupted => 130,
            _ => 1,
        }
    }
}

/// The outcome of a run: its summary, and the error that ended it early, if any.
pub struct Outcome {
    pub summary: Summary,
    pub error: Option<ProducerError>,
}

/// Resolves the schema: the schema file, else inferred from the first input.
fn resolve_schema(config: &ProducerConfig, first_csv: &mut Option<CsvInput>) -> Result<TableSchema, ProducerError> {
    if let Some(path) = &config.schema_file {
        return Ok(TableSchema::read_file(path)?);
    }
    let first = &config.inputs[0];
    let schema = match first.format {
        InputFormat::Csv => {
            let mut input = CsvInput::open(first)?;
            let schema = input.infer_schema(config.infer_rows, &config.null_tokens)?;
            *first_csv = Some(input);
            schema
        }
        InputFormat::Ndjson | InputFormat::Json => {
            if first.path.is_none() {
                // Standard input cannot be read twice; sample and keep it like CSV does.
                return Err(InputError::Invalid {
                    input: first.display(),
                    reason: "a JSON schema cannot be inferred from standard input; pass --schema".into(),
                }
                .into());
            }
            JsonInput::open(first)?.infer_schema(config.infer_rows, &config.flatten)?
        }
    };
    tracing::info!(columns = %schema.fields.iter().map(|c| format!("{}:{}", c.name, c.column_type)).collect::<Vec<_>>().join(","), "schema inferred from {}", first.display());
    Ok(schema)
}

/// Runs the producer to the end of its inputs (or `--limit`, or `shutdown`: then what was read
/// is sent, and the run ends as interrupted).
pub async fn run(config: ProducerConfig, shutdown: Shutdown) -> Result<Outcome, ProducerError> {
    let stats = Arc::new(Stats::default());
    let rejects = Arc::new(RejectWriter::new(config.rejects.clone(), config.max_errors));

    // A bad later input must fail the run before the first event of an earlier one is sent.
    for input in &config.inputs {
        input.check()?;
    }
    let mut first_csv = None;
    let schema = resolve_schema(&config, &mut first_csv)?;
    if let Some(path) = &config.write_schema {
        schema.write_file(path)?;
    }
    for column in [&config.partition_key, &config.event_time.as_ref().map(|(c, _)| c.clone())].into_iter().flatten() {
        if schema.index_of(column).is_none() && config.schema_file.is_some() {
            tracing::warn!(column, "column is not in the schema; rows lacking it will be rejected or keyed by identity");
        }
    }

    if config.inputs.iter().any(|i| i.path.is_none()) && config.source_id.is_none() {
        tracing::warn!("standard input's identity covers only its first MiB: pass --source-id so a re-send deduplicates reliably");
    }
    let aws = match config.destination {
        Endpoint::Log(_) => None,
        _ => Some(AwsContext::load(&config.aws).await?),
    };
    let sink_context = SinkContext { stats: stats.clone(), rejects: rejects.clone(), retry: config.retry.clone() };
    let mut sink = Sink::open(&config.destination, aws.as_ref(), &config.sink, sink_context).await?;
    tracing::info!(to = %config.destination, inputs = config.inputs.len(), "sending");

    let mut encoder = RowEncoder::new(&schema, config.null_tokens.clone());
    if let Sink::Log(log) = &mut sink {
        // The embedded log stores events as their values in a shape kept beside it (see
        // kappa_common::shaped): the member names were ~45% of a wide log's bytes.
        let shape = RowEncoder::shape_of(&schema);
        log.use_shape(&shape)?;
        encoder = encoder.shaped(shape);
    }
    let context = RowContext {
        encoder,
        schema,
        null_tokens: config.null_tokens.clone(),
        flatten: config.flatten.clone(),
        partition_key: config.partition_key.clone(),
        event_time: config.event_time.clone().map(|(c, f)| (c, EventTimeParser(f))),
        source_id_override: config.source_id.clone(),
        stats: stats.clone(),
        reject_ratio: std::sync::Mutex::new(input::RejectRatio::new(config.max_reject_ratio, config.reject_window)),
    };
    let (sender, mut receiver) = tokio::sync::mpsc::channel(CHANNEL_BATCHES);
    let reader_rejects = rejects.clone();
    let reader_shutdown = shutdown.clone();
    let (inputs, passes, limit) = (config.inputs.clone(), config.passes, config.limit);
    let reader = std::thread::Builder::new()
        .name("kappa-reader".into())
        .spawn(move || {
            let mut batcher = Batcher::new(sender, BATCH_EVENTS, limit, reader_shutdown);
            input::read_all(&inputs, first_csv, passes, &context, &reader_rejects, &mut batcher)
        })
        .expect("spawn the reading thread");

    let progress = tokio::spawn(stats::report_progress(stats.clone(), config.progress_interval, config.limit));
    let mut pacer = Pacer::new(config.rate, config.speedup);
    let mut error: Option<ProducerError> = None;
    loop {
        let batch = if shutdown.is_requested() {
            // A reader blocked on standard input would never close the channel: stop
            // waiting once nothing more comes.
            tokio::time::timeout(Duration::from_secs(2), receiver.recv()).await.unwrap_or(None)
        } else {
            receiver.recv().await
        };
        let Some(batch) = batch else { break };
        if let Err(e) = send_batch(&mut sink, &mut pacer, batch, &shutdown).await {
            error = Some(e.into());
            break;
        }
    }
    if shutdown.is_requested() {
        error.get_or_insert(ProducerError::Interrupted);
    }
    // Closing the channel stops the reader if it is still going (sink failure).
    drop(receiver);
    if !shutdown.is_requested() || reader.is_finished() {
        match tokio::task::spawn_blocking(move || reader.join()).await.expect("join task") {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error.get_or_insert(e.into());
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    if let Err(e) = sink.finish().await {
        error.get_or_insert(e.into());
    }
    progress.abort();
    if let Err(e) = rejects.flush() {
        error.get_or_insert(InputError::from(e).into());
    }
    let rejects_file = (rejects.count() > 0).then(|| rejects.path().display().to_string());
    let summary = stats.summary(&config.destination.to_string(), rejects_file);
    if let Some(path) = &config.summary_json
        && let Err(e) = std::fs::write(path, serde_json::to_vec_pretty(&summary).expect("summary serializes"))
    {
        tracing::error!(path = %path.display(), error = %e, "cannot write --summary-json");
    }
    Ok(Outcome { summary, error })
}

async fn send_batch(sink: &mut Sink, pacer: &mut Pacer, batch: Vec<input::Event>, shutdown: &Shutdown) -> Result<(), SinkError> {
    if !pacer.is_active() || shutdown.is_requested() {
        for event in batch {
            sink.push(event).await?;
        }
        return Ok(());
    }
    for event in batch {
        let delay = pacer.delay_for(event.event_time_ms);
        if !delay.is_zero() && !shutdown.is_requested() {
            // Send what is due before waiting, or paced events would sit in a half-full batch.
            sink.flush().await?;
            shutdown.unless_requested(tokio::time::sleep(delay)).await;
        }
        shutdown.unless_requested(pacer.admit(1)).await;
        sink.push(event).await?;
    }
    // A rate-limited stream must not hold a partial batch until the next one fills.
    sink.flush().await
}
