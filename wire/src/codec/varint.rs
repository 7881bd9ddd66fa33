//! Integer building blocks for the columns: zigzag mapping and unsigned
//! LEB128 varints.
//!
//! Zigzag maps small signed numbers to small unsigned ones
//! (0, -1, 1, -2 … → 0, 1, 2, 3 …) so that a varint of a small delta is one
//! byte whatever its sign. A varint is 7 bits per byte, least significant
//! group first, high bit set on every byte but the last; at most 10 bytes.
//!
//! Reading never panics: a varint that runs off the end of the input or does
//! not fit in 64 bits is an error, and every varint is at least one byte, so a
//! column of `n` bytes holds at most `n` values.

/// Map a signed integer to an unsigned one, small magnitudes to small values.
#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline]
pub fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ ((u & 1) as i64).wrapping_neg()
}

/// Append `v` as an unsigned LEB128 varint.
#[inline]
pub fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Append `v` zigzag-mapped as a varint.
#[inline]
pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, zigzag(v));
}

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarintError {
    /// The input ended before (or inside) the varint.
    End,
    /// More than 10 bytes, or a value that does not fit in 64 bits.
    Overflow,
}

/// Read an unsigned varint at `*pos`, advancing `*pos` past it.
#[inline]
pub fn get_u64(bytes: &[u8], pos: &mut usize) -> Result<u64, VarintError> {
    let mut value = 0u64;
    let mut shift = 0u32;
    loop {
        let Some(&byte) = bytes.get(*pos) else {
            return Err(VarintError::End);
        };
        *pos += 1;
        if shift == 63 && byte > 1 {
            return Err(VarintError::Overflow);
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        if shift > 63 {
            return Err(VarintError::Overflow);
        }
    }
}

/// Read a zigzag-mapped varint at `*pos`, advancing `*pos` past it.
#[inline]
pub fn get_i64(bytes: &[u8], pos: &mut usize) -> Result<i64, VarintError> {
    get_u64(bytes, pos).map(unzigzag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_table() {
        let table: &[(i64, u64)] = &[
            (0, 0),
            (-1, 1),
            (1, 2),
            (-2, 3),
            (2, 4),
            (63, 126),
            (-64, 127),
            (i64::MAX, u64::MAX - 1),
            (i64::MIN, u64::MAX),
        ];
        for &(signed, unsigned) in table {
            assert_eq!(zigzag(signed), unsigned, "zigzag({signed})");
            assert_eq!(unzigzag(unsigned), signed, "unzigzag({unsigned})");
        }
    }

    #[test]
    fn varint_bytes_table() {
        let table: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for &(value, bytes) in table {
            let mut out = Vec::new();
            put_u64(&mut out, value);
            assert_eq!(out, bytes, "encoding of {value}");
            let mut pos = 0;
            assert_eq!(get_u64(bytes, &mut pos), Ok(value), "decoding of {value}");
            assert_eq!(pos, bytes.len());
        }
    }

    #[test]
    fn signed_round_trip_extremes() {
        let mut out = Vec::new();
        let values = [0, 1, -1, i64::MAX, i64::MIN, i64::MIN + 1, 1 << 40];
        for v in values {
            put_i64(&mut out, v);
        }
        let mut pos = 0;
        for v in values {
            assert_eq!(get_i64(&out, &mut pos), Ok(v));
        }
        assert_eq!(pos, out.len());
    }

    #[test]
    fn bad_varints_are_errors() {
        let table: &[(&[u8], VarintError)] = &[
            (&[], VarintError::End),
            (&[0x80], VarintError::End),
            (&[0xff, 0xff], VarintError::End),
            // Ten bytes whose last one carries more than the 64th bit.
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
                VarintError::Overflow,
            ),
            // Eleven bytes.
            (
                &[
                    0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x81, 0x00,
                ],
                VarintError::Overflow,
            ),
        ];
        for &(bytes, expected) in table {
            let mut pos = 0;
            assert_eq!(
                get_u64(bytes, &mut pos),
                Err(expected),
                "input {bytes:02x?}"
            );
        }
    }
}
