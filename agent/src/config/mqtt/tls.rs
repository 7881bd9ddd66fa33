//! `[mqtt.tls]`: the certificates a broker connection is verified and
//! authenticated with, read and checked when the config is loaded.
//!
//! The PEM files are read here, not when connecting, so that a missing or
//! broken file is a config error naming the key and the file
//! (`mqtt[0].tls.ca_file: cannot read "/etc/edge-agent/ca.pem": …`) rather
//! than a connection that fails forever.
//!
//! The rustls client config is built with the *ring* crypto provider:
//! rustls' default, aws-lc-rs, needs cmake to cross-compile for the
//! gateways, ring only the `cc` crate. Only the configured CA is trusted,
//! not the system's roots: a field broker has a plant's own CA.

use crate::config::issue::Problems;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use rustls_platform_verifier::BuilderVerifierExt;
use serde::Deserialize;

/// `[mqtt.tls]`: connect to the broker over TLS (MQTTS).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqttTls {
    /// PEM file of the CA certificate(s) the broker's certificate must chain to; relative paths are taken from the config file's directory.
    pub ca_file: PathBuf,
    /// PEM file of the agent's client certificate (chain), for brokers that require one; needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the private key of `client_cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub client_key_file: Option<PathBuf>,
}

impl RawMqttTls {
    /// Take relative file names from `dir`, the config file's directory.
    pub fn resolve_in(&mut self, dir: &Path) {
        for path in [
            Some(&mut self.ca_file),
            self.client_cert_file.as_mut(),
            self.client_key_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            *path = dir.join(&*path);
        }
    }
}

/// A validated `[mqtt.tls]`: the files it names and the rustls client
/// configuration built from them.
#[derive(Clone)]
pub struct MqttTls {
    pub ca_file: PathBuf,
    /// (certificate file, key file), when the broker wants a client certificate.
    pub client_auth: Option<(PathBuf, PathBuf)>,
    pub client_config: Arc<ClientConfig>,
}

impl PartialEq for MqttTls {
    /// Two settings are the same when they name the same files.
    fn eq(&self, other: &Self) -> bool {
        self.ca_file == other.ca_file && self.client_auth == other.client_auth
    }
}

impl std::fmt::Debug for MqttTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttTls")
            .field("ca_file", &self.ca_file)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

/// Validate `{at}` (for example `mqtt[0].tls`), reading its files.
pub(in crate::config) fn validate_tls(
    p: &mut Problems,
    at: &str,
    t: &RawMqttTls,
) -> Option<MqttTls> {
    let (client_config, client_auth) = client_tls(
        p,
        at,
        Some(&t.ca_file),
        t.client_cert_file.as_deref(),
        t.client_key_file.as_deref(),
    )?;
    Some(MqttTls {
        ca_file: t.ca_file.clone(),
        client_auth,
        client_config,
    })
}

/// The rustls client configuration (ring provider) for a server verified
/// against `ca_file`, or against the operating system's trusted roots when
/// there is none, presenting the client certificate of `client_cert_file`
/// with the key of `client_key_file` when both are given. `at` (for example
/// `uplink`) prefixes the key paths in the problems pushed to `p`. Also
/// returns the (certificate, key) file pair, when given.
#[allow(clippy::type_complexity)]
pub(in crate::config) fn client_tls(
    p: &mut Problems,
    at: &str,
    ca_file: Option<&Path>,
    client_cert_file: Option<&Path>,
    client_key_file: Option<&Path>,
) -> Option<(Arc<ClientConfig>, Option<(PathBuf, PathBuf)>)> {
    let before = p.len();
    let mut roots = RootCertStore::empty();
    if let Some(ca_file) = ca_file {
        let ca = read_certs(p, &format!("{at}.ca_file"), ca_file);
        for (n, cert) in ca.into_iter().flatten().enumerate() {
            if let Err(e) = roots.add(cert) {
                p.add(
                    format!("{at}.ca_file"),
                    format!(
                        "certificate {} of {:?} is not usable as a CA: {e}",
                        n + 1,
                        ca_file
                    ),
                );
            }
        }
    }
    let client_auth = match (client_cert_file, client_key_file) {
        (None, None) => None,
        (Some(_), None) => {
            p.add(
                format!("{at}.client_key_file"),
                "required with client_cert_file",
            );
            None
        }
        (None, Some(_)) => {
            p.add(
                format!("{at}.client_cert_file"),
                "required with client_key_file",
            );
            None
        }
        (Some(cert_file), Some(key_file)) => {
            let certs = read_certs(p, &format!("{at}.client_cert_file"), cert_file);
            let key = read_key(p, &format!("{at}.client_key_file"), key_file);
            certs
                .zip(key)
                .map(|(certs, key)| (cert_file, key_file, certs, key))
        }
    };
    if p.len() > before {
        return None;
    }
    let versions =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions");
    let builder = if ca_file.is_some() {
        versions.with_root_certificates(roots)
    } else {
        match versions.with_platform_verifier() {
            Ok(b) => b,
            Err(e) => {
                p.add(at, format!("the system's trusted CA certificates cannot be loaded ({e}); set {at}.ca_file"));
                return None;
            }
        }
    };
    let (client_config, client_auth) = match client_auth {
        None => (builder.with_no_client_auth(), None),
        Some((cert_file, key_file, certs, key)) => {
            match builder.with_client_auth_cert(certs, key) {
                Ok(config) => (config, Some((cert_file.to_owned(), key_file.to_owned()))),
                Err(e) => {
                    p.add(
                        format!("{at}.client_key_file"),
                        format!(
                            "{key_file:?} does not go with client_cert_file {cert_file:?}: {e}"
                        ),
                    );
                    return None;
                }
            }
        }
    };
    Some((Arc::new(client_config), client_auth))
}

fn read(p: &mut Problems, at: &str, path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| p.add(at, format!("cannot read {path:?}: {e}")))
        .ok()
}

/// Every certificate of a PEM file; at least one.
fn read_certs(p: &mut Problems, at: &str, path: &Path) -> Option<Vec<CertificateDer<'static>>> {
    let pem = read(p, at, path)?;
    match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
        Ok(certs) if certs.is_empty() => {
            p.add(
                at,
                format!("{path:?} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")"),
            );
            None
        }
        Ok(certs) => Some(certs),
        Err(e) => {
            p.add(at, format!("{path:?} is not valid PEM: {e}"));
            None
        }
    }
}

/// The first private key of a PEM file.
fn read_key(p: &mut Problems, at: &str, path: &Path) -> Option<PrivateKeyDer<'static>> {
    let pem = read(p, at, path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| {
            p.add(
                at,
                format!("{path:?} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
            )
        })
        .ok()
}
