//! The batch codec: [`encode`] writes wire format v8 for every batch
//! that v8 can carry and v10 for the others ([`Batch::version`]);
//! [`encode_version`] still writes v6 and v2 to v5 (v2, v3 for a batch
//! that carries gap records, v4 for one with a spool instance, v5 for one
//! with device events, v6 for one reported by exception or with SPC
//! detail: [`Batch::legacy_version`]); [`decode`] reads v1 to v6, v8 and
//! v10.
//!
//! A batch on the wire is a 6-byte prefix (magic `EDGB`, version) and one
//! zstd frame of a positional CBOR document in which each series' readings
//! are stored as columns. `docs/wire-format.md` is the normative description;
//! this module is its reference implementation.
//!
//! Modules, in the order data flows through them when decoding:
//! - [`envelope`]: prefix, bounded zstd (de)compression;
//! - [`mod@reference`]: formats v7 and v9, a v6 or v8 batch that names its
//!   series table by a content id instead of carrying it (a wire form
//!   only: never spooled);
//! - `write` / `read`: the CBOR document;
//! - [`columns`]: timestamp (delta-of-delta) and quality (run-length) columns;
//! - [`values`]: the v1 to v5 value column (decimal mantissas with exceptions);
//! - [`values_v6`]: the v6 and v8 value column (decimal with predictors and
//!   ulp corrections, dictionary), chosen per series by trial;
//! - [`range`]: the adaptive range coder and raw bit stream of v6 and v8
//!   (v8 differs only in how its probabilities adapt);
//! - [`xor`]: the value column's fallback coding (XOR of bits);
//! - [`varint`]: zigzag and LEB128 building blocks.
//!
//! Invariants: `decode(encode(b)) == b` bit for bit for every valid batch;
//! `decode` never panics and never reserves memory beyond [`Limits`] or the
//! bytes actually present, whatever the input.

pub mod columns;
pub mod envelope;
mod error;
pub mod range;
mod read;
pub mod reference;
pub mod values;
pub mod values_v6;
pub mod varint;
mod write;
pub mod xor;

pub use error::WireError;
pub use read::decoded_bound;

use crate::{Batch, Limits};

/// Encode a batch in the current format ([`crate::FORMAT_VERSION`], v8,
/// or [`crate::V10`] for a batch that [needs it](Batch::needs_v10)):
/// CBOR document, zstd level 3, behind the 6-byte prefix.
///
/// Fails with [`WireError::Invalid`] if the batch has duplicate series ids,
/// an alarm naming a series it does not contain or device events without a
/// spool instance (see [`Batch::validate`]).
pub fn encode(batch: &Batch) -> Result<Vec<u8>, WireError> {
    encode_version(batch, batch.version())
}

/// Encode a batch in format `version` (2 to 6, 8 or 10), for a reader that does
/// not know v8 yet and for comparisons: [`Batch::legacy_version`] is the oldest
/// version that can carry the batch. Fails as [`encode`] does, and with
/// [`WireError::Invalid`] if the batch holds what `version` cannot carry
/// or `version` is not one this crate writes.
pub fn encode_version(batch: &Batch, version: u16) -> Result<Vec<u8>, WireError> {
    batch.validate()?;
    if !(2..=crate::V10).contains(&version) || reference::expanded_version(version).is_some() {
        return Err(WireError::Invalid(format!(
            "format version {version} cannot be written, only 2 to 6, {} and {} (v{} and v{} are the referenced forms of v6 and v8: reference::shorten)",
            crate::FORMAT_VERSION,
            crate::V10,
            reference::REFERENCE_VERSION,
            reference::REFERENCE_VERSION_V8,
        )));
    }
    let doc = write::write_document(batch, version)?;
    envelope::seal_version(&doc, version)
}

/// Decode a batch, enforcing `limits`. Never panics; see [`WireError`] for
/// what can go wrong and [`WireError::is_too_large`] for the limit errors.
///
/// A referenced batch (v7, v9) fails with [`WireError::UnknownTable`]: only
/// [`reference::decode_parts`], given the table, decodes it.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Batch, WireError> {
    if let Some(id) = reference::referenced_id(bytes)? {
        return Err(WireError::UnknownTable { id });
    }
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
    if let Some(id) = reference::referenced_id(bytes)? {
        // Its bound depends on the table: reference::decode_bound.
        return Err(WireError::UnknownTable { id });
    }
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
