//! The forwarder draining a backlog with several batches in flight, against
//! a small axum relay on a real socket that delays its answers (so they come
//! back out of order), refuses some batches with 503 and answers some as
//! duplicates. It records what it received and answered, and how many
//! requests it was handling at once.
//!
//! What is checked: each batch leaves the spool only after its own 2xx, a
//! batch that keeps failing neither blocks nor loses the others, nothing is
//! lost, and the number of requests in flight at the relay reaches
//! `max_in_flight` and never exceeds it (concurrency observed at the
//! server, not a timing).

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use edge_agent::config::UplinkConfig;
use edge_agent::forward::Forwarder;
use edge_agent::spool::{Lane, SharedSpool, Spool};
use edge_agent::stats::AgentStats;
use edge_wire::{Batch, Point, Quality, Series};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub(crate) const READINGS_PER_BATCH: usize = 10;

/// What the test relay does and saw.
struct TestRelay {
    /// How long to hold the answer to batch `seq`.
    delay: fn(u64) -> Duration,
    /// Batches answered 503 (Retry-After: 0) while listed here.
    refused: Mutex<HashSet<u64>>,
    /// Batches answered 200 with `"duplicate": true`.
    duplicates: HashSet<u64>,
    /// Sequence numbers in the order requests arrived.
    received: Mutex<Vec<u64>>,
    /// Sequence numbers in the order they were answered 2xx.
    acked: Mutex<Vec<u64>>,
    handling: AtomicUsize,
    most_at_once: AtomicUsize,
}

impl TestRelay {
    fn new(delay: fn(u64) -> Duration) -> TestRelay {
        TestRelay {
            delay,
            refused: Mutex::default(),
            duplicates: HashSet::new(),
            received: Mutex::default(),
            acked: Mutex::default(),
            handling: AtomicUsize::new(0),
            most_at_once: AtomicUsize::new(0),
        }
    }

    fn acked(&self) -> Vec<u64> {
        self.acked.lock().unwrap().clone()
    }
}

async fn post_batch(State(relay): State<Arc<TestRelay>>, body: Bytes) -> Response {
    let batch = match edge_wire::decode(&body, &edge_wire::Limits::default()) {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let seq = batch.seq;
    relay.received.lock().unwrap().push(seq);
    let now = relay.handling.fetch_add(1, Ordering::SeqCst) + 1;
    relay.most_at_once.fetch_max(now, Ordering::SeqCst);
    tokio::time::sleep((relay.delay)(seq)).await;
    relay.handling.fetch_sub(1, Ordering::SeqCst);
    if relay.refused.lock().unwrap().contains(&seq) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "0")],
            "sink unavailable",
        )
            .into_response();
    }
    relay.acked.lock().unwrap().push(seq);
    let duplicate = relay.duplicates.contains(&seq);
    axum::Json(serde_json::json!({ "seq": seq, "duplicate": duplicate })).into_response()
}

/// Serve `relay` on a free loopback port; returns the batch URL.
async fn serve(relay: Arc<TestRelay>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/v1/batches", post(post_batch))
        .with_state(relay);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}/v1/batches"))
}

/// A spool at `path` holding `batches` reading batches (seq 1..=batches)
/// of [`READINGS_PER_BATCH`] readings each.
pub(crate) fn fill_spool(path: &Path, batches: usize) -> anyhow::Result<Spool> {
    let mut spool = Spool::open(path)?;
    for n in 0..batches {
        spool.append(&mut reading_batch(n), &[], Lane::Readings)?;
    }
    Ok(spool)
}

pub(crate) fn reading_batch(n: usize) -> Batch {
    // An hour ago: inside the relay's accepted time window.
    let base_us = edge_agent::reading::now_us() - 3_600_000_000;
    Batch {
        gateway_id: "gw-fwd".into(),
        instance: None,
        seq: 0,
        created_us: base_us,
        series: vec![Series {
            id: 0,
            name: "press-3.oil_temp".into(),
            unit: "degC".into(),
            tags: Default::default(),
            points: (0..READINGS_PER_BATCH)
                .map(|i| Point {
                    ts_us: base_us + (n * READINGS_PER_BATCH + i) as i64,
                    value: i as f64,
                    quality: Quality::Good,
                })
                .collect(),
            reporting: None,
        }],
        alarms: Vec::new(),
        gaps: Vec::new(),
        devices: Vec::new(),
    }
}

fn uplink(url: &str, max_in_flight: usize) -> UplinkConfig {
    let mut u = UplinkConfig::new(url, "fwd-token");
    u.max_in_flight = max_in_flight;
    u.retry_initial = Duration::from_millis(20);
    u.retry_max = Duration::from_millis(200);
    u
}

/// Run a forwarder over `spool`; cancel the token to stop it.
pub(crate) fn start(
    spool: &SharedSpool,
    uplink: UplinkConfig,
    stats: &Arc<AgentStats>,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let forwarder = Forwarder {
        spool: spool.clone(),
        uplink,
        gateway_id: "gw-fwd".into(),
        stats: stats.clone(),
        wake: Arc::new(Notify::new()),
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(forwarder.run(stop.clone()));
    (stop, task)
}

pub(crate) async fn seqs_left(spool: &SharedSpool) -> anyhow::Result<BTreeSet<u64>> {
    let left = spool
        .call(|s| s.next_unsent(1_000_000, &HashSet::new()))
        .await?;
    Ok(left.iter().map(|b| b.seq).collect())
}

/// Wait until the forwarder has emptied `spool`, then stop it.
pub(crate) async fn until_empty_then_stop(
    spool: &SharedSpool,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
) -> anyhow::Result<()> {
    eventually("spool empty", Duration::from_secs(30), || {
        let spool = spool.clone();
        async move { Ok(seqs_left(&spool).await?.is_empty()) }
    })
    .await?;
    stop.cancel();
    task.await?;
    Ok(())
}

/// Poll `check` every 20 ms until it holds or `timeout` passes.
pub(crate) async fn eventually<F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("{what}: not reached within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Answers come back out of order (odd batches fast, even ones slow), one
/// batch is refused until the test lets it through, one is answered as a
/// duplicate: while the refused batch keeps failing, every other batch is
/// acknowledged and removed and the refused one stays; once it is let
/// through the spool is empty, and the relay acknowledged every batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_acks_and_failures_lose_nothing_and_delete_only_after_2xx(
) -> anyhow::Result<()> {
    const BATCHES: u64 = 24;
    const REFUSED: u64 = 5;
    let dir = tempfile::tempdir()?;
    let mut spool = fill_spool(&dir.path().join("spool.db"), BATCHES as usize)?;
    // An alarm-only batch committed last goes out among the first.
    let alarm_seq = spool.append(&mut reading_batch(99), &[], Lane::Alarms)?;
    let spool = SharedSpool::new(spool);

    let mut relay = TestRelay::new(|seq| Duration::from_millis(if seq % 2 == 0 { 120 } else { 5 }));
    relay.refused.lock().unwrap().insert(REFUSED);
    relay.duplicates.insert(7);
    let relay = Arc::new(relay);
    let url = serve(relay.clone()).await?;
    let stats = Arc::new(AgentStats::default());
    let (stop, task) = start(&spool, uplink(&url, 4), &stats);

    let all: BTreeSet<u64> = (1..=BATCHES).chain([alarm_seq]).collect();
    let others: BTreeSet<u64> = all.iter().copied().filter(|&s| s != REFUSED).collect();
    eventually(
        "every batch but the refused one acknowledged",
        Duration::from_secs(30),
        || {
            let relay = relay.clone();
            let others = others.clone();
            async move {
                let acked: BTreeSet<u64> = relay.acked().into_iter().collect();
                Ok(acked == others)
            }
        },
    )
    .await?;
    // Removal follows the 2xx; give the forwarder the moment it needs.
    eventually(
        "acknowledged batches removed",
        Duration::from_secs(10),
        || {
            let spool = spool.clone();
            async move { Ok(seqs_left(&spool).await? == BTreeSet::from([REFUSED])) }
        },
    )
    .await?;
    let tries = relay
        .received
        .lock()
        .unwrap()
        .iter()
        .filter(|&&s| s == REFUSED)
        .count();
    assert!(tries >= 2, "the refused batch was tried {tries} times");
    assert!(stats.upload_failures.get() >= 2);

    relay.refused.lock().unwrap().clear();
    until_empty_then_stop(&spool, stop, task).await?;

    let acked = relay.acked();
    assert_eq!(acked.iter().copied().collect::<BTreeSet<_>>(), all);
    assert_eq!(
        acked.len(),
        all.len(),
        "a batch acknowledged twice: {acked:?}"
    );
    let ordered: Vec<u64> = acked.iter().copied().filter(|&s| s != REFUSED).collect();
    assert!(
        ordered.windows(2).any(|w| w[0] > w[1]),
        "answers were expected out of order: {acked:?}"
    );
    let received = relay.received.lock().unwrap().clone();
    assert!(
        received[..4].contains(&alarm_seq),
        "the alarm batch {alarm_seq} was not among the first four sent: {received:?}"
    );
    assert_eq!(stats.batches_forwarded.get(), all.len() as u64);
    assert_eq!(
        stats.readings_forwarded.get(),
        (all.len() * READINGS_PER_BATCH) as u64
    );
    assert_eq!(stats.batches_acked_as_duplicate.get(), 1);
    assert_eq!(stats.batches_quarantined.get(), 0);
    Ok(())
}

/// With every answer held for a while, the relay sees exactly
/// `max_in_flight` requests at once: never more, and, while a backlog
/// drains, not fewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_drains_with_up_to_max_in_flight_requests_at_once() -> anyhow::Result<()> {
    for max_in_flight in [1, 4] {
        let dir = tempfile::tempdir()?;
        let spool = SharedSpool::new(fill_spool(&dir.path().join("spool.db"), 12)?);
        let relay = Arc::new(TestRelay::new(|_| Duration::from_millis(100)));
        let url = serve(relay.clone()).await?;
        let stats = Arc::new(AgentStats::default());
        let (stop, task) = start(&spool, uplink(&url, max_in_flight), &stats);
        until_empty_then_stop(&spool, stop, task).await?;
        assert_eq!(
            relay.most_at_once.load(Ordering::SeqCst),
            max_in_flight,
            "requests handled at once with max_in_flight = {max_in_flight}"
        );
        assert_eq!(relay.acked().len(), 12);
        assert_eq!(stats.batches_forwarded.get(), 12);
    }
    Ok(())
}

/// Every delete of a delivered batch fails (a trigger in the spool aborts
/// it, as a full disk would): the relay still receives each batch exactly
/// once, the forwarder backs off instead of resending them in a loop, and
/// once deletes work again the spool empties without a resend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_delete_backs_off_and_never_resends_a_confirmed_batch() -> anyhow::Result<()> {
    const BATCHES: u64 = 4;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("spool.db");
    let spool = SharedSpool::new(fill_spool(&path, BATCHES as usize)?);
    let db = rusqlite::Connection::open(&path)?;
    db.execute_batch(
        "CREATE TRIGGER no_delete BEFORE DELETE ON batches
         BEGIN SELECT RAISE(ABORT, 'test: the delete fails'); END;",
    )?;
    let relay = Arc::new(TestRelay::new(|_| Duration::ZERO));
    let url = serve(relay.clone()).await?;
    let stats = Arc::new(AgentStats::default());
    let (stop, task) = start(&spool, uplink(&url, 4), &stats);

    let all: BTreeSet<u64> = (1..=BATCHES).collect();
    eventually("every batch confirmed", Duration::from_secs(30), || {
        let relay = relay.clone();
        let all = all.clone();
        async move { Ok(relay.acked().into_iter().collect::<BTreeSet<_>>() == all) }
    })
    .await?;
    // A few backoff rounds (20 ms doubling to 200 ms) pass while the
    // deletes keep failing.
    eventually("deletes retried", Duration::from_secs(30), || {
        let stats = stats.clone();
        async move { Ok(stats.spool_remove_failures.get() >= 8) }
    })
    .await?;
    assert_eq!(seqs_left(&spool).await?, all, "nothing could be removed");
    let received = relay.received.lock().unwrap().len();
    assert_eq!(
        received, BATCHES as usize,
        "batches the relay confirmed were sent again"
    );
    let failures = stats.spool_remove_failures.get();
    println!("delete failures while blocked: {failures}, requests: {received}");

    db.execute_batch("DROP TRIGGER no_delete")?;
    until_empty_then_stop(&spool, stop, task).await?;
    assert_eq!(relay.received.lock().unwrap().len(), BATCHES as usize);
    assert_eq!(stats.batches_forwarded.get(), BATCHES);
    Ok(())
}

/// An agent newer than its relay: the real relay behind a proxy that makes
/// it an older relay, one that does not read the newest wire format (the
/// proxy relabels such a batch with a version no relay reads and returns
/// the real relay's answer: 400, reason `bad_version`). The forwarder sends
/// each batch again in its legacy format instead of quarantining it, then
/// sends the older format first: every reading reaches the relay's sink
/// once and the spool empties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_for_a_relay_that_does_not_read_the_newest_format_go_in_an_older_one(
) -> anyhow::Result<()> {
    use crate::series_tables::{proxy_to, relay_on, ts_of};

    const BATCHES: usize = 6;
    const TOKEN: &str = "fwd-compat-token-0123456789";
    let dir = tempfile::tempdir()?;
    let relay_dir = dir.path().join("relay");
    let relay = relay_on(&relay_dir, TOKEN).await?;
    let (p, url) = proxy_to(&relay.url, true).await?;

    let spool = SharedSpool::new(fill_spool(&dir.path().join("spool.db"), BATCHES)?);
    let stats = Arc::new(AgentStats::default());
    let mut up = UplinkConfig::new(&url, TOKEN);
    up.max_in_flight = 1;
    up.retry_initial = Duration::from_millis(20);
    up.retry_max = Duration::from_millis(200);
    let (stop, task) = start(&spool, up, &stats);
    until_empty_then_stop(&spool, stop, task).await?;

    let seen = p.seen.lock().unwrap().clone();
    // The first batch: refused in the newest format, accepted in its legacy
    // one (v4: the spool gives each batch its instance, and these carry no
    // device events); the others go in the legacy format at once.
    let mut want = vec![(edge_wire::FORMAT_VERSION, 400), (4, 200)];
    want.extend(std::iter::repeat_n((4, 200), BATCHES - 1));
    assert_eq!(seen, want);
    assert_eq!(stats.batches_quarantined.get(), 0);
    assert_eq!(stats.batches_sent_in_legacy_format.get(), BATCHES as u64);
    assert_eq!(stats.batches_forwarded.get(), BATCHES as u64);

    // Every reading once in the relay's sink.
    relay.stop().await?;
    let mut stamps = ts_of(&relay_dir)?;
    let lines = stamps.len();
    stamps.sort_unstable();
    stamps.dedup();
    assert_eq!(
        (lines, stamps.len()),
        (BATCHES * READINGS_PER_BATCH, BATCHES * READINGS_PER_BATCH)
    );
    Ok(())
}
