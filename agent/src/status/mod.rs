//! The status page: Prometheus metrics on `/metrics` and a health answer
//! on `/healthz`, served with axum on the `[status] listen` address, for a
//! Prometheus on the plant network and for whatever restarts a stuck agent.
//!
//! Not for: changing anything. The page only reads [`AgentStats`] and the
//! spool ([`Spool::stats`](crate::spool::Spool::stats), the next batch to
//! send and the active alarms) at request time, and keeps no figures of its
//! own except *when* counters last moved ([`health::Tracker`]), which it
//! learns by looking at them every second and at every request; no hook in
//! the pipeline or the forwarder is needed for it.
//!
//! `/healthz` answers 200 with `{"status":"ok",...}` or 503 with
//! `{"status":"unhealthy","failed":[{"condition":..,"message":..}],...}`;
//! the rule is in [`health`]. The clock is a plain function so tests can
//! set the time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::reading::now_us;
use crate::spool::{Pressure, SharedSpool, SpoolStats};
use crate::stats::AgentStats;

pub mod health;
pub mod render;

use self::health::{Activity, Counts, Problem, Tracker};

/// Why the status page could not be served.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("status page: cannot listen on {listen}: {source}")]
    Bind {
        listen: SocketAddr,
        source: std::io::Error,
    },
    #[error("status page on {listen}: server failed: {source}")]
    Serve {
        listen: SocketAddr,
        source: std::io::Error,
    },
}

/// What the page reads from the spool for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolFigures {
    pub stats: SpoolStats,
    /// Time of the oldest unsent reading in the spool, over both lanes
    /// (`Spool::backlog`); `None` when the spool is empty.
    pub oldest_unsent_us: Option<i64>,
    pub active_alarms: u64,
    /// How full the spool and its disk are.
    pub pressure: Pressure,
}

/// Everything one page shows besides the counters.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub now_us: i64,
    pub activity: Activity,
    /// `None` when the spool could not be read.
    pub spool: Option<SpoolFigures>,
    pub problems: Vec<Problem>,
}

/// The state behind the page.
pub struct StatusPage {
    stats: Arc<AgentStats>,
    spool: SharedSpool,
    stuck_after: Duration,
    tracker: Mutex<Tracker>,
    /// Microseconds since the Unix epoch; a parameter so tests set the time.
    clock: fn() -> i64,
}

impl StatusPage {
    pub fn new(stats: Arc<AgentStats>, spool: SharedSpool, stuck_after: Duration) -> StatusPage {
        StatusPage::with_clock(stats, spool, stuck_after, now_us)
    }

    pub fn with_clock(
        stats: Arc<AgentStats>,
        spool: SharedSpool,
        stuck_after: Duration,
        clock: fn() -> i64,
    ) -> StatusPage {
        let tracker = Mutex::new(Tracker::new(clock(), counts(&stats)));
        StatusPage {
            stats,
            spool,
            stuck_after,
            tracker,
            clock,
        }
    }

    /// Look at the counters now.
    fn observe(&self) -> (i64, Activity) {
        let now = (self.clock)();
        let mut tracker = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
        (now, tracker.observe(now, counts(&self.stats)))
    }

    /// Read the spool and apply the health rule.
    pub async fn snapshot(&self) -> Snapshot {
        let figures = self
            .spool
            .call(|s| {
                let stats = s.stats()?;
                let oldest = s.backlog()?.oldest_us;
                let active_alarms = s.active_alarms()?.len() as u64;
                let pressure = s.pressure()?;
                Ok((stats, oldest, active_alarms, pressure))
            })
            .await;
        let spool = match figures {
            Ok((stats, oldest_unsent_us, active_alarms, pressure)) => Some(SpoolFigures {
                stats,
                oldest_unsent_us,
                active_alarms,
                pressure,
            }),
            Err(error) => {
                warn!(%error, "status page cannot read the spool");
                None
            }
        };
        let (now_us, activity) = self.observe();
        let oldest = spool.as_ref().and_then(|s| s.oldest_unsent_us);
        let mut problems = health::check(now_us, self.stuck_after, &activity, oldest);
        if let Some(s) = &spool {
            problems.extend(health::spool_problems(&s.pressure));
        }
        Snapshot {
            now_us,
            activity,
            spool,
            problems,
        }
    }

    /// The `/healthz` status and JSON body for `snap`.
    pub fn health_body(&self, snap: &Snapshot) -> (StatusCode, serde_json::Value) {
        let stuck_after_s = self.stuck_after.as_secs();
        if snap.problems.is_empty() {
            let body = serde_json::json!({"status": "ok", "stuck_after_s": stuck_after_s});
            return (StatusCode::OK, body);
        }
        let failed: Vec<_> = snap
            .problems
            .iter()
            .map(|p| serde_json::json!({"condition": p.condition(), "message": p.message()}))
            .collect();
        let body = serde_json::json!({
            "status": "unhealthy",
            "stuck_after_s": stuck_after_s,
            "failed": failed,
        });
        (StatusCode::SERVICE_UNAVAILABLE, body)
    }
}

fn counts(stats: &AgentStats) -> Counts {
    Counts {
        produced: stats.readings_produced.get(),
        spooled: stats.readings_spooled.get(),
        batches_forwarded: stats.batches_forwarded.get(),
        upload_failures: stats.upload_failures.get(),
    }
}

/// Bind the `[status] listen` address.
pub async fn bind(listen: SocketAddr) -> Result<TcpListener, StatusError> {
    TcpListener::bind(listen)
        .await
        .map_err(|source| StatusError::Bind { listen, source })
}

/// Serve the page on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    page: Arc<StatusPage>,
    shutdown: CancellationToken,
) -> Result<(), StatusError> {
    let listen = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let looker = page.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => { looker.observe(); }
            }
        }
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(page);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(|source| StatusError::Serve { listen, source })
}

async fn metrics(State(page): State<Arc<StatusPage>>) -> impl IntoResponse {
    let snap = page.snapshot().await;
    let text = render::render(&page.stats, &snap);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

async fn healthz(State(page): State<Arc<StatusPage>>) -> impl IntoResponse {
    let snap = page.snapshot().await;
    let (status, body) = page.health_body(&snap);
    (status, axum::Json(body))
}
