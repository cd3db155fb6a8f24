//! Writes N rows of a wide event table as CSV to stdout, deterministically, in no particular
//! time order: what a backfill of an export, a replay of a year or several producers look
//! like, unlike kappa-gen-sales's rows in time order.
//!
//! 16 columns: 8 strings, 6 floats, 1 integer and 1 timestamp (`event_time`, uniformly random
//! over 120 days from 2025-01-01); every column but `event_id` and `event_time` is empty in
//! about 1 row in 20 (a null).
//!
//! Usage: kappa-gen-wide ROWS [SEED] > wide.csv

use std::io::{BufWriter, Write};

use kappa_bench::{SplitMix64, civil_from_days, rows_and_seed};

const COUNTRIES: [&str; 12] = ["DE", "FR", "US", "GB", "JP", "BR", "IN", "ES", "IT", "NL", "SE", "PL"];
const DEVICES: [&str; 4] = ["ios", "android", "web", "desktop"];
const STATUSES: [&str; 5] = ["ok", "retry", "failed", "cancelled", "pending"];

fn main() {
    let (rows, seed) = rows_and_seed("kappa-gen-wide ROWS [SEED] > wide.csv");
    let mut rng = SplitMix64(seed);
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    writeln!(out, "event_id,event_time,user_id,session_id,country,device,status,campaign,page,amount,price,discount,latitude,longitude,score,items").unwrap();
    let start: i64 = 1_735_689_600; // 2025-01-01T00:00:00Z
    let span: u64 = 120 * 86_400;
    for i in 0..rows {
        let t = start + rng.below(span) as i64;
        let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        write!(out, "EV{i:010},{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60).unwrap();
        // A null (empty field) in about 1 row in 20, per column.
        let field = |out: &mut BufWriter<_>, rng: &mut SplitMix64, value: String| {
            if rng.below(20) == 0 { write!(out, ",") } else { write!(out, ",{value}") }.unwrap();
        };
        let user = rng.below(1_000_000);
        field(&mut out, &mut rng, format!("U{user:07}"));
        let session = rng.next_u64();
        field(&mut out, &mut rng, format!("{session:016x}"));
        let country = COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize];
        field(&mut out, &mut rng, country.to_string());
        let device = DEVICES[rng.below(DEVICES.len() as u64) as usize];
        field(&mut out, &mut rng, device.to_string());
        let status = STATUSES[rng.below(STATUSES.len() as u64) as usize];
        field(&mut out, &mut rng, status.to_string());
        let campaign = rng.below(300);
        field(&mut out, &mut rng, format!("spring-{campaign}"));
        let page = rng.below(5_000);
        field(&mut out, &mut rng, format!("/p/{page}"));
        for scale in [100_000u64, 100_000, 100] {
            let cents = rng.below(scale);
            field(&mut out, &mut rng, format!("{}.{:02}", cents / 100, cents % 100));
        }
        let (lat, lon) = (rng.below(180_000_000) as f64 / 1e6 - 90.0, rng.below(360_000_000) as f64 / 1e6 - 180.0);
        field(&mut out, &mut rng, format!("{lat:.6}"));
        field(&mut out, &mut rng, format!("{lon:.6}"));
        let score = rng.below(1_000_000) as f64 / 1e3;
        field(&mut out, &mut rng, format!("{score:.3}"));
        let items = rng.below(50);
        field(&mut out, &mut rng, items.to_string());
        writeln!(out).unwrap();
    }
    out.flush().unwrap();
}
