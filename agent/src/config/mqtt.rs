//! The `[[mqtt]]` part of the agent configuration: brokers to subscribe to
//! and how each subscription's messages become readings.
//!
//! Same two steps as the rest of [`crate::config`]: [`RawMqttBroker`]
//! mirrors the file, `validate_broker` turns it into [`MqttBroker`] and
//! pushes every problem with its key path, for example
//! `mqtt[0].subscriptions[1].qos: 2 is not supported (0 or 1)`.
//!
//! Series names and tag values are [`Template`]s: `{1}`, `{2}`… stand for
//! the levels of the topic a message arrived on, so they can only be
//! checked for the literal text here; the expanded name is checked when a
//! message arrives.

use crate::config::issue::Problems;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

mod template;
mod tls;

pub use self::template::{check_filter, Template};
pub(in crate::config) use self::tls::client_tls;
pub use self::tls::{MqttTls, RawMqttTls};

/// `[[mqtt]]`: one MQTT broker (MQTT 3.1.1 or 5, over TCP or TLS).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqttBroker {
    /// Host name or IP address of the broker.
    pub host: String,
    /// TCP port of the broker (default 1883, or 8883 with `[mqtt.tls]`).
    pub port: Option<u16>,
    /// MQTT protocol version: "3.1.1" or "5" (default "3.1.1").
    pub protocol: Option<String>,
    /// Client identifier presented to the broker; unique per broker (default `"<gateway_id>-mqtt-<index>"`).
    pub client_id: Option<String>,
    /// User name, when the broker requires a login.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<String>,
    /// Seconds between keep-alive pings when nothing else is sent; 0 disables them, not with protocol "5", which needs at least 5 (default 30).
    pub keep_alive_s: Option<u64>,
    /// Start a fresh session on every connect, forgetting queued messages (default true). With false the broker keeps the subscriptions and queues QoS 1 messages while the agent is away (MQTT 5: clean start off and a session that never expires).
    pub clean_session: Option<bool>,
    /// Connect over TLS, verifying the broker with a CA file and optionally presenting a client certificate.
    pub tls: Option<RawMqttTls>,
    /// Topic filters to subscribe to and how to read their messages.
    #[serde(default)]
    pub subscriptions: Vec<RawSubscription>,
}

/// `[[mqtt.subscriptions]]`: one topic filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubscription {
    /// Topic filter; `+` matches one level, `#` (last) any number of levels, for example "plant/+/temp".
    pub topic: String,
    /// Quality of service asked of the broker: 0 (at most once) or 1 (at least once) (default 0).
    pub qos: Option<u8>,
    /// Payload format: "number" (plain text number), "json" (values picked by `values`), "json-object" (every numeric top-level field) or "sparkplug" (Sparkplug B protobuf on spBv1.0/... topics; every metric of every edge node and device) (default "number").
    pub format: Option<String>,
    /// For "sparkplug": publish NCMD `Node Control/Rebirth` to an edge node whose messages arrive out of sequence, with unknown aliases or before its birth, at most once per 10 s per node (default false: many plants forbid clients to send commands; the problem is then counted and logged only).
    pub rebirth_requests: Option<bool>,
    /// For "sparkplug": metric properties (from the births) that become tags of the metric's series, by property key, for example ["area", "Documentation"]; a metric without the property has no such tag (default none).
    #[serde(default)]
    pub property_tags: Vec<String>,
    /// Series name; `{1}`, `{2}`… are replaced by the topic's levels, for example "{2}.temp" for topic "plant/+/temp". With "json" and "json-object" the value's name is appended as `".<name>"`.
    pub series: String,
    /// Engineering unit of "number" and "json-object" readings, for example "degC".
    #[serde(default)]
    pub unit: String,
    /// Tags added to every series of this subscription; values may use `{1}`, `{2}`… like `series`.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// For "json": the values to read, each { pointer = "/temp", name = "temp", unit = "degC" }.
    #[serde(default)]
    pub values: Vec<RawJsonValue>,
    /// For "json" and "json-object": JSON pointer of the sample time, for example "/ts"; without it the arrival time is used.
    pub timestamp_pointer: Option<String>,
    /// Unit of `timestamp_pointer`: "s", "ms", "us" (numbers since the Unix epoch) or "rfc3339" (text).
    pub timestamp_format: Option<String>,
    /// For "json" and "json-object": also read numbers sent as text ({"v": "26.5"}) and booleans (true = 1, false = 0), as much plant firmware sends them (default true; false counts such fields as malformed).
    pub lenient_values: Option<bool>,
}

/// `values = [{ pointer = "/temp", name = "temp", unit = "degC" }]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJsonValue {
    /// JSON pointer (RFC 6901) of the number, for example "/sensors/0/temp".
    pub pointer: String,
    /// Name appended to the subscription's series: `"<series>.<name>"`.
    pub name: String,
    /// Engineering unit, for example "degC".
    #[serde(default)]
    pub unit: String,
}

/// A validated broker.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttBroker {
    pub host: String,
    pub port: u16,
    pub protocol: MqttProtocol,
    pub tls: Option<MqttTls>,
    pub client_id: String,
    /// (username, password); the password may be empty.
    pub credentials: Option<(String, String)>,
    pub keep_alive: Duration,
    pub clean_session: bool,
    pub subscriptions: Vec<Subscription>,
}

/// The MQTT protocol version spoken with a broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttProtocol {
    V311,
    V5,
}

/// A validated subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub topic: String,
    pub qos: Qos,
    pub format: PayloadFormat,
    pub series: Template,
    pub unit: String,
    pub tags: BTreeMap<String, Template>,
    /// JSON values as text or booleans are read (`lenient_values`).
    pub lenient: bool,
}

/// The MQTT quality of service levels the agent subscribes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    AtMostOnce,
    AtLeastOnce,
}

/// How a message's payload is read.
#[derive(Debug, Clone, PartialEq)]
pub enum PayloadFormat {
    /// The payload is one number as text, for example "21.5".
    Number,
    /// Named values picked from a JSON document by pointer.
    Json {
        values: Vec<JsonValue>,
        timestamp: Option<TimestampField>,
    },
    /// Every numeric top-level field of a JSON object.
    JsonObject { timestamp: Option<TimestampField> },
    /// Sparkplug B: every metric of every edge node and device, named
    /// `<series>.<metric>` (node metrics) or `<series>.<device>.<metric>`.
    Sparkplug {
        /// Publish rebirth requests (NCMD) when the session state needs one.
        rebirth_requests: bool,
        /// Metric property keys that become tags.
        property_tags: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct JsonValue {
    pub pointer: String,
    pub name: String,
    pub unit: String,
}

/// Where a JSON payload carries its sample time.
#[derive(Debug, Clone, PartialEq)]
pub struct TimestampField {
    pub pointer: String,
    pub format: TimestampFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampFormat {
    Seconds,
    Millis,
    Micros,
    Rfc3339,
}

impl Subscription {
    /// Whether a message of this subscription could yield the series `name`.
    pub fn could_produce(&self, name: &str) -> bool {
        match &self.format {
            PayloadFormat::Number => self.series.could_expand_to(name),
            PayloadFormat::Json { values, .. } => values.iter().any(|v| {
                name.strip_suffix(v.name.as_str())
                    .and_then(|base| base.strip_suffix('.'))
                    .is_some_and(|base| self.series.could_expand_to(base))
            }),
            PayloadFormat::JsonObject { .. } | PayloadFormat::Sparkplug { .. } => name
                .match_indices('.')
                .any(|(k, _)| k + 1 < name.len() && self.series.could_expand_to(&name[..k])),
        }
    }
}

/// MQTT series exist only once messages arrive, so a rule's `series` is
/// checked against what the subscriptions could produce: a rule that names
/// neither a configured series nor a possible MQTT one is reported, with
/// the same words as for the other sources.
pub(super) fn check_rule_series(
    p: &mut Problems,
    rules: &[super::RawRule],
    configured: &[String],
    brokers: &[MqttBroker],
) {
    for (i, r) in rules.iter().enumerate() {
        let Some(s) = &r.series else { continue };
        let known = configured.binary_search(s).is_ok()
            || brokers
                .iter()
                .flat_map(|b| &b.subscriptions)
                .any(|sub| sub.could_produce(s));
        if !known {
            p.add(
                format!("rules[{i}].series"),
                format!("{s:?} is not a configured series"),
            );
        }
    }
}

/// Validate `mqtt[i]`, pushing problems to `p`.
pub(super) fn validate_broker(
    p: &mut Problems,
    i: usize,
    b: &RawMqttBroker,
    gateway_id: &str,
) -> MqttBroker {
    let at = format!("mqtt[{i}]");
    if b.host.trim().is_empty() {
        p.add(format!("{at}.host"), "must not be empty");
    }
    let protocol = match b.protocol.as_deref().unwrap_or("3.1.1") {
        "3.1.1" => MqttProtocol::V311,
        "5" => MqttProtocol::V5,
        other => {
            p.add(
                format!("{at}.protocol"),
                format!("{other:?} is not a supported MQTT version (\"3.1.1\" or \"5\")"),
            );
            MqttProtocol::V311
        }
    };
    let tls = b
        .tls
        .as_ref()
        .and_then(|t| tls::validate_tls(p, &format!("{at}.tls"), t));
    let port = b.port.unwrap_or(if b.tls.is_some() { 8883 } else { 1883 });
    if port == 0 {
        p.add(format!("{at}.port"), "0 is not a TCP port");
    }
    let client_id = b
        .client_id
        .clone()
        .unwrap_or_else(|| format!("{gateway_id}-mqtt-{i}"));
    if client_id.is_empty() || client_id.len() > 128 {
        p.add(
            format!("{at}.client_id"),
            format!("{client_id:?} must be 1..=128 characters"),
        );
    }
    let credentials = match (&b.username, &b.password) {
        (Some(u), pw) => Some((u.clone(), pw.clone().unwrap_or_default())),
        (None, Some(_)) => {
            p.add(format!("{at}.password"), "given without a username");
            None
        }
        (None, None) => None,
    };
    let keep_alive_s = b.keep_alive_s.unwrap_or(30);
    if keep_alive_s > 65535 {
        p.add(
            format!("{at}.keep_alive_s"),
            format!("{keep_alive_s} is out of range (0..=65535)"),
        );
    } else if protocol == MqttProtocol::V5 && keep_alive_s < 5 {
        // rumqttc's MQTT 5 client refuses (panics on) anything shorter.
        p.add(format!("{at}.keep_alive_s"), format!("{keep_alive_s} is too short for protocol \"5\" (5..=65535; MQTT 5 keep-alive cannot be disabled)"));
    }
    if b.subscriptions.is_empty() {
        p.add(
            format!("{at}.subscriptions"),
            "a broker needs at least one subscription",
        );
    }
    let subscriptions = b
        .subscriptions
        .iter()
        .enumerate()
        .filter_map(|(j, s)| validate_subscription(p, &format!("{at}.subscriptions[{j}]"), s))
        .collect();
    MqttBroker {
        host: b.host.clone(),
        port,
        protocol,
        tls,
        client_id,
        credentials,
        keep_alive: Duration::from_secs(keep_alive_s.min(65535)),
        clean_session: b.clean_session.unwrap_or(true),
        subscriptions,
    }
}

fn validate_subscription(p: &mut Problems, at: &str, s: &RawSubscription) -> Option<Subscription> {
    let before = p.len();
    if let Err(why) = check_filter(&s.topic) {
        p.add(format!("{at}.topic"), format!("{:?} {why}", s.topic));
    }
    let levels = s.topic.split('/').count();
    let open_ended = s.topic.ends_with('#');
    let qos = match s.qos.unwrap_or(0) {
        0 => Qos::AtMostOnce,
        1 => Qos::AtLeastOnce,
        other => {
            p.add(
                format!("{at}.qos"),
                format!("{other} is not supported (0 or 1)"),
            );
            Qos::AtMostOnce
        }
    };
    let mut template = |key: &str, text: &str| -> Template {
        match Template::parse(text) {
            Ok(t) => {
                if !open_ended && t.max_level() > levels {
                    p.add(
                        format!("{at}.{key}"),
                        format!(
                            "{{{}}} but topic {:?} has only {levels} level(s)",
                            t.max_level(),
                            s.topic
                        ),
                    );
                }
                t
            }
            Err(why) => {
                p.add(format!("{at}.{key}"), why.to_string());
                Template::default()
            }
        }
    };
    let series = template("series", &s.series);
    let tags: BTreeMap<String, Template> = s
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), template(&format!("tags.{k}"), v)))
        .collect();
    let literal = series.literal();
    if s.series.is_empty() || !(literal.is_empty() || is_plain_name(&literal)) {
        p.add(
            format!("{at}.series"),
            format!(
                "{:?} must be letters, digits, '-', '_', '.', '/' and {{n}} placeholders",
                s.series
            ),
        );
    }
    for key in ["protocol", "topic"] {
        if s.tags.contains_key(key) {
            p.add(format!("{at}.tags.{key}"), "is set by the agent");
        }
    }
    let timestamp = match (&s.timestamp_pointer, &s.timestamp_format) {
        (None, None) => None,
        (Some(_), None) => {
            p.add(
                format!("{at}.timestamp_format"),
                "required with timestamp_pointer (\"s\", \"ms\", \"us\" or \"rfc3339\")",
            );
            None
        }
        (None, Some(_)) => {
            p.add(
                format!("{at}.timestamp_format"),
                "given without timestamp_pointer",
            );
            None
        }
        (Some(pointer), Some(format)) => {
            check_pointer(p, &format!("{at}.timestamp_pointer"), pointer);
            let format = match format.as_str() {
                "s" => Some(TimestampFormat::Seconds),
                "ms" => Some(TimestampFormat::Millis),
                "us" => Some(TimestampFormat::Micros),
                "rfc3339" => Some(TimestampFormat::Rfc3339),
                other => {
                    p.add(format!("{at}.timestamp_format"), format!("{other:?} is not a timestamp format (\"s\", \"ms\", \"us\", \"rfc3339\")"));
                    None
                }
            };
            format.map(|format| TimestampField {
                pointer: pointer.clone(),
                format,
            })
        }
    };
    let format_name = s.format.as_deref().unwrap_or("number");
    let format = match format_name {
        "number" => PayloadFormat::Number,
        "json" => {
            if s.values.is_empty() {
                p.add(
                    format!("{at}.values"),
                    "format \"json\" needs at least one value",
                );
            }
            let mut names = Vec::new();
            for (k, v) in s.values.iter().enumerate() {
                check_pointer(p, &format!("{at}.values[{k}].pointer"), &v.pointer);
                if !is_plain_name(&v.name) {
                    p.add(format!("{at}.values[{k}].name"), format!("{:?} must be 1..=128 characters of letters, digits, '-', '_', '.', '/'", v.name));
                }
                if names.contains(&&v.name) {
                    p.add(
                        format!("{at}.values[{k}].name"),
                        format!("{:?} is used twice", v.name),
                    );
                }
                names.push(&v.name);
            }
            PayloadFormat::Json {
                values: s
                    .values
                    .iter()
                    .map(|v| JsonValue {
                        pointer: v.pointer.clone(),
                        name: v.name.clone(),
                        unit: v.unit.clone(),
                    })
                    .collect(),
                timestamp,
            }
        }
        "json-object" => PayloadFormat::JsonObject { timestamp },
        "sparkplug" => {
            if !s.topic.starts_with("spBv1.0/") && s.topic != "#" {
                p.add(
                    format!("{at}.topic"),
                    format!("{:?}: Sparkplug B topics start with \"spBv1.0/\", for example \"spBv1.0/plant1/#\"", s.topic),
                );
            }
            // spBv1.0/<group>/<type>/<edge node>: a node message has 4 levels.
            if series.max_level() > 4 {
                p.add(
                    format!("{at}.series"),
                    format!("{{{}}}: a Sparkplug node topic has 4 levels (spBv1.0/<group>/<type>/<edge node>); the device and metric are appended to the name", series.max_level()),
                );
            }
            for key in ["timestamp_pointer", "timestamp_format"] {
                let given = match key {
                    "timestamp_pointer" => s.timestamp_pointer.is_some(),
                    _ => s.timestamp_format.is_some(),
                };
                if given {
                    p.add(
                        format!("{at}.{key}"),
                        "not used with format \"sparkplug\" (metrics carry their own time)",
                    );
                }
            }
            for (k, key) in s.property_tags.iter().enumerate() {
                let reserved = [
                    "protocol",
                    "sparkplug_group",
                    "edge_node",
                    "device",
                    "topic",
                ];
                if !is_plain_name(key) || reserved.contains(&key.as_str()) {
                    p.add(
                        format!("{at}.property_tags[{k}]"),
                        format!("{key:?} cannot be a tag name (letters, digits, '-', '_', '.', '/'; not {reserved:?})"),
                    );
                }
            }
            PayloadFormat::Sparkplug {
                rebirth_requests: s.rebirth_requests.unwrap_or(false),
                property_tags: s.property_tags.clone(),
            }
        }
        other => {
            p.add(
                format!("{at}.format"),
                format!(
                    "{other:?} is not a payload format (\"number\", \"json\", \"json-object\", \"sparkplug\")"
                ),
            );
            PayloadFormat::Number
        }
    };
    if format_name != "sparkplug" && s.rebirth_requests.is_some() {
        p.add(
            format!("{at}.rebirth_requests"),
            "only used with format \"sparkplug\"",
        );
    }
    if format_name != "sparkplug" && !s.property_tags.is_empty() {
        p.add(
            format!("{at}.property_tags"),
            "only used with format \"sparkplug\"",
        );
    }
    if format_name != "json" && !s.values.is_empty() {
        p.add(format!("{at}.values"), "only used with format \"json\"");
    }
    if format_name == "number" && s.timestamp_pointer.is_some() {
        p.add(
            format!("{at}.timestamp_pointer"),
            "a \"number\" payload has no fields",
        );
    }
    (p.len() == before).then(|| Subscription {
        topic: s.topic.clone(),
        qos,
        format,
        series,
        unit: s.unit.clone(),
        tags,
        lenient: s.lenient_values.unwrap_or(true),
    })
}

fn check_pointer(p: &mut Problems, at: &str, pointer: &str) {
    if !pointer.starts_with('/') {
        p.add(
            at,
            format!(
                "{pointer:?} is not a JSON pointer (it starts with '/', for example \"/temp\")"
            ),
        );
    }
}

/// The rule of `check_name`, as a yes/no for names made at run time.
pub fn is_plain_name(name: &str) -> bool {
    let mut problems = Problems::default();
    super::check_name(&mut problems, "", name);
    problems.is_empty()
}

#[cfg(test)]
#[path = "mqtt_tests.rs"]
mod tests;
