use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use detect::{AccountReport, Verdict};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub log: super::LogArgs,
    /// Print one verdict line per account (EXCHANGE_FORMAT.md) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Stop at the first bad line (exit 4) instead of counting it and going on.
    #[arg(long)]
    pub strict: bool,
    /// Accounts shown in the table.
    #[arg(long, default_value_t = 25)]
    pub top: usize,
    /// Add each account's raw features to the JSON lines (for analysis).
    #[arg(long)]
    pub features: bool,
    /// Write the output to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Explain one account instead of the table: its verdict, every reason with its
    /// sentence, and the group it is linked into (exit 1 when the log has no such account).
    #[arg(long, value_name = "ACCOUNT")]
    pub why: Option<String>,
    /// Also write one self-contained HTML page (ranked accounts, groups, and each flagged
    /// account's reasons and escalations) to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos} exchanges read ({per_sec}) {elapsed}")
            .expect("template"),
    );
    // The escalations are kept only for the HTML report's timelines.
    let mut changes = Vec::new();
    let keep = args.html.is_some();
    let (detector, outcome) = args.log.detect_watching(
        args.strict,
        |c| {
            if keep {
                changes.push(c.clone());
            }
        },
        |n| bar.set_position(n),
    )?;
    bar.finish_and_clear();

    let reports = detector.reports();
    if let Some(path) = &args.html {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        crate::report::write(
            &mut BufWriter::new(file),
            &args.log.input.display().to_string(),
            outcome.exchanges,
            outcome.bad.total,
            &reports,
            &detector.groups(),
            &changes,
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    let sink: Box<dyn Write> = match &args.output {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?)
        }
        None => Box::new(io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    if let Some(account) = &args.why {
        let Some(r) = reports.iter().find(|r| &r.account == account) else {
            eprintln!("error: no account {account} in this log");
            return Ok(ExitCode::from(1));
        };
        explain(&mut out, r, &reports)?;
    } else if args.json {
        for r in &reports {
            if args.features {
                let mut v = serde_json::to_value(r)?;
                v["features"] = serde_json::to_value(detector.features(&r.account))?;
                serde_json::to_writer(&mut out, &v)?;
            } else {
                serde_json::to_writer(&mut out, r)?;
            }
            out.write_all(b"\n")?;
        }
    } else {
        print_table(&mut out, &reports, args.top, outcome.exchanges)?;
    }
    out.flush()?;

    eprint!("{}", outcome.bad);
    let missing = outcome.present.missing();
    if outcome.exchanges > 0 && !missing.is_empty() {
        eprintln!(
            "not in this source (left out, never invented; the verdicts stand on the rest): {}",
            missing.join(", ")
        );
    }
    if let Some(bad) = &outcome.strict_stop {
        eprintln!("error: --strict: stopped at {bad}");
        return Ok(ExitCode::from(4));
    }
    if let Some(e) = &outcome.read_error {
        eprintln!(
            "error: input ended with a read error after {} exchanges: {e}",
            outcome.exchanges
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(
    out: &mut impl Write,
    reports: &[AccountReport],
    top: usize,
    exchanges: u64,
) -> io::Result<()> {
    let count = |v: Verdict| reports.iter().filter(|r| r.verdict == v).count();
    writeln!(
        out,
        "{} exchanges, {} accounts: {} distilling, {} suspicious, {} benign",
        exchanges,
        reports.len(),
        count(Verdict::Distilling),
        count(Verdict::Suspicious),
        count(Verdict::Benign)
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{:<28} {:<11} {:>6} {:>9}  {:<24}  top reasons",
        "account", "verdict", "score", "exchanges", "first flagged"
    )?;
    // A linked group is one actor: one row, at its strongest member's place, with the
    // members' exchanges added up (`--why ACCOUNT` or `distillguard groups` lists them).
    let mut shown_groups = std::collections::HashSet::new();
    let mut rows = 0;
    for r in reports {
        if rows == top {
            break;
        }
        let (name, exchanges, first_flagged) = match &r.cluster {
            Some(c) if !shown_groups.insert(c.as_str()) => continue,
            Some(c) => {
                let members: Vec<&AccountReport> = reports
                    .iter()
                    .filter(|m| m.cluster.as_deref() == Some(c))
                    .collect();
                (
                    format!("{c} ({} accounts)", members.len()),
                    members.iter().map(|m| m.exchanges).sum::<u64>(),
                    members
                        .iter()
                        .filter_map(|m| m.first_flagged.as_deref())
                        .min(),
                )
            }
            None => (r.account.clone(), r.exchanges, r.first_flagged.as_deref()),
        };
        rows += 1;
        let reasons: Vec<String> = r
            .reasons
            .iter()
            .filter(|x| x.value > 0.0)
            .take(3)
            .map(|x| format!("{} (+{:.1})", x.signal, x.value))
            .collect();
        writeln!(
            out,
            "{:<28} {:<11} {:>6.3} {:>9}  {:<24}  {}",
            name,
            r.verdict.as_str(),
            r.score,
            exchanges,
            first_flagged.unwrap_or("-"),
            reasons.join(", ")
        )?;
    }
    if let Some(first) = reports.first().filter(|r| r.verdict != Verdict::Benign) {
        writeln!(out)?;
        explain(out, first, reports)?;
    }
    Ok(())
}

/// Why one account is judged as it is: every reason with its sentence, and its group.
fn explain(out: &mut impl Write, r: &AccountReport, reports: &[AccountReport]) -> io::Result<()> {
    writeln!(
        out,
        "why {} is {} (score {:.3}, {} exchanges, first flagged {}):",
        r.account,
        r.verdict.as_str(),
        r.score,
        r.exchanges,
        r.first_flagged.as_deref().unwrap_or("never")
    )?;
    for reason in &r.reasons {
        writeln!(
            out,
            "  {:+.2} {}: {}",
            reason.value, reason.signal, reason.detail
        )?;
    }
    if let Some(c) = &r.cluster {
        let members: Vec<&str> = reports
            .iter()
            .filter(|m| m.cluster.as_deref() == Some(c.as_str()))
            .map(|m| m.account.as_str())
            .collect();
        writeln!(
            out,
            "  linked into {c} with {} other account(s): {}",
            members.len().saturating_sub(1),
            members
                .iter()
                .filter(|m| **m != r.account)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    Ok(())
}
