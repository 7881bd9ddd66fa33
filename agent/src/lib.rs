//! `edge-agent`: runs on a factory gateway. It polls field devices, checks
//! threshold rules locally, seals readings into batches, commits them to a
//! SQLite spool and forwards them to the relay.
//!
//! Reading order:
//! - [`config`]: the TOML a technician writes, validated with key paths.
//! - [`reading`]: what flows through the pipeline (`Reading`, `Alarm`).
//! - [`source`]: tasks that bring readings in (Modbus TCP, MQTT, simulated).
//! - [`detect`]: alarm rules (limits, rate, stale, flatline, quality), a
//!   pure state machine.
//! - [`batch`]: seals readings and alarms into `edge_wire::Batch`es.
//! - [`spool`]: SQLite store of encoded batches awaiting the relay, and of
//!   the alarms raised, so a restart neither raises them again nor forgets
//!   to clear them. Alarm events go to its priority lane.
//! - [`forward`]: sends spooled batches, alarms first, several in flight,
//!   over HTTP or HTTPS (rustls); deletes each after its own 2xx.
//! - [`publish`]: alarm events and retained per-series state on the local
//!   MQTT broker for an HMI, and acknowledgements back.
//! - [`stats`]: counters the agent keeps about itself.
//! - [`status`]: Prometheus `/metrics` and `/healthz` on `[status] listen`.
//! - [`probe`]: `edge-agent probe modbus`, one read shown in every decoding
//!   for commissioning a device; not part of the running agent.
//!
//! [`Agent::run`] wires them: sources → channel → detect + batch → spool →
//! forwarder, and detect → local publisher.

pub mod batch;
pub mod config;
pub mod detect;
pub mod forward;
pub mod probe;
pub mod publish;
pub mod reading;
pub mod source;
pub mod spool;
pub mod stats;
pub mod status;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::batch::Batcher;
use crate::config::AgentConfig;
use crate::detect::{ActiveAlarm, Detector};
use crate::forward::Forwarder;
use crate::publish::board::AlarmBoard;
use crate::publish::LocalPublisher;
use crate::reading::{now_us, Alarm, AlarmState, Reading, SeriesInfo};
use crate::source::modbus::{LinkDevice, ModbusLink};
use crate::source::mqtt::MqttSource;
use crate::source::simulated::SimulatedSource;
use crate::source::SourceError;
use crate::spool::{SharedSpool, Spool, SpoolError};
use crate::stats::AgentStats;
use crate::status::StatusPage;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Status(#[from] status::StatusError),
}

/// A configured agent, ready to run.
pub struct Agent {
    config: AgentConfig,
    stats: Arc<AgentStats>,
}

impl Agent {
    pub fn new(config: AgentConfig) -> Agent {
        Agent {
            config,
            stats: Arc::new(AgentStats::default()),
        }
    }

    /// The agent's counters; they stay readable after `run` returns.
    pub fn stats(&self) -> Arc<AgentStats> {
        self.stats.clone()
    }

    /// Run until `shutdown` is cancelled. On shutdown the sources stop, what
    /// the batcher holds is committed to the spool, and the forwarder keeps
    /// draining the backlog for at most `uplink.shutdown_drain`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AgentError> {
        let path = self.config.spool_path.clone();
        let mut options = self.config.spool;
        if options.max_bytes.is_none() {
            match spool::room::DiskRoom::read(&path) {
                Ok(room) => {
                    let max = spool::room::default_max_bytes(room);
                    info!(spool = %path.display(), max_bytes = max, free_bytes = room.available, "spool.max_bytes not set: bounding the spool to its files plus half the free space of its filesystem");
                    options.max_bytes = Some(max);
                }
                Err(error) => {
                    warn!(spool = %path.display(), %error, "cannot read the free space of the spool's filesystem; the spool has no size bound")
                }
            }
        }
        let (spool, report, active, acks) = tokio::task::spawn_blocking(move || {
            let (spool, report) = Spool::open_checked(&path, options, now_us())?;
            let active = spool.active_alarms()?;
            let acks = spool.acknowledged_alarms()?;
            Ok::<_, SpoolError>((spool, report, active, acks))
        })
        .await
        .map_err(|e| SpoolError::Join(e.to_string()))??;
        self.stats.spool_corrupt_batches.add(report.corrupt_batches);
        self.stats
            .spool_salvaged_batches
            .add(report.salvaged.batches);
        if report.moved_aside.is_some() {
            self.stats.spool_moved_aside.inc();
        }
        let spool = SharedSpool::new(spool);
        let status_stop = CancellationToken::new();
        let status_task = match &self.config.status {
            Some(c) => {
                let listener = status::bind(c.listen).await?;
                let page = StatusPage::new(self.stats.clone(), spool.clone(), c.stuck_after);
                let serving = status::serve(listener, Arc::new(page), status_stop.clone());
                Some(tokio::spawn(serving))
            }
            None => None,
        };
        let (tx, rx) = mpsc::channel::<Reading>(4096);
        let sources = TaskTracker::new();
        for link in modbus_links(&self.config, &self.stats) {
            spawn_source(&sources, link.run(tx.clone(), shutdown.clone()));
        }
        for signal in &self.config.simulated {
            let series = Arc::new(SeriesInfo {
                name: signal.name.clone(),
                unit: signal.unit.clone(),
                tags: with_tags(
                    &self.config.tags,
                    &BTreeMap::new(),
                    [("protocol", "simulated")],
                ),
            });
            let source = SimulatedSource {
                signal: signal.clone(),
                series,
                stats: self.stats.clone(),
            };
            spawn_source(&sources, source.run(tx.clone(), shutdown.clone()));
        }
        for broker in &self.config.mqtt {
            let source = MqttSource {
                broker: broker.clone(),
                tags: self.config.tags.clone(),
                stats: self.stats.clone(),
                ack_after_commit: true,
            };
            spawn_source(&sources, source.run(tx.clone(), shutdown.clone()));
        }
        sources.close();
        drop(tx);

        let wake = Arc::new(Notify::new());
        let drain = CancellationToken::new();
        let forwarder = Forwarder {
            spool: spool.clone(),
            uplink: self.config.uplink.clone(),
            gateway_id: self.config.gateway_id.clone(),
            stats: self.stats.clone(),
            wake: wake.clone(),
        };
        let forwarding = tokio::spawn(forwarder.run(drain.clone()));
        let (local_tx, local_task) = match &self.config.alarm_publish {
            Some(config) => {
                let known = known_series(&self.config);
                let mut board = AlarmBoard::new(&self.config.gateway_id);
                board.seed(&active, &acks, |name| {
                    known.get(name).cloned().unwrap_or_else(|| {
                        Arc::new(SeriesInfo {
                            name: name.to_owned(),
                            unit: String::new(),
                            tags: BTreeMap::new(),
                        })
                    })
                });
                let publisher = LocalPublisher {
                    config: config.clone(),
                    gateway_id: self.config.gateway_id.clone(),
                    board,
                    spool: spool.clone(),
                    wake: wake.clone(),
                    stats: self.stats.clone(),
                    stop: shutdown.clone(),
                };
                let (tx, rx) = mpsc::channel::<Alarm>(1024);
                // It stops when the pipeline drops `tx`, not at the shutdown
                // signal, so the events of the last readings still go out.
                let task = tokio::spawn(publisher.run(rx, CancellationToken::new()));
                (Some(tx), Some(task))
            }
            None => (None, None),
        };
        info!(gateway = %self.config.gateway_id, modbus_devices = self.config.modbus.len(), simulated = self.config.simulated.len(), mqtt_brokers = self.config.mqtt.len(), rules = self.config.rules.len(), "agent started");

        let outlets = AlarmOutlets {
            spool: &spool,
            wake: &wake,
            stats: &self.stats,
            gateway_id: &self.config.gateway_id,
            local: local_tx.as_ref(),
            stop: &shutdown,
        };
        pipeline(&self.config, active, rx, outlets).await;
        drop(local_tx);
        sources.wait().await;
        if let Some(task) = local_task {
            if task.await.is_err() {
                error!("local alarm publisher panicked");
            }
        }
        drain.cancel();
        if forwarding.await.is_err() {
            error!("forwarder task panicked");
        }
        status_stop.cancel();
        if let Some(task) = status_task {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => error!(%error, "status page stopped"),
                Err(_) => error!("status page task panicked"),
            }
        }
        info!(
            produced = self.stats.readings_produced.get(),
            forwarded = self.stats.readings_forwarded.get(),
            "agent stopped"
        );
        Ok(())
    }
}

/// Run a source on `tracker`; a source that stops for good is logged.
fn spawn_source(
    tracker: &TaskTracker,
    run: impl std::future::Future<Output = Result<(), SourceError>> + Send + 'static,
) {
    tracker.spawn(async move {
        if let Err(error) = run.await {
            error!(%error, "source stopped");
        }
    });
}

/// Where the pipeline sends alarm events besides the spool.
struct AlarmOutlets<'a> {
    spool: &'a SharedSpool,
    wake: &'a Notify,
    stats: &'a AgentStats,
    gateway_id: &'a str,
    /// The local MQTT publisher, when `[alarm_publish]` is configured.
    local: Option<&'a mpsc::Sender<Alarm>>,
    /// The agent's shutdown: from then on a batch the spool refuses is
    /// recorded as a gap instead of waited on ([`store`]).
    stop: &'a CancellationToken,
}

/// Detect, batch and spool every reading until all sources have stopped.
/// `active` are the alarms raised before a restart, from the spool.
async fn pipeline(
    config: &AgentConfig,
    active: Vec<ActiveAlarm>,
    mut rx: mpsc::Receiver<Reading>,
    outlets: AlarmOutlets<'_>,
) {
    let mut detector = Detector::new(&config.rules);
    let seeded = active.len();
    for a in detector.seed(active) {
        warn!(series = %a.series, rule = %a.rule, raised_us = a.raised_us, "alarm raised before the restart belongs to no configured rule; it stays raised");
    }
    if seeded > 0 {
        info!(
            alarms = seeded,
            "alarms still raised from before the restart"
        );
    }
    let mut batcher = Batcher::new(&config.gateway_id, config.batch);
    // Stale rules see silence only when time passes, not when readings do.
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = batcher.deadline();
        let (alarms, seal_now) = tokio::select! {
            r = rx.recv() => match r {
                Some(r) => {
                    let alarms = detector.observe(&r);
                    (alarms, batcher.push(&r, Instant::now()))
                }
                None => break,
            },
            _ = clock.tick() => (detector.tick(now_us()), false),
            _ = sleep_until(deadline), if deadline.is_some() => (Vec::new(), true),
        };
        if !alarms.is_empty() {
            raise(alarms, &outlets).await;
        }
        if seal_now {
            commit(&mut batcher, &outlets).await;
        }
    }
    commit(&mut batcher, &outlets).await;
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
            AlarmState::Acknowledged => {}
        }
        warn!(series = %alarm.series.name, rule = %alarm.rule, severity = alarm.severity.as_str(), state = alarm.state.as_str(), value = alarm.value, limit = alarm.limit, "alarm");
        if let Some(local) = outlets.local {
            if local.try_send(alarm.clone()).is_err() {
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

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d).await;
    }
}

/// Seal the open reading batch and commit it to the spool.
async fn commit(batcher: &mut Batcher, outlets: &AlarmOutlets<'_>) {
    let Some((batch, alarms)) = batcher.seal_with_alarms(now_us()) else {
        return;
    };
    let (spool, stats) = (outlets.spool, outlets.stats);
    let readings = batch.reading_count() as u64;
    if store(batch, alarms, Lane::Readings, spool, stats, outlets.stop).await {
        stats.readings_spooled.add(readings);
        outlets.wake.notify_one();
    }
}

/// Which lane of the spool a batch goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    Readings,
    /// Alarm-only batches, forwarded before the reading backlog.
    Alarms,
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
    let alarms = Arc::new(alarms);
    let readings = batch.reading_count() as u64;
    let mut delay = Duration::from_millis(100);
    let mut batch = Some(batch);
    loop {
        let mut b = batch
            .take()
            .expect("batch is put back after every failed attempt");
        let alarms = alarms.clone();
        match spool
            .call(move |s| {
                let r = match lane {
                    Lane::Readings => s.append_with_alarms(&mut b, &alarms),
                    Lane::Alarms => s.append_alarms(&mut b, &alarms),
                };
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
                        if let Some(times) = spool_log_tick() {
                            warn!(%error, readings, ?lane, times, "spool is full; the commit waits and the sources are held back");
                        }
                    }
                    Err(error) => {
                        stats.spool_errors.inc();
                        if let Some(times) = spool_log_tick() {
                            error!(%error, readings, ?lane, times, "cannot commit batch to the spool; retrying");
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
static SPOOL_LOG: std::sync::Mutex<spool::bounds::LogLimiter> =
    std::sync::Mutex::new(spool::bounds::LogLimiter::new(Duration::from_secs(30)));

fn spool_log_tick() -> Option<u64> {
    SPOOL_LOG.lock().unwrap_or_else(|p| p.into_inner()).tick()
}

/// Count and log the batches the spool's bound policy dropped.
fn count_gaps(gaps: &[spool::Gap], stats: &AgentStats) {
    for g in gaps {
        let (readings, batches) = match g.reason {
            spool::DropReason::Full => (&stats.readings_dropped_full, &stats.batches_dropped_full),
            spool::DropReason::Age => (&stats.readings_dropped_age, &stats.batches_dropped_age),
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

/// The Modbus links to poll: one per TCP device, one per serial line with
/// all the devices on it. Each device's points become series named
/// `<device>.<point>`, tagged with the gateway's and the device's tags plus
/// `device` and `protocol`; the devices' first polls are staggered over
/// the agent's whole device list.
pub fn modbus_links(config: &AgentConfig, stats: &Arc<AgentStats>) -> Vec<ModbusLink> {
    let n = config.modbus.len();
    let mut links: Vec<ModbusLink> = Vec::new();
    for (k, d) in config.modbus.iter().enumerate() {
        let series = device_series(config, d);
        let device = LinkDevice {
            device: d.clone(),
            series,
            stagger: (k, n),
        };
        let shared = match &d.link {
            config::Link::Serial(_) => links.iter_mut().find(|l| l.link == d.link),
            config::Link::Tcp(_) => None,
        };
        match shared {
            Some(link) => link.devices.push(device),
            None => links.push(ModbusLink {
                link: d.link.clone(),
                devices: vec![device],
                stats: stats.clone(),
            }),
        }
    }
    links
}

/// The series of a Modbus device's points: `<device>.<point>`, tagged with
/// the gateway's and the device's tags plus `device` and `protocol`.
fn device_series(config: &AgentConfig, d: &config::ModbusDevice) -> Vec<Arc<SeriesInfo>> {
    d.points
        .iter()
        .map(|p| {
            Arc::new(SeriesInfo {
                name: format!("{}.{}", d.name, p.name),
                unit: p.unit.clone(),
                tags: with_tags(
                    &config.tags,
                    &d.tags,
                    [("device", d.name.as_str()), ("protocol", d.link.protocol())],
                ),
            })
        })
        .collect()
}

/// Metadata of the series known from the config (Modbus points and
/// simulated signals), by name; MQTT series are named by their messages.
fn known_series(config: &AgentConfig) -> HashMap<String, Arc<SeriesInfo>> {
    let mut known: HashMap<String, Arc<SeriesInfo>> = config
        .modbus
        .iter()
        .flat_map(|d| device_series(config, d))
        .map(|s| (s.name.clone(), s))
        .collect();
    for signal in &config.simulated {
        known.insert(
            signal.name.clone(),
            Arc::new(SeriesInfo {
                name: signal.name.clone(),
                unit: signal.unit.clone(),
                tags: with_tags(&config.tags, &BTreeMap::new(), [("protocol", "simulated")]),
            }),
        );
    }
    known
}

fn with_tags<const N: usize>(
    gateway: &BTreeMap<String, String>,
    device: &BTreeMap<String, String>,
    extra: [(&str, &str); N],
) -> BTreeMap<String, String> {
    let mut tags = gateway.clone();
    tags.extend(device.iter().map(|(k, v)| (k.clone(), v.clone())));
    tags.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    tags
}
