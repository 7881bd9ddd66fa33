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

/// Everything the agent counts.
#[derive(Debug, Default)]
pub struct AgentStats {
    /// Readings taken by all sources.
    pub readings_produced: Counter,
    /// Readings sealed into batches and committed to the spool.
    pub readings_spooled: Counter,
    /// Readings lost because the spool task itself failed (a panic inside
    /// SQLite code); zero in a healthy agent, and logged when it is not.
    pub readings_dropped: Counter,
    /// Readings in batches the relay acknowledged with 2xx.
    pub readings_forwarded: Counter,
    /// Batches the relay acknowledged with 2xx.
    pub batches_forwarded: Counter,
    /// Upload attempts that failed (network error, timeout or non-2xx).
    pub upload_failures: Counter,
    /// Batches the relay rejected as invalid, moved to quarantine.
    pub batches_quarantined: Counter,
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
    /// Malformed MQTT messages per (client id, topic filter).
    mqtt_malformed_by_subscription: Mutex<BTreeMap<(String, String), u64>>,
    /// The last connection error per MQTT client id, for diagnosis.
    mqtt_last_connection_error: Mutex<BTreeMap<String, String>>,
    /// Batches the relay answered 200 with `"duplicate": true`: it had
    /// delivered them before (counted in `batches_forwarded` too).
    pub batches_acked_as_duplicate: Counter,
}

impl AgentStats {
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
}
