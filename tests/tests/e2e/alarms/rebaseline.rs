//! Re-baselining an SPC rule from outside, against a Mosquitto the test
//! starts and the agent with `[status.auth]`: over MQTT a command without
//! credentials or with a wrong token is refused (answered on
//! `rebaseline/result`, nothing dropped), one with the token is applied;
//! the status page refuses a request without credentials (401) and applies
//! one with them (200). Each applied request is a `rebaselined` event on
//! the local `events` topic and in the spool (format v10), counted on
//! `/metrics`.

use std::os::unix::fs::PermissionsExt;

use anyhow::ensure;
use edge_agent::config::AgentConfig;
use edge_agent::spool::Spool;
use edge_agent::Agent;
use edge_tests::{free_port, Mosquitto};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio_util::sync::CancellationToken;

use super::{agent_toml, start_device, wait_for, Subscriber, GATEWAY, SERIES};

const SPC_RULE: &str = "oil_spc";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_spc_rule_is_rebaselined_over_mqtt_and_from_the_page_only_with_credentials(
) -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let mosquitto = Mosquitto::start(logs.path())?;
    let (_device, device_addr, stop_device) = start_device(412).await?;
    let dir = tempfile::tempdir()?;
    let spool_path = dir.path().join("spool.db");
    let token_file = dir.path().join("status-token");
    std::fs::write(&token_file, "qe-token-0123456\n")?;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))?;
    let status_port = free_port()?;
    let text = format!(
        "{}\n[[rules]]\nname = \"{SPC_RULE}\"\nseries = \"{SERIES}\"\n[rules.spc]\ntests = [\"beyond_limits\", \"cusum\"]\nbaseline_samples = 5\n[status]\nlisten = \"127.0.0.1:{status_port}\"\n[status.auth]\ntoken_file = {token_file:?}\n",
        agent_toml(&spool_path, device_addr, free_port()?, Some(mosquitto.port), 50)
    );
    let root = format!("plant/{GATEWAY}");
    let events = Subscriber::start(mosquitto.port, "qe-events", &format!("{root}/events")).await?;
    let results = Subscriber::start(
        mosquitto.port,
        "qe-results",
        &format!("{root}/rebaseline/result"),
    )
    .await?;
    let agent = Agent::new(AgentConfig::parse(&text, "spc rebaseline")?);
    let stop_agent = CancellationToken::new();
    let agent_task = tokio::spawn(agent.run(stop_agent.clone()));

    let http = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("http://127.0.0.1:{status_port}/api/spc/rebaseline");
    let body = format!(r#"{{"rule": "{SPC_RULE}", "by": "qe-1"}}"#);
    // Without credentials: 401 (and the page is up).
    let mut refused = None;
    for _ in 0..200 {
        match http.post(&url).body(body.clone()).send().await {
            Ok(r) => {
                refused = Some(r.status());
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    ensure!(
        refused == Some(reqwest::StatusCode::UNAUTHORIZED),
        "{refused:?}"
    );
    // With them: 404 until the series has reported, then 200.
    let mut answer = serde_json::Value::Null;
    // Each 404 is a refusal the agent counts.
    let mut not_yet = 0;
    for _ in 0..400 {
        let r = http
            .post(&url)
            .header("Authorization", "Bearer qe-token-0123456")
            .body(body.clone())
            .send()
            .await?;
        let status = r.status();
        answer = serde_json::from_slice(&r.bytes().await?)?;
        if status == 200 {
            break;
        }
        ensure!(status == 404, "{status}: {answer}");
        not_yet += 1;
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        answer["rebaselined"],
        serde_json::json!([SERIES]),
        "{answer}"
    );
    assert_eq!(answer["events"], 2, "one per test: {answer}");

    // Over MQTT: no credentials, a wrong token, then the token.
    let (client, mut eventloop) = AsyncClient::new(
        MqttOptions::new("qe-commands", "127.0.0.1", mosquitto.port),
        16,
    );
    let polling = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let topic = format!("{root}/rebaseline");
    for auth in [None, Some("Bearer guess"), Some("Bearer qe-token-0123456")] {
        let payload = match auth {
            None => format!(r#"{{"rule": "{SPC_RULE}"}}"#),
            Some(a) => format!(r#"{{"rule": "{SPC_RULE}", "by": "hmi", "authorization": "{a}"}}"#),
        };
        let before = results.all().len();
        client
            .publish(&topic, QoS::AtLeastOnce, false, payload)
            .await?;
        wait_for("the command's answer", 20, || results.all().len() > before).await?;
        let (_, got, _) = results.all().remove(before);
        match auth {
            Some("Bearer qe-token-0123456") => {
                assert_eq!(got["ok"], true, "{got}");
                assert_eq!(got["rebaselined"], serde_json::json!([SERIES]), "{got}");
            }
            _ => {
                assert_eq!(got["ok"], false, "{got}");
                assert!(
                    got["error"].as_str().unwrap_or("").contains("credentials"),
                    "{got}"
                );
            }
        }
    }
    wait_for("four rebaselined events", 20, || {
        events.events("rebaselined").len() == 4
    })
    .await?;
    let rules: Vec<String> = events
        .events("rebaselined")
        .iter()
        .map(|e| e["rule"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        rules,
        [
            "oil_spc.spc_beyond_limits",
            "oil_spc.spc_cusum",
            "oil_spc.spc_beyond_limits",
            "oil_spc.spc_cusum"
        ]
    );
    let metrics = http
        .get(format!("http://127.0.0.1:{status_port}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        metrics.contains("edge_agent_spc_rebaselines_total 2"),
        "{metrics}"
    );
    let refusals = format!("edge_agent_spc_rebaselines_refused_total {}", 3 + not_yet);
    ensure!(metrics.contains(&refusals), "{refusals}: {metrics}");
    client.disconnect().await.ok();
    polling.abort();
    stop_agent.cancel();
    agent_task.await??;
    stop_device.cancel();

    // In the spool for the relay, as v10 batches.
    let mut spool = Spool::open(&spool_path)?;
    let mut v10 = 0;
    while let Some(b) = spool.oldest()? {
        let batch = edge_wire::decode(&b.body, &Default::default())?;
        if batch.needs_v10() {
            assert_eq!(edge_wire::encoded_version(&b.body)?, edge_wire::V10);
            v10 += batch
                .alarms
                .iter()
                .filter(|a| a.state.as_str() == "rebaselined")
                .count();
        }
        spool.remove(b.seq)?;
    }
    assert_eq!(v10, 4);
    Ok(())
}
