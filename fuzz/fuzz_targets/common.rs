//! What both targets do with bytes that reach the relay: the same steps as
//! `POST /v1/batches` (decode within the default limits, match alarms to
//! series, validate against the time window), then what the sinks render
//! from an accepted batch (JSON messages of every kind, device events included, line protocol,
//! PostgreSQL rows).
//! Any panic is a bug; errors are the expected outcome for most inputs.

use edge_relay::message::Delivery;
use edge_relay::sink::line_protocol::{render, LineLayout};
use edge_relay::sink::postgres::Rows;
use edge_relay::validation::{check, TimeWindow};
use edge_wire::Limits;

/// A fixed "now" (2026-11-22T03:00:00Z), so a run is reproducible.
const NOW_US: i64 = 1_795_316_400_000_000;

pub fn decode_and_validate(body: &[u8]) {
    let Ok(batch) = edge_wire::decode(body, &Limits::default()) else {
        return;
    };
    let Ok(delivery) = Delivery::new(batch) else {
        return;
    };
    let _ = check(&delivery.batch, &TimeWindow::default(), NOW_US);
    for (series, point) in delivery.readings() {
        let _ = delivery.reading_json(series, point);
    }
    for (series, alarm) in delivery.alarms() {
        let _ = delivery.alarm_json(series, alarm);
    }
    for series in &delivery.batch.series {
        let _ = delivery.series_json(series);
    }
    for gap in &delivery.batch.gaps {
        let _ = delivery.gap_json(gap);
    }
    for device in &delivery.batch.devices {
        let _ = delivery.device_json(device);
    }
    let _ = render(&delivery, &LineLayout::default(), 1 << 20);
    let _ = Rows::of(&delivery);
}
