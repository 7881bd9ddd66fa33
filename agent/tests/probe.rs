//! `edge-agent probe modbus` against a Modbus TCP device served in-process
//! on port 0: the binary's output and exit code, and the library's
//! [`probe`] answers for each table.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use edge_agent::config::Table;
use edge_agent::probe::{probe, Answer, ProbeError, ProbeRequest};
use tokio::net::TcpListener;
use tokio_modbus::server::tcp::{accept_tcp_connection, Server};
use tokio_modbus::{ExceptionCode, Request, Response};
use tokio_util::sync::CancellationToken;

/// A device with fixed maps; an unmapped address answers exception 0x02.
#[derive(Clone)]
struct Device {
    holding: HashMap<u16, u16>,
    input: HashMap<u16, u16>,
    coils: HashMap<u16, bool>,
    discrete: HashMap<u16, bool>,
}

impl Device {
    fn new() -> Device {
        Device {
            // 123.456f32 in ABCD at 100, then -1 as i16 at 102.
            holding: HashMap::from([(100, 0x42F6), (101, 0xE979), (102, 0xFFFF)]),
            // 3_000_000_000 as u32 CDAB at 30.
            input: HashMap::from([(30, 0x5E00), (31, 0xB2D0)]),
            coils: HashMap::from([(9, true), (10, false), (11, true)]),
            discrete: HashMap::from([(0, false), (1, true)]),
        }
    }
}

fn read<T: Copy>(map: &HashMap<u16, T>, start: u16, count: u16) -> Result<Vec<T>, ExceptionCode> {
    (0..count)
        .map(|i| {
            start
                .checked_add(i)
                .and_then(|a| map.get(&a).copied())
                .ok_or(ExceptionCode::IllegalDataAddress)
        })
        .collect()
}

impl tokio_modbus::server::Service for Device {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Request<'static>) -> Self::Future {
        ready(match req {
            Request::ReadHoldingRegisters(s, n) => {
                read(&self.holding, s, n).map(Response::ReadHoldingRegisters)
            }
            Request::ReadInputRegisters(s, n) => {
                read(&self.input, s, n).map(Response::ReadInputRegisters)
            }
            Request::ReadCoils(s, n) => read(&self.coils, s, n).map(Response::ReadCoils),
            Request::ReadDiscreteInputs(s, n) => {
                read(&self.discrete, s, n).map(Response::ReadDiscreteInputs)
            }
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

/// Serve [`Device`] on port 0 until the token is cancelled. The listener is
/// bound before this returns, so connecting needs no wait.
async fn serve() -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let server = Server::new(listener);
        let new_service = |_addr: SocketAddr| Ok(Some(Device::new()));
        let on_connected =
            |stream, addr| async move { accept_tcp_connection(stream, addr, new_service) };
        let _ = server
            .serve_until(
                &on_connected,
                |_err| {},
                async move { stop.cancelled().await },
            )
            .await;
    });
    (address, shutdown)
}

/// Run the binary with `args` without blocking the server's runtime.
async fn edge_agent(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn probe_args(address: impl ToString, rest: &str) -> Vec<String> {
    let mut args = vec!["probe", "modbus", "--tcp"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    args.push(address.to_string());
    args.extend(rest.split_whitespace().map(String::from));
    args
}

#[tokio::test(flavor = "multi_thread")]
async fn holding_registers_print_every_decoding_and_a_snippet() {
    let (address, shutdown) = serve().await;
    let out = edge_agent(probe_args(address, "--unit 3 --holding 100 --count 3")).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.starts_with(&format!(
        "holding registers 100..=102 of unit 3 at {address}\n"
    )));
    let row = |addr: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(addr))
            .unwrap_or_else(|| panic!("no row {addr} in\n{stdout}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    // addr, hex, u16, i16, u32 ABCD, ...: 0x42F6E979 is 1123477881 and 123.456f32.
    let first = row("100");
    assert_eq!(first[..5], ["100", "42F6", "17142", "17142", "1123477881"]);
    assert!(first.contains(&"123.456"), "{first:?}");
    assert_eq!(row("102")[..4], ["102", "FFFF", "65535", "-1"]);
    assert_eq!(stdout.matches("[[modbus.points]]").count(), 3, "{stdout}");
    assert!(stdout.contains("name = \"holding_101\""), "{stdout}");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn coils_print_their_bits() {
    let (address, shutdown) = serve().await;
    let out = edge_agent(probe_args(address, "--coils 9 --count 3")).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let bits: Vec<Vec<&str>> = stdout
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("addr"))
        .take(4)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        bits,
        [
            vec!["addr", "coil"],
            vec!["9", "1"],
            vec!["10", "0"],
            vec!["11", "1"]
        ]
    );
    assert!(stdout.contains("type = \"bool\""), "{stdout}");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exception_prints_its_code_and_meaning_and_fails() {
    let (address, shutdown) = serve().await;
    let out = edge_agent(probe_args(address, "--holding 101 --count 4")).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr.contains(
            "holding registers 101..=104 answered with exception 0x02: illegal data address"
        ),
        "{stderr}"
    );
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_device_times_out_naming_the_address_and_the_timeout() {
    // Accepts connections (the kernel's backlog) but never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let out = edge_agent(probe_args(address, "--input 0 --count 1 --timeout-ms 200")).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr.contains(&format!(
            "{address} unit 1: read of input registers 0..=0 timed out after 200 ms"
        )),
        "{stderr}"
    );
    drop(listener);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_port_names_the_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let out = edge_agent(probe_args(address, "--holding 0 --count 1")).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr.contains(&format!("{address}: cannot connect")),
        "{stderr}"
    );
}

#[test]
fn two_links_or_two_tables_are_refused_by_the_arguments() {
    for args in [
        "probe modbus --tcp 127.0.0.1:502 --holding 0 --input 0 --count 1",
        "probe modbus --tcp 127.0.0.1:502 --count 1",
        "probe modbus --tcp 127.0.0.1:502 --rtu /dev/ttyUSB0 --holding 0 --count 1",
        "probe modbus --holding 0 --count 1",
        "probe modbus --tcp 127.0.0.1:502 --baud 9600 --holding 0 --count 1",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .args(args.split_whitespace())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args}: {out:?}");
    }
}

#[tokio::test]
async fn the_library_reads_each_table() {
    let (address, shutdown) = serve().await;
    let request = |table, start, count| ProbeRequest {
        address: address.to_string(),
        serial: None,
        unit: 1,
        table,
        start,
        count,
        timeout: Duration::from_secs(5),
    };
    let cases = [
        (
            request(Table::Input, 30, 2),
            Answer::Registers(vec![0x5E00, 0xB2D0]),
        ),
        (
            request(Table::Discrete, 0, 2),
            Answer::Bits(vec![false, true]),
        ),
        (request(Table::Coil, 10, 1), Answer::Bits(vec![false])),
        (request(Table::Holding, 103, 1), Answer::Exception(0x02)),
    ];
    for (req, want) in cases {
        assert_eq!(probe(&req).await.unwrap(), want, "{}", req.describe());
    }
    let too_many = request(Table::Holding, 0, 126);
    assert!(matches!(probe(&too_many).await, Err(ProbeError::Range(_))));
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn rtu_line_settings_are_checked_and_named_by_their_flag() {
    let args = "probe modbus --rtu /dev/ttyUSB9 --parity mark --stop-bits 3 --holding 0 --count 1";
    let out = edge_agent(args.split_whitespace().map(String::from).collect()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr.contains("--parity: \"mark\" is not a parity (none, even, odd)")
            && stderr.contains("--stop-bits: 3 is not supported (1 or 2)"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_serial_device_is_named() {
    let args = "probe modbus --rtu /nonexistent/ttyUSB9 --baud 19200 --holding 0 --count 1";
    let out = edge_agent(args.split_whitespace().map(String::from).collect()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("/nonexistent/ttyUSB9: cannot connect"),
        "{stderr}"
    );
}

#[test]
fn a_unit_id_the_config_refuses_is_refused_by_the_probe_too() {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["probe", "modbus", "--tcp", "127.0.0.1:1", "--unit", "248"])
        .args(["--holding", "0", "--count", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("248 is not in 0..=247"), "{err}");
}
