//! `edge-bench`: wire size and codec speed of our batch format (v8, and v6
//! and the v5 value coding before it) against InfluxDB line protocol + gzip and raw
//! `f64` columns + xz, on the real data sets in `testdata/`.
//! Prints a markdown table; `scripts/bench` runs it, `docs/BENCHMARKS.md`
//! records the results.
//!
//! Modules: [`data`] loads the CSV files and cuts batches, [`baseline`]
//! writes line protocol + gzip and the xz columns, [`measure`] times one
//! table row,
//! [`modbus`] measures the Modbus poller against in-process devices,
//! [`exception`] the bytes report by exception saves on SKAB.

mod baseline;
mod data;
mod exception;
mod measure;
mod modbus;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: edge-bench [--data-dir DIR] [--reps N] [--seconds S] [--only SECTION]

  --data-dir DIR   the sensor data directory (default the repository's
                   testdata/, or $EDGE_DATA_DIR)
  --reps N         timed repetitions per measurement; the median is shown
                   (default 7)
  --seconds S      length of each timed polling run (default 5)
  --only SECTION   run one section: wire or modbus (default: all)";

/// Batch sizes in readings, as the agent's `max_readings` would set them.
const BATCH_SIZES: [usize; 3] = [256, 1000, 8192];

struct Args {
    data_dir: PathBuf,
    reps: usize,
    seconds: u64,
    only: Option<String>,
}

impl Args {
    fn runs(&self, section: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == section)
    }
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        data_dir: std::env::var_os("EDGE_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata"))),
        reps: 7,
        seconds: 5,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--data-dir" => {
                args.data_dir = it.next().context("--data-dir needs a directory")?.into();
            }
            "--reps" => {
                let n = it.next().context("--reps needs a number")?;
                args.reps = n
                    .parse()
                    .with_context(|| format!("--reps {n:?} is not a number"))?;
            }
            "--seconds" => {
                let n = it.next().context("--seconds needs a number")?;
                args.seconds = n
                    .parse()
                    .with_context(|| format!("--seconds {n:?} is not a number"))?;
            }
            "--only" => {
                let section = it.next().context("--only needs a section")?;
                if !["wire", "modbus"].contains(&section.as_str()) {
                    bail!("--only {section:?}: no such section (wire, modbus)");
                }
                args.only = Some(section);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(args)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    if args.runs("wire") {
        println!("## Wire format\n");
        wire(&args)?;
    }
    if args.runs("modbus") {
        println!("\n## Modbus polling\n");
        modbus::run(args.seconds)?;
    }
    Ok(())
}

/// Report by exception on SKAB valve1, 0.5 % of span and a 60 s heartbeat,
/// beside every reading, in the same run.
fn report_by_exception(skab: &data::Dataset) -> Result<()> {
    let (pct, max_silence_s) = (0.5, 60);
    println!(
        "\n### Report by exception\n\n{}: every reading beside report by exception \
         (deadband {pct} % of each sensor's span, its min..max over the data set; heartbeat \
         {max_silence_s} s), edge-wire v8. Batches of the same number of readings sent. \
         Bytes per reading taken (the cost of the signal) and per reading sent.\n",
        skab.label
    );
    println!(
        "| Batch (readings) | Readings taken | Readings sent | Kept | v8 bytes, every reading | \
         v8 bytes, by exception | B/reading taken, every | B/reading taken, by exception | \
         B/reading sent, by exception |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut per_sensor = Vec::new();
    for size in BATCH_SIZES {
        let r = exception::measure(skab, size, pct, max_silence_s)?;
        per_sensor = r.per_sensor.clone();
        println!(
            "| {} | {} | {} | {:.1} % | {} | {} | {:.2} | {:.2} | {:.2} |",
            r.batch_readings,
            r.readings,
            r.sent,
            100.0 * r.sent as f64 / r.readings as f64,
            r.all_bytes,
            r.filtered_bytes,
            r.all_bytes as f64 / r.readings as f64,
            r.filtered_bytes as f64 / r.readings as f64,
            r.filtered_bytes as f64 / r.sent as f64,
        );
    }
    let rows = skab.rows();
    println!("\n| Sensor | Deadband (0.5 % of span) | Readings sent | Kept |");
    println!("|---|---:|---:|---:|");
    for (name, deadband, sent) in per_sensor {
        println!(
            "| {name} | {deadband:.3e} | {sent} | {:.1} % |",
            100.0 * sent as f64 / rows as f64
        );
    }
    Ok(())
}

fn wire(args: &Args) -> Result<()> {
    if !args.data_dir.is_dir() {
        bail!(
            "data directory {} not found: set EDGE_DATA_DIR or pass --data-dir (see testdata/README.md)",
            args.data_dir.display()
        );
    }
    let datasets = [
        data::load_skab(&args.data_dir)?,
        data::load_skab_anomaly_free(&args.data_dir)?,
        data::load_nab(&args.data_dir)?,
    ];

    println!(
        "Ours: edge-wire v8 (what `encode` writes), v8 + table ref (format v9: the same batch \
         naming its series table by content id, as the agent sends it once the relay holds \
         the table; encode includes cutting the table out), v6 (the range coder before v8) \
         and v5 (the value coding before v6), CBOR columns + zstd 3. Baselines: InfluxDB line protocol, one line per timestamp \
         per device, gzip level 6; raw little-endian i64 timestamp and f64 value columns, \
         xz preset {}. Bytes per reading. Speeds: median of {} repetitions, M readings/s, \
         one thread (the baselines: encode only).\n",
        baseline::XZ_PRESET,
        args.reps
    );
    println!(
        "| Data set | Batch (readings) | v8 + table ref | v8 | v6 | v5 | LP+gzip | f64+xz | \
         v8 + ref encode | v8 + ref decode | v8 encode | v8 decode | v6 encode | v6 decode | \
         v5 encode | v5 decode | LP+gzip encode | f64+xz encode |"
    );
    println!(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for dataset in &datasets {
        for size in BATCH_SIZES {
            let row = measure::measure(dataset, size, args.reps)?;
            println!(
                "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} M/s | {:.2} M/s | {:.2} M/s | {:.2} M/s | {:.2} M/s | {:.2} M/s | {:.2} M/s | {:.2} M/s | {:.2} M/s | {:.2} M/s |",
                row.dataset,
                row.batch_readings,
                row.per_reading(row.v7.bytes),
                row.per_reading(row.v8.bytes),
                row.per_reading(row.v6.bytes),
                row.per_reading(row.v5.bytes),
                row.per_reading(row.line_protocol_bytes),
                row.per_reading(row.f64_xz_bytes),
                row.v7.encode_per_s / 1e6,
                row.v7.decode_per_s / 1e6,
                row.v8.encode_per_s / 1e6,
                row.v8.decode_per_s / 1e6,
                row.v6.encode_per_s / 1e6,
                row.v6.decode_per_s / 1e6,
                row.v5.encode_per_s / 1e6,
                row.v5.decode_per_s / 1e6,
                row.line_protocol_per_s / 1e6,
                row.f64_xz_per_s / 1e6,
            );
            eprintln!(
                "  {}: {} readings in {} batches of {}: v8 + table ref {} bytes, v8 {}, v6 {}, v5 {}, line protocol + gzip {}, f64 + xz {}",
                row.dataset,
                row.readings,
                row.batches,
                row.batch_readings,
                row.v7.bytes,
                row.v8.bytes,
                row.v6.bytes,
                row.v5.bytes,
                row.line_protocol_bytes,
                row.f64_xz_bytes
            );
        }
    }
    report_by_exception(&datasets[0])
}
