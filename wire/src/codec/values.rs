//! The value column of one series: lossless `f64`s in one of two codings.
//!
//! - **Decimal** (kind 0, scale `k` in `0..=9`): every value equals
//!   `(m as f64) / 10^k` bit for bit for an integer mantissa `|m| < 2^53`.
//!   The column is the mantissas as delta zigzag varints (first mantissa
//!   from 0). Sensor readings printed with a few decimals (`0.027`, `230.5`)
//!   cost one or two bytes each.
//! - **XOR** (kind 1, scale 0): anything else. Each value's bits are XORed
//!   with the previous value's bits (the first with 0); a control byte holds
//!   the number of leading zero bytes in the high nibble and trailing zero
//!   bytes in the low nibble, followed by the remaining middle bytes, most
//!   significant first. NaN payloads, infinities and -0.0 survive untouched.
//!
//! The encoder picks decimal only after checking every value with the very
//! formula the decoder uses ([`decimal_value`]), so the choice can never lose
//! a bit. -0.0, NaN and infinities never qualify as decimal.

use super::columns::{expect_end, ColumnError};
use super::varint;
use crate::Point;

/// Wire code of the decimal coding.
pub const KIND_DECIMAL: u8 = 0;
/// Wire code of the XOR coding.
pub const KIND_XOR: u8 = 1;
/// Largest decimal scale (fractional digits) the format allows.
pub const MAX_SCALE: u8 = 9;

/// Powers of ten up to `10^MAX_SCALE`; all exact in `f64`.
const POW10: [f64; MAX_SCALE as usize + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// Mantissas must stay below 2^53 so that `m as f64` is exact.
const MANTISSA_LIMIT: i64 = 1 << 53;

/// The value a decimal mantissa `m` at scale `k` stands for. The decoder's
/// formula, and the one the encoder checks against.
#[inline]
pub fn decimal_value(m: i64, k: u8) -> f64 {
    (m as f64) / POW10[usize::from(k.min(MAX_SCALE))]
}

/// The mantissa of `v` at scale `k`, if `v` is exactly that decimal.
#[inline]
pub fn decimal_mantissa(v: f64, k: u8) -> Option<i64> {
    let scaled = v * POW10[usize::from(k.min(MAX_SCALE))];
    if !scaled.is_finite() || scaled.abs() >= MANTISSA_LIMIT as f64 {
        return None;
    }
    let m = scaled.round() as i64;
    // The bit comparison rejects -0.0 (0 / 10^k is +0.0) and any value the
    // division does not reproduce exactly.
    (m.abs() < MANTISSA_LIMIT && decimal_value(m, k).to_bits() == v.to_bits()).then_some(m)
}

/// The smallest scale at which every value is a decimal, if there is one.
pub fn decimal_scale(points: &[Point]) -> Option<u8> {
    let mut k = 0u8;
    for p in points {
        while decimal_mantissa(p.value, k).is_none() {
            if k == MAX_SCALE {
                return None;
            }
            k += 1;
        }
    }
    Some(k)
}

/// Append the value column of `points` to `out` and return its `(kind, scale)`.
pub fn encode_values(points: &[Point], out: &mut Vec<u8>) -> (u8, u8) {
    if let Some(k) = decimal_scale(points) {
        let start = out.len();
        if encode_decimal(points, k, out) {
            return (KIND_DECIMAL, k);
        }
        // A value that passed at a smaller scale failed at `k`; rare, but
        // the XOR coding is always exact.
        out.truncate(start);
    }
    encode_xor(points, out);
    (KIND_XOR, 0)
}

/// Write mantissas at scale `k`; false if some value is not exact at `k`.
fn encode_decimal(points: &[Point], k: u8, out: &mut Vec<u8>) -> bool {
    let mut prev = 0i64;
    for p in points {
        let Some(m) = decimal_mantissa(p.value, k) else {
            return false;
        };
        varint::put_i64(out, m.wrapping_sub(prev));
        prev = m;
    }
    true
}

fn encode_xor(points: &[Point], out: &mut Vec<u8>) {
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

/// Fill in the values of `points` (which hold the declared count) from the
/// column `bytes` in coding `kind` at `scale`.
pub fn decode_values(
    kind: u8,
    scale: u8,
    bytes: &[u8],
    points: &mut [Point],
) -> Result<(), ColumnError> {
    match kind {
        KIND_DECIMAL => decode_decimal(scale, bytes, points),
        KIND_XOR => decode_xor(bytes, points),
        _ => Err(ColumnError::Invalid {
            index: 0,
            detail: format!("unknown value coding {kind} (0 decimal, 1 xor)"),
        }),
    }
}

fn decode_decimal(scale: u8, bytes: &[u8], points: &mut [Point]) -> Result<(), ColumnError> {
    let count = points.len();
    if scale > MAX_SCALE {
        return Err(ColumnError::Invalid {
            index: 0,
            detail: format!("decimal scale {scale} is above {MAX_SCALE}"),
        });
    }
    let mut pos = 0;
    let mut m = 0i64;
    for (i, p) in points.iter_mut().enumerate() {
        let delta =
            varint::get_i64(bytes, &mut pos).map_err(|e| ColumnError::from_varint(e, count, i))?;
        m = m.wrapping_add(delta);
        if m.unsigned_abs() >= MANTISSA_LIMIT as u64 {
            return Err(ColumnError::Invalid {
                index: i,
                detail: format!("decimal mantissa {m} is not below 2^53 in magnitude"),
            });
        }
        p.value = decimal_value(m, scale);
    }
    expect_end(bytes, pos, count)
}

fn decode_xor(bytes: &[u8], points: &mut [Point]) -> Result<(), ColumnError> {
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
    use crate::Quality;

    fn points_of(values: &[f64]) -> Vec<Point> {
        values
            .iter()
            .map(|&value| Point {
                ts_us: 0,
                value,
                quality: Quality::Good,
            })
            .collect()
    }

    fn round_trip(values: &[f64]) -> (u8, u8, Vec<u8>) {
        let points = points_of(values);
        let mut out = Vec::new();
        let (kind, scale) = encode_values(&points, &mut out);
        let mut back = points_of(&vec![0.0; values.len()]);
        decode_values(kind, scale, &out, &mut back).unwrap();
        assert_eq!(back, points, "values {values:?}");
        (kind, scale, out)
    }

    #[test]
    fn decimal_detection_table() {
        // (values, expected kind, expected scale)
        let table: &[(&[f64], u8, u8)] = &[
            (&[], KIND_DECIMAL, 0),
            (&[0.0, 1.0, -7.0, 1e15], KIND_DECIMAL, 0),
            (&[0.1, 0.25, 230.5], KIND_DECIMAL, 2),
            (&[0.027, 1.5], KIND_DECIMAL, 3),
            (&[73.96732207], KIND_DECIMAL, 8),
            (&[0.123456789], KIND_DECIMAL, 9),
            (&[0.1 + 0.2], KIND_XOR, 0), // 0.30000000000000004
            (&[1e300], KIND_XOR, 0),
            (&[-0.0], KIND_XOR, 0),
            (&[1.0, f64::NAN], KIND_XOR, 0),
            (&[f64::INFINITY], KIND_XOR, 0),
            (&[f64::NEG_INFINITY], KIND_XOR, 0),
            (&[f64::MIN_POSITIVE / 4.0], KIND_XOR, 0), // subnormal
            (&[9_007_199_254_740_992.0], KIND_XOR, 0), // 2^53: mantissa too large
            (&[9_007_199_254_740_991.0], KIND_DECIMAL, 0),
            (&[1e-10], KIND_XOR, 0),
        ];
        for &(values, kind, scale) in table {
            let (k, s, _) = round_trip(values);
            assert_eq!((k, s), (kind, scale), "coding of {values:?}");
        }
    }

    #[test]
    fn decimal_column_bytes() {
        // Mantissas 2305, 2310, 2300 at scale 1: zigzag(2305), zigzag(5), zigzag(-10).
        let (kind, scale, bytes) = round_trip(&[230.5, 231.0, 230.0]);
        assert_eq!((kind, scale), (KIND_DECIMAL, 1));
        assert_eq!(bytes, [0x82, 0x24, 0x0a, 0x13]);
    }

    #[test]
    fn xor_column_bytes() {
        // NaN is 7ff8_0000_0000_0000: no leading zero byte, six trailing
        // ones, so control 0x06 and the middle bytes 7f f8. Repeating it
        // XORs to 0: control 0x80 (eight leading zero bytes) and nothing else.
        let (kind, _, bytes) = round_trip(&[f64::NAN, f64::NAN]);
        assert_eq!(kind, KIND_XOR);
        assert_eq!(bytes, [0x06, 0x7f, 0xf8, 0x80]);
    }

    #[test]
    fn xor_keeps_every_bit() {
        let odd_nan = f64::from_bits(0x7ff0_0000_0000_0001);
        let neg_nan = f64::from_bits(0xfff8_dead_beef_0001);
        let values = [
            odd_nan,
            neg_nan,
            -0.0,
            0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            f64::MAX,
            f64::MIN,
            0.1 + 0.2,
            1e300,
        ];
        let (kind, _, _) = round_trip(&values);
        assert_eq!(kind, KIND_XOR);
    }

    #[test]
    fn bad_value_columns() {
        let mut two = points_of(&[0.0, 0.0]);
        let table: &[(u8, u8, &[u8], &str)] = &[
            (
                KIND_DECIMAL,
                10,
                &[0, 0],
                "value 0: decimal scale 10 is above 9",
            ),
            (
                KIND_DECIMAL,
                0,
                &[0],
                "2 values declared, column ends after 1",
            ),
            (
                KIND_DECIMAL,
                0,
                &[0, 0, 0],
                "2 values declared, 1 bytes left over after them",
            ),
            (
                KIND_DECIMAL,
                0,
                &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0],
                "value 0: decimal mantissa 9007199254740992 is not below 2^53 in magnitude",
            ),
            (
                KIND_XOR,
                0,
                &[0x80],
                "2 values declared, column ends after 1",
            ),
            (
                KIND_XOR,
                0,
                &[0x07, 0x3f],
                "2 values declared, column ends after 1",
            ),
            (
                KIND_XOR,
                0,
                &[0x55],
                "value 0: xor control byte 0x55 counts more than 8 zero bytes",
            ),
            (
                7,
                0,
                &[],
                "value 0: unknown value coding 7 (0 decimal, 1 xor)",
            ),
        ];
        for &(kind, scale, bytes, message) in table {
            let err = decode_values(kind, scale, bytes, &mut two).unwrap_err();
            assert_eq!(err.to_string(), message, "input {bytes:02x?}");
        }
    }
}
