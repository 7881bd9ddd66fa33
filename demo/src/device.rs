//! A Modbus TCP device in-process: a register map that a scenario or a test
//! sets, served by tokio-modbus on a listener the caller binds (port 0 in
//! tests).
//!
//! It answers read holding registers (0x03) and read input registers (0x04)
//! from one map; an address that is not mapped answers with exception 0x02
//! (illegal data address), as real devices do. Every request is counted, so
//! a test can check how many requests a poll cycle costs.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
use tokio_modbus::{ExceptionCode, Request, Response};
use tokio_util::sync::CancellationToken;

/// The register map and request counter, shared with the serving tasks.
#[derive(Clone, Default)]
pub struct SimDevice {
    registers: Arc<Mutex<HashMap<u16, u16>>>,
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
        self.registers.lock().unwrap_or_else(|p| p.into_inner())
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
        (0..count)
            .map(|i| {
                start
                    .checked_add(i)
                    .and_then(|a| regs.get(&a).copied())
                    .ok_or(ExceptionCode::IllegalDataAddress)
            })
            .collect()
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
                self.read(start, count).map(Response::ReadInputRegisters)
            }
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}
