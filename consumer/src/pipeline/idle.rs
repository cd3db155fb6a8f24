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
//! The bound is the top of each. When the time passes the top of the first, those closings move
//! to the second; when the ordinal passes the top of the second, each popped closing is checked
//! against the buffer's current one, and the buffer closes if that is due. Heaps are not updated
//! when a buffer's closing changes or the buffer goes (a row arrives, a flush): the entry left
//! behind is found stale when popped. A row pushes an entry only when its closing's time differs
//! from the buffer's previous one (or has come already), so the heap of times holds about one
//! entry per open buffer in data out of order, where that time stays ahead of the shard's.

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
        } else if previous == Closing::NEVER || previous.at_ms != closing.at_ms {
            // (The same time still ahead: the entry `previous` made is still in the heap, and
            // when the time comes, the buffer's closing of then is what moves on.)
            self.waiting_for_time.push(Reverse((closing.at_ms, key)));
        }
    }

    /// True if a buffer may be due at this row: the shard's event time `horizon`, its reading
    /// order `ordinal`.
    pub(super) fn reached(&self, horizon: i64, ordinal: u64) -> bool {
        self.waiting_for_time.peek().is_some_and(|Reverse((ms, _))| horizon >= *ms)
            || self.waiting_for_ordinal.peek().is_some_and(|Reverse((at, _))| ordinal >= *at)
    }

    /// The buffers due at this row, each once, in no particular order: `current` gives a key's
    /// closing as it is now (None: no buffer open).
    pub(super) fn due(&mut self, horizon: i64, ordinal: u64, current: impl Fn(&BufferKey) -> Option<Closing>) -> Vec<BufferKey> {
        while let Some(Reverse((ms, key))) = self.waiting_for_time.peek().copied() {
            if ms > horizon {
                break;
            }
            self.waiting_for_time.pop();
            if let Some(closing) = current(&key).filter(|c| *c != Closing::NEVER && c.at_ms <= horizon) {
                self.waiting_for_ordinal.push(Reverse((closing.at_ordinal, key)));
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
}
