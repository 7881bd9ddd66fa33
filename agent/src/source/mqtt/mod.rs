//! MQTT subscription source: one task per broker, one connection, every
//! configured topic filter subscribed on it.
//!
//! - rumqttc's event loop reconnects when polled again after an error; the
//!   source waits between attempts with exponential backoff and logs once
//!   when the broker goes away and once when it is back;
//! - subscriptions are requested on every connect (ConnAck), because a
//!   clean session forgets them;
//! - a message is matched to the first subscription, in configuration
//!   order, whose filter matches its topic;
//! - a malformed message is counted per subscription and logged at most
//!   once per [`MALFORMED_LOG_INTERVAL`] with the number suppressed; it never
//!   stops the source. A message yields all its readings or none.
//!
//! - with `ack_after_commit` (the agent sets it), a QoS 1 message is
//!   acknowledged only once its readings are committed to the spool (see
//!   [`ack`]); a malformed or unmatched one at once, as it yields nothing.
//!   The broker stops sending while its in-flight window of unacknowledged
//!   messages is full (MQTT 3.1.1: whatever the broker allows, which for
//!   Mosquitto 2.0 was observed to be well over a thousand; MQTT 5: the
//!   Receive Maximum the agent asks for, 100), so QoS 1 throughput per
//!   broker is about that window per batch commit. Acknowledgements that
//!   find rumqttc's request channel full are tried again on the next check,
//!   not dropped: a dropped one would only be redelivered after a reconnect.
//!
//! While the pipeline pushes back (the channel is full) the event loop is
//! not polled, so no pings go out; a long stall ends in a keep-alive
//! timeout and a reconnect, which is the same as any broker outage.
//!
//! Payload reading is the pure [`payload`] module; the differences between
//! MQTT 3.1.1 and MQTT 5 are kept in [`client`].

pub mod ack;
pub mod client;
pub mod payload;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::ack::AckQueue;
use self::client::{Client, Event, Message};
use self::payload::{Malformed, PayloadError};
use super::{report_device, SourceError};
use crate::config::mqtt::{is_plain_name, MqttBroker, PayloadFormat, Subscription};
use crate::devices::{DeviceKey, Reason, ReasonKind, SourceKind};
use crate::reading::{now_us, Input, Reading, SeriesInfo};
use crate::source::sparkplug::{rebirth_request as sparkplug_rebirth, Reader};
use crate::spool::mqtt::{digest as mqtt_digest, MqttMark};
use crate::spool::{Mark, SharedSpool};
use crate::stats::AgentStats;
use crate::timing::{backoff_delay, LogLimiter};

/// What a broker connection keeps for its Sparkplug subscriptions.
struct SparkplugState {
    reader: Reader,
    /// Session problems are logged at most once per interval.
    log: LogLimiter,
}

/// A malformed message is logged at most this often per subscription.
pub const MALFORMED_LOG_INTERVAL: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Series metadata is cached per (topic, series); topics are chosen by the
/// publishers, so the cache is emptied rather than allowed to grow forever.
const SERIES_CACHE_MAX: usize = 10_000;

/// Subscribes to one MQTT broker.
pub struct MqttSource {
    pub broker: MqttBroker,
    /// The gateway's tags; each subscription's tags are added on top.
    pub tags: BTreeMap<String, String>,
    pub stats: Arc<AgentStats>,
    /// Acknowledge QoS 1 messages only after their readings are committed to
    /// the spool (see [`ack`]); otherwise rumqttc acknowledges on receipt.
    pub ack_after_commit: bool,
    /// The spool, to recognise a QoS 1 message of a persistent session
    /// that the broker delivers again after the agent died between the
    /// commit and the acknowledgement ([`crate::spool::mqtt`]); `None`
    /// (the source driven alone): redeliveries are taken again.
    pub spool: Option<SharedSpool>,
}

/// How often pending acknowledgements are checked against the spool.
const ACK_CHECK_INTERVAL: Duration = Duration::from_millis(20);

/// Whether `topic` matches the MQTT filter `filter` (`+` one level, `#` the
/// rest, including none). Topics starting with '$' are not matched by a
/// leading wildcard, as the MQTT specification requires.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(t) if f == "+" || f == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

impl MqttSource {
    pub async fn run(
        self,
        out: mpsc::Sender<Input>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let b = &self.broker;
        let broker = format!("{}:{}", b.host, b.port);
        let (client, mut events) = client::connect(b, self.ack_after_commit);
        let mut acks: AckQueue<Message> = AckQueue::default();
        let mut ack_check = tokio::time::interval(ACK_CHECK_INTERVAL);
        ack_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut limiters: Vec<LogLimiter> = b
            .subscriptions
            .iter()
            .map(|_| LogLimiter::new(MALFORMED_LOG_INTERVAL))
            .collect();
        let mut series: HashMap<(String, String), Arc<SeriesInfo>> = HashMap::new();
        let mut sparkplug = SparkplugState {
            reader: Reader::default(),
            log: LogLimiter::new(MALFORMED_LOG_INTERVAL),
        };
        let mut failures: u32 = 0;
        // Exactly once into the spool: only where the broker redelivers
        // (a persistent session) and acknowledgements wait for the commit.
        let exactly_once = self.ack_after_commit && !b.clean_session && self.spool.is_some();
        let mut delivered = match (&self.spool, exactly_once) {
            (Some(spool), true) => {
                let id = b.client_id.clone();
                match spool.call(move |s| s.mqtt_delivered(&id)).await {
                    Ok(map) => map,
                    Err(error) => {
                        warn!(%broker, client_id = %b.client_id, %error, "cannot read which MQTT messages the spool holds; a redelivery after the last crash may be stored twice");
                        BTreeMap::new()
                    }
                }
            }
            _ => BTreeMap::new(),
        };
        let device = DeviceKey::new(SourceKind::Mqtt, &b.client_id);
        self.stats
            .devices
            .with(|board| board.register(device.clone(), now_us()));
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => {
                    // Send what is queued (acknowledgements), then DISCONNECT.
                    let _ = client.try_disconnect();
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while let Ok(e) = events.poll().await {
                            if matches!(e, Event::DisconnectSent) {
                                break;
                            }
                        }
                    })
                    .await;
                    return Ok(());
                }
                e = events.poll() => e,
                _ = ack_check.tick(), if !acks.is_empty() => {
                    let settled = self.stats.readings_settled();
                    let mut ready = acks.committed(settled).into_iter();
                    while let Some(message) = ready.next() {
                        if let Err(error) = client.try_ack(&message) {
                            // The request channel is full: the event loop
                            // drains it when polled, so try again next tick
                            // rather than leave the message unacknowledged
                            // until the next reconnect.
                            debug!(%broker, %error, "MQTT acknowledgements wait for room in the request channel");
                            acks.put_back(std::iter::once(message).chain(ready));
                            break;
                        }
                        self.stats.mqtt_messages_acked.inc();
                    }
                    continue;
                }
            };
            match event {
                Ok(Event::Connected) => {
                    acks.clear();
                    if failures > 0 {
                        info!(%broker, client_id = %b.client_id, failed_attempts = failures, "MQTT broker reachable again");
                    } else {
                        info!(%broker, client_id = %b.client_id, protocol = ?b.protocol, tls = b.tls.is_some(), clean_session = b.clean_session, "MQTT connected");
                    }
                    failures = 0;
                    report_device(&self.stats, &out, &device, |b, k, now| b.ok(k, now)).await?;
                    if let Err(error) = client.try_subscribe(&b.subscriptions) {
                        warn!(%broker, %error, "cannot request MQTT subscriptions");
                    }
                }
                Ok(Event::Subscribed(granted)) => {
                    let mut refused = Vec::new();
                    for (granted, sub) in granted.into_iter().zip(&b.subscriptions) {
                        if granted {
                            self.stats.mqtt_subscriptions_acked.inc();
                        } else {
                            warn!(%broker, topic = %sub.topic, "MQTT broker refused the subscription");
                            refused.push(sub.topic.as_str());
                        }
                    }
                    if !refused.is_empty() {
                        let reason = Reason::new(
                            ReasonKind::Error,
                            format!("subscription refused by the broker: {}", refused.join(", ")),
                        );
                        report_device(&self.stats, &out, &device, |b, k, now| {
                            b.degraded(k, reason, now)
                        })
                        .await?;
                    }
                }
                Ok(Event::Message(publish)) => {
                    let i = b
                        .subscriptions
                        .iter()
                        .position(|s| topic_matches(&s.topic, &publish.topic));
                    let topic = i.map_or("", |i| b.subscriptions[i].topic.as_str());
                    self.stats.record_mqtt_message(&b.client_id, topic);
                    let Some(i) = i else {
                        debug!(%broker, topic = %publish.topic, "MQTT message matches no subscription");
                        self.ack_now(&client, &publish);
                        continue;
                    };
                    let sub = &b.subscriptions[i];
                    let mark = (exactly_once && publish.needs_ack).then(|| MqttMark {
                        client_id: b.client_id.clone(),
                        packet_id: publish.packet_id(),
                        digest: mqtt_digest(&publish.topic, publish.payload()),
                    });
                    if let Some(m) = &mark {
                        if publish.dup() && delivered.get(&m.packet_id) == Some(&m.digest) {
                            // Committed before; acknowledged once whatever
                            // came before it is committed too.
                            self.stats.mqtt_redeliveries_skipped.inc();
                            debug!(%broker, topic = %publish.topic, packet_id = m.packet_id, "MQTT redelivery of a message the spool holds; acknowledged, not stored again");
                            acks.sent(publish, self.stats.readings_produced.get());
                            continue;
                        }
                    }
                    let result = match sub.format {
                        PayloadFormat::Sparkplug {
                            rebirth_requests, ..
                        } => {
                            self.sparkplug(&mut sparkplug, sub, &publish, &client, rebirth_requests)
                        }
                        _ => self.readings(sub, &publish, &mut series),
                    };
                    match result {
                        Ok(readings) => {
                            let closed = || SourceError::OutputClosed {
                                source_name: format!("mqtt {}", b.client_id),
                            };
                            if let Some(m) = mark {
                                // Readings and mark in one batch.
                                self.stats.readings_produced.add(readings.len() as u64);
                                delivered.insert(m.packet_id, m.digest);
                                let mark = Mark::Mqtt(m);
                                if out.send(Input::Sample { readings, mark }).await.is_err() {
                                    return Err(closed());
                                }
                            } else {
                                for r in readings {
                                    self.stats.readings_produced.inc();
                                    if out.send(r.into()).await.is_err() {
                                        return Err(closed());
                                    }
                                }
                            }
                            if self.ack_after_commit && publish.needs_ack {
                                acks.sent(publish, self.stats.readings_produced.get());
                            }
                        }
                        Err(error) => {
                            self.ack_now(&client, &publish);
                            self.stats.record_mqtt_malformed(&b.client_id, &sub.topic);
                            if let Some(suppressed) = limiters[i].allow(Instant::now()) {
                                warn!(%broker, subscription = %sub.topic, suppressed, %error, "malformed MQTT message skipped");
                            }
                        }
                    }
                }
                Ok(Event::DisconnectSent | Event::Other) => {}
                Err(error) => {
                    self.stats
                        .record_mqtt_connection_error(&b.client_id, &error.to_string());
                    if failures == 0 {
                        warn!(%broker, client_id = %b.client_id, %error, "MQTT connection failed; reconnecting with backoff");
                    }
                    let reason = Reason::from_transport(&error.to_string());
                    report_device(&self.stats, &out, &device, |b, k, now| {
                        b.down(k, reason, now)
                    })
                    .await?;
                    // Sparkplug: what the edge nodes last said is no longer
                    // known to be true (once per lost session).
                    for r in sparkplug.reader.lose_session(now_us()) {
                        self.stats.readings_produced.inc();
                        if out.send(r.into()).await.is_err() {
                            return Err(SourceError::OutputClosed {
                                source_name: format!("mqtt {}", b.client_id),
                            });
                        }
                    }
                    // BACKOFF_MIN at first, doubled per failure in a row, jittered.
                    let backoff =
                        backoff_delay(BACKOFF_MIN, failures, BACKOFF_MAX, fastrand::f64());
                    failures = failures.saturating_add(1);
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
    }

    /// Acknowledge a message that yields no readings (malformed, unmatched):
    /// there is nothing to commit, and redelivery would not help.
    fn ack_now(&self, client: &Client, publish: &Message) {
        if self.ack_after_commit && publish.needs_ack {
            if let Err(error) = client.try_ack(publish) {
                warn!(topic = %publish.topic, %error, "cannot acknowledge MQTT message");
            }
        }
    }

    /// The readings of one Sparkplug B message, or why it is malformed;
    /// its session problems are counted and logged (rate-limited), and a
    /// rebirth request is published when one is due and allowed.
    fn sparkplug(
        &self,
        state: &mut SparkplugState,
        sub: &Subscription,
        publish: &Message,
        client: &Client,
        rebirth_requests: bool,
    ) -> Result<Vec<Reading>, PayloadError> {
        let topic = publish.topic.as_str();
        let read = state
            .reader
            .read(sub, &self.tags, topic, publish.payload(), now_us())
            .map_err(|reason| PayloadError {
                topic: topic.to_string(),
                reason,
            })?;
        let outcome = &read.outcome;
        for p in &outcome.problems {
            self.stats.record_sparkplug_problem(p.as_str());
        }
        if let Some(first) = outcome.problems.first() {
            if let Some(suppressed) = state.log.allow(Instant::now()) {
                warn!(%topic, problem = first.as_str(), detail = ?first, suppressed, "Sparkplug session problem");
            }
        }
        for s in &outcome.skipped {
            // Once per birth: a birth names each metric once.
            self.stats.sparkplug_unsupported_metrics.inc();
            info!(%topic, device = s.device.as_deref().unwrap_or(""), metric = %s.metric, datatype = %s.datatype, "Sparkplug metric of a type not carried as readings; skipped");
        }
        if let Some(node) = &outcome.rebirth {
            if rebirth_requests {
                let now_ms = u64::try_from(now_us() / 1000).unwrap_or(0);
                let (ncmd, payload) = sparkplug_rebirth(node, now_ms);
                match client.try_publish(&ncmd, payload) {
                    Ok(()) => {
                        self.stats.sparkplug_rebirths_requested.inc();
                        info!(topic = %ncmd, "Sparkplug rebirth requested");
                    }
                    Err(error) => {
                        warn!(topic = %ncmd, %error, "cannot publish the Sparkplug rebirth request")
                    }
                }
            } else {
                self.stats.sparkplug_rebirths_not_sent.inc();
            }
        }
        Ok(read.readings)
    }

    /// The readings of one message, or why it is malformed.
    fn readings(
        &self,
        sub: &Subscription,
        publish: &Message,
        cache: &mut HashMap<(String, String), Arc<SeriesInfo>>,
    ) -> Result<Vec<Reading>, PayloadError> {
        let topic = publish.topic.as_str();
        let malformed = |reason| PayloadError {
            topic: topic.to_string(),
            reason,
        };
        let samples = payload::decode(sub, topic, publish.payload(), now_us())?;
        let levels: Vec<&str> = topic.split('/').collect();
        let base = sub
            .series
            .expand(&levels)
            .map_err(|level| malformed(Malformed::MissingLevel { level }))?;
        if cache.len() >= SERIES_CACHE_MAX {
            cache.clear();
        }
        let mut readings = Vec::with_capacity(samples.len());
        for s in samples {
            let name = match &s.field {
                Some(field) => format!("{base}.{field}"),
                None => base.clone(),
            };
            if !is_plain_name(&name) {
                return Err(malformed(Malformed::BadSeriesName { name }));
            }
            let key = (topic.to_string(), name);
            let info = match cache.get(&key) {
                Some(info) => info.clone(),
                None => {
                    let mut tags = self.tags.clone();
                    for (k, v) in &sub.tags {
                        let v = v
                            .expand(&levels)
                            .map_err(|level| malformed(Malformed::MissingLevel { level }))?;
                        tags.insert(k.clone(), v);
                    }
                    tags.insert("protocol".into(), "mqtt".into());
                    tags.insert("topic".into(), topic.to_string());
                    let info = Arc::new(SeriesInfo {
                        name: key.1.clone(),
                        unit: s.unit.clone(),
                        tags,
                    });
                    cache.insert(key, info.clone());
                    info
                }
            };
            readings.push(Reading {
                series: info,
                ts_us: s.ts_us,
                value: s.value,
                quality: s.quality,
            });
        }
        Ok(readings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_filters_match_like_the_broker() {
        let rows = [
            ("plant/+/temp", "plant/l1/temp", true),
            ("plant/+/temp", "plant/l1/x/temp", false),
            ("plant/+/temp", "plant//temp", true),
            ("plant/#", "plant", true),
            ("plant/#", "plant/a/b/c", true),
            ("#", "anything/at/all", true),
            ("#", "$SYS/broker/uptime", false),
            ("+/x", "$SYS/x", false),
            ("plant/l1", "plant/l1/temp", false),
            ("plant/l1/temp", "plant/l1", false),
            ("a/b", "a/b", true),
        ];
        for (filter, topic, want) in rows {
            assert_eq!(topic_matches(filter, topic), want, "{filter} vs {topic}");
        }
    }
}
