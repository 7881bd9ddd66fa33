//! The `edge-agent` binary: parses arguments, loads the config and runs the
//! library. Everything else lives in the `edge_agent` crate.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use edge_agent::config::{AgentConfig, ConfigIssue, RawSerialLine, SerialLine, Table};
use edge_agent::probe::{self, ProbeRequest};
use edge_agent::reading::now_us;
use edge_agent::spool::Spool;
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
    /// Look into the spool without changing it (it is opened read-only).
    #[command(subcommand)]
    Spool(SpoolCommand),
}

#[derive(Subcommand)]
enum SpoolCommand {
    /// Print the backlog (batches, readings, bytes, oldest unsent age) and what was dropped so far.
    Stats {
        /// Path of the agent config (TOML); the spool is its [spool] path.
        #[arg(short, long, default_value = "/etc/edge-agent/agent.toml")]
        config: PathBuf,
    },
    /// Write the unsent batches as JSON lines: one per reading, one per alarm event.
    Export {
        /// Path of the agent config (TOML); the spool is its [spool] path.
        #[arg(short, long, default_value = "/etc/edge-agent/agent.toml")]
        config: PathBuf,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum Probe {
    /// Read one range over Modbus TCP or RTU; print every decoding and a config snippet.
    Modbus(ModbusProbe),
    /// Listen to a microcontroller running firmware-shim: its birth and live samples.
    Frames(FramesProbe),
}

#[derive(Args)]
struct FramesProbe {
    #[command(flatten)]
    link: FramesProbeLink,
    /// Serial: baud rate [default: 115200].
    #[arg(long, value_name = "BAUD")]
    baud: Option<u32>,
    /// Serial: parity, none, even or odd [default: none].
    #[arg(long, value_name = "P")]
    parity: Option<String>,
    /// How long to listen, in seconds.
    #[arg(long, value_name = "S", default_value_t = 10)]
    seconds: u64,
}

/// Where the microcontroller is: on a serial line, or behind a serial server.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct FramesProbeLink {
    /// The serial device, for example /dev/ttyACM0.
    #[arg(long, value_name = "DEVICE")]
    rtu: Option<String>,
    /// host:port of a serial server.
    #[arg(long, value_name = "HOST:PORT")]
    tcp: Option<String>,
}

#[derive(Args)]
struct ModbusProbe {
    #[command(flatten)]
    link: ProbeLink,
    /// RTU: baud rate [default: 9600].
    #[arg(long, value_name = "BAUD")]
    baud: Option<u32>,
    /// RTU: parity, none, even or odd [default: even].
    #[arg(long, value_name = "P")]
    parity: Option<String>,
    /// RTU: data bits, 7 or 8 [default: 8].
    #[arg(long, value_name = "N")]
    data_bits: Option<u8>,
    /// RTU: stop bits, 1 or 2 [default: 1].
    #[arg(long, value_name = "N")]
    stop_bits: Option<u8>,
    /// Modbus unit id (slave id), 0..=247 as in the config.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=247))]
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

/// Where the device is: over TCP, or on a serial line.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct ProbeLink {
    /// Modbus TCP: host:port of the device or gateway.
    #[arg(long, value_name = "HOST:PORT")]
    tcp: Option<String>,
    /// Modbus RTU: the serial device, for example /dev/ttyUSB0.
    #[arg(long, value_name = "DEVICE")]
    rtu: Option<String>,
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

/// `check-config`'s word on the spool's size against its filesystem: a
/// warning when `max_bytes` is more than it can hold, or the bound the agent
/// will take when `max_bytes` is not set.
fn spool_size_note(c: &AgentConfig) {
    use edge_agent::spool::room::{default_max_bytes, oversized, DiskRoom};
    let room = match DiskRoom::read(&c.spool_path) {
        Ok(room) => room,
        Err(e) => {
            println!(
                "note: spool.path: cannot read the free space of {}'s filesystem ({e}); the spool's size is checked when the agent starts",
                c.spool_path.display()
            );
            return;
        }
    };
    match c.spool.max_bytes {
        Some(max) => {
            if let Some(w) = oversized(max, room) {
                println!("warning: {w}");
            }
        }
        None => println!(
            "note: spool.max_bytes is not set: the agent will bound the spool to {} bytes (its files plus half the {} bytes free now)",
            default_max_bytes(room),
            room.available
        ),
    }
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
                // Warnings, not errors: the example config must stay checkable as written.
                for refusal in c.refusals() {
                    println!("warning: {refusal} (`edge-agent run` refuses to start until this is fixed)");
                }
                for warning in c.warnings() {
                    println!("warning: {warning}");
                }
                for rule in &c.report_by_exception {
                    println!("{}", edge_agent::config::describe_exception(rule));
                }
                spool_size_note(&c);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Probe(Probe::Modbus(args)) => probe_modbus(args),
        Command::Probe(Probe::Frames(args)) => probe_frames(args),
        Command::Spool(command) => match spool_command(command) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("edge-agent spool: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => match load_for_run(&config) {
            Err(e) => {
                eprintln!("edge-agent: {e}");
                ExitCode::from(EX_CONFIG)
            }
            Ok(config) => match run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("edge-agent: {e:#}");
                    ExitCode::FAILURE
                }
            },
        },
    }
}

/// The serial line of `--rtu`, validated as a `[serial.<name>]` section
/// would be, named "probe" for the config snippet.
fn probe_line(device: &str, args: &ModbusProbe) -> Result<SerialLine, String> {
    let raw = RawSerialLine {
        device: device.to_string(),
        baud: args.baud,
        parity: args.parity.clone(),
        data_bits: args.data_bits,
        stop_bits: args.stop_bits,
        frame_gap_us: None,
    };
    AgentConfig::serial_line("probe", &raw).map_err(|p| as_flags(&p))
}

/// Problems of the probe's serial line, named by the command-line flag
/// that set the value (`--data-bits`) rather than the config key
/// (`serial.probe.data_bits`).
fn as_flags(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(|i| match i.key.strip_prefix("serial.probe.") {
            Some(key) => format!("--{}: {}", key.replace('_', "-"), i.message),
            None => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn probe_frames(args: FramesProbe) -> ExitCode {
    use edge_agent::config::frames::FramesLink;
    let link = match (&args.link.rtu, &args.link.tcp) {
        (Some(device), _) => {
            let raw = RawSerialLine {
                device: device.clone(),
                baud: Some(args.baud.unwrap_or(115_200)),
                parity: Some(args.parity.clone().unwrap_or_else(|| "none".into())),
                data_bits: None,
                stop_bits: None,
                frame_gap_us: None,
            };
            match AgentConfig::serial_line("probe", &raw) {
                Ok(line) => FramesLink::Serial(line),
                Err(p) => {
                    eprintln!("edge-agent probe: {}", as_flags(&p));
                    return ExitCode::from(2);
                }
            }
        }
        (None, Some(tcp)) => match tcp.parse() {
            Ok(addr) => FramesLink::Tcp(addr),
            Err(_) => {
                eprintln!("edge-agent probe: --tcp {tcp:?} is not host:port like 10.0.0.7:4001");
                return ExitCode::from(2);
            }
        },
        (None, None) => unreachable!("clap requires --rtu or --tcp"),
    };
    let heard = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(edge_agent::probe::frames::listen(&link, args.seconds)),
        Err(e) => Err(e),
    };
    match heard {
        Ok(h) => {
            println!(
                "heard {} frames: {} births, {} samples, {} CRC errors, {} other bad frames",
                h.frames, h.births, h.samples, h.crc_errors, h.bad_frames
            );
            if h.frames == 0 {
                println!("nothing decoded: check the wiring, the baud rate and that the firmware frames with firmware-shim");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edge-agent probe: {link}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn probe_modbus(args: ModbusProbe) -> ExitCode {
    let t = &args.range;
    let (table, start) = [
        (Table::Holding, t.holding),
        (Table::Input, t.input),
        (Table::Coil, t.coils),
        (Table::Discrete, t.discrete),
    ]
    .into_iter()
    .find_map(|(table, start)| Some((table, start?)))
    .expect("clap requires exactly one table flag");
    let line_flags = args.baud.is_some()
        || args.parity.is_some()
        || args.data_bits.is_some()
        || args.stop_bits.is_some();
    let serial = match &args.link.rtu {
        None if line_flags => {
            eprintln!(
                "edge-agent probe: --baud, --parity, --data-bits and --stop-bits are for --rtu"
            );
            return ExitCode::from(2);
        }
        None => None,
        Some(device) => match probe_line(device, &args) {
            Ok(line) => Some(line),
            Err(problems) => {
                eprintln!("edge-agent probe: {problems}");
                return ExitCode::from(2);
            }
        },
    };
    let request = ProbeRequest {
        address: args.link.tcp.or(args.link.rtu).unwrap_or_default(),
        serial,
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

fn spool_command(command: SpoolCommand) -> anyhow::Result<ExitCode> {
    let config = match &command {
        SpoolCommand::Stats { config } | SpoolCommand::Export { config, .. } => config,
    };
    let path = AgentConfig::load(config)?.spool_path;
    let spool = Spool::open_read_only(&path)?;
    match command {
        SpoolCommand::Stats { .. } => {
            let b = spool.backlog()?;
            let age = match b.oldest_us {
                Some(us) => ((now_us() - us).max(0) / 1_000_000).to_string(),
                None => "none".into(),
            };
            println!("spool: {}", path.display());
            println!("batches: {}", b.batches);
            println!("readings: {}", b.readings);
            println!("bytes: {}", b.bytes);
            println!("disk_bytes: {}", b.disk_bytes);
            println!("oldest_unsent_age_s: {age}");
            println!("quarantined: {}", b.quarantined);
            println!("dropped_readings_full: {}", b.dropped_readings_full);
            println!("dropped_batches_full: {}", b.dropped_batches_full);
            println!("dropped_readings_age: {}", b.dropped_readings_age);
            println!("dropped_batches_age: {}", b.dropped_batches_age);
            println!("gaps: {}", b.gaps);
            Ok(ExitCode::SUCCESS)
        }
        SpoolCommand::Export { out, .. } => {
            let mut writer: Box<dyn Write> = match &out {
                Some(file) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(file)
                        .with_context(|| format!("cannot create {}", file.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let done = spool.export(&mut writer)?;
            writer.flush().context("cannot write the export")?;
            eprintln!(
                "exported {} batches: {} readings, {} alarm events, {} gap records, {} device events",
                done.batches, done.readings, done.alarms, done.gaps, done.devices
            );
            for (seq, why) in &done.undecodable {
                eprintln!("batch {seq} skipped: cannot be decoded: {why}");
            }
            Ok(if done.undecodable.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// Exit status of `run` when the config is invalid or refused (sysexits.h
/// EX_CONFIG): the systemd unit does not restart on it
/// (`RestartPreventExitStatus=78`), since a restart cannot fix a config.
const EX_CONFIG: u8 = 78;

/// The config `run` starts with: valid, and nothing in
/// [`AgentConfig::refusals`].
fn load_for_run(path: &std::path::Path) -> Result<AgentConfig, String> {
    let config = AgentConfig::load(path).map_err(|e| e.to_string())?;
    let refusals = config.refusals();
    if !refusals.is_empty() {
        return Err(format!(
            "{}: refusing to start:\n  {}",
            path.display(),
            refusals.join("\n  ")
        ));
    }
    Ok(config)
}

fn run(config: AgentConfig) -> anyhow::Result<()> {
    // Colour only on a terminal: journald and log files get plain text.
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
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
