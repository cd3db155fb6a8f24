//! Sealed buffers into a commit: each file's deterministic name, the positions every shard
//! resumes from, the quarantine and archive objects of the same commit; and, once a commit is
//! durable, its state as the one the next builds on.

use bytes::Bytes;
use kappa_common::event::SequenceNumber;

use super::{Pipeline, PipelineError, seq_of};
use crate::buffer::{Buffer, BufferKey, Cut};
use crate::commit::{InFlight, PendingFile, PreparedCommit, WriteContext, Written};
use crate::origin::Run;
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
        // Buffers that wait for their partition in other shards (see `hold_back`). Decided
        // before waiting for the commit in flight, which nothing else to commit need not wait
        // for. Not with --per-shard-files; nor under leases, where the shards one process
        // holds change as leases move (files of several shards would not be a function of the
        // log then, and a replay shared by processes would not write one replay's files); nor
        // for a consumer competing for a queue, whose rebuild takes rows out of a commit file
        // by file, each of one shard.
        let merge = !self.config.per_shard_files && !self.table.is_leased() && !self.table.is_competing();
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
                self.seal(key, Cut::Together);
            }
        }
        self.store_schema()?;
        if merge && hold == Hold::End {
            self.at_the_end();
        }
        // Thousands of files (hour partitions at the end of a run) go in several commits: one
        // commit's file list, statistics and log entry are held in memory at once. The buffers
        // of files left wait as sealed, and count as open for the positions below. Not with
        // `flush_together`: its commits must cover every message they acknowledge, whole.
        // (A competing consumer's rebuild takes rows out file by file, each of one shard.)
        let most = if self.config.flush_together { usize::MAX } else { MAX_FILES_PER_COMMIT };
        let (groups, rest) = commit_files(std::mem::take(&mut self.sealed), &self.shards, merge, &self.config.flush, most);
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
            let origin = (buffers.len() > 1).then(|| {
                let run = |(shard, b): &(u32, Buffer)| Run {
                    shard: crate::buffer::shard_in_name(&self.shards[*shard as usize]),
                    first: b.first_seq,
                    last: b.last_seq,
                    skip: 0,
                    rows: b.rows,
                };
                buffers.iter().map(run).collect()
            });
            let buffers = buffers.into_iter().map(|(_, buffer)| buffer).collect();
            files.push(PendingFile { path: format!("{dir}/{name}"), partition: partition.path(), buffers, origin });
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

    /// Takes out of the sealed buffers those to hold back from this commit: a partition's, while
    /// one of them was closed as idle on time ([`Cut::OnTime`]) and another shard may still
    /// close a buffer of the partition so (see [`held_back`]). Then its shards' such buffers go
    /// in one file, whatever the order their shards were read in: a restart and a replay write
    /// that file again. Held buffers spill as open ones do, and hold their shards' resume
    /// points back; nothing is held when everything is written (shutdown, the end of
    /// `--until-idle`), nor past --flush-interval.
    fn hold_back(&mut self) -> Sealed {
        let sealed = std::mem::take(&mut self.sealed);
        let Some(elsewhere) = self.elsewhere() else {
            self.sealed = sealed;
            return Vec::new();
        };
        let (held, rest) = held_back(sealed, &elsewhere);
        self.sealed = rest;
        held
    }

    /// What a partition's sealed buffers meet in the other shards; `None` without
    /// `--partition-idle` (no buffer is closed as idle, none waits).
    fn elsewhere(&self) -> Option<Elsewhere<'_>> {
        let idle = self.config.partition_idle?;
        Some(Elsewhere {
            open: &self.buffers,
            coming: coming(&self.read_count, &self.finished, &self.horizon),
            idle_ms: idle_ms(idle),
            interval: self.config.flush.interval,
        })
    }

    /// When everything is written (the end of the run, shutdown): a buffer closed as idle on
    /// time whose partition is not complete (another shard held it open on time until now,
    /// or may still bring it rows on time) goes with the buffers cut there, in one file,
    /// rather than in one of its own. Whether a partition is complete at the end is a function
    /// of the log up to there; whether it became complete before, and went, may depend on when
    /// commits were tried, so a complete partition's buffers keep their file either way.
    fn at_the_end(&mut self) {
        let Some(elsewhere) = self.elsewhere() else { return };
        // Buffers open on time until the end, sealed for it a moment ago.
        let open_on_time: std::collections::BTreeSet<Partition> = self
            .sealed
            .iter()
            .filter(|((partition, _), b)| b.cut == Cut::Together && b.horizon_before < closes(partition, elsewhere.idle_ms))
            .map(|((partition, _), _)| *partition)
            .collect();
        let incomplete: std::collections::BTreeSet<Partition> = self
            .sealed
            .iter()
            .filter(|((partition, _), b)| b.cut == Cut::OnTime && (open_on_time.contains(partition) || !elsewhere.complete(*partition)))
            .map(|((partition, _), _)| *partition)
            .collect();
        for ((partition, _), buffer) in &mut self.sealed {
            if buffer.cut == Cut::OnTime && incomplete.contains(partition) {
                buffer.cut = Cut::Together;
            }
        }
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

/// Event JSON a file of several buffers holds at most. Merging pays where a file's fixed
/// costs (a footer of ~1.4 KB, a create or a PUT) are a noticeable share of it: below this a
/// file's Parquet is well under 1 MB. Larger buffers stay files of their own, which the commit
/// encodes on every core at once: merged up to --flush-bytes, 10M wide rows by day (120 files
/// of ~21,000 rows a shard) took 9.16 s instead of 7.83 and 263 MiB instead of 217.
const MERGE_MAX_BYTES: u64 = 4 << 20;

/// Whether a commit may hold sealed buffers back (see [`Pipeline::hold_back`]): not when
/// memory is still short after a spill, nor for a lease's fence (`No`), nor when everything is
/// written (shutdown, the end of `--until-idle`: `End`, see [`Pipeline::at_the_end`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    Yes,
    No,
    End,
}

impl From<bool> for Hold {
    fn from(may: bool) -> Hold {
        if may { Hold::Yes } else { Hold::No }
    }
}

/// For each shard, its event time if it may still bring rows ([`Elsewhere::coming`]): the
/// shards this run reads and has not read to their end (a closed parent's time stands still),
/// once they delivered an event, in this run or before (the time a commit recorded): a restart
/// waits for the same shards as the run it resumes. (A shard that never delivered an event
/// does not hold partitions back: at the very start of a table that may let a partition go
/// before a slow shard's first rows, in one run and not in another.)
fn coming(read_count: &[u64], finished: &[bool], horizon: &[i64]) -> Vec<Option<i64>> {
    read_count
        .iter()
        .zip(finished)
        .zip(horizon)
        .map(|((read, finished), horizon)| ((*read > 0 || *horizon > i64::MIN) && !finished).then_some(*horizon))
        .collect()
}

/// Where a partition's buffers closed as idle on time end: its end plus the idle time. A shard
/// whose event time has passed it closes no more buffers of the partition on time; a buffer
/// whose first row came when its shard's time was already there came late ([`late`]).
fn closes(partition: &Partition, idle_ms: i64) -> i64 {
    partition.span_ms().map_or(i64::MAX, |(_, end)| end).saturating_add(idle_ms)
}

/// Whether a buffer of `partition` whose shard's event time stood at `horizon_before` before
/// its first row came late (`--partition-idle` `idle`): closed as idle, it is [`Cut::Late`].
pub(super) fn late(partition: &Partition, horizon_before: i64, idle: Option<std::time::Duration>) -> bool {
    idle.is_some_and(|idle| horizon_before >= closes(partition, idle_ms(idle)))
}

/// `--partition-idle` in ms, as event times are.
fn idle_ms(idle: std::time::Duration) -> i64 {
    i64::try_from(idle.as_millis()).unwrap_or(i64::MAX)
}

/// What [`held_back`] looks at in the other shards.
struct Elsewhere<'a> {
    /// The buffers still open, of every shard.
    open: &'a std::collections::BTreeMap<BufferKey, Buffer>,
    /// For each shard that may still bring rows (see [`coming`]), its event time; `None` for
    /// the others.
    coming: Vec<Option<i64>>,
    idle_ms: i64,
    /// `--flush-interval`: no buffer waits longer since it was opened.
    interval: std::time::Duration,
}

impl Elsewhere<'_> {
    /// Whether every shard that may still bring rows has closed its buffer of `partition` on
    /// time, or will not: its event time has passed where the partition's on-time buffers
    /// close ([`closes`]) and it holds none open that came on time. A function of each shard's
    /// log up to where it was read, so the same in every run that read as far.
    fn complete(&self, partition: Partition) -> bool {
        let closes = closes(&partition, self.idle_ms);
        self.coming.iter().enumerate().all(|(shard, time)| match time {
            None => true,
            Some(time) => *time >= closes && self.open.get(&(partition, shard as u32)).is_none_or(|b| b.horizon_before >= closes),
        })
    }
}

/// The sealed buffers to hold back from a commit (the first list) and those to commit (the
/// second), for [`Pipeline::hold_back`]: a partition's, all of them, while one was closed as
/// idle on time ([`Cut::OnTime`]) and the partition is not [`Elsewhere::complete`], or one
/// was closed as idle after a late row ([`Cut::Late`]: it waits for the end); unless one of
/// those has been open for --flush-interval.
///
/// All of a partition's, because a commit must never write a (partition, shard)'s later buffer
/// while an earlier one waits, or its written position would pass rows a restart then skips.
fn held_back(sealed: Sealed, elsewhere: &Elsewhere) -> (Sealed, Sealed) {
    let (mut held, mut rest) = (Vec::new(), Vec::new());
    for (partition, buffers) in by_partition(sealed) {
        let idle = buffers.iter().filter(|(_, b)| matches!(b.cut, Cut::OnTime | Cut::Late));
        let waits = idle.clone().next().is_some()
            && idle.clone().all(|(_, b)| b.opened.elapsed() < elsewhere.interval)
            && (idle.clone().any(|(_, b)| b.cut == Cut::Late) || !elsewhere.complete(partition));
        let keyed = buffers.into_iter().map(|(shard, buffer)| ((partition, shard), buffer));
        if waits { held.extend(keyed) } else { rest.extend(keyed) }
    }
    (held, rest)
}

/// A file's buffers, with the shard of each.
type FileBuffers = Vec<(u32, Buffer)>;
/// Sealed buffers, in the order they wait.
type Sealed = Vec<(BufferKey, Buffer)>;

/// The files of a commit of at most `most` files (more if the last partition's run over), from
/// the sealed buffers (see [`files_of`]), and the buffers left for the next commits, in order.
/// A partition's files go in one commit: with `merge`, its buffers left for the next would
/// meet other buffers there. Within a partition and shard a file holds earlier positions than
/// the files after it, so the commit covers each shard's earliest sealed buffers and what waits
/// comes after them.
fn commit_files(sealed: Sealed, shards: &[String], merge: bool, policy: &FlushPolicy, most: usize) -> (Vec<(Partition, FileBuffers)>, Sealed) {
    let mut files = files_of(sealed, shards, merge, policy);
    let mut cut = most.min(files.len());
    while merge && cut > 0 && cut < files.len() && files[cut].0 == files[cut - 1].0 {
        cut += 1;
    }
    let rest = files.split_off(cut);
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
/// they were sealed; or, with `merge`, by partition: each buffer cut to go alone
/// ([`Cut::Alone`]) a file of its own, those closed as idle on time together, and the others
/// together, each in order of shard name and position, in as few files as the flush policy's rows and bytes, and
/// [`MERGE_MAX_BYTES`], allow. Which buffers go together and how they are cut into files
/// depends only on the buffers, so the same buffers make the same files.
fn files_of(sealed: Sealed, shards: &[String], merge: bool, policy: &FlushPolicy) -> Vec<(Partition, FileBuffers)> {
    if !merge {
        return sealed.into_iter().map(|((partition, shard), buffer)| (partition, vec![(shard, buffer)])).collect();
    }
    let partitions = by_partition(sealed);
    let mut files = Vec::with_capacity(partitions.len());
    let max_bytes = policy.bytes.min(MERGE_MAX_BYTES);
    for (partition, buffers) in partitions {
        let (mut on_time, mut together) = (Vec::new(), Vec::new());
        for (shard, buffer) in buffers {
            match buffer.cut {
                Cut::Alone => files.push((partition, vec![(shard, buffer)])),
                Cut::OnTime => on_time.push((shard, buffer)),
                Cut::Late | Cut::Together => together.push((shard, buffer)),
            }
        }
        for mut buffers in [on_time, together] {
            buffers.sort_by(|(a, x), (b, y)| (&shards[*a as usize], x.first_seq).cmp(&(&shards[*b as usize], y.first_seq)));
            let (mut file, mut rows, mut bytes): (FileBuffers, u64, u64) = (Vec::new(), 0, 0);
            for (shard, buffer) in buffers {
                if !file.is_empty() && (rows + buffer.rows > policy.rows || bytes + buffer.bytes > max_bytes) {
                    files.push((partition, std::mem::take(&mut file)));
                    (rows, bytes) = (0, 0);
                }
                (rows, bytes) = (rows + buffer.rows, bytes + buffer.bytes);
                file.push((shard, buffer));
            }
            if !file.is_empty() {
                files.push((partition, file));
            }
        }
    }
    files
}

#[cfg(test)]
mod tests;
