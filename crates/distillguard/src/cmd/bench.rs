//! `distillguard bench detect`: simulate → detect → evaluate over several seeds and sizes,
//! in process, and print the pooled figures recorded in `bench/README.md`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use detect::{Detector, Verdict as DetectVerdict};
use simulate::evaluate::{evaluate, Evaluation, Verdict};
use simulate::{simulate, Corpora, Label, SimConfig};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand)]
pub enum What {
    /// Detection quality: AUROC, TPR/FPR at `distilling`, per archetype, time to detect.
    Detect(DetectArgs),
}

#[derive(clap::Args)]
pub struct DetectArgs {
    #[arg(long, default_value = "../shared/data")]
    pub data_dir: PathBuf,
    /// Seeds 1..=N.
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// Population sizes (benign accounts), comma separated.
    #[arg(long, default_value = "300", value_delimiter = ',')]
    pub sizes: Vec<usize>,
    #[arg(long, default_value_t = 3.0)]
    pub days: f64,
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Write every account's label, score, verdict and features as JSON lines (for analysis).
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// List false positives and missed attacks.
    #[arg(long)]
    pub verbose: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.what {
        What::Detect(a) => detect(a),
    }
}

fn detect(args: DetectArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(args.config.as_deref())?;
    let corpora = Corpora::load(&args.data_dir)?;
    let mut dump = args.dump.as_ref().map(|p| File::create(p).map(BufWriter::new)).transpose()?;
    let mut all_labels: Vec<Label> = Vec::new();
    let mut all_verdicts = HashMap::new();
    let mut all_times: HashMap<String, Vec<i64>> = HashMap::new();
    for &size in &args.sizes {
        for seed in 1..=args.seeds {
            let sim = simulate(&SimConfig { seed, benign_accounts: size, days: args.days, ..SimConfig::default() }, &corpora);
            let mut detector = Detector::new(config.clone());
            let mut times: HashMap<String, Vec<i64>> = HashMap::new();
            for ex in &sim.exchanges {
                detector.observe(ex);
                times.entry(ex.account.clone()).or_default().push(ex.ts.millis());
            }
            let mut verdicts = HashMap::new();
            for r in detector.reports() {
                let first_flagged = r.first_flagged.as_deref().and_then(|t| exchange::Timestamp::parse(t).ok()).map(|t| t.millis());
                verdicts.insert(r.account.clone(), Verdict { score: r.score, distilling: r.verdict == DetectVerdict::Distilling, first_flagged });
            }
            let e = evaluate(&sim.labels, &verdicts, &times);
            println!(
                "size {size} seed {seed}: {} exchanges, {} accounts, AUROC {:.4}, TPR {:.3}, FPR {:.4}, early {}/{}",
                sim.exchanges.len(),
                sim.labels.len(),
                e.auroc,
                e.tpr.value(),
                e.fpr.value(),
                e.campaigns_caught_early.hits,
                e.campaigns_caught_early.of
            );
            if args.verbose {
                print_misses(&e, &sim.labels, &verdicts);
            }
            if let Some(d) = dump.as_mut() {
                for l in &sim.labels {
                    let v = verdicts.get(&l.account);
                    let line = serde_json::json!({
                        "seed": seed, "size": size, "account": l.account, "class": l.class, "archetype": l.archetype,
                        "score": v.map_or(0.0, |v| v.score), "distilling": v.is_some_and(|v| v.distilling),
                        "features": detector.features(&l.account),
                        "reasons": detector.report(&l.account).map(|r| r.reasons),
                    });
                    serde_json::to_writer(&mut *d, &line)?;
                    d.write_all(b"\n")?;
                }
            }
            // Pool runs under distinct names so campaigns of different runs stay apart.
            let tag = format!("s{size}-{seed}/");
            for mut l in sim.labels {
                l.account = format!("{tag}{}", l.account);
                l.campaign = l.campaign.map(|c| format!("{tag}{c}"));
                all_labels.push(l);
            }
            for (k, v) in verdicts {
                all_verdicts.insert(format!("{tag}{k}"), v);
            }
            for (k, v) in times {
                all_times.insert(format!("{tag}{k}"), v);
            }
        }
    }
    let pooled: Evaluation = evaluate(&all_labels, &all_verdicts, &all_times);
    println!("\npooled over {} runs:", args.sizes.len() as u64 * args.seeds);
    print!("{}", super::evaluate::render(&pooled));
    Ok(ExitCode::SUCCESS)
}

fn print_misses(e: &Evaluation, labels: &[Label], verdicts: &HashMap<String, Verdict>) {
    for fp in &e.false_positives {
        println!("  false positive: {fp}");
    }
    for l in labels.iter().filter(|l| l.is_attack()) {
        if !verdicts.get(&l.account).is_some_and(|v| v.distilling) {
            println!("  missed: {} ({}) score {:.3}", l.account, l.archetype, verdicts.get(&l.account).map_or(0.0, |v| v.score));
        }
    }
}
