//! The `[[modbus]]` part of the agent configuration: the raw sections as
//! written and their validation into [`ModbusDevice`] and [`ModbusPoint`].
//!
//! Not for talking to devices: the tables, types and byte orders are
//! defined beside the Modbus source (`source::modbus::types`, re-exported
//! here) and what they mean on the wire is implemented there. Invariants after
//! validation: every point fits in the address space (`register + width - 1
//! <= 65535`), its type can be read from its table, a `bit` point has
//! `bit <= 15`, and no point is wider than the device's `max_read`.
//!
//! A section may name a device profile (`config::profile`): its points come
//! first, in the profile's order, an inline point with the same name takes
//! the place of the profile's, and the other inline points follow. Each
//! problem is named where the value was written: `modbus[0].points[1]…` for
//! an inline point, `<profile file>: points[3]…` for one from the profile.

use crate::config::issue::Problems;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::profile::{self, Profile, Profiles};
use super::{check_name, ms};
pub use crate::source::modbus::types::{frame_gap, ByteOrder, DataType, Table};
use point::{parse_order, validate_point};
pub(super) use serial::{check_serial_units, validate_serial_lines};
pub use serial::{Parity, RawSerialLine, SerialLine};

mod point;
mod serial;

/// The shortest poll interval accepted, in milliseconds: below it a typo
/// (`poll_interval_ms = 0`) would poll a device as fast as it answers.
pub const MIN_POLL_MS: u64 = 20;

/// `[[modbus]]`: one Modbus device (one unit id), reached over TCP
/// (`address`) or over a serial line (`serial`, naming a `[serial.<name>]`
/// section). To poll several unit ids behind one TCP address (a serial
/// gateway), write one section per unit with the same address: each section
/// opens its own TCP connection, so check how many connections the gateway
/// accepts. Several sections may name the same serial line: they share it,
/// one request at a time.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModbusDevice {
    /// Device name; series are named `"<device>.<point>"`.
    pub name: String,
    /// Modbus TCP: host:port of the device or gateway, with a numeric IP (for example "192.168.1.20:502"). Give either address or serial.
    pub address: Option<String>,
    /// Modbus RTU: the name of the `[serial.<name>]` line the device hangs on (for example serial = "rs485-1"). Give either address or serial.
    pub serial: Option<String>,
    /// Device profile to take points and defaults from: the file `"<profiles_dir>/<name>.toml"`, for example profile = "energy-meter-sdm630". The section's own keys override the profile's; its points are added to the profile's, and an inline point with the same name as a profile point replaces it.
    pub profile: Option<String>,
    /// Modbus unit id (slave id), 0..=247 (default 1).
    pub unit: Option<u8>,
    /// Time between polls in milliseconds, for points without a `group` (default 1000; at least 20, so a typo cannot flood a PLC).
    pub poll_interval_ms: Option<u64>,
    /// Poll groups: name = interval in milliseconds, for points polled faster or slower than poll_interval_ms, for example poll_groups = { fast = 200, slow = 60000 }. A point joins one with `group`; the section's groups are added to the profile's and override one of the same name.
    #[serde(default)]
    pub poll_groups: BTreeMap<String, u64>,
    /// How long one request may take before it counts as failed (default 1000). Over TCP the connection is then dropped; on a serial line the line is flushed, so a late reply is never taken for the next one.
    pub timeout_ms: Option<u64>,
    /// How often a failed request (timeout, broken reply, CRC error) is repeated at once before the device counts as down and is retried with backoff (default 1).
    pub retries: Option<u32>,
    /// Byte and word order of the device's values: "ABCD" (big-endian, default), "CDAB" (word swap), "BADC" (byte swap) or "DCBA" (both); a point's `byte_order` overrides it.
    pub byte_order: Option<String>,
    /// Also read across gaps of up to this many unmapped addresses to save requests (default 0: only adjacent points share a request, because reading an address the device does not have fails the whole request).
    pub max_gap: Option<u16>,
    /// Most registers, coils or inputs one request may ask for; lower it for a device that rejects long reads (default and upper limit 125 registers, 2000 coils or inputs).
    pub max_read: Option<u16>,
    /// Tags added to every series of this device (for example asset = "press-3").
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Values to read; with a profile, added to the profile's points.
    #[serde(default)]
    pub points: Vec<RawPoint>,
}

/// `[[modbus.points]]`: one value read from one of the device's tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPoint {
    /// Point name, unique within the device.
    pub name: String,
    /// Where the value lives: "holding" (holding registers, function 3, default), "input" (input registers, 4), "coil" (coils, 1) or "discrete" (discrete inputs, 2).
    pub table: Option<String>,
    /// Address of the first register, or of the coil or input, 0..=65535 (protocol address, not 4xxxx notation).
    pub register: u32,
    /// Data type: "bool" (coil or discrete input; the default there), "bit" (one bit of a register, see `bit`), "u16", "i16" (one register), "u32", "i32", "f32" (two registers), "u64", "i64", "f64" (four registers; integers beyond 2^53 lose precision).
    #[serde(rename = "type")]
    pub data_type: Option<String>,
    /// For type "bit": which bit of the register, 0 (least significant) ..= 15; byte_order does not apply.
    pub bit: Option<u32>,
    /// Byte and word order of this point, overriding the device's byte_order. For four registers, "CDAB" reverses the register order and "BADC" swaps the bytes in each register; on one register only the byte swap matters.
    pub byte_order: Option<String>,
    /// The value is raw * scale + offset (default scale 1).
    pub scale: Option<f64>,
    /// The value is raw * scale + offset (default offset 0).
    pub offset: Option<f64>,
    /// Engineering unit, for example "degC".
    #[serde(default)]
    pub unit: String,
    /// Poll group of the point: a name from the device's poll_groups (default: polled every poll_interval_ms).
    pub group: Option<String>,
}

/// How a device is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Modbus TCP to this address.
    Tcp(SocketAddr),
    /// Modbus RTU on this serial line.
    Serial(SerialLine),
}

impl Link {
    /// Protocol tag of the device's series: "modbus-tcp" or "modbus-rtu".
    pub fn protocol(&self) -> &'static str {
        match self {
            Link::Tcp(_) => "modbus-tcp",
            Link::Serial(_) => "modbus-rtu",
        }
    }
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Tcp(a) => write!(f, "{a}"),
            Link::Serial(s) => write!(f, "{} ({})", s.device, s.name),
        }
    }
}

/// A set of points polled at one interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollGroup {
    /// "default" for the points without a `group`, else the poll_groups key.
    pub name: String,
    pub interval: Duration,
}

#[derive(Debug, Clone)]
pub struct ModbusDevice {
    pub name: String,
    pub link: Link,
    pub unit: u8,
    /// Poll groups; `groups[0]` is the default one (poll_interval_ms), and
    /// [`ModbusPoint::group`] indexes this list.
    pub groups: Vec<PollGroup>,
    pub timeout: Duration,
    /// Immediate repeats of a failed request.
    pub retries: u32,
    pub max_gap: u16,
    pub max_read: Option<u16>,
    pub tags: BTreeMap<String, String>,
    pub points: Vec<ModbusPoint>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModbusPoint {
    pub name: String,
    pub table: Table,
    /// First address of the point in its table.
    pub register: u16,
    pub data_type: DataType,
    pub byte_order: ByteOrder,
    pub scale: f64,
    pub offset: f64,
    pub unit: String,
    /// Index into [`ModbusDevice::groups`]; 0 is the default group.
    pub group: usize,
}

impl ModbusPoint {
    /// A point read as the registers give it: unnamed, scale 1, offset 0,
    /// no unit, default poll group. For the probe and for tests.
    pub fn raw(table: Table, register: u16, data_type: DataType, byte_order: ByteOrder) -> Self {
        ModbusPoint {
            name: String::new(),
            table,
            register,
            data_type,
            byte_order,
            scale: 1.0,
            offset: 0.0,
            unit: String::new(),
            group: 0,
        }
    }
}

impl ModbusDevice {
    /// The interval of the default poll group.
    pub fn poll_interval(&self) -> Duration {
        self.groups[0].interval
    }
}

pub(super) fn validate_device(
    p: &mut Problems,
    i: usize,
    d: &RawModbusDevice,
    profiles: &Profiles,
    lines: &BTreeMap<String, SerialLine>,
) -> Option<ModbusDevice> {
    let at = format!("modbus[{i}]");
    check_name(p, &format!("{at}.name"), &d.name);
    let link = match (&d.address, &d.serial) {
        (Some(address), None) => match address.parse::<SocketAddr>() {
            Ok(a) => Some(Link::Tcp(a)),
            Err(_) => {
                p.add(format!("{at}.address"), format!("{address:?} is not host:port with a numeric IP (for example \"192.168.1.20:502\")"));
                None
            }
        },
        (None, Some(name)) => match lines.get(name) {
            Some(line) => Some(Link::Serial(line.clone())),
            None => {
                let known: Vec<&str> = lines.keys().map(String::as_str).collect();
                p.add(
                    format!("{at}.serial"),
                    format!("no [serial.{name}] section (defined: {})", listed(&known)),
                );
                None
            }
        },
        (Some(_), Some(_)) => {
            p.add(
                &at,
                "give either address (Modbus TCP) or serial (Modbus RTU), not both",
            );
            None
        }
        (None, None) => {
            p.add(&at, "missing address (Modbus TCP, \"host:port\") or serial (Modbus RTU, the name of a [serial.<name>] section)");
            None
        }
    };
    let unit = d.unit.unwrap_or(1);
    if unit > 247 {
        p.add(
            format!("{at}.unit"),
            format!("{unit} is not a unit id (0..=247)"),
        );
    }
    let profile = d.profile.as_deref().and_then(|name| {
        profiles
            .get(&format!("{at}.profile"), name)
            .map_err(|e| p.push(e))
            .ok()
    });
    // The section's own key, else the profile's, named where it was written.
    let own = |key: &str| format!("{at}.{key}");
    let theirs = |pr: &Profile, key: &str| format!("{}: {key}", pr.file);
    let max_read = d
        .max_read
        .map(|n| (own("max_read"), n))
        .or_else(|| profile.and_then(|pr| pr.raw.max_read.map(|n| (theirs(pr, "max_read"), n))));
    if let Some((key, n)) = &max_read {
        if !(1..=2000).contains(n) {
            p.add(key, format!("{n} is out of range (1..=2000)"));
        }
    }
    let max_read = max_read.map(|(_, n)| n);
    let max_gap = d.max_gap.or(profile.and_then(|pr| pr.raw.max_gap));
    let device_order = match (&d.byte_order, profile) {
        (Some(s), _) => parse_order(p, &own("byte_order"), Some(s)),
        (None, Some(pr)) => parse_order(p, &theirs(pr, "byte_order"), pr.raw.byte_order.as_deref()),
        (None, None) => None,
    }
    .unwrap_or_default();
    let default_ms = d.poll_interval_ms.unwrap_or(1000);
    if default_ms < MIN_POLL_MS {
        p.add(
            own("poll_interval_ms"),
            format!("{default_ms} ms would poll the device as fast as it answers; use at least {MIN_POLL_MS}"),
        );
    }
    let mut groups = vec![PollGroup {
        name: "default".into(),
        interval: ms(default_ms.max(MIN_POLL_MS)),
    }];
    let profile_groups = profile.map(|pr| (pr, &pr.raw.poll_groups));
    let mut named: BTreeMap<&str, (String, u64)> = BTreeMap::new();
    if let Some((pr, g)) = profile_groups {
        for (name, &interval) in g {
            named.insert(name, (theirs(pr, &format!("poll_groups.{name}")), interval));
        }
    }
    for (name, &interval) in &d.poll_groups {
        named.insert(name, (own(&format!("poll_groups.{name}")), interval));
    }
    for (name, (key, interval)) in named {
        check_name(p, &key, name);
        if name == "default" {
            p.add(
                &key,
                "\"default\" is the group of points without a group; use poll_interval_ms",
            );
        }
        if interval < MIN_POLL_MS {
            p.add(&key, format!("{interval} ms would poll the device as fast as it answers; use at least {MIN_POLL_MS}"));
        }
        groups.push(PollGroup {
            name: name.to_string(),
            interval: ms(interval.max(MIN_POLL_MS)),
        });
    }
    let points = profile::merged_points(&at, d, profile);
    if points.is_empty() && (d.profile.is_none() || profile.is_some()) {
        p.add(format!("{at}.points"), "a device needs at least one point");
    }
    let points = points
        .iter()
        .filter_map(|(key, pt)| validate_point(p, key, pt, max_read, device_order, &groups))
        .collect();
    let retries = d.retries.unwrap_or(1);
    if retries > 10 {
        p.add(
            format!("{at}.retries"),
            format!("{retries} is out of range (0..=10)"),
        );
    }
    Some(ModbusDevice {
        name: d.name.clone(),
        link: link?,
        unit,
        groups,
        timeout: ms(d.timeout_ms.unwrap_or(1000).max(1)),
        retries,
        max_gap: max_gap.unwrap_or(0),
        max_read,
        tags: d.tags.clone(),
        points,
    })
}

/// Names for an error message: comma-separated, or "none".
fn listed(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests;

/// Points whose register looks like the 1-based 4xxxx (holding) or 3xxxx
/// (input) notation of device manuals, where the agent wants the 0-based
/// protocol address: one warning each. Warnings, not errors: such an
/// address can be real.
pub fn notation_warnings(devices: &[ModbusDevice]) -> Vec<String> {
    let mut w = Vec::new();
    for d in devices {
        for pt in &d.points {
            let base = match pt.table {
                Table::Holding if (40001..=49999).contains(&pt.register) => 40001,
                Table::Input if (30001..=39999).contains(&pt.register) => 30001,
                _ => continue,
            };
            w.push(format!(
                "modbus device {:?}, point {:?}: register {} looks like the {}xxxx notation of device manuals; \
                 the agent wants the protocol address, {} here (`edge-agent probe modbus` shows what is there). \
                 If {} is the real address, ignore this",
                d.name,
                pt.name,
                pt.register,
                base / 10000,
                pt.register - base,
                pt.register
            ));
        }
    }
    w
}
