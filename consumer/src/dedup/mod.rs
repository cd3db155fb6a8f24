//! Deduplication by identity, within a run and across restarts.
//!
//! A duplicate is a second delivery of an event with the same identity: a producer's retry, a
//! file sent again, an SQS redelivery. Step by step:
//! 1. The producer's identities are `<source>:<pass>:<row>`, rows numbered from 0: per source
//!    and pass the rows seen in this run are kept as a bitmap, of which a file read in order
//!    keeps only a few words. Other identities go to a window of the newest `--dedup-window`
//!    128-bit hashes (a hash set of a million random keys was a third of the consumer's time in
//!    cache misses); positions, not that window, guard restarts for them.
//! 2. A producer row read in this run waits in its shard's queue until the shard's resume point
//!    passes it. Only then may a commit remember it: a row that is only buffered is read again
//!    after a crash, and if the committed state already named it, the restart would drop it as
//!    a duplicate of itself and lose it.
//! 3. Each commit carries, per source, the remembered rows as ranges (`0-49999`) and when they
//!    last grew ([`kappa_table::SeenRows`]); a source untouched for `--dedup-retention` is
//!    forgotten, so the state is bounded by the files of the retention window.
//! 4. On restart the ranges are loaded: a row of a file sent again is dropped however long ago
//!    (within the retention) the first copy was committed. Rows after the resume points are
//!    read again, and remembered as they come, before any later copy of theirs: a copy goes to
//!    the same shard as its original (the producer keys a row by its identity, or by a column
//!    of the row), and a shard is read in order.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use kappa_table::SeenRows;

use self::pending::PendingRows;
pub use self::ranges::{RowBits, RowMap, RowRanges};

mod pending;
mod ranges;

/// Most ranges a commit remembers of one file. A file's rows are spread over the shards: while
/// one shard's resume point lags far behind the others', the rows the others passed leave a
/// gap at each of its rows. The run keeps them all and closes the gaps as the lagging shard
/// passes; a commit writes the lowest this many (~30 KB), and a restart in between forgets the
/// rest (safe: a forgotten row is only not recognised when sent again).
const MAX_RANGES_PER_FILE: usize = 2048;

/// Drops events seen before by identity; see the module's steps.
pub struct Dedup {
    capacity: usize,
    order: VecDeque<u128>,
    seen: HashSet<u128, PreHashed>,
    /// Per `<source>:<pass>`: found by name, or by the last one used (rows of one file arrive
    /// together).
    sources: Vec<Source>,
    source_index: HashMap<String, usize>,
    last_source: usize,
    /// Per shard, in reading order: producer rows not yet passed by the shard's resume point,
    /// with their ordinals (the event's number in its shard's reading order this run).
    pending: Vec<PendingRows>,
    /// With deduplication off, what the table remembered, handed on unchanged: a run with
    /// `--dedup-window 0` must not erase it.
    untouched: BTreeMap<String, SeenRows>,
}

struct Source {
    name: String,
    /// Rows seen in this run.
    run: RowSet,
    /// Rows a commit remembers (loaded at start, grown by this run's commits).
    committed: RowMap,
    /// When `committed` last grew (ms since the epoch).
    touched_ms: i64,
}

/// Row numbers seen, as a bitmap over a sliding span: O(1) per row, and a file read in order
/// keeps only the few words around its gaps (the shards' rows interleave there).
#[derive(Default)]
struct RowSet {
    /// Every row below this was seen.
    complete_below: u64,
    /// The row of the first bit of `words` (a multiple of 64, at or above `complete_below`);
    /// rows in between were forgotten to bound the span.
    base: u64,
    words: VecDeque<u64>,
}

impl RowSet {
    /// Adds `row`; true if it was there already. `max_words` bounds the span kept: rows too
    /// far below the newest are forgotten (a later copy of one is not caught).
    fn insert(&mut self, row: u64, max_words: usize) -> bool {
        if row < self.complete_below {
            return true;
        }
        if row < self.base {
            return false;
        }
        let word = ((row - self.base) / 64) as usize;
        if word >= self.words.len() {
            if word - self.words.len() >= max_words {
                // Far beyond the span: start over there.
                self.words.clear();
                self.base = row / 64 * 64;
                return self.insert(row, max_words);
            }
            self.words.resize(word + 1, 0);
        }
        let bit = 1u64 << ((row - self.base) % 64);
        if self.words[word] & bit != 0 {
            return true;
        }
        self.words[word] |= bit;
        while self.words.front() == Some(&u64::MAX) && self.words.len() > 1 {
            self.words.pop_front();
            self.base += 64;
            if self.complete_below + 64 == self.base {
                self.complete_below = self.base;
            }
        }
        while self.words.len() > max_words {
            self.words.pop_front();
            self.base += 64;
        }
        false
    }
}

/// Splits an identity ending in `:<row>` into what precedes it and the row: on bytes, in one
/// pass back from the end (`rsplit_once` and `parse` were 3% of a consumer's time).
fn split_row(id: &str) -> Option<(&str, u64)> {
    let bytes = id.as_bytes();
    let (mut row, mut scale, mut at) = (0u64, 1u64, bytes.len());
    while at > 0 && bytes[at - 1].is_ascii_digit() {
        // 19 digits always fit in a u64.
        if bytes.len() - at == 19 {
            return None;
        }
        at -= 1;
        row += u64::from(bytes[at] - b'0') * scale;
        scale = scale.wrapping_mul(10);
    }
    if at == bytes.len() || at == 0 || bytes[at - 1] != b':' {
        return None;
    }
    Some((&id[..at - 1], row))
}

/// The `<source>:<pass>` and the row of a producer identity (`<source>:<pass>:<row>`); `None`
/// for any other identity.
pub fn producer_row(id: &str) -> Option<(&str, u64)> {
    split_row(id).filter(|(name, _)| is_source_and_pass(name))
}

/// True for the `<source>:<pass>` part of a producer identity.
fn is_source_and_pass(name: &str) -> bool {
    memchr::memchr(b':', name.as_bytes()).is_some()
}

/// The set's keys are already xxh3 hashes: hashing them again (SipHash by default) was a
/// fifth of the consumer's time.
#[derive(Clone, Copy, Default)]
struct PreHashed;

struct PreHasher(u64);

impl std::hash::BuildHasher for PreHashed {
    type Hasher = PreHasher;
    fn build_hasher(&self) -> PreHasher {
        PreHasher(0)
    }
}

impl std::hash::Hasher for PreHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = (n as u64) ^ ((n >> 64) as u64);
    }
}

impl Dedup {
    pub fn new(capacity: usize) -> Dedup {
        Dedup {
            capacity,
            order: VecDeque::new(),
            seen: HashSet::with_hasher(PreHashed),
            sources: Vec::new(),
            source_index: HashMap::new(),
            last_source: 0,
            pending: Vec::new(),
            untouched: BTreeMap::new(),
        }
    }

    /// Loads the rows the last commit remembers.
    pub fn load(&mut self, remembered: &BTreeMap<String, SeenRows>) -> Result<(), String> {
        if self.capacity == 0 {
            self.untouched = remembered.clone();
            return Ok(());
        }
        for (name, seen) in remembered {
            let ranges = RowRanges::parse(&seen.rows).map_err(|e| format!("remembered rows of {name}: {e}"))?;
            let index = self.source(name);
            self.sources[index].committed = RowMap::from_ranges(ranges);
            self.sources[index].touched_ms = seen.ms;
        }
        Ok(())
    }

    /// Unites more remembered rows with those loaded (a leased worker's shards came from
    /// several commits, each remembering what its worker read).
    pub fn load_more(&mut self, remembered: &BTreeMap<String, SeenRows>) -> Result<(), String> {
        if self.capacity == 0 {
            for (name, seen) in remembered {
                self.untouched.entry(name.clone()).or_insert_with(|| seen.clone());
            }
            return Ok(());
        }
        for (name, seen) in remembered {
            let ranges = RowRanges::parse(&seen.rows).map_err(|e| format!("remembered rows of {name}: {e}"))?;
            let index = self.source(name);
            let source = &mut self.sources[index];
            let ours = RowRanges::parse(&source.committed.to_text(usize::MAX)).map_err(|e| format!("remembered rows of {name}: {e}"))?;
            source.committed = RowMap::from_ranges(ours.union(&ranges));
            source.touched_ms = source.touched_ms.max(seen.ms);
        }
        Ok(())
    }

    fn source(&mut self, name: &str) -> usize {
        match self.source_index.get(name) {
            Some(index) => *index,
            None => {
                self.sources.push(Source { name: name.to_string(), run: RowSet::default(), committed: RowMap::default(), touched_ms: 0 });
                self.source_index.insert(name.to_string(), self.sources.len() - 1);
                self.sources.len() - 1
            }
        }
    }

    /// True if `id` was seen before (a duplicate); remembers it otherwise, as read at
    /// `ordinal` of `shard` (see [`Dedup::passed`]).
    pub fn check(&mut self, id: &str, shard: u32, ordinal: u64) -> bool {
        if self.capacity == 0 {
            return false;
        }
        if let Some((name, row)) = split_row(id) {
            // A name is checked only when it is not the last one's: rows of one file arrive
            // together.
            let index = match self.sources.get(self.last_source) {
                Some(last) if last.name == name => Some(self.last_source),
                _ if !is_source_and_pass(name) => None,
                _ => Some(self.source(name)),
            };
            if let Some(index) = index {
                self.last_source = index;
                let source = &mut self.sources[index];
                // A span of `capacity` rows per source, at least: one bit each.
                let duplicate = source.run.insert(row, self.capacity.div_ceil(64).max(16)) || source.committed.contains(row);
                if !duplicate {
                    if self.pending.len() <= shard as usize {
                        self.pending.resize_with(shard as usize + 1, PendingRows::default);
                    }
                    self.pending[shard as usize].push(ordinal, index as u32, row);
                }
                return duplicate;
            }
        }
        let hash = xxhash_rust::xxh3::xxh3_128(id.as_bytes());
        if !self.seen.insert(hash) {
            return true;
        }
        self.order.push_back(hash);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        false
    }

    /// A commit is being prepared whose resume point for each shard lies just before the event
    /// at ordinal `before[shard]` (after every event read so far when `None`): the rows before
    /// those points are remembered in that commit.
    pub fn pass(&mut self, before: &[Option<u64>], now_ms: i64) {
        let mut rows: BTreeMap<usize, RowBits> = BTreeMap::new();
        for (shard, queue) in self.pending.iter_mut().enumerate() {
            queue.take_before(before.get(shard).copied().flatten(), |source, row| rows.entry(source as usize).or_default().add(row));
        }
        // Every shard's rows of a file at once: one merge per file and commit.
        for (index, rows) in rows {
            let source = &mut self.sources[index];
            source.committed.add(rows);
            source.touched_ms = now_ms;
        }
    }

    /// What a commit remembers: every source's rows, less those untouched for `retention_ms`
    /// (forgotten here too).
    pub fn remembered(&mut self, now_ms: i64, retention_ms: i64) -> BTreeMap<String, SeenRows> {
        if self.capacity == 0 {
            return self.untouched.clone();
        }
        let mut remembered = BTreeMap::new();
        for source in &mut self.sources {
            if source.committed.is_empty() {
                continue;
            }
            if source.touched_ms.saturating_add(retention_ms) < now_ms {
                source.committed = RowMap::default();
                continue;
            }
            remembered.insert(source.name.clone(), SeenRows { rows: source.committed.to_text(MAX_RANGES_PER_FILE), ms: source.touched_ms });
        }
        remembered
    }

    /// Memory the rows waiting for their resume point hold, counted against `--max-memory`.
    pub fn pending_memory(&self) -> usize {
        self.pending.iter().map(PendingRows::memory).sum()
    }
}

#[cfg(test)]
mod tests;
