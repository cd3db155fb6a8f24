//! Which buffers close as idle at a row (`--partition-idle`), found without looking at every
//! open buffer.
//!
//! A buffer closes once its shard's event time reaches its closing's `at_ms` *and* the shard's
//! reading order reaches its `at_ordinal` (see [`Closing`]). The pipeline checks a bound at
//! every row and looks for due buffers only when it is reached. The bound was once the least
//! time and the least ordinal over all of a shard's buffers, taken apart: in data out of time
//! order one buffer's time had come and another's ordinal had, so the bound was reached at once
//! and stayed reached, and every row looked at every open buffer (with 11,520 hour buffers that
//! was most of a run's CPU). Here each shard keeps its buffers' closings in two heaps:
//! 1. closings whose time has not come, by time: the least is when the next may come;
//! 2. closings whose time has come, by ordinal: the least is the next that may be due.
//!
//! The bound is the top of each. Entries are not updated when a buffer's closing changes or the
//! buffer goes (a row arrives, a flush): each popped entry is checked against the buffer's
//! closing of now. When the time passes the top of the first heap, the buffer's closing moves to
//! the second if its time has come, and goes back into the first, at its later time, if not;
//! when the ordinal passes the top of the second, the buffer closes if its closing is due (an
//! entry whose closing moved on is dropped: the new closing has an entry of its own).
//!
//! What keeps it exact: every open buffer whose time has not come has an entry in the first heap
//! at or before its time, and every one whose time has come has one in the second at its
//! ordinal. A row whose closing's time is still ahead pushes nothing when the buffer's previous
//! closing was also ahead and no later (its entry is at or before the new time), so the first
//! heap holds about one entry per open buffer, however many rows they get.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::buffer::{BufferKey, Closing};

/// One shard's closings (see the module's comment).
#[derive(Debug, Default)]
pub(super) struct IdleIndex {
    waiting_for_time: BinaryHeap<Reverse<(i64, BufferKey)>>,
    waiting_for_ordinal: BinaryHeap<Reverse<(u64, BufferKey)>>,
}

impl IdleIndex {
    /// Takes in that `key`'s closing changed from `previous` to `closing`, the shard's event
    /// time being `horizon`.
    pub(super) fn note(&mut self, key: BufferKey, previous: Closing, closing: Closing, horizon: i64) {
        if closing == Closing::NEVER {
            return;
        }
        if closing.at_ms <= horizon {
            self.waiting_for_ordinal.push(Reverse((closing.at_ordinal, key)));
        } else if previous == Closing::NEVER || previous.at_ms <= horizon || closing.at_ms < previous.at_ms {
            self.waiting_for_time.push(Reverse((closing.at_ms, key)));
        }
        // (Else `previous`'s time was ahead too, and no later: its entry stands for this one.)
    }

    /// True if a buffer may be due at this row: the shard's event time `horizon`, its reading
    /// order `ordinal`.
    pub(super) fn reached(&self, horizon: i64, ordinal: u64) -> bool {
        self.waiting_for_time.peek().is_some_and(|Reverse((ms, _))| horizon >= *ms)
            || self.waiting_for_ordinal.peek().is_some_and(|Reverse((at, _))| ordinal >= *at)
    }

    /// The buffers due at this row, each once, sorted: `current` gives a key's closing as it is
    /// now (None: no buffer open).
    pub(super) fn due(&mut self, horizon: i64, ordinal: u64, current: impl Fn(&BufferKey) -> Option<Closing>) -> Vec<BufferKey> {
        while let Some(Reverse((ms, key))) = self.waiting_for_time.peek().copied() {
            if ms > horizon {
                break;
            }
            self.waiting_for_time.pop();
            match current(&key) {
                Some(closing) if closing == Closing::NEVER => {}
                Some(closing) if closing.at_ms <= horizon => self.waiting_for_ordinal.push(Reverse((closing.at_ordinal, key))),
                // Its time moved on since this entry was made: wait for that.
                Some(closing) => self.waiting_for_time.push(Reverse((closing.at_ms, key))),
                None => {}
            }
        }
        let mut due = Vec::new();
        while let Some(Reverse((at, key))) = self.waiting_for_ordinal.peek().copied() {
            if at > ordinal {
                break;
            }
            self.waiting_for_ordinal.pop();
            // A closing that moved on since has an entry of its own (or its buffer is gone).
            if current(&key).is_some_and(|c| c.due(horizon, ordinal)) {
                due.push(key);
            }
        }
        due.sort_unstable();
        due.dedup();
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::{Granularity, Partition};

    /// Against the definition: at every row, the buffers due are those whose closing is due,
    /// over random closings that move as rows arrive and buffers that close or go.
    #[test]
    fn finds_exactly_the_due_buffers() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let keys: Vec<BufferKey> = (0..40).map(|hour| (Partition::of_millis(hour * 3_600_000, Granularity::Hour).unwrap(), 0)).collect();
        let mut closings: std::collections::BTreeMap<BufferKey, Closing> = Default::default();
        let mut index = IdleIndex::default();
        let mut horizon = 0i64;
        let mut closed = 0;
        for ordinal in 0..20_000u64 {
            if next(10) == 0 {
                horizon += next(50) as i64;
            }
            // A row for a random buffer: its closing moves later.
            let key = keys[next(keys.len() as u64) as usize];
            let previous = closings.get(&key).copied().unwrap_or(Closing::NEVER);
            let closing = Closing { at_ms: horizon.max(next(2_000) as i64) + next(3) as i64 * 100, at_ordinal: ordinal + next(500) };
            closings.insert(key, closing);
            index.note(key, previous, closing, horizon);
            // Sometimes a buffer is written by another trigger.
            if next(50) == 0 {
                closings.remove(&keys[next(keys.len() as u64) as usize]);
            }
            let expected: Vec<BufferKey> = closings.iter().filter(|(_, c)| c.due(horizon, ordinal)).map(|(k, _)| *k).collect();
            let found = if index.reached(horizon, ordinal) { index.due(horizon, ordinal, |k| closings.get(k).copied()) } else { Vec::new() };
            assert_eq!(found, expected, "row {ordinal}");
            closed += found.len();
            for key in found {
                closings.remove(&key);
            }
        }
        assert!(closed > 1_000, "the closings came due {closed} times");
    }

    /// Rows in no time order: the shard's time stays put while a buffer gets row after row,
    /// each moving its closing's ordinal on. One entry stands for all of them.
    #[test]
    fn a_buffer_getting_rows_holds_one_entry() {
        let key = (Partition::of_millis(0, Granularity::Hour).unwrap(), 0);
        let mut index = IdleIndex::default();
        let mut previous = Closing::NEVER;
        for ordinal in 0..10_000 {
            let closing = Closing { at_ms: 5_000, at_ordinal: ordinal + 100 };
            index.note(key, previous, closing, 1_000);
            previous = closing;
            assert!(!index.reached(1_000, ordinal));
        }
        assert_eq!((index.waiting_for_time.len(), index.waiting_for_ordinal.len()), (1, 0));
        // The time comes: due at the last row's ordinal + 100, not before.
        assert!(index.reached(5_000, 10_000));
        assert!(index.due(5_000, 10_000, |_| Some(previous)).is_empty());
        assert!(!index.reached(5_000, 10_098));
        assert_eq!(index.due(5_000, 10_099, |_| Some(previous)), vec![key]);
    }
}
