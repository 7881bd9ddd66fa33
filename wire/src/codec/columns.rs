//! The timestamp and quality columns of one series, and the error type all
//! columns share. Values live in [`super::values`].
//!
//! Columns are pure functions between `&[Point]` and bytes: the encoder
//! appends to a caller-owned scratch buffer (no per-value allocation), the
//! decoder reads a borrowed slice and must produce exactly the declared
//! number of values, no fewer and no trailing bytes.
//!
//! Timestamps: delta-of-delta, zigzag varints. The first entry is the first
//! timestamp minus the batch's `created_us`; the second is the first delta;
//! every later entry is the change of delta. Arithmetic wraps, so any `i64`
//! sequence round-trips; a steady 1 Hz series costs one byte per reading.
//!
//! Qualities: run-length pairs `(code varint, run varint)`, runs at least 1,
//! summing to the declared count. An all-good series is two bytes.

use std::fmt;

use super::varint::{self, VarintError};
use crate::{Point, Quality};

/// What was wrong with a column; the caller adds which series and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnError {
    /// The bytes ran out before the declared count was reached.
    EndsEarly { declared: usize, decoded: usize },
    /// Bytes are left once the declared count has been decoded.
    Trailing { declared: usize, extra: usize },
    /// A varint longer than 10 bytes or wider than 64 bits.
    Overflow { index: usize },
    /// An entry that no encoder writes, e.g. an unknown quality code.
    Invalid { index: usize, detail: String },
}

impl fmt::Display for ColumnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnError::EndsEarly { declared, decoded } => {
                write!(f, "{declared} values declared, column ends after {decoded}")
            }
            ColumnError::Trailing { declared, extra } => write!(
                f,
                "{declared} values declared, {extra} bytes left over after them"
            ),
            ColumnError::Overflow { index } => {
                write!(f, "value {index}: varint does not fit in 64 bits")
            }
            ColumnError::Invalid { index, detail } => write!(f, "value {index}: {detail}"),
        }
    }
}

impl ColumnError {
    pub(crate) fn from_varint(e: VarintError, declared: usize, index: usize) -> ColumnError {
        match e {
            VarintError::End => ColumnError::EndsEarly {
                declared,
                decoded: index,
            },
            VarintError::Overflow => ColumnError::Overflow { index },
        }
    }
}

/// Fail with `Trailing` unless `pos` is the end of `bytes`.
pub(crate) fn expect_end(bytes: &[u8], pos: usize, declared: usize) -> Result<(), ColumnError> {
    if pos == bytes.len() {
        Ok(())
    } else {
        Err(ColumnError::Trailing {
            declared,
            extra: bytes.len().saturating_sub(pos),
        })
    }
}

/// Append the timestamp column of `points` (relative to `base`) to `out`.
pub fn encode_timestamps(points: &[Point], base: i64, out: &mut Vec<u8>) {
    let mut prev_ts = base;
    let mut prev_delta = 0i64;
    for (i, p) in points.iter().enumerate() {
        let delta = p.ts_us.wrapping_sub(prev_ts);
        varint::put_i64(out, delta.wrapping_sub(prev_delta));
        prev_ts = p.ts_us;
        // The first entry is an offset from `base`, not a delta between
        // readings, so it must not seed the delta-of-delta chain.
        prev_delta = if i == 0 { 0 } else { delta };
    }
}

/// Decode `count` timestamps from `bytes`, appending one point per timestamp
/// (value 0.0, quality good) to `points`.
///
/// Reserves at most `bytes.len()` points: each timestamp is at least one byte.
pub fn decode_timestamps(
    bytes: &[u8],
    base: i64,
    count: usize,
    points: &mut Vec<Point>,
) -> Result<(), ColumnError> {
    if count > bytes.len() {
        // Fail before reserving anything; report how far the bytes would go.
        let decoded = count_varints(bytes);
        return Err(ColumnError::EndsEarly {
            declared: count,
            decoded,
        });
    }
    points.reserve_exact(count);
    let mut pos = 0;
    let mut prev_ts = base;
    let mut prev_delta = 0i64;
    for i in 0..count {
        let dod =
            varint::get_i64(bytes, &mut pos).map_err(|e| ColumnError::from_varint(e, count, i))?;
        let delta = prev_delta.wrapping_add(dod);
        let ts = prev_ts.wrapping_add(delta);
        points.push(Point {
            ts_us: ts,
            value: 0.0,
            quality: Quality::Good,
        });
        prev_ts = ts;
        prev_delta = if i == 0 { 0 } else { delta };
    }
    expect_end(bytes, pos, count)
}

/// How many complete varints `bytes` holds (for error messages only).
fn count_varints(bytes: &[u8]) -> usize {
    let mut pos = 0;
    let mut n = 0;
    while varint::get_u64(bytes, &mut pos).is_ok() {
        n += 1;
    }
    n
}

/// Append the quality column of `points` to `out`.
pub fn encode_qualities(points: &[Point], out: &mut Vec<u8>) {
    let mut iter = points.iter();
    let Some(first) = iter.next() else {
        return;
    };
    let mut code = first.quality;
    let mut run = 1u64;
    for p in iter {
        if p.quality == code {
            run += 1;
        } else {
            varint::put_u64(out, u64::from(code.code()));
            varint::put_u64(out, run);
            code = p.quality;
            run = 1;
        }
    }
    varint::put_u64(out, u64::from(code.code()));
    varint::put_u64(out, run);
}

/// Apply the quality column in `bytes` to `points`, which already hold the
/// declared number of readings (all marked good).
pub fn decode_qualities(bytes: &[u8], points: &mut [Point]) -> Result<(), ColumnError> {
    let count = points.len();
    let mut pos = 0;
    let mut filled = 0usize;
    while filled < count {
        let code = varint::get_u64(bytes, &mut pos)
            .map_err(|e| ColumnError::from_varint(e, count, filled))?;
        let run = varint::get_u64(bytes, &mut pos)
            .map_err(|e| ColumnError::from_varint(e, count, filled))?;
        let quality = u8::try_from(code)
            .ok()
            .and_then(Quality::from_code)
            .ok_or_else(|| ColumnError::Invalid {
                index: filled,
                detail: format!("unknown quality code {code}"),
            })?;
        let end = usize::try_from(run)
            .ok()
            .filter(|&run| run >= 1)
            .and_then(|run| filled.checked_add(run))
            .filter(|&end| end <= count)
            .ok_or_else(|| ColumnError::Invalid {
                index: filled,
                detail: format!(
                    "run of {run} does not fit in the {} values left",
                    count - filled
                ),
            })?;
        if quality != Quality::Good {
            for p in &mut points[filled..end] {
                p.quality = quality;
            }
        }
        filled = end;
    }
    expect_end(bytes, pos, count)
}

/// Points holding `values` (timestamp 0, quality good): the value column
/// tests' input.
#[cfg(test)]
pub(crate) fn points_of(values: &[f64]) -> Vec<Point> {
    values
        .iter()
        .map(|&value| Point {
            ts_us: 0,
            value,
            quality: Quality::Good,
        })
        .collect()
}

/// A value coding's encoder, as [`round_trip_values`] takes it.
#[cfg(test)]
pub(crate) type EncodeValues<'f> = &'f dyn Fn(&[Point], &mut Vec<u8>) -> (u8, u8);
/// A value coding's decoder, as [`round_trip_values`] takes it.
#[cfg(test)]
pub(crate) type DecodeValues<'f> =
    &'f dyn Fn(u8, u8, &[u8], &mut [Point]) -> Result<(), ColumnError>;

/// Encode `values`, decode them again and check every bit; the column's
/// `(kind, scale, bytes)`.
#[cfg(test)]
pub(crate) fn round_trip_values(
    values: &[f64],
    encode: EncodeValues<'_>,
    decode: DecodeValues<'_>,
) -> (u8, u8, Vec<u8>) {
    let points = points_of(values);
    let mut out = Vec::new();
    let (kind, scale) = encode(&points, &mut out);
    let mut back = points_of(&vec![0.0; values.len()]);
    decode(kind, scale, &out, &mut back).unwrap();
    let bits = |ps: &[Point]| ps.iter().map(|p| p.value.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&back), bits(&points), "values {values:?}");
    (kind, scale, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points_at(ts: &[i64]) -> Vec<Point> {
        ts.iter()
            .map(|&ts_us| Point {
                ts_us,
                value: 0.0,
                quality: Quality::Good,
            })
            .collect()
    }

    #[test]
    fn timestamps_table() {
        let base = 1_700_000_000_000_000;
        let table: &[(&[i64], &[u8])] = &[
            (&[], &[]),
            (&[base], &[0x00]),
            // Offset 0, delta 1 s, then no change of delta.
            (
                &[base, base + 1_000_000, base + 2_000_000, base + 3_000_000],
                &[0x00, 0x80, 0x89, 0x7a, 0x00, 0x00],
            ),
            // Offset +1, delta +1, then delta grows by one: every entry is zigzag(1).
            (&[base + 1, base + 2, base + 4], &[0x02, 0x02, 0x02]),
        ];
        for &(ts, bytes) in table {
            let points = points_at(ts);
            let mut out = Vec::new();
            encode_timestamps(&points, base, &mut out);
            assert_eq!(out, bytes, "encoding of {ts:?}");
            let mut back = Vec::new();
            decode_timestamps(&out, base, ts.len(), &mut back).unwrap();
            assert_eq!(back, points);
        }
    }

    #[test]
    fn extreme_timestamps_round_trip() {
        let cases: &[&[i64]] = &[
            &[i64::MIN, i64::MAX, i64::MIN, 0, i64::MAX],
            &[i64::MAX, i64::MAX, i64::MIN, i64::MIN],
            &[0, -1, 1, i64::MIN + 1, i64::MAX - 1],
        ];
        for base in [0, i64::MIN, i64::MAX, 1_700_000_000_000_000] {
            for &ts in cases {
                let points = points_at(ts);
                let mut out = Vec::new();
                encode_timestamps(&points, base, &mut out);
                let mut back = Vec::new();
                decode_timestamps(&out, base, ts.len(), &mut back).unwrap();
                assert_eq!(back, points, "base {base}");
            }
        }
    }

    #[test]
    fn timestamp_count_must_match_exactly() {
        let points = points_at(&[10, 20, 30]);
        let mut out = Vec::new();
        encode_timestamps(&points, 0, &mut out);
        let mut back = Vec::new();
        assert_eq!(
            decode_timestamps(&out, 0, 12, &mut back),
            Err(ColumnError::EndsEarly {
                declared: 12,
                decoded: 3
            })
        );
        assert_eq!(
            decode_timestamps(&out, 0, 2, &mut Vec::new()),
            Err(ColumnError::Trailing {
                declared: 2,
                extra: 1
            })
        );
        assert_eq!(
            decode_timestamps(&[0x00, 0x80], 0, 2, &mut Vec::new()),
            Err(ColumnError::EndsEarly {
                declared: 2,
                decoded: 1
            })
        );
    }

    #[test]
    fn qualities_table() {
        use Quality::*;
        let table: &[(&[Quality], &[u8])] = &[
            (&[], &[]),
            (&[Good, Good, Good], &[0, 3]),
            (&[Good, Bad, Bad, Uncertain], &[0, 1, 2, 2, 1, 1]),
        ];
        for &(qs, bytes) in table {
            let mut points = points_at(&vec![0; qs.len()]);
            for (p, &q) in points.iter_mut().zip(qs) {
                p.quality = q;
            }
            let mut out = Vec::new();
            encode_qualities(&points, &mut out);
            assert_eq!(out, bytes, "encoding of {qs:?}");
            let mut back = points_at(&vec![0; qs.len()]);
            decode_qualities(&out, &mut back).unwrap();
            assert_eq!(back, points);
        }
    }

    #[test]
    fn bad_quality_columns() {
        let mut four = points_at(&[0; 4]);
        let table: &[(&[u8], &str)] = &[
            (&[0, 3], "4 values declared, column ends after 3"),
            (
                &[0, 5],
                "value 0: run of 5 does not fit in the 4 values left",
            ),
            (
                &[0, 0],
                "value 0: run of 0 does not fit in the 4 values left",
            ),
            (&[7, 4], "value 0: unknown quality code 7"),
            (
                &[0, 4, 0],
                "4 values declared, 1 bytes left over after them",
            ),
        ];
        for &(bytes, message) in table {
            let err = decode_qualities(bytes, &mut four).unwrap_err();
            assert_eq!(err.to_string(), message, "input {bytes:?}");
        }
    }
}
