//! The value column of one series in formats v1 to v5: lossless `f64`s in
//! one of two codings. [`encode_column`] and [`decode_column`] are the
//! entry points for every version: they use this module's codings before
//! v6 and [`super::values_v6`]'s from v6 on (which reuses
//! [`decimal_value`] and [`decimal_mantissa`], so a decimal means the same
//! in every version).
//!
//! - **Decimal** (kind 0, scale `k` in `0..=9`): values equal to
//!   `(m as f64) / 10^k` bit for bit, for an integer mantissa `|m| < 2^53`,
//!   are stored as mantissa deltas (zigzag varints). Values that are not
//!   (float noise such as `74.93588199999998`, NaN, -0.0) go in an exception
//!   list as raw bits. Layout: `n_exceptions` varint, then per exception
//!   `(gap varint, 8 bytes big-endian bits)` where the index is the previous
//!   exception's index + 1 + gap (the first: gap), then the mantissa deltas
//!   of the other values in order (the first from 0).
//! - **XOR** (kind 1, scale 0, see [`super::xor`]): any bits, for series
//!   where decimals would mostly be exceptions.
//!
//! Whether a value is decimal is decided with the decoder's own formula
//! ([`decimal_value`]), so nothing can be lost; anything that fails it at the
//! chosen scale becomes an exception. The encoder picks the scale with a
//! rough size estimate (an exception costs about 9 bytes, each extra digit
//! of scale about 0.4 bytes per value) and falls back to XOR when more than
//! a quarter of the values would be exceptions.

use super::columns::{expect_end, ColumnError};
use super::range::Adaptation;
use super::varint;
use super::xor::{decode_xor, encode_xor};
use crate::Point;

/// Wire code of the decimal coding.
pub const KIND_DECIMAL: u8 = 0;
/// Wire code of the XOR coding.
pub const KIND_XOR: u8 = 1;
/// Largest decimal scale (fractional digits) the format allows.
pub const MAX_SCALE: u8 = 9;

/// Powers of ten up to `10^MAX_SCALE`; all exact in `f64`.
pub(crate) const POW10: [f64; MAX_SCALE as usize + 1] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

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

/// The smallest scale at which `v` is a decimal, searching near `hint` (the
/// previous value's scale) first, since neighbours usually share one.
pub(crate) fn smallest_scale(v: f64, hint: u8) -> Option<u8> {
    if decimal_mantissa(v, hint).is_some() {
        let mut k = hint;
        while k > 0 && decimal_mantissa(v, k - 1).is_some() {
            k -= 1;
        }
        return Some(k);
    }
    // Larger magnitudes can fail at high scales yet pass at low ones.
    (0..hint)
        .chain(hint + 1..=MAX_SCALE)
        .find(|&k| decimal_mantissa(v, k).is_some())
}

/// The decimal scale to use for `points`, or `None` for XOR.
pub fn choose_scale(points: &[Point]) -> Option<u8> {
    let max_exceptions = points.len() / 4;
    let mut by_scale = [0usize; MAX_SCALE as usize + 1];
    let mut never = 0;
    let mut hint = 0;
    for p in points {
        match smallest_scale(p.value, hint) {
            Some(k) => {
                by_scale[usize::from(k)] += 1;
                hint = k;
            }
            None => {
                never += 1;
                if never > max_exceptions {
                    return None;
                }
            }
        }
    }
    // Estimated cost in thousandths of a byte, relative to scale 0.
    let mut best = (usize::MAX, 0u8, 0usize);
    let mut exceptions = never;
    for k in (0..=MAX_SCALE).rev() {
        if k < MAX_SCALE {
            exceptions += by_scale[usize::from(k) + 1];
        }
        let decimals = points.len() - exceptions;
        let cost = 9000 * exceptions + 415 * usize::from(k) * decimals;
        if cost <= best.0 {
            best = (cost, k, exceptions);
        }
    }
    let (_, k, exceptions) = best;
    (exceptions <= max_exceptions).then_some(k)
}

/// How the range coder of a format `version` (6 on) column adapts: v8
/// changed only that.
pub fn adaptation(version: u16) -> Adaptation {
    if version >= 8 {
        Adaptation::Counted
    } else {
        Adaptation::Shift
    }
}

/// Append the value column of `points` in format `version` to `out` and
/// return its `(kind, scale)`: the v6 codings of [`super::values_v6`] from
/// v6 on, the ones of this module before.
pub fn encode_column(version: u16, points: &[Point], out: &mut Vec<u8>) -> (u8, u8) {
    if version >= 6 {
        super::values_v6::encode_values(points, adaptation(version), out)
    } else {
        encode_values(points, out)
    }
}

/// Fill in the values of `points` (which hold the declared count) from the
/// format `version` column `bytes` in coding `kind` at `scale`.
pub fn decode_column(
    version: u16,
    (kind, scale): (u8, u8),
    bytes: &[u8],
    points: &mut [Point],
) -> Result<(), ColumnError> {
    if version >= 6 {
        super::values_v6::decode_values((kind, scale), adaptation(version), bytes, points)
    } else {
        decode_values(kind, scale, bytes, points)
    }
}

/// Append the v1 to v5 value column of `points` to `out` and return its
/// `(kind, scale)`.
pub fn encode_values(points: &[Point], out: &mut Vec<u8>) -> (u8, u8) {
    if let Some(k) = choose_scale(points) {
        let start = out.len();
        if encode_decimal(points, k, out) {
            return (KIND_DECIMAL, k);
        }
        out.truncate(start);
    }
    encode_xor(points, out);
    (KIND_XOR, 0)
}

/// Write the decimal coding at scale `k`; false (and `out` partly written)
/// if more than a quarter of the values turn out to be exceptions.
fn encode_decimal(points: &[Point], k: u8, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    // Exceptions are rare; this only allocates when there are some.
    let mut exceptions = Vec::new();
    let mut count = 0usize;
    let mut next_index = 0usize;
    let mut prev = 0i64;
    for (i, p) in points.iter().enumerate() {
        match decimal_mantissa(p.value, k) {
            Some(m) => {
                varint::put_i64(out, m.wrapping_sub(prev));
                prev = m;
            }
            None => {
                varint::put_u64(&mut exceptions, (i - next_index) as u64);
                exceptions.extend_from_slice(&p.value.to_bits().to_be_bytes());
                next_index = i + 1;
                count += 1;
            }
        }
    }
    if count > points.len() / 4 {
        return false;
    }
    let mut head = Vec::with_capacity(10 + exceptions.len());
    varint::put_u64(&mut head, count as u64);
    head.extend_from_slice(&exceptions);
    out.splice(start..start, head);
    true
}

/// The v1 to v5 decoder of [`decode_column`].
pub fn decode_values(
    kind: u8,
    scale: u8,
    bytes: &[u8],
    points: &mut [Point],
) -> Result<(), ColumnError> {
    match kind {
        KIND_DECIMAL => decode_decimal(scale, bytes, points),
        KIND_XOR if scale == 0 => decode_xor(bytes, points),
        KIND_XOR => Err(ColumnError::Invalid {
            index: 0,
            detail: format!("xor coding with scale {scale}, must be 0"),
        }),
        _ => Err(ColumnError::Invalid {
            index: 0,
            detail: format!("unknown value coding {kind} (0 decimal, 1 xor)"),
        }),
    }
}

fn decode_decimal(scale: u8, bytes: &[u8], points: &mut [Point]) -> Result<(), ColumnError> {
    let count = points.len();
    let invalid = |index, detail| ColumnError::Invalid { index, detail };
    if scale > MAX_SCALE {
        return Err(invalid(
            0,
            format!("decimal scale {scale} is above {MAX_SCALE}"),
        ));
    }
    let mut pos = 0;
    let varint_error = |e| ColumnError::from_varint(e, count, 0);
    let declared = varint::get_u64(bytes, &mut pos).map_err(varint_error)?;
    if declared > count as u64 {
        return Err(invalid(
            0,
            format!("{declared} exceptions declared, more than the values"),
        ));
    }
    // Place the exceptions first (checking their indices), then walk the
    // list again alongside the mantissas to skip their slots.
    let list_start = pos;
    let mut next_index = 0usize;
    for _ in 0..declared {
        let gap = varint::get_u64(bytes, &mut pos).map_err(varint_error)?;
        let index = usize::try_from(gap)
            .ok()
            .and_then(|gap| next_index.checked_add(gap))
            .filter(|&index| index < count)
            .ok_or_else(|| {
                invalid(
                    next_index,
                    format!("exception gap {gap} runs past the values"),
                )
            })?;
        let bits = bytes
            .get(pos..pos + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .ok_or(ColumnError::EndsEarly {
                declared: count,
                decoded: 0,
            })?;
        pos += 8;
        points[index].value = f64::from_bits(u64::from_be_bytes(bits));
        next_index = index + 1;
    }
    let mut walk = ExceptionWalk {
        pos: list_start,
        left: declared,
        next_index: 0,
    };
    let mut next_exception = walk.next(bytes);
    let mut m = 0i64;
    for (i, p) in points.iter_mut().enumerate() {
        if next_exception == Some(i) {
            next_exception = walk.next(bytes);
            continue;
        }
        let delta =
            varint::get_i64(bytes, &mut pos).map_err(|e| ColumnError::from_varint(e, count, i))?;
        m = m.wrapping_add(delta);
        if m.unsigned_abs() >= MANTISSA_LIMIT as u64 {
            return Err(invalid(
                i,
                format!("decimal mantissa {m} is not below 2^53 in magnitude"),
            ));
        }
        p.value = decimal_value(m, scale);
    }
    expect_end(bytes, pos, count)
}

/// Re-reads an exception list that [`decode_decimal`] has already checked,
/// yielding the indices in order.
struct ExceptionWalk {
    pos: usize,
    left: u64,
    next_index: usize,
}

impl ExceptionWalk {
    fn next(&mut self, bytes: &[u8]) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let gap = varint::get_u64(bytes, &mut self.pos).ok()?;
        self.pos += 8;
        let index = self
            .next_index
            .saturating_add(usize::try_from(gap).unwrap_or(usize::MAX));
        self.next_index = index.saturating_add(1);
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::columns::{points_of, round_trip_values};

    fn round_trip(values: &[f64]) -> (u8, u8, Vec<u8>) {
        round_trip_values(values, &encode_values, &decode_values)
    }

    #[test]
    fn coding_choice_table() {
        let sub = f64::MIN_POSITIVE / 4.0; // subnormal
                                           // (values, expected kind, expected scale)
        let table: &[(&[f64], u8, u8)] = &[
            (&[], KIND_DECIMAL, 0),
            (&[0.0, 1.0, -7.0, 1e15], KIND_DECIMAL, 0),
            (&[0.1, 0.25, 230.5], KIND_DECIMAL, 2),
            (&[0.027, 1.5], KIND_DECIMAL, 3),
            (&[73.96732207], KIND_DECIMAL, 8),
            (&[0.123456789], KIND_DECIMAL, 9),
            (&[9_007_199_254_740_991.0], KIND_DECIMAL, 0), // 2^53 - 1
            // Lone values that are not decimals: XOR.
            (&[0.1 + 0.2], KIND_XOR, 0), // 0.30000000000000004
            (&[1e300], KIND_XOR, 0),
            (&[-0.0], KIND_XOR, 0),
            (&[f64::INFINITY], KIND_XOR, 0),
            (&[f64::NEG_INFINITY], KIND_XOR, 0),
            (&[sub], KIND_XOR, 0),
            (&[9_007_199_254_740_992.0], KIND_XOR, 0), // 2^53: mantissa too large
            (&[1e-10], KIND_XOR, 0),
            (&[1.0, f64::NAN], KIND_XOR, 0), // half exceptions
            // Up to a quarter of exceptions stay decimal.
            (&[0.1, 0.2, 0.1 + 0.2, 0.4], KIND_DECIMAL, 1),
            (
                &[f64::NAN, 1.5, 2.5, 3.5, -0.0, 4.5, 5.5, 6.5],
                KIND_DECIMAL,
                1,
            ),
            // One 7-digit value among 4-digit ones is cheaper as an exception.
            (
                &[
                    0.0265878, 0.1234, 0.5678, 0.9012, 0.3456, 0.789, 0.111, 0.222,
                ],
                KIND_DECIMAL,
                4,
            ),
        ];
        for &(values, kind, scale) in table {
            let (k, s, _) = round_trip(values);
            assert_eq!((k, s), (kind, scale), "coding of {values:?}");
        }
    }

    #[test]
    fn decimal_column_bytes() {
        // No exceptions; mantissas 2305, 2310, 2300 at scale 1:
        // zigzag(2305), zigzag(5), zigzag(-10).
        let (kind, scale, bytes) = round_trip(&[230.5, 231.0, 230.0]);
        assert_eq!((kind, scale), (KIND_DECIMAL, 1));
        assert_eq!(bytes, [0x00, 0x82, 0x24, 0x0a, 0x13]);
    }

    #[test]
    fn decimal_column_with_an_exception() {
        // One exception at index 2 (gap 2) with the bits of
        // 0.30000000000000004; mantissas 1, 2, 4 → deltas 1, 1, 2.
        let (kind, scale, bytes) = round_trip(&[0.1, 0.2, 0.1 + 0.2, 0.4]);
        assert_eq!((kind, scale), (KIND_DECIMAL, 1));
        assert_eq!(
            bytes,
            [0x01, 0x02, 0x3f, 0xd3, 0x33, 0x33, 0x33, 0x33, 0x33, 0x34, 0x02, 0x02, 0x04]
        );
    }

    #[test]
    fn exceptions_may_cover_every_value() {
        // No encoder writes this, but it is well-formed.
        let mut bytes = vec![0x02, 0x00];
        bytes.extend_from_slice(&f64::NAN.to_bits().to_be_bytes());
        bytes.push(0x00);
        bytes.extend_from_slice(&(-0.0f64).to_bits().to_be_bytes());
        let mut two = points_of(&[1.0, 1.0]);
        decode_values(KIND_DECIMAL, 0, &bytes, &mut two).unwrap();
        assert_eq!(two, points_of(&[f64::NAN, -0.0]));
    }

    #[test]
    fn bad_value_columns() {
        let mut two = points_of(&[0.0, 0.0]);
        let table: &[(u8, u8, &[u8], &str)] = &[
            (
                KIND_DECIMAL,
                10,
                &[0, 0, 0],
                "value 0: decimal scale 10 is above 9",
            ),
            (
                KIND_DECIMAL,
                0,
                &[],
                "2 values declared, column ends after 0",
            ),
            (
                KIND_DECIMAL,
                0,
                &[0, 0],
                "2 values declared, column ends after 1",
            ),
            (
                KIND_DECIMAL,
                0,
                &[0, 0, 0, 0],
                "2 values declared, 1 bytes left over after them",
            ),
            (
                KIND_DECIMAL,
                0,
                &[3],
                "value 0: 3 exceptions declared, more than the values",
            ),
            (
                KIND_DECIMAL,
                0,
                &[1, 2, 0, 0, 0, 0, 0, 0, 0, 0],
                "value 0: exception gap 2 runs past the values",
            ),
            (
                KIND_DECIMAL,
                0,
                &[1, 0, 1, 2, 3],
                "2 values declared, column ends after 0",
            ),
            (
                KIND_DECIMAL,
                0,
                &[0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0],
                "value 0: decimal mantissa 9007199254740992 is not below 2^53 in magnitude",
            ),
            (
                7,
                0,
                &[],
                "value 0: unknown value coding 7 (0 decimal, 1 xor)",
            ),
            (
                KIND_XOR,
                3,
                &[0x80, 0x80],
                "value 0: xor coding with scale 3, must be 0",
            ),
        ];
        for &(kind, scale, bytes, message) in table {
            let err = decode_values(kind, scale, bytes, &mut two).unwrap_err();
            assert_eq!(err.to_string(), message, "input {bytes:02x?}");
        }
    }
}
