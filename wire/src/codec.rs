//! The batch codec: [`encode`] writes wire format v2, v3 for a batch that
//! carries gap records, v4 for one with a spool instance, v5 for one with
//! device events ([`Batch::format_version`]); [`decode`] reads v1 to v5.
//!
//! A batch on the wire is a 6-byte prefix (magic `EDGB`, version) and one
//! zstd frame of a positional CBOR document in which each series' readings
//! are stored as columns. `docs/wire-format.md` is the normative description;
//! this module is its reference implementation.
//!
//! Modules, in the order data flows through them when decoding:
//! - [`envelope`]: prefix, bounded zstd (de)compression;
//! - `write` / `read`: the CBOR document;
//! - [`columns`]: timestamp (delta-of-delta) and quality (run-length) columns;
//! - [`values`]: the value column (decimal mantissas with exceptions);
//! - [`xor`]: the value column's fallback coding (XOR of bits);
//! - [`varint`]: zigzag and LEB128 building blocks.
//!
//! Invariants: `decode(encode(b)) == b` bit for bit for every valid batch;
//! `decode` never panics and never reserves memory beyond [`Limits`] or the
//! bytes actually present, whatever the input.

pub mod columns;
pub mod envelope;
mod error;
mod read;
pub mod values;
pub mod varint;
mod write;
pub mod xor;

pub use error::WireError;
pub use read::decoded_bound;

use crate::{Batch, Limits};

/// Encode a batch: CBOR document, zstd level 3, behind the 6-byte prefix.
///
/// Fails with [`WireError::Invalid`] if the batch has duplicate series ids,
/// an alarm naming a series it does not contain or device events without a
/// spool instance (see [`Batch::validate`]).
pub fn encode(batch: &Batch) -> Result<Vec<u8>, WireError> {
    batch.validate()?;
    let version = batch.format_version();
    let doc = write::write_document(batch, version)?;
    envelope::seal_version(&doc, version)
}

/// Decode a batch, enforcing `limits`. Never panics; see [`WireError`] for
/// what can go wrong and [`WireError::is_too_large`] for the limit errors.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Batch, WireError> {
    let (version, frame) = envelope::open(bytes, limits)?;
    let doc = envelope::decompress(frame, limits)?;
    read::read_document(&doc, version, limits)
}

/// Most bytes decoding `bytes` may hold at once, known before anything is
/// inflated: the compressed input, the decompressed document and decoder
/// buffers ([`envelope::inflate_bound`]) and the decoded batch
/// ([`decoded_bound`]). Fails as [`decode`] would on a bad prefix, a
/// compressed size or a declared decompressed size over `limits`, so a
/// caller can refuse those without spending anything. Exact for nothing,
/// an upper bound for everything the decoder allocates.
pub fn decode_bound(bytes: &[u8], limits: &Limits) -> Result<usize, WireError> {
    let (_, frame) = envelope::open(bytes, limits)?;
    let inflate = envelope::inflate_bound(frame, limits)?;
    let doc = envelope::declared_size(frame).map_or(limits.max_decompressed_bytes, |s| s as usize);
    Ok(bytes.len() + inflate + read::decoded_bound(doc, limits))
}

/// The format version a batch claims, read from its prefix without
/// decompressing anything. Fails only if the magic bytes are wrong or the
/// input is shorter than the prefix.
pub fn encoded_version(bytes: &[u8]) -> Result<u16, WireError> {
    envelope::version(bytes)
}
