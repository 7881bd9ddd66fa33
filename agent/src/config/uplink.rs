//! `[uplink]`: the relay this gateway forwards to, how hard to push (batches
//! in flight, timeouts, backoff) and how to authenticate (bearer token,
//! HTTPS with a custom CA and an optional client certificate).
//!
//! The token may be written inline, read from a file (which must not be
//! readable by group or others) or taken from an environment variable;
//! exactly one of the three. It is held in a [`Secret`], whose `Debug`
//! prints `<redacted>`, so logging a config never shows it. The PEM files
//! are read here, when the config is loaded (see [`super::mqtt`]'s TLS
//! module, whose loading this reuses), so a broken file is a config error
//! naming the key and the file.

use crate::config::issue::Problems;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use serde::Deserialize;

/// A value that must never reach a log: `Debug` prints `<redacted>`, and it
/// has no `Display`. Read it with [`Secret::expose`] where it is sent.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `[uplink]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUplink {
    /// URL of the relay's batch endpoint, for example `"https://relay.example.com/v1/batches"`.
    pub url: String,
    /// Bearer token that identifies this gateway to the relay, written here; or use `token_file` or `token_env` (exactly one of the three).
    pub token: Option<Secret>,
    /// File holding the bearer token (surrounding whitespace is ignored), read at start; it must not be readable by group or others (`chmod 600`).
    pub token_file: Option<PathBuf>,
    /// Name of the environment variable holding the bearer token, read at start.
    pub token_env: Option<String>,
    /// How long one upload may take before it is abandoned and retried (default 10000).
    pub timeout_ms: Option<u64>,
    /// First wait after a failed upload; doubles up to `retry_max_ms` (default 500).
    pub retry_initial_ms: Option<u64>,
    /// Longest wait between upload attempts (default 30000).
    pub retry_max_ms: Option<u64>,
    /// On shutdown, keep forwarding the backlog for at most this long (default 5000).
    pub shutdown_drain_ms: Option<u64>,
    /// Batches sent at the same time while a backlog drains, so the drain is not bounded by one round trip per batch (1..=64, default 4).
    pub max_in_flight: Option<usize>,
    /// While a backlog drains, log what is left, the rate and the estimated time to empty this often (default 10000).
    pub progress_interval_ms: Option<u64>,
    /// PEM file of the CA certificate(s) the relay's certificate must chain to (https only); without it the system's trusted CAs are used. Relative paths are taken from the config file's directory.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the agent's client certificate (chain), for relays that require one; needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the private key of `client_cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub client_key_file: Option<PathBuf>,
}

impl RawUplink {
    /// Take relative file names from `dir`, the config file's directory.
    pub fn resolve_in(&mut self, dir: &Path) {
        for path in [
            self.token_file.as_mut(),
            self.ca_file.as_mut(),
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

/// A validated `[uplink]`.
#[derive(Debug, Clone)]
pub struct UplinkConfig {
    pub url: String,
    pub token: Secret,
    pub timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub shutdown_drain: Duration,
    pub max_in_flight: usize,
    pub progress_interval: Duration,
    /// Set for an https URL.
    pub tls: Option<UplinkTls>,
}

impl UplinkConfig {
    /// A plain-HTTP uplink with the defaults, for tests and benchmarks that
    /// build a config in code.
    pub fn new(url: impl Into<String>, token: impl Into<String>) -> UplinkConfig {
        UplinkConfig {
            url: url.into(),
            token: Secret::new(token),
            timeout: Duration::from_millis(10_000),
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_millis(30_000),
            shutdown_drain: Duration::from_millis(5_000),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            progress_interval: Duration::from_millis(10_000),
            tls: None,
        }
    }
}

/// Batches in flight unless `max_in_flight` says otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;

/// The TLS settings of an https uplink: the files they came from and the
/// rustls client configuration built from them.
#[derive(Clone)]
pub struct UplinkTls {
    /// None: the system's trusted CAs.
    pub ca_file: Option<PathBuf>,
    /// (certificate file, key file), when the relay wants a client certificate.
    pub client_auth: Option<(PathBuf, PathBuf)>,
    pub client_config: Arc<ClientConfig>,
}

impl std::fmt::Debug for UplinkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UplinkTls")
            .field("ca_file", &self.ca_file)
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Validate `[uplink]`, reading the token file or variable and the PEM
/// files; problems go to `p` with their key paths.
pub(in crate::config) fn validate(p: &mut Problems, u: &RawUplink) -> UplinkConfig {
    let https = u.url.starts_with("https://");
    if !(https || u.url.starts_with("http://")) {
        p.add(
            "uplink.url",
            format!("{:?} must start with http:// or https://", u.url),
        );
    }
    let token = token(p, u).unwrap_or_else(|| Secret::new(""));
    let max_in_flight = u.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT);
    if !(1..=64).contains(&max_in_flight) {
        p.add(
            "uplink.max_in_flight",
            format!("{max_in_flight} must be between 1 and 64"),
        );
    }
    let tls = if https {
        super::mqtt::client_tls(
            p,
            "uplink",
            u.ca_file.as_deref(),
            u.client_cert_file.as_deref(),
            u.client_key_file.as_deref(),
        )
        .map(|(client_config, client_auth)| UplinkTls {
            ca_file: u.ca_file.clone(),
            client_auth,
            client_config,
        })
    } else {
        for (key, set) in [
            ("ca_file", u.ca_file.is_some()),
            ("client_cert_file", u.client_cert_file.is_some()),
            ("client_key_file", u.client_key_file.is_some()),
        ] {
            if set {
                p.add(
                    format!("uplink.{key}"),
                    format!(
                        "only used with an https:// url, and uplink.url is {:?}",
                        u.url
                    ),
                );
            }
        }
        None
    };
    UplinkConfig {
        url: u.url.clone(),
        token,
        timeout: ms(u.timeout_ms.unwrap_or(10_000)),
        retry_initial: ms(u.retry_initial_ms.unwrap_or(500).max(1)),
        retry_max: ms(u.retry_max_ms.unwrap_or(30_000).max(1)),
        shutdown_drain: ms(u.shutdown_drain_ms.unwrap_or(5_000)),
        max_in_flight: max_in_flight.clamp(1, 64),
        progress_interval: ms(u.progress_interval_ms.unwrap_or(10_000).max(1)),
        tls,
    }
}

/// The token from whichever of `token`, `token_file` and `token_env` is set.
fn token(p: &mut Problems, u: &RawUplink) -> Option<Secret> {
    let (at, value) = match (&u.token, &u.token_file, &u.token_env) {
        (Some(t), None, None) => ("uplink.token", t.expose().to_owned()),
        (None, Some(file), None) => ("uplink.token_file", read_token_file(p, file)?),
        (None, None, Some(var)) => match std::env::var(var) {
            Ok(v) => ("uplink.token_env", v),
            Err(e) => {
                p.add(
                    "uplink.token_env",
                    format!("environment variable {var:?}: {e}"),
                );
                return None;
            }
        },
        (None, None, None) => {
            p.add("uplink", "set one of token, token_file or token_env");
            return None;
        }
        _ => {
            p.add("uplink", "set only one of token, token_file and token_env");
            return None;
        }
    };
    let value = value.trim();
    if value.is_empty() {
        p.add(at, "the token is empty");
        return None;
    }
    Some(Secret::new(value))
}

/// Read a token file, refusing one that group or others may read.
fn read_token_file(p: &mut Problems, file: &Path) -> Option<String> {
    let at = "uplink.token_file";
    let meta = match std::fs::metadata(file) {
        Ok(m) => m,
        Err(e) => {
            p.add(at, format!("cannot read {file:?}: {e}"));
            return None;
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            p.add(
                at,
                format!(
                    "{file:?} is accessible to group or others (mode {mode:o}); run chmod 600 {}",
                    file.display()
                ),
            );
            return None;
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    std::fs::read_to_string(file)
        .map_err(|e| p.add(at, format!("cannot read {file:?}: {e}")))
        .ok()
}

#[cfg(test)]
mod tests {
    use crate::config::{AgentConfig, ConfigError};

    const BASE: &str = "gateway_id = \"gw-1\"\n[spool]\npath = \"/tmp/spool.db\"\n[uplink]\n";

    /// The uplink keys of `text` (which ends inside `[uplink]`) plus a source.
    fn parse(text: &str, origin: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(&format!("{text}{SOURCE}"), origin)
    }

    fn parse_in(
        text: &str,
        origin: &str,
        dir: &std::path::Path,
    ) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse_in(&format!("{text}{SOURCE}"), origin, dir)
    }

    const SOURCE: &str = "[[simulated]]\nname = \"s\"\nmean = 1.0\n";

    fn problems(text: &str) -> String {
        match parse(text, "t.toml") {
            Err(ConfigError::Invalid { problems, .. }) => problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            other => panic!("expected validation errors, got {other:?}"),
        }
    }

    #[test]
    fn debug_of_the_config_never_shows_the_token() {
        let text = format!(
            "{BASE}url = \"http://127.0.0.1:1/v1/batches\"\ntoken = \"tok-very-secret-42\"\n"
        );
        let raw: crate::config::RawConfig = toml::from_str(&text).unwrap();
        let raw_debug = format!("{raw:?}");
        let c = parse(&text, "t.toml").unwrap();
        let debug = format!("{c:?} {:#?}", c.uplink);
        assert_eq!(c.uplink.token.expose(), "tok-very-secret-42");
        for d in [raw_debug, debug] {
            assert!(!d.contains("tok-very-secret-42"), "{d}");
            assert!(d.contains("<redacted>"), "{d}");
        }
    }

    #[test]
    fn exactly_one_token_source() {
        let none = problems(&format!("{BASE}url = \"http://h:1/b\"\n"));
        assert!(
            none.contains("uplink: set one of token, token_file or token_env"),
            "{none}"
        );
        let two = problems(&format!(
            "{BASE}url = \"http://h:1/b\"\ntoken = \"a\"\ntoken_env = \"X\"\n"
        ));
        assert!(
            two.contains("uplink: set only one of token, token_file and token_env"),
            "{two}"
        );
    }

    #[test]
    fn token_file_is_read_trimmed_and_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "file-token-7\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!("{BASE}url = \"http://h:1/b\"\ntoken_file = \"token\"\n");
        let err = match parse_in(&text, "t.toml", dir.path()) {
            Err(ConfigError::Invalid { problems, .. }) => problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            other => panic!("expected an error, got {other:?}"),
        };
        let expected = format!("run chmod 600 {}", file.display());
        assert!(
            err.contains("uplink.token_file") && err.contains(&expected),
            "{err}"
        );
        assert!(!err.contains("file-token-7"), "{err}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = parse_in(&text, "t.toml", dir.path()).unwrap();
        assert_eq!(c.uplink.token.expose(), "file-token-7");
    }

    #[test]
    fn token_env_names_the_missing_variable() {
        let var = "EDGE_AGENT_TEST_TOKEN_SURELY_UNSET_5";
        let err = problems(&format!(
            "{BASE}url = \"http://h:1/b\"\ntoken_env = \"{var}\"\n"
        ));
        assert!(
            err.contains(&format!("uplink.token_env: environment variable \"{var}\"")),
            "{err}"
        );
        let var = "EDGE_AGENT_TEST_TOKEN_SET_5";
        std::env::set_var(var, "env-token-9");
        let c = parse(
            &format!("{BASE}url = \"http://h:1/b\"\ntoken_env = \"{var}\"\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.uplink.token.expose(), "env-token-9");
    }

    #[test]
    fn bad_pem_names_the_key_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
        let text = format!(
            "{BASE}url = \"https://h:1/b\"\ntoken = \"t\"\nca_file = \"ca.pem\"\nclient_cert_file = \"missing.pem\"\nclient_key_file = \"ca.pem\"\n"
        );
        let err = match parse_in(&text, "t.toml", dir.path()) {
            Err(ConfigError::Invalid { problems, .. }) => problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            other => panic!("expected an error, got {other:?}"),
        };
        let ca = dir.path().join("ca.pem");
        for expected in [
            format!("uplink.ca_file: {ca:?} holds no PEM certificate"),
            format!(
                "uplink.client_cert_file: cannot read {:?}",
                dir.path().join("missing.pem")
            ),
            format!("uplink.client_key_file: {ca:?} holds no usable PEM private key"),
        ] {
            assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
        }
    }

    #[test]
    fn max_in_flight_defaults_and_bounds() {
        let c = parse(
            &format!("{BASE}url = \"http://h:1/b\"\ntoken = \"t\"\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.uplink.max_in_flight, super::DEFAULT_MAX_IN_FLIGHT);
        let err = problems(&format!(
            "{BASE}url = \"http://h:1/b\"\ntoken = \"t\"\nmax_in_flight = 0\n"
        ));
        assert!(
            err.contains("uplink.max_in_flight: 0 must be between 1 and 64"),
            "{err}"
        );
    }

    /// Every `[uplink]` key's doc comment appears, in the same words, as a
    /// comment in configs/agent.example.toml.
    #[test]
    fn the_example_config_documents_every_key_in_the_same_words() {
        let example = include_str!("../../../configs/agent.example.toml");
        let source = include_str!("uplink.rs");
        let start = source.find("pub struct RawUplink {").unwrap();
        let end = start + source[start..].find("\n}").unwrap();
        let docs: Vec<&str> = source[start..end]
            .lines()
            .filter_map(|l| l.trim().strip_prefix("/// "))
            .collect();
        assert_eq!(docs.len(), 13, "one per key of RawUplink");
        for doc in docs {
            assert!(
                example.contains(&format!("# {doc}\n")),
                "not in the example: {doc}"
            );
        }
    }
}
