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

#[test]
fn without_merging_each_buffer_is_a_file_in_the_order_sealed() {
    let policy = FlushPolicy { rows: 1000, bytes: 1 << 30, interval: std::time::Duration::from_secs(60), max_memory: 1 << 26 };
    let files = files_of(sealed(), false, &policy);
    let one = |hour: u8, shard: u32, first: &str| (hour, vec![(shard, first.to_string())]);
    assert_eq!(shape(&files), vec![one(2, 1, "40"), one(1, 0, "5"), one(2, 0, "20"), one(2, 0, "9"), one(1, 3, "2")]);
}

#[test]
fn merging_puts_a_partitions_buffers_in_one_file_in_shard_and_position_order_up_to_the_flush_size() {
    let policy = FlushPolicy { rows: 1000, bytes: 1 << 30, interval: std::time::Duration::from_secs(60), max_memory: 1 << 26 };
    let files = files_of(sealed(), true, &policy);
    let expected = vec![(1, vec![(0, "5".to_string()), (3, "2".to_string())]), (2, vec![(0, "9".to_string()), (0, "20".to_string()), (1, "40".to_string())])];
    assert_eq!(shape(&files), expected);
    // 25 rows a file at most: hour 2's 30 rows go in two files, none over the limit.
    let policy = FlushPolicy { rows: 25, ..policy };
    let files = files_of(sealed(), true, &policy);
    let expected =
        vec![(1, vec![(0, "5".to_string()), (3, "2".to_string())]), (2, vec![(0, "9".to_string()), (0, "20".to_string())]), (2, vec![(1, "40".to_string())])];
    assert_eq!(shape(&files), expected);
    // And by bytes (100 a row): 1,500 bytes a file holds one buffer.
    let policy = FlushPolicy { rows: 1000, bytes: 1_500, ..policy };
    assert_eq!(files_of(sealed(), true, &policy).len(), 5);
    // A buffer over the limit alone is a file of its own.
    let policy = FlushPolicy { rows: 5, bytes: 1 << 30, ..policy };
    assert_eq!(files_of(sealed(), true, &policy).len(), 5);
    // Buffers of more than MERGE_MAX_BYTES together stay apart, whatever --flush-bytes.
    let policy = FlushPolicy { rows: 1000, ..policy };
    let mut large = sealed();
    large[0].1.bytes = MERGE_MAX_BYTES - 1_999; // with hour 2's other 2,000 bytes: one over
    let files = files_of(large, true, &policy);
    let expected =
        vec![(1, vec![(0, "5".to_string()), (3, "2".to_string())]), (2, vec![(0, "9".to_string()), (0, "20".to_string())]), (2, vec![(1, "40".to_string())])];
    assert_eq!(shape(&files), expected);
}

#[test]
fn a_commit_of_at_most_n_files_leaves_each_shards_later_buffers_for_the_next() {
    let policy = FlushPolicy { rows: 25, bytes: 1 << 30, interval: std::time::Duration::from_secs(60), max_memory: 1 << 26 };
    let waiting =
        |rest: &[(BufferKey, Buffer)]| -> Vec<(u8, u32, String)> { rest.iter().map(|((p, shard), b)| (p.hour, *shard, b.first_seq.to_string())).collect() };
    // Merged: hour 1's file and hour 2's first (shard 0's buffers) go, shard 1's waits.
    let (files, rest) = commit_files(sealed(), true, &policy, 2);
    assert_eq!(shape(&files).iter().map(|(hour, buffers)| (*hour, buffers.len())).collect::<Vec<_>>(), vec![(1, 2), (2, 2)]);
    assert_eq!(waiting(&rest), vec![(2, 1, "40".to_string())]);
    // Apart: the first two sealed go, the others wait in the order they were sealed.
    let (files, rest) = commit_files(sealed(), false, &policy, 2);
    assert_eq!(files.len(), 2);
    assert_eq!(waiting(&rest), vec![(2, 0, "20".to_string()), (2, 0, "9".to_string()), (1, 3, "2".to_string())]);
    // Room for all: nothing waits.
    assert!(commit_files(sealed(), true, &policy, usize::MAX).1.is_empty());
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

/// What a partition's sealed buffers meet in the other shards (an owned [`Elsewhere`]):
/// `open` buffers, and for each shard its event time if it may still bring rows.
struct Others {
    open: std::collections::BTreeMap<BufferKey, Buffer>,
    coming: Vec<Option<i64>>,
    by_time: bool,
}

impl Others {
    fn view(&self) -> Elsewhere<'_> {
        Elsewhere { open: &self.open, coming: self.coming.clone(), by_time: self.by_time }
    }
}

fn elsewhere(open: &[BufferKey], coming: Vec<Option<i64>>, by_time: bool) -> Others {
    Others { open: open.iter().map(|key| (*key, buffer(100, 1))).collect(), coming, by_time }
}

/// (hour, shard, times held) of each buffer held back, and of each left to commit.
type Decided = (Vec<(u8, u32, u32)>, Vec<(u8, u32, u32)>);

fn hold(sealed: Sealed, others: &Others, room: usize) -> Decided {
    let (held, rest) = held_back(sealed, &others.view(), room);
    let list = |buffers: Sealed| buffers.into_iter().map(|((p, shard), b)| (p.hour, shard, b.held)).collect();
    (list(held), list(rest))
}

#[test]
fn a_partition_waits_while_another_shard_holds_it_open_or_has_not_passed_its_end() {
    let end = hour(1).span_ms().unwrap().1;
    let one = || vec![((hour(1), 0), buffer(5, 10))];
    let (held, goes) = ((vec![(1, 0, 1)], vec![]), (vec![], vec![(1, 0, 0)]));
    // Open in shard 1: the buffer waits, whatever the shards' times.
    assert_eq!(hold(one(), &elsewhere(&[(hour(1), 1)], vec![None, None], false), usize::MAX), held);
    // A later buffer of its own shard, or another hour open elsewhere, does not count.
    assert_eq!(hold(one(), &elsewhere(&[(hour(1), 0), (hour(2), 1)], vec![None, None], false), usize::MAX), goes);
    // Nothing open elsewhere, and partitions do not close by event time: it goes.
    assert_eq!(hold(one(), &elsewhere(&[], vec![Some(0), Some(0)], false), usize::MAX), goes);
    // By event time, a shard before the hour's end may still bring it rows: it waits ...
    assert_eq!(hold(one(), &elsewhere(&[], vec![Some(end + 5), Some(end - 1)], true), usize::MAX), held);
    // ... and not once that shard has reached the end, nor if no shard but its own is
    // behind, nor for a shard that brings no more rows (another worker's, read to its end).
    assert_eq!(hold(one(), &elsewhere(&[], vec![Some(end + 5), Some(end)], true), usize::MAX), goes);
    assert_eq!(hold(one(), &elsewhere(&[], vec![Some(end - 1), Some(end)], true), usize::MAX), goes);
    assert_eq!(hold(one(), &elsewhere(&[], vec![Some(end + 5), None], true), usize::MAX), goes);
}

#[test]
fn only_shards_read_and_not_read_to_their_end_may_still_bring_rows() {
    // Shard 0 is read, 1 is read to its end, 2 is not read here (another worker's, or a
    // closed parent), 3 is read.
    assert_eq!(coming(&[5, 5, 0, 1], &[false, true, false, false], &[10, 20, 30, 40]), vec![Some(10), None, None, Some(40)]);
}

#[test]
fn a_partitions_buffers_wait_or_go_together() {
    // Hour 1 is open in shard 1, and has two sealed buffers of shard 0: the later one is
    // over MERGE_MAX_BYTES and cannot wait, so the earlier one goes too. Committed alone,
    // the later one would move shard 0's written position past the earlier one's rows.
    let mut large = buffer(20, 10);
    large.bytes = MERGE_MAX_BYTES + 1;
    let sealed = vec![((hour(1), 0), buffer(5, 10)), ((hour(2), 0), buffer(7, 10)), ((hour(1), 0), large)];
    let open = elsewhere(&[(hour(1), 1), (hour(2), 1)], vec![None, None], false);
    assert_eq!(hold(sealed, &open, usize::MAX), (vec![(2, 0, 1)], vec![(1, 0, 0), (1, 0, 0)]));
    // Likewise a buffer that has waited its last commit takes a newer one with it.
    let mut tired = buffer(5, 10);
    tired.held = HOLD_COMMITS;
    let sealed = vec![((hour(1), 0), tired), ((hour(1), 0), buffer(20, 10))];
    assert_eq!(hold(sealed, &open, usize::MAX), (vec![], vec![(1, 0, HOLD_COMMITS), (1, 0, 0)]));
}

#[test]
fn a_buffer_waits_for_at_most_hold_commits_commits() {
    let others = elsewhere(&[(hour(1), 1)], vec![None, None], false);
    let elsewhere = others.view();
    let (mut sealed, mut waited) = (vec![((hour(1), 0), buffer(5, 10))], 0);
    for _ in 0..2 * HOLD_COMMITS {
        let (held, rest) = held_back(sealed, &elsewhere, usize::MAX);
        if held.is_empty() {
            assert_eq!(rest.iter().map(|(_, b)| b.held).collect::<Vec<_>>(), vec![HOLD_COMMITS]);
            break;
        }
        (sealed, waited) = (held, waited + 1);
    }
    assert_eq!(waited, HOLD_COMMITS);
}

#[test]
fn buffers_held_back_together_need_at_most_the_room_given() {
    let sealed = || {
        [(1, 0), (2, 0), (3, 0)]
            .map(|(h, shard)| {
                let mut b = buffer(5, 10);
                b.memory = 1_000;
                ((hour(h), shard), b)
            })
            .into_iter()
            .collect()
    };
    let open = elsewhere(&[(hour(1), 1), (hour(2), 1), (hour(3), 1)], vec![None, None], false);
    // Room for two: hours 1 and 2 wait, hour 3 goes.
    assert_eq!(hold(sealed(), &open, 2_500), (vec![(1, 0, 1), (2, 0, 1)], vec![(3, 0, 0)]));
    assert_eq!(hold(sealed(), &open, 3_000).0.len(), 3);
    assert_eq!(hold(sealed(), &open, 999).0.len(), 0);
}
