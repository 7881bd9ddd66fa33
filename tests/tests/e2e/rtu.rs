//! Modbus RTU: the agent's serial-line poller against pymodbus serving RTU
//! on one end of a socat pseudo-terminal pair, the agent on the other.
//!
//! Units 1 and 2 answer (the map of `tests/py/modbus_server.py`); unit 3 is
//! configured but absent, as a slave that is off or has lost its address.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use edge_agent::config::AgentConfig;
use edge_agent::reading::{Input, Quality};
use edge_agent::stats::AgentStats;
use edge_tests::PtyPair;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::modbus::{receive_until, PyModbus, MAP};

/// (point name, `[[modbus.points]]` body) pairs.
type Points<'a> = &'a [(&'a str, &'a str)];

/// A config with one serial line on `tty` and a `[[modbus]]` section per
/// (name, unit, points), all polled every 100 ms.
fn config(tty: &Path, devices: &[(&str, u8, Points)]) -> anyhow::Result<AgentConfig> {
    let mut text = format!(
        r#"gateway_id = "gw"
[spool]
path = "/tmp/unused.db"
[uplink]
url = "http://127.0.0.1:1/v1/batches"
token = "t"
[serial.bus]
device = "{}"
baud = 19200
parity = "none"
"#,
        tty.display()
    );
    for (name, unit, points) in devices {
        text.push_str(&format!(
            "[[modbus]]\nname = \"{name}\"\nserial = \"bus\"\nunit = {unit}\npoll_interval_ms = 100\ntimeout_ms = 300\n"
        ));
        for (point, body) in *points {
            let body = body.replace(", ", "\n");
            text.push_str(&format!("[[modbus.points]]\nname = \"{point}\"\n{body}\n"));
        }
    }
    Ok(AgentConfig::parse(&text, "rtu.rs")?)
}

/// Start every link of `config`; readings arrive on the receiver.
fn start(
    config: &AgentConfig,
    stats: &Arc<AgentStats>,
    stop: &CancellationToken,
) -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(4096);
    for link in edge_agent::modbus_links(config, stats) {
        tokio::spawn(link.run(tx.clone(), stop.clone()));
    }
    rx
}

/// The first `n` points of the map, with their expected values.
fn map_points(n: usize) -> (Vec<(&'static str, &'static str)>, HashMap<String, f64>) {
    let points = MAP[..n]
        .iter()
        .map(|&(name, body, _)| (name, body))
        .collect();
    let want = MAP[..n]
        .iter()
        .map(|&(name, _, v)| (format!("meter-1.{name}"), v))
        .collect();
    (points, want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slaves_share_the_line_and_a_dead_one_does_not_stall_the_others() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pty = PtyPair::start(dir.path())?;
    let server = PyModbus::start_rtu(&pty.b, &[], dir.path())?;
    let (points, mut want) = map_points(8);
    want.insert("meter-2.r0".into(), 222.0);
    let r0: &[(&str, &str)] = &[("r0", r#"register = 0, type = "u16""#)];
    let config = config(
        &pty.a,
        &[
            ("meter-1", 1, &points),
            ("meter-2", 2, r0),
            ("meter-3", 3, r0),
        ],
    )?;
    let stats = Arc::new(AgentStats::default());
    let stop = CancellationToken::new();
    let mut rx = start(&config, &stats, &stop);

    // Every reading of units 1 and 2 is good and right, none comes from
    // unit 3; run until each answering unit has been polled 30 times.
    let mut polls: HashMap<&str, usize> = HashMap::new();
    let mut wrong = Vec::new();
    receive_until(&mut rx, Duration::from_secs(60), |r| {
        match want.get(&r.series.name) {
            Some(&v) if r.quality == Quality::Good && r.value == v => {}
            _ => wrong.push(format!("{}: {:?} {}", r.series.name, r.quality, r.value)),
        }
        for (series, device) in [("meter-1.u16_abcd", "meter-1"), ("meter-2.r0", "meter-2")] {
            if r.series.name == series {
                *polls.entry(device).or_default() += 1;
            }
        }
        polls.values().filter(|&&n| n >= 30).count() == 2
    })
    .await
    .with_context(|| format!("polls {polls:?}\n{}", server.log_tail()))?;
    ensure!(
        wrong.is_empty(),
        "unexpected readings:\n{}",
        wrong.join("\n")
    );

    // Unit 3 failed (no reply), and backed off: it cost far fewer failed
    // requests than the healthy units' polls in the same time, where
    // polling it every cycle with one retry would cost two per cycle.
    let failed = stats.modbus_transport_errors.get();
    ensure!(failed >= 1, "the absent unit never failed");
    ensure!(
        failed < 15,
        "{failed} failed requests for 30 polls: the dead slave is not backing off"
    );
    assert_eq!(stats.modbus_crc_errors.get(), 0);
    stop.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_reply_is_counted_retried_and_never_decoded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pty = PtyPair::start(dir.path())?;
    // Every 5th reply leaves pymodbus with one bit flipped.
    let server = PyModbus::start_rtu(&pty.b, &["--corrupt-every", "5"], dir.path())?;
    let (points, want) = map_points(MAP.len());
    let config = config(&pty.a, &[("meter-1", 1, &points)])?;
    let stats = Arc::new(AgentStats::default());
    let stop = CancellationToken::new();
    let mut rx = start(&config, &stats, &stop);

    let mut wrong = Vec::new();
    let mut cycles = 0;
    receive_until(&mut rx, Duration::from_secs(60), |r| {
        match want.get(&r.series.name) {
            Some(&v) if r.quality == Quality::Good && r.value == v => {}
            _ => wrong.push(format!("{}: {:?} {}", r.series.name, r.quality, r.value)),
        }
        if r.series.name == "meter-1.discrete7" {
            cycles += 1;
        }
        cycles >= 20 && stats.modbus_crc_errors.get() >= 3
    })
    .await
    .with_context(|| {
        format!(
            "{cycles} cycles, {} CRC errors\n{}",
            stats.modbus_crc_errors.get(),
            server.log_tail()
        )
    })?;
    ensure!(
        wrong.is_empty(),
        "a corrupted reply was decoded:\n{}",
        wrong.join("\n")
    );
    // Each CRC error was repeated at once rather than left for the next cycle.
    ensure!(stats.modbus_retries.get() >= stats.modbus_crc_errors.get());
    stop.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_reads_a_range_over_rtu() -> anyhow::Result<()> {
    use edge_agent::config::{RawSerialLine, Table};
    use edge_agent::probe::{self, Answer, ProbeRequest};
    let dir = tempfile::tempdir()?;
    let pty = PtyPair::start(dir.path())?;
    let server = PyModbus::start_rtu(&pty.b, &[], dir.path())?;
    let raw = RawSerialLine {
        device: pty.a.display().to_string(),
        baud: Some(19200),
        parity: Some("none".into()),
        data_bits: None,
        stop_bits: None,
        frame_gap_us: None,
    };
    let line = AgentConfig::serial_line("probe", &raw).map_err(|p| anyhow::anyhow!("{p:?}"))?;
    let request = ProbeRequest {
        address: raw.device.clone(),
        serial: Some(line),
        unit: 1,
        table: Table::Holding,
        start: 0,
        count: 3,
        timeout: Duration::from_millis(500),
    };
    // pymodbus opens its end of the line in its own time: ask until it answers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let answer = loop {
        match probe::probe(&request).await {
            Ok(a) => break a,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).context(server.log_tail()),
        }
    };
    // 65000, -1234 as i16, 0x1234 byte-swapped: the map's first registers.
    assert_eq!(
        answer,
        Answer::Registers(vec![65000, (-1234i16) as u16, 0x3412])
    );
    let report = probe::report(&request, &answer).map_err(anyhow::Error::msg)?;
    assert!(
        report.contains("[serial.probe]\ndevice = ")
            && report.contains("baud = 19200\nparity = \"none\""),
        "{report}"
    );
    Ok(())
}
