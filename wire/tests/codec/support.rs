//! Shared test material: a realistic sample batch, proptest strategies for
//! batches with awkward values, and a per-thread allocation counter.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;

use edge_wire::{
    decode, AlarmEvent, AlarmState, Batch, DeviceEvent, DeviceReason, DeviceState, Gap, GapReason,
    Limits, Point, Quality, ReasonKind, Series, Severity, WireError,
};
use proptest::prelude::*;

/// The system allocator, counting live bytes per thread so a test can ask
/// how much one call reserved at its peak. Tests run on their own threads,
/// so they do not see each other's allocations. (Memory zstd allocates in C
/// is not counted.)
pub struct CountingAllocator;

thread_local! {
    // Const-initialised cells without destructors: safe to touch from
    // inside the allocator.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Run `f` and return its result with the most bytes it had allocated at
/// once on this thread (beyond what was live before).
pub fn peak_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let out = f();
    let peak = PEAK.with(Cell::get);
    (out, (peak - start).max(0) as usize)
}

/// A SKAB-like batch: eight 1 Hz sensors of one pump with tags, a few
/// uncertain readings, one series of awkward values, and two alarms.
pub fn sample_batch(readings_per_series: usize) -> Batch {
    let base = 1_583_000_000_000_000i64;
    let names = [
        ("pump-1.accel1_rms", "g"),
        ("pump-1.accel2_rms", "g"),
        ("pump-1.current", "A"),
        ("pump-1.pressure", "bar"),
        ("pump-1.temperature", "degC"),
        ("pump-1.thermocouple", "degC"),
        ("pump-1.voltage", "V"),
        ("pump-1.flow_rate", "l/min"),
    ];
    let mut series: Vec<Series> = names
        .iter()
        .enumerate()
        .map(|(i, &(name, unit))| Series {
            id: i as u32 + 1,
            name: name.into(),
            unit: unit.into(),
            tags: tags(&[
                ("site", "plant-a"),
                ("line", "2"),
                ("asset", "pump-1"),
                ("protocol", "modbus"),
            ]),
            points: (0..readings_per_series)
                .map(|j| Point {
                    ts_us: base + j as i64 * 1_000_000 + (j as i64 % 7) * 13,
                    value: ((i * 1000 + j * 37 % 101) as f64) / 1000.0,
                    quality: if j % 50 == 49 {
                        Quality::Uncertain
                    } else {
                        Quality::Good
                    },
                })
                .collect(),
            reporting: None,
        })
        .collect();
    series.push(Series {
        id: 99,
        name: "pump-1.odd_values".into(),
        unit: String::new(),
        tags: BTreeMap::new(),
        points: [
            f64::NAN,
            -0.0,
            f64::INFINITY,
            0.1 + 0.2,
            1e300,
            f64::MIN_POSITIVE / 3.0,
        ]
        .iter()
        .enumerate()
        .map(|(j, &value)| Point {
            ts_us: base + j as i64,
            value,
            quality: Quality::Bad,
        })
        .collect(),
        reporting: None,
    });
    Batch {
        gateway_id: "plant-a-gw-1".into(),
        instance: None,
        seq: 42,
        created_us: base + readings_per_series as i64 * 1_000_000,
        series,
        alarms: vec![
            alarm(
                4,
                "pressure.high",
                AlarmState::Raised,
                6.25,
                6.0,
                base + 5_000_000,
            ),
            alarm(
                4,
                "pressure.high",
                AlarmState::Cleared,
                5.5,
                6.0,
                base + 9_000_000,
            ),
        ],
        gaps: Vec::new(),
        devices: Vec::new(),
    }
}

/// `batch` from a spool (instance 7) with one device event: a Modbus device
/// that went down on a timeout (a v5 batch).
pub fn with_device_event(mut batch: Batch) -> Batch {
    batch.instance = std::num::NonZeroU64::new(7);
    batch.devices.push(DeviceEvent {
        device: "press-3".into(),
        source: "modbus".into(),
        state: DeviceState::Down,
        previous: DeviceState::Ok,
        reason: Some(DeviceReason {
            kind: ReasonKind::Timeout,
            code: None,
            detail: "timed out after 500 ms".into(),
        }),
        at_us: batch.created_us,
        since_us: batch.created_us - 60_000_000,
    });
    batch
}

pub fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

pub fn alarm(
    series_id: u32,
    rule: &str,
    state: AlarmState,
    value: f64,
    limit: f64,
    ts_us: i64,
) -> AlarmEvent {
    AlarmEvent {
        series_id,
        spc: None,
        rule: rule.into(),
        state,
        value,
        limit,
        ts_us,
        severity: None,
        duration_us: None,
        limit_kind: None,
    }
}

/// Any `f64`, weighted towards the values codecs get wrong.
pub fn awkward_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        // NaNs with odd payloads and either sign.
        (any::<bool>(), 1u64..(1 << 52)).prop_map(|(neg, payload)| f64::from_bits(
            ((neg as u64) << 63) | 0x7ff0_0000_0000_0000 | payload
        )),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(0.0),
        (1u64..(1 << 52)).prop_map(f64::from_bits), // subnormals
        decimal_f64(0..=9),
        (-1000i64..1000).prop_map(|m| m as f64),
    ]
}

/// A value that looks like a decimal reading: an integer over 10^k.
pub fn decimal_f64(scales: std::ops::RangeInclusive<u32>) -> impl Strategy<Value = f64> {
    (-10_000_000_000i64..10_000_000_000, scales).prop_map(|(m, k)| m as f64 / 10f64.powi(k as i32))
}

fn quality() -> impl Strategy<Value = Quality> {
    prop_oneof![
        8 => Just(Quality::Good),
        1 => Just(Quality::Uncertain),
        1 => Just(Quality::Bad),
    ]
}

/// Timestamps either on a jittery grid (the common case) or anywhere.
fn timestamps(n: usize) -> impl Strategy<Value = Vec<i64>> {
    prop_oneof![
        (
            any::<i64>(),
            1i64..10_000_000,
            prop::collection::vec(-5i64..5, n)
        )
            .prop_map(|(start, step, jitter)| {
                jitter
                    .iter()
                    .enumerate()
                    .map(|(i, j)| {
                        start
                            .wrapping_add(step.wrapping_mul(i as i64))
                            .wrapping_add(*j)
                    })
                    .collect()
            }),
        prop::collection::vec(any::<i64>(), n),
    ]
}

/// Points of one series: all decimals at one scale, decimals with a few
/// awkward values among them (decimal coding with exceptions), or any mix
/// of awkward values (usually the XOR coding).
fn points() -> impl Strategy<Value = Vec<Point>> {
    (0usize..40, 0..3, 0u32..=9).prop_flat_map(|(n, mode, k)| {
        let values = match mode {
            0 => prop::collection::vec(decimal_f64(k..=k), n).boxed(),
            1 => prop::collection::vec(
                (decimal_f64(k..=k), awkward_f64(), prop::bool::weighted(0.1)),
                n,
            )
            .prop_map(|vs| {
                vs.into_iter()
                    .map(|(decimal, odd, pick_odd)| if pick_odd { odd } else { decimal })
                    .collect()
            })
            .boxed(),
            _ => prop::collection::vec(awkward_f64(), n).boxed(),
        };
        (timestamps(n), values, prop::collection::vec(quality(), n)).prop_map(|(ts, vs, qs)| {
            ts.into_iter()
                .zip(vs)
                .zip(qs)
                .map(|((ts_us, value), quality)| Point {
                    ts_us,
                    value,
                    quality,
                })
                .collect()
        })
    })
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,16}"
}

fn series(id: u32) -> impl Strategy<Value = Series> {
    (
        text(),
        text(),
        prop::collection::btree_map(text(), text(), 0..4),
        points(),
    )
        .prop_map(move |(name, unit, tags, points)| Series {
            id,
            name,
            unit,
            tags,
            points,
            reporting: None,
        })
}

/// Any valid gap record: `last_us` not before `first_us`.
pub fn gap() -> impl Strategy<Value = Gap> {
    (
        prop::sample::select(vec![
            GapReason::SpoolFull,
            GapReason::MaxAge,
            GapReason::DeviceDropped,
        ]),
        any::<i64>(),
        any::<i64>(),
        any::<u64>(),
        any::<u64>(),
        any::<i64>(),
    )
        .prop_map(|(reason, a, b, readings, batches, recorded_us)| Gap {
            reason,
            first_us: a.min(b),
            last_us: a.max(b),
            readings,
            batches,
            recorded_us,
        })
}

/// Any device event: every state pair, with or without a reason, awkward
/// text and times.
pub fn device_event() -> impl Strategy<Value = DeviceEvent> {
    let state = || prop::sample::select(DeviceState::ALL.to_vec());
    let reason = prop::option::of(
        (
            prop::sample::select(ReasonKind::ALL.to_vec()),
            prop::option::of(any::<u8>()),
            text(),
        )
            .prop_map(|(kind, code, detail)| DeviceReason { kind, code, detail }),
    );
    (
        text(),
        text(),
        state(),
        state(),
        reason,
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(
            |(device, source, state, previous, reason, at_us, since_us)| DeviceEvent {
                device,
                source,
                state,
                previous,
                reason,
                at_us,
                since_us,
            },
        )
}

/// Any valid batch: unique series ids, alarms naming series of the batch,
/// (in about one batch of three) gap records and (in about one of three
/// with a spool instance) device events.
pub fn batch() -> impl Strategy<Value = Batch> {
    prop::collection::btree_set(any::<u32>(), 0..6)
        .prop_flat_map(|ids| {
            let series: Vec<_> = ids.into_iter().map(series).collect();
            (text(), any::<u64>(), any::<i64>(), series)
        })
        .prop_flat_map(|(gateway_id, seq, created_us, series)| {
            let ids: Vec<u32> = series.iter().map(|s| s.id).collect();
            let alarms = if ids.is_empty() {
                Just(Vec::new()).boxed()
            } else {
                let alarm = (
                    prop::sample::select(ids),
                    text(),
                    prop::sample::select(vec![
                        AlarmState::Raised,
                        AlarmState::Cleared,
                        AlarmState::Acknowledged,
                    ]),
                    awkward_f64(),
                    awkward_f64(),
                    any::<i64>(),
                    prop::option::of(prop::sample::select(vec![
                        Severity::Warning,
                        Severity::Major,
                        Severity::Critical,
                    ])),
                    prop::option::of(any::<i64>()),
                )
                    .prop_map(
                        |(id, rule, state, value, limit, ts, severity, duration_us)| AlarmEvent {
                            severity,
                            duration_us,
                            limit_kind: None,
                            ..alarm(id, &rule, state, value, limit, ts)
                        },
                    );
                prop::collection::vec(alarm, 0..4).boxed()
            };
            (
                Just(gateway_id),
                Just(seq),
                Just(created_us),
                Just(series),
                alarms,
                prop_oneof![
                    2 => Just(Vec::new()),
                    1 => prop::collection::vec(gap(), 1..4),
                ],
                // v4 batches (a spool instance) and v2/v3 ones (none).
                prop::option::of(1u64..).prop_map(|i| i.and_then(std::num::NonZeroU64::new)),
                prop_oneof![
                    2 => Just(Vec::new()),
                    1 => prop::collection::vec(device_event(), 1..4),
                ],
            )
        })
        .prop_map(
            |(gateway_id, seq, created_us, series, alarms, gaps, instance, devices)| Batch {
                gateway_id,
                // Device events only travel with a spool instance (v5).
                devices: if instance.is_some() {
                    devices
                } else {
                    Vec::new()
                },
                instance,
                seq,
                created_us,
                series,
                alarms,
                gaps,
            },
        )
}

pub fn decode_default(bytes: &[u8]) -> Result<edge_wire::Batch, WireError> {
    decode(bytes, &Limits::default())
}

/// Decode with default limits; the error, and the peak bytes allocated.
pub fn decode_err_measured(bytes: &[u8]) -> (WireError, usize) {
    let (result, peak) = peak_allocation(|| decode_default(bytes));
    (result.expect_err("hostile input must not decode"), peak)
}
