//! Table tests of report by exception: each row is a stream of readings of
//! one series and the verdicts the filter must give, one per reading.

use std::sync::Arc;

use super::*;
use crate::detect::Rule;
use crate::reading::AlarmState;

const S: i64 = 1_000_000;

fn series(name: &str) -> Arc<SeriesInfo> {
    Arc::new(SeriesInfo {
        name: name.into(),
        unit: "bar".into(),
        tags: [("line".to_string(), "L1".to_string())].into(),
    })
}

/// Deadband 0.5, heartbeat 60 s, on series "p".
fn rule() -> ExceptionRule {
    ExceptionRule {
        selector: Selector::Series("p".into()),
        deadband: 0.5,
        max_silence_us: 60 * S,
    }
}

fn at(t_s: i64, value: f64) -> Reading {
    with_quality(t_s, value, Quality::Good)
}

fn with_quality(t_s: i64, value: f64, quality: Quality) -> Reading {
    Reading {
        series: series("p"),
        ts_us: t_s * S,
        value,
        quality,
    }
}

/// `None` for a held reading.
fn verdicts(rule: ExceptionRule, readings: &[Reading]) -> Vec<Option<Why>> {
    let mut f = ExceptionFilter::new(&[rule]);
    readings
        .iter()
        .map(|r| match f.judge(r) {
            Verdict::Send(why, _) => Some(why),
            Verdict::Hold => None,
            Verdict::Unfiltered => panic!("series p is filtered"),
        })
        .collect()
}

/// (case, rule, readings in order, the verdict on each).
type Case = (&'static str, ExceptionRule, Vec<Reading>, Vec<Option<Why>>);

#[test]
fn verdict_table() {
    use crate::reading::Quality::{Bad, Good, Uncertain};
    use Why::*;
    let nan = f64::NAN;
    let q = with_quality;
    let table: Vec<Case> = vec![
        (
            "first is sent, small moves held",
            rule(),
            vec![at(0, 10.0), at(1, 10.4), at(2, 9.6), at(3, 10.5)],
            vec![Some(First), None, None, None],
        ),
        (
            "exactly the deadband is held, more is sent",
            rule(),
            vec![at(0, 10.0), at(1, 10.5), at(2, 10.51)],
            vec![Some(First), None, Some(Moved)],
        ),
        (
            "a drift is measured from the last sent, not the last seen",
            rule(),
            vec![
                at(0, 10.0),
                at(1, 10.3),
                at(2, 10.6),
                at(3, 10.9),
                at(4, 11.2),
            ],
            vec![Some(First), None, Some(Moved), None, Some(Moved)],
        ),
        (
            "a fall counts as a move",
            rule(),
            vec![at(0, 10.0), at(1, 9.4)],
            vec![Some(First), Some(Moved)],
        ),
        (
            "heartbeat: the sample 60 s after the last sent, then held again",
            rule(),
            vec![
                at(0, 10.0),
                at(30, 10.0),
                at(59, 10.1),
                at(60, 10.1),
                at(61, 10.1),
            ],
            vec![Some(First), None, None, Some(Heartbeat), None],
        ),
        (
            "a move restarts the heartbeat",
            rule(),
            vec![at(0, 10.0), at(40, 11.0), at(70, 11.0), at(100, 11.0)],
            vec![Some(First), Some(Moved), None, Some(Heartbeat)],
        ),
        (
            "NaN is sent, and so is the value after it",
            rule(),
            vec![
                at(0, 10.0),
                at(1, nan),
                at(2, nan),
                at(3, 10.0),
                at(4, 10.0),
            ],
            vec![
                Some(First),
                Some(NotFinite),
                Some(NotFinite),
                Some(NotFinite),
                None,
            ],
        ),
        (
            "infinities are never hidden",
            rule(),
            vec![at(0, 10.0), at(1, f64::INFINITY), at(2, f64::NEG_INFINITY)],
            vec![Some(First), Some(NotFinite), Some(NotFinite)],
        ),
        (
            "bad and uncertain readings are all sent; back to good is sent",
            rule(),
            vec![
                at(0, 10.0),
                q(1, 10.0, Bad),
                q(2, 10.0, Bad),
                q(3, 10.0, Uncertain),
                q(4, 10.0, Good),
                q(5, 10.0, Good),
            ],
            vec![
                Some(First),
                Some(NotGood),
                Some(NotGood),
                Some(NotGood),
                Some(NotGood),
                None,
            ],
        ),
        (
            "a clock step back is sent and becomes the reference",
            rule(),
            vec![at(100, 10.0), at(50, 10.0), at(51, 10.0), at(110, 10.0)],
            vec![Some(First), Some(ClockBack), None, Some(Heartbeat)],
        ),
        (
            "deadband 0 holds only exact repeats",
            ExceptionRule {
                deadband: 0.0,
                ..rule()
            },
            vec![at(0, 1.0), at(1, 1.0), at(2, 1.0000001), at(3, 1.0000001)],
            vec![Some(First), None, Some(Moved), None],
        ),
    ];
    for (name, rule, readings, want) in table {
        assert_eq!(verdicts(rule, &readings), want, "{name}");
    }
}

#[test]
fn series_no_rule_selects_are_unfiltered_and_the_first_matching_rule_wins() {
    let by_tag = ExceptionRule {
        selector: Selector::Tags([("line".to_string(), "L1".to_string())].into()),
        deadband: 5.0,
        max_silence_us: 10 * S,
    };
    let mut f = ExceptionFilter::new(&[rule(), by_tag]);
    let other = Reading {
        series: Arc::new(SeriesInfo {
            name: "q".into(),
            unit: String::new(),
            tags: Default::default(),
        }),
        ..at(0, 1.0)
    };
    assert_eq!(f.judge(&other), Verdict::Unfiltered);
    // "p" matches both: the first rule (deadband 0.5) applies.
    let v = f.judge(&at(0, 1.0));
    assert_eq!(v.reporting().map(|r| r.deadband), Some(0.5));
    // "p2" has the tag only: the second rule, 5.0 and 10 s on the wire.
    let p2 = Reading {
        series: series("p2"),
        ..at(0, 1.0)
    };
    let r = f.judge(&p2).reporting().unwrap();
    assert_eq!((r.deadband, r.max_silence_ms), (5.0, 10_000));
    assert!(ExceptionFilter::new(&[]).is_off());
}

/// Guards against the filter rewriting time: a held value is never sent
/// with a made-up timestamp; what travels is the samples that were taken,
/// each with its own time, the heartbeat included.
#[test]
fn a_held_value_keeps_its_real_sample_timestamps_and_the_heartbeat_fires() {
    let mut f = ExceptionFilter::new(&[rule()]);
    // A steady 10.0 sampled every 7 s for 200 s, then a step to 12.
    let mut readings: Vec<Reading> = (0..=28).map(|i| at(i * 7, 10.0)).collect();
    readings.push(at(203, 12.0));
    let sent: Vec<(i64, f64, Option<Why>)> = readings
        .iter()
        .filter_map(|r| match f.judge(r) {
            Verdict::Send(why, _) => Some((r.ts_us / S, r.value, Some(why))),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        vec![
            (0, 10.0, Some(Why::First)),
            // 63 is the first sample at least 60 s after 0, then 126, 189.
            (63, 10.0, Some(Why::Heartbeat)),
            (126, 10.0, Some(Why::Heartbeat)),
            (189, 10.0, Some(Why::Heartbeat)),
            (203, 12.0, Some(Why::Moved)),
        ]
    );
    // Every sent timestamp is one of the samples'.
    assert!(sent
        .iter()
        .all(|(t, _, _)| readings.iter().any(|r| r.ts_us == t * S)));
}

/// Guards against the filter ever standing between a sample and the
/// detector: a spike held by a wide deadband still raises and clears.
#[test]
fn alarms_are_judged_on_every_sample_before_the_filter() {
    let wide = ExceptionRule {
        deadband: 100.0,
        ..rule()
    };
    let mut limit = Rule::min_max("p.high", "p", None, Some(10.5));
    limit.selector = Selector::Series("p".into());
    let mut intake = Intake {
        detector: Detector::new(&[limit]),
        filter: ExceptionFilter::new(&[wide]),
    };
    let mut states = Vec::new();
    let mut sent = 0;
    for r in [at(0, 10.0), at(1, 11.0), at(2, 10.0)] {
        let (alarms, verdict) = intake.take(&r);
        states.extend(alarms.iter().map(|a| a.state));
        sent += usize::from(verdict.sends());
    }
    assert_eq!(states, vec![AlarmState::Raised, AlarmState::Cleared]);
    assert_eq!(sent, 1, "only the first reading passes a deadband of 100");
}
