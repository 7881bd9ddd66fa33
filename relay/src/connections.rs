//! The relay's connections: how many may be open, how long each may take
//! to say something, and how they end on shutdown. [`crate::server`] hands
//! its router to [`run`]; this module owns the accept loop and the hyper
//! HTTP/1 connections.
//!
//! Guarantees:
//! - at most [`ConnectionLimits::max_connections`] connections are open
//!   (file descriptors stay well below the process limit). When the table is
//!   full, a new connection evicts the oldest one that has no request in
//!   flight (idle keep-alive, or a head not yet complete), so idle or
//!   half-open connections cannot lock a gateway out; with every slot busy,
//!   new connections wait in the kernel's backlog;
//! - a request head not complete within `header_timeout` closes the
//!   connection (hyper's `header_read_timeout`; it also bounds the idle wait
//!   for the next request on a keep-alive connection);
//! - the TLS handshake is bounded by `tls_handshake_timeout`;
//! - an accept error (EMFILE, ENFILE, ...) backs off for [`ACCEPT_BACKOFF`]
//!   instead of spinning, is counted, and logged at most once a second;
//! - on shutdown the listener is closed at once, idle and half-open
//!   connections are closed at once, requests in flight get up to
//!   `shutdown_grace` to finish, then the rest are dropped.
//!
//! Not here: routes and status codes ([`crate::server`]), the body read
//! deadline (the handler applies `body_timeout`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower_service::Service as _;

use crate::tls::{certificate_names, Peer};

/// How long the accept loop pauses after an accept error.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Default of `server.max_connections`: well below a 1024 descriptor limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Default of `server.header_timeout_ms`.
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Default of `server.body_timeout_ms`.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;
/// Default of `server.tls_handshake_timeout_ms`.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Default of `server.shutdown_grace_ms`.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 15_000;

/// Bounds on connections (`[server]` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest wait for a complete request head (and for the next request
    /// on an idle keep-alive connection).
    pub header_timeout: Duration,
    /// Longest a request body may take to arrive.
    pub body_timeout: Duration,
    /// Longest a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// After SIGTERM, longest wait for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: Duration::from_millis(DEFAULT_HEADER_TIMEOUT_MS),
            body_timeout: Duration::from_millis(DEFAULT_BODY_TIMEOUT_MS),
            tls_handshake_timeout: Duration::from_millis(DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS),
            shutdown_grace: Duration::from_millis(DEFAULT_SHUTDOWN_GRACE_MS),
        }
    }
}

/// Counters of the connection layer, rendered on `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    open: AtomicU64,
    accepted: AtomicU64,
    accept_errors: AtomicU64,
    evicted: AtomicU64,
    tls_failed: AtomicU64,
    dropped_at_shutdown: AtomicU64,
}

impl ConnectionStats {
    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// The counters in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP edge_relay_connections_open Connections open now.\n# TYPE edge_relay_connections_open gauge\nedge_relay_connections_open {}",
            get(&self.open)
        );
        for (name, help, c) in [
            (
                "connections_accepted_total",
                "TCP connections accepted.",
                &self.accepted,
            ),
            (
                "accept_errors_total",
                "Accept errors (for example out of file descriptors); the loop backs off.",
                &self.accept_errors,
            ),
            (
                "connections_evicted_total",
                "Idle or half-open connections closed to make room under server.max_connections.",
                &self.evicted,
            ),
            (
                "tls_handshake_failures_total",
                "TLS handshakes that failed or timed out.",
                &self.tls_failed,
            ),
            (
                "connections_dropped_at_shutdown_total",
                "Connections still busy when server.shutdown_grace_ms ran out.",
                &self.dropped_at_shutdown,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP edge_relay_{name} {help}\n# TYPE edge_relay_{name} counter\nedge_relay_{name} {}",
                get(c)
            );
        }
    }
}

/// One open connection in the table.
struct Slot {
    /// A request is being answered.
    busy: Arc<AtomicBool>,
    /// Cancel to close the connection.
    close: CancellationToken,
}

/// The open connections, oldest first (ids increase).
#[derive(Default)]
struct Table {
    next: u64,
    slots: BTreeMap<u64, Slot>,
}

impl Table {
    /// Close the oldest connection with no request in flight; false if all are busy.
    fn evict_one(&mut self, stats: &ConnectionStats) -> bool {
        let victim = self
            .slots
            .iter()
            .find(|(_, s)| !s.busy.load(Ordering::Acquire))
            .map(|(&id, _)| id);
        match victim.and_then(|id| self.slots.remove(&id)) {
            Some(slot) => {
                slot.close.cancel();
                stats.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

/// Serve `app` on `listener` (TLS with `tls`) under `limits` until
/// `shutdown`, then drain as the module doc says.
pub async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: CancellationToken,
) {
    let table = Arc::new(Mutex::new(Table::default()));
    let released = Arc::new(tokio::sync::Notify::new());
    let mut tasks = JoinSet::new();
    let mut last_error_log: Option<Instant> = None;
    let mut unlogged_errors = 0u64;
    loop {
        // Make room before accepting, so descriptors stay bounded.
        loop {
            let full = {
                let mut t = table.lock().expect("connection table lock");
                t.slots.len() >= limits.max_connections && !t.evict_one(&stats)
            };
            if !full {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = released.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        while tasks.try_join_next().is_some() {}
        let (stream, addr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    unlogged_errors += 1;
                    if last_error_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(%error, errors = unlogged_errors, "TCP accept failed; backing off");
                        last_error_log = Some(Instant::now());
                        unlogged_errors = 0;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                    continue;
                }
            },
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let busy = Arc::new(AtomicBool::new(false));
        let close = CancellationToken::new();
        let id = {
            let mut t = table.lock().expect("connection table lock");
            let id = t.next;
            t.next += 1;
            t.slots.insert(
                id,
                Slot {
                    busy: busy.clone(),
                    close: close.clone(),
                },
            );
            id
        };
        stats.open.fetch_add(1, Ordering::Relaxed);
        let conn = Conn {
            app: app.clone(),
            limits: limits.clone(),
            stats: stats.clone(),
            busy,
            close,
            shutdown: shutdown.clone(),
        };
        let (table, released, tls, stats) =
            (table.clone(), released.clone(), tls.clone(), stats.clone());
        tasks.spawn(async move {
            conn.serve(stream, addr, tls).await;
            table
                .lock()
                .expect("connection table lock")
                .slots
                .remove(&id);
            stats.open.fetch_sub(1, Ordering::Relaxed);
            released.notify_one();
        });
    }
    drop(listener);
    // Idle and half-open connections close now (their tokens are children
    // of `shutdown`); requests in flight finish within the grace period.
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let left = tasks.len() as u64;
        stats.dropped_at_shutdown.fetch_add(left, Ordering::Relaxed);
        tracing::warn!(
            connections = left,
            grace_ms = limits.shutdown_grace.as_millis() as u64,
            "shutdown grace period over; dropping connections still busy"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// Marks a connection busy while a request is answered; unmarks on drop,
/// whether the request finished or its future was dropped.
struct Busy(Arc<AtomicBool>);

impl Busy {
    fn mark(flag: Arc<AtomicBool>) -> Busy {
        flag.store(true, Ordering::Release);
        Busy(flag)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// What one connection task needs.
struct Conn {
    app: Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    busy: Arc<AtomicBool>,
    /// Cancelled when the connection is evicted: close it at once.
    close: CancellationToken,
    shutdown: CancellationToken,
}

impl Conn {
    async fn serve(self, stream: TcpStream, addr: std::net::SocketAddr, tls: Option<TlsAcceptor>) {
        let _ = stream.set_nodelay(true);
        match tls {
            None => {
                let peer = Peer {
                    addr,
                    certificate_names: None,
                };
                self.http(stream, peer).await;
            }
            Some(acceptor) => {
                let handshake = tokio::select! {
                    _ = self.close.cancelled() => return,
                    _ = self.shutdown.cancelled() => return,
                    h = tokio::time::timeout(self.limits.tls_handshake_timeout, acceptor.accept(stream)) => h,
                };
                match handshake {
                    Ok(Ok(tls)) => {
                        let certificate_names = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|certs| certs.first())
                            .map(|cert| certificate_names(cert).into());
                        let peer = Peer {
                            addr,
                            certificate_names,
                        };
                        self.http(tls, peer).await;
                    }
                    Ok(Err(error)) => {
                        self.stats.tls_failed.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(peer = %addr, ?error, "TLS handshake failed");
                    }
                    Err(_) => {
                        self.stats.tls_failed.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(peer = %addr, "TLS handshake timed out");
                    }
                }
            }
        }
    }

    async fn http<I>(self, io: I, peer: Peer)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (app, busy) = (self.app, self.busy.clone());
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer.clone()));
                let mut app = app.clone();
                let busy = busy.clone();
                async move {
                    // Cleared on drop too: a request whose client vanished
                    // must not keep its connection from being evicted.
                    let _busy = Busy::mark(busy);
                    app.call(request.map(axum::body::Body::new)).await
                }
            },
        );
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(?error, "connection ended with an error");
                }
                return;
            }
            // Evicted: it had no request in flight; close at once.
            _ = self.close.cancelled() => return,
            _ = self.shutdown.cancelled() => {}
        }
        if !self.busy.load(Ordering::Acquire) {
            return; // idle or half-open: close at once
        }
        // A request in flight: hyper finishes it, then closes (bounded by
        // the caller's grace period).
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
}
