//! Integration tests of the codec (v6, and v1 to v5), one binary with
//! modules by theme:
//! - `roundtrip`: encode → decode gives back the same batch, bit for bit;
//! - `hostile`: truncated, corrupted, oversized and bomb input is refused
//!   with the right error, without panicking;
//! - `real_data`: the bytes per reading of the data sets in `testdata/`,
//!   kept at or below the targets of v6 (SKAB 1.55, NAB 4.0 at 8192);
//! - `crafted`: hand-written CBOR documents that declare more than the limits
//!   or the input hold, or break the structure, get exact error messages and
//!   cost no more memory than the bytes present;
//! - `reference`: format v7, a batch naming its series table by content id;
//! - `reporting`: the optional report-by-exception element of a v6
//!   series entry;
//! - `limit_kind`: the optional limit kind of a v6 alarm entry (element 9);
//! - `spc`: the optional SPC element of a v6 alarm entry (element 10);
//! - `v10`: format v10, the alarm state `rebaselined`;
//! - `support`: sample batches, proptest strategies, and an allocation
//!   counter (this binary's global allocator) to measure what decode reserves.

mod crafted;
mod hostile;
mod limit_kind;
mod real_data;
mod reference;
mod reporting;
mod roundtrip;
mod spc;
mod support;
mod v10;

#[global_allocator]
static ALLOCATOR: support::CountingAllocator = support::CountingAllocator;
