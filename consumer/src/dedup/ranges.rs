//! Row numbers as sorted, disjoint, inclusive ranges: how a commit remembers the rows of a
//! producer's file across restarts (`0-49999` for a whole file of 50,000 rows).

use std::collections::VecDeque;

/// Rows collected as a bitmap from the first row's word on (a file's rows are dense), with the
/// few that fall below it or far beyond kept aside: linear in the rows, and an eighth of a
/// byte a row, where sorting 2M collected rows had cost a tenth of a consumer's run and 16 MB.
#[derive(Debug, Default)]
pub struct RowBits {
    base: u64,
    words: VecDeque<u64>,
    aside: Vec<u64>,
}

/// Words a bitmap grows by at once at most (8 MiB): a row further off is kept aside.
const MAX_GROWTH_WORDS: u64 = 1 << 20;

impl RowBits {
    pub fn add(&mut self, row: u64) {
        if self.words.is_empty() {
            self.base = row / 64 * 64;
        }
        if row < self.base {
            // Another shard's rows, a little behind the first one's: the bitmap grows down.
            let below = (self.base - row).div_ceil(64);
            if below > MAX_GROWTH_WORDS {
                self.aside.push(row);
                return;
            }
            for _ in 0..below {
                self.words.push_front(0);
            }
            self.base -= below * 64;
        }
        if (row - self.base) / 64 >= self.words.len() as u64 + MAX_GROWTH_WORDS {
            self.aside.push(row);
            return;
        }
        set_bit(&mut self.words, self.base, row);
    }

    /// Calls `f` for every row collected.
    fn for_each(self, mut f: impl FnMut(u64)) {
        for (index, &word) in self.words.iter().enumerate() {
            let mut rest = word;
            while rest != 0 {
                f(self.base + index as u64 * 64 + u64::from(rest.trailing_zeros()));
                rest &= rest - 1;
            }
        }
        self.aside.into_iter().for_each(f);
    }

    /// The rows as sorted, disjoint ranges.
    pub fn into_ranges(mut self) -> Vec<(u64, u64)> {
        let ranges = bitmap_ranges(self.words.iter().copied(), self.base, usize::MAX);
        if self.aside.is_empty() {
            return ranges;
        }
        self.aside.sort_unstable();
        let mut aside: Vec<(u64, u64)> = Vec::new();
        for &row in &self.aside {
            match aside.last_mut() {
                Some(last) if row <= last.1.saturating_add(1) => last.1 = last.1.max(row),
                _ => aside.push((row, row)),
            }
        }
        merge(&ranges, &aside)
    }
}

/// Sets `row`'s bit in a bitmap whose first bit is row `base` (at or below it), growing it.
fn set_bit(words: &mut VecDeque<u64>, base: u64, row: u64) {
    let bit = row - base;
    let word = (bit / 64) as usize;
    if word >= words.len() {
        words.resize(word + 1, 0);
    }
    words[word] |= 1 << (bit % 64);
}

/// The ranges of a bitmap whose first bit is row `base`: the lowest `most` at least (all if
/// fewer). A gapped bitmap of 10M rows has 2M ranges, and building them all for a commit that
/// keeps 2,048 had cost 64 MB a commit.
fn bitmap_ranges(words: impl Iterator<Item = u64>, base: u64, most: usize) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (index, word) in words.enumerate() {
        if ranges.len() > most {
            break;
        }
        let base = base + index as u64 * 64;
        let mut rest = word;
        while rest != 0 {
            let start = u64::from(rest.trailing_zeros());
            let length = u64::from((rest >> start).trailing_ones());
            let (first, last) = (base + start, base + start + length - 1);
            match ranges.last_mut() {
                Some(previous) if previous.1 + 1 == first => previous.1 = last,
                _ => ranges.push((first, last)),
            }
            rest = if start + length >= 64 { 0 } else { rest & !(((1u64 << length) - 1) << start) };
        }
    }
    ranges
}

/// The union of two lists of sorted, disjoint ranges.
fn merge(left: &[(u64, u64)], right: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(left.len() + right.len());
    let (mut old, mut new) = (left.iter().peekable(), right.iter().peekable());
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
    merged
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowRanges(Vec<(u64, u64)>);

impl RowRanges {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    #[cfg(test)]
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

    /// Adds `rows` (in any order, repeats allowed).
    #[cfg(test)]
    pub fn extend(&mut self, rows: &[u64]) {
        let mut bits = RowBits::default();
        rows.iter().for_each(|&row| bits.add(row));
        self.add(bits);
    }

    /// Adds the collected rows in one merge: rows arrive from several shards at once, and
    /// inserting them one by one would shuffle ranges back and forth.
    pub fn add(&mut self, rows: RowBits) {
        self.0 = merge(&self.0, &rows.into_ranges());
    }

    /// Every row of either.
    pub fn union(&self, other: &RowRanges) -> RowRanges {
        RowRanges(merge(&self.0, &other.0))
    }

    /// `0-99,120,140-150`: a few characters per gap in the commit's JSON, however many rows;
    /// the lowest `most` ranges.
    pub fn to_text(&self, most: usize) -> String {
        let mut text = String::new();
        for (i, &(start, end)) in self.0.iter().take(most).enumerate() {
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

/// The rows a run has passed for one file: a complete prefix, a bitmap from there on (a bit a
/// row, however gapped: while one shard lags, the others' rows leave a gap at each of its
/// rows, and as ranges those gaps had held 2M entries and 100 MiB of a 10M-row run), and the
/// ranges a commit remembered that lie elsewhere.
#[derive(Debug, Clone, Default)]
pub struct RowMap {
    /// Every row below this is in the set.
    below: u64,
    /// The row of the bitmap's first bit: a multiple of 64, at or below `below`'s word.
    base: u64,
    words: VecDeque<u64>,
    /// Rows outside the bitmap: remembered by a commit, or far from the rest.
    other: RowRanges,
}

impl RowMap {
    pub fn from_ranges(ranges: RowRanges) -> RowMap {
        let mut map = RowMap { other: ranges, ..RowMap::default() };
        if let Some(&(0, end)) = map.other.0.first() {
            map.below = end + 1;
            map.base = map.below / 64 * 64;
            map.other.0.remove(0);
        }
        map
    }

    pub fn is_empty(&self) -> bool {
        self.below == 0 && self.words.iter().all(|w| *w == 0) && self.other.is_empty()
    }

    pub fn contains(&self, row: u64) -> bool {
        if row < self.below {
            return true;
        }
        if row >= self.base {
            let bit = row - self.base;
            if let Some(word) = self.words.get((bit / 64) as usize)
                && word & (1 << (bit % 64)) != 0
            {
                return true;
            }
        }
        self.other.contains(row)
    }

    pub fn add(&mut self, rows: RowBits) {
        let mut aside = RowBits::default();
        rows.for_each(|row| {
            if row < self.below {
                return;
            }
            if row < self.base || (row - self.base) / 64 > self.words.len() as u64 + MAX_GROWTH_WORDS {
                aside.add(row);
                return;
            }
            set_bit(&mut self.words, self.base, row);
        });
        // The complete prefix grows over the bitmap's leading ones; whole words leave it.
        while let Some(&word) = self.words.front() {
            if (self.base..self.base + 64).contains(&self.below) {
                self.below += u64::from((word >> (self.below - self.base)).trailing_ones());
            }
            if self.below < self.base + 64 {
                break;
            }
            self.words.pop_front();
            self.base += 64;
        }
        if !aside.words.is_empty() {
            self.other.add(aside);
        }
    }

    /// The set as ranges, the lowest `most` of them: `0-99,120,140-150`.
    pub fn to_text(&self, most: usize) -> String {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        if self.below > 0 {
            ranges.push((0, self.below - 1));
        }
        // Bits under the prefix overlap it; the merge unites them. The lowest `most` of each
        // part give the lowest of the whole, or a subset of them (safe).
        let bits = bitmap_ranges(self.words.iter().copied(), self.base, most);
        let other = &self.other.0[..self.other.0.len().min(most)];
        let ranges = merge(&merge(&ranges, &bits), other);
        RowRanges(ranges).to_text(most)
    }
}

#[cfg(test)]
mod tests {
    use super::{RowBits, RowMap, RowRanges};

    #[test]
    fn rows_from_interleaved_shards_merge_into_ranges() {
        let mut ranges = RowRanges::default();
        // Shard 0's rows, then shard 1's, as a commit hands them over.
        ranges.extend(&(0..100u64).filter(|r| r % 3 == 0).collect::<Vec<_>>());
        assert_eq!(ranges.ranges(), 34);
        ranges.extend(&(0..100u64).filter(|r| r % 3 != 0 && *r != 50).collect::<Vec<_>>());
        assert_eq!(ranges.to_text(usize::MAX), "0-49,51-99");
        assert!(ranges.contains(0) && ranges.contains(49) && !ranges.contains(50) && ranges.contains(99) && !ranges.contains(100));
        ranges.extend(&[50, 50, 7, 200]);
        assert_eq!(ranges.to_text(usize::MAX), "0-99,200");
        assert_eq!(RowRanges::parse(&ranges.to_text(usize::MAX)).unwrap(), ranges);
        // Rows below the first one collected: the bitmap grows down; the same ranges.
        ranges.extend(&[1_000_000, 101, 100, 1_000_001, 99]);
        assert_eq!(ranges.to_text(usize::MAX), "0-101,200,1000000-1000001");
        // Whole words and runs across word boundaries, through the bitmap.
        let mut dense = RowRanges::default();
        dense.extend(&(0..1000u64).filter(|r| !(130..=190).contains(r) && *r != 500).collect::<Vec<_>>());
        assert_eq!(dense.to_text(usize::MAX), "0-129,191-499,501-999");
        assert_eq!(RowRanges::parse("").unwrap(), RowRanges::default());
    }

    #[test]
    fn a_row_map_keeps_gapped_rows_as_bits_and_its_prefix_as_a_number() {
        let bits = |rows: &mut dyn Iterator<Item = u64>| {
            let mut bits = RowBits::default();
            rows.for_each(|r| bits.add(r));
            bits
        };
        let mut map = RowMap::from_ranges(RowRanges::parse("0-9,500-510").unwrap());
        assert!(map.contains(9) && !map.contains(10) && map.contains(505));
        // Every other row of 10..1000: a gap at each.
        map.add(bits(&mut (10..1000u64).step_by(2)));
        assert!(map.contains(12) && !map.contains(13) && map.contains(501) && map.contains(998));
        assert_eq!(map.to_text(3), "0-10,12,14");
        // The other rows close the gaps: one range, most of it the prefix.
        map.add(bits(&mut (11..1000u64).step_by(2)));
        assert_eq!(map.to_text(usize::MAX), "0-999");
        assert!(map.words.len() <= 1, "{} words", map.words.len());
        // Rows below the bitmap, and far above it, are kept aside.
        map.add(bits(&mut [5u64, 1 << 40].into_iter()));
        assert_eq!(map.to_text(usize::MAX), format!("0-999,{}", 1u64 << 40));
        assert!(RowMap::default().is_empty() && !map.is_empty());
    }

    #[test]
    fn ranges_out_of_order_or_touching_are_refused() {
        for bad in ["5-3", "1-5,4-9", "1-5,6", "a", "1-", "-1"] {
            assert!(RowRanges::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(RowRanges::parse("1-5,7").unwrap().to_text(usize::MAX), "1-5,7");
    }
}
