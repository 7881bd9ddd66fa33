//! Validation of `[[modbus]]` sections: defaults, every new key, and the
//! key path of each problem.

use std::time::Duration;

use crate::config::{
    AgentConfig, ByteOrder, ConfigError, DataType, Link, Parity, Table, TEST_BASE,
};

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

/// One u16 point, for tests about the device's own keys.
const POINT: &str = "[[modbus.points]]\nname = \"a\"\nregister = 0\ntype = \"u16\"\n";

fn problems(text: &str) -> String {
    match AgentConfig::parse(text, "t.toml") {
        Err(ConfigError::Invalid { problems, .. }) => problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
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
        "modbus[0].points[6].register: a 2-register value at 65535 would end at 65536, past the last address (65535)",
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
    let units: Vec<_> = c.modbus.iter().map(|d| (d.link.clone(), d.unit)).collect();
    assert_eq!(units[0].0, units[1].0);
    assert_eq!((units[0].1, units[1].1), (1, 2));
}

const RTU: &str = r#"
[serial.bus-a]
device = "/dev/ttyUSB0"
baud = 19200
parity = "none"
stop_bits = 2

[serial.bus-b]
device = "/dev/ttyUSB1"

[[modbus]]
name = "meter-1"
serial = "bus-a"
unit = 1
[[modbus.points]]
name = "a"
register = 0
type = "u16"

[[modbus]]
name = "meter-2"
serial = "bus-a"
unit = 2
[[modbus.points]]
name = "a"
register = 0
type = "u16"

[[modbus]]
name = "meter-3"
serial = "bus-b"
[[modbus.points]]
name = "a"
register = 0
type = "u16"
"#;

#[test]
fn serial_lines_are_shared_by_the_devices_that_name_them() {
    let c = AgentConfig::parse(&format!("{TEST_BASE}{RTU}"), "t.toml").unwrap();
    let lines: Vec<_> = c
        .modbus
        .iter()
        .map(|d| match &d.link {
            Link::Serial(l) => l.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(lines[0], lines[1]);
    let a = &lines[0];
    assert_eq!(
        (
            a.device.as_str(),
            a.baud,
            a.parity,
            a.data_bits,
            a.stop_bits
        ),
        ("/dev/ttyUSB0", 19200, Parity::None, 8, 2)
    );
    // 3.5 characters of 11 bits at 19200 baud, rounded up to whole µs.
    assert_eq!(a.frame_gap, Duration::from_micros(2006));
    let b = &lines[2];
    assert_eq!(
        (b.baud, b.parity, b.stop_bits),
        (9600, Parity::Even, 1),
        "Modbus RTU defaults"
    );
    assert_eq!(b.frame_gap, Duration::from_micros(4011));
    assert_eq!(c.modbus[0].link.protocol(), "modbus-rtu");
}

#[test]
fn frame_gap_is_fixed_above_19200_baud() {
    use crate::config::frame_gap;
    assert_eq!(frame_gap(115_200), Duration::from_micros(1750));
    assert_eq!(frame_gap(38_400), Duration::from_micros(1750));
    assert_eq!(frame_gap(1200), Duration::from_micros(32_084));
}

#[test]
fn serial_line_mistakes_are_named() {
    let text = format!(
        r#"{TEST_BASE}
[serial.bus-a]
device = ""
baud = 10
parity = "mark"
data_bits = 9
stop_bits = 3

[[modbus]]
name = "m1"
serial = "bus-a"
unit = 0
[[modbus.points]]
name = "a"
register = 0
type = "u16"

[[modbus]]
name = "m2"
serial = "bus-x"
[[modbus.points]]
name = "a"
register = 0
type = "u16"

[[modbus]]
name = "m3"
serial = "bus-a"
address = "127.0.0.1:502"
[[modbus.points]]
name = "a"
register = 0
type = "u16"

[[modbus]]
name = "m4"
[[modbus.points]]
name = "a"
register = 0
type = "u16"
"#
    );
    let got = problems(&text);
    for want in [
        "serial.bus-a.device: must name a serial device",
        "serial.bus-a.baud: 10 is not a baud rate (300..=4000000)",
        "serial.bus-a.parity: \"mark\" is not a parity (none, even, odd)",
        "serial.bus-a.data_bits: 9 is not supported (7 or 8)",
        "serial.bus-a.stop_bits: 3 is not supported (1 or 2)",
        "modbus[0].unit: 0 is the broadcast address",
        "modbus[1].serial: no [serial.bus-x] section (defined: bus-a)",
        "modbus[2]: give either address (Modbus TCP) or serial (Modbus RTU), not both",
        "modbus[3]: missing address (Modbus TCP",
    ] {
        assert!(got.contains(want), "missing {want:?} in:\n{got}");
    }
}

#[test]
fn two_devices_on_one_line_need_different_units() {
    let text = format!("{TEST_BASE}{RTU}").replace("unit = 2", "unit = 1");
    assert!(problems(&text)
        .contains("modbus[1].unit: 1 is already used on serial line \"bus-a\" by modbus[0]"));
}

#[test]
fn poll_groups_and_retries() {
    let text = config(
        "poll_interval_ms = 5000\nretries = 3\npoll_groups = { fast = 100, slow = 60000 }",
        r#"
[[modbus.points]]
name = "a"
register = 0
type = "u16"
group = "fast"
[[modbus.points]]
name = "b"
register = 1
type = "u16"
[[modbus.points]]
name = "c"
register = 2
type = "u16"
group = "slow"
"#,
    );
    let c = AgentConfig::parse(&text, "t.toml").unwrap();
    let d = &c.modbus[0];
    let groups: Vec<_> = d
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.interval.as_millis()))
        .collect();
    assert_eq!(groups, [("default", 5000), ("fast", 100), ("slow", 60000)]);
    let of: Vec<_> = d
        .points
        .iter()
        .map(|p| d.groups[p.group].name.as_str())
        .collect();
    assert_eq!(of, ["fast", "default", "slow"]);
    assert_eq!(d.retries, 3);
    assert_eq!(d.poll_interval(), Duration::from_secs(5));
}

#[test]
fn poll_group_mistakes_are_named() {
    let text = config(
        "retries = 11\npoll_groups = { fast = 0, default = 10 }",
        r#"
[[modbus.points]]
name = "a"
register = 0
type = "u16"
group = "fats"
"#,
    );
    let got = problems(&text);
    for want in [
        "modbus[0].retries: 11 is out of range (0..=10)",
        "modbus[0].poll_groups.fast: 0 ms would poll the device as fast as it answers; use at least 20",
        "modbus[0].poll_groups.default: \"default\" is the group of points without a group",
        "modbus[0].points[0].group: no poll group \"fats\" (the device's poll_groups: default, fast)",
    ] {
        assert!(got.contains(want), "missing {want:?} in:\n{got}");
    }
}

#[test]
fn a_poll_interval_that_would_flood_a_plc_is_refused_with_its_key() {
    for (keys, want) in [
        (
            "poll_interval_ms = 0",
            "modbus[0].poll_interval_ms: 0 ms would poll the device as fast as it answers; use at least 20",
        ),
        (
            "poll_interval_ms = 19",
            "modbus[0].poll_interval_ms: 19 ms would poll",
        ),
        (
            "poll_groups = { fast = 5 }",
            "modbus[0].poll_groups.fast: 5 ms would poll",
        ),
    ] {
        let got = problems(&config(keys, POINT));
        assert!(got.contains(want), "{keys}: missing {want:?} in:\n{got}");
    }
    // 20 ms, the minimum, is accepted.
    let text = config("poll_interval_ms = 20", POINT);
    let c = AgentConfig::parse(&text, "t.toml").unwrap();
    assert_eq!(c.modbus[0].poll_interval(), Duration::from_millis(20));
}

#[test]
fn two_devices_of_one_name_and_a_series_defined_twice_are_named_by_key() {
    let text = format!(
        "{TEST_BASE}[[modbus]]\nname = \"press\"\naddress = \"127.0.0.1:502\"\n{POINT}{POINT}\
         [[modbus]]\nname = \"press\"\naddress = \"127.0.0.1:503\"\n{POINT}"
    );
    let got = problems(&text);
    for want in [
        "modbus[1].name: \"press\" is already the name of modbus[0]",
        "modbus[0] point \"a\": series \"press.a\" is defined twice (first by modbus[0] point \"a\")",
        "modbus[1] point \"a\": series \"press.a\" is defined twice (first by modbus[0] point \"a\")",
    ] {
        assert!(got.contains(want), "missing {want:?} in:\n{got}");
    }
}

#[test]
fn a_broken_only_device_is_not_also_a_missing_source() {
    let text = format!("{TEST_BASE}[[modbus]]\nname = \"press\"\naddress = \"nowhere\"\n{POINT}");
    let got = problems(&text);
    assert!(got.contains("modbus[0].address"), "{got}");
    assert!(!got.contains("sources:"), "{got}");
}

#[test]
fn a_config_without_sources_is_refused_under_the_key_sources() {
    let Err(ConfigError::Invalid { problems, .. }) = AgentConfig::parse(TEST_BASE, "t.toml") else {
        panic!("a config without sources must be refused");
    };
    let sources: Vec<_> = problems.iter().filter(|i| i.key == "sources").collect();
    assert_eq!(sources.len(), 1, "{problems:?}");
    assert!(sources[0].message.contains("[[modbus]]"), "{}", sources[0]);
}

#[test]
fn a_register_in_4xxxx_notation_is_warned_about_not_refused() {
    let point = |table: &str, register: u32, ty: &str| {
        format!("[[modbus.points]]\nname = \"{table}{register}\"\ntable = \"{table}\"\nregister = {register}\ntype = \"{ty}\"\n")
    };
    let points = [
        point("holding", 40001, "u16"),
        point("input", 30010, "u16"),
        point("holding", 100, "u16"),
        point("coil", 40001, "bool"),
    ]
    .concat();
    let c = AgentConfig::parse(&config("", &points), "t.toml").unwrap();
    let w = c.warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("point \"holding40001\": register 40001 looks like the 4xxxx notation")
            && w[0].contains("the protocol address, 0 here"),
        "{w:?}"
    );
    assert!(
        w[1].contains("3xxxx notation") && w[1].contains("9 here"),
        "{w:?}"
    );
}
