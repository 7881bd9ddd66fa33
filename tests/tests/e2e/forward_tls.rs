//! The forwarder over HTTPS with a client certificate, to the real relay.
//!
//! The relay has no TLS listener of its own (TLS is terminated in front of
//! it in production), so the test puts a TLS terminator in front of it:
//! tokio-rustls with a server certificate made by rcgen at test time (the
//! PKI of [`super::mqtt_tls`]), requiring a client certificate from the same
//! CA, copying bytes to the relay's plain port. The agent's side is built
//! from config text, so `[uplink] ca_file`, `client_cert_file` and
//! `client_key_file` are what is tested.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use edge_agent::config::{AgentConfig, UplinkConfig};
use edge_agent::forward::{Outcome, Uploader};
use edge_agent::spool::SharedSpool;
use edge_agent::stats::AgentStats;
use edge_relay::config::{GatewayConfig, RelayConfig};
use edge_relay::Relay;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::forward::{eventually, fill_spool, seqs_left, start, until_empty_then_stop};
use super::mqtt_tls::Pki;

const GATEWAY: &str = "gw-fwd";
const TOKEN: &str = "e2e-fwd-tls-token-0123456789";
const READINGS_PER_BATCH: usize = 10;

/// The relay in-process on a plain loopback port, its file sink in `dir`.
async fn start_relay(dir: &Path) -> anyhow::Result<(SocketAddr, CancellationToken)> {
    let relay = Relay::from_config(RelayConfig::new(
        dir,
        vec![GatewayConfig::with_token(GATEWAY, TOKEN)],
    ))?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    tokio::spawn(edge_relay::serve(listener, relay, stop.clone()));
    Ok((addr, stop))
}

/// A TLS terminator for `upstream` with the PKI's server certificate,
/// requiring a client certificate signed by its CA; returns its address.
async fn start_terminator(pki: &Pki, upstream: SocketAddr) -> anyhow::Result<SocketAddr> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.path("ca.pem"))? {
        roots.add(cert?)?;
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
    let certs =
        CertificateDer::pem_file_iter(pki.path("server.pem"))?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(pki.path("server.key"))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake (the wrong-CA case) just ends here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut plain) = TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    Ok(addr)
}

/// `[uplink]` from config text: https to `addr`, trusting `ca_file`, with
/// the PKI's client certificate.
fn uplink(addr: SocketAddr, ca_file: &Path, pki: &Pki) -> anyhow::Result<UplinkConfig> {
    let text = format!(
        r#"gateway_id = "{GATEWAY}"
[spool]
path = "/unused/spool.db"
[uplink]
url = "https://{addr}/v1/batches"
token = "{TOKEN}"
retry_initial_ms = 50
retry_max_ms = 200
shutdown_drain_ms = 200
ca_file = {ca_file:?}
client_cert_file = {:?}
client_key_file = {:?}
[[simulated]]
name = "unused"
mean = 1.0
"#,
        pki.path("client.pem"),
        pki.path("client.key"),
    );
    Ok(AgentConfig::parse(&text, "agent.toml")?.uplink)
}

/// The PKI, a work directory, the relay's directory in it, the TLS
/// terminator's address and the relay's stop token.
async fn setup() -> anyhow::Result<(
    Pki,
    tempfile::TempDir,
    std::path::PathBuf,
    SocketAddr,
    CancellationToken,
)> {
    let pki = Pki::make()?;
    let work = tempfile::tempdir()?;
    let relay_dir = work.path().join("relay");
    std::fs::create_dir_all(&relay_dir)?;
    let (relay_addr, stop_relay) = start_relay(&relay_dir).await?;
    let tls_addr = start_terminator(&pki, relay_addr).await?;
    Ok((pki, work, relay_dir, tls_addr, stop_relay))
}

fn relayed_readings(relay_dir: &Path) -> usize {
    std::fs::read_to_string(relay_dir.join("readings.jsonl"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_reach_the_relay_over_https_with_a_client_certificate() -> anyhow::Result<()> {
    let (pki, work, relay_dir, tls_addr, stop_relay) = setup().await?;

    let spool = SharedSpool::new(fill_spool(&work.path().join("spool.db"), 6)?);
    let stats = Arc::new(AgentStats::default());
    let (stop, task) = start(&spool, uplink(tls_addr, &pki.path("ca.pem"), &pki)?, &stats);
    until_empty_then_stop(&spool, stop, task).await?;

    assert_eq!(stats.batches_forwarded.get(), 6);
    assert_eq!(stats.upload_failures.get(), 0);
    let dir = relay_dir.clone();
    eventually(
        "readings in the relay's file",
        Duration::from_secs(10),
        || {
            let dir = dir.clone();
            async move { Ok(relayed_readings(&dir) == 6 * READINGS_PER_BATCH) }
        },
    )
    .await?;
    stop_relay.cancel();
    Ok(())
}

/// A relay whose certificate does not chain to `ca_file`: every upload is a
/// counted failure whose reason says why, and the batches stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_certificate_from_another_ca_is_a_counted_failure_and_batches_stay(
) -> anyhow::Result<()> {
    let (pki, work, relay_dir, tls_addr, stop_relay) = setup().await?;
    let wrong = uplink(tls_addr, &pki.path("other-ca.pem"), &pki)?;

    let outcome = Uploader::new(&wrong, GATEWAY)
        .map_err(anyhow::Error::msg)?
        .send(b"not even a batch".to_vec())
        .await;
    let Outcome::Retry { reason, .. } = outcome else {
        panic!("expected a transient failure, got {outcome:?}");
    };
    assert!(
        reason.contains("invalid peer certificate") && reason.contains("UnknownIssuer"),
        "{reason}"
    );

    let spool = SharedSpool::new(fill_spool(&work.path().join("spool.db"), 3)?);
    let stats = Arc::new(AgentStats::default());
    let (stop, task) = start(&spool, wrong, &stats);
    let counted = stats.clone();
    eventually("upload failures counted", Duration::from_secs(10), || {
        let counted = counted.clone();
        async move { Ok(counted.upload_failures.get() >= 2) }
    })
    .await?;
    stop.cancel();
    task.await?;
    assert_eq!(seqs_left(&spool).await?.len(), 3);
    assert_eq!(stats.batches_forwarded.get(), 0);
    assert_eq!(relayed_readings(&relay_dir), 0);
    stop_relay.cancel();
    Ok(())
}
