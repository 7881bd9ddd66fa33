//! The real `edge-agent` binary, SIGKILLed with an alarm raised and
//! restarted on the same spool: no second raise, and the clear arrives,
//! its duration counted from the raise before the kill.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context};
use edge_agent::spool::Spool;
use edge_tests::{free_port, Mosquitto};

use super::{agent_toml, spooled_alarm_states, start_device, wait_for, Subscriber};
use super::{GATEWAY, REGISTER, SERIES};

/// The `edge-agent` binary of this build: `scripts/test` builds it (cargo
/// builds a dependency's library for these tests, not its binaries).
fn agent_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/e2e-<hash> → target/<profile>/edge-agent
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary has no target directory")?
        .join(format!("edge-agent{}", std::env::consts::EXE_SUFFIX));
    ensure!(
        bin.exists(),
        "{} not found: build it first with `cargo build -p edge-agent` (scripts/test does)",
        bin.display()
    );
    Ok(bin)
}

/// Runs the agent binary; SIGKILLed when dropped or killed.
struct AgentProcess(std::process::Child);

impl AgentProcess {
    fn start(bin: &Path, config: &Path, log: &Path) -> anyhow::Result<AgentProcess> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = std::process::Command::new(bin)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(AgentProcess(child))
    }

    /// SIGKILL: no shutdown path runs.
    fn kill(mut self) -> anyhow::Result<()> {
        self.0.kill()?;
        self.0.wait()?;
        Ok(())
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_agent_neither_raises_again_nor_forgets_to_clear() -> anyhow::Result<()> {
    let bin = agent_binary()?;
    let logs = tempfile::tempdir()?;
    let mosquitto = Mosquitto::start(logs.path())?;
    let (device, device_addr, stop_device) = start_device(215).await?;
    let spool_dir = tempfile::tempdir()?;
    let spool_path = spool_dir.path().join("spool.db");
    let config_path = spool_dir.path().join("agent.toml");
    std::fs::write(
        &config_path,
        agent_toml(
            &spool_path,
            device_addr,
            free_port()?,
            Some(mosquitto.port),
            50,
        ),
    )?;
    let agent_log = logs.path().join("agent.log");
    let log = || std::fs::read_to_string(&agent_log).unwrap_or_default();
    let events =
        Subscriber::start(mosquitto.port, "hmi-kill", &format!("plant/{GATEWAY}/#")).await?;

    let agent = AgentProcess::start(&bin, &config_path, &agent_log)?;
    wait_for("the first agent polling", 20, || device.requests() >= 5).await?;
    device.set_i16(REGISTER, 612);
    wait_for("the raised event", 10, || {
        !events.events("raised").is_empty()
    })
    .await
    .with_context(log)?;
    // Local publication does not wait for the spool: kill only once the
    // raise is durable.
    wait_for("the raise in the spool", 10, || {
        Spool::open(&spool_path)
            .and_then(|s| s.active_alarms())
            .is_ok_and(|a| a.len() == 1)
    })
    .await?;
    agent.kill()?;

    let states_before = events.all().len();
    let agent = AgentProcess::start(&bin, &config_path, &agent_log)?;
    // The restarted agent republishes the retained state on connect...
    wait_for("the state republished", 20, || {
        events.all()[states_before..]
            .iter()
            .any(|(t, v, _)| t.ends_with(&format!("/state/{SERIES}")) && v["state"] == "alarm")
    })
    .await
    .with_context(log)?;
    // ...and sees the value still high for a while without raising again.
    let polled = device.requests();
    wait_for("the restarted agent polling", 20, || {
        device.requests() >= polled + 25
    })
    .await?;
    assert_eq!(
        events.events("raised").len(),
        1,
        "raised again after the restart:\n{}",
        log()
    );

    device.set_i16(REGISTER, 215);
    wait_for("the cleared event", 10, || {
        !events.events("cleared").is_empty()
    })
    .await
    .with_context(log)?;
    let raised = events.events("raised").remove(0);
    let cleared = events.events("cleared").remove(0);
    let (raised_us, cleared_us) = (
        raised["ts_us"].as_i64().context("ts")?,
        cleared["ts_us"].as_i64().context("ts")?,
    );
    assert_eq!(
        cleared["duration_us"],
        cleared_us - raised_us,
        "duration counts from the raise before the kill"
    );
    agent.kill()?;
    stop_device.cancel();

    // What the relay will get: one raise, one clear.
    assert_eq!(spooled_alarm_states(&spool_path)?, ["raised", "cleared"]);
    assert!(Spool::open(&spool_path)?.active_alarms()?.is_empty());
    Ok(())
}
