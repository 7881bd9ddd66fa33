//! The frames source: a microcontroller running `firmware-shim` on a serial
//! line or behind a serial server (`[[frames]]`), decoded with the shim's
//! own decoder.
//!
//! Thin I/O around the pure [`session::Session`], which decides what each
//! message means. What this module guarantees:
//! - a samples message is acknowledged to the device only once its readings
//!   are committed to the spool (the rule MQTT QoS 1 follows, with the same
//!   [`AckQueue`]); until then the device keeps it in its ring and resends
//!   it, so a pulled cable or a killed agent loses nothing the ring held;
//! - a resend of a sample already taken in this process is not taken again
//!   (counted in `frames_duplicates_total`) and is acknowledged again once
//!   committed;
//! - corrupt frames (CRC, stuffing, length, version, body) are counted
//!   (`frames_crc_errors_total`, `frames_bad_frames_total`) and never
//!   decoded into values; the decoder resynchronises at the next delimiter;
//! - a lost link (the device unplugged, the serial server gone) is retried
//!   with the jittered backoff and logged once while it lasts;
//! - samples the device reports as dropped (its ring overflowed) are
//!   counted (`frames_device_dropped_total`), logged, and recorded as a gap
//!   (reason `device_dropped`) in the spool, which reaches the relay like
//!   the spool's own gaps; its interval is bounded by the samples around
//!   the loss.
//!
//! - across an agent restart (a crash, SIGKILL, a power cut), samples are
//!   taken exactly once too: the seqs taken of each device's boot are
//!   committed in the transaction of the batch that holds their readings
//!   ([`crate::spool::frames`]), and at the device's next birth of the same
//!   boot they are read back, so its resends of samples committed but not
//!   yet acknowledged are duplicates. Only a spool that cannot be read back
//!   (logged) makes this at least once.

pub mod session;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use firmware_shim::frame::{encode, Decoder, FrameError, MAX_ENCODED};
use firmware_shim::{Ack, Message, Nack};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::session::{Decision, Session};
use crate::config::frames::{FramesDevice, FramesLink};
use crate::devices::{DeviceKey, Reason, SourceKind};
use crate::reading::{now_us, Input, Quality, Reading, SeriesInfo};
use crate::source::mqtt::ack::AckQueue;
use crate::source::{report_device, SourceError};
use crate::spool::frames::FrameMark;
use crate::spool::Mark;
use crate::spool::{DropReason, Gap, SharedSpool};
use crate::stats::{AgentStats, FrameEvent};
use crate::timing::{backoff_delay, LogLimiter};

/// How often committed samples are checked for acknowledgement.
const ACK_CHECK: Duration = Duration::from_millis(20);
/// The first wait after a lost link; doubled up to [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A byte stream to a device.
pub(crate) trait Link: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Link for T {}

/// One `[[frames]]` device.
pub struct FramesSource {
    pub device: FramesDevice,
    /// The gateway's tags, under the device's.
    pub tags: BTreeMap<String, String>,
    pub stats: Arc<AgentStats>,
    /// Where gaps of samples the device dropped are recorded, and what an
    /// earlier agent process took of a device's boot is read back.
    pub spool: SharedSpool,
    pub gateway_id: String,
}

/// Why a served link ended.
enum End {
    Shutdown,
    Lost(String),
}

impl FramesSource {
    /// Count `n` times `event`, agent-wide and for this device's link.
    fn count(&self, event: FrameEvent, n: u64) {
        self.stats
            .record_frames(&self.device.link.to_string(), event, n);
    }

    /// This link on the device board: its configured name, else the link.
    fn device_key(&self) -> DeviceKey {
        let name = match &self.device.name {
            Some(name) => name.clone(),
            None => self.device.link.to_string(),
        };
        DeviceKey::new(SourceKind::Frames, name)
    }

    /// Read the device until `shutdown`, reconnecting when the link is lost.
    pub async fn run(
        self,
        out: mpsc::Sender<Input>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let mut session = Session::new(self.device.name.clone());
        let mut last_ts: Option<i64> = None;
        let mut failures = 0u32;
        let device = self.device_key();
        self.stats
            .devices
            .with(|board| board.register(device.clone(), now_us()));
        loop {
            let link = match open(&self.device.link).await {
                Ok(link) => {
                    if failures > 0 {
                        info!(device = %self.device.link, failed_attempts = failures, "frames link open again");
                    }
                    link
                }
                Err(error) => {
                    self.count(FrameEvent::LinkError, 1);
                    if failures == 0 {
                        warn!(device = %self.device.link, %error, "cannot open the frames link; retrying with backoff");
                    }
                    let reason = Reason::from_transport(&format!("cannot open: {error}"));
                    report_device(&self.stats, &out, &device, |b, k, now| {
                        b.down(k, reason, now)
                    })
                    .await?;
                    failures = failures.saturating_add(1);
                    let wait = backoff_delay(BACKOFF_BASE, failures, BACKOFF_MAX, fastrand::f64());
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(wait) => continue,
                    }
                }
            };
            match self
                .serve(link, &mut session, &mut last_ts, &out, &shutdown)
                .await?
            {
                End::Shutdown => return Ok(()),
                End::Lost(why) => {
                    self.count(FrameEvent::LinkError, 1);
                    warn!(device = %self.device.link, reason = %why, "frames link lost; reconnecting");
                    failures = 1;
                    let reason = Reason::new(
                        crate::devices::ReasonKind::ConnectionLost,
                        format!("link lost: {why}"),
                    );
                    report_device(&self.stats, &out, &device, |b, k, now| {
                        b.down(k, reason, now)
                    })
                    .await?;
                }
            }
        }
    }

    /// Serve one open link until it ends.
    async fn serve(
        &self,
        mut link: Box<dyn Link>,
        session: &mut Session,
        last_ts: &mut Option<i64>,
        out: &mpsc::Sender<Input>,
        shutdown: &CancellationToken,
    ) -> Result<End, SourceError> {
        let mut decoder = Decoder::new();
        let mut acks: AckQueue<u32> = AckQueue::default();
        // Taken, not yet committed: an ack must stay below the first.
        let mut uncommitted: std::collections::BTreeSet<u32> = Default::default();
        let mut last_acked: Option<u32> = None;
        let mut series: BTreeMap<u8, Arc<SeriesInfo>> = self.series(session);
        let mut bad_log = LogLimiter::new(Duration::from_secs(10));
        let mut tick = tokio::time::interval(ACK_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buf = [0u8; 512];
        // A leading delimiter flushes whatever half frame the device holds.
        if let Err(e) = link.write_all(&[0]).await {
            return Ok(End::Lost(e.to_string()));
        }
        loop {
            let n = tokio::select! {
                _ = shutdown.cancelled() => return Ok(End::Shutdown),
                r = link.read(&mut buf) => match r {
                    Ok(0) => return Ok(End::Lost("end of stream".into())),
                    Ok(n) => n,
                    Err(e) => return Ok(End::Lost(e.to_string())),
                },
                _ = tick.tick() => {
                    let done = self.stats.readings_settled();
                    for seq in acks.committed(done) {
                        uncommitted.remove(&seq);
                    }
                    let ack = match (session.settled_through(now_us()), uncommitted.first()) {
                        (Some(s), Some(&u)) if u <= s => u.checked_sub(1),
                        (settled, _) => settled,
                    };
                    if let Some(seq) = ack.filter(|&a| last_acked.is_none_or(|l| a > l)) {
                        last_acked = Some(seq);
                        session.acked(seq);
                        if let Err(e) = send(&mut link, &Message::Ack(Ack { seq })).await {
                            return Ok(End::Lost(e.to_string()));
                        }
                    }
                    continue;
                }
            };
            let mut replies = Vec::new();
            for &byte in &buf[..n] {
                let Some(frame) = decoder.push(byte) else {
                    continue;
                };
                let msg = match frame {
                    Ok(msg) => msg,
                    Err(error) => {
                        match error {
                            FrameError::Crc => self.count(FrameEvent::CrcError, 1),
                            _ => self.count(FrameEvent::BadFrame, 1),
                        }
                        if let Some(suppressed) = bad_log.allow(tokio::time::Instant::now()) {
                            warn!(device = %self.device.link, %error, suppressed, "frame dropped");
                        }
                        continue;
                    }
                };
                self.count(FrameEvent::Received, 1);
                report_device(&self.stats, out, &self.device_key(), |b, k, now| {
                    b.ok(k, now)
                })
                .await?;
                match session.on_message(msg, now_us()) {
                    Decision::Birth { new_boot } => {
                        self.count(FrameEvent::Birth, 1);
                        if new_boot {
                            self.restore(session).await;
                        }
                        series = self.series(session);
                        info!(device = %self.device.link, device_id = session.device_id().unwrap_or(""), channels = series.len(), new_boot, "microcontroller birth");
                        replies.push(Message::TimeSync {
                            unix_ms: (now_us() / 1000) as u64,
                            device_ticks: 0,
                        });
                    }
                    Decision::Take { seq, values, lost } => {
                        let ts = values.first().map_or(now_us(), |v| v.ts_us);
                        if lost > 0 {
                            self.count(FrameEvent::DeviceDropped, u64::from(lost));
                            warn!(device = %self.device.link, lost, seq, "the microcontroller dropped samples before they reached the agent (its ring was full); gap recorded");
                            let gap = Gap {
                                reason: DropReason::Device,
                                first_us: last_ts.unwrap_or(ts).min(ts),
                                last_us: ts,
                                readings: u64::from(lost) * values.len().max(1) as u64,
                                batches: 0,
                            };
                            let gw = self.gateway_id.clone();
                            let recorded = self
                                .spool
                                .call(move |s| s.record_gap(&gw, gap, now_us()))
                                .await;
                            if let Err(error) = recorded {
                                warn!(device = %self.device.link, %error, "the gap of dropped samples could not be recorded");
                            }
                        }
                        *last_ts = Some(last_ts.map_or(ts, |t| t.max(ts)));
                        let readings: Vec<Reading> = values
                            .into_iter()
                            .map(|v| Reading {
                                series: series[&v.channel].clone(),
                                ts_us: v.ts_us,
                                value: v.value,
                                quality: Quality::Good,
                            })
                            .collect();
                        self.stats.readings_produced.add(readings.len() as u64);
                        let (Some(device_id), Some(boot_id)) =
                            (session.device_id(), session.boot_id())
                        else {
                            unreachable!("samples are taken only after a birth");
                        };
                        let mark = Mark::Frame(FrameMark {
                            device_id: device_id.to_owned(),
                            boot_id,
                            seq,
                            settled: session.settled(),
                        });
                        if out.send(Input::Sample { readings, mark }).await.is_err() {
                            return Err(SourceError::OutputClosed {
                                source_name: self.device.link.to_string(),
                            });
                        }
                        uncommitted.insert(seq);
                        acks.sent(seq, self.stats.readings_produced.get());
                    }
                    Decision::Duplicate { seq } => {
                        self.count(FrameEvent::Duplicate, 1);
                        if let Some(acked) = last_acked.filter(|&a| a >= seq) {
                            replies.push(Message::Ack(Ack { seq: acked }));
                        }
                    }
                    Decision::Refuse { seq, reason } => {
                        self.count(FrameEvent::Nack, 1);
                        replies.push(Message::Nack(Nack { seq, reason }));
                    }
                    Decision::Alive | Decision::Ignore => {}
                }
            }
            for reply in replies {
                if let Err(e) = send(&mut link, &reply).await {
                    return Ok(End::Lost(e.to_string()));
                }
            }
        }
    }

    /// A new boot's birth: what an earlier agent process committed of this
    /// boot, from the spool, so that the device's resends of it are not
    /// taken twice. Without it (the spool cannot be read) the session
    /// starts as if nothing were known: at least once instead.
    async fn restore(&self, session: &mut Session) {
        let (Some(device_id), Some(boot_id)) = (session.device_id(), session.boot_id()) else {
            return;
        };
        let id = device_id.to_owned();
        let progress = self.spool.call(move |s| s.frame_progress(&id)).await;
        match progress {
            Ok(Some(p)) if p.boot_id == boot_id => {
                info!(device = %self.device.link, device_id, boot_id, settled = p.settled, taken_above = p.taken.len(), "microcontroller boot already seen before this agent started; its committed samples will not be taken again");
                session.restore(boot_id, p.settled, &p.taken);
            }
            Ok(_) => {}
            Err(error) => {
                warn!(device = %self.device.link, device_id, %error, "cannot read what was taken of this device before; its resends may be taken twice");
            }
        }
    }

    /// The series of the session's channels, with the configured tags.
    fn series(&self, session: &Session) -> BTreeMap<u8, Arc<SeriesInfo>> {
        session
            .channels()
            .map(|(&i, c)| {
                let mut tags = self.tags.clone();
                tags.extend(self.device.tags.clone());
                tags.insert("protocol".into(), "frames".into());
                if let Some(id) = session.device_id() {
                    tags.insert("device".into(), id.to_owned());
                }
                let info = SeriesInfo {
                    name: c.series.clone(),
                    unit: c.unit.clone(),
                    tags,
                };
                (i, Arc::new(info))
            })
            .collect()
    }
}

/// Open the byte stream to a device: its serial line, or a TCP connection
/// to its serial server (5 s to connect). The probe opens it the same way.
pub(crate) async fn open(link: &FramesLink) -> std::io::Result<Box<dyn Link>> {
    match link {
        FramesLink::Serial(line) => Ok(Box::new(crate::source::modbus::line::open(line)?)),
        FramesLink::Tcp(addr) => {
            let s =
                tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                    })??;
            s.set_nodelay(true)?;
            Ok(Box::new(s))
        }
    }
}

/// Write `msg` as one frame.
pub(crate) async fn send(link: &mut Box<dyn Link>, msg: &Message) -> std::io::Result<()> {
    let mut out = [0u8; MAX_ENCODED];
    let n = encode(msg, &mut out).map_err(|e| std::io::Error::other(e.to_string()))?;
    link.write_all(&out[..n]).await?;
    link.flush().await
}
