//! The spool invariant "a batch is deleted only after the relay answered
//! 2xx for it", through the real forwarder and a stub relay on port 0: a
//! relay answering 503 leaves the batch in the spool however often the
//! forwarder retries; the first 200 removes it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edge_agent::config::UplinkConfig;
use edge_agent::forward::Forwarder;
use edge_agent::spool::{Lane, SharedSpool, Spool};
use edge_agent::stats::AgentStats;
use edge_wire::{Batch, Point, Quality, Series};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Answer every request with 503 until `accept` is set, then with 200.
async fn stub_relay(listener: TcpListener, accept: Arc<AtomicBool>, requests: Arc<AtomicUsize>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let (accept, requests) = (accept.clone(), requests.clone());
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                // Read one request: headers, then Content-Length bytes.
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while buf.len() < end + 4 + len {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                buf.drain(..end + 4 + len);
                requests.fetch_add(1, Ordering::SeqCst);
                let status = if accept.load(Ordering::SeqCst) {
                    "200 OK"
                } else {
                    "503 Service Unavailable"
                };
                let reply = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                if conn.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_batch_leaves_the_spool_only_after_a_2xx() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(&dir.path().join("spool.db")).unwrap();
    let mut batch = Batch {
        gateway_id: "gw-1".into(),
        instance: None,
        seq: 0,
        created_us: 1,
        series: vec![Series {
            id: 0,
            name: "s".into(),
            unit: String::new(),
            tags: Default::default(),
            points: vec![Point {
                ts_us: 1,
                value: 1.5,
                quality: Quality::Good,
            }],
            reporting: None,
        }],
        alarms: vec![],
        gaps: Vec::new(),
        devices: Vec::new(),
    };
    let seq = spool.append(&mut batch, &[], Lane::Readings).unwrap();
    let spool = SharedSpool::new(spool);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    tokio::spawn(stub_relay(listener, accept.clone(), requests.clone()));

    let stats = Arc::new(AgentStats::default());
    let forwarder = Forwarder {
        spool: spool.clone(),
        uplink: UplinkConfig {
            timeout: Duration::from_secs(5),
            retry_initial: Duration::from_millis(5),
            retry_max: Duration::from_millis(20),
            shutdown_drain: Duration::from_secs(1),
            ..UplinkConfig::new(format!("http://127.0.0.1:{port}/v1/batches"), "t")
        },
        gateway_id: "gw-1".into(),
        stats: stats.clone(),
        wake: Arc::new(Notify::new()),
    };
    let drain = CancellationToken::new();
    let task = tokio::spawn(forwarder.run(drain.clone()));

    until("three refused uploads", || {
        requests.load(Ordering::SeqCst) >= 3
    })
    .await;
    let held = spool.call(|s| s.oldest()).await.unwrap();
    assert_eq!(held.map(|b| b.seq), Some(seq), "removed without a 2xx");
    assert_eq!(stats.batches_forwarded.get(), 0);

    accept.store(true, Ordering::SeqCst);
    until("the 2xx", || stats.batches_forwarded.get() == 1).await;
    assert_eq!(spool.call(|s| s.oldest()).await.unwrap(), None);
    drain.cancel();
    task.await.unwrap();
}
