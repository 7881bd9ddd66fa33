//! Validation of `[[modbus]]` sections: defaults, every new key, and the
//! key path of each problem.

use crate::config::{AgentConfig, ByteOrder, ConfigError, DataType, Table, TEST_BASE};

fn config(device: &str, points: &str) -> String {
    format!(
        r#"{TEST_BASE}[[modbus]]
name = "press-3"
address = "127.0.0.1:502"
{device}
{points}
"#
    )
}

fn problems(text: &str) -> String {
    match AgentConfig::parse(text, "t.toml") {
        Err(ConfigError::Invalid { problems, .. }) => problems.join("\n"),
        other => panic!("expected validation errors, got {other:?}"),
    }
}

#[test]
fn tables_types_and_orders_are_read_with_defaults() {
    let text = config(
        "byte_order = \"CDAB\"\nmax_gap = 3\nmax_read = 64",
        r#"
[[modbus.points]]
name = "a"
register = 0
type = "f32"
[[modbus.points]]
name = "b"
table = "input"
register = 2
type = "i64"
byte_order = "DCBA"
[[modbus.points]]
name = "c"
table = "coil"
register = 7
[[modbus.points]]
name = "d"
table = "discrete"
register = 8
type = "bool"
[[modbus.points]]
name = "e"
register = 9
type = "bit"
bit = 15
"#,
    );
    let c = AgentConfig::parse(&text, "t.toml").unwrap();
    let d = &c.modbus[0];
    assert_eq!((d.max_gap, d.max_read), (3, Some(64)));
    let got: Vec<_> = d
        .points
        .iter()
        .map(|p| (p.table, p.register, p.data_type, p.byte_order))
        .collect();
    assert_eq!(
        got,
        vec![
            (Table::Holding, 0, DataType::F32, ByteOrder::Cdab),
            (Table::Input, 2, DataType::I64, ByteOrder::Dcba),
            (Table::Coil, 7, DataType::Bool, ByteOrder::Cdab),
            (Table::Discrete, 8, DataType::Bool, ByteOrder::Cdab),
            (Table::Holding, 9, DataType::Bit(15), ByteOrder::Cdab),
        ]
    );
}

#[test]
fn device_defaults_are_conservative() {
    let text = config(
        "",
        "[[modbus.points]]\nname = \"a\"\nregister = 0\ntype = \"u16\"",
    );
    let d = &AgentConfig::parse(&text, "t.toml").unwrap().modbus[0];
    assert_eq!((d.max_gap, d.max_read), (0, None));
    assert_eq!(d.points[0].byte_order, ByteOrder::Abcd);
}

#[test]
fn every_point_problem_is_reported_with_its_key_path() {
    let text = config(
        "byte_order = \"ABDC\"\nmax_read = 2",
        r#"
[[modbus.points]]
name = "a"
table = "holdings"
register = 0
type = "u16"
[[modbus.points]]
name = "b"
register = 1
type = "bit"
bit = 16
[[modbus.points]]
name = "c"
register = 2
type = "bit"
[[modbus.points]]
name = "d"
table = "coil"
register = 3
type = "u16"
[[modbus.points]]
name = "e"
register = 4
type = "bool"
[[modbus.points]]
name = "f"
register = 5
type = "f64"
byte_order = "XYZW"
[[modbus.points]]
name = "g"
register = 65535
type = "u32"
bit = 3
[[modbus.points]]
name = "h"
register = 6
"#,
    );
    let all = problems(&text);
    for expected in [
        "modbus[0].byte_order: \"ABDC\" is not a byte order (ABCD, CDAB, BADC, DCBA)",
        "modbus[0].points[0].table: \"holdings\" is not a table (holding, input, coil, discrete)",
        "modbus[0].points[1].bit: 16 is out of range (0..=15)",
        "modbus[0].points[2].bit: missing; type \"bit\" needs bit = 0..=15",
        "modbus[0].points[3].type: table \"coil\" holds single bits; use \"bool\"",
        "modbus[0].points[4].type: \"bool\" is for coil and discrete tables",
        "modbus[0].points[5].type: needs 4 registers but the device's max_read is 2",
        "modbus[0].points[5].byte_order: \"XYZW\" is not a byte order",
        "modbus[0].points[6].register: 65535 is not a register address (0..=65535)",
        "modbus[0].points[6].bit: only for type \"bit\"",
        "modbus[0].points[7].type: missing",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
}

#[test]
fn max_read_must_be_positive() {
    let text = config(
        "max_read = 0",
        "[[modbus.points]]\nname = \"a\"\nregister = 0\ntype = \"u16\"",
    );
    assert!(problems(&text).contains("modbus[0].max_read: 0 is out of range (1..=2000)"));
}

#[test]
fn several_units_behind_one_address_are_several_sections() {
    let text = config(
        "unit = 1",
        r#"
[[modbus.points]]
name = "a"
register = 0
type = "u16"
[[modbus]]
name = "press-4"
address = "127.0.0.1:502"
unit = 2
[[modbus.points]]
name = "a"
register = 0
type = "u16"
"#,
    );
    let c = AgentConfig::parse(&text, "t.toml").unwrap();
    let units: Vec<_> = c.modbus.iter().map(|d| (d.address, d.unit)).collect();
    assert_eq!(units[0].0, units[1].0);
    assert_eq!((units[0].1, units[1].1), (1, 2));
}
