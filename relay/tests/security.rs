//! What an attacker on the network can try, through HTTP(S) against the real
//! relay: missing, wrong, revoked and foreign tokens; a decompression bomb;
//! CBOR declaring a huge length; deep nesting; mutual TLS with and without
//! the right client certificate. Each gets its documented status and a
//! message naming the limit or the reason, and the relay answers `/healthz`
//! afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_relay::auth::TokenHash;
use edge_relay::{serve_tls, Relay, TlsConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::{batch, config, encoded, start, Running, TOKEN_1, TOKEN_2};

async fn status_and_error(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn assert_healthy(relay: &Running) {
    let r = relay
        .client
        .get(relay.ops_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn tokens_no_wrong_revoked_and_foreign() {
    let (mut cfg, dir) = config();
    // gw-1 is mid-rotation: an old and a new token are both active.
    let old = "old-token-of-gateway-one";
    cfg.gateways[0].tokens.push(TokenHash::of(old.as_bytes()));
    let relay = start(cfg.clone(), dir).await;
    let body = encoded(&batch("gw-1", 1));
    let (status, error) = status_and_error(relay.post(None, body.clone()).await).await;
    assert_eq!(
        (status, error["message"].as_str()),
        (401, Some("missing Authorization header"))
    );
    let (status, error) = status_and_error(
        relay
            .post(Some("not-a-token-of-anyone"), body.clone())
            .await,
    )
    .await;
    assert_eq!(
        (status, error["message"].as_str()),
        (401, Some("unknown token"))
    );
    let (status, error) = status_and_error(relay.post(Some(TOKEN_2), body.clone()).await).await;
    assert_eq!(status, 403, "{error}");
    let (status, _) = status_and_error(relay.post(Some(old), body.clone()).await).await;
    assert_eq!(status, 200);
    assert_healthy(&relay).await;
    let dir = relay.stop().await;

    // Revocation: the old hash removed from the list, the new token still works.
    cfg.gateways[0].tokens.pop();
    let relay = start(cfg, dir).await;
    let body = encoded(&batch("gw-1", 2));
    let (status, error) = status_and_error(relay.post(Some(old), body.clone()).await).await;
    assert_eq!(
        (status, error["message"].as_str()),
        (401, Some("unknown token"))
    );
    let (status, _) = status_and_error(relay.post(Some(TOKEN_1), body).await).await;
    assert_eq!(status, 200);
    assert_healthy(&relay).await;
    relay.stop().await;
}

/// A zstd frame of `blocks` RLE blocks of 128 KiB zeros each (4 bytes per
/// block on the wire), behind the batch prefix; with `declare`, the frame
/// header claims 16 GiB of content.
fn bomb(blocks: u64, declare: bool) -> Vec<u8> {
    let mut out = b"EDGB".to_vec();
    out.extend_from_slice(&edge_wire::FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&0xFD2F_B528u32.to_le_bytes());
    if declare {
        // Frame_Content_Size_Flag 3 (8 bytes), no single segment: window byte follows.
        out.push(0b1100_0000);
    } else {
        out.push(0);
    }
    out.push(7 << 3); // window 2^17 = 128 KiB
    if declare {
        out.extend_from_slice(&(16u64 << 30).to_le_bytes());
    }
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        let header = last | (1 << 1) | (131_072 << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.push(0);
    }
    out
}

#[tokio::test]
async fn decompression_bombs_get_413_quickly() {
    let (cfg, dir) = config();
    let relay = start(cfg, dir).await;
    // 1 KiB declaring 16 GiB; 256 KiB that would stream out 8 GiB.
    for (body, what) in [
        (bomb(256, true), "declared"),
        (bomb(65_536, false), "streamed"),
    ] {
        let size = body.len();
        let started = Instant::now();
        let (status, error) = status_and_error(relay.post(Some(TOKEN_1), body).await).await;
        assert_eq!(status, 413, "{what}: {error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("max_decompressed_bytes"),
            "{what}: {error}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} bomb of {size} bytes took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(bomb(256, true).len(), 1_044, "about 1 KiB");
    assert_healthy(&relay).await;
    relay.stop().await;
}

#[tokio::test]
async fn hostile_cbor_gets_400_with_the_reason() {
    let (cfg, dir) = config();
    let relay = start(cfg, dir).await;
    // The decoder is positional (wire/src/codec/read.rs): it checks each
    // declared length against the position's expectation and the limits
    // before allocating, and refuses any item of the wrong type, so nesting
    // never gets deeper than the format's own.
    // A real document whose gateway id "gw-1" (CBOR 0x64 "gw-1") is replaced
    // by a text string header declaring 2^64-1 bytes; all in v2 documents.
    let plain = batch("gw-1", 1);
    let valid = edge_wire::codec::encode_version(&plain, plain.legacy_version()).unwrap();
    let doc = edge_wire::codec::envelope::decompress(&valid[6..], &Default::default()).unwrap();
    let at = doc.windows(5).position(|w| w == b"\x64gw-1").unwrap();
    let inner_huge_text = [&doc[..at], &[0x7b], &[0xff; 8], &doc[at + 5..]].concat();
    let cases: [(Vec<u8>, &str, u16, &str); 4] = [
        (
            [&[0x9b][..], &[0xff; 8]].concat(),
            "array declaring 2^64-1 items",
            400,
            "array of 18446744073709551615 items, expected 4",
        ),
        (
            inner_huge_text,
            "gateway id declaring 2^64-1 bytes",
            413,
            "max_string_bytes",
        ),
        (
            [vec![0x81; 100_000], vec![0x00]].concat(),
            "100 000 nested arrays",
            400,
            "array of 1 items, expected 4",
        ),
        (
            [&[0x5a][..], &[0xff; 4], &[0; 16]].concat(),
            "byte string declaring 4 GiB",
            400,
            "unexpected type bytes at position 0: expected array",
        ),
    ];
    for (doc, what, expected, message) in cases {
        let body = edge_wire::codec::envelope::seal_version(&doc, 2).unwrap();
        let (status, error) = status_and_error(relay.post(Some(TOKEN_1), body).await).await;
        assert_eq!(status, expected, "{what}: {error}");
        assert!(error["reason"].is_string(), "{what}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{what}: {error}"
        );
    }
    assert_healthy(&relay).await;
    let metrics = relay.metrics().await;
    assert!(metrics.contains("outcome=\"malformed\"} 3"), "{metrics}");
    relay.stop().await;
}

#[tokio::test]
async fn invalid_readings_reject_the_whole_batch_with_422() {
    let (mut cfg, dir) = config();
    cfg.time_window.max_past = Duration::from_secs(3600);
    let relay = start(cfg, dir).await;
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let at_now = |mut b: edge_wire::Batch| {
        for s in &mut b.series {
            for p in &mut s.points {
                p.ts_us = now_us;
            }
        }
        b.alarms.iter_mut().for_each(|a| a.ts_us = now_us);
        b
    };
    let mut nan_good = at_now(batch("gw-1", 1));
    nan_good.series[1].points[0].value = f64::NAN;
    nan_good.series[1].points[0].quality = edge_wire::Quality::Good;
    let mut future = at_now(batch("gw-1", 2));
    future.series[0].points[1].ts_us = now_us + 3_600_000_000;
    let old = batch("gw-1", 3); // TS0: more than an hour ago
    let mut bad_name = at_now(batch("gw-1", 4));
    bad_name.series[0].name = "press 3\noil".into();
    for (b, expected) in [
        (nan_good, "value NaN with quality good"),
        (future, "max_future_secs=300"),
        (old, "max_past_hours=1"),
        (bad_name, "name must be ASCII letters"),
    ] {
        let (status, error) = status_and_error(relay.post(Some(TOKEN_1), encoded(&b)).await).await;
        assert_eq!(status, 422, "{expected}: {error}");
        assert_eq!(error["error"], "invalid");
        assert!(
            error["message"].as_str().unwrap().contains(expected),
            "{error}"
        );
    }
    // Nothing of the rejected batches was published; a valid one still is
    // (its NaN has quality bad, which is allowed).
    assert_eq!(relay.file("readings.jsonl"), "");
    let (status, _) = status_and_error(
        relay
            .post(Some(TOKEN_1), encoded(&at_now(batch("gw-1", 5))))
            .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(relay.file("readings.jsonl").lines().count(), 5);
    assert!(relay.metrics().await.contains("outcome=\"invalid\"} 4"));
    relay.stop().await;
}

/// Everything the relay logs while `body` runs, at debug level.
async fn logs_of<F: std::future::Future<Output = ()>>(body: F) -> String {
    let buffer = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || LogWriter(sink.clone()))
        .finish();
    // current_thread runtime: the relay's tasks run on this thread.
    let guard = tracing::subscriber::set_default(subscriber);
    body.await;
    drop(guard);
    let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
    text
}

struct LogWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_hold_no_tokens_and_escape_network_strings() {
    let logs = logs_of(async {
        let (cfg, dir) = config();
        let relay = start(cfg, dir).await;
        let wrong = "wrong-secret-token-0123456789";
        assert_eq!(
            relay
                .post(Some(wrong), encoded(&batch("gw-1", 1)))
                .await
                .status(),
            401
        );
        // A gateway id that tries to forge a log line.
        let forged = "gw-2\nlevel=INFO forged line";
        let r = relay.post(Some(TOKEN_1), encoded(&batch(forged, 1))).await;
        assert_eq!(r.status(), 403);
        assert_eq!(
            relay
                .post(Some(TOKEN_1), encoded(&batch("gw-1", 2)))
                .await
                .status(),
            200
        );
        relay.stop().await;
    })
    .await;
    assert!(
        logs.contains("batch rejected: names another gateway"),
        "{logs}"
    );
    for secret in [TOKEN_1, TOKEN_2, "wrong-secret-token-0123456789"] {
        assert!(!logs.contains(secret), "{secret} in logs:\n{logs}");
    }
    assert!(logs.contains(r#"gw-2\nlevel=INFO forged line"#), "{logs}");
    assert!(
        !logs.lines().any(|l| l.starts_with("level=INFO forged")),
        "{logs}"
    );
}

// ---- TLS ----

struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "test gateways CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_pem = ca.pem();
        std::fs::write(dir.path().join("ca.pem"), &ca_pem).unwrap();
        Pki { dir, ca_pem, ca }
    }

    /// (certificate PEM, key PEM) for `name`, signed by the CA.
    fn leaf(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn tls_config(&self, mutual: bool) -> TlsConfig {
        let (cert, key) = self.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth);
        let path = |name: &str| self.dir.path().join(name);
        std::fs::write(path("relay.pem"), cert).unwrap();
        std::fs::write(path("relay.key"), key).unwrap();
        TlsConfig {
            cert_file: path("relay.pem"),
            key_file: path("relay.key"),
            client_ca_file: mutual.then(|| path("ca.pem")),
        }
    }

    /// A client trusting the CA, with the certificate of `gateway`.
    fn client(&self, gateway: Option<&str>) -> HttpsClient {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match gateway {
            None => builder.with_no_client_auth(),
            Some(name) => {
                let (cert, key) = self.leaf(name, ExtendedKeyUsagePurpose::ClientAuth);
                let cert = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
                builder.with_client_auth_cert(vec![cert], key).unwrap()
            }
        };
        HttpsClient(Arc::new(config))
    }
}

/// A bare HTTP/1.1-over-TLS client. Not reqwest: its rustls features would
/// be unified into every workspace crate's reqwest in `cargo test
/// --workspace`, and the agent's plain-HTTP clients would then need a
/// process-wide crypto provider.
struct HttpsClient(Arc<rustls::ClientConfig>);

impl HttpsClient {
    /// One request on a fresh connection: (status, JSON body or null).
    async fn send(
        &self,
        base: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> std::io::Result<(u16, Value)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(self.0.clone())
            .connect(name, tcp)
            .await?;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await?;
        tls.write_all(body).await?;
        let mut answer = Vec::new();
        match tls.read_to_end(&mut answer).await {
            Ok(_) => {}
            // A close without close_notify after a complete answer is fine.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
            Err(e) => return Err(e),
        }
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no HTTP answer: {text:?}")))?;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
    }

    /// An upload without a token: 401 once the TLS relay answers.
    async fn probe(&self, base: &str) -> std::io::Result<u16> {
        Ok(self.send(base, "POST", "/v1/batches", None, b"").await?.0)
    }
}

/// The relay over TLS on 127.0.0.1:0; ready when an upload without a token
/// gets 401 through `probe`.
async fn start_tls(
    tls: &TlsConfig,
    probe: &HttpsClient,
) -> (
    String,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), edge_relay::RelayError>>,
    tempfile::TempDir,
) {
    let (cfg, dir) = config();
    let relay = Relay::from_config(cfg).unwrap();
    let server = edge_relay::tls::server_config(tls).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_tls(listener, server, relay, shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if probe.probe(&base).await.is_ok_and(|status| status == 401) {
            return (base, shutdown, task, dir);
        }
        assert!(Instant::now() < deadline, "TLS relay did not become ready");
        tokio::task::yield_now().await;
    }
}

async fn post(client: &HttpsClient, base: &str, token: &str, gateway: &str) -> (u16, Value) {
    let body = encoded(&batch(gateway, 1));
    client
        .send(base, "POST", "/v1/batches", Some(token), &body)
        .await
        .unwrap()
}

#[tokio::test]
async fn https_without_client_certificates() {
    let pki = Pki::new();
    let tls = pki.tls_config(false);
    let client = pki.client(None);
    let (base, shutdown, task, _dir) = start_tls(&tls, &client).await;
    assert_eq!(post(&client, &base, TOKEN_1, "gw-1").await.0, 200);
    assert_eq!(
        post(&client, &base, "wrong-token-0123456789", "gw-1")
            .await
            .0,
        401
    );
    // Plain HTTP to the TLS port gets no answer.
    let plain = base.replace("https://", "http://");
    assert!(reqwest::Client::new()
        .post(format!("{plain}/v1/batches"))
        .send()
        .await
        .is_err());
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn mutual_tls_certificate_must_name_the_tokens_gateway() {
    let pki = Pki::new();
    let tls = pki.tls_config(true);
    let gw1 = pki.client(Some("gw-1"));
    let (base, shutdown, task, _dir) = start_tls(&tls, &gw1).await;
    assert_eq!(post(&gw1, &base, TOKEN_1, "gw-1").await.0, 200);
    // gw-1's certificate with gw-2's token and batch.
    let (status, error) = post(&gw1, &base, TOKEN_2, "gw-2").await;
    assert_eq!(status, 403, "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("client certificate"),
        "{error}"
    );
    // No client certificate: the handshake is refused.
    let anonymous = pki.client(None);
    let refused = anonymous.probe(&base).await;
    assert!(refused.is_err(), "{refused:?}");
    // A certificate from another CA is refused too.
    let stranger = Pki::new();
    let foreign = Pki {
        ca_pem: pki.ca_pem.clone(), // trusts our server
        ..stranger
    }
    .client(Some("gw-1"));
    assert!(foreign.probe(&base).await.is_err());
    // Still answering the rightful gateway (401: the probe has no token).
    assert_eq!(gw1.probe(&base).await.unwrap(), 401);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[test]
fn tls_config_errors_name_the_key_and_the_file() {
    let pki = Pki::new();
    let mut tls = pki.tls_config(true);
    tls.cert_file = pki.dir.path().join("missing.pem");
    let err = edge_relay::tls::server_config(&tls)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("tls.cert_file ") && err.contains("missing.pem"),
        "{err}"
    );
    let mut tls = pki.tls_config(true);
    tls.key_file = pki.dir.path().join("ca.pem");
    let err = edge_relay::tls::server_config(&tls)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("tls.key_file ") && err.contains("ca.pem"),
        "{err}"
    );
    let mut tls = pki.tls_config(true);
    tls.client_ca_file = Some(pki.dir.path().join("relay.key"));
    let err = edge_relay::tls::server_config(&tls)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("tls.client_ca_file ") && err.contains("relay.key"),
        "{err}"
    );
}
