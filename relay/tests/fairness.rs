//! Per-gateway fairness and the operations listener, through the real
//! HTTP server: a gateway past its request or byte bucket gets 429 with
//! `Retry-After` and nothing of its batch is stored, another gateway is
//! served meanwhile, refusals are counted by reason on `/metrics`, and the
//! operations endpoints are not on the upload port.

use serde_json::Value;

use crate::support::{batch, config, encoded, start, TOKEN_1, TOKEN_2};

fn metric(page: &str, line_start: &str) -> Option<u64> {
    page.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
}

fn retry_after(r: &reqwest::Response) -> u64 {
    let value = r.headers()["retry-after"].to_str().unwrap();
    value.parse().unwrap()
}

#[tokio::test]
async fn a_gateway_past_its_request_bucket_gets_429_and_the_others_go_on() {
    let (mut cfg, dir) = config();
    cfg.fairness.requests_per_sec = 1;
    cfg.fairness.request_burst = 3;
    let relay = start(cfg, dir).await;
    for seq in 1..=3 {
        let r = relay
            .post(Some(TOKEN_1), encoded(&batch("gw-1", seq)))
            .await;
        assert_eq!(r.status(), 200, "seq {seq} within the burst");
    }
    let r = relay.post(Some(TOKEN_1), encoded(&batch("gw-1", 4))).await;
    assert_eq!(r.status(), 429);
    let retry_after = retry_after(&r);
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "throttled");
    assert_eq!(body["reason"], "requests");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("fairness.requests_per_sec"),
        "{body}"
    );
    // The other gateway has its own bucket.
    let r = relay.post(Some(TOKEN_2), encoded(&batch("gw-2", 1))).await;
    assert_eq!(r.status(), 200);
    // Nothing of the throttled batch was stored: three batches of gw-1, one
    // of gw-2.
    let readings = relay.file("readings.jsonl");
    let seqs = |gw: &str| {
        let mut seqs: Vec<u64> = readings
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["gateway"] == gw)
            .map(|v| v["batch_seq"].as_u64().unwrap())
            .collect();
        seqs.dedup();
        seqs
    };
    assert_eq!(seqs("gw-1"), [1, 2, 3]);
    assert_eq!(seqs("gw-2"), [1]);
    let page = relay.metrics().await;
    assert_eq!(
        metric(
            &page,
            "edge_relay_rejected_total{status=\"429\",reason=\"requests\"}"
        ),
        Some(1),
        "{page}"
    );
    assert_eq!(
        metric(&page, "edge_relay_requests_total{outcome=\"throttled\"}"),
        Some(1)
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_gateway_past_its_byte_bucket_gets_429_before_its_body_is_read() {
    let (mut cfg, dir) = config();
    let body = encoded(&batch("gw-1", 1));
    cfg.limits.max_compressed_bytes = body.len();
    cfg.fairness.bytes_per_sec = 1;
    cfg.fairness.byte_burst = body.len() as u64 * 3 / 2;
    let burst = cfg.fairness.byte_burst;
    let relay = start(cfg, dir).await;
    let first = body.len() as u64;
    assert_eq!(relay.post(Some(TOKEN_1), body).await.status(), 200);
    let second = encoded(&batch("gw-1", 2));
    let short = second.len() as u64 - (burst - first);
    let r = relay.post(Some(TOKEN_1), second).await;
    assert_eq!(r.status(), 429);
    let retry_after = retry_after(&r);
    // `short` bytes missing, refilled at one byte a second.
    assert!(
        (short..=short + 1).contains(&retry_after),
        "Retry-After {retry_after}, {short} bytes short"
    );
    let error: Value = r.json().await.unwrap();
    assert_eq!(error["reason"], "bytes");
    let page = relay.metrics().await;
    assert_eq!(
        metric(
            &page,
            "edge_relay_rejected_total{status=\"429\",reason=\"bytes\"}"
        ),
        Some(1),
        "{page}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn operations_endpoints_are_on_their_own_listener_only() {
    let (cfg, dir) = config();
    let relay = start(cfg, dir).await;
    for path in ["/metrics", "/healthz", "/readyz"] {
        let upload_port = relay.client.get(relay.url(path)).send().await.unwrap();
        assert_eq!(upload_port.status(), 404, "{path} on the upload port");
        let ops = relay.client.get(relay.ops_url(path)).send().await.unwrap();
        assert_eq!(ops.status(), 200, "{path} on the ops port");
    }
    // Uploads are not served on the operations port.
    let r = relay
        .client
        .post(relay.ops_url("/v1/batches"))
        .bearer_auth(TOKEN_1)
        .body(encoded(&batch("gw-1", 1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    relay.stop().await;
}

#[tokio::test]
async fn unauthenticated_refusals_are_counted_by_reason() {
    let (cfg, dir) = config();
    let relay = start(cfg, dir).await;
    let body = encoded(&batch("gw-1", 1));
    for _ in 0..3 {
        assert_eq!(relay.post(None, body.clone()).await.status(), 401);
    }
    let r = relay
        .post(Some("not-a-token-of-anyone-0123"), body.clone())
        .await;
    assert_eq!(r.status(), 401);
    let r = relay
        .client
        .post(relay.url("/v1/batches"))
        .header("authorization", format!("Basic {TOKEN_1}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let page = relay.metrics().await;
    for (reason, n) in [
        ("missing_token", 3),
        ("unknown_token", 1),
        ("not_bearer", 1),
    ] {
        let line = format!("edge_relay_rejected_total{{status=\"401\",reason=\"{reason}\"}}");
        assert_eq!(metric(&page, &line), Some(n), "{reason}:\n{page}");
    }
    relay.stop().await;
}
