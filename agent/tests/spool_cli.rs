//! `edge-agent spool stats` and `edge-agent spool export` run as the
//! binary against a spool written through the library: the figures and
//! lines they print, and that they leave the database as it was.

use std::path::Path;
use std::process::{Command, Output};

use edge_agent::spool::{Lane, Spool};
use edge_wire::{AlarmEvent, AlarmState, Batch, Point, Quality, Series, Severity};

fn series(name: &str, points: Vec<Point>) -> Series {
    Series {
        id: 0,
        name: name.into(),
        unit: "degC".into(),
        tags: Default::default(),
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

fn config(dir: &Path, spool: &Path) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "gateway_id = \"gw-1\"\n[spool]\npath = {:?}\n[uplink]\nurl = \"http://127.0.0.1:9/v1/batches\"\ntoken = \"t\"\n[[simulated]]\nname = \"s\"\nmean = 1.0\n",
            spool.display().to_string()
        ),
    )
    .unwrap();
    path
}

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(args)
        .output()
        .unwrap()
}

/// A spool with two reading batches (3 readings) and one alarm batch.
fn spool_with_backlog(path: &Path, oldest_us: i64) {
    let mut s = Spool::open(path).unwrap();
    let mut b1 = Batch {
        gateway_id: "gw-1".into(),
        instance: None,
        seq: 0,
        created_us: oldest_us + 1_000_000,
        series: vec![series(
            "press-3.oil_temp",
            vec![
                point(oldest_us, 71.5, Quality::Good),
                point(oldest_us + 500_000, 72.25, Quality::Uncertain),
            ],
        )],
        alarms: vec![],
        gaps: Vec::new(),
        devices: Vec::new(),
    };
    s.append(&mut b1, &[], Lane::Readings).unwrap();
    let mut b2 = Batch {
        created_us: oldest_us + 2_000_000,
        series: vec![series(
            "press-3.pressure",
            vec![point(oldest_us + 1_500_000, -3.0, Quality::Bad)],
        )],
        ..b1.clone()
    };
    s.append(&mut b2, &[], Lane::Readings).unwrap();
    let mut alarm = Batch {
        created_us: oldest_us + 3_000_000,
        series: vec![series("press-3.oil_temp", vec![])],
        alarms: vec![AlarmEvent {
            series_id: 0,
            spc: None,
            rule: "oil_temp.high".into(),
            state: AlarmState::Raised,
            severity: Some(Severity::Critical),
            value: 91.0,
            limit: 80.0,
            ts_us: oldest_us + 2_500_000,
            duration_us: None,
            limit_kind: None,
        }],
        ..b1.clone()
    };
    s.append(&mut alarm, &[], Lane::Alarms).unwrap();
}

#[test]
fn stats_prints_the_backlog_and_export_writes_every_reading_and_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("spool.db");
    let hour_ago = edge_agent::reading::now_us() - 3_600_000_000;
    spool_with_backlog(&db, hour_ago);
    let cfg = config(dir.path(), &db);
    let before = std::fs::read(&db).unwrap();

    let out = agent(&["spool", "stats", "--config", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "batches: 3",
        "readings: 3",
        "quarantined: 0",
        "dropped_readings_full: 0",
        "gaps: 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    let age: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("oldest_unsent_age_s: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!((3600..3700).contains(&age), "age {age}");

    let export = dir.path().join("export.jsonl");
    let out = agent(&[
        "spool",
        "export",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        export.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<String> = lines
        .iter()
        .map(|l| match l["type"].as_str().unwrap() {
            "reading" => format!(
                "{} {} {} {} {}",
                l["seq"],
                l["series"],
                l["ts_us"].as_i64().unwrap() - hour_ago,
                l["value"],
                l["quality"]
            ),
            _ => format!(
                "{} alarm {} {} {} {}",
                l["seq"], l["series"], l["rule"], l["state"], l["severity"]
            ),
        })
        .collect();
    // Send order: the alarm lane first, then the readings oldest first.
    assert_eq!(
        summary,
        [
            "3 alarm \"press-3.oil_temp\" \"oil_temp.high\" \"raised\" \"critical\"",
            "1 \"press-3.oil_temp\" 0 71.5 \"good\"",
            "1 \"press-3.oil_temp\" 500000 72.25 \"uncertain\"",
            "2 \"press-3.pressure\" 1500000 -3.0 \"bad\"",
        ]
    );
    // Read-only: the database is byte for byte what it was, and a spool
    // opened afterwards still holds everything.
    assert_eq!(std::fs::read(&db).unwrap(), before);
    assert_eq!(Spool::open(&db).unwrap().stats().unwrap().batches, 3);
}

#[test]
fn a_missing_spool_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nope.db");
    let cfg = config(dir.path(), &db);
    let out = agent(&["spool", "stats", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("nope.db"), "{err}");
    assert!(!db.exists(), "stats created a spool");
}
