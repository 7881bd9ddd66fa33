//! Reading the v1 to v6 CBOR document (after decompression) into a [`Batch`].
//!
//! The reader is written for hostile input: every declared length or count
//! is checked against [`Limits`] (or against the bytes that are actually
//! left) before anything is reserved for it; strings and byte strings are
//! borrowed from the input and only copied once their length is known to be
//! within bounds; nothing indexes without a check, so bad input is an error,
//! never a panic. Errors say where they happened, e.g.
//! `series 3 ("press.temp") timestamps column: 12 values declared, column ends after 7`.

use std::collections::BTreeMap;

use minicbor::Decoder;

use super::columns::{decode_qualities, decode_timestamps, ColumnError};
use super::values::decode_column;
use super::write::document_len;
use super::WireError;
use crate::validate::check_reporting;
use crate::{
    AlarmEvent, AlarmState, Batch, DeviceEvent, DeviceReason, DeviceState, Gap, GapReason,
    LimitKind, Limits, ReasonKind, Reporting, Series, Severity, SpcDetail,
};

/// Smallest possible encodings, used to cap reservations by the bytes left.
const MIN_SERIES_ENTRY: usize = 5;
const MIN_ALARM_ENTRY: usize = 7;
const MIN_GAP_ENTRY: usize = 7;
const MIN_DEVICE_ENTRY: usize = 10;

/// Most heap bytes `read_document` can build from a document of
/// `doc_len` bytes under `limits`: every count is bounded by its limit and
/// by the smallest encoding of one item (a reading costs at least one byte
/// of timestamp column), strings are copies of document bytes, and each
/// series gets a generous allowance for its allocations and tag map nodes.
/// The v6 value codings add nothing on the heap: their models and the
/// dictionary live on the stack while one column decodes. An upper
/// estimate for a caller that budgets memory, not an exact figure.
pub fn decoded_bound(doc_len: usize, limits: &Limits) -> usize {
    use std::mem::size_of;
    const PER_SERIES_OVERHEAD: usize = 256;
    let readings = doc_len.min(limits.max_readings);
    let series = (doc_len / MIN_SERIES_ENTRY).min(limits.max_series);
    let alarms = (doc_len / MIN_ALARM_ENTRY).min(limits.max_alarms);
    let gaps = (doc_len / MIN_GAP_ENTRY).min(limits.max_gaps);
    let devices = (doc_len / MIN_DEVICE_ENTRY).min(limits.max_device_events);
    readings * size_of::<crate::Point>()
        + series * (size_of::<Series>() + PER_SERIES_OVERHEAD)
        + alarms * size_of::<AlarmEvent>()
        + gaps * size_of::<Gap>()
        + devices * size_of::<DeviceEvent>()
        + doc_len
}

struct Reader<'b, 'l> {
    d: Decoder<'b>,
    limits: &'l Limits,
}

fn malformed(what: impl FnOnce() -> String, e: impl std::fmt::Display) -> WireError {
    WireError::Malformed(format!("{}: {e}", what()))
}

impl<'b> Reader<'b, '_> {
    fn remaining(&self) -> usize {
        self.d.input().len().saturating_sub(self.d.position())
    }

    /// A definite-length array header; its length.
    fn array(&mut self, what: impl Fn() -> String) -> Result<u64, WireError> {
        match self.d.array() {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(malformed(
                what,
                "indefinite-length array, only definite lengths are allowed",
            )),
            Err(e) => Err(malformed(what, e)),
        }
    }

    /// An array header that must announce exactly `n` items.
    fn tuple(&mut self, n: u64, what: impl Fn() -> String) -> Result<(), WireError> {
        let found = self.array(&what)?;
        if found == n {
            Ok(())
        } else {
            Err(malformed(
                what,
                format_args!("array of {found} items, expected {n}"),
            ))
        }
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64, WireError> {
        self.d.u64().map_err(|e| malformed(what, e))
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, WireError> {
        self.d.u32().map_err(|e| malformed(what, e))
    }

    fn u16(&mut self, what: impl FnOnce() -> String) -> Result<u16, WireError> {
        self.d.u16().map_err(|e| malformed(what, e))
    }

    fn u8(&mut self, what: impl FnOnce() -> String) -> Result<u8, WireError> {
        self.d.u8().map_err(|e| malformed(what, e))
    }

    fn i64(&mut self, what: impl FnOnce() -> String) -> Result<i64, WireError> {
        self.d.i64().map_err(|e| malformed(what, e))
    }

    /// Whether a CBOR null is next; it is consumed if so.
    fn null(&mut self, what: impl FnOnce() -> String) -> Result<bool, WireError> {
        match self.d.datatype() {
            Ok(minicbor::data::Type::Null) => {
                self.d.null().map_err(|e| malformed(what, e))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn bytes(&mut self, what: impl FnOnce() -> String) -> Result<&'b [u8], WireError> {
        self.d.bytes().map_err(|e| malformed(what, e))
    }

    /// A text string no longer than `max_string_bytes`, checked from its
    /// header before the string itself is looked at.
    fn string(&mut self, what: impl Fn() -> String) -> Result<&'b str, WireError> {
        let max = self.limits.max_string_bytes;
        if let Some(len) = self.text_len() {
            if len > max as u64 {
                return Err(WireError::too_large(
                    format!("{} is {len} bytes", what()),
                    max,
                    "max_string_bytes",
                ));
            }
        }
        self.d.str().map_err(|e| malformed(what, e))
    }

    /// The declared length of the text string at the current position, if
    /// there is a definite-length one there.
    fn text_len(&self) -> Option<u64> {
        let input = self.d.input().get(self.d.position()..)?;
        let (&initial, rest) = input.split_first()?;
        if initial >> 5 != 3 {
            return None;
        }
        let width = match initial & 0x1f {
            info @ 0..=23 => return Some(u64::from(info)),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return None,
        };
        let bytes = rest.get(..width)?;
        Some(bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b)))
    }
}

/// Decode a CBOR document of format `envelope_version` (1 to 6, checked by
/// the envelope), enforcing `limits`.
pub fn read_document(
    doc: &[u8],
    envelope_version: u16,
    limits: &Limits,
) -> Result<Batch, WireError> {
    let mut r = Reader {
        d: Decoder::new(doc),
        limits,
    };
    r.tuple(document_len(envelope_version), || {
        format!("format v{envelope_version} document")
    })?;

    r.tuple(if envelope_version >= 4 { 6 } else { 5 }, || {
        "header".into()
    })?;
    let version = r.u16(|| "header version".into())?;
    if version != envelope_version {
        return Err(WireError::Malformed(format!(
            "header says format version {version}, the envelope says {envelope_version}"
        )));
    }
    let gateway_id = r.string(|| "gateway id".into())?.to_owned();
    let seq = r.u64(|| "header seq".into())?;
    let created_us = r.i64(|| "header created_us".into())?;
    let total = r.u64(|| "header reading count".into())?;
    let instance = if version >= 4 {
        let id = r.u64(|| "header spool instance".into())?;
        match std::num::NonZeroU64::new(id) {
            // v6 writes every batch, so 0 stands for "no instance" there.
            None if version >= 6 => None,
            None => {
                return Err(WireError::Malformed(format!(
                    "header spool instance is 0, which is reserved in v{version}"
                )))
            }
            some => some,
        }
    } else {
        None
    };
    if total > limits.max_readings as u64 {
        return Err(WireError::too_large(
            format!("batch declares {total} readings"),
            limits.max_readings,
            "max_readings",
        ));
    }

    let mut series = read_dictionary(&mut r, version)?;
    let mut ids: Vec<u32> = series.iter().map(|s| s.id).collect();
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(WireError::Invalid(format!(
            "series id {} appears more than once in the dictionary",
            pair[0]
        )));
    }

    read_readings(&mut r, &mut series, created_us, total, version)?;
    let alarms = read_alarms(&mut r, &ids, version)?;
    let gaps = if version >= 3 {
        read_gaps(&mut r)?
    } else {
        Vec::new()
    };
    let devices = if version >= 5 {
        read_devices(&mut r)?
    } else {
        Vec::new()
    };

    let extra = r.remaining();
    if extra != 0 {
        return Err(WireError::Malformed(format!(
            "{extra} bytes follow the CBOR document"
        )));
    }
    Ok(Batch {
        gateway_id,
        instance,
        seq,
        created_us,
        series,
        alarms,
        gaps,
        devices,
    })
}

fn read_dictionary(r: &mut Reader<'_, '_>, version: u16) -> Result<Vec<Series>, WireError> {
    let n = r.array(|| "series dictionary".into())?;
    if n > r.limits.max_series as u64 {
        return Err(WireError::too_large(
            format!("batch declares {n} series"),
            r.limits.max_series,
            "max_series",
        ));
    }
    let n = n as usize; // at most max_series
    let mut series = Vec::with_capacity(n.min(r.remaining() / MIN_SERIES_ENTRY));
    for i in 0..n {
        let fields = r.array(|| format!("series {i}"))?;
        // v6 adds an optional 5th element: report by exception.
        if !(fields == 4 || (fields == 5 && version >= 6)) {
            return Err(WireError::Malformed(format!(
                "series {i}: array of {fields} items, expected 4{}",
                if version >= 6 { " or 5" } else { "" }
            )));
        }
        let id = r.u32(|| format!("series {i} id"))?;
        let name = r.string(|| format!("series {i} name"))?;
        let at = |field: &str| format!("series {i} ({name:?}) {field}");
        let unit = r.string(|| at("unit"))?.to_owned();
        let tag_count = match r.d.map() {
            Ok(Some(m)) => m,
            Ok(None) => return Err(malformed(|| at("tags"), "indefinite-length map")),
            Err(e) => return Err(malformed(|| at("tags"), e)),
        };
        if tag_count > r.limits.max_tags as u64 {
            return Err(WireError::too_large(
                format!("series {i} ({name:?}) has {tag_count} tags"),
                r.limits.max_tags,
                "max_tags",
            ));
        }
        let mut tags = BTreeMap::new();
        let mut prev: Option<&str> = None;
        for _ in 0..tag_count {
            let key = r.string(|| at("tag key"))?;
            let value = r.string(|| at(&format!("tag {key:?}")))?;
            // Strictly ascending keys: one encoding per batch, and no
            // duplicate key silently dropping a value.
            if prev.is_some_and(|p| p >= key) {
                return Err(WireError::Malformed(format!(
                    "{}: key {key:?} is not after {:?}, keys must be unique and sorted",
                    at("tags"),
                    prev.unwrap_or_default()
                )));
            }
            prev = Some(key);
            tags.insert(key.to_owned(), value.to_owned());
        }
        let reporting = if fields == 5 {
            Some(read_reporting(r, &at)?)
        } else {
            None
        };
        series.push(Series {
            id,
            name: name.to_owned(),
            unit,
            tags,
            points: Vec::new(),
            reporting,
        });
    }
    Ok(series)
}

/// A v6 series entry's report-by-exception element:
/// `[deadband: float, max_silence_ms: uint]`.
fn read_reporting(
    r: &mut Reader<'_, '_>,
    at: &dyn Fn(&str) -> String,
) -> Result<Reporting, WireError> {
    r.tuple(2, || at("reporting"))?;
    let deadband =
        r.d.f64()
            .map_err(|e| malformed(|| at("reporting deadband"), e))?;
    let max_silence_ms = r.u64(|| at("reporting max_silence_ms"))?;
    let reporting = Reporting {
        deadband,
        max_silence_ms,
    };
    check_reporting(&reporting)
        .map_err(|e| WireError::Malformed(format!("{}: {e}", at("reporting"))))?;
    Ok(reporting)
}

fn read_readings(
    r: &mut Reader<'_, '_>,
    series: &mut [Series],
    created_us: i64,
    total: u64,
    version: u16,
) -> Result<(), WireError> {
    let n = r.array(|| "readings".into())?;
    if n != series.len() as u64 {
        return Err(WireError::Malformed(format!(
            "readings has {n} entries, the dictionary has {} series",
            series.len()
        )));
    }
    let mut seen = 0u64;
    for (i, s) in series.iter_mut().enumerate() {
        let name = s.name.as_str();
        let at = |field: &str| format!("series {i} ({name:?}) {field}");
        r.tuple(6, || at("readings"))?;
        let count = r.u64(|| at("reading count"))?;
        if count > total - seen {
            return Err(WireError::Malformed(format!(
                "{} is {count}, more than the {} left of the {total} the header declares",
                at("reading count"),
                total - seen
            )));
        }
        seen += count;
        let count = count as usize; // at most max_readings
        let timestamps = r.bytes(|| at("timestamps column"))?;
        let kind = r.u8(|| at("value coding"))?;
        let scale = r.u8(|| at("value scale"))?;
        let values = r.bytes(|| at("values column"))?;
        let qualities = r.bytes(|| at("qualities column"))?;

        let column = |name: &str, e: ColumnError| {
            WireError::Malformed(format!("{}: {e}", at(&format!("{name} column"))))
        };
        let mut points = Vec::new();
        decode_timestamps(timestamps, created_us, count, &mut points)
            .map_err(|e| column("timestamps", e))?;
        decode_column(version, (kind, scale), values, &mut points)
            .map_err(|e| column("values", e))?;
        decode_qualities(qualities, &mut points).map_err(|e| column("qualities", e))?;
        s.points = points;
    }
    if seen != total {
        return Err(WireError::Malformed(format!(
            "header declares {total} readings, the series hold {seen}"
        )));
    }
    Ok(())
}

/// The alarm list; v1 entries have 6 fields, v2 entries add severity and
/// duration. A v6 entry may have a 9th (the limit kind, or `null`) and a
/// 10th: an element a later writer adds, skipped unread so such batches
/// still decode here.
fn read_alarms(
    r: &mut Reader<'_, '_>,
    sorted_ids: &[u32],
    version: u16,
) -> Result<Vec<AlarmEvent>, WireError> {
    let n = r.array(|| "alarms".into())?;
    if n > r.limits.max_alarms as u64 {
        return Err(WireError::too_large(
            format!("batch declares {n} alarms"),
            r.limits.max_alarms,
            "max_alarms",
        ));
    }
    let n = n as usize; // at most max_alarms
    let mut alarms = Vec::with_capacity(n.min(r.remaining() / MIN_ALARM_ENTRY));
    for j in 0..n {
        let at = |field: &str| format!("alarm {j} {field}");
        let fields = match version {
            1 => r.tuple(6, || format!("alarm {j}")).map(|()| 6)?,
            2..=5 => r.tuple(8, || format!("alarm {j}")).map(|()| 8)?,
            _ => match r.array(|| format!("alarm {j}"))? {
                n @ 8..=10 => n,
                n => {
                    return Err(WireError::Malformed(format!(
                        "alarm {j}: array of {n} items, expected 8, 9 or 10"
                    )))
                }
            },
        };
        let series_id = r.u32(|| at("series id"))?;
        if sorted_ids.binary_search(&series_id).is_err() {
            return Err(WireError::Invalid(format!(
                "alarm {j} names series id {series_id}, which is not in the batch"
            )));
        }
        let rule = r.string(|| at("rule"))?.to_owned();
        let state = match r.u8(|| at("state"))? {
            0 => AlarmState::Raised,
            1 => AlarmState::Cleared,
            2 if version >= 2 => AlarmState::Acknowledged,
            3 if version >= crate::V10 => AlarmState::Rebaselined,
            code => {
                let expected = if version == 1 {
                    "0 (raised) or 1 (cleared)"
                } else if version < crate::V10 {
                    "0 (raised), 1 (cleared) or 2 (acknowledged)"
                } else {
                    "0 (raised), 1 (cleared), 2 (acknowledged) or 3 (rebaselined)"
                };
                return Err(WireError::Malformed(format!(
                    "alarm {j} ({rule:?}) state code {code}, expected {expected}"
                )));
            }
        };
        let value = f64::from_bits(r.u64(|| at("value"))?);
        let limit = f64::from_bits(r.u64(|| at("limit"))?);
        let ts_us = r.i64(|| at("ts_us"))?;
        let (severity, duration_us) = if version == 1 {
            (None, None)
        } else {
            let severity = match r.u8(|| at("severity"))? {
                0 => None,
                code => Some(Severity::from_code(code).ok_or_else(|| {
                    WireError::Malformed(format!(
                        "alarm {j} ({rule:?}) severity code {code}, expected 0 (unknown), 1 (warning), 2 (major) or 3 (critical)"
                    ))
                })?),
            };
            let duration_us = if r.null(|| at("duration_us"))? {
                None
            } else {
                Some(r.i64(|| at("duration_us"))?)
            };
            (severity, duration_us)
        };
        let limit_kind = if fields < 9 || r.null(|| at("limit_kind"))? {
            None
        } else {
            let code = r.u8(|| at("limit_kind"))?;
            Some(LimitKind::from_code(code).ok_or_else(|| {
                WireError::Malformed(format!(
                    "alarm {j} ({rule:?}) limit kind code {code}, expected 1 (high_high), 2 (high), 3 (low) or 4 (low_low)"
                ))
            })?)
        };
        let spc = if fields == 10 {
            Some(read_spc(r, &at)?)
        } else {
            None
        };
        alarms.push(AlarmEvent {
            series_id,
            rule,
            state,
            value,
            limit,
            ts_us,
            severity,
            duration_us,
            limit_kind,
            spc,
        });
    }
    Ok(alarms)
}

/// A v6 alarm's SPC element:
/// `[test: uint, centre, sigma, lower, upper, statistic: float]`.
fn read_spc(r: &mut Reader<'_, '_>, at: &dyn Fn(&str) -> String) -> Result<SpcDetail, WireError> {
    r.tuple(6, || at("spc"))?;
    let test = r.u8(|| at("spc test"))?;
    let mut v = [0.0; 5];
    for (x, name) in v
        .iter_mut()
        .zip(["centre", "sigma", "lower", "upper", "statistic"])
    {
        *x =
            r.d.f64()
                .map_err(|e| malformed(|| at(&format!("spc {name}")), e))?;
    }
    let [centre, sigma, lower, upper, statistic] = v;
    Ok(SpcDetail {
        test,
        centre,
        sigma,
        lower,
        upper,
        statistic,
    })
}

/// The gap list (v3): `[reason, first_us, last_us, readings, batches,
/// recorded_us]` per entry.
fn read_gaps(r: &mut Reader<'_, '_>) -> Result<Vec<Gap>, WireError> {
    let n = r.array(|| "gaps".into())?;
    if n > r.limits.max_gaps as u64 {
        return Err(WireError::too_large(
            format!("batch declares {n} gaps"),
            r.limits.max_gaps,
            "max_gaps",
        ));
    }
    let n = n as usize; // at most max_gaps
    let mut gaps = Vec::with_capacity(n.min(r.remaining() / MIN_GAP_ENTRY));
    for k in 0..n {
        let at = |field: &str| format!("gap {k} {field}");
        r.tuple(6, || format!("gap {k}"))?;
        let code = r.u8(|| at("reason"))?;
        let reason = GapReason::from_code(code).ok_or_else(|| {
            WireError::Malformed(format!(
                "gap {k} reason code {code}, expected 1 (spool full), 2 (max age) or 3 (dropped by the device)"
            ))
        })?;
        let first_us = r.i64(|| at("first_us"))?;
        let last_us = r.i64(|| at("last_us"))?;
        let readings = r.u64(|| at("readings"))?;
        let batches = r.u64(|| at("batches"))?;
        let recorded_us = r.i64(|| at("recorded_us"))?;
        let gap = Gap {
            reason,
            first_us,
            last_us,
            readings,
            batches,
            recorded_us,
        };
        crate::validate::check_gap(k, &gap)?;
        gaps.push(gap);
    }
    Ok(gaps)
}

/// The device-event list (v5): `[device, source, state, previous, reason,
/// code | null, detail, at_us, since_us]` per entry; reason 0 (with a null
/// code and an empty detail) is "no reason", an ok device.
fn read_devices(r: &mut Reader<'_, '_>) -> Result<Vec<DeviceEvent>, WireError> {
    let n = r.array(|| "device events".into())?;
    if n > r.limits.max_device_events as u64 {
        return Err(WireError::too_large(
            format!("batch declares {n} device events"),
            r.limits.max_device_events,
            "max_device_events",
        ));
    }
    let n = n as usize; // at most max_device_events
    let mut devices = Vec::with_capacity(n.min(r.remaining() / MIN_DEVICE_ENTRY));
    for k in 0..n {
        r.tuple(9, || format!("device event {k}"))?;
        let device = r.string(|| format!("device event {k} device"))?.to_owned();
        let at = |field: &str| format!("device event {k} ({device:?}) {field}");
        let source = r.string(|| at("source"))?.to_owned();
        let state = device_state(r, &at, "state")?;
        let previous = device_state(r, &at, "previous state")?;
        let kind = r.u8(|| at("reason"))?;
        let code = if r.null(|| at("exception code"))? {
            None
        } else {
            Some(r.u8(|| at("exception code"))?)
        };
        let detail = r.string(|| at("detail"))?;
        let reason = match kind {
            0 if code.is_none() && detail.is_empty() => None,
            0 => {
                return Err(WireError::Malformed(format!(
                    "{}: reason 0 (none) with an exception code or a detail",
                    at("reason")
                )))
            }
            kind => Some(DeviceReason {
                kind: ReasonKind::from_code(kind).ok_or_else(|| {
                    WireError::Malformed(format!(
                        "{} code {kind}, expected 0 (none), 1 (timeout), 2 (connection refused), 3 (connection lost), 4 (exception), 5 (crc) or 6 (error)",
                        at("reason")
                    ))
                })?,
                code,
                detail: detail.to_owned(),
            }),
        };
        let at_us = r.i64(|| at("at_us"))?;
        let since_us = r.i64(|| at("since_us"))?;
        devices.push(DeviceEvent {
            device,
            source,
            state,
            previous,
            reason,
            at_us,
            since_us,
        });
    }
    Ok(devices)
}

fn device_state(
    r: &mut Reader<'_, '_>,
    at: &impl Fn(&str) -> String,
    field: &str,
) -> Result<DeviceState, WireError> {
    let code = r.u8(|| at(field))?;
    DeviceState::from_code(code).ok_or_else(|| {
        WireError::Malformed(format!(
            "{} code {code}, expected 0 (pending), 1 (ok), 2 (degraded) or 3 (down)",
            at(field)
        ))
    })
}
