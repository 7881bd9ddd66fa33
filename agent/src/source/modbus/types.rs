//! What a Modbus point is on the wire: the four data tables and their
//! function codes and limits, the value types and how many addresses each
//! takes, the byte and word orders, and the RTU frame gap of a baud rate.
//! Plain data; the config (`config::modbus`) parses it from the file, the
//! poll loop and [`super::decode`] act on it.

use std::time::Duration;

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
    pub fn parse(s: &str, bit: u8) -> Option<DataType> {
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
