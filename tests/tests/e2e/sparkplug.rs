//! Sparkplug B from an edge node nobody here wrote: `pysparkplug` (PyPI)
//! publishes through Mosquitto, driven line by line by this test
//! (`tests/sparkplug/edge_node.py`), and the agent's MQTT source with
//! `format = "sparkplug"` reads it into a channel, so every reading is
//! checked. The expected names and values are written out by hand from
//! what the script publishes.
//!
//! Covered: an NBIRTH with every scalar datatype and aliases, a DBIRTH;
//! alias-only NDATA and DDATA without datatypes; a seq gap, answered by a
//! rebirth request the edge node obeys (a new NBIRTH with the next bdSeq);
//! the edge node killed, so the broker sends its NDEATH will,
//! after which every metric of the node and its device is bad.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use edge_agent::reading::{Input, Quality, Reading};
use edge_agent::stats::AgentStats;
use edge_tests::Mosquitto;
use tokio::sync::mpsc;

use crate::mqtt::{source_only_config, start_source, wait_for};

/// The Python edge node, answering each command with a line.
pub(crate) struct EdgeNode {
    child: Child,
    pub(crate) stdin: ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

impl EdgeNode {
    pub(crate) fn start(port: u16) -> anyhow::Result<EdgeNode> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/sparkplug/edge_node.py");
        let mut child = Command::new("python3")
            .args([script, "127.0.0.1", &port.to_string(), "plant1", "press-gw"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("python3 tests/sparkplug/edge_node.py (pip install pysparkplug)")?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(EdgeNode {
            child,
            stdin,
            lines,
        })
    }

    /// Send `cmd` and wait for its "ok" line.
    pub(crate) fn command(&mut self, cmd: &str) -> anyhow::Result<()> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        self.expect(&format!("ok {cmd}"))
    }

    /// Wait up to 20 s for a line starting with `prefix`; other lines are
    /// skipped, an "error" line fails.
    pub(crate) fn expect(&mut self, prefix: &str) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = tokio::task::block_in_place(|| self.lines.recv_timeout(left))
                .with_context(|| format!("the edge node did not print {prefix:?}"))?;
            if line.starts_with(prefix) {
                return Ok(());
            }
            ensure!(!line.starts_with("error"), "edge node: {line}");
        }
    }
}

impl Drop for EdgeNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next `n` readings (device-state events skipped), in order.
async fn take(rx: &mut mpsc::Receiver<Input>, n: usize) -> anyhow::Result<Vec<Reading>> {
    let mut got = Vec::new();
    while got.len() < n {
        let input = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .with_context(|| format!("reading {} of {n} did not arrive", got.len() + 1))?
            .context("the source closed its channel")?;
        match input {
            Input::Reading(r) => got.push(r),
            Input::Device(_) => {}
            Input::Sample { .. } => bail!("an MQTT source sent a microcontroller sample"),
        }
    }
    Ok(got)
}

fn by_name(readings: &[Reading]) -> BTreeMap<String, (f64, Quality)> {
    readings
        .iter()
        .map(|r| (r.series.name.clone(), (r.value, r.quality)))
        .collect()
}

pub(crate) const N: usize = 13; // 12 numeric node metrics and the device's rpm

pub(crate) fn expected(birth: bool) -> BTreeMap<String, (f64, Quality)> {
    #[rustfmt::skip]
    let table: [(&str, f64, f64); N] = [
        ("i8", -5.0, -128.0),
        ("i16", -300.0, 32767.0),
        ("i32", -70000.0, -2147483648.0),
        // 9007199254740993 is 2^53 + 1: an f64 holds 2^53.
        ("i64", -5e9, 9007199254740992.0),
        ("u8", 200.0, 255.0),
        ("u16", 60000.0, 1.0),
        ("u32", 4e9, 0.0),
        ("u64", 18000000000000000000.0, 42.0),
        ("f32", 1.5, -0.25),
        ("f64", std::f64::consts::PI, std::f64::consts::E),
        ("flag", 1.0, 0.0),
        // 2024-01-02T03:04:05Z and 2025-06-07T08:09:10Z in ms.
        ("when", 1704164645000.0, 1749283750000.0),
        ("motor.rpm", 1450.0, 1500.5),
    ];
    table
        .iter()
        .map(|(name, b, d)| {
            let v = if birth { *b } else { *d };
            (format!("plant1.press-gw.{name}"), (v, Quality::Good))
        })
        .collect()
}

fn all_bad(readings: &[Reading]) -> anyhow::Result<()> {
    let names: Vec<_> = by_name(readings).keys().cloned().collect();
    let want: Vec<_> = expected(true).keys().cloned().collect();
    ensure!(names == want, "bad readings for {names:?}, want {want:?}");
    for r in readings {
        ensure!(
            r.quality == Quality::Bad && r.value.is_nan(),
            "{} after a death: {} {:?}",
            r.series.name,
            r.value,
            r.quality
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pysparkplug_edge_node_births_aliases_gaps_rebirths_and_dies() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = Mosquitto::start(dir.path())?;
    let config = source_only_config(&format!(
        r#"
[[mqtt]]
host = "127.0.0.1"
port = {}
client_id = "e2e-gw-sparkplug"
[[mqtt.subscriptions]]
topic = "spBv1.0/plant1/#"
format = "sparkplug"
series = "{{2}}.{{4}}"
rebirth_requests = true
"#,
        broker.port
    ))?;
    let stats = Arc::new(AgentStats::default());
    let (mut rx, stop, task) = start_source(&config, false, &stats)?;
    wait_for("the Sparkplug subscription", || {
        stats.mqtt_subscriptions_acked.get() >= 1
    })
    .await?;

    let mut node = EdgeNode::start(broker.port)?;
    node.command("birth")?;
    let birth = take(&mut rx, N).await?;
    assert_eq!(by_name(&birth), expected(true), "NBIRTH and DBIRTH values");
    let rpm = birth
        .iter()
        .find(|r| r.series.name.ends_with("motor.rpm"))
        .unwrap();
    assert_eq!(
        rpm.series.tags.get("device").map(String::as_str),
        Some("motor")
    );
    assert_eq!(
        rpm.series.tags.get("edge_node").map(String::as_str),
        Some("press-gw")
    );
    assert_eq!(
        rpm.series.tags.get("protocol").map(String::as_str),
        Some("sparkplug")
    );
    assert_eq!(
        stats.sparkplug_unsupported_metrics.get(),
        1,
        "the String metric, named once"
    );

    node.command("alias")?;
    let data = take(&mut rx, N).await?;
    assert_eq!(
        by_name(&data),
        expected(false),
        "alias-only NDATA and DDATA"
    );
    assert!(
        stats.sparkplug_problems().is_empty(),
        "{:?}",
        stats.sparkplug_problems()
    );

    // A lost seq: the value still arrives, the gap is counted, a rebirth
    // is requested, and the edge node obeys: NDEATH, NBIRTH, DBIRTH.
    node.command("gap")?;
    let after_gap = take(&mut rx, 1).await?;
    assert_eq!(
        by_name(&after_gap).get("plant1.press-gw.f64"),
        Some(&(99.5, Quality::Good))
    );
    assert_eq!(stats.sparkplug_problems(), vec![("seq_gap", 1)]);
    node.expect("rebirth requested")?;
    assert_eq!(stats.sparkplug_rebirths_requested.get(), 1);
    // pysparkplug's disconnect publishes the NDEATH at QoS 0 and closes at
    // once, so the broker may not pass it on: then the new NBIRTH comes
    // first, and replaces the old birth just as well.
    let mut reborn = take(&mut rx, N).await?;
    let death_first = reborn.iter().all(|r| r.quality == Quality::Bad);
    if death_first {
        all_bad(&reborn)?;
        reborn = take(&mut rx, N).await?;
    }
    // A birth carries the current values: f64 was updated to 99.5 (the
    // alias-only data went around the library's own metric table).
    let mut now = expected(true);
    now.insert("plant1.press-gw.f64".into(), (99.5, Quality::Good));
    assert_eq!(by_name(&reborn), now, "the new birth's values");
    // Or the NDEATH (bdSeq of the old birth) arrives after the new NBIRTH:
    // the late death of an older session, ignored and counted.
    let wanted = |p: &[(&str, u64)]| {
        p == [("seq_gap", 1)] || (!death_first && p == [("seq_gap", 1), ("stale_death", 1)])
    };

    // Killed: the broker publishes the NDEATH will with the current bdSeq.
    writeln!(node.stdin, "die")?;
    node.stdin.flush()?;
    all_bad(&take(&mut rx, N).await?)?;
    let problems = stats.sparkplug_problems();
    assert!(wanted(&problems), "problems counted: {problems:?}");

    stop.cancel();
    task.await??;
    Ok(())
}
