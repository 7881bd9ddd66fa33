//! Seeding the detector with the alarms that were active before a restart.

use super::*;

fn active(rule: &str, raised_s: i64) -> ActiveAlarm {
    ActiveAlarm {
        rule: rule.into(),
        series: "s".into(),
        raised_us: raised_s * 1_000_000,
        limit: 10.0,
        severity: Severity::Major,
    }
}

fn seeded(r: Rule, seeds: Vec<ActiveAlarm>) -> Detector {
    let mut d = Detector::new(&[r]);
    assert!(d.seed(seeds).is_empty());
    d
}

/// Guards against a restart raising an alarm that is already raised.
#[test]
fn seeded_alarm_still_over_the_limit_raises_nothing() {
    let mut d = seeded(high(10.0), vec![active("r.high", 5)]);
    assert!(run_alarms(&mut d, &[V(100, 12.0), V(101, 13.0)]).is_empty());
    assert_eq!(d.active(), vec![active("r.high", 5)]);
}

/// Guards against a restart forgetting to clear: the clear comes once, with
/// the duration counted from the raise before the restart.
#[test]
fn seeded_alarm_back_inside_clears_once_with_persisted_duration() {
    let mut d = seeded(high(10.0), vec![active("r.high", 5)]);
    let a = run_alarms(&mut d, &[V(100, 8.0), V(101, 7.0)]);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!((a[0].state, a[0].rule.as_str()), (Cleared, "r.high"));
    assert_eq!(a[0].duration_us, Some(95_000_000));
    assert!(d.active().is_empty());
}

#[test]
fn seeded_limit_alarm_keeps_its_deadband() {
    let mut d = seeded(
        with(high(10.0), |r| r.deadband = 1.0),
        vec![active("r.high", 0)],
    );
    assert!(
        run_alarms(&mut d, &[V(1, 9.5)]).is_empty(),
        "inside the deadband"
    );
    let a = run_alarms(&mut d, &[V(2, 8.5)]);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].state, Cleared);
}

#[test]
fn seeded_stale_alarm_clears_on_the_first_reading() {
    let r = with(rule(), |r| {
        r.stale = Some(Timeout {
            after_us: 30_000_000,
            severity: Severity::Warning,
        })
    });
    let mut d = seeded(r, vec![active("r.stale", 40)]);
    let a = run_alarms(&mut d, &[V(100, 1.0)]);
    assert_eq!(a.len(), 1);
    assert_eq!((a[0].state, a[0].duration_us), (Cleared, Some(60_000_000)));
}

#[test]
fn active_lists_raises_and_seeds_of_unseen_series() {
    let mut d = Detector::new(&[high(10.0)]);
    let mut other = active("r.high", 1);
    other.series = "t".into();
    d.seed(vec![other.clone()]);
    run_alarms(&mut d, &[V(3, 20.0)]);
    let mut raised = active("r.high", 3);
    raised.limit = 10.0;
    assert_eq!(d.active(), vec![raised, other]);
}

#[test]
fn seed_hands_back_alarms_no_rule_produces() {
    let mut d = Detector::new(&[high(10.0)]);
    let gone = active("removed.high", 1);
    assert_eq!(d.seed(vec![gone.clone(), active("r.high", 1)]), vec![gone]);
    assert_eq!(d.active().len(), 1);
}

#[test]
fn seeding_a_series_already_seen_applies_at_once() {
    let mut d = Detector::new(&[high(10.0)]);
    run_alarms(&mut d, &[V(1, 5.0)]);
    d.seed(vec![active("r.high", 0)]);
    let a = run_alarms(&mut d, &[V(2, 5.0)]);
    assert_eq!((a.len(), a[0].duration_us), (1, Some(2_000_000)));
}
