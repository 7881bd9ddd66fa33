//! `GET /readyz` against real probes: librdkafka's mock cluster, an HTTP
//! store answering `/ping`, the real PostgreSQL. `/healthz` stays 200
//! whatever the sinks do.

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use edge_relay::{KafkaConfig, RelayConfig};
use rdkafka::mocking::MockCluster;

use crate::postgres::{postgres, Schema};
use crate::support::{config, start};

/// `[kafka]` for `brokers` as the config file would give it (defaults for
/// every other key).
fn kafka(brokers: &str) -> KafkaConfig {
    RelayConfig::from_toml(&format!(
        "data_dir = \"/unused\"\n[[gateways]]\nid = \"gw\"\ntoken = \"0123456789abcdef\"\n\
         [kafka]\nbrokers = [\"{brokers}\"]\n"
    ))
    .unwrap()
    .kafka
    .unwrap()
}

/// An HTTP server whose `/ping` answers 204, as VictoriaMetrics and InfluxDB do.
async fn pinged_store() -> String {
    let app = Router::new().route("/ping", get(|| async { StatusCode::NO_CONTENT }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/write", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn closed_port() -> u16 {
    tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn timeseries(url: &str) -> edge_relay::TimeseriesConfig {
    edge_relay::TimeseriesConfig {
        url: url.parse().unwrap(),
        layout: Default::default(),
        timeout: std::time::Duration::from_secs(5),
    }
}

#[tokio::test]
async fn ready_when_every_sink_answers_its_probe() {
    let cluster = MockCluster::new(1).unwrap();
    let schema = Schema::new().await;
    let (mut cfg, dir) = config();
    cfg.kafka = Some(kafka(&cluster.bootstrap_servers()));
    cfg.timeseries = Some(timeseries(&pinged_store().await));
    cfg.postgres = Some(postgres(
        "postgresql://postgres@127.0.0.1:5432/postgres",
        &schema.table(),
    ));
    let relay = start(cfg, dir).await;
    let response = relay
        .client
        .get(relay.ops_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"ready": true, "sinks": ["kafka", "timeseries", "postgres"]})
    );
    relay.stop().await;
    schema.drop_all().await;
}

#[tokio::test]
async fn not_ready_names_every_unreachable_sink_and_healthz_stays_up() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.broker_down(1).unwrap();
    let (ts_port, pg_port) = (closed_port().await, closed_port().await);
    let (mut cfg, dir) = config();
    cfg.kafka = Some(kafka(&cluster.bootstrap_servers()));
    cfg.timeseries = Some(timeseries(&format!("http://127.0.0.1:{ts_port}/write")));
    cfg.postgres = Some(postgres(
        &format!("postgresql://postgres@127.0.0.1:{pg_port}/postgres"),
        "edge_readings",
    ));
    let relay = start(cfg, dir).await;
    let response = relay
        .client
        .get(relay.ops_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["ready"], false);
    let unready = body["unready"].as_array().unwrap();
    let names: Vec<&str> = unready
        .iter()
        .map(|u| u["sink"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kafka", "timeseries", "postgres"], "{body}");
    let message = |i: usize| unready[i]["message"].as_str().unwrap().to_string();
    assert!(message(0).contains(&cluster.bootstrap_servers()), "{body}");
    assert!(
        message(1).contains(&format!("127.0.0.1:{ts_port}/ping")),
        "{body}"
    );
    assert!(
        message(2).contains(&format!("127.0.0.1:{pg_port}/postgres")),
        "{body}"
    );

    let health = relay
        .client
        .get(relay.ops_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    relay.stop().await;
}

#[tokio::test]
async fn the_file_sink_alone_is_always_ready() {
    let (cfg, dir) = config();
    let relay = start(cfg, dir).await;
    let response = relay
        .client
        .get(relay.ops_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    relay.stop().await;
}
