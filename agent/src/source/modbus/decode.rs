//! Register and bit decoding: what a point's registers mean as a number.
//! Pure; no sockets.
//!
//! A value of n registers (n = 1, 2 or 4) is assembled from the registers as
//! they arrived: byte swap (`BADC`, `DCBA`) swaps the two bytes inside each
//! register, word swap (`CDAB`, `DCBA`) reverses the register order, and the
//! result is read big-endian. A `bit` point takes one bit of the register as
//! sent (byte order does not apply). The number is then raw * scale + offset.

use super::types::{ByteOrder, DataType};
use crate::config::ModbusPoint;

/// The value of a register-table point; `regs` starts at the point's first
/// register. `None` if there are too few registers or the point is a `bool`.
pub fn decode_registers(regs: &[u16], point: &ModbusPoint) -> Option<f64> {
    let width = usize::from(point.data_type.width());
    let regs = regs.get(..width)?;
    let raw = assemble(regs, point.byte_order);
    let raw = match point.data_type {
        DataType::Bool => return None,
        DataType::Bit(n) => f64::from((regs[0] >> n) & 1),
        DataType::U16 => f64::from(raw as u16),
        DataType::I16 => f64::from(raw as u16 as i16),
        DataType::U32 => f64::from(raw as u32),
        DataType::I32 => f64::from(raw as u32 as i32),
        DataType::F32 => f64::from(f32::from_bits(raw as u32)),
        // Beyond 2^53 the nearest f64 is taken: readings are f64 throughout.
        DataType::U64 => raw as f64,
        DataType::I64 => raw as i64 as f64,
        DataType::F64 => f64::from_bits(raw),
    };
    Some(scaled(raw, point))
}

/// The value of a coil or discrete input; `bits` starts at the point's
/// address. `None` if there is no bit or the point is not a `bool`.
pub fn decode_bits(bits: &[bool], point: &ModbusPoint) -> Option<f64> {
    if point.data_type != DataType::Bool {
        return None;
    }
    let raw = if *bits.first()? { 1.0 } else { 0.0 };
    Some(scaled(raw, point))
}

/// The registers (at most four) as one big-endian integer after undoing
/// the byte order.
fn assemble(regs: &[u16], order: ByteOrder) -> u64 {
    let word = |r: u16| {
        if order.swaps_bytes() {
            r.swap_bytes()
        } else {
            r
        }
    };
    let fold = |acc: u64, &r: &u16| acc << 16 | u64::from(word(r));
    if order.swaps_words() {
        regs.iter().rev().fold(0, fold)
    } else {
        regs.iter().fold(0, fold)
    }
}

fn scaled(raw: f64, point: &ModbusPoint) -> f64 {
    apply_scale(raw, point.scale) + point.offset
}

/// `raw * scale`, except that a decimal scale such as 0.1 or 0.001 divides
/// by the power of ten instead: `235.0 * 0.1` is 23.500000000000004 while
/// `235.0 / 10.0` is 23.5, the value the device's display shows, which also
/// keeps the wire encoding compact (decimal values cost ~1 byte, noisy ones 8).
pub fn apply_scale(raw: f64, scale: f64) -> f64 {
    let inverse = 1.0 / scale;
    let rounded = inverse.round();
    let is_decimal = (1..=9).any(|k| rounded == 10f64.powi(k)) && 1.0 / rounded == scale;
    if is_decimal {
        raw / rounded
    } else {
        raw * scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::modbus::types::Table;
    use ByteOrder::*;
    use DataType::*;

    fn pt(data_type: DataType, byte_order: ByteOrder) -> ModbusPoint {
        ModbusPoint::raw(Table::Holding, 0, data_type, byte_order)
    }

    #[test]
    fn decodes_each_type_in_each_order() {
        // Registers as a device sends them; the expected values were
        // worked out by hand from the byte names (A = most significant).
        let cases: &[(DataType, ByteOrder, &[u16], f64)] = &[
            (U16, Abcd, &[65535], 65535.0),
            (U16, Badc, &[0x3412], 4660.0), // 0x1234
            (U16, Cdab, &[0x1234], 4660.0), // one register: no word to swap
            (I16, Abcd, &[0xFFFF], -1.0),
            (I16, Dcba, &[0x18FC], -1000.0), // 0xFC18
            // 0xB2D05E00 = 3_000_000_000
            (U32, Abcd, &[0xB2D0, 0x5E00], 3e9),
            (U32, Cdab, &[0x5E00, 0xB2D0], 3e9),
            (U32, Badc, &[0xD0B2, 0x005E], 3e9),
            (U32, Dcba, &[0x005E, 0xD0B2], 3e9),
            (I32, Abcd, &[0xFFFF, 0xFFFE], -2.0),
            // 0x42F6E979 = 123.456f32
            (F32, Abcd, &[0x42F6, 0xE979], 123.456f32 as f64),
            (F32, Cdab, &[0xE979, 0x42F6], 123.456f32 as f64),
            (F32, Badc, &[0xF642, 0x79E9], 123.456f32 as f64),
            (F32, Dcba, &[0x79E9, 0xF642], 123.456f32 as f64),
            // 0x0001_0203_0405_0607
            (
                U64,
                Abcd,
                &[0x0001, 0x0203, 0x0405, 0x0607],
                283686952306183.0,
            ),
            (
                U64,
                Cdab,
                &[0x0607, 0x0405, 0x0203, 0x0001],
                283686952306183.0,
            ),
            (
                U64,
                Badc,
                &[0x0100, 0x0302, 0x0504, 0x0706],
                283686952306183.0,
            ),
            (
                U64,
                Dcba,
                &[0x0706, 0x0504, 0x0302, 0x0100],
                283686952306183.0,
            ),
            (I64, Abcd, &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], -2.0),
            // 0xBFF4_0000_0000_0000 = -1.25
            (F64, Abcd, &[0xBFF4, 0, 0, 0], -1.25),
            (F64, Dcba, &[0, 0, 0, 0xF4BF], -1.25),
            (Bit(0), Abcd, &[0xA005], 1.0),
            (Bit(1), Abcd, &[0xA005], 0.0),
            (Bit(15), Dcba, &[0xA005], 1.0), // byte order does not apply
            (Bit(14), Abcd, &[0xA005], 0.0),
        ];
        for &(ty, order, regs, want) in cases {
            let got = decode_registers(regs, &pt(ty, order));
            assert_eq!(got, Some(want), "{ty:?} {order:?} {regs:04X?}");
        }
    }

    #[test]
    fn scale_and_offset_apply_to_every_type() {
        let cases: &[(DataType, &[u16], f64, f64, f64)] = &[
            (I16, &[0xFC18], 0.1, 0.0, -100.0),
            (U16, &[500], 0.5, -10.0, 240.0),
            (U32, &[0, 1000], 0.001, 0.0, 1.0),
            (Bit(0), &[1], 5.0, 1.0, 6.0),
        ];
        for &(ty, regs, scale, offset, want) in cases {
            let mut p = pt(ty, Abcd);
            p.scale = scale;
            p.offset = offset;
            assert_eq!(decode_registers(regs, &p), Some(want), "{ty:?}");
        }
    }

    #[test]
    fn decimal_scales_give_the_displayed_decimal_exactly() {
        let mut p = pt(I16, Abcd);
        for (scale, raw, want) in [(0.1, 235u16, 23.5), (0.01, 1234, 12.34), (0.001, 7, 0.007)] {
            p.scale = scale;
            assert_eq!(decode_registers(&[raw], &p), Some(want), "scale {scale}");
        }
        // A non-decimal scale multiplies.
        p.scale = 0.25;
        assert_eq!(decode_registers(&[10], &p), Some(2.5));
    }

    #[test]
    fn too_few_registers_is_not_a_value() {
        assert_eq!(decode_registers(&[0x42F6], &pt(F32, Abcd)), None);
        assert_eq!(decode_registers(&[1, 2, 3], &pt(F64, Abcd)), None);
        assert_eq!(decode_bits(&[], &pt(Bool, Abcd)), None);
    }

    #[test]
    fn coils_and_inputs_are_one_or_zero() {
        assert_eq!(decode_bits(&[true], &pt(Bool, Abcd)), Some(1.0));
        assert_eq!(decode_bits(&[false, true], &pt(Bool, Abcd)), Some(0.0));
        assert_eq!(decode_bits(&[true], &pt(U16, Abcd)), None);
    }

    /// The registers a device holding `bytes` (most significant first)
    /// sends, written from the byte names rather than the decoder's swaps:
    /// ABCD is big-endian, DCBA little-endian, and CDAB and BADC are those
    /// two with the register order reversed.
    fn wire(bytes_be: &[u8], order: ByteOrder) -> Vec<u16> {
        let bytes: Vec<u8> = match order {
            Abcd | Cdab => bytes_be.to_vec(),
            Badc | Dcba => bytes_be.iter().rev().copied().collect(),
        };
        let mut regs: Vec<u16> = bytes
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        if matches!(order, Cdab | Badc) {
            regs.reverse();
        }
        regs
    }

    fn any_order() -> impl proptest::strategy::Strategy<Value = ByteOrder> {
        proptest::sample::select(vec![Abcd, Cdab, Badc, Dcba])
    }

    proptest::proptest! {
        #[test]
        fn every_order_round_trips_32_bit_values(v: u32, order in any_order()) {
            let regs = wire(&v.to_be_bytes(), order);
            proptest::prop_assert_eq!(decode_registers(&regs, &pt(U32, order)), Some(f64::from(v)));
            proptest::prop_assert_eq!(decode_registers(&regs, &pt(I32, order)), Some(f64::from(v as i32)));
            let f = f32::from_bits(v);
            if f.is_finite() {
                proptest::prop_assert_eq!(decode_registers(&regs, &pt(F32, order)), Some(f64::from(f)));
            }
        }

        #[test]
        fn every_order_round_trips_64_bit_values(v: u64, order in any_order()) {
            let regs = wire(&v.to_be_bytes(), order);
            proptest::prop_assert_eq!(decode_registers(&regs, &pt(U64, order)), Some(v as f64));
            proptest::prop_assert_eq!(decode_registers(&regs, &pt(I64, order)), Some(v as i64 as f64));
            let f = f64::from_bits(v);
            if f.is_finite() {
                proptest::prop_assert_eq!(decode_registers(&regs, &pt(F64, order)), Some(f));
            }
        }

        #[test]
        fn every_order_round_trips_16_bit_values(v: u16, order in any_order()) {
            let regs = wire(&v.to_be_bytes(), order);
            proptest::prop_assert_eq!(decode_registers(&regs, &pt(U16, order)), Some(f64::from(v)));
            proptest::prop_assert_eq!(decode_registers(&regs, &pt(I16, order)), Some(f64::from(v as i16)));
        }
    }
}
