use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;

use super::segment::{FIXED_BODY, FRAME_PREFIX, HEADER_LEN, list_segments, segment_path};
use super::*;

mod follow;
mod recovery;

fn cfg(segment_bytes: u64) -> LogConfig {
    LogConfig { segment_bytes, fsync: FsyncPolicy::Never }
}

fn payload_for(i: u64) -> Vec<u8> {
    format!("payload-{i}-").repeat((i % 7 + 1) as usize).into_bytes()
}

fn frame_len(key: &[u8], payload: &[u8]) -> u64 {
    (FRAME_PREFIX + FIXED_BODY + key.len() + payload.len()) as u64
}

/// Everything readable now, stopping at the tail.
fn read_all(log: &Log, shard: u32, start: StartAt) -> Result<Vec<Record>, LogError> {
    let mut reader = log.reader(shard, start)?;
    let mut out = Vec::new();
    while let Some(r) = reader.next()? {
        out.push(r);
    }
    Ok(out)
}

fn segments(log: &Log, shard: u32) -> Vec<PathBuf> {
    let dir = meta::shard_dir(log.dir(), shard);
    list_segments(&dir).unwrap().into_iter().map(|b| segment_path(&dir, b)).collect()
}

/// One shard with `n` records (key `k{i}`, arrival `1000 + i`), closed cleanly.
fn one_shard(dir: &Path, n: u64, segment_bytes: u64) -> Log {
    let log = Log::create(dir, 1).unwrap();
    let mut w = log.writer(0, &cfg(segment_bytes)).unwrap();
    for i in 0..n {
        assert_eq!(w.append(format!("k{i}").as_bytes(), &payload_for(i), 1000 + i as i64).unwrap(), i);
    }
    w.close().unwrap();
    log
}

fn check_records(records: &[Record], seqs: std::ops::Range<u64>) {
    assert_eq!(records.len() as u64, seqs.end - seqs.start);
    for (r, i) in records.iter().zip(seqs) {
        assert_eq!(r.seq, i);
        assert_eq!(r.key, format!("k{i}").as_bytes());
        assert_eq!(r.payload, payload_for(i));
    }
}

fn corrupt_at(err: LogError) -> (PathBuf, u64, String) {
    match err {
        LogError::Corrupt { path, offset, reason } => (path, offset, reason),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// Captures `tracing` events (as "LEVEL field=value ...") on the current thread.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = format!("{} ", event.metadata().level());
        event.record(&mut Fields(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn with_captured_logs<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let capture = Capture::default();
    let out = tracing::subscriber::with_default(capture.clone(), f);
    let lines = capture.0.lock().unwrap().clone();
    (out, lines)
}

#[test]
fn round_trip_several_shards_and_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::create(tmp.path(), 3).unwrap();
    let mut w = log.writers(&cfg(2048)).unwrap();
    type Shard = Vec<(u64, Vec<u8>, Vec<u8>)>;
    let mut expected: Vec<Shard> = vec![Vec::new(); 3];
    for i in 0..3000u64 {
        let key = format!("key-{i}").into_bytes();
        let payload = payload_for(i);
        let (shard, seq) = w.append(&key, &payload, i as i64).unwrap();
        assert_eq!(shard, log.shard_for_key(&key));
        assert_eq!(seq, expected[shard as usize].len() as u64);
        expected[shard as usize].push((seq, key, payload));
        if i % 500 == 0 {
            w.flush().unwrap();
        }
    }
    w.close().unwrap();

    let log = Log::open(tmp.path()).unwrap();
    for shard in 0..3 {
        let want = &expected[shard as usize];
        assert!(want.len() > 500, "keys should spread over shards");
        assert!(segments(&log, shard).len() > 5, "small segments should rotate");
        assert_eq!(log.shard_end(shard).unwrap(), want.len() as u64);
        let got = read_all(&log, shard, StartAt::Earliest).unwrap();
        let got: Vec<_> = got.into_iter().map(|r| (r.seq, r.key, r.payload)).collect();
        assert_eq!(&got, want);
    }
}

#[test]
fn segments_are_named_by_first_sequence_number() {
    let tmp = tempfile::tempdir().unwrap();
    let log = one_shard(tmp.path(), 200, 1024);
    let dir = meta::shard_dir(log.dir(), 0);
    let bases = list_segments(&dir).unwrap();
    assert_eq!(bases[0], 0);
    for &b in &bases {
        let first = read_all(&log, 0, StartAt::AtSequence(b)).unwrap();
        assert_eq!(first[0].seq, b);
        assert!(segment_path(&dir, b).file_name().unwrap().to_str().unwrap().len() == 24);
    }
    // Every segment but the last has reached the size limit.
    for p in &segments(&log, 0)[..bases.len() - 1] {
        assert!(fs::metadata(p).unwrap().len() >= 1024);
    }
}

#[test]
fn reopened_writer_continues_sequence_and_arrival_times() {
    let tmp = tempfile::tempdir().unwrap();
    let log = one_shard(tmp.path(), 10, 1 << 20);
    let mut w = log.writer(0, &LogConfig::default()).unwrap();
    assert_eq!(w.next_seq(), 10);
    // Earlier than the last stored arrival (1009): clamped so arrival never decreases.
    assert_eq!(w.append(b"k10", &payload_for(10), 5).unwrap(), 10);
    drop(w); // Drop writes the buffer (no fsync)
    let all = read_all(&log, 0, StartAt::Earliest).unwrap();
    check_records(&all, 0..11);
    assert_eq!(all[10].arrival_ms, 1009);
}

#[test]
fn oversized_records_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::create(tmp.path(), 1).unwrap();
    let mut w = log.writer(0, &cfg(1 << 20)).unwrap();
    let key = vec![0u8; MAX_KEY_LEN + 1];
    assert!(matches!(w.append(&key, b"p", 0), Err(LogError::RecordTooLarge { what: "key", .. })));
    let payload = vec![0u8; MAX_PAYLOAD_LEN + 1];
    assert!(matches!(w.append(b"k", &payload, 0), Err(LogError::RecordTooLarge { what: "payload", .. })));
    // The writer is still usable and no sequence number was consumed.
    assert_eq!(w.append(&key[..MAX_KEY_LEN], b"p", 0).unwrap(), 0);
    w.close().unwrap();
    assert_eq!(read_all(&log, 0, StartAt::Earliest).unwrap()[0].key.len(), MAX_KEY_LEN);
}
proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_appends_read_back_and_seek(
        ops in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..24), prop::collection::vec(any::<u8>(), 0..400), any::<bool>()),
            0..120,
        ),
        segment_bytes in 40u64..4000,
        close in any::<bool>(),
        seeks in prop::collection::vec(0u64..130, 1..6),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let log = Log::create(tmp.path(), 1).unwrap();
        let mut w = log.writer(0, &cfg(segment_bytes)).unwrap();
        for (i, (key, payload, flush)) in ops.iter().enumerate() {
            prop_assert_eq!(w.append(key, payload, i as i64).unwrap(), i as u64);
            if *flush {
                w.flush().unwrap();
            }
        }
        if close { w.close().unwrap() } else { drop(w) }

        let all = read_all(&log, 0, StartAt::Earliest).unwrap();
        prop_assert_eq!(all.len(), ops.len());
        for (i, (r, (key, payload, _))) in all.iter().zip(&ops).enumerate() {
            prop_assert_eq!(r.seq, i as u64);
            prop_assert_eq!(&r.key, key);
            prop_assert_eq!(&r.payload, payload);
            prop_assert_eq!(r.arrival_ms, i as i64);
        }
        prop_assert_eq!(log.shard_end(0).unwrap(), ops.len() as u64);
        for n in seeks {
            let suffix = read_all(&log, 0, StartAt::AtSequence(n)).unwrap();
            prop_assert_eq!(&suffix[..], &all[(n as usize).min(all.len())..]);
            let after = read_all(&log, 0, StartAt::AfterSequence(n)).unwrap();
            prop_assert_eq!(&after[..], &all[(n as usize + 1).min(all.len())..]);
        }
    }
}

/// Breaks the end of the only segment of a 10-record shard, reopens a writer and checks that it
/// warned, cut exactly `cut` bytes, and continues with sequence number `resume`.#[test]
#[test]
fn latest_reader_sees_only_new_records() {
    let tmp = tempfile::tempdir().unwrap();
    let log = one_shard(tmp.path(), 50, 1024);
    let mut reader = log.reader(0, StartAt::Latest).unwrap();
    assert_eq!(reader.position(), 50);
    assert!(reader.next().unwrap().is_none());
    let mut w = log.writer(0, &cfg(1024)).unwrap();
    w.append(b"k50", &payload_for(50), 0).unwrap();
    w.flush().unwrap();
    check_records(&[reader.next().unwrap().unwrap()], 50..51);
}

#[test]
fn second_writer_is_locked_out_until_the_first_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::create(tmp.path(), 2).unwrap();
    let first = log.writer(1, &cfg(1024)).unwrap();
    match log.writer(1, &cfg(1024)) {
        Err(LogError::Locked { shard: 1, path }) => assert!(path.ends_with("shard-0001/.lock")),
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(matches!(log.writers(&cfg(1024)), Err(LogError::Locked { shard: 1, .. })));
    // Shard 0 was free: the failed `writers` call must have released it again.
    drop(log.writer(0, &cfg(1024)).unwrap());
    drop(first);
    drop(log.writer(1, &cfg(1024)).unwrap());
}

#[test]
fn opening_and_creating() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested/log");
    let err = Log::open(&dir).unwrap_err();
    assert!(matches!(err, LogError::NotALog { .. }));
    let msg = err.to_string();
    assert!(msg.contains(&dir.display().to_string()) && msg.contains("--create") && msg.contains("--shards"), "{msg}");

    let log = Log::open_or_create(&dir, 4).unwrap();
    assert_eq!(log.shard_count(), 4);
    assert!(dir.join("log.json").is_file() && dir.join("shard-0003").is_dir());
    assert!(matches!(Log::create(&dir, 4), Err(LogError::AlreadyExists { .. })));
    assert_eq!(Log::open_or_create(&dir, 4).unwrap().shard_count(), 4);
    match Log::open_or_create(&dir, 3) {
        Err(LogError::ShardCountMismatch { existing: 4, requested: 3, .. }) => {}
        other => panic!("expected ShardCountMismatch, got {other:?}"),
    }
    assert!(matches!(log.reader(4, StartAt::Earliest), Err(LogError::NoSuchShard { shard: 4, shards: 4 })));
    assert!(matches!(Log::create(&tmp.path().join("x"), 0), Err(LogError::InvalidShardCount { .. })));
    assert_eq!(log.shard_end(2).unwrap(), 0);
    assert!(read_all(&log, 2, StartAt::AtSequence(3)).unwrap().is_empty());
}

#[test]
fn shard_for_key_is_stable() {
    // Pinned: changing the routing would send a key's records to a different shard.
    assert_eq!(xxhash_rust::xxh3::xxh3_64(b"user-42"), XXH3_USER_42);
    assert_eq!(shard_for_key(b"user-42", 16), (XXH3_USER_42 % 16) as u32);
    // The reference test vector of XXH3-64 (seed 0) for empty input.
    assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2D06_8005_38D3_94C2);
    assert_eq!(shard_for_key(b"", 1), 0);
}

const XXH3_USER_42: u64 = 5_836_184_775_705_692_621;

#[test]
fn shapes_are_stored_once_and_an_older_log_becomes_version_3() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::create(dir.path(), 1).unwrap();
    // A log made by an older build: version 1, objects only.
    let meta_path = dir.path().join(meta::META_FILE);
    let old = fs::read_to_string(&meta_path).unwrap().replace("\"version\": 3", "\"version\": 1");
    fs::write(&meta_path, &old).unwrap();
    let log = Log::open(log.dir()).unwrap();
    let shape = Shape::typed(vec!["_kappa_id".into(), "a".into()], vec![None, Some(crate::schema::ColumnType::Int64)]);
    assert!(matches!(log.shape(shape.id()), Err(LogError::MissingShape { .. })));
    log.store_shape(&shape).unwrap();
    assert!(fs::read_to_string(&meta_path).unwrap().contains("\"version\": 3"));
    // Stored again (another producer run, another handle): the same file, untouched.
    Log::open(dir.path()).unwrap().store_shape(&shape).unwrap();
    let again = Log::open(dir.path()).unwrap();
    assert_eq!(*again.shape(shape.id()).unwrap(), shape);
    assert_eq!(fs::read_dir(dir.path().join("shapes")).unwrap().count(), 1, "no temporary file left");

    let mut payload = Vec::new();
    shape.begin(&mut payload);
    payload.extend_from_slice(br#""x:0:1",5]"#);
    assert_eq!(again.event_object(&payload).unwrap().as_ref(), br#"{"_kappa_id":"x:0:1","a":5}"#);
    assert_eq!(again.event_object(br#"{"a":1}"#).unwrap().as_ref(), br#"{"a":1}"#, "an object is itself");
    payload.truncate(payload.len() - 3);
    assert!(matches!(again.event_object(&payload), Err(LogError::BadShapedEvent { .. })));

    // A file under the id that holds other names is refused, not misread.
    let other = Shape::new(vec!["b".into()]);
    fs::write(dir.path().join(format!("shapes/{:016x}.json", other.id())), br#"["c"]"#).unwrap();
    assert!(matches!(Log::open(dir.path()).unwrap().store_shape(&other), Err(LogError::BadMetadata { .. })));
    // A newer format is refused with the versions this build reads.
    fs::write(&meta_path, old.replace("\"version\": 1", "\"version\": 4")).unwrap();
    let refused = Log::open(dir.path()).unwrap_err().to_string();
    assert!(refused.contains("format version 4 is not supported (this build reads versions 1 to 3)"), "{refused}");
}
