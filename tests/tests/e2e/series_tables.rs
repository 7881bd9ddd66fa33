//! Series-table references between the real forwarder and real relays
//! (in-process, SQLite ledgers, the file sink), through a proxy that
//! records the wire version of every upload and the status answered, and
//! that can be pointed at another relay mid-run.
//!
//! One run, four phases, with the forwarder running throughout:
//! 1. relay A: the first batch goes self-contained (v8), the rest name the
//!    table (v9);
//! 2. relay A restarted on its data directory: references go on at once
//!    (the table comes back from the ledger file);
//! 3. relay B, which never saw this gateway (a fleet on SQLite ledgers, or a
//!    store that was reset): the first reference is answered 409, the batch
//!    goes again with its table, the rest name it;
//! 4. the gateway's series change (a tag added): a new table, inline first.
//!
//! Every reading arrives exactly once across the sinks, nothing is
//! quarantined, and the agent's counters say how the batches went.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use edge_agent::config::UplinkConfig;
use edge_agent::spool::{Lane, SharedSpool, Spool};
use edge_agent::stats::AgentStats;
use edge_relay::config::GatewayConfig;
use edge_relay::{Relay, RelayConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::forward::{eventually, reading_batch, seqs_left, start, READINGS_PER_BATCH};

const TOKEN: &str = "series-table-token-0123456789";

/// The real relay served in this process, gateway `gw-fwd` with `token`,
/// the file sink in its directory.
pub(crate) struct RunningRelay {
    pub(crate) url: String,
    stop: CancellationToken,
    task: JoinHandle<Result<(), edge_relay::RelayError>>,
}

pub(crate) async fn relay_on(dir: &Path, token: &str) -> anyhow::Result<RunningRelay> {
    std::fs::create_dir_all(dir)?;
    let relay = Relay::from_config(RelayConfig::new(
        dir,
        vec![GatewayConfig::with_token("gw-fwd", token)],
    ))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/batches", listener.local_addr()?);
    let stop = CancellationToken::new();
    let task = tokio::spawn(edge_relay::serve(listener, relay, stop.clone()));
    Ok(RunningRelay { url, stop, task })
}

impl RunningRelay {
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await??;
        Ok(())
    }
}

/// A recording proxy in front of a relay: the wire version of every upload
/// and the status answered. `refuse_newest` stands for a relay older than
/// the agent: the version of a v6 or newer body is rewritten to 99, which
/// the relay refuses with `bad_version`.
#[derive(Clone)]
pub(crate) struct Proxy {
    pub(crate) to: Arc<Mutex<String>>,
    client: reqwest::Client,
    refuse_newest: bool,
    /// (wire version of each upload, status answered).
    pub(crate) seen: Arc<Mutex<Vec<(u16, u16)>>>,
}

/// Start a [`Proxy`] to `to` on a free port; it and its batch URL.
pub(crate) async fn proxy_to(to: &str, refuse_newest: bool) -> anyhow::Result<(Proxy, String)> {
    let p = Proxy {
        to: Arc::new(Mutex::new(to.to_owned())),
        client: reqwest::Client::new(),
        refuse_newest,
        seen: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/batches", listener.local_addr()?);
    let app = Router::new()
        .route("/v1/batches", post(proxy))
        .with_state(p.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((p, url))
}

async fn proxy(State(p): State<Proxy>, headers: axum::http::HeaderMap, body: Bytes) -> Response {
    let version = edge_wire::encoded_version(&body).unwrap_or(0);
    let mut body = body.to_vec();
    if p.refuse_newest && version >= 6 && body.len() >= 6 {
        body[4..6].copy_from_slice(&99u16.to_be_bytes());
    }
    let to = p.to.lock().unwrap().clone();
    let mut request = p.client.post(&to).body(body);
    for name in ["authorization", "content-type", "x-edge-gateway"] {
        if let Some(v) = headers.get(name) {
            request = request.header(name, v.as_bytes());
        }
    }
    let Ok(answer) = request.send().await else {
        return (StatusCode::BAD_GATEWAY, "relay not reachable").into_response();
    };
    let status = answer.status().as_u16();
    p.seen.lock().unwrap().push((version, status));
    let text = answer.bytes().await.unwrap_or_default();
    (StatusCode::from_u16(status).unwrap(), text).into_response()
}

/// Append reading batches `range` (tagged: with one tag more on the series).
async fn append(
    spool: &SharedSpool,
    range: std::ops::Range<usize>,
    tagged: bool,
) -> anyhow::Result<()> {
    for n in range {
        let mut batch = reading_batch(n);
        if tagged {
            batch.series[0].tags.insert("line".into(), "2".into());
        }
        spool
            .call(move |s| s.append(&mut batch, &[], Lane::Readings).map(drop))
            .await?;
    }
    Ok(())
}

/// Wait until the spool is empty, then return the uploads seen since `from`.
async fn drained(spool: &SharedSpool, p: &Proxy, from: usize) -> anyhow::Result<Vec<(u16, u16)>> {
    eventually("spool empty", Duration::from_secs(30), || {
        let spool = spool.clone();
        async move { Ok(seqs_left(&spool).await?.is_empty()) }
    })
    .await?;
    Ok(p.seen.lock().unwrap()[from..].to_vec())
}

/// The `ts_us` of every line in the file sink of the relay in `dir`.
pub(crate) fn ts_of(dir: &Path) -> anyhow::Result<Vec<i64>> {
    let text = std::fs::read_to_string(dir.join("readings.jsonl")).unwrap_or_default();
    Ok(text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            v["ts_us"].as_i64().expect("ts_us")
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_name_their_series_table_once_a_relay_holds_it_and_lose_nothing_when_it_does_not(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (dir_a, dir_b) = (dir.path().join("relay-a"), dir.path().join("relay-b"));
    let relay_a = relay_on(&dir_a, TOKEN).await?;
    let (p, url) = proxy_to(&relay_a.url, false).await?;

    let spool = SharedSpool::new(Spool::open(&dir.path().join("spool.db"))?);
    let stats = Arc::new(AgentStats::default());
    let mut up = UplinkConfig::new(&url, TOKEN);
    // One upload at a time, so the order of versions is the order of batches.
    up.max_in_flight = 1;
    up.retry_initial = Duration::from_millis(20);
    up.retry_max = Duration::from_millis(200);
    let (stop, task) = start(&spool, up, &stats);

    // 1. The first batch carries the table; the relay's answer says it holds it.
    append(&spool, 0..5, false).await?;
    let seen = drained(&spool, &p, 0).await?;
    assert_eq!(seen, [(8, 200), (9, 200), (9, 200), (9, 200), (9, 200)]);

    // 2. Relay A restarted on the same directory: it still holds the table.
    relay_a.stop().await?;
    let relay_a = relay_on(&dir_a, TOKEN).await?;
    *p.to.lock().unwrap() = relay_a.url.clone();
    let mark = p.seen.lock().unwrap().len();
    append(&spool, 5..8, false).await?;
    let seen = drained(&spool, &p, mark).await?;
    assert_eq!(seen, [(9, 200), (9, 200), (9, 200)]);

    // 3. Relay B never saw the table: one 409, the batch again with it.
    let relay_b = relay_on(&dir_b, TOKEN).await?;
    *p.to.lock().unwrap() = relay_b.url.clone();
    let mark = p.seen.lock().unwrap().len();
    append(&spool, 8..11, false).await?;
    let seen = drained(&spool, &p, mark).await?;
    assert_eq!(seen, [(9, 409), (8, 200), (9, 200), (9, 200)]);

    // 4. A tag added to the series: a new table, inline first.
    let mark = p.seen.lock().unwrap().len();
    append(&spool, 11..13, true).await?;
    let seen = drained(&spool, &p, mark).await?;
    assert_eq!(seen, [(8, 200), (9, 200)]);

    stop.cancel();
    task.await?;
    assert_eq!(stats.batches_forwarded.get(), 13);
    assert_eq!(stats.batches_sent_with_table_reference.get(), 4 + 3 + 2 + 1);
    assert_eq!(stats.series_tables_resent.get(), 1);
    assert_eq!(stats.batches_quarantined.get(), 0);

    relay_a.stop().await?;
    relay_b.stop().await?;
    let mut stamps = ts_of(&dir_a)?;
    let on_a = stamps.len();
    stamps.extend(ts_of(&dir_b)?);
    assert_eq!(on_a, 8 * READINGS_PER_BATCH, "phases 1 and 2 on relay A");
    let lines = stamps.len();
    stamps.sort_unstable();
    stamps.dedup();
    assert_eq!(
        (lines, stamps.len()),
        (13 * READINGS_PER_BATCH, 13 * READINGS_PER_BATCH)
    );
    Ok(())
}
