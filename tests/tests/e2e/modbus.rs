//! The agent's Modbus source against real servers: the in-process device
//! (to count the requests of a poll cycle) and pymodbus (an independent
//! implementation, `tests/py/modbus_server.py`).
//!
//! The pymodbus server writes its registers from the expected values with
//! Python's `struct.pack`, so a decoded value that matches [`MAP`] was
//! decoded correctly, not merely consistently with our own encoder.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use edge_agent::config::{AgentConfig, ModbusDevice};
use edge_agent::reading::{Input, Quality, Reading, SeriesInfo};
use edge_agent::source::modbus::{plan_reads, ModbusSource, ReadLimits};
use edge_agent::stats::AgentStats;
use edge_demo::device::SimDevice;
use edge_tests::{free_port, wait_until};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One `[[modbus.points]]` body (without the name) and the value pymodbus
/// serves for it; the same table is in `tests/py/modbus_server.py`.
pub(crate) const MAP: &[(&str, &str, f64)] = &[
    ("u16_abcd", r#"register = 0, type = "u16""#, 65000.0),
    ("i16_abcd", r#"register = 1, type = "i16""#, -1234.0),
    (
        "u16_badc",
        r#"register = 2, type = "u16", byte_order = "BADC""#,
        4660.0,
    ),
    ("u32_abcd", r#"register = 10, type = "u32""#, 3e9),
    (
        "u32_cdab",
        r#"register = 12, type = "u32", byte_order = "CDAB""#,
        3e9,
    ),
    (
        "i32_badc",
        r#"register = 14, type = "i32", byte_order = "BADC""#,
        -123456789.0,
    ),
    (
        "i32_dcba",
        r#"register = 16, type = "i32", byte_order = "DCBA""#,
        -123456789.0,
    ),
    ("f32_abcd", r#"register = 20, type = "f32""#, 12.375),
    (
        "f32_cdab",
        r#"register = 22, type = "f32", byte_order = "CDAB""#,
        12.375,
    ),
    (
        "f32_badc",
        r#"register = 24, type = "f32", byte_order = "BADC""#,
        -0.5,
    ),
    (
        "f32_dcba",
        r#"register = 26, type = "f32", byte_order = "DCBA""#,
        3.25,
    ),
    (
        "u64_abcd",
        r#"register = 30, type = "u64""#,
        283686952306183.0,
    ),
    (
        "i64_cdab",
        r#"register = 34, type = "i64", byte_order = "CDAB""#,
        -283686952306183.0,
    ),
    (
        "f64_badc",
        r#"register = 38, type = "f64", byte_order = "BADC""#,
        6.02214076e23,
    ),
    (
        "f64_dcba",
        r#"register = 42, type = "f64", byte_order = "DCBA""#,
        -1.25,
    ),
    ("i64_abcd", r#"register = 46, type = "i64""#, -2.0),
    ("bit0", r#"register = 50, type = "bit", bit = 0"#, 1.0),
    ("bit1", r#"register = 50, type = "bit", bit = 1"#, 0.0),
    ("bit15", r#"register = 50, type = "bit", bit = 15"#, 1.0),
    (
        "scaled",
        r#"register = 52, type = "i16", scale = 0.1"#,
        23.5,
    ),
    (
        "input_u16",
        r#"table = "input", register = 100, type = "u16""#,
        4321.0,
    ),
    (
        "input_f32",
        r#"table = "input", register = 101, type = "f32", byte_order = "CDAB""#,
        -7.5,
    ),
    ("coil3", r#"table = "coil", register = 3"#, 1.0),
    ("coil4", r#"table = "coil", register = 4"#, 0.0),
    ("discrete7", r#"table = "discrete", register = 7"#, 1.0),
];

/// A holding register pymodbus does not map: it answers exception 0x02.
const UNMAPPED: &str = r#"register = 60, type = "u16""#;

/// A `[[modbus]]` device named "dev" at `port` with the given points.
fn device(port: u16, extra: &str, points: &[(&str, &str)]) -> anyhow::Result<ModbusDevice> {
    let points: String = points
        .iter()
        .map(|(name, body)| {
            format!(
                "[[modbus.points]]\nname = \"{name}\"\n{}\n",
                body.replace(", ", "\n")
            )
        })
        .collect();
    let text = format!(
        r#"
gateway_id = "gw"
[spool]
path = "/tmp/unused.db"
[uplink]
url = "http://127.0.0.1:1/v1/batches"
token = "t"
[[modbus]]
name = "dev"
address = "127.0.0.1:{port}"
{extra}
{points}"#
    );
    Ok(AgentConfig::parse(&text, "modbus.rs")?.modbus.remove(0))
}

/// Run the device's source in the background; readings arrive on the receiver.
fn start_source(
    device: ModbusDevice,
    stats: Arc<AgentStats>,
    stop: &CancellationToken,
) -> mpsc::Receiver<Input> {
    let series = device
        .points
        .iter()
        .map(|p| {
            Arc::new(SeriesInfo {
                name: p.name.clone(),
                unit: p.unit.clone(),
                tags: Default::default(),
            })
        })
        .collect();
    let (tx, rx) = mpsc::channel(1024);
    let source = ModbusSource {
        device,
        series,
        stats,
    };
    tokio::spawn(source.run(tx, stop.clone()));
    rx
}

/// Whether any reading of `input` satisfies `done`.
fn input_done(input: &Input, done: &mut impl FnMut(&Reading) -> bool) -> bool {
    input.readings().iter().any(done)
}

/// Receive readings until `done` says so, or fail after `timeout`.
pub(crate) async fn receive_until(
    rx: &mut mpsc::Receiver<Input>,
    timeout: Duration,
    mut done: impl FnMut(&Reading) -> bool,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let r = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .context("no such reading before the deadline")?
            .context("source stopped")?;
        if input_done(&r, &mut done) {
            return Ok(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_cycle_costs_the_requests_the_plan_predicts() -> anyhow::Result<()> {
    let sim = SimDevice::new();
    for r in [0, 1, 2, 3, 6, 40, 41] {
        sim.set_u16(r, r);
    }
    sim.set_input(5, 1);
    sim.set_input(200, 2);
    sim.set_coil(0, true);
    sim.set_coil(9, false);
    sim.set_discrete(3, true);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let stop = CancellationToken::new();
    tokio::spawn(sim.clone().serve(listener, stop.clone()));

    // Holding 0..=3 and 6 merge over a gap of 2 (registers 4 and 5 are
    // mapped); 40..=41 is far away; inputs 5 and 200 are too far apart;
    // coils 0 and 9 merge over a gap of 8 (coils 1..=8 are mapped too).
    for c in 1..=8 {
        sim.set_coil(c, false);
    }
    sim.set_u16(4, 0);
    sim.set_u16(5, 0);
    let points = [
        ("h0", r#"register = 0, type = "u32""#),
        ("h2", r#"register = 2, type = "u16""#),
        ("h3", r#"register = 3, type = "bit", bit = 1"#),
        ("h6", r#"register = 6, type = "u16""#),
        ("h40", r#"register = 40, type = "u32""#),
        ("i5", r#"table = "input", register = 5, type = "u16""#),
        ("i200", r#"table = "input", register = 200, type = "u16""#),
        ("c0", r#"table = "coil", register = 0"#),
        ("c9", r#"table = "coil", register = 9"#),
        ("d3", r#"table = "discrete", register = 3"#),
    ];
    let dev = device(port, "poll_interval_ms = 60000\nmax_gap = 8", &points)?;
    let plan = plan_reads(
        &dev.points,
        ReadLimits {
            max_gap: dev.max_gap,
            max_read: dev.max_read,
        },
    );
    // holding 0..=6, holding 40..=41, input 5, input 200, coils 0..=9, discrete 3
    assert_eq!(plan.len(), 6, "{plan:?}");

    let stats = Arc::new(AgentStats::default());
    let mut rx = start_source(dev, stats.clone(), &stop);
    let mut good = 0;
    receive_until(&mut rx, Duration::from_secs(10), |r| {
        assert_eq!(r.quality, Quality::Good, "{}", r.series.name);
        good += 1;
        good == points.len()
    })
    .await?;
    // The next poll is a minute away: the count is exactly one cycle's.
    assert_eq!(sim.requests(), plan.len() as u64);
    assert_eq!(stats.modbus_exceptions.get(), 0);
    stop.cancel();
    Ok(())
}

/// The pymodbus server, killed when dropped.
pub(crate) struct PyModbus {
    child: Child,
    log: std::path::PathBuf,
}

impl PyModbus {
    /// Modbus TCP on 127.0.0.1:`port`, ready when it accepts connections.
    fn start(port: u16, log_dir: &Path) -> anyhow::Result<PyModbus> {
        let mut server = PyModbus::spawn(&[port.to_string()], log_dir, &format!("tcp-{port}"))?;
        wait_until("pymodbus", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .with_context(|| server.log_tail())?;
        if let Some(status) = server.child.try_wait()? {
            bail!("pymodbus exited ({status}):\n{}", server.log_tail());
        }
        Ok(server)
    }

    /// Modbus RTU on the serial device `tty`, with the script's extra
    /// arguments (for example `--corrupt-every 4`). The caller waits for
    /// readiness by polling it, since a serial server has nothing to
    /// connect to.
    pub(crate) fn start_rtu(
        tty: &Path,
        extra: &[&str],
        log_dir: &Path,
    ) -> anyhow::Result<PyModbus> {
        let mut args = vec!["--rtu".to_string(), tty.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        PyModbus::spawn(&args, log_dir, "rtu")
    }

    fn spawn(args: &[String], log_dir: &Path, name: &str) -> anyhow::Result<PyModbus> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/modbus_server.py");
        let log = log_dir.join(format!("pymodbus-{name}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new("python3")
            .arg(&script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("cannot run python3 (pymodbus is installed by scripts/test)")?;
        Ok(PyModbus { child, log })
    }

    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for PyModbus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_order_decodes_against_pymodbus_and_survives_a_restart() -> anyhow::Result<()>
{
    let logs = tempfile::tempdir()?;
    let port = free_port()?;
    let server = PyModbus::start(port, logs.path())?;
    let mut points: Vec<(&str, &str)> = MAP.iter().map(|&(n, body, _)| (n, body)).collect();
    points.push(("unmapped", UNMAPPED));
    let dev = device(port, "poll_interval_ms = 200\ntimeout_ms = 1000", &points)?;
    let stats = Arc::new(AgentStats::default());
    let stop = CancellationToken::new();
    let mut rx = start_source(dev, stats.clone(), &stop);

    // First cycle: every mapped point decodes to its value, the unmapped
    // one is bad, counted as an exception, and does not hold the others up.
    let mut seen: HashMap<String, (Quality, f64)> = HashMap::new();
    receive_until(&mut rx, Duration::from_secs(20), |r| {
        seen.insert(r.series.name.clone(), (r.quality, r.value));
        seen.len() == points.len()
    })
    .await
    .with_context(|| format!("seen {seen:?}\n{}", server.log_tail()))?;
    let mut wrong = Vec::new();
    for &(name, _, want) in MAP {
        let got = seen[name];
        if got != (Quality::Good, want) {
            wrong.push(format!("{name}: got {got:?}, want {want}"));
        }
    }
    ensure!(wrong.is_empty(), "decoded wrongly:\n{}", wrong.join("\n"));
    assert_eq!(seen["unmapped"].0, Quality::Bad);
    assert!(stats.modbus_exceptions.get() >= 1);
    // Counted per device and code: 0x02, illegal data address.
    let by_code = stats.modbus_exceptions_by_code();
    assert_eq!(by_code.len(), 1, "{by_code:?}");
    assert_eq!(by_code[0].0, ("dev".to_string(), 2));
    assert_eq!(stats.modbus_transport_errors.get(), 0);

    // Stop the server: the source notices, then reads again after a
    // restart on the same port.
    drop(server);
    let errors = stats.modbus_transport_errors.get();
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.modbus_transport_errors.get() == errors {
        ensure!(Instant::now() < deadline, "server stop went unnoticed");
        while rx.try_recv().is_ok() {}
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _server = PyModbus::start(port, logs.path())?;
    while rx.try_recv().is_ok() {}
    let restarted = edge_agent::reading::now_us();
    receive_until(&mut rx, Duration::from_secs(30), |r| {
        r.ts_us > restarted && r.series.name == "f64_dcba" && r.quality == Quality::Good
    })
    .await
    .context("no good reading after the restart")?;
    stop.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sections_poll_two_units_behind_one_address() -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let port = free_port()?;
    let server = PyModbus::start(port, logs.path())?;
    let point = [("r0", r#"register = 0, type = "u16""#)];
    let stats = Arc::new(AgentStats::default());
    let stop = CancellationToken::new();
    // One source (and connection) per section, as the config documents.
    let mut values = Vec::new();
    for unit in [1, 2] {
        let dev = device(port, &format!("unit = {unit}"), &point)?;
        let mut rx = start_source(dev, stats.clone(), &stop);
        let mut got = None;
        receive_until(&mut rx, Duration::from_secs(20), |r| {
            got = Some((r.quality, r.value));
            true
        })
        .await
        .with_context(|| server.log_tail())?;
        values.push(got);
    }
    assert_eq!(
        values,
        vec![Some((Quality::Good, 65000.0)), Some((Quality::Good, 222.0))]
    );
    stop.cancel();
    Ok(())
}
