//! The status page, served with axum on the `[status] listen` address:
//! Prometheus metrics on `/metrics` and a health answer on `/healthz` for
//! a Prometheus on the plant network and for whatever restarts a stuck
//! agent; the technician's page on `/` ([`html`]) and its JSON on
//! `/api/status` ([`api`], documented in `docs/status-api.md`), both
//! rendered from one [`view::View`]; and two actions, `POST
//! /api/alarms/ack` and `POST /api/spc/rebaseline`.
//!
//! Not for: changing anything but an alarm's acknowledgement and an SPC
//! rule's baselines. The page
//! reads [`AgentStats`] (counters, the device and points boards), the
//! shared alarm board and the spool ([`Spool::stats`](crate::spool::Spool::stats),
//! the next batch to send and the active alarms) at request time, and
//! keeps no figures of its own except *when* counters last moved
//! ([`health::Tracker`]) and the drain rate ([`view::Drain`]), which it
//! learns by looking at them every second and at every request.
//!
//! The acknowledge action, in order: 403 when `[status.auth]` is not
//! configured (the page then shows no button); 401 with
//! `WWW-Authenticate` for missing or wrong credentials ([`auth`]); 400 for
//! a body that is not `{"series": .., "rule": .., "by"?: ..}`; 404 when no
//! such alarm is raised; 503 when the spool did not take it; else 200 with
//! `{"acknowledged": true, "already": bool}`. It goes through the same
//! [`AckPath`] as an MQTT acknowledgement, and the event is then handed to
//! the local publisher, if there is one.
//!
//! The re-baselining action takes the same two first steps (403, 401),
//! then: 400 for a body that is not `{"rule": .., "series"?: ..,
//! "mode"?: .., "by"?: ..}`; 404 for no such rule, or one that has learned
//! nothing yet; 409 for a rule that is no SPC rule or whose baseline is in
//! the config; 503 when the agent is stopping; else 200 with
//! `{"rebaselined": [series..], "events": n}`. It goes through the same
//! [`RebaselinePath`] as an MQTT command: the pipeline applies it and
//! records it as events ([`crate::rebaseline`]).
//!
//! `/healthz` answers 200 with `{"status":"ok",...}` or 503 with
//! `{"status":"unhealthy","failed":[{"condition":..,"message":..}],...}`;
//! the rule is in [`health`]. The clock is a plain function so tests can
//! set the time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::mpsc::WeakSender;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::detect::RebaselineError;
use crate::publish::ack::{AckFailure, AckOutcome, AckPath};
use crate::publish::board::{AckError, AckRequest};
use crate::publish::LocalEvent;
use crate::reading::now_us;
use crate::rebaseline::{Body, RebaselineFailure, RebaselinePath, Via};
use crate::spool::{OnFull, Pressure, SharedSpool, SpoolOptions, SpoolStats};
use crate::stats::AgentStats;

pub mod api;
pub mod auth;
pub mod health;
pub mod html;
pub mod render;
pub mod view;

use self::auth::StatusAuth;
use self::view::{Drain, SpoolView, UplinkView, View};

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

/// What the technician's page needs of the running agent besides the
/// counters and the spool.
pub struct PageAgent {
    pub gateway_id: String,
    pub spool_options: SpoolOptions,
    /// `None`: read only, the ack action answers 403.
    pub auth: Option<StatusAuth>,
    /// The shared alarm board and the acknowledgement path.
    pub ack: Arc<AckPath>,
    /// The local publisher, to publish the acknowledgements taken here.
    pub local: Option<WeakSender<LocalEvent>>,
    /// Where the re-baselining action sends its requests.
    pub rebaseline: RebaselinePath,
}

/// The state behind the page.
pub struct StatusPage {
    stats: Arc<AgentStats>,
    spool: SharedSpool,
    stuck_after: Duration,
    tracker: Mutex<Tracker>,
    drain: Mutex<Drain>,
    /// `None` for a page of counters only (`/metrics`, `/healthz`); `/`
    /// and the API answer 404 then.
    agent: Option<PageAgent>,
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
            drain: Mutex::new(Drain::default()),
            agent: None,
            clock,
        }
    }

    /// Serve the technician's page and its API too.
    pub fn with_agent(mut self, agent: PageAgent) -> StatusPage {
        self.agent = Some(agent);
        self
    }

    /// Look at the counters now.
    fn observe(&self) -> (i64, Activity) {
        let now = (self.clock)();
        let mut tracker = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
        let activity = tracker.observe(now, counts(&self.stats));
        drop(tracker);
        self.drain
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(now, self.stats.readings_forwarded.get());
        (now, activity)
    }

    /// Everything the technician's page shows, at this request; `device`
    /// picks whose points ([`view::select_points`]).
    pub async fn view(&self, device: Option<&str>) -> Option<View> {
        let agent = self.agent.as_ref()?;
        let snap = self.snapshot().await;
        let s = &self.stats;
        let rate = self.drain.lock().unwrap_or_else(|e| e.into_inner()).rate();
        let backlog = snap.spool.as_ref().map(|f| f.stats).unwrap_or_default();
        let uplink = UplinkView {
            connected: snap.activity.uplink_up,
            last_success_us: snap.activity.last_forwarded_us,
            backlog_batches: backlog.batches,
            backlog_readings: backlog.readings,
            backlog_bytes: backlog.bytes,
            oldest_unsent_us: snap.spool.as_ref().and_then(|f| f.oldest_unsent_us),
            drain_per_s: rate,
            time_to_empty_s: view::time_to_empty_s(backlog.readings, rate),
        };
        let o = &agent.spool_options;
        let spool = snap.spool.as_ref().map(|f| SpoolView {
            used_bytes: f.pressure.used,
            bound_bytes: f.pressure.bound,
            max_age_s: o.max_age.map(|a| a.as_secs()),
            on_full: match o.on_full {
                OnFull::DropOldest => "drop-oldest",
                OnFull::Block => "block",
            },
            dropped_full: s.readings_dropped_full.get(),
            dropped_age: s.readings_dropped_age.get(),
            gaps: s.spool_gaps.get(),
            quarantined: f.stats.quarantined,
        });
        let alarms = &agent.ack.alarms;
        let all = s.points.all(snap.now_us);
        let points_total = all.len();
        let (points, points_device, point_devices) = view::select_points(all, device);
        Some(View {
            now_us: snap.now_us,
            gateway_id: agent.gateway_id.clone(),
            version: env!("CARGO_PKG_VERSION"),
            started_us: snap.activity.started_us,
            uplink,
            spool,
            health: snap
                .problems
                .iter()
                .map(|p| (p.condition(), p.message()))
                .collect(),
            devices: view::devices(s),
            points,
            points_device,
            point_devices,
            points_total,
            alarms: alarms.raised(),
            history: alarms.history(),
            ack_token: agent.auth.as_ref().is_some_and(|a| a.takes_token()),
            ack_basic: agent.auth.as_ref().is_some_and(|a| a.takes_basic()),
        })
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
        .route("/", get(page_html))
        .route("/api/status", get(api_status))
        .route("/api/alarms/ack", post(ack_alarm))
        .route("/api/spc/rebaseline", post(rebaseline_spc))
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

const NO_STORE: (header::HeaderName, &str) = (header::CACHE_CONTROL, "no-store");

/// `?device=NAME`: whose points to show.
#[derive(serde::Deserialize)]
struct PointsQuery {
    device: Option<String>,
}

async fn page_html(
    State(page): State<Arc<StatusPage>>,
    Query(q): Query<PointsQuery>,
) -> axum::response::Response {
    match page.view(q.device.as_deref()).await {
        Some(v) => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8"), NO_STORE],
            html::render(&v),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn api_status(
    State(page): State<Arc<StatusPage>>,
    Query(q): Query<PointsQuery>,
) -> axum::response::Response {
    match page.view(q.device.as_deref()).await {
        Some(v) => ([NO_STORE], axum::Json(api::json(&v))).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn refuse(status: StatusCode, error: impl std::fmt::Display) -> axum::response::Response {
    (
        status,
        axum::Json(serde_json::json!({"error": error.to_string()})),
    )
        .into_response()
}

/// Steps 1 and 2 of both actions: who acts, or the 403 / 401 answer.
#[allow(clippy::result_large_err)]
fn authorize(
    agent: &PageAgent,
    headers: &HeaderMap,
    action: &str,
) -> Result<auth::Actor, axum::response::Response> {
    let Some(auth) = &agent.auth else {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!("this page is read only: {action} needs [status.auth] in the agent's config"),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    auth.check(given).map_err(|error| {
        let challenge = if auth.takes_basic() {
            "Basic realm=\"edge-agent\""
        } else {
            "Bearer realm=\"edge-agent\""
        };
        let mut r = refuse(StatusCode::UNAUTHORIZED, error);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(challenge),
        );
        r
    })
}

/// `POST /api/spc/rebaseline`; the steps are in the module doc.
async fn rebaseline_spc(
    State(page): State<Arc<StatusPage>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let Some(agent) = page.agent.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let refused = || page.stats.spc_rebaselines_refused.inc();
    let actor = match authorize(agent, &headers, "re-baselining") {
        Ok(actor) => actor,
        Err(r) => {
            refused();
            return r;
        }
    };
    let body = match Body::parse(&body) {
        Ok(b) if b.authorization.is_none() => b,
        Ok(_) => {
            refused();
            return refuse(
                StatusCode::BAD_REQUEST,
                "credentials go in the Authorization header, not in the body",
            );
        }
        Err(e) => {
            refused();
            return refuse(StatusCode::BAD_REQUEST, e);
        }
    };
    let by = body
        .by
        .clone()
        .or(actor)
        .unwrap_or_else(|| "status page".to_owned());
    match agent
        .rebaseline
        .rebaseline(body.request(), by, Via::StatusPage)
        .await
    {
        Ok(done) => {
            axum::Json(serde_json::json!({"rebaselined": done.series, "events": done.events}))
                .into_response()
        }
        Err(RebaselineFailure::Refused(
            e @ (RebaselineError::UnknownRule(_) | RebaselineError::NothingToForget { .. }),
        )) => refuse(StatusCode::NOT_FOUND, e),
        Err(RebaselineFailure::Refused(e @ RebaselineError::NoSuchMode { .. })) => {
            refuse(StatusCode::BAD_REQUEST, e)
        }
        Err(RebaselineFailure::Refused(e)) => refuse(StatusCode::CONFLICT, e),
        Err(e @ RebaselineFailure::Stopped) => refuse(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// `POST /api/alarms/ack`; the steps are in the module doc.
async fn ack_alarm(
    State(page): State<Arc<StatusPage>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let Some(agent) = page.agent.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // 1. Read only unless [status.auth] is configured; 2. credentials.
    let actor = match authorize(agent, &headers, "acknowledging") {
        Ok(actor) => actor,
        Err(refused) => return refused,
    };
    // 3. The body.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        series: String,
        rule: String,
        by: Option<String>,
    }
    let body: Body = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"series\": .., \"rule\": .., \"by\": ..}}: {e}"),
            )
        }
    };
    let by = body
        .by
        .or(actor)
        .unwrap_or_else(|| "status page".to_owned());
    let request = AckRequest {
        rule: body.rule,
        by: Some(by),
    };
    // 4. The one acknowledgement path; 5. publish what it took.
    match agent.ack.acknowledge(&body.series, &request).await {
        Ok(AckOutcome::Acknowledged(ack)) => {
            if let Some(tx) = agent.local.as_ref().and_then(|w| w.upgrade()) {
                let event = LocalEvent {
                    alarm: ack,
                    by: request.by.clone(),
                };
                if tx.try_send(event).is_err() {
                    page.stats.alarms_not_published.inc();
                    warn!("local alarm publisher is behind or stopped; the page's acknowledgement is spooled but not published on MQTT");
                }
            }
            axum::Json(serde_json::json!({"acknowledged": true, "already": false})).into_response()
        }
        Ok(AckOutcome::AlreadyAcknowledged) => {
            axum::Json(serde_json::json!({"acknowledged": true, "already": true})).into_response()
        }
        Err(AckFailure::Refused(e @ AckError::NotRaised { .. })) => {
            refuse(StatusCode::NOT_FOUND, e)
        }
        Err(AckFailure::Refused(e)) => refuse(StatusCode::BAD_REQUEST, e),
        Err(e @ AckFailure::NotStored { .. }) => refuse(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}
