//! Test harness: a relay on 127.0.0.1:0 (uploads and operations on two
//! ports) with the file sink in a temp dir, ready when `/healthz` answers (polled with a deadline, never a sleep).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use edge_relay::{serve_with, GatewayConfig, Listeners, Relay, RelayConfig, RelayError};
use edge_wire::{AlarmEvent, AlarmState, Batch, Point, Quality, Series};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const TOKEN_1: &str = "token-of-gateway-one";
pub const TOKEN_2: &str = "token-of-gateway-two";

/// A relay running in this process.
pub struct Running {
    pub base: String,
    /// The operations listener (`/metrics`, `/readyz`, `/healthz`).
    pub ops_base: String,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), RelayError>>,
}

/// Gateways `gw-1` and `gw-2`, the file sink in a fresh temp dir.
pub fn config() -> (RelayConfig, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let gateways = vec![
        GatewayConfig::with_token("gw-1", TOKEN_1),
        GatewayConfig::with_token("gw-2", TOKEN_2),
    ];
    let mut config = RelayConfig::new(dir.path().join("data"), gateways);
    // The test batches carry fixed timestamps (TS0): keep them acceptable
    // for as long as this code lives.
    config.time_window.max_past = Duration::from_secs(100 * 365 * 24 * 3600);
    (config, dir)
}

pub async fn start(config: RelayConfig, dir: tempfile::TempDir) -> Running {
    let limits = config.server.clone();
    let relay = Relay::from_config(config).unwrap();
    let listeners = Listeners::loopback().await.unwrap();
    let addr: SocketAddr = listeners.data.local_addr().unwrap();
    let ops: SocketAddr = listeners.ops.as_ref().unwrap().local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_with(listeners, None, relay, limits, shutdown.clone()));
    let running = Running {
        base: format!("http://{addr}"),
        ops_base: format!("http://{ops}"),
        client: reqwest::Client::new(),
        dir,
        shutdown,
        task,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = running.client.get(running.ops_url("/healthz")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            return running;
        }
        assert!(Instant::now() < deadline, "relay did not become ready");
        tokio::task::yield_now().await;
    }
}

impl Running {
    /// A path on the upload listener.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A path on the operations listener.
    pub fn ops_url(&self, path: &str) -> String {
        format!("{}{path}", self.ops_base)
    }

    pub async fn post(&self, token: Option<&str>, body: Vec<u8>) -> reqwest::Response {
        let mut request = self.client.post(self.url("/v1/batches")).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// The relay's `/metrics` page.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.ops_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("data").join(name)).unwrap_or_default()
    }

    /// Cancel and wait; the server must stop cleanly. Returns the data
    /// directory, for a test that starts the relay again on it.
    pub async fn stop(self) -> tempfile::TempDir {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve did not return after shutdown")
            .unwrap()
            .unwrap();
        self.dir
    }
}

pub const TS0: i64 = 1_795_316_400_123_456; // 2026-11-22T03:00:00.123456Z

/// Two series, five readings (one NaN), one alarm.
pub fn batch(gateway: &str, seq: u64) -> Batch {
    let tags = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    Batch {
        gateway_id: gateway.into(),
        instance: None,
        seq,
        created_us: TS0 + 10_000_000,
        series: vec![
            Series {
                id: 1,
                name: "press-3.oil_temp".into(),
                unit: "degC".into(),
                tags: tags(&[("site", "plant a"), ("line", "L1")]),
                points: vec![
                    Point {
                        ts_us: TS0,
                        value: 73.9,
                        quality: Quality::Good,
                    },
                    Point {
                        ts_us: TS0 + 1_000_000,
                        value: 74.25,
                        quality: Quality::Good,
                    },
                    Point {
                        ts_us: TS0 + 2_000_000,
                        value: f64::NAN,
                        quality: Quality::Bad,
                    },
                ],
                reporting: None,
            },
            Series {
                id: 2,
                name: "press-3.pressure".into(),
                unit: "bar".into(),
                tags: tags(&[("site", "plant a")]),
                points: vec![
                    Point {
                        ts_us: TS0,
                        value: 1.5,
                        quality: Quality::Uncertain,
                    },
                    Point {
                        ts_us: TS0 + 500_000,
                        value: -0.0,
                        quality: Quality::Good,
                    },
                ],
                reporting: None,
            },
        ],
        alarms: vec![AlarmEvent {
            series_id: 1,
            spc: None,
            rule: "oil_temp.high".into(),
            state: AlarmState::Raised,
            value: 74.25,
            limit: 74.0,
            ts_us: TS0 + 1_000_000,
            severity: None,
            duration_us: None,
            limit_kind: None,
        }],
        gaps: Vec::new(),
        devices: Vec::new(),
    }
}

pub fn encoded(batch: &Batch) -> Vec<u8> {
    edge_wire::encode(batch).unwrap()
}
