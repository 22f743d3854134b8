use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use exchange::{parse_line, LineSource, RawLine, ReaderOptions, Timestamp};
use serde::Deserialize;
use simulate::Label;
use simulate::{evaluate, Evaluation, Verdict};

#[derive(clap::Args)]
pub struct Args {
    /// Labels written by `simulate --labels`.
    #[arg(long)]
    pub labels: PathBuf,
    /// Verdict lines written by `scan --json`.
    #[arg(long)]
    pub verdicts: PathBuf,
    /// The exchange log that was scanned (for time-to-detect).
    #[arg(long)]
    pub log: PathBuf,
    /// Print the evaluation as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Deserialize)]
struct VerdictLine {
    account: String,
    score: f64,
    verdict: String,
    first_flagged: Option<String>,
    #[serde(default)]
    cluster: Option<String>,
}

fn read_lines<T: for<'de> Deserialize<'de>>(path: &PathBuf) -> anyhow::Result<Vec<T>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{} line {}", path.display(), i + 1))?,
        );
    }
    Ok(out)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let labels: Vec<Label> = read_lines(&args.labels)?;
    let mut verdicts = HashMap::new();
    for v in read_lines::<VerdictLine>(&args.verdicts)? {
        let first_flagged = v
            .first_flagged
            .as_deref()
            .and_then(|t| Timestamp::parse(t).ok())
            .map(|t| t.millis());
        verdicts.insert(
            v.account,
            Verdict {
                score: v.score,
                distilling: v.verdict == "distilling",
                watched: v.verdict == "distilling" || v.verdict == "suspicious",
                first_flagged,
                cluster: v.cluster,
            },
        );
    }
    let mut times: HashMap<String, Vec<i64>> = HashMap::new();
    let mut source = LineSource::open(&args.log, ReaderOptions::default())?;
    while let Some(line) = source.next_line() {
        if let RawLine::Line { bytes, .. } = line? {
            if let Ok(ex) = parse_line(&bytes) {
                times.entry(ex.account).or_default().push(ex.ts.millis());
            }
        }
    }
    let e = evaluate(&labels, &verdicts, &times);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        print!("{}", render(&e));
    }
    Ok(ExitCode::SUCCESS)
}

/// The human-readable form of an evaluation.
pub fn render(e: &Evaluation) -> String {
    let mut s = String::new();
    let r = |x: &simulate::Rate| format!("{:.4} ({}/{})", x.value(), x.hits, x.of);
    s += &format!("AUROC                         {:.4}\n", e.auroc);
    s += &format!("TPR at distilling             {}\n", r(&e.tpr));
    s += &format!("FPR at distilling             {}\n", r(&e.fpr));
    s += &format!("benign left suspicious+       {}\n", r(&e.benign_watched));
    for b in &e.tpr_at_fpr {
        s += &format!(
            "TPR at FPR <= {:<5}           {} (scores above {:.4}; FPR {})\n",
            format!("{}%", b.budget * 100.0),
            r(&b.tpr),
            b.threshold,
            r(&b.fpr)
        );
    }
    s += &format!("campaigns caught              {}\n", r(&e.campaigns_caught));
    s += &format!(
        "campaigns caught before 10%   {}\n",
        r(&e.campaigns_caught_early)
    );
    // The same, among the campaigns caught at all: how early detection is when it comes.
    let early_of_caught = simulate::Rate {
        hits: e.campaigns_caught_early.hits,
        of: e.campaigns_caught.hits,
    };
    s += &format!("  of the campaigns caught      {}\n", r(&early_of_caught));
    let mut ttd: Vec<f64> = e.time_to_detect.values().copied().collect();
    ttd.sort_by(f64::total_cmp);
    if !ttd.is_empty() {
        s += &format!("time to detect (share of campaign exchanges before first flag): median {:.3}, p90 {:.3}\n", ttd[ttd.len() / 2], ttd[(ttd.len() * 9 / 10).min(ttd.len() - 1)]);
    }
    let g = &e.grouping;
    if g.campaigns > 0 {
        s += &format!(
            "multi-account campaigns       {}: flagged before 10% {}, members in their majority group {}, purity {}, benign accounts in attack groups {}{}\n",
            g.campaigns,
            r(&g.early),
            r(&g.in_majority),
            r(&g.purity),
            g.benign_in_attack_groups,
            g.worst
                .as_ref()
                .map_or(String::new(), |(c, share)| format!(", worst {c} ({share:.2})"))
        );
    }
    s += "FPR by benign archetype:\n";
    for (k, v) in &e.fpr_by_archetype {
        s += &format!("  {:<22} {}\n", k, r(v));
    }
    s += "TPR by attack archetype:\n";
    for (k, v) in &e.tpr_by_archetype {
        s += &format!("  {:<22} {}\n", k, r(v));
    }
    s += "campaigns by kind: flagged before 10% / flagged at all\n";
    for (k, (caught, early)) in &e.campaigns_by_archetype {
        s += &format!(
            "  {:<22} {:>3} / {:>3} of {}\n",
            k, early.hits, caught.hits, caught.of
        );
    }
    s
}
