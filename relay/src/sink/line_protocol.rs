//! Influx line protocol for the time-series sink: pure rendering of a
//! delivery into request bodies. No I/O.
//!
//! One line per reading:
//!
//! ```text
//! <measurement>,series=<name>,gateway=<id>,quality=<good|uncertain|bad>[,<tag>=<value>...] value=<f64> <ts_us>
//! ```
//!
//! Decisions, and why:
//! - `quality` is a tag, not a field. VictoriaMetrics turns every field into
//!   a metric `<measurement>_<field>` and reads a string field as a number
//!   (so `quality="good"` would store a meaningless 0); a tag becomes the
//!   label `quality="good"` that a query can filter on. InfluxDB treats a
//!   low-cardinality enum as a tag too.
//! - Timestamps are in microseconds; the sink adds `precision=u` to the URL,
//!   which InfluxDB 1.x and VictoriaMetrics both read. VictoriaMetrics keeps
//!   millisecond resolution, so two readings of one series within the same
//!   millisecond collapse there.
//! - NaN and ±inf cannot be written in line protocol: such readings are left
//!   out and counted (they still reach Kafka and the file sink).
//! - Series tags named like a reserved tag (`series`, `gateway`, `quality`)
//!   or with an empty key or value (InfluxDB rejects those, VictoriaMetrics
//!   ignores them) are left out and counted.
//! - Escaping: in the measurement `,` and space; in tag keys and values `,`,
//!   `=` and space get a backslash. A backslash is doubled only where it would
//!   otherwise read as an escape (before one of those characters, before
//!   another backslash, or at the end), so ordinary backslashes reach
//!   InfluxDB 1.x unchanged. Line protocol cannot carry newlines at all: CR
//!   and LF become (escaped) spaces.

use crate::message::Delivery;
use edge_wire::{Point, Series};

/// Tag keys the relay writes itself.
pub const RESERVED_TAGS: [&str; 3] = ["series", "gateway", "quality"];

/// Request bodies and what was left out.
#[derive(Debug, Default, PartialEq)]
pub struct Rendered {
    /// Newline-terminated lines, cut into bodies of about the requested size.
    pub bodies: Vec<String>,
    /// Lines written across all bodies.
    pub lines: usize,
    /// Readings left out because the value is NaN or infinite.
    pub nonfinite: u64,
    /// Series tags left out (reserved key, empty key or value), counted once per line.
    pub tags_dropped: u64,
}

/// Whether `measurement` can be written as-is: non-empty, not starting with
/// `#` (a comment line) or `_` (reserved by InfluxDB), no backslash or newline.
pub fn check_measurement(measurement: &str) -> Result<(), &'static str> {
    if measurement.is_empty() {
        return Err("must not be empty");
    }
    if measurement.starts_with('#') || measurement.starts_with('_') {
        return Err("must not start with '#' or '_'");
    }
    if measurement.contains(['\\', '\n', '\r']) {
        return Err("must not contain a backslash or a line break");
    }
    Ok(())
}

/// Render every finite reading of `delivery`, starting a new body once one
/// reaches `body_bytes`.
pub fn render(delivery: &Delivery, measurement: &str, body_bytes: usize) -> Rendered {
    let mut out = Rendered::default();
    let mut body = String::new();
    let gateway = &delivery.batch.gateway_id;
    for (series, point) in delivery.readings() {
        if !point.value.is_finite() {
            out.nonfinite += 1;
            continue;
        }
        out.tags_dropped += write_line(&mut body, measurement, gateway, series, point);
        out.lines += 1;
        if body.len() >= body_bytes {
            out.bodies.push(std::mem::take(&mut body));
        }
    }
    if !body.is_empty() {
        out.bodies.push(body);
    }
    out
}

/// Append the line of one finite reading; returns how many tags were left out.
pub fn write_line(
    out: &mut String,
    measurement: &str,
    gateway: &str,
    series: &Series,
    point: &Point,
) -> u64 {
    let mut dropped = 0;
    escape(out, measurement, false);
    for (key, value) in [
        ("series", series.name.as_str()),
        ("gateway", gateway),
        ("quality", point.quality.as_str()),
    ] {
        if value.is_empty() {
            dropped += 1;
            continue;
        }
        out.push(',');
        out.push_str(key);
        out.push('=');
        escape(out, value, true);
    }
    for (key, value) in &series.tags {
        if key.is_empty() || value.is_empty() || RESERVED_TAGS.contains(&key.as_str()) {
            dropped += 1;
            continue;
        }
        out.push(',');
        escape(out, key, true);
        out.push('=');
        escape(out, value, true);
    }
    // `{:?}` is the shortest text that parses back to the same f64, with an
    // exponent for very large or small magnitudes (1e300, not 301 digits).
    out.push_str(&format!(" value={:?} {}\n", point.value, point.ts_us));
    dropped
}

/// Append `text` escaped for a measurement (`tag == false`) or a tag key or
/// value (`tag == true`).
pub fn escape(out: &mut String, text: &str, tag: bool) {
    let special = |c: char| matches!(c, ',' | ' ' | '\n' | '\r') || (tag && c == '=');
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push('\\');
                // A backslash that the server would read as an escape.
                if chars
                    .peek()
                    .is_none_or(|&n| special(n) || n == '\\' || n == '=')
                {
                    out.push('\\');
                }
            }
            '\n' | '\r' => out.push_str("\\ "),
            c if special(c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_wire::{Batch, Quality};
    use std::collections::BTreeMap;

    #[test]
    fn escaping_table() {
        // (input, as measurement, as tag key or value)
        let table = [
            ("plain", "plain", "plain"),
            ("a b", r"a\ b", r"a\ b"),
            ("a,b", r"a\,b", r"a\,b"),
            ("a=b", "a=b", r"a\=b"),
            ("line\nbreak", r"line\ break", r"line\ break"),
            ("cr\r", r"cr\ ", r"cr\ "),
            (r"C:\temp", r"C:\temp", r"C:\temp"),
            (r"end\", r"end\\", r"end\\"),
            (r"two\\", r"two\\\\", r"two\\\\"),
            (r"a\,b", r"a\\\,b", r"a\\\,b"),
            (r"a\ b", r"a\\\ b", r"a\\\ b"),
            (r"a\=b", r"a\\=b", r"a\\\=b"),
            ("°C µs", r"°C\ µs", r"°C\ µs"),
            ("\"quoted\"", "\"quoted\"", "\"quoted\""),
            ("", "", ""),
        ];
        for (input, measurement, tag) in table {
            let mut m = String::new();
            escape(&mut m, input, false);
            assert_eq!(m, measurement, "measurement escaping of {input:?}");
            let mut t = String::new();
            escape(&mut t, input, true);
            assert_eq!(t, tag, "tag escaping of {input:?}");
        }
    }

    fn series(name: &str, tags: &[(&str, &str)], points: Vec<Point>) -> Series {
        Series {
            id: 1,
            name: name.into(),
            unit: "degC".into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            points,
        }
    }

    fn point(ts_us: i64, value: f64, quality: Quality) -> Point {
        Point {
            ts_us,
            value,
            quality,
        }
    }

    #[test]
    fn line_layout_with_tags_in_key_order_after_reserved_ones() {
        let s = series(
            "press-3.oil_temp",
            &[("site", "plant a"), ("line", "L1")],
            vec![],
        );
        let mut out = String::new();
        let dropped = write_line(
            &mut out,
            "edge",
            "gw-1",
            &s,
            &point(1_795_000_000_123_456, 73.9, Quality::Good),
        );
        assert_eq!(
            out,
            "edge,series=press-3.oil_temp,gateway=gw-1,quality=good,line=L1,site=plant\\ a value=73.9 1795000000123456\n"
        );
        assert_eq!(dropped, 0);
    }

    #[test]
    fn reserved_and_empty_tags_are_dropped_and_counted() {
        let s = series(
            "s",
            &[("gateway", "spoof"), ("", "x"), ("k", ""), ("ok", "1")],
            vec![],
        );
        let mut out = String::new();
        let dropped = write_line(&mut out, "edge", "gw-1", &s, &point(5, -0.0, Quality::Bad));
        assert_eq!(
            out,
            "edge,series=s,gateway=gw-1,quality=bad,ok=1 value=-0.0 5\n"
        );
        assert_eq!(dropped, 3);
    }

    #[test]
    fn floats_keep_a_decimal_point_or_exponent() {
        let s = series("s", &[], vec![]);
        for (value, text) in [
            (1.0, "1.0"),
            (1e300, "1e300"),
            (-2.5e-7, "-2.5e-7"),
            (0.1, "0.1"),
        ] {
            let mut out = String::new();
            write_line(&mut out, "m", "g", &s, &point(0, value, Quality::Uncertain));
            assert!(out.contains(&format!(" value={text} ")), "{value}: {out}");
        }
    }

    #[test]
    fn render_skips_non_finite_values_and_splits_bodies() {
        let points = vec![
            point(1, 1.5, Quality::Good),
            point(2, f64::NAN, Quality::Good),
            point(3, f64::INFINITY, Quality::Good),
            point(4, f64::NEG_INFINITY, Quality::Good),
            point(5, 2.5, Quality::Good),
        ];
        let batch = Batch {
            gateway_id: "gw-1".into(),
            seq: 1,
            created_us: 0,
            series: vec![series("s", &[], points)],
            alarms: vec![],
            gaps: Vec::new(),
        };
        let delivery = Delivery::new(batch).unwrap();
        let whole = render(&delivery, "edge", 1 << 20);
        assert_eq!(whole.nonfinite, 3);
        assert_eq!(whole.lines, 2);
        assert_eq!(
            whole.bodies,
            vec!["edge,series=s,gateway=gw-1,quality=good value=1.5 1\nedge,series=s,gateway=gw-1,quality=good value=2.5 5\n"]
        );
        let split = render(&delivery, "edge", 1);
        assert_eq!(split.bodies.len(), 2);
        assert_eq!(split.bodies.concat(), whole.bodies.concat());
    }

    #[test]
    fn measurement_rules() {
        assert!(check_measurement("edge").is_ok());
        assert!(check_measurement("plant a,x").is_ok());
        for bad in ["", "#edge", "_edge", "a\\b", "a\nb"] {
            assert!(check_measurement(bad).is_err(), "{bad:?}");
        }
    }
}
