//! The agent's status page over HTTP: the agent runs in-process against the
//! in-process Modbus device with its uplink pointing at a closed port, so
//! nothing is forwarded and the spool only grows. `/metrics` must agree
//! with the device (requests answered), with the spool file itself (read
//! through a second connection) and show the device's exception code;
//! `/healthz` must turn from 200 to 503 `not_forwarding` once the oldest
//! unsent reading is older than `stuck_after_s`.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context};
use edge_agent::config::AgentConfig;
use edge_agent::spool::Spool;
use edge_agent::Agent;
use edge_demo::device::SimDevice;
use edge_tests::free_port;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A holding register the device does not map: it answers exception 0x02.
const UNMAPPED: u16 = 60;

fn config(spool: &Path, device: std::net::SocketAddr, status: u16, uplink: u16) -> String {
    format!(
        r#"
gateway_id = "gw-status"
[spool]
path = "{spool}"
[batch]
max_age_ms = 200
[uplink]
url = "http://127.0.0.1:{uplink}/v1/batches"
token = "t"
retry_initial_ms = 100
retry_max_ms = 200
shutdown_drain_ms = 0
[status]
listen = "127.0.0.1:{status}"
stuck_after_s = 2
[[modbus]]
name = "press"
address = "{device}"
poll_interval_ms = 100
[[modbus.points]]
name = "speed"
register = 0
type = "u16"
[[modbus.points]]
name = "missing"
register = {UNMAPPED}
type = "u16"
"#,
        spool = spool.display()
    )
}

/// The value of the sample `series` (name with labels, as rendered).
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn value(page: &str, series: &str) -> anyhow::Result<f64> {
    sample(page, series).with_context(|| format!("no sample {series:?} in:\n{page}"))
}

/// GET `path` on the status page: (status code, body).
async fn get(client: &reqwest::Client, port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let r = client
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await?;
    let code = r.status().as_u16();
    Ok((code, r.text().await?))
}

/// Poll `check` every 50 ms until it returns `Some`, for at most 20 s.
async fn poll<T>(
    what: &str,
    mut check: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = format!(" (last error: {e:#})"),
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached within 20 s{last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_shows_device_spool_and_a_stuck_uplink() -> anyhow::Result<()> {
    let device = SimDevice::new();
    device.set_u16(0, 1200);
    let device_listener = TcpListener::bind("127.0.0.1:0").await?;
    let device_addr = device_listener.local_addr()?;
    let stop_device = CancellationToken::new();
    tokio::spawn(device.clone().serve(device_listener, stop_device.clone()));

    let dir = tempfile::tempdir()?;
    let spool_path = dir.path().join("spool.db");
    let status_port = free_port()?;
    let closed_port = free_port()?;
    let text = config(&spool_path, device_addr, status_port, closed_port);
    let agent = Agent::new(AgentConfig::parse(&text, "status.rs")?);
    let stats = agent.stats();
    let stop_agent = CancellationToken::new();
    let agent_task = tokio::spawn(agent.run(stop_agent.clone()));
    let client = reqwest::Client::builder().no_proxy().build()?;

    // Healthy while the agent is younger than stuck_after_s.
    let (code, body) = poll("status page answers", async || {
        Ok(Some(get(&client, status_port, "/healthz").await?))
    })
    .await?;
    ensure!(code == 200, "first /healthz answered {code}: {body}");
    let health: serde_json::Value = serde_json::from_str(&body)?;
    ensure!(health["status"] == "ok", "{body}");

    // Per-device readings match the requests the device answered (one
    // point per request), and so does the round-trip histogram.
    let page = poll("per-device readings agree with the device", async || {
        let (_, page) = get(&client, status_port, "/metrics").await?;
        let answered = device.requests() as f64;
        let readings = value(
            &page,
            "edge_agent_modbus_device_readings_total{device=\"press\"}",
        )?;
        let timed = value(
            &page,
            "edge_agent_modbus_request_duration_seconds_count{device=\"press\"}",
        )?;
        Ok((answered >= 10.0 && readings == answered && timed == answered).then_some(page))
    })
    .await?;
    let produced = value(&page, "edge_agent_readings_produced_total")?;
    let readings = value(
        &page,
        "edge_agent_modbus_device_readings_total{device=\"press\"}",
    )?;
    ensure!(
        produced == readings,
        "one device: {produced} produced, {readings} for it"
    );
    let exceptions = value(
        &page,
        "edge_agent_modbus_device_exceptions_total{device=\"press\",code=\"2\"}",
    )?;
    ensure!(
        exceptions >= 5.0,
        "register {UNMAPPED}: {exceptions} exceptions 0x02"
    );
    ensure!(
        value(
            &page,
            "edge_agent_modbus_device_transport_errors_total{device=\"press\"}"
        )? == 0.0
    );

    // Backlog figures are what the spool file holds (read through a second
    // connection, between two scrapes that agree with each other).
    let (held, page) = poll("backlog figures agree with the spool", async || {
        let (_, before) = get(&client, status_port, "/metrics").await?;
        let path = spool_path.clone();
        let held = tokio::task::spawn_blocking(move || Spool::open(&path)?.stats()).await??;
        let (_, after) = get(&client, status_port, "/metrics").await?;
        let figures = |page: &str| -> anyhow::Result<[f64; 3]> {
            Ok([
                value(page, "edge_agent_spool_batches")?,
                value(page, "edge_agent_spool_readings")?,
                value(page, "edge_agent_spool_bytes")?,
            ])
        };
        let expected = [held.batches as f64, held.readings as f64, held.bytes as f64];
        let agree =
            held.batches >= 2 && figures(&before)? == expected && figures(&after)? == expected;
        Ok(agree.then_some((held, after)))
    })
    .await?;
    ensure!(
        value(&page, "edge_agent_readings_spooled_total")? == held.readings as f64,
        "nothing forwarded, so every spooled reading is still in the spool:\n{page}"
    );
    ensure!(value(&page, "edge_agent_readings_forwarded_total")? == 0.0);

    // The uplink stays down: /healthz turns 503 and says why.
    let body = poll("/healthz turns 503", async || {
        let (code, body) = get(&client, status_port, "/healthz").await?;
        Ok((code == 503).then_some(body))
    })
    .await?;
    let health: serde_json::Value = serde_json::from_str(&body)?;
    ensure!(health["status"] == "unhealthy", "{body}");
    let failed = health["failed"].as_array().context("no \"failed\" list")?;
    ensure!(failed.len() == 1, "only forwarding is stuck: {body}");
    ensure!(failed[0]["condition"] == "not_forwarding", "{body}");
    let message = failed[0]["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains("no upload to the relay succeeded"),
        "{body}"
    );

    let (_, page) = get(&client, status_port, "/metrics").await?;
    ensure!(value(&page, "edge_agent_uplink_up")? == 0.0, "{page}");
    ensure!(
        value(&page, "edge_agent_upload_failures_total")? >= 1.0,
        "{page}"
    );
    ensure!(
        value(&page, "edge_agent_spool_oldest_unsent_age_seconds")? > 2.0,
        "{page}"
    );
    ensure!(
        value(
            &page,
            "edge_agent_health_condition_failed{condition=\"not_forwarding\"}"
        )? == 1.0,
        "{page}"
    );
    ensure!(
        sample(&page, "edge_agent_last_forward_success_timestamp_seconds").is_none(),
        "nothing was forwarded: {page}"
    );
    ensure!(stats.readings_forwarded.get() == 0);

    stop_agent.cancel();
    agent_task.await??;
    stop_device.cancel();
    // The page stops with the agent (a fresh client: no pooled connection).
    let fresh = reqwest::Client::builder().no_proxy().build()?;
    ensure!(
        get(&fresh, status_port, "/healthz").await.is_err(),
        "status page still answers after the agent stopped"
    );
    Ok(())
}
