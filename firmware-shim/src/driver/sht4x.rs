//! Sensirion SHT4x temperature and humidity sensor over I²C (datasheet
//! "SHT4x", version 6.6, sections 4.4–4.6).
//!
//! One high-repeatability measurement: write command `0xFD`, wait at least
//! 8.3 ms, read 6 bytes `T_msb T_lsb CRC RH_msb RH_lsb CRC`. Each word carries
//! a Sensirion CRC-8 (poly 0x31, init 0xFF, no reflection, no xor-out;
//! `CRC(0xBEEF) = 0x92`). Conversion: `T = -45 + 175 · S_T / 65535` °C,
//! `RH = -6 + 125 · S_RH / 65535` %RH, clamped to 0..=100.
//! Guarantee: a word whose CRC does not match is reported, never converted.
use crc::{Crc, CRC_8_NRSC_5};
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;

/// Default I²C address (SHT40-AD1B and most variants).
pub const ADDRESS: u8 = 0x44;
/// Measure T and RH with high repeatability.
pub const CMD_MEASURE_HIGH: u8 = 0xFD;
/// Read the 32-bit serial number.
pub const CMD_SERIAL: u8 = 0x89;
/// Soft reset.
pub const CMD_SOFT_RESET: u8 = 0x94;
/// Maximum duration of a high-repeatability measurement, µs.
pub const MEASURE_HIGH_US: u32 = 8_300;
/// Maximum soft reset duration, µs.
pub const SOFT_RESET_US: u32 = 1_000;

/// Sensirion's CRC-8 (catalogued as CRC-8/NRSC-5).
const CRC8: Crc<u8> = Crc::<u8>::new(&CRC_8_NRSC_5);

/// Driver error.
#[derive(Debug, PartialEq, Eq)]
pub enum Error<E> {
    /// The bus failed.
    I2c(E),
    /// A word's CRC did not match (which word: 0 first, 1 second).
    Crc(u8),
}

/// One measurement, raw words kept for logging.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Degrees Celsius.
    pub temperature_c: f32,
    /// Percent relative humidity, 0..=100.
    pub humidity_pct: f32,
    /// Raw temperature word.
    pub raw_t: u16,
    /// Raw humidity word.
    pub raw_rh: u16,
}

/// An SHT4x on a bus.
pub struct Sht4x<I> {
    i2c: I,
    address: u8,
}

impl<I: I2c> Sht4x<I> {
    /// A sensor at `address` (usually [`ADDRESS`]).
    pub fn new(i2c: I, address: u8) -> Self {
        Sht4x { i2c, address }
    }

    /// Gives the bus back.
    pub fn release(self) -> I {
        self.i2c
    }

    /// Measures temperature and humidity (high repeatability).
    pub fn measure(&mut self, delay: &mut impl DelayNs) -> Result<Measurement, Error<I::Error>> {
        let [raw_t, raw_rh] = self.command(CMD_MEASURE_HIGH, MEASURE_HIGH_US, delay)?;
        Ok(Measurement {
            temperature_c: temperature_c(raw_t),
            humidity_pct: humidity_pct(raw_rh),
            raw_t,
            raw_rh,
        })
    }

    /// Reads the 32-bit serial number.
    pub fn serial(&mut self, delay: &mut impl DelayNs) -> Result<u32, Error<I::Error>> {
        let [hi, lo] = self.command(CMD_SERIAL, SOFT_RESET_US, delay)?;
        Ok((u32::from(hi) << 16) | u32::from(lo))
    }

    /// Soft reset.
    pub fn reset(&mut self, delay: &mut impl DelayNs) -> Result<(), Error<I::Error>> {
        self.i2c
            .write(self.address, &[CMD_SOFT_RESET])
            .map_err(Error::I2c)?;
        delay.delay_us(SOFT_RESET_US);
        Ok(())
    }

    fn command(
        &mut self,
        cmd: u8,
        wait_us: u32,
        delay: &mut impl DelayNs,
    ) -> Result<[u16; 2], Error<I::Error>> {
        self.i2c.write(self.address, &[cmd]).map_err(Error::I2c)?;
        delay.delay_us(wait_us);
        let mut buf = [0u8; 6];
        self.i2c.read(self.address, &mut buf).map_err(Error::I2c)?;
        Ok([word(&buf[..3], 0)?, word(&buf[3..], 1)?])
    }
}

fn word<E>(b: &[u8], which: u8) -> Result<u16, Error<E>> {
    if CRC8.checksum(&b[..2]) != b[2] {
        return Err(Error::Crc(which));
    }
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

/// Datasheet conversion of a raw temperature word, °C.
pub fn temperature_c(raw: u16) -> f32 {
    -45.0 + 175.0 * f32::from(raw) / 65535.0
}

/// Datasheet conversion of a raw humidity word, %RH clamped to 0..=100.
pub fn humidity_pct(raw: u16) -> f32 {
    (-6.0 + 125.0 * f32::from(raw) / 65535.0).clamp(0.0, 100.0)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use embedded_hal_mock::eh1::delay::NoopDelay;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction};
    use std::vec;

    #[test]
    fn crc_matches_the_datasheet_example() {
        assert_eq!(CRC8.checksum(&[0xBE, 0xEF]), 0x92);
    }

    #[test]
    fn measure_sends_fd_then_reads_six_bytes() {
        // 0x6666 -> 25.0 °C exactly; 0x8000 -> 56.50 %RH. CRCs 0x93 / 0xA2
        // from an independent bitwise CRC-8 (poly 0x31, init 0xFF).
        let mut i2c = Mock::new(&[
            Transaction::write(0x44, vec![0xFD]),
            Transaction::read(0x44, vec![0x66, 0x66, 0x93, 0x80, 0x00, 0xA2]),
        ]);
        let mut s = Sht4x::new(i2c.clone(), ADDRESS);
        let m = s.measure(&mut NoopDelay::new()).unwrap();
        assert_eq!(m.temperature_c, 25.0);
        assert!((m.humidity_pct - 56.501).abs() < 0.01, "{}", m.humidity_pct);
        i2c.done();
    }

    #[test]
    fn a_bad_crc_is_reported_not_converted() {
        let mut i2c = Mock::new(&[
            Transaction::write(0x44, vec![0xFD]),
            Transaction::read(0x44, vec![0x66, 0x66, 0x93, 0x80, 0x00, 0xA3]),
        ]);
        let mut s = Sht4x::new(i2c.clone(), ADDRESS);
        assert_eq!(s.measure(&mut NoopDelay::new()), Err(Error::Crc(1)));
        i2c.done();
    }

    #[test]
    fn serial_number_reads_two_words() {
        let mut i2c = Mock::new(&[
            Transaction::write(0x44, vec![0x89]),
            Transaction::read(0x44, vec![0xBE, 0xEF, 0x92, 0x66, 0x66, 0x93]),
        ]);
        let mut s = Sht4x::new(i2c.clone(), ADDRESS);
        assert_eq!(s.serial(&mut NoopDelay::new()), Ok(0xBEEF_6666));
        i2c.done();
    }

    #[test]
    fn humidity_is_clamped() {
        assert_eq!(humidity_pct(0), 0.0);
        assert_eq!(humidity_pct(u16::MAX), 100.0);
        assert_eq!(temperature_c(0), -45.0);
        assert_eq!(temperature_c(u16::MAX), 130.0);
    }
}
