//! Device profiles: the committed ones load, inline points override, and a
//! missing or broken profile is reported with its file and key path.

use std::path::Path;

use crate::config::{AgentConfig, ByteOrder, ConfigError, DataType, Table, TEST_BASE};

/// The committed profiles, `configs/devices`.
const DEVICES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/devices");

fn config(profiles_dir: &Path, device: &str) -> String {
    format!(
        r#"
profiles_dir = {dir:?}
{TEST_BASE}[[modbus]]
name = "dev-1"
address = "127.0.0.1:502"
{device}
"#,
        dir = profiles_dir.display().to_string()
    )
}

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

type Row = (String, Table, u16, DataType, f64, String);

fn points(text: &str) -> Vec<Row> {
    let c = AgentConfig::parse(text, "t.toml").unwrap();
    c.modbus[0]
        .points
        .iter()
        .map(|p| {
            let unit = p.unit.clone();
            (
                p.name.clone(),
                p.table,
                p.register,
                p.data_type,
                p.scale,
                unit,
            )
        })
        .collect()
}

fn row(name: &str, table: Table, register: u16, t: DataType, scale: f64, unit: &str) -> Row {
    (name.into(), table, register, t, scale, unit.into())
}

#[test]
fn the_energy_meter_profile_gives_f32_input_registers() {
    let text = config(Path::new(DEVICES), "profile = \"energy-meter-sdm630\"");
    let c = AgentConfig::parse(&text, "t.toml").unwrap();
    let d = &c.modbus[0];
    assert_eq!(
        d.max_gap, 4,
        "the profile's max_gap is the device's default"
    );
    assert!(d.points.iter().all(|p| p.byte_order == ByteOrder::Abcd));
    use {DataType::F32, Table::Input};
    assert_eq!(
        points(&text),
        vec![
            row("voltage_l1", Input, 0, F32, 1.0, "V"),
            row("current_l1", Input, 6, F32, 1.0, "A"),
            row("power_l1", Input, 12, F32, 1.0, "W"),
            row("energy_total", Input, 342, F32, 1.0, "kWh"),
        ]
    );
}

#[test]
fn the_temperature_controller_profile_gives_scaled_i16_holding_registers() {
    let text = config(Path::new(DEVICES), "profile = \"temperature-controller\"");
    let c = AgentConfig::parse(&text, "t.toml").unwrap();
    assert_eq!(c.modbus[0].max_read, Some(16));
    use {DataType::I16, Table::Holding};
    assert_eq!(
        points(&text),
        vec![
            row("process_value", Holding, 0, I16, 0.1, "degC"),
            row("setpoint", Holding, 1, I16, 0.1, "degC"),
            row("output", Holding, 2, I16, 0.1, "%"),
        ]
    );
}

#[test]
fn every_committed_profile_loads() {
    let mut names: Vec<String> = std::fs::read_dir(DEVICES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 2, "{names:?}");
    for name in names {
        let text = config(Path::new(DEVICES), &format!("profile = {name:?}"));
        let c =
            AgentConfig::parse(&text, "t.toml").unwrap_or_else(|e| panic!("profile {name}: {e}"));
        assert!(!c.modbus[0].points.is_empty(), "profile {name}");
    }
}

#[test]
fn an_inline_point_replaces_the_profile_point_of_the_same_name() {
    let text = config(
        Path::new(DEVICES),
        r#"profile = "energy-meter-sdm630"
max_gap = 0
[[modbus.points]]
name = "power_l1"
table = "input"
register = 12
type = "f32"
scale = 0.001
unit = "kW"
[[modbus.points]]
name = "frequency"
table = "input"
register = 70
type = "f32"
unit = "Hz"
"#,
    );
    let got = points(&text);
    let names: Vec<_> = got.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "voltage_l1",
            "current_l1",
            "power_l1",
            "energy_total",
            "frequency"
        ]
    );
    let power = &got[2];
    assert_eq!((power.4, power.5.as_str()), (0.001, "kW"));
    let c = AgentConfig::parse(&text, "t.toml").unwrap();
    assert_eq!(c.modbus[0].max_gap, 0, "the section's own key wins");
}

#[test]
fn an_unknown_profile_lists_the_available_ones() {
    let text = config(Path::new(DEVICES), "profile = \"energy-meter\"");
    let all = problems(&text);
    assert!(
        all.contains(&format!(
            "modbus[0].profile: no profile \"energy-meter\" in \"{DEVICES}\" (available: energy-meter-sdm630, temperature-controller)"
        )),
        "{all}"
    );
    assert!(!all.contains("at least one point"), "{all}");
}

#[test]
fn a_missing_profiles_dir_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = config(&dir.path().join("nope"), "profile = \"x\"");
    let all = problems(&text);
    assert!(
        all.contains("modbus[0].profile: profile \"x\": cannot list profiles_dir"),
        "{all}"
    );
}

#[test]
fn a_profile_that_does_not_parse_is_named_by_file_and_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let points = "[[points]]\nname = \"a\"\nregister = 0\ntype = \"u16\"\n".repeat(2);
    let broken = format!("{points}[[points]]\nname = \"c\"\nregister = 2\ntype = 5\n");
    std::fs::write(dir.path().join("x.toml"), broken).unwrap();
    std::fs::write(
        dir.path().join("y.toml"),
        "byte_order = \"ABCD\"\nmax_gapp = 1\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("z.toml"), "[[points]\n").unwrap();
    let file = |name: &str| dir.path().join(name).display().to_string();
    for (name, expected) in [
        (
            "x",
            format!(
                "{}: points[2].type: invalid type: integer `5`, expected a string",
                file("x.toml")
            ),
        ),
        (
            "y",
            format!("{}: max_gapp: unknown field `max_gapp`", file("y.toml")),
        ),
        ("z", format!("{}: line 1: ", file("z.toml"))),
    ] {
        // Two devices use the profile; its problem is reported once.
        let device = format!(
            "profile = \"{name}\"\n[[modbus]]\nname = \"dev-2\"\naddress = \"127.0.0.1:502\"\nprofile = \"{name}\""
        );
        let all = problems(&config(dir.path(), &device));
        assert!(all.contains(&expected), "missing {expected:?} in:\n{all}");
        assert_eq!(
            all.matches(&file(&format!("{name}.toml"))).count(),
            1,
            "{all}"
        );
    }
}

#[test]
fn a_profile_point_problem_is_named_by_file_and_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let text = "max_read = 1\n[[points]]\nname = \"a\"\nregister = 0\ntype = \"u16\"\n\
                [[points]]\nname = \"b\"\nregister = 1\ntype = \"i17\"\n\
                [[points]]\nname = \"c\"\nregister = 2\ntype = \"f32\"\n";
    std::fs::write(dir.path().join("x.toml"), text).unwrap();
    let all = problems(&config(dir.path(), "profile = \"x\""));
    let file = dir.path().join("x.toml").display().to_string();
    for expected in [
        format!("{file}: points[1].type: \"i17\" is not a data type"),
        format!("{file}: points[2].type: needs 2 registers but the device's max_read is 1"),
    ] {
        assert!(all.contains(&expected), "missing {expected:?} in:\n{all}");
    }
}

#[test]
fn profiles_default_to_devices_next_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("devices")).unwrap();
    std::fs::write(
        dir.path().join("devices/pump.toml"),
        "[[points]]\nname = \"rpm\"\nregister = 4\ntype = \"u16\"\n",
    )
    .unwrap();
    let text = config(Path::new("unused"), "profile = \"pump\"")
        .replace("profiles_dir = \"unused\"\n", "");
    std::fs::write(dir.path().join("agent.toml"), &text).unwrap();
    let c = AgentConfig::load(&dir.path().join("agent.toml")).unwrap();
    assert_eq!(c.modbus[0].points[0].name, "rpm");
    // The same text given as text looks in ./devices, which has no pump.
    assert!(AgentConfig::parse_in(&text, "t.toml", dir.path()).is_ok());
    assert!(AgentConfig::parse(&text, "t.toml").is_err());
}

#[test]
fn a_config_without_profiles_reads_no_directory() {
    let text = config(
        Path::new("/nonexistent"),
        "[[modbus.points]]\nname = \"a\"\nregister = 0\ntype = \"u16\"",
    );
    assert!(AgentConfig::parse(&text, "t.toml").is_ok());
}
