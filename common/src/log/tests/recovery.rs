//! Torn tails are repaired; damage anywhere else is reported.

use super::*;

fn check_torn_tail_recovery(damage: impl FnOnce(&Path, u64), cut: u64, resume: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let log = one_shard(tmp.path(), 10, 1 << 20);
    let seg = segments(&log, 0).pop().unwrap();
    let clean_len = fs::metadata(&seg).unwrap().len();
    damage(&seg, clean_len);
    let damaged_len = fs::metadata(&seg).unwrap().len();

    let (w, logs) = with_captured_logs(|| log.writer(0, &cfg(1 << 20)));
    let mut w = w.unwrap();
    let warning = logs.iter().find(|l| l.starts_with("WARN")).expect("a warning about the torn tail");
    assert!(warning.contains(&seg.display().to_string()), "{warning}");
    assert!(warning.contains(&format!("bytes_cut={cut}")), "{warning}");
    assert!(warning.contains(&format!("offset={}", damaged_len - cut)), "{warning}");
    assert_eq!(fs::metadata(&seg).unwrap().len(), damaged_len - cut);

    assert_eq!(w.next_seq(), resume);
    check_records(&read_all(&log, 0, StartAt::Earliest).unwrap(), 0..resume);
    for i in resume..resume + 3 {
        assert_eq!(w.append(format!("k{i}").as_bytes(), &payload_for(i), 0).unwrap(), i);
    }
    w.close().unwrap();
    check_records(&read_all(&log, 0, StartAt::Earliest).unwrap(), 0..resume + 3);
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
}

fn set_len(path: &Path, len: u64) {
    OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

#[test]
fn torn_tail_cut_mid_record() {
    let last = frame_len(b"k9", &payload_for(9));
    // The file now ends 5 bytes short of the last record's end.
    check_torn_tail_recovery(|p, len| set_len(p, len - 5), last - 5, 9);
}

#[test]
fn torn_tail_cut_inside_frame_prefix() {
    let last = frame_len(b"k9", &payload_for(9));
    check_torn_tail_recovery(|p, len| set_len(p, len - last + 3), 3, 9);
}

#[test]
fn torn_tail_of_zero_bytes() {
    check_torn_tail_recovery(|p, _| append_bytes(p, &[0; 4096]), 4096, 10);
}

#[test]
fn torn_tail_partial_frame_followed_by_zeros() {
    let last = frame_len(b"k9", &payload_for(9));
    check_torn_tail_recovery(
        |p, len| {
            set_len(p, len - 10);
            append_bytes(p, &[0; 10]);
        },
        last,
        9,
    );
}

#[test]
fn torn_tail_crc_mismatch_in_last_frame() {
    let last = frame_len(b"k9", &payload_for(9));
    check_torn_tail_recovery(|p, len| flip_byte(p, len - 1), last, 9);
}

#[test]
fn empty_or_header_only_last_segment_after_crash() {
    for contents in [&b""[..], &b"KLO"[..], &segment::MAGIC[..], &[0u8; 8][..]] {
        let tmp = tempfile::tempdir().unwrap();
        let log = one_shard(tmp.path(), 10, 1 << 20);
        // A crash right after rotation created the next segment.
        let next = segment_path(&meta::shard_dir(log.dir(), 0), 10);
        fs::write(&next, contents).unwrap();
        assert_eq!(log.shard_end(0).unwrap(), 10);
        // A reader waits at the empty segment rather than failing.
        check_records(&read_all(&log, 0, StartAt::Earliest).unwrap(), 0..10);

        let mut w = log.writer(0, &cfg(1 << 20)).unwrap();
        assert_eq!(w.next_seq(), 10);
        assert_eq!(w.append(b"k10", &payload_for(10), 0).unwrap(), 10);
        w.close().unwrap();
        let all = read_all(&log, 0, StartAt::Earliest).unwrap();
        check_records(&all, 0..11);
        assert_eq!(all[10].arrival_ms, 1009, "arrival continues from the previous segment");
        assert_eq!(fs::read(&next).unwrap()[..8], segment::MAGIC);
    }
}

#[test]
fn reader_waits_at_torn_tail_and_resumes_after_recovery() {
    let tmp = tempfile::tempdir().unwrap();
    let log = one_shard(tmp.path(), 10, 1 << 20);
    let seg = segments(&log, 0).pop().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    set_len(&seg, len - 7);
    append_bytes(&seg, b"garbage");
    flip_byte(&seg, len - 20);

    let mut reader = log.reader(0, StartAt::Earliest).unwrap();
    for i in 0..9 {
        assert_eq!(reader.next().unwrap().unwrap().seq, i);
    }
    assert!(reader.next().unwrap().is_none(), "a torn tail reads as not yet written");
    assert_eq!(reader.position(), 9);

    let mut w = log.writer(0, &cfg(1 << 20)).unwrap();
    assert_eq!(w.append(b"new", b"record", 0).unwrap(), 9);
    w.flush().unwrap();
    let r = reader.next().unwrap().unwrap();
    assert_eq!((r.seq, &r.key[..], &r.payload[..]), (9, &b"new"[..], &b"record"[..]));
}

#[test]
fn corruption_in_the_middle_is_reported_by_reader_and_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let log = one_shard(tmp.path(), 10, 1 << 20);
    let seg = segments(&log, 0).pop().unwrap();
    // Inside the payload of record 2 of 10.
    let rec2 = HEADER_LEN + frame_len(b"k0", &payload_for(0)) + frame_len(b"k1", &payload_for(1));
    flip_byte(&seg, rec2 + 30);

    let mut reader = log.reader(0, StartAt::Earliest).unwrap();
    assert_eq!(reader.next().unwrap().unwrap().seq, 0);
    assert_eq!(reader.next().unwrap().unwrap().seq, 1);
    let (path, offset, reason) = corrupt_at(reader.next().unwrap_err());
    assert_eq!((path.as_path(), offset), (seg.as_path(), rec2));
    assert!(reason.contains("crc"), "{reason}");
    // Seeking past the damage still has to read through it.
    assert!(matches!(read_all(&log, 0, StartAt::AtSequence(5)), Err(LogError::Corrupt { .. })));

    let (path, offset, _) = corrupt_at(log.writer(0, &cfg(1 << 20)).unwrap_err());
    assert_eq!((path.as_path(), offset), (seg.as_path(), rec2));
    let msg = LogError::Corrupt { path, offset, reason }.to_string();
    assert!(msg.contains(&seg.display().to_string()) && msg.contains(&rec2.to_string()), "{msg}");
}

#[test]
fn damaged_length_field_is_corruption_not_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let log = one_shard(tmp.path(), 10, 1 << 20);
    let seg = segments(&log, 0).pop().unwrap();
    let rec3: u64 = HEADER_LEN + (0..3).map(|i| frame_len(format!("k{i}").as_bytes(), &payload_for(i))).sum::<u64>();
    // frame_len's high byte: the frame now claims to run far past the end of the file.
    flip_byte(&seg, rec3 + 2);
    let (path, offset, reason) = corrupt_at(log.writer(0, &cfg(1 << 20)).unwrap_err());
    assert_eq!((path.as_path(), offset), (seg.as_path(), rec3));
    assert!(reason.contains("sequence number 4"), "{reason}");
    assert!(fs::metadata(&seg).unwrap().len() > rec3 + 100, "nothing was truncated");
}

#[test]
fn damage_in_a_non_last_segment_is_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let log = one_shard(tmp.path(), 100, 1024);
    let segs = segments(&log, 0);
    assert!(segs.len() > 3);
    // A partial frame at the end of a segment that has a successor.
    let len = fs::metadata(&segs[1]).unwrap().len();
    set_len(&segs[1], len - 4);
    let (path, offset, reason) = corrupt_at(read_all(&log, 0, StartAt::Earliest).unwrap_err());
    assert_eq!(path, segs[1]);
    assert!(offset < len - 4 && reason.contains("not the last"), "{offset} {reason}");
    // The writer does not read old segments, so it opens; readers keep reporting.
    drop(log.writer(0, &cfg(1024)).unwrap());

    // A CRC error at the very end of a non-last segment is not a torn write either.
    let tmp = tempfile::tempdir().unwrap();
    let log = one_shard(tmp.path(), 100, 1024);
    let segs = segments(&log, 0);
    flip_byte(&segs[0], fs::metadata(&segs[0]).unwrap().len() - 1);
    let (path, _, reason) = corrupt_at(read_all(&log, 0, StartAt::Earliest).unwrap_err());
    assert_eq!(path, segs[0]);
    assert!(reason.contains("crc"), "{reason}");
}

#[test]
fn missing_segment_is_a_sequence_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let log = one_shard(tmp.path(), 100, 1024);
    let segs = segments(&log, 0);
    fs::remove_file(&segs[2]).unwrap();
    let (path, _, reason) = corrupt_at(read_all(&log, 0, StartAt::Earliest).unwrap_err());
    assert_eq!(path, segs[3]);
    assert!(reason.contains("previous one ends"), "{reason}");
}
