//! Asking a suspect model: any OpenAI-compatible endpoint, which is not ours to trust. Every
//! question ends in an outcome (answered, refused, error, timeout), never in an error of ours:
//! the evidence commands count what the suspect did and judge what it answered, and write
//! what they found the same way ([`write_report`]).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use maud::{html, Markup, DOCTYPE};

use serde_json::{json, Value};

/// The suspect model's endpoint, as every evidence command that asks one takes it.
#[derive(clap::Args)]
pub struct SuspectArgs {
    /// The suspect's OpenAI-compatible API base (`…/v1`).
    #[arg(long)]
    pub suspect: String,
    /// The model name to ask for.
    #[arg(long, default_value = "default")]
    pub suspect_model: String,
    /// An API key for the suspect, if it wants one (else DISTILLGUARD_SUSPECT_KEY).
    #[arg(long, env = "DISTILLGUARD_SUSPECT_KEY", hide_env_values = true)]
    pub suspect_key: Option<String>,
}

impl SuspectArgs {
    /// The suspect, waiting `timeout_secs` for each answer.
    pub fn suspect(&self, timeout_secs: u64) -> Suspect {
        Suspect {
            url: self.suspect.clone(),
            model: self.suspect_model.clone(),
            key: self.suspect_key.clone(),
            timeout_secs,
        }
    }
}

/// Where and how to ask.
pub struct Suspect {
    /// The API base (`…/v1`).
    pub url: String,
    pub model: String,
    pub key: Option<String>,
    /// Seconds to wait for one answer.
    pub timeout_secs: u64,
}

/// Openings of a refusal: an answer that declines to answer carries no text to test.
const REFUSALS: &[&str] = &[
    "i can't",
    "i cannot",
    "i can not",
    "i won't",
    "i will not",
    "i'm unable",
    "i am unable",
    "i'm not able",
    "i am not able",
    "i'm sorry, but",
    "sorry, but i",
    "as an ai, i cannot",
];

/// What became of one question put to the suspect.
pub enum Outcome {
    Answered(String),
    Refused(String),
    Failed(String),
    TimedOut,
}

impl Outcome {
    pub fn of(text: String) -> Self {
        let head = text.trim_start().to_lowercase();
        if REFUSALS.iter().any(|r| head.starts_with(r)) {
            Outcome::Refused(text)
        } else {
            Outcome::Answered(text)
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Answered(_) => "answered",
            Outcome::Refused(_) => "refused",
            Outcome::Failed(_) => "error",
            Outcome::TimedOut => "timeout",
        }
    }

    /// The answer, a refusal's text, or what went wrong.
    pub fn text(&self) -> &str {
        match self {
            Outcome::Answered(t) | Outcome::Refused(t) | Outcome::Failed(t) => t,
            Outcome::TimedOut => "",
        }
    }
}

/// The counts of what became of the questions, and the first few errors in words.
pub fn tally(outcomes: &[Outcome]) -> Value {
    let count = |name: &str| outcomes.iter().filter(|o| o.name() == name).count();
    let errors: Vec<&str> = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Failed(_)))
        .map(|o| o.text())
        .take(3)
        .collect();
    json!({
        "asked": outcomes.len(),
        "answered": count("answered"),
        "refused": count("refused"),
        "errors": count("error"),
        "timeouts": count("timeout"),
        "first_errors": errors,
    })
}

impl Suspect {
    /// Asks the suspect each question (prompt, temperature, longest answer), one after another:
    /// what became of each. Only a client that cannot be built is an error; whatever the suspect
    /// does is an outcome.
    pub fn ask(&self, questions: &[(&str, f64, u32)]) -> anyhow::Result<Vec<Outcome>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(self.timeout_secs.max(1)))
                .build()?;
            let url = format!("{}/chat/completions", self.url.trim_end_matches('/'));
            let mut out = Vec::new();
            for (i, &(prompt, temperature, max_tokens)) in questions.iter().enumerate() {
                let body = json!({
                    "model": self.model,
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": max_tokens,
                    "temperature": temperature,
                    "seed": i,
                });
                let mut req = client.post(&url).json(&body);
                if let Some(key) = &self.key {
                    req = req.bearer_auth(key);
                }
                out.push(match req.send().await {
                    Err(e) if e.is_timeout() => Outcome::TimedOut,
                    Err(e) => Outcome::Failed(format!("asking {url}: {e}")),
                    Ok(resp) => {
                        let status = resp.status();
                        match resp.json::<Value>().await {
                            Err(e) if e.is_timeout() => Outcome::TimedOut,
                            Err(e) => {
                                Outcome::Failed(format!("{url} answered {status}, not JSON: {e}"))
                            }
                            Ok(v) if !status.is_success() => {
                                Outcome::Failed(format!("{url} answered {status}: {v}"))
                            }
                            Ok(v) => match v["choices"][0]["message"]["content"].as_str() {
                                Some(text) => Outcome::of(text.to_owned()),
                                None => Outcome::Failed(format!(
                                    "{url} answered without a message: {v}"
                                )),
                            },
                        }
                    }
                });
            }
            Ok(out)
        })
    }
}

/// Writes an evidence report as `out`.json (every figure and its data, for a stranger to
/// recompute) and `out`.html (`body` in one self-contained page titled `title`); the two paths.
pub fn write_report(
    out: &Path,
    report: &Value,
    title: &str,
    body: Markup,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) }
                style { "body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#111827}table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #d1d5db;padding:.3rem .6rem;text-align:left;vertical-align:top}" }
            }
            body { (body) }
        }
    };
    let json_path = out.with_extension("json");
    let html_path = out.with_extension("html");
    std::fs::write(&json_path, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    std::fs::write(&html_path, page.into_string())
        .with_context(|| format!("writing {}", html_path.display()))?;
    Ok((json_path, html_path))
}
