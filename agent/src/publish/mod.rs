//! Local alarm publication: every alarm event goes at once to the plant's
//! MQTT broker (QoS 1) for a local HMI, whatever the state of the uplink,
//! and acknowledgements come back the same way.
//!
//! Topics, under `<topic_prefix>/<gateway_id>` (see
//! [`crate::config::AlarmPublishConfig`]):
//! - `events`: one JSON message per raise, clear and acknowledge
//!   ([`board::event_json`]), not retained;
//! - `state/<series>`: the series' current alarms, retained
//!   ([`board::AlarmBoard::state_json`]); `"state": "normal"` once clear;
//! - `ack/<series>`: the HMI publishes a rule name or `{"rule": ..., "by":
//!   ...}`. The acknowledgement takes the one path the status page's takes
//!   too ([`ack::AckPath`]): committed to the spool first (priority lane,
//!   with the `alarms` table row), then published as an event and in the
//!   retained state. A refused one is counted and logged, never fatal.
//! - `rebaseline`: a re-baselining command, `{"rule": .., "series"?: ..,
//!   "mode"?: .., "by"?: .., "authorization": "Bearer <token>"}` (or
//!   `"Basic <base64 user:password>"`), checked against `[status.auth]`
//!   (without it every command is refused): the broker's ACLs alone do
//!   not decide who may make the detector forget what normal is. It takes
//!   the path the page's action takes ([`crate::rebaseline`]); the answer
//!   goes to `rebaseline/result` (`{"ok": true, "rebaselined": [..],
//!   "events": n}` or `{"ok": false, "error": ..}`), the events to
//!   `events` like every alarm event.
//!
//! The board itself is shared ([`shared::SharedAlarms`]): the pipeline
//! applies raises and clears before handing them over, the acknowledgement
//! path applies acknowledgements; this task only reads it.
//!
//! Invariants: the pipeline hands events over with `try_send` and never
//! waits for this task, so detection and spooling do not depend on the
//! broker; this task never waits on the forwarder or the relay. While the
//! broker is unreachable, events queue in rumqttc's request channel and go
//! out after the reconnect; every retained state is republished on each
//! connect, so the broker converges to the board.
//!
//! Because publication does not wait for the spool, a crash between the
//! two can leave a raise published locally but not committed; the
//! restarted agent raises (and publishes) it again. Locally, events are
//! at least once; what reaches the relay follows the spool.

pub mod ack;
pub mod board;
pub mod shared;

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::ack::{AckOutcome, AckPath};
use self::board::parse_ack;
use crate::config::AlarmPublishConfig;
use crate::reading::Alarm;
use crate::rebaseline::{self, RebaselinePath};
use crate::stats::AgentStats;
use crate::status::auth::StatusAuth;
use crate::timing::backoff_delay;

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// An alarm event for the local broker: from the pipeline (raises and
/// clears) or from the status page (acknowledgements, with who made them).
#[derive(Debug, Clone)]
pub struct LocalEvent {
    pub alarm: Alarm,
    /// Who acknowledged, for an acknowledgement.
    pub by: Option<String>,
}

/// The task that publishes alarms locally and takes acknowledgements.
pub struct LocalPublisher {
    pub config: AlarmPublishConfig,
    pub gateway_id: String,
    /// The shared board (seeded with the alarms raised before a restart)
    /// and the way acknowledgements are committed.
    pub ack: Arc<AckPath>,
    pub stats: Arc<AgentStats>,
    /// Where re-baselining commands go (topic `<root>/rebaseline`).
    pub rebaseline: RebaselinePath,
    /// Who may re-baseline (`[status.auth]`); `None`: every command is
    /// refused.
    pub auth: Option<StatusAuth>,
}

impl LocalPublisher {
    /// Publish what arrives on `events` until it closes (the pipeline has
    /// stopped) or `shutdown` is cancelled.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<LocalEvent>,
        shutdown: CancellationToken,
    ) {
        let c = self.config.clone();
        let broker = format!("{}:{}", c.host, c.port);
        let mut options = MqttOptions::new(c.client_id.clone(), c.host.clone(), c.port);
        options.set_keep_alive(Duration::from_secs(10));
        options.set_clean_session(true);
        let (client, mut eventloop) = AsyncClient::new(options, 1024);
        let mut failures: u32 = 0;
        loop {
            let polled = tokio::select! {
                _ = shutdown.cancelled() => break,
                e = events.recv() => match e {
                    Some(e) => {
                        self.publish(&client, &e.alarm, e.by.as_deref());
                        continue;
                    }
                    None => break,
                },
                p = eventloop.poll() => p,
            };
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if failures > 0 {
                        info!(%broker, failed_attempts = failures, "local alarm broker reachable again");
                    } else {
                        info!(%broker, "local alarm broker connected");
                    }
                    failures = 0;
                    if let Err(error) = client.try_subscribe(c.ack_filter(), QoS::AtLeastOnce) {
                        warn!(%broker, %error, "cannot subscribe to alarm acknowledgements");
                    }
                    if let Err(error) = client.try_subscribe(c.rebaseline_topic(), QoS::AtLeastOnce)
                    {
                        warn!(%broker, %error, "cannot subscribe to re-baselining commands");
                    }
                    for series in self.ack.alarms.series_names() {
                        self.publish_state(&client, &series);
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => self.stats.alarms_published.inc(),
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == c.rebaseline_topic() => {
                    self.rebaseline(&client, &p.payload).await;
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let Some(series) = c.ack_series(&p.topic).map(str::to_owned) else {
                        continue;
                    };
                    self.acknowledge(&client, &series, &p.payload).await;
                }
                Ok(_) => {}
                Err(error) => {
                    if failures == 0 {
                        warn!(%broker, %error, "local alarm broker unreachable; alarm events queue until it is back (they are spooled for the relay regardless)");
                    }
                    // BACKOFF_MIN at first, doubled per failure in a row, jittered.
                    let backoff =
                        backoff_delay(BACKOFF_MIN, failures, BACKOFF_MAX, fastrand::f64());
                    failures = failures.saturating_add(1);
                    // Keep taking events while waiting, so the board stays current.
                    let wait = tokio::time::sleep(backoff);
                    tokio::pin!(wait);
                    loop {
                        tokio::select! {
                            _ = &mut wait => break,
                            _ = shutdown.cancelled() => return,
                            e = events.recv() => match e {
                                Some(e) => self.publish(&client, &e.alarm, e.by.as_deref()),
                                None => return,
                            },
                        }
                    }
                }
            }
        }
        // Send what is queued, then DISCONNECT.
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(e) = eventloop.poll().await {
                if matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
    }

    /// Record an HMI's acknowledgement of `series`: spool it, then publish.
    async fn acknowledge(&mut self, client: &AsyncClient, series: &str, payload: &[u8]) {
        let request = match parse_ack(payload) {
            Ok(r) => r,
            Err(error) => {
                self.stats.alarm_acks_rejected.inc();
                warn!(%series, %error, "alarm acknowledgement refused");
                return;
            }
        };
        // Refusals are counted and logged by the path.
        if let Ok(AckOutcome::Acknowledged(ack)) = self.ack.acknowledge(series, &request).await {
            self.publish(client, &ack, request.by.as_deref());
        }
    }

    /// Take a re-baselining command: credentials, body, the path; answer
    /// on `rebaseline/result`. Every refusal is counted and logged.
    async fn rebaseline(&mut self, client: &AsyncClient, payload: &[u8]) {
        let result = self.take_rebaseline(payload).await;
        let answer = match &result {
            Ok(done) => {
                serde_json::json!({"ok": true, "rebaselined": done.series, "events": done.events})
            }
            Err(error) => serde_json::json!({"ok": false, "error": error}),
        };
        if let Err(error) = client.try_publish(
            self.config.rebaseline_result_topic(),
            QoS::AtLeastOnce,
            false,
            answer.to_string(),
        ) {
            warn!(%error, "re-baselining answer not queued for the local broker");
        }
    }

    async fn take_rebaseline(&self, payload: &[u8]) -> Result<rebaseline::Outcome, String> {
        let refused = |error: String| {
            self.stats.spc_rebaselines_refused.inc();
            warn!(%error, "re-baselining command over MQTT refused");
            error
        };
        let Some(auth) = &self.auth else {
            return Err(refused(
                "re-baselining needs [status.auth] in the agent's config".into(),
            ));
        };
        let body = rebaseline::Body::parse(payload).map_err(refused)?;
        let actor = auth
            .check(body.authorization.as_deref())
            .map_err(|e| refused(e.to_string()))?;
        let by = body
            .by
            .clone()
            .or(actor)
            .unwrap_or_else(|| "mqtt".to_owned());
        // Refusals by the detector are counted by the pipeline.
        self.rebaseline
            .rebaseline(body.request(), by, rebaseline::Via::Mqtt)
            .await
            .map_err(|e| e.to_string())
    }

    /// Queue the event and the series' new retained state.
    fn publish(&self, client: &AsyncClient, alarm: &Alarm, by: Option<&str>) {
        let event = board::event_json(&self.gateway_id, alarm, by);
        if let Err(error) =
            client.try_publish(self.config.events_topic(), QoS::AtLeastOnce, false, event)
        {
            self.stats.alarms_not_published.inc();
            warn!(series = %alarm.series.name, rule = %alarm.rule, %error, "alarm event not queued for the local broker");
        }
        self.publish_state(client, &alarm.series.name);
    }

    fn publish_state(&self, client: &AsyncClient, series: &str) {
        let state = self.ack.alarms.state_json(series);
        if let Err(error) = client.try_publish(
            self.config.state_topic(series),
            QoS::AtLeastOnce,
            true,
            state,
        ) {
            self.stats.alarms_not_published.inc();
            warn!(%series, %error, "alarm state not queued for the local broker");
        }
    }
}
