//! One `[[modbus.points]]` entry (inline or from a profile) checked into a
//! [`ModbusPoint`]: table, type, address range, bit, byte order, scale and
//! poll group, each problem named at its key.

use super::super::check_name;
use super::{listed, ByteOrder, DataType, ModbusPoint, PollGroup, RawPoint, Table};
use crate::config::issue::Problems;

pub(super) fn parse_order(p: &mut Problems, at: &str, s: Option<&str>) -> Option<ByteOrder> {
    let s = s?;
    let order = ByteOrder::parse(s);
    if order.is_none() {
        p.add(
            at,
            format!("{s:?} is not a byte order (ABCD, CDAB, BADC, DCBA)"),
        );
    }
    order
}

pub(super) fn validate_point(
    p: &mut Problems,
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
                p.add(
                    format!("{at}.table"),
                    format!("{s:?} is not a table (holding, input, coil, discrete)"),
                );
            }
            t
        }
    };
    let bit = pt.bit.unwrap_or(0);
    if bit > 15 {
        p.add(
            format!("{at}.bit"),
            format!("{bit} is out of range (0..=15)"),
        );
    }
    let default_type = table.filter(|t| t.is_bits()).map(|_| "bool");
    let data_type = match pt.data_type.as_deref().or(default_type) {
        None => {
            p.add(
                format!("{at}.type"),
                "missing (u16, i16, u32, i32, u64, i64, f32, f64, bit)",
            );
            None
        }
        Some(s) => {
            let t = DataType::parse(s, bit.min(15) as u8);
            if t.is_none() {
                p.add(format!("{at}.type"), format!("{s:?} is not a data type (bool, bit, u16, i16, u32, i32, u64, i64, f32, f64)"));
            }
            t
        }
    };
    match data_type {
        Some(DataType::Bit(_)) if pt.bit.is_none() => p.add(
            format!("{at}.bit"),
            "missing; type \"bit\" needs bit = 0..=15",
        ),
        Some(t) if !matches!(t, DataType::Bit(_)) && pt.bit.is_some() => {
            p.add(format!("{at}.bit"), "only for type \"bit\"")
        }
        _ => {}
    }
    if let (Some(t), Some(table)) = (data_type, table) {
        let bool_type = t == DataType::Bool;
        if table.is_bits() && !bool_type {
            p.add(
                format!("{at}.type"),
                format!("table {:?} holds single bits; use \"bool\"", table.as_str()),
            );
        } else if !table.is_bits() && bool_type {
            p.add(
                format!("{at}.type"),
                "\"bool\" is for coil and discrete tables; use \"bit\" for a bit of a register",
            );
        }
    }
    let width = data_type.map_or(1, |t| t.width());
    if pt.register > 65535 {
        p.add(
            format!("{at}.register"),
            format!("{} is not a register address (0..=65535)", pt.register),
        );
    } else if pt.register + u32::from(width) - 1 > 65535 {
        p.add(
            format!("{at}.register"),
            format!(
                "a {}-register value at {} would end at {}, past the last address (65535)",
                width,
                pt.register,
                pt.register + u32::from(width) - 1
            ),
        );
    }
    if let Some(max) = max_read.filter(|&m| m >= 1 && width > m) {
        p.add(
            format!("{at}.type"),
            format!("needs {width} registers but the device's max_read is {max}"),
        );
    }
    let byte_order = parse_order(p, &format!("{at}.byte_order"), pt.byte_order.as_deref())
        .unwrap_or(device_order);
    let scale = pt.scale.unwrap_or(1.0);
    let offset = pt.offset.unwrap_or(0.0);
    if !scale.is_finite() || scale == 0.0 {
        p.add(
            format!("{at}.scale"),
            format!("{scale} must be a non-zero number"),
        );
    }
    if !offset.is_finite() {
        p.add(
            format!("{at}.offset"),
            format!("{offset} must be a finite number"),
        );
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
                p.add(
                    format!("{at}.group"),
                    format!(
                        "no poll group {g:?} (the device's poll_groups: {})",
                        listed(&known)
                    ),
                );
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
