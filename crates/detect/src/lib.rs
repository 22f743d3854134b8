//! The distillation detector.
//!
//! A pure library: no I/O, no async, no clock of its own. Time is the `ts` of the exchanges it
//! is fed, so replaying a log gives exactly the verdicts the gateway reached live. Feed
//! exchanges in time order to [`Detector::observe`]; it updates the account's bounded state
//! ([`account`]), rescoring it ([`score`]) and returning a [`VerdictChange`] when the verdict
//! moves. Verdicts only escalate: clearing an account is a human decision, taken outside.

pub mod account;
pub mod config;
pub mod observation;
pub mod score;
pub mod sketch;
pub mod text;

use std::collections::HashMap;

use exchange::Exchange;
use serde::Serialize;

pub use account::{AccountState, Features};
pub use config::Config;
pub use observation::Observation;
pub use score::{Assessment, Reason, Verdict};

use crate::text::PhraseMatcher;

/// Models tracked for release times; beyond this, new model names are not tracked.
const MAX_MODELS: usize = 4096;
const HOUR_MS: f64 = 3_600_000.0;

struct Account {
    state: AccountState,
    peak_score: f64,
    verdict: Verdict,
    first_flagged: Option<String>,
}

/// A verdict moved up for an account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerdictChange {
    pub account: String,
    pub from: Verdict,
    pub to: Verdict,
    pub score: f64,
    /// `ts` of the exchange that moved it.
    pub ts: String,
}

/// The per-account verdict line of `EXCHANGE_FORMAT.md`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AccountReport {
    pub account: String,
    pub score: f64,
    pub verdict: Verdict,
    pub cluster: Option<String>,
    pub first_flagged: Option<String>,
    pub exchanges: u64,
    pub reasons: Vec<Reason>,
}

pub struct Detector {
    config: Config,
    phrases: PhraseMatcher,
    accounts: HashMap<String, Account>,
    model_first_seen: HashMap<u64, i64>,
    stream_start: Option<i64>,
}

impl Detector {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            phrases: PhraseMatcher::default(),
            accounts: HashMap::new(),
            model_first_seen: HashMap::new(),
            stream_start: None,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Reduces an exchange to its observation. Separate from [`Detector::observe_facts`] so
    /// callers can do this part on other threads (it is pure and the costly part).
    pub fn observation(&self, ex: &Exchange) -> Observation {
        Observation::of(ex, &self.phrases)
    }

    /// Takes one exchange into account; returns the verdict change it caused, if any.
    pub fn observe(&mut self, ex: &Exchange) -> Option<VerdictChange> {
        let obs = self.observation(ex);
        self.observe_facts(&obs)
    }

    /// [`Detector::observe`] with the observation already made.
    pub fn observe_facts(&mut self, obs: &Observation) -> Option<VerdictChange> {
        let start = *self.stream_start.get_or_insert(obs.ts);
        let shape = &self.config.shape;
        let new_model = if obs.generative {
            let first = match self.model_first_seen.get(&obs.model) {
                Some(&t) => Some(t),
                None if self.model_first_seen.len() < MAX_MODELS => {
                    self.model_first_seen.insert(obs.model, obs.ts);
                    Some(obs.ts)
                }
                None => None,
            };
            first.is_some_and(|t| {
                (t - start) as f64 >= shape.new_model_warmup_hours * HOUR_MS
                    && ((obs.ts - t) as f64) < shape.new_model_hours * HOUR_MS
            })
        } else {
            false
        };

        let account = match self.accounts.get_mut(obs.account.as_str()) {
            Some(a) => a,
            None => self
                .accounts
                .entry(obs.account.clone())
                .or_insert_with(|| Account {
                    state: AccountState::default(),
                    peak_score: 0.0,
                    verdict: Verdict::Benign,
                    first_flagged: None,
                }),
        };
        account.state.update(obs, shape, new_model);
        for &id in &obs.logit_ids {
            account.state.note_logit_id(id);
        }
        let (score, verdict) = score::score(&account.state.features(), &self.config);
        if score > account.peak_score {
            account.peak_score = score;
        }
        if verdict > account.verdict {
            let from = account.verdict;
            account.verdict = verdict;
            if verdict == Verdict::Distilling {
                account.first_flagged = Some(obs.ts_text.clone());
            }
            return Some(VerdictChange {
                account: obs.account.clone(),
                from,
                to: verdict,
                score,
                ts: obs.ts_text.clone(),
            });
        }
        None
    }

    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// The current verdict of one account, with fresh reasons.
    pub fn report(&self, account: &str) -> Option<AccountReport> {
        self.accounts
            .get(account)
            .map(|a| self.report_of(account, a))
    }

    fn report_of(&self, name: &str, a: &Account) -> AccountReport {
        let assessment = score::assess(&a.state.features(), &self.config);
        AccountReport {
            account: name.to_owned(),
            score: (a.peak_score.max(assessment.score) * 10_000.0).round() / 10_000.0,
            verdict: a.verdict,
            cluster: None,
            first_flagged: a.first_flagged.clone(),
            exchanges: u64::from(a.state.exchanges),
            reasons: assessment.reasons,
        }
    }

    /// Reports for every account, highest score first (ties by account name), so the output
    /// is the same whatever order the accounts were first seen in.
    pub fn reports(&self) -> Vec<AccountReport> {
        let mut out: Vec<AccountReport> = self
            .accounts
            .iter()
            .map(|(n, a)| self.report_of(n, a))
            .collect();
        out.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.account.cmp(&b.account))
        });
        out
    }

    /// Features of one account, for analysis.
    pub fn features(&self, account: &str) -> Option<Features> {
        self.accounts.get(account).map(|a| a.state.features())
    }
}
