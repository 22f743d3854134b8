//! `distillguard demo`: the main job end to end on a fresh machine. Simulates a day or two of
//! API traffic from the real corpora (benign customers and distillation campaigns), writes it
//! as an exchange log, scans it as an analyst would, and grades the verdicts against the
//! simulation's labels.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{evaluate, scan, simulate};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "../shared/data")]
    pub data_dir: PathBuf,
    /// Where the log, labels and verdicts are written.
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 120)]
    pub accounts: usize,
    #[arg(long, default_value_t = 2.0)]
    pub days: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)?;
    let log = args.out.join("exchanges.jsonl");
    let labels = args.out.join("labels.jsonl");
    let verdicts = args.out.join("verdicts.jsonl");
    println!(
        "== 1. simulate: benign customers and distillation campaigns -> {}",
        log.display()
    );
    simulate::run(simulate::Args {
        data_dir: args.data_dir,
        seed: args.seed,
        accounts: args.accounts,
        campaigns: None,
        days: args.days,
        out: log.clone(),
        labels: Some(labels.clone()),
    })?;
    println!("\n== 2. scan: every account ranked, with reasons");
    let scan_args = |json: bool| scan::Args {
        input: log.clone(),
        json,
        config: None,
        strict: false,
        max_line_bytes: 16 << 20,
        top: 15,
        features: false,
        threads: None,
        output: json.then(|| verdicts.clone()),
    };
    scan::run(scan_args(false))?;
    scan::run(scan_args(true))?;
    println!(
        "\n== 3. evaluate: verdicts ({}) against the simulation's labels",
        verdicts.display()
    );
    evaluate::run(evaluate::Args {
        labels,
        verdicts,
        log,
        json: false,
    })
}
