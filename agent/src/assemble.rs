//! How the config becomes sources and series: the Modbus links (one per
//! TCP device, one per serial line), each point's series name and tags, and
//! the series known before any reading arrives.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::{self, AgentConfig};
use crate::reading::SeriesInfo;
use crate::source::modbus::{LinkDevice, ModbusLink};
use crate::stats::AgentStats;

/// The Modbus links to poll: one per TCP device, one per serial line with
/// all the devices on it. Each device's points become series named
/// `<device>.<point>`, tagged with the gateway's and the device's tags plus
/// `device` and `protocol`; the devices' first polls are staggered over
/// the agent's whole device list.
pub fn modbus_links(config: &AgentConfig, stats: &Arc<AgentStats>) -> Vec<ModbusLink> {
    let n = config.modbus.len();
    let mut links: Vec<ModbusLink> = Vec::new();
    for (k, d) in config.modbus.iter().enumerate() {
        let series = device_series(config, d);
        let device = LinkDevice {
            device: d.clone(),
            series,
            stagger: (k, n),
        };
        let shared = match &d.link {
            config::Link::Serial(_) => links.iter_mut().find(|l| l.link == d.link),
            config::Link::Tcp(_) => None,
        };
        match shared {
            Some(link) => link.devices.push(device),
            None => links.push(ModbusLink {
                link: d.link.clone(),
                devices: vec![device],
                stats: stats.clone(),
            }),
        }
    }
    links
}

/// The series of a Modbus device's points: `<device>.<point>`, tagged with
/// the gateway's and the device's tags plus `device` and `protocol`.
pub(crate) fn device_series(
    config: &AgentConfig,
    d: &config::ModbusDevice,
) -> Vec<Arc<SeriesInfo>> {
    d.points
        .iter()
        .map(|p| {
            Arc::new(SeriesInfo {
                name: format!("{}.{}", d.name, p.name),
                unit: p.unit.clone(),
                tags: with_tags(
                    &config.tags,
                    &d.tags,
                    [("device", d.name.as_str()), ("protocol", d.link.protocol())],
                ),
            })
        })
        .collect()
}

/// Metadata of the series known from the config (Modbus points and
/// simulated signals), by name; MQTT series are named by their messages.
pub(crate) fn known_series(config: &AgentConfig) -> HashMap<String, Arc<SeriesInfo>> {
    let mut known: HashMap<String, Arc<SeriesInfo>> = config
        .modbus
        .iter()
        .flat_map(|d| device_series(config, d))
        .map(|s| (s.name.clone(), s))
        .collect();
    for signal in &config.simulated {
        known.insert(
            signal.name.clone(),
            Arc::new(SeriesInfo {
                name: signal.name.clone(),
                unit: signal.unit.clone(),
                tags: with_tags(&config.tags, &BTreeMap::new(), [("protocol", "simulated")]),
            }),
        );
    }
    known
}

pub(crate) fn with_tags<const N: usize>(
    gateway: &BTreeMap<String, String>,
    device: &BTreeMap<String, String>,
    extra: [(&str, &str); N],
) -> BTreeMap<String, String> {
    let mut tags = gateway.clone();
    tags.extend(device.iter().map(|(k, v)| (k.clone(), v.clone())));
    tags.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    tags
}
