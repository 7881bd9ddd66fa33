//! What a Sparkplug B host application knows of the edge nodes on a broker,
//! as a pure state machine: one decoded message in (topic, payload, the
//! time), the readings it yields and what was wrong with it out.
//!
//! Decided here, once (Eclipse Sparkplug 3.0):
//! - **Births** define the metrics: an NBIRTH those of the edge node (and
//!   forgets its devices, whose DBIRTHs follow), a DBIRTH those of one
//!   device. Each metric's name, alias, datatype and engineering unit (a
//!   property named `engUnit`, `EngUnit` or `engineering_units`) are kept.
//!   The values a birth carries are readings too.
//! - **Data** (NDATA, DDATA) is resolved through the last birth, by alias or
//!   by name. A metric that birth does not define, or data before any birth,
//!   is counted ([`Problem::UnknownMetric`], [`Problem::NoBirth`]) and asks
//!   for a rebirth; it is never guessed.
//! - **seq** runs 0 to 255 per edge node over all its messages but NDEATH,
//!   starting at 0 with the NBIRTH. Any other value than the next one is a
//!   [`Problem::SeqGap`]: counted, a rebirth asked for, and the message is
//!   still read (its values are real; the gap says some were lost).
//! - **bdSeq**: an NDEATH names the birth it ends by the `bdSeq` metric. One
//!   that does not match the current NBIRTH's is the late will of an older
//!   session: counted ([`Problem::StaleDeath`]), not applied, and a rebirth
//!   asked for (the host may have missed a birth).
//! - **Death**: an NDEATH (matching) marks every metric of the node and of
//!   its devices bad, a DDEATH those of one device: one reading each, value
//!   NaN, quality bad, so a dead PLC gateway is visible downstream and a
//!   `bad quality` rule fires. An NDEATH's readings carry its arrival time
//!   (it is usually the will, stamped when the node connected), a DDEATH's
//!   its own. A node that died needs a new NBIRTH; its
//!   data until then is [`Problem::NoBirth`].
//! - **Values**: every scalar type becomes a number: Int8/16/32 from the
//!   low bits in two's complement, Int64 likewise from 64 bits, unsigned
//!   types as they are (UInt64 above 2^53 rounds to the nearest f64),
//!   Boolean as 0 or 1, DateTime as its milliseconds. `is_null` is a reading
//!   of quality bad. String, Text and UUID metrics are not carried (the
//!   product's readings are numbers), DataSet, Template, Bytes, File and
//!   array metrics are unsupported: each is named in [`Outcome::skipped`]
//!   once per birth, not per message.
//! - **Time**: a metric's own timestamp, else the payload's, else `now`.
//!   `is_historical` metrics are readings with their own time like others.
//! - Node Control metrics (`Node Control/...`), `bdSeq` and properties are
//!   metadata, not readings.
//! - **A lost session** (the agent's own connection to the broker,
//!   [`Host::lose_session`]) marks every metric of every node bad, as a
//!   death would: nothing the host last heard is known to be true any more.
//! - **Rebirth requests** are rate-limited per node to one per
//!   `rebirth_interval`; whether one is sent (NCMD `Node Control/Rebirth`)
//!   is the caller's decision (the config may forbid publishing).

use std::collections::BTreeMap;

use super::proto::{DataType, Metric, MetricValue, Payload, PropertyKind};
use super::topic::{Kind, Topic};

/// An edge node: group id and edge node id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    pub group: String,
    pub node: String,
}

/// A metric as a birth defined it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDef {
    pub name: String,
    pub datatype: DataType,
    /// The engineering unit from the metric's properties, if any.
    pub unit: Option<String>,
    /// The metric's scalar properties (key, value as text), for tags.
    pub properties: Vec<(String, String)>,
}

/// The value a reading carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Number(f64),
    /// `is_null` set: no value, quality bad.
    Null,
    /// The node or device died: the last value is no longer true.
    Dead,
}

/// One reading out of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// `None` for a metric of the edge node itself.
    pub device: Option<String>,
    pub metric: String,
    pub unit: Option<String>,
    pub value: Value,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: i64,
    pub historical: bool,
}

/// What was wrong with a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// seq was not the next one.
    SeqGap { expected: u8, got: Option<u64> },
    /// Data or a device birth or death for a node (or device) with no
    /// current birth.
    NoBirth,
    /// A metric the birth does not define (by alias, or by name).
    UnknownMetric {
        alias: Option<u64>,
        name: Option<String>,
    },
    /// An NDEATH whose bdSeq is not the current birth's.
    StaleDeath {
        birth: Option<u64>,
        death: Option<u64>,
    },
    /// A metric with neither name nor alias, or a birth metric without a name.
    Unnamed,
    /// A message from a new edge node, or a birth of a new device, beyond
    /// [`MAX_NODES`] or [`MAX_DEVICES`]: not tracked, so a flood of made-up
    /// names cannot grow the agent's memory.
    TooMany,
}

/// Edge nodes tracked at most, per broker connection.
pub const MAX_NODES: usize = 4096;
/// Devices tracked at most per edge node.
pub const MAX_DEVICES: usize = 4096;

impl Problem {
    /// A short name for metrics labels: `seq_gap`, `no_birth`,
    /// `unknown_metric`, `stale_death`, `unnamed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Problem::SeqGap { .. } => "seq_gap",
            Problem::NoBirth => "no_birth",
            Problem::UnknownMetric { .. } => "unknown_metric",
            Problem::StaleDeath { .. } => "stale_death",
            Problem::Unnamed => "unnamed",
            Problem::TooMany => "too_many",
        }
    }

    /// Whether it makes the host ask the node for a rebirth (a stale
    /// death too: the host may have missed the birth that followed it).
    fn wants_rebirth(&self) -> bool {
        !matches!(self, Problem::Unnamed | Problem::TooMany)
    }
}

/// A metric that is not turned into readings, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub device: Option<String>,
    pub metric: String,
    /// The datatype's name ("String", "DataSet", ...).
    pub datatype: String,
}

/// What one message gave.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    pub samples: Vec<Sample>,
    pub problems: Vec<Problem>,
    /// Metrics of a birth that are not carried (once per birth).
    pub skipped: Vec<Skipped>,
    /// Ask this node for a rebirth now (rate limit applied).
    pub rebirth: Option<NodeId>,
}

#[derive(Debug, Default)]
struct Births {
    by_alias: BTreeMap<u64, MetricDef>,
    by_name: BTreeMap<String, MetricDef>,
}

impl Births {
    fn resolve(&self, m: &Metric) -> Option<&MetricDef> {
        match (&m.name, m.alias) {
            (Some(name), _) => self.by_name.get(name),
            (None, Some(alias)) => self.by_alias.get(&alias),
            (None, None) => None,
        }
    }
}

#[derive(Debug, Default)]
struct Node {
    /// `None` until an NBIRTH, and again after the node's death.
    birth: Option<Births>,
    bd_seq: Option<u64>,
    /// The seq the next message must carry.
    next_seq: u8,
    devices: BTreeMap<String, Births>,
    last_rebirth_ms: Option<i64>,
}

/// Every edge node seen on the broker.
#[derive(Debug)]
pub struct Host {
    nodes: BTreeMap<NodeId, Node>,
    rebirth_interval_ms: i64,
}

impl Host {
    pub fn new(rebirth_interval: std::time::Duration) -> Host {
        Host {
            nodes: BTreeMap::new(),
            rebirth_interval_ms: rebirth_interval.as_millis() as i64,
        }
    }

    /// Read one message. `now_ms` is the time it arrived.
    pub fn on_message(&mut self, topic: &Topic<'_>, payload: &Payload, now_ms: i64) -> Outcome {
        let mut out = Outcome::default();
        if matches!(topic.kind, Kind::State | Kind::NCmd | Kind::DCmd) {
            return out;
        }
        let id = NodeId {
            group: topic.group.to_string(),
            node: topic.node.to_string(),
        };
        if !self.nodes.contains_key(&id) && self.nodes.len() >= MAX_NODES {
            out.problems.push(Problem::TooMany);
            return out;
        }
        let node = self.nodes.entry(id.clone()).or_default();
        let sent_ms = payload.timestamp.map_or(now_ms, |t| t as i64);
        let device = topic.device.map(str::to_string);
        match topic.kind {
            Kind::NBirth => {
                node.bd_seq = find_bd_seq(payload);
                node.devices.clear();
                node.next_seq = 0;
                check_seq(node, payload, &mut out);
                let births = birth(None, payload, sent_ms, &mut out);
                node.birth = Some(births);
            }
            Kind::NDeath => {
                let death = find_bd_seq(payload);
                if node.birth.is_some() && death.is_some() && death != node.bd_seq {
                    out.problems.push(Problem::StaleDeath {
                        birth: node.bd_seq,
                        death,
                    });
                } else if let Some(births) = node.birth.take() {
                    // The arrival time: an NDEATH is usually the will the
                    // node left when it connected, stamped back then.
                    dead(None, &births, now_ms, &mut out);
                    for (name, births) in std::mem::take(&mut node.devices) {
                        dead(Some(name), &births, now_ms, &mut out);
                    }
                }
            }
            Kind::DBirth | Kind::DDeath | Kind::NData | Kind::DData => {
                if node.birth.is_none() {
                    out.problems.push(Problem::NoBirth);
                } else {
                    check_seq(node, payload, &mut out);
                    let name = device.clone().unwrap_or_default();
                    match topic.kind {
                        Kind::DBirth
                            if !node.devices.contains_key(&name)
                                && node.devices.len() >= MAX_DEVICES =>
                        {
                            out.problems.push(Problem::TooMany);
                        }
                        Kind::DBirth => {
                            let births = birth(device, payload, sent_ms, &mut out);
                            node.devices.insert(name, births);
                        }
                        Kind::DDeath => match node.devices.remove(&name) {
                            Some(births) => dead(device, &births, sent_ms, &mut out),
                            None => out.problems.push(Problem::NoBirth),
                        },
                        Kind::NData => {
                            let births = node.birth.as_ref().expect("checked above");
                            data(None, births, payload, sent_ms, &mut out);
                        }
                        _ => match node.devices.get(&name) {
                            Some(births) => data(device, births, payload, sent_ms, &mut out),
                            None => out.problems.push(Problem::NoBirth),
                        },
                    }
                }
            }
            Kind::State | Kind::NCmd | Kind::DCmd => unreachable!("returned above"),
        }
        if out.problems.iter().any(Problem::wants_rebirth) {
            let due = node
                .last_rebirth_ms
                .is_none_or(|t| now_ms - t >= self.rebirth_interval_ms);
            if due {
                node.last_rebirth_ms = Some(now_ms);
                out.rebirth = Some(id);
            }
        }
        out
    }

    /// The host's own connection to the broker is lost: every metric of
    /// every node and device is no longer known, so each gets a bad reading
    /// at `now_ms`, and every node needs a new birth (its data until then is
    /// [`Problem::NoBirth`], which asks for one).
    pub fn lose_session(&mut self, now_ms: i64) -> Vec<(NodeId, Sample)> {
        let mut lost = Vec::new();
        for (id, node) in &mut self.nodes {
            let mut out = Outcome::default();
            if let Some(births) = node.birth.take() {
                dead(None, &births, now_ms, &mut out);
            }
            for (name, births) in std::mem::take(&mut node.devices) {
                dead(Some(name), &births, now_ms, &mut out);
            }
            lost.extend(out.samples.into_iter().map(|s| (id.clone(), s)));
        }
        lost
    }

    /// The metric `name` as the current birth of a node (`device` `None`)
    /// or one of its devices defines it.
    pub fn metric(&self, node: &NodeId, device: Option<&str>, name: &str) -> Option<&MetricDef> {
        let n = self.nodes.get(node)?;
        let births = match device {
            None => n.birth.as_ref()?,
            Some(d) => n.devices.get(d)?,
        };
        births.by_name.get(name)
    }

    /// The metrics the current births define for a node (`device` `None`)
    /// or one of its devices; `None` without a birth.
    pub fn metrics(&self, node: &NodeId, device: Option<&str>) -> Option<Vec<MetricDef>> {
        let n = self.nodes.get(node)?;
        let births = match device {
            None => n.birth.as_ref()?,
            Some(d) => n.devices.get(d)?,
        };
        Some(births.by_name.values().cloned().collect())
    }
}

fn check_seq(node: &mut Node, payload: &Payload, out: &mut Outcome) {
    let expected = node.next_seq;
    match payload.seq {
        Some(s) if s == u64::from(expected) => {}
        got => out.problems.push(Problem::SeqGap { expected, got }),
    }
    // Continue from what arrived, so one lost message is one gap.
    node.next_seq = match payload.seq {
        Some(s) if s <= 255 => (s as u8).wrapping_add(1),
        _ => expected.wrapping_add(1),
    };
}

fn find_bd_seq(payload: &Payload) -> Option<u64> {
    payload
        .metrics
        .iter()
        .find(|m| m.name.as_deref() == Some("bdSeq"))
        .and_then(|m| match m.value {
            Some(MetricValue::Long(v)) => Some(v),
            Some(MetricValue::Int(v)) => Some(u64::from(v)),
            _ => None,
        })
}

fn is_metadata(name: &str) -> bool {
    name == "bdSeq" || name.starts_with("Node Control/") || name.starts_with("Device Control/")
}

/// The metric's scalar properties as (key, text), in the birth's order.
fn properties_of(m: &Metric) -> Vec<(String, String)> {
    let Some(props) = m.properties.as_ref() else {
        return Vec::new();
    };
    props
        .keys
        .iter()
        .zip(&props.values)
        .filter(|(_, v)| v.is_null != Some(true))
        .filter_map(|(k, v)| {
            let text = match v.value.as_ref()? {
                PropertyKind::String(s) => s.clone(),
                PropertyKind::Int(i) => i.to_string(),
                PropertyKind::Long(l) => l.to_string(),
                PropertyKind::Float(f) => f.to_string(),
                PropertyKind::Double(d) => d.to_string(),
                PropertyKind::Boolean(b) => b.to_string(),
                PropertyKind::PropertySet(_) | PropertyKind::PropertySets(_) => return None,
            };
            Some((k.clone(), text))
        })
        .collect()
}

fn unit_of(properties: &[(String, String)]) -> Option<String> {
    properties
        .iter()
        .find(|(k, v)| {
            matches!(k.as_str(), "engUnit" | "EngUnit" | "engineering_units") && !v.is_empty()
        })
        .map(|(_, v)| v.clone())
}

/// Read a birth's metric table; its values are readings.
fn birth(device: Option<String>, payload: &Payload, sent_ms: i64, out: &mut Outcome) -> Births {
    let mut births = Births::default();
    for m in &payload.metrics {
        let Some(name) = m.name.clone() else {
            out.problems.push(Problem::Unnamed);
            continue;
        };
        if is_metadata(&name) {
            continue;
        }
        let properties = properties_of(m);
        let def = MetricDef {
            name: name.clone(),
            datatype: DataType::from_code(m.datatype.unwrap_or(0)),
            unit: unit_of(&properties),
            properties,
        };
        if number(def.datatype, &MetricValue::Boolean(false)).is_none() {
            out.skipped.push(Skipped {
                device: device.clone(),
                metric: name.clone(),
                datatype: def.datatype.name().into_owned(),
            });
        }
        if let Some(alias) = m.alias {
            births.by_alias.insert(alias, def.clone());
        }
        births.by_name.insert(name, def.clone());
        reading(&device, &def, m, sent_ms, out);
    }
    births
}

fn data(
    device: Option<String>,
    births: &Births,
    payload: &Payload,
    sent_ms: i64,
    out: &mut Outcome,
) {
    for m in &payload.metrics {
        if m.name.is_none() && m.alias.is_none() {
            out.problems.push(Problem::Unnamed);
            continue;
        }
        if m.name.as_deref().is_some_and(is_metadata) {
            continue;
        }
        match births.resolve(m) {
            Some(def) => reading(&device, def, m, sent_ms, out),
            None => out.problems.push(Problem::UnknownMetric {
                alias: m.alias,
                name: m.name.clone(),
            }),
        }
    }
}

fn dead(device: Option<String>, births: &Births, sent_ms: i64, out: &mut Outcome) {
    for def in births.by_name.values() {
        if number(def.datatype, &MetricValue::Boolean(false)).is_none() {
            continue;
        }
        out.samples.push(Sample {
            device: device.clone(),
            metric: def.name.clone(),
            unit: def.unit.clone(),
            value: Value::Dead,
            ts_ms: sent_ms,
            historical: false,
        });
    }
}

fn reading(device: &Option<String>, def: &MetricDef, m: &Metric, sent_ms: i64, out: &mut Outcome) {
    let datatype = m.datatype.map_or(def.datatype, DataType::from_code);
    let value = if m.is_null == Some(true) {
        if number(datatype, &MetricValue::Boolean(false)).is_none() {
            return;
        }
        Value::Null
    } else {
        match m.value.as_ref().and_then(|v| number(datatype, v)) {
            Some(v) => Value::Number(v),
            // Not carried (a string, a data set) or no value at all.
            None => return,
        }
    };
    out.samples.push(Sample {
        device: device.clone(),
        metric: def.name.clone(),
        unit: def.unit.clone(),
        value,
        ts_ms: m.timestamp.map_or(sent_ms, |t| t as i64),
        historical: m.is_historical == Some(true),
    });
}

/// The number a value of `datatype` stands for; `None` for a type the
/// product does not carry. A value field that does not fit the datatype
/// (a Double for an Int16) is read as the field it is.
fn number(datatype: DataType, v: &MetricValue) -> Option<f64> {
    use DataType as T;
    match datatype {
        T::String | T::Text | T::Uuid | T::DataSet | T::Bytes | T::File | T::Template => {
            return None
        }
        T::Other(_) => return None,
        _ => {}
    }
    Some(match (datatype, v) {
        (T::Int8, MetricValue::Int(i)) => f64::from(*i as u8 as i8),
        (T::Int16, MetricValue::Int(i)) => f64::from(*i as u16 as i16),
        (T::Int32, MetricValue::Int(i)) => f64::from(*i as i32),
        (T::Int64, MetricValue::Long(l)) => *l as i64 as f64,
        (T::Int64, MetricValue::Int(i)) => f64::from(*i as i32),
        (_, MetricValue::Int(i)) => f64::from(*i),
        (_, MetricValue::Long(l)) => *l as f64,
        (_, MetricValue::Float(f)) => f64::from(*f),
        (_, MetricValue::Double(d)) => *d,
        (_, MetricValue::Boolean(b)) => f64::from(u8::from(*b)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
