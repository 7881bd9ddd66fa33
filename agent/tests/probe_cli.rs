//! `edge-agent probe` refuses what the config would refuse, before it
//! touches a device.

use std::process::Command;

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
