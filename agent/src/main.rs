//! The `edge-agent` binary: parses arguments, loads the config and runs the
//! library. Everything else lives in the `edge_agent` crate.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use edge_agent::config::{AgentConfig, Table};
use edge_agent::probe::{self, ProbeRequest};
use edge_agent::Agent;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "edge-agent",
    version,
    about = "Edge gateway agent: poll, detect, spool, forward"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent with a config file.
    Run {
        /// Path of the agent config (TOML).
        #[arg(short, long, default_value = "/etc/edge-agent/agent.toml")]
        config: PathBuf,
    },
    /// Check a config file, report every problem, exit non-zero if any.
    CheckConfig {
        /// Path of the agent config (TOML).
        file: PathBuf,
    },
    /// Read a device once and show what its values could mean (commissioning).
    #[command(subcommand)]
    Probe(Probe),
}

#[derive(Subcommand)]
enum Probe {
    /// Read one range over Modbus TCP; print every decoding and a config snippet.
    Modbus(ModbusProbe),
}

#[derive(Args)]
struct ModbusProbe {
    /// host:port of the Modbus TCP server or gateway (RTU serial is not supported yet).
    #[arg(long, value_name = "HOST:PORT")]
    tcp: String,
    /// Modbus unit id (slave id).
    #[arg(long, value_name = "N", default_value_t = 1)]
    unit: u8,
    #[command(flatten)]
    range: ProbeTable,
    /// How many registers, coils or inputs to read.
    #[arg(long, value_name = "C")]
    count: u16,
    /// Longest wait for the connection and for the answer, in milliseconds.
    #[arg(long, value_name = "T", default_value_t = 1000)]
    timeout_ms: u64,
}

/// Which table to read, and from which address (protocol address, not 4xxxx).
#[derive(Args)]
#[group(required = true, multiple = false)]
struct ProbeTable {
    /// Holding registers (function 0x03) from ADDR.
    #[arg(long, value_name = "ADDR")]
    holding: Option<u16>,
    /// Input registers (function 0x04) from ADDR.
    #[arg(long, value_name = "ADDR")]
    input: Option<u16>,
    /// Coils (function 0x01) from ADDR.
    #[arg(long, value_name = "ADDR")]
    coils: Option<u16>,
    /// Discrete inputs (function 0x02) from ADDR.
    #[arg(long, value_name = "ADDR")]
    discrete: Option<u16>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match AgentConfig::load(&file) {
            Ok(c) => {
                println!(
                    "{}: ok (gateway {}, {} Modbus devices, {} simulated signals, {} MQTT brokers, {} rules)",
                    file.display(),
                    c.gateway_id,
                    c.modbus.len(),
                    c.simulated.len(),
                    c.mqtt.len(),
                    c.rules.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Probe(Probe::Modbus(args)) => probe_modbus(args),
        Command::Run { config } => match run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("edge-agent: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn probe_modbus(args: ModbusProbe) -> ExitCode {
    let t = args.range;
    let (table, start) = [
        (Table::Holding, t.holding),
        (Table::Input, t.input),
        (Table::Coil, t.coils),
        (Table::Discrete, t.discrete),
    ]
    .into_iter()
    .find_map(|(table, start)| Some((table, start?)))
    .expect("clap requires exactly one table flag");
    let request = ProbeRequest {
        address: args.tcp,
        unit: args.unit,
        table,
        start,
        count: args.count,
        timeout: std::time::Duration::from_millis(args.timeout_ms.max(1)),
    };
    let answer = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(probe::probe(&request)),
        Err(e) => {
            eprintln!("edge-agent probe: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match answer.map(|a| probe::report(&request, &a)) {
        Ok(Ok(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Err(exception)) => {
            eprintln!("edge-agent probe: {exception}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("edge-agent probe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: PathBuf) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = AgentConfig::load(&config)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            stop.cancel();
        });
        Agent::new(config).run(shutdown).await
    })?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
