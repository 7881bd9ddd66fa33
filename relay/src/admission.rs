//! Admission: what a request must get before the relay spends memory on it.
//!
//! - [`budget`]: one decode budget, in bytes, shared by every request. A
//!   batch reserves the most its decoding can hold
//!   ([`edge_wire::decode_bound`], known before anything is inflated) and
//!   keeps the decoded part until its request ends; a request that cannot
//!   get its reservation within `admission.decode_wait_ms` gets 503 with
//!   `Retry-After`. So memory spent on decoding is bounded by configuration,
//!   whatever the input.
//!
//! Not here: the limits of one batch ([`edge_wire::Limits`], 413), the
//! connection limits ([`crate::server`]).

pub mod budget;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use edge_wire::codec::reference;
use edge_wire::{Batch, Limits, WireError};

pub use budget::{Busy, DecodeBudget, Reservation};

use crate::message::{Delivery, UnknownSeries};

/// Default of `admission.decode_budget_bytes`: 128 MiB.
pub const DEFAULT_DECODE_BUDGET_BYTES: usize = 128 << 20;
/// Default of `admission.decode_wait_ms`.
pub const DEFAULT_DECODE_WAIT_MS: u64 = 100;

/// The `[admission]` section, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Most bytes all requests together may hold while decoding (input, decompressed document, decoder buffers, decoded batch); default 134217728 (128 MiB).
    pub decode_budget_bytes: usize,
    /// Longest a request waits for decode budget before it gets 503 with Retry-After, in milliseconds (default 100).
    pub decode_wait: Duration,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            decode_budget_bytes: DEFAULT_DECODE_BUDGET_BYTES,
            decode_wait: Duration::from_millis(DEFAULT_DECODE_WAIT_MS),
        }
    }
}

/// Why a body did not become a [`Delivery`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a batch, or over a limit ([`WireError::is_too_large`]: 413).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// An alarm names a series the batch does not define (400).
    #[error(transparent)]
    Series(#[from] UnknownSeries),
    /// No decode budget within the wait (503 with `Retry-After`).
    #[error(transparent)]
    Busy(#[from] Busy),
    /// The decoder task failed (a bug: 500).
    #[error("decoder task failed: {0}")]
    Task(String),
}

/// Decode `body` within `budget`: refuse what the envelope and the declared
/// sizes already show to be over `limits` (nothing reserved, nothing
/// inflated), reserve the most decoding may hold, decode on a blocking
/// thread, then keep only the estimate of the decoded batch reserved. The
/// caller holds the [`Reservation`] while the batch is in memory.
///
/// A referenced batch (format v7 or v9) decodes with `table`, the bytes of the
/// series table it names (the caller looked it up); the delivery carries
/// the table of a v6 to v9 batch ([`Delivery::table`]).
pub async fn decode(
    budget: &Arc<DecodeBudget>,
    limits: &Limits,
    body: Bytes,
    table: Option<Arc<[u8]>>,
) -> Result<(Delivery, Reservation), DecodeError> {
    let table_len = table.as_ref().map_or(0, |t| t.len());
    let bound = reference::decode_bound(&body, table_len, limits)?;
    let mut reservation = budget.reserve(bound).await?;
    let limits = limits.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        let result = reference::decode_parts(&body, &limits, table.as_deref())
            .map_err(DecodeError::from)
            .and_then(|parts| {
                let mut delivery = Delivery::new(parts.batch)?;
                delivery.table = parts.table;
                Ok(delivery)
            });
        drop(body);
        if bound >= TRIM_ABOVE_BYTES {
            give_back_to_os();
        }
        result
    })
    .await
    .map_err(|e| DecodeError::Task(e.to_string()))??;
    reservation.shrink_to(held_bytes(&decoded.batch));
    Ok((decoded, reservation))
}

/// An estimate of the heap a decoded batch holds.
fn held_bytes(batch: &Batch) -> usize {
    use std::mem::size_of;
    batch.reading_count() * size_of::<edge_wire::Point>()
        + batch.series.len() * (size_of::<edge_wire::Series>() + 256)
        + batch.alarms.len() * (size_of::<edge_wire::AlarmEvent>() + 64)
        + batch.gaps.len() * size_of::<edge_wire::Gap>()
        + batch.devices.len() * (size_of::<edge_wire::DeviceEvent>() + 64)
}

/// Decodes that may have held this much call [`give_back_to_os`] after.
const TRIM_ABOVE_BYTES: usize = 4 << 20;

/// Make freed heap memory go back to the operating system (glibc keeps
/// freed memory in its arenas otherwise, one arena per thread that
/// allocated: a burst of bombs on many blocking threads would stay in the
/// relay's RSS). Elsewhere a no-op.
pub fn give_back_to_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and releases the allocator's free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Tune the allocator once at start-up: allocations from 1 MiB up (decode
/// buffers, decoded columns) get their own mappings, returned to the
/// operating system on free, instead of glibc's default threshold that
/// rises to 32 MiB after the first large free and then keeps such buffers
/// in the heap. Elsewhere a no-op.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tuning parameter of the allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
