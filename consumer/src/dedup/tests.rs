use super::*;

#[test]
fn producer_identities_are_kept_as_a_bitmap_of_rows() {
    let mut window = Dedup::new(1000);
    // Rows arrive out of order (four shards interleaved), then a re-send of some.
    let rows: Vec<u64> = (0..1000u64).map(|i| (i % 4) * 250 + i / 4).collect();
    for &row in &rows {
        assert!(!window.check(&format!("f00d:0:{row}"), 0, 0), "{row}");
    }
    let set = &window.sources[0].run;
    assert_eq!((set.complete_below, set.words.len()), (960, 1), "the full words were let go");
    for row in [3u64, 0, 999] {
        assert!(window.check(&format!("f00d:0:{row}"), 0, 0));
    }
    assert!(!window.check("f00d:1:3", 0, 0), "another pass is another source");
    assert!(!window.check("f00d:0:1001", 0, 0));
    assert!(!window.check("f00d:0:1000", 0, 0));
    assert!(window.check("f00d:0:1000", 0, 0));
}

/// Splits a producer identity, `<source>:<pass>:<row>`, as `check` does.
fn producer_identity(id: &str) -> Option<(&str, u64)> {
    split_row(id).filter(|(name, _)| is_source_and_pass(name))
}

#[test]
fn only_identities_ending_in_a_row_number_after_two_colons_are_split() {
    assert_eq!(producer_identity("788f690caaf4267b:0:17"), Some(("788f690caaf4267b:0", 17)));
    assert_eq!(producer_identity("a:b:c:0"), Some(("a:b:c", 0)));
    assert_eq!(producer_identity("s:0:18446744073709551615"), None, "20 digits go to the hashes");
    assert_eq!(producer_identity("s:0:9999999999999999999"), Some(("s:0", 9_999_999_999_999_999_999)));
    for other in ["a:17", "17", "a:b:", "a:b:1x", "a:b:+1", ":1", "order-17"] {
        assert_eq!(producer_identity(other), None, "{other}");
    }
    // Those are still deduplicated, by hash.
    let mut window = Dedup::new(10);
    assert!(!window.check("a:17", 0, 0));
    assert!(window.check("a:17", 0, 0));
}

#[test]
fn rows_far_below_the_span_are_forgotten_not_reported_as_seen() {
    let mut set = RowSet::default();
    assert!(!set.insert(5, 2));
    assert!(!set.insert(130, 2)); // three words: the first is forgotten
    assert_eq!(set.base, 64);
    assert!(!set.insert(5, 2), "forgotten: not known to be a duplicate");
    assert!(set.insert(130, 2));
    assert!(!set.insert(1_000_000, 2));
    assert!(set.insert(1_000_000, 2));
    assert!(!set.insert(200, 2));
}

#[test]
fn dedup_window_forgets_the_oldest() {
    let mut window = Dedup::new(2);
    assert!(!window.check("a", 0, 0));
    assert!(window.check("a", 0, 0));
    assert!(!window.check("b", 0, 0));
    assert!(!window.check("c", 0, 0)); // evicts a
    assert!(!window.check("a", 0, 0));
    assert!(window.check("c", 0, 0));
    let mut off = Dedup::new(0);
    assert!(!off.check("a", 0, 0) && !off.check("a", 0, 0));
}

#[test]
fn rows_are_remembered_once_their_shard_resume_point_passed_them() {
    let mut dedup = Dedup::new(1000);
    // File f, rows 0..8 over two shards; shard 1 still buffers its rows from ordinal 2 on.
    for row in 0..8u64 {
        let (shard, ordinal) = ((row % 2) as u32, row / 2);
        assert!(!dedup.check(&format!("f:0:{row}"), shard, ordinal));
    }
    dedup.pass(&[None, Some(2)], 1_000);
    let remembered = dedup.remembered(1_000, 10);
    assert_eq!(remembered["f:0"], SeenRows { rows: "0-4,6".into(), ms: 1_000 });
    // A restart: only what the commit remembers is known; rows 5 and 7 are read again.
    let mut restarted = Dedup::new(1000);
    restarted.load(&remembered).unwrap();
    assert!(restarted.check("f:0:6", 0, 0), "a committed row sent again");
    assert!(!restarted.check("f:0:5", 1, 0), "read again after the resume point: new to this run");
    assert!(restarted.check("f:0:5", 1, 1), "and its copy after it is dropped");
    // Past the retention the file is forgotten.
    assert!(restarted.remembered(1_000 + 11, 10).is_empty());
    assert!(Dedup::new(0).remembered(0, 10).is_empty());
}

#[test]
fn a_file_remembers_a_bounded_number_of_ranges_and_dedup_off_keeps_what_the_table_remembered() {
    let mut dedup = Dedup::new(1_000_000);
    // Every other row passed (the other shard lags): one range per row, capped.
    for row in (0..10_000u64).step_by(2) {
        dedup.check(&format!("f:0:{row}"), 0, row);
    }
    dedup.pass(&[None], 5);
    let remembered = dedup.remembered(5, 10);
    let ranges = RowRanges::parse(&remembered["f:0"].rows).unwrap();
    assert_eq!(ranges.ranges(), MAX_RANGES_PER_FILE);
    assert!(ranges.contains(0) && ranges.contains(2 * (MAX_RANGES_PER_FILE as u64 - 1)) && !ranges.contains(2 * MAX_RANGES_PER_FILE as u64));
    // The run itself still knows every row passed, and the gaps close as the odd rows pass.
    assert!(dedup.check("f:0:9998", 0, 99));
    for row in (1..10_000u64).step_by(2) {
        dedup.check(&format!("f:0:{row}"), 1, row);
    }
    dedup.pass(&[None, None], 6);
    assert_eq!(dedup.remembered(6, 10)["f:0"].rows, "0-9999");
    let mut off = Dedup::new(0);
    off.load(&remembered).unwrap();
    assert!(!off.check("f:0:0", 0, 0), "off: nothing is dropped");
    assert_eq!(off.remembered(1_000_000, 10), remembered, "but what the table remembered is handed on");
}
