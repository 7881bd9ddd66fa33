//! A minimal firmware image built on the shim, to measure what it costs in
//! flash and RAM on a Cortex-M4F (`thumbv7em-none-eabihf`): an SHT4x over
//! I²C sampled into a 32-sample outbox, frames written to and read from a
//! UART, birth, resends and acks. The peripherals are memory-mapped
//! registers at made-up addresses (no HAL), so the image holds the shim and
//! nothing else of note; it is measured, not flashed
//! (`scripts/firmware-size`, figures in docs/BENCHMARKS.md).
//!
//! Build: `cargo build -p firmware-image --release --target
//! thumbv7em-none-eabihf`. On the host (the workspace's own builds) it is an
//! ordinary program that says what it is for and does nothing else.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code))]

use core::convert::Infallible;
#[cfg(target_os = "none")]
use core::panic::PanicInfo;
use core::ptr::{read_volatile, write_volatile};

use firmware_shim::driver::sht4x::{Sht4x, ADDRESS};
use firmware_shim::heapless::{String, Vec};
use firmware_shim::transport::send;
use firmware_shim::{Birth, Channel, ChannelKind, Decoder, Message, Outbox, Reading};

/// A UART data register and its status register (bit 0: a byte waits).
const UART_DATA: *mut u8 = 0x4000_4400 as *mut u8;
const UART_STATUS: *const u8 = 0x4000_4404 as *const u8;
/// An I²C data register.
const I2C_DATA: *mut u8 = 0x4000_5400 as *mut u8;
/// A free-running millisecond counter.
const TICKS: *const u32 = 0xE000_E018 as *const u32;

struct Uart;

impl embedded_io::ErrorType for Uart {
    type Error = Infallible;
}

impl embedded_io::Write for Uart {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &b in buf {
            // SAFETY: a register of this made-up chip; the image is not run.
            unsafe { write_volatile(UART_DATA, b) };
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

impl Uart {
    fn byte(&mut self) -> Option<u8> {
        // SAFETY: as above.
        unsafe { (read_volatile(UART_STATUS) & 1 == 1).then(|| read_volatile(UART_DATA)) }
    }
}

struct Bus;

impl embedded_hal::i2c::ErrorType for Bus {
    type Error = Infallible;
}

impl embedded_hal::i2c::I2c for Bus {
    fn transaction(
        &mut self,
        _address: u8,
        operations: &mut [embedded_hal::i2c::Operation<'_>],
    ) -> Result<(), Infallible> {
        for op in operations {
            match op {
                embedded_hal::i2c::Operation::Write(bytes) => {
                    for &b in bytes.iter() {
                        // SAFETY: as above.
                        unsafe { write_volatile(I2C_DATA, b) };
                    }
                }
                embedded_hal::i2c::Operation::Read(bytes) => {
                    for b in bytes.iter_mut() {
                        // SAFETY: as above.
                        *b = unsafe { read_volatile(I2C_DATA) };
                    }
                }
            }
        }
        Ok(())
    }
}

struct Spin;

impl embedded_hal::delay::DelayNs for Spin {
    fn delay_ns(&mut self, ns: u32) {
        for _ in 0..ns / 8 {
            core::hint::spin_loop();
        }
    }
}

fn ticks() -> u64 {
    // SAFETY: as above.
    u64::from(unsafe { read_volatile(TICKS) })
}

fn channel(index: u8, name: &str, unit: &str) -> Channel {
    Channel {
        index,
        name: String::try_from(name).unwrap_or_default(),
        unit: String::try_from(unit).unwrap_or_default(),
        kind: ChannelKind::Analog,
        scale: None,
    }
}

fn birth() -> Message {
    let mut channels = Vec::new();
    let _ = channels.push(channel(0, "temperature", "degC"));
    let _ = channels.push(channel(1, "humidity", "%RH"));
    Message::Birth(Birth {
        device_id: String::try_from("sht4x-demo").unwrap_or_default(),
        fw_version: [0, 1, 0],
        boot_id: ticks() as u32,
        tick_hz: 1000,
        channels,
    })
}

#[cfg(not(target_os = "none"))]
fn main() {
    println!("firmware-image: build it for thumbv7em-none-eabihf (scripts/firmware-size)");
}

#[cfg(target_os = "none")]
#[no_mangle]
pub extern "C" fn _start() -> ! {
    run()
}

/// The shim's state lives in statics, so the image's `.bss` shows the RAM
/// it takes (the outbox is most of it).
static mut OUTBOX: Outbox<32> = Outbox::new(1000);
static mut DECODER: Decoder = Decoder::new();

fn run() -> ! {
    let mut uart = Uart;
    let mut sensor = Sht4x::new(Bus, ADDRESS);
    // SAFETY: one thread, no interrupt handler touches them, and `run`
    // never returns, so these are the only references ever taken.
    let (outbox, decoder) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(OUTBOX),
            &mut *core::ptr::addr_of_mut!(DECODER),
        )
    };
    let _ = send(&mut uart, &birth());
    let mut next = 0;
    loop {
        let now = ticks();
        if now >= next {
            next = now + 1000;
            if let Ok(m) = sensor.measure(&mut Spin) {
                let mut readings = Vec::new();
                let _ = readings.push(Reading {
                    channel: 0,
                    value: m.temperature_c,
                });
                let _ = readings.push(Reading {
                    channel: 1,
                    value: m.humidity_pct,
                });
                let samples = outbox.record(now, readings).clone();
                let _ = send(&mut uart, &Message::Samples(samples));
            }
        }
        while let Some(s) = outbox.poll(now) {
            let s = s.clone();
            let _ = send(&mut uart, &Message::Samples(s));
        }
        while let Some(b) = uart.byte() {
            match decoder.push(b) {
                Some(Ok(Message::Ack(a))) => {
                    outbox.ack(a);
                }
                Some(Ok(Message::Nack(n)))
                    if outbox.nack(n) == firmware_shim::outbox::NackAction::SendBirth =>
                {
                    let _ = send(&mut uart, &birth());
                }
                _ => {}
            }
        }
    }
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
