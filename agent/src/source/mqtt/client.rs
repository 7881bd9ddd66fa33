//! One face over rumqttc's MQTT 3.1.1 and MQTT 5 clients, so the source is
//! written once: [`connect`] builds the client for the broker's protocol
//! version (TLS, credentials, keep-alive, session and manual
//! acknowledgements applied the same way to both), and [`Connection::poll`]
//! turns either event loop's events into the few [`Event`]s the source acts
//! on.
//!
//! Not for reading payloads ([`super::payload`]) or deciding when to
//! acknowledge ([`super::ack`]).

use rumqttc::v5;
use rumqttc::{Outgoing, Transport};

use crate::config::mqtt::{MqttBroker, MqttProtocol, Qos, Subscription};

/// Session expiry asked of an MQTT 5 broker for a persistent session:
/// never, like an MQTT 3.1.1 session with the clean session flag off.
const PERSISTENT_SESSION_EXPIRY_S: u32 = u32::MAX;

/// Room in rumqttc's request channel; acknowledgements that do not fit
/// wait for the next check (see [`super::ack`]).
const REQUEST_CAPACITY: usize = 256;

/// MQTT 5 Receive Maximum: how many unacknowledged QoS 1 messages the broker
/// may have in flight to us (without it, 65535), kept below
/// [`REQUEST_CAPACITY`] so one batch commit can acknowledge them all at
/// once. MQTT 3.1.1 has no such setting: the broker decides.
const RECEIVE_MAXIMUM: u16 = 100;

/// Sends requests (subscribe, acknowledge, disconnect) to the broker.
pub enum Client {
    V311(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

/// The connection's event loop; it reconnects when polled after an error.
// One per broker for the source's lifetime: the size difference is harmless.
#[allow(clippy::large_enum_variant)]
pub enum Connection {
    V311(rumqttc::EventLoop),
    V5(v5::EventLoop),
}

/// What the source acts on; every other packet is [`Event::Other`].
// A message is the common case: boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event {
    /// The broker accepted the connection (CONNACK).
    Connected,
    /// The broker answered the subscription request (SUBACK): one entry per
    /// filter, in request order, true when granted.
    Subscribed(Vec<bool>),
    Message(Message),
    /// Our DISCONNECT went out.
    DisconnectSent,
    Other,
}

/// A received PUBLISH.
#[derive(Debug)]
pub struct Message {
    pub topic: String,
    /// Whether the broker waits for an acknowledgement (QoS 1 or 2).
    pub needs_ack: bool,
    publish: Publish,
}

#[derive(Debug)]
enum Publish {
    V311(rumqttc::Publish),
    V5(v5::mqttbytes::v5::Publish),
}

impl Message {
    pub fn payload(&self) -> &[u8] {
        match &self.publish {
            Publish::V311(p) => &p.payload,
            Publish::V5(p) => &p.payload,
        }
    }

    /// The packet id (0 for QoS 0).
    pub fn packet_id(&self) -> u16 {
        match &self.publish {
            Publish::V311(p) => p.pkid,
            Publish::V5(p) => p.pkid,
        }
    }

    /// Whether the broker marked it as a redelivery (DUP).
    pub fn dup(&self) -> bool {
        match &self.publish {
            Publish::V311(p) => p.dup,
            Publish::V5(p) => p.dup,
        }
    }
}

/// The connection failed; polling again reconnects.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error(transparent)]
    V311(#[from] rumqttc::ConnectionError),
    #[error(transparent)]
    V5(#[from] v5::ConnectionError),
}

/// A request could not be queued (the event loop is gone or its channel
/// full). Only rumqttc's message is kept: its errors carry the whole request.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(String);

impl From<rumqttc::ClientError> for ClientError {
    fn from(e: rumqttc::ClientError) -> Self {
        ClientError(e.to_string())
    }
}

impl From<v5::ClientError> for ClientError {
    fn from(e: v5::ClientError) -> Self {
        ClientError(e.to_string())
    }
}

/// The client and event loop for `broker`. With `manual_acks`, QoS 1
/// messages are acknowledged only by [`Client::try_ack`].
pub fn connect(broker: &MqttBroker, manual_acks: bool) -> (Client, Connection) {
    let b = broker;
    let transport = match &b.tls {
        Some(tls) => {
            Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls.client_config.clone()))
        }
        None => Transport::tcp(),
    };
    match b.protocol {
        MqttProtocol::V311 => {
            let mut o = rumqttc::MqttOptions::new(b.client_id.clone(), b.host.clone(), b.port);
            o.set_transport(transport)
                .set_keep_alive(b.keep_alive)
                .set_clean_session(b.clean_session)
                .set_manual_acks(manual_acks);
            if let Some((user, password)) = &b.credentials {
                o.set_credentials(user.clone(), password.clone());
            }
            let (client, events) = rumqttc::AsyncClient::new(o, REQUEST_CAPACITY);
            (Client::V311(client), Connection::V311(events))
        }
        MqttProtocol::V5 => {
            let mut o = v5::MqttOptions::new(b.client_id.clone(), b.host.clone(), b.port);
            o.set_transport(transport)
                .set_keep_alive(b.keep_alive)
                .set_clean_start(b.clean_session)
                .set_receive_maximum(Some(RECEIVE_MAXIMUM))
                .set_manual_acks(manual_acks);
            if !b.clean_session {
                o.set_session_expiry_interval(Some(PERSISTENT_SESSION_EXPIRY_S));
            }
            if let Some((user, password)) = &b.credentials {
                o.set_credentials(user.clone(), password.clone());
            }
            let (client, events) = v5::AsyncClient::new(o, REQUEST_CAPACITY);
            (Client::V5(client), Connection::V5(events))
        }
    }
}

impl Connection {
    /// The next event; an error means the connection is down.
    pub async fn poll(&mut self) -> Result<Event, ConnectionError> {
        use rumqttc::Event as E3;
        use rumqttc::Packet as P3;
        use v5::mqttbytes::v5::Packet as P5;
        use v5::Event as E5;
        Ok(match self {
            Connection::V311(events) => match events.poll().await? {
                E3::Incoming(P3::ConnAck(_)) => Event::Connected,
                E3::Incoming(P3::SubAck(ack)) => Event::Subscribed(
                    ack.return_codes
                        .iter()
                        .map(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)))
                        .collect(),
                ),
                E3::Incoming(P3::Publish(p)) => Event::Message(Message {
                    topic: p.topic.clone(),
                    needs_ack: p.qos != rumqttc::QoS::AtMostOnce,
                    publish: Publish::V311(p),
                }),
                E3::Outgoing(Outgoing::Disconnect) => Event::DisconnectSent,
                _ => Event::Other,
            },
            Connection::V5(events) => match events.poll().await? {
                E5::Incoming(P5::ConnAck(_)) => Event::Connected,
                E5::Incoming(P5::SubAck(ack)) => Event::Subscribed(
                    ack.return_codes
                        .iter()
                        .map(|c| matches!(c, v5::mqttbytes::v5::SubscribeReasonCode::Success(_)))
                        .collect(),
                ),
                E5::Incoming(P5::Publish(p)) => Event::Message(Message {
                    // MQTT 5 requires UTF-8 topics; a broken one matches no
                    // subscription and is skipped like any unmatched message.
                    topic: String::from_utf8_lossy(&p.topic).into_owned(),
                    needs_ack: p.qos != v5::mqttbytes::QoS::AtMostOnce,
                    publish: Publish::V5(p),
                }),
                E5::Outgoing(Outgoing::Disconnect) => Event::DisconnectSent,
                _ => Event::Other,
            },
        })
    }
}

impl Client {
    /// Request every subscription, in configuration order.
    pub fn try_subscribe(&self, subscriptions: &[Subscription]) -> Result<(), ClientError> {
        match self {
            Client::V311(c) => c.try_subscribe_many(subscriptions.iter().map(|s| {
                let qos = match s.qos {
                    Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
                    Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
                };
                rumqttc::SubscribeFilter::new(s.topic.clone(), qos)
            }))?,
            Client::V5(c) => c.try_subscribe_many(subscriptions.iter().map(|s| {
                let qos = match s.qos {
                    Qos::AtMostOnce => v5::mqttbytes::QoS::AtMostOnce,
                    Qos::AtLeastOnce => v5::mqttbytes::QoS::AtLeastOnce,
                };
                v5::mqttbytes::v5::Filter::new(s.topic.clone(), qos)
            }))?,
        }
        Ok(())
    }

    /// Acknowledge a message (PUBACK); a no-op for QoS 0.
    pub fn try_ack(&self, message: &Message) -> Result<(), ClientError> {
        match (self, &message.publish) {
            (Client::V311(c), Publish::V311(p)) => c.try_ack(p)?,
            (Client::V5(c), Publish::V5(p)) => c.try_ack(p)?,
            // A connection only yields messages of its own version.
            _ => unreachable!("MQTT message acknowledged on a client of another version"),
        }
        Ok(())
    }

    /// Queue a QoS 0, not retained PUBLISH (a Sparkplug NCMD).
    pub fn try_publish(&self, topic: &str, payload: Vec<u8>) -> Result<(), ClientError> {
        match self {
            Client::V311(c) => c.try_publish(topic, rumqttc::QoS::AtMostOnce, false, payload)?,
            Client::V5(c) => {
                c.try_publish(topic, v5::mqttbytes::QoS::AtMostOnce, false, payload)?
            }
        }
        Ok(())
    }

    /// Queue a DISCONNECT.
    pub fn try_disconnect(&self) -> Result<(), ClientError> {
        match self {
            Client::V311(c) => c.try_disconnect()?,
            Client::V5(c) => c.try_disconnect()?,
        }
        Ok(())
    }
}
