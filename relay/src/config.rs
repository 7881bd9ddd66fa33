//! Relay configuration: the TOML file format and the checked types the
//! program uses.
//!
//! Two steps, as ripgrep and Vector do it: `RawConfig` (private, `config/raw.rs`) mirrors the file
//! one-to-one (serde, `deny_unknown_fields`, everything optional so a missing
//! key is our error message and not serde's), then [`RelayConfig::from_toml`]
//! turns it into [`RelayConfig`], collecting *every* problem with its key path
//! (`gateways[1].token: ...`) before giving up. [`RelayConfig::problems`] holds
//! the checks that also apply to a config built in code (the demo and tests
//! do that), and [`crate::Relay::from_config`] runs them again, so both paths
//! obey the same rules.
//!
//! Not here: building sinks (see [`crate::sink`]). The `///` words on each key
//! are repeated in `configs/relay.example.toml`; keep them in step.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_wire::Limits;
use reqwest::Url;

/// Default address of the HTTP server.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default of `ops.listen`: loopback, so `/metrics` is not on the internet.
pub const DEFAULT_OPS_LISTEN: &str = "127.0.0.1:9181";
/// Default Kafka topic for readings.
pub const DEFAULT_READINGS_TOPIC: &str = "edge.readings.v1";
/// Default Kafka topic for alarm events.
pub const DEFAULT_ALARMS_TOPIC: &str = "edge.alarms.v1";
/// Default Kafka topic for gateway events (gap records).
pub const DEFAULT_EVENTS_TOPIC: &str = "edge.events.v1";
/// Default bound on one Kafka delivery, in milliseconds.
pub const DEFAULT_DELIVERY_TIMEOUT_MS: u64 = 30_000;
/// Default line-protocol measurement name.
pub const DEFAULT_MEASUREMENT: &str = "edge";
/// Default bound on one write request to the time-series store, in milliseconds.
pub const DEFAULT_TIMESERIES_TIMEOUT_MS: u64 = 10_000;
/// Default bound on connecting to PostgreSQL plus writing one batch, in milliseconds.
pub const DEFAULT_POSTGRES_TIMEOUT_MS: u64 = 10_000;
use crate::auth::TokenHash;
pub use crate::auth::MIN_TOKEN_BYTES;
use crate::validation::TimeWindow;

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

/// Where and how to publish to Kafka. `Debug` hides the values of producer
/// properties that hold secrets (`sasl.password`, `ssl.key.password`, ...).
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap brokers, host:port each.
    pub brokers: Vec<String>,
    /// Topic for readings, one message per reading.
    pub readings_topic: String,
    /// Topic for alarm events, one message per event.
    pub alarms_topic: String,
    /// Topic for gateway events (readings a gateway dropped under its spool policy), keyed by gateway id.
    pub events_topic: String,
    /// Longest wait for the brokers to acknowledge a message (librdkafka message.timeout.ms); past it the batch fails with 503.
    pub delivery_timeout: Duration,
    /// One message per reading (`Reading`) or one per series per batch (`Series`).
    pub granularity: Granularity,
    /// Extra librdkafka producer properties, passed through unchanged; see
    /// [`crate::sink::kafka::properties`] for the ones the relay refuses.
    pub producer: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret =
            |k: &str| k.contains("password") || k.contains("secret") || k.ends_with(".pem");
        let producer: BTreeMap<&str, &str> = self
            .producer
            .iter()
            .map(|(k, v)| (k.as_str(), if secret(k) { "<hidden>" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("readings_topic", &self.readings_topic)
            .field("alarms_topic", &self.alarms_topic)
            .field("events_topic", &self.events_topic)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("granularity", &self.granularity)
            .field("producer", &producer)
            .finish()
    }
}

impl KafkaConfig {
    /// A config with the default topics, timeout and granularity and no
    /// extra producer properties.
    pub fn new(brokers: Vec<String>) -> KafkaConfig {
        KafkaConfig {
            brokers,
            readings_topic: DEFAULT_READINGS_TOPIC.into(),
            alarms_topic: DEFAULT_ALARMS_TOPIC.into(),
            events_topic: DEFAULT_EVENTS_TOPIC.into(),
            delivery_timeout: Duration::from_millis(DEFAULT_DELIVERY_TIMEOUT_MS),
            granularity: Granularity::default(),
            producer: BTreeMap::new(),
        }
    }
}

/// How readings are cut into Kafka messages (`kafka.granularity`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Granularity {
    /// `"reading"`: one message per reading (`edge.reading.v1`), the easiest to consume.
    #[default]
    Reading,
    /// `"series"`: one message per series per batch (`edge.series-batch.v1`), an
    /// array of points; far fewer messages for high-rate series.
    Series,
}

impl Granularity {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Reading => "reading",
            Granularity::Series => "series",
        }
    }
}

/// Where and how to write Influx line protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeseriesConfig {
    /// Influx line protocol write endpoint, for example VictoriaMetrics http://127.0.0.1:8428/write (plain http only for now).
    pub url: Url,
    /// How readings become lines: measurement, tag and field names (`measurement`, `series_tag`, `gateway_tag`, `quality`, `quality_key`, `value_field`).
    pub layout: crate::sink::line_protocol::LineLayout,
    /// Longest wait for one write request to the store; past it the batch fails with 503.
    pub timeout: Duration,
}

/// Where and how to write readings to PostgreSQL; see [`crate::sink::postgres`].
/// `Debug` hides the password of the URL.
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// PostgreSQL connection URL, for example postgresql://edge@127.0.0.1:5432/plant (no TLS built in yet).
    pub url: tokio_postgres::Config,
    /// Table of the readings, created if missing: name or schema.name (the schema must exist).
    pub table: String,
    /// Longest wait for connecting plus writing one batch; past it the batch fails with 503.
    pub timeout: Duration,
}

impl PostgresConfig {
    /// The default table and timeout for `url`; for configs built in code.
    pub fn new(url: tokio_postgres::Config) -> PostgresConfig {
        PostgresConfig {
            url,
            table: crate::sink::postgres::DEFAULT_TABLE.into(),
            timeout: Duration::from_millis(DEFAULT_POSTGRES_TIMEOUT_MS),
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

    /// Rules every config must follow, however it was built. Empty when valid.
    pub fn problems(&self) -> Vec<ConfigIssue> {
        let mut issues = Issues::default();
        if self.gateways.is_empty() {
            issues.add("gateways", "at least one [[gateways]] entry is required");
        }
        let (mut ids, mut tokens) = (HashSet::new(), HashSet::new());
        for (i, gw) in self.gateways.iter().enumerate() {
            if gw.id.is_empty() {
                issues.add(
                    format!("gateways[{i}].id"),
                    "required, and must not be empty",
                );
            } else if !ids.insert(gw.id.as_str()) {
                issues.add(
                    format!("gateways[{i}].id"),
                    format!("{:?} is listed twice", gw.id),
                );
            }
            if gw.tokens.is_empty() {
                issues.add(
                    format!("gateways[{i}].tokens"),
                    "at least one token hash is required (make one with `edge-relay hash-token`)",
                );
            }
            if gw.site.as_deref().is_some_and(str::is_empty) {
                issues.add(format!("gateways[{i}].site"), "must not be empty when set");
            }
            for (key, value) in &gw.tags {
                if key.is_empty() {
                    issues.add(
                        format!("gateways[{i}].tags"),
                        format!("a tag has an empty name (value {value:?})"),
                    );
                }
            }
            for (j, hash) in gw.tokens.iter().enumerate() {
                if !tokens.insert(*hash) {
                    issues.add(
                        format!("gateways[{i}].tokens[{j}]"),
                        "is listed before, for this or another gateway",
                    );
                }
            }
        }
        self.dedup_problems(&mut issues);
        if self.kafka.is_none()
            && self.timeseries.is_none()
            && self.postgres.is_none()
            && self.data_dir.is_none()
        {
            issues.add(
                "data_dir",
                "required when none of [kafka], [timeseries], [postgres] is configured",
            );
        }
        let l = &self.limits;
        for (key, value) in [
            ("max_compressed_bytes", l.max_compressed_bytes),
            ("max_decompressed_bytes", l.max_decompressed_bytes),
            ("max_series", l.max_series),
            ("max_readings", l.max_readings),
            ("max_tags", l.max_tags),
            ("max_string_bytes", l.max_string_bytes),
        ] {
            if value == 0 {
                issues.add(format!("limits.{key}"), "must be greater than 0");
            }
        }
        self.server_problems(&mut issues);
        if let Some(k) = &self.kafka {
            if k.brokers.is_empty() {
                issues.add("kafka.brokers", "at least one broker is required");
            }
            for (i, b) in k.brokers.iter().enumerate() {
                if b.is_empty() || b.contains(',') || b.contains(char::is_whitespace) {
                    issues.add(
                        format!("kafka.brokers[{i}]"),
                        format!("{b:?} is not host:port"),
                    );
                }
            }
            for (key, topic) in [
                ("readings_topic", &k.readings_topic),
                ("alarms_topic", &k.alarms_topic),
                ("events_topic", &k.events_topic),
            ] {
                if let Err(why) = check_topic(topic) {
                    issues.add(format!("kafka.{key}"), format!("{topic:?}: {why}"));
                }
            }
            for (name, value) in &k.producer {
                if let Err(why) = crate::sink::kafka::properties::check(name, value) {
                    issues.add(format!("kafka.producer.{name:?}"), why);
                }
            }
            let ms = k.delivery_timeout.as_millis();
            if !(100..=i32::MAX as u128).contains(&ms) {
                issues.add(
                    "kafka.delivery_timeout_ms",
                    format!("{ms} is outside 100..={}", i32::MAX),
                );
            }
        }
        if let Some(t) = &self.timeseries {
            if t.url.scheme() != "http" {
                let msg = format!(
                    "{:?}: only http:// is supported (no TLS built in yet)",
                    t.url.as_str()
                );
                issues.add("timeseries.url", msg);
            }
            for (key, message) in t.layout.problems() {
                issues.add(format!("timeseries.{key}"), message);
            }
            if t.timeout.is_zero() {
                issues.add("timeseries.timeout_ms", "must be greater than 0");
            }
        }
        if let Some(p) = &self.postgres {
            if let Err(why) = crate::sink::postgres::check_table(&p.table) {
                issues.add("postgres.table", format!("{:?}: {why}", p.table));
            }
            if p.timeout.is_zero() {
                issues.add("postgres.timeout_ms", "must be greater than 0");
            }
            if p.url.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
                issues.add(
                    "postgres.url",
                    "sslmode=require: TLS to PostgreSQL is not built in yet",
                );
            }
        }
        issues.0
    }
}

impl RelayConfig {
    fn server_problems(&self, issues: &mut Issues) {
        let s = &self.server;
        if s.max_connections == 0 {
            issues.add("server.max_connections", "must be greater than 0");
        }
        for (key, value) in [
            ("header_timeout_ms", s.header_timeout),
            ("body_timeout_ms", s.body_timeout),
            ("tls_handshake_timeout_ms", s.tls_handshake_timeout),
        ] {
            if value.is_zero() {
                issues.add(format!("server.{key}"), "must be greater than 0");
            }
        }
        if self.ops_listen == self.listen {
            issues.add(
                "ops.listen",
                format!(
                    "{} is the upload listener's address; the operations endpoints need their own",
                    self.ops_listen
                ),
            );
        }
        let f = &self.fairness;
        for (key, value) in [
            ("requests_per_sec", f.requests_per_sec),
            ("request_burst", f.request_burst),
            ("bytes_per_sec", f.bytes_per_sec),
        ] {
            if value == 0 {
                issues.add(format!("fairness.{key}"), "must be greater than 0");
            }
        }
        if f.byte_burst < self.limits.max_compressed_bytes as u64 {
            issues.add(
                "fairness.byte_burst",
                format!(
                    "{} is below limits.max_compressed_bytes ({}): the largest allowed batch would never pass",
                    f.byte_burst, self.limits.max_compressed_bytes
                ),
            );
        }
    }

    fn dedup_problems(&self, issues: &mut Issues) {
        let d = &self.dedup;
        match d.store {
            DedupStore::Sqlite if self.dedup_path().is_none() => issues.add(
                "dedup.path",
                "required when data_dir is not set: the file where the relay remembers delivered batches",
            ),
            DedupStore::Sqlite => {}
            DedupStore::Postgres => {
                if self.dedup_url().is_none() {
                    issues.add(
                        "dedup.url",
                        "required with store = \"postgres\" when [postgres] is not configured",
                    );
                }
                if let Err(why) = crate::sink::postgres::check_table(&d.table) {
                    issues.add("dedup.table", format!("{:?}: {why}", d.table));
                }
                if d.timeout.is_zero() {
                    issues.add("dedup.timeout_ms", "must be greater than 0");
                }
            }
        }
        if d.window.is_zero() {
            issues.add("dedup.window_hours", "must be greater than 0");
        }
        if self.admission.decode_budget_bytes == 0 {
            issues.add("admission.decode_budget_bytes", "must be greater than 0");
        }
        if d.max_rows == 0 {
            issues.add("dedup.max_rows", "must be greater than 0");
        }
        if d.prune_interval.is_zero() {
            issues.add("dedup.prune_interval_secs", "must be greater than 0");
        }
        // A lease that ends while its delivery still runs lets a retry
        // publish the batch a second time.
        let mut bounds = vec![];
        bounds.extend(
            self.kafka
                .as_ref()
                .map(|k| ("kafka.delivery_timeout_ms", k.delivery_timeout)),
        );
        bounds.extend(
            self.timeseries
                .as_ref()
                .map(|t| ("timeseries.timeout_ms", t.timeout)),
        );
        bounds.extend(
            self.postgres
                .as_ref()
                .map(|p| ("postgres.timeout_ms", p.timeout)),
        );
        if d.store == DedupStore::Postgres {
            bounds.push(("dedup.timeout_ms", d.timeout));
        }
        for (key, bound) in bounds {
            if d.claim_lease <= bound {
                issues.add(
                    "dedup.claim_lease_secs",
                    format!(
                        "{} s must exceed {key} ({} ms): a claim must outlast its delivery",
                        d.claim_lease.as_secs(),
                        bound.as_millis()
                    ),
                );
            }
        }
    }
}

/// Kafka's own rule for topic names.
fn check_topic(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() || topic.len() > 249 {
        return Err("must be 1 to 249 characters");
    }
    if topic == "." || topic == ".." {
        return Err("must not be . or ..");
    }
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err("may contain only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
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

mod raw;
use raw::RawConfig;

#[cfg(test)]
mod tests;
