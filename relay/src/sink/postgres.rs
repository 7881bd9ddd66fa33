//! The PostgreSQL sink: one row per reading in a TimescaleDB-compatible
//! table, written with one `INSERT ... SELECT FROM UNNEST(arrays)` statement
//! per batch. Alarm events, gaps and device-state events are not written
//! here; they go to Kafka or the file sink.
//!
//! The table (created if missing, default `edge_readings`):
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS edge_readings (
//!     time timestamptz NOT NULL,
//!     series text NOT NULL,
//!     value double precision,
//!     quality smallint NOT NULL,        -- 0 good, 1 uncertain, 2 bad
//!     gateway text NOT NULL,
//!     tags jsonb NOT NULL DEFAULT '{}', -- the series' tags
//!     PRIMARY KEY (gateway, series, time)
//! );
//! ```
//!
//! The primary key includes `time`, so `create_hypertable('edge_readings',
//! 'time')` accepts the table as it is.
//!
//! Invariants:
//! - Idempotent: `ON CONFLICT (gateway, series, time) DO NOTHING`, so a
//!   batch sent again after a lost answer, or two readings of one series with
//!   the same timestamp, leave one row. The gateway is part of the key:
//!   series names are unique per plant by convention, not across gateways,
//!   and two gateways' readings of a same-named series both stay. The statement is one transaction: a batch is
//!   in the table whole or not at all.
//! - Every reading is written, NaN and ±inf included (`double precision`
//!   holds them), unlike line protocol.
//! - PostgreSQL text cannot hold NUL: a NUL in a tag key or value becomes
//!   U+FFFD, so such a batch is stored instead of failing forever.
//! - One connection, opened at the first batch (the relay starts while the
//!   database is down) and opened again after it broke or a step timed out;
//!   every failure is a [`SinkError`], the gateway gets 503 and retries.
//! - The password of the URL never appears in messages: they name
//!   `host:port/dbname` only.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::{Client, NoTls, Statement};

use crate::message::Delivery;
use crate::sink::SinkError;

/// Default bound on connecting to PostgreSQL plus writing one batch, in milliseconds.
pub const DEFAULT_POSTGRES_TIMEOUT_MS: u64 = 10_000;

/// The PostgreSQL sink's configuration (`[postgres]`): where and how to
/// write readings.
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
            table: DEFAULT_TABLE.into(),
            timeout: Duration::from_millis(DEFAULT_POSTGRES_TIMEOUT_MS),
        }
    }
}

/// Default table of the readings.
pub const DEFAULT_TABLE: &str = "edge_readings";

/// Writes readings to a PostgreSQL table.
#[derive(Debug)]
pub struct PostgresSink {
    config: tokio_postgres::Config,
    /// `host:port/dbname`, for messages.
    target: String,
    table: String,
    timeout: Duration,
    /// The open connection, if any; replaced when it broke.
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

/// A connection with the insert statement prepared on it.
#[derive(Debug)]
struct Conn {
    client: Client,
    insert: Statement,
}

impl PostgresSink {
    /// Remember the settings; nothing is sent until the first batch.
    pub fn new(config: &PostgresConfig) -> PostgresSink {
        let mut pg = config.url.clone();
        // Connecting counts against the sink's timeout as a whole, but a
        // hanging connect must not wait for the OS's minutes either.
        pg.connect_timeout(config.timeout);
        PostgresSink {
            target: target(&pg),
            config: pg,
            table: config.table.clone(),
            timeout: config.timeout,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// Insert every reading of the batch; rows already there are kept.
    pub async fn deliver(&self, delivery: Arc<Delivery>) -> Result<(), SinkError> {
        let rows = Rows::of(&delivery);
        if rows.time.is_empty() {
            return Ok(());
        }
        let gateway = delivery.batch.gateway_id.as_str();
        self.bounded("insert", async {
            let conn = self.connection().await?;
            conn.client
                .execute(
                    &conn.insert,
                    &[
                        &rows.time,
                        &rows.series,
                        &rows.value,
                        &rows.quality,
                        &gateway,
                        &rows.tags,
                    ],
                )
                .await
                .map_err(|e| self.error("insert", &e))
        })
        .await
        .map(|_| ())
    }

    /// Readiness probe: `SELECT 1` on the connection (opened if needed).
    pub async fn ready(&self) -> Result<(), SinkError> {
        self.bounded("SELECT 1", async {
            let conn = self.connection().await?;
            conn.client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| self.error("SELECT 1", &e))
        })
        .await
        .map(|_| ())
    }

    /// Run `step` within the timeout; after a failure or a timeout a broken
    /// connection is dropped, so the next batch opens a new one.
    async fn bounded<T>(
        &self,
        action: &'static str,
        step: impl std::future::Future<Output = Result<T, SinkError>>,
    ) -> Result<T, SinkError> {
        let result = match tokio::time::timeout(self.timeout, step).await {
            Ok(result) => result,
            Err(_) => {
                // The connection may be stuck half-way through a message.
                *self.conn.lock().await = None;
                return Err(SinkError::PostgresTimeout {
                    target: self.target.clone(),
                    action,
                    after: self.timeout,
                });
            }
        };
        if result.is_err() {
            let mut slot = self.conn.lock().await;
            if slot.as_ref().is_some_and(|c| c.client.is_closed()) {
                *slot = None;
            }
        }
        result
    }

    /// The open connection, or a new one with the table created and the
    /// insert prepared.
    async fn connection(&self) -> Result<Arc<Conn>, SinkError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(conn.clone());
        }
        *slot = None;
        let client = connect(&self.config, &self.target)
            .await
            .map_err(|e| self.error("connect", &e))?;
        client
            .batch_execute(&create_table_sql(&self.table))
            .await
            .map_err(|e| self.error("create table", &e))?;
        let insert = client
            .prepare(&insert_sql(&self.table))
            .await
            .map_err(|e| self.error("prepare insert", &e))?;
        tracing::info!(target = %self.target, table = %self.table, "PostgreSQL connected");
        let conn = Arc::new(Conn { client, insert });
        *slot = Some(conn.clone());
        Ok(conn)
    }

    fn error(&self, action: &'static str, e: &tokio_postgres::Error) -> SinkError {
        SinkError::Postgres {
            target: self.target.clone(),
            table: self.table.clone(),
            action,
            message: chain(e),
        }
    }
}

/// The columns of one batch, one entry per reading.
#[derive(Debug, Default, PartialEq)]
pub struct Rows<'a> {
    /// Reading timestamps.
    pub time: Vec<SystemTime>,
    /// Series names.
    pub series: Vec<&'a str>,
    /// Values, non-finite ones included.
    pub value: Vec<f64>,
    /// Wire quality codes (0 good, 1 uncertain, 2 bad).
    pub quality: Vec<i16>,
    /// The series' tags as JSON objects.
    pub tags: Vec<String>,
}

impl<'a> Rows<'a> {
    /// Every reading of `delivery`, in batch order.
    pub fn of(delivery: &'a Delivery) -> Rows<'a> {
        let mut rows = Rows::default();
        for series in &delivery.batch.series {
            let tags = tags_json(&series.tags);
            for point in &series.points {
                rows.time.push(system_time(point.ts_us));
                rows.series.push(&series.name);
                rows.value.push(point.value);
                rows.quality.push(i16::from(point.quality.code()));
                rows.tags.push(tags.clone());
            }
        }
        rows
    }
}

/// The tags as a JSON object, NUL replaced by U+FFFD (jsonb refuses it).
fn tags_json(tags: &std::collections::BTreeMap<String, String>) -> String {
    let clean = |s: &str| s.replace('\0', "\u{FFFD}");
    let object: serde_json::Map<String, serde_json::Value> = tags
        .iter()
        .map(|(k, v)| (clean(k), serde_json::Value::String(clean(v))))
        .collect();
    serde_json::Value::Object(object).to_string()
}

/// Microseconds since the Unix epoch as a `SystemTime` (exact: PostgreSQL
/// keeps microseconds too).
fn system_time(ts_us: i64) -> SystemTime {
    let offset = Duration::from_micros(ts_us.unsigned_abs());
    if ts_us >= 0 {
        UNIX_EPOCH + offset
    } else {
        UNIX_EPOCH - offset
    }
}

/// Whether `table` is `name` or `schema.name`, each part 1 to 63 of
/// lower-case ASCII letters, digits and `_`, not starting with a digit.
/// Such names need no quoting, so the table is the one `psql` shows.
pub fn check_table(table: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 {
        return Err("must be name or schema.name");
    }
    for part in parts {
        if part.is_empty() || part.len() > 63 {
            return Err("each part must be 1 to 63 characters");
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            || part.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(
                "may contain only lower-case ASCII letters, digits and '_', not starting with a digit",
            );
        }
    }
    Ok(())
}

/// The `CREATE TABLE IF NOT EXISTS` of the module doc.
pub fn create_table_sql(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {table} (\n\
         time timestamptz NOT NULL,\n\
         series text NOT NULL,\n\
         value double precision,\n\
         quality smallint NOT NULL,\n\
         gateway text NOT NULL,\n\
         tags jsonb NOT NULL DEFAULT '{{}}'::jsonb,\n\
         PRIMARY KEY (gateway, series, time))"
    )
}

/// One statement for the whole batch: the columns as arrays, unnested.
pub fn insert_sql(table: &str) -> String {
    format!(
        "INSERT INTO {table} (time, series, value, quality, gateway, tags) \
         SELECT r.time, r.series, r.value, r.quality, $5, r.tags::jsonb \
         FROM UNNEST($1::timestamptz[], $2::text[], $3::float8[], $4::int2[], $6::text[]) \
         AS r(time, series, value, quality, tags) \
         ON CONFLICT (gateway, series, time) DO NOTHING"
    )
}

/// Connect without TLS and drive the connection in a task that logs how
/// it ended (`target` names the server in that line).
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
    target: &str,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    let target = target.to_owned();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(target = %target, error = %chain(&e), "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// `host:port/dbname` of a connection config, without user or password.
pub(crate) fn target(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

/// An error with its causes ("db error: ERROR: relation ... does not exist").
pub(crate) fn chain(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_wire::{Batch, Point, Quality, Series};

    #[test]
    fn table_names() {
        for good in ["edge_readings", "plant.readings", "_t", "t2"] {
            assert!(check_table(good).is_ok(), "{good}");
        }
        let long = "a".repeat(64);
        for bad in ["", "Edge", "a-b", "a.b.c", "2t", "a.", "x;drop", &long] {
            assert!(check_table(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rows_hold_every_reading_with_its_series_tags() {
        let batch = Batch {
            gateway_id: "gw-1".into(),
            instance: None,
            seq: 1,
            created_us: 0,
            series: vec![Series {
                id: 1,
                name: "s".into(),
                unit: "".into(),
                tags: [("site".to_string(), "a\0b".to_string())].into(),
                points: vec![
                    Point {
                        ts_us: -1,
                        value: f64::NAN,
                        quality: Quality::Bad,
                    },
                    Point {
                        ts_us: 1_795_316_400_123_456,
                        value: 2.5,
                        quality: Quality::Uncertain,
                    },
                ],
                reporting: None,
            }],
            alarms: vec![],
            gaps: Vec::new(),
            devices: Vec::new(),
        };
        let delivery = Delivery::new(batch).unwrap();
        let rows = Rows::of(&delivery);
        assert_eq!(
            rows.time,
            [
                UNIX_EPOCH - Duration::from_micros(1),
                UNIX_EPOCH + Duration::from_micros(1_795_316_400_123_456)
            ]
        );
        assert_eq!(rows.series, ["s", "s"]);
        assert!(rows.value[0].is_nan() && rows.value[1] == 2.5);
        assert_eq!(rows.quality, [2, 1]);
        assert_eq!(rows.tags[0], r#"{"site":"a�b"}"#);
    }

    #[test]
    fn target_names_host_port_and_database_but_no_password() {
        let config: tokio_postgres::Config = "postgresql://edge:secret@db.example:6543/plant"
            .parse()
            .unwrap();
        assert_eq!(target(&config), "db.example:6543/plant");
        let config: tokio_postgres::Config = "postgresql://postgres@127.0.0.1".parse().unwrap();
        assert_eq!(target(&config), "127.0.0.1:5432/postgres");
    }
}
