//! The `alarms` table of the spool database: which alarms are raised, so
//! that a restarted agent neither raises them again nor forgets to clear
//! them.
//!
//! One row per raised alarm, keyed by (event name, series name): a raise
//! event inserts (or replaces) it, an acknowledge event sets `acked_us` (the
//! first acknowledgement wins), a clear event deletes it, a rebaseline
//! event changes nothing (the clear before it did). The rows change
//! only inside the transaction of [`super::Spool::append`], with
//! the batch carrying those events, so after a crash the table agrees with
//! the spooled (and hence forwarded) events. A batch that never reached the
//! spool changed neither.
//!
//! Not here: on/off-delay counts in flight, rate windows and runs; see the
//! restart notes in [`crate::detect`]. Rows of a rule removed from the
//! config stay until a config that has it again clears them; the agent logs
//! them at start-up.

use rusqlite::types::Type;
use rusqlite::{params, Connection};

use crate::detect::ActiveAlarm;
use crate::reading::{Alarm, AlarmState, Severity};

/// Apply raise and clear events, in order, within the caller's transaction.
pub(super) fn apply(conn: &Connection, alarms: &[Alarm]) -> rusqlite::Result<()> {
    for a in alarms {
        match a.state {
            AlarmState::Raised => conn.execute(
                "INSERT OR REPLACE INTO alarms (rule, series, raised_us, limit_value, severity)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![a.rule, a.series.name, a.ts_us, a.limit, a.severity.as_str()],
            )?,
            AlarmState::Cleared => conn.execute(
                "DELETE FROM alarms WHERE rule = ?1 AND series = ?2",
                params![a.rule, a.series.name],
            )?,
            AlarmState::Acknowledged => conn.execute(
                "UPDATE alarms SET acked_us = ?3
                 WHERE rule = ?1 AND series = ?2 AND acked_us IS NULL",
                params![a.rule, a.series.name, a.ts_us],
            )?,
            // A rebaselined test's raised alarm was cleared by its own
            // event just before; the rebaseline itself is no row.
            AlarmState::Rebaselined => 0,
        };
    }
    Ok(())
}

/// (series, rule, acked_us) of every acknowledged row, ordered by (series, rule).
pub(super) fn acknowledged(conn: &Connection) -> rusqlite::Result<Vec<(String, String, i64)>> {
    let mut stmt = conn.prepare(
        "SELECT series, rule, acked_us FROM alarms WHERE acked_us IS NOT NULL
         ORDER BY series, rule",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

/// Every row, ordered by (series, rule).
pub(super) fn load(conn: &Connection) -> rusqlite::Result<Vec<ActiveAlarm>> {
    let mut stmt = conn.prepare(
        "SELECT rule, series, raised_us, limit_value, severity FROM alarms ORDER BY series, rule",
    )?;
    let rows = stmt.query_map([], |r| {
        let severity: String = r.get(4)?;
        let severity = Severity::parse(&severity).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                Type::Text,
                format!("unknown severity {severity:?}").into(),
            )
        })?;
        Ok(ActiveAlarm {
            rule: r.get(0)?,
            series: r.get(1)?,
            raised_us: r.get(2)?,
            limit: r.get(3)?,
            severity,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::time::Instant;

    use crate::batch::Batcher;
    use crate::config::BatchConfig;
    use crate::detect::{Detector, Level, Limit, Rule, Selector};
    use crate::reading::{Alarm, AlarmState, Quality, Reading, SeriesInfo, Severity};
    use crate::spool::{Lane, Spool};

    fn series() -> Arc<SeriesInfo> {
        Arc::new(SeriesInfo {
            name: "press-3.oil_temp".into(),
            unit: "degC".into(),
            tags: Default::default(),
        })
    }

    fn reading(sec: i64, value: f64) -> Reading {
        Reading {
            series: series(),
            ts_us: sec * 1_000_000,
            value,
            quality: Quality::Good,
        }
    }

    fn rules() -> Vec<Rule> {
        let mut r = Rule::new("oil_temp", Selector::Series("press-3.oil_temp".into()));
        r.limits.push(Limit {
            level: Level::High,
            limit: 80.0,
            severity: Severity::Critical,
        });
        vec![r]
    }

    /// Commit `alarms` in an alarm batch and `r` in a reading batch, as the
    /// agent does.
    fn commit(spool: &mut Spool, r: &Reading, alarms: Vec<Alarm>) {
        if !alarms.is_empty() {
            let mut batch = crate::batch::alarm_batch("gw", &alarms, 0);
            spool.append(&mut batch, &alarms, Lane::Alarms).unwrap();
        }
        let mut b = Batcher::new(
            "gw",
            BatchConfig {
                max_readings: 100,
                max_age: Duration::from_secs(1),
            },
        );
        b.push(r, Instant::now());
        let mut batch = b.seal(0).unwrap();
        spool.append(&mut batch, &[], Lane::Readings).unwrap();
    }

    #[test]
    fn raise_survives_reopen_and_clear_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let mut d = Detector::new(&rules());
        let mut s = Spool::open(&path).unwrap();
        let raise = d.observe(&reading(10, 90.0));
        commit(&mut s, &reading(10, 90.0), raise);
        drop(s);
        let s = Spool::open(&path).unwrap();
        let active = s.active_alarms().unwrap();
        assert_eq!(active, d.active());
        assert_eq!(
            (
                active[0].rule.as_str(),
                active[0].raised_us,
                active[0].limit
            ),
            ("oil_temp.high", 10_000_000, 80.0)
        );
        assert_eq!(active[0].severity, Severity::Critical);
        let mut s = s;
        let clear = d.observe(&reading(20, 70.0));
        commit(&mut s, &reading(20, 70.0), clear);
        assert!(s.active_alarms().unwrap().is_empty());
    }

    /// An acknowledgement is persisted with the batch carrying it, survives
    /// a reopen, is not overwritten by a second one and goes with the clear.
    #[test]
    fn acknowledgement_is_persisted_until_the_clear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let mut d = Detector::new(&rules());
        let mut s = Spool::open(&path).unwrap();
        let raise = d.observe(&reading(10, 90.0));
        let ack = |ts_us| Alarm {
            state: AlarmState::Acknowledged,
            ts_us,
            ..raise[0].clone()
        };
        commit(&mut s, &reading(10, 90.0), raise.clone());
        let mut b = crate::batch::alarm_batch("gw", &[ack(15_000_000)], 0);
        s.append(&mut b, &[ack(15_000_000)], Lane::Alarms).unwrap();
        let mut b = crate::batch::alarm_batch("gw", &[ack(16_000_000)], 0);
        s.append(&mut b, &[ack(16_000_000)], Lane::Alarms).unwrap();
        drop(s);
        let mut s = Spool::open(&path).unwrap();
        assert_eq!(
            s.acknowledged_alarms().unwrap(),
            [(
                "press-3.oil_temp".to_string(),
                "oil_temp.high".to_string(),
                15_000_000
            )]
        );
        let clear = d.observe(&reading(20, 70.0));
        commit(&mut s, &reading(20, 70.0), clear);
        assert!(s.acknowledged_alarms().unwrap().is_empty());
    }

    /// Guards against a restart raising an active alarm again or never
    /// clearing it: raise, persist, drop everything, reopen, seed a new
    /// detector, then a still-high value and a normal one.
    #[test]
    fn simulated_restart_neither_raises_again_nor_forgets_to_clear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        {
            let mut d = Detector::new(&rules());
            let mut s = Spool::open(&path).unwrap();
            let raise = d.observe(&reading(100, 95.0));
            assert_eq!(raise.len(), 1);
            commit(&mut s, &reading(100, 95.0), raise);
        }
        let mut s = Spool::open(&path).unwrap();
        let mut d = Detector::new(&rules());
        assert!(d.seed(s.active_alarms().unwrap()).is_empty());
        let still_high = d.observe(&reading(160, 96.0));
        assert!(still_high.is_empty(), "raised again: {still_high:?}");
        let normal = d.observe(&reading(400, 60.0));
        assert_eq!(normal.len(), 1);
        assert_eq!(normal[0].state, AlarmState::Cleared);
        assert_eq!(normal[0].duration_us, Some(300_000_000));
        commit(&mut s, &reading(400, 60.0), normal);
        drop(s);
        let s = Spool::open(&path).unwrap();
        assert!(s.active_alarms().unwrap().is_empty());
        // Both events reached the spool, once each, in the alarm lane
        // (beside the two reading batches).
        let (alarm_batches, events): (i64, i64) = s
            .conn
            .query_row(
                "SELECT COUNT(*), SUM(alarms) FROM batches WHERE priority = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((alarm_batches, events), (2, 2));
        assert_eq!(s.stats().unwrap().batches, 4);
    }
}
