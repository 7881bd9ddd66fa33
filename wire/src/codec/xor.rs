//! The XOR value coding (kind 1): exact for any `f64` bits.
//!
//! Each value's bits are XORed with the previous value's bits (the first
//! with 0). A control byte holds the number of leading zero bytes of the
//! result in its high nibble and of trailing zero bytes in its low nibble;
//! the remaining middle bytes follow, most significant first. A repeated
//! value is the single byte `0x80`. NaN payloads, infinities and -0.0 pass
//! through untouched, since only bits are handled.

use super::columns::{expect_end, ColumnError};
use crate::Point;

/// Append the XOR coding of the values of `points` to `out`.
pub fn encode_xor(points: &[Point], out: &mut Vec<u8>) {
    let mut prev = 0u64;
    for p in points {
        let bits = p.value.to_bits();
        let x = bits ^ prev;
        prev = bits;
        if x == 0 {
            out.push(0x80);
            continue;
        }
        let lead = (x.leading_zeros() / 8) as usize;
        let trail = (x.trailing_zeros() / 8) as usize;
        out.push(((lead << 4) | trail) as u8);
        out.extend_from_slice(&x.to_be_bytes()[lead..8 - trail]);
    }
}

/// Fill in the values of `points` from the XOR column `bytes`.
pub fn decode_xor(bytes: &[u8], points: &mut [Point]) -> Result<(), ColumnError> {
    let count = points.len();
    let mut pos = 0;
    let mut prev = 0u64;
    for (i, p) in points.iter_mut().enumerate() {
        let ends_early = ColumnError::EndsEarly {
            declared: count,
            decoded: i,
        };
        let &control = bytes.get(pos).ok_or(ends_early.clone())?;
        let lead = usize::from(control >> 4);
        let trail = usize::from(control & 0x0f);
        if lead + trail > 8 {
            return Err(ColumnError::Invalid {
                index: i,
                detail: format!("xor control byte {control:#04x} counts more than 8 zero bytes"),
            });
        }
        let middle_len = 8 - lead - trail;
        let middle = bytes.get(pos + 1..pos + 1 + middle_len).ok_or(ends_early)?;
        let mut be = [0u8; 8];
        be[lead..lead + middle_len].copy_from_slice(middle);
        prev ^= u64::from_be_bytes(be);
        p.value = f64::from_bits(prev);
        pos += 1 + middle_len;
    }
    expect_end(bytes, pos, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::columns::points_of;

    fn round_trip(values: &[f64]) -> Vec<u8> {
        let points = points_of(values);
        let mut out = Vec::new();
        encode_xor(&points, &mut out);
        let mut back = points_of(&vec![0.0; values.len()]);
        decode_xor(&out, &mut back).unwrap();
        assert_eq!(back, points, "values {values:?}");
        out
    }

    #[test]
    fn xor_column_bytes() {
        // NaN is 7ff8_0000_0000_0000: no leading zero byte, six trailing
        // ones, so control 0x06 and the middle bytes 7f f8. Repeating it
        // XORs to 0: control 0x80 (eight leading zero bytes) and nothing else.
        assert_eq!(round_trip(&[f64::NAN, f64::NAN]), [0x06, 0x7f, 0xf8, 0x80]);
        assert_eq!(round_trip(&[]), [] as [u8; 0]);
    }

    #[test]
    fn xor_keeps_every_bit() {
        round_trip(&[
            f64::from_bits(0x7ff0_0000_0000_0001), // signalling NaN payload
            f64::from_bits(0xfff8_dead_beef_0001), // negative NaN, odd payload
            -0.0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::from_bits(1), // smallest subnormal
            f64::MAX,
            f64::MIN,
            0.1 + 0.2,
            1e300,
        ]);
    }

    #[test]
    fn bad_xor_columns() {
        let mut two = points_of(&[0.0, 0.0]);
        let table: &[(&[u8], &str)] = &[
            (&[0x80], "2 values declared, column ends after 1"),
            (&[0x07, 0x3f], "2 values declared, column ends after 1"),
            (
                &[0x55],
                "value 0: xor control byte 0x55 counts more than 8 zero bytes",
            ),
            (
                &[0x80, 0x80, 0x80],
                "2 values declared, 1 bytes left over after them",
            ),
        ];
        for &(bytes, message) in table {
            let err = decode_xor(bytes, &mut two).unwrap_err();
            assert_eq!(err.to_string(), message, "input {bytes:02x?}");
        }
    }
}
