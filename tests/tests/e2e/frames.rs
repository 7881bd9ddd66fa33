//! A microcontroller on a serial cable, end to end: a simulated device built
//! on firmware-shim's own outbox and framing (its `std` feature) on one end
//! of a socat pty pair, the real agent binary on the other, through the
//! real relay to tansu, read back with kafka-python.
//!
//! During the run the cable is pulled (socat stopped and started again),
//! the agent is killed with SIGKILL and started again, and one frame in 23
//! has a bit flipped on its way. Every sample the device took (its ring
//! holds them all across the outages) must reach Kafka, none with a value
//! the device did not send, and none twice: the samples an agent killed
//! between a commit and its acknowledgement had taken are read back from
//! the spool by the next agent process (see `source::frames`); flipped
//! frames are counted as CRC or frame errors.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use edge_tests::{
    agent_binary, free_port, http_get, relay_answers, relay_binary, spawn, wait_until, PtyPair,
    Service, Tansu,
};
use firmware_shim::frame::{encode, Decoder, MAX_ENCODED};
use firmware_shim::heapless;
use firmware_shim::outbox::NackAction;
use firmware_shim::{Birth, Channel, ChannelKind, Message, Outbox, Reading};

const GATEWAY: &str = "frames-gw";
const TOKEN: &str = "frames-token-0123456789abcdef";
const READINGS: &str = "frames.readings";
/// Samples the device takes, one every 10 ms.
const SAMPLES: u32 = 900;
/// The frames series has a `max` rule at this value: it fires once, in the
/// last third of the samples (after the agent's restart, in the test that
/// kills it). The alarm runs on the gateway on values from the
/// microcontroller, like any other source's.
const ALARM_ABOVE: u32 = 800;

/// What the simulated device did.
#[derive(Default)]
struct DeviceCounts {
    sent: AtomicU32,
    flipped: AtomicU32,
    reopened: AtomicU32,
    acks: AtomicU32,
    done: AtomicBool,
    /// Set by the test to end the device early.
    stop: AtomicBool,
}

fn birth(boot_id: u32) -> Message {
    let mut channels = heapless::Vec::new();
    let _ = channels.push(Channel {
        index: 0,
        name: heapless::String::try_from("seq").unwrap(),
        unit: heapless::String::try_from("n").unwrap(),
        kind: ChannelKind::Counter,
        scale: None,
    });
    Message::Birth(Birth {
        device_id: heapless::String::try_from("mcu-e2e").unwrap(),
        fw_version: [0, 1, 0],
        boot_id,
        tick_hz: 1000,
        channels,
    })
}

/// The device: samples its counter every 10 ms into the outbox, sends
/// and resends what it holds, applies acks and nacks, and reopens the
/// serial port when the cable comes back. Ends once every sample is acked.
fn device<const RING: usize>(port: PathBuf, counts: Arc<DeviceCounts>) {
    let start = Instant::now();
    let mut outbox: Outbox<RING> = Outbox::new(500);
    let mut taken = 0u32;
    let mut frame_no = 0u32;
    let boot_id = fastrand::u32(..);
    let mut link: Option<std::fs::File> = None;
    let mut decoder = Decoder::new();
    let wire = |link: &mut Option<std::fs::File>, msg: &Message, flip: bool| {
        let mut out = [0u8; MAX_ENCODED];
        let n = encode(msg, &mut out).expect("fits a frame");
        if flip && n > 4 {
            out[n / 2] ^= 0x10;
        }
        if let Some(f) = link.as_mut() {
            if f.write_all(&out[..n]).is_err() {
                *link = None;
            }
        }
    };
    while start.elapsed() < Duration::from_secs(240) && !counts.stop.load(Ordering::Relaxed) {
        let now = start.elapsed().as_millis() as u64;
        if link.is_none() {
            if let Ok(f) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(0o4000) // O_NONBLOCK
                .open(&port)
            {
                counts.reopened.fetch_add(1, Ordering::Relaxed);
                link = Some(f);
                decoder = Decoder::new();
                wire(&mut link, &birth(boot_id), false);
            }
        }
        if taken < SAMPLES && now >= u64::from(taken) * 10 {
            let readings = heapless::Vec::from_slice(&[Reading {
                channel: 0,
                value: taken as f32,
            }])
            .unwrap();
            let s = outbox.record(now, readings).clone();
            taken += 1;
            frame_no += 1;
            let flip = frame_no % 23 == 0;
            if flip {
                counts.flipped.fetch_add(1, Ordering::Relaxed);
            }
            wire(&mut link, &Message::Samples(s), flip);
            counts.sent.fetch_add(1, Ordering::Relaxed);
        }
        while let Some(s) = outbox.poll(now).cloned() {
            wire(&mut link, &Message::Samples(s), false);
        }
        let mut buf = [0u8; 256];
        let read = match link.as_mut().map(|f| f.read(&mut buf)) {
            Some(Ok(0)) => {
                link = None;
                0
            }
            Some(Ok(n)) => n,
            Some(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Some(Err(_)) => {
                link = None;
                0
            }
            None => 0,
        };
        for &b in &buf[..read] {
            match decoder.push(b) {
                Some(Ok(Message::Ack(a))) => {
                    counts.acks.fetch_add(1, Ordering::Relaxed);
                    outbox.ack(a);
                }
                Some(Ok(Message::Nack(n))) if outbox.nack(n) == NackAction::SendBirth => {
                    wire(&mut link, &birth(boot_id), false);
                }
                _ => {}
            }
        }
        if taken == SAMPLES && outbox.pending() == 0 {
            counts.done.store(true, Ordering::Relaxed);
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A counter or gauge of the agent's page as a whole number, 0 if absent.
fn metric(metrics: &str, name: &str) -> u64 {
    edge_tests::metric(metrics, name).unwrap_or(0.0) as u64
}

fn start_agent(config: &Path, status: &str, logs: &Path) -> anyhow::Result<Service> {
    let args = ["run", "--config", &config.display().to_string()].map(String::from);
    let agent = spawn("edge-agent", &agent_binary()?, &args, logs)?;
    wait_until("agent status page", Duration::from_secs(30), || {
        http_get(status).is_ok()
    })
    .with_context(|| agent.log_tail())?;
    Ok(agent)
}

#[test]
fn samples_from_a_microcontroller_survive_a_pulled_cable_a_killed_agent_and_line_noise(
) -> anyhow::Result<()> {
    run::<1024>(true)
}

#[test]
fn samples_a_small_ring_drops_during_a_pulled_cable_arrive_as_gap_events() -> anyhow::Result<()> {
    run::<16>(false)
}

/// One run with a device ring of `RING` samples; `kill`: the agent is
/// killed two thirds in. A ring that holds every sample across the outages
/// loses none; a small one drops some, and each is counted by a gap event.
/// What every frames run needs: tansu with the topics, the relay, a pty
/// pair, and the agent's config with a `[[frames]]` section on the pty.
struct Rig {
    logs: tempfile::TempDir,
    work: tempfile::TempDir,
    tansu: Tansu,
    relay: Service,
    pty: PtyPair,
    agent_config: PathBuf,
    status: String,
}

fn rig() -> anyhow::Result<Rig> {
    let logs = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let tansu = Tansu::start(logs.path())?;
    tansu.create_topic(READINGS)?;
    for t in ["frames.alarms", "frames.events"] {
        tansu.create_topic(t)?;
    }
    let relay_port = free_port()?;
    let relay_config = work.path().join("relay.toml");
    std::fs::write(
        &relay_config,
        format!(
            r#"listen = "127.0.0.1:{relay_port}"
data_dir = {:?}
[[gateways]]
id = "{GATEWAY}"
token = "{TOKEN}"
[ops]
listen = "127.0.0.1:0"
[kafka]
brokers = ["{}"]
readings_topic = "{READINGS}"
alarms_topic = "frames.alarms"
events_topic = "frames.events"
"#,
            work.path().join("relay"),
            tansu.bootstrap(),
        ),
    )?;
    let args = ["--config", &relay_config.display().to_string()].map(String::from);
    let relay = spawn("edge-relay", &relay_binary()?, &args, logs.path())?;
    wait_until("relay answers", Duration::from_secs(30), || {
        relay_answers(relay_port)
    })
    .with_context(|| relay.log_tail())?;

    let pty = PtyPair::start(work.path())?;
    let status_port = free_port()?;
    let status = format!("http://127.0.0.1:{status_port}/metrics");
    let agent_config = work.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            r#"gateway_id = "{GATEWAY}"
[spool]
path = {:?}
[batch]
max_readings = 50
max_age_ms = 100
[uplink]
url = "http://127.0.0.1:{relay_port}/v1/batches"
token = "{TOKEN}"
retry_initial_ms = 100
retry_max_ms = 500
[status]
listen = "127.0.0.1:{status_port}"
[serial.mcu]
device = {:?}
baud = 115200
parity = "none"
[[frames]]
line = "mcu"
[frames.tags]
bench = "e2e"
[[rules]]
name = "seq.high"
series = "mcu-e2e.seq"
max = {ALARM_ABOVE}.0
"#,
            work.path().join("spool.db"),
            pty.a,
        ),
    )?;
    Ok(Rig {
        logs,
        work,
        tansu,
        relay,
        pty,
        agent_config,
        status,
    })
}

fn run<const RING: usize>(kill: bool) -> anyhow::Result<()> {
    let Rig {
        logs,
        work,
        tansu,
        relay,
        pty,
        agent_config,
        status,
    } = rig()?;
    let mut agent = start_agent(&agent_config, &status, logs.path())?;
    let counts = Arc::new(DeviceCounts::default());
    let sim = {
        let (port, counts) = (pty.b.clone(), counts.clone());
        std::thread::spawn(move || device::<RING>(port, counts))
    };
    let sent = |n| {
        let counts = counts.clone();
        move || counts.sent.load(Ordering::Relaxed) >= n
    };

    // A third in: the cable is pulled for a second.
    wait_until(
        "a third of the samples",
        Duration::from_secs(60),
        sent(SAMPLES / 3),
    )?;
    drop(pty);
    std::thread::sleep(Duration::from_secs(1));
    let _cable_back = PtyPair::start(work.path())?;
    // Two thirds in: the agent is killed and started again.
    wait_until(
        "two thirds of the samples",
        Duration::from_secs(60),
        sent(2 * SAMPLES / 3),
    )?;
    let first_life = agent.log_tail();
    let acks_first = counts.acks.load(Ordering::Relaxed);
    if kill {
        agent.kill()?;
        agent = start_agent(&agent_config, &status, logs.path())?;
    }

    wait_until(
        "every sample acknowledged",
        Duration::from_secs(120),
        || counts.done.load(Ordering::Relaxed),
    )
    .with_context(|| agent.log_tail())?;
    sim.join().expect("device thread");
    let m = http_get(&status)?;
    let noise = metric(&m, "edge_agent_frames_crc_errors_total")
        + metric(&m, "edge_agent_frames_bad_frames_total");
    // The per-device counters agree with the agent-wide ones, and name the
    // device by its serial line, one device here.
    for (event, total) in [
        ("received", "edge_agent_frames_received_total"),
        ("crc_error", "edge_agent_frames_crc_errors_total"),
        ("birth", "edge_agent_frames_births_total"),
    ] {
        let per_link: Vec<(&str, u64)> = m
            .lines()
            .filter(|l| l.starts_with("edge_agent_frames_device_events_total{"))
            .filter(|l| l.contains(&format!("event=\"{event}\"")))
            .filter_map(|l| {
                let link = l.split("link=\"").nth(1)?.split('"').next()?;
                Some((link, l.rsplit(' ').next()?.parse().ok()?))
            })
            .collect();
        let wide = metric(&m, total);
        if wide > 0 {
            ensure!(per_link.len() == 1, "{event}: {per_link:?}\n{m}");
            ensure!(
                per_link[0].1 == wide,
                "{event}: {per_link:?} vs {total} {wide}"
            );
            ensure!(
                per_link[0].0.starts_with('/'),
                "{event}: link label {:?}",
                per_link[0].0
            );
        }
    }
    ensure!(
        metric(&m, "edge_agent_frames_received_total") > 0,
        "no frames counted\n{m}"
    );
    wait_until("the spool to drain", Duration::from_secs(60), || {
        http_get(&status).is_ok_and(|m| metric(&m, "edge_agent_spool_batches") == 0)
    })
    .with_context(|| agent.log_tail())?;
    agent.terminate(Duration::from_secs(10))?;

    let mut seen: BTreeMap<i64, u32> = BTreeMap::new();
    for m in tansu.read_topic(READINGS)? {
        let v = &m["value"];
        ensure!(v["series"] == "mcu-e2e.seq", "{v}");
        ensure!(
            v["tags"]["bench"] == "e2e" && v["tags"]["protocol"] == "frames",
            "{v}"
        );
        let x = v["value"].as_f64().context("value")?;
        ensure!(
            x.fract() == 0.0 && (0.0..f64::from(SAMPLES)).contains(&x),
            "a value the device never sent: {x}"
        );
        *seen.entry(x as i64).or_default() += 1;
    }
    let mut gap_readings = 0;
    let mut link_down = 0;
    for e in tansu.read_topic("frames.events")? {
        let v = &e["value"];
        if v["event"] == "device_state" {
            // The pulled cable, as the cloud sees it.
            ensure!(v["source"] == "frames", "{v}");
            if v["state"] == "down" {
                ensure!(v["reason"]["kind"] == "connection_lost", "{v}");
                link_down += 1;
            }
            continue;
        }
        ensure!(
            v["event"] == "gap" && v["reason"] == "device_dropped",
            "{v}"
        );
        gap_readings += v["readings"].as_u64().context("gap readings")?;
    }
    ensure!(
        link_down >= 1,
        "no device_state down event for the pulled cable"
    );
    let missing: Vec<i64> = (0..i64::from(SAMPLES))
        .filter(|n| !seen.contains_key(n))
        .collect();
    let doubled: u32 = seen.values().map(|c| c - 1).sum();
    println!(
        "frames: {} samples, {} in Kafka, {doubled} doubled, {} flipped frames ({noise} counted in the last agent life), {} port opens",
        SAMPLES,
        seen.len(),
        counts.flipped.load(Ordering::Relaxed),
        counts.reopened.load(Ordering::Relaxed)
    );
    let figures: Vec<String> = [
        "edge_agent_frames_received_total",
        "edge_agent_frames_duplicates_total",
        "edge_agent_frames_nacks_total",
        "edge_agent_frames_births_total",
        "edge_agent_batches_quarantined_total",
        "edge_agent_readings_produced_total",
    ]
    .iter()
    .map(|n| format!("{n} {}", metric(&m, n)))
    .collect();
    println!("frames: ring {RING}: {gap_readings} readings in device_dropped gap events");
    // One alarm, raised once on the first value above the limit, however
    // the cable and the restart went.
    let alarms: Vec<serde_json::Value> = tansu
        .read_topic("frames.alarms")?
        .into_iter()
        .map(|m| m["value"].clone())
        .collect();
    let raised: Vec<&serde_json::Value> =
        alarms.iter().filter(|v| v["state"] == "raised").collect();
    ensure!(raised.len() == 1, "raised events: {alarms:?}");
    let a = raised[0];
    ensure!(
        a["rule"] == "seq.high" && a["series"] == "mcu-e2e.seq",
        "{a}"
    );
    ensure!(a["limit"].as_f64() == Some(f64::from(ALARM_ABOVE)), "{a}");
    ensure!(
        a["value"]
            .as_f64()
            .is_some_and(|v| v > f64::from(ALARM_ABOVE)),
        "{a}"
    );
    if RING < SAMPLES as usize {
        ensure!(gap_readings > 0, "a ring of {RING} dropped nothing");
        ensure!(
            missing.len() as u64 == gap_readings,
            "{} samples missing, {gap_readings} counted by gap events",
            missing.len()
        );
        ensure!(
            doubled == 0,
            "{doubled} samples doubled without an agent restart"
        );
        return Ok(());
    }
    ensure!(
        missing.is_empty(),
        "samples lost: {missing:?}\nlast agent life: {figures:?}\nagent log:\n{}\nrelay log:\n{}",
        agent.log_tail(),
        relay.log_tail()
    );
    // Exactly once, the agent's SIGKILL included: samples committed and not
    // yet acknowledged when it died are known to the next agent process
    // (from the spool), so the device's resends of them are not taken again.
    let twice: Vec<i64> = seen
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .collect();
    ensure!(
        doubled == 0,
        "{doubled} samples doubled: {twice:?}\nacks in the first life {acks_first}\nfirst life:\n{first_life}\nagent log:\n{}",
        agent.log_tail()
    );
    if kill {
        ensure!(
            agent
                .log()
                .contains("boot already seen before this agent started"),
            "the restarted agent did not read the device's progress back:\n{}",
            agent.log_tail()
        );
    }
    ensure!(
        noise > 0,
        "no flipped frame was counted in the last agent life"
    );
    ensure!(
        counts.reopened.load(Ordering::Relaxed) >= 2,
        "the cable was never pulled"
    );
    Ok(())
}

/// `edge-agent probe frames` shows a technician the birth and live samples.
#[test]
fn probe_frames_shows_the_birth_and_live_samples() -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let agent = agent_binary()?;
    let pty = PtyPair::start(work.path())?;
    let counts = Arc::new(DeviceCounts::default());
    let sim = {
        let (port, counts) = (pty.b.clone(), counts.clone());
        std::thread::spawn(move || device::<64>(port, counts))
    };
    let out = std::process::Command::new(agent)
        .args(["probe", "frames", "--rtu"])
        .arg(&pty.a)
        .args(["--seconds", "2"])
        .output()?;
    counts.stop.store(true, Ordering::Relaxed);
    sim.join().expect("device thread");
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "probe failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Whether the probe caught the birth or asked for it again, it shows it.
    ensure!(
        text.contains("birth: device \"mcu-e2e\", firmware 0.1.0"),
        "{text}"
    );
    ensure!(
        text.contains("0      seq               n         counter  1"),
        "{text}"
    );
    let samples = text
        .lines()
        .filter(|l| l.starts_with("sample ") && l.contains("mcu-e2e.seq="))
        .count();
    ensure!(samples >= 50, "{samples} samples shown in 2 s:\n{text}");
    ensure!(
        text.contains("CRC errors") && text.contains("heard "),
        "{text}"
    );
    Ok(())
}

/// A device written in Python from docs/firmware-frames.md alone
/// (tests/py/mcu_device.py): the agent takes every sample, once, and the
/// device gets every acknowledgement: the document is enough.
#[test]
fn a_device_written_from_the_format_document_alone_is_understood() -> anyhow::Result<()> {
    const N: u32 = 300;
    let r = rig()?;
    let agent = start_agent(&r.agent_config, &r.status, r.logs.path())?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/mcu_device.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(&r.pty.b)
        .arg(N.to_string())
        .output()?;
    let said = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "the Python device did not get every ack: {said}{}\nagent:\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.log_tail()
    );
    wait_until("the spool to drain", Duration::from_secs(60), || {
        http_get(&r.status).is_ok_and(|m| {
            metric(&m, "edge_agent_readings_spooled_total") >= u64::from(N)
                && metric(&m, "edge_agent_spool_batches") == 0
        })
    })
    .with_context(|| agent.log_tail())?;
    let mut seen: BTreeMap<i64, u32> = BTreeMap::new();
    for m in r.tansu.read_topic(READINGS)? {
        let v = &m["value"];
        ensure!(v["series"] == "py-mcu.count" && v["unit"] == "n", "{v}");
        *seen
            .entry(v["value"].as_f64().context("value")? as i64)
            .or_default() += 1;
    }
    println!("frames from Python: {said}");
    ensure!(
        seen.len() as u32 == N && seen.values().all(|&c| c == 1),
        "{} distinct of {N}, doubled: {:?}",
        seen.len(),
        seen.iter().filter(|(_, c)| **c > 1).collect::<Vec<_>>()
    );
    let _ = (&r.work, &r.relay);
    Ok(())
}
