//! Readers following live writers, and seeks by arrival time.

use super::*;

#[test]
fn reader_follows_a_live_writer_across_rotations() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::create(tmp.path(), 1).unwrap();
    const N: u64 = 3000;
    let mut reader = log.reader(0, StartAt::Earliest).unwrap();
    assert!(reader.next().unwrap().is_none());
    let writer_log = log.clone();
    let writer = std::thread::spawn(move || {
        let config = LogConfig { segment_bytes: 8 << 10, fsync: FsyncPolicy::Always };
        let mut w = writer_log.writer(0, &config).unwrap();
        for i in 0..N {
            w.append(format!("k{i}").as_bytes(), &payload_for(i), i as i64).unwrap();
            if i % 37 == 0 {
                w.flush().unwrap();
                std::thread::sleep(Duration::from_micros(300));
            }
        }
        w.close().unwrap();
    });
    let mut got = Vec::new();
    while (got.len() as u64) < N {
        match reader.next_wait(Duration::from_secs(20)).unwrap() {
            Some(r) => got.push(r),
            None => panic!("timed out after {} records", got.len()),
        }
    }
    writer.join().unwrap();
    check_records(&got, 0..N);
    assert!(segments(&log, 0).len() > 10, "the writer rotated while the reader followed");
    assert!(reader.next().unwrap().is_none());
    assert_eq!(reader.position(), N);
}

#[test]
fn shard_end_and_latest_while_a_writer_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::create(tmp.path(), 1).unwrap();
    const N: u64 = 2000;
    let writer_log = log.clone();
    let writer = std::thread::spawn(move || {
        let mut w = writer_log.writer(0, &cfg(4 << 10)).unwrap();
        for i in 0..N {
            w.append(format!("k{i}").as_bytes(), &payload_for(i), 0).unwrap();
            if i % 13 == 0 {
                w.flush().unwrap();
            }
        }
        w.close().unwrap();
    });
    let mut last_end = 0;
    let mut latest_readers = Vec::new();
    while last_end < N {
        let end = log.shard_end(0).unwrap();
        assert!(end >= last_end && end <= N, "{last_end} -> {end}");
        last_end = end;
        if latest_readers.len() < 20 {
            latest_readers.push(log.reader(0, StartAt::Latest).unwrap());
        }
    }
    writer.join().unwrap();
    // Scans that went on from the last one agree with a whole scan by a new handle.
    assert_eq!(log.shard_end(0).unwrap(), N);
    assert_eq!(Log::open(tmp.path()).unwrap().shard_end(0).unwrap(), N);
    for mut r in latest_readers {
        let from = r.position();
        let mut got = Vec::new();
        while let Some(rec) = r.next().unwrap() {
            got.push(rec);
        }
        check_records(&got, from..N);
    }
}

#[test]
fn read_from_arrival_time() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::create(tmp.path(), 1).unwrap();
    let mut w = log.writer(0, &cfg(512)).unwrap();
    // Arrival times 100, 100, 110, 110, 120, ... (each twice).
    for i in 0..200u64 {
        w.append(format!("k{i}").as_bytes(), &payload_for(i), 100 + (i / 2 * 10) as i64).unwrap();
    }
    w.close().unwrap();
    assert!(segments(&log, 0).len() > 10);
    let all = read_all(&log, 0, StartAt::Earliest).unwrap();
    for t in [i64::MIN, 0, 100, 101, 105, 110, 555, 560, 1090, 1095, 1100, 5000] {
        let got = read_all(&log, 0, StartAt::ArrivalTime(t)).unwrap();
        let first = all.iter().position(|r| r.arrival_ms >= t).unwrap_or(all.len());
        assert_eq!(got, all[first..], "t = {t}");
    }
}

#[test]
fn shard_end_rescans_a_segment_that_was_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let log = one_shard(tmp.path(), 100, 1 << 20);
    assert_eq!(log.shard_end(0).unwrap(), 100);
    // The log is created anew at the same place, shorter: the handle's remembered scan of the
    // old segment must not be trusted.
    fs::remove_dir_all(tmp.path()).unwrap();
    one_shard(tmp.path(), 10, 1 << 20);
    assert_eq!(log.shard_end(0).unwrap(), 10);
}

#[test]
fn frames_are_checked_with_crc32c() {
    // The CRC-32C check value (RFC 3720's polynomial): what every segment written so far holds.
    assert_eq!(segment::crc32c(b"123456789"), 0xE306_9283);
}
