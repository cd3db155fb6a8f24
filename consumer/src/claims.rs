//! Consumers competing for one SQS queue, writing one table: a commit raced by another
//! consumer's is rebuilt without what that one already stored.
//!
//! The table side (`kappa_table`'s `competing.rs`) chains the queue's commits: a commit is made
//! only on top of every one before it, and a refused one learns the others' [`Claims`] — the
//! messages they covered and the producer rows they stored. Step by step, here:
//! 1. While rows wait in a buffer, each keeps its position and its producer identity
//!    ([`RowClaim`]); the ledger of acknowledgements knows which message each position came
//!    from. A commit's own claims are made of them.
//! 2. Its files are written and stored as for any commit; if the commit is refused because
//!    another consumer's came first, the rows of each file that a claim of those commits covers
//!    (the same message, delivered to both; or the same producer row, sent twice) are taken
//!    out: the file is read back, filtered, encoded and stored again (under the name of the
//!    positions it still covers; a file left with no rows is deleted).
//! 3. The commit's remembered rows and messages take in the others' claims, so that a consumer
//!    starting from it knows them, and it is tried again on top of the others'.
//! 4. After the commit, the consumer's own deduplication takes in the others' claims too: a
//!    later delivery of one of their messages is deleted on sight, a later copy of one of their
//!    rows dropped.

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow::array::BooleanArray;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use kappa_common::event::SequenceNumber;
use kappa_table::{Claims, Commit, SeenRows, Table, TableError, Totals};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio::runtime::Handle;

use crate::buffer::{RowClaim, file_name, parse_file_name};
use crate::dedup::{RowBits, RowRanges, producer_row};
use crate::error::PipelineError;
use crate::settings::Codec;

/// Times a commit is rebuilt and tried again before the consumer gives up: each try follows
/// another consumer's commit, so this many means the queue's consumers commit faster than one
/// commit can be made.
pub const MAX_TRIES: usize = 200;

/// What a competing consumer's commit needs to be rebuilt.
#[derive(Debug, Default)]
pub struct CompetingCommit {
    /// Per file of the commit (in `commit.added` order), each row's claim.
    pub rows: Vec<Vec<RowClaim>>,
    /// The commit's messages by the position of their first event.
    pub starts: BTreeMap<SequenceNumber, String>,
    /// How long another consumer's messages are remembered here.
    pub grace_ms: i64,
    /// The running totals the commit was prepared on, and what other consumers' commits added
    /// to them since (the commit's `totals` is their sum and its own).
    pub base: Totals,
    pub peers: Totals,
}

impl CompetingCommit {
    fn message_of(&self, seq: SequenceNumber) -> Option<&str> {
        self.starts.range(..=seq).next_back().map(|(_, id)| id.as_str())
    }
}

/// A commit's own claims: its messages, those whose deletes this consumer saw confirmed since
/// its last commit, and the producer rows of its files.
pub fn own_claims(writer: &str, messages: &[String], confirmed: Vec<String>, rows: &[Vec<RowClaim>]) -> Claims {
    let mut by_source: BTreeMap<&str, RowBits> = BTreeMap::new();
    for claim in rows.iter().flatten() {
        if let Some((source, row)) = claim.id.as_deref().and_then(producer_row) {
            by_source.entry(source).or_default().add(row);
        }
    }
    let rows = by_source
        .into_iter()
        .map(|(source, bits)| {
            let mut ranges = RowRanges::default();
            ranges.add(bits);
            (source.to_string(), ranges.to_text(usize::MAX))
        })
        .collect();
    Claims { writer: writer.to_string(), messages: messages.to_vec(), confirmed, rows, totals: Totals::default() }
}

/// `a - b`, field by field.
fn minus(a: &Totals, b: &Totals) -> Totals {
    Totals {
        rows: a.rows.saturating_sub(b.rows),
        files: a.files.saturating_sub(b.files),
        bytes: a.bytes.saturating_sub(b.bytes),
        quarantined: a.quarantined.saturating_sub(b.quarantined),
    }
}

fn add(into: &mut Totals, more: &Totals) {
    into.rows += more.rows;
    into.files += more.files;
    into.bytes += more.bytes;
    into.quarantined += more.quarantined;
}

/// Sets the commit's claimed totals to what it adds itself: its totals less the base it was
/// prepared on and the other consumers' commits since.
pub fn claim_totals(commit: &mut Commit, competing: &CompetingCommit) {
    let own = minus(&minus(&commit.totals, &competing.base), &competing.peers);
    if let Some(claims) = &mut commit.claims {
        claims.totals = own;
    }
}

/// What other consumers' commits stored, to be looked up row by row.
#[derive(Debug, Default)]
pub struct Peers {
    messages: HashSet<String>,
    /// Messages whose deletes they confirmed.
    confirmed: HashSet<String>,
    rows: HashMap<String, RowRanges>,
}

impl Peers {
    pub fn new(claims: &[Claims]) -> Result<Peers, String> {
        let mut peers = Peers::default();
        for claim in claims {
            peers.messages.extend(claim.messages.iter().cloned());
            peers.confirmed.extend(claim.confirmed.iter().cloned());
            for (source, text) in &claim.rows {
                let ranges = RowRanges::parse(text).map_err(|e| format!("claimed rows of {source}: {e}"))?;
                let merged = peers.rows.get(source).map_or_else(|| ranges.clone(), |known| known.union(&ranges));
                peers.rows.insert(source.clone(), merged);
            }
        }
        Ok(peers)
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.rows.is_empty()
    }

    /// True if a row from `message` with producer identity `id` was stored by another consumer.
    fn holds(&self, message: Option<&str>, id: Option<&str>) -> bool {
        if message.is_some_and(|m| self.messages.contains(m)) {
            return true;
        }
        match id.and_then(producer_row) {
            Some((source, row)) => self.rows.get(source).is_some_and(|r| r.contains(row)),
            None => false,
        }
    }

    /// The producer rows as a commit remembers them.
    pub fn seen(&self, now_ms: i64) -> BTreeMap<String, SeenRows> {
        self.rows.iter().map(|(source, ranges)| (source.clone(), SeenRows { rows: ranges.to_text(usize::MAX), ms: now_ms })).collect()
    }

    pub fn messages(&self) -> impl Iterator<Item = &String> {
        self.messages.iter()
    }
}

/// Where a rebuild reads and writes.
pub struct Rebuild<'a> {
    pub table: &'a Table,
    pub runtime: &'a Handle,
    pub codec: Codec,
}

/// Takes out of `commit` (and its stored files) every row that `peers` stored; then makes
/// the commit remember what they stored, and count what they added (`claims`, theirs). Returns
/// the rows taken out.
pub fn resolve(commit: &mut Commit, competing: &mut CompetingCommit, peers: &Peers, claims: &[Claims], how: &Rebuild<'_>) -> Result<u64, PipelineError> {
    for theirs in claims {
        add(&mut commit.totals, &theirs.totals);
        add(&mut competing.peers, &theirs.totals);
    }
    let mut dropped = 0;
    let mut index = 0;
    while index < commit.added.len() {
        let keep: Vec<bool> = {
            let claims = &competing.rows[index];
            claims.iter().map(|c| !peers.holds(competing.message_of(c.seq), c.id.as_deref())).collect()
        };
        let kept = keep.iter().filter(|k| **k).count();
        if kept == keep.len() {
            index += 1;
            continue;
        }
        dropped += (keep.len() - kept) as u64;
        let file = &commit.added[index];
        let stored = format!("{}/{}", how.table.data_prefix(), file.path);
        commit.totals.rows -= (keep.len() - kept) as u64;
        commit.totals.bytes -= file.bytes;
        if kept == 0 {
            tracing::info!(file = %file.path, rows = keep.len(), "every row of the file was stored by another consumer meanwhile: the file leaves the commit");
            how.runtime.block_on(how.table.store().delete(&stored)).map_err(TableError::from)?;
            commit.totals.files -= 1;
            commit.added.remove(index);
            competing.rows.remove(index);
            continue;
        }
        let data = how.runtime.block_on(how.table.store().get(&stored)).map_err(TableError::from)?;
        let crate::parquet_file::Encoded { data, rows, stats } = filtered(data, &keep, how.codec)?;
        let claims: Vec<RowClaim> = competing.rows[index].iter().zip(&keep).filter(|(_, k)| **k).map(|(c, _)| c.clone()).collect();
        let (first, last) = (claims[0].seq, claims[claims.len() - 1].seq);
        let (directory, name) = file.path.rsplit_once('/').unwrap_or(("", &file.path));
        let shard = parse_file_name(name).map(|(shard, _, _)| shard.to_string()).unwrap_or_default();
        let renamed = file_name(&shard, first, last);
        let path = if directory.is_empty() { renamed } else { format!("{directory}/{renamed}") };
        let bytes = data.len() as u64;
        how.runtime.block_on(how.table.put_object(&path, data))?;
        if path != file.path {
            how.runtime.block_on(how.table.store().delete(&stored)).map_err(TableError::from)?;
        }
        tracing::info!(file = %path, rows, taken_out = keep.len() - kept, "rows another consumer stored meanwhile were taken out of the file");
        let file = &mut commit.added[index];
        (file.path, file.rows, file.bytes, file.stats) = (path, rows, bytes, stats);
        commit.totals.bytes += bytes;
        competing.rows[index] = claims;
        index += 1;
    }
    // What the others stored is remembered by this commit too (step 3).
    let now_ms = chrono::Utc::now().timestamp_millis();
    for (source, seen) in peers.seen(now_ms) {
        let merged = match commit.seen.get(&source) {
            Some(ours) => {
                let ours = RowRanges::parse(&ours.rows).map_err(|reason| TableError::Invalid { table: how.table.name().to_string(), reason })?;
                let theirs = RowRanges::parse(&seen.rows).map_err(|reason| TableError::Invalid { table: how.table.name().to_string(), reason })?;
                SeenRows { rows: ours.union(&theirs).to_text(usize::MAX), ms: now_ms }
            }
            None => seen,
        };
        commit.seen.insert(source, merged);
    }
    // Their messages as long as this consumer's own (see `crate::acks`), until confirmed.
    for message in peers.messages() {
        commit.unacknowledged.entry(message.clone()).or_insert(now_ms + crate::acks::UNACKNOWLEDGED_TTL_MS);
    }
    for message in &peers.confirmed {
        if let Some(expiry) = commit.unacknowledged.get_mut(message) {
            *expiry = (*expiry).min(now_ms + competing.grace_ms);
        }
    }
    if let Some(claims) = &mut commit.claims {
        let (messages, confirmed) = (std::mem::take(&mut claims.messages), std::mem::take(&mut claims.confirmed));
        *claims = own_claims(&claims.writer, &messages, confirmed, &competing.rows);
    }
    Ok(dropped)
}

/// A stored Parquet file with only the rows `keep` says, encoded again.
fn filtered(data: Bytes, keep: &[bool], codec: Codec) -> Result<crate::parquet_file::Encoded, PipelineError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(data)?;
    let schema: SchemaRef = reader.schema().clone();
    let mut batches = Vec::new();
    let mut at = 0;
    for batch in reader.build()? {
        let batch = batch?;
        let mask = BooleanArray::from(keep[at..at + batch.num_rows()].to_vec());
        at += batch.num_rows();
        batches.push(arrow::compute::filter_record_batch(&batch, &mask)?);
    }
    Ok(crate::parquet_file::encode(&batches, &schema, &schema, codec, None)?)
}
