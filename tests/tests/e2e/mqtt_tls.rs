//! The MQTT source over TLS and with MQTT 5, against Mosquitto, and the
//! connection settings (login, client id, keep-alive, session) as the
//! broker itself reports them in its log.
//!
//! The certificates are made at test time with rcgen: a CA, a server
//! certificate for 127.0.0.1 and a client certificate it signed, and a
//! second, unrelated CA. Mosquitto (OpenSSL) checks them independently of
//! rustls. The broker also has a plain listener, which the test publishes
//! on with `mosquitto_pub`, so only the agent's side speaks TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use edge_agent::config::AgentConfig;
use edge_agent::stats::AgentStats;
use edge_tests::{BrokerTls, Mosquitto};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::mqtt::{
    next_readings, publish, source_only_config, start_source, stop_source, wait_for,
};

/// PEM files of a test PKI in a temporary directory.
pub(super) struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub(super) fn make() -> anyhow::Result<Pki> {
        let dir = tempfile::tempdir()?;
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem);
        let ca = ca("edge-ingest e2e CA")?;
        write("ca.pem", ca.pem())?;
        let (cert, key) = leaf(&ca, "127.0.0.1", ExtendedKeyUsagePurpose::ServerAuth)?;
        write("server.pem", cert)?;
        write("server.key", key)?;
        let (cert, key) = leaf(&ca, "e2e-gw", ExtendedKeyUsagePurpose::ClientAuth)?;
        write("client.pem", cert)?;
        write("client.key", key)?;
        write("other-ca.pem", ca_pem("some other CA")?)?;
        Ok(Pki { dir })
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Mosquitto with a TLS listener that requires a client certificate.
    fn broker(&self, log_dir: &Path) -> anyhow::Result<Mosquitto> {
        Mosquitto::start_tls(
            log_dir,
            &BrokerTls {
                ca_file: &self.path("ca.pem"),
                cert_file: &self.path("server.pem"),
                key_file: &self.path("server.key"),
                require_certificate: true,
            },
        )
    }
}

fn ca(name: &str) -> anyhow::Result<CertifiedIssuer<'static, KeyPair>> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

fn ca_pem(name: &str) -> anyhow::Result<String> {
    Ok(ca(name)?.pem())
}

/// (certificate PEM, key PEM) for `name` (also its subject alternative
/// name: an IP address becomes an IP SAN), signed by `ca`.
fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    name: &str,
    usage: ExtendedKeyUsagePurpose,
) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![name.to_string()])?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, ca)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// One broker section over TLS (with the client certificate) on `port`.
fn tls_config(
    port: u16,
    protocol: &str,
    client_id: &str,
    ca_file: &Path,
    pki: &Pki,
) -> anyhow::Result<AgentConfig> {
    source_only_config(&format!(
        r#"
[[mqtt]]
host = "127.0.0.1"
port = {port}
protocol = "{protocol}"
client_id = "{client_id}"
[mqtt.tls]
ca_file = {ca_file:?}
client_cert_file = {:?}
client_key_file = {:?}
[[mqtt.subscriptions]]
topic = "tls/+/temp"
qos = 1
series = "{{2}}.temp"
"#,
        pki.path("client.pem"),
        pki.path("client.key"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_arrive_over_mutual_tls_with_mqtt_3_and_5() -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let pki = Pki::make()?;
    let broker = pki.broker(logs.path())?;
    let tls_port = broker.secured_port.expect("TLS listener");
    for (n, protocol) in ["3.1.1", "5"].into_iter().enumerate() {
        let client_id = format!("e2e-gw-tls-{n}");
        let config = tls_config(tls_port, protocol, &client_id, &pki.path("ca.pem"), &pki)?;
        let stats = Arc::new(AgentStats::default());
        let (mut rx, stop, task) = start_source(&config, false, &stats)?;
        wait_for(&format!("MQTT {protocol} over TLS subscribed"), || {
            stats.mqtt_subscriptions_acked.get() >= 1
        })
        .await?;
        let value = format!("{}.5", 20 + n);
        publish(&broker, "tls/l1/temp", &value, 1).await?;
        let r = next_readings(&mut rx, 1).await?;
        assert_eq!(r["l1.temp"].value.to_string(), value, "MQTT {protocol}");
        assert_eq!(stats.mqtt_connection_errors.get(), 0, "MQTT {protocol}");
        stop_source(stop, task).await?;
    }
    Ok(())
}

/// A broker whose certificate does not chain to the configured CA is a
/// connection error, counted and recorded with rustls' reason, retried with
/// backoff; the source keeps running and stops cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_certificate_from_another_ca_is_a_counted_connection_error() -> anyhow::Result<()>
{
    let logs = tempfile::tempdir()?;
    let pki = Pki::make()?;
    let broker = pki.broker(logs.path())?;
    let client_id = "e2e-gw-wrong-ca";
    let config = tls_config(
        broker.secured_port.expect("TLS listener"),
        "5",
        client_id,
        &pki.path("other-ca.pem"),
        &pki,
    )?;
    let stats = Arc::new(AgentStats::default());
    let (_rx, stop, task) = start_source(&config, false, &stats)?;
    wait_for("two failed connection attempts", || {
        stats.mqtt_connection_errors.get() >= 2
    })
    .await?;
    let error = stats
        .mqtt_last_connection_error(client_id)
        .unwrap_or_default();
    assert!(
        error.contains("invalid peer certificate") && error.contains("UnknownIssuer"),
        "the recorded error says why: {error:?}"
    );
    assert_eq!(stats.mqtt_subscriptions_acked.get(), 0);
    assert!(!task.is_finished(), "the source keeps retrying");
    stop_source(stop, task).await?;
    Ok(())
}

/// A QoS 1 subscription on the plain listener with `protocol` and
/// `clean_session`.
fn session_config(port: u16, protocol: &str, clean_session: bool) -> anyhow::Result<AgentConfig> {
    source_only_config(&format!(
        r#"
[[mqtt]]
host = "127.0.0.1"
port = {port}
protocol = "{protocol}"
client_id = "e2e-gw-session-{protocol}-{clean_session}"
clean_session = {clean_session}
[[mqtt.subscriptions]]
topic = "session/+/count"
qos = 1
series = "{{2}}.count"
"#
    ))
}

/// With `clean_session = false` (MQTT 5: clean start off and a session
/// expiry) the broker queues QoS 1 messages published while the agent is
/// away and delivers them when it is back; with `clean_session = true` it
/// does not. Each half guards against the flag not reaching the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_gets_what_was_published_while_away() -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let broker = Mosquitto::start(logs.path())?;
    for protocol in ["3.1.1", "5"] {
        for clean_session in [false, true] {
            let config = session_config(broker.port, protocol, clean_session)?;
            let case = format!("MQTT {protocol}, clean_session = {clean_session}");
            let stats = Arc::new(AgentStats::default());
            let (_rx, stop, task) = start_source(&config, false, &stats)?;
            wait_for(&case, || stats.mqtt_subscriptions_acked.get() >= 1).await?;
            stop_source(stop, task).await?;

            publish(&broker, "session/a/count", "1", 1).await?;

            let (mut rx, stop, task) = start_source(&config, false, &stats)?;
            wait_for(&case, || stats.mqtt_subscriptions_acked.get() >= 2).await?;
            publish(&broker, "session/a/count", "2", 1).await?;
            let first = next_readings(&mut rx, 1).await?["a.count"].value;
            if clean_session {
                assert_eq!(first, 2.0, "{case}: nothing kept while away");
            } else {
                assert_eq!(first, 1.0, "{case}: the queued message comes first");
                let second = next_readings(&mut rx, 1).await?["a.count"].value;
                assert_eq!(second, 2.0, "{case}");
            }
            stop_source(stop, task).await?;
        }
    }
    Ok(())
}

/// What the agent asks for is what the broker gets, for both versions:
/// Mosquitto logs every accepted client as
/// `as <client id> (p<protocol>, c<clean>, k<keep-alive>, u'<user>')`.
/// A wrong password is a counted, recorded refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_client_id_keep_alive_and_session_reach_the_broker() -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let broker = Mosquitto::start_login(logs.path(), "edge", "s3cret")?;
    let port = broker.secured_port.expect("login listener");
    let config = |protocol: &str, client_id: &str, password: &str, clean: bool| {
        source_only_config(&format!(
            r#"
[[mqtt]]
host = "127.0.0.1"
port = {port}
protocol = "{protocol}"
client_id = "{client_id}"
username = "edge"
password = "{password}"
keep_alive_s = 7
clean_session = {clean}
[[mqtt.subscriptions]]
topic = "login/+/temp"
series = "{{2}}.temp"
"#
        ))
    };
    for (protocol, p) in [("3.1.1", "p2"), ("5", "p5")] {
        for clean in [true, false] {
            let client_id = format!("e2e-login-{p}-{clean}");
            let stats = Arc::new(AgentStats::default());
            let c = config(protocol, &client_id, "s3cret", clean)?;
            let (_rx, stop, task) = start_source(&c, false, &stats)?;
            wait_for(&client_id, || stats.mqtt_subscriptions_acked.get() >= 1).await?;
            stop_source(stop, task).await?;
            let seen = format!("as {client_id} ({p}, c{}, k7, u'edge')", u8::from(clean));
            let log = broker.service.log();
            assert!(
                log.contains(&seen),
                "{seen:?} not in the broker log:\n{log}"
            );
        }

        let client_id = format!("e2e-login-{p}-wrong");
        let stats = Arc::new(AgentStats::default());
        let c = config(protocol, &client_id, "wrong", true)?;
        let (_rx, stop, task) = start_source(&c, false, &stats)?;
        wait_for("refused", || stats.mqtt_connection_errors.get() >= 1).await?;
        let error = stats
            .mqtt_last_connection_error(&client_id)
            .unwrap_or_default();
        assert!(
            error.contains("Connection refused"),
            "MQTT {protocol}: the recorded error says why: {error:?}"
        );
        assert_eq!(stats.mqtt_subscriptions_acked.get(), 0);
        stop_source(stop, task).await?;
    }
    Ok(())
}
