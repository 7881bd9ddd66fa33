//! The `spc_state` table of the spool database: the baselines and charts of
//! the SPC tests ([`crate::detect::spc`]), so that a restarted agent judges
//! against the baselines it learned rather than learning them again from
//! whatever the machine does after the restart.
//!
//! The table is created by the first save, so a spool of an agent without
//! SPC rules has no such table and keeps its size (a page counts against a
//! small `max_bytes`). One row per (event name, series), the state as
//! JSON. The pipeline
//! replaces every row after each reading batch it commits, so after a crash
//! the charts are those of the last committed batch. A row that no longer
//! parses (written by another version) is dropped at load and counted: its
//! test learns its baseline again.

use rusqlite::{params, Connection};

use crate::detect::SpcState;

const TABLE: &str = "CREATE TABLE IF NOT EXISTS spc_state (
    rule TEXT NOT NULL,
    series TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (rule, series)
) WITHOUT ROWID";

/// Replace every row with `states`, in one transaction (creating the
/// table the first time).
pub(super) fn save(conn: &mut Connection, states: &[SpcState]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute_batch(TABLE)?;
    tx.execute("DELETE FROM spc_state", [])?;
    {
        let mut stmt =
            tx.prepare("INSERT INTO spc_state (rule, series, state) VALUES (?1, ?2, ?3)")?;
        for s in states {
            // Serialising plain numbers and strings cannot fail.
            let json = serde_json::to_string(s).unwrap_or_default();
            stmt.execute(params![s.rule, s.series, json])?;
        }
    }
    tx.commit()
}

/// Every row that parses, ordered by (series, rule), and the number that
/// did not.
pub(super) fn load(conn: &Connection) -> rusqlite::Result<(Vec<SpcState>, usize)> {
    let exists: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'spc_state'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok((Vec::new(), 0));
    }
    let mut stmt = conn.prepare("SELECT state FROM spc_state ORDER BY series, rule")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let (mut states, mut unreadable) = (Vec::new(), 0);
    for json in rows {
        match serde_json::from_str(&json?) {
            Ok(s) => states.push(s),
            Err(_) => unreadable += 1,
        }
    }
    Ok((states, unreadable))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::detect::spc::{Spc, Test};
    use crate::detect::{Detector, Rule, Selector};
    use crate::reading::{Quality, Reading, SeriesInfo};
    use crate::spool::Spool;

    /// Guards against a restart learning the baseline again: the state
    /// written before a reopen comes back equal, and a detector seeded with
    /// it judges at once.
    #[test]
    fn spc_state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let mut r = Rule::new("flow", Selector::Series("pump.flow".into()));
        r.spc = Some(Spc::new(&[Test::BeyondLimits], 4));
        let s = Arc::new(SeriesInfo {
            name: "pump.flow".into(),
            unit: String::new(),
            tags: Default::default(),
        });
        let reading = |sec: i64, value| Reading {
            series: s.clone(),
            ts_us: sec * 1_000_000,
            value,
            quality: Quality::Good,
        };
        let mut d = Detector::new(std::slice::from_ref(&r));
        for (i, v) in [32.0, 33.0, 32.0, 33.0].into_iter().enumerate() {
            assert!(d.observe(&reading(i as i64, v)).is_empty());
        }
        let mut spool = Spool::open(&path).unwrap();
        spool.save_spc(&d.spc_states()).unwrap();
        spool.save_spc(&d.spc_states()).unwrap();
        drop(spool);
        let spool = Spool::open(&path).unwrap();
        let (states, unreadable) = spool.spc_states().unwrap();
        assert_eq!((states.len(), unreadable), (1, 0));
        assert_eq!(states, d.spc_states());
        let mut again = Detector::new(&[r]);
        assert!(again.seed_spc(states, 0).is_empty());
        // Centre 32.5, sigma 1 / 1.128: 40 is far out.
        assert_eq!(again.observe(&reading(10, 40.0)).len(), 1);
    }

    #[test]
    fn a_row_that_does_not_parse_is_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(&dir.path().join("spool.db")).unwrap();
        assert_eq!(spool.spc_states().unwrap(), (Vec::new(), 0), "no table yet");
        spool.save_spc(&[]).unwrap();
        spool
            .conn
            .execute(
                "INSERT INTO spc_state (rule, series, state) VALUES ('a', 'b', '{\"old\": 1}')",
                [],
            )
            .unwrap();
        assert_eq!(spool.spc_states().unwrap(), (Vec::new(), 1));
    }
}
