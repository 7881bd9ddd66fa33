//! `POST /v1/batches` end to end with the file sink: every status code, and
//! the exact JSON lines a valid batch leaves in readings.jsonl / alarms.jsonl.

use serde_json::Value;

use crate::support::{batch, config, encoded, start, TOKEN_1, TOKEN_2, TS0};

async fn error_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

#[tokio::test]
async fn rejects_missing_and_unknown_tokens_with_401() {
    let (cfg, dir) = config();
    let relay = start(cfg, dir).await;
    let body = encoded(&batch("gw-1", 1));

    let response = relay.post(None, body.clone()).await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_eq!(error_of(response).await["error"], "unauthorized");

    let response = relay.post(Some("token-of-gateway-on"), body.clone()).await;
    assert_eq!(response.status(), 401);
    assert_eq!(error_of(response).await["message"], "unknown token");

    let response = relay
        .client
        .post(relay.url("/v1/batches"))
        .header("authorization", format!("Basic {TOKEN_1}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(relay.file("readings.jsonl"), "");
    relay.stop().await;
}

#[tokio::test]
async fn rejects_another_gateways_batch_with_403() {
    let (cfg, dir) = config();
    let relay = start(cfg, dir).await;
    let response = relay.post(Some(TOKEN_2), encoded(&batch("gw-1", 1))).await;
    assert_eq!(response.status(), 403);
    let error = error_of(response).await;
    assert_eq!(error["error"], "forbidden");
    assert!(
        error["message"].as_str().unwrap().contains("\"gw-2\""),
        "{error}"
    );
    assert_eq!(relay.file("readings.jsonl"), "");
    relay.stop().await;
}

#[tokio::test]
async fn rejects_garbage_with_400_and_the_decoders_message() {
    let (cfg, dir) = config();
    let relay = start(cfg, dir).await;
    let response = relay
        .post(Some(TOKEN_1), b"definitely not a batch".to_vec())
        .await;
    assert_eq!(response.status(), 400);
    let error = error_of(response).await;
    assert_eq!(error["error"], "malformed");
    assert_eq!(error["reason"], "bad_magic");
    assert!(!error["message"].as_str().unwrap().is_empty(), "{error}");

    let mut truncated = encoded(&batch("gw-1", 1));
    truncated.truncate(truncated.len() / 2);
    let response = relay.post(Some(TOKEN_1), truncated).await;
    assert_eq!(response.status(), 400);
    relay.stop().await;
}

#[tokio::test]
async fn rejects_oversized_bodies_and_batches_with_413() {
    let (mut cfg, dir) = config();
    cfg.limits.max_compressed_bytes = 4096;
    cfg.limits.max_readings = 4;
    let relay = start(cfg, dir).await;

    // Over max_compressed_bytes: refused from Content-Length, body unread.
    let response = relay.post(Some(TOKEN_1), vec![0x5a; 8192]).await;
    assert_eq!(response.status(), 413);
    assert_eq!(error_of(response).await["error"], "too_large");

    // Small body, but the decoder finds 5 readings with max_readings = 4.
    let response = relay.post(Some(TOKEN_1), encoded(&batch("gw-1", 1))).await;
    assert_eq!(response.status(), 413);
    let error = error_of(response).await;
    assert_eq!(error["reason"], "too_large");
    assert_eq!(relay.file("readings.jsonl"), "");

    let metrics = relay.metrics().await;
    assert!(
        metrics.contains("edge_relay_requests_total{outcome=\"too_large\"} 2"),
        "{metrics}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn accepts_a_valid_batch_and_writes_every_reading_and_alarm() {
    let (cfg, dir) = config();
    let relay = start(cfg, dir).await;
    let response = relay.post(Some(TOKEN_1), encoded(&batch("gw-1", 17))).await;
    assert_eq!(response.status(), 200);
    let mut answer: Value = response.json().await.unwrap();
    // The relay now holds the batch's series table (tests/series_tables.rs).
    let table = answer
        .as_object_mut()
        .unwrap()
        .remove("series_table")
        .unwrap();
    assert_eq!(table.as_str().map(str::len), Some(32), "{table}");
    assert_eq!(
        answer,
        serde_json::json!({"seq": 17, "readings": 5, "alarms": 1})
    );

    let readings: Vec<Value> = relay
        .file("readings.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(readings.len(), 5);
    let first = &readings[0];
    assert_eq!(first["schema"], "edge.reading.v1");
    assert_eq!(first["gateway"], "gw-1");
    assert_eq!(first["batch_seq"], 17);
    assert_eq!(first["series"], "press-3.oil_temp");
    assert_eq!(first["unit"], "degC");
    assert_eq!(
        first["tags"],
        serde_json::json!({"line": "L1", "site": "plant a"})
    );
    assert_eq!(first["ts"], "2026-11-22T03:00:00.123456Z");
    assert_eq!(first["ts_us"], TS0);
    assert_eq!(first["value"], 73.9);
    assert_eq!(first["quality"], "good");
    assert_eq!(readings[1]["value"], 74.25);
    assert_eq!(readings[1]["ts"], "2026-11-22T03:00:01.123456Z");
    assert_eq!(readings[2]["value"], Value::Null);
    assert_eq!(readings[2]["value_text"], "NaN");
    assert_eq!(readings[2]["quality"], "bad");
    assert_eq!(readings[3]["series"], "press-3.pressure");
    assert_eq!(readings[3]["quality"], "uncertain");
    assert_eq!(
        readings[4]["value"].as_f64().map(f64::to_bits),
        Some((-0.0f64).to_bits())
    );

    let alarms: Vec<Value> = relay
        .file("alarms.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(alarms.len(), 1);
    let alarm = &alarms[0];
    assert_eq!(alarm["schema"], "edge.alarm.v1");
    assert_eq!(alarm["series"], "press-3.oil_temp");
    assert_eq!(alarm["rule"], "oil_temp.high");
    assert_eq!(alarm["state"], "raised");
    assert_eq!(alarm["value"], 74.25);
    assert_eq!(alarm["limit"], 74.0);
    assert_eq!(alarm["ts_us"], TS0 + 1_000_000);

    // A retry of the same batch (the gateway never saw the 200) is
    // answered 200 and not published again.
    let response = relay.post(Some(TOKEN_1), encoded(&batch("gw-1", 17))).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["duplicate"], true);
    assert_eq!(relay.file("readings.jsonl").lines().count(), 5);

    let metrics = relay
        .client
        .get(relay.ops_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("edge_relay_requests_total{outcome=\"accepted\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edge_relay_readings_total 5\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edge_relay_duplicate_batches_total 1\n"),
        "{metrics}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_delivered_batch_is_still_recognised_after_a_restart() {
    let (cfg, dir) = config();
    let relay = start(cfg.clone(), dir).await;
    let first = relay.post(Some(TOKEN_1), encoded(&batch("gw-1", 3))).await;
    assert_eq!(first.status(), 200);
    let dir = relay.stop().await;
    let relay = start(cfg, dir).await;
    let retry = relay.post(Some(TOKEN_1), encoded(&batch("gw-1", 3))).await;
    assert_eq!(retry.status(), 200);
    let body: Value = retry.json().await.unwrap();
    assert_eq!(body["duplicate"], true);
    // The next batch, and the same number from another gateway, are new.
    for (gw, token, seq) in [("gw-1", TOKEN_1, 4), ("gw-2", TOKEN_2, 3)] {
        let r = relay.post(Some(token), encoded(&batch(gw, seq))).await;
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        assert!(body.get("duplicate").is_none(), "{gw} {seq}: {body}");
    }
    assert_eq!(relay.file("readings.jsonl").lines().count(), 15);
    relay.stop().await;
}

#[tokio::test]
async fn healthz_answers_and_shutdown_returns() {
    let (cfg, dir) = config();
    let relay = start(cfg, dir).await;
    let response = relay
        .client
        .get(relay.ops_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    relay.stop().await;
}
