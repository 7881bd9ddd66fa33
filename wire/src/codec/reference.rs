//! Series-table references: a batch on the wire that names its series
//! table (the v6 or v8 document's dictionary: ids, names, units, tags,
//! reporting) by a content id instead of carrying it, because the relay
//! already holds the table from an earlier batch of the same gateway.
//!
//! A gateway repeats the same table in every batch; at the agent's default
//! of 1000 readings per batch that table is over a tenth of the bytes
//! (about 240 compressed bytes for SKAB's 8 series). The *referenced*
//! form drops it: format v7 for a v6 document, v9 for a v8 one:
//!
//! ```text
//! "EDGB" 0x00 0x07 | table id (16 bytes) | zstd frame of
//!     [ header (as v6, version 6), readings, alarms, gaps, device events ]
//! "EDGB" 0x00 0x09 | table id (16 bytes) | zstd frame of
//!     [ header (as v8, version 8), readings, alarms, gaps, device events ]
//! ```
//!
//! that is, the v6 or v8 document without its second element (two
//! versions, so that a relay that reads v7 but not v8 refuses a referenced
//! v8 document as a version it does not read, which the agent answers by
//! sending the batch self-contained, instead of as malformed). The table id is
//! the first 16 bytes of SHA-256 over the CBOR bytes of that element
//! ([`table_id`]), so equal tables have equal ids on every gateway and
//! relay, and a changed series (a new tag, a renamed point) is a new id.
//!
//! Guarantees:
//! - the referenced form is only a wire form: [`expand`] with the right
//!   table gives back the v6 or v8 document byte for byte, so the batch decodes
//!   to exactly what the self-contained batch decodes to (the spool keeps
//!   only self-contained batches; the relay's ledger digests the decoded
//!   batch, so one batch sent in both forms is one batch);
//! - a referenced batch is never decoded against a table other than its
//!   own: [`decode_parts`] checks that the table it is given hashes to the
//!   id in the envelope;
//! - a reader without the table fails with [`WireError::UnknownTable`]
//!   (reason `unknown_series_table`) before anything is decompressed, so a
//!   relay can ask for the table (see `docs/relay.md`) without spending
//!   its decode budget;
//! - limits hold for the expanded document: a table and a short document
//!   that together exceed `max_decompressed_bytes` are refused
//!   ([`WireError::TooLarge`]).

use minicbor::Decoder;
use sha2::{Digest as _, Sha256};

use super::{envelope, read, WireError};
use crate::{Batch, Limits};

/// The format version of a v6 batch that refers to its series table.
pub const REFERENCE_VERSION: u16 = 7;

/// The format version of a v8 batch that refers to its series table.
pub const REFERENCE_VERSION_V8: u16 = 9;

/// Each referenced version and the self-contained version it expands to
/// (v6 and v8 have the same document shape; v8 codes its value columns
/// with a faster-learning range coder).
pub const REFERENCED: [(u16, u16); 2] = [(REFERENCE_VERSION, 6), (REFERENCE_VERSION_V8, 8)];

/// The self-contained version a referenced `version` expands to.
pub fn expanded_version(version: u16) -> Option<u16> {
    REFERENCED
        .iter()
        .find(|&&(referenced, _)| referenced == version)
        .map(|&(_, expanded)| expanded)
}

/// The referenced version of a self-contained `version` (6 or 8).
fn referenced_version(version: u16) -> Option<u16> {
    REFERENCED
        .iter()
        .find(|&&(_, expanded)| expanded == version)
        .map(|&(referenced, _)| referenced)
}

/// Bytes of a table id.
pub const TABLE_ID_LEN: usize = 16;

/// A series table's content id ([`table_id`]).
pub type TableId = [u8; TABLE_ID_LEN];

/// Largest series table [`decode_parts`] hands out (1 MiB: about 10,000
/// series with names, units and tags); the table of a v6 or v8 batch with a
/// larger dictionary is not copied out, and such a batch is only ever sent
/// self-contained. Bounds what [`decode_bound`] adds for the copy.
pub const MAX_TABLE_BYTES: usize = 1 << 20;

/// Bytes before the zstd frame of a referenced batch: magic, version, id.
pub const REFERENCE_PREFIX_LEN: usize = envelope::PREFIX_LEN + TABLE_ID_LEN;

/// A series table as it travels: its id and its CBOR bytes (the v6 or v8
/// document's dictionary element).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesTable {
    /// [`table_id`] of `bytes`.
    pub id: TableId,
    /// The CBOR array of series entries.
    pub bytes: Vec<u8>,
}

impl SeriesTable {
    /// The table of `bytes`, with its id computed.
    pub fn new(bytes: Vec<u8>) -> SeriesTable {
        SeriesTable {
            id: table_id(&bytes),
            bytes,
        }
    }
}

/// What [`decode_parts`] gives: the batch and, for a v6 to v9 batch, its
/// series table (for the relay to keep).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The batch.
    pub batch: Batch,
    /// The series table the batch carried or referred to; `None` for v1 to v5.
    pub table: Option<SeriesTable>,
}

/// The content id of a series table's CBOR bytes: the first 16 bytes of
/// their SHA-256.
pub fn table_id(table: &[u8]) -> TableId {
    let full = Sha256::digest(table);
    let mut id = [0; TABLE_ID_LEN];
    id.copy_from_slice(&full[..TABLE_ID_LEN]);
    id
}

/// The table id a referenced (v7 or v9) batch names, read from its prefix
/// without decompressing; `None` for any other version. Fails as
/// [`envelope::version`] does, and on a v7 or v9 prefix cut short.
pub fn referenced_id(bytes: &[u8]) -> Result<Option<TableId>, WireError> {
    Ok(referenced(bytes)?.map(|(_, id)| id))
}

/// The version a referenced batch expands to and the table id it names;
/// `None` for a batch of another version.
fn referenced(bytes: &[u8]) -> Result<Option<(u16, TableId)>, WireError> {
    let version = envelope::version(bytes)?;
    let Some(expanded) = expanded_version(version) else {
        return Ok(None);
    };
    match bytes.get(envelope::PREFIX_LEN..REFERENCE_PREFIX_LEN) {
        Some(id) => {
            let mut out = [0; TABLE_ID_LEN];
            out.copy_from_slice(id);
            Ok(Some((expanded, out)))
        }
        None => Err(WireError::Malformed(format!(
            "input is {} bytes, a format v{version} prefix alone is {REFERENCE_PREFIX_LEN}",
            bytes.len()
        ))),
    }
}

/// A decoder past the top-level array header (of `elements`) and the
/// header element of `doc`, a format `version` document: the decoder, the
/// end of the array header and the end of the header element.
fn past_header(
    doc: &[u8],
    elements: u64,
    version: u16,
) -> Result<(Decoder<'_>, usize, usize), WireError> {
    let bad = |what: &str, e: minicbor::decode::Error| {
        WireError::Malformed(format!("format v{version} document {what}: {e}"))
    };
    let mut d = Decoder::new(doc);
    match d.array().map_err(|e| bad("top-level array", e))? {
        Some(n) if n == elements => {}
        other => {
            return Err(WireError::Malformed(format!(
                "format v{version} document has {other:?} elements, expected {elements}"
            )))
        }
    }
    let after_array = d.position();
    d.skip().map_err(|e| bad("header", e))?;
    let header_end = d.position();
    Ok((d, after_array, header_end))
}

/// Where the dictionary element sits in a v6 or v8 document: (end of the
/// top-level array header, start of the dictionary, end of it).
fn dictionary_span(doc: &[u8], version: u16) -> Result<(usize, usize, usize), WireError> {
    let (mut d, after_array, start) = past_header(doc, 6, version)?;
    d.skip()
        .map_err(|e| WireError::Malformed(format!("format v{version} document dictionary: {e}")))?;
    Ok((after_array, start, d.position()))
}

/// `body` (a self-contained v6 or v8 batch) in the referenced form, and
/// its table. Fails with [`WireError::Invalid`] for any other version, and
/// as [`crate::decode`] would on a body that does not open or decompress.
pub fn shorten(body: &[u8], limits: &Limits) -> Result<(SeriesTable, Vec<u8>), WireError> {
    let (version, frame) = envelope::open(body, limits)?;
    let Some(referenced) = referenced_version(version) else {
        return Err(WireError::Invalid(format!(
            "only a format v6 or v8 batch can refer to its series table, this one is v{version}"
        )));
    };
    let doc = envelope::decompress(frame, limits)?;
    let (after_array, start, end) = dictionary_span(&doc, version)?;
    let table = SeriesTable::new(doc[start..end].to_vec());
    let mut short = Vec::with_capacity(doc.len() - (end - start) + 1);
    // Five elements: a one-byte CBOR array header, like the six of v6.
    short.push(0x85);
    short.extend_from_slice(&doc[after_array..start]);
    short.extend_from_slice(&doc[end..]);
    let sealed = envelope::seal_version(&short, referenced)?;
    // The id goes between the 6-byte prefix and the frame.
    let mut out = Vec::with_capacity(sealed.len() + TABLE_ID_LEN);
    out.extend_from_slice(&sealed[..envelope::PREFIX_LEN]);
    out.extend_from_slice(&table.id);
    out.extend_from_slice(&sealed[envelope::PREFIX_LEN..]);
    Ok((table, out))
}

/// The v6 or v8 document of a referenced document `short` and its
/// `table`: the table put back as the second element. Fails if `short` is
/// not a 5-element document or the result would exceed
/// `max_decompressed_bytes`. (Whether its header names the version the
/// envelope promises is checked when the document is read.)
pub fn expand(short: &[u8], table: &[u8], limits: &Limits) -> Result<Vec<u8>, WireError> {
    let total = short.len().saturating_add(table.len());
    if total > limits.max_decompressed_bytes {
        return Err(WireError::too_large(
            format!("the document with its series table is {total} bytes"),
            limits.max_decompressed_bytes,
            "max_decompressed_bytes",
        ));
    }
    let (_, after_array, header_end) = past_header(short, 5, REFERENCE_VERSION)?;
    let mut doc = Vec::with_capacity(total);
    doc.push(0x86);
    doc.extend_from_slice(&short[after_array..header_end]);
    doc.extend_from_slice(table);
    doc.extend_from_slice(&short[header_end..]);
    Ok(doc)
}

/// Most bytes [`decode_parts`] may hold at once for `bytes` with a table
/// of `table_len` bytes: [`crate::decode_bound`] of the document the two
/// make, plus the table and the short document held while expanding (for
/// a v6 or v8 batch, plus the copy of its table, at most its document). An
/// upper bound, as `decode_bound` is.
pub fn decode_bound(bytes: &[u8], table_len: usize, limits: &Limits) -> Result<usize, WireError> {
    let version = envelope::version(bytes)?;
    if expanded_version(version).is_none() {
        let bound = super::decode_bound(bytes, limits)?;
        if referenced_version(version).is_none() {
            return Ok(bound);
        }
        let (_, frame) = envelope::open(bytes, limits)?;
        let doc =
            envelope::declared_size(frame).map_or(limits.max_decompressed_bytes, |s| s as usize);
        return Ok(bound + doc.min(MAX_TABLE_BYTES));
    }
    let frame = reference_frame(bytes, limits)?;
    let inflate = envelope::inflate_bound(frame, limits)?;
    let short =
        envelope::declared_size(frame).map_or(limits.max_decompressed_bytes, |s| s as usize);
    let doc = short
        .saturating_add(table_len)
        .min(limits.max_decompressed_bytes);
    Ok(bytes.len() + inflate + table_len + doc + read::decoded_bound(doc, limits))
}

/// The zstd frame of a referenced batch, after the limit on compressed bytes.
fn reference_frame<'b>(bytes: &'b [u8], limits: &Limits) -> Result<&'b [u8], WireError> {
    referenced_id(bytes)?;
    if bytes.len() > limits.max_compressed_bytes {
        return Err(WireError::too_large(
            format!("batch is {} bytes", bytes.len()),
            limits.max_compressed_bytes,
            "max_compressed_bytes",
        ));
    }
    Ok(&bytes[REFERENCE_PREFIX_LEN..])
}

/// Decode any batch (v1 to v9) and say which series table it carried or
/// referred to (for a v6 or v8 batch, only a table of at most
/// [`MAX_TABLE_BYTES`]). A referenced batch needs `table`, the bytes of the table
/// its envelope names: without it the error is [`WireError::UnknownTable`];
/// with bytes whose id is another, [`WireError::Invalid`]. `table` is
/// ignored for the other versions.
pub fn decode_parts(
    bytes: &[u8],
    limits: &Limits,
    table: Option<&[u8]>,
) -> Result<Decoded, WireError> {
    if let Some((version, id)) = referenced(bytes)? {
        let frame = reference_frame(bytes, limits)?;
        let Some(table) = table else {
            return Err(WireError::UnknownTable { id });
        };
        if table_id(table) != id {
            return Err(WireError::Invalid(format!(
                "the series table given for {} has another content id",
                hex(&id)
            )));
        }
        let short = envelope::decompress(frame, limits)?;
        let doc = expand(&short, table, limits)?;
        drop(short);
        let batch = read::read_document(&doc, version, limits)?;
        return Ok(Decoded {
            batch,
            table: Some(SeriesTable {
                id,
                bytes: table.to_vec(),
            }),
        });
    }
    let (version, frame) = envelope::open(bytes, limits)?;
    let doc = envelope::decompress(frame, limits)?;
    let batch = read::read_document(&doc, version, limits)?;
    let table = if referenced_version(version).is_some() {
        let (_, start, end) = dictionary_span(&doc, version)?;
        (end - start <= MAX_TABLE_BYTES).then(|| SeriesTable::new(doc[start..end].to_vec()))
    } else {
        None
    };
    Ok(Decoded { batch, table })
}

/// Lower-case hex of a table id, as the relay's answers and logs print it.
pub fn hex(id: &TableId) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The table id of its [`hex`] form; `None` for anything else.
pub fn parse_hex(text: &str) -> Option<TableId> {
    let text = text.as_bytes();
    if text.len() != 2 * TABLE_ID_LEN {
        return None;
    }
    let mut id = [0; TABLE_ID_LEN];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        id[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(id)
}
