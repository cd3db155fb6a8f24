//! Writes N rows of supermarket-sales-like CSV to stdout, deterministically: the same N and
//! seed give the same bytes on every machine, so benchmark figures are comparable.
//!
//! Columns follow the seed data (`../shared/seed-data/supermarket/sales`), with a full
//! timestamp so day and hour partitions have something to cut:
//! `sale_id,customer_id,product_id,branch_id,sale_time,quantity,unit_price,total_amount`.
//! Rows span 30 days from 2025-03-01, in time order with jitter.
//!
//! Usage: kappa-gen-sales ROWS [SEED] > sales.csv

use std::io::{BufWriter, Write};

use kappa_bench::{SplitMix64, civil_from_days, rows_and_seed};

const PRICES_CENTS: [u64; 20] = [
    256_096, 130_226, 7_067, 66_664, 156_683, 245_468, 39_053, 8_897, 36_638, 10_497, 4_599, 129_900, 1_999, 74_950, 3_250, 18_800, 9_990, 55_500, 2_490,
    99_999,
];

fn main() {
    let (rows, seed) = rows_and_seed("kappa-gen-sales ROWS [SEED] > sales.csv");
    let mut rng = SplitMix64(seed);
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    writeln!(out, "sale_id,customer_id,product_id,branch_id,sale_time,quantity,unit_price,total_amount").unwrap();
    let start: i64 = 1_740_787_200; // 2025-03-01T00:00:00Z
    let span: i64 = 30 * 86_400;
    for i in 0..rows {
        let t = start + (i as i128 * span as i128 / rows.max(1) as i128) as i64 + rng.below(600) as i64;
        let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        let product = rng.below(20);
        let quantity = 1 + rng.below(9);
        let price = PRICES_CENTS[product as usize];
        let total = price * quantity;
        writeln!(
            out,
            "SALE{:09},CUST{:03},PROD{:03},BR{:03},{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02},{quantity},{}.{:02},{}.{:02}",
            100_000 + i,
            1 + rng.below(500),
            product + 1,
            1 + rng.below(10),
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            price / 100,
            price % 100,
            total / 100,
            total % 100,
        )
        .unwrap();
    }
    out.flush().unwrap();
}
