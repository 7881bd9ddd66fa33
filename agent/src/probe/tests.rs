//! The probe's output without sockets: the decodings in the table, the
//! alignment, the exception message and the config snippet.

use super::*;
use crate::config::{AgentConfig, TEST_BASE};

fn request(table: Table, start: u16, count: u16) -> ProbeRequest {
    ProbeRequest {
        address: "127.0.0.1:502".into(),
        serial: None,
        unit: 7,
        table,
        start,
        count,
        timeout: Duration::from_millis(500),
    }
}

/// The cell of `column` in the row of `address`.
fn cell_at(rows: &[Vec<String>], address: u32, column: &str) -> String {
    let c = rows[0]
        .iter()
        .position(|h| h == column)
        .unwrap_or_else(|| panic!("no column {column:?} in {:?}", rows[0]));
    let row = rows[1..]
        .iter()
        .find(|r| r[0] == address.to_string())
        .unwrap_or_else(|| panic!("no row for address {address}"));
    row[c].clone()
}

#[test]
fn each_column_shows_its_decoding() {
    // Registers as the device sends them, starting at address 100, and the
    // expected cells worked out by hand (Python's struct module), not with
    // the decoder.
    let cases: &[(&[u16], u32, &str, &str)] = &[
        // 0x42F6E979 = 123.456f32
        (&[0x42F6, 0xE979], 100, "hex", "42F6"),
        (&[0x42F6, 0xE979], 100, "u16", "17142"),
        (&[0x42F6, 0xE979], 100, "i16", "17142"),
        (&[0x42F6, 0xE979], 100, "u32 ABCD", "1123477881"),
        (&[0x42F6, 0xE979], 100, "u32 CDAB", "3917038326"), // 0xE97942F6
        (&[0x42F6, 0xE979], 100, "u32 BADC", "4131551721"), // 0xF64279E9
        (&[0x42F6, 0xE979], 100, "u32 DCBA", "2045376066"), // 0x79E9F642
        (&[0x42F6, 0xE979], 100, "i32 ABCD", "1123477881"),
        (&[0x42F6, 0xE979], 100, "i32 CDAB", "-377928970"),
        (&[0x42F6, 0xE979], 100, "i32 BADC", "-163415575"),
        (&[0x42F6, 0xE979], 100, "f32 ABCD", "123.456"),
        (&[0x42F6, 0xE979], 100, "f32 CDAB", "-1.8833671e25"),
        (&[0x42F6, 0xE979], 100, "f64 ABCD", "-"), // needs 4 registers
        // The last register has no second one.
        (&[0x42F6, 0xE979], 101, "u16", "59769"),
        (&[0x42F6, 0xE979], 101, "i16", "-5767"),
        (&[0x42F6, 0xE979], 101, "u32 ABCD", "-"),
        (&[0x42F6, 0xE979], 101, "f32 DCBA", "-"),
        // 123.456f32 in the other three orders.
        (&[0xE979, 0x42F6], 100, "f32 CDAB", "123.456"),
        (&[0xF642, 0x79E9], 100, "f32 BADC", "123.456"),
        (&[0x79E9, 0xF642], 100, "f32 DCBA", "123.456"),
        // 0xB2D05E00 = 3_000_000_000
        (&[0xB2D0, 0x5E00], 100, "u32 ABCD", "3000000000"),
        (&[0xB2D0, 0x5E00], 100, "i32 ABCD", "-1294967296"),
        (&[0xFFFF], 100, "u16", "65535"),
        (&[0xFFFF], 100, "i16", "-1"),
        (&[0x7F7F, 0xFFFF], 100, "f32 ABCD", "3.4028235e38"), // f32::MAX
        (&[0x7FC0, 0x0000], 100, "f32 ABCD", "NaN"),
        // 0x4058C00000000000 = 99.0, 0xC00921FB54442D18 = -pi
        (&[0x4058, 0xC000, 0, 0], 100, "f64 ABCD", "99"),
        (&[0x4058, 0xC000, 0, 0], 101, "f64 ABCD", "-"), // 3 remain
        (
            &[0xC009, 0x21FB, 0x5444, 0x2D18, 0],
            100,
            "f64 ABCD",
            "-3.141592653589793",
        ),
    ];
    for &(regs, address, column, want) in cases {
        let rows = register_rows(100, regs);
        assert_eq!(
            cell_at(&rows, address, column),
            want,
            "{regs:04X?} at {address}, {column}"
        );
    }
}

#[test]
fn table_has_a_row_per_address_and_aligned_columns() {
    let lines = register_table(65534, &[1, 2]);
    assert_eq!(lines.len(), 3);
    let cells = |l: &str| l.split_whitespace().take(5).collect::<Vec<_>>().join(" ");
    assert_eq!(cells(&lines[0]), "addr hex u16 i16 u32");
    assert_eq!(cells(&lines[1]), "65534 0001 1 1 65538");
    assert_eq!(cells(&lines[2]), "65535 0002 2 2 -");
    // Right-aligned: every line ends where the header does.
    assert!(
        lines.iter().all(|l| l.len() == lines[0].len()),
        "{lines:#?}"
    );
    for column in COLUMNS.iter().map(|c| c.0) {
        assert!(lines[0].contains(column), "{column}");
    }
}

#[test]
fn bits_are_one_or_zero_per_address() {
    let lines = bit_table(Table::Coil, 9, &[true, false, true]);
    let cells: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        cells,
        [
            vec!["addr", "coil"],
            vec!["9", "1"],
            vec!["10", "0"],
            vec!["11", "1"]
        ]
    );
}

#[test]
fn an_exception_is_reported_with_its_code_and_meaning() {
    let req = request(Table::Holding, 100, 4);
    let message = report(&req, &Answer::Exception(0x02)).unwrap_err();
    assert_eq!(
        message,
        "127.0.0.1:502 unit 7: holding registers 100..=103 answered with exception 0x02: \
         illegal data address (some address in the range does not exist on the device)"
    );
    let cases = [
        (0x01, "illegal function"),
        (0x03, "illegal data value"),
        (0x0B, "gateway target device failed to respond"),
        (0x42, "not a standard exception code"),
    ];
    for (code, meaning) in cases {
        assert!(exception_meaning(code).starts_with(meaning), "{code}");
    }
}

#[test]
fn a_range_must_fit_one_request_and_the_address_space() {
    assert!(request(Table::Holding, 0, 125).check().is_ok());
    assert!(request(Table::Coil, 0, 2000).check().is_ok());
    assert!(request(Table::Holding, 65535, 1).check().is_ok());
    let cases = [
        (
            Table::Holding,
            0,
            0,
            "--count 0 is out of range for holding (1..=125)",
        ),
        (
            Table::Input,
            0,
            126,
            "--count 126 is out of range for input (1..=125)",
        ),
        (
            Table::Discrete,
            0,
            2001,
            "--count 2001 is out of range for discrete (1..=2000)",
        ),
        (
            Table::Holding,
            65535,
            2,
            "holding registers 65535..=65536 runs past address 65535",
        ),
    ];
    for (table, start, count, want) in cases {
        let err = request(table, start, count).check().unwrap_err();
        assert_eq!(err.to_string(), want);
    }
}

/// The snippet inside a minimal config, the way a technician pastes it.
fn parse_snippet(req: &ProbeRequest) -> AgentConfig {
    let text = format!(
        r#"{TEST_BASE}[[modbus]]
name = "press-3"
address = "{}"
unit = {}
{}"#,
        req.address,
        req.unit,
        config_snippet(req)
    );
    AgentConfig::parse(&text, "snippet.toml").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn register_snippet_parses_as_one_u16_per_register() {
    let req = request(Table::Input, 30, 3);
    let snippet = config_snippet(&req);
    assert!(snippet.contains("pick each value's type"), "{snippet}");
    let config = parse_snippet(&req);
    let got: Vec<_> = config.modbus[0]
        .points
        .iter()
        .map(|p| (p.name.as_str(), p.table, p.register, p.data_type))
        .collect();
    assert_eq!(
        got,
        [
            ("input_30", Table::Input, 30, DataType::U16),
            ("input_31", Table::Input, 31, DataType::U16),
            ("input_32", Table::Input, 32, DataType::U16),
        ]
    );
}

#[test]
fn bit_snippets_parse_as_bools() {
    for table in [Table::Coil, Table::Discrete] {
        let config = parse_snippet(&request(table, 65534, 2));
        let got: Vec<_> = config.modbus[0]
            .points
            .iter()
            .map(|p| (p.table, p.register, p.data_type))
            .collect();
        assert_eq!(
            got,
            [
                (table, 65534, DataType::Bool),
                (table, 65535, DataType::Bool)
            ]
        );
    }
}

#[test]
fn report_has_the_table_then_the_snippet() {
    let req = request(Table::Holding, 100, 2);
    let text = report(&req, &Answer::Registers(vec![0x42F6, 0xE979])).unwrap();
    assert!(text.starts_with("holding registers 100..=101 of unit 7 at 127.0.0.1:502\n\n"));
    let table = text.find("f32 ABCD").unwrap();
    let snippet = text.find("[[modbus.points]]").unwrap();
    assert!(table < snippet, "{text}");
    assert!(text.contains("123.456"), "{text}");
}
