//! The `[[modbus]]` part of the agent configuration: the raw sections as
//! written and their validation into [`ModbusDevice`] and [`ModbusPoint`].
//!
//! Not for talking to devices: what a point's type, table and byte order
//! *mean* on the wire is implemented in `source::modbus`. Invariants after
//! validation: every point fits in the address space (`register + width - 1
//! <= 65535`), its type can be read from its table, a `bit` point has
//! `bit <= 15`, and no point is wider than the device's `max_read`.
//!
//! A section may name a device profile (`config::profile`): its points come
//! first, in the profile's order, an inline point with the same name takes
//! the place of the profile's, and the other inline points follow. Each
//! problem is named where the value was written: `modbus[0].points[1]…` for
//! an inline point, `<profile file>: points[3]…` for one from the profile.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::profile::{self, Profile, Profiles};
use super::{check_name, ms};

/// `[[modbus]]`: one Modbus device (one unit id), reached over TCP
/// (`address`) or over a serial line (`serial`, naming a `[serial.<name>]`
/// section). To poll several unit ids behind one TCP address (a serial
/// gateway), write one section per unit with the same address: each section
/// opens its own TCP connection, so check how many connections the gateway
/// accepts. Several sections may name the same serial line: they share it,
/// one request at a time.
/// The shortest poll interval accepted, in milliseconds: below it a typo
/// (`poll_interval_ms = 0`) would poll a device as fast as it answers.
pub const MIN_POLL_MS: u64 = 20;

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

/// `[serial.<name>]`: one serial line (an RS-485 bus) with Modbus RTU devices on it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSerialLine {
    /// Serial device, for example "/dev/ttyUSB0" or "/dev/serial/by-id/usb-FTDI_...".
    pub device: String,
    /// Baud rate (default 9600).
    pub baud: Option<u32>,
    /// Parity: "none", "even" or "odd" (default "even", the Modbus RTU default).
    pub parity: Option<String>,
    /// Data bits: 7 or 8 (default 8).
    pub data_bits: Option<u8>,
    /// Stop bits: 1 or 2 (default 1).
    pub stop_bits: Option<u8>,
    /// Silence kept on the line between two transactions, in microseconds (default: 3.5 characters at the baud rate, at least 1750).
    pub frame_gap_us: Option<u64>,
}

/// A validated serial line, shared by the devices that name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialLine {
    /// The `[serial.<name>]` key.
    pub name: String,
    pub device: String,
    pub baud: u32,
    pub parity: Parity,
    pub data_bits: u8,
    pub stop_bits: u8,
    /// Silence between the end of one transaction and the next request.
    pub frame_gap: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
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

/// The four Modbus data tables, each read with its own function code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Read coils (0x01).
    Coil,
    /// Read discrete inputs (0x02).
    Discrete,
    /// Read holding registers (0x03).
    Holding,
    /// Read input registers (0x04).
    Input,
}

impl Table {
    pub fn parse(s: &str) -> Option<Table> {
        Some(match s {
            "coil" => Table::Coil,
            "discrete" => Table::Discrete,
            "holding" => Table::Holding,
            "input" => Table::Input,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Table::Coil => "coil",
            Table::Discrete => "discrete",
            Table::Holding => "holding",
            Table::Input => "input",
        }
    }

    /// Whether the table holds single bits rather than 16-bit registers.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::Discrete)
    }

    /// Most addresses one read may ask for (Modbus application protocol).
    pub fn protocol_limit(self) -> u16 {
        if self.is_bits() {
            2000
        } else {
            125
        }
    }
}

/// How a point's registers (or bit) are turned into a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// A coil or discrete input: 1 or 0.
    Bool,
    /// One bit of a register, 0 = least significant: 1 or 0.
    Bit(u8),
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F32,
    F64,
}

impl DataType {
    fn parse(s: &str, bit: u8) -> Option<DataType> {
        Some(match s {
            "bool" => DataType::Bool,
            "bit" => DataType::Bit(bit),
            "u16" => DataType::U16,
            "i16" => DataType::I16,
            "u32" => DataType::U32,
            "i32" => DataType::I32,
            "u64" => DataType::U64,
            "i64" => DataType::I64,
            "f32" => DataType::F32,
            "f64" => DataType::F64,
            _ => return None,
        })
    }

    /// Number of addresses (registers, or coils/inputs) the type occupies.
    pub fn width(self) -> u16 {
        match self {
            DataType::Bool | DataType::Bit(_) | DataType::U16 | DataType::I16 => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
        }
    }
}

/// Byte and word order of a value spread over registers, naming the bytes
/// of a 32-bit value A (most significant) to D as they arrive on the wire.
/// For four registers the same two swaps apply: word swap reverses the
/// register order, byte swap swaps the two bytes inside each register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ByteOrder {
    /// Big-endian: most significant register first, high byte first.
    #[default]
    Abcd,
    /// Word swap: least significant register first, high byte first.
    Cdab,
    /// Byte swap: most significant register first, low byte first.
    Badc,
    /// Both (little-endian): least significant register first, low byte first.
    Dcba,
}

impl ByteOrder {
    pub fn parse(s: &str) -> Option<ByteOrder> {
        Some(match s {
            "ABCD" => ByteOrder::Abcd,
            "CDAB" => ByteOrder::Cdab,
            "BADC" => ByteOrder::Badc,
            "DCBA" => ByteOrder::Dcba,
            _ => return None,
        })
    }

    pub fn swaps_words(self) -> bool {
        matches!(self, ByteOrder::Cdab | ByteOrder::Dcba)
    }

    pub fn swaps_bytes(self) -> bool {
        matches!(self, ByteOrder::Badc | ByteOrder::Dcba)
    }
}

fn parse_order(p: &mut Vec<String>, at: &str, s: Option<&str>) -> Option<ByteOrder> {
    let s = s?;
    let order = ByteOrder::parse(s);
    if order.is_none() {
        p.push(format!(
            "{at}: {s:?} is not a byte order (ABCD, CDAB, BADC, DCBA)"
        ));
    }
    order
}

/// Validate the `[serial.<name>]` sections.
pub(super) fn validate_serial_lines<'a>(
    p: &mut Vec<String>,
    raw: impl IntoIterator<Item = (impl AsRef<str>, &'a RawSerialLine)>,
) -> BTreeMap<String, SerialLine> {
    let mut lines = BTreeMap::new();
    for (name, l) in raw {
        let name = name.as_ref().to_string();
        let at = format!("serial.{name}");
        check_name(p, &at, &name);
        if l.device.trim().is_empty() {
            p.push(format!(
                "{at}.device: must name a serial device, for example \"/dev/ttyUSB0\""
            ));
        }
        let baud = l.baud.unwrap_or(9600);
        if !(300..=4_000_000).contains(&baud) {
            p.push(format!(
                "{at}.baud: {baud} is not a baud rate (300..=4000000)"
            ));
        }
        let parity = match l.parity.as_deref().unwrap_or("even") {
            "none" => Parity::None,
            "even" => Parity::Even,
            "odd" => Parity::Odd,
            other => {
                p.push(format!(
                    "{at}.parity: {other:?} is not a parity (none, even, odd)"
                ));
                Parity::Even
            }
        };
        let data_bits = l.data_bits.unwrap_or(8);
        if !matches!(data_bits, 7 | 8) {
            p.push(format!(
                "{at}.data_bits: {data_bits} is not supported (7 or 8)"
            ));
        }
        let stop_bits = l.stop_bits.unwrap_or(1);
        if !matches!(stop_bits, 1 | 2) {
            p.push(format!(
                "{at}.stop_bits: {stop_bits} is not supported (1 or 2)"
            ));
        }
        let frame_gap = l
            .frame_gap_us
            .map(Duration::from_micros)
            .unwrap_or_else(|| frame_gap(baud.max(1)));
        lines.insert(
            name.clone(),
            SerialLine {
                name: name.clone(),
                device: l.device.clone(),
                baud,
                parity,
                data_bits,
                stop_bits,
                frame_gap,
            },
        );
    }
    lines
}

/// The silence Modbus RTU requires between frames: 3.5 character times of
/// 11 bits each, and a fixed 1750 µs above 19200 baud (Modbus over serial
/// line, 2.5.1.1).
pub fn frame_gap(baud: u32) -> Duration {
    if baud > 19_200 {
        Duration::from_micros(1750)
    } else {
        Duration::from_micros((3.5 * 11.0 * 1e6 / f64::from(baud)).ceil() as u64)
    }
}

/// Two devices on one serial line need different unit ids, and 0 (the
/// broadcast address, which never answers) cannot be polled there.
pub(super) fn check_serial_units(p: &mut Vec<String>, devices: &[(usize, &ModbusDevice)]) {
    let mut seen: BTreeMap<(&str, u8), usize> = BTreeMap::new();
    for &(i, d) in devices {
        let Link::Serial(line) = &d.link else {
            continue;
        };
        if d.unit == 0 {
            p.push(format!(
                "modbus[{i}].unit: 0 is the broadcast address, which no device answers on a serial line (1..=247)"
            ));
        }
        if let Some(first) = seen.insert((line.name.as_str(), d.unit), i) {
            p.push(format!(
                "modbus[{i}].unit: {} is already used on serial line {:?} by modbus[{first}]",
                d.unit, line.name
            ));
        }
    }
}

pub(super) fn validate_device(
    p: &mut Vec<String>,
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
                p.push(format!(
                    "{at}.address: {address:?} is not host:port with a numeric IP (for example \"192.168.1.20:502\")"
                ));
                None
            }
        },
        (None, Some(name)) => match lines.get(name) {
            Some(line) => Some(Link::Serial(line.clone())),
            None => {
                let known: Vec<&str> = lines.keys().map(String::as_str).collect();
                p.push(format!(
                    "{at}.serial: no [serial.{name}] section (defined: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
                None
            }
        },
        (Some(_), Some(_)) => {
            p.push(format!(
                "{at}: give either address (Modbus TCP) or serial (Modbus RTU), not both"
            ));
            None
        }
        (None, None) => {
            p.push(format!(
                "{at}: missing address (Modbus TCP, \"host:port\") or serial (Modbus RTU, the name of a [serial.<name>] section)"
            ));
            None
        }
    };
    let unit = d.unit.unwrap_or(1);
    if unit > 247 {
        p.push(format!("{at}.unit: {unit} is not a unit id (0..=247)"));
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
            p.push(format!("{key}: {n} is out of range (1..=2000)"));
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
        p.push(format!(
            "{}: {default_ms} ms would poll the device as fast as it answers; use at least {MIN_POLL_MS}",
            own("poll_interval_ms")
        ));
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
            p.push(format!(
                "{key}: \"default\" is the group of points without a group; use poll_interval_ms"
            ));
        }
        if interval < MIN_POLL_MS {
            p.push(format!(
                "{key}: {interval} ms would poll the device as fast as it answers; use at least {MIN_POLL_MS}"
            ));
        }
        groups.push(PollGroup {
            name: name.to_string(),
            interval: ms(interval.max(MIN_POLL_MS)),
        });
    }
    let points = profile::merged_points(&at, d, profile);
    if points.is_empty() && (d.profile.is_none() || profile.is_some()) {
        p.push(format!("{at}.points: a device needs at least one point"));
    }
    let points = points
        .iter()
        .filter_map(|(key, pt)| validate_point(p, key, pt, max_read, device_order, &groups))
        .collect();
    let retries = d.retries.unwrap_or(1);
    if retries > 10 {
        p.push(format!("{at}.retries: {retries} is out of range (0..=10)"));
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

fn validate_point(
    p: &mut Vec<String>,
    at: &str,
    pt: &RawPoint,
    max_read: Option<u16>,
    device_order: ByteOrder,
    groups: &[PollGroup],
) -> Option<ModbusPoint> {
    check_name(p, &format!("{at}.name"), &pt.name);
    let table = match pt.table.as_deref() {
        None => Some(Table::Holding),
        Some(s) => {
            let t = Table::parse(s);
            if t.is_none() {
                p.push(format!(
                    "{at}.table: {s:?} is not a table (holding, input, coil, discrete)"
                ));
            }
            t
        }
    };
    let bit = pt.bit.unwrap_or(0);
    if bit > 15 {
        p.push(format!("{at}.bit: {bit} is out of range (0..=15)"));
    }
    let default_type = table.filter(|t| t.is_bits()).map(|_| "bool");
    let data_type = match pt.data_type.as_deref().or(default_type) {
        None => {
            p.push(format!(
                "{at}.type: missing (u16, i16, u32, i32, u64, i64, f32, f64, bit)"
            ));
            None
        }
        Some(s) => {
            let t = DataType::parse(s, bit.min(15) as u8);
            if t.is_none() {
                p.push(format!(
                    "{at}.type: {s:?} is not a data type (bool, bit, u16, i16, u32, i32, u64, i64, f32, f64)"
                ));
            }
            t
        }
    };
    match data_type {
        Some(DataType::Bit(_)) if pt.bit.is_none() => p.push(format!(
            "{at}.bit: missing; type \"bit\" needs bit = 0..=15"
        )),
        Some(t) if !matches!(t, DataType::Bit(_)) && pt.bit.is_some() => {
            p.push(format!("{at}.bit: only for type \"bit\""))
        }
        _ => {}
    }
    if let (Some(t), Some(table)) = (data_type, table) {
        let bool_type = t == DataType::Bool;
        if table.is_bits() && !bool_type {
            p.push(format!(
                "{at}.type: table {:?} holds single bits; use \"bool\"",
                table.as_str()
            ));
        } else if !table.is_bits() && bool_type {
            p.push(format!(
                "{at}.type: \"bool\" is for coil and discrete tables; use \"bit\" for a bit of a register"
            ));
        }
    }
    let width = data_type.map_or(1, |t| t.width());
    if pt.register > 65535 {
        p.push(format!(
            "{at}.register: {} is not a register address (0..=65535)",
            pt.register
        ));
    } else if pt.register + u32::from(width) - 1 > 65535 {
        p.push(format!(
            "{at}.register: a {}-register value at {} would end at {}, past the last address (65535)",
            width,
            pt.register,
            pt.register + u32::from(width) - 1
        ));
    }
    if let Some(max) = max_read.filter(|&m| m >= 1 && width > m) {
        p.push(format!(
            "{at}.type: needs {width} registers but the device's max_read is {max}"
        ));
    }
    let byte_order = parse_order(p, &format!("{at}.byte_order"), pt.byte_order.as_deref())
        .unwrap_or(device_order);
    let scale = pt.scale.unwrap_or(1.0);
    let offset = pt.offset.unwrap_or(0.0);
    if !scale.is_finite() || scale == 0.0 {
        p.push(format!("{at}.scale: {scale} must be a non-zero number"));
    }
    if !offset.is_finite() {
        p.push(format!("{at}.offset: {offset} must be a finite number"));
    }
    let group = match &pt.group {
        None => Some(0),
        Some(g) => {
            let found = groups
                .iter()
                .skip(1)
                .position(|x| &x.name == g)
                .map(|i| i + 1);
            if found.is_none() {
                let known: Vec<&str> = groups[1..].iter().map(|g| g.name.as_str()).collect();
                p.push(format!(
                    "{at}.group: no poll group {g:?} (the device's poll_groups: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
            found
        }
    };
    Some(ModbusPoint {
        name: pt.name.clone(),
        table: table?,
        register: pt.register.min(65535) as u16,
        data_type: data_type?,
        byte_order,
        scale,
        offset,
        unit: pt.unit.clone(),
        group: group?,
    })
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
