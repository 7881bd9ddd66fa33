//! Modbus polling figures: requests per poll cycle for a sparse map with
//! and without coalescing, and points decoded per second per core with 100
//! in-process devices of 100 registers.
//!
//! Throughput is measured as points per CPU second of the one thread that
//! runs the agent's pollers (a current-thread runtime), so the simulated
//! devices, which run on their own thread, do not count, and a busy machine
//! lowers the rate only as much as it steals cycles from that thread. Ours
//! (the coalesced plan: one request per device per cycle) and the baseline
//! (one request per value, what a poller without coalescing sends) run
//! side by side in the same process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use edge_agent::config::AgentConfig;
use edge_agent::source::modbus::{plan_reads, ReadLimits};
use edge_agent::stats::AgentStats;
use edge_demo::device::SimDevice;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Devices polled at once, and registers each.
const DEVICES: usize = 100;
const REGISTERS: u16 = 100;

const BASE: &str = r#"gateway_id = "bench"
[spool]
path = "/tmp/unused.db"
[uplink]
url = "http://127.0.0.1:1/v1/batches"
token = "bench-token"
"#;

/// Print both tables.
pub fn run(seconds: u64) -> Result<()> {
    requests_per_cycle()?;
    println!();
    throughput(Duration::from_secs(seconds))
}

/// The sparse map: a power meter's values spread over its input registers
/// in small clusters, as real meters lay them out (f32 each, 2 registers).
fn sparse_points() -> String {
    let mut out = String::new();
    for cluster in 0..8u32 {
        for k in 0..4u32 {
            let register = cluster * 40 + k * 4;
            out.push_str(&format!(
                "[[modbus.points]]\nname = \"p{register}\"\ntable = \"input\"\nregister = {register}\ntype = \"f32\"\n"
            ));
        }
    }
    out
}

fn requests_per_cycle() -> Result<()> {
    let text = format!(
        "{BASE}[[modbus]]\nname = \"meter\"\naddress = \"127.0.0.1:502\"\n{}",
        sparse_points()
    );
    let device = AgentConfig::parse(&text, "bench")?.modbus.remove(0);
    let points = device.points.len();
    println!(
        "Requests per poll cycle, sparse map: {points} f32 values in 8 clusters of 4, \
         4 registers apart within a cluster, clusters 40 registers apart (300 input \
         registers). From the agent's read plan; tests/tests/e2e/modbus.rs checks at a \
         device that a cycle sends exactly the planned requests."
    );
    println!("| Plan | Requests per cycle | Registers read |");
    println!("|---|---:|---:|");
    let rows = [
        ("one request per value (no coalescing)", None),
        ("ours, max_gap = 0 (adjacent only)", Some(0)),
        ("ours, max_gap = 2 (within clusters)", Some(2)),
        ("ours, max_gap = 40 (across clusters)", Some(40)),
    ];
    for (label, gap) in rows {
        let (requests, registers) = match gap {
            None => (points, points * 2),
            Some(max_gap) => {
                let plan = plan_reads(
                    &device.points,
                    ReadLimits {
                        max_gap,
                        max_read: None,
                    },
                );
                let registers = plan.iter().map(|b| usize::from(b.count)).sum();
                (plan.len(), registers)
            }
        };
        println!("| {label} | {requests} | {registers} |");
    }
    Ok(())
}

/// One measured run: readings decoded per CPU second of the poller thread.
struct Rate {
    readings: u64,
    requests: u64,
    cpu: Duration,
    wall: Duration,
}

fn throughput(duration: Duration) -> Result<()> {
    println!(
        "Points decoded per second per core: {DEVICES} in-process Modbus TCP devices of \
         {REGISTERS} holding registers each (50 values: u16, i16, u32 and f32), polled as \
         fast as they answer for {} s; CPU time of the poller thread only.",
        duration.as_secs()
    );
    println!("| Poller | Requests per cycle per device | Points decoded | Points / CPU s | Requests / CPU s |");
    println!("|---|---:|---:|---:|---:|");
    for (label, max_read) in [
        ("ours (coalesced)", None),
        ("one request per value", Some(2u16)),
    ] {
        let rate = measure(duration, max_read)?;
        let cpu = rate.cpu.as_secs_f64().max(1e-9);
        let per_cycle = if max_read.is_some() { 50 } else { 1 };
        println!(
            "| {label} | {per_cycle} | {} | {:.0} | {:.0} |",
            rate.readings,
            rate.readings as f64 / cpu,
            rate.requests as f64 / cpu
        );
        eprintln!(
            "  {label}: {} readings, {} requests in {:.1} s wall, {:.2} s CPU on the poller thread",
            rate.readings,
            rate.requests,
            rate.wall.as_secs_f64(),
            rate.cpu.as_secs_f64()
        );
    }
    Ok(())
}

/// The points of one device: 50 values over 100 registers, every type that
/// takes one or two registers.
fn device_points() -> String {
    let types = ["u16", "i16", "u32", "f32"];
    let mut out = String::new();
    let mut register = 0u16;
    let mut k = 0;
    while register < REGISTERS {
        let t = types[k % types.len()];
        let width = if t.ends_with("16") { 1 } else { 2 };
        if register + width > REGISTERS {
            break;
        }
        out.push_str(&format!(
            "[[modbus.points]]\nname = \"v{register}\"\nregister = {register}\ntype = \"{t}\"\n"
        ));
        // One value per two registers: a 16-bit value is followed by an
        // unmapped register, a 32-bit one fills both.
        register += 2;
        k += 1;
    }
    out
}

fn measure(duration: Duration, max_read: Option<u16>) -> Result<Rate> {
    // The devices: their own runtime on their own thread.
    let devices_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let stop = CancellationToken::new();
    let mut ports = Vec::new();
    let mut sims = Vec::new();
    for _ in 0..DEVICES {
        let sim = SimDevice::new();
        for r in 0..REGISTERS {
            sim.set_u16(r, r.wrapping_mul(7));
        }
        let listener = devices_rt.block_on(TcpListener::bind("127.0.0.1:0"))?;
        ports.push(listener.local_addr()?.port());
        devices_rt.spawn(sim.clone().serve(listener, stop.clone()));
        sims.push(sim);
    }
    // Coalesced: the one-register gaps after the 16-bit values are read
    // across, one request of 100 registers. Baseline: at most 2 registers
    // per request, one request per value.
    let limits = match max_read {
        None => "max_gap = 1\n".to_string(),
        Some(m) => format!("max_gap = 0\nmax_read = {m}\n"),
    };
    let mut text = BASE.to_string();
    let points = device_points();
    for (i, port) in ports.iter().enumerate() {
        text.push_str(&format!(
            "[[modbus]]\nname = \"d{i}\"\naddress = \"127.0.0.1:{port}\"\npoll_interval_ms = 20\n{limits}{points}"
        ));
    }
    let mut config = AgentConfig::parse(&text, "bench").context("bench config")?;
    // As fast as the devices answer: the config refuses such an interval
    // (a typo would flood a PLC), the benchmark wants exactly that.
    for d in &mut config.modbus {
        d.groups[0].interval = Duration::from_millis(1);
    }
    let stats = Arc::new(AgentStats::default());
    let readings = Arc::new(AtomicU64::new(0));
    let requests = || sims.iter().map(SimDevice::requests).sum::<u64>();

    // The pollers: a current-thread runtime on this thread.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let counted = readings.clone();
    let poll_stop = CancellationToken::new();
    let rate = rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<edge_agent::reading::Input>(65536);
        for link in edge_agent::modbus_links(&config, &stats) {
            tokio::spawn(link.run(tx.clone(), poll_stop.clone()));
        }
        drop(tx);
        let drain = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Warm up: every device connected and answering.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (r0, q0, c0, w0) = (
            readings.load(Ordering::Relaxed),
            requests(),
            thread_cpu(),
            Instant::now(),
        );
        tokio::time::sleep(duration).await;
        let rate = Rate {
            readings: readings.load(Ordering::Relaxed) - r0,
            requests: requests() - q0,
            cpu: thread_cpu() - c0,
            wall: w0.elapsed(),
        };
        poll_stop.cancel();
        let _ = drain.await;
        rate
    });
    stop.cancel();
    devices_rt.shutdown_timeout(Duration::from_secs(1));
    Ok(rate)
}

/// CPU time used by the calling thread so far.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `ts` is.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
