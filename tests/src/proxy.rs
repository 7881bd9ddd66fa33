//! A plain round-robin TCP load balancer for tests: each new connection goes
//! to the next backend that accepts it (a backend that is down is skipped),
//! as HAProxy's `balance roundrobin` or a cloud TCP load balancer would
//! route it, with no stickiness. Optionally it *loses answers*: every
//! `lose_every`-th chunk coming back from a backend is not forwarded and
//! both sides are closed instead, as when a 200 is lost on the way (the
//! backend did the work; the client must retry, and its retry lands on the
//! next backend).
//!
//! Blocking std threads: one for accepting, two per connection. It stops
//! accepting when the handle drops.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A running proxy.
pub struct RoundRobin {
    /// The port clients connect to, on 127.0.0.1.
    pub port: u16,
    shared: Arc<Shared>,
}

struct Shared {
    backends: Vec<SocketAddr>,
    next: AtomicUsize,
    lose_every: Option<u64>,
    chunks_back: AtomicU64,
    lost: AtomicU64,
    /// Connections per backend index.
    routed: Vec<AtomicU64>,
    stop: AtomicBool,
}

impl RoundRobin {
    /// Listen on a free loopback port and spread connections over the
    /// backends at `ports` (on 127.0.0.1).
    pub fn start(ports: &[u16], lose_every: Option<u64>) -> anyhow::Result<RoundRobin> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            backends: ports
                .iter()
                .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
                .collect(),
            next: AtomicUsize::new(0),
            lose_every,
            chunks_back: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            routed: ports.iter().map(|_| AtomicU64::new(0)).collect(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let s = s.clone();
                std::thread::spawn(move || s.route(client));
            }
        });
        Ok(RoundRobin { port, shared })
    }

    /// Answers not forwarded so far.
    pub fn answers_lost(&self) -> u64 {
        self.shared.lost.load(Ordering::SeqCst)
    }

    /// Connections sent to each backend so far, in the order of `ports`.
    pub fn routed(&self) -> Vec<u64> {
        self.shared
            .routed
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect()
    }
}

impl Shared {
    fn route(self: Arc<Self>, client: TcpStream) {
        let n = self.backends.len();
        let first = self.next.fetch_add(1, Ordering::SeqCst);
        let server = (0..n).find_map(|i| {
            let index = (first + i) % n;
            TcpStream::connect_timeout(&self.backends[index], Duration::from_secs(1))
                .ok()
                .map(|s| (index, s))
        });
        let Some((index, server)) = server else {
            // Every backend is down: the client sees the connection close.
            return;
        };
        self.routed[index].fetch_add(1, Ordering::SeqCst);
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(client_r), Ok(server_w)) = (client.try_clone(), server.try_clone()) else {
            return;
        };
        let up = std::thread::spawn(move || copy(client_r, server_w, None));
        copy(server, client, Some(&self));
        let _ = up.join();
    }
}

/// Copy `from` to `to` until either side closes; `lossy` drops a chunk
/// now and then (answers from the backend) and closes both.
fn copy(mut from: TcpStream, mut to: TcpStream, lossy: Option<&Shared>) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(s) = lossy {
            let k = s.chunks_back.fetch_add(1, Ordering::SeqCst) + 1;
            if s.lose_every.is_some_and(|every| k % every == 0) {
                s.lost.fetch_add(1, Ordering::SeqCst);
                break;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag. Connections already
        // routed end when their peers close them.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
