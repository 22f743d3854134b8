//! `distillguard evidence similarity`: does a suspect model answer our prompts the way we
//! answered them?
//!
//! A model trained on what we served to a group of accounts learned those answers: asked the
//! same prompts, it answers more like them than a model that never saw them. The prompts and
//! the answers we served come from our own exchange log (content on); the suspect and a
//! control (an unrelated model, or our own engine unmarked: what "answering these prompts
//! well" looks like without our answers) are asked each prompt at temperature 0. For each
//! prompt `d = sim(suspect, served) - sim(control, served)`, `sim` the Jaccard overlap of
//! the two answers' word pairs; under the null hypothesis (the suspect owes our answers no
//! more than the control does) each `d` is as likely negative as positive, so the sign-flip
//! permutation test of the mean gives an exact p-value (all 2^n flips up to n = 16, else
//! `--permutations` random ones with a fixed seed, counted with the observed one).
//!
//! What it cannot show: similarity is not a mark. Two models trained on the same public text
//! answer alike, so the control must be a model of the suspect's class; a paraphrasing student
//! shares meaning but few word pairs. `docs/evidence.md` says more.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;

use maud::html;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::marks::{served, sha256_file};
use crate::suspect::{tally, write_report, Outcome, Suspect, SuspectArgs};

#[derive(clap::Args)]
pub struct SimilarityArgs {
    /// Our exchange log (content on): where the prompts and the answers we served come from.
    #[arg(long)]
    pub log: PathBuf,
    /// The accounts whose prompts to replay (repeat, or comma separated): a flagged group.
    #[arg(long, required = true, value_delimiter = ',')]
    pub account: Vec<String>,
    #[command(flatten)]
    pub target: SuspectArgs,
    /// The control's OpenAI-compatible API base: a model that never saw our answers.
    #[arg(long)]
    pub control: String,
    #[arg(long, default_value = "default")]
    pub control_model: String,
    #[arg(long, env = "DISTILLGUARD_CONTROL_KEY", hide_env_values = true)]
    pub control_key: Option<String>,
    /// Prompts replayed (distinct single-turn prompts, in log order).
    #[arg(long, default_value_t = 20)]
    pub prompts: usize,
    #[arg(long, default_value_t = 200)]
    pub max_tokens: u32,
    /// Seconds to wait for one answer.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Random sign flips when there are more than 16 pairs.
    #[arg(long, default_value_t = 10_000)]
    pub permutations: usize,
    /// The significance level the verdict is read at.
    #[arg(long, default_value_t = 1e-3)]
    pub alpha: f64,
    /// Where to write the report: PREFIX.json and PREFIX.html.
    #[arg(long, default_value = "similarity-report")]
    pub out: PathBuf,
}

/// The set of a text's word pairs (lowercased letters and digits).
fn pairs(text: &str) -> HashSet<(String, String)> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    words
        .windows(2)
        .map(|w| (w[0].clone(), w[1].clone()))
        .collect()
}

/// Jaccard overlap of two texts' word pairs (0 when both have none).
pub fn similarity(a: &str, b: &str) -> f64 {
    let (a, b) = (pairs(a), pairs(b));
    let union = a.union(&b).count();
    if union == 0 {
        0.0
    } else {
        a.intersection(&b).count() as f64 / union as f64
    }
}

/// One-sided sign-flip permutation p-value of `mean(d) > 0`: the share of sign assignments
/// whose mean is at least the observed one (exact up to 16 values, else `random` draws plus
/// the observed assignment).
pub fn sign_flip_p(d: &[f64], random: usize, seed: u64) -> f64 {
    let observed: f64 = d.iter().sum();
    // A hair of slack: sums of the same values in another order differ in the last bits.
    let at_least = |s: f64| s >= observed - 1e-12;
    if d.len() <= 16 {
        let all = 1u32 << d.len();
        let hits = (0..all)
            .filter(|&mask| {
                let s: f64 = d
                    .iter()
                    .enumerate()
                    .map(|(i, x)| if mask >> i & 1 == 1 { -x } else { *x })
                    .sum();
                at_least(s)
            })
            .count();
        return hits as f64 / f64::from(all);
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let hits = (0..random)
        .filter(|_| {
            let s: f64 = d
                .iter()
                .map(|x| if rng.gen::<bool>() { -x } else { *x })
                .sum();
            at_least(s)
        })
        .count();
    (hits + 1) as f64 / (random + 1) as f64
}

pub fn run(a: SimilarityArgs) -> anyhow::Result<ExitCode> {
    let items = served(&a.log, &a.account, a.prompts.max(1))?;
    anyhow::ensure!(
        !items.is_empty(),
        "{} holds no single-turn prompt with its answer for {}: the log must have content on",
        a.log.display(),
        a.account.join(", ")
    );
    let questions: Vec<(&str, f64, u32)> = items
        .iter()
        .map(|(p, _)| (p.as_str(), 0.0, a.max_tokens))
        .collect();
    let suspect = a.target.suspect(a.timeout).ask(&questions)?;
    let control = Suspect {
        url: a.control.clone(),
        model: a.control_model.clone(),
        key: a.control_key.clone(),
        timeout_secs: a.timeout,
    }
    .ask(&questions)?;
    let mut d = Vec::new();
    let mut rows = Vec::new();
    for (((prompt, ours), s), c) in items.iter().zip(&suspect).zip(&control) {
        let (s_sim, c_sim) = match (s, c) {
            (Outcome::Answered(s), Outcome::Answered(c)) => {
                let pair = (similarity(s, ours), similarity(c, ours));
                d.push(pair.0 - pair.1);
                (Some(pair.0), Some(pair.1))
            }
            _ => (None, None),
        };
        rows.push(json!({
            "prompt": prompt, "served": ours,
            "suspect": {"outcome": s.name(), "answer": s.text(), "similarity": s_sim},
            "control": {"outcome": c.name(), "answer": c.text(), "similarity": c_sim},
        }));
    }
    let p = (!d.is_empty()).then(|| sign_flip_p(&d, a.permutations, 0x5eed));
    let mean = |f: fn(&Value) -> Option<f64>| {
        let v: Vec<f64> = rows.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let verdict = match p {
        None => "nothing to judge: no prompt was answered by both the suspect and the control".to_owned(),
        Some(p) if p < a.alpha => format!(
            "the suspect answers our prompts more like the answers we served than the control does (p = {p:.2e} over {} prompts, below {})",
            d.len(),
            a.alpha
        ),
        Some(p) => format!(
            "no evidence at {}: the suspect is not measurably closer to what we served than the control (p = {p:.3} over {} prompts)",
            a.alpha,
            d.len()
        ),
    };
    let report = json!({
        "suspect": a.target.suspect, "suspect_model": a.target.suspect_model,
        "control": a.control, "control_model": a.control_model,
        "accounts": a.account,
        "log": a.log.display().to_string(),
        "log_sha256": sha256_file(&a.log).ok(),
        "method": "served-output similarity: the group's logged single-turn prompts replayed to the suspect and to a control at temperature 0; per prompt d = J(suspect, served) - J(control, served), J the Jaccard overlap of lowercased word pairs; one-sided sign-flip permutation test of mean d > 0 (exact up to 16 prompts, else random flips with a fixed seed)",
        "assumptions": "under the null the suspect's and the control's answers are exchangeable with respect to what we served (the control is a model of the suspect's class that never saw our answers); prompts are treated as independent; only prompts both answered are scored",
        "pairs": d.len(),
        "mean_similarity_suspect": mean(|r| r["suspect"]["similarity"].as_f64()),
        "mean_similarity_control": mean(|r| r["control"]["similarity"].as_f64()),
        "p_value": p,
        "alpha": a.alpha,
        "verdict": verdict,
        "suspect_calls": tally(&suspect),
        "control_calls": tally(&control),
        "prompts": rows,
    });
    let (json_path, html_path) = write_report(
        &a.out,
        &report,
        "distillguard similarity report",
        page(&report),
    )?;
    eprintln!(
        "{verdict}\nreport: {} and {}",
        json_path.display(),
        html_path.display()
    );
    Ok(if p.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The report's page (its body): the verdict, the method and its assumptions, each prompt.
fn page(r: &Value) -> maud::Markup {
    let sim = |v: &Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.3}"));
    html! {
        h1 { "Served-output similarity: " (r["suspect"].as_str().unwrap_or_default()) }
        p { strong { (r["verdict"].as_str().unwrap_or_default()) } }
        p { (r["method"].as_str().unwrap_or_default()) "." }
        p { "Assumptions: " (r["assumptions"].as_str().unwrap_or_default()) "." }
        p { "Prompts and served answers from " code { (r["log"].as_str().unwrap_or_default()) } " (sha256 " code { (r["log_sha256"].as_str().unwrap_or_default()) } ")." }
        p { "Mean similarity to what we served: suspect " (sim(&r["mean_similarity_suspect"])) ", control " (sim(&r["mean_similarity_control"])) "; " (r["pairs"]) " prompts scored." }
        table {
            thead { tr { th { "Prompt" } th { "Suspect" } th { "Control" } } }
            tbody {
                @for row in r["prompts"].as_array().into_iter().flatten() {
                    tr {
                        td { (row["prompt"].as_str().unwrap_or_default()) }
                        td { (row["suspect"]["outcome"].as_str().unwrap_or_default()) " " (sim(&row["suspect"]["similarity"])) }
                        td { (row["control"]["outcome"].as_str().unwrap_or_default()) " " (sim(&row["control"]["similarity"])) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similarity_counts_shared_word_pairs() {
        assert_eq!(similarity("The cat sat.", "the CAT sat"), 1.0);
        assert_eq!(similarity("a b c", "x y z"), 0.0);
        assert!((similarity("a b c", "a b d") - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(similarity("", "one"), 0.0);
    }

    #[test]
    fn sign_flips_give_exact_and_calibrated_p_values() {
        // Five positive differences: only the all-positive flip reaches the observed mean.
        assert_eq!(sign_flip_p(&[0.2, 0.3, 0.1, 0.4, 0.2], 0, 1), 1.0 / 32.0);
        // No difference at all: every flip ties.
        assert_eq!(sign_flip_p(&[0.0; 4], 0, 1), 1.0);
        // Random draws: p never below 1 / (draws + 1), and near 1/2 for symmetric noise.
        let strong = vec![0.5; 40];
        assert!((sign_flip_p(&strong, 999, 7) - 0.001).abs() < 1e-12);
        let noise: Vec<f64> = (0..40)
            .map(|i| if i % 2 == 0 { 0.1 } else { -0.1 })
            .collect();
        let p = sign_flip_p(&noise, 2_000, 7);
        assert!((0.4..=0.65).contains(&p), "{p}");
    }
}
