//! HTTPS for the relay: the rustls server config built from `[tls]` (ring
//! provider), and [`Peer`], who is on the other end of a connection
//! ([`crate::connections`] runs the handshakes).
//!
//! With `tls.client_ca_file`, every client must present a certificate signed
//! by that CA (mutual TLS), and the certificate names its gateway: its
//! subject CN and DNS subject alternative names are the names it may act
//! for. [`crate::server`] then also requires the bearer token's gateway to be
//! one of them (else 403), so a stolen token is useless without the key of a
//! matching certificate, and the other way round.
//!
//! Handshakes run in their connection's task with a deadline
//! (`server.tls_handshake_timeout_ms`), so a client that connects and sends
//! nothing holds no one else up. A failed handshake is counted, logged at
//! debug level (it is a routine event on the internet) and dropped.
//!
//! Not here: routes and status codes ([`crate::server`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::TlsConfig;

/// Why the TLS setup could not be built. Names the config key and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file named by a `[tls]` key is missing, unreadable or unusable.
    #[error("{key} {}: {message}", path.display())]
    File {
        /// The config key, for example `tls.cert_file`.
        key: &'static str,
        /// The file it names.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the combination (for example an unsupported key type).
    #[error("tls: {0}")]
    Rustls(String),
}

/// The rustls server config for `tls`, with the ring provider.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = read_certs("tls.cert_file", &tls.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|e| TlsError::File {
        key: "tls.key_file",
        path: tls.key_file.clone(),
        message: format!("no usable PEM private key: {e}"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("tls.client_ca_file", path)? {
                roots.add(cert).map_err(|e| TlsError::File {
                    key: "tls.client_ca_file",
                    path: path.clone(),
                    message: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::File {
                    key: "tls.client_ca_file",
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::File {
            key: "tls.key_file",
            path: tls.key_file.clone(),
            message: format!("does not fit tls.cert_file: {e}"),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |message: String| TlsError::File {
        key,
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(format!("cannot read PEM certificates: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("bad PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(error("no CERTIFICATE block in the file".into()));
    }
    Ok(certs)
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// With mutual TLS, the names in the client certificate (subject CN and
    /// DNS SANs): the gateway ids it may act for. `None` without a
    /// certificate (plain HTTP, or TLS without `client_ca_file`).
    pub certificate_names: Option<Arc<[String]>>,
}

/// The subject CN and DNS SANs of a DER certificate (empty if unparsable,
/// which cannot happen after rustls verified it).
pub fn certificate_names(der: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(dns) = name {
                names.push((*dns).to_owned());
            }
        }
    }
    names
}
