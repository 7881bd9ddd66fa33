//! The spool's tables, the columns added since the first release (added at
//! open to a spool that lacks them), the batch checksum, and the instance id
//! drawn once per database.

use std::num::NonZeroU64;

use rusqlite::{params, Connection};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    created_us INTEGER NOT NULL,
    readings INTEGER NOT NULL,
    alarms INTEGER NOT NULL,
    body BLOB NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    checksum INTEGER,
    first_us INTEGER,
    last_us INTEGER
);
CREATE TABLE IF NOT EXISTS quarantine (
    seq INTEGER PRIMARY KEY,
    quarantined_us INTEGER NOT NULL,
    reason TEXT NOT NULL,
    readings INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS alarms (
    rule TEXT NOT NULL,
    series TEXT NOT NULL,
    raised_us INTEGER NOT NULL,
    limit_value REAL NOT NULL,
    severity TEXT NOT NULL,
    acked_us INTEGER,
    PRIMARY KEY (rule, series)
);
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_us INTEGER NOT NULL,
    reason TEXT NOT NULL,
    first_us INTEGER NOT NULL,
    last_us INTEGER NOT NULL,
    readings INTEGER NOT NULL,
    batches INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS frames_progress (
    device_id TEXT PRIMARY KEY,
    boot_id INTEGER NOT NULL,
    settled INTEGER
);
CREATE TABLE IF NOT EXISTS frames_taken (
    device_id TEXT NOT NULL,
    boot_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (device_id, boot_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mqtt_delivered (
    client_id TEXT NOT NULL,
    packet_id INTEGER NOT NULL,
    digest INTEGER NOT NULL,
    PRIMARY KEY (client_id, packet_id)
) WITHOUT ROWID;
";

/// Columns added after the first release: (table, column, definition).
/// Spools created before them get them at open. `checksum`, `first_us` and
/// `last_us` are NULL in old rows until [`check`] fills in the checksum;
/// the interval of an old row is taken as its `created_us`.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("batches", "priority", "INTEGER NOT NULL DEFAULT 0"),
    ("alarms", "acked_us", "INTEGER"),
    ("batches", "checksum", "INTEGER"),
    ("batches", "first_us", "INTEGER"),
    ("batches", "last_us", "INTEGER"),
];

/// Created after the migrations, since it needs `priority`.
const INDEXES: &str = "CREATE INDEX IF NOT EXISTS batches_by_lane ON batches (priority DESC, seq);";

/// The checksum stored with each batch: CRC-64/XZ of the encoded bytes,
/// kept in SQLite's signed 64-bit integer.
pub fn checksum(body: &[u8]) -> i64 {
    const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);
    CRC64.checksum(body) as i64
}

/// The spool's instance id: drawn (random, non-zero) and committed the first
/// time a database is opened, read back every time after. A spool from
/// before instance ids gets one at its first open by this version.
pub(super) fn instance(conn: &Connection) -> rusqlite::Result<NonZeroU64> {
    let drawn = fastrand::u64(1..) as i64;
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('instance', ?1) ON CONFLICT(key) DO NOTHING",
        params![drawn],
    )?;
    let stored: i64 = conn.query_row("SELECT value FROM meta WHERE key = 'instance'", [], |r| {
        r.get(0)
    })?;
    // A hand-edited 0 is replaced, not sent: 0 is reserved on the wire.
    match NonZeroU64::new(stored as u64) {
        Some(id) => Ok(id),
        None => {
            conn.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'instance'",
                params![drawn],
            )?;
            Ok(NonZeroU64::new(drawn as u64).expect("drawn from 1.."))
        }
    }
}

pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, definition) in ADDED_COLUMNS {
        let present: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
            params![table, column],
            |r| r.get(0),
        )?;
        if !present {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {definition}"
            ))?;
        }
    }
    conn.execute_batch(INDEXES)
}
