//! The config file exactly as written: serde structs with
//! `deny_unknown_fields` and every key optional, so a missing or malformed
//! value becomes one [`super::ConfigIssue`] among all the others instead of
//! stopping the parse. Numbers are read as `i64` (TOML's integer) and
//! range-checked here for the same reason.
//!
//! [`RawConfig::check`] always returns a config; a key that could not be
//! converted gets its default and an issue, and the caller refuses the result
//! if any issue was recorded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use edge_wire::Limits;
use reqwest::Url;
use serde::Deserialize;

use crate::auth::{check_token, TokenHash};
use crate::message::Version;
use crate::sink::kafka::config::{DEFAULT_ALARMS_TOPIC_V2, DEFAULT_READINGS_TOPIC_V2};
use crate::sink::line_protocol::{LineLayout, QualityAs};
use crate::sink::postgres::DEFAULT_TABLE;
use crate::validation::{TimeWindow, DEFAULT_MAX_FUTURE_SECS, DEFAULT_MAX_PAST_HOURS};

use super::{
    DedupConfig, DedupStore, GatewayConfig, Granularity, Issues, KafkaConfig, PostgresConfig,
    RelayConfig, TimeseriesConfig, DEFAULT_ALARMS_TOPIC, DEFAULT_DEDUP_CLAIM_LEASE_SECS,
    DEFAULT_DEDUP_MAX_ROWS, DEFAULT_DEDUP_PRUNE_INTERVAL_SECS, DEFAULT_DEDUP_TIMEOUT_MS,
    DEFAULT_DEDUP_WINDOW_HOURS, DEFAULT_DELIVERY_TIMEOUT_MS, DEFAULT_EVENTS_TOPIC, DEFAULT_LISTEN,
    DEFAULT_OPS_LISTEN, DEFAULT_POSTGRES_TIMEOUT_MS, DEFAULT_READINGS_TOPIC,
    DEFAULT_TIMESERIES_TIMEOUT_MS,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    /// Address and port the HTTP server listens on.
    listen: Option<String>,
    /// Directory of the embedded file sink (readings.jsonl, alarms.jsonl); required when none of [kafka], [timeseries], [postgres] is configured.
    data_dir: Option<PathBuf>,
    /// Gateways allowed to upload, each with the hashes of its bearer tokens.
    #[serde(default)]
    gateways: Vec<RawGateway>,
    /// Bounds on one uploaded batch, enforced before and while decoding.
    #[serde(default)]
    limits: RawLimits,
    /// Publish readings and alarms to Kafka.
    kafka: Option<RawKafka>,
    /// Write readings to a time-series store in Influx line protocol.
    timeseries: Option<RawTimeseries>,
    /// Write readings to a PostgreSQL (or TimescaleDB) table, one row per reading.
    postgres: Option<RawPostgres>,
    /// Recognise a batch delivered before (same gateway, spool instance and sequence number, for example a retry after a lost response) and answer it 200 without publishing it again.
    #[serde(default)]
    dedup: RawDedup,
    /// What a request must get before the relay spends memory on it: the shared decode budget.
    #[serde(default)]
    admission: RawAdmission,
    /// Serve HTTPS instead of plain HTTP; optionally require client certificates.
    tls: Option<RawTls>,
    /// Bounds on connections: how many may be open, how long each may take to send its request.
    #[serde(default)]
    server: RawServer,
    /// The operations endpoints (/metrics, /readyz, /healthz), on a listener of their own.
    #[serde(default)]
    ops: RawOps,
    /// What each gateway may send: a token bucket for requests and one for bytes; past them 429 with Retry-After.
    #[serde(default)]
    fairness: RawFairness,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    /// Most connections open at once (default 512, well below the unit's LimitNOFILE of 8192); when full, a new connection evicts the oldest idle or half-open one.
    max_connections: Option<i64>,
    /// Longest wait for a complete request head, and for the next request on an idle keep-alive connection, in milliseconds (default 10000); then the connection is closed.
    header_timeout_ms: Option<i64>,
    /// Longest a request body may take to arrive, in milliseconds (default 30000); then 400.
    body_timeout_ms: Option<i64>,
    /// Longest a TLS handshake may take, in milliseconds (default 10000).
    tls_handshake_timeout_ms: Option<i64>,
    /// After SIGTERM, longest wait for requests in flight, in milliseconds (default 15000); idle connections are closed at once.
    shutdown_grace_ms: Option<i64>,
}

impl RawServer {
    fn check(self, issues: &mut Issues) -> crate::connections::ConnectionLimits {
        use crate::connections::*;
        let mut ms = |key: &str, value: Option<i64>, default: u64| {
            Duration::from_millis(
                count(issues, &format!("server.{key}"), value, default as usize) as u64,
            )
        };
        ConnectionLimits {
            header_timeout: ms(
                "header_timeout_ms",
                self.header_timeout_ms,
                DEFAULT_HEADER_TIMEOUT_MS,
            ),
            body_timeout: ms(
                "body_timeout_ms",
                self.body_timeout_ms,
                DEFAULT_BODY_TIMEOUT_MS,
            ),
            tls_handshake_timeout: ms(
                "tls_handshake_timeout_ms",
                self.tls_handshake_timeout_ms,
                DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
            ),
            shutdown_grace: ms(
                "shutdown_grace_ms",
                self.shutdown_grace_ms,
                DEFAULT_SHUTDOWN_GRACE_MS,
            ),
            max_connections: count(
                issues,
                "server.max_connections",
                self.max_connections,
                DEFAULT_MAX_CONNECTIONS,
            ),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOps {
    /// Address and port of the operations listener (default "127.0.0.1:9181", loopback only); must differ from listen.
    listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFairness {
    /// Requests one gateway may make per second, sustained (default 500).
    requests_per_sec: Option<i64>,
    /// Requests one gateway may make at once after a quiet spell (default 1000).
    request_burst: Option<i64>,
    /// Body bytes one gateway may send per second, sustained (default 33554432, 32 MiB).
    bytes_per_sec: Option<i64>,
    /// Body bytes one gateway may send at once after a quiet spell (default 67108864, 64 MiB); at least limits.max_compressed_bytes.
    byte_burst: Option<i64>,
}

impl RawFairness {
    fn check(self, issues: &mut Issues) -> crate::fairness::FairnessConfig {
        use crate::fairness::*;
        let mut n = |key: &str, value: Option<i64>, default: u64| {
            count(issues, &format!("fairness.{key}"), value, default as usize) as u64
        };
        FairnessConfig {
            requests_per_sec: n(
                "requests_per_sec",
                self.requests_per_sec,
                DEFAULT_REQUESTS_PER_SEC,
            ),
            request_burst: n("request_burst", self.request_burst, DEFAULT_REQUEST_BURST),
            bytes_per_sec: n("bytes_per_sec", self.bytes_per_sec, DEFAULT_BYTES_PER_SEC),
            byte_burst: n("byte_burst", self.byte_burst, DEFAULT_BYTE_BURST),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    /// PEM file with the server certificate, then any intermediate certificates.
    cert_file: Option<PathBuf>,
    /// PEM file with the server's private key (PKCS#8, PKCS#1 or SEC1).
    key_file: Option<PathBuf>,
    /// PEM file of the CA that signs gateway certificates; when set, every client must present one (mutual TLS), and its subject CN or a DNS SAN must be the id of the gateway whose token it sends.
    client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDedup {
    /// Where delivered batches are remembered: "sqlite" (a file, for one relay; the default) or "postgres" (tables every relay of a fleet shares, so a retry landing on another relay is still recognised).
    store: Option<String>,
    /// SQLite file that remembers delivered batches across restarts (default "<data_dir>/delivered.db"; required without data_dir).
    path: Option<PathBuf>,
    /// PostgreSQL server of the shared ledger (store = "postgres"), for example postgresql://edge@db:5432/plant; default the [postgres] sink's url.
    url: Option<String>,
    /// PostgreSQL table of the shared ledger (default "edge_ledger"; claims in "<table>_claims"), created if missing: name or schema.name.
    table: Option<String>,
    /// Longest wait for one step of the PostgreSQL ledger, in milliseconds (default 5000); past it the batch gets 503.
    timeout_ms: Option<i64>,
    /// How long a delivered batch is remembered, in hours (default 168, a week); a retry older than that is published again.
    window_hours: Option<i64>,
    /// Most delivered batches remembered (default 10000000); beyond it the oldest are forgotten first, with a warning.
    max_rows: Option<i64>,
    /// How often the relay forgets batches past window_hours or max_rows and ended claims, in seconds (default 60).
    prune_interval_secs: Option<i64>,
    /// How long a claim on a batch being delivered holds when its relay never releases it (killed mid-delivery), in seconds (default 60); must exceed every sink's timeout. Meanwhile retries of that batch get 503.
    claim_lease_secs: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmission {
    /// Most bytes all requests together may hold while decoding (input, decompressed document, decoder buffers, decoded batch); default 134217728 (128 MiB).
    decode_budget_bytes: Option<i64>,
    /// Longest a request waits for decode budget before it gets 503 with Retry-After, in milliseconds (default 100).
    decode_wait_ms: Option<i64>,
}

impl RawAdmission {
    fn check(self, issues: &mut Issues) -> crate::admission::AdmissionConfig {
        use crate::admission::*;
        AdmissionConfig {
            decode_budget_bytes: count(
                issues,
                "admission.decode_budget_bytes",
                self.decode_budget_bytes,
                DEFAULT_DECODE_BUDGET_BYTES,
            ),
            decode_wait: Duration::from_millis(count(
                issues,
                "admission.decode_wait_ms",
                self.decode_wait_ms,
                DEFAULT_DECODE_WAIT_MS as usize,
            ) as u64),
        }
    }
}

impl RawDedup {
    fn check(self, issues: &mut Issues) -> DedupConfig {
        let d = DedupConfig::new();
        let store = match self.store.as_deref() {
            None | Some("sqlite") => DedupStore::Sqlite,
            Some("postgres") => DedupStore::Postgres,
            Some(other) => {
                issues.add(
                    "dedup.store",
                    format!("{other:?} is not \"sqlite\" or \"postgres\""),
                );
                DedupStore::Sqlite
            }
        };
        let url = self.url.and_then(|text| {
            // The URL may hold a password: the message does not echo it.
            text.parse()
                .map_err(|e| {
                    issues.add(
                        "dedup.url",
                        format!("not a PostgreSQL URL (postgresql://user@host:port/dbname): {e}"),
                    )
                })
                .ok()
        });
        let mut n = |key: &str, value: Option<i64>, default: usize| {
            count(issues, &format!("dedup.{key}"), value, default) as u64
        };
        DedupConfig {
            store,
            path: self.path,
            url,
            table: self.table.unwrap_or(d.table),
            timeout: Duration::from_millis(n(
                "timeout_ms",
                self.timeout_ms,
                DEFAULT_DEDUP_TIMEOUT_MS,
            )),
            window: Duration::from_secs(
                3600 * n(
                    "window_hours",
                    self.window_hours,
                    DEFAULT_DEDUP_WINDOW_HOURS,
                ),
            ),
            max_rows: n("max_rows", self.max_rows, DEFAULT_DEDUP_MAX_ROWS),
            prune_interval: Duration::from_secs(n(
                "prune_interval_secs",
                self.prune_interval_secs,
                DEFAULT_DEDUP_PRUNE_INTERVAL_SECS,
            )),
            claim_lease: Duration::from_secs(n(
                "claim_lease_secs",
                self.claim_lease_secs,
                DEFAULT_DEDUP_CLAIM_LEASE_SECS,
            )),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    /// Gateway id; must equal the gateway_id inside every batch it sends.
    id: Option<String>,
    /// Hashes of the gateway's active bearer tokens, each printed by `edge-relay hash-token`. List two while rotating a token; remove one to revoke it.
    tokens: Option<Vec<String>>,
    /// Development only: a plaintext bearer token (at least 16 bytes). The relay hashes it at start and warns loudly; use tokens in production.
    token: Option<String>,
    /// Site (plant) the gateway is installed at; copied into every message as `site`.
    site: Option<String>,
    /// Tags of the gateway (string to string); copied into every message as `gateway_tags`.
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    /// Largest request body (encoded, compressed batch) accepted, in bytes; larger gets 413.
    max_compressed_bytes: Option<i64>,
    /// Largest decompressed batch accepted, in bytes; larger gets 413.
    max_decompressed_bytes: Option<i64>,
    /// Most series in one batch.
    max_series: Option<i64>,
    /// Most readings in one batch, across all series.
    max_readings: Option<i64>,
    /// Most alarm events in one batch.
    max_alarms: Option<i64>,
    /// Most gap records (intervals a gateway dropped) in one batch.
    max_gaps: Option<i64>,
    /// Most device-state events (a device behind a gateway down, degraded or back) in one batch.
    max_device_events: Option<i64>,
    /// Most tags on one series.
    max_tags: Option<i64>,
    /// Longest string in a batch (gateway id, series name, unit, tag key or value, rule), in bytes.
    max_string_bytes: Option<i64>,
    /// Latest accepted reading or alarm timestamp, in seconds after the relay's clock; a batch with a later one gets 422.
    max_future_secs: Option<i64>,
    /// Earliest accepted reading or alarm timestamp, in hours before the relay's clock; a batch with an earlier one gets 422.
    max_past_hours: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKafka {
    /// Bootstrap brokers, host:port each.
    brokers: Option<Vec<String>>,
    /// Topic for v1 readings (key = series name), one message per reading.
    readings_topic: Option<String>,
    /// Topic for v1 alarm events (key = series name), one message per event.
    alarms_topic: Option<String>,
    /// Topic for v2 readings (key = <gateway>:<series>).
    readings_topic_v2: Option<String>,
    /// Topic for v2 alarm events (key = <gateway>:<series>).
    alarms_topic_v2: Option<String>,
    /// Which message generations to publish: "v1" (default), "v2", or "both" while consumers migrate (docs/kafka-messages.md, "Versions and migration").
    message_versions: Option<String>,
    /// Topic for gateway events (readings a gateway dropped under its spool policy), keyed by gateway id.
    events_topic: Option<String>,
    /// Longest wait for the brokers to acknowledge a message (librdkafka message.timeout.ms); past it the batch fails with 503.
    delivery_timeout_ms: Option<i64>,
    /// "reading": one message per reading (edge.reading.v1); "series": one message per series per batch (edge.series-batch.v1).
    granularity: Option<String>,
    /// Extra librdkafka producer properties, passed through unchanged; the relay refuses any that would weaken delivery (idempotence off, acks other than all, retries 0, more than 5 in flight) or that it sets itself.
    producer: Option<BTreeMap<String, toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeseries {
    /// Influx line protocol write endpoint, for example VictoriaMetrics http://127.0.0.1:8428/write (plain http only for now).
    url: Option<String>,
    /// Measurement name of every line; VictoriaMetrics names the metric <measurement>_value.
    measurement: Option<String>,
    /// Longest wait for one write request to the store; past it the batch fails with 503.
    timeout_ms: Option<i64>,
    /// Tag key that carries the series name.
    series_tag: Option<String>,
    /// Tag key that carries the gateway id; "" writes no gateway tag.
    gateway_tag: Option<String>,
    /// Where the reading's quality goes: "tag" (quality=good), "field" (an integer field with the wire code, quality=0i; 0 good, 1 uncertain, 2 bad) or "none".
    quality: Option<String>,
    /// Tag or field key of the quality.
    quality_key: Option<String>,
    /// Field key of the value; VictoriaMetrics names the metric <measurement>_<value_field>.
    value_field: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    /// PostgreSQL connection URL, for example postgresql://edge@127.0.0.1:5432/plant (no TLS built in yet).
    url: Option<String>,
    /// Table of the readings, created if missing: name or schema.name (the schema must exist), lower-case letters, digits and '_'.
    table: Option<String>,
    /// Longest wait for connecting plus writing one batch; past it the batch fails with 503.
    timeout_ms: Option<i64>,
}

impl RawPostgres {
    fn check(self, issues: &mut Issues) -> PostgresConfig {
        let placeholder = tokio_postgres::Config::new;
        let url = match self.url {
            None => {
                issues.add("postgres.url", "required when [postgres] is present");
                placeholder()
            }
            // The URL may hold a password: the message does not echo it.
            Some(text) => text.parse().unwrap_or_else(|e| {
                issues.add(
                    "postgres.url",
                    format!("not a PostgreSQL URL (postgresql://user@host:port/dbname): {e}"),
                );
                placeholder()
            }),
        };
        let timeout_ms = count(
            issues,
            "postgres.timeout_ms",
            self.timeout_ms,
            DEFAULT_POSTGRES_TIMEOUT_MS as usize,
        );
        PostgresConfig {
            url,
            table: self.table.unwrap_or_else(|| DEFAULT_TABLE.into()),
            timeout: Duration::from_millis(timeout_ms as u64),
        }
    }
}

impl RawConfig {
    pub(super) fn check(self, issues: &mut Issues) -> RelayConfig {
        let listen_text = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text.parse().unwrap_or_else(|e| {
            issues.add(
                "listen",
                format!("{listen_text:?} is not an address:port: {e}"),
            );
            DEFAULT_LISTEN
                .parse()
                .expect("DEFAULT_LISTEN is a valid socket address")
        });
        let ops_text = self.ops.listen.as_deref().unwrap_or(DEFAULT_OPS_LISTEN);
        let ops_listen = ops_text.parse().unwrap_or_else(|e| {
            issues.add(
                "ops.listen",
                format!("{ops_text:?} is not an address:port: {e}"),
            );
            DEFAULT_OPS_LISTEN
                .parse()
                .expect("DEFAULT_OPS_LISTEN is a valid socket address")
        });
        let mut warnings = Vec::new();
        let gateways = self
            .gateways
            .into_iter()
            .enumerate()
            // A missing id or token list is left empty; `problems` reports it.
            .map(|(i, gw)| {
                let mut tokens = Vec::new();
                for (j, text) in gw.tokens.unwrap_or_default().iter().enumerate() {
                    match TokenHash::parse(text) {
                        Ok(hash) => tokens.push(hash),
                        // The text may be a pasted token: never echo it.
                        Err(why) => issues.add(format!("gateways[{i}].tokens[{j}]"), why),
                    }
                }
                if let Some(token) = gw.token {
                    match check_token(&token) {
                        Ok(()) => {
                            tokens.push(TokenHash::of(token.as_bytes()));
                            warnings.push(super::ConfigIssue {
                                key: format!("gateways[{i}].token"),
                                message: "plaintext token in the config file: for development only; \
                                          replace it with tokens = [\"<hash>\"] from `edge-relay hash-token`"
                                    .into(),
                            });
                        }
                        Err(why) => issues.add(format!("gateways[{i}].token"), why),
                    }
                }
                GatewayConfig {
                    id: gw.id.unwrap_or_default(),
                    tokens,
                    site: gw.site,
                    tags: gw.tags.unwrap_or_default(),
                }
            })
            .collect();
        let dedup = self.dedup.check(issues);
        RelayConfig {
            listen,
            ops_listen,
            server: self.server.check(issues),
            fairness: self.fairness.check(issues),
            dedup,
            admission: self.admission.check(issues),
            data_dir: self.data_dir,
            gateways,
            time_window: TimeWindow {
                max_future: Duration::from_secs(count(
                    issues,
                    "limits.max_future_secs",
                    self.limits.max_future_secs,
                    DEFAULT_MAX_FUTURE_SECS as usize,
                ) as u64),
                max_past: Duration::from_secs(
                    3600 * count(
                        issues,
                        "limits.max_past_hours",
                        self.limits.max_past_hours,
                        DEFAULT_MAX_PAST_HOURS as usize,
                    ) as u64,
                ),
            },
            limits: self.limits.check(issues),
            kafka: self.kafka.map(|k| k.check(issues)),
            timeseries: self.timeseries.map(|t| t.check(issues)),
            postgres: self.postgres.map(|p| p.check(issues)),
            tls: self.tls.map(|t| {
                let mut required = |key: &str, value: Option<PathBuf>| {
                    value.unwrap_or_else(|| {
                        issues.add(format!("tls.{key}"), "required when [tls] is present");
                        PathBuf::new()
                    })
                };
                super::TlsConfig {
                    cert_file: required("cert_file", t.cert_file),
                    key_file: required("key_file", t.key_file),
                    client_ca_file: t.client_ca_file,
                }
            }),
            warnings,
        }
    }
}

impl RawLimits {
    fn check(self, issues: &mut Issues) -> Limits {
        let d = Limits::default();
        let mut size = |key: &str, value: Option<i64>, default: usize| {
            count(issues, &format!("limits.{key}"), value, default)
        };
        Limits {
            max_compressed_bytes: size(
                "max_compressed_bytes",
                self.max_compressed_bytes,
                d.max_compressed_bytes,
            ),
            max_decompressed_bytes: size(
                "max_decompressed_bytes",
                self.max_decompressed_bytes,
                d.max_decompressed_bytes,
            ),
            max_series: size("max_series", self.max_series, d.max_series),
            max_readings: size("max_readings", self.max_readings, d.max_readings),
            max_alarms: size("max_alarms", self.max_alarms, d.max_alarms),
            max_gaps: size("max_gaps", self.max_gaps, d.max_gaps),
            max_device_events: size(
                "max_device_events",
                self.max_device_events,
                d.max_device_events,
            ),
            max_tags: size("max_tags", self.max_tags, d.max_tags),
            max_string_bytes: size(
                "max_string_bytes",
                self.max_string_bytes,
                d.max_string_bytes,
            ),
        }
    }
}

impl RawKafka {
    fn check(self, issues: &mut Issues) -> KafkaConfig {
        // Missing brokers are reported by `problems` ("at least one broker").
        let brokers = self.brokers.unwrap_or_default();
        let timeout_ms = count(
            issues,
            "kafka.delivery_timeout_ms",
            self.delivery_timeout_ms,
            DEFAULT_DELIVERY_TIMEOUT_MS as usize,
        );
        KafkaConfig {
            brokers,
            readings_topic: self
                .readings_topic
                .unwrap_or_else(|| DEFAULT_READINGS_TOPIC.into()),
            alarms_topic: self
                .alarms_topic
                .unwrap_or_else(|| DEFAULT_ALARMS_TOPIC.into()),
            readings_topic_v2: self
                .readings_topic_v2
                .unwrap_or_else(|| DEFAULT_READINGS_TOPIC_V2.into()),
            alarms_topic_v2: self
                .alarms_topic_v2
                .unwrap_or_else(|| DEFAULT_ALARMS_TOPIC_V2.into()),
            message_versions: match self.message_versions.as_deref() {
                None | Some("v1") => vec![Version::V1],
                Some("v2") => vec![Version::V2],
                Some("both") => vec![Version::V1, Version::V2],
                Some(other) => {
                    issues.add(
                        "kafka.message_versions",
                        format!("{other:?} is not \"v1\", \"v2\" or \"both\""),
                    );
                    vec![Version::V1]
                }
            },
            events_topic: self
                .events_topic
                .unwrap_or_else(|| DEFAULT_EVENTS_TOPIC.into()),
            delivery_timeout: Duration::from_millis(timeout_ms as u64),
            granularity: match self.granularity.as_deref() {
                None | Some("reading") => Granularity::Reading,
                Some("series") => Granularity::Series,
                Some(other) => {
                    issues.add(
                        "kafka.granularity",
                        format!("{other:?} is not \"reading\" or \"series\""),
                    );
                    Granularity::Reading
                }
            },
            producer: self
                .producer
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(name, value)| {
                    let text = match value {
                        toml::Value::String(s) => s,
                        toml::Value::Integer(i) => i.to_string(),
                        toml::Value::Boolean(b) => b.to_string(),
                        toml::Value::Float(f) => f.to_string(),
                        other => {
                            issues.add(
                                format!("kafka.producer.{name:?}"),
                                format!(
                                    "is a {}; librdkafka properties are strings, integers or booleans",
                                    other.type_str()
                                ),
                            );
                            return None;
                        }
                    };
                    Some((name, text))
                })
                .collect(),
        }
    }
}

impl RawTimeseries {
    fn check(self, issues: &mut Issues) -> TimeseriesConfig {
        let placeholder = || Url::parse("http://127.0.0.1:8428/write").expect("valid URL literal");
        let url = match self.url {
            None => {
                issues.add("timeseries.url", "required when [timeseries] is present");
                placeholder()
            }
            Some(text) => Url::parse(&text).unwrap_or_else(|e| {
                issues.add("timeseries.url", format!("{text:?} is not a URL: {e}"));
                placeholder()
            }),
        };
        let timeout_ms = count(
            issues,
            "timeseries.timeout_ms",
            self.timeout_ms,
            DEFAULT_TIMESERIES_TIMEOUT_MS as usize,
        );
        let d = LineLayout::default();
        let quality = match self.quality.as_deref() {
            None => d.quality,
            Some(text) => QualityAs::parse(text).unwrap_or_else(|| {
                let names = QualityAs::NAMES.join(", ");
                issues.add(
                    "timeseries.quality",
                    format!("{text:?} is not one of {names}"),
                );
                d.quality
            }),
        };
        let layout = LineLayout {
            measurement: self.measurement.unwrap_or(d.measurement),
            series_tag: self.series_tag.unwrap_or(d.series_tag),
            gateway_tag: match self.gateway_tag {
                None => d.gateway_tag,
                Some(tag) if tag.is_empty() => None,
                Some(tag) => Some(tag),
            },
            quality,
            quality_key: self.quality_key.unwrap_or(d.quality_key),
            value_field: self.value_field.unwrap_or(d.value_field),
        };
        TimeseriesConfig {
            url,
            layout,
            timeout: Duration::from_millis(timeout_ms as u64),
        }
    }
}

/// A non-negative integer key: the value, the default when absent, or an
/// issue and the default when negative.
fn count(issues: &mut Issues, key: &str, value: Option<i64>, default: usize) -> usize {
    match value {
        None => default,
        Some(v) => usize::try_from(v).unwrap_or_else(|_| {
            issues.add(key, format!("{v} must not be negative"));
            default
        }),
    }
}
