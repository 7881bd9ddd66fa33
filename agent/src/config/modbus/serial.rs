//! `[serial.<name>]`: the RS-485 lines Modbus RTU devices share, their
//! validation, and the rule that devices on one line need distinct,
//! non-broadcast unit ids.

use crate::config::issue::Problems;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::super::check_name;
use super::{frame_gap, Link, ModbusDevice};

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

/// Validate the `[serial.<name>]` sections.
pub(in crate::config) fn validate_serial_lines<'a>(
    p: &mut Problems,
    raw: impl IntoIterator<Item = (impl AsRef<str>, &'a RawSerialLine)>,
) -> BTreeMap<String, SerialLine> {
    let mut lines = BTreeMap::new();
    for (name, l) in raw {
        let name = name.as_ref().to_string();
        let at = format!("serial.{name}");
        check_name(p, &at, &name);
        if l.device.trim().is_empty() {
            p.add(
                format!("{at}.device"),
                "must name a serial device, for example \"/dev/ttyUSB0\"",
            );
        }
        let baud = l.baud.unwrap_or(9600);
        if !(300..=4_000_000).contains(&baud) {
            p.add(
                format!("{at}.baud"),
                format!("{baud} is not a baud rate (300..=4000000)"),
            );
        }
        let parity = match l.parity.as_deref().unwrap_or("even") {
            "none" => Parity::None,
            "even" => Parity::Even,
            "odd" => Parity::Odd,
            other => {
                p.add(
                    format!("{at}.parity"),
                    format!("{other:?} is not a parity (none, even, odd)"),
                );
                Parity::Even
            }
        };
        let data_bits = l.data_bits.unwrap_or(8);
        if !matches!(data_bits, 7 | 8) {
            p.add(
                format!("{at}.data_bits"),
                format!("{data_bits} is not supported (7 or 8)"),
            );
        }
        let stop_bits = l.stop_bits.unwrap_or(1);
        if !matches!(stop_bits, 1 | 2) {
            p.add(
                format!("{at}.stop_bits"),
                format!("{stop_bits} is not supported (1 or 2)"),
            );
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

/// Two devices on one serial line need different unit ids, and 0 (the
/// broadcast address, which never answers) cannot be polled there.
pub(in crate::config) fn check_serial_units(p: &mut Problems, devices: &[(usize, &ModbusDevice)]) {
    let mut seen: BTreeMap<(&str, u8), usize> = BTreeMap::new();
    for &(i, d) in devices {
        let Link::Serial(line) = &d.link else {
            continue;
        };
        if d.unit == 0 {
            p.add(
                format!("modbus[{i}].unit"),
                "0 is the broadcast address, which no device answers on a serial line (1..=247)",
            );
        }
        if let Some(first) = seen.insert((line.name.as_str(), d.unit), i) {
            p.add(
                format!("modbus[{i}].unit"),
                format!(
                    "{} is already used on serial line {:?} by modbus[{first}]",
                    d.unit, line.name
                ),
            );
        }
    }
}
