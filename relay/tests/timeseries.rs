//! The time-series sink against a fake Influx write endpoint (axum on port
//! 0): what it receives, and that a failing or absent store becomes 503
//! with Retry-After instead of a lost batch.

use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use edge_relay::sink::line_protocol::LineLayout;
use edge_relay::TimeseriesConfig;
use reqwest::Url;
use std::time::Duration;

use crate::support::{batch, config, encoded, start, TOKEN_1};

/// One write request: query string and body.
type Write = (Option<String>, String);

#[derive(Clone, Default)]
struct Store {
    status: Arc<Mutex<u16>>,
    writes: Arc<Mutex<Vec<Write>>>,
}

async fn write(State(store): State<Store>, RawQuery(query): RawQuery, body: String) -> StatusCode {
    store.writes.lock().unwrap().push((query, body));
    StatusCode::from_u16(*store.status.lock().unwrap()).unwrap()
}

async fn fake_store(status: u16) -> (Store, String) {
    let store = Store::default();
    *store.status.lock().unwrap() = status;
    let app = Router::new()
        .route("/write", post(write))
        .with_state(store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/write", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (store, url)
}

fn timeseries(url: &str) -> TimeseriesConfig {
    TimeseriesConfig {
        url: Url::parse(url).unwrap(),
        layout: LineLayout::default(),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn writes_one_line_per_finite_reading_with_microsecond_precision() {
    let (store, url) = fake_store(204).await;
    let (mut cfg, dir) = config();
    cfg.timeseries = Some(timeseries(&url));
    let relay = start(cfg, dir).await;
    let response = relay.post(Some(TOKEN_1), encoded(&batch("gw-1", 3))).await;
    assert_eq!(response.status(), 200);
    let writes = store.writes.lock().unwrap().clone();
    assert_eq!(writes.len(), 1);
    let (query, body) = &writes[0];
    assert_eq!(query.as_deref(), Some("precision=u"));
    assert_eq!(
        body,
        "edge,series=press-3.oil_temp,gateway=gw-1,quality=good,line=L1,site=plant\\ a value=73.9 1795316400123456\n\
         edge,series=press-3.oil_temp,gateway=gw-1,quality=good,line=L1,site=plant\\ a value=74.25 1795316401123456\n\
         edge,series=press-3.pressure,gateway=gw-1,quality=uncertain,site=plant\\ a value=1.5 1795316400123456\n\
         edge,series=press-3.pressure,gateway=gw-1,quality=good,site=plant\\ a value=-0.0 1795316400623456\n"
    );
    // Only the time-series sink is configured: no files are written.
    assert_eq!(relay.file("readings.jsonl"), "");
    let metrics = relay.metrics().await;
    assert!(
        metrics.contains("edge_relay_timeseries_nonfinite_skipped_total 1"),
        "{metrics}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_failing_store_turns_into_503_with_retry_after() {
    let (_store, url) = fake_store(500).await;
    let (mut cfg, dir) = config();
    cfg.timeseries = Some(timeseries(&url));
    let relay = start(cfg, dir).await;
    let response = relay.post(Some(TOKEN_1), encoded(&batch("gw-1", 3))).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"], "unavailable");
    assert!(
        error["message"].as_str().unwrap().contains("500"),
        "{error}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn an_unreachable_store_turns_into_503() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (mut cfg, dir) = config();
    cfg.timeseries = Some(timeseries(&format!("http://127.0.0.1:{port}/write")));
    let relay = start(cfg, dir).await;
    let response = relay.post(Some(TOKEN_1), encoded(&batch("gw-1", 3))).await;
    assert_eq!(response.status(), 503);
    let metrics = relay.metrics().await;
    assert!(
        metrics.contains("edge_relay_sink_failures_total{sink=\"timeseries\"} 1"),
        "{metrics}"
    );
    relay.stop().await;
}
