//! One shard's producer rows waiting for the shard's resume point to pass them, in reading
//! order, at about 2 bytes a row.
//!
//! A shard delivers a file's rows in increasing order, a few rows apart (the file's rows are
//! spread over the shards), at consecutive ordinals: so the rows are kept as runs of one file,
//! each row as its distance from the previous row and ordinal in a byte each. A run ends where
//! the file changes or a distance does not fit in a byte. Sixteen bytes a row (ordinal, file
//! and row) had held every row read since the oldest open buffer: 32 MB of a 2M-row run.

use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(super) struct PendingRows {
    runs: VecDeque<Run>,
    /// Rows held, for `--max-memory`.
    rows: usize,
}

#[derive(Debug)]
struct Run {
    source: u32,
    /// The first row's ordinal and row.
    ordinal: u64,
    row: u64,
    /// The last row's, to extend the run.
    last_ordinal: u64,
    last_row: u64,
    /// Each later row: (ordinal − previous ordinal, row − previous row).
    steps: Vec<(u8, u8)>,
}

impl PendingRows {
    pub(super) fn push(&mut self, ordinal: u64, source: u32, row: u64) {
        self.rows += 1;
        if let Some(run) = self.runs.back_mut()
            && run.source == source
            && let (Ok(by_ordinal), Ok(by_row)) = (u8::try_from(ordinal.wrapping_sub(run.last_ordinal)), u8::try_from(row.wrapping_sub(run.last_row)))
            && by_ordinal > 0
            && by_row > 0
        {
            run.steps.push((by_ordinal, by_row));
            (run.last_ordinal, run.last_row) = (ordinal, row);
            return;
        }
        self.runs.push_back(Run { source, ordinal, row, last_ordinal: ordinal, last_row: row, steps: Vec::new() });
    }

    /// Takes the rows read before ordinal `before` (all with `None`), calling `take(source, row)`
    /// for each in reading order.
    pub(super) fn take_before(&mut self, before: Option<u64>, mut take: impl FnMut(u32, u64)) {
        while let Some(run) = self.runs.front_mut() {
            if before.is_none_or(|before| run.last_ordinal < before) {
                let run = self.runs.pop_front().expect("a front run");
                self.rows -= run.steps.len() + 1;
                take(run.source, run.row);
                let mut row = run.row;
                for (_, by_row) in run.steps {
                    row += u64::from(by_row);
                    take(run.source, row);
                }
                continue;
            }
            let before = before.expect("a bound");
            if run.ordinal >= before {
                return;
            }
            // The bound falls inside this run: take its head, keep the rest as the run.
            let (mut ordinal, mut row) = (run.ordinal, run.row);
            take(run.source, row);
            let mut taken = 0;
            for &(by_ordinal, by_row) in &run.steps {
                if ordinal + u64::from(by_ordinal) >= before {
                    break;
                }
                ordinal += u64::from(by_ordinal);
                row += u64::from(by_row);
                take(run.source, row);
                taken += 1;
            }
            let (by_ordinal, by_row) = run.steps[taken];
            (run.ordinal, run.row) = (ordinal + u64::from(by_ordinal), row + u64::from(by_row));
            run.steps.drain(..=taken);
            self.rows -= taken + 1;
            return;
        }
    }

    /// Bytes held (a run's fixed part, counted at its capacity, plus two a row).
    pub(super) fn memory(&self) -> usize {
        self.runs.len() * size_of::<Run>() + self.runs.iter().map(|r| r.steps.capacity() * 2).sum::<usize>()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.rows
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
        // File 7: rows 0, 3, 4, 300 (a jump: a new run), then file 8, at ordinals 0..6.
        for (ordinal, source, row) in [(0, 7, 0), (1, 7, 3), (2, 7, 4), (3, 7, 300), (5, 8, 1), (6, 8, 2)] {
            pending.push(ordinal, source, row);
        }
        assert_eq!(pending.len(), 6);
        assert_eq!(taken(&mut pending, Some(0)), vec![]);
        assert_eq!(taken(&mut pending, Some(2)), vec![(7, 0), (7, 3)]);
        assert_eq!(taken(&mut pending, Some(4)), vec![(7, 4), (7, 300)]);
        assert_eq!(pending.len(), 2);
        assert_eq!(taken(&mut pending, Some(6)), vec![(8, 1)]);
        pending.push(9, 8, 5);
        assert_eq!(taken(&mut pending, None), vec![(8, 2), (8, 5)]);
        assert_eq!((pending.len(), pending.memory()), (0, 0));
    }

    #[test]
    fn a_file_read_in_order_costs_about_two_bytes_a_row() {
        let mut pending = PendingRows::default();
        for i in 0..100_000u64 {
            pending.push(i, 1, i * 4 + i % 3);
        }
        assert!(pending.memory() < 100_000 * 3, "{} bytes", pending.memory());
        let rows = taken(&mut pending, Some(50_000));
        assert_eq!(rows.len(), 50_000);
        assert_eq!(rows[49_999], (1, 49_999 * 4 + 49_999 % 3));
        assert_eq!(taken(&mut pending, None).len(), 50_000);
    }
}
