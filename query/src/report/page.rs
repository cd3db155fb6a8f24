//! The report's page: the figures, the charts and the schema in one HTML file, its style
//! inline, no script and nothing fetched.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use kappa_table::delta::VersionInfo;

use super::Picture;
use super::charts::{Bars, Mark, timeline};
use crate::output::human_bytes;

/// Files under this size are counted as small: an eighth of the 256 MiB that
/// `kappa-replay compact` merges to by default. Each costs a request and a footer read to
/// every query that touches it.
const SMALL_FILE: u64 = 32 << 20;
/// How many of the newest versions the table under the time line lists.
const VERSIONS_LISTED: usize = 20;

/// The lanes of the time line, by what a commit did.
const LANES: [(&str, &str); 4] = [("appends", "#3366cc"), ("compactions", "#2a9d8f"), ("switches", "#e76f51"), ("other", "#888888")];

fn lane(version: &VersionInfo) -> usize {
    match (version.operation.as_str(), version.mode.as_deref()) {
        ("WRITE", Some("Append")) => 0,
        ("OPTIMIZE", _) => 1,
        ("WRITE", Some("Overwrite")) => 2,
        _ => 3,
    }
}

pub(super) fn render(picture: &Picture) -> String {
    let mut html = String::with_capacity(64 << 10);
    let title = format!("{} — kappa-lake table", picture.table);
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{}</title>
<style>
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #222; margin: 24px auto; max-width: 1000px; padding: 0 16px; }}
h1 {{ font-size: 22px; margin-bottom: 4px; }} h2 {{ font-size: 17px; margin-top: 32px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }}
.meta {{ color: #666; margin-top: 0; }}
.figures {{ display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }}
.figure {{ border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 100px; }}
.figure b {{ display: block; font-size: 20px; }} .figure span {{ color: #666; font-size: 12px; }}
svg {{ max-width: 100%; height: auto; }} svg .axis {{ font-size: 11px; fill: #555; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }}
td.n, th.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
.note {{ color: #555; }} code {{ background: #f4f4f4; padding: 0 3px; border-radius: 3px; }}
</style></head><body>
<h1>{}</h1>
<p class="meta">lake <code>{}</code> · Delta version {}{} · drawn {} by kappa-query {}</p>
"#,
        escape(&title),
        escape(&picture.table),
        escape(&picture.lake),
        picture.version,
        picture.generation.as_ref().map_or_else(String::new, |g| format!(" · generation {}", escape(g))),
        picture.drawn_at.format("%Y-%m-%d %H:%M:%S UTC"),
        env!("CARGO_PKG_VERSION"),
    );
    figures(&mut html, picture);
    partitions(&mut html, picture);
    file_sizes(&mut html, picture);
    versions(&mut html, picture);
    schema(&mut html, picture);
    html + "</body></html>\n"
}

fn figures(html: &mut String, picture: &Picture) {
    let rows: u64 = picture.partitions.iter().map(|p| p.rows).sum();
    let bytes: u64 = picture.file_sizes.iter().sum();
    let files = picture.file_sizes.len() as u64;
    let partitions = picture.partitions.len() as u64;
    // The sentence a reader (and the test) finds the totals in; the boxes repeat it larger.
    let _ = write!(
        html,
        r#"<p id="summary">{} {}, {} {}, {} rows, {} of Parquet.</p><div class="figures">"#,
        thousands(partitions),
        plural(partitions, "partition", "partitions"),
        thousands(files),
        plural(files, "file", "files"),
        thousands(rows),
        human_bytes(bytes)
    );
    let average = bytes.checked_div(files).unwrap_or(0);
    for (value, name) in [
        (thousands(rows), "rows"),
        (thousands(partitions), "partitions"),
        (thousands(files), "files"),
        (human_bytes(bytes), "Parquet"),
        (human_bytes(average), "average file"),
        (thousands(picture.version + 1), "versions"),
    ] {
        let _ = write!(html, r#"<div class="figure"><b>{}</b><span>{name}</span></div>"#, escape(&value));
    }
    html.push_str("</div>\n");
    if picture.files_without_rows > 0 {
        let _ = writeln!(
            html,
            r#"<p class="note">{} files have no row count in their statistics: their rows are not in the totals.</p>"#,
            picture.files_without_rows
        );
    }
}

fn partitions(html: &mut String, picture: &Picture) {
    html.push_str("<h2>Partitions</h2>\n");
    let (Some(first), Some(last)) = (picture.partitions.first(), picture.partitions.last()) else {
        html.push_str("<p>The table has no files yet.</p>\n");
        return;
    };
    let crowded = picture.partitions.iter().filter(|p| p.files > 1).count();
    let _ = writeln!(
        html,
        r#"<p>Partitioned by <code>{}</code>, from <b>{}</b> to <b>{}</b>. {} of {} partitions hold more than one file ({}).</p>"#,
        escape(&picture.partition_columns.join("/")),
        escape(&first.label),
        escape(&last.label),
        thousands(crowded as u64),
        thousands(picture.partitions.len() as u64),
        if crowded == 0 { "compaction would change nothing".to_string() } else { "<code>kappa-replay compact</code> merges them".to_string() }
    );
    let labels: Vec<String> = picture.partitions.iter().map(|p| p.label.clone()).collect();
    let (rows, bytes, files): (Vec<u64>, Vec<u64>, Vec<u64>) = (
        picture.partitions.iter().map(|p| p.rows).collect(),
        picture.partitions.iter().map(|p| p.bytes).collect(),
        picture.partitions.iter().map(|p| p.files).collect(),
    );
    let bars = |id, values, format, noun, color, height, bytes| Bars { id, labels: &labels, values, format, noun, color, height, bytes };
    let charts = [
        ("Rows per partition", bars("rows-per-partition", &rows, thousands, "rows", "#3366cc", 220.0, false)),
        ("Bytes per partition", bars("bytes-per-partition", &bytes, human_bytes, "", "#7b61b8", 220.0, true)),
        ("Files per partition", bars("files-per-partition", &files, thousands, "files", "#d08a1c", 160.0, false)),
    ];
    for (heading, chart) in charts {
        let _ = writeln!(html, "<h3>{heading}</h3>\n{}", chart.svg());
    }
}

fn file_sizes(html: &mut String, picture: &Picture) {
    html.push_str("<h2>File sizes</h2>\n");
    if picture.file_sizes.is_empty() {
        return;
    }
    let mut sizes = picture.file_sizes.clone();
    sizes.sort_unstable();
    let small = sizes.iter().filter(|s| **s < SMALL_FILE).count() as u64;
    let _ = writeln!(
        html,
        r#"<p>Smallest {}, median {}, largest {}. {} of {} files are under {} (an eighth of compaction's 256 MiB target).</p>"#,
        human_bytes(sizes[0]),
        human_bytes(sizes[sizes.len() / 2]),
        human_bytes(sizes[sizes.len() - 1]),
        thousands(small),
        thousands(sizes.len() as u64),
        human_bytes(SMALL_FILE)
    );
    // One bin per power of two: from 2^k up to 2^(k+1) bytes.
    let bin = |size: u64| 63 - size.max(1).leading_zeros();
    let (low, high) = (bin(sizes[0]), bin(sizes[sizes.len() - 1]));
    let mut counts = vec![0u64; (high - low + 1) as usize];
    for size in &sizes {
        counts[(bin(*size) - low) as usize] += 1;
    }
    let labels: Vec<String> = (low..=high).map(|k| format!("{}–{}", power_of_two(k), power_of_two(k + 1))).collect();
    let chart = Bars { id: "file-sizes", labels: &labels, values: &counts, format: thousands, noun: "files", color: "#2a9d8f", height: 200.0, bytes: false };
    let _ = writeln!(html, "<h3>Files by size</h3>\n{}", chart.svg());
}

fn versions(html: &mut String, picture: &Picture) {
    html.push_str("<h2>Versions</h2>\n");
    let shown = picture.versions.len() as u64;
    let _ = writeln!(
        html,
        "<p>{} of {} versions, oldest first: consumer commits (appends), compactions (files merged, rows unchanged) and a replay's switches (the whole table replaced in one commit). Hover over a dot for the commit.</p>",
        if shown == picture.version + 1 { "All".to_string() } else { format!("The newest {}", thousands(shown)) },
        thousands(picture.version + 1)
    );
    let marks: Vec<Mark> = picture
        .versions
        .iter()
        .filter_map(|v| Some(Mark { lane: lane(v), at: DateTime::<Utc>::from_timestamp_millis(v.timestamp_ms?)?, title: describe(v) }))
        .collect();
    let _ = writeln!(html, "{}", timeline("versions-timeline", &LANES, &marks));
    html.push_str(r#"<table><tr><th class="n">version</th><th>time (UTC)</th><th>operation</th><th class="n">files added</th><th class="n">removed</th><th class="n">rows added</th><th class="n">bytes added</th><th>writer</th></tr>"#);
    for version in picture.versions.iter().rev().take(VERSIONS_LISTED) {
        let _ = write!(
            html,
            r#"<tr><td class="n">{}</td><td>{}</td><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td>{}</td></tr>"#,
            version.version,
            when(version),
            escape(&operation(version)),
            thousands(version.files_added),
            thousands(version.files_removed),
            thousands(version.rows_added),
            human_bytes(version.bytes_added),
            escape(&writer(version))
        );
    }
    html.push_str("</table>\n");
}

fn schema(html: &mut String, picture: &Picture) {
    let _ = write!(
        html,
        r#"<h2>Schema</h2><p>{} columns; partition columns are marked.</p><table><tr><th>column</th><th>type</th><th>nullable</th><th></th></tr>"#,
        picture.columns.len()
    );
    for (name, data_type, nullable) in &picture.columns {
        let partition = if picture.partition_columns.contains(name) { "partition" } else { "" };
        let _ = write!(
            html,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{partition}</td></tr>",
            escape(name),
            escape(data_type),
            if *nullable { "yes" } else { "no" }
        );
    }
    html.push_str("</table>\n");
}

fn describe(version: &VersionInfo) -> String {
    let mut text = format!("version {} · {} · {}", version.version, when(version), operation(version));
    if version.files_added + version.files_removed > 0 {
        let _ = write!(
            text,
            " · +{} files, −{} · +{} rows, {}",
            thousands(version.files_added),
            thousands(version.files_removed),
            thousands(version.rows_added),
            human_bytes(version.bytes_added)
        );
    }
    let writer = writer(version);
    if !writer.is_empty() {
        let _ = write!(text, " · {writer}");
    }
    text
}

fn operation(version: &VersionInfo) -> String {
    match &version.mode {
        Some(mode) => format!("{} {mode}", version.operation),
        None => version.operation.clone(),
    }
}

/// The kappa-lake writer that made the commit and its commit counter, from the commit info.
fn writer(version: &VersionInfo) -> String {
    match (version.kappa["appId"].as_str(), version.kappa["counter"].as_i64()) {
        (Some(app), Some(counter)) => format!("{app} #{counter}"),
        (Some(app), None) => app.to_string(),
        _ => String::new(),
    }
}

fn when(version: &VersionInfo) -> String {
    version.timestamp_ms.and_then(DateTime::<Utc>::from_timestamp_millis).map_or_else(|| "?".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn power_of_two(k: u32) -> String {
    human_bytes(1u64 << k.min(63)).replace(".0 ", " ")
}

fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// `1234567` as `1,234,567`.
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Text made safe inside HTML elements and attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Partition;

    fn version(version: u64, operation: &str, mode: Option<&str>) -> VersionInfo {
        VersionInfo {
            version,
            timestamp_ms: Some(1_764_000_000_000 + version as i64 * 60_000),
            operation: operation.into(),
            mode: mode.map(str::to_string),
            kappa: serde_json::json!({ "appId": "kappa-consumer", "counter": version }),
            files_added: 2,
            files_removed: 0,
            bytes_added: 2048,
            rows_added: 10,
        }
    }

    #[test]
    fn numbers_and_text_read_safely() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(10_000_000), "10,000,000");
        assert_eq!(escape(r#"<b>"a" & 'b'</b>"#), "&lt;b&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/b&gt;");
        assert_eq!(power_of_two(20), "1 MiB");
    }

    #[test]
    fn the_page_states_the_totals_and_draws_every_partition_and_version() {
        let picture = Picture {
            table: "sales<script>".into(),
            lake: "/tmp/lake".into(),
            version: 3,
            generation: Some("g-1".into()),
            partition_columns: vec!["year".into(), "month".into(), "day".into()],
            partitions: (1..=3).map(|d| Partition { label: format!("2025/03/{d:02}"), files: d, rows: 1000 * d, bytes: 4096 * d }).collect(),
            file_sizes: vec![4096, 4096, 4096, 4096, 4096, 4096],
            versions: vec![
                version(0, "CREATE TABLE", None),
                version(1, "WRITE", Some("Append")),
                version(2, "OPTIMIZE", None),
                version(3, "WRITE", Some("Overwrite")),
            ],
            files_without_rows: 0,
            columns: vec![("sale_id".into(), "long".into(), false), ("day".into(), "string".into(), true)],
            drawn_at: Utc::now(),
        };
        let html = render(&picture);
        assert!(html.contains(r#"<p id="summary">3 partitions, 6 files, 6,000 rows, 24.0 KiB of Parquet.</p>"#), "{html}");
        assert!(!html.contains("<script>"), "names are escaped");
        for id in ["rows-per-partition", "bytes-per-partition", "files-per-partition", "file-sizes", "versions-timeline"] {
            assert!(html.contains(&format!(r#"<svg id="{id}""#)), "{id} is drawn");
        }
        assert_eq!(html.matches(r#"class="bar""#).count(), 3 * 3 + 1, "a bar per partition in three charts, one size bin");
        assert_eq!(html.matches(r#"class="version""#).count(), 4);
        assert!(html.contains("version 3 · 2025-11-24 16:03:00 · WRITE Overwrite · +2 files, −0 · +10 rows, 2.0 KiB · kappa-consumer #3"), "{html}");
        assert!(html.contains("2 of 3 partitions hold more than one file"));
    }
}
