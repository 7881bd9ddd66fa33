//! Connection attacks against the real relay binary, as anyone on the
//! internet could make them, without a token:
//! - a request head sent halfway and never finished is closed by the relay
//!   after `server.header_timeout_ms`;
//! - 2,000 idle and half-open connections from one client, with the
//!   packaged unit's descriptor limit applied (`prlimit --nofile=8192`):
//!   the relay keeps its descriptors bounded (`server.max_connections`),
//!   and a gateway's valid batch is still answered within 1 s (release
//!   build; with a margin on a debug build);
//! - SIGTERM with those connections still open: the relay exits 0 at once,
//!   far inside the unit's `TimeoutStopSec`.
//!
//! Figures (answer time, descriptors, exit time) are printed.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use edge_tests::{free_port, http_get, relay_answers, relay_binary, spawn, wait_until, Service};

const GATEWAY: &str = "gw-flood";
const TOKEN: &str = "token-of-the-flooded-gateway-01";
/// The packaged unit's `LimitNOFILE`.
const UNIT_NOFILE: u32 = 8192;
const FLOOD: usize = 2000;
const MAX_CONNECTIONS: usize = 512;

fn batch(seq: u64) -> Vec<u8> {
    edge_tests::recent_batch(GATEWAY, seq, 5)
}

/// The relay binary under the unit's descriptor limit, its upload port and
/// its operations port.
fn start(work: &Path, logs: &Path, server: &str) -> anyhow::Result<(Service, u16, u16)> {
    let (port, ops) = (free_port()?, free_port()?);
    let config = work.join(format!("relay-{port}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:{port}"
data_dir = {:?}
[[gateways]]
id = "{GATEWAY}"
token = "{TOKEN}"
[server]
max_connections = {MAX_CONNECTIONS}
{server}
[ops]
listen = "127.0.0.1:{ops}"
"#,
            work.join(format!("data-{port}")),
        ),
    )?;
    let args = [
        format!("--nofile={UNIT_NOFILE}:{UNIT_NOFILE}"),
        relay_binary()?.display().to_string(),
        "--config".into(),
        config.display().to_string(),
    ];
    let relay = spawn("edge-relay", Path::new("prlimit"), &args, logs)?;
    wait_until("edge-relay answers", Duration::from_secs(30), || {
        relay_answers(port)
    })
    .with_context(|| relay.log_tail())?;
    Ok((relay, port, ops))
}

/// Make sure this process may hold the flood (raising its soft descriptor
/// limit up to its hard one if need be, never lowering the hard one, which
/// the relays started beside it need); false (the test is skipped) when it
/// cannot.
fn raise_own_nofile() -> bool {
    let need = 2 * FLOOD as u64 + 256;
    let pid = std::process::id().to_string();
    let Ok(out) = Command::new("prlimit")
        .args([
            "--pid",
            &pid,
            "--nofile",
            "--raw",
            "--noheadings",
            "--output",
            "SOFT,HARD",
        ])
        .output()
    else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let limits: Vec<u64> = text
        .split_whitespace()
        .map(|n| n.parse().unwrap_or(u64::MAX))
        .collect();
    let &[soft, hard] = limits.as_slice() else {
        return false;
    };
    if soft >= need {
        return true;
    }
    hard >= need
        && Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={hard}:{hard}")])
            .status()
            .is_ok_and(|s| s.success())
}

fn post(port: u16, seq: u64) -> anyhow::Result<(u16, Duration)> {
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let started = Instant::now();
    let r = client
        .post(format!("http://127.0.0.1:{port}/v1/batches"))
        .bearer_auth(TOKEN)
        .body(batch(seq))
        .send()?;
    Ok((r.status().as_u16(), started.elapsed()))
}

fn descriptors(pid: u32) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

#[test]
fn a_half_sent_head_is_closed_after_the_header_timeout() -> anyhow::Result<()> {
    let (logs, work) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (_relay, port, _) = start(work.path(), logs.path(), "header_timeout_ms = 1500")?;
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.write_all(b"POST /v1/batches HTTP/1.1\r\nHost: relay\r\nContent-Le")?;
    let sent = Instant::now();
    // Far longer than the timeout: a relay that never closes fails here.
    conn.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut answer = Vec::new();
    let read = conn.read_to_end(&mut answer);
    let after = sent.elapsed();
    println!(
        "half-sent head: closed after {after:?}, {} bytes of answer",
        answer.len()
    );
    ensure!(
        read.is_ok(),
        "the relay left a half-sent head open for {after:?}: {read:?}"
    );
    ensure!(
        after >= Duration::from_millis(1000),
        "closed after {after:?}, before the 1.5 s header timeout could run out"
    );
    // A complete request on a fresh connection is still served.
    ensure!(post(port, 1)?.0 == 200);
    Ok(())
}

#[test]
fn two_thousand_idle_and_half_open_connections_do_not_lock_a_gateway_out() -> anyhow::Result<()> {
    if !raise_own_nofile() {
        println!(
            "SKIPPED: this process may not open {} descriptors (prlimit); raise its hard limit",
            2 * FLOOD + 256
        );
        return Ok(());
    }
    let (logs, work) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (mut relay, port, ops) = start(work.path(), logs.path(), "")?;
    let pid = relay.pid();
    let release = relay_binary()?
        .parent()
        .is_some_and(|d| d.file_name().is_some_and(|n| n == "release"));
    assert_eq!(post(port, 1)?.0, 200, "before the flood");
    let before = descriptors(pid)?;

    // The flood: every other connection sends half a head, the rest
    // nothing. All are kept open by this side.
    let mut flood = Vec::with_capacity(FLOOD);
    let mut refused = 0;
    for i in 0..FLOOD {
        match TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)) {
            Ok(mut c) => {
                if i % 2 == 0 {
                    let _ = c.write_all(b"POST /v1/batches HTTP/1.1\r\nHost: relay\r\n");
                }
                flood.push(c);
            }
            Err(_) => refused += 1,
        }
    }
    let (code, took) = post(port, 2)?;
    let during = descriptors(pid)?;
    let page = http_get(&format!("http://127.0.0.1:{ops}/metrics"))?;
    let metric = |name: &str| -> Option<u64> {
        page.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    };
    println!(
        "flood: {} connected, {refused} not; valid batch {code} in {took:?} ({} build); \
         relay descriptors {before} before, {during} during; open {:?}, evicted {:?}, accept errors {:?}",
        flood.len(),
        if release { "release" } else { "debug" },
        metric("edge_relay_connections_open "),
        metric("edge_relay_connections_evicted_total "),
        metric("edge_relay_accept_errors_total "),
    );
    ensure!(code == 200, "valid batch under the flood answered {code}");
    let bound = if release {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(3)
    };
    ensure!(
        took <= bound,
        "valid batch answered after {took:?} (bound {bound:?})"
    );
    ensure!(
        during <= before + MAX_CONNECTIONS + 16,
        "relay holds {during} descriptors under the flood ({before} before, max_connections {MAX_CONNECTIONS})"
    );
    ensure!(
        metric("edge_relay_connections_open ").is_some_and(|n| n <= MAX_CONNECTIONS as u64),
        "{page}"
    );
    ensure!(
        metric("edge_relay_connections_evicted_total ").is_some_and(|n| n > 0),
        "a flood of {FLOOD} under max_connections {MAX_CONNECTIONS} evicts: {page}"
    );
    ensure!(
        metric("edge_relay_accept_errors_total ") == Some(0),
        "the relay ran out of descriptors: {page}"
    );

    // SIGTERM with the flood still open: idle and half-open connections are
    // closed at once, so the relay exits long before the unit's 60 s.
    let stopping = Instant::now();
    let status = relay.terminate(Duration::from_secs(10))?;
    println!(
        "SIGTERM with {} connections open: exited {status} after {:?}",
        flood.len(),
        stopping.elapsed()
    );
    ensure!(
        status.success(),
        "exit status {status}:\n{}",
        relay.log_tail()
    );
    drop(flood);
    Ok(())
}
