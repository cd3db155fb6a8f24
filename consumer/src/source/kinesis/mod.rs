//! Amazon Kinesis Data Streams as a source: every shard, a reader task per shard, resharding
//! handled.
//!
//! - A coordinator lists the shards (`ListShards`) at start, every `--shard-refresh`, and as soon
//!   as a reader reaches the end of a closed shard. A shard is read only once all its parents
//!   are drained (or have expired from the stream), so a key's records stay in order across a
//!   split or a merge.
//! - A reader resumes `AFTER_SEQUENCE_NUMBER` of the table's resume position (always a record
//!   it really read) — `AT_SEQUENCE_NUMBER` of its record when the position lies inside a
//!   record holding several events, skipping the events up to it — else where `--start` says
//!   (`TRIM_HORIZON` by default). An expired iterator is renewed after the last event read;
//!   throttling and transient errors back off exponentially (100 ms to 5 s).
//! - Each record's data becomes events as [`payload`] says: KPL aggregates, compressed
//!   payloads, CloudWatch Logs batches; a record that cannot be read is delivered as one event
//!   carrying the reason, which the pipeline quarantines whole.
//! - The coordinator announces a shard (its name takes the next shard index) through the same
//!   channel, before its reader starts, so the pipeline knows the name before any event.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::error::SdkError;
use aws_sdk_kinesis::operation::get_records::GetRecordsError;
use aws_sdk_kinesis::types::ShardIteratorType;
use kappa_common::aws::describe_sdk_error;
use kappa_common::event::SequenceNumber;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use self::reading::Reading;
use super::{Chunk, ChunkReceiver, SourceError};
use crate::event::SourceEvent;
use crate::settings::{KinesisRead, StartPosition};

mod efo;
pub mod payload;
mod reading;

/// Records per GetRecords call (the API's maximum).
const RECORDS_PER_CALL: i32 = 10_000;
/// AWS allows 5 GetRecords calls per second per shard.
const MIN_CALL_SPACING: Duration = Duration::from_millis(200);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Consecutive failures of one call (other than throttling) before the source gives up.
const MAX_FAILURES: u32 = 10;

/// A bounded read, for replay: where shards without a resume position start, and the arrival
/// time at which reading stops. A shard also ends once it is caught up (an empty read with
/// nothing behind); the source is finished when every shard ended.
#[derive(Debug, Clone, Default)]
pub struct ReadBounds {
    /// `AT_TIMESTAMP` (ms); `None` is `TRIM_HORIZON`.
    pub start_ms: Option<i64>,
    /// Records that arrived at or after this time (ms) are not read.
    pub until_ms: Option<i64>,
    /// With a map: per shard, the last position to read (a live consumer's committed position
    /// a replay catches up to); shards not in it read nothing.
    pub until_positions: Option<Arc<BTreeMap<String, SequenceNumber>>>,
}

impl ReadBounds {
    /// True if a record of `shard` at `seq` lies past the bound.
    fn past_position(&self, shard: &str, seq: SequenceNumber) -> bool {
        self.until_positions.as_ref().is_some_and(|ends| ends.get(shard).is_none_or(|end| seq > *end))
    }

    /// True if `shard` has read everything up to its bound position.
    fn reached_position(&self, shard: &str, last: Option<SequenceNumber>) -> bool {
        self.until_positions.as_ref().is_some_and(|ends| ends.get(shard).is_none_or(|end| last.is_some_and(|last| last >= *end)))
    }
}

/// Why a shard reader ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// A closed shard read to its end: its children may start.
    Drained,
    /// A bounded read reached its end on this shard.
    Bounded,
}

pub struct KinesisSource {
    chunks: ChunkReceiver,
    stop: Arc<AtomicBool>,
    reading: Arc<Mutex<Reading>>,
    coordinator: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Clone)]
struct Shared {
    client: Client,
    stream: String,
    chunks: mpsc::Sender<Result<Chunk, SourceError>>,
    stop: Arc<AtomicBool>,
    reading: Arc<Mutex<Reading>>,
    read: KinesisRead,
    /// `--efo`: the registered stream consumer's ARN; shards are read by subscriptions.
    consumer_arn: Option<String>,
    bounds: Option<ReadBounds>,
    /// Under leases: the shards this worker holds, the only ones read (the lease protocol
    /// orders children after their parents).
    only: Option<Arc<std::collections::BTreeSet<String>>>,
}

impl Shared {
    fn error(&self, message: String) -> SourceError {
        SourceError::Kinesis { stream: self.stream.clone(), message }
    }

    /// Records what a read of `shard`, asked for at `asked`, said: how far behind it is, and
    /// whether it caught up.
    fn progressed(&self, shard: &str, asked: Instant, millis_behind: Option<i64>, caught_up: bool) {
        self.reading.lock().expect("reading lock").progressed(shard, asked, millis_behind, caught_up);
    }
}

impl KinesisSource {
    /// Checks the stream exists, then starts reading. `resume_after` holds the table's resume
    /// position per shard id; `known` are the shards the pipeline has already (by index: a
    /// replay catching up goes on with the shard indices of its first read), whose indices
    /// they keep, unannounced.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        runtime: Handle,
        client: Client,
        stream: String,
        resume_after: BTreeMap<String, SequenceNumber>,
        read: KinesisRead,
        bounds: Option<ReadBounds>,
        known: Vec<String>,
        only: Option<std::collections::BTreeSet<String>>,
    ) -> Result<KinesisSource, SourceError> {
        let (sender, chunks) = mpsc::channel(4);
        let stop = Arc::new(AtomicBool::new(false));
        let reading = Arc::new(Mutex::new(Reading::new()));
        let only = only.map(Arc::new);
        let shard_refresh = read.shard_refresh;
        // Fail at start, with the reason, if the stream consumer cannot be registered.
        let consumer_arn = match &read.efo {
            Some(name) => {
                Some(runtime.block_on(efo::register(&client, &stream, name)).map_err(|message| SourceError::Kinesis { stream: stream.clone(), message })?)
            }
            None => None,
        };
        let shared = Shared { client, stream, chunks: sender, stop: stop.clone(), reading: reading.clone(), read, consumer_arn, bounds, only };
        // Fail at start, with the reason, if the stream is missing or unreachable.
        let shards = runtime.block_on(list_shards(&shared))?;
        tracing::info!(stream = %shared.stream, shards = shards.len(), "reading Kinesis stream");
        let coordinator = runtime.spawn(coordinate(shared, shards, resume_after, shard_refresh, known));
        Ok(KinesisSource { chunks: ChunkReceiver::new(runtime, chunks), stop, reading, coordinator: Some(coordinator) })
    }

    pub fn next_chunk(&mut self, timeout: Duration) -> Result<Option<Chunk>, SourceError> {
        self.chunks.next(timeout)
    }

    pub fn finished(&self) -> bool {
        self.chunks.finished()
    }

    /// True once every shard being read has been caught up at least once, with no shard
    /// listing owed.
    pub fn caught_up(&self) -> bool {
        self.reading.lock().expect("reading lock").caught_up()
    }

    /// The instant up to which every shard being read has shown that nothing more had arrived:
    /// the earliest, over the shards, of its last read that came back empty with nothing
    /// behind. A shard whose reads fail or are refused (throttling, a subscription still held
    /// elsewhere) holds it back, so `--until-idle` does not take such a shard for an idle one.
    pub fn quiet_until(&self) -> Option<Instant> {
        self.reading.lock().expect("reading lock").quiet_until(Instant::now())
    }

    /// True once a GetRecords call came back on every shard being read (each answer says how
    /// far behind the shard is): its iterator is taken, so a `--start latest` reads what comes.
    pub fn answered(&self) -> bool {
        self.reading.lock().expect("reading lock").answered()
    }

    /// The largest MillisBehindLatest among the shards being read.
    pub fn lag_millis(&self) -> u64 {
        self.reading.lock().expect("reading lock").lag_millis()
    }

    /// Per shard being read: MillisBehindLatest of its last read.
    pub fn shard_lags(&self) -> Vec<(String, u64)> {
        self.reading.lock().expect("reading lock").shard_lags()
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.chunks.close();
        if let Some(coordinator) = self.coordinator.take() {
            coordinator.abort();
        }
    }
}

impl Drop for KinesisSource {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A shard as `ListShards` describes it.
#[derive(Debug, Clone)]
struct ShardInfo {
    id: String,
    parents: Vec<String>,
    /// It has an ending sequence number: split or merged away, it takes no more records.
    closed: bool,
}

async fn list_shards(shared: &Shared) -> Result<Vec<ShardInfo>, SourceError> {
    list_stream(&shared.client, &shared.stream).await.map_err(|message| shared.error(message))
}

/// The stream's shards and their parents, for the lease protocol.
pub async fn list_stream_shards(client: &Client, stream: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    Ok(list_stream(client, stream).await?.into_iter().map(|s| (s.id, s.parents)).collect())
}

async fn list_stream(client: &Client, stream: &str) -> Result<Vec<ShardInfo>, String> {
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    let mut backoff = BACKOFF_FIRST;
    loop {
        // The API takes either the stream name or a continuation token, never both.
        let request = match &next_token {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        match request.send().await {
            Ok(page) => {
                for shard in page.shards() {
                    let parents = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()].into_iter().flatten().map(str::to_string).collect();
                    let closed = shard.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_some();
                    shards.push(ShardInfo { id: shard.shard_id().to_string(), parents, closed });
                }
                match page.next_token() {
                    Some(token) => next_token = Some(token.to_string()),
                    None => return Ok(shards),
                }
            }
            Err(e) if is_throttling(&e) && backoff < BACKOFF_MAX => {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(e) => return Err(format!("ListShards failed: {}", describe_sdk_error(&e))),
        }
    }
}

async fn drained(shared: &Shared, shard: &str, finished: &mpsc::UnboundedSender<(String, Ending)>) {
    // Under leases, said in band, after the shard's last events: the worker commits them, then
    // ends the lease so that the children may be taken.
    if shared.only.is_some() {
        let _ = shared.chunks.send(Ok(Chunk { drained: vec![shard.to_string()], ..Chunk::default() })).await;
    }
    shared.reading.lock().expect("reading lock").drained(shard);
    let _ = finished.send((shard.to_string(), Ending::Drained));
}

fn is_not_found<E: aws_sdk_kinesis::error::ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    matches!(err, SdkError::ServiceError(e) if e.err().code() == Some("ResourceNotFoundException"))
}

fn is_throttling<E: aws_sdk_kinesis::error::ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::ServiceError(e) => matches!(
            e.err().code(),
            Some("LimitExceededException" | "ProvisionedThroughputExceededException" | "KMSThrottlingException" | "ThrottlingException")
        ),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        _ => false,
    }
}

/// Starts readers as shards become readable; announces each shard before its reader runs.
async fn coordinate(
    shared: Shared,
    first_listing: Vec<ShardInfo>,
    resume_after: BTreeMap<String, SequenceNumber>,
    refresh: Duration,
    known_shards: Vec<String>,
) {
    let (finished_sender, mut finished) = mpsc::unbounded_channel::<(String, Ending)>();
    let mut indices: HashMap<String, u32> = known_shards.into_iter().enumerate().map(|(i, name)| (name, i as u32)).collect();
    let mut known: HashMap<String, ShardInfo> = HashMap::new();
    let mut started: HashMap<String, Option<Ending>> = HashMap::new(); // shard → how it ended
    // `--start latest` holds for the shards open at start; shards that appear later (children
    // of a reshard) began after it, and are read from their start.
    let at_start: std::collections::HashSet<String> = first_listing.iter().map(|s| s.id.clone()).collect();
    let mut listing = Some(first_listing);
    // Listings owed since the last one: the first, and one per drained shard reported since.
    let mut owed = 1;
    // Readers end with the coordinator (which `stop` aborts).
    let mut readers = tokio::task::JoinSet::new();
    loop {
        let (shards, listed) = match listing.take() {
            Some(shards) => (shards, true),
            // Only the first listing is fatal; a failed refresh is retried at the next one.
            None => match list_shards(&shared).await {
                Ok(shards) => (shards, true),
                Err(e) => {
                    tracing::warn!("refreshing the shard list failed ({e}); retrying in {refresh:?}");
                    (Vec::new(), false)
                }
            },
        };
        for shard in shards {
            // A shard seen open before may be closed now.
            known.insert(shard.id.clone(), shard);
        }
        // Parents first: a shard is readable once every parent it names is drained, or is no
        // longer listed (expired past the retention period).
        // Under leases, the held shards: a child is held only once its parents' leases ended.
        let mut readable: Vec<&ShardInfo> = known
            .values()
            .filter(|s| !started.contains_key(&s.id))
            .filter(|s| match &shared.only {
                Some(only) => only.contains(&s.id),
                None => s.parents.iter().all(|p| started.get(p).map_or(!known.contains_key(p), |e| *e == Some(Ending::Drained))),
            })
            .collect();
        readable.sort_by(|a, b| a.id.cmp(&b.id));
        let readable: Vec<ShardInfo> = readable.into_iter().cloned().collect();
        if shared.bounds.is_some() && readable.is_empty() && started.values().all(Option::is_some) {
            tracing::info!(shards = started.len(), "every shard read to the end of the replay");
            return;
        }
        for shard in readable {
            let index = match indices.get(&shard.id) {
                Some(index) => *index,
                None => {
                    let announce = Chunk { new_shards: vec![shard.id.clone()], ..Chunk::default() };
                    if shared.chunks.send(Ok(announce)).await.is_err() {
                        return;
                    }
                    let index = indices.len() as u32;
                    indices.insert(shard.id.clone(), index);
                    index
                }
            };
            started.insert(shard.id.clone(), None);
            shared.reading.lock().expect("reading lock").started(&shard.id);
            let resume = resume_after.get(&shard.id).copied();
            tracing::debug!(shard = %shard.id, index, ?resume, "starting shard reader");
            let start = match shared.read.start {
                StartPosition::Latest if !at_start.contains(&shard.id) => StartPosition::TrimHorizon,
                start => start,
            };
            let reader = Reader { shard: shard.id.clone(), index, closed: shard.closed, start };
            match shared.consumer_arn.clone() {
                Some(arn) => readers.spawn(efo::read_shard(shared.clone(), reader, arn, resume, finished_sender.clone())),
                None => readers.spawn(read_shard(shared.clone(), reader, resume, finished_sender.clone())),
            };
        }
        if listed {
            // The drained shards' children, if readable, are now among the shards being read.
            shared.reading.lock().expect("reading lock").listed(owed);
            owed = 0;
        }
        tokio::select! {
            Some((shard, ending)) = finished.recv() => {
                if ending == Ending::Drained {
                    tracing::info!(shard = %shard, "shard drained (closed by resharding); looking for its children");
                    owed += 1;
                }
                started.insert(shard, Some(ending));
                while let Ok((more, ending)) = finished.try_recv() {
                    owed += usize::from(ending == Ending::Drained);
                    started.insert(more, Some(ending));
                }
            }
            _ = tokio::time::sleep(refresh) => {}
        }
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
    }
}

/// Where a read of a shard starts (an iterator, or a subscription): after the last event read
/// (at its record, when it lies inside one, whose events up to it the reader skips), else where
/// a replay's bounds or `--start` say: the type, and its sequence number or time.
fn starting_point(shared: &Shared, reader: &Reader, after: Option<SequenceNumber>) -> (ShardIteratorType, Option<String>, Option<i64>) {
    match after {
        Some(seq) if seq.index().is_some() => (ShardIteratorType::AtSequenceNumber, Some(seq.record().to_string()), None),
        Some(seq) => (ShardIteratorType::AfterSequenceNumber, Some(seq.to_string()), None),
        None => match (shared.bounds.as_ref().and_then(|b| b.start_ms), reader.start) {
            (Some(ms), _) | (None, StartPosition::AtTimestamp(ms)) => (ShardIteratorType::AtTimestamp, None, Some(ms)),
            (None, StartPosition::TrimHorizon) => (ShardIteratorType::TrimHorizon, None, None),
            (None, StartPosition::Latest) => (ShardIteratorType::Latest, None, None),
        },
    }
}

/// A shard iterator; `None` when the shard is closed and has nothing more to read (AWS returns
/// no iterator then). After a position inside a record, the iterator is at that record (its
/// events up to the position are skipped by the reader).
async fn iterator(
    shared: &Shared,
    reader: &Reader,
    after: Option<SequenceNumber>,
) -> Result<Option<String>, SdkError<aws_sdk_kinesis::operation::get_shard_iterator::GetShardIteratorError>> {
    let request = shared.client.get_shard_iterator().stream_name(&shared.stream).shard_id(&reader.shard);
    let (kind, sequence, time_ms) = starting_point(shared, reader, after);
    let request =
        request.shard_iterator_type(kind).set_starting_sequence_number(sequence).set_timestamp(time_ms.map(aws_sdk_kinesis::primitives::DateTime::from_millis));
    let out = request.send().await?;
    Ok(out.shard_iterator().map(str::to_string))
}

/// A shard a reader reads.
struct Reader {
    shard: String,
    /// Its index among the pipeline's shards.
    index: u32,
    closed: bool,
    /// Where it starts when the table has no position of it.
    start: StartPosition,
}

/// What [`take_records`] made of a batch of records.
struct Taken {
    events: Vec<SourceEvent>,
    /// A bounded read reached its end in the batch.
    past_until: bool,
}

/// Turns records (of GetRecords, or of a SubscribeToShard event) into events, as `--payload`
/// says, skipping those up to `last` (a resume inside a record) and stopping at a replay's
/// bounds; `last` becomes the position of the last one taken. `None` if the pipeline is gone or
/// a sequence number is unreadable (the error was sent).
async fn take_records(shared: &Shared, reader: &Reader, records: &[aws_sdk_kinesis::types::Record], last: &mut Option<SequenceNumber>) -> Option<Taken> {
    let (shard, index) = (&reader.shard, reader.index);
    let mut events = Vec::with_capacity(records.len());
    let mut past_until = false;
    'records: for record in records {
        let seq: SequenceNumber = match record.sequence_number().parse() {
            Ok(seq) => seq,
            Err(e) => {
                let _ = shared.chunks.send(Err(shared.error(format!("shard {shard}: {e}")))).await;
                return None;
            }
        };
        let arrival_ms = record.approximate_arrival_timestamp().and_then(|t| t.to_millis().ok()).unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        if shared.bounds.as_ref().is_some_and(|b| b.until_ms.is_some_and(|until| arrival_ms >= until)) {
            past_until = true;
            break;
        }
        let data = bytes::Bytes::copy_from_slice(record.data().as_ref());
        let unpacked = payload::unpack(data.clone(), &shared.read.payload);
        let count = unpacked.events.len();
        for (i, event) in unpacked.events.into_iter().enumerate() {
            let position = if unpacked.numbered {
                match seq.within(i as u64) {
                    Some(position) => position,
                    None => {
                        // Never seen: a 1 MiB record holds at most ~175,000 events.
                        let reason = format!("the record holds {count} events, more than {} a position can number", kappa_common::event::MAX_EVENTS_PER_RECORD);
                        events.push(SourceEvent::object(index, seq, arrival_ms, data.clone()).with_defect(reason));
                        *last = Some(seq);
                        continue 'records;
                    }
                }
            } else {
                seq
            };
            // Resumed inside this record: its events up to the position are in the table.
            if last.is_some_and(|l| position <= l) {
                continue;
            }
            if shared.bounds.as_ref().is_some_and(|b| b.past_position(shard, position)) {
                past_until = true;
                break 'records;
            }
            events.push(match event {
                Ok(payload) => SourceEvent::object(index, position, arrival_ms, payload),
                // Quarantined whole, with the record's (or user record's) bytes.
                Err((reason, raw)) => SourceEvent::object(index, position, arrival_ms, raw).with_defect(reason),
            });
            *last = Some(position);
            if shared.bounds.as_ref().is_some_and(|b| b.reached_position(shard, *last)) {
                past_until = true;
                break 'records;
            }
        }
        // A record holding no event (a CloudWatch Logs control message) is read.
        if last.is_none_or(|l| l < seq) {
            *last = Some(seq);
        }
    }
    Some(Taken { events, past_until })
}

/// Reads one shard to its end (closed shards) or until stopped.
async fn read_shard(shared: Shared, reader: Reader, resume: Option<SequenceNumber>, finished: mpsc::UnboundedSender<(String, Ending)>) {
    let (shard, closed) = (reader.shard.clone(), reader.closed);
    let mut last = resume;
    if shared.bounds.as_ref().is_some_and(|b| b.reached_position(&shard, last)) {
        let _ = finished.send((shard, Ending::Bounded));
        return;
    }
    let mut backoff = BACKOFF_FIRST;
    let mut failures = 0u32;
    let mut current: Option<String> = None;
    loop {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let it = match current.take() {
            Some(it) => it,
            None => match iterator(&shared, &reader, last).await {
                Ok(Some(it)) => it,
                Ok(None) => {
                    drained(&shared, &shard, &finished).await;
                    return;
                }
                // A closed shard that expired past the retention period: nothing left to read.
                Err(e) if is_not_found(&e) && closed => {
                    drained(&shared, &shard, &finished).await;
                    return;
                }
                Err(e) if is_throttling(&e) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
                Err(e) => {
                    let _ = shared.chunks.send(Err(shared.error(format!("GetShardIterator on {shard}: {}", describe_sdk_error(&e))))).await;
                    return;
                }
            },
        };
        let called = Instant::now();
        match shared.client.get_records().shard_iterator(&it).limit(RECORDS_PER_CALL).send().await {
            Ok(out) => {
                backoff = BACKOFF_FIRST;
                failures = 0;
                let Some(Taken { events, past_until }) = take_records(&shared, &reader, out.records(), &mut last).await else {
                    return;
                };
                let got = !events.is_empty();
                if got && shared.chunks.send(Ok(Chunk { events, ..Chunk::default() })).await.is_err() {
                    return;
                }
                let caught_up = !got && out.millis_behind_latest().unwrap_or(0) == 0;
                shared.progressed(&shard, called, out.millis_behind_latest(), caught_up);
                // A closed shard is read to its end (drained), so its children start.
                if shared.bounds.is_some() && (past_until || (caught_up && !closed && out.next_shard_iterator().is_some())) {
                    let _ = finished.send((shard, Ending::Bounded));
                    return;
                }
                match out.next_shard_iterator() {
                    Some(next) => current = Some(next.to_string()),
                    None => {
                        drained(&shared, &shard, &finished).await;
                        return;
                    }
                }
                let behind = out.millis_behind_latest().unwrap_or(0) > 0;
                let wait = if got && behind { MIN_CALL_SPACING } else { shared.read.poll_interval };
                tokio::time::sleep(wait.saturating_sub(called.elapsed())).await;
            }
            Err(SdkError::ServiceError(e)) if matches!(e.err(), GetRecordsError::ExpiredIteratorException(_)) => {
                tracing::debug!(shard = %shard, "shard iterator expired; renewing after the last record read");
            }
            Err(e) if is_not_found(&e) && closed => {
                drained(&shared, &shard, &finished).await;
                return;
            }
            Err(e) if is_throttling(&e) => {
                tracing::warn!(shard = %shard, backoff = ?backoff, "GetRecords throttled or failed transiently ({}); backing off", describe_sdk_error(&e));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                current = Some(it);
            }
            Err(e) => {
                failures += 1;
                if failures >= MAX_FAILURES {
                    let _ = shared.chunks.send(Err(shared.error(format!("GetRecords on {shard} failed {failures} times: {}", describe_sdk_error(&e))))).await;
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}
