//! The Prometheus text format (version 0.0.4) of the agent's figures.
//!
//! Rendered by hand, as the relay's `/metrics` is: the figures already live
//! in [`AgentStats`] and the spool, the format is three kinds of line, and
//! one renderer for both binaries keeps names and escaping alike. A
//! `prometheus-client` registry would need a second home for every counter
//! (or a custom collector doing this same walk) and a new dependency on
//! the gateway.
//!
//! Every [`Counter`] field of [`AgentStats`] is rendered as
//! `edge_agent_<field>_total` with its `///` comment as HELP; a unit test
//! fails when a new counter is added to `stats.rs` but not to `COUNTERS`,
//! the one line to add.

use std::fmt::{Display, Write};

use crate::stats::{AgentStats, Counter, LATENCY_BUCKETS_S};
use crate::status::Snapshot;

type Field = fn(&AgentStats) -> &Counter;

/// Every agent-wide counter, by its field name in [`AgentStats`].
const COUNTERS: &[(&str, Field)] = &[
    ("readings_produced", |s| &s.readings_produced),
    ("readings_spooled", |s| &s.readings_spooled),
    ("readings_dropped", |s| &s.readings_dropped),
    ("readings_filtered", |s| &s.readings_filtered),
    ("readings_forwarded", |s| &s.readings_forwarded),
    ("batches_forwarded", |s| &s.batches_forwarded),
    ("upload_failures", |s| &s.upload_failures),
    ("spool_remove_failures", |s| &s.spool_remove_failures),
    ("batches_quarantined", |s| &s.batches_quarantined),
    ("device_events_spooled", |s| &s.device_events_spooled),
    ("alarms_raised", |s| &s.alarms_raised),
    ("alarms_cleared", |s| &s.alarms_cleared),
    ("alarms_not_published", |s| &s.alarms_not_published),
    ("alarms_published", |s| &s.alarms_published),
    ("alarm_acks", |s| &s.alarm_acks),
    ("alarm_acks_rejected", |s| &s.alarm_acks_rejected),
    ("spc_rebaselines", |s| &s.spc_rebaselines),
    ("spc_rebaselines_refused", |s| &s.spc_rebaselines_refused),
    ("modbus_transport_errors", |s| &s.modbus_transport_errors),
    ("modbus_exceptions", |s| &s.modbus_exceptions),
    ("modbus_crc_errors", |s| &s.modbus_crc_errors),
    ("modbus_retries", |s| &s.modbus_retries),
    ("mqtt_messages", |s| &s.mqtt_messages),
    ("mqtt_malformed", |s| &s.mqtt_malformed),
    ("mqtt_connection_errors", |s| &s.mqtt_connection_errors),
    ("mqtt_subscriptions_acked", |s| &s.mqtt_subscriptions_acked),
    ("mqtt_messages_acked", |s| &s.mqtt_messages_acked),
    ("mqtt_redeliveries_skipped", |s| {
        &s.mqtt_redeliveries_skipped
    }),
    ("readings_dropped_full", |s| &s.readings_dropped_full),
    ("readings_dropped_age", |s| &s.readings_dropped_age),
    ("batches_dropped_full", |s| &s.batches_dropped_full),
    ("batches_dropped_age", |s| &s.batches_dropped_age),
    ("spool_gaps", |s| &s.spool_gaps),
    ("spool_full", |s| &s.spool_full),
    ("spool_errors", |s| &s.spool_errors),
    ("polls_held_back", |s| &s.polls_held_back),
    ("frames_received", |s| &s.frames_received),
    ("frames_crc_errors", |s| &s.frames_crc_errors),
    ("frames_bad_frames", |s| &s.frames_bad_frames),
    ("frames_births", |s| &s.frames_births),
    ("frames_duplicates", |s| &s.frames_duplicates),
    ("frames_nacks", |s| &s.frames_nacks),
    ("frames_device_dropped", |s| &s.frames_device_dropped),
    ("sparkplug_rebirths_requested", |s| {
        &s.sparkplug_rebirths_requested
    }),
    ("sparkplug_rebirths_not_sent", |s| {
        &s.sparkplug_rebirths_not_sent
    }),
    ("sparkplug_unsupported_metrics", |s| {
        &s.sparkplug_unsupported_metrics
    }),
    ("frames_link_errors", |s| &s.frames_link_errors),
    ("spool_corrupt_batches", |s| &s.spool_corrupt_batches),
    ("spool_moved_aside", |s| &s.spool_moved_aside),
    ("spool_salvaged_batches", |s| &s.spool_salvaged_batches),
    ("batches_acked_as_duplicate", |s| {
        &s.batches_acked_as_duplicate
    }),
    ("batches_acked_as_conflict", |s| {
        &s.batches_acked_as_conflict
    }),
    ("batches_sent_in_legacy_format", |s| {
        &s.batches_sent_in_legacy_format
    }),
    ("batches_sent_with_table_reference", |s| {
        &s.batches_sent_with_table_reference
    }),
    ("series_tables_resent", |s| &s.series_tables_resent),
];

/// The source of `AgentStats`, read for the counters' doc comments.
const STATS_SOURCE: &str = include_str!("../stats.rs");

/// `(field, doc comment)` of every `pub <field>: Counter` in `stats.rs`.
fn counter_docs() -> Vec<(&'static str, String)> {
    let mut docs = Vec::new();
    let mut comment: Vec<&str> = Vec::new();
    for line in STATS_SOURCE.lines().map(str::trim) {
        if let Some(text) = line.strip_prefix("///") {
            comment.push(text.trim());
            continue;
        }
        let field = line
            .strip_prefix("pub ")
            .and_then(|l| l.strip_suffix(": Counter,"));
        if let Some(field) = field {
            docs.push((field, comment.join(" ")));
        }
        comment.clear();
    }
    docs
}

/// Prometheus text being written.
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(self.0, "{sep}{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// The whole `/metrics` page.
pub fn render(stats: &AgentStats, snap: &Snapshot) -> String {
    let mut t = Text(String::new());
    let docs = counter_docs();
    for (field, get) in COUNTERS {
        let help = docs
            .iter()
            .find(|(f, _)| f == field)
            .map_or("", |(_, d)| d.as_str());
        t.single(
            &format!("edge_agent_{field}_total"),
            "counter",
            help,
            get(stats).get(),
        );
    }
    modbus(&mut t, stats);
    mqtt(&mut t, stats);
    frames(&mut t, stats);
    devices(&mut t, stats);
    spool(&mut t, snap);
    let a = &snap.activity;
    t.single(
        "edge_agent_uplink_up",
        "gauge",
        "1 unless the last upload to the relay failed (also 1 before the first upload).",
        u8::from(a.uplink_up != Some(false)),
    );
    if let Some(us) = a.last_forwarded_us {
        t.single(
            "edge_agent_last_forward_success_timestamp_seconds",
            "gauge",
            "When an upload to the relay last succeeded (Unix time, to within a second); absent before the first.",
            us as f64 / 1e6,
        );
    }
    t.single(
        "edge_agent_start_timestamp_seconds",
        "gauge",
        "When the agent started (Unix time).",
        a.started_us as f64 / 1e6,
    );
    t.family(
        "edge_agent_health_condition_failed",
        "gauge",
        "1 when the /healthz condition fails (see the status module), else 0.",
    );
    for condition in ["not_spooling", "not_forwarding", "disk_full", "spool_full"] {
        let failed = snap.problems.iter().any(|p| p.condition() == condition);
        t.sample(
            "edge_agent_health_condition_failed",
            &[("condition", condition)],
            u8::from(failed),
        );
    }
    t.0
}

fn modbus(t: &mut Text, stats: &AgentStats) {
    let devices = stats.modbus_devices();
    type Get = fn(&crate::stats::DeviceCounts) -> u64;
    let per_device: [(&str, &str, Get); 4] = [
        ("readings", "Readings taken from the Modbus device.", |c| {
            c.readings
        }),
        (
            "transport_errors",
            "Modbus requests to the device (or link opens) that failed at the transport.",
            |c| c.transport_errors,
        ),
        (
            "crc_errors",
            "Modbus RTU replies of the device dropped for a bad CRC.",
            |c| c.crc_errors,
        ),
        (
            "retries",
            "Modbus requests to the device repeated at once after a failure.",
            |c| c.retries,
        ),
    ];
    for (what, help, get) in per_device {
        let name = format!("edge_agent_modbus_device_{what}_total");
        t.family(&name, "counter", help);
        for (device, counts) in &devices {
            t.sample(&name, &[("device", device)], get(counts));
        }
    }
    let name = "edge_agent_modbus_device_exceptions_total";
    t.family(
        name,
        "counter",
        "Modbus exception answers of the device, by exception code.",
    );
    for ((device, code), n) in stats.modbus_exceptions_by_code() {
        t.sample(name, &[("device", &device), ("code", &code.to_string())], n);
    }
    let name = "edge_agent_modbus_request_duration_seconds";
    t.family(
        name,
        "histogram",
        "Round trip of Modbus requests the device answered (data or exception).",
    );
    for (device, c) in &devices {
        let mut cumulative = 0;
        for (le, n) in LATENCY_BUCKETS_S.iter().zip(c.latency_buckets) {
            cumulative += n;
            let le = le.to_string();
            t.sample(
                &format!("{name}_bucket"),
                &[("device", device), ("le", &le)],
                cumulative,
            );
        }
        let bucket = format!("{name}_bucket");
        t.sample(
            &bucket,
            &[("device", device), ("le", "+Inf")],
            c.latency_count,
        );
        t.sample(
            &format!("{name}_sum"),
            &[("device", device)],
            c.latency_sum_s,
        );
        t.sample(
            &format!("{name}_count"),
            &[("device", device)],
            c.latency_count,
        );
    }
}

fn mqtt(t: &mut Text, stats: &AgentStats) {
    let subscriptions = [
        (
            "edge_agent_mqtt_subscription_messages_total",
            "MQTT messages received per broker connection (client_id) and subscription (\"\" when none matched).",
            stats.mqtt_messages_by_subscription(),
        ),
        (
            "edge_agent_mqtt_subscription_malformed_total",
            "MQTT messages skipped as unreadable per broker connection (client_id) and subscription.",
            stats.mqtt_malformed_by_subscription(),
        ),
    ];
    for (name, help, counts) in subscriptions {
        t.family(name, "counter", help);
        for ((client, topic), n) in counts {
            t.sample(name, &[("client_id", &client), ("subscription", &topic)], n);
        }
    }
    let name = "edge_agent_mqtt_client_connection_errors_total";
    t.family(
        name,
        "counter",
        "Failed MQTT connections (attempts) per broker connection (client_id).",
    );
    for (client, n) in stats.mqtt_connection_errors_by_client() {
        t.sample(name, &[("client_id", &client)], n);
    }
    let name = "edge_agent_sparkplug_problems_total";
    t.family(
        name,
        "counter",
        "Sparkplug B messages with a session problem, by kind: seq_gap, no_birth (data before a birth), unknown_metric (alias or name no birth defined), stale_death (NDEATH of an older bdSeq), unnamed, too_many (more edge nodes or devices than tracked).",
    );
    for (kind, n) in stats.sparkplug_problems() {
        t.sample(name, &[("kind", kind)], n);
    }
}

fn frames(t: &mut Text, stats: &AgentStats) {
    let name = "edge_agent_frames_device_events_total";
    t.family(
        name,
        "counter",
        "Frames events per [[frames]] device, by its link (serial device path or tcp:// address): received, crc_error, bad_frame, birth, duplicate, nack, device_dropped (samples), link_error.",
    );
    for ((link, event), n) in stats.frames_by_device() {
        t.sample(name, &[("link", &link), ("event", event.as_str())], n);
    }
}

/// The device board as a state set, the way Prometheus exporters give an
/// enum (kube-state-metrics' `kube_pod_status_phase`): one series per
/// device and state, 1 for the state it is in and 0 for the others, so
/// `edge_agent_device_state{state="down"} == 1` alerts on a device down and
/// a change of state never leaves a stale series behind.
fn devices(t: &mut Text, stats: &AgentStats) {
    use crate::devices::DeviceState;
    let devices = stats.devices.all();
    let name = "edge_agent_device_state";
    t.family(
        name,
        "gauge",
        "State of each device or connection behind a source (source = modbus, mqtt or frames): one series per state (pending, ok, degraded, down), 1 for the state it is in, else 0.",
    );
    for (key, status) in &devices {
        for state in DeviceState::ALL {
            t.sample(
                name,
                &[
                    ("source", key.kind.as_str()),
                    ("device", &key.name),
                    ("state", state.as_str()),
                ],
                u8::from(status.state == state),
            );
        }
    }
    let name = "edge_agent_device_last_ok_timestamp_seconds";
    t.family(
        name,
        "gauge",
        "When the device last answered with data (Unix time); absent for a device that has not answered since the agent started.",
    );
    for (key, status) in &devices {
        if let Some(us) = status.last_ok_us {
            t.sample(
                name,
                &[("source", key.kind.as_str()), ("device", &key.name)],
                us as f64 / 1e6,
            );
        }
    }
}

fn spool(t: &mut Text, snap: &Snapshot) {
    let Some(s) = &snap.spool else {
        t.single(
            "edge_agent_spool_readable",
            "gauge",
            "1 when the spool could be read for this page.",
            0,
        );
        return;
    };
    t.single(
        "edge_agent_spool_readable",
        "gauge",
        "1 when the spool could be read for this page.",
        1,
    );
    let figures = [
        (
            "batches",
            "Batches in the spool waiting for the relay.",
            s.stats.batches,
        ),
        (
            "readings",
            "Readings in the spool waiting for the relay.",
            s.stats.readings,
        ),
        (
            "bytes",
            "Encoded bytes of the batches waiting for the relay.",
            s.stats.bytes,
        ),
        (
            "quarantined_batches",
            "Batches the relay rejected, kept in the quarantine table.",
            s.stats.quarantined,
        ),
        (
            "active_alarms",
            "Alarms raised and not yet cleared.",
            s.active_alarms,
        ),
    ];
    for (what, help, value) in figures {
        t.single(&format!("edge_agent_spool_{what}"), "gauge", help, value);
    }
    let p = &s.pressure;
    let room = [
        (
            "used_bytes",
            "Bytes the spool uses on disk (live database pages plus the WAL).",
            p.used,
        ),
        (
            "bound_bytes",
            "The bound in force: max_bytes, or what the disk leaves the spool when that is less (0 when none).",
            p.bound,
        ),
        (
            "disk_available_bytes",
            "Free bytes on the spool's filesystem.",
            p.available,
        ),
        (
            "disk_full",
            "1 while the disk bounds the spool and the spool is at that bound, or SQLite found the disk full.",
            u64::from(p.disk_full),
        ),
        (
            "refusing",
            "1 while the spool refuses commits (on_full = block at its bound) and the sources are held back.",
            u64::from(p.refused),
        ),
    ];
    for (what, help, value) in room {
        t.single(&format!("edge_agent_spool_{what}"), "gauge", help, value);
    }
    let age = s
        .oldest_unsent_us
        .map_or(0.0, |us| ((snap.now_us - us) as f64 / 1e6).max(0.0));
    t.single(
        "edge_agent_spool_oldest_unsent_age_seconds",
        "gauge",
        "Age of the oldest reading in the batch the forwarder sends next (0 when the spool is empty).",
        age,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::SpoolStats;
    use crate::status::health::{Activity, Problem};
    use crate::status::SpoolFigures;

    fn snapshot() -> Snapshot {
        Snapshot {
            now_us: 100_000_000,
            activity: Activity {
                started_us: 1_000_000,
                last_produced_us: Some(99_000_000),
                last_spooled_us: Some(99_000_000),
                last_forwarded_us: None,
                uplink_up: Some(false),
            },
            spool: Some(SpoolFigures {
                stats: SpoolStats {
                    batches: 3,
                    readings: 42,
                    bytes: 900,
                    quarantined: 0,
                },
                oldest_unsent_us: Some(90_000_000),
                active_alarms: 1,
                pressure: crate::spool::Pressure {
                    used: 8192,
                    bound: 65536,
                    disk_full: true,
                    refused: false,
                    available: 1000,
                },
            }),
            problems: vec![Problem::NotForwarding {
                oldest_age_s: 10.0,
                forwarded_ago_s: 99.0,
            }],
        }
    }

    #[test]
    fn every_counter_in_stats_rs_is_rendered() {
        let docs = counter_docs();
        assert!(docs.len() >= COUNTERS.len(), "{docs:?}");
        for (field, doc) in &docs {
            assert!(
                COUNTERS.iter().any(|(f, _)| f == field),
                "AgentStats::{field} is not in status::render::COUNTERS"
            );
            assert!(!doc.is_empty(), "AgentStats::{field} has no doc comment");
        }
    }

    #[test]
    fn counters_and_labelled_figures_appear_with_labels_and_values() {
        let stats = AgentStats::default();
        stats.readings_spooled.add(7);
        stats.record_modbus_exception("press-3", 2);
        stats.record_modbus_exception("press-3", 2);
        stats.record_modbus("press-3", crate::stats::ModbusEvent::Reading);
        stats.record_modbus_latency("press-3", std::time::Duration::from_millis(20));
        stats.record_mqtt_message("gw-1", "plant/+/temp");
        let page = render(&stats, &snapshot());
        for line in [
            "# HELP edge_agent_readings_spooled_total Readings sealed into batches and committed to the spool.",
            "# TYPE edge_agent_readings_spooled_total counter",
            "edge_agent_readings_spooled_total 7",
            "edge_agent_readings_produced_total 1",
            "edge_agent_modbus_device_readings_total{device=\"press-3\"} 1",
            "edge_agent_modbus_device_exceptions_total{device=\"press-3\",code=\"2\"} 2",
            "edge_agent_modbus_request_duration_seconds_bucket{device=\"press-3\",le=\"0.01\"} 0",
            "edge_agent_modbus_request_duration_seconds_bucket{device=\"press-3\",le=\"0.025\"} 1",
            "edge_agent_modbus_request_duration_seconds_bucket{device=\"press-3\",le=\"+Inf\"} 1",
            "edge_agent_modbus_request_duration_seconds_count{device=\"press-3\"} 1",
            "edge_agent_mqtt_subscription_messages_total{client_id=\"gw-1\",subscription=\"plant/+/temp\"} 1",
            "edge_agent_spool_batches 3",
            "edge_agent_spool_readings 42",
            "edge_agent_spool_bytes 900",
            "edge_agent_spool_active_alarms 1",
            "edge_agent_spool_oldest_unsent_age_seconds 10",
            "edge_agent_uplink_up 0",
            "edge_agent_health_condition_failed{condition=\"not_forwarding\"} 1",
            "edge_agent_health_condition_failed{condition=\"not_spooling\"} 0",
            "edge_agent_health_condition_failed{condition=\"disk_full\"} 0",
            "edge_agent_spool_disk_full 1",
            "edge_agent_spool_bound_bytes 65536",
            "edge_agent_spool_used_bytes 8192",
            "edge_agent_spool_disk_available_bytes 1000",
            "edge_agent_spool_refusing 0",
        ] {
            assert!(page.lines().any(|l| l == line), "missing {line:?} in:\n{page}");
        }
        assert!(!page.contains("last_forward_success"), "{page}");
    }

    /// A device down after answering, one never heard from, and an MQTT
    /// connection that is ok: every state is a series, the current one 1.
    #[test]
    fn device_states_are_a_state_set_with_last_ok() {
        use crate::devices::{DeviceKey, Reason, ReasonKind, SourceKind};
        let stats = AgentStats::default();
        let press = DeviceKey::new(SourceKind::Modbus, "press-3");
        let idle = DeviceKey::new(SourceKind::Modbus, "idle");
        let broker = DeviceKey::new(SourceKind::Mqtt, "plant-broker");
        stats.devices.with(|b| {
            b.register(idle.clone(), 1_000_000);
            b.ok(&press, 2_000_000);
            b.ok(&press, 3_500_000);
            b.down(&press, Reason::new(ReasonKind::Timeout, "t"), 9_000_000);
            b.ok(&broker, 4_000_000);
        });
        let page = render(&stats, &snapshot());
        let state = |source: &str, device: &str, state: &str, v: u8| {
            format!("edge_agent_device_state{{source=\"{source}\",device=\"{device}\",state=\"{state}\"}} {v}")
        };
        for line in [
            "# TYPE edge_agent_device_state gauge".to_string(),
            state("modbus", "press-3", "down", 1),
            state("modbus", "press-3", "ok", 0),
            state("modbus", "press-3", "degraded", 0),
            state("modbus", "press-3", "pending", 0),
            state("modbus", "idle", "pending", 1),
            state("modbus", "idle", "down", 0),
            state("mqtt", "plant-broker", "ok", 1),
            "# TYPE edge_agent_device_last_ok_timestamp_seconds gauge".to_string(),
            "edge_agent_device_last_ok_timestamp_seconds{source=\"modbus\",device=\"press-3\"} 3.5".to_string(),
            "edge_agent_device_last_ok_timestamp_seconds{source=\"mqtt\",device=\"plant-broker\"} 4".to_string(),
        ] {
            assert!(page.lines().any(|l| l == line), "missing {line:?} in:\n{page}");
        }
        let series = page
            .lines()
            .filter(|l| l.starts_with("edge_agent_device_state{"))
            .count();
        assert_eq!(series, 3 * 4, "four states for each of three devices");
        assert!(
            !page.contains("last_ok_timestamp_seconds{source=\"modbus\",device=\"idle\"}"),
            "a device that never answered has no last ok: {page}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let mut t = Text(String::new());
        t.sample("m", &[("topic", "a\"b\\c\nd")], 1);
        assert_eq!(t.0, "m{topic=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
