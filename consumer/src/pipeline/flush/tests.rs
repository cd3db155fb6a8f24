//! Unit tests of the flush: grouping and naming merged files, and which buffers wait.

use super::*;
use crate::partition::Granularity;

fn hour(hour: u8) -> Partition {
    Partition { year: 2024, month: 3, day: 1, hour, granularity: Granularity::Hour }
}

fn buffer(first: u64, rows: u64) -> Buffer {
    let mut buffer = Buffer::new(first.to_string().parse().unwrap(), None, 0, 0);
    (buffer.rows, buffer.bytes) = (rows, rows * 100);
    buffer
}

/// Each file as (hour, [(shard, first position)]).
fn shape(files: &[(Partition, FileBuffers)]) -> Vec<(u8, Vec<(u32, String)>)> {
    files.iter().map(|(p, buffers)| (p.hour, buffers.iter().map(|(s, b)| (*s, b.first_seq.to_string())).collect())).collect()
}

fn sealed() -> Vec<(BufferKey, Buffer)> {
    // Sealed in this order: hour 2 of shard 1, hour 1 of shard 0, hour 2 of shard 0 twice
    // (cut by a row count, then sealed again), hour 1 of shard 3. Positions of different
    // shards are unrelated: shard 3's in hour 1 is lower than shard 0's.
    vec![
        ((hour(2), 1), buffer(40, 10)),
        ((hour(1), 0), buffer(5, 10)),
        ((hour(2), 0), buffer(20, 10)),
        ((hour(2), 0), buffer(9, 10)),
        ((hour(1), 3), buffer(2, 10)),
    ]
}

/// Shards named against their indexes' order: files go by name.
fn shards() -> Vec<String> {
    ["shard-a", "shard-b", "shard-c", "shard-0"].map(String::from).to_vec()
}

fn cut(mut sealed: Sealed, cut: Cut) -> Sealed {
    sealed.iter_mut().for_each(|(_, b)| b.cut = cut);
    sealed
}

#[test]
fn without_merging_each_buffer_is_a_file_in_the_order_sealed() {
    let policy = FlushPolicy { rows: 1000, bytes: 1 << 30, interval: std::time::Duration::from_secs(60), max_memory: 1 << 26 };
    let files = files_of(cut(sealed(), Cut::Together), &shards(), false, &policy);
    let one = |hour: u8, shard: u32, first: &str| (hour, vec![(shard, first.to_string())]);
    assert_eq!(shape(&files), vec![one(2, 1, "40"), one(1, 0, "5"), one(2, 0, "20"), one(2, 0, "9"), one(1, 3, "2")]);
}

#[test]
fn merging_puts_a_partitions_buffers_cut_alike_in_one_file_in_shard_name_and_position_order_up_to_the_flush_size() {
    let policy = FlushPolicy { rows: 1000, bytes: 1 << 30, interval: std::time::Duration::from_secs(60), max_memory: 1 << 26 };
    let s = |shard: u32, first: &str| (shard, first.to_string());
    for kind in [Cut::OnTime, Cut::Together] {
        let files = files_of(cut(sealed(), kind), &shards(), true, &policy);
        // Shard 3 is "shard-0": first by name.
        assert_eq!(shape(&files), vec![(1, vec![s(3, "2"), s(0, "5")]), (2, vec![s(0, "9"), s(0, "20"), s(1, "40")])]);
    }
    // Cut apart by rows or bytes: each a file of its own.
    assert_eq!(files_of(cut(sealed(), Cut::Alone), &shards(), true, &policy).len(), 5);
    // Cut otherwise: apart. Hour 2's buffers of shard 0 closed on time go together, shard 1's
    // cut by the clock goes with those closed after a late row (none here); hour 1's cut by
    // a row count alone, beside shard 3's closed after a late row.
    let mut mixed = cut(sealed(), Cut::OnTime);
    mixed[0].1.cut = Cut::Together;
    mixed[1].1.cut = Cut::Alone;
    mixed[4].1.cut = Cut::Late;
    let files = files_of(mixed, &shards(), true, &policy);
    assert_eq!(shape(&files), vec![(1, vec![s(0, "5")]), (1, vec![s(3, "2")]), (2, vec![s(0, "9"), s(0, "20")]), (2, vec![s(1, "40")])]);
    let mut late = cut(sealed(), Cut::Late);
    late[0].1.cut = Cut::Together;
    let files = files_of(late, &shards(), true, &policy);
    assert_eq!(shape(&files), vec![(1, vec![s(3, "2"), s(0, "5")]), (2, vec![s(0, "9"), s(0, "20"), s(1, "40")])]);
    // 25 rows a file at most: hour 2's 30 rows go in two files, none over the limit.
    let policy = FlushPolicy { rows: 25, ..policy };
    let files = files_of(cut(sealed(), Cut::Together), &shards(), true, &policy);
    assert_eq!(shape(&files), vec![(1, vec![s(3, "2"), s(0, "5")]), (2, vec![s(0, "9"), s(0, "20")]), (2, vec![s(1, "40")])]);
    // And by bytes (100 a row): 1,500 bytes a file holds one buffer.
    let policy = FlushPolicy { rows: 1000, bytes: 1_500, ..policy };
    assert_eq!(files_of(cut(sealed(), Cut::Together), &shards(), true, &policy).len(), 5);
    // A buffer over the limit alone is a file of its own.
    let policy = FlushPolicy { rows: 5, bytes: 1 << 30, ..policy };
    assert_eq!(files_of(cut(sealed(), Cut::Together), &shards(), true, &policy).len(), 5);
    // Buffers of more than MERGE_MAX_BYTES together stay apart, whatever --flush-bytes.
    let policy = FlushPolicy { rows: 1000, ..policy };
    let mut large = cut(sealed(), Cut::Together);
    large[0].1.bytes = MERGE_MAX_BYTES - 1_999; // with hour 2's other 2,000 bytes: one over
    let files = files_of(large, &shards(), true, &policy);
    assert_eq!(shape(&files), vec![(1, vec![s(3, "2"), s(0, "5")]), (2, vec![s(0, "9"), s(0, "20")]), (2, vec![s(1, "40")])]);
}

#[test]
fn a_commit_of_at_most_n_files_leaves_each_shards_later_buffers_for_the_next() {
    let policy = FlushPolicy { rows: 25, bytes: 1 << 30, interval: std::time::Duration::from_secs(60), max_memory: 1 << 26 };
    let waiting =
        |rest: &[(BufferKey, Buffer)]| -> Vec<(u8, u32, String)> { rest.iter().map(|((p, shard), b)| (p.hour, *shard, b.first_seq.to_string())).collect() };
    // Merged: hour 1's file, then hour 2's two files together (a partition's files go in one
    // commit), though two files were asked for; with one, hour 2 waits whole.
    let (files, rest) = commit_files(cut(sealed(), Cut::Together), &shards(), true, &policy, 2);
    assert_eq!(shape(&files).iter().map(|(hour, buffers)| (*hour, buffers.len())).collect::<Vec<_>>(), vec![(1, 2), (2, 2), (2, 1)]);
    assert!(rest.is_empty());
    let (files, rest) = commit_files(cut(sealed(), Cut::Together), &shards(), true, &policy, 1);
    assert_eq!(files.len(), 1);
    assert_eq!(waiting(&rest), vec![(2, 0, "9".to_string()), (2, 0, "20".to_string()), (2, 1, "40".to_string())]);
    // Apart: the first two sealed go, the others wait in the order they were sealed.
    let (files, rest) = commit_files(sealed(), &shards(), false, &policy, 2);
    assert_eq!(files.len(), 2);
    assert_eq!(waiting(&rest), vec![(2, 0, "20".to_string()), (2, 0, "9".to_string()), (1, 3, "2".to_string())]);
    // Room for all: nothing waits.
    assert!(commit_files(sealed(), &shards(), true, &policy, usize::MAX).1.is_empty());
}

#[test]
fn a_merged_files_name_is_a_function_of_its_buffers_and_no_shards_file_name() {
    let positions = |a: u64, b: u64| -> (SequenceNumber, SequenceNumber) { (a.to_string().parse().unwrap(), b.to_string().parse().unwrap()) };
    let (a, b) = (positions(1, 9), positions(3, 4));
    let name = crate::buffer::merged_file_name([("shard-0", a.0, a.1), ("shard-1", b.0, b.1)]);
    assert_eq!(name, crate::buffer::merged_file_name([("shard-0", a.0, a.1), ("shard-1", b.0, b.1)]));
    assert_ne!(name, crate::buffer::merged_file_name([("shard-0", a.0, a.1), ("shard-1", b.0, positions(3, 5).1)]));
    assert_ne!(name, crate::buffer::merged_file_name([("shard-1", b.0, b.1), ("shard-0", a.0, a.1)]));
    assert!(name.starts_with("part-") && name.ends_with(".parquet") && name.len() == "part-.parquet".len() + 32, "{name}");
    // Compaction and the SQS rebuild read a shard out of a file's name: none here.
    assert_eq!(crate::buffer::parse_file_name(&name), None);
}

const IDLE: i64 = 3_600_000;

/// What a partition's sealed buffers meet in the other shards (an owned [`Elsewhere`]):
/// `open` buffers (each opened when its shard's time stood at the time given), and for each
/// shard its event time if it may still bring rows.
struct Others {
    open: std::collections::BTreeMap<BufferKey, Buffer>,
    coming: Vec<Option<i64>>,
    interval: std::time::Duration,
}

impl Others {
    fn view(&self) -> Elsewhere<'_> {
        Elsewhere { open: &self.open, coming: self.coming.clone(), idle_ms: IDLE, interval: self.interval }
    }
}

fn elsewhere(open: &[(BufferKey, i64)], coming: Vec<Option<i64>>) -> Others {
    let open = open.iter().map(|(key, horizon_before)| (*key, Buffer::new(100u64.into(), None, 0, *horizon_before))).collect();
    Others { open, coming, interval: std::time::Duration::from_secs(60) }
}

/// (hour, shard) of each buffer held back, and of each left to commit.
type Decided = (Vec<(u8, u32)>, Vec<(u8, u32)>);

fn hold(sealed: Sealed, others: &Others) -> Decided {
    let (held, rest) = held_back(sealed, &others.view());
    let list = |buffers: Sealed| buffers.into_iter().map(|((p, shard), _)| (p.hour, shard)).collect();
    (list(held), list(rest))
}

#[test]
fn a_buffer_closed_on_time_waits_until_every_shard_has_closed_its_partition_on_time_or_will_not() {
    let closes = hour(1).span_ms().unwrap().1 + IDLE;
    let one = || cut(vec![((hour(1), 0), buffer(5, 10))], Cut::OnTime);
    let (held, goes) = ((vec![(1, 0)], vec![]), (vec![], vec![(1, 0)]));
    // Shard 1's time has not passed where the hour's on-time buffers close: it may still close
    // one. It waits.
    assert_eq!(hold(one(), &elsewhere(&[], vec![Some(closes), Some(closes - 1)])), held);
    // Passed, with nothing open there (or the hour open there after a late row): it goes.
    assert_eq!(hold(one(), &elsewhere(&[], vec![Some(closes), Some(closes)])), goes);
    assert_eq!(hold(one(), &elsewhere(&[((hour(1), 1), closes)], vec![Some(closes), Some(closes)])), goes);
    // Passed, but the hour is still open there on time (its buffer closes with the events
    // its shard delivers after its last row): it waits.
    assert_eq!(hold(one(), &elsewhere(&[((hour(1), 1), closes - 1)], vec![Some(closes), Some(closes + 5)])), held);
    // Another hour open elsewhere, or a later buffer of its own shard (late: its time had
    // passed the closing to close this one), does not count.
    assert_eq!(hold(one(), &elsewhere(&[((hour(2), 1), 0), ((hour(1), 0), closes)], vec![Some(closes), Some(closes)])), goes);
    // Shards that bring no more rows (another worker's, read to their end) do not count.
    assert_eq!(hold(one(), &elsewhere(&[((hour(1), 1), 0)], vec![Some(closes), None])), goes);
    // Nor does any shard once the buffer has been open for --flush-interval.
    let mut impatient = elsewhere(&[], vec![Some(closes), Some(0)]);
    impatient.interval = std::time::Duration::ZERO;
    assert_eq!(hold(one(), &impatient), goes);
    // Buffers cut by rows, bytes or the clock never wait.
    for kind in [Cut::Alone, Cut::Together] {
        let sealed = cut(one(), kind);
        assert_eq!(hold(sealed, &elsewhere(&[], vec![Some(closes), Some(0)])), goes);
    }
    // One closed as idle after a late row waits for the end, whatever the other shards do
    // (nothing is bound to close with it), or for --flush-interval.
    let late = || cut(one(), Cut::Late);
    assert_eq!(hold(late(), &elsewhere(&[], vec![Some(closes), Some(closes)])), held);
    assert_eq!(hold(late(), &elsewhere(&[], vec![Some(closes), None])), held);
    assert_eq!(hold(late(), &impatient), goes);
}

#[test]
fn a_late_row_makes_its_buffer_go_alone() {
    let end = hour(1).span_ms().unwrap().1;
    let idle = Some(std::time::Duration::from_millis(IDLE as u64));
    assert!(!late(&hour(1), end + IDLE - 1, idle));
    assert!(late(&hour(1), end + IDLE, idle));
    assert!(!late(&hour(1), i64::MIN, idle), "no time known yet");
    assert!(!late(&hour(1), end + 10 * IDLE, None), "partitions do not close by time");
}

#[test]
fn only_shards_read_and_not_read_to_their_end_may_still_bring_rows() {
    // Shard 0 is read, 1 is read to its end, 2 is not read here (another worker's, or a
    // closed parent), 3 is read, 4 not yet by this run but before (a restart: its time was
    // committed).
    let none = i64::MIN;
    assert_eq!(coming(&[5, 5, 0, 1, 0], &[false, true, false, false, false], &[10, 20, none, 40, 50]), vec![Some(10), None, None, Some(40), Some(50)]);
}

#[test]
fn a_partitions_buffers_wait_or_go_together() {
    // Hour 1 has a buffer of shard 0 closed on time and a later one cut by a row count:
    // that one waits too. Committed alone, it would move shard 0's written position past
    // the earlier one's rows. Hour 2's cut by a row count goes.
    let closes = hour(1).span_ms().unwrap().1 + IDLE;
    let mut sealed = vec![((hour(1), 0), buffer(5, 10)), ((hour(2), 0), buffer(7, 10)), ((hour(1), 0), buffer(20, 10))];
    sealed[0].1.cut = Cut::OnTime;
    let others = elsewhere(&[], vec![Some(closes), Some(0)]);
    assert_eq!(hold(sealed, &others), (vec![(1, 0), (1, 0)], vec![(2, 0)]));
}
