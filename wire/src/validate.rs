//! [`Batch::validate`]: the model invariants that [`crate::encode`] checks
//! before writing and that the decoder enforces on what it reads.
//!
//! Only invariants that make a batch ambiguous are checked here (duplicate
//! series ids, alarms naming unknown series, gap intervals that end before
//! they start, device events in a batch without a spool instance, which no
//! format version can carry, a report-by-exception description with a
//! deadband that is negative or not finite or no heartbeat); size bounds belong to
//! [`crate::Limits`], which only the reader applies.

use crate::{Batch, Gap, Reporting, WireError};

impl Batch {
    /// Check that series ids are unique, that every alarm names a series
    /// of this batch, that every gap interval is well-formed and that a
    /// batch with device events has a spool instance (format v5 is v4 plus
    /// the device list, and v4's header always holds the instance).
    pub fn validate(&self) -> Result<(), WireError> {
        let mut ids: Vec<u32> = self.series.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(WireError::Invalid(format!(
                "series id {} appears more than once in the dictionary",
                pair[0]
            )));
        }
        for (j, alarm) in self.alarms.iter().enumerate() {
            if ids.binary_search(&alarm.series_id).is_err() {
                return Err(WireError::Invalid(format!(
                    "alarm {j} names series id {}, which is not in the batch",
                    alarm.series_id
                )));
            }
        }
        for (k, gap) in self.gaps.iter().enumerate() {
            check_gap(k, gap)?;
        }
        for s in &self.series {
            if let Some(r) = &s.reporting {
                check_reporting(r).map_err(|e| {
                    WireError::Invalid(format!("series {} ({:?}) reporting: {e}", s.id, s.name))
                })?;
            }
        }
        if !self.devices.is_empty() && self.instance.is_none() {
            return Err(WireError::Invalid(format!(
                "the batch carries {} device events but no spool instance, which format v5 requires",
                self.devices.len()
            )));
        }
        Ok(())
    }
}

/// A report-by-exception description must be one a consumer can use: a
/// finite deadband of at least 0 and a heartbeat interval above 0.
pub(crate) fn check_reporting(r: &Reporting) -> Result<(), String> {
    if !(r.deadband.is_finite() && r.deadband >= 0.0) {
        return Err(format!(
            "deadband {} must be a finite number of at least 0",
            r.deadband
        ));
    }
    if r.max_silence_ms == 0 {
        return Err("max_silence_ms must be above 0".into());
    }
    Ok(())
}

/// A gap must end no earlier than it starts. (It may hold no readings: a
/// dropped alarm-only batch is a gap of 0 readings and 1 batch.)
pub(crate) fn check_gap(k: usize, gap: &Gap) -> Result<(), WireError> {
    if gap.last_us < gap.first_us {
        return Err(WireError::Invalid(format!(
            "gap {k} ends at {} µs, before it starts at {} µs",
            gap.last_us, gap.first_us
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{AlarmEvent, AlarmState, Batch, Series};

    fn series(id: u32) -> Series {
        Series {
            id,
            name: format!("s{id}"),
            unit: String::new(),
            tags: Default::default(),
            points: Vec::new(),
            reporting: None,
        }
    }

    fn alarm(series_id: u32) -> AlarmEvent {
        AlarmEvent {
            series_id,
            spc: None,
            rule: "r".into(),
            state: AlarmState::Raised,
            value: 1.0,
            limit: 0.5,
            ts_us: 0,
            severity: None,
            duration_us: None,
            limit_kind: None,
        }
    }

    fn batch(ids: &[u32], alarm_ids: &[u32]) -> Batch {
        Batch {
            gateway_id: "gw".into(),
            instance: None,
            seq: 1,
            created_us: 0,
            series: ids.iter().copied().map(series).collect(),
            alarms: alarm_ids.iter().copied().map(alarm).collect(),
            gaps: Vec::new(),
            devices: Vec::new(),
        }
    }

    #[test]
    fn validate_table() {
        let table: &[(&[u32], &[u32], Option<&str>)] = &[
            (&[], &[], None),
            (&[1, 2, 3], &[3, 1], None),
            (
                &[1, 2, 1],
                &[],
                Some("invalid batch: series id 1 appears more than once in the dictionary"),
            ),
            (
                &[1, 2],
                &[2, 9],
                Some("invalid batch: alarm 1 names series id 9, which is not in the batch"),
            ),
        ];
        for &(ids, alarms, expected) in table {
            let got = batch(ids, alarms).validate().err().map(|e| e.to_string());
            assert_eq!(got.as_deref(), expected, "series {ids:?} alarms {alarms:?}");
        }
    }

    #[test]
    fn device_events_need_a_spool_instance() {
        let mut b = batch(&[], &[]);
        b.devices.push(crate::DeviceEvent {
            device: "press-3".into(),
            source: "modbus".into(),
            state: crate::DeviceState::Ok,
            previous: crate::DeviceState::Down,
            reason: None,
            at_us: 2,
            since_us: 1,
        });
        let err = b.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid batch: the batch carries 1 device events but no spool instance, which format v5 requires"
        );
        b.instance = std::num::NonZeroU64::new(9);
        b.validate().unwrap();
    }
}
