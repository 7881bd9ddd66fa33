//! Writing the v2 to v6 CBOR document (before compression).
//!
//! The document is positional (arrays, no field names) and written by hand
//! with minicbor's `Encoder`; `docs/wire-format.md` gives it in full:
//!
//! ```text
//! [ [version, gateway_id, seq, created_us, reading_count, instance (v4)],
//!   [ [id, name, unit, {tag: value}, ? [deadband, max_silence_ms] (v6)] ... ],
//!                                                                 dictionary
//!   [ [count, timestamps, value_kind, scale, values, qualities] ... ],  readings
//!   [ [series_id, rule, state, value_bits, limit_bits, ts_us,
//!      severity, duration_us | null,
//!      ? limit_kind | null, ? [test, centre, sigma, lower, upper, statistic] (v6)] ... ],
//!                                                                    alarms
//!   [ [reason, first_us, last_us, readings, batches, recorded_us] ... ],
//!                                                   gaps, v3 on
//!   [ [device, source, state, previous, reason, code | null, detail,
//!      at_us, since_us] ... ] ]                     device events, v5 on
//! ```
//!
//! v6 has the shape of v5, with the instance 0 standing for none, and its
//! own value codings ([`super::values_v6`]); v2 to v5 share
//! [`super::values`]. A v6 series entry has a 5th element only for a
//! series reported by exception (`Series::reporting`); every other entry
//! keeps its 4, so readers before that field still read such batches.
//! Likewise a v6 alarm entry has a 9th element (the limit kind's code)
//! only for an alarm that knows its limit kind (`AlarmEvent::limit_kind`),
//! and a 10th only for an alarm with SPC detail (`AlarmEvent::spc`), the
//! 9th then null when the kind is unknown; every other keeps its 8.
//! Documents before v6 leave the kind out (the event name still says
//! which check fired).
//!
//! ```text
//! ```
//!
//! `readings[i]` belongs to `dictionary[i]`. One scratch buffer is reused for
//! every column, so encoding allocates per batch, not per value.

use minicbor::Encoder;

use super::columns::{encode_qualities, encode_timestamps};
use super::values::encode_column;
use super::WireError;
use crate::{AlarmState, Batch};

/// Wire code of an alarm state.
pub fn state_code(state: AlarmState) -> u8 {
    match state {
        AlarmState::Raised => 0,
        AlarmState::Cleared => 1,
        AlarmState::Acknowledged => 2,
        AlarmState::Rebaselined => 3,
    }
}

/// Write the CBOR document of `batch` in format `version` (2 to 6; only
/// v3 on has the gap list, only v4 on the instance and only v5 on the
/// device events, so a caller wanting an old version passes
/// [`Batch::legacy_version`]).
pub fn write_document(batch: &Batch, version: u16) -> Result<Vec<u8>, WireError> {
    if version < crate::V10 && batch.needs_v10() {
        return Err(WireError::Invalid(format!(
            "a format v{version} document cannot carry an alarm in state rebaselined (v10 on)"
        )));
    }
    if version < 3 && !batch.gaps.is_empty() {
        return Err(WireError::Invalid(format!(
            "a format v{version} document cannot carry the batch's {} gap records",
            batch.gaps.len()
        )));
    }
    if version < 4 && batch.instance.is_some() {
        return Err(WireError::Invalid(format!(
            "a format v{version} document cannot carry the batch's spool instance id"
        )));
    }
    if let Some(s) = batch.series.iter().find(|s| s.reporting.is_some()) {
        if version < 6 {
            return Err(WireError::Invalid(format!(
                "a format v{version} document cannot say that series {:?} is reported by exception",
                s.name
            )));
        }
    }
    if version < 6 && batch.alarms.iter().any(|a| a.spc.is_some()) {
        return Err(WireError::Invalid(format!(
            "a format v{version} document cannot carry the SPC detail of an alarm"
        )));
    }
    if version < 5 && !batch.devices.is_empty() {
        return Err(WireError::Invalid(format!(
            "a format v{version} document cannot carry the batch's {} device events",
            batch.devices.len()
        )));
    }
    let readings = batch.reading_count();
    // Roughly what a typical batch needs, so the buffer rarely regrows.
    let mut e = Encoder::new(Vec::with_capacity(
        256 + batch.series.len() * 64 + readings * 3,
    ));
    e.array(document_len(version))?;

    e.array(if version >= 4 { 6 } else { 5 })?
        .u16(version)?
        .str(&batch.gateway_id)?
        .u64(batch.seq)?
        .i64(batch.created_us)?
        .u64(readings as u64)?;
    if version >= 4 {
        e.u64(batch.instance.map_or(0, |i| i.get()))?;
    }

    e.array(batch.series.len() as u64)?;
    for s in &batch.series {
        // The 5th element only when there is something to say, so a batch
        // without report by exception is the v6 document it always was.
        let fields = if s.reporting.is_some() { 5 } else { 4 };
        e.array(fields)?.u32(s.id)?.str(&s.name)?.str(&s.unit)?;
        e.map(s.tags.len() as u64)?;
        for (key, value) in &s.tags {
            e.str(key)?.str(value)?;
        }
        if let Some(r) = &s.reporting {
            e.array(2)?.f64(r.deadband)?.u64(r.max_silence_ms)?;
        }
    }

    e.array(batch.series.len() as u64)?;
    let mut scratch = Vec::new();
    for s in &batch.series {
        e.array(6)?.u64(s.points.len() as u64)?;
        scratch.clear();
        encode_timestamps(&s.points, batch.created_us, &mut scratch);
        e.bytes(&scratch)?;
        scratch.clear();
        let (kind, scale) = encode_column(version, &s.points, &mut scratch);
        e.u8(kind)?.u8(scale)?.bytes(&scratch)?;
        scratch.clear();
        encode_qualities(&s.points, &mut scratch);
        e.bytes(&scratch)?;
    }

    e.array(batch.alarms.len() as u64)?;
    for a in &batch.alarms {
        let limit_kind = a.limit_kind.filter(|_| version >= 6);
        let fields = if a.spc.is_some() {
            10
        } else if limit_kind.is_some() {
            9
        } else {
            8
        };
        e.array(fields)?
            .u32(a.series_id)?
            .str(&a.rule)?
            .u8(state_code(a.state))?
            .u64(a.value.to_bits())?
            .u64(a.limit.to_bits())?
            .i64(a.ts_us)?
            .u8(a.severity.map_or(0, |s| s.code()))?;
        match a.duration_us {
            Some(d) => e.i64(d)?,
            None => e.null()?,
        };
        if fields >= 9 {
            match limit_kind {
                Some(kind) => e.u8(kind.code())?,
                // Element 9 is the limit kind, unknown here: null.
                None => e.null()?,
            };
        }
        if let Some(d) = &a.spc {
            e.array(6)?.u8(d.test)?;
            for v in [d.centre, d.sigma, d.lower, d.upper, d.statistic] {
                e.f64(v)?;
            }
        }
    }

    if version >= 3 {
        e.array(batch.gaps.len() as u64)?;
        for g in &batch.gaps {
            e.array(6)?
                .u8(g.reason.code())?
                .i64(g.first_us)?
                .i64(g.last_us)?
                .u64(g.readings)?
                .u64(g.batches)?
                .i64(g.recorded_us)?;
        }
    }

    if version >= 5 {
        e.array(batch.devices.len() as u64)?;
        for d in &batch.devices {
            e.array(9)?
                .str(&d.device)?
                .str(&d.source)?
                .u8(d.state.code())?
                .u8(d.previous.code())?;
            match &d.reason {
                Some(r) => {
                    e.u8(r.kind.code())?;
                    match r.code {
                        Some(c) => e.u8(c)?,
                        None => e.null()?,
                    };
                    e.str(&r.detail)?;
                }
                None => {
                    e.u8(0)?.null()?.str("")?;
                }
            }
            e.i64(d.at_us)?.i64(d.since_us)?;
        }
    }
    Ok(e.into_writer())
}

/// Elements of the top-level array: header, dictionary, readings, alarms
/// (v1, v2), then gaps (v3 on), then device events (v5).
pub fn document_len(version: u16) -> u64 {
    match version {
        ..=2 => 4,
        3 | 4 => 5,
        _ => 6,
    }
}
