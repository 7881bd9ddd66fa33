//! `edge-bench`: wire size and codec speed of our batch format against
//! InfluxDB line protocol + gzip, on the real data sets in `testdata/`.
//! Prints a markdown table; `scripts/bench` runs it, `docs/BENCHMARKS.md`
//! records the results.
//!
//! Modules: [`data`] loads the CSV files and cuts batches, [`baseline`]
//! writes line protocol + gzip, [`measure`] times one table cell,
//! [`modbus`] measures the Modbus poller against in-process devices.

mod baseline;
mod data;
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
const BATCH_SIZES: [usize; 2] = [256, 8192];

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

fn wire(args: &Args) -> Result<()> {
    if !args.data_dir.is_dir() {
        bail!(
            "data directory {} not found: set EDGE_DATA_DIR or pass --data-dir (see testdata/README.md)",
            args.data_dir.display()
        );
    }
    let datasets = [
        data::load_skab(&args.data_dir)?,
        data::load_nab(&args.data_dir)?,
    ];

    println!(
        "Ours: edge-wire v2 (CBOR columns + zstd 3). Baseline: InfluxDB line protocol, \
         one line per timestamp per device, gzip level 6. Speeds: median of {} repetitions, \
         M readings/s, one thread.\n",
        args.reps
    );
    println!(
        "| Data set | Batch (readings) | Ours B/reading | LP+gzip B/reading | LP+gzip / ours | \
         Ours encode | Ours decode | LP+gzip encode |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for dataset in &datasets {
        for size in BATCH_SIZES {
            let row = measure::measure(dataset, size, args.reps)?;
            println!(
                "| {} | {} | {:.2} | {:.2} | {:.1}× | {:.2} M/s | {:.2} M/s | {:.2} M/s |",
                row.dataset,
                row.batch_readings,
                row.ours_bytes_per_reading(),
                row.baseline_bytes_per_reading(),
                row.baseline_bytes as f64 / row.ours_bytes as f64,
                row.ours_encode_per_s / 1e6,
                row.ours_decode_per_s / 1e6,
                row.baseline_encode_per_s / 1e6,
            );
            eprintln!(
                "  {}: {} readings in {} batches of {}: ours {} bytes, line protocol + gzip {} bytes",
                row.dataset, row.readings, row.batches, row.batch_readings, row.ours_bytes, row.baseline_bytes
            );
        }
    }
    Ok(())
}
