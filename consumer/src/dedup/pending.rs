//! One shard's producer rows waiting for the shard's resume point to pass them, in reading
//! order, at about half a byte a row.
//!
//! A shard delivers a file's rows in increasing order, a few rows apart (the file's rows are
//! spread over the shards), at consecutive ordinals. So the rows are kept as runs of one file
//! and consecutive ordinals, each run a bitmap of its rows: the k-th row of a run is its k-th
//! set bit, at ordinal `first + k`. A run ends where the file changes, an ordinal is skipped (a
//! duplicate, another kind of event) or the rows spread too far. A 10M-row run holds every row
//! until its end when the resume points never advance (day partitions open throughout): 16
//! bytes a row had taken the consumer from 180 to 270 MiB.

use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(super) struct PendingRows {
    runs: VecDeque<Run>,
}

#[derive(Debug)]
struct Run {
    source: u32,
    /// The ordinal of the run's first row still held; the rows held are at consecutive
    /// ordinals from it.
    ordinal: u64,
    rows: u64,
    /// The row of the bitmap's first bit, and the last row added.
    base: u64,
    last_row: u64,
    words: Vec<u64>,
}

/// A run's bitmap spans at most this many rows (8 KiB).
const MAX_SPAN_WORDS: u64 = 1024;
/// A bitmap grows by this many words (512 bytes) at once: no doubling held as memory.
const GROWTH_WORDS: usize = 64;

impl PendingRows {
    pub(super) fn push(&mut self, ordinal: u64, source: u32, row: u64) {
        if let Some(run) = self.runs.back_mut()
            && run.source == source
            && ordinal == run.ordinal + run.rows
            && row > run.last_row
            && (row - run.base) / 64 < MAX_SPAN_WORDS
        {
            run.set(row);
            return;
        }
        let mut run = Run { source, ordinal, rows: 0, base: row / 64 * 64, last_row: row, words: Vec::new() };
        run.set(row);
        self.runs.push_back(run);
    }

    /// Takes the rows read before ordinal `before` (all with `None`), calling `take(source, row)`
    /// for each in reading order.
    pub(super) fn take_before(&mut self, before: Option<u64>, mut take: impl FnMut(u32, u64)) {
        while let Some(run) = self.runs.front_mut() {
            let count = match before {
                None => run.rows,
                Some(before) => before.saturating_sub(run.ordinal).min(run.rows),
            };
            if count == 0 {
                return;
            }
            run.take_first(count, &mut take);
            if run.rows > 0 {
                return;
            }
            self.runs.pop_front();
        }
    }

    /// Bytes held.
    pub(super) fn memory(&self) -> usize {
        self.runs.iter().map(|r| size_of::<Run>() + r.words.capacity() * 8).sum()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> u64 {
        self.runs.iter().map(|r| r.rows).sum()
    }
}

impl Run {
    fn set(&mut self, row: u64) {
        let bit = row - self.base;
        let word = (bit / 64) as usize;
        if word >= self.words.len() {
            if word >= self.words.capacity() {
                // Doubling up to GROWTH_WORDS at once: a run of a few rows (files interleaved
                // on a shard) holds a word or two.
                let growth = self.words.len().clamp(1, GROWTH_WORDS);
                self.words.reserve_exact((word + 1 - self.words.len()).next_multiple_of(growth));
            }
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (bit % 64);
        self.last_row = row;
        self.rows += 1;
    }

    /// Takes the first `count` rows held (they are the lowest set bits).
    fn take_first(&mut self, mut count: u64, take: &mut impl FnMut(u32, u64)) {
        self.ordinal += count;
        self.rows -= count;
        for (index, word) in self.words.iter_mut().enumerate() {
            while *word != 0 {
                if count == 0 {
                    return;
                }
                let bit = word.trailing_zeros();
                take(self.source, self.base + index as u64 * 64 + u64::from(bit));
                *word &= *word - 1;
                count -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PendingRows;

    fn taken(pending: &mut PendingRows, before: Option<u64>) -> Vec<(u32, u64)> {
        let mut rows = Vec::new();
        pending.take_before(before, |source, row| rows.push((source, row)));
        rows
    }

    #[test]
    fn rows_come_back_in_order_up_to_the_bound() {
        let mut pending = PendingRows::default();
        // File 7: rows 0, 3, 4, then 100,000 (too far: a new run); ordinal 4 skipped (a
        // duplicate); file 8.
        for (ordinal, source, row) in [(0, 7, 0), (1, 7, 3), (2, 7, 4), (3, 7, 100_000), (5, 8, 1), (6, 8, 2)] {
            pending.push(ordinal, source, row);
        }
        assert_eq!(pending.len(), 6);
        assert_eq!(taken(&mut pending, Some(0)), vec![]);
        assert_eq!(taken(&mut pending, Some(2)), vec![(7, 0), (7, 3)]);
        assert_eq!(taken(&mut pending, Some(4)), vec![(7, 4), (7, 100_000)]);
        assert_eq!(pending.len(), 2);
        assert_eq!(taken(&mut pending, Some(6)), vec![(8, 1)]);
        pending.push(7, 8, 5);
        pending.push(9, 8, 6);
        assert_eq!(taken(&mut pending, None), vec![(8, 2), (8, 5), (8, 6)]);
        assert_eq!((pending.len(), pending.memory()), (0, 0));
    }

    #[test]
    fn a_file_read_in_order_costs_under_a_byte_a_row() {
        let mut pending = PendingRows::default();
        // One shard of four: every fourth row or so.
        for i in 0..100_000u64 {
            pending.push(i, 1, i * 4 + i % 3);
        }
        assert!(pending.memory() < 100_000, "{} bytes", pending.memory());
        let rows = taken(&mut pending, Some(50_000));
        assert_eq!(rows.len(), 50_000);
        assert_eq!(rows[49_999], (1, 49_999 * 4 + 49_999 % 3));
        assert!(rows.windows(2).all(|w| w[0].1 < w[1].1));
        assert_eq!(taken(&mut pending, None).len(), 50_000);
    }
}
