//! Sealed buffers into a commit: each file's deterministic name, the positions every shard
//! resumes from, the quarantine and archive objects of the same commit; and, once a commit is
//! durable, its state as the one the next builds on.

use bytes::Bytes;
use kappa_common::event::SequenceNumber;

use super::{Pipeline, PipelineError, seq_of};
use crate::buffer::BufferKey;
use crate::commit::{InFlight, PreparedCommit, WriteContext, Written};
use kappa_table::{Commit, FORMAT, TableError};

/// Files a commit adds at most (see [`Pipeline::write_and_commit`]).
const MAX_FILES_PER_COMMIT: usize = 1000;

impl Pipeline {
    /// Prepares a commit of everything sealed and quarantined, and writes it: in the background
    /// unless the source acknowledges commits (see [`crate::commit`]).
    pub(super) fn write_and_commit(&mut self) -> Result<(), PipelineError> {
        self.quarantine_ratio.check()?;
        self.finish_commit()?;
        if self.config.flush_together {
            let keys: Vec<BufferKey> = self.buffers.keys().copied().collect();
            for key in keys {
                self.seal(key);
            }
        }
        self.store_schema()?;
        // Thousands of sealed buffers (hour partitions at the end of a run) go in several
        // commits: one commit's file list, statistics and log entry are held in memory at once.
        // Those left wait as sealed, and count as open for the positions below. Not with
        // `flush_together`: its commits must cover every message they acknowledge, whole.
        let sealed = if !self.config.flush_together && self.sealed.len() > MAX_FILES_PER_COMMIT {
            let rest = self.sealed.split_off(MAX_FILES_PER_COMMIT);
            std::mem::replace(&mut self.sealed, rest)
        } else {
            std::mem::take(&mut self.sealed)
        };
        let commit_number = self.state.last_commit + 1;
        let mut files = Vec::with_capacity(sealed.len());
        let mut written = self.state.written.clone();
        let mut totals = self.state.totals.clone();
        let mut row_claims = Vec::new();
        for ((partition, shard), mut buffer) in sealed {
            if self.table.is_competing() {
                row_claims.push(std::mem::take(&mut buffer.claims));
            }
            let shard_name = &self.shards[shard as usize];
            let path = format!("{}/{}", partition.path(), crate::buffer::file_name(shard_name, buffer.first_seq, buffer.last_seq));
            raise_to(written.entry(partition.path()).or_default(), shard_name, buffer.last_seq);
            totals.rows += buffer.rows;
            totals.files += 1;
            files.push((path, partition.path(), buffer));
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
        // A consumer competing for a queue says what its commit stores (see `crate::claims`).
        let competing = match self.table.competing_tag() {
            Some(tag) => {
                let claims = crate::claims::own_claims(&tag, self.acks.ingested(), &row_claims);
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
        if !peers.is_empty() {
            self.acks.committed_elsewhere(peers.into_iter().flat_map(|c| c.messages), self.peer_grace_ms);
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
