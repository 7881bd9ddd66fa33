//! Sources bring readings in. Each is a task that gets an output channel and
//! a shutdown token and runs until told to stop; a fault in one device never
//! stops the source or the others (it is logged, counted and retried).

pub mod frames;
pub mod modbus;
pub mod mqtt;
pub mod simulated;

/// Why a source stopped for good (transient device faults are not errors:
/// they are retried inside the source).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The pipeline behind the source is gone; nothing more can be delivered.
    #[error("source {source_name:?}: the output channel is closed")]
    OutputClosed { source_name: String },
}
