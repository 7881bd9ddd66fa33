//! The delivered-batch ledger through the relay: no claim outlives its
//! request (the delivery future dropped at every await point, the client
//! killed at any moment of the request), the ledger prunes on its timer while
//! the relay runs, and a known key with other content is a conflict.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use edge_relay::message::Delivery;
use edge_relay::relay::{DeliverError, Stored};
use edge_relay::sink::line_protocol::LineLayout;
use edge_relay::{Relay, TimeseriesConfig};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::support::{batch, config, encoded, start, TOKEN_1};

/// Alarm events of batch `seq` in the file sink's alarms.jsonl (beside a
/// time-series store the file sink keeps alarms, the store the readings).
fn alarms_of(dir: &std::path::Path, seq: u64) -> usize {
    std::fs::read_to_string(dir.join("data").join("alarms.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["batch_seq"] == seq)
        .count()
}

/// Deliver until the relay answers other than "in flight", within 10 s.
async fn retry_until_settled(relay: &Relay, seq: u64) -> Stored {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let delivery = Delivery::new(batch("gw-1", seq)).unwrap();
        match relay.deliver_once(delivery).await {
            Ok(stored) => return stored,
            Err(DeliverError::InFlight { .. }) => {
                assert!(
                    Instant::now() < deadline,
                    "batch {seq} still claimed 10 s after its request was dropped"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("batch {seq}: {e}"),
        }
    }
}

/// A fake line-protocol store that answers 204 after `delay`, counting writes.
async fn slow_store(delay: Duration) -> (Arc<AtomicUsize>, String) {
    let writes = Arc::new(AtomicUsize::new(0));
    let counter = writes.clone();
    let app = Router::new().route(
        "/write",
        post(move || {
            let counter = counter.clone();
            async move {
                tokio::time::sleep(delay).await;
                counter.fetch_add(1, Ordering::SeqCst);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/write", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (writes, url)
}

fn timeseries(url: &str) -> TimeseriesConfig {
    TimeseriesConfig {
        url: url.parse().unwrap(),
        layout: LineLayout::default(),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn a_delivery_dropped_at_any_await_point_leaves_no_claim_and_the_retry_is_delivered_once() {
    // A slow store, so the delivery has await points while the sinks work.
    let (writes, url) = slow_store(Duration::from_millis(30)).await;
    let (mut cfg, dir) = config();
    cfg.timeseries = Some(timeseries(&url));
    let relay = Relay::from_config(cfg).unwrap();
    let mut completed_before_drop = 0;
    for polls in 0..40u64 {
        let seq = 100 + polls;
        let delivery = Delivery::new(batch("gw-1", seq)).unwrap();
        {
            let mut fut = pin!(relay.deliver_once(delivery));
            for _ in 0..polls {
                let done =
                    std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_ready())).await;
                if done {
                    completed_before_drop += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            // Dropped here, after `polls` polls.
        }
        let stored = retry_until_settled(&relay, seq).await;
        assert!(
            matches!(stored, Stored::Now | Stored::Before),
            "seq {seq}: {stored:?}"
        );
        // Exactly once in the file sink (its one alarm), whether the
        // dropped request had delivered it or the retry did.
        assert_eq!(
            alarms_of(dir.path(), seq),
            1,
            "seq {seq} after {polls} polls"
        );
    }
    assert_eq!(
        writes.load(Ordering::SeqCst),
        40,
        "one store write per batch"
    );
    assert_eq!(relay.ledger().claims_held().await.unwrap(), 0);
    // The drops covered the whole path: some before the claim, some while
    // the sinks worked, and some requests completed.
    assert!(completed_before_drop > 0 && completed_before_drop < 40);
}

#[tokio::test]
async fn a_client_killed_mid_request_leaves_the_batch_deliverable() {
    let (writes, url) = slow_store(Duration::from_millis(50)).await;
    let (mut cfg, dir) = config();
    cfg.timeseries = Some(timeseries(&url));
    let relay = start(cfg, dir).await;
    let addr = relay.base.trim_start_matches("http://").to_string();
    let mut seq = 200;
    for delay_ms in [0u64, 1, 2, 5, 10, 20, 40, 60, 100] {
        for half in [false, true] {
            seq += 1;
            let body = encoded(&batch("gw-1", seq));
            let head = format!(
                "POST /v1/batches HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN_1}\r\n\
                 Content-Type: application/vnd.edge-ingest.batch\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            stream.write_all(head.as_bytes()).await.unwrap();
            let sent = if half {
                &body[..body.len() / 2]
            } else {
                &body[..]
            };
            stream.write_all(sent).await.unwrap();
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            // A reset, as the kernel sends for a killed process.
            // (set_linger is deprecated because SO_LINGER > 0 blocks in
            // drop; 0 does not block, it resets.)
            #[allow(deprecated)]
            stream.set_linger(Some(Duration::ZERO)).unwrap();
            drop(stream);
            // The agent retries until it gets a 2xx.
            let deadline = Instant::now() + Duration::from_secs(10);
            let answer = loop {
                let response = relay.post(Some(TOKEN_1), body.clone()).await;
                if response.status() == 200 {
                    break response.json::<Value>().await.unwrap();
                }
                assert_eq!(response.status(), 503, "seq {seq}");
                let text = response.text().await.unwrap();
                assert!(text.contains("another request"), "seq {seq}: {text}");
                assert!(Instant::now() < deadline, "seq {seq} stuck: {text}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            assert_eq!(answer["seq"], seq, "{answer}");
            assert_eq!(
                alarms_of(relay.dir.path(), seq),
                1,
                "seq {seq}, client reset after {delay_ms} ms (half body: {half})"
            );
        }
    }
    assert_eq!(writes.load(Ordering::SeqCst), 18);

    // A real client process killed with SIGKILL mid-request.
    for delay_ms in [5u64, 30, 80] {
        seq += 1;
        let body = encoded(&batch("gw-1", seq));
        let file = relay.dir.path().join(format!("body-{seq}"));
        std::fs::write(&file, &body).unwrap();
        let mut curl = std::process::Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-X", "POST", "--data-binary"])
            .arg(format!("@{}", file.display()))
            .args(["-H", &format!("Authorization: Bearer {TOKEN_1}")])
            .arg(relay.url("/v1/batches"))
            .spawn()
            .expect("curl");
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        curl.kill().unwrap();
        curl.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let response = relay.post(Some(TOKEN_1), body.clone()).await;
            if response.status() == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "seq {seq} stuck after curl was killed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(alarms_of(relay.dir.path(), seq), 1, "seq {seq}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_sink_failure_releases_the_claim_at_once() {
    // A store that refuses: every try is a sink failure, never "in flight".
    let (mut cfg, dir) = config();
    cfg.timeseries = Some(timeseries("http://127.0.0.1:9/write"));
    let relay = start(cfg, dir).await;
    for _ in 0..3 {
        let response = relay.post(Some(TOKEN_1), encoded(&batch("gw-1", 1))).await;
        assert_eq!(response.status(), 503);
        let text = response.text().await.unwrap();
        assert!(text.contains("timeseries"), "{text}");
        assert!(!text.contains("another request"), "{text}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn the_ledger_prunes_on_its_timer_while_the_relay_runs() {
    let (mut cfg, dir) = config();
    cfg.dedup.window = Duration::from_millis(300);
    cfg.dedup.prune_interval = Duration::from_millis(50);
    let relay = start(cfg, dir).await;
    let body = encoded(&batch("gw-1", 1));
    assert_eq!(relay.post(Some(TOKEN_1), body.clone()).await.status(), 200);
    let answer: Value = relay
        .post(Some(TOKEN_1), body.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["duplicate"], true);
    // Within a few prune intervals past the window the row is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = relay.metrics().await;
        if metrics.contains("edge_relay_ledger_pruned_total{reason=\"age\"} 1\n") {
            break;
        }
        assert!(Instant::now() < deadline, "not pruned: {metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Forgotten: the batch is published again.
    let answer: Value = relay.post(Some(TOKEN_1), body).await.json().await.unwrap();
    assert!(answer.get("duplicate").is_none(), "{answer}");
    relay.stop().await;
}

#[tokio::test]
async fn a_reinstalled_spool_is_new_and_other_content_under_a_known_key_is_a_conflict() {
    let (cfg, dir) = config();
    let relay = start(cfg, dir).await;
    let life = |instance: Option<u64>, seq: u64, value: f64| {
        let mut b = batch("gw-1", seq);
        b.instance = instance.and_then(std::num::NonZeroU64::new);
        b.series[0].points[0].value = value;
        encoded(&b)
    };
    let post = |body: Vec<u8>| {
        let relay = &relay;
        async move {
            let response = relay.post(Some(TOKEN_1), body).await;
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()
        }
    };
    let readings = || relay.file("readings.jsonl").lines().count();
    // First life of the spool, then a retry: a duplicate.
    assert!(post(life(Some(11), 1, 1.0))
        .await
        .get("duplicate")
        .is_none());
    assert_eq!(post(life(Some(11), 1, 1.0)).await["duplicate"], true);
    assert_eq!(readings(), 5);
    // The spool deleted and made again: a new instance, seq 1 again, other
    // readings. New, not a duplicate, and no conflict either.
    let second = post(life(Some(22), 1, 2.0)).await;
    assert!(
        second.get("duplicate").is_none() && second.get("conflict").is_none(),
        "{second}"
    );
    assert_eq!(readings(), 10);
    // An old agent (no instance) whose spool started again: same seq, other
    // content. Published, flagged as a conflict, counted.
    assert!(post(life(None, 1, 3.0)).await.get("conflict").is_none());
    let conflict = post(life(None, 1, 4.0)).await;
    assert_eq!(conflict["conflict"], true, "{conflict}");
    assert_eq!(readings(), 20);
    // Its retry is a duplicate of what it was.
    assert_eq!(post(life(None, 1, 4.0)).await["duplicate"], true);
    assert_eq!(readings(), 20);
    let metrics = relay.metrics().await;
    assert!(
        metrics.contains("edge_relay_ledger_conflicts_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("edge_relay_duplicate_batches_total 2\n"),
        "{metrics}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_shared_ledger_out_of_reach_makes_the_relay_unready_and_batches_wait() {
    let port = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let (mut cfg, dir) = config();
    cfg.dedup.store = edge_relay::config::DedupStore::Postgres;
    cfg.dedup.url = Some(
        format!("postgresql://postgres@127.0.0.1:{port}/test")
            .parse()
            .unwrap(),
    );
    let relay = start(cfg, dir).await;
    let response = relay
        .client
        .get(relay.ops_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["unready"][0]["sink"], "ledger", "{body}");
    let message = body["unready"][0]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("127.0.0.1:{port}/test")),
        "{body}"
    );
    // A batch is not published without the ledger: 503, retried later.
    let response = relay.post(Some(TOKEN_1), encoded(&batch("gw-1", 1))).await;
    assert_eq!(response.status(), 503);
    assert_eq!(alarms_of(relay.dir.path(), 1), 0);
    relay.stop().await;

    // The same relay with the server in reach: ready, delivers, recognises.
    let schema = crate::postgres::Schema::new().await;
    let (mut cfg, dir) = config();
    cfg.dedup.store = edge_relay::config::DedupStore::Postgres;
    cfg.dedup.url = Some(
        "postgresql://postgres@127.0.0.1:5432/postgres"
            .parse()
            .unwrap(),
    );
    cfg.dedup.table = format!("{}.ledger", schema.name);
    let relay = start(cfg, dir).await;
    let response = relay
        .client
        .get(relay.ops_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = encoded(&batch("gw-1", 1));
    assert_eq!(relay.post(Some(TOKEN_1), body.clone()).await.status(), 200);
    let answer: Value = relay.post(Some(TOKEN_1), body).await.json().await.unwrap();
    assert_eq!(answer["duplicate"], true);
    relay.stop().await;
    schema.drop_all().await;
}
