//! What the benchmark data generators share: a fixed random generator and calendar dates.

/// SplitMix64: tiny, fast, and fixed forever (a library's generator may change between
/// versions and silently change the data).
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The generators' arguments: ROWS (underscores allowed) and an optional SEED (default 42);
/// without ROWS, prints `usage` and exits with status 2.
pub fn rows_and_seed(usage: &str) -> (u64, u64) {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args.next().and_then(|a| a.replace('_', "").parse().ok()).unwrap_or_else(|| {
        eprintln!("usage: {usage}");
        std::process::exit(2);
    });
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(42);
    (rows, seed)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_148), (2025, 3, 1));
        assert_eq!(super::civil_from_days(19_417), (2023, 3, 1));
    }
}
