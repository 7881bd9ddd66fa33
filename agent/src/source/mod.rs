//! Sources bring readings in. Each is a task that gets an output channel and
//! a shutdown token and runs until told to stop; a fault in one device never
//! stops the source or the others (it is logged, counted and retried).

pub mod frames;
pub mod modbus;
pub mod mqtt;
pub mod simulated;
pub mod sparkplug;

use tokio::sync::mpsc;

use crate::devices::{DeviceBoard, DeviceKey, Transition};
use crate::reading::{now_us, Input};
use crate::stats::AgentStats;

/// Put a device's state on the board (`update` gets the board, the key and
/// the time); a change worth an event goes to the pipeline on `out`, behind
/// the readings the source sent before it.
pub(crate) async fn report_device(
    stats: &AgentStats,
    out: &mpsc::Sender<Input>,
    key: &DeviceKey,
    update: impl FnOnce(&mut DeviceBoard, &DeviceKey, i64) -> Option<Transition>,
) -> Result<(), SourceError> {
    match stats.devices.with(|b| update(b, key, now_us())) {
        Some(t) if t.worth_an_event() => {
            out.send(Input::Device(t))
                .await
                .map_err(|_| SourceError::OutputClosed {
                    source_name: format!("{} {}", key.kind.as_str(), key.name),
                })
        }
        _ => Ok(()),
    }
}

/// Why a source stopped for good (transient device faults are not errors:
/// they are retried inside the source).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The pipeline behind the source is gone; nothing more can be delivered.
    #[error("source {source_name:?}: the output channel is closed")]
    OutputClosed { source_name: String },
}
