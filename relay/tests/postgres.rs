//! The PostgreSQL sink against the real server on 127.0.0.1:5432 (trust
//! auth, user `postgres`): rows land with the batch's values, a batch sent
//! again adds no rows, an unreachable or vanished server turns into 503, and
//! the sink connects again once the server is back.
//!
//! Each test works in its own schema, dropped at the end, so tests run in
//! parallel and leave nothing behind.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use edge_relay::PostgresConfig;
use tokio::net::TcpListener;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

use crate::support::{batch, config, encoded, start, TOKEN_1, TS0};

const SERVER: &str = "127.0.0.1:5432";

/// A schema of its own for one test, dropped (with its tables) by [`Schema::drop_all`].
pub struct Schema {
    pub name: String,
    pub client: Client,
}

impl Schema {
    pub async fn new() -> Schema {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "edge_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let (client, connection) =
            tokio_postgres::connect(&format!("postgresql://postgres@{SERVER}/postgres"), NoTls)
                .await
                .expect("PostgreSQL at 127.0.0.1:5432 (trust auth, user postgres) is needed");
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .await
            .unwrap();
        Schema { name, client }
    }

    pub fn table(&self) -> String {
        format!("{}.readings", self.name)
    }

    /// Every row as (series, time in µs, value, quality, gateway, tags as text).
    pub async fn rows(&self) -> Vec<(String, i64, f64, i16, String, String)> {
        let sql = format!(
            "SELECT series, (extract(epoch FROM time) * 1000000)::bigint, value, quality, gateway, tags::text \
             FROM {} ORDER BY series, time",
            self.table()
        );
        self.client
            .query(&sql, &[])
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
            .collect()
    }

    pub async fn drop_all(self) {
        self.client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await
            .unwrap();
    }
}

pub fn postgres(url: &str, table: &str) -> PostgresConfig {
    PostgresConfig {
        table: table.into(),
        timeout: Duration::from_secs(5),
        ..PostgresConfig::new(url.parse().unwrap())
    }
}

fn url() -> String {
    format!("postgresql://postgres@{SERVER}/postgres")
}

/// The rows `support::batch` must give, written out from its definition.
fn expected_rows() -> Vec<(String, i64, f64, i16, String, String)> {
    let oil = r#"{"line": "L1", "site": "plant a"}"#;
    let pressure = r#"{"site": "plant a"}"#;
    let row = |series: &str, ts: i64, value: f64, quality: i16, tags: &str| {
        (
            series.to_string(),
            ts,
            value,
            quality,
            "gw-1".to_string(),
            tags.to_string(),
        )
    };
    vec![
        row("press-3.oil_temp", TS0, 73.9, 0, oil),
        row("press-3.oil_temp", TS0 + 1_000_000, 74.25, 0, oil),
        row("press-3.oil_temp", TS0 + 2_000_000, f64::NAN, 2, oil),
        row("press-3.pressure", TS0, 1.5, 1, pressure),
        row("press-3.pressure", TS0 + 500_000, -0.0, 0, pressure),
    ]
}

/// Rows compared with NaN equal to NaN and -0.0 told apart from 0.0.
fn same(
    a: &[(String, i64, f64, i16, String, String)],
    b: &[(String, i64, f64, i16, String, String)],
) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.0 == y.0
                && x.1 == y.1
                && ((x.2.is_nan() && y.2.is_nan()) || x.2.to_bits() == y.2.to_bits())
                && x.3 == y.3
                && x.4 == y.4
                && x.5 == y.5
        })
}

#[tokio::test]
async fn rows_land_with_the_batch_values_and_a_resent_batch_adds_none() {
    let schema = Schema::new().await;
    let (mut cfg, dir) = config();
    cfg.postgres = Some(postgres(&url(), &schema.table()));
    let relay = start(cfg, dir).await;
    let response = relay.post(Some(TOKEN_1), encoded(&batch("gw-1", 3))).await;
    assert_eq!(response.status(), 200);
    let rows = schema.rows().await;
    assert!(same(&rows, &expected_rows()), "{rows:?}");

    // The same readings under another sequence number pass the relay's
    // ledger (as after a lost ledger, or via another relay): PostgreSQL
    // itself must keep one row per series and time.
    let response = relay.post(Some(TOKEN_1), encoded(&batch("gw-1", 4))).await;
    assert_eq!(response.status(), 200);
    let again = schema.rows().await;
    assert!(same(&again, &expected_rows()), "{again:?}");
    // Only the PostgreSQL sink is configured: no files are written.
    assert_eq!(relay.file("readings.jsonl"), "");
    relay.stop().await;
    schema.drop_all().await;
}

#[tokio::test]
async fn an_unreachable_server_turns_into_503_with_retry_after() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (mut cfg, dir) = config();
    cfg.postgres = Some(postgres(
        &format!("postgresql://postgres:not-logged@127.0.0.1:{port}/postgres"),
        "edge_readings",
    ));
    let relay = start(cfg, dir).await;
    let response = relay.post(Some(TOKEN_1), encoded(&batch("gw-1", 3))).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let error: serde_json::Value = response.json().await.unwrap();
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("postgres 127.0.0.1:{port}/postgres")),
        "{message}"
    );
    assert!(message.contains("connect failed"), "{message}");
    assert!(
        !message.contains("not-logged"),
        "password leaked: {message}"
    );
    let metrics = relay.metrics().await;
    assert!(
        metrics.contains("edge_relay_sink_failures_total{sink=\"postgres\"} 1"),
        "{metrics}"
    );
    relay.stop().await;
}

/// A TCP forwarder to the real server that can be cut (listener closed,
/// every connection dropped) and started again on the same port, as a
/// server restart looks to a client.
struct Proxy {
    port: u16,
    stop: CancellationToken,
}

impl Proxy {
    async fn start(port: u16) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut client, _)) = accepted else {
                    return;
                };
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(SERVER).await else {
                        return;
                    };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Proxy { port, stop }
    }

    fn cut(self) -> u16 {
        self.stop.cancel();
        self.port
    }
}

#[tokio::test]
async fn the_sink_connects_again_after_the_server_went_away() {
    let schema = Schema::new().await;
    let proxy = Proxy::start(0).await;
    let (mut cfg, dir) = config();
    cfg.postgres = Some(postgres(
        &format!("postgresql://postgres@127.0.0.1:{}/postgres", proxy.port),
        &schema.table(),
    ));
    let relay = start(cfg, dir).await;
    assert_eq!(
        relay
            .post(Some(TOKEN_1), encoded(&batch("gw-1", 1)))
            .await
            .status(),
        200
    );

    let port = proxy.cut();
    let mut shifted = batch("gw-1", 2);
    for series in &mut shifted.series {
        for point in &mut series.points {
            point.ts_us += 10_000_000;
        }
    }
    // Down: the request fails, whether the broken connection is noticed on
    // the insert or on connecting again.
    let response = relay.post(Some(TOKEN_1), encoded(&shifted)).await;
    assert_eq!(response.status(), 503);
    let response = relay.post(Some(TOKEN_1), encoded(&shifted)).await;
    assert_eq!(response.status(), 503);

    let proxy = Proxy::start(port).await;
    let response = relay.post(Some(TOKEN_1), encoded(&shifted)).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    assert_eq!(schema.rows().await.len(), 10);
    proxy.cut();
    relay.stop().await;
    schema.drop_all().await;
}

#[tokio::test]
async fn a_server_that_never_answers_turns_into_503_within_the_timeout() {
    // A listener nobody accepts on: the connection opens, the startup
    // message is never answered.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let (mut cfg, dir) = config();
    cfg.postgres = Some(PostgresConfig {
        timeout: Duration::from_millis(500),
        ..postgres(
            &format!("postgresql://postgres@127.0.0.1:{port}/postgres"),
            "edge_readings",
        )
    });
    let relay = start(cfg, dir).await;
    let started = std::time::Instant::now();
    let response = relay.post(Some(TOKEN_1), encoded(&batch("gw-1", 3))).await;
    assert_eq!(response.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let error: serde_json::Value = response.json().await.unwrap();
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("timed out") || message.contains("timeout"),
        "{message}"
    );
    relay.stop().await;
    drop(silent);
}
