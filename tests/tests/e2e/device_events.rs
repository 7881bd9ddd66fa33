//! Device-state events: a Modbus device that stops answering and comes back
//! reaches Kafka as two `device_state` events, not as silence.
//!
//! The real agent binary polls the in-process Modbus device and forwards
//! through the real relay to tansu. The device runs on a runtime of its own,
//! so stopping it (shutting that runtime down) closes its listener and every
//! connection: the agent's request fails, its one repeat finds the port
//! closed (`connection_refused`), and the device is down. A device on the
//! same port again answers, and the device is ok. What a consumer reads on
//! the events topic (with kafka-python, and checked against the published
//! JSON Schema with an independent validator) must say exactly that: no
//! event at start-up (the first answer is not one), one `down` event with
//! the reason, one `ok` event whose `since` is the `down` event's `at`; the
//! agent's `/metrics` shows the state set and the count of events spooled.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context};
use edge_demo::device::SimDevice;
use edge_tests::{
    agent_binary, free_port, http_get, metric, relay_binary, spawn, wait_until, Tansu,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const GATEWAY: &str = "device-gw";
const TOKEN: &str = "device-token-0123456789abcdef";
const READINGS: &str = "devices.readings";
const ALARMS: &str = "devices.alarms";
const EVENTS: &str = "devices.events";
const DEVICE: &str = "press-3";

/// The simulated device serving on `port` on its own runtime: dropping the
/// runtime ends the server and closes every connection it holds.
struct RunningDevice(tokio::runtime::Runtime);

impl RunningDevice {
    fn start(sim: &SimDevice, port: u16) -> anyhow::Result<RunningDevice> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        // The port was ours a moment ago; tokio binds with SO_REUSEADDR, so
        // connections of the stopped device in TIME_WAIT do not block it.
        let listener = rt.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))?;
        rt.spawn(sim.clone().serve(listener, CancellationToken::new()));
        Ok(RunningDevice(rt))
    }

    fn stop(self) {
        self.0.shutdown_background();
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn state_metric(page: &str, state: &str) -> Option<f64> {
    metric(
        page,
        &format!(
            "edge_agent_device_state{{source=\"modbus\",device=\"{DEVICE}\",state=\"{state}\"}}"
        ),
    )
}

/// The `device_state` messages on the events topic, in order.
fn device_events(tansu: &Tansu) -> anyhow::Result<Vec<Value>> {
    Ok(tansu
        .read_topic(EVENTS)?
        .into_iter()
        .filter(|m| m["value"]["event"] == "device_state")
        .collect())
}

#[test]
fn a_device_going_down_and_back_arrives_as_device_state_events() -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let schema: Value =
        serde_json::from_str(include_str!("../../../docs/schemas/edge.event.v1.json"))?;
    let schema = jsonschema::validator_for(&schema).context("the event schema compiles")?;
    let tansu = Tansu::start(logs.path())?;
    for topic in [READINGS, ALARMS, EVENTS] {
        tansu.create_topic(topic)?;
    }
    let sim = SimDevice::new();
    sim.set_u16(0, 1234);
    let device_port = free_port()?;
    let device = RunningDevice::start(&sim, device_port)?;

    let relay_port = free_port()?;
    let status_port = free_port()?;
    // Not the default operations port: tests run in parallel.
    let ops_port = free_port()?;
    let relay_config = work.path().join("relay.toml");
    std::fs::write(
        &relay_config,
        format!(
            r#"listen = "127.0.0.1:{relay_port}"
data_dir = {:?}
[[gateways]]
id = "{GATEWAY}"
token = "{TOKEN}"
site = "plant-a"
[kafka]
brokers = ["{}"]
readings_topic = "{READINGS}"
alarms_topic = "{ALARMS}"
events_topic = "{EVENTS}"
delivery_timeout_ms = 5000
[ops]
listen = "127.0.0.1:{ops_port}"
"#,
            work.path().join("relay"),
            tansu.bootstrap(),
        ),
    )?;
    let agent_config = work.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            r#"gateway_id = "{GATEWAY}"
[spool]
path = {:?}
[batch]
max_readings = 50
max_age_ms = 200
[uplink]
url = "http://127.0.0.1:{relay_port}/v1/batches"
token = "{TOKEN}"
retry_initial_ms = 100
retry_max_ms = 500
[status]
listen = "127.0.0.1:{status_port}"
[[modbus]]
name = "{DEVICE}"
address = "127.0.0.1:{device_port}"
poll_interval_ms = 100
timeout_ms = 500
retries = 1
[[modbus.points]]
name = "speed"
register = 0
type = "u16"
"#,
            work.path().join("spool.db"),
        ),
    )?;
    let args = ["--config", &relay_config.display().to_string()].map(String::from);
    let relay = spawn("edge-relay", &relay_binary()?, &args, logs.path())?;
    let args = ["run", "--config", &agent_config.display().to_string()].map(String::from);
    let agent = spawn("edge-agent", &agent_binary()?, &args, logs.path())?;
    let logs_of = || format!("agent:\n{}\nrelay:\n{}", agent.log_tail(), relay.log_tail());
    let status = format!("http://127.0.0.1:{status_port}/metrics");
    let page = || http_get(&status).unwrap_or_default();

    // Up: readings are forwarded, the board says ok, and no event was sent.
    wait_until("the device to be ok", Duration::from_secs(30), || {
        state_metric(&page(), "ok") == Some(1.0)
            && metric(&page(), "edge_agent_readings_forwarded_total").is_some_and(|n| n > 0.0)
    })
    .with_context(logs_of)?;
    // (The readings topic is not read back: the device keeps it busy, and
    // `read_topic` reads until it has been idle for 3 s.)
    ensure!(
        device_events(&tansu)?.is_empty(),
        "the first answer after start-up must not be an event"
    );
    ensure!(metric(&page(), "edge_agent_device_events_spooled_total") == Some(0.0));

    // Down: the listener and the agent's connection are gone.
    let stopped_us = now_us();
    device.stop();
    wait_until("the device to be down", Duration::from_secs(30), || {
        let p = page();
        state_metric(&p, "down") == Some(1.0) && state_metric(&p, "ok") == Some(0.0)
    })
    .with_context(logs_of)?;
    let mut events = Vec::new();
    wait_until("the down event in Kafka", Duration::from_secs(30), || {
        events = device_events(&tansu).unwrap_or_default();
        !events.is_empty()
    })
    .with_context(logs_of)?;
    ensure!(events.len() == 1, "one event for one outage: {events:?}");
    let down = events[0]["value"].clone();
    ensure!(down["schema"] == "edge.event.v1", "{down}");
    ensure!(
        down["gateway"] == GATEWAY && down["site"] == "plant-a",
        "{down}"
    );
    ensure!(
        down["device"] == DEVICE && down["source"] == "modbus",
        "{down}"
    );
    ensure!(down["state"] == "down", "{down}");
    ensure!(down["previous_state"] == "ok", "{down}");
    // The device closed the agent's open connection: the request on it
    // fails with an I/O error, which is a lost connection whatever the
    // OS's words for it (a regression guard: such errors were "error").
    ensure!(
        down["reason"]["kind"] == "connection_lost",
        "the device closed the connection: {down}"
    );
    ensure!(down["reason"]["code"].is_null(), "{down}");
    let detail = down["reason"]["detail"].as_str().context("detail")?;
    ensure!(detail.contains("os error"), "the I/O error's text: {down}");
    let down_at = down["at_us"].as_i64().context("at_us")?;
    let down_since = down["since_us"].as_i64().context("since_us")?;
    ensure!(
        down_since < stopped_us && stopped_us <= down_at && down_at <= now_us(),
        "ok since {down_since}, stopped at {stopped_us}, down at {down_at}: {down}"
    );
    ensure!(
        events[0]["key"] == GATEWAY && events[0]["headers"]["schema"] == "edge.event.v1",
        "key and headers as the gap event: {}",
        events[0]
    );
    ensure!(events[0]["headers"]["gateway"] == GATEWAY, "{}", events[0]);

    // Back on the same port.
    let _device = wait_restart(&sim, device_port)?;
    wait_until("the ok event in Kafka", Duration::from_secs(60), || {
        events = device_events(&tansu).unwrap_or_default();
        events.len() >= 2
    })
    .with_context(logs_of)?;
    ensure!(
        events.len() == 2,
        "down and back are two events: {events:?}"
    );
    let up = &events[1]["value"];
    ensure!(
        up["state"] == "ok" && up["previous_state"] == "down",
        "{up}"
    );
    ensure!(up["reason"].is_null(), "an ok device has no reason: {up}");
    ensure!(
        up["since_us"].as_i64() == Some(down_at) && up["since"] == down["at"],
        "the ok event's since is the down event's at: {up} after {down}"
    );
    ensure!(up["at_us"].as_i64() > Some(down_at), "{up}");
    ensure!(up["device"] == DEVICE && up["source"] == "modbus", "{up}");

    for e in &events {
        let errors: Vec<String> = schema
            .iter_errors(&e["value"])
            .map(|e| e.to_string())
            .collect();
        ensure!(errors.is_empty(), "{}: {errors:?}", e["value"]);
    }
    let p = page();
    ensure!(state_metric(&p, "ok") == Some(1.0), "{p}");
    ensure!(state_metric(&p, "down") == Some(0.0), "{p}");
    ensure!(
        metric(&p, "edge_agent_device_events_spooled_total") == Some(2.0),
        "{p}"
    );
    let last_ok = metric(
        &p,
        &format!(
            "edge_agent_device_last_ok_timestamp_seconds{{source=\"modbus\",device=\"{DEVICE}\"}}"
        ),
    )
    .context("last ok")?;
    ensure!(
        last_ok * 1e6 >= up["at_us"].as_f64().unwrap_or(f64::MAX) - 1e6,
        "{p}"
    );
    Ok(())
}

/// Start the device on `port` again, as soon as the port can be bound.
fn wait_restart(sim: &SimDevice, port: u16) -> anyhow::Result<RunningDevice> {
    let mut device = None;
    let mut last = String::new();
    wait_until("the device's port again", Duration::from_secs(10), || {
        match RunningDevice::start(sim, port) {
            Ok(d) => device = Some(d),
            Err(e) => last = format!("{e:#}"),
        }
        device.is_some()
    })
    .with_context(|| last.clone())?;
    device.context("device started")
}
