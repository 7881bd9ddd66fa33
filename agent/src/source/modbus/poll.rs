//! The poll loop of one Modbus link: one TCP connection to one device, or
//! one serial line shared by the RTU devices on it ([`ModbusLink`]).
//!
//! A link carries one transaction at a time; [`super::schedule`] decides
//! which device's poll group goes next. Faults, and what each costs:
//!
//! - every request has the device's timeout; a failed request (timeout,
//!   I/O error, CRC error) is repeated at once up to `retries` times, then
//!   the device counts as down and is retried with exponential backoff and
//!   jitter, logged once when it goes down and once when it comes back
//!   (the rules are [`super::health`]'s). A device that is down holds only its own slots:
//!   on a shared serial line the other slaves keep their rate, and the dead
//!   one costs one timeout per backoff period;
//! - after a failed request a late reply must never be matched to the next
//!   request: a TCP connection is dropped and opened again; on a serial
//!   line a fresh tokio-modbus context is attached and the line is flushed
//!   before the next request ([`super::line::GuardedLine`]);
//! - on a serial line, the frame gap of the baud rate is kept between
//!   transactions, and a reply with a bad CRC is counted;
//! - an exception code is the device's answer, not a failure of the agent:
//!   the block's points are emitted with quality `Bad`, counted per device
//!   and code, the other blocks keep flowing, and it is logged when a block
//!   starts and stops failing rather than on every poll.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

use tokio_modbus::client::{rtu, tcp, Context, Reader};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::Slave;
use tokio_serial::SerialStream;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::decode::{decode_bits, decode_registers};
use super::health::{Change, Health};
use super::line::{self, classify, Failure, GuardedLine};
use super::plan::{plan_group, ReadBlock, ReadLimits};
use super::schedule::{stagger, Schedule, Slot};
use super::types::Table;
use crate::config::{Link, ModbusDevice};
use crate::devices::{DeviceBoard, DeviceKey, Reason, ReasonKind, SourceKind, Transition};
use crate::reading::{now_us, Input, Quality, Reading, SeriesInfo};
use crate::source::{report_device, SourceError};
use crate::stats::{AgentStats, ModbusEvent};

/// Polls one Modbus TCP device over its own connection: a [`ModbusLink`]
/// with one device.
pub struct ModbusSource {
    pub device: ModbusDevice,
    /// One entry per point, in the device's point order.
    pub series: Vec<Arc<SeriesInfo>>,
    pub stats: Arc<AgentStats>,
}

impl ModbusSource {
    pub async fn run(
        self,
        out: mpsc::Sender<Input>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        ModbusLink {
            link: self.device.link.clone(),
            devices: vec![LinkDevice {
                device: self.device,
                series: self.series,
                stagger: (0, 1),
            }],
            stats: self.stats,
        }
        .run(out, shutdown)
        .await
    }
}

/// One device on a link.
pub struct LinkDevice {
    pub device: ModbusDevice,
    /// One entry per point, in the device's point order.
    pub series: Vec<Arc<SeriesInfo>>,
    /// (k, n): this is device k of the agent's n, and its first polls are
    /// put off by k/n of each interval ([`stagger`]).
    pub stagger: (usize, usize),
}

/// The devices behind one link, polled one transaction at a time.
pub struct ModbusLink {
    pub link: Link,
    pub devices: Vec<LinkDevice>,
    pub stats: Arc<AgentStats>,
}

/// What a read brought back.
pub enum Data {
    Registers(Vec<u16>),
    Bits(Vec<bool>),
}

/// The device's answer to one request.
enum Answer {
    Data(Data),
    /// A Modbus exception code.
    Exception(u8),
}

/// A request that got no usable answer.
struct Failed {
    /// What went wrong, for the log.
    error: String,
    /// The link itself broke (connection refused or reset, serial port
    /// gone): it must be opened again, whichever device is asked next.
    link_broken: bool,
    /// The reason kind, when the error's type says it (an I/O error on an
    /// open TCP connection: the connection is lost, whatever the OS text,
    /// e.g. "Resource temporarily unavailable" once the device closed it);
    /// `None`: the device board tells from the text.
    kind: Option<ReasonKind>,
}

impl Failed {
    /// The reason for the device board.
    fn reason(&self) -> Reason {
        match self.kind {
            Some(kind) => Reason::new(kind, &self.error),
            None => Reason::from_transport(&self.error),
        }
    }
}

/// An open link.
enum Conn {
    Tcp(Context),
    Serial {
        ctx: Context,
        line: GuardedLine<SerialStream>,
        frame_gap: Duration,
    },
}

impl ModbusLink {
    pub async fn run(
        self,
        out: mpsc::Sender<Input>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let start = Instant::now();
        // plans[device][group] and whether each block failed last time.
        let plans: Vec<Vec<Vec<ReadBlock>>> = self
            .devices
            .iter()
            .map(|d| {
                let limits = ReadLimits {
                    max_gap: d.device.max_gap,
                    max_read: d.device.max_read,
                };
                (0..d.device.groups.len())
                    .map(|g| plan_group(&d.device.points, g, limits))
                    .collect()
            })
            .collect();
        // The exception code each block answered with last time, if any.
        let mut failing: Vec<Vec<Vec<Option<u8>>>> = plans
            .iter()
            .map(|groups| groups.iter().map(|b| vec![None; b.len()]).collect())
            .collect();
        let now = now_us();
        self.stats.devices.with(|board| {
            for d in &self.devices {
                board.register(DeviceKey::new(SourceKind::Modbus, &d.device.name), now);
            }
        });
        let mut slots = Vec::new();
        for (di, d) in self.devices.iter().enumerate() {
            let (k, n) = d.stagger;
            for (gi, g) in d.device.groups.iter().enumerate() {
                if !plans[di][gi].is_empty() {
                    slots.push(Slot {
                        device: di,
                        group: gi,
                        interval: g.interval,
                        due: start + stagger(k, n, g.interval),
                    });
                }
            }
        }
        let mut schedule = Schedule::new(slots);
        let mut health = vec![Health::default(); self.devices.len()];
        let mut conn: Option<Conn> = None;
        let mut link = Health::default();
        loop {
            let Some((slot, at)) = schedule.next(|d| health[d].hold().max(link.hold())) else {
                shutdown.cancelled().await;
                return Ok(());
            };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(at) => {}
            }
            // The spool refuses commits (`on_full = "block"`): take no
            // readings that could not be stored; the poll is skipped and
            // counted, and the slot comes round again next interval.
            if self.stats.held_back.get() {
                self.stats.polls_held_back.inc();
                schedule.served(slot, Instant::now());
                continue;
            }
            let Slot { device, group, .. } = schedule.slots()[slot];
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match self.open().await {
                    Ok(c) => {
                        if let Change::CameBack { failed_attempts } = link.on_answer() {
                            info!(link = %self.link, failed_attempts, "Modbus link open again");
                        }
                        conn.insert(c)
                    }
                    Err(error) => {
                        let name = &self.devices[device].device.name;
                        self.stats.record_modbus(name, ModbusEvent::TransportError);
                        let base = self.devices[device].device.poll_interval();
                        if link.on_failure(Instant::now(), base, fastrand::f64())
                            == Change::WentDown
                        {
                            warn!(link = %self.link, %error, "cannot open Modbus link; retrying with backoff");
                        }
                        // No device behind a link that does not open answers.
                        for d in 0..self.devices.len() {
                            let reason = Reason::from_transport(&error);
                            self.report(d, &out, |b, k, now| b.down(k, reason, now))
                                .await?;
                        }
                        continue;
                    }
                },
            };
            let d = &self.devices[device];
            let h = &mut health[device];
            let blocks = &plans[device][group];
            let mut down = None;
            for (block, failing) in blocks.iter().zip(failing[device][group].iter_mut()) {
                // A device in backoff gets one try, without repeats; once
                // it answers, it is up again.
                match self.read(c, d, block, h.retries(d.device.retries)).await {
                    Ok((answer, ts_us)) => {
                        if let Change::CameBack { failed_attempts } = h.on_answer() {
                            info!(device = %d.device.name, link = %self.link, unit = d.device.unit, failed_attempts, "Modbus device answers again");
                        }
                        for r in self.readings(d, block, answer, ts_us, failing) {
                            self.stats
                                .record_modbus(&d.device.name, ModbusEvent::Reading);
                            if out.send(r.into()).await.is_err() {
                                return Err(SourceError::OutputClosed {
                                    source_name: d.device.name.clone(),
                                });
                            }
                        }
                    }
                    Err(f) => {
                        down = Some((block, f));
                        break;
                    }
                }
            }
            let now = Instant::now();
            if let Some((block, f)) = down {
                if h.on_failure(now, d.device.poll_interval(), fastrand::f64()) == Change::WentDown
                {
                    warn!(device = %d.device.name, link = %self.link, unit = d.device.unit, table = block.table.as_str(), address = block.start, count = block.count, error = %f.error, "Modbus device not answering; retrying with backoff");
                }
                if f.link_broken || matches!(c, Conn::Tcp(_)) {
                    conn = None;
                }
                let reason = f.reason();
                self.report(device, &out, |b, k, now| b.down(k, reason, now))
                    .await?;
            } else {
                // Answering: degraded while any block of any of its
                // groups last answered with an exception.
                match failing[device].iter().flatten().flatten().next() {
                    Some(&code) => {
                        let reason = Reason::exception(code);
                        self.report(device, &out, |b, k, now| b.degraded(k, reason, now))
                            .await?
                    }
                    None => self.report(device, &out, |b, k, now| b.ok(k, now)).await?,
                }
            }
            schedule.served(slot, now);
        }
    }

    /// Put device `device`'s state on the board; a change worth an event
    /// goes to the pipeline, behind the readings taken before it.
    async fn report(
        &self,
        device: usize,
        out: &mpsc::Sender<Input>,
        update: impl FnOnce(&mut DeviceBoard, &DeviceKey, i64) -> Option<Transition>,
    ) -> Result<(), SourceError> {
        let key = DeviceKey::new(SourceKind::Modbus, &self.devices[device].device.name);
        report_device(&self.stats, out, &key, update).await
    }

    async fn open(&self) -> Result<Conn, String> {
        match &self.link {
            Link::Tcp(address) => {
                let limit = self.devices[0].device.timeout;
                let slave = Slave(self.devices[0].device.unit);
                match timeout(limit, tcp::connect_slave(*address, slave)).await {
                    Ok(Ok(ctx)) => Ok(Conn::Tcp(ctx)),
                    Ok(Err(e)) => Err(format!("connect failed: {e}")),
                    Err(_) => Err(format!("connect timed out after {} ms", limit.as_millis())),
                }
            }
            Link::Serial(l) => {
                let port = line::open(l).map_err(|e| format!("cannot open {}: {e}", l.device))?;
                let line = GuardedLine::new(port);
                Ok(Conn::Serial {
                    ctx: rtu::attach(line.clone()),
                    line,
                    frame_gap: l.frame_gap,
                })
            }
        }
    }

    /// One block from one device: the request, repeated up to `retries`
    /// times after a failure. A TCP connection is opened again before a
    /// repeat; a serial line gets a fresh context after every failure, and
    /// is flushed before the next request.
    async fn read(
        &self,
        conn: &mut Conn,
        d: &LinkDevice,
        block: &ReadBlock,
        retries: u32,
    ) -> Result<(Answer, i64), Failed> {
        let mut attempt = 0;
        loop {
            let result = transact(conn, d, block, &self.stats).await;
            let ts_us = now_us();
            let f = match result {
                Ok(answer) => return Ok((answer, ts_us)),
                Err(f) => f,
            };
            self.stats
                .record_modbus(&d.device.name, ModbusEvent::TransportError);
            if let Conn::Serial { ctx, line, .. } = conn {
                // The old context may hold part of the failed reply, or
                // have ended its stream on a decode error.
                *ctx = rtu::attach(line.clone());
            }
            if attempt >= retries || f.link_broken {
                return Err(f);
            }
            attempt += 1;
            self.stats.record_modbus(&d.device.name, ModbusEvent::Retry);
            match conn {
                Conn::Tcp(ctx) => match self.open().await {
                    Ok(Conn::Tcp(fresh)) => *ctx = fresh,
                    Ok(Conn::Serial { .. }) => unreachable!("a TCP link opens a TCP connection"),
                    Err(error) => {
                        return Err(Failed {
                            error,
                            link_broken: true,
                            kind: None,
                        })
                    }
                },
                Conn::Serial { .. } => {}
            }
        }
    }

    /// The block's readings from the device's answer: decoded values, or
    /// `Bad` ones for an exception, which is counted and logged when the
    /// block starts and stops failing.
    fn readings(
        &self,
        d: &LinkDevice,
        block: &ReadBlock,
        answer: Answer,
        ts_us: i64,
        failing: &mut Option<u8>,
    ) -> Vec<Reading> {
        let data = match answer {
            Answer::Exception(code) => {
                self.stats.record_modbus_exception(&d.device.name, code);
                if failing.is_none() {
                    warn!(device = %d.device.name, unit = d.device.unit, table = block.table.as_str(), address = block.start, count = block.count, code, "Modbus exception; points marked bad until it answers");
                }
                *failing = Some(code);
                None
            }
            Answer::Data(data) => {
                if failing.is_some() {
                    info!(device = %d.device.name, unit = d.device.unit, table = block.table.as_str(), address = block.start, "Modbus block answers again");
                }
                *failing = None;
                Some(data)
            }
        };
        block
            .points
            .iter()
            .map(|&i| {
                let point = &d.device.points[i];
                let at = usize::from(point.register - block.start);
                let value = match &data {
                    None => None,
                    Some(Data::Registers(r)) => {
                        r.get(at..).and_then(|r| decode_registers(r, point))
                    }
                    Some(Data::Bits(b)) => b.get(at..).and_then(|b| decode_bits(b, point)),
                };
                Reading {
                    series: d.series[i].clone(),
                    ts_us,
                    value: value.unwrap_or(f64::NAN),
                    quality: if value.is_some() {
                        Quality::Good
                    } else {
                        Quality::Bad
                    },
                }
            })
            .collect()
    }
}

/// One request and its answer within the device's timeout. On a serial
/// line the failure is told apart from the reply bytes (no reply, CRC
/// error, garbled), a CRC error is counted, and the frame gap is kept
/// after the transaction.
async fn transact(
    conn: &mut Conn,
    d: &LinkDevice,
    block: &ReadBlock,
    stats: &AgentStats,
) -> Result<Answer, Failed> {
    let limit = d.device.timeout;
    let unit = d.device.unit;
    let (ctx, serial) = match conn {
        Conn::Tcp(ctx) => (ctx, None),
        Conn::Serial {
            ctx,
            line,
            frame_gap,
        } => {
            line.begin();
            (ctx, Some((line.clone(), *frame_gap)))
        }
    };
    ctx.set_slave(Slave(unit));
    let asked = Instant::now();
    let answer = timeout(limit, call(ctx, block)).await;
    if let Ok(Ok(_)) = answer {
        stats.record_modbus_latency(&d.device.name, asked.elapsed());
    }
    let result = match answer {
        Ok(Ok(Ok(data))) => Ok(Answer::Data(data)),
        Ok(Ok(Err(exception))) => Ok(Answer::Exception(u8::from(exception))),
        Ok(Err(tokio_modbus::Error::Transport(e))) => {
            let kind = match e.kind() {
                std::io::ErrorKind::InvalidData => None,
                std::io::ErrorKind::TimedOut => Some(ReasonKind::Timeout),
                std::io::ErrorKind::ConnectionRefused => Some(ReasonKind::ConnectionRefused),
                _ => Some(ReasonKind::ConnectionLost),
            };
            Err(Failed {
                link_broken: !matches!(
                    e.kind(),
                    std::io::ErrorKind::InvalidData | std::io::ErrorKind::TimedOut
                ),
                error: e.to_string(),
                kind,
            })
        }
        Ok(Err(e)) => Err(Failed {
            error: e.to_string(),
            link_broken: false,
            kind: None,
        }),
        Err(_) => Err(Failed {
            error: format!("timed out after {} ms", limit.as_millis()),
            link_broken: false,
            kind: Some(ReasonKind::Timeout),
        }),
    };
    let Some((line, gap)) = serial else {
        return result;
    };
    let result = result.map_err(|mut f| {
        let why = classify(&line.reply(), unit, function_code(block.table));
        if why == Failure::Crc {
            stats.record_modbus(&d.device.name, ModbusEvent::CrcError);
        }
        f.error = format!("{}: {}", why.as_str(), f.error);
        // On a serial line the reply on the wire decides (a bad CRC, no
        // reply), as the prefixed text says.
        f.kind = (why == Failure::Crc).then_some(ReasonKind::Crc);
        f
    });
    tokio::time::sleep(gap).await;
    result
}

fn function_code(table: Table) -> u8 {
    match table {
        Table::Coil => 0x01,
        Table::Discrete => 0x02,
        Table::Holding => 0x03,
        Table::Input => 0x04,
    }
}

/// Send the block's request with the table's function code.
async fn call(ctx: &mut Context, block: &ReadBlock) -> tokio_modbus::Result<Data> {
    read_table(ctx, block.table, block.start, block.count).await
}

/// Read `count` addresses of `table` from `start` with the table's
/// function code.
pub async fn read_table(
    ctx: &mut Context,
    table: Table,
    start: u16,
    count: u16,
) -> tokio_modbus::Result<Data> {
    Ok(match table {
        Table::Coil => ctx.read_coils(start, count).await?.map(Data::Bits),
        Table::Discrete => ctx
            .read_discrete_inputs(start, count)
            .await?
            .map(Data::Bits),
        Table::Holding => ctx
            .read_holding_registers(start, count)
            .await?
            .map(Data::Registers),
        Table::Input => ctx
            .read_input_registers(start, count)
            .await?
            .map(Data::Registers),
    })
}
