//! The envelope around the CBOR document: a 6-byte uncompressed prefix
//! (magic `EDGB`, format version as big-endian `u16`) followed by exactly one
//! zstd frame.
//!
//! The prefix lets a reader refuse a foreign or newer batch before spending
//! anything on decompression. Decompression is bounded: the frame's declared
//! content size, when present, is checked first; the streaming decoder runs
//! with a window-log cap and reads at most `max_decompressed_bytes + 1`
//! bytes (at most the declared size when the frame declares one), so a
//! decompression bomb costs at most the limit in memory and the time to
//! produce it; [`inflate_bound`] says that bound before anything is
//! inflated, for a caller that budgets memory across requests.

use std::cell::RefCell;
use std::io::{Cursor, Read};

use super::WireError;
use crate::{Limits, FORMAT_VERSION, READABLE_VERSIONS};

/// First four bytes of every batch.
pub const MAGIC: [u8; 4] = *b"EDGB";
/// Bytes before the zstd frame: magic and version.
pub const PREFIX_LEN: usize = 6;
/// zstd level the encoder uses.
pub const ZSTD_LEVEL: i32 = 3;
/// Largest zstd window (2^23 = 8 MiB) the decoder accepts. Level 3 never uses
/// more than 2^21; the cap keeps a hostile frame from asking for 2 GiB.
pub const WINDOW_LOG_MAX: u32 = 23;

thread_local! {
    /// One compression context per thread: creating one costs more than
    /// compressing a small batch, and gateways encode a batch every second.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
}

fn new_compressor() -> std::io::Result<zstd::bulk::Compressor<'static>> {
    let mut c = zstd::bulk::Compressor::new(ZSTD_LEVEL)?;
    // A 4-byte checksum per batch turns a corrupted spool file or body into
    // a decode error instead of silently wrong readings.
    c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
    Ok(c)
}

/// Prefix and compress a CBOR document into a complete batch of the
/// current [`FORMAT_VERSION`].
pub fn seal(doc: &[u8]) -> Result<Vec<u8>, WireError> {
    seal_version(doc, FORMAT_VERSION)
}

/// Like [`seal`], naming `version` in the prefix: for tests that write
/// documents of an older version by hand.
pub fn seal_version(doc: &[u8], version: u16) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(PREFIX_LEN + zstd::zstd_safe::compress_bound(doc.len()));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&version.to_be_bytes());
    let mut cursor = Cursor::new(out);
    cursor.set_position(PREFIX_LEN as u64);
    let compressed = COMPRESSOR.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| std::io::Error::other("compressor busy"))?;
        if slot.is_none() {
            *slot = Some(new_compressor()?);
        }
        match slot.as_mut() {
            Some(c) => c.compress_to_buffer(doc, &mut cursor),
            None => Err(std::io::Error::other("no compressor")),
        }
    });
    compressed.map_err(|e| WireError::Encode(format!("zstd compression failed: {e}")))?;
    Ok(cursor.into_inner())
}

/// The format version in the envelope of `bytes`, after checking the magic.
pub fn version(bytes: &[u8]) -> Result<u16, WireError> {
    let n = bytes.len().min(MAGIC.len());
    let head = &bytes[..n];
    // A cut-short prefix of the magic is a truncated batch, not a foreign one.
    if head != &MAGIC[..n] {
        return Err(WireError::BadMagic {
            found: head.to_vec(),
            expected: MAGIC,
        });
    }
    match bytes.get(MAGIC.len()..PREFIX_LEN) {
        Some(&[hi, lo]) => Ok(u16::from_be_bytes([hi, lo])),
        _ => Err(WireError::Malformed(format!(
            "input is {} bytes, the envelope prefix alone is {PREFIX_LEN}",
            bytes.len()
        ))),
    }
}

/// The error for a version this build does not read at all (a referenced
/// v7 or v9 batch is read by [`super::reference`], and refused here).
pub fn unsupported(found: u16) -> WireError {
    WireError::UnsupportedVersion {
        found,
        supported: crate::V10,
    }
}

/// Check the prefix and the compressed size; return the format version and
/// the zstd frame (of a self-contained batch, v1 to v6, v8 or v10).
pub fn open<'b>(bytes: &'b [u8], limits: &Limits) -> Result<(u16, &'b [u8]), WireError> {
    let found = version(bytes)?;
    if !READABLE_VERSIONS.contains(&found) {
        return Err(unsupported(found));
    }
    if bytes.len() > limits.max_compressed_bytes {
        return Err(WireError::too_large(
            format!("batch is {} bytes", bytes.len()),
            limits.max_compressed_bytes,
            "max_compressed_bytes",
        ));
    }
    Ok((found, &bytes[PREFIX_LEN..]))
}

/// The decompressed size the zstd frame `frame` declares in its header, if
/// it declares one (the agent's encoder always does).
pub fn declared_size(frame: &[u8]) -> Option<u64> {
    zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten()
}

/// Most bytes [`decompress`] may hold at once for `frame`: the document
/// buffer (the declared size, else `max_decompressed_bytes`) and the
/// decoder's window and block buffers (at most 2^[`WINDOW_LOG_MAX`], less
/// when the declared size is smaller). Fails, before anything is inflated,
/// on a declared size over the limit. For a caller that budgets memory.
pub fn inflate_bound(frame: &[u8], limits: &Limits) -> Result<usize, WireError> {
    let max = limits.max_decompressed_bytes;
    let doc = match declared_size(frame) {
        Some(size) if size > max as u64 => {
            return Err(WireError::too_large(
                format!("zstd frame declares {size} decompressed bytes"),
                max,
                "max_decompressed_bytes",
            ))
        }
        Some(size) => size as usize,
        None => max,
    };
    const BLOCK_MAX: usize = 128 << 10;
    let window = doc.min(1 << WINDOW_LOG_MAX);
    Ok(doc + window + 2 * BLOCK_MAX)
}

/// Decompress the single zstd frame `frame`, refusing to produce more than
/// `limits.max_decompressed_bytes`, or more than the frame declares.
pub fn decompress(frame: &[u8], limits: &Limits) -> Result<Vec<u8>, WireError> {
    let limit = limits.max_decompressed_bytes;
    let too_large = |what: String| WireError::too_large(what, limit, "max_decompressed_bytes");
    let decompress_error = |e: std::io::Error| WireError::Decompress(e.to_string());

    // A frame that announces its size lets a bomb be refused for free.
    let declared = declared_size(frame);
    if let Some(size) = declared {
        if size > limit as u64 {
            return Err(too_large(format!(
                "zstd frame declares {size} decompressed bytes"
            )));
        }
    }
    // A frame that produces more than it declared is corrupt; never hold
    // more than it declared (what a caller budgeted, see [`inflate_bound`]).
    let max = declared.map_or(limit, |size| size as usize);

    let mut decoder = zstd::stream::read::Decoder::with_buffer(frame)
        .map_err(decompress_error)?
        .single_frame();
    decoder
        .window_log_max(WINDOW_LOG_MAX)
        .map_err(decompress_error)?;
    let mut bounded = decoder.take((max as u64).saturating_add(1));
    // The declared size (at most `max` here) is only a hint: trust it for
    // the first reservation, and never let capacity pass `max + 1`.
    let hint = declared.map_or(0, |size| size as usize);
    let doc = read_bounded(&mut bounded, hint, max.saturating_add(1)).map_err(decompress_error)?;
    if doc.len() > max {
        if declared.is_some() {
            return Err(WireError::Decompress(format!(
                "zstd frame produces more than the {max} bytes it declares"
            )));
        }
        return Err(too_large(format!(
            "decompressed document is over {max} bytes"
        )));
    }
    let rest = bounded.into_inner().finish();
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!(
            "{} bytes follow the zstd frame",
            rest.len()
        )));
    }
    Ok(doc)
}

/// Read `input` to its end, growing the buffer geometrically from `hint`
/// but never beyond `cap` bytes of capacity (unlike `read_to_end`, whose
/// doubling could reserve twice the limit). Stops at `cap` bytes.
fn read_bounded(input: &mut impl Read, hint: usize, cap: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; hint.saturating_add(1).max(4096).min(cap)];
    let mut len = 0;
    loop {
        if len == buf.len() {
            if len >= cap {
                break;
            }
            let grown = len.saturating_mul(2).min(cap);
            // `resize` alone would round capacity up to a power of two.
            buf.reserve_exact(grown - len);
            buf.resize(grown, 0);
        }
        match input.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_bytes() {
        let sealed = seal(b"\x80").unwrap();
        assert_eq!(&sealed[..PREFIX_LEN], b"EDGB\x00\x08");
        assert_eq!(version(&sealed).unwrap(), 8);
        let (v, frame) = open(&sealed, &Limits::default()).unwrap();
        assert_eq!(v, 8);
        assert_eq!(decompress(frame, &Limits::default()).unwrap(), b"\x80");
    }

    #[test]
    fn prefix_errors() {
        let limits = Limits::default();
        let reason = |bytes: &[u8]| open(bytes, &limits).unwrap_err().reason();
        assert_eq!(reason(b""), "malformed");
        assert_eq!(reason(b"EDG"), "malformed");
        assert_eq!(reason(b"EDGB\x00"), "malformed");
        assert_eq!(reason(b"XDGB\x00\x01"), "bad_magic");
        assert_eq!(reason(b"\x28\xb5\x2f\xfd"), "bad_magic");
        assert_eq!(reason(b"EDGB\x00\x00"), "bad_version");
        assert_eq!(reason(b"EDGB\x00\x07"), "bad_version");
        assert_eq!(reason(b"EDGB\x01\x00"), "bad_version");
    }

    #[test]
    fn trailing_bytes_after_frame() {
        let mut sealed = seal(b"\x80").unwrap();
        sealed.extend_from_slice(b"junk");
        let (_, frame) = open(&sealed, &Limits::default()).unwrap();
        let err = decompress(frame, &Limits::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed batch: 4 bytes follow the zstd frame"
        );
    }
}
