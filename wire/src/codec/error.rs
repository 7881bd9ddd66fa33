//! `WireError`: every way a batch can fail to encode or decode.
//!
//! Each message names the thing that was wrong and the value found, so a
//! quarantined batch can be diagnosed from the log line alone. Callers that
//! need a category (metrics labels, HTTP status) use [`WireError::reason`] and
//! [`WireError::is_too_large`] rather than matching on message text.

/// Why a batch could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The input does not start with the batch magic bytes: it is not an
    /// edge batch at all (or the envelope is cut short).
    #[error("not an edge batch: input starts with {found:02x?}, expected the magic bytes {expected:02x?}")]
    BadMagic {
        /// Up to the first four bytes of the input.
        found: Vec<u8>,
        /// The magic bytes a batch starts with.
        expected: [u8; 4],
    },
    /// The envelope names a format version this build does not read.
    #[error(
        "batch format version {found} is not supported, this build reads versions 1 to {supported} (7 and 9 with their series table)"
    )]
    UnsupportedVersion {
        /// Version found in the envelope.
        found: u16,
        /// The newest version this build reads.
        supported: u16,
    },
    /// The batch, or something it declares, exceeds a [`crate::Limits`] bound.
    /// This is the only variant a server should answer with "payload too
    /// large" (HTTP 413); see [`WireError::is_too_large`].
    #[error("{what}, limit is {limit} ({key})")]
    TooLarge {
        /// What was too large and by how much, e.g. `batch declares 5000000 readings`.
        what: String,
        /// The bound that was exceeded.
        limit: u64,
        /// Name of the [`crate::Limits`] field holding the bound, e.g. `max_readings`.
        key: &'static str,
    },
    /// The zstd frame after the envelope prefix could not be decompressed.
    #[error("zstd frame could not be decompressed: {0}")]
    Decompress(String),
    /// The decompressed document does not follow its version's structure: wrong
    /// CBOR types or counts, a column that does not hold its declared count,
    /// trailing bytes.
    #[error("malformed batch: {0}")]
    Malformed(String),
    /// The batch is well-formed but breaks a model invariant: duplicate
    /// series ids, or an alarm naming a series that is not in the batch.
    /// Returned by both [`crate::encode`] and [`crate::decode`].
    #[error("invalid batch: {0}")]
    Invalid(String),
    /// Encoding failed inside the CBOR writer or the zstd compressor.
    #[error("could not encode batch: {0}")]
    Encode(String),
    /// A referenced batch (format v7) names a series table the reader was
    /// not given ([`super::reference`]): the sender must send the batch
    /// again with its table.
    #[error("batch refers to series table {} which this reader does not hold; send the batch with its table", super::reference::hex(.id))]
    UnknownTable {
        /// The table id in the batch's envelope.
        id: super::reference::TableId,
    },
}

impl WireError {
    /// A short stable label for metrics: `bad_magic`, `bad_version`,
    /// `too_large`, `decompress`, `malformed`, `invalid`, `encode` or
    /// `unknown_series_table`.
    pub fn reason(&self) -> &'static str {
        match self {
            WireError::BadMagic { .. } => "bad_magic",
            WireError::UnsupportedVersion { .. } => "bad_version",
            WireError::TooLarge { .. } => "too_large",
            WireError::Decompress(_) => "decompress",
            WireError::Malformed(_) => "malformed",
            WireError::Invalid(_) => "invalid",
            WireError::Encode(_) => "encode",
            WireError::UnknownTable { .. } => "unknown_series_table",
        }
    }

    /// Whether the batch was refused for exceeding a size or count limit
    /// (HTTP 413) rather than for being broken (HTTP 400).
    pub fn is_too_large(&self) -> bool {
        matches!(self, WireError::TooLarge { .. })
    }

    pub(crate) fn too_large(what: String, limit: usize, key: &'static str) -> WireError {
        WireError::TooLarge {
            what,
            limit: limit as u64,
            key,
        }
    }
}

impl From<minicbor::encode::Error<std::convert::Infallible>> for WireError {
    fn from(e: minicbor::encode::Error<std::convert::Infallible>) -> Self {
        WireError::Encode(e.to_string())
    }
}
