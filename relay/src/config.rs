//! Relay configuration: the TOML file format and the checked types the
//! program uses.
//!
//! Two steps, as ripgrep and Vector do it: `RawConfig` (private, `config/raw.rs`) mirrors the file
//! one-to-one (serde, `deny_unknown_fields`, everything optional so a missing
//! key is our error message and not serde's), then [`RelayConfig::from_toml`]
//! turns it into [`RelayConfig`], collecting *every* problem with its key path
//! (`gateways[1].token: ...`) before giving up. [`RelayConfig::problems`] (in
//! `config/check.rs`) holds
//! the checks that also apply to a config built in code (the demo and tests
//! do that), and [`crate::Relay::from_config`] runs them again, so both paths
//! obey the same rules.
//!
//! Not here: building sinks (see [`crate::sink`]), and the sinks' own
//! config types ([`KafkaConfig`], [`TimeseriesConfig`], [`PostgresConfig`]),
//! which live with the sink they configure and are re-exported here. The `///` words on each key
//! are repeated in `configs/relay.example.toml`; keep them in step.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_wire::Limits;

use crate::auth::TokenHash;
pub use crate::auth::MIN_TOKEN_BYTES;
// Each sink owns its config type and defaults; they are named here too,
// because the config file is where a reader looks for them.
pub use crate::sink::kafka::config::{
    Granularity, KafkaConfig, DEFAULT_ALARMS_TOPIC, DEFAULT_DELIVERY_TIMEOUT_MS,
    DEFAULT_EVENTS_TOPIC, DEFAULT_READINGS_TOPIC,
};
pub use crate::sink::line_protocol::DEFAULT_MEASUREMENT;
pub use crate::sink::postgres::{PostgresConfig, DEFAULT_POSTGRES_TIMEOUT_MS};
pub use crate::sink::timeseries::{TimeseriesConfig, DEFAULT_TIMESERIES_TIMEOUT_MS};
use crate::validation::TimeWindow;

/// Default address of the HTTP server.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default of `ops.listen`: loopback, so `/metrics` is not on the internet.
pub const DEFAULT_OPS_LISTEN: &str = "127.0.0.1:9181";

/// The checked relay configuration. Build it from TOML with
/// [`RelayConfig::load`] / [`RelayConfig::from_toml`] or in code with
/// [`RelayConfig::new`] and field assignment.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Address and port the HTTP server listens on.
    pub listen: SocketAddr,
    /// Directory of the embedded file sink (readings.jsonl, alarms.jsonl); required when none of `[kafka]`, `[timeseries]`, `[postgres]` is configured.
    pub data_dir: Option<PathBuf>,
    /// Gateways allowed to upload, each with the hashes of its bearer tokens.
    pub gateways: Vec<GatewayConfig>,
    /// Bounds on one uploaded batch, enforced before and while decoding.
    pub limits: Limits,
    /// Accepted timestamps around the relay's clock (`limits.max_future_secs`, `limits.max_past_hours`).
    pub time_window: TimeWindow,
    /// Publish readings and alarms to Kafka.
    pub kafka: Option<KafkaConfig>,
    /// Write readings to a time-series store in Influx line protocol.
    pub timeseries: Option<TimeseriesConfig>,
    /// Write readings to a PostgreSQL (or TimescaleDB) table.
    pub postgres: Option<PostgresConfig>,
    /// Recognise a batch delivered before and answer it 200 without publishing it again.
    pub dedup: DedupConfig,
    /// What a request must get before the relay spends memory on it: the shared decode budget.
    pub admission: crate::admission::AdmissionConfig,
    /// Serve HTTPS instead of plain HTTP; optionally require client certificates.
    pub tls: Option<TlsConfig>,
    /// Bounds on connections: how many, how long each may take (`[server]`).
    pub server: crate::connections::ConnectionLimits,
    /// Address of the operations listener (`/metrics`, `/readyz`, `/healthz`), apart from the upload port.
    pub ops_listen: SocketAddr,
    /// What each gateway may send per second (`[fairness]`).
    pub fairness: crate::fairness::FairnessConfig,
    /// Things that work but should not be in production (plaintext tokens);
    /// `main` logs each one loudly at start.
    pub warnings: Vec<ConfigIssue>,
}

/// HTTPS with rustls; see [`crate::tls`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file with the server certificate, then any intermediate certificates.
    pub cert_file: PathBuf,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM file of the CA that signs gateway certificates; when set, every client must present one (mutual TLS), and its subject CN or a DNS SAN must be the id of the gateway whose token it sends.
    pub client_ca_file: Option<PathBuf>,
}

/// Where and for how long delivered batches are remembered.
#[derive(Debug, Clone)]
pub struct DedupConfig {
    /// Where the ledger lives: a SQLite file (one relay) or PostgreSQL tables a fleet of relays shares.
    pub store: DedupStore,
    /// SQLite file of the ledger; `None` means `<data_dir>/delivered.db`.
    pub path: Option<PathBuf>,
    /// PostgreSQL server of a shared ledger; `None` means the `[postgres]` sink's URL.
    pub url: Option<tokio_postgres::Config>,
    /// PostgreSQL table of a shared ledger (claims in `<table>_claims`): name or schema.name.
    pub table: String,
    /// Longest wait for one step of the PostgreSQL ledger; past it the batch gets 503.
    pub timeout: Duration,
    /// How long a delivered batch is remembered.
    pub window: Duration,
    /// Most delivered batches remembered; beyond it the oldest are forgotten first.
    pub max_rows: u64,
    /// How often the ledger forgets what is past the window, the row bound or its lease.
    pub prune_interval: Duration,
    /// How long a claim on a batch being delivered holds if its request never releases it (a relay killed mid-delivery); must exceed every sink's timeout.
    pub claim_lease: Duration,
}

/// Where the ledger lives (`dedup.store`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DedupStore {
    /// `"sqlite"`: a file per relay; the default.
    #[default]
    Sqlite,
    /// `"postgres"`: tables shared by every relay of a fleet.
    Postgres,
}

/// Default of `dedup.window_hours`: a week.
pub const DEFAULT_DEDUP_WINDOW_HOURS: usize = 168;
/// Default of `dedup.max_rows`.
pub const DEFAULT_DEDUP_MAX_ROWS: usize = 10_000_000;
/// Default of `dedup.prune_interval_secs`.
pub const DEFAULT_DEDUP_PRUNE_INTERVAL_SECS: usize = 60;
/// Default of `dedup.claim_lease_secs`: twice the default Kafka delivery timeout.
pub const DEFAULT_DEDUP_CLAIM_LEASE_SECS: usize = 60;
/// Default of `dedup.table`.
pub const DEFAULT_DEDUP_TABLE: &str = "edge_ledger";
/// Default of `dedup.timeout_ms`.
pub const DEFAULT_DEDUP_TIMEOUT_MS: usize = 5_000;

impl DedupConfig {
    /// The defaults: SQLite in `<data_dir>/delivered.db`, a week's window.
    pub fn new() -> DedupConfig {
        DedupConfig {
            store: DedupStore::Sqlite,
            path: None,
            url: None,
            table: DEFAULT_DEDUP_TABLE.into(),
            timeout: Duration::from_millis(DEFAULT_DEDUP_TIMEOUT_MS as u64),
            window: Duration::from_secs(3600 * DEFAULT_DEDUP_WINDOW_HOURS as u64),
            max_rows: DEFAULT_DEDUP_MAX_ROWS as u64,
            prune_interval: Duration::from_secs(DEFAULT_DEDUP_PRUNE_INTERVAL_SECS as u64),
            claim_lease: Duration::from_secs(DEFAULT_DEDUP_CLAIM_LEASE_SECS as u64),
        }
    }
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig::new()
    }
}

impl RelayConfig {
    /// The sinks this config gives, in delivery order: any of `kafka`,
    /// `timeseries`, `postgres`; and `file` when none of them is configured,
    /// or beside the stores when Kafka is not and `data_dir` is (the stores
    /// keep readings, the file sink then keeps only alarm and gap events).
    pub fn sink_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        names.extend(self.kafka.as_ref().map(|_| "kafka"));
        names.extend(self.timeseries.as_ref().map(|_| "timeseries"));
        names.extend(self.postgres.as_ref().map(|_| "postgres"));
        if names.is_empty() || (self.kafka.is_none() && self.data_dir.is_some()) {
            names.push("file");
        }
        names
    }

    /// The PostgreSQL server of a shared ledger: `dedup.url`, else the
    /// `[postgres]` sink's.
    pub fn dedup_url(&self) -> Option<&tokio_postgres::Config> {
        self.dedup
            .url
            .as_ref()
            .or(self.postgres.as_ref().map(|p| &p.url))
    }

    /// The ledger file: `dedup.path`, else `delivered.db` in `data_dir`.
    pub fn dedup_path(&self) -> Option<PathBuf> {
        self.dedup
            .path
            .clone()
            .or_else(|| self.data_dir.as_ref().map(|d| d.join("delivered.db")))
    }
}

/// One gateway allowed to upload. `Debug` hides the token hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Gateway id; must equal the gateway_id inside every batch it sends.
    pub id: String,
    /// Hashes of the gateway's active bearer tokens (see [`crate::auth`]).
    pub tokens: Vec<TokenHash>,
    /// Site (plant) the gateway is installed at; copied into every message as `site`.
    pub site: Option<String>,
    /// Tags of the gateway (string to string); copied into every message as `gateway_tags`.
    pub tags: BTreeMap<String, String>,
}

impl GatewayConfig {
    /// A gateway with one token, hashed here; for configs built in code
    /// (tests, the demo). The plaintext is not kept.
    pub fn with_token(id: impl Into<String>, token: &str) -> GatewayConfig {
        GatewayConfig {
            id: id.into(),
            tokens: vec![TokenHash::of(token.as_bytes())],
            site: None,
            tags: BTreeMap::new(),
        }
    }
}

impl RelayConfig {
    /// A config with defaults, the file sink in `data_dir` and the given gateways.
    pub fn new(data_dir: impl Into<PathBuf>, gateways: Vec<GatewayConfig>) -> RelayConfig {
        RelayConfig {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("DEFAULT_LISTEN is a valid socket address"),
            data_dir: Some(data_dir.into()),
            gateways,
            limits: Limits::default(),
            time_window: TimeWindow::default(),
            kafka: None,
            timeseries: None,
            postgres: None,
            dedup: DedupConfig::new(),
            admission: Default::default(),
            tls: None,
            server: Default::default(),
            ops_listen: DEFAULT_OPS_LISTEN
                .parse()
                .expect("DEFAULT_OPS_LISTEN is a valid socket address"),
            fairness: Default::default(),
            warnings: Vec::new(),
        }
    }

    /// Read and check a TOML config file.
    pub fn load(path: &Path) -> Result<RelayConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        RelayConfig::from_toml(&text).map_err(|e| e.in_file(path))
    }

    /// Parse and check TOML text, reporting every problem at once.
    pub fn from_toml(text: &str) -> Result<RelayConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            origin: "<text>".into(),
            message: e.to_string(),
        })?;
        let mut issues = Issues::default();
        let config = raw.check(&mut issues);
        issues.0.extend(config.problems());
        if issues.0.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                origin: "<text>".into(),
                issues: issues.0,
            })
        }
    }
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not TOML of the expected shape (unknown key, wrong type).
    #[error("config {origin}: {message}")]
    Syntax {
        /// File name, or `<text>`.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The values break one or more rules; all are listed.
    #[error("config {origin}: {} problem(s):{}", issues.len(), list(issues))]
    Invalid {
        /// File name, or `<text>` / `<code>`.
        origin: String,
        /// Every problem found.
        issues: Vec<ConfigIssue>,
    },
}

impl ConfigError {
    fn in_file(self, path: &Path) -> ConfigError {
        let origin = path.display().to_string();
        match self {
            ConfigError::Syntax { message, .. } => ConfigError::Syntax { origin, message },
            ConfigError::Invalid { issues, .. } => ConfigError::Invalid { origin, issues },
            other => other,
        }
    }
}

fn list(issues: &[ConfigIssue]) -> String {
    issues.iter().map(|i| format!("\n  {i}")).collect()
}

/// One broken rule, with the key path it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Key path, for example `gateways[1].token`.
    pub key: String,
    /// What is wrong, naming the value.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Default)]
struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigIssue {
            key: key.into(),
            message: message.into(),
        });
    }
}

mod check;
mod raw;
use raw::RawConfig;

#[cfg(test)]
mod tests;
