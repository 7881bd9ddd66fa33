//! The HTTP face of the relay (axum): routes, status codes, JSON error
//! bodies. The service is a function of its listeners and a shutdown token
//! ([`serve_with`]), so tests and the demo run the real thing on port 0.
//! Uploads and the operations endpoints (`/metrics`, `/readyz`,
//! `/healthz`) are on separate listeners ([`Listeners`]), so the latter
//! need not face the internet.
//!
//! `POST /v1/batches`, in order:
//! 1. `Authorization: Bearer <token>` names a configured gateway, else 401;
//!    with mutual TLS, the client certificate must name that gateway too,
//!    else 403;
//! 2. the body fits `limits.max_compressed_bytes`, else 413 (checked on
//!    `Content-Length` before reading, and again while reading);
//!    the gateway has requests and bytes left in its buckets
//!    ([`crate::fairness`]), else 429 with `Retry-After`, before the body
//!    is read;
//! 3. the envelope and the declared sizes fit the limits, else 413 before
//!    anything is inflated; the batch gets its share of the shared decode
//!    budget within `admission.decode_wait_ms`, else 503 with `Retry-After`
//!    (reason `busy`); it decodes (on a blocking thread), else 413 for a
//!    limit and 400 for anything else, with the decoder's message
//!    ([`crate::admission`]);
//! 4. the batch's `gateway_id` is the authenticated gateway, else 403;
//! 5. every reading and alarm passes [`crate::validation`], else 422 for the
//!    whole batch, naming the first invalid item;
//! 6. every sink acknowledges, else 503 with `Retry-After: 5`;
//! 7. 200 `{"seq":N,"readings":R,"alarms":A}`; with `"duplicate":true`
//!    when the ledger knew the batch (not published again), with
//!    `"conflict":true` when it knew the batch's key with other content
//!    (published anyway, flagged; see [`crate::ledger`]).
//!
//! Error bodies are `{"error":"<outcome>","message":"..."}` (plus `reason`:
//! the decoder's label for 400/413 from decoding, why for 401 and 429).
//! Every rejection is counted and logged, 401 and 429 at most once per 10 s
//! (anyone can send those); strings from the network (gateway ids, decoder and sink messages,
//! certificate names) are logged with `?` (escaped), so a crafted value
//! cannot forge log lines. Tokens are never logged.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::connections::{ConnectionLimits, ConnectionStats};
use crate::fairness::Admission;
use crate::metrics::Outcome;
use crate::relay::{Relay, RelayError, Stored};
use crate::tls::Peer;

/// Seconds a gateway should wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u32 = 5;

/// Connections the operations listener keeps open at once (scrapers and
/// probes: a handful).
pub const OPS_MAX_CONNECTIONS: usize = 32;

/// The sockets the relay serves: uploads, and the operations endpoints
/// (`/metrics`, `/readyz`, `/healthz`) apart from them, so they need not be
/// reachable from where gateways upload.
#[derive(Debug)]
pub struct Listeners {
    /// `POST /v1/batches`.
    pub data: TcpListener,
    /// `GET /metrics`, `/readyz`, `/healthz`; not served when `None`.
    pub ops: Option<TcpListener>,
}

impl Listeners {
    /// Uploads only, no operations endpoints.
    pub fn data_only(data: TcpListener) -> Listeners {
        Listeners { data, ops: None }
    }

    /// Both on 127.0.0.1 with free ports (tests, the demo).
    pub async fn loopback() -> std::io::Result<Listeners> {
        Ok(Listeners {
            data: TcpListener::bind("127.0.0.1:0").await?,
            ops: Some(TcpListener::bind("127.0.0.1:0").await?),
        })
    }
}

/// Serve uploads on `listener` until `shutdown` is cancelled, then finish
/// the requests in flight and wait for their sink deliveries. No operations
/// endpoints (see [`serve_with`]); connection limits are the defaults
/// ([`ConnectionLimits::default`]).
pub async fn serve(
    listener: TcpListener,
    relay: Relay,
    shutdown: CancellationToken,
) -> Result<(), RelayError> {
    let listeners = Listeners::data_only(listener);
    serve_with(
        listeners,
        None,
        relay,
        ConnectionLimits::default(),
        shutdown,
    )
    .await
}

/// Like [`serve`], over TLS with `tls` (see [`crate::tls::server_config`]).
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    relay: Relay,
    shutdown: CancellationToken,
) -> Result<(), RelayError> {
    serve_with(
        Listeners::data_only(listener),
        Some(tls),
        relay,
        ConnectionLimits::default(),
        shutdown,
    )
    .await
}

/// Serve the relay on `listeners`, uploads over TLS when `tls` is given
/// (the operations listener stays plain HTTP), with the connection bounds
/// `limits` (see [`crate::connections`]), until
/// `shutdown`; then drain and wait for the sink deliveries.
pub async fn serve_with(
    listeners: Listeners,
    tls: Option<Arc<rustls::ServerConfig>>,
    relay: Relay,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> Result<(), RelayError> {
    let name = |l: &TcpListener| {
        l.local_addr()
            .map_or_else(|_| "unknown".to_owned(), |a| a.to_string())
    };
    let addr = name(&listeners.data);
    let ops_addr = listeners
        .ops
        .as_ref()
        .map_or_else(|| "none".to_owned(), name);
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(%addr, ops = %ops_addr, scheme, sinks = ?relay.sink_names(), max_connections = limits.max_connections, "relay listening");
    relay.spawn_pruner(shutdown.clone());
    let stats = Arc::new(ConnectionStats::default());
    let app = router(relay.clone()).layer(Extension(ServerState {
        body_timeout: limits.body_timeout,
    }));
    let ops_app = ops_router(relay.clone(), stats.clone());
    let ops_limits = ConnectionLimits {
        max_connections: OPS_MAX_CONNECTIONS,
        ..limits.clone()
    };
    let data = crate::connections::run(
        listeners.data,
        tls.map(tokio_rustls::TlsAcceptor::from),
        app,
        limits,
        stats,
        shutdown.clone(),
    );
    let ops = async move {
        if let Some(listener) = listeners.ops {
            let stats = Arc::new(ConnectionStats::default());
            crate::connections::run(listener, None, ops_app, ops_limits, stats, shutdown).await;
        }
    };
    tokio::join!(data, ops);
    relay.drain().await;
    info!(%addr, "relay stopped");
    Ok(())
}

/// What the connection layer lends the handlers.
#[derive(Clone)]
struct ServerState {
    body_timeout: Duration,
}

/// The upload route, for embedding the relay in another axum app. Handlers
/// need `ConnectInfo<Peer>`: serve with
/// `into_make_service_with_connect_info::<Peer>`.
pub fn router(relay: Relay) -> Router {
    let body_limit = relay.limits().max_compressed_bytes;
    Router::new()
        .route("/v1/batches", post(post_batch))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(relay)
}

/// The operations routes: `/healthz` (the process is up), `/readyz` (every
/// sink answers), `/metrics` (Prometheus text, with the upload listener's
/// connection counters from `stats`).
pub fn ops_router(relay: Relay, stats: Arc<ConnectionStats>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(Extension(stats))
        .with_state(relay)
}

/// `GET /readyz`: 200 when every configured sink answers its probe, else
/// 503 naming each unready sink and why (`/healthz` only says the process
/// is up).
async fn readyz(State(relay): State<Relay>) -> Response {
    let unready = relay.unready_sinks().await;
    if unready.is_empty() {
        let body = json!({ "ready": true, "sinks": relay.sink_names() });
        return (StatusCode::OK, Json(body)).into_response();
    }
    let sinks: Vec<_> = unready
        .iter()
        .map(|(sink, e)| json!({ "sink": sink, "message": e.to_string() }))
        .collect();
    tracing::debug!(unready = ?sinks, "readiness probe failed");
    let body = json!({ "ready": false, "unready": sinks });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

async fn metrics(
    State(relay): State<Relay>,
    Extension(stats): Extension<Arc<ConnectionStats>>,
) -> impl IntoResponse {
    let mut page = relay.render_metrics();
    stats.render(&mut page);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        page,
    )
}

/// A refused request: status, outcome label, message, optional decoder reason.
struct Rejection {
    outcome: Outcome,
    message: String,
    reason: Option<&'static str>,
    /// `Retry-After` seconds, for 429 and 503.
    retry_after: Option<u64>,
}

impl Rejection {
    fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Rejection {
            outcome,
            message: message.into(),
            reason: None,
            retry_after: (outcome == Outcome::Unavailable).then_some(u64::from(RETRY_AFTER_SECS)),
        }
    }

    fn status(&self) -> StatusCode {
        match self.outcome {
            Outcome::Accepted => StatusCode::OK,
            Outcome::Unauthorized => StatusCode::UNAUTHORIZED,
            Outcome::Forbidden => StatusCode::FORBIDDEN,
            Outcome::Malformed => StatusCode::BAD_REQUEST,
            Outcome::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Outcome::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            Outcome::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Outcome::Throttled => StatusCode::TOO_MANY_REQUESTS,
            Outcome::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Outcome::UnknownTable => StatusCode::CONFLICT,
        }
    }

    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.outcome.as_str(), "message": self.message });
        if let Some(reason) = self.reason {
            body["reason"] = reason.into();
        }
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        if self.outcome == Outcome::Unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

async fn post_batch(
    State(relay): State<Relay>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    server: Option<Extension<ServerState>>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let body_timeout = server.map(|Extension(s)| s.body_timeout);
    let outcome = match accept_batch(&relay, peer, &headers, request, body_timeout).await {
        Ok(answer) => {
            relay.metrics().request(Outcome::Accepted);
            return answer.into_response();
        }
        Err(rejection) => rejection,
    };
    relay.metrics().request(outcome.outcome);
    relay.metrics().rejected(
        outcome.status().as_u16(),
        outcome.reason.unwrap_or(outcome.outcome.as_str()),
    );
    outcome.into_response()
}

async fn accept_batch(
    relay: &Relay,
    peer: Peer,
    headers: &HeaderMap,
    request: Request,
    body_timeout: Option<Duration>,
) -> Result<Json<serde_json::Value>, Rejection> {
    let names = peer.certificate_names;
    let peer = peer.addr;
    let gateway = authenticate(relay, headers).map_err(|failure| {
        // Anyone can send these: logged at most once per interval.
        if let Some(suppressed) = relay.unauthorized_log() {
            warn!(%peer, reason = failure.label(), suppressed, "batch rejected: unauthorized (one line per 10 s; `suppressed` counts the others)");
        }
        Rejection {
            reason: Some(failure.label()),
            ..Rejection::new(Outcome::Unauthorized, failure.to_string())
        }
    })?;
    let gateway = gateway.to_owned();
    relay.metrics().gateway_seen(
        &gateway,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    );
    if let Some(names) = names.filter(|names| !names.contains(&gateway)) {
        warn!(%peer, gateway = ?gateway, certificate_names = ?names, "batch rejected: client certificate names another gateway");
        return Err(Rejection::new(
            Outcome::Forbidden,
            format!(
                "token belongs to gateway {gateway:?} but the client certificate names {names:?}"
            ),
        ));
    }
    let limit = relay.limits().max_compressed_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(len) = declared.filter(|&len| len > limit as u64) {
        warn!(%peer, gateway = ?gateway, content_length = len, limit, "batch rejected: body too large");
        return Err(Rejection::new(
            Outcome::TooLarge,
            format!(
                "body of {len} bytes exceeds the limit of {limit} bytes (max_compressed_bytes)"
            ),
        ));
    }
    if let Admission::Throttle { retry_after, bytes } = relay.admit(&gateway, declared.unwrap_or(0))
    {
        let secs = crate::fairness::retry_after_secs(retry_after);
        let (reason, what) = if bytes {
            ("bytes", "bytes (fairness.bytes_per_sec)")
        } else {
            ("requests", "requests (fairness.requests_per_sec)")
        };
        if let Some(suppressed) = relay.throttled_log() {
            warn!(%peer, gateway = ?gateway, reason, retry_after_s = secs, suppressed, "batch throttled: gateway over its share (one line per 10 s)");
        }
        return Err(Rejection {
            reason: Some(reason),
            retry_after: Some(secs),
            ..Rejection::new(
                Outcome::Throttled,
                format!("gateway {gateway:?} sends more {what} than the relay allows; retry after {secs} s"),
            )
        });
    }
    let read = Bytes::from_request(request, &());
    let read = match body_timeout {
        None => read.await,
        Some(deadline) => tokio::time::timeout(deadline, read).await.map_err(|_| {
            warn!(%peer, gateway = ?gateway, timeout_ms = deadline.as_millis() as u64, "batch rejected: body too slow");
            Rejection::new(
                Outcome::Malformed,
                format!(
                    "body not received within {} ms (server.body_timeout_ms)",
                    deadline.as_millis()
                ),
            )
        })?,
    };
    let body = read.map_err(|e| {
        let outcome = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Outcome::TooLarge
        } else {
            Outcome::Malformed
        };
        warn!(%peer, gateway = ?gateway, error = ?e.body_text(), "batch rejected: body not read");
        let message = if outcome == Outcome::TooLarge {
            format!("body exceeds the limit of {limit} bytes (max_compressed_bytes)")
        } else {
            format!("cannot read body: {}", e.body_text())
        };
        Rejection::new(outcome, message)
    })?;

    let body_bytes = body.len();
    if let Some(extra) = (body_bytes as u64).checked_sub(declared.unwrap_or(0)) {
        relay.charge_bytes(&gateway, extra);
    }
    let table = referenced_table(relay, peer, &gateway, &body).await?;
    let referenced = table.is_some();
    let (delivery, _budget) = relay.decode(body, table).await.map_err(|e| {
        use crate::admission::DecodeError;
        let (outcome, reason) = match &e {
            DecodeError::Wire(w) if w.is_too_large() => (Outcome::TooLarge, Some(w.reason())),
            DecodeError::Wire(w) => (Outcome::Malformed, Some(w.reason())),
            DecodeError::Series(_) => (Outcome::Malformed, Some("invalid")),
            DecodeError::Busy(_) => (Outcome::Unavailable, Some("busy")),
            DecodeError::Task(_) => (Outcome::Internal, None),
        };
        warn!(%peer, gateway = ?gateway, body_bytes, reason, error = %e, "batch rejected: not decoded");
        Rejection {
            retry_after: (outcome == Outcome::Unavailable).then_some(u64::from(RETRY_AFTER_SECS)),
            outcome,
            message: e.to_string(),
            reason,
        }
    })?;

    let batch = &delivery.batch;
    relay.metrics().received(batch.reading_count());
    if batch.gateway_id != gateway {
        warn!(%peer, gateway = ?gateway, batch_gateway = ?batch.gateway_id, seq = batch.seq, "batch rejected: names another gateway");
        return Err(Rejection::new(
            Outcome::Forbidden,
            format!(
                "token belongs to gateway {gateway:?} but the batch is from gateway {:?}",
                batch.gateway_id
            ),
        ));
    }

    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    if let Err(message) = crate::validation::check(batch, relay.time_window(), now_us) {
        warn!(%peer, gateway = ?gateway, seq = batch.seq, reason = ?message, "batch rejected: invalid readings");
        return Err(Rejection::new(Outcome::Invalid, message));
    }

    let (seq, readings, alarms) = (batch.seq, batch.reading_count(), batch.alarms.len());
    if referenced {
        relay.metrics().referenced_batch();
    }
    let mut delivery = delivery;
    delivery.origin = relay.origin(&gateway, now_us);
    let table = delivery.table.take();
    let answer = |mut body: serde_json::Value, table: Option<String>| {
        if let Some(id) = table {
            body["series_table"] = id.into();
        }
        Json(body)
    };
    match relay.deliver_once(delivery).await {
        Ok(Stored::Now) => {
            relay.metrics().accepted(readings, alarms);
            relay.metrics().gateway_stored(&gateway, seq);
            tracing::debug!(gateway = ?gateway, seq, readings, alarms, "batch accepted");
            let table = keep_table(relay, &gateway, table, referenced).await;
            Ok(answer(
                json!({ "seq": seq, "readings": readings, "alarms": alarms }),
                table,
            ))
        }
        Ok(Stored::Conflict) => {
            relay.metrics().accepted(readings, alarms);
            relay.metrics().gateway_stored(&gateway, seq);
            let table = keep_table(relay, &gateway, table, referenced).await;
            Ok(answer(
                json!({ "seq": seq, "readings": readings, "alarms": alarms, "conflict": true }),
                table,
            ))
        }
        Ok(Stored::Before) => {
            relay.metrics().gateway_stored(&gateway, seq);
            info!(gateway = ?gateway, seq, readings, alarms, "batch delivered before; answered without publishing again");
            let table = keep_table(relay, &gateway, table, referenced).await;
            Ok(answer(
                json!({ "seq": seq, "readings": readings, "alarms": alarms, "duplicate": true }),
                table,
            ))
        }
        Err(e) => {
            warn!(gateway = ?gateway, seq, readings, alarms, error = ?e.to_string(), "batch not delivered, gateway will retry");
            Err(Rejection::new(
                Outcome::Unavailable,
                format!("batch not stored: {e}"),
            ))
        }
    }
}

/// The series table a referenced (v7) batch names, from the ledger;
/// `None` for a self-contained batch. 409 (reason `unknown_series_table`)
/// when the relay does not hold it, 503 when the ledger cannot be read,
/// both before anything is decompressed. A body whose prefix is broken
/// passes through, for the decoder to name what is wrong.
async fn referenced_table(
    relay: &Relay,
    peer: std::net::SocketAddr,
    gateway: &str,
    body: &[u8],
) -> Result<Option<Arc<[u8]>>, Rejection> {
    let Ok(Some(id)) = edge_wire::codec::reference::referenced_id(body) else {
        return Ok(None);
    };
    let hex = edge_wire::codec::reference::hex(&id);
    match relay.ledger().series_table(gateway, &id).await {
        Ok(Some(table)) => Ok(Some(table)),
        Ok(None) => {
            // Expected once per table and relay; a gateway that keeps
            // naming unknown tables is logged at most once per 10 s.
            if let Some(suppressed) = relay.unknown_table_log() {
                info!(%peer, gateway = ?gateway, series_table = %hex, suppressed, "batch names a series table this relay does not hold; the gateway sends it again with the table (one line per 10 s)");
            }
            Err(Rejection {
                reason: Some("unknown_series_table"),
                ..Rejection::new(
                    Outcome::UnknownTable,
                    format!("series table {hex} is not held by this relay; send the batch with its series table"),
                )
            })
        }
        Err(e) => {
            warn!(%peer, gateway = ?gateway, series_table = %hex, error = %e, "series table lookup failed; the gateway will retry");
            Err(Rejection {
                retry_after: Some(u64::from(RETRY_AFTER_SECS)),
                ..Rejection::new(
                    Outcome::Unavailable,
                    format!("series table {hex} could not be looked up: {e}"),
                )
            })
        }
    }
}

/// Keep the series table of a delivered batch, so the gateway may name
/// it from now on; the hex id to put in the answer, or `None` when there
/// is none or it could not be kept (the batch is delivered either way; the
/// gateway then keeps sending the table). A referenced batch's table is
/// held already.
async fn keep_table(
    relay: &Relay,
    gateway: &str,
    table: Option<edge_wire::codec::reference::SeriesTable>,
    referenced: bool,
) -> Option<String> {
    let table = table?;
    let hex = edge_wire::codec::reference::hex(&table.id);
    if referenced {
        return Some(hex);
    }
    let now_ms = crate::ledger::now_ms();
    match relay
        .ledger()
        .keep_series_table(gateway, &table, now_ms)
        .await
    {
        Ok(crate::ledger::tables::Kept::Written) => {
            relay.metrics().series_table_kept();
            Some(hex)
        }
        Ok(crate::ledger::tables::Kept::Held) => Some(hex),
        Ok(crate::ledger::tables::Kept::TooLarge) => None,
        Err(error) => {
            warn!(gateway = ?gateway, series_table = %hex, %error, "series table not kept; the gateway keeps sending it with every batch");
            None
        }
    }
}

/// Why a request names no gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum AuthFailure {
    #[error("missing Authorization header")]
    Missing,
    #[error("Authorization is not \"Bearer <token>\"")]
    NotBearer,
    #[error("unknown token")]
    UnknownToken,
}

impl AuthFailure {
    /// The `reason` label of `edge_relay_rejected_total`.
    fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing_token",
            AuthFailure::NotBearer => "not_bearer",
            AuthFailure::UnknownToken => "unknown_token",
        }
    }
}

/// The gateway of the request's bearer token, or why there is none.
fn authenticate<'r>(relay: &'r Relay, headers: &HeaderMap) -> Result<&'r str, AuthFailure> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthFailure::Missing)?
        .as_bytes();
    let (scheme, token) = value
        .iter()
        .position(|&b| b == b' ')
        .map(|i| (&value[..i], value[i + 1..].trim_ascii()))
        .ok_or(AuthFailure::NotBearer)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || token.is_empty() {
        return Err(AuthFailure::NotBearer);
    }
    relay.authenticate(token).ok_or(AuthFailure::UnknownToken)
}
