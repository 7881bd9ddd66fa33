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
//!   to clear them.
//! - [`forward`]: sends spooled batches, deletes them after a 2xx.
//! - [`stats`]: counters the agent keeps about itself.
//! - [`probe`]: `edge-agent probe modbus`, one read shown in every decoding
//!   for commissioning a device; not part of the running agent.
//!
//! [`Agent::run`] wires them: sources → channel → detect + batch → spool →
//! forwarder.

pub mod batch;
pub mod config;
pub mod detect;
pub mod forward;
pub mod probe;
pub mod reading;
pub mod source;
pub mod spool;
pub mod stats;

use std::collections::BTreeMap;
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
use crate::reading::{now_us, Alarm, AlarmState, Reading, SeriesInfo};
use crate::source::modbus::{LinkDevice, ModbusLink};
use crate::source::mqtt::MqttSource;
use crate::source::simulated::SimulatedSource;
use crate::source::SourceError;
use crate::spool::{SharedSpool, Spool, SpoolError};
use crate::stats::AgentStats;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
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
        let (spool, active) = tokio::task::spawn_blocking(move || {
            let spool = Spool::open(&path)?;
            let active = spool.active_alarms()?;
            Ok::<_, SpoolError>((spool, active))
        })
        .await
        .map_err(|e| SpoolError::Join(e.to_string()))??;
        let spool = SharedSpool::new(spool);
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
        info!(gateway = %self.config.gateway_id, modbus_devices = self.config.modbus.len(), simulated = self.config.simulated.len(), mqtt_brokers = self.config.mqtt.len(), rules = self.config.rules.len(), "agent started");

        pipeline(&self.config, active, rx, &spool, &wake, &self.stats).await;
        sources.wait().await;
        drain.cancel();
        if forwarding.await.is_err() {
            error!("forwarder task panicked");
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

/// Detect, batch and spool every reading until all sources have stopped.
/// `active` are the alarms raised before a restart, from the spool.
async fn pipeline(
    config: &AgentConfig,
    active: Vec<ActiveAlarm>,
    mut rx: mpsc::Receiver<Reading>,
    spool: &SharedSpool,
    wake: &Notify,
    stats: &AgentStats,
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
        let seal_now = tokio::select! {
            r = rx.recv() => match r {
                Some(r) => {
                    let now = Instant::now();
                    let seal = record_alarms(detector.observe(&r), &mut batcher, stats, now);
                    batcher.push(&r, now) || seal
                }
                None => break,
            },
            _ = clock.tick() => {
                record_alarms(detector.tick(now_us()), &mut batcher, stats, Instant::now())
            }
            _ = sleep_until(deadline), if deadline.is_some() => true,
        };
        if seal_now {
            commit(&mut batcher, spool, wake, stats).await;
        }
    }
    commit(&mut batcher, spool, wake, stats).await;
}

/// Count, log and batch alarm transitions; true when the open batch should
/// be sealed now (alarms never wait for a batch to fill).
fn record_alarms(
    alarms: Vec<Alarm>,
    batcher: &mut Batcher,
    stats: &AgentStats,
    now: Instant,
) -> bool {
    let mut seal = false;
    for alarm in alarms {
        match alarm.state {
            AlarmState::Raised => stats.alarms_raised.inc(),
            AlarmState::Cleared => stats.alarms_cleared.inc(),
        }
        warn!(series = %alarm.series.name, rule = %alarm.rule, severity = alarm.severity.as_str(), state = alarm.state.as_str(), value = alarm.value, limit = alarm.limit, "alarm");
        seal |= batcher.push_alarm(alarm, now);
    }
    seal
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(d).await;
    }
}

/// Seal the open batch and commit it to the spool. A failing spool is
/// retried rather than the batch dropped: the bounded channel then pushes
/// back on the sources.
async fn commit(batcher: &mut Batcher, spool: &SharedSpool, wake: &Notify, stats: &AgentStats) {
    let Some((batch, alarms)) = batcher.seal_with_alarms(now_us()) else {
        return;
    };
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
                let r = s.append_with_alarms(&mut b, &alarms);
                Ok((r, b))
            })
            .await
        {
            Ok((Ok(_seq), _)) => break,
            Ok((Err(error), b)) => {
                error!(%error, readings, "cannot commit batch to the spool; retrying");
                batch = Some(b);
            }
            Err(error) => {
                stats.readings_dropped.add(readings);
                error!(%error, readings, "spool task failed; batch dropped");
                return;
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    stats.readings_spooled.add(readings);
    wake.notify_one();
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
        let series = d
            .points
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
            .collect();
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
