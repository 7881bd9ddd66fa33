//! The JSON messages the relay publishes, one per reading (or, with
//! `granularity = "series"`, one per series per batch), one per alarm event
//! and one per gateway event (a gap: readings the gateway dropped): the
//! values of Kafka messages and the lines of the file sink. A device-state
//! event (a device behind the gateway down, degraded or back) is a gateway
//! event too (`"event": "device_state"`), and so is an SPC re-baselining
//! (`"event": "spc_rebaseline"`; on the wire an alarm event in state
//! `rebaselined`, which is no alarm message). Every message
//! carries its `schema` name and the relay's enrichment: the gateway's `site`
//! and `gateway_tags` from the config and the time the relay received the
//! batch (`received_us`, `received`).
//! `docs/kafka-messages.md` is the contract for the teams that read them;
//! a change here that is not additive needs a new schema version.
//!
//! Pure: values in, bytes out. Invariants:
//! - JSON has no NaN or infinity, so a non-finite number becomes `null` plus a
//!   `*_text` field (`"NaN"`, `"inf"`, `"-inf"`); finite values round-trip
//!   exactly (serde_json prints the shortest representation that parses back
//!   to the same `f64`).
//! - A reading of a series the gateway reports by exception carries
//!   `"reporting": {"mode": "exception", "deadband", "max_silence_s"}`
//!   (so is a series-batch message of one); every other message has no
//!   such field, and is byte for byte what it was before.
//! - Two generations ([`Version`]): v1 and v2 messages differ only as
//!   `message/version.rs` says (key, `gateway_site`, points' `ts`,
//!   `limit_kind` always present); a v1 message is byte for byte what it
//!   was, except for `limit_kind` on alarms that know it (additive).
//! - `ts` is derived from `ts_us` (RFC 3339, UTC, always six fractional
//!   digits); `ts_us` is authoritative. Outside years 0000..=9999 RFC 3339
//!   has no spelling, and `ts` is `null`.

use std::collections::{BTreeMap, HashMap};

use edge_wire::{AlarmEvent, AlarmState, Batch, DeviceEvent, Gap, Point, Series};
use serde::Serialize;

mod version;

pub use version::{
    series_key, split_key, Version, ALARM_SCHEMA_V2, KEY_SEPARATOR, READING_SCHEMA_V2,
    SERIES_BATCH_SCHEMA_V2,
};

/// Schema name of reading messages.
pub const READING_SCHEMA: &str = "edge.reading.v1";
/// Schema name of alarm messages.
pub const ALARM_SCHEMA: &str = "edge.alarm.v1";
/// Schema name of gateway event messages (gaps, device states).
pub const EVENT_SCHEMA: &str = "edge.event.v1";
/// Schema name of series-batch messages (`granularity = "series"`).
pub const SERIES_BATCH_SCHEMA: &str = "edge.series-batch.v1";

/// What the relay adds to every message of a batch: where the gateway is and
/// when the batch arrived. Not part of the wire batch.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The gateway's `site` from the relay config.
    pub site: Option<String>,
    /// The gateway's `tags` from the relay config.
    pub gateway_tags: BTreeMap<String, String>,
    /// When the relay received the batch, µs since the Unix epoch.
    pub received_us: i64,
}

/// A decoded batch whose alarms have been matched to their series, so every
/// sink can render it without failing.
#[derive(Debug)]
pub struct Delivery {
    /// The batch as decoded.
    pub batch: Batch,
    /// For each alarm, the index in `batch.series` of the series it is about.
    alarm_series: Vec<usize>,
    /// Site, gateway tags and arrival time, added to every message.
    pub origin: Origin,
    /// The content digest the ledger keeps ([`crate::ledger::digest`]),
    /// computed here, on the decoder's blocking thread.
    pub digest: crate::ledger::Digest,
    /// The ledger knew this batch's key with other content: published
    /// anyway, flagged (Kafka header `batch_conflict`).
    pub conflict: bool,
    /// The series table the batch carried (v6, v8) or named (v7, v9), for the
    /// relay to keep ([`crate::ledger::tables`]); `None` before v6.
    pub table: Option<edge_wire::codec::reference::SeriesTable>,
}

/// An alarm names a series id that the batch does not define.
#[derive(Debug, thiserror::Error)]
#[error("alarm {index} (rule {rule:?}) refers to series id {series_id}, which the batch does not define")]
pub struct UnknownSeries {
    /// Position of the alarm in the batch.
    pub index: usize,
    /// The rule of the alarm.
    pub rule: String,
    /// The id it refers to.
    pub series_id: u32,
}

impl Delivery {
    /// Match every alarm to its series.
    pub fn new(batch: Batch) -> Result<Delivery, UnknownSeries> {
        let by_id: HashMap<u32, usize> = batch
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        let alarm_series = batch
            .alarms
            .iter()
            .enumerate()
            .map(|(index, a)| {
                by_id
                    .get(&a.series_id)
                    .copied()
                    .ok_or_else(|| UnknownSeries {
                        index,
                        rule: a.rule.clone(),
                        series_id: a.series_id,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Delivery {
            digest: crate::ledger::digest(&batch),
            batch,
            alarm_series,
            origin: Origin::default(),
            conflict: false,
            table: None,
        })
    }

    /// Every reading with its series, in batch order.
    pub fn readings(&self) -> impl Iterator<Item = (&Series, &Point)> {
        self.batch
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(move |p| (s, p)))
    }

    /// Every alarm event with its series, in batch order, but rebaselines
    /// (which are gateway events: [`Delivery::rebaselines`]).
    pub fn alarms(&self) -> impl Iterator<Item = (&Series, &AlarmEvent)> {
        self.alarms_indexed().map(|(_, s, a)| (s, a))
    }

    /// [`Delivery::alarms`] with the index in `batch.series` of each
    /// alarm's series.
    pub fn alarms_indexed(&self) -> impl Iterator<Item = (usize, &Series, &AlarmEvent)> {
        self.all_alarms()
            .filter(|(_, _, a)| a.state != AlarmState::Rebaselined)
    }

    /// Every event in state `rebaselined` (an SPC test's baseline dropped
    /// on request at the gateway) with its series, in batch order: each is
    /// published as a gateway event ([`Delivery::rebaseline_json`]), not as
    /// an alarm, since it changes no alarm's state.
    pub fn rebaselines(&self) -> impl Iterator<Item = (&Series, &AlarmEvent)> {
        self.all_alarms()
            .filter(|(_, _, a)| a.state == AlarmState::Rebaselined)
            .map(|(_, s, a)| (s, a))
    }

    fn all_alarms(&self) -> impl Iterator<Item = (usize, &Series, &AlarmEvent)> {
        let series = &self.batch.series;
        self.batch
            .alarms
            .iter()
            .zip(&self.alarm_series)
            .map(move |(a, &i)| (i, &series[i], a))
    }

    /// The JSON message of one reading (`edge.reading.v1`).
    pub fn reading_json(&self, series: &Series, point: &Point) -> Vec<u8> {
        self.reading_json_as(Version::V1, series, point)
    }

    /// The JSON message of one reading in `version`'s shape.
    pub fn reading_json_as(&self, version: Version, series: &Series, point: &Point) -> Vec<u8> {
        let (value, value_text) = number(point.value);
        to_json(&ReadingMessage {
            schema: version.reading_schema(),
            gateway: &self.batch.gateway_id,
            batch_seq: self.batch.seq,
            series: &series.name,
            unit: &series.unit,
            tags: &series.tags,
            ts: rfc3339_micros(point.ts_us),
            ts_us: point.ts_us,
            value,
            value_text,
            quality: point.quality.as_str(),
            reporting: ReportingFields::of(series),
            origin: self.origin(version),
        })
    }

    /// The JSON message of one gap record: an interval of readings the
    /// gateway dropped under its spool policy (`event` = `"gap"`).
    pub fn gap_json(&self, gap: &Gap) -> Vec<u8> {
        to_json(&GapMessage {
            schema: EVENT_SCHEMA,
            event: "gap",
            gateway: &self.batch.gateway_id,
            batch_seq: self.batch.seq,
            reason: gap.reason.as_str(),
            first: rfc3339_micros(gap.first_us),
            first_us: gap.first_us,
            last: rfc3339_micros(gap.last_us),
            last_us: gap.last_us,
            readings: gap.readings,
            batches: gap.batches,
            recorded: rfc3339_micros(gap.recorded_us),
            recorded_us: gap.recorded_us,
            origin: self.origin(Version::V1),
        })
    }

    /// The JSON message of one device-state event: a device behind the
    /// gateway changed state (`event` = `"device_state"`); `reason` is
    /// `null` when it is ok.
    pub fn device_json(&self, device: &DeviceEvent) -> Vec<u8> {
        to_json(&DeviceMessage {
            schema: EVENT_SCHEMA,
            event: "device_state",
            gateway: &self.batch.gateway_id,
            batch_seq: self.batch.seq,
            device: &device.device,
            source: &device.source,
            state: device.state.as_str(),
            previous_state: device.previous.as_str(),
            reason: device.reason.as_ref().map(|r| ReasonFields {
                kind: r.kind.as_str(),
                code: r.code,
                detail: &r.detail,
            }),
            at: rfc3339_micros(device.at_us),
            at_us: device.at_us,
            since: rfc3339_micros(device.since_us),
            since_us: device.since_us,
            origin: self.origin(Version::V1),
        })
    }

    /// The JSON message of one rebaseline (`event` = `"spc_rebaseline"`):
    /// the SPC test `rule` on `series` learns its baseline again from the
    /// readings after `at`; `dropped` is the baseline it had (null when
    /// none was learned, or the gateway re-baselined by a config change).
    pub fn rebaseline_json(&self, series: &Series, alarm: &AlarmEvent) -> Vec<u8> {
        to_json(&RebaselineMessage {
            schema: EVENT_SCHEMA,
            event: "spc_rebaseline",
            gateway: &self.batch.gateway_id,
            batch_seq: self.batch.seq,
            series: &series.name,
            unit: &series.unit,
            tags: &series.tags,
            rule: &alarm.rule,
            severity: alarm.severity.map(|s| s.as_str()),
            at: rfc3339_micros(alarm.ts_us),
            at_us: alarm.ts_us,
            dropped: alarm.spc.as_ref().map(|d| {
                let f = SpcFields::of(d);
                DroppedBaseline {
                    test: f.test,
                    test_name: f.test_name,
                    centre: f.centre,
                    sigma: f.sigma,
                    lower: f.lower,
                    upper: f.upper,
                }
            }),
            origin: self.origin(Version::V1),
        })
    }

    /// The JSON message of one series of the batch with all its points
    /// (`edge.series-batch.v1`).
    pub fn series_json(&self, series: &Series) -> Vec<u8> {
        self.series_json_as(Version::V1, series)
    }

    /// The JSON message of one series of the batch with all its points, in
    /// `version`'s shape (v2 points carry `ts`).
    pub fn series_json_as(&self, version: Version, series: &Series) -> Vec<u8> {
        to_json(&SeriesBatchMessage {
            schema: version.series_batch_schema(),
            gateway: &self.batch.gateway_id,
            batch_seq: self.batch.seq,
            series: &series.name,
            unit: &series.unit,
            tags: &series.tags,
            points: series
                .points
                .iter()
                .map(|p| {
                    let (value, value_text) = number(p.value);
                    PointMessage {
                        t_us: p.ts_us,
                        ts: (version >= Version::V2).then(|| rfc3339_micros(p.ts_us)),
                        value,
                        value_text,
                        quality: p.quality.as_str(),
                    }
                })
                .collect(),
            reporting: ReportingFields::of(series),
            origin: self.origin(version),
        })
    }

    fn origin(&self, version: Version) -> OriginFields<'_> {
        let site = self.origin.site.as_deref();
        OriginFields {
            site: match version {
                Version::V1 => SiteField::Site(site),
                Version::V2 => SiteField::GatewaySite(site),
            },
            gateway_tags: &self.origin.gateway_tags,
            received: rfc3339_micros(self.origin.received_us),
            received_us: self.origin.received_us,
        }
    }

    /// The JSON message of one alarm event (`edge.alarm.v1`).
    pub fn alarm_json(&self, series: &Series, alarm: &AlarmEvent) -> Vec<u8> {
        self.alarm_json_as(Version::V1, series, alarm)
    }

    /// The JSON message of one alarm event in `version`'s shape.
    pub fn alarm_json_as(&self, version: Version, series: &Series, alarm: &AlarmEvent) -> Vec<u8> {
        let (value, value_text) = number(alarm.value);
        let (limit, limit_text) = number(alarm.limit);
        to_json(&AlarmMessage {
            schema: version.alarm_schema(),
            gateway: &self.batch.gateway_id,
            batch_seq: self.batch.seq,
            series: &series.name,
            unit: &series.unit,
            tags: &series.tags,
            rule: &alarm.rule,
            state: alarm.state.as_str(),
            value,
            value_text,
            limit,
            limit_text,
            ts: rfc3339_micros(alarm.ts_us),
            ts_us: alarm.ts_us,
            severity: alarm.severity.map(|s| s.as_str()),
            duration_us: alarm.duration_us,
            limit_kind: match version {
                Version::V1 => alarm.limit_kind.map(|k| Some(k.as_str())),
                Version::V2 => Some(alarm.limit_kind.map(|k| k.as_str())),
            },
            spc: alarm.spc.as_ref().map(SpcFields::of),
            origin: self.origin(version),
        })
    }
}

/// `spc` of an alarm message: what a statistical process control test saw
/// (the wire's SPC element); absent for every other alarm. Non-finite
/// numbers are written as null.
#[derive(Serialize)]
struct SpcFields {
    test: u8,
    /// The test's name for the codes this relay knows, else null.
    test_name: Option<&'static str>,
    centre: f64,
    sigma: f64,
    lower: f64,
    upper: f64,
    statistic: f64,
}

impl SpcFields {
    fn of(d: &edge_wire::SpcDetail) -> SpcFields {
        let names = [
            "beyond_limits",
            "two_of_three",
            "four_of_five",
            "eight_one_side",
            "six_trending",
            "ewma",
            "cusum",
        ];
        SpcFields {
            test: d.test,
            test_name: usize::from(d.test)
                .checked_sub(1)
                .and_then(|i| names.get(i).copied()),
            centre: d.centre,
            sigma: d.sigma,
            lower: d.lower,
            upper: d.upper,
            statistic: d.statistic,
        }
    }
}

#[derive(Serialize)]
struct GapMessage<'a> {
    schema: &'static str,
    event: &'static str,
    gateway: &'a str,
    batch_seq: u64,
    reason: &'static str,
    first: Option<String>,
    first_us: i64,
    last: Option<String>,
    last_us: i64,
    readings: u64,
    batches: u64,
    recorded: Option<String>,
    recorded_us: i64,
    #[serde(flatten)]
    origin: OriginFields<'a>,
}

#[derive(Serialize)]
struct DeviceMessage<'a> {
    schema: &'static str,
    event: &'static str,
    gateway: &'a str,
    batch_seq: u64,
    device: &'a str,
    source: &'a str,
    state: &'static str,
    previous_state: &'static str,
    reason: Option<ReasonFields<'a>>,
    at: Option<String>,
    at_us: i64,
    since: Option<String>,
    since_us: i64,
    #[serde(flatten)]
    origin: OriginFields<'a>,
}

#[derive(Serialize)]
struct RebaselineMessage<'a> {
    schema: &'static str,
    event: &'static str,
    gateway: &'a str,
    batch_seq: u64,
    series: &'a str,
    unit: &'a str,
    tags: &'a BTreeMap<String, String>,
    rule: &'a str,
    severity: Option<&'static str>,
    at: Option<String>,
    at_us: i64,
    dropped: Option<DroppedBaseline>,
    #[serde(flatten)]
    origin: OriginFields<'a>,
}

/// The baseline a rebaseline dropped: centre line, sigma and the control
/// limits at the rule's k sigma.
#[derive(Serialize)]
struct DroppedBaseline {
    test: u8,
    test_name: Option<&'static str>,
    centre: f64,
    sigma: f64,
    lower: f64,
    upper: f64,
}

#[derive(Serialize)]
struct ReasonFields<'a> {
    kind: &'static str,
    /// The Modbus exception code; `null` for other kinds.
    code: Option<u8>,
    detail: &'a str,
}

#[derive(Serialize)]
struct ReadingMessage<'a> {
    schema: &'static str,
    gateway: &'a str,
    batch_seq: u64,
    series: &'a str,
    unit: &'a str,
    tags: &'a BTreeMap<String, String>,
    ts: Option<String>,
    ts_us: i64,
    value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_text: Option<&'static str>,
    quality: &'static str,
    /// Only for a series the gateway reports by exception.
    #[serde(skip_serializing_if = "Option::is_none")]
    reporting: Option<ReportingFields>,
    #[serde(flatten)]
    origin: OriginFields<'a>,
}

/// `"reporting"`: the series is reported by exception, so a value holds
/// between two readings (within `deadband`) rather than being a measured
/// flat line; absent when every reading is sent.
#[derive(Serialize)]
struct ReportingFields {
    mode: &'static str,
    deadband: f64,
    max_silence_s: f64,
}

impl ReportingFields {
    fn of(series: &Series) -> Option<ReportingFields> {
        series.reporting.map(|r| ReportingFields {
            mode: "exception",
            deadband: r.deadband,
            max_silence_s: r.max_silence_ms as f64 / 1000.0,
        })
    }
}

/// The enrichment fields, last in every message.
#[derive(Serialize)]
struct OriginFields<'a> {
    #[serde(flatten)]
    site: SiteField<'a>,
    gateway_tags: &'a BTreeMap<String, String>,
    received: Option<String>,
    received_us: i64,
}

/// The relay's `site` for the gateway: `"site"` in v1, `"gateway_site"` in
/// v2 (so it cannot collide with a `site` among the series' tags).
#[derive(Serialize)]
enum SiteField<'a> {
    #[serde(rename = "site")]
    Site(Option<&'a str>),
    #[serde(rename = "gateway_site")]
    GatewaySite(Option<&'a str>),
}

#[derive(Serialize)]
struct SeriesBatchMessage<'a> {
    schema: &'static str,
    gateway: &'a str,
    batch_seq: u64,
    series: &'a str,
    unit: &'a str,
    tags: &'a BTreeMap<String, String>,
    points: Vec<PointMessage>,
    /// Only for a series the gateway reports by exception.
    #[serde(skip_serializing_if = "Option::is_none")]
    reporting: Option<ReportingFields>,
    #[serde(flatten)]
    origin: OriginFields<'a>,
}

#[derive(Serialize)]
struct PointMessage {
    t_us: i64,
    /// v2 only: `t_us` in RFC 3339 (`Some(None)` is `null`, outside years
    /// 0000..=9999); v1 points stay as compact as they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<Option<String>>,
    value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_text: Option<&'static str>,
    quality: &'static str,
}

#[derive(Serialize)]
struct AlarmMessage<'a> {
    schema: &'static str,
    gateway: &'a str,
    batch_seq: u64,
    series: &'a str,
    unit: &'a str,
    tags: &'a BTreeMap<String, String>,
    rule: &'a str,
    state: &'static str,
    value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_text: Option<&'static str>,
    limit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit_text: Option<&'static str>,
    ts: Option<String>,
    ts_us: i64,
    /// `null` for batches of format v1, which did not carry it.
    severity: Option<&'static str>,
    /// Only on a clear.
    duration_us: Option<i64>,
    /// Which limit of a limit check: in v1 only when known (additive), in
    /// v2 always (`Some(None)` is `null`: not a limit check, or an agent
    /// that does not send it).
    #[serde(skip_serializing_if = "Option::is_none")]
    limit_kind: Option<Option<&'static str>>,
    /// Only for an alarm of an SPC test.
    #[serde(skip_serializing_if = "Option::is_none")]
    spc: Option<SpcFields>,
    #[serde(flatten)]
    origin: OriginFields<'a>,
}

fn to_json(message: &impl Serialize) -> Vec<u8> {
    // Writing plain structs of strings, integers and `Option<f64>` into a Vec
    // cannot fail: there is no I/O and no map with non-string keys.
    serde_json::to_vec(message).expect("message structs always serialize")
}

/// A JSON number, or `null` and the text of a non-finite value.
fn number(v: f64) -> (Option<f64>, Option<&'static str>) {
    if v.is_finite() {
        (Some(v), None)
    } else if v.is_nan() {
        (None, Some("NaN"))
    } else if v > 0.0 {
        (None, Some("inf"))
    } else {
        (None, Some("-inf"))
    }
}

/// `ts_us` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, or `None` outside years 0000..=9999.
pub fn rfc3339_micros(ts_us: i64) -> Option<String> {
    let secs = ts_us.div_euclid(1_000_000);
    let micros = ts_us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    ))
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, valid for the whole `i64` microsecond range).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
