//! The `edge-relay` binary: parse arguments, load the config, run the
//! library until SIGINT or SIGTERM. Nothing else lives here.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use edge_relay::auth::{check_token, TokenHash, MIN_TOKEN_BYTES};
use edge_relay::tls::server_config;
use edge_relay::{serve_with, Listeners, Relay, RelayConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Cloud relay: accepts sensor batches from edge gateways and publishes them.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// Config file (TOML); see configs/relay.example.toml.
    #[arg(long, value_name = "FILE", required = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a config file, print every problem, and exit (status 1 if invalid).
    CheckConfig {
        /// Config file (TOML).
        file: PathBuf,
    },
    /// Read a gateway token from stdin (or a prompt) and print the line to
    /// paste into its [[gateways]] entry. The token itself is not printed.
    HashToken,
}

fn main() -> std::process::ExitCode {
    edge_relay::admission::tune_allocator();
    let cli = Cli::parse();
    // Print the error chain ourselves: `main` returning `Result` would use
    // `Debug`, which adds a backtrace when RUST_BACKTRACE is set.
    match run_command(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-relay: {e:#}");
            // 78 (EX_CONFIG), as the agent: the unit does not restart a
            // relay whose config is wrong, restarting will not fix it.
            if e.chain().any(|c| c.is::<edge_relay::ConfigError>()) {
                std::process::ExitCode::from(78)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

fn run_command(cli: Cli) -> anyhow::Result<()> {
    // ring, not aws-lc-rs, for every rustls user in the process (the HTTPS
    // server and any reqwest client built with a rustls backend).
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match cli.command {
        Some(Command::CheckConfig { file }) => {
            let config = RelayConfig::load(&file)?;
            let sinks = config.sink_names().join(", ");
            println!(
                "{}: ok (listen {}, ops {}, {} gateway(s), sinks: {sinks})",
                file.display(),
                config.listen,
                config.ops_listen,
                config.gateways.len()
            );
            Ok(())
        }
        Some(Command::HashToken) => hash_token(),
        None => {
            let path = cli.config.context("--config FILE is required")?;
            let config = RelayConfig::load(&path)?;
            for warning in &config.warnings {
                tracing::warn!(key = %warning.key, "INSECURE CONFIG: {}", warning.message);
            }
            run(config)
        }
    }
}

/// `edge-relay hash-token`: one line of token in, one config line out.
fn hash_token() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("gateway token (at least {MIN_TOKEN_BYTES} bytes; it will be echoed): ");
    }
    let mut line = String::new();
    stdin
        .read_line(&mut line)
        .context("cannot read the token from stdin")?;
    let token = line.trim_end_matches(['\n', '\r']);
    check_token(token).map_err(|why| anyhow::anyhow!("token {why}"))?;
    println!(
        "tokens = [\"{}\"]",
        TokenHash::of(token.as_bytes()).to_config_string()
    );
    Ok(())
}

#[tokio::main]
async fn run(config: RelayConfig) -> anyhow::Result<()> {
    let (listen, ops_listen) = (config.listen, config.ops_listen);
    let limits = config.server.clone();
    // Before binding: a bad certificate should stop the start, naming the file.
    let tls = config.tls.as_ref().map(server_config).transpose()?;
    let relay = Relay::from_config(config)?;
    let listeners = Listeners {
        data: tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?,
        ops: Some(
            tokio::net::TcpListener::bind(ops_listen)
                .await
                .with_context(|| format!("cannot listen on {ops_listen} (ops.listen)"))?,
        ),
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    serve_with(listeners, tls, relay, limits, shutdown).await?;
    Ok(())
}

/// Cancel `shutdown` on Ctrl-C or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only Ctrl-C stops the relay");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown requested");
    shutdown.cancel();
}
