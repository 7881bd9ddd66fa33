//! The pipeline between the sources and the spool: every reading goes
//! through the detector, then (for a series reported by exception) the
//! filter of [`crate::exception`], and what the filter passes through the
//! batcher; sealed batches and alarm events are
//! committed to the spool (`store`), alarm events also handed to the
//! local publisher. A device-state transition a source reports
//! (`Input::Device`) is committed at once as a device event in the priority
//! lane (`report`), like an alarm; the source has logged it already.
//!
//! Guarantees: a batch is committed before anything downstream (the
//! forwarder, an MQTT acknowledgement) learns of it; a batch the spool
//! refuses is retried, holding the sources back, and never dropped, except
//! after shutdown, when it is recorded as a gap so the agent stops in time
//! (see `store`); every drop the spool's bounds make is counted and
//! logged (`count_gaps`). Readings reach the points board
//! ([`crate::points`]) once per batch and once a second, under one lock
//! each time, not once per reading; alarm events reach the shared alarm
//! board ([`crate::publish::shared`]) before the local publisher hears of
//! them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::batch::{self, Batcher};
use crate::config::AgentConfig;
use crate::detect::{ActiveAlarm, Detector};
use crate::exception::{ExceptionFilter, Intake};
use crate::publish::shared::SharedAlarms;
use crate::publish::LocalEvent;
use crate::reading::Reading;
use crate::reading::{now_us, Alarm, AlarmState, Input};
use crate::rebaseline;
use crate::spool::Mark;
use crate::spool::{self, Lane, SharedSpool};
use crate::stats::AgentStats;
use crate::timing::{sleep_until, LogLimiter};

/// Where the pipeline sends alarm events besides the spool.
pub(crate) struct AlarmOutlets<'a> {
    pub(crate) spool: &'a SharedSpool,
    pub(crate) wake: &'a Notify,
    pub(crate) stats: &'a AgentStats,
    pub(crate) gateway_id: &'a str,
    /// The raised alarms and recent events the status page and the local
    /// publisher show.
    pub(crate) alarms: &'a SharedAlarms,
    /// The local MQTT publisher, when `[alarm_publish]` is configured.
    pub(crate) local: Option<&'a mpsc::Sender<LocalEvent>>,
    /// The agent's shutdown: from then on a batch the spool refuses is
    /// recorded as a gap instead of waited on ([`store`]).
    pub(crate) stop: &'a CancellationToken,
}

/// Detect, batch and spool every reading until all sources have stopped.
/// `active` are the alarms raised before a restart, from the spool.
/// A microcontroller sample's readings go into one batch, committed with
/// its mark.
/// Re-baselining requests ([`crate::rebaseline`]) arrive on `commands`,
/// applied between readings.
pub(crate) async fn pipeline(
    config: &AgentConfig,
    active: Vec<ActiveAlarm>,
    mut rx: mpsc::Receiver<Input>,
    mut commands: mpsc::Receiver<rebaseline::Command>,
    outlets: AlarmOutlets<'_>,
) {
    let mut intake = Intake {
        detector: Detector::new(&config.rules),
        filter: ExceptionFilter::new(&config.report_by_exception),
    };
    let seeded = active.len();
    for a in intake.detector.seed(active) {
        warn!(series = %a.series, rule = %a.rule, raised_us = a.raised_us, "alarm raised before the restart belongs to no configured rule; it stays raised");
    }
    if seeded > 0 {
        info!(
            alarms = seeded,
            "alarms still raised from before the restart"
        );
    }
    let spc = config.rules.iter().any(|r| r.spc.is_some());
    if spc {
        seed_spc(&mut intake.detector, outlets.spool).await;
    }
    let mut batcher = Batcher::new(&config.gateway_id, config.batch);
    // Marks of the samples in the open batch.
    let mut marks: Vec<Mark> = Vec::new();
    // Readings report by exception held back while a batch was open: they
    // count as settled (`readings_filtered`) only once that batch is
    // committed, so MQTT and frames acknowledgements never run ahead.
    let mut held: u64 = 0;
    // Readings taken since the points board was last updated.
    let mut seen: Vec<Reading> = Vec::new();
    // Stale rules see silence only when time passes, not when readings do.
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = batcher.deadline();
        let (alarms, seal_now) = tokio::select! {
            input = rx.recv() => match input {
                Some(input) => {
                    let (mut alarms, mut seal) = (Vec::new(), false);
                    for r in input.readings() {
                        // Detection first, on every sample; the filter
                        // only decides what the batch gets.
                        let (raised, verdict) = intake.take(r);
                        alarms.extend(raised);
                        if verdict.sends() {
                            seal |= batcher.push_reported(r, verdict.reporting(), Instant::now());
                        } else if batcher.is_empty() {
                            outlets.stats.readings_filtered.inc();
                        } else {
                            held += 1;
                        }
                    }
                    seen.extend_from_slice(input.readings());
                    match input {
                        Input::Sample { mark, .. } => marks.push(mark),
                        Input::Device(t) => report(t, &outlets).await,
                        Input::Reading(_) => {}
                    }
                    (alarms, seal)
                }
                None => break,
            },
            _ = clock.tick() => {
                outlets.stats.points.update(&seen);
                seen.clear();
                (intake.detector.tick(now_us()), false)
            }
            _ = sleep_until(deadline), if deadline.is_some() => (Vec::new(), true),
            Some(command) = commands.recv() => {
                rebaseline(command, &mut intake.detector, &outlets).await;
                (Vec::new(), false)
            }
        };
        if !alarms.is_empty() {
            raise(alarms, &outlets).await;
        }
        if seal_now {
            outlets.stats.points.update(&seen);
            seen.clear();
            commit(&mut batcher, &mut marks, &outlets).await;
            if spc {
                save_spc(&intake.detector, outlets.spool).await;
            }
            outlets
                .stats
                .readings_filtered
                .add(std::mem::take(&mut held));
        }
    }
    outlets.stats.points.update(&seen);
    commit(&mut batcher, &mut marks, &outlets).await;
    if spc {
        save_spc(&intake.detector, outlets.spool).await;
    }
    outlets.stats.readings_filtered.add(held);
}

/// Give the detector the SPC baselines and charts saved before the restart.
/// A state the config no longer matches (its baseline keys changed, or the
/// test is gone) is dropped, and logged: that is the record of an explicit
/// re-baselining.
async fn seed_spc(detector: &mut Detector, spool: &SharedSpool) {
    let (states, unreadable) = match spool.call(|s| s.spc_states()).await {
        Ok(loaded) => loaded,
        Err(error) => {
            warn!(%error, "cannot read the saved SPC baselines; every SPC test learns its baseline again");
            return;
        }
    };
    if unreadable > 0 {
        warn!(
            rows = unreadable,
            "saved SPC states that do not parse; those tests learn their baselines again"
        );
    }
    let saved = states.len();
    for s in detector.seed_spc(states, now_us()) {
        info!(series = %s.series, rule = %s.rule, was = %s.fingerprint, "SPC baseline dropped: the rule's baseline keys changed or the test is gone (re-baselining); it is learned again");
    }
    if saved > 0 {
        info!(
            charts = saved,
            "SPC baselines and charts from before the restart"
        );
    }
}

/// Apply one re-baselining request: its events are committed and
/// published like alarm events, then the SPC state is saved at once (a
/// restart must not bring the dropped baselines back), then the caller
/// is answered.
async fn rebaseline(
    command: rebaseline::Command,
    detector: &mut Detector,
    outlets: &AlarmOutlets<'_>,
) {
    let rebaseline::Command {
        request,
        by,
        via,
        reply,
    } = command;
    let result = match detector.rebaseline(&request, now_us()) {
        Ok(done) => {
            outlets.stats.spc_rebaselines.inc();
            info!(rule = %request.rule, series = ?request.series, mode = ?request.mode, %by, via = via.as_str(), dropped = ?done.series, "SPC baselines dropped on request (re-baselining); they are learned again from the next readings");
            let events = done.alarms.len();
            if !done.alarms.is_empty() {
                raise(done.alarms, outlets).await;
            }
            save_spc(detector, outlets.spool).await;
            Ok(rebaseline::Outcome {
                series: done.series,
                events,
            })
        }
        Err(error) => {
            outlets.stats.spc_rebaselines_refused.inc();
            warn!(%error, %by, via = via.as_str(), "re-baselining request refused");
            Err(error)
        }
    };
    // The caller may have gone; the request was applied all the same.
    let _ = reply.send(result);
}

/// Save every SPC baseline and chart, after a reading batch was committed.
/// A failure is logged and the next batch tries again.
async fn save_spc(detector: &Detector, spool: &SharedSpool) {
    let states = detector.spc_states();
    if let Err(error) = spool.call(move |s| s.save_spc(&states)).await {
        warn!(%error, "cannot save the SPC baselines and charts");
    }
}

/// Count and log alarm transitions, hand them to the local publisher
/// (without waiting for it) and commit them to the spool's priority lane:
/// alarms never wait for a reading batch to fill, nor behind its backlog.
async fn raise(alarms: Vec<Alarm>, outlets: &AlarmOutlets<'_>) {
    let stats = outlets.stats;
    for alarm in &alarms {
        match alarm.state {
            AlarmState::Raised => stats.alarms_raised.inc(),
            AlarmState::Cleared => stats.alarms_cleared.inc(),
            // Counted where the request is taken (spc_rebaselines).
            AlarmState::Acknowledged | AlarmState::Rebaselined => {}
        }
        warn!(series = %alarm.series.name, rule = %alarm.rule, severity = alarm.severity.as_str(), state = alarm.state.as_str(), value = alarm.value, limit = alarm.limit, "alarm");
        outlets.alarms.apply(alarm);
        if let Some(local) = outlets.local {
            let event = LocalEvent {
                alarm: alarm.clone(),
                by: None,
            };
            if local.try_send(event).is_err() {
                stats.alarms_not_published.inc();
                warn!(series = %alarm.series.name, rule = %alarm.rule, "local alarm publisher is behind or stopped; event not published on MQTT (it is still spooled)");
            }
        }
    }
    let batch = batch::alarm_batch(outlets.gateway_id, &alarms, now_us());
    store(
        batch,
        alarms,
        Lane::Alarms,
        outlets.spool,
        stats,
        outlets.stop,
    )
    .await;
    outlets.wake.notify_one();
}

/// Commit a device's state transition as a device event to the spool's
/// priority lane, at once and ahead of the reading backlog, retried like an
/// alarm while the spool is full ([`store`]), and count it. Not logged: the
/// source that reported it has.
async fn report(transition: crate::devices::Transition, outlets: &AlarmOutlets<'_>) {
    let batch = batch::device_batch(outlets.gateway_id, vec![transition.event()], now_us());
    let stats = outlets.stats;
    if store(
        batch,
        Vec::new(),
        Lane::Alarms,
        outlets.spool,
        stats,
        outlets.stop,
    )
    .await
    {
        stats.device_events_spooled.inc();
        outlets.wake.notify_one();
    }
}

/// Seal the open reading batch and commit it to the spool, with the marks
/// of the microcontroller samples whose readings it holds. (A mark of a
/// sample without readings waits for the next batch.)
async fn commit(batcher: &mut Batcher, marks: &mut Vec<Mark>, outlets: &AlarmOutlets<'_>) {
    let Some(batch) = batcher.seal(now_us()) else {
        return;
    };
    let (spool, stats) = (outlets.spool, outlets.stats);
    let readings = batch.reading_count() as u64;
    let marks = std::mem::take(marks);
    if store_marked(
        batch,
        Vec::new(),
        marks,
        Lane::Readings,
        spool,
        stats,
        outlets.stop,
    )
    .await
    {
        stats.readings_spooled.add(readings);
        outlets.wake.notify_one();
    }
}

/// Commit `batch` (carrying `alarms`) to the spool; true once committed.
/// A failing or full spool is retried rather than the batch dropped, and
/// while a full spool refuses it the sources are held back
/// ([`AgentStats::held_back`]: Modbus and simulated sources skip their
/// polls, MQTT messages wait unacknowledged behind the bounded channel);
/// this is how `on_full = "block"` reaches them. Once `stop` is cancelled
/// (SIGTERM) a full spool is not waited on: the batch's readings are
/// recorded as a gap ([`Spool::record_unstored`]), so the agent stops in
/// time and every reading it took is spooled or in a gap. Batches the bound
/// policy dropped to make room are counted here.
pub(crate) async fn store(
    batch: edge_wire::Batch,
    alarms: Vec<Alarm>,
    lane: Lane,
    spool: &SharedSpool,
    stats: &AgentStats,
    stop: &CancellationToken,
) -> bool {
    store_marked(batch, alarms, Vec::new(), lane, spool, stats, stop).await
}

/// [`store`], with the marks of the microcontroller samples the batch
/// holds, committed with it. A batch recorded as a gap instead takes its
/// marks with it: the device resends those samples and they are taken again.
async fn store_marked(
    batch: edge_wire::Batch,
    alarms: Vec<Alarm>,
    marks: Vec<Mark>,
    lane: Lane,
    spool: &SharedSpool,
    stats: &AgentStats,
    stop: &CancellationToken,
) -> bool {
    let alarms = Arc::new(alarms);
    let marks = Arc::new(marks);
    let readings = batch.reading_count() as u64;
    let mut delay = Duration::from_millis(100);
    let mut batch = Some(batch);
    loop {
        let mut b = batch
            .take()
            .expect("batch is put back after every failed attempt");
        let (alarms, marks) = (alarms.clone(), marks.clone());
        match spool
            .call(move |s| {
                let r = s.append_marked(&mut b, &alarms, lane, &marks);
                Ok((r, b, s.take_gaps()))
            })
            .await
        {
            Ok((result, b, gaps)) => {
                count_gaps(&gaps, stats);
                match result {
                    Ok(_seq) => {
                        stats.held_back.set(false);
                        return true;
                    }
                    Err(error) if stop.is_cancelled() => {
                        if error.is_full() {
                            stats.spool_full.inc();
                        } else {
                            stats.spool_errors.inc();
                        }
                        warn!(%error, readings, ?lane, "shutting down and the spool refuses the batch");
                        return record_unstored(b, spool, stats).await;
                    }
                    Err(error) if error.is_full() => {
                        stats.spool_full.inc();
                        stats.held_back.set(true);
                        if let Some(suppressed) = spool_log_tick() {
                            warn!(%error, readings, ?lane, suppressed, "spool is full; the commit waits and the sources are held back");
                        }
                    }
                    Err(error) => {
                        stats.spool_errors.inc();
                        if let Some(suppressed) = spool_log_tick() {
                            error!(%error, readings, ?lane, suppressed, "cannot commit batch to the spool; retrying");
                        }
                    }
                }
                batch = Some(b);
            }
            Err(error) => {
                stats.readings_dropped.add(readings);
                error!(%error, readings, ?lane, "spool task failed; batch dropped");
                return false;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            // Try once more at once, then give up on a full spool.
            _ = stop.cancelled() => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// At shutdown, a batch the full spool refused: record its readings as a
/// gap. False: the batch is not spooled; if even the gap cannot be written,
/// its readings are counted as dropped and logged.
async fn record_unstored(batch: edge_wire::Batch, spool: &SharedSpool, stats: &AgentStats) -> bool {
    let readings = batch.reading_count() as u64;
    let recorded = spool
        .call(move |s| {
            let r = s.record_unstored(&batch, now_us());
            Ok((r, s.take_gaps()))
        })
        .await;
    match recorded {
        Ok((Ok(()), gaps)) => {
            count_gaps(&gaps, stats);
            warn!(
                readings,
                "shutting down with the spool full: the batch that waited is recorded as a gap"
            );
        }
        Ok((Err(error), _)) | Err(error) => {
            stats.readings_dropped.add(readings);
            error!(%error, readings, "shutting down with the spool full: the batch that waited is lost, and not even a gap could be recorded");
        }
    }
    false
}

/// One log line per 30 s for a spool that keeps refusing commits, across
/// every batch that waits.
static SPOOL_LOG: std::sync::Mutex<LogLimiter> =
    std::sync::Mutex::new(LogLimiter::new(Duration::from_secs(30)));

fn spool_log_tick() -> Option<u64> {
    SPOOL_LOG
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .allow(Instant::now())
}

/// Count and log the batches the spool's bound policy dropped. Gaps a
/// device reported (recorded by its source, which counts them) are only
/// counted as gaps here.
fn count_gaps(gaps: &[spool::Gap], stats: &AgentStats) {
    for g in gaps {
        let (readings, batches) = match g.reason {
            spool::DropReason::Full => (&stats.readings_dropped_full, &stats.batches_dropped_full),
            spool::DropReason::Age => (&stats.readings_dropped_age, &stats.batches_dropped_age),
            spool::DropReason::Device => {
                stats.spool_gaps.inc();
                continue;
            }
        };
        readings.add(g.readings);
        batches.add(g.batches);
        stats.spool_gaps.inc();
        warn!(
            reason = g.reason.as_str(),
            readings = g.readings,
            batches = g.batches,
            first_us = g.first_us,
            last_us = g.last_us,
            "spool dropped the oldest batches; gap recorded"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{Quality, Reading, SeriesInfo};
    use crate::spool::Spool;

    fn reading(series: &Arc<SeriesInfo>, v: f64) -> Reading {
        Reading {
            series: series.clone(),
            ts_us: 1_000_000 + v as i64,
            value: v,
            quality: Quality::Good,
        }
    }

    /// Run the pipeline over `inputs` with batches of `max_readings`, on a
    /// fresh spool: the spool (in the returned directory) and the stats.
    async fn run(
        max_readings: usize,
        inputs: Vec<Input>,
    ) -> (tempfile::TempDir, SharedSpool, AgentStats) {
        run_with(max_readings, "", inputs).await
    }

    /// [`run`], with `extra` config appended.
    async fn run_with(
        max_readings: usize,
        extra: &str,
        inputs: Vec<Input>,
    ) -> (tempfile::TempDir, SharedSpool, AgentStats) {
        let dir = tempfile::tempdir().unwrap();
        let (spool, stats) = run_in(dir.path(), max_readings, extra, inputs).await;
        (dir, spool, stats)
    }

    /// [`run_with`] on the spool in `dir` (a restart when it exists).
    async fn run_in(
        dir: &std::path::Path,
        max_readings: usize,
        extra: &str,
        inputs: Vec<Input>,
    ) -> (SharedSpool, AgentStats) {
        let path = dir.join("spool.db");
        let config = AgentConfig::parse(
            &format!(
                "gateway_id = \"gw\"\n[spool]\npath = \"{}\"\n[uplink]\nurl = \"http://127.0.0.1:9/ingest\"\ntoken = \"t-0123456789abcdef0123\"\n[batch]\nmax_readings = {max_readings}\nmax_age_ms = 60000\n[[simulated]]\nname = \"s\"\nmean = 1.0\n{extra}",
                path.display()
            ),
            "t.toml",
        )
        .unwrap();
        let spool = SharedSpool::new(Spool::open(&path).unwrap());
        let stats = AgentStats::default();
        let (wake, stop) = (Notify::new(), CancellationToken::new());
        let (tx, rx) = mpsc::channel(inputs.len().max(1));
        for input in inputs {
            tx.send(input).await.unwrap();
        }
        drop(tx);
        let outlets = AlarmOutlets {
            spool: &spool,
            wake: &wake,
            stats: &stats,
            gateway_id: "gw",
            alarms: &SharedAlarms::new(crate::publish::board::AlarmBoard::new("gw")),
            local: None,
            stop: &stop,
        };
        let (_path, commands) = rebaseline::RebaselinePath::channel();
        pipeline(&config, Vec::new(), rx, commands, outlets).await;
        (spool, stats)
    }

    /// A device transition is committed at once in the priority lane: its
    /// batch comes out of the spool before the reading batch committed
    /// around it, carries the event as the wire has it (v5, the spool's
    /// instance) and is counted.
    #[tokio::test]
    async fn a_device_transition_is_spooled_in_the_priority_lane() {
        use crate::devices::{DeviceKey, DeviceState, Reason, ReasonKind, SourceKind, Transition};
        let series = Arc::new(SeriesInfo {
            name: "press-3.speed".into(),
            unit: String::new(),
            tags: Default::default(),
        });
        let mut inputs: Vec<Input> = Vec::new();
        inputs.push(reading(&series, 1.0).into());
        let down = Transition {
            device: DeviceKey::new(SourceKind::Modbus, "press-3"),
            from: DeviceState::Ok,
            to: DeviceState::Down,
            reason: Some(Reason::new(ReasonKind::Timeout, "timed out after 500 ms")),
            at_us: 2_000_000,
            since_us: 1_000_000,
        };
        inputs.push(Input::Device(down.clone()));
        let (_dir, spool, stats) = run(100, inputs).await;
        let batches = spool
            .call(|s| {
                let mut out = Vec::new();
                while let Some(b) = s.oldest()? {
                    out.push((edge_wire::encoded_version(&b.body).unwrap(), b.body.clone()));
                    s.remove(b.seq)?;
                }
                Ok(out)
            })
            .await
            .unwrap();
        assert_eq!(batches.len(), 2, "the device batch and the reading batch");
        let (version, body) = &batches[0];
        assert_eq!(
            *version,
            edge_wire::FORMAT_VERSION,
            "the device batch is sent first (v8, as every batch)"
        );
        let first = edge_wire::decode(body, &Default::default()).unwrap();
        assert!(first.instance.is_some() && first.series.is_empty());
        assert_eq!(first.devices, vec![down.event()]);
        let second = edge_wire::decode(&batches[1].1, &Default::default()).unwrap();
        assert_eq!((second.reading_count(), second.devices.len()), (1, 0));
        assert_eq!(stats.device_events_spooled.get(), 1);
    }

    /// Batches hold 2 readings. A 3-reading microcontroller sample is not
    /// split: its readings and its mark are in one committed batch; plain
    /// readings before and after it seal as usual.
    #[tokio::test]
    async fn a_sample_and_its_mark_are_committed_in_one_batch() {
        let series = Arc::new(SeriesInfo {
            name: "mcu.a".into(),
            unit: String::new(),
            tags: Default::default(),
        });
        let mut inputs: Vec<Input> = Vec::new();
        inputs.push(reading(&series, 1.0).into());
        let mark = Mark::Frame(crate::spool::frames::FrameMark {
            device_id: "mcu".into(),
            boot_id: 3,
            seq: 7,
            settled: Some(6),
        });
        let readings = (10..13).map(|v| reading(&series, f64::from(v))).collect();
        inputs.push(Input::Sample { readings, mark });
        inputs.push(reading(&series, 2.0).into());
        let (_dir, spool, _) = run(2, inputs).await;
        let (progress, sizes) = spool
            .call(|s| {
                let progress = s.frame_progress("mcu")?;
                let mut sizes = Vec::new();
                while let Some(b) = s.oldest()? {
                    let batch = edge_wire::decode(&b.body, &Default::default()).unwrap();
                    let mut values: Vec<f64> = batch
                        .series
                        .iter()
                        .flat_map(|x| x.points.iter().map(|p| p.value))
                        .collect();
                    values.sort_by(f64::total_cmp);
                    sizes.push(values);
                    s.remove(b.seq)?;
                }
                Ok((progress, sizes))
            })
            .await
            .unwrap();
        let with_sample: Vec<&Vec<f64>> = sizes.iter().filter(|v| v.contains(&10.0)).collect();
        assert_eq!(with_sample.len(), 1, "{sizes:?}");
        assert!(
            [10.0, 11.0, 12.0]
                .iter()
                .all(|x| with_sample[0].contains(x)),
            "the sample's readings were split: {sizes:?}"
        );
        assert_eq!(sizes.iter().map(Vec::len).sum::<usize>(), 5, "{sizes:?}");
        let p = progress.expect("the mark was committed");
        assert_eq!((p.boot_id, p.settled, p.taken), (3, Some(6), vec![7]));
    }

    /// Report by exception in the pipeline: the spool gets the first
    /// reading, the move and the heartbeat, each with its own timestamp and
    /// the series marked as reported by exception; the rest are counted
    /// as filtered and settled; an alarm on a held sample is still raised.
    #[tokio::test]
    async fn a_series_reported_by_exception_is_filtered_after_detection() {
        let series = Arc::new(SeriesInfo {
            name: "s".into(),
            unit: String::new(),
            tags: Default::default(),
        });
        let at = |t_s: i64, v: f64| Reading {
            series: series.clone(),
            ts_us: t_s * 1_000_000,
            value: v,
            quality: Quality::Good,
        };
        // 1.0 held, 1.04 within the band, 1.2 a move, 1.2 held, 1.2 at 70 s a
        // heartbeat; 1.25 at 71 s is held but above the rule's max of 1.22.
        let inputs: Vec<Input> = [
            (0, 1.0),
            (1, 1.04),
            (2, 1.2),
            (3, 1.2),
            (70, 1.2),
            (71, 1.25),
        ]
        .into_iter()
        .map(|(t, v)| at(t, v).into())
        .collect();
        let extra = "[[report_by_exception]]\nseries = \"s\"\ndeadband_pct = 0.5\nspan = [0, 20]\nmax_silence_s = 60\n[[rules]]\nname = \"s.high\"\nseries = \"s\"\nmax = 1.22\n";
        let (_dir, spool, stats) = run_with(100, extra, inputs).await;
        let batches = spool
            .call(|s| {
                let mut out = Vec::new();
                while let Some(b) = s.oldest()? {
                    out.push(edge_wire::decode(&b.body, &Default::default()).unwrap());
                    s.remove(b.seq)?;
                }
                Ok(out)
            })
            .await
            .unwrap();
        // The alarm batch names the series too, without points.
        let readings: Vec<_> = batches
            .iter()
            .flat_map(|b| &b.series)
            .filter(|s| !s.points.is_empty())
            .collect();
        assert_eq!(readings.len(), 1, "{batches:?}");
        let s = readings[0];
        let sent: Vec<(i64, f64)> = s
            .points
            .iter()
            .map(|p| (p.ts_us / 1_000_000, p.value))
            .collect();
        assert_eq!(sent, vec![(0, 1.0), (2, 1.2), (70, 1.2)]);
        assert_eq!(
            s.reporting,
            Some(edge_wire::Reporting {
                deadband: 0.1,
                max_silence_ms: 60_000
            })
        );
        assert_eq!(stats.readings_filtered.get(), 3);
        assert_eq!(stats.readings_spooled.get(), 3);
        assert_eq!(stats.readings_settled(), 6);
        assert_eq!(stats.alarms_raised.get(), 1, "raised on the held 1.25");
    }

    /// The pipeline saves the SPC baselines with its batches and gives them
    /// back after a restart: a value beyond the limits learned before the
    /// restart raises at once. A changed `baseline_id` is the explicit
    /// re-baselining: the same value then only starts a new baseline.
    #[tokio::test]
    async fn spc_baselines_survive_a_restart_and_a_new_baseline_id_learns_again() {
        let series = Arc::new(SeriesInfo {
            name: "s".into(),
            unit: String::new(),
            tags: Default::default(),
        });
        let at = |t_s: i64, v: f64| -> Input {
            Reading {
                series: series.clone(),
                ts_us: t_s * 1_000_000,
                value: v,
                quality: Quality::Good,
            }
            .into()
        };
        let rule = |id: &str| {
            format!(
                "[[rules]]\nname = \"s\"\nseries = \"s\"\n[rules.spc]\ntests = [\"beyond_limits\"]\nbaseline_samples = 20\nbaseline_id = \"{id}\"\n"
            )
        };
        let dir = tempfile::tempdir().unwrap();
        // 20 readings alternating 10.0 and 10.2: centre 10.1, sigma from
        // the moving range 0.2 / 1.128 = 0.177, limits 9.57 .. 10.63.
        let baseline: Vec<Input> = (0..20)
            .map(|t| at(t, if t % 2 == 0 { 10.0 } else { 10.2 }))
            .collect();
        let (_, stats) = run_in(dir.path(), 100, &rule("a"), baseline).await;
        assert_eq!(
            stats.alarms_raised.get(),
            0,
            "nothing judged while learning"
        );

        // Restarted: 10.5 is inside, 12.0 beyond the learned limits.
        let (_, stats) = run_in(
            dir.path(),
            100,
            &rule("a"),
            vec![at(100, 10.5), at(101, 12.0)],
        )
        .await;
        assert_eq!(
            stats.alarms_raised.get(),
            1,
            "the baseline came back from the spool"
        );

        // baseline_id changed: 12.0 is the first sample of a new baseline.
        let (_, stats) = run_in(
            dir.path(),
            100,
            &rule("b"),
            vec![at(200, 12.0), at(201, 30.0)],
        )
        .await;
        assert_eq!(stats.alarms_raised.get(), 0, "a new baseline is learned");
    }

    /// A re-baselining request reaches the detector through the pipeline:
    /// the rebaselined event (after the clear of the raised test) is
    /// committed to the spool as a v10 alarm batch, the SPC state is saved
    /// at once (a restart learns again), and a refused request is
    /// answered with its reason and changes nothing.
    #[tokio::test]
    async fn a_rebaseline_request_is_spooled_as_events_and_saved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let config = AgentConfig::parse(
            &format!(
                "gateway_id = \"gw\"\n[spool]\npath = \"{}\"\n[uplink]\nurl = \"http://127.0.0.1:9/ingest\"\ntoken = \"t-0123456789abcdef0123\"\n[batch]\nmax_readings = 5\nmax_age_ms = 60000\n[[simulated]]\nname = \"s\"\nmean = 1.0\n[[rules]]\nname = \"flow\"\nseries = \"s\"\n[rules.spc]\ntests = [\"beyond_limits\"]\nbaseline_samples = 4\n",
                path.display()
            ),
            "t.toml",
        )
        .unwrap();
        let spool = SharedSpool::new(Spool::open(&path).unwrap());
        let stats = Arc::new(AgentStats::default());
        let (wake, stop) = (Notify::new(), CancellationToken::new());
        let (tx, rx) = mpsc::channel(16);
        let (path_tx, commands) = rebaseline::RebaselinePath::channel();
        let series = Arc::new(SeriesInfo {
            name: "s".into(),
            unit: String::new(),
            tags: Default::default(),
        });
        let at = |t: i64, v: f64| -> Input {
            Reading {
                series: series.clone(),
                ts_us: t * 1_000_000,
                value: v,
                quality: Quality::Good,
            }
            .into()
        };
        let rules = config.rules.clone();
        let task = {
            let (spool, stats) = (spool.clone(), stats.clone());
            tokio::spawn(async move {
                let outlets = AlarmOutlets {
                    spool: &spool,
                    wake: &wake,
                    stats: &stats,
                    gateway_id: "gw",
                    alarms: &SharedAlarms::new(crate::publish::board::AlarmBoard::new("gw")),
                    local: None,
                    stop: &stop,
                };
                pipeline(&config, Vec::new(), rx, commands, outlets).await;
            })
        };
        // Baseline 10, 11, 10, 11; 20 raises; one batch of 5 readings.
        for (t, v) in [(0, 10.0), (1, 11.0), (2, 10.0), (3, 11.0), (4, 20.0)] {
            tx.send(at(t, v)).await.unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while stats.readings_spooled.get() < 5 {
            assert!(
                std::time::Instant::now() < deadline,
                "batch never committed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let req = |rule: &str| crate::detect::RebaselineRequest {
            rule: rule.into(),
            series: None,
            mode: None,
        };
        let refused = path_tx
            .rebaseline(req("flwo"), "qe".into(), rebaseline::Via::StatusPage)
            .await;
        assert_eq!(
            refused,
            Err(rebaseline::RebaselineFailure::Refused(
                crate::detect::RebaselineError::UnknownRule("flwo".into())
            ))
        );
        let done = path_tx
            .rebaseline(req("flow"), "qe".into(), rebaseline::Via::StatusPage)
            .await
            .unwrap();
        assert_eq!(
            done,
            rebaseline::Outcome {
                series: vec!["s".into()],
                events: 2
            }
        );
        assert_eq!(
            (
                stats.spc_rebaselines.get(),
                stats.spc_rebaselines_refused.get()
            ),
            (1, 1)
        );
        // Saved at once: a detector seeded from the spool now learns again.
        let (states, _) = spool.call(|s| s.spc_states()).await.unwrap();
        let mut fresh = Detector::new(&rules);
        assert!(fresh.seed_spc(states, 0).is_empty());
        let judged = fresh.observe(&Reading {
            series: series.clone(),
            ts_us: 10_000_000,
            value: 50.0,
            quality: Quality::Good,
        });
        assert!(
            judged.is_empty(),
            "the old baseline would judge 50 beyond: {judged:?}"
        );
        drop(tx);
        task.await.unwrap();

        // The spool: the raise batch, the reading batch, the clear and the
        // rebaseline in one v10 alarm batch.
        let bodies = spool
            .call(|s| {
                let mut out = Vec::new();
                while let Some(b) = s.oldest()? {
                    out.push(b.body.clone());
                    s.remove(b.seq)?;
                }
                Ok(out)
            })
            .await
            .unwrap();
        let last = bodies
            .iter()
            .map(|b| {
                (
                    edge_wire::encoded_version(b).unwrap(),
                    edge_wire::decode(b, &Default::default()).unwrap(),
                )
            })
            .find(|(_, b)| b.alarms.iter().any(|a| a.state == AlarmState::Rebaselined))
            .expect("a batch with the rebaseline");
        assert_eq!(last.0, edge_wire::V10);
        let states: Vec<(&str, AlarmState)> = last
            .1
            .alarms
            .iter()
            .map(|a| (a.rule.as_str(), a.state))
            .collect();
        assert_eq!(
            states,
            [
                ("flow.spc_beyond_limits", AlarmState::Cleared),
                ("flow.spc_beyond_limits", AlarmState::Rebaselined)
            ]
        );
        let spc = last.1.alarms[1].spc.expect("the dropped baseline");
        assert!((spc.centre - 10.5).abs() < 1e-12, "{spc:?}");
        assert!(spool.call(|s| s.active_alarms()).await.unwrap().is_empty());
    }
}
