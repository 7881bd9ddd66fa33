//! `edge-agent probe modbus`: read one range of a device once, for a
//! technician commissioning it, and show what the values could mean.
//! (`edge-agent probe frames`, for microcontrollers, is in [`frames`].)
//!
//! Registers are printed as a table with one row per starting address and
//! every candidate decoding side by side (u16, i16; u32, i32 and f32 in the
//! four byte orders; f64 ABCD), so the technician can spot the column that
//! matches the device's display. Coils and discrete inputs print their bits.
//! A `[[modbus.points]]` snippet for the range follows, as a starting point
//! for the config.
//!
//! Not a poller: one request, no retries. The decoding is the agent's own
//! ([`crate::source::modbus::decode`]), so what the table shows is what the
//! agent will read with the same type and byte order. The formatting
//! functions are pure and tested without sockets; only [`probe`] does I/O.
//! An exception code is the device's answer ([`Answer::Exception`]), not a
//! [`ProbeError`].

pub mod frames;

use std::fmt::Write as _;
use std::time::Duration;

use tokio::time::timeout;
use tokio_modbus::client::{rtu, tcp, Context};
use tokio_modbus::Slave;

use crate::config::{ModbusPoint, SerialLine};
use crate::source::modbus::poll::{read_table, Data};
use crate::source::modbus::types::{ByteOrder, DataType, Table};
use crate::source::modbus::{decode_registers, line};

/// What to read: one range of one table of one unit.
#[derive(Debug, Clone)]
pub struct ProbeRequest {
    /// host:port of the Modbus TCP server or gateway as typed, or the
    /// serial device for Modbus RTU.
    pub address: String,
    /// Modbus RTU on this serial line (its `device` is `address`); Modbus
    /// TCP when `None`.
    pub serial: Option<SerialLine>,
    /// Modbus unit id (slave id).
    pub unit: u8,
    pub table: Table,
    /// First address, 0..=65535 (protocol address, not 4xxxx notation).
    pub start: u16,
    /// How many registers, coils or inputs.
    pub count: u16,
    /// Longest wait for the connection and again for the answer.
    pub timeout: Duration,
}

/// What the device answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Holding or input registers, from the request's start.
    Registers(Vec<u16>),
    /// Coils or discrete inputs, from the request's start.
    Bits(Vec<bool>),
    /// The device refused the request with this exception code.
    Exception(u8),
}

/// Why there is no answer from the device.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The range cannot be asked for in one request.
    #[error("{0}")]
    Range(String),
    /// The address did not resolve or the connection failed.
    #[error("{address}: cannot connect: {reason}")]
    Connect { address: String, reason: String },
    /// No connection or no answer within the timeout.
    #[error("{address} unit {unit}: {what} timed out after {timeout_ms} ms")]
    Timeout {
        address: String,
        unit: u8,
        what: String,
        timeout_ms: u128,
    },
    /// The connection broke during the request.
    #[error("{address} unit {unit}: {what} failed: {reason}")]
    Transport {
        address: String,
        unit: u8,
        what: String,
        reason: String,
    },
}

impl ProbeRequest {
    /// The range in words, for messages: `holding registers 100..=103`.
    pub fn describe(&self) -> String {
        let what = match self.table {
            Table::Holding => "holding registers",
            Table::Input => "input registers",
            Table::Coil => "coils",
            Table::Discrete => "discrete inputs",
        };
        let last = u32::from(self.start) + u32::from(self.count).max(1) - 1;
        format!("{what} {}..={last}", self.start)
    }

    /// Whether the range fits one request and the address space.
    pub fn check(&self) -> Result<(), ProbeError> {
        let limit = self.table.protocol_limit();
        if self.count == 0 || self.count > limit {
            return Err(ProbeError::Range(format!(
                "--count {} is out of range for {} (1..={limit})",
                self.count,
                self.table.as_str()
            )));
        }
        if u32::from(self.start) + u32::from(self.count) - 1 > 65535 {
            return Err(ProbeError::Range(format!(
                "{} runs past address 65535",
                self.describe()
            )));
        }
        Ok(())
    }
}

/// Connect, send one read with the table's function code and return the
/// answer. The connection and the read each get `request.timeout`.
pub async fn probe(request: &ProbeRequest) -> Result<Answer, ProbeError> {
    request.check()?;
    let address = request.address.clone();
    let unit = request.unit;
    let timeout_ms = request.timeout.as_millis();
    let timed_out = |what: String| ProbeError::Timeout {
        address: address.clone(),
        unit,
        what,
        timeout_ms,
    };
    let mut ctx = match &request.serial {
        Some(line) => open_serial(line, unit).map_err(|reason| ProbeError::Connect {
            address: address.clone(),
            reason,
        })?,
        None => {
            let connect = async {
                let socket = tokio::net::lookup_host(&request.address)
                    .await
                    .map_err(|e| e.to_string())?
                    .next()
                    .ok_or_else(|| "the name resolves to no address".to_string())?;
                tcp::connect_slave(socket, Slave(unit))
                    .await
                    .map_err(|e| e.to_string())
            };
            match timeout(request.timeout, connect).await {
                Err(_) => return Err(timed_out("connect".into())),
                Ok(Err(reason)) => {
                    return Err(ProbeError::Connect {
                        address: address.clone(),
                        reason,
                    })
                }
                Ok(Ok(ctx)) => ctx,
            }
        }
    };
    let (start, count) = (request.start, request.count);
    let read = async {
        Ok::<_, tokio_modbus::Error>(
            read_table(&mut ctx, request.table, start, count)
                .await?
                .map(|data| match data {
                    Data::Registers(r) => Answer::Registers(r),
                    Data::Bits(b) => Answer::Bits(b),
                }),
        )
    };
    let what = format!("read of {}", request.describe());
    match timeout(request.timeout, read).await {
        Err(_) => Err(timed_out(what)),
        Ok(Err(e)) => Err(ProbeError::Transport {
            address: address.clone(),
            unit,
            what,
            reason: e.to_string(),
        }),
        Ok(Ok(Err(exception))) => Ok(Answer::Exception(exception.into())),
        // A device may pad bits to a whole byte; show only what was asked.
        Ok(Ok(Ok(Answer::Bits(mut bits)))) => {
            bits.truncate(usize::from(count));
            Ok(Answer::Bits(bits))
        }
        Ok(Ok(Ok(answer))) => Ok(answer),
    }
}

/// Open the serial line for one request to `unit`.
fn open_serial(line: &SerialLine, unit: u8) -> Result<Context, String> {
    let port = line::open(line).map_err(|e| e.to_string())?;
    Ok(rtu::attach_slave(port, Slave(unit)))
}

/// What the technician sees: the table and the config snippet, or (`Err`)
/// the exception the device answered with, for a non-zero exit.
pub fn report(request: &ProbeRequest, answer: &Answer) -> Result<String, String> {
    let mut out = format!(
        "{} of unit {} at {}\n\n",
        request.describe(),
        request.unit,
        request.address
    );
    let lines = match answer {
        Answer::Registers(regs) => register_table(request.start, regs),
        Answer::Bits(bits) => bit_table(request.table, request.start, bits),
        Answer::Exception(code) => {
            return Err(format!(
                "{} unit {}: {} answered with exception 0x{code:02X}: {}",
                request.address,
                request.unit,
                request.describe(),
                exception_meaning(*code)
            ))
        }
    };
    for line in lines {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&config_snippet(request));
    Ok(out)
}

/// The meaning of a Modbus exception code (Modbus application protocol
/// v1.1b3, section 7), with what it usually means when commissioning.
pub fn exception_meaning(code: u8) -> &'static str {
    match code {
        0x01 => "illegal function (the device does not support this table's read function)",
        0x02 => "illegal data address (some address in the range does not exist on the device)",
        0x03 => "illegal data value (the count is not accepted; try fewer)",
        0x04 => "server device failure",
        0x05 => "acknowledge (the device is busy with a long operation)",
        0x06 => "server device busy (retry later)",
        0x08 => "memory parity error",
        0x0A => "gateway path unavailable (check the gateway's routing for this unit id)",
        0x0B => "gateway target device failed to respond (check the unit id and the serial line behind the gateway)",
        _ => "not a standard exception code",
    }
}

/// The decodings side by side, one column each, in table order.
const COLUMNS: [(&str, DataType, ByteOrder); 15] = [
    ("u16", DataType::U16, ByteOrder::Abcd),
    ("i16", DataType::I16, ByteOrder::Abcd),
    ("u32 ABCD", DataType::U32, ByteOrder::Abcd),
    ("u32 CDAB", DataType::U32, ByteOrder::Cdab),
    ("u32 BADC", DataType::U32, ByteOrder::Badc),
    ("u32 DCBA", DataType::U32, ByteOrder::Dcba),
    ("i32 ABCD", DataType::I32, ByteOrder::Abcd),
    ("i32 CDAB", DataType::I32, ByteOrder::Cdab),
    ("i32 BADC", DataType::I32, ByteOrder::Badc),
    ("i32 DCBA", DataType::I32, ByteOrder::Dcba),
    ("f32 ABCD", DataType::F32, ByteOrder::Abcd),
    ("f32 CDAB", DataType::F32, ByteOrder::Cdab),
    ("f32 BADC", DataType::F32, ByteOrder::Badc),
    ("f32 DCBA", DataType::F32, ByteOrder::Dcba),
    ("f64 ABCD", DataType::F64, ByteOrder::Abcd),
];

/// The register table as lines, columns right-aligned to their widest cell.
pub fn register_table(start: u16, regs: &[u16]) -> Vec<String> {
    aligned(&register_rows(start, regs))
}

/// The header, then one row per starting address: the address, the
/// register in hex, then every decoding in `COLUMNS` order; a decoding
/// that needs registers beyond the range is `-`.
pub fn register_rows(start: u16, regs: &[u16]) -> Vec<Vec<String>> {
    let mut rows = vec![["addr", "hex"]
        .into_iter()
        .chain(COLUMNS.iter().map(|c| c.0))
        .map(String::from)
        .collect::<Vec<_>>()];
    for (i, &reg) in regs.iter().enumerate() {
        let mut row = vec![
            (u32::from(start) + i as u32).to_string(),
            format!("{reg:04X}"),
        ];
        row.extend(
            COLUMNS
                .iter()
                .map(|&(_, ty, order)| cell(&regs[i..], ty, order)),
        );
        rows.push(row);
    }
    rows
}

/// One decoding of the registers from `regs[0]`, formatted.
fn cell(regs: &[u16], data_type: DataType, byte_order: ByteOrder) -> String {
    let point = ModbusPoint::raw(Table::Holding, 0, data_type, byte_order);
    match (decode_registers(regs, &point), data_type) {
        (None, _) => "-".into(),
        // Exact: the f64 came from an f32; printing it as one gives the
        // shortest digits, 123.456 rather than 123.45600128173828.
        (Some(v), DataType::F32) => float(v as f32),
        (Some(v), DataType::F64) => float(v),
        // Integers of at most 32 bits are exact in an f64.
        (Some(v), _) => format!("{v}"),
    }
}

/// Shortest digits, in exponent form when plain digits would be long
/// (garbage decodings are often huge or tiny).
fn float<F: Into<f64> + std::fmt::Display + std::fmt::LowerExp + Copy>(v: F) -> String {
    let x: f64 = v.into();
    if x == 0.0 || !x.is_finite() || (1e-4..1e9).contains(&x.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// One row per address: the address and its bit as 1 or 0.
pub fn bit_table(table: Table, start: u16, bits: &[bool]) -> Vec<String> {
    let mut rows = vec![vec!["addr".to_string(), table.as_str().to_string()]];
    for (i, &b) in bits.iter().enumerate() {
        rows.push(vec![
            (u32::from(start) + i as u32).to_string(),
            u8::from(b).to_string(),
        ]);
    }
    aligned(&rows)
}

/// Cells right-aligned in columns two spaces apart.
fn aligned(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c > 0 {
                    line.push_str("  ");
                }
                let _ = write!(line, "{cell:>w$}", w = widths[c]);
            }
            line
        })
        .collect()
}

/// `[[modbus.points]]` blocks for the range, one per address: `u16` for
/// registers, `bool` for coils and discrete inputs. A starting point only:
/// the comment tells the technician to pick the type from the table.
pub fn config_snippet(request: &ProbeRequest) -> String {
    let table = request.table.as_str();
    let mut out = match &request.serial {
        None => format!(
            "# Points for a [[modbus]] section with address = \"{}\" and unit = {}.\n",
            request.address, request.unit
        ),
        Some(l) => {
            let parity = match l.parity {
                crate::config::Parity::None => "none",
                crate::config::Parity::Even => "even",
                crate::config::Parity::Odd => "odd",
            };
            format!(
                "# The line, and points for a [[modbus]] section with serial = \"{}\" and unit = {}.\n\
                 [serial.{}]\ndevice = \"{}\"\nbaud = {}\nparity = \"{parity}\"\ndata_bits = {}\nstop_bits = {}\n",
                l.name, request.unit, l.name, l.device, l.baud, l.data_bits, l.stop_bits
            )
        }
    };
    if request.table.is_bits() {
        out.push_str("# One bool per address; rename each point.\n");
    } else {
        out.push_str(
            "# One u16 per register as a starting point: pick each value's type and\n\
             # byte_order from the table above (a 32-bit value covers its register and\n\
             # the next, so delete the point of the next), then rename the points.\n",
        );
    }
    let data_type = if request.table.is_bits() {
        "bool"
    } else {
        "u16"
    };
    for i in 0..request.count {
        let register = u32::from(request.start) + u32::from(i);
        let _ = write!(
            out,
            "\n[[modbus.points]]\nname = \"{table}_{register}\"\ntable = \"{table}\"\nregister = {register}\ntype = \"{data_type}\"\n"
        );
    }
    out
}

#[cfg(test)]
mod tests;
