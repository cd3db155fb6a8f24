//! The report's charts, drawn as inline SVG text: bars (per partition, the file-size
//! histogram) and the versions' time line. Each mark carries a `<title>`, which browsers show
//! on hover, so the page needs no script.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::page::escape;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 84.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 40.0;
/// At most this many labels under a chart's x axis: more would overlap.
const X_LABELS: usize = 8;

/// A bar chart: one bar per value, labelled below at even intervals.
pub(super) struct Bars<'a> {
    pub id: &'a str,
    pub labels: &'a [String],
    pub values: &'a [u64],
    /// How a value reads in the axis and the hover text.
    pub format: fn(u64) -> String,
    /// What one value is (for the hover text), e.g. "rows".
    pub noun: &'a str,
    pub color: &'a str,
    pub height: f64,
    /// Values are bytes: the axis steps are round in KiB, MiB, … rather than in bytes.
    pub bytes: bool,
}

impl Bars<'_> {
    pub(super) fn svg(&self) -> String {
        let plot_width = WIDTH - LEFT - RIGHT;
        let plot_height = self.height - TOP - BOTTOM;
        let max = self.values.iter().copied().max().unwrap_or(0);
        let top = if self.bytes { nice_bytes_ceiling(max) } else { nice_ceiling(max) };
        let mut svg = open_svg(self.id, self.height);
        // Four horizontal grid lines with their values.
        for step in 0..=4 {
            let value = top / 4 * step;
            let y = TOP + plot_height - plot_height * value as f64 / top as f64;
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end" class="axis">{}</text>"##,
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                escape(&(self.format)(value))
            );
        }
        let count = self.values.len().max(1) as f64;
        let slot = plot_width / count;
        // A gap between bars while they are wide enough to show one.
        let gap = if slot >= 4.0 { slot * 0.15 } else { 0.0 };
        for (i, (value, label)) in self.values.iter().zip(self.labels).enumerate() {
            let height = plot_height * *value as f64 / top as f64;
            let _ = write!(
                svg,
                r#"<rect class="bar" x="{:.2}" y="{:.2}" width="{:.2}" height="{height:.2}" fill="{}"><title>{}: {} {}</title></rect>"#,
                LEFT + slot * i as f64 + gap / 2.0,
                TOP + plot_height - height,
                (slot - gap).max(0.5),
                self.color,
                escape(label),
                escape(&(self.format)(*value)),
                self.noun
            );
        }
        let positions = label_positions(self.values.len());
        let crowded = self.values.len() > X_LABELS;
        for (n, i) in positions.iter().copied().enumerate() {
            // Under thin bars the outermost labels align with the chart's edges, not past them.
            let (x, anchor) = match n {
                0 if crowded => (LEFT, "start"),
                n if crowded && n + 1 == positions.len() => (WIDTH - RIGHT, "end"),
                _ => (LEFT + slot * (i as f64 + 0.5), "middle"),
            };
            let _ = write!(
                svg,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="{anchor}" class="axis">{}</text>"#,
                self.height - BOTTOM + 16.0,
                escape(&self.labels[i])
            );
        }
        let _ = write!(svg, r##"<line x1="{LEFT}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#888"/>"##, WIDTH - RIGHT, TOP + plot_height, TOP + plot_height);
        svg + "</svg>"
    }
}

/// One mark on the versions' time line.
pub(super) struct Mark {
    pub lane: usize,
    pub at: DateTime<Utc>,
    pub title: String,
}

/// The versions on a time line: one lane per kind of commit, one dot per version.
pub(super) fn timeline(id: &str, lanes: &[(&str, &str)], marks: &[Mark]) -> String {
    const LANE: f64 = 30.0;
    let height = TOP + LANE * lanes.len() as f64 + BOTTOM;
    let plot_width = WIDTH - LEFT - RIGHT - 10.0;
    let mut svg = open_svg(id, height);
    let (first, last) = match (marks.iter().map(|m| m.at).min(), marks.iter().map(|m| m.at).max()) {
        (Some(first), Some(last)) => (first, last),
        _ => return svg + "</svg>",
    };
    let span_ms = (last - first).num_milliseconds().max(1) as f64;
    let x = |at: DateTime<Utc>| {
        if first == last { LEFT + 5.0 + plot_width / 2.0 } else { LEFT + 5.0 + plot_width * (at - first).num_milliseconds() as f64 / span_ms }
    };
    for (i, (name, color)) in lanes.iter().enumerate() {
        let y = TOP + LANE * (i as f64 + 0.5);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end" class="axis" fill="{color}">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            escape(name)
        );
    }
    for mark in marks {
        let (_, color) = lanes[mark.lane];
        let _ = write!(
            svg,
            r#"<circle class="version" cx="{:.2}" cy="{:.1}" r="4.5" fill="{color}" fill-opacity="0.75"><title>{}</title></circle>"#,
            x(mark.at),
            TOP + LANE * (mark.lane as f64 + 0.5),
            escape(&mark.title)
        );
    }
    // Time labels: the first and last moment, and evenly between when the span allows.
    let span = last - first;
    let format = if span.num_hours() >= 24 {
        "%Y-%m-%d %H:%M"
    } else if span.num_seconds() >= 60 {
        "%H:%M:%S"
    } else {
        "%H:%M:%S%.3f"
    };
    let ticks = if first == last { 1 } else { 5 };
    let axis_y = TOP + LANE * lanes.len() as f64;
    for i in 0..ticks {
        let at = if ticks == 1 { first } else { first + chrono::Duration::milliseconds((span_ms * i as f64 / (ticks - 1) as f64) as i64) };
        let anchor = match i {
            0 if ticks > 1 => "start",
            i if i + 1 == ticks && ticks > 1 => "end",
            _ => "middle",
        };
        let _ = write!(svg, r#"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}" class="axis">{}</text>"#, x(at), axis_y + 18.0, at.format(format));
    }
    let _ = write!(svg, r##"<line x1="{LEFT}" x2="{}" y1="{axis_y:.1}" y2="{axis_y:.1}" stroke="#888"/>"##, WIDTH - RIGHT);
    svg + "</svg>"
}

fn open_svg(id: &str, height: f64) -> String {
    format!(r#"<svg id="{id}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img">"#)
}

/// Four grid steps of a round size (1, 2, 2.5 or 5 times a power of ten) that reach `max`.
fn nice_ceiling(max: u64) -> u64 {
    if max == 0 {
        return 4;
    }
    let step = max.div_ceil(4);
    let mut power = 1u64;
    while power.saturating_mul(10) <= step {
        power *= 10;
    }
    let nice = [10, 20, 25, 50, 100].into_iter().map(|m| m * power / 10).find(|s| *s >= step).unwrap_or(10 * power);
    nice * 4
}

/// As `nice_ceiling`, with steps round in the binary unit of `max` (5 KiB, not 4.9 KiB).
fn nice_bytes_ceiling(max: u64) -> u64 {
    let mut unit = 1u64;
    while unit < 1 << 60 && max >= unit * 1024 {
        unit *= 1024;
    }
    // In thousandths of the unit, so that 1.3 MiB gets steps of 0.5 MiB.
    let thousandths = (max as u128 * 1000).div_ceil(unit as u128) as u64;
    (nice_ceiling(thousandths) as u128 * unit as u128 / 1000) as u64
}

/// Which bars get a label: the first, the last, and evenly between.
fn label_positions(count: usize) -> Vec<usize> {
    if count <= X_LABELS {
        return (0..count).collect();
    }
    (0..X_LABELS).map(|i| i * (count - 1) / (X_LABELS - 1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_numbers_and_labels_do_not_crowd() {
        assert_eq!(nice_ceiling(0), 4);
        assert_eq!(nice_ceiling(7), 8);
        assert_eq!(nice_ceiling(83_000), 100_000);
        assert_eq!(nice_ceiling(1_000_000), 1_000_000);
        assert_eq!(nice_ceiling(1_000_001), 2_000_000);
        assert_eq!(nice_bytes_ceiling(13 * 1024 + 100), 20 * 1024);
        assert_eq!(nice_bytes_ceiling(1_363_149), 2 << 20);
        assert_eq!(label_positions(3), [0, 1, 2]);
        assert_eq!(label_positions(120), [0, 17, 34, 51, 68, 85, 102, 119]);
    }

    #[test]
    fn a_bar_per_value_with_its_label_and_value_on_hover() {
        let labels: Vec<String> = (1..=30).map(|d| format!("2025/03/{d:02}")).collect();
        let values: Vec<u64> = (1..=30).collect();
        let svg =
            Bars { id: "rows", labels: &labels, values: &values, format: |v| v.to_string(), noun: "rows", color: "#36c", height: 200.0, bytes: false }.svg();
        assert_eq!(svg.matches(r#"class="bar""#).count(), 30);
        assert!(svg.contains("<title>2025/03/30: 30 rows</title>"));
        assert!(svg.starts_with(r#"<svg id="rows""#) && svg.ends_with("</svg>"));
    }
}
