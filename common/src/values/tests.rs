use super::*;
use arrow::compute::kernels::cast_utils::Parser;
use arrow::compute::kernels::cast_utils::string_to_datetime;
use arrow::datatypes::{Date32Type, Float64Type, Int64Type};
use chrono::Utc;
use rand::{Rng, SeedableRng};

fn nulls() -> NullTokens {
    NullTokens::default()
}

#[test]
fn int64_takes_whole_numbers_and_refuses_what_it_would_alter() {
    for (text, expected) in
        [("0", 0), ("-0", 0), ("-12", -12), ("0012", 12), (" 5 ", 5), ("+5", 5), ("9223372036854775807", i64::MAX), ("-9223372036854775808", i64::MIN)]
    {
        assert_eq!(int64(text, &nulls()), Ok(Some(expected)), "{text}");
    }
    for text in ["", "NA", "NaN", "null"] {
        assert_eq!(int64(text, &nulls()), Ok(None), "{text:?} is a null token");
    }
    for (text, why) in [
        ("100.5", HAS_FRACTION),
        ("5.0", HAS_FRACTION),
        ("1e3", HAS_EXPONENT),
        ("9223372036854775808", BEYOND_INT64),
        ("-9223372036854775809", BEYOND_INT64),
        ("18446744073709551615", BEYOND_INT64),
        ("abc", NOT_A_NUMBER),
        ("1,000", NOT_A_NUMBER),
        ("inf", NOT_A_NUMBER),
    ] {
        let misfit = int64(text, &nulls()).unwrap_err();
        assert_eq!(misfit.why, why, "{text}");
        assert_eq!(misfit.to_string(), format!("{text:?} is not a valid int64: {why}"));
    }
}

#[test]
fn float64_takes_finite_numbers_and_refuses_the_rest() {
    for (text, expected) in [("1e3", 1000.0), ("-0", -0.0), (" 2.5 ", 2.5), ("+.5", 0.5), ("9007199254740993", 9007199254740992.0)] {
        assert_eq!(float64(text, &nulls()).map(|x| x.map(f64::to_bits)), Ok(Some(f64::to_bits(expected))), "{text}");
    }
    assert_eq!(float64("NaN", &nulls()), Ok(None), "NaN is a null token, as the producer reads it");
    assert_eq!(float64("NaN", &",NA".parse().unwrap()).unwrap_err().why, NOT_FINITE);
    for (text, why) in [("inf", NOT_FINITE), ("-Infinity", NOT_FINITE), ("1e400", NOT_FINITE), ("1.2.3", NOT_A_NUMBER), ("0x10", NOT_A_NUMBER)] {
        assert_eq!(float64(text, &nulls()).unwrap_err().why, why, "{text}");
    }
}

#[test]
fn decimals_are_exact_or_refused() {
    let d = |text: &str, p, s| decimal(text, p, s, &nulls());
    assert_eq!(d("18446744073709551615", 20, 0), Ok(Some(18446744073709551615)));
    assert_eq!(d("-99999999999999999999", 20, 0), Ok(Some(-99999999999999999999)));
    assert_eq!(d("12.34", 10, 2), Ok(Some(1234)));
    assert_eq!(d("12.3", 10, 2), Ok(Some(1230)));
    assert_eq!(d("12.300", 10, 2), Ok(Some(1230)), "zeros beyond the scale change nothing");
    assert_eq!(d("1.5e2", 10, 0), Ok(Some(150)));
    assert_eq!(d("-0.0", 5, 2), Ok(Some(0)));
    assert_eq!(d("  7 ", 3, 0), Ok(Some(7)));
    assert_eq!(d("", 3, 0), Ok(None));
    assert_eq!(d("12.345", 10, 2).unwrap_err().why, TOO_MANY_PLACES);
    assert_eq!(d("0.0001", 10, 2).unwrap_err().why, TOO_MANY_PLACES);
    assert_eq!(d("100000000000000000000", 20, 0).unwrap_err().why, TOO_MANY_DIGITS);
    assert_eq!(d("1e40", 38, 0).unwrap_err().why, TOO_MANY_DIGITS);
    assert_eq!(d("123", 4, 2).unwrap_err().why, TOO_MANY_DIGITS);
    for text in [".", "-", "1.2.3", "1e", "e5", "abc", "1 2"] {
        assert_eq!(d(text, 10, 2).unwrap_err().why, NOT_A_NUMBER, "{text}");
    }
}

#[test]
fn booleans_dates_and_timestamps() {
    assert_eq!(boolean(" TRUE ", &nulls()), Ok(Some(true)));
    assert_eq!(boolean("false", &nulls()), Ok(Some(false)));
    assert_eq!(boolean("1", &nulls()).unwrap_err().why, NOT_A_BOOLEAN);
    assert_eq!(date("1970-01-02", &nulls()), Ok(Some(1)));
    assert_eq!(date("2024-02-29", &nulls()), Ok(Some(19782)));
    for text in ["2023-02-29", "2024-1-01", "20240101", "2024-01-01T00:00:00", "2024-01-01 "] {
        // (spaces around a value are ignored: the last one is a date)
        if text.trim() != text {
            assert!(date(text, &nulls()).is_ok());
            continue;
        }
        assert_eq!(date(text, &nulls()).unwrap_err().why, NOT_A_DATE, "{text}");
    }
    let ts = |text: &str| timestamp(text, ColumnType::Timestamp, &nulls());
    assert_eq!(ts("1970-01-01T00:00:01Z"), Ok(Some(1_000_000)));
    assert_eq!(ts("1970-01-01 02:00:01+02:00"), Ok(Some(1_000_000)), "a zone is converted to UTC");
    assert_eq!(ts("1970-01-02"), Ok(Some(86_400_000_000)), "a date alone is midnight");
    assert_eq!(ts("1700000000").unwrap_err().why, NOT_A_TIMESTAMP);
    assert_eq!(ts("yesterday").unwrap_err().to_string(), "\"yesterday\" is not a valid timestamp: it is not an ISO 8601 date and time");
    assert!(looks_like_timestamp("2019-01-01T14:22:42") && looks_like_timestamp("2013-01-01 10:00:00+02:00"));
    assert!(!looks_like_timestamp("2019-01-01") && !looks_like_timestamp("2019-01-01T25:00:00") && !looks_like_timestamp("on 2019-01-01T10:00"));
}

#[test]
fn the_rules_agree_with_arrows_own_parsers_where_those_do_not_alter() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(30);
    for _ in 0..50_000 {
        // Integers, some near and beyond i64's ends.
        let text = match rng.random_range(0..3) {
            0 => rng.random::<i64>().to_string(),
            1 => format!("{}{}", if rng.random_bool(0.5) { "-" } else { "" }, rng.random::<u64>()),
            _ => rng.random_range(-1000i64..1000).to_string(),
        };
        assert_eq!(int64(&text, &nulls()).ok().flatten(), Int64Type::parse(&text), "{text}");
        // Numbers of every form: the same double as arrow's parser.
        let x = f64::from_bits(rng.random::<u64>());
        let text = match rng.random_range(0..3) {
            0 => format!("{x:e}"),
            1 => format!("{:.*}", rng.random_range(0..8), rng.random_range(-1e6..1e6)),
            _ => x.to_string(),
        };
        let ours = float64(&text, &nulls()).ok().flatten().map(f64::to_bits);
        let arrows = Float64Type::parse(&text).filter(|x| x.is_finite()).map(f64::to_bits);
        assert_eq!(ours, arrows, "{text}");
        // Decimals that fit exactly: arrow's decimal parser, which would round the others.
        let places = rng.random_range(0..6u8);
        let unscaled = rng.random_range(-10i128.pow(12)..10i128.pow(12));
        let text = format!(
            "{}{}.{:0>width$}",
            if unscaled < 0 { "-" } else { "" },
            unscaled.abs() / 10i128.pow(places.into()),
            unscaled.abs() % 10i128.pow(places.into()),
            width = places.into()
        );
        let text = text.trim_end_matches('.').to_string();
        let arrows = arrow::compute::kernels::cast_utils::parse_decimal::<arrow::datatypes::Decimal128Type>(&text, 20, 6).unwrap();
        assert_eq!(decimal(&text, 20, 6, &nulls()), Ok(Some(arrows)), "{text}");
        // Dates: arrow's date parser on ISO dates, valid or not.
        let (y, m, d) = (rng.random_range(1..10_000), rng.random_range(0..14), rng.random_range(0..33));
        let text = format!("{y:04}-{m:02}-{d:02}");
        assert_eq!(date(&text, &nulls()).ok().flatten(), Date32Type::parse(&text), "{text}");
        // Timestamps: arrow's own parser, the common form taken without it.
        let text = format!(
            "{y:04}-{m:02}-{d:02}{}{:02}:{:02}:{:02}{}",
            if rng.random_bool(0.5) { 'T' } else { ' ' },
            rng.random_range(0..25),
            rng.random_range(0..61),
            rng.random_range(0..61),
            ["", "Z", ".5", ".123456Z", "+05:30"][rng.random_range(0..5)]
        );
        let arrows = string_to_datetime(&Utc, &text).ok().map(|t| t.timestamp_micros());
        assert_eq!(timestamp(&text, ColumnType::Timestamp, &nulls()).ok().flatten(), arrows, "{text}");
    }
}
