//! Store and forward on a full disk: the spool on a real 2 MiB tmpfs, the
//! relay down until the disk is full, then up.
//!
//! Both `on_full` policies, with the example config's `max_bytes` (2 GiB,
//! far more than the disk), so the disk is the bound:
//! - `drop-oldest`: `/healthz` reports `disk_full` while it lasts and the
//!   agent keeps committing by dropping the oldest batches into gaps; a
//!   filler file then takes every free byte (a log burst), and the agent
//!   still commits (the reserve file); SIGTERM stops it while full;
//! - `block`: `/healthz` reports `spool_full`, the sources are held back
//!   (polls skipped and counted) and SIGTERM stops it while full, recording
//!   the batch that waited as a gap.
//!
//! A second life, still offline, is killed (SIGKILL) once full. Then the
//! agent runs a third time on the same spool with the relay up: the
//! backlog drains, without a busy loop (the relay's request count stays
//! near its batch count) and with a quiet log, and `/healthz` is ok again.
//! Every reading the lives stopped by SIGTERM took ("agent stopped
//! produced=N") and every reading the killed life had committed is accepted
//! by the relay, counted as dropped in the spool's gap totals, or still in
//! the spool; the killed life lost at most what it held in memory.
//!
//! Mounting needs root (CI runs as root); elsewhere the tests say loudly
//! that they skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use edge_tests::{
    agent_binary, free_port, http_get, metric, relay_answers, relay_binary, spawn, wait_until,
    Service,
};

const GATEWAY: &str = "full-gw";
const TOKEN: &str = "full-disk-token-0123456789abcdef";
const DISK: &str = "2m";

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mount one at `dir`, or `None` (with a loud line) when this process
    /// may not mount.
    fn mount(dir: &Path) -> anyhow::Result<Option<Tmpfs>> {
        std::fs::create_dir_all(dir)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={DISK}"), "tmpfs"])
            .arg(dir)
            .output()
            .context("cannot run mount")?;
        if !out.status.success() {
            eprintln!(
                "SKIPPED: the full-disk test needs to mount a tmpfs (run as root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return Ok(None);
        }
        Ok(Some(Tmpfs {
            dir: dir.to_owned(),
        }))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// `GET url` with its status, 503 included.
fn get(url: &str) -> anyhow::Result<(u16, String)> {
    let resp = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?
        .get(url)
        .send()?;
    Ok((resp.status().as_u16(), resp.text()?))
}

/// `produced=N` of the agent's last "agent stopped" line.
fn produced(log: &str) -> anyhow::Result<u64> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("agent stopped"))
        .context("no \"agent stopped\" line")?;
    let n = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("produced="))
        .context("no produced= in the stop line")?;
    Ok(n.parse()?)
}

/// `key: value` of `edge-agent spool stats`.
fn spool_stat(stats: &str, key: &str) -> anyhow::Result<u64> {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .with_context(|| format!("no {key} in:\n{stats}"))?
        .trim()
        .parse()
        .with_context(|| format!("{key} in:\n{stats}"))
}

struct Setup {
    agent_config: PathBuf,
    relay_config: PathBuf,
    status: String,
    relay_ops: String,
    relay_port: u16,
}

fn configs(work: &Path, disk: &Path, on_full: &str) -> anyhow::Result<Setup> {
    let relay_port = free_port()?;
    let ops_port = free_port()?;
    let status_port = free_port()?;
    let relay_config = work.join("relay.toml");
    std::fs::write(
        &relay_config,
        format!(
            r#"listen = "127.0.0.1:{relay_port}"
data_dir = {:?}
[[gateways]]
id = "{GATEWAY}"
token = "{TOKEN}"
[ops]
listen = "127.0.0.1:{ops_port}"
"#,
            work.join("relay"),
        ),
    )?;
    // Eight signals every millisecond: the disk fills in seconds.
    let signals: String = (0..8)
        .map(|i| {
            format!(
                "[[simulated]]\nname = \"line{i}.temp\"\ninterval_ms = 1\nmean = {}\namplitude = 3.7\nperiod_s = 0.7\n",
                40 + i
            )
        })
        .collect();
    let agent_config = work.join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            r#"gateway_id = "{GATEWAY}"
[spool]
path = {:?}
max_bytes = 2147483648
on_full = "{on_full}"
synchronous = "normal"
[batch]
max_readings = 1000
max_age_ms = 200
[uplink]
url = "http://127.0.0.1:{relay_port}/v1/batches"
token = "{TOKEN}"
retry_initial_ms = 100
retry_max_ms = 1000
[status]
listen = "127.0.0.1:{status_port}"
stuck_after_s = 3600
{signals}"#,
            disk.join("spool.db"),
        ),
    )?;
    Ok(Setup {
        agent_config,
        relay_config,
        status: format!("http://127.0.0.1:{status_port}"),
        relay_ops: format!("http://127.0.0.1:{ops_port}/metrics"),
        relay_port,
    })
}

fn start_agent(s: &Setup, logs: &Path) -> anyhow::Result<Service> {
    let args = ["run", "--config", &s.agent_config.display().to_string()].map(String::from);
    let agent = spawn("edge-agent", &agent_binary()?, &args, logs)?;
    wait_until("agent status page", Duration::from_secs(30), || {
        http_get(&format!("{}/metrics", s.status)).is_ok()
    })
    .with_context(|| agent.log_tail())?;
    Ok(agent)
}

/// Wait for `/healthz` to fail with `condition`; returns the body.
fn wait_condition(s: &Setup, agent: &Service, condition: &str) -> anyhow::Result<String> {
    let mut last = String::new();
    wait_until(condition, Duration::from_secs(120), || {
        if let Ok((code, body)) = get(&format!("{}/healthz", s.status)) {
            last = format!("{code} {body}");
            return code == 503 && body.contains(&format!("\"{condition}\""));
        }
        false
    })
    .with_context(|| format!("last /healthz: {last}\nagent:\n{}", agent.log_tail()))?;
    Ok(last)
}

fn metrics(s: &Setup) -> String {
    http_get(&format!("{}/metrics", s.status)).unwrap_or_default()
}

/// Take every free byte of the filesystem at `dir` with a file; returns it.
fn fill(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    let path = dir.join("filler.log");
    let mut f = std::fs::File::create(&path)?;
    let chunk = vec![b'x'; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.flush();
    Ok(path)
}

fn run(on_full: &str) -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let Some(disk) = Tmpfs::mount(&work.path().join("disk"))? else {
        return Ok(());
    };
    let s = configs(work.path(), &disk.dir, on_full)?;
    // The example's 2 GiB on a 2 MiB disk: check-config says so.
    let out = Command::new(agent_binary()?)
        .arg("check-config")
        .arg(&s.agent_config)
        .output()?;
    let said = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && said.contains("warning: spool.max_bytes: 2147483648 bytes"),
        "check-config on a 2 MiB disk:\n{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // First life: relay down until the disk is full.
    let mut agent = start_agent(&s, logs.path())?;
    let health = if on_full == "block" {
        let h = wait_condition(&s, &agent, "spool_full")?;
        // Held back: polls are skipped, readings stop being taken.
        let mut held = 0.0;
        wait_until("polls held back", Duration::from_secs(30), || {
            held = metric(&metrics(&s), "edge_agent_polls_held_back_total").unwrap_or(0.0);
            held > 100.0
        })
        .with_context(|| agent.log_tail())?;
        let before = metric(&metrics(&s), "edge_agent_readings_produced_total").unwrap_or(0.0);
        std::thread::sleep(Duration::from_millis(1500));
        let after = metric(&metrics(&s), "edge_agent_readings_produced_total").unwrap_or(0.0);
        ensure!(
            after - before < 1000.0,
            "held back, yet {} readings were taken in 1.5 s",
            after - before
        );
        h
    } else {
        let h = wait_condition(&s, &agent, "disk_full")?;
        // The figures docs/spool-sizing.md quotes.
        let m = metrics(&s);
        let fig = |name| metric(&m, name).unwrap_or(0.0);
        let readings = fig("edge_agent_spool_readings").max(1.0);
        println!(
            "spool at the disk bound: {readings} readings, {:.1} encoded bytes and {:.1} bytes on disk per reading",
            fig("edge_agent_spool_bytes") / readings,
            fig("edge_agent_spool_used_bytes") / readings
        );
        let mut m = String::new();
        wait_until("drops on the full disk", Duration::from_secs(60), || {
            m = metrics(&s);
            metric(&m, "edge_agent_readings_dropped_full_total").unwrap_or(0.0) > 0.0
        })
        .with_context(|| format!("{m}\n{}", agent.log_tail()))?;
        ensure!(metric(&m, "edge_agent_spool_disk_full") == Some(1.0), "{m}");
        ensure!(metric(&m, "edge_agent_spool_gaps_total") > Some(0.0), "{m}");
        // A log burst takes every free byte: commits go on, with the reserve.
        let filler = fill(&disk.dir)?;
        let spooled = metric(&m, "edge_agent_readings_spooled_total").unwrap_or(0.0);
        wait_until(
            "commits on a disk with no free byte",
            Duration::from_secs(60),
            || {
                metric(&metrics(&s), "edge_agent_readings_spooled_total")
                    .is_some_and(|n| n > spooled + 20_000.0)
            },
        )
        .with_context(|| agent.log_tail())?;
        std::fs::remove_file(filler)?;
        h
    };
    ensure!(
        agent.exit_status().is_none(),
        "the agent exited:\n{}",
        agent.log_tail()
    );
    let status = agent.terminate(Duration::from_secs(10))?;
    ensure!(
        status.success(),
        "SIGTERM while full: {status}\n{}",
        agent.log_tail()
    );
    let first_life = produced(&agent.log())?;

    // Second life, still offline: SIGKILL while full. What was committed
    // survives; only what the agent held in memory (the open batch, the
    // channel, a batch waiting on the spool) may be lost.
    let mut agent = start_agent(&s, logs.path())?;
    if on_full == "block" {
        wait_condition(&s, &agent, "spool_full")?;
    } else {
        // Full from the start; it keeps committing by dropping.
        wait_condition(&s, &agent, "disk_full")?;
        wait_until("commits while full", Duration::from_secs(60), || {
            metric(&metrics(&s), "edge_agent_readings_spooled_total").is_some_and(|n| n > 20_000.0)
        })
        .with_context(|| agent.log_tail())?;
    }
    let m = metrics(&s);
    let killed_produced =
        metric(&m, "edge_agent_readings_produced_total").context("produced")? as u64;
    let killed_spooled = metric(&m, "edge_agent_readings_spooled_total").context("spooled")? as u64;
    agent.kill()?;

    // Third life: the relay is up, the backlog drains.
    let args = ["--config", &s.relay_config.display().to_string()].map(String::from);
    let relay = spawn("edge-relay", &relay_binary()?, &args, logs.path())?;
    wait_until("relay answers", Duration::from_secs(30), || {
        relay_answers(s.relay_port)
    })
    .with_context(|| relay.log_tail())?;
    let mut agent = start_agent(&s, logs.path())?;
    let mut last = String::new();
    wait_until(
        "the backlog to drain and /healthz ok",
        Duration::from_secs(180),
        || {
            let m = metrics(&s);
            let age = metric(&m, "edge_agent_spool_oldest_unsent_age_seconds").unwrap_or(f64::MAX);
            let ok = get(&format!("{}/healthz", s.status)).is_ok_and(|(c, _)| c == 200);
            last = format!("oldest unsent {age} s, healthz ok {ok}");
            age < 5.0 && ok
        },
    )
    .with_context(|| {
        format!(
            "{last}\nagent:\n{}\nrelay:\n{}",
            agent.log_tail(),
            relay.log_tail()
        )
    })?;
    let status = agent.terminate(Duration::from_secs(10))?;
    ensure!(status.success(), "SIGTERM after the drain: {status}");
    let third_life = produced(&agent.log())?;

    // Every reading taken is at the relay, in a gap, or in the spool.
    let rm = http_get(&s.relay_ops)?;
    let accepted = metric(&rm, "edge_relay_readings_total").context("relay readings")? as u64;
    let requests = metric(&rm, "edge_relay_requests_total").context("relay requests")? as u64;
    let batches = metric(&rm, "edge_relay_batches_received_total").context("batches")? as u64;
    let out = Command::new(agent_binary()?)
        .args(["spool", "stats", "--config"])
        .arg(&s.agent_config)
        .output()?;
    ensure!(
        out.status.success(),
        "spool stats: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = String::from_utf8(out.stdout)?;
    let dropped = spool_stat(&stats, "dropped_readings_full")?;
    let left = spool_stat(&stats, "readings")?;
    let found = accepted + dropped + left;
    let stopped = first_life + third_life;
    println!(
        "full disk ({on_full}): {found} readings accounted for ({accepted} accepted by the \
         relay, {dropped} dropped into gaps, {left} left in the spool); taken: {first_life} \
         and {third_life} in the lives stopped by SIGTERM, {killed_produced} (of which \
         {killed_spooled} committed) by the killed one at its last scrape; {requests} \
         requests for {batches} batches; first /healthz: {health}"
    );
    // Every committed reading is accounted for...
    ensure!(
        found >= stopped + killed_spooled,
        "{found} accounted for < {stopped} taken by the stopped lives + {killed_spooled} committed by the killed one"
    );
    // ...and the killed life lost at most what it held in memory: the
    // pipeline's channel (4096) and two batches of 1000.
    let lost = (stopped + killed_produced).saturating_sub(found);
    ensure!(
        lost <= 4096 + 2 * 1000,
        "{lost} readings vanished: more than the agent holds in memory"
    );
    if on_full == "drop-oldest" {
        ensure!(dropped > 0, "a full disk with drop-oldest dropped nothing");
    }
    ensure!(accepted > 0, "nothing reached the relay");
    // No busy loop: each batch took about one request.
    ensure!(
        requests <= batches + batches / 5 + 50,
        "{requests} requests for {batches} batches"
    );
    // A quiet log on a full disk.
    let log_bytes = agent.log().len();
    ensure!(log_bytes < 512 * 1024, "the agent logged {log_bytes} bytes");
    if agent.log().contains("panicked") {
        bail!("the agent panicked:\n{}", agent.log_tail());
    }
    Ok(())
}

#[test]
fn a_full_disk_with_drop_oldest_drops_into_gaps_keeps_draining_and_stops_on_sigterm(
) -> anyhow::Result<()> {
    run("drop-oldest")
}

#[test]
fn a_full_disk_with_block_holds_the_sources_back_and_stops_on_sigterm() -> anyhow::Result<()> {
    run("block")
}
