//! `edge-demo`: a whole plant in one process and with no external services.
//!
//! A simulated Modbus TCP device on loopback, the real agent polling it, and
//! the real relay with its embedded file sink. A scripted scenario runs over
//! `--seconds` (default 30):
//! - 20%..40%: the oil temperature goes above its limit (alarm raised), then
//!   comes back (alarm cleared);
//! - 50%..70%: the relay goes away; batches pile up in the agent's spool;
//! - 70%: the relay comes back on the same port and the spool drains.
//!
//! At the end it stops the agent (which drains its spool), reads what the
//! relay stored and prints one summary line:
//! `demo summary: produced=N delivered=N alarms_raised=A alarms_cleared=C lost=L`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use edge_agent::config::AgentConfig;
use edge_agent::Agent;
use edge_demo::device::SimDevice;
use edge_relay::config::{GatewayConfig, RelayConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "edge-demo",
    version,
    about = "A whole plant in one process: device, agent, relay"
)]
struct Cli {
    /// How long the scenario runs, in seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
}

const GATEWAY: &str = "demo-gw-1";
const TOKEN: &str = "demo-token-0123456789abcdef";
const OIL_TEMP_LIMIT: f64 = 80.0;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.seconds < 5 {
        bail!("--seconds must be at least 5 for the scenario to fit");
    }
    tracing_subscriber::fmt()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,edge_agent=info".into()),
        )
        .init();
    let work = tempfile::tempdir().context("cannot create a temporary directory")?;
    let total = Duration::from_secs(cli.seconds);
    let start = Instant::now();
    let at = |fraction: f64| start + total.mul_f64(fraction);

    // The field device.
    let device = SimDevice::new();
    let device_listener = TcpListener::bind("127.0.0.1:0").await?;
    let device_addr = device_listener.local_addr()?;
    let device_stop = CancellationToken::new();
    tokio::spawn(device.clone().serve(device_listener, device_stop.clone()));
    let scenario = tokio::spawn(run_scenario(
        device.clone(),
        at(0.2),
        at(0.4),
        device_stop.clone(),
    ));
    println!("device: simulated Modbus TCP device on {device_addr} (oil_temp limit {OIL_TEMP_LIMIT} degC)");

    // The relay, with its embedded file sink.
    let relay_dir = work.path().join("relay");
    std::fs::create_dir_all(&relay_dir)?;
    let relay_listener = TcpListener::bind("127.0.0.1:0").await?;
    let relay_addr = relay_listener.local_addr()?;
    let mut relay = Some(start_relay(relay_listener, &relay_dir)?);
    println!(
        "relay: listening on http://{relay_addr}, file sink in {}",
        relay_dir.display()
    );

    // The agent.
    let config = agent_config(device_addr, relay_addr, &work.path().join("spool.db"))?;
    let agent = Agent::new(config);
    let stats = agent.stats();
    let agent_stop = CancellationToken::new();
    let agent_task = tokio::spawn(agent.run(agent_stop.clone()));
    println!("agent: polling every 200 ms, forwarding to the relay");

    let (outage_start, outage_end, end) = (at(0.5), at(0.7), at(1.0));
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticker.tick().await;
        let now = Instant::now();
        if now >= outage_start && now < outage_end {
            if let Some((stop, task)) = relay.take() {
                println!(
                    "relay: going away for {} s",
                    (outage_end - outage_start).as_secs()
                );
                stop.cancel();
                task.await.context("relay task")??;
            }
        }
        if now >= outage_end && relay.is_none() {
            let listener = bind_again(relay_addr).await?;
            relay = Some(start_relay(listener, &relay_dir)?);
            println!("relay: back on http://{relay_addr}; the agent drains its spool");
        }
        let backlog = stats.readings_spooled.get() - stats.readings_forwarded.get();
        println!(
            "t={:>3}s produced={} spooled={} forwarded={} backlog={}",
            start.elapsed().as_secs(),
            stats.readings_produced.get(),
            stats.readings_spooled.get(),
            stats.readings_forwarded.get(),
            backlog
        );
        if now >= end {
            break;
        }
    }

    println!("agent: stopping; committing the open batch and draining the spool");
    agent_stop.cancel();
    agent_task.await.context("agent task")??;
    scenario.abort();
    if let Some((stop, task)) = relay.take() {
        stop.cancel();
        task.await.context("relay task")??;
    }

    let produced = stats.readings_produced.get();
    let delivered = distinct_readings(&relay_dir.join("readings.jsonl"))?;
    let (raised, cleared) = alarm_counts(&relay_dir.join("alarms.jsonl"))?;
    println!(
        "agent counted: alarms raised={} cleared={}, upload failures={}, batches forwarded={}",
        stats.alarms_raised.get(),
        stats.alarms_cleared.get(),
        stats.upload_failures.get(),
        stats.batches_forwarded.get()
    );
    let lost = produced.saturating_sub(delivered);
    println!(
        "demo summary: produced={produced} delivered={delivered} alarms_raised={raised} alarms_cleared={cleared} lost={lost}"
    );
    Ok(())
}

type RelayHandle = (
    CancellationToken,
    JoinHandle<Result<(), edge_relay::RelayError>>,
);

fn start_relay(listener: TcpListener, dir: &Path) -> anyhow::Result<RelayHandle> {
    let config = RelayConfig::new(dir, vec![GatewayConfig::with_token(GATEWAY, TOKEN)]);
    let relay = edge_relay::Relay::from_config(config)?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(edge_relay::serve(listener, relay, stop.clone()));
    Ok((stop, task))
}

/// Bind the relay's old port again; the OS may need a moment to release it.
async fn bind_again(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(%e, "port not free yet");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot bind {addr} again")),
        }
    }
}

fn agent_config(
    device: SocketAddr,
    relay: SocketAddr,
    spool: &Path,
) -> anyhow::Result<AgentConfig> {
    let text = format!(
        r#"
gateway_id = "{GATEWAY}"
tags = {{ site = "demo-plant", line = "L1" }}
[spool]
path = {spool:?}
[batch]
max_readings = 200
max_age_ms = 500
[uplink]
url = "http://{relay}/v1/batches"
token = "{TOKEN}"
timeout_ms = 2000
retry_initial_ms = 200
retry_max_ms = 1000
shutdown_drain_ms = 20000
[[modbus]]
name = "press-3"
address = "{device}"
poll_interval_ms = 200
timeout_ms = 500
tags = {{ asset = "press-3" }}
[[modbus.points]]
name = "oil_temp"
register = 100
type = "i16"
scale = 0.1
unit = "degC"
[[modbus.points]]
name = "line_pressure"
register = 102
type = "f32"
unit = "bar"
[[modbus.points]]
name = "motor_rpm"
register = 104
type = "u16"
unit = "rpm"
[[rules]]
name = "oil_temp.high"
series = "press-3.oil_temp"
max = {OIL_TEMP_LIMIT}
"#
    );
    Ok(AgentConfig::parse(&text, "demo config")?)
}

/// Drive the device's registers: normal operation with small variations, and
/// an oil temperature excursion between `hot_from` and `hot_until`.
async fn run_scenario(
    device: SimDevice,
    hot_from: Instant,
    hot_until: Instant,
    stop: CancellationToken,
) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while !stop.is_cancelled() {
        tick.tick().await;
        let now = Instant::now();
        let t = (now - start).as_secs_f64();
        let hot = now >= hot_from && now < hot_until;
        let oil = if hot {
            92.5
        } else {
            62.0 + 3.0 * (t / 7.0).sin()
        };
        device.set_i16(100, (oil * 10.0).round() as i16);
        device.set_f32(102, 4.0 + 0.2 * (t / 3.0).sin() as f32);
        device.set_u16(104, 1480 + ((t * 10.0) as u16 % 7));
    }
}

/// Readings the relay stored, counted once per (series, timestamp).
fn distinct_readings(path: &Path) -> anyhow::Result<u64> {
    let mut seen = HashSet::new();
    for line in read_lines(path)? {
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("{}: bad line", path.display()))?;
        seen.insert((v["series"].to_string(), v["ts_us"].to_string()));
    }
    Ok(seen.len() as u64)
}

fn alarm_counts(path: &Path) -> anyhow::Result<(u64, u64)> {
    let (mut raised, mut cleared) = (0, 0);
    for line in read_lines(path)? {
        let v: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("{}: bad line", path.display()))?;
        match v["state"].as_str() {
            Some("raised") => raised += 1,
            Some("cleared") => cleared += 1,
            other => bail!("{}: unexpected alarm state {other:?}", path.display()),
        }
    }
    Ok((raised, cleared))
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.lines().map(str::to_owned).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}
