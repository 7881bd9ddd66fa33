//! `edge-bench-page`: what the technician's status page costs the agent,
//! beside `/metrics` in the same run.
//!
//! An in-process status page (the agent's own `StatusPage` and `serve`)
//! over a gateway of 50 Modbus devices × 50 points (2,500 points, every
//! one with a value, 5 devices down, 10 alarms raised with their events)
//! and an empty spool file. For `/` (the page), `/api/status` (what the
//! open page polls every 2 s) and `/metrics`:
//! - the answer's size in bytes (the page loads nothing else: its CSS and
//!   script are inline);
//! - the agent's CPU time per answer: `--requests` answers fetched by one
//!   `curl` process (another process, so the client's CPU is not counted),
//!   the bench process's user + system time (`getrusage`) divided by
//!   them; and that as the share of one core when served once a second.
//!
//! `scripts/bench --only page` runs it; the figures are in
//! `docs/BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use edge_agent::devices::{DeviceKey, Reason, ReasonKind, SourceKind};
use edge_agent::publish::ack::AckPath;
use edge_agent::publish::board::AlarmBoard;
use edge_agent::publish::shared::SharedAlarms;
use edge_agent::reading::{Alarm, AlarmState, Quality, Reading, SeriesInfo, Severity};
use edge_agent::spool::{SharedSpool, Spool, SpoolOptions};
use edge_agent::stats::{AgentStats, ModbusEvent};
use edge_agent::status::{self, PageAgent, StatusPage};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: edge-bench-page [--requests N]

  --requests N   answers fetched per path (default 500)";

const DEVICES: usize = 50;
const POINTS: usize = 50;

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// The counters and boards of a busy gateway.
fn busy_gateway(now_us: i64) -> (Arc<AgentStats>, Arc<SharedAlarms>) {
    let stats = Arc::new(AgentStats::default());
    let mut readings = Vec::with_capacity(DEVICES * POINTS);
    for d in 0..DEVICES {
        let name = format!("press-line-{d:02}");
        let key = DeviceKey::new(SourceKind::Modbus, &name);
        stats.devices.with(|b| {
            b.register(key.clone(), now_us - 3_600_000_000);
            b.ok(&key, now_us - 1_000_000);
            if d % 10 == 3 {
                b.down(
                    &key,
                    Reason::new(ReasonKind::Timeout, "timed out after 500 ms"),
                    now_us,
                );
            }
        });
        for _ in 0..100 {
            stats.record_modbus(&name, ModbusEvent::Reading);
            stats.record_modbus_latency(&name, Duration::from_millis(4));
        }
        stats.record_modbus(&name, ModbusEvent::TransportError);
        stats.record_modbus_exception(&name, 2);
        for p in 0..POINTS {
            let series = format!("{name}.register_{p:02}");
            stats
                .points
                .declare(&series, &name, "degC", Some(Duration::from_secs(1)), now_us);
            let mut tags = BTreeMap::new();
            tags.insert("device".to_string(), name.clone());
            readings.push(Reading {
                series: Arc::new(SeriesInfo {
                    name: series,
                    unit: "degC".into(),
                    tags,
                }),
                ts_us: now_us - 500_000,
                value: 20.0 + (d * POINTS + p) as f64 / 100.0,
                quality: Quality::Good,
            });
        }
    }
    stats.points.update(&readings);
    let alarms = Arc::new(SharedAlarms::new(AlarmBoard::new("gw-bench")));
    for r in readings.iter().step_by(DEVICES * POINTS / 10) {
        alarms.apply(&Alarm {
            series: r.series.clone(),
            rule: "high".into(),
            severity: Severity::Major,
            state: AlarmState::Raised,
            value: r.value,
            limit: 20.0,
            ts_us: now_us - 60_000_000,
            duration_us: None,
            limit_kind: None,
            spc: None,
        });
    }
    (stats, alarms)
}

struct Row {
    path: &'static str,
    bytes: usize,
    cpu_ms: f64,
}

fn fetch_all(url: &str, n: usize) -> Result<()> {
    // One curl, n URLs, one connection: the client's CPU is not ours.
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sf", "--no-progress-meter"]);
    for _ in 0..n {
        cmd.args([url, "-o", "/dev/null"]);
    }
    let status = cmd.status().context("running curl")?;
    if !status.success() {
        bail!("curl {url}: {status}");
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<()> {
    let mut requests = 500usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--requests" => requests = args.next().context(USAGE)?.parse()?,
            _ => bail!("{USAGE}"),
        }
    }
    let dir = tempfile::tempdir()?;
    let spool = SharedSpool::new(Spool::open(&dir.path().join("spool.db"))?);
    let now_us = edge_agent::reading::now_us();
    let (stats, alarms) = busy_gateway(now_us);
    let stop = CancellationToken::new();
    let ack = Arc::new(AckPath::new(
        alarms,
        spool.clone(),
        Arc::new(Notify::new()),
        stats.clone(),
        "gw-bench".into(),
        stop.clone(),
    ));
    let page = StatusPage::new(stats, spool, Duration::from_secs(300)).with_agent(PageAgent {
        gateway_id: "gw-bench".into(),
        spool_options: SpoolOptions::default(),
        auth: None,
        ack,
        local: None,
        rebaseline: edge_agent::rebaseline::RebaselinePath::channel().0,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let serving = tokio::spawn(status::serve(listener, Arc::new(page), stop.clone()));

    let mut rows = Vec::new();
    for path in ["/", "/api/status", "/metrics"] {
        let url = format!("http://127.0.0.1:{port}{path}");
        let body = {
            let url = url.clone();
            tokio::task::spawn_blocking(move || reqwest::blocking::get(url)?.bytes()).await??
        };
        eprintln!(
            "edge-bench-page: {path}: {} bytes, {requests} requests",
            body.len()
        );
        let before = cpu_seconds();
        let n = requests;
        tokio::task::spawn_blocking(move || fetch_all(&url, n)).await??;
        let cpu = cpu_seconds() - before;
        rows.push(Row {
            path,
            bytes: body.len(),
            cpu_ms: cpu * 1e3 / requests as f64,
        });
    }
    stop.cancel();
    serving.await??;

    println!(
        "{DEVICES} Modbus devices × {POINTS} points ({} points), 10 alarms raised; {requests} answers per path, fetched by one curl process.",
        DEVICES * POINTS
    );
    println!();
    println!(
        "| path | bytes | KiB | agent CPU per answer (ms) | share of one core at 1 answer/s |"
    );
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| `{}` | {} | {:.1} | {:.2} | {:.2} % |",
            r.path,
            r.bytes,
            r.bytes as f64 / 1024.0,
            r.cpu_ms,
            r.cpu_ms / 10.0
        );
    }
    Ok(())
}
