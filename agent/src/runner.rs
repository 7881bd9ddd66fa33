//! [`Agent::run`]: opens the spool, starts the status page, the sources,
//! the forwarder and the local publisher, runs the [`crate::pipeline`] until the
//! shutdown signal, then stops everything in order (sources, pipeline,
//! publisher, forwarder with its drain deadline, status page).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::assemble::{known_series, modbus_links, with_tags};
use crate::config::AgentConfig;
use crate::forward::Forwarder;
use crate::pipeline::{pipeline, AlarmOutlets};
use crate::publish::ack::AckPath;
use crate::publish::board::AlarmBoard;
use crate::publish::shared::SharedAlarms;
use crate::publish::{LocalEvent, LocalPublisher};
use crate::reading::{now_us, Input, SeriesInfo};
use crate::rebaseline::RebaselinePath;
use crate::source::frames::FramesSource;
use crate::source::mqtt::MqttSource;
use crate::source::simulated::SimulatedSource;
use crate::source::SourceError;
use crate::spool::{self, SharedSpool, Spool, SpoolError};
use crate::stats::AgentStats;
use crate::status::{self, PageAgent, StatusPage};

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
        declare_points(&self.config, &self.stats);
        let wake = Arc::new(Notify::new());
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
        let alarms = Arc::new(SharedAlarms::new(board));
        let ack = Arc::new(AckPath::new(
            alarms.clone(),
            spool.clone(),
            wake.clone(),
            self.stats.clone(),
            self.config.gateway_id.clone(),
            shutdown.clone(),
        ));
        // The local publisher's channel, made before the page so the page
        // can hand it the acknowledgements it takes (through a weak sender:
        // the publisher stops when the pipeline drops the last strong one).
        let local = self
            .config
            .alarm_publish
            .as_ref()
            .map(|_| mpsc::channel::<LocalEvent>(1024));
        // Re-baselining requests from the page and from MQTT, to the
        // pipeline that owns the detector.
        let (rebaseline, commands) = RebaselinePath::channel();
        let status_stop = CancellationToken::new();
        let status_task = match &self.config.status {
            Some(c) => {
                let listener = status::bind(c.listen).await?;
                let page = StatusPage::new(self.stats.clone(), spool.clone(), c.stuck_after)
                    .with_agent(PageAgent {
                        gateway_id: self.config.gateway_id.clone(),
                        spool_options: self.config.spool,
                        auth: c.auth.clone(),
                        ack: ack.clone(),
                        local: local.as_ref().map(|(tx, _)| tx.downgrade()),
                        rebaseline: rebaseline.clone(),
                    });
                let serving = status::serve(listener, Arc::new(page), status_stop.clone());
                Some(tokio::spawn(serving))
            }
            None => None,
        };
        let (tx, rx) = mpsc::channel::<Input>(4096);
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
        for device in &self.config.frames {
            let source = FramesSource {
                device: device.clone(),
                tags: self.config.tags.clone(),
                stats: self.stats.clone(),
                spool: spool.clone(),
                gateway_id: self.config.gateway_id.clone(),
            };
            spawn_source(&sources, source.run(tx.clone(), shutdown.clone()));
        }
        for broker in &self.config.mqtt {
            let source = MqttSource {
                broker: broker.clone(),
                tags: self.config.tags.clone(),
                stats: self.stats.clone(),
                ack_after_commit: true,
                spool: Some(spool.clone()),
            };
            spawn_source(&sources, source.run(tx.clone(), shutdown.clone()));
        }
        sources.close();
        drop(tx);

        let drain = CancellationToken::new();
        let forwarder = Forwarder {
            spool: spool.clone(),
            uplink: self.config.uplink.clone(),
            gateway_id: self.config.gateway_id.clone(),
            stats: self.stats.clone(),
            wake: wake.clone(),
        };
        let forwarding = tokio::spawn(forwarder.run(drain.clone()));
        let (local_tx, local_task) = match (&self.config.alarm_publish, local) {
            (Some(config), Some((tx, rx))) => {
                let publisher = LocalPublisher {
                    config: config.clone(),
                    gateway_id: self.config.gateway_id.clone(),
                    ack: ack.clone(),
                    stats: self.stats.clone(),
                    rebaseline: rebaseline.clone(),
                    auth: self.config.status.as_ref().and_then(|s| s.auth.clone()),
                };
                // It stops when the pipeline drops `tx`, not at the shutdown
                // signal, so the events of the last readings still go out.
                let task = tokio::spawn(publisher.run(rx, CancellationToken::new()));
                (Some(tx), Some(task))
            }
            _ => (None, None),
        };
        for warning in self.config.warnings() {
            warn!("config: {warning}");
        }
        info!(gateway = %self.config.gateway_id, modbus_devices = self.config.modbus.len(), simulated = self.config.simulated.len(), mqtt_brokers = self.config.mqtt.len(), frames_devices = self.config.frames.len(), rules = self.config.rules.len(), "agent started");

        let outlets = AlarmOutlets {
            spool: &spool,
            wake: &wake,
            stats: &self.stats,
            gateway_id: &self.config.gateway_id,
            alarms: &alarms,
            local: local_tx.as_ref(),
            stop: &shutdown,
        };
        drop(rebaseline);
        pipeline(&self.config, active, rx, commands, outlets).await;
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

/// Put every point the config declares on the points board, with its
/// device and poll interval, so the page lists (and flags) a point that
/// never answered.
fn declare_points(config: &AgentConfig, stats: &AgentStats) {
    let now = now_us();
    for d in &config.modbus {
        for p in &d.points {
            let series = format!("{}.{}", d.name, p.name);
            let interval = d.groups.get(p.group).map(|g| g.interval);
            stats
                .points
                .declare(&series, &d.name, &p.unit, interval, now);
        }
    }
    for s in &config.simulated {
        stats
            .points
            .declare(&s.name, "simulated", &s.unit, Some(s.interval), now);
    }
}
