//! Influx line protocol for the time-series sink: pure rendering of a
//! delivery into request bodies. No I/O.
//!
//! One line per reading; with the default [`LineLayout`]:
//!
//! ```text
//! <measurement>,series=<name>,gateway=<id>,quality=<good|uncertain|bad>[,<tag>=<value>...] value=<f64> <ts_us>
//! ```
//!
//! The layout is configurable (`[timeseries]` keys, checked by
//! [`LineLayout::problems`]): the measurement, the tag keys of the series
//! name and the gateway (or no gateway tag), quality as a tag, as an integer
//! field (`quality=0i`, the wire code: 0 good, 1 uncertain, 2 bad) or left
//! out, and the name of the value field.
//!
//! Decisions, and why:
//! - By default `quality` is a tag, not a field. VictoriaMetrics turns every
//!   field into a metric `<measurement>_<field>` and reads a string field as
//!   a number (so `quality="good"` would store a meaningless 0); a tag
//!   becomes the label `quality="good"` that a query can filter on. InfluxDB
//!   treats a low-cardinality enum as a tag too. As a field it is therefore
//!   the integer code, which both stores read as a number.
//! - Timestamps are in microseconds; the sink adds `precision=u` to the URL,
//!   which InfluxDB 1.x and VictoriaMetrics both read. VictoriaMetrics keeps
//!   millisecond resolution, so two readings of one series within the same
//!   millisecond collapse there.
//! - NaN and ±inf cannot be written in line protocol: such readings are left
//!   out and counted (they still reach Kafka and the file sink).
//! - Series tags named like a tag or field the layout writes itself (by
//!   default `series`, `gateway`, `quality`, `value`), named `time` (InfluxDB refuses the
//!   whole write for it), or with an empty key or value (InfluxDB rejects
//!   those, VictoriaMetrics ignores them) are left out and counted.
//! - Layout keys are plain names (ASCII letters, digits, `_`, `-`, `.`, not
//!   starting with `_`, not `time`), so they never need escaping and a typo
//!   is caught when the config is loaded, not by the store at the first batch.
//! - Escaping: in the measurement `,` and space; in tag keys and values `,`,
//!   `=` and space get a backslash. A backslash is doubled only where it would
//!   otherwise read as an escape (before one of those characters, before
//!   another backslash, or at the end), so ordinary backslashes reach
//!   InfluxDB 1.x unchanged. Line protocol cannot carry newlines at all: CR
//!   and LF become (escaped) spaces.

use crate::message::Delivery;
use edge_wire::{Point, Series};

/// Default line-protocol measurement name.
pub const DEFAULT_MEASUREMENT: &str = "edge";

/// How readings are laid out as lines. [`LineLayout::default`] is the
/// layout described in the module doc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineLayout {
    /// Measurement name of every line.
    pub measurement: String,
    /// Tag key that carries the series name.
    pub series_tag: String,
    /// Tag key that carries the gateway id; `None` leaves the gateway out.
    pub gateway_tag: Option<String>,
    /// Where the quality goes.
    pub quality: QualityAs,
    /// Tag or field key of the quality (unused with [`QualityAs::Omitted`]).
    pub quality_key: String,
    /// Field key of the value.
    pub value_field: String,
}

impl Default for LineLayout {
    fn default() -> Self {
        LineLayout {
            measurement: DEFAULT_MEASUREMENT.into(),
            series_tag: "series".into(),
            gateway_tag: Some("gateway".into()),
            quality: QualityAs::Tag,
            quality_key: "quality".into(),
            value_field: "value".into(),
        }
    }
}

/// Where a reading's quality is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QualityAs {
    /// A tag with the name: `quality=good`.
    Tag,
    /// An integer field with the wire code: `quality=0i`.
    Field,
    /// Not written.
    Omitted,
}

impl QualityAs {
    /// The config spellings, in the order the docs list them.
    pub const NAMES: [&'static str; 3] = ["tag", "field", "none"];

    /// Parse a config value: `tag`, `field` or `none`.
    pub fn parse(text: &str) -> Option<QualityAs> {
        match text {
            "tag" => Some(QualityAs::Tag),
            "field" => Some(QualityAs::Field),
            "none" => Some(QualityAs::Omitted),
            _ => None,
        }
    }
}

impl LineLayout {
    /// Every rule the layout breaks, as (key under `[timeseries]`, message
    /// naming the value). Empty when the layout can be written.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Err(why) = check_measurement(&self.measurement) {
            out.push(("measurement", format!("{:?}: {why}", self.measurement)));
        }
        let mut keys: Vec<(&'static str, &str)> = vec![("series_tag", &self.series_tag)];
        if let Some(gateway) = &self.gateway_tag {
            keys.push(("gateway_tag", gateway));
        }
        if self.quality != QualityAs::Omitted {
            keys.push(("quality_key", &self.quality_key));
        }
        keys.push(("value_field", &self.value_field));
        for (key, name) in &keys {
            if let Err(why) = check_key(name) {
                out.push((key, format!("{name:?}: {why}")));
            }
        }
        // A tag and a field of the same name are ambiguous in InfluxQL.
        for (i, (key, name)) in keys.iter().enumerate() {
            if let Some((first, _)) = keys[..i].iter().find(|(_, n)| n == name) {
                out.push((
                    key,
                    format!("{name:?} is already used by timeseries.{first}"),
                ));
            }
        }
        out
    }

    /// Whether a series tag with this key would clash with a tag or field
    /// the layout writes itself, or with InfluxDB's `time`.
    fn reserves(&self, key: &str) -> bool {
        key == "time"
            || key == self.series_tag
            || key == self.value_field
            || self.gateway_tag.as_deref() == Some(key)
            || (self.quality != QualityAs::Omitted && key == self.quality_key)
    }
}

/// Whether `key` can be a layout tag or field key: 1 or more ASCII letters,
/// digits, `_`, `-`, `.`, not starting with `_` (reserved by InfluxDB) and
/// not `time` (InfluxDB refuses it).
pub fn check_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("must not be empty");
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    {
        return Err("may contain only ASCII letters, digits, '_', '-' and '.'");
    }
    if key.starts_with('_') {
        return Err("must not start with '_'");
    }
    if key == "time" {
        return Err("\"time\" is reserved by InfluxDB");
    }
    Ok(())
}

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
pub fn render(delivery: &Delivery, layout: &LineLayout, body_bytes: usize) -> Rendered {
    let mut out = Rendered::default();
    let mut body = String::new();
    let gateway = &delivery.batch.gateway_id;
    for (series, point) in delivery.readings() {
        if !point.value.is_finite() {
            out.nonfinite += 1;
            continue;
        }
        out.tags_dropped += write_line(&mut body, layout, gateway, series, point);
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
    layout: &LineLayout,
    gateway: &str,
    series: &Series,
    point: &Point,
) -> u64 {
    let mut dropped = 0;
    escape(out, &layout.measurement, false);
    let own = [
        (Some(layout.series_tag.as_str()), series.name.as_str()),
        (layout.gateway_tag.as_deref(), gateway),
        (
            (layout.quality == QualityAs::Tag).then_some(layout.quality_key.as_str()),
            point.quality.as_str(),
        ),
    ];
    for (key, value) in own {
        let Some(key) = key else { continue };
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
        if key.is_empty() || value.is_empty() || layout.reserves(key) {
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
    out.push_str(&format!(" {}={:?}", layout.value_field, point.value));
    if layout.quality == QualityAs::Field {
        out.push_str(&format!(
            ",{}={}i",
            layout.quality_key,
            point.quality.code()
        ));
    }
    out.push_str(&format!(" {}\n", point.ts_us));
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

    fn layout(measurement: &str) -> LineLayout {
        LineLayout {
            measurement: measurement.into(),
            ..LineLayout::default()
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
            reporting: None,
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
            &layout("edge"),
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
        let dropped = write_line(
            &mut out,
            &layout("edge"),
            "gw-1",
            &s,
            &point(5, -0.0, Quality::Bad),
        );
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
            write_line(
                &mut out,
                &layout("m"),
                "g",
                &s,
                &point(0, value, Quality::Uncertain),
            );
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
            instance: None,
            seq: 1,
            created_us: 0,
            series: vec![series("s", &[], points)],
            alarms: vec![],
            gaps: Vec::new(),
            devices: Vec::new(),
        };
        let delivery = Delivery::new(batch).unwrap();
        let whole = render(&delivery, &layout("edge"), 1 << 20);
        assert_eq!(whole.nonfinite, 3);
        assert_eq!(whole.lines, 2);
        assert_eq!(
            whole.bodies,
            vec!["edge,series=s,gateway=gw-1,quality=good value=1.5 1\nedge,series=s,gateway=gw-1,quality=good value=2.5 5\n"]
        );
        let split = render(&delivery, &layout("edge"), 1);
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

    fn custom(quality: QualityAs, gateway_tag: Option<&str>) -> LineLayout {
        LineLayout {
            measurement: "plant readings".into(),
            series_tag: "sensor".into(),
            gateway_tag: gateway_tag.map(Into::into),
            quality,
            quality_key: "q".into(),
            value_field: "v".into(),
        }
    }

    #[test]
    fn non_default_layouts_render_their_own_names() {
        let s = series(
            "press-3.oil_temp",
            &[("series", "kept"), ("sensor", "spoof"), ("q", "x")],
            vec![],
        );
        let p = point(1_795_000_000_123_456, 73.9, Quality::Uncertain);
        // (quality placement, gateway tag, expected line, tags dropped)
        let table = [
            (
                QualityAs::Tag,
                Some("gw"),
                "plant\\ readings,sensor=press-3.oil_temp,gw=gw-1,q=uncertain,series=kept v=73.9 1795000000123456\n",
                2,
            ),
            (
                QualityAs::Field,
                Some("gw"),
                "plant\\ readings,sensor=press-3.oil_temp,gw=gw-1,series=kept v=73.9,q=1i 1795000000123456\n",
                2,
            ),
            (
                QualityAs::Omitted,
                None,
                "plant\\ readings,sensor=press-3.oil_temp,q=x,series=kept v=73.9 1795000000123456\n",
                1,
            ),
        ];
        for (quality, gateway_tag, expected, dropped) in table {
            let layout = custom(quality, gateway_tag);
            assert!(layout.problems().is_empty(), "{:?}", layout.problems());
            let mut out = String::new();
            let n = write_line(&mut out, &layout, "gw-1", &s, &p);
            assert_eq!(out, expected, "{quality:?}");
            assert_eq!(n, dropped, "{quality:?}");
        }
    }

    #[test]
    fn without_a_gateway_tag_a_series_tag_named_gateway_is_kept_and_time_never() {
        let s = series("s", &[("gateway", "from-series"), ("time", "t")], vec![]);
        let layout = custom(QualityAs::Field, None);
        let mut out = String::new();
        let dropped = write_line(&mut out, &layout, "gw-1", &s, &point(7, 2.0, Quality::Bad));
        assert_eq!(
            out,
            "plant\\ readings,sensor=s,gateway=from-series v=2.0,q=2i 7\n"
        );
        assert_eq!(dropped, 1);
    }

    #[test]
    fn layout_problems_name_the_key_and_value() {
        assert!(LineLayout::default().problems().is_empty());
        let problems = |layout: LineLayout| -> Vec<(&'static str, String)> { layout.problems() };
        let bad = LineLayout {
            measurement: "_m".into(),
            series_tag: "".into(),
            gateway_tag: Some("time".into()),
            quality: QualityAs::Field,
            quality_key: "a b".into(),
            value_field: "_v".into(),
        };
        let found = problems(bad);
        let keys: Vec<&str> = found.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "measurement",
                "series_tag",
                "gateway_tag",
                "quality_key",
                "value_field"
            ],
            "{found:?}"
        );
        assert!(found[2].1.contains("\"time\""), "{found:?}");
        assert!(found[3].1.contains("\"a b\""), "{found:?}");

        let clash = LineLayout {
            gateway_tag: Some("series".into()),
            quality: QualityAs::Field,
            quality_key: "value".into(),
            ..LineLayout::default()
        };
        assert_eq!(
            problems(clash),
            [
                (
                    "gateway_tag",
                    "\"series\" is already used by timeseries.series_tag".to_string()
                ),
                (
                    "value_field",
                    "\"value\" is already used by timeseries.quality_key".to_string()
                ),
            ]
        );
        // An omitted quality's key is not checked.
        let omitted = LineLayout {
            quality: QualityAs::Omitted,
            quality_key: "value".into(),
            ..LineLayout::default()
        };
        assert!(problems(omitted).is_empty());
    }

    #[test]
    fn quality_placement_spellings() {
        for name in QualityAs::NAMES {
            assert!(QualityAs::parse(name).is_some(), "{name}");
        }
        assert_eq!(QualityAs::parse("none"), Some(QualityAs::Omitted));
        assert_eq!(QualityAs::parse("Tag"), None);
    }
}
