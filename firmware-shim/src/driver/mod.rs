//! Sensor drivers on `embedded-hal` 1.0 traits.
pub mod sht4x;
