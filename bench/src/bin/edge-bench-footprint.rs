//! `edge-bench-footprint`: the agent's peak memory on a gateway-sized job.
//! The real `edge-agent` binary (the gateway profile, given with `--agent`)
//! polls 50 Modbus TCP devices of 100 registers each (50 values per device,
//! one coalesced request) once a second and forwards to the relay, for
//! `--seconds` (default 60); the peak resident set (VmHWM in
//! `/proc/<pid>/status`) is read at the end, before the agent is stopped.
//!
//! The devices and the relay (file sink, in a temporary directory) run in
//! this process over loopback, so only the agent's own memory is measured.
//! The readings that reached the relay are counted and set against those
//! the polls should have produced, so a figure from an agent that fell
//! behind does not pass unnoticed; the agent's CPU time (user + system,
//! `/proc/<pid>/stat`) is the cost of the job.
//!
//! `scripts/bench --only footprint` runs it (with the binary sizes); the
//! figures are recorded in `docs/BENCHMARKS.md`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use edge_demo::device::SimDevice;
use edge_relay::{Relay, RelayConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: edge-bench-footprint --agent PATH [--seconds S]

  --agent PATH   the edge-agent binary to measure (scripts/bench builds the gateway profile)
  --seconds S    how long the agent polls and forwards (default 60)";

const DEVICES: usize = 50;
const REGISTERS: u16 = 100;
const GATEWAY: &str = "bench-footprint";
const TOKEN: &str = "bench-footprint-token-0123456789";

/// 50 values over 100 registers: u16, i16, u32 and f32, one per two
/// registers, so one request of 100 registers reads them all.
fn device_points() -> (String, usize) {
    let types = ["u16", "i16", "u32", "f32"];
    let mut out = String::new();
    let mut n = 0;
    for (k, register) in (0..REGISTERS).step_by(2).enumerate() {
        let t = types[k % types.len()];
        out.push_str(&format!(
            "[[modbus.points]]\nname = \"v{register}\"\nregister = {register}\ntype = \"{t}\"\n"
        ));
        n += 1;
    }
    (out, n)
}

/// A field of `/proc/<pid>/status` in kB, for example "VmHWM".
fn status_kb(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    line.trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("{field}: {line:?} is not a number of kB"))
}

/// CPU time (user + system) the process has used so far, from
/// `/proc/<pid>/stat` (fields 14 and 15, in clock ticks).
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count from after its ')'.
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no ')' in /proc/<pid>/stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("/proc/{pid}/stat: field {} is not a number", i + 3))
    };
    // Fields 14 and 15 of the whole line are 11 and 12 after the name.
    let total = ticks(11)? + ticks(12)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_millis(total * 1000 / hz))
}

fn main() -> Result<()> {
    let mut agent = None;
    let mut seconds = 60u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--agent" => agent = args.next().map(PathBuf::from),
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).context(USAGE)?,
            _ => bail!("unknown argument {a:?}\n{USAGE}"),
        }
    }
    let agent = agent.context(USAGE)?;
    ensure!(agent.is_file(), "--agent {}: no such file", agent.display());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let stop = CancellationToken::new();
    let work = tempfile::tempdir()?;
    let (points, per_device) = device_points();

    let mut config = format!(
        "gateway_id = \"{GATEWAY}\"\n[spool]\npath = {:?}\n",
        work.path().join("spool.db")
    );
    let relay_listener = rt.block_on(TcpListener::bind("127.0.0.1:0"))?;
    config.push_str(&format!(
        "[uplink]\nurl = \"http://{}/v1/batches\"\ntoken = \"{TOKEN}\"\n",
        relay_listener.local_addr()?
    ));
    for i in 0..DEVICES {
        let sim = SimDevice::new();
        for r in 0..REGISTERS {
            sim.set_u16(r, r.wrapping_mul(7).wrapping_add(i as u16));
        }
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0"))?;
        config.push_str(&format!(
            "[[modbus]]\nname = \"d{i}\"\naddress = \"{}\"\npoll_interval_ms = 1000\nmax_gap = 1\n{points}",
            listener.local_addr()?
        ));
        rt.spawn(sim.serve(listener, stop.clone()));
    }
    let data = work.path().join("relay");
    std::fs::create_dir(&data)?;
    let relay_config = RelayConfig::from_toml(&format!(
        "data_dir = {data:?}\n[[gateways]]\nid = \"{GATEWAY}\"\ntoken = \"{TOKEN}\"\n"
    ))?;
    let relay = rt.spawn(edge_relay::serve(
        relay_listener,
        Relay::from_config(relay_config)?,
        stop.clone(),
    ));
    let config_path = work.path().join("agent.toml");
    std::fs::write(&config_path, config)?;

    let log_path = work.path().join("agent.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child = std::process::Command::new(&agent)
        .args(["run", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", agent.display()))?;
    let pid = child.id();
    let started = Instant::now();
    let mut rss_max_kb = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the agent exited ({status}) after {:?}:\n{}",
                started.elapsed(),
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        rss_max_kb = rss_max_kb.max(status_kb(pid, "VmRSS")?);
        std::thread::sleep(Duration::from_secs(1));
    }
    let cpu = cpu_time(pid)?;
    let hwm_kb = status_kb(pid, "VmHWM")?;
    let rss_end_kb = status_kb(pid, "VmRSS")?;
    // SIGTERM: the agent drains and exits.
    // SAFETY: kill(2) with the pid of our own child and a valid signal.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let exited = child.wait()?;
    stop.cancel();
    rt.block_on(relay)??;
    let delivered = std::fs::read_to_string(data.join(edge_relay::sink::file::READINGS_FILE))
        .unwrap_or_default()
        .lines()
        .count();
    let expected = DEVICES * per_device * seconds as usize;

    let mib = |kb: u64| kb as f64 / 1024.0;
    println!(
        "| devices × registers | poll | run | readings at the relay (of ~{expected} polled) | peak RSS (VmHWM) | RSS at the end | agent CPU | exit |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {DEVICES} × {REGISTERS} ({per_device} values each) | 1 Hz | {seconds} s | {delivered} | {:.1} MiB | {:.1} MiB | {:.2} s ({:.1} %) | {exited} |",
        mib(hwm_kb),
        mib(rss_end_kb),
        cpu.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / seconds as f64
    );
    eprintln!("(largest VmRSS sampled: {:.1} MiB)", mib(rss_max_kb));
    Ok(())
}
