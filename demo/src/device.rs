//! A Modbus TCP device in-process: a register map that a scenario or a test
//! sets, served by tokio-modbus on a listener the caller binds (port 0 in
//! tests).
//!
//! It answers read coils (0x01), read discrete inputs (0x02), read holding
//! registers (0x03) and read input registers (0x04), each from its own map;
//! an address that is not mapped answers with exception 0x02 (illegal data
//! address), as real devices do. Every request is counted, so a test can
//! check how many requests a poll cycle costs.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
use tokio_modbus::{ExceptionCode, Request, Response};
use tokio_util::sync::CancellationToken;

/// The register and bit maps and the request counter, shared with the
/// serving tasks.
#[derive(Clone, Default)]
pub struct SimDevice {
    registers: Arc<Mutex<HashMap<u16, u16>>>,
    input_registers: Arc<Mutex<HashMap<u16, u16>>>,
    coils: Arc<Mutex<HashMap<u16, bool>>>,
    discrete_inputs: Arc<Mutex<HashMap<u16, bool>>>,
    requests: Arc<AtomicU64>,
    /// A register that counts the reads covering it, so a test knows exactly
    /// which poll produced which value.
    counter: Arc<Mutex<Option<u16>>>,
}

impl SimDevice {
    pub fn new() -> SimDevice {
        SimDevice::default()
    }

    fn regs(&self) -> std::sync::MutexGuard<'_, HashMap<u16, u16>> {
        lock(&self.registers)
    }

    pub fn set_u16(&self, register: u16, value: u16) {
        self.regs().insert(register, value);
    }

    pub fn set_i16(&self, register: u16, value: i16) {
        self.set_u16(register, value as u16);
    }

    /// Two registers, high word first (ABCD).
    pub fn set_f32(&self, register: u16, value: f32) {
        let bits = value.to_bits();
        let mut regs = self.regs();
        regs.insert(register, (bits >> 16) as u16);
        regs.insert(register + 1, bits as u16);
    }

    /// Set an input register (read with function 0x04).
    pub fn set_input(&self, register: u16, value: u16) {
        lock(&self.input_registers).insert(register, value);
    }

    /// Set a coil (read with function 0x01).
    pub fn set_coil(&self, address: u16, value: bool) {
        lock(&self.coils).insert(address, value);
    }

    /// Set a discrete input (read with function 0x02).
    pub fn set_discrete(&self, address: u16, value: bool) {
        lock(&self.discrete_inputs).insert(address, value);
    }

    /// Make `register` count the read requests that cover it: the first
    /// such read returns 1, the next 2, and so on (wrapping at 65535).
    pub fn count_reads_in(&self, register: u16) {
        self.set_u16(register, 0);
        *self.counter.lock().unwrap_or_else(|p| p.into_inner()) = Some(register);
    }

    /// Requests answered so far (including exception answers).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Read holding registers; a read that covers the counter register
    /// bumps it first.
    fn read(&self, start: u16, count: u16) -> Result<Vec<u16>, ExceptionCode> {
        let counter = *self.counter.lock().unwrap_or_else(|p| p.into_inner());
        let mut regs = self.regs();
        if let Some(c) = counter {
            let covered = u32::from(start) <= u32::from(c)
                && u32::from(c) < u32::from(start) + u32::from(count);
            if covered {
                if let Some(v) = regs.get_mut(&c) {
                    *v = v.wrapping_add(1);
                }
            }
        }
        read_map(&regs, start, count)
    }

    /// Serve Modbus TCP on `listener` until `shutdown` is cancelled.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let server = Server::new(listener);
        let new_service = |_addr: SocketAddr| Ok(Some(self.clone()));
        let on_connected =
            |stream, addr| async move { accept_tcp_connection(stream, addr, new_service) };
        let on_error = |err| tracing::debug!(%err, "simulated device connection error");
        server
            .serve_until(&on_connected, on_error, async move {
                shutdown.cancelled().await
            })
            .await?;
        Ok(())
    }
}

impl tokio_modbus::server::Service for SimDevice {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Request<'static>) -> Self::Future {
        self.requests.fetch_add(1, Ordering::Relaxed);
        ready(match req {
            Request::ReadHoldingRegisters(start, count) => {
                self.read(start, count).map(Response::ReadHoldingRegisters)
            }
            Request::ReadInputRegisters(start, count) => {
                read_map(&lock(&self.input_registers), start, count)
                    .map(Response::ReadInputRegisters)
            }
            Request::ReadCoils(start, count) => {
                read_map(&lock(&self.coils), start, count).map(Response::ReadCoils)
            }
            Request::ReadDiscreteInputs(start, count) => {
                read_map(&lock(&self.discrete_inputs), start, count)
                    .map(Response::ReadDiscreteInputs)
            }
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `count` values from `start`, or illegal data address if any is unmapped.
fn read_map<T: Copy>(
    map: &HashMap<u16, T>,
    start: u16,
    count: u16,
) -> Result<Vec<T>, ExceptionCode> {
    (0..count)
        .map(|i| {
            start
                .checked_add(i)
                .and_then(|a| map.get(&a).copied())
                .ok_or(ExceptionCode::IllegalDataAddress)
        })
        .collect()
}
