//! `distillguard groups`: the accounts linked as one actor in a log, with the evidence that
//! links them, and an indicator bundle per flagged group to share with other providers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use detect::{GroupReport, Verdict};
use exchange::LineSource;
use serde::Serialize;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub log: super::LogArgs,
    /// One JSON line per group (members, links by kind, pairwise evidence).
    #[arg(long)]
    pub json: bool,
    /// Write an indicator bundle (JSON) of every suspicious or distilling group to this file:
    /// addresses, networks, payment fingerprints, client fingerprints, user agents, ASNs.
    /// Reads the log a second time (not possible from stdin).
    #[arg(long)]
    pub indicators: Option<PathBuf>,
    /// Write a STIX 2.1 bundle of every suspicious or distilling group to this file: an
    /// indicator and a sighting per address, network, ASN, user agent, TLS fingerprint,
    /// hashed payment fingerprint and system-prompt hash, and a report per group
    /// (docs/sharing.md). Reads the log a second time (not possible from stdin).
    #[arg(long)]
    pub stix: Option<PathBuf>,
    /// The producer named in the STIX bundle (your organisation).
    #[arg(long, default_value = "distillguard")]
    pub producer: String,
    /// Groups shown in the table.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
}

/// What a group's members were seen with: the raw values, for matching elsewhere.
#[derive(Default, Serialize)]
struct Indicators {
    ips: BTreeSet<String>,
    subnets: BTreeSet<String>,
    payment_fingerprints: BTreeSet<String>,
    tls_fingerprints: BTreeSet<String>,
    user_agents: BTreeSet<String>,
    asns: BTreeSet<u64>,
    /// Hashes (the detector's normalised-text hash, hex) of the system prompts they used.
    system_prompt_hashes: BTreeSet<String>,
}

impl From<&Sightings> for Indicators {
    /// The values seen, by kind, without their counts.
    fn from(seen: &Sightings) -> Self {
        let mut ind = Indicators::default();
        for o in seen.keys() {
            match o.clone() {
                stix::Observable::Address(v) => ind.ips.insert(v),
                stix::Observable::Network(v) => ind.subnets.insert(v),
                stix::Observable::PaymentFingerprint(v) => ind.payment_fingerprints.insert(v),
                stix::Observable::TlsFingerprint(v) => ind.tls_fingerprints.insert(v),
                stix::Observable::UserAgent(v) => ind.user_agents.insert(v),
                stix::Observable::Asn(v) => ind.asns.insert(v),
                stix::Observable::SystemPromptHash(v) => ind.system_prompt_hashes.insert(v),
            };
        }
        ind
    }
}

#[derive(Serialize)]
struct Bundle<'a> {
    cluster: &'a str,
    verdict: Verdict,
    score: f64,
    first_flagged: &'a Option<String>,
    members: &'a [String],
    links: &'a BTreeMap<&'static str, u32>,
    indicators: Indicators,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (detector, outcome) = args.log.detect(false, |_| {})?;
    let groups = detector.groups();

    let mut out = BufWriter::new(io::stdout().lock());
    if args.json {
        for g in &groups {
            serde_json::to_writer(&mut out, g)?;
            out.write_all(b"\n")?;
        }
    } else {
        print_table(&mut out, &groups, args.top, outcome.exchanges)?;
    }
    out.flush()?;
    eprint!("{}", outcome.bad);

    if args.indicators.is_some() || args.stix.is_some() {
        let flagged: Vec<&GroupReport> = groups
            .iter()
            .filter(|g| g.verdict > Verdict::Benign)
            .collect();
        let (bundles, seen) = indicators(&args.log, &flagged)?;
        if let Some(path) = &args.indicators {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            serde_json::to_writer_pretty(BufWriter::new(file), &bundles)?;
            eprintln!(
                "indicator bundle of {} flagged group(s) written to {}",
                bundles.len(),
                path.display()
            );
        }
        if let Some(path) = &args.stix {
            let stix_groups: Vec<stix::Group> = flagged
                .iter()
                .zip(seen)
                .map(|(g, seen)| stix::Group {
                    cluster: g.cluster.clone(),
                    verdict: g.verdict.as_str().into(),
                    score: g.score,
                    members: g.members.len(),
                    reasons: g.reasons.iter().map(|r| r.detail.clone()).collect(),
                    seen: seen.into_iter().collect(),
                })
                .collect();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let bundle = stix::bundle(&args.producer, &stix_groups, now);
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            serde_json::to_writer_pretty(BufWriter::new(file), &bundle)?;
            eprintln!(
                "STIX 2.1 bundle of {} flagged group(s) written to {}",
                stix_groups.len(),
                path.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// When and how often a group's members were seen with each value, for the STIX sightings.
type Sightings = BTreeMap<stix::Observable, stix::Seen>;

/// A second pass over the log, collecting what the flagged groups' members were seen with.
fn indicators<'a>(
    log: &super::LogArgs,
    groups: &[&'a GroupReport],
) -> anyhow::Result<(Vec<Bundle<'a>>, Vec<Sightings>)> {
    anyhow::ensure!(
        log.input.as_os_str() != "-",
        "--indicators and --stix read the log twice, so they need a file, not stdin"
    );
    let member_of: HashMap<&str, usize> = groups
        .iter()
        .enumerate()
        .flat_map(|(i, g)| g.members.iter().map(move |m| (m.as_str(), i)))
        .collect();
    // When and how often each value was seen: the STIX sightings, and the indicators.
    let mut seen: Vec<Sightings> = groups.iter().map(|_| BTreeMap::new()).collect();
    let format = log.format()?;
    let mut source = LineSource::open(&log.input, log.reader_options())?;
    while let Some(line) = source.next_line() {
        let Ok(exchange::RawLine::Line { bytes, .. }) = line else {
            continue;
        };
        let mut read = Vec::new();
        format.parse_each(&bytes, |r| read.extend(r.ok()));
        for ex in read {
            let Some(&g) = member_of.get(ex.account.as_str()) else {
                continue;
            };
            stix::note(&ex, &mut seen[g]);
        }
    }
    let bundles = groups
        .iter()
        .zip(&seen)
        .map(|(g, seen)| Bundle {
            cluster: &g.cluster,
            verdict: g.verdict,
            score: g.score,
            first_flagged: &g.first_flagged,
            members: &g.members,
            links: &g.links,
            indicators: Indicators::from(seen),
        })
        .collect();
    Ok((bundles, seen))
}

fn print_table(
    out: &mut impl Write,
    groups: &[GroupReport],
    top: usize,
    exchanges: u64,
) -> io::Result<()> {
    writeln!(
        out,
        "{} exchanges; {} groups of linked accounts ({} flagged)",
        exchanges,
        groups.len(),
        groups
            .iter()
            .filter(|g| g.verdict > Verdict::Benign)
            .count()
    )?;
    for g in groups.iter().take(top) {
        let links: Vec<String> = g.links.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        writeln!(
            out,
            "\n{}  {:<10}  score {:.3}  {} members  {} exchanges  joined by: {}",
            g.cluster,
            g.verdict.as_str(),
            g.score,
            g.members.len(),
            g.exchanges,
            links.join(", ")
        )?;
        let shown: Vec<&str> = g.members.iter().take(8).map(String::as_str).collect();
        let more = g.members.len().saturating_sub(shown.len());
        writeln!(
            out,
            "  members: {}{}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )?;
        for e in g.evidence.iter().take(3) {
            let kinds: Vec<String> = e.kinds.iter().map(|(k, w)| format!("{k} {w:.2}")).collect();
            writeln!(
                out,
                "  {} ~ {}: {:.2} ({})",
                e.a,
                e.b,
                e.total,
                kinds.join(", ")
            )?;
        }
    }
    Ok(())
}
