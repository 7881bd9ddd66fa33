//! Sparkplug B (Eclipse Sparkplug 3.0) on a plant's MQTT broker: the
//! payload ([`proto`]), the topic namespace ([`topic`]) and what a host
//! application keeps of the edge nodes ([`session`]: births, aliases, seq,
//! bdSeq, deaths), each pure; [`Reader`] turns their outcome into named
//! readings for an `[[mqtt.subscriptions]]` with `format = "sparkplug"`.
//! The MQTT source (`source::mqtt`) feeds it and sends the rebirth requests.
//!
//! Naming: `<series>.<metric>` for an edge node's metrics and
//! `<series>.<device>.<metric>` for a device's, where `<series>` is the
//! subscription's template over the topic's levels (`{2}` the group, `{4}`
//! the edge node) and characters a series name cannot hold (a space, `:`)
//! become `_`. Tags: the gateway's and the subscription's, `protocol =
//! "sparkplug"`, `sparkplug_group`, `edge_node` and, for device metrics,
//! `device`, and the metric properties the subscription's `property_tags`
//! names, as the last birth gave them. The unit is the birth's `engUnit`
//! property, else the subscription's `unit`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;

use self::proto::{Metric, MetricValue, Payload};
use self::session::{Host, NodeId, Outcome, Value};
use crate::config::mqtt::{is_plain_name, Subscription};
use crate::reading::{Quality, Reading, SeriesInfo};
use crate::source::mqtt::payload::Malformed;

pub mod proto;
pub mod session;
pub mod topic;

/// One rebirth request per edge node at most this often.
pub const REBIRTH_INTERVAL: Duration = Duration::from_secs(10);

/// Series metadata cached at most (then the cache starts again).
const SERIES_CACHE_MAX: usize = 10_000;

/// The readings of one message and what the session said about it.
#[derive(Debug)]
pub struct Read {
    pub readings: Vec<Reading>,
    pub outcome: Outcome,
}

/// The Sparkplug state of one broker connection.
#[derive(Debug)]
pub struct Reader {
    host: Host,
    cache: HashMap<String, Arc<SeriesInfo>>,
    /// The series each (node, device, metric) was last given, for the bad
    /// readings of a lost session; filled when a series is first named.
    named: HashMap<(NodeId, Option<String>, String), Arc<SeriesInfo>>,
}

impl Default for Reader {
    fn default() -> Reader {
        Reader {
            host: Host::new(REBIRTH_INTERVAL),
            cache: HashMap::new(),
            named: HashMap::new(),
        }
    }
}

impl Reader {
    /// Read one message of `sub` that arrived on `topic` at `now_us`.
    pub fn read(
        &mut self,
        sub: &Subscription,
        gateway_tags: &BTreeMap<String, String>,
        topic: &str,
        payload: &[u8],
        now_us: i64,
    ) -> Result<Read, Malformed> {
        let parsed = topic::parse(topic).map_err(|e| Malformed::NotSparkplug {
            error: e.to_string(),
        })?;
        let decoded = Payload::decode(payload).map_err(|e| Malformed::NotSparkplug {
            error: format!("payload is not a Sparkplug B protobuf: {e}"),
        })?;
        let outcome = self.host.on_message(&parsed, &decoded, now_us / 1000);
        // A birth may bring other properties: names and tags are made again.
        if matches!(parsed.kind, topic::Kind::NBirth | topic::Kind::DBirth) {
            self.cache.clear();
        }
        let property_tags: &[String] = match &sub.format {
            crate::config::mqtt::PayloadFormat::Sparkplug { property_tags, .. } => property_tags,
            _ => &[],
        };
        let node = NodeId {
            group: parsed.group.to_string(),
            node: parsed.node.to_string(),
        };
        let levels: Vec<&str> = topic.split('/').collect();
        let base = sub
            .series
            .expand(&levels)
            .map_err(|level| Malformed::MissingLevel { level })?;
        if self.cache.len() >= SERIES_CACHE_MAX {
            self.cache.clear();
        }
        if self.named.len() >= SERIES_CACHE_MAX {
            self.named.clear();
        }
        let mut readings = Vec::with_capacity(outcome.samples.len());
        for s in &outcome.samples {
            let mut name = base.clone();
            if let Some(device) = &s.device {
                name.push('.');
                name.push_str(&plain(device));
            }
            name.push('.');
            name.push_str(&plain(&s.metric));
            if !is_plain_name(&name) {
                return Err(Malformed::BadSeriesName { name });
            }
            let info = match self.cache.get(&name) {
                Some(info) => info.clone(),
                None => {
                    let mut tags = gateway_tags.clone();
                    for (k, v) in &sub.tags {
                        let v = v
                            .expand(&levels)
                            .map_err(|level| Malformed::MissingLevel { level })?;
                        tags.insert(k.clone(), v);
                    }
                    tags.insert("protocol".into(), "sparkplug".into());
                    tags.insert("sparkplug_group".into(), parsed.group.to_string());
                    tags.insert("edge_node".into(), parsed.node.to_string());
                    if let Some(device) = &s.device {
                        tags.insert("device".into(), device.clone());
                    }
                    if !property_tags.is_empty() {
                        let def = self.host.metric(&node, s.device.as_deref(), &s.metric);
                        for (key, value) in def.into_iter().flat_map(|d| &d.properties) {
                            if property_tags.contains(key) {
                                tags.insert(key.clone(), value.clone());
                            }
                        }
                    }
                    let info = Arc::new(SeriesInfo {
                        name: name.clone(),
                        unit: s.unit.clone().unwrap_or_else(|| sub.unit.clone()),
                        tags,
                    });
                    self.cache.insert(name, info.clone());
                    let key = (node.clone(), s.device.clone(), s.metric.clone());
                    self.named.insert(key, info.clone());
                    info
                }
            };
            let (value, quality) = match s.value {
                Value::Number(v) => (v, Quality::Good),
                Value::Null | Value::Dead => (f64::NAN, Quality::Bad),
            };
            readings.push(Reading {
                series: info,
                ts_us: s.ts_ms.saturating_mul(1000),
                value,
                quality,
            });
        }
        Ok(Read { readings, outcome })
    }
}

impl Reader {
    /// The agent's connection to the broker is lost: a bad reading (NaN, at
    /// `now_us`) for every metric the births defined, under the series it
    /// last had ([`Host::lose_session`]).
    pub fn lose_session(&mut self, now_us: i64) -> Vec<Reading> {
        self.host
            .lose_session(now_us / 1000)
            .into_iter()
            .filter_map(|(node, s)| {
                let info = self.named.get(&(node, s.device, s.metric))?;
                Some(Reading {
                    series: info.clone(),
                    ts_us: now_us,
                    value: f64::NAN,
                    quality: Quality::Bad,
                })
            })
            .collect()
    }
}

/// A metric or device name as a series name part: characters outside
/// letters, digits, `-`, `_`, `.` and `/` become `_`.
fn plain(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The NCMD topic and payload that ask `node` for a rebirth.
pub fn rebirth_request(node: &NodeId, now_ms: u64) -> (String, Vec<u8>) {
    let payload = Payload {
        timestamp: Some(now_ms),
        metrics: vec![Metric {
            name: Some("Node Control/Rebirth".into()),
            timestamp: Some(now_ms),
            datatype: Some(11),
            value: Some(MetricValue::Boolean(true)),
            ..Default::default()
        }],
        ..Default::default()
    };
    (
        format!("spBv1.0/{}/NCMD/{}", node.group, node.node),
        payload.encode_to_vec(),
    )
}

#[cfg(test)]
mod tests;
