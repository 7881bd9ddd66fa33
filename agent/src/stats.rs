//! Counters the agent keeps about itself. They are plain atomics so any task
//! can bump them without locks; the status page and the demo read them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A condition that is on or off, readable from any task.
#[derive(Debug, Default)]
pub struct Flag(std::sync::atomic::AtomicBool);

impl Flag {
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Everything the agent counts.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Readings taken by all sources.
    pub readings_produced: Counter,
    /// Readings sealed into batches and committed to the spool.
    pub readings_spooled: Counter,
    /// Readings of series reported by exception that were held back (within
    /// the deadband of the last one sent, before the heartbeat), so not
    /// spooled; detection saw them all.
    pub readings_filtered: Counter,
    /// Readings lost because the spool task itself failed (a panic inside
    /// SQLite code); zero in a healthy agent, and logged when it is not.
    pub readings_dropped: Counter,
    /// Readings in batches the relay acknowledged with 2xx.
    pub readings_forwarded: Counter,
    /// Batches the relay acknowledged with 2xx.
    pub batches_forwarded: Counter,
    /// Upload attempts that failed (network error, timeout or non-2xx).
    pub upload_failures: Counter,
    /// Deletes of batches the relay confirmed that failed (full disk, locked
    /// database); such batches are not sent again, the delete is retried.
    pub spool_remove_failures: Counter,
    /// Batches the relay rejected as invalid, moved to quarantine.
    pub batches_quarantined: Counter,
    /// Device-state events (a device down, degraded or back) committed to
    /// the spool's priority lane.
    pub device_events_spooled: Counter,
    /// Alarm raise events detected.
    pub alarms_raised: Counter,
    /// Alarm clear events detected.
    pub alarms_cleared: Counter,
    /// Alarm events not published on the local MQTT broker because the
    /// publisher's queue was full (they are still spooled for the relay).
    pub alarms_not_published: Counter,
    /// Alarm events and state updates the local MQTT broker acknowledged.
    pub alarms_published: Counter,
    /// Acknowledgements from the local HMI recorded in the spool.
    pub alarm_acks: Counter,
    /// Acknowledgements refused: unreadable payload, or no such raised alarm.
    pub alarm_acks_rejected: Counter,
    /// Re-baselining requests applied (MQTT command or status page).
    pub spc_rebaselines: Counter,
    /// Re-baselining requests refused: no credentials or wrong ones, an
    /// unreadable body, no such SPC rule, nothing learned yet.
    pub spc_rebaselines_refused: Counter,
    /// Modbus requests that failed at the transport (connect, timeout, I/O).
    pub modbus_transport_errors: Counter,
    /// Modbus requests answered with an exception code.
    pub modbus_exceptions: Counter,
    /// Modbus RTU replies dropped because their CRC did not match.
    pub modbus_crc_errors: Counter,
    /// Modbus requests repeated at once after a failure (`retries`).
    pub modbus_retries: Counter,
    /// Modbus exceptions per (device, exception code).
    modbus_exceptions_by_code: Mutex<BTreeMap<(String, u8), u64>>,
    /// MQTT messages received, malformed ones included.
    pub mqtt_messages: Counter,
    /// MQTT messages skipped because they could not be read.
    pub mqtt_malformed: Counter,
    /// MQTT connection attempts or connections that failed.
    pub mqtt_connection_errors: Counter,
    /// MQTT subscriptions the broker accepted (counted again on every reconnect).
    pub mqtt_subscriptions_acked: Counter,
    /// QoS 1 MQTT messages acknowledged to the broker after their readings were committed.
    pub mqtt_messages_acked: Counter,
    /// QoS 1 MQTT messages the broker delivered again (DUP) that the spool
    /// already holds: acknowledged, not stored twice.
    pub mqtt_redeliveries_skipped: Counter,
    /// Malformed MQTT messages per (client id, topic filter).
    mqtt_malformed_by_subscription: Mutex<BTreeMap<(String, String), u64>>,
    /// The last connection error per MQTT client id, for diagnosis.
    mqtt_last_connection_error: Mutex<BTreeMap<String, String>>,
    /// Readings dropped from the spool because it was full (`max_bytes` or
    /// the disk) and `on_full` is "drop-oldest".
    pub readings_dropped_full: Counter,
    /// Readings dropped from the spool because they were older than `max_age_s`.
    pub readings_dropped_age: Counter,
    /// Batches dropped from the spool because it was full.
    pub batches_dropped_full: Counter,
    /// Batches dropped from the spool because they were too old.
    pub batches_dropped_age: Counter,
    /// Gap records written (runs of dropped batches).
    pub spool_gaps: Counter,
    /// Commits refused because the spool was full (`on_full = "block"` or
    /// the disk); the batch waited and was tried again.
    pub spool_full: Counter,
    /// On while the spool refuses commits (`on_full = "block"` at its bound,
    /// or a disk full even after the reserve): the sources hold back.
    pub held_back: Flag,
    /// Polls (Modbus groups, simulated ticks) skipped while the sources
    /// were held back: readings not taken, rather than taken and lost.
    pub polls_held_back: Counter,
    /// Frames received from microcontrollers and decoded (`[[frames]]`).
    pub frames_received: Counter,
    /// Frames dropped because their CRC did not match: line noise, never
    /// decoded into values.
    pub frames_crc_errors: Counter,
    /// Frames dropped for another reason: bad stuffing, too long, too
    /// short, unknown version, or a body that is not a message.
    pub frames_bad_frames: Counter,
    /// Births (boot announcements) from microcontrollers.
    pub frames_births: Counter,
    /// Samples a microcontroller resent that the agent had taken already.
    pub frames_duplicates: Counter,
    /// Samples refused (no birth yet, unknown channel).
    pub frames_nacks: Counter,
    /// Samples a microcontroller dropped (its ring was full) that never
    /// reached the agent.
    pub frames_device_dropped: Counter,
    /// Frames links that could not be opened or were lost.
    pub frames_link_errors: Counter,
    /// Commits that failed for another reason (I/O error) and were retried.
    pub spool_errors: Counter,
    /// Unsent batches whose checksum did not match at start-up, quarantined.
    pub spool_corrupt_batches: Counter,
    /// Batches copied out of an unusable spool into the fresh one at
    /// start-up (checksums verified).
    pub spool_salvaged_batches: Counter,
    /// Spool databases moved aside at start-up because they were unusable.
    pub spool_moved_aside: Counter,
    /// Batches the relay answered 200 with `"duplicate": true`: it had
    /// delivered them before (counted in `batches_forwarded` too).
    pub batches_acked_as_duplicate: Counter,
    /// Batches the relay answered 200 with `"conflict": true`: it knew their
    /// gateway, spool instance and seq with other content (two gateways
    /// sharing one id and one cloned spool?) and published them flagged.
    pub batches_acked_as_conflict: Counter,
    /// Uploads sent in an older wire format because the relay does not
    /// read the newest (it answered `bad_version`): upgrade the relay.
    pub batches_sent_in_legacy_format: Counter,
    /// Batches delivered with a reference to their series table instead of
    /// the table itself (format v7 or v9): the relay held it already.
    pub batches_sent_with_table_reference: Counter,
    /// References the relay refused because it did not hold the series
    /// table (another relay of a fleet, a reset store): each batch went
    /// again at once with its table.
    pub series_tables_resent: Counter,
    /// Per Modbus device: readings, errors and request round trips, for
    /// the status page.
    modbus_devices: Mutex<BTreeMap<String, DeviceCounts>>,
    /// MQTT messages per (client id, subscription); "" for a message that
    /// matches no subscription.
    mqtt_messages_by_subscription: Mutex<BTreeMap<(String, String), u64>>,
    /// Per `[[frames]]` link and event, beside the agent-wide counters.
    frames_by_device: Mutex<BTreeMap<(String, FrameEvent), u64>>,
    /// Failed MQTT connections (attempts) per client id.
    mqtt_connection_errors_by_client: Mutex<BTreeMap<String, u64>>,
    /// Every source's devices and connections: ok, degraded or down.
    pub devices: crate::devices::Devices,
    /// Every series' last reading, updated by the pipeline once per batch.
    pub points: crate::points::Points,
    /// Sparkplug B session problems by kind (`seq_gap`, `no_birth`,
    /// `unknown_metric`, `stale_death`, `unnamed`, `too_many`).
    sparkplug_problems: Mutex<BTreeMap<&'static str, u64>>,
    /// Rebirth requests (NCMD) the agent published to Sparkplug edge nodes.
    pub sparkplug_rebirths_requested: Counter,
    /// Rebirth requests that were due but not sent (`rebirth_requests` off).
    pub sparkplug_rebirths_not_sent: Counter,
    /// Sparkplug metrics of a type the product does not carry (strings,
    /// data sets, templates), counted once per birth.
    pub sparkplug_unsupported_metrics: Counter,
}

/// Upper bounds, in seconds, of the Modbus round-trip histogram buckets: a
/// healthy TCP device answers in a few milliseconds, a slow RS-485 line in
/// hundreds, and a timeout is a transport error rather than a latency.
pub const LATENCY_BUCKETS_S: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// What one Modbus device has done, as the status page shows it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DeviceCounts {
    pub readings: u64,
    pub transport_errors: u64,
    pub crc_errors: u64,
    pub retries: u64,
    /// Answered requests (data or exception) per bucket of
    /// [`LATENCY_BUCKETS_S`], not cumulative; answers slower than the last
    /// bound are counted only in `latency_count`.
    pub latency_buckets: [u64; LATENCY_BUCKETS_S.len()],
    pub latency_count: u64,
    pub latency_sum_s: f64,
}

/// A Modbus event counted per device (and in the agent-wide total).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModbusEvent {
    Reading,
    TransportError,
    CrcError,
    Retry,
}

impl AgentStats {
    /// Readings the pipeline is done with, in channel order: committed,
    /// given up on after a spool failure, or held back by report by
    /// exception. The pipeline counts a held reading only once every
    /// reading before it is committed (the open batch sealed), so this
    /// never runs ahead of the spool; MQTT and frames acknowledgements wait
    /// for it.
    pub fn readings_settled(&self) -> u64 {
        self.readings_spooled.get() + self.readings_dropped.get() + self.readings_filtered.get()
    }

    /// Count an exception `code` that `device` answered with.
    pub fn record_modbus_exception(&self, device: &str, code: u8) {
        self.modbus_exceptions.inc();
        let mut map = self
            .modbus_exceptions_by_code
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry((device.to_string(), code)).or_default() += 1;
    }

    /// Exceptions counted per (device, code), in order.
    pub fn modbus_exceptions_by_code(&self) -> Vec<((String, u8), u64)> {
        let map = self
            .modbus_exceptions_by_code
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Count a malformed message of the subscription `topic` on the broker
    /// connection `client_id`.
    pub fn record_mqtt_malformed(&self, client_id: &str, topic: &str) {
        self.mqtt_malformed.inc();
        let mut map = self
            .mqtt_malformed_by_subscription
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *map.entry((client_id.to_string(), topic.to_string()))
            .or_default() += 1;
    }

    /// Count a failed connection (attempt) of the broker connection
    /// `client_id` and remember why it failed.
    pub fn record_mqtt_connection_error(&self, client_id: &str, error: &str) {
        self.mqtt_connection_errors.inc();
        *lock(&self.mqtt_connection_errors_by_client)
            .entry(client_id.to_string())
            .or_default() += 1;
        let mut map = self
            .mqtt_last_connection_error
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.insert(client_id.to_string(), error.to_string());
    }

    /// Why the broker connection `client_id` last failed, if it ever did.
    pub fn mqtt_last_connection_error(&self, client_id: &str) -> Option<String> {
        let map = self
            .mqtt_last_connection_error
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.get(client_id).cloned()
    }

    /// Malformed messages counted for one subscription.
    pub fn mqtt_malformed_for(&self, client_id: &str, topic: &str) -> u64 {
        let map = self
            .mqtt_malformed_by_subscription
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        map.get(&(client_id.to_string(), topic.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Count a Sparkplug B session problem of kind `kind`.
    pub fn record_sparkplug_problem(&self, kind: &'static str) {
        *lock(&self.sparkplug_problems).entry(kind).or_default() += 1;
    }

    /// Sparkplug B problems counted per kind, in order.
    pub fn sparkplug_problems(&self) -> Vec<(&'static str, u64)> {
        lock(&self.sparkplug_problems)
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// Count `event` for the Modbus device `device` and in its agent-wide
    /// counter.
    pub fn record_modbus(&self, device: &str, event: ModbusEvent) {
        let total = match event {
            ModbusEvent::Reading => &self.readings_produced,
            ModbusEvent::TransportError => &self.modbus_transport_errors,
            ModbusEvent::CrcError => &self.modbus_crc_errors,
            ModbusEvent::Retry => &self.modbus_retries,
        };
        total.inc();
        let mut map = lock(&self.modbus_devices);
        let counts = map.entry(device.to_string()).or_default();
        match event {
            ModbusEvent::Reading => counts.readings += 1,
            ModbusEvent::TransportError => counts.transport_errors += 1,
            ModbusEvent::CrcError => counts.crc_errors += 1,
            ModbusEvent::Retry => counts.retries += 1,
        }
    }

    /// Record the round trip of a Modbus request that `device` answered.
    pub fn record_modbus_latency(&self, device: &str, round_trip: std::time::Duration) {
        let s = round_trip.as_secs_f64();
        let mut map = lock(&self.modbus_devices);
        let counts = map.entry(device.to_string()).or_default();
        if let Some(i) = LATENCY_BUCKETS_S.iter().position(|&le| s <= le) {
            counts.latency_buckets[i] += 1;
        }
        counts.latency_count += 1;
        counts.latency_sum_s += s;
    }

    /// Per-device Modbus figures, by device name.
    pub fn modbus_devices(&self) -> Vec<(String, DeviceCounts)> {
        let map = lock(&self.modbus_devices);
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Count an MQTT message received on the broker connection `client_id`
    /// for the subscription `topic` ("" when it matches none).
    pub fn record_mqtt_message(&self, client_id: &str, topic: &str) {
        self.mqtt_messages.inc();
        *lock(&self.mqtt_messages_by_subscription)
            .entry((client_id.to_string(), topic.to_string()))
            .or_default() += 1;
    }

    /// `n` times `event` on the `[[frames]]` device behind `link` (its
    /// serial device path or `tcp://` address, which a device keeps even before
    /// its birth names it): the agent-wide counter and the device's.
    pub fn record_frames(&self, link: &str, event: FrameEvent, n: u64) {
        let total = match event {
            FrameEvent::Received => &self.frames_received,
            FrameEvent::CrcError => &self.frames_crc_errors,
            FrameEvent::BadFrame => &self.frames_bad_frames,
            FrameEvent::Birth => &self.frames_births,
            FrameEvent::Duplicate => &self.frames_duplicates,
            FrameEvent::Nack => &self.frames_nacks,
            FrameEvent::DeviceDropped => &self.frames_device_dropped,
            FrameEvent::LinkError => &self.frames_link_errors,
        };
        total.add(n);
        *lock(&self.frames_by_device)
            .entry((link.to_string(), event))
            .or_default() += n;
    }

    /// Frames events per (link, event), in order.
    pub fn frames_by_device(&self) -> Vec<((String, FrameEvent), u64)> {
        let map = lock(&self.frames_by_device);
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// MQTT messages per (client id, subscription), in order.
    pub fn mqtt_messages_by_subscription(&self) -> Vec<((String, String), u64)> {
        let map = lock(&self.mqtt_messages_by_subscription);
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Malformed MQTT messages per (client id, subscription), in order.
    pub fn mqtt_malformed_by_subscription(&self) -> Vec<((String, String), u64)> {
        let map = lock(&self.mqtt_malformed_by_subscription);
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Failed MQTT connections (attempts) per client id, in order.
    pub fn mqtt_connection_errors_by_client(&self) -> Vec<(String, u64)> {
        let map = lock(&self.mqtt_connection_errors_by_client);
        map.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// A counter map stays usable after a panic elsewhere: its numbers are
/// never half-updated.
/// What a `[[frames]]` device did, counted per device
/// (`edge_agent_frames_device_events_total{link, event}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FrameEvent {
    Received,
    CrcError,
    BadFrame,
    Birth,
    Duplicate,
    Nack,
    /// Samples the device dropped (its ring was full): counted by sample.
    DeviceDropped,
    LinkError,
}

impl FrameEvent {
    /// The `event` label.
    pub fn as_str(self) -> &'static str {
        match self {
            FrameEvent::Received => "received",
            FrameEvent::CrcError => "crc_error",
            FrameEvent::BadFrame => "bad_frame",
            FrameEvent::Birth => "birth",
            FrameEvent::Duplicate => "duplicate",
            FrameEvent::Nack => "nack",
            FrameEvent::DeviceDropped => "device_dropped",
            FrameEvent::LinkError => "link_error",
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_events_count_per_link_and_agent_wide() {
        let s = AgentStats::default();
        s.record_frames("/dev/ttyACM0", FrameEvent::Received, 1);
        s.record_frames("/dev/ttyACM0", FrameEvent::Received, 1);
        s.record_frames("tcp://10.0.0.7:4001", FrameEvent::Received, 1);
        s.record_frames("tcp://10.0.0.7:4001", FrameEvent::DeviceDropped, 40);
        s.record_frames("/dev/ttyACM0", FrameEvent::CrcError, 1);
        assert_eq!(s.frames_received.get(), 3);
        assert_eq!(s.frames_device_dropped.get(), 40);
        assert_eq!(s.frames_crc_errors.get(), 1);
        assert_eq!(
            s.frames_by_device(),
            [
                (("/dev/ttyACM0".to_string(), FrameEvent::Received), 2),
                (("/dev/ttyACM0".to_string(), FrameEvent::CrcError), 1),
                (("tcp://10.0.0.7:4001".to_string(), FrameEvent::Received), 1),
                (
                    ("tcp://10.0.0.7:4001".to_string(), FrameEvent::DeviceDropped),
                    40
                ),
            ]
        );
    }
}
