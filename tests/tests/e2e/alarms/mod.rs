//! Alarms end to end, against a Mosquitto the test starts, the in-process
//! Modbus device (its register is the value the test controls) and the
//! real relay with its file sink:
//! - events and retained state on the local broker, and acknowledgements,
//!   with the uplink down the whole time; an acknowledgement from the
//!   status page published the same way;
//! - after an outage, the alarm reaches the relay before the reading
//!   backlog;
//! - the real `edge-agent` binary, SIGKILLed with an alarm raised and
//!   restarted on the same spool, raises it no second time and clears it
//!   once, its duration counted from the raise before the kill
//!   ([`restart`]).

mod rebaseline;
mod restart;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use edge_agent::config::AgentConfig;
use edge_agent::spool::Spool;
use edge_agent::Agent;
use edge_demo::device::SimDevice;
use edge_relay::{Relay, RelayConfig};
use edge_tests::{free_port, Mosquitto};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const GATEWAY: &str = "e2e-gw-alarms";
const TOKEN: &str = "e2e-token-alarms-0123456789";
const SERIES: &str = "press-3.oil_temp";
const RULE: &str = "oil_temp.high";
/// Register 101 holds the temperature in tenths of a degree.
const REGISTER: u16 = 101;

async fn wait_for(what: &str, secs: u64, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("timed out after {secs} s waiting for {what}")
}

/// The device, serving until the returned token is cancelled.
async fn start_device(
    celsius_tenths: i16,
) -> anyhow::Result<(SimDevice, SocketAddr, CancellationToken)> {
    let device = SimDevice::new();
    device.set_i16(REGISTER, celsius_tenths);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    tokio::spawn(device.clone().serve(listener, stop.clone()));
    Ok((device, addr, stop))
}

/// Agent config text: one device, one rule `oil_temp.high` above 50 degC
/// (critical), the uplink at `relay_port`, local publication when
/// `mqtt_port` is given.
fn agent_toml(
    spool: &Path,
    device: SocketAddr,
    relay_port: u16,
    mqtt_port: Option<u16>,
    max_readings: usize,
) -> String {
    let publish = mqtt_port
        .map(|port| {
            format!(
                "[alarm_publish]\nhost = \"127.0.0.1\"\nport = {port}\ntopic_prefix = \"plant\"\n"
            )
        })
        .unwrap_or_default();
    format!(
        r#"
gateway_id = "{GATEWAY}"
[spool]
path = {spool:?}
[batch]
max_readings = {max_readings}
max_age_ms = 200
[uplink]
url = "http://127.0.0.1:{relay_port}/v1/batches"
token = "{TOKEN}"
timeout_ms = 2000
retry_initial_ms = 50
retry_max_ms = 200
shutdown_drain_ms = 0
[[modbus]]
name = "press-3"
address = "{device}"
poll_interval_ms = 20
timeout_ms = 1000
[[modbus.points]]
name = "oil_temp"
register = {REGISTER}
type = "i16"
scale = 0.1
unit = "degC"
[[rules]]
name = "oil_temp"
series = "{SERIES}"
high = {{ limit = 50.0, severity = "critical" }}
{publish}"#
    )
}

/// An MQTT client of the test: every message it receives, as (topic, JSON
/// payload, retained flag).
struct Subscriber {
    messages: Arc<Mutex<Vec<(String, Value, bool)>>>,
    stop: CancellationToken,
}

impl Subscriber {
    /// Connect, subscribe to `filter` and return once the broker confirmed.
    async fn start(port: u16, client_id: &str, filter: &str) -> anyhow::Result<Subscriber> {
        let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 16);
        client.subscribe(filter, QoS::AtLeastOnce).await?;
        let messages: Arc<Mutex<Vec<(String, Value, bool)>>> = Arc::default();
        let record = |messages: &Arc<Mutex<Vec<_>>>, p: rumqttc::Publish| {
            let json = serde_json::from_slice(&p.payload).unwrap_or(Value::Null);
            messages
                .lock()
                .unwrap()
                .push((p.topic.clone(), json, p.retain));
        };
        let subscribed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match eventloop.poll().await? {
                    Event::Incoming(Packet::SubAck(_)) => return Ok::<_, anyhow::Error>(()),
                    Event::Incoming(Packet::Publish(p)) => record(&messages, p),
                    _ => {}
                }
            }
        });
        subscribed
            .await
            .context("subscription not confirmed in 10 s")??;
        let stop = CancellationToken::new();
        let (m, s) = (messages.clone(), stop.clone());
        tokio::spawn(async move {
            let _client = client;
            loop {
                tokio::select! {
                    _ = s.cancelled() => return,
                    e = eventloop.poll() => match e {
                        Ok(Event::Incoming(Packet::Publish(p))) => record(&m, p),
                        Ok(_) => {}
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    },
                }
            }
        });
        Ok(Subscriber { messages, stop })
    }

    fn all(&self) -> Vec<(String, Value, bool)> {
        self.messages.lock().unwrap().clone()
    }

    /// Payloads of the events with `state`.
    fn events(&self, state: &str) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|(t, v, _)| t.ends_with("/events") && v["state"] == state)
            .map(|(_, v, _)| v)
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What a new subscriber to the series' state topic is given: the retained
/// message (and that it was flagged retained).
async fn retained_state(port: u16, id: &str) -> anyhow::Result<Value> {
    let topic = format!("plant/{GATEWAY}/state/{SERIES}");
    let sub = Subscriber::start(port, id, &topic).await?;
    wait_for("the retained state", 10, || !sub.all().is_empty()).await?;
    let (t, v, retained) = sub.all().remove(0);
    ensure!(
        t == topic && retained,
        "first message on {t} retained={retained}: {v}"
    );
    Ok(v)
}

fn now_us() -> i64 {
    edge_agent::reading::now_us()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_are_published_and_acknowledged_locally_while_the_uplink_is_down(
) -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let mosquitto = Mosquitto::start(logs.path())?;
    let (device, device_addr, stop_device) = start_device(215).await?;
    let spool_dir = tempfile::tempdir()?;
    let spool_path = spool_dir.path().join("spool.db");
    // Nobody listens on the relay port: the uplink is down throughout.
    let dead_relay = free_port()?;
    let config = AgentConfig::parse(
        &agent_toml(
            &spool_path,
            device_addr,
            dead_relay,
            Some(mosquitto.port),
            50,
        ),
        "alarms e2e config",
    )?;
    let events = Subscriber::start(
        mosquitto.port,
        "hmi-events",
        &format!("plant/{GATEWAY}/events"),
    )
    .await?;
    let agent = Agent::new(config);
    let stats = agent.stats();
    let stop_agent = CancellationToken::new();
    let agent_task = tokio::spawn(agent.run(stop_agent.clone()));

    wait_for("readings", 10, || stats.readings_produced.get() >= 5).await?;
    let before_raise = now_us();
    device.set_i16(REGISTER, 612);
    wait_for("the raised event", 10, || {
        !events.events("raised").is_empty()
    })
    .await?;
    let raised = events.events("raised").remove(0);
    assert_eq!(raised["gateway"], GATEWAY);
    assert_eq!(raised["series"], SERIES);
    assert_eq!(raised["unit"], "degC");
    assert_eq!(raised["rule"], RULE);
    assert_eq!(raised["severity"], "critical");
    assert_eq!(raised["value"], 61.2);
    assert_eq!(raised["limit"], 50.0);
    assert_eq!(raised["duration_us"], Value::Null);
    let raised_us = raised["ts_us"].as_i64().context("ts_us")?;
    assert!((before_raise..=now_us()).contains(&raised_us), "{raised}");

    let state = retained_state(mosquitto.port, "hmi-late-1").await?;
    assert_eq!(state["state"], "alarm", "{state}");
    assert_eq!(state["alarms"][0]["rule"], RULE, "{state}");
    assert_eq!(state["alarms"][0]["raised_us"], raised_us, "{state}");
    assert_eq!(state["alarms"][0]["acknowledged"], false, "{state}");

    // An acknowledgement naming no raised alarm is refused and counted.
    let ack_topic = format!("plant/{GATEWAY}/ack/{SERIES}");
    mosquitto.publish(&ack_topic, "oil_temp.low", 1)?;
    wait_for("the refused ack", 10, || {
        stats.alarm_acks_rejected.get() == 1
    })
    .await?;
    mosquitto.publish(
        &ack_topic,
        r#"{"rule": "oil_temp.high", "by": "operator-7"}"#,
        1,
    )?;
    wait_for("the acknowledged event", 10, || {
        !events.events("acknowledged").is_empty()
    })
    .await?;
    let acked = events.events("acknowledged").remove(0);
    assert_eq!(
        (&acked["rule"], &acked["acknowledged_by"]),
        (&Value::from(RULE), &Value::from("operator-7"))
    );
    let acked_us = acked["ts_us"].as_i64().context("ack ts_us")?;
    let state = retained_state(mosquitto.port, "hmi-late-2").await?;
    assert_eq!(state["alarms"][0]["acknowledged"], true, "{state}");
    assert_eq!(state["alarms"][0]["acked_us"], acked_us, "{state}");
    // Persisted in the spool's alarm table.
    let acks = Spool::open(&spool_path)?.acknowledged_alarms()?;
    assert_eq!(acks, [(SERIES.to_string(), RULE.to_string(), acked_us)]);

    device.set_i16(REGISTER, 215);
    wait_for("the cleared event", 10, || {
        !events.events("cleared").is_empty()
    })
    .await?;
    let cleared = events.events("cleared").remove(0);
    assert_eq!(cleared["value"], 21.5);
    let cleared_us = cleared["ts_us"].as_i64().context("clear ts_us")?;
    assert_eq!(cleared["duration_us"], cleared_us - raised_us, "{cleared}");
    let state = retained_state(mosquitto.port, "hmi-late-3").await?;
    assert_eq!(state["state"], "normal", "{state}");
    assert_eq!(state["alarms"], Value::Array(vec![]), "{state}");
    assert!(Spool::open(&spool_path)?.acknowledged_alarms()?.is_empty());

    // All of it with the relay unreachable: nothing forwarded, events once each.
    assert_eq!(stats.batches_forwarded.get(), 0);
    assert!(stats.upload_failures.get() >= 1);
    assert_eq!(events.events("raised").len(), 1);
    assert_eq!(events.events("cleared").len(), 1);
    assert_eq!(stats.alarm_acks.get(), 1);

    stop_agent.cancel();
    agent_task.await??;
    stop_device.cancel();
    // The acknowledgement travels to the relay too, as an event of its own.
    let states = spooled_alarm_states(&spool_path)?;
    assert_eq!(states, ["raised", "acknowledged", "cleared"]);
    Ok(())
}

/// The status page's acknowledgement takes the MQTT acknowledgement's
/// path: spooled, then published on the local broker as an event with who
/// acknowledged and in the retained state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_from_the_status_page_is_published_locally() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let logs = tempfile::tempdir()?;
    let mosquitto = Mosquitto::start(logs.path())?;
    let (_device, device_addr, stop_device) = start_device(612).await?;
    let dir = tempfile::tempdir()?;
    let spool_path = dir.path().join("spool.db");
    let token_file = dir.path().join("status-token");
    std::fs::write(&token_file, "page-token-0123\n")?;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))?;
    let status_port = free_port()?;
    let text = format!(
        "{}\n[status]\nlisten = \"127.0.0.1:{status_port}\"\n[status.auth]\ntoken_file = {token_file:?}\n",
        agent_toml(&spool_path, device_addr, free_port()?, Some(mosquitto.port), 50)
    );
    let events = Subscriber::start(
        mosquitto.port,
        "hmi-page-events",
        &format!("plant/{GATEWAY}/events"),
    )
    .await?;
    let agent = Agent::new(AgentConfig::parse(&text, "alarms page ack")?);
    let stop_agent = CancellationToken::new();
    let agent_task = tokio::spawn(agent.run(stop_agent.clone()));
    wait_for("the raised event", 10, || {
        !events.events("raised").is_empty()
    })
    .await?;

    let client = reqwest::Client::builder().no_proxy().build()?;
    let r = client
        .post(format!("http://127.0.0.1:{status_port}/api/alarms/ack"))
        .header("Authorization", "Bearer page-token-0123")
        .header("Content-Type", "application/json")
        .body(format!(
            r#"{{"series": "{SERIES}", "rule": "{RULE}", "by": "technician-2"}}"#
        ))
        .send()
        .await?;
    ensure!(r.status() == 200, "page ack answered {}", r.status());
    wait_for("the acknowledged event", 10, || {
        !events.events("acknowledged").is_empty()
    })
    .await?;
    let acked = events.events("acknowledged").remove(0);
    assert_eq!(acked["rule"], RULE, "{acked}");
    assert_eq!(acked["acknowledged_by"], "technician-2", "{acked}");
    let state = retained_state(mosquitto.port, "hmi-page-late").await?;
    assert_eq!(state["alarms"][0]["acknowledged"], true, "{state}");
    assert_eq!(state["alarms"][0]["acked_us"], acked["ts_us"], "{state}");
    let acks = Spool::open(&spool_path)?.acknowledged_alarms()?;
    assert_eq!(acks.len(), 1, "{acks:?}");
    stop_agent.cancel();
    agent_task.await??;
    stop_device.cancel();
    Ok(())
}

/// Every alarm state in the spool's unsent batches, in the order they
/// would be sent. Takes the batches out: call it after the agent stopped.
fn spooled_alarm_states(path: &Path) -> anyhow::Result<Vec<String>> {
    let mut spool = Spool::open(path)?;
    let mut states = Vec::new();
    while let Some(b) = spool.oldest()? {
        let batch = edge_wire::decode(&b.body, &Default::default())?;
        states.extend(batch.alarms.iter().map(|a| a.state.as_str().to_string()));
        spool.remove(b.seq)?;
    }
    Ok(states)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_outage_the_alarm_reaches_the_relay_before_the_reading_backlog(
) -> anyhow::Result<()> {
    let (device, device_addr, stop_device) = start_device(215).await?;
    let spool_dir = tempfile::tempdir()?;
    let spool_path = spool_dir.path().join("spool.db");
    let relay_port = free_port()?;
    // Five readings per batch, so the outage leaves many batches behind.
    let config = AgentConfig::parse(
        &agent_toml(&spool_path, device_addr, relay_port, None, 5),
        "priority e2e config",
    )?;
    let agent = Agent::new(config);
    let stats = agent.stats();
    let stop_agent = CancellationToken::new();
    let agent_task = tokio::spawn(agent.run(stop_agent.clone()));

    const BACKLOG: u64 = 40;
    wait_for("a backlog", 30, || {
        stats.readings_spooled.get() >= BACKLOG * 5
    })
    .await?;
    device.set_i16(REGISTER, 612);
    wait_for("the raise", 10, || stats.alarms_raised.get() == 1).await?;
    // The alarm batch is committed and first in line.
    wait_for("the alarm batch at the head of the spool", 10, || {
        Spool::open(&spool_path)
            .and_then(|s| s.oldest())
            .is_ok_and(|b| b.is_some_and(|b| b.alarms == 1))
    })
    .await?;
    let spooled = Spool::open(&spool_path)?.stats()?.batches;
    ensure!(spooled > BACKLOG, "only {spooled} batches spooled");

    // The relay comes up.
    let data = tempfile::tempdir()?;
    let relay_config = RelayConfig::from_toml(&format!(
        "data_dir = {:?}\n[[gateways]]\nid = \"{GATEWAY}\"\ntoken = \"{TOKEN}\"\n",
        data.path()
    ))?;
    let listener = TcpListener::bind(("127.0.0.1", relay_port)).await?;
    let stop_relay = CancellationToken::new();
    let relay = tokio::spawn(edge_relay::serve(
        listener,
        Relay::from_config(relay_config)?,
        stop_relay.clone(),
    ));

    // The relay acknowledges only once the file sink has fsynced a batch,
    // and the agent sends one batch at a time: had the alarm waited its
    // turn, every older reading batch would be in the file before it.
    let alarms_file = data.path().join("alarms.jsonl");
    let readings_file = data.path().join("readings.jsonl");
    wait_for("the alarm at the relay", 30, || {
        std::fs::read_to_string(&alarms_file).is_ok_and(|t| !t.is_empty())
    })
    .await?;
    let readings_then = std::fs::read_to_string(&readings_file).unwrap_or_default();
    let alarm: Value = serde_json::from_str(
        std::fs::read_to_string(&alarms_file)?
            .lines()
            .next()
            .context("alarm line")?,
    )?;
    assert_eq!(
        (&alarm["rule"], &alarm["state"], &alarm["severity"]),
        (
            &Value::from(RULE),
            &Value::from("raised"),
            &Value::from("critical")
        )
    );
    let alarm_seq = alarm["batch_seq"].as_u64().context("batch_seq")?;
    let mut older: Vec<u64> = readings_then
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["batch_seq"].as_u64())
        .filter(|&seq| seq < alarm_seq)
        .collect();
    older.dedup();
    assert!(
        alarm_seq > BACKLOG,
        "the alarm batch (seq {alarm_seq}) was committed after the backlog"
    );
    assert!(
        (older.len() as u64) < alarm_seq - 1,
        "all {} older reading batches reached the relay before the alarm (seq {alarm_seq})",
        older.len()
    );
    eprintln!(
        "older reading batches at the relay when the alarm arrived: {} of {}",
        older.len(),
        alarm_seq - 1
    );

    // And the backlog follows: nothing lost.
    device.set_i16(REGISTER, 215);
    wait_for("the backlog drained", 60, || {
        stats.readings_forwarded.get() >= BACKLOG * 5
    })
    .await?;
    stop_agent.cancel();
    agent_task.await??;
    stop_relay.cancel();
    relay.await??;
    stop_device.cancel();
    Ok(())
}
