//! `distillguard evidence detect`: is this text marked with an account's watermark key? The
//! text is read through the model's own tokenizer (the one the engine marks in), scored
//! against the key, and answered with a p-value: the chance that text written without that
//! key scores as high (`docs/evidence.md`).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cmd::engine::{MarkArgs, SecretArgs};
use crate::marks::{detection, test_keys, tokenizer};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand)]
pub enum What {
    /// Score a text against one account's key: an exact p-value, or "too short to judge".
    Detect(DetectArgs),
    /// Ask a suspect model (any OpenAI-compatible endpoint) fixed questions and test its
    /// answers for accounts' marks, beside control keys: a JSON and an HTML report.
    Probe(crate::cmd::evidence_probe::ProbeArgs),
    /// Replay a group's logged prompts to a suspect and a control: is the suspect closer to
    /// what we served than the control? A sign-flip permutation p-value, in a JSON and an
    /// HTML report.
    Similarity(crate::cmd::evidence_similarity::SimilarityArgs),
}

#[derive(clap::Args)]
pub struct DetectArgs {
    /// The text: a file, or `-` for stdin.
    #[arg(default_value = "-")]
    pub input: PathBuf,
    /// The account whose key to test.
    #[arg(long, required_unless_present_any = ["key_id", "watermark", "all_accounts"])]
    pub account: Option<String>,
    /// Test the text against the key of every account of the store (--data): whose answer
    /// leaked? Each is judged at --alpha / accounts (Bonferroni), the results ranked.
    #[arg(long, conflicts_with_all = ["account", "key_id", "watermark"])]
    pub all_accounts: bool,
    /// With --all-accounts: the family-wise significance level.
    #[arg(long, default_value_t = 1e-3)]
    pub alpha: f64,
    /// The mark as the exchange log names it (its `watermark` field: `wm1-…; scheme=kgw;
    /// gamma=…; delta=…; context=…`): the key id and the scheme together, so the test is the
    /// one the engine marked with (instead of --key-id and --scheme/--gamma/--context).
    #[arg(long, conflicts_with = "key_id")]
    pub watermark: Option<String>,
    /// The key id as the exchange log names it (`wm1-...`); its account is found among the
    /// store's accounts (--data).
    #[arg(long)]
    pub key_id: Option<String>,
    /// The store whose accounts --key-id is looked up among.
    #[command(flatten)]
    pub store: crate::cmd::StoreArgs,
    #[command(flatten)]
    pub model: crate::cmd::engine::ModelArgs,
    #[command(flatten)]
    pub mark: MarkArgs,
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Fewer scored tokens than this is too short to judge.
    #[arg(long, default_value_t = 50)]
    pub min_tokens: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.what {
        What::Detect(a) => detect(a),
        What::Probe(a) => crate::cmd::evidence_probe::probe(a),
        What::Similarity(a) => crate::cmd::evidence_similarity::run(a),
    }
}

fn detect(a: DetectArgs) -> anyhow::Result<ExitCode> {
    let master = a.secret.master()?.ok_or_else(|| {
        anyhow::anyhow!("set DISTILLGUARD_WATERMARK_SECRET (or --watermark-secret-file): the keys derive from it")
    })?;
    let named = a
        .watermark
        .as_deref()
        .map(watermark::Named::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let key_id = named
        .as_ref()
        .map(|n| n.key_id.clone())
        .or(a.key_id.clone());
    let (scheme, context) = named
        .as_ref()
        .map_or((a.mark.scheme(), a.mark.context), |n| (n.scheme, n.context));
    if a.all_accounts {
        return detect_all(&a, &master, scheme, context);
    }
    let account = match (&a.account, &key_id) {
        (Some(account), _) => account.clone(),
        (None, Some(id)) => a
            .store
            .open()?
            .accounts()?
            .into_iter()
            .map(|acc| acc.name)
            .find(|name| master.key_for(name).id().as_str() == id)
            .ok_or_else(|| anyhow::anyhow!("no account of the store has the key {id}"))?,
        (None, None) => unreachable!("clap requires one"),
    };
    let text = read_text(&a.input)?;
    let tokens = tokenizer(&a.model.path)?(&text);
    let d = detection(
        (&master, scheme, context),
        &account,
        &tokens,
        a.min_tokens,
        None,
    )?;
    let mut out = serde_json::to_value(&d)?;
    out["account"] = account.clone().into();
    println!("{}", serde_json::to_string_pretty(&out)?);
    match d.p_value {
        Some(p) => eprintln!(
            "{account} ({}): {} of {} tokens scored, p = {p:.3e} (log10 {:.1}): {}",
            d.key_id,
            d.scored,
            d.tokens,
            d.log10_p_value.unwrap_or(0.0),
            if p < 1e-3 {
                "marked with this key"
            } else {
                "no evidence of this key"
            }
        ),
        None => eprintln!(
            "{account}: too short to judge ({} scored tokens, {} needed)",
            d.scored, a.min_tokens
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `--all-accounts`: the text against every account's key of the store, ranked by p-value,
/// each judged at `alpha / accounts`.
fn detect_all(
    a: &DetectArgs,
    master: &watermark::Master,
    scheme: watermark::Scheme,
    context: usize,
) -> anyhow::Result<ExitCode> {
    let accounts: Vec<String> = a
        .store
        .open()?
        .accounts()?
        .into_iter()
        .map(|acc| acc.name)
        .collect();
    anyhow::ensure!(!accounts.is_empty(), "the store has no account to test");
    let text = read_text(&a.input)?;
    let tokens = tokenizer(&a.model.path)?(&text);
    let level = a.alpha / accounts.len() as f64;
    let mark = (master, scheme, context);
    let (mut results, _) = test_keys(mark, &accounts, &tokens, (a.min_tokens, a.alpha), None)?;
    let p = |v: &serde_json::Value| v["p_value"].as_f64().unwrap_or(1.0);
    results.sort_by(|x, y| p(x).total_cmp(&p(y)));
    // The marked accounts in the ranking's order, most significant first.
    let marked: Vec<&str> = results
        .iter()
        .filter(|v| v["marked"] == true)
        .filter_map(|v| v["account"].as_str())
        .collect();
    eprintln!(
        "{} accounts tested, each at p < {level:.1e}: {}",
        accounts.len(),
        if marked.is_empty() {
            "no account's mark found".to_owned()
        } else {
            format!("marked with the key of {}", marked.join(", "))
        }
    );
    let out = serde_json::json!({
        "tests": accounts.len(), "alpha": a.alpha, "level_per_key": level,
        "marked": marked, "results": results,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

fn read_text(input: &std::path::Path) -> anyhow::Result<String> {
    let mut text = String::new();
    if input.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(input)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", input.display()))?;
    }
    Ok(text)
}
