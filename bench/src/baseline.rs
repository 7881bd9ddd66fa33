//! The baselines we compare against: the same readings as InfluxDB line
//! protocol, gzip-compressed, the way Telegraf would send them; and the
//! plain columns (`f64` values and `i64` timestamps, little-endian)
//! compressed with xz, what a generic compressor makes of the numbers
//! themselves.
//!
//! One line per timestamp per device carrying every sensor as a field,
//! the device's tags, nanosecond timestamps, floats printed shortest
//! round-trip (Rust's `Display` for `f64`, like Go's `FormatFloat(v, 'f',
//! -1, 64)`), then the whole body gzipped at flate2's default level (6).
//! NaN and infinities cannot be written in line protocol; Telegraf drops
//! such fields, and so do we.

use std::io::Write;

use edge_wire::Batch;
use flate2::write::GzEncoder;
use flate2::Compression;

/// Escape a measurement name (commas and spaces).
fn escape_measurement(s: &str, out: &mut Vec<u8>) {
    for c in s.bytes() {
        if matches!(c, b',' | b' ') {
            out.push(b'\\');
        }
        out.push(c);
    }
}

/// Escape a tag key, tag value or field key (commas, equals signs, spaces).
fn escape_key(s: &str, out: &mut Vec<u8>) {
    for c in s.bytes() {
        if matches!(c, b',' | b'=' | b' ') {
            out.push(b'\\');
        }
        out.push(c);
    }
}

/// Write `batch` as line protocol into `out` (cleared first). The series of
/// the batch are the fields of one device and share their timestamps.
pub fn write_lines(batch: &Batch, measurement: &str, out: &mut Vec<u8>) {
    out.clear();
    let Some(first) = batch.series.first() else {
        return;
    };
    // Series key: measurement and tags, the same on every line.
    let mut key = Vec::new();
    escape_measurement(measurement, &mut key);
    for (k, v) in &first.tags {
        key.push(b',');
        escape_key(k, &mut key);
        key.push(b'=');
        escape_key(v, &mut key);
    }
    for (row, p) in first.points.iter().enumerate() {
        out.extend_from_slice(&key);
        let mut separator = b' ';
        for s in &batch.series {
            let value = s.points[row].value;
            if !value.is_finite() {
                continue;
            }
            out.push(separator);
            separator = b',';
            escape_key(&s.name, out);
            // Writing to a Vec cannot fail.
            let _ = write!(out, "={value}");
        }
        let _ = writeln!(out, " {}", i128::from(p.ts_us) * 1000);
    }
}

/// Line protocol of `batch`, gzipped. `text` is a reusable scratch buffer.
pub fn encode(batch: &Batch, measurement: &str, text: &mut Vec<u8>) -> Vec<u8> {
    write_lines(batch, measurement, text);
    let mut gz = GzEncoder::new(Vec::with_capacity(text.len() / 4), Compression::default());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(text);
    gz.finish().unwrap_or_default()
}

/// xz preset of the column baseline (xz's default, level 6).
pub const XZ_PRESET: u32 = 6;

/// Every series of `batch` as two raw columns, its `i64` timestamps then
/// its `f64` value bits, little-endian, series after series, in one xz
/// stream (preset [`XZ_PRESET`], CRC64). Names, units and tags are left
/// out: this measures the numbers only.
pub fn encode_f64_xz(batch: &Batch, raw: &mut Vec<u8>) -> Vec<u8> {
    raw.clear();
    for s in &batch.series {
        for p in &s.points {
            raw.extend_from_slice(&p.ts_us.to_le_bytes());
        }
        for p in &s.points {
            raw.extend_from_slice(&p.value.to_bits().to_le_bytes());
        }
    }
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), XZ_PRESET);
    // Writing to a Vec cannot fail.
    let _ = xz.write_all(raw);
    xz.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_wire::{Point, Quality, Series};

    #[test]
    fn lines_like_telegraf() {
        type Tags = std::collections::BTreeMap<String, String>;
        let tags: Tags = [("site", "plant a"), ("asset", "pump-1")]
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let series = |id, name: &str, values: [f64; 2]| Series {
            id,
            name: name.into(),
            unit: String::new(),
            tags: tags.clone(),
            points: values
                .iter()
                .enumerate()
                .map(|(i, &value)| Point {
                    ts_us: 1_583_748_873_000_000 + i as i64 * 1_000_000,
                    value,
                    quality: Quality::Good,
                })
                .collect(),
            reporting: None,
        };
        let batch = Batch {
            gateway_id: "gw".into(),
            instance: None,
            seq: 0,
            created_us: 0,
            series: vec![
                series(0, "Current", [1.3302, 32.0]),
                series(1, "Volume Flow RateRMS", [f64::NAN, 0.1 + 0.2]),
            ],
            alarms: Vec::new(),
            gaps: Vec::new(),
            devices: Vec::new(),
        };
        let mut out = Vec::new();
        write_lines(&batch, "modbus", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "modbus,asset=pump-1,site=plant\\ a Current=1.3302 1583748873000000000\n\
             modbus,asset=pump-1,site=plant\\ a Current=32,Volume\\ Flow\\ RateRMS=0.30000000000000004 1583748874000000000\n"
        );
    }
}
