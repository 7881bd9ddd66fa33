//! `/api/status`: the [`View`] as JSON, for the page's own polling and for
//! a local HMI or script. The shape is documented in `docs/status-api.md`
//! and versioned by its `"api"` field: fields may be added, none renamed
//! or removed without raising it.
//!
//! Times are µs since the Unix epoch (`*_us`), ages and durations in
//! seconds (`*_s`); JSON has no NaN, so a non-finite value is `null`.

use serde_json::{json, Value};

use super::view::View;
use crate::points::stale_after_us;

/// The version of the JSON shape.
pub const API_VERSION: u32 = 1;

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The body of `/api/status`.
pub fn json(v: &View) -> Value {
    let u = &v.uplink;
    let spool = v.spool.as_ref().map(|s| {
        json!({
            "used_bytes": s.used_bytes,
            "bound_bytes": s.bound_bytes,
            "max_age_s": s.max_age_s,
            "on_full": s.on_full,
            "readings_dropped_full": s.dropped_full,
            "readings_dropped_age": s.dropped_age,
            "gaps": s.gaps,
            "quarantined_batches": s.quarantined,
        })
    });
    let devices: Vec<Value> = v
        .devices
        .iter()
        .map(|d| {
            let errors: serde_json::Map<String, Value> = d
                .errors
                .iter()
                .map(|(k, n)| (k.clone(), Value::from(*n)))
                .collect();
            json!({
                "kind": d.key.kind.as_str(),
                "name": d.key.name,
                "state": d.status.state.as_str(),
                "since_us": d.status.since_us,
                "last_ok_us": d.status.last_ok_us,
                "reason": d.status.reason.as_ref().map(|r| json!({
                    "kind": r.kind.as_str(),
                    "code": r.code,
                    "detail": r.detail,
                })),
                "times_down": d.status.times_down,
                "received": d.received,
                "errors": errors,
                "round_trip_ms": d.round_trip_ms.and_then(finite),
            })
        })
        .collect();
    let points: Vec<Value> = v
        .points
        .iter()
        .map(|p| {
            json!({
                "series": p.series,
                "device": p.point.device,
                "unit": p.point.unit,
                "value": p.point.value.and_then(finite),
                "quality": p.point.quality.map(|q| q.as_str()),
                "ts_us": p.point.ts_us,
                "age_s": p.age_us.map(|a| a as f64 / 1e6),
                "last_good_us": p.point.last_good_us,
                "poll_interval_ms": p.point.interval.map(|i| i.as_millis() as u64),
                "stale_after_s": p.point.interval.map(|i| stale_after_us(i) as f64 / 1e6),
                "stale": p.stale,
            })
        })
        .collect();
    let alarms: Vec<Value> = v
        .alarms
        .iter()
        .map(|a| {
            json!({
                "series": a.series,
                "unit": a.unit,
                "rule": a.rule,
                "severity": a.severity.as_str(),
                "value": a.value.and_then(finite),
                "limit": finite(a.limit),
                "raised_us": a.raised_us,
                "acknowledged": a.acked_us.is_some(),
                "acked_us": a.acked_us,
            })
        })
        .collect();
    let history: Vec<Value> = v
        .history
        .iter()
        .rev()
        .map(|a| {
            json!({
                "series": a.series.name,
                "rule": a.rule,
                "state": a.state.as_str(),
                "severity": a.severity.as_str(),
                "value": finite(a.value),
                "ts_us": a.ts_us,
            })
        })
        .collect();
    let health: Vec<Value> = v
        .health
        .iter()
        .map(|(c, m)| json!({"condition": c, "message": m}))
        .collect();
    let mut ack_with = Vec::new();
    if v.ack_token {
        ack_with.push("bearer");
    }
    if v.ack_basic {
        ack_with.push("basic");
    }
    json!({
        "api": API_VERSION,
        "now_us": v.now_us,
        "gateway": {
            "id": v.gateway_id,
            "version": v.version,
            "started_us": v.started_us,
            "uptime_s": (v.now_us - v.started_us).max(0) as f64 / 1e6,
        },
        "uplink": {
            "connected": u.connected,
            "last_success_us": u.last_success_us,
            "backlog_batches": u.backlog_batches,
            "backlog_readings": u.backlog_readings,
            "backlog_bytes": u.backlog_bytes,
            "oldest_unsent_us": u.oldest_unsent_us,
            "oldest_unsent_age_s": u.oldest_unsent_us.map(|t| (v.now_us - t).max(0) as f64 / 1e6),
            "drain_readings_per_s": u.drain_per_s.and_then(finite),
            "time_to_empty_s": u.time_to_empty_s.and_then(finite),
        },
        "spool": spool,
        "health": {
            "status": if v.health.is_empty() { "ok" } else { "unhealthy" },
            "failed": health,
        },
        "devices": devices,
        "points": points,
        "points_device": v.points_device,
        "point_devices": v.point_devices,
        "points_total": v.points_total,
        "alarms": {
            "active": alarms,
            "recent": history,
            "ack": ack_with,
        },
    })
}
