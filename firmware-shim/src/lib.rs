//! `firmware-shim`: a `no_std` crate for microcontroller firmware that samples
//! sensors through `embedded-hal` traits and frames readings for the edge
//! agent.
//!
//! For now it only fixes the crate's shape (no_std, no unsafe, documented);
//! the sampling drivers and the frame format come with their own issue.
#![no_std]
#![deny(unsafe_code)]
#![deny(missing_docs)]

/// Version of the frame format the shim will speak.
pub const FRAME_VERSION: u8 = 1;
