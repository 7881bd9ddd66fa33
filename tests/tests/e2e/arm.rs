//! The aarch64 agent (scripts/build-arm) under qemu-aarch64: it polls the
//! in-process Modbus device over loopback and forwards to the real relay
//! running natively, and the readings arrive with the device's values.
//!
//! An ARM build nobody has run is not a build: this is the run. It needs
//! the binary, named by `EDGE_ARM_AGENT` (scripts/test sets it after
//! scripts/build-arm), and `qemu-aarch64` with the aarch64 libc in
//! /usr/aarch64-linux-gnu (`EDGE_ARM_QEMU_LD_PREFIX` to change it).
//!
//! qemu runs it as `qemu-aarch64 -L PREFIX -E LD_LIBRARY_PATH=PREFIX/lib`:
//! with `-L` alone, the loader comes from PREFIX (libc6-arm64-cross) but
//! finds libc.so.6 in /lib/aarch64-linux-gnu when libc6:arm64 is installed
//! too (libstd-rust-web-dev:arm64 pulls it in), and two different glibc
//! builds in one process hang in the first pthread_create. Without
//! `EDGE_ARM_AGENT` the test says so and passes: a plain `cargo test` on a
//! machine without the cross toolchain is not a failure of the agent.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context};
use edge_demo::device::SimDevice;
use edge_relay::{Relay, RelayConfig};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const GATEWAY: &str = "e2e-gw-arm";
const TOKEN: &str = "e2e-token-arm-0123456789";

/// The aarch64 agent, or None (with the reason printed) when absent.
fn arm_agent() -> anyhow::Result<Option<PathBuf>> {
    let Some(bin) = std::env::var_os("EDGE_ARM_AGENT").map(PathBuf::from) else {
        eprintln!(
            "arm: SKIPPED: EDGE_ARM_AGENT is not set (build with scripts/build-arm; scripts/test sets it)"
        );
        return Ok(None);
    };
    ensure!(
        bin.is_file(),
        "EDGE_ARM_AGENT={}: no such file (build it with scripts/build-arm)",
        bin.display()
    );
    Ok(Some(bin))
}

/// Kills the emulated agent when the test ends, however it ends.
struct Emulated(std::process::Child);

impl Drop for Emulated {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aarch64_agent_under_qemu_polls_modbus_and_forwards_to_the_relay() -> anyhow::Result<()>
{
    let Some(bin) = arm_agent()? else {
        return Ok(());
    };
    let ld_prefix = std::env::var("EDGE_ARM_QEMU_LD_PREFIX")
        .unwrap_or_else(|_| "/usr/aarch64-linux-gnu".into());

    // Register 100: a temperature in tenths (i16), 101..=102: a float.
    let device = SimDevice::new();
    device.set_i16(100, -123);
    device.set_f32(101, 4.75);
    let device_listener = TcpListener::bind("127.0.0.1:0").await?;
    let device_addr = device_listener.local_addr()?;
    let stop = CancellationToken::new();
    tokio::spawn(device.clone().serve(device_listener, stop.clone()));

    let data = tempfile::tempdir()?;
    let relay_config = RelayConfig::from_toml(&format!(
        "data_dir = {:?}\n[[gateways]]\nid = \"{GATEWAY}\"\ntoken = \"{TOKEN}\"\n",
        data.path()
    ))?;
    let relay_listener = TcpListener::bind("127.0.0.1:0").await?;
    let relay_addr = relay_listener.local_addr()?;
    let relay = tokio::spawn(edge_relay::serve(
        relay_listener,
        Relay::from_config(relay_config)?,
        stop.clone(),
    ));

    let work = tempfile::tempdir()?;
    let config = work.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
gateway_id = "{GATEWAY}"
[spool]
path = {:?}
[batch]
max_readings = 20
max_age_ms = 200
[uplink]
url = "http://{relay_addr}/v1/batches"
token = "{TOKEN}"
retry_initial_ms = 100
retry_max_ms = 500
[[modbus]]
name = "press-1"
address = "{device_addr}"
poll_interval_ms = 100
timeout_ms = 2000
[[modbus.points]]
name = "temp"
register = 100
type = "i16"
scale = 0.1
unit = "degC"
[[modbus.points]]
name = "flow"
register = 101
type = "f32"
unit = "m3/h"
"#,
            work.path().join("spool.db")
        ),
    )?;
    let log = work.path().join("agent.log");
    let out = std::fs::File::create(&log)?;
    let _agent = Emulated(
        std::process::Command::new("qemu-aarch64")
            .arg("-L")
            .arg(&ld_prefix)
            .arg("-E")
            .arg(format!("LD_LIBRARY_PATH={ld_prefix}/lib"))
            .arg(&bin)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context(
                "cannot start qemu-aarch64 (apt-get install qemu-user; scripts/build-arm does)",
            )?,
    );

    // qemu is slow to start the binary: a generous deadline, polled.
    let readings_file = data.path().join(edge_relay::sink::file::READINGS_FILE);
    let wanted = |lines: &[Value], series: &str| {
        lines
            .iter()
            .filter(|l| l["gateway"] == GATEWAY && l["series"] == series)
            .count()
    };
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while tokio::time::Instant::now() < deadline {
        lines = std::fs::read_to_string(&readings_file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if wanted(&lines, "press-1.temp") >= 5 && wanted(&lines, "press-1.flow") >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let agent_log = std::fs::read_to_string(&log).unwrap_or_default();
    ensure!(
        wanted(&lines, "press-1.temp") >= 5 && wanted(&lines, "press-1.flow") >= 5,
        "after 90 s the relay holds {} readings of the aarch64 agent, not 5 of each series; agent log:\n{agent_log}",
        lines.len()
    );
    for l in lines.iter().filter(|l| l["series"] == "press-1.temp") {
        let value = l["value"].as_f64().context("value")?;
        assert!((value - -12.3).abs() < 1e-9, "{l}");
        assert_eq!(l["unit"], "degC", "{l}");
    }
    for l in lines.iter().filter(|l| l["series"] == "press-1.flow") {
        assert_eq!(l["value"].as_f64(), Some(4.75), "{l}");
    }

    stop.cancel();
    relay.await??;
    Ok(())
}
