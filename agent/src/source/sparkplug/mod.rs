//! Sparkplug B (Eclipse Sparkplug 3.0) on a plant's MQTT broker: the
//! payload ([`proto`]), the topic namespace ([`topic`]) and what a host
//! application keeps of the edge nodes ([`session`]: births, aliases, seq,
//! bdSeq, deaths), each pure. The MQTT connection that feeds them is not
//! here yet.

pub mod proto;
pub mod session;
pub mod topic;
