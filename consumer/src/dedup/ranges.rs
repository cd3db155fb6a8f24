//! Row numbers as sorted, disjoint, inclusive ranges: how a commit remembers the rows of a
//! producer's file across restarts (`0-49999` for a whole file of 50,000 rows).

/// Rows at or above this are not remembered across restarts (no file has that many rows; the
/// bound keeps a pending row in 16 bytes, see [`super::Dedup`]).
pub(crate) const MAX_REMEMBERED_ROW: u64 = (1 << 40) - 1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowRanges(Vec<(u64, u64)>);

impl RowRanges {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn ranges(&self) -> usize {
        self.0.len()
    }

    pub fn contains(&self, row: u64) -> bool {
        match self.0.last() {
            None => false,
            // The usual answer for a file still being read: past everything remembered.
            Some(&(_, end)) if row > end => false,
            _ => {
                let after = self.0.partition_point(|&(start, _)| start <= row);
                after > 0 && self.0[after - 1].1 >= row
            }
        }
    }

    /// Adds `rows` (in any order, repeats allowed) in one merge: rows arrive from several
    /// shards at once, and inserting them one by one would shuffle ranges back and forth.
    pub fn extend(&mut self, rows: &mut [u64]) {
        if rows.is_empty() {
            return;
        }
        rows.sort_unstable();
        let mut added: Vec<(u64, u64)> = Vec::new();
        for &row in rows.iter() {
            match added.last_mut() {
                Some(last) if row <= last.1.saturating_add(1) => last.1 = last.1.max(row),
                _ => added.push((row, row)),
            }
        }
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.0.len() + added.len());
        let (mut old, mut new) = (self.0.iter().peekable(), added.iter().peekable());
        loop {
            let next = match (old.peek(), new.peek()) {
                (Some(a), Some(b)) if a.0 <= b.0 => old.next(),
                (Some(_), Some(_)) | (None, Some(_)) => new.next(),
                (Some(_), None) => old.next(),
                (None, None) => break,
            };
            let &(start, end) = next.expect("one side has a range");
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        self.0 = merged;
    }

    /// Keeps the lowest `ranges` ranges, forgetting the rows above them.
    pub fn truncate(&mut self, ranges: usize) {
        self.0.truncate(ranges);
    }

    /// `0-99,120,140-150`: a few characters per gap in the commit's JSON, however many rows.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for (i, &(start, end)) in self.0.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(itoa::Buffer::new().format(start));
            if end != start {
                text.push('-');
                text.push_str(itoa::Buffer::new().format(end));
            }
        }
        text
    }

    /// Reads [`RowRanges::to_text`]'s form back; ranges must be sorted and apart.
    pub fn parse(text: &str) -> Result<RowRanges, String> {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let number = |n: &str| n.parse::<u64>().map_err(|_| format!("{part:?} is not a row range"));
            let (start, end) = match part.split_once('-') {
                Some((start, end)) => (number(start)?, number(end)?),
                None => (number(part)?, number(part)?),
            };
            if end < start || ranges.last().is_some_and(|last| start <= last.1.saturating_add(1)) {
                return Err(format!("row ranges out of order at {part:?}"));
            }
            ranges.push((start, end));
        }
        Ok(RowRanges(ranges))
    }
}

#[cfg(test)]
mod tests {
    use super::RowRanges;

    #[test]
    fn rows_from_interleaved_shards_merge_into_ranges() {
        let mut ranges = RowRanges::default();
        // Shard 0's rows, then shard 1's, as a commit hands them over.
        ranges.extend(&mut (0..100u64).filter(|r| r % 3 == 0).collect::<Vec<_>>());
        assert_eq!(ranges.ranges(), 34);
        ranges.extend(&mut (0..100u64).filter(|r| r % 3 != 0 && *r != 50).collect::<Vec<_>>());
        assert_eq!(ranges.to_text(), "0-49,51-99");
        assert!(ranges.contains(0) && ranges.contains(49) && !ranges.contains(50) && ranges.contains(99) && !ranges.contains(100));
        ranges.extend(&mut [50, 50, 7, 200]);
        assert_eq!(ranges.to_text(), "0-99,200");
        assert_eq!(RowRanges::parse(&ranges.to_text()).unwrap(), ranges);
        assert_eq!(RowRanges::parse("").unwrap(), RowRanges::default());
    }

    #[test]
    fn ranges_out_of_order_or_touching_are_refused() {
        for bad in ["5-3", "1-5,4-9", "1-5,6", "a", "1-", "-1"] {
            assert!(RowRanges::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(RowRanges::parse("1-5,7").unwrap().to_text(), "1-5,7");
    }
}
