//! The PostgreSQL ledger: delivered rows and claims in two tables that a
//! fleet of relays shares, so a retry that lands on another relay behind a
//! round-robin load balancer is still recognised.
//!
//! ```sql
//! CREATE TABLE <table> (
//!     gateway text NOT NULL, instance bigint NOT NULL, seq bigint NOT NULL,
//!     digest bytea NOT NULL, delivered_ms bigint NOT NULL,
//!     PRIMARY KEY (gateway, instance, seq, digest));
//! CREATE TABLE <table>_claims (
//!     gateway text NOT NULL, instance bigint NOT NULL, seq bigint NOT NULL,
//!     digest bytea NOT NULL, token bigint NOT NULL, expires_ms bigint NOT NULL,
//!     PRIMARY KEY (gateway, instance, seq, digest));
//! CREATE TABLE <table>_series_tables (              -- super::tables
//!     gateway text NOT NULL, id bytea NOT NULL, body bytea NOT NULL,
//!     stored_ms bigint NOT NULL, PRIMARY KEY (gateway, id));
//! ```
//!
//! (`instance` and `seq` hold the u64's bits.) The statements, each one
//! round trip:
//! - claim: `INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_ms <= now`:
//!   a row comes back only when the batch was free or its lease had ended;
//!   the primary key serialises two relays claiming at once. Then, in a
//!   *separate* statement (a fresh snapshot), the delivered digests: a
//!   claim that succeeded after another relay's record committed therefore
//!   sees that record;
//! - record: one statement that inserts the delivered row and deletes the
//!   claim, so no reader sees the claim gone before the row is there;
//! - release: delete the claim if this token still holds it.
//!
//! Tables are created at the first connection under an advisory lock, so
//! relays starting together do not race on `CREATE TABLE IF NOT EXISTS`.
//! Every step is bounded by the timeout; a broken connection is opened
//! again at the next use.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, Statement};

use super::{BatchKey, ClaimKey, Digest, LedgerError, Pruned};

#[derive(Debug)]
pub(super) struct PostgresLedger {
    config: tokio_postgres::Config,
    /// `host:port/dbname`, for messages.
    target: String,
    table: String,
    timeout: Duration,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

#[derive(Debug)]
struct Conn {
    client: Client,
    claim: Statement,
    recorded: Statement,
    record: Statement,
    release: Statement,
    table: Statement,
    keep_table: Statement,
}

/// Any number: the advisory lock taken while creating the tables.
const CREATE_LOCK: i64 = 0x6564_6765_6c65_6467; // "edgeledg"

fn create_sql(table: &str) -> String {
    let base = table.rsplit('.').next().unwrap_or(table);
    format!(
        "BEGIN;
         SELECT pg_advisory_xact_lock({CREATE_LOCK});
         CREATE TABLE IF NOT EXISTS {table} (
             gateway text NOT NULL, instance bigint NOT NULL, seq bigint NOT NULL,
             digest bytea NOT NULL, delivered_ms bigint NOT NULL,
             PRIMARY KEY (gateway, instance, seq, digest));
         CREATE INDEX IF NOT EXISTS {base}_by_age ON {table} (delivered_ms);
         CREATE TABLE IF NOT EXISTS {table}_claims (
             gateway text NOT NULL, instance bigint NOT NULL, seq bigint NOT NULL,
             digest bytea NOT NULL, token bigint NOT NULL, expires_ms bigint NOT NULL,
             PRIMARY KEY (gateway, instance, seq, digest));
         CREATE TABLE IF NOT EXISTS {table}_series_tables (
             gateway text NOT NULL, id bytea NOT NULL, body bytea NOT NULL,
             stored_ms bigint NOT NULL, PRIMARY KEY (gateway, id));
         COMMIT;"
    )
}

impl PostgresLedger {
    pub(super) fn new(
        url: &tokio_postgres::Config,
        table: &str,
        timeout: Duration,
    ) -> PostgresLedger {
        let mut config = url.clone();
        config.connect_timeout(timeout);
        PostgresLedger {
            target: crate::sink::postgres::target(&config),
            config,
            table: table.to_owned(),
            timeout,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    fn error(&self, action: &'static str, e: &tokio_postgres::Error) -> LedgerError {
        LedgerError::Postgres {
            target: self.target.clone(),
            table: self.table.clone(),
            action,
            message: crate::sink::postgres::chain(e),
        }
    }

    /// Run `step` within the timeout; a timed-out or closed connection is
    /// dropped so the next step opens a new one.
    async fn bounded<T>(
        &self,
        action: &'static str,
        step: impl std::future::Future<Output = Result<T, LedgerError>>,
    ) -> Result<T, LedgerError> {
        match tokio::time::timeout(self.timeout, step).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let mut slot = self.conn.lock().await;
                if slot.as_ref().is_some_and(|c| c.client.is_closed()) {
                    *slot = None;
                }
                Err(e)
            }
            Err(_) => {
                *self.conn.lock().await = None;
                Err(LedgerError::Postgres {
                    target: self.target.clone(),
                    table: self.table.clone(),
                    action,
                    message: format!("timed out after {} ms", self.timeout.as_millis()),
                })
            }
        }
    }

    async fn connection(&self) -> Result<Arc<Conn>, LedgerError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(conn.clone());
        }
        *slot = None;
        let client = crate::sink::postgres::connect(&self.config, &self.target)
            .await
            .map_err(|e| self.error("connect", &e))?;
        client
            .batch_execute(&create_sql(&self.table))
            .await
            .map_err(|e| self.error("create tables", &e))?;
        let t = &self.table;
        let key = "gateway = $1 AND instance = $2 AND seq = $3";
        let prepare = |sql: String| {
            let client = &client;
            async move { client.prepare(&sql).await }
        };
        let claim = prepare(format!(
            "INSERT INTO {t}_claims AS c (gateway, instance, seq, digest, token, expires_ms)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (gateway, instance, seq, digest) DO UPDATE
                 SET token = excluded.token, expires_ms = excluded.expires_ms
                 WHERE c.expires_ms <= $7 OR c.token = excluded.token
             RETURNING 1"
        ))
        .await
        .map_err(|e| self.error("prepare claim", &e))?;
        let recorded = prepare(format!(
            "SELECT digest FROM {t} WHERE {key} AND delivered_ms >= $4"
        ))
        .await
        .map_err(|e| self.error("prepare lookup", &e))?;
        let record = prepare(format!(
            "WITH released AS (
                 DELETE FROM {t}_claims WHERE {key} AND digest = $4 AND token = $5)
             INSERT INTO {t} (gateway, instance, seq, digest, delivered_ms)
             VALUES ($1, $2, $3, $4, $6)
             ON CONFLICT (gateway, instance, seq, digest) DO UPDATE
                 SET delivered_ms = excluded.delivered_ms"
        ))
        .await
        .map_err(|e| self.error("prepare record", &e))?;
        let release = prepare(format!(
            "DELETE FROM {t}_claims WHERE {key} AND digest = $4 AND token = $5"
        ))
        .await
        .map_err(|e| self.error("prepare release", &e))?;
        let table = prepare(format!(
            "SELECT body FROM {t}_series_tables WHERE gateway = $1 AND id = $2"
        ))
        .await
        .map_err(|e| self.error("prepare table lookup", &e))?;
        // Insert (or refresh) and keep the gateway's newest, in one statement.
        let keep_table = prepare(format!(
            "WITH kept AS (
                 INSERT INTO {t}_series_tables (gateway, id, body, stored_ms)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (gateway, id) DO UPDATE SET stored_ms = excluded.stored_ms
                 RETURNING id)
             DELETE FROM {t}_series_tables WHERE gateway = $1 AND id <> $2 AND id NOT IN (
                 SELECT id FROM {t}_series_tables WHERE gateway = $1 AND id <> $2
                 ORDER BY stored_ms DESC LIMIT ($5::bigint - 1))"
        ))
        .await
        .map_err(|e| self.error("prepare table keep", &e))?;
        tracing::info!(target = %self.target, table = %self.table, "PostgreSQL ledger connected");
        let conn = Arc::new(Conn {
            client,
            claim,
            recorded,
            record,
            release,
            table,
            keep_table,
        });
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Claim `key` for `token`; `None` when another live claim holds it,
    /// else the digests delivered under the key since `cutoff_ms`.
    pub(super) async fn claim(
        &self,
        (key, digest): &ClaimKey,
        token: u64,
        now_ms: i64,
        lease_ms: i64,
        cutoff_ms: i64,
    ) -> Result<Option<Vec<Digest>>, LedgerError> {
        let (instance, seq) = (key.instance as i64, key.seq as i64);
        let expires = now_ms.saturating_add(lease_ms);
        self.bounded("claim", async {
            let conn = self.connection().await?;
            let got = conn
                .client
                .query(
                    &conn.claim,
                    &[
                        &key.gateway,
                        &instance,
                        &seq,
                        &digest.as_slice(),
                        &(token as i64),
                        &expires,
                        &now_ms,
                    ],
                )
                .await
                .map_err(|e| self.error("claim", &e))?;
            if got.is_empty() {
                return Ok(None);
            }
            self.recorded(&conn, key, cutoff_ms).await.map(Some)
        })
        .await
    }

    async fn recorded(
        &self,
        conn: &Conn,
        key: &BatchKey,
        cutoff_ms: i64,
    ) -> Result<Vec<Digest>, LedgerError> {
        let rows = conn
            .client
            .query(
                &conn.recorded,
                &[
                    &key.gateway,
                    &(key.instance as i64),
                    &(key.seq as i64),
                    &cutoff_ms,
                ],
            )
            .await
            .map_err(|e| self.error("lookup", &e))?;
        Ok(rows
            .iter()
            .map(|r| {
                let bytes: &[u8] = r.get(0);
                let mut d = [0; 16];
                if bytes.len() == 16 {
                    d.copy_from_slice(bytes);
                }
                d
            })
            .collect())
    }

    /// Insert the delivered row and delete the claim, in one statement.
    pub(super) async fn record(
        &self,
        (key, digest): &ClaimKey,
        token: u64,
        now_ms: i64,
    ) -> Result<(), LedgerError> {
        self.bounded("record", async {
            let conn = self.connection().await?;
            conn.client
                .execute(
                    &conn.record,
                    &[
                        &key.gateway,
                        &(key.instance as i64),
                        &(key.seq as i64),
                        &digest.as_slice(),
                        &(token as i64),
                        &now_ms,
                    ],
                )
                .await
                .map_err(|e| self.error("record", &e))
        })
        .await
        .map(drop)
    }

    /// Delete the claim if `token` still holds it.
    pub(super) async fn release(
        &self,
        (key, digest): &ClaimKey,
        token: u64,
    ) -> Result<(), LedgerError> {
        self.bounded("release", async {
            let conn = self.connection().await?;
            conn.client
                .execute(
                    &conn.release,
                    &[
                        &key.gateway,
                        &(key.instance as i64),
                        &(key.seq as i64),
                        &digest.as_slice(),
                        &(token as i64),
                    ],
                )
                .await
                .map_err(|e| self.error("release", &e))
        })
        .await
        .map(drop)
    }

    pub(super) async fn prune(
        &self,
        cutoff_ms: i64,
        max_rows: u64,
        now_ms: i64,
    ) -> Result<Pruned, LedgerError> {
        let t = self.table.clone();
        self.bounded("prune", async {
            let conn = self.connection().await?;
            let c = &conn.client;
            let by_age = c
                .execute(
                    &format!("DELETE FROM {t} WHERE delivered_ms < $1"),
                    &[&cutoff_ms],
                )
                .await
                .map_err(|e| self.error("prune by age", &e))?;
            let claims = c
                .execute(
                    &format!("DELETE FROM {t}_claims WHERE expires_ms <= $1"),
                    &[&now_ms],
                )
                .await
                .map_err(|e| self.error("prune claims", &e))?;
            let rows: i64 = c
                .query_one(&format!("SELECT count(*) FROM {t}"), &[])
                .await
                .map_err(|e| self.error("count", &e))?
                .get(0);
            let excess = (rows as u64).saturating_sub(max_rows) as i64;
            let by_rows = if excess > 0 {
                c.execute(
                    &format!(
                        "DELETE FROM {t} WHERE ctid IN (
                             SELECT ctid FROM {t} ORDER BY delivered_ms LIMIT $1)"
                    ),
                    &[&excess],
                )
                .await
                .map_err(|e| self.error("prune by rows", &e))?
            } else {
                0
            };
            Ok(Pruned {
                by_age,
                by_rows,
                claims,
                tables: 0,
            })
        })
        .await
    }

    /// The body of series table `id` of `gateway`, if stored.
    pub(super) async fn series_table(
        &self,
        gateway: &str,
        id: &[u8; 16],
    ) -> Result<Option<Vec<u8>>, LedgerError> {
        self.bounded("table lookup", async {
            let conn = self.connection().await?;
            let rows = conn
                .client
                .query(&conn.table, &[&gateway, &id.as_slice()])
                .await
                .map_err(|e| self.error("table lookup", &e))?;
            Ok(rows.first().map(|r| r.get::<_, Vec<u8>>(0)))
        })
        .await
    }

    /// Store a series table and keep only the gateway's newest
    /// [`super::tables::TABLES_PER_GATEWAY`], in one statement.
    pub(super) async fn keep_series_table(
        &self,
        gateway: &str,
        id: &[u8; 16],
        body: &[u8],
        now_ms: i64,
    ) -> Result<(), LedgerError> {
        self.bounded("table keep", async {
            let conn = self.connection().await?;
            conn.client
                .execute(
                    &conn.keep_table,
                    &[
                        &gateway,
                        &id.as_slice(),
                        &body,
                        &now_ms,
                        &super::tables::TABLES_PER_GATEWAY,
                    ],
                )
                .await
                .map_err(|e| self.error("table keep", &e))
        })
        .await
        .map(drop)
    }

    /// Delete series tables last stored before `cutoff_ms`.
    pub(super) async fn prune_series_tables(&self, cutoff_ms: i64) -> Result<u64, LedgerError> {
        let t = self.table.clone();
        self.bounded("prune tables", async {
            let conn = self.connection().await?;
            conn.client
                .execute(
                    &format!("DELETE FROM {t}_series_tables WHERE stored_ms < $1"),
                    &[&cutoff_ms],
                )
                .await
                .map_err(|e| self.error("prune tables", &e))
        })
        .await
    }

    pub(super) async fn series_tables(&self) -> Result<u64, LedgerError> {
        self.count(&format!("{}_series_tables", self.table)).await
    }

    /// `SELECT 1` on the connection (opened, and the tables created, if needed).
    pub(super) async fn ready(&self) -> Result<(), LedgerError> {
        self.bounded("SELECT 1", async {
            let conn = self.connection().await?;
            conn.client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| self.error("SELECT 1", &e))
        })
        .await
        .map(drop)
    }

    pub(super) async fn len(&self) -> Result<u64, LedgerError> {
        self.count(&self.table.clone()).await
    }

    pub(super) async fn claims_held(&self) -> Result<u64, LedgerError> {
        self.count(&format!("{}_claims", self.table)).await
    }

    async fn count(&self, table: &str) -> Result<u64, LedgerError> {
        self.bounded("count", async {
            let conn = self.connection().await?;
            let n: i64 = conn
                .client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .map_err(|e| self.error("count", &e))?
                .get(0);
            Ok(n as u64)
        })
        .await
    }
}
