//! Loading the real sensor data sets (`testdata/`, see its README) into
//! one device's rows, and cutting the rows into batches of a given size.
//!
//! A [`Dataset`] is one device: a few sensors sampled together, so every row
//! has a timestamp and one value per sensor. That is the shape both formats
//! are fed: one `Series` per sensor in our batches, one line per row in
//! line protocol. Parsing is by hand; the files are simple and trusted.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use edge_wire::{Batch, Point, Quality, Series};

/// One device's readings, row by row.
pub struct Dataset {
    /// Short name for the table, e.g. `SKAB valve1`.
    pub label: String,
    /// Line-protocol measurement name.
    pub measurement: String,
    /// Tags of every series (site, line, asset, protocol).
    pub tags: BTreeMap<String, String>,
    /// Sensor names and units, one per value column.
    pub sensors: Vec<(String, String)>,
    /// Timestamps in µs since the epoch, one per row.
    pub ts_us: Vec<i64>,
    /// `values[row * sensors.len() + column]`.
    pub values: Vec<f64>,
}

impl Dataset {
    pub fn rows(&self) -> usize {
        self.ts_us.len()
    }

    /// Cut the rows into batches of `readings_per_batch` readings (the last
    /// one may be smaller), as the agent would seal them.
    pub fn batches(&self, readings_per_batch: usize) -> Vec<Batch> {
        let width = self.sensors.len();
        let rows_per_batch = (readings_per_batch / width).max(1);
        let mut out = Vec::new();
        for (seq, start) in (0..self.rows()).step_by(rows_per_batch).enumerate() {
            let end = (start + rows_per_batch).min(self.rows());
            let series = self
                .sensors
                .iter()
                .enumerate()
                .map(|(col, (name, unit))| Series {
                    id: col as u32,
                    name: name.clone(),
                    unit: unit.clone(),
                    tags: self.tags.clone(),
                    points: (start..end)
                        .map(|row| Point {
                            ts_us: self.ts_us[row],
                            value: self.values[row * width + col],
                            quality: Quality::Good,
                        })
                        .collect(),
                    reporting: None,
                })
                .collect();
            out.push(Batch {
                gateway_id: "plant-a-gw-1".into(),
                instance: None,
                seq: seq as u64,
                created_us: self.ts_us[end - 1] + 1_000,
                series,
                alarms: Vec::new(),
                gaps: Vec::new(),
                devices: Vec::new(),
            });
        }
        out
    }
}

fn tags(asset: &str) -> BTreeMap<String, String> {
    [
        ("site", "plant-a"),
        ("line", "line-2"),
        ("asset", asset),
        ("protocol", "modbus"),
    ]
    .iter()
    .map(|&(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// SKAB `valve1/*.csv`: eight sensors of a water pump at 1 Hz, `;`-separated.
/// Files are read in numeric order (0, 1, … 15) and concatenated.
pub fn load_skab(data_dir: &Path) -> Result<Dataset> {
    let dir = data_dir.join("skab/valve1");
    let mut files: Vec<(u32, std::path::PathBuf)> = fs::read_dir(&dir)
        .with_context(|| format!("reading SKAB directory {}", dir.display()))?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let n = path.file_stem()?.to_str()?.parse().ok()?;
            (path.extension()? == "csv").then_some((n, path))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no SKAB files (0.csv … 15.csv) in {}", dir.display());
    }
    let paths: Vec<_> = files.into_iter().map(|(_, path)| path).collect();
    skab_dataset("SKAB valve1 (8 sensors, 1 Hz)", "pump-1", &paths)
}

/// SKAB `anomaly-free/anomaly-free.csv`: the same testbed's eight sensors
/// in normal operation, one file without the label columns.
pub fn load_skab_anomaly_free(data_dir: &Path) -> Result<Dataset> {
    let path = data_dir.join("skab/anomaly-free/anomaly-free.csv");
    skab_dataset("SKAB anomaly-free (8 sensors, 1 Hz)", "pump-2", &[path])
}

/// The rows of SKAB `files`: `datetime`, the eight sensors, then (valve1)
/// the `anomaly` and `changepoint` labels, which are skipped.
fn skab_dataset(label: &str, asset: &str, files: &[std::path::PathBuf]) -> Result<Dataset> {
    let units = ["g", "g", "A", "bar", "degC", "degC", "V", "l/min"];
    let mut sensors = Vec::new();
    let mut ts_us = Vec::new();
    let mut values = Vec::new();
    for path in files {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(';').collect();
        // datetime, 8 sensors, then (valve1) the two labels.
        let width = header.len();
        if ![9, 11].contains(&width) || header[0] != "datetime" {
            bail!("{}: unexpected header {header:?}", path.display());
        }
        if sensors.is_empty() {
            sensors = header[1..9]
                .iter()
                .zip(units)
                .map(|(name, unit)| (name.to_string(), unit.to_string()))
                .collect();
        }
        for (i, line) in lines.enumerate().filter(|(_, l)| !l.is_empty()) {
            let at = || format!("{} line {}", path.display(), i + 2);
            let fields: Vec<&str> = line.split(';').collect();
            if fields.len() != width {
                bail!("{}: {} fields, expected {width}", at(), fields.len());
            }
            ts_us.push(parse_datetime_us(fields[0]).with_context(at)?);
            for f in &fields[1..9] {
                values.push(
                    f.parse::<f64>()
                        .with_context(|| format!("{}: value {f:?}", at()))?,
                );
            }
        }
    }
    Ok(Dataset {
        label: label.into(),
        measurement: "modbus".into(),
        tags: tags(asset),
        sensors,
        ts_us,
        values,
    })
}

/// NAB `machine_temperature_system_failure.csv`: one temperature every 5 min.
pub fn load_nab(data_dir: &Path) -> Result<Dataset> {
    let path = data_dir.join("nab/machine_temperature_system_failure.csv");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut ts_us = Vec::new();
    let mut values = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .skip(1)
        .filter(|(_, l)| !l.is_empty())
    {
        let at = || format!("{} line {}", path.display(), i + 1);
        let (ts, value) = line
            .split_once(',')
            .with_context(|| format!("{}: no comma", at()))?;
        ts_us.push(parse_datetime_us(ts).with_context(at)?);
        values.push(
            value
                .parse::<f64>()
                .with_context(|| format!("{}: value {value:?}", at()))?,
        );
    }
    Ok(Dataset {
        label: "NAB machine temperature (1 sensor, 5 min)".into(),
        measurement: "modbus".into(),
        tags: tags("machine-1"),
        sensors: vec![("temperature".into(), "degC".into())],
        ts_us,
        values,
    })
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) to µs since the Unix epoch.
pub fn parse_datetime_us(s: &str) -> Result<i64> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 19
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b' ' || b[10] == b'T')
        && b[13] == b':'
        && b[16] == b':';
    if !shape_ok {
        bail!("datetime {s:?} is not YYYY-MM-DD HH:MM:SS");
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64> {
        s[range]
            .parse::<i64>()
            .with_context(|| format!("datetime {s:?}"))
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let secs =
        days_from_civil(y, m, d) * 86_400 + num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?;
    Ok(secs * 1_000_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        let table = [
            ("1970-01-01 00:00:00", 0),
            ("2000-03-01 00:00:01", 951_868_801_000_000),
            ("2013-12-02 21:15:00", 1_386_018_900_000_000),
            ("2020-03-09 10:14:33", 1_583_748_873_000_000),
        ];
        for (s, us) in table {
            assert_eq!(parse_datetime_us(s).unwrap(), us, "{s}");
        }
        assert!(parse_datetime_us("2020-03-09").is_err());
    }
}
