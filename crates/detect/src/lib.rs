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

use crate::sketch::hash_bytes;

pub use account::{AccountState, Features};
pub use config::Config;
pub use observation::Observation;
pub use score::{Assessment, Reason, Verdict};

use crate::text::PhraseMatcher;

/// Models tracked for release times; beyond this, new model names are not tracked.
const MAX_MODELS: usize = 4096;
const HOUR_MS: f64 = 3_600_000.0;

struct Account {
    name: String,
    state: AccountState,
    peak_score: f64,
    verdict: Verdict,
    first_flagged: Option<String>,
    /// Union-find parent (itself when a root).
    parent: u32,
}

/// Accounts linked into one actor, judged on their combined traffic.
struct Group {
    state: AccountState,
    members: Vec<u32>,
    verdict: Verdict,
    peak_score: f64,
    first_flagged: Option<String>,
    /// Links that joined accounts by a shared payment instrument.
    payment_links: u32,
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
    index: HashMap<String, u32>,
    accounts: Vec<Account>,
    groups: HashMap<u32, Group>,
    /// Payment instrument to the first account seen paying with it.
    payments: HashMap<u64, u32>,
    model_first_seen: HashMap<u64, i64>,
    stream_start: Option<i64>,
}

impl Detector {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            phrases: PhraseMatcher::default(),
            index: HashMap::new(),
            accounts: Vec::new(),
            groups: HashMap::new(),
            payments: HashMap::new(),
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

    /// Takes one exchange into account; returns the verdict changes it caused (none, usually;
    /// several when it gets a whole group flagged).
    pub fn observe(&mut self, ex: &Exchange) -> Vec<VerdictChange> {
        let obs = self.observation(ex);
        self.observe_facts(&obs)
    }

    fn find(&mut self, mut i: u32) -> u32 {
        while self.accounts[i as usize].parent != i {
            let p = self.accounts[i as usize].parent;
            // Path halving keeps the trees flat.
            self.accounts[i as usize].parent = self.accounts[p as usize].parent;
            i = p;
        }
        i
    }

    /// Joins the groups of `a` and `b`; the larger group's root stays root.
    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            if let Some(g) = self.groups.get_mut(&ra) {
                g.payment_links += 1;
            }
            return;
        }
        let take = |d: &mut Self, r: u32| -> Group {
            d.groups.remove(&r).unwrap_or_else(|| {
                let acc = &d.accounts[r as usize];
                Group {
                    state: acc.state.clone(),
                    members: vec![r],
                    verdict: Verdict::Benign,
                    peak_score: 0.0,
                    first_flagged: None,
                    payment_links: 0,
                }
            })
        };
        let (ga, gb) = (take(self, ra), take(self, rb));
        let (root, mut big, small, child) = if (ga.members.len(), rb) >= (gb.members.len(), ra) {
            (ra, ga, gb, rb)
        } else {
            (rb, gb, ga, ra)
        };
        big.state.merge(&small.state);
        big.members.extend(small.members);
        big.verdict = big.verdict.max(small.verdict);
        big.peak_score = big.peak_score.max(small.peak_score);
        big.first_flagged = match (big.first_flagged, small.first_flagged) {
            (Some(x), Some(y)) => Some(if x <= y { x } else { y }),
            (x, y) => x.or(y),
        };
        big.payment_links += small.payment_links + 1;
        self.accounts[child as usize].parent = root;
        self.groups.insert(root, big);
    }

    /// [`Detector::observe`] with the observation already made.
    pub fn observe_facts(&mut self, obs: &Observation) -> Vec<VerdictChange> {
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

        let idx = match self.index.get(obs.account.as_str()) {
            Some(&i) => i,
            None => {
                let i = self.accounts.len() as u32;
                self.index.insert(obs.account.clone(), i);
                self.accounts.push(Account {
                    name: obs.account.clone(),
                    state: AccountState::default(),
                    peak_score: 0.0,
                    verdict: Verdict::Benign,
                    first_flagged: None,
                    parent: i,
                });
                i
            }
        };
        let shape = self.config.shape.clone();
        let account = &mut self.accounts[idx as usize];
        account.state.update(obs, &shape, new_model);
        for &id in &obs.logit_ids {
            account.state.note_logit_id(id);
        }
        let root = self.find(idx);
        if let Some(g) = self.groups.get_mut(&root) {
            g.state.update(obs, &shape, new_model);
            for &id in &obs.logit_ids {
                g.state.note_logit_id(id);
            }
        }
        if let Some(fp) = obs.payment {
            match self.payments.get(&fp) {
                Some(&other) if other != idx => self.union(idx, other),
                Some(_) => {}
                None => {
                    self.payments.insert(fp, idx);
                }
            }
        }

        let mut changes = Vec::new();
        let account = &mut self.accounts[idx as usize];
        let (score, verdict) = score::score(&account.state.features(), &self.config);
        account.peak_score = account.peak_score.max(score);
        if verdict > account.verdict {
            changes.push(VerdictChange {
                account: account.name.clone(),
                from: account.verdict,
                to: verdict,
                score,
                ts: obs.ts_text.clone(),
            });
            account.verdict = verdict;
            if verdict == Verdict::Distilling {
                account.first_flagged = Some(obs.ts_text.clone());
            }
        }

        // A group is judged on its combined traffic; when that is distilling, so is every
        // member, including accounts that join later (the banned-and-replaced pattern).
        let root = self.find(idx);
        if let Some(g) = self.groups.get_mut(&root) {
            let (gscore, gverdict) = score::score(&g.state.features(), &self.config);
            g.peak_score = g.peak_score.max(gscore);
            if gverdict == Verdict::Distilling && g.verdict < Verdict::Distilling {
                g.verdict = Verdict::Distilling;
                g.first_flagged = Some(obs.ts_text.clone());
            }
            if g.verdict == Verdict::Distilling {
                let gscore = g.peak_score;
                for &m in &g.members {
                    let member = &mut self.accounts[m as usize];
                    if member.verdict < Verdict::Distilling {
                        changes.push(VerdictChange {
                            account: member.name.clone(),
                            from: member.verdict,
                            to: Verdict::Distilling,
                            score: gscore,
                            ts: obs.ts_text.clone(),
                        });
                        member.verdict = Verdict::Distilling;
                        member.first_flagged = Some(obs.ts_text.clone());
                    }
                }
            }
        }
        changes
    }

    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// The current verdict of one account, with fresh reasons.
    pub fn report(&self, account: &str) -> Option<AccountReport> {
        self.index.get(account).map(|&i| self.report_of(i))
    }

    fn root_of(&self, mut i: u32) -> u32 {
        while self.accounts[i as usize].parent != i {
            i = self.accounts[i as usize].parent;
        }
        i
    }

    fn report_of(&self, i: u32) -> AccountReport {
        let a = &self.accounts[i as usize];
        let assessment = score::assess(&a.state.features(), &self.config);
        let mut score = a.peak_score.max(assessment.score);
        let mut reasons = assessment.reasons;
        let root = self.root_of(i);
        let group = self.groups.get(&root);
        if let Some(g) = group {
            if g.verdict == Verdict::Distilling && g.peak_score > score {
                let odds =
                    |p: f64| (p.clamp(1e-9, 1.0 - 1e-9) / (1.0 - p.clamp(1e-9, 1.0 - 1e-9))).ln();
                let lift = odds(g.peak_score) - odds(score);
                let group_reasons = score::assess(&g.state.features(), &self.config).reasons;
                let top: Vec<String> = group_reasons
                    .iter()
                    .filter(|r| r.value > 0.0)
                    .take(3)
                    .map(|r| format!("{} (+{:.1})", r.signal, r.value))
                    .collect();
                reasons.insert(
                    0,
                    Reason {
                        signal: "linked_group",
                        value: (lift * 100.0).round() / 100.0,
                        detail: format!(
                            "one of {} accounts linked by {} shared payment instrument link(s); their combined {} calls score {:.3}: {}",
                            g.members.len(),
                            g.payment_links,
                            g.state.generative,
                            g.peak_score,
                            top.join(", ")
                        ),
                    },
                );
                score = g.peak_score;
            }
        }
        let cluster = group.map(|_| {
            format!(
                "grp-{:012x}",
                hash_bytes(self.accounts[root as usize].name.as_bytes()) & 0xffff_ffff_ffff
            )
        });
        AccountReport {
            account: a.name.clone(),
            score: (score * 10_000.0).round() / 10_000.0,
            verdict: a.verdict,
            cluster,
            first_flagged: a.first_flagged.clone(),
            exchanges: u64::from(a.state.exchanges),
            reasons,
        }
    }

    /// Reports for every account, highest score first (ties by account name), so the output
    /// is the same whatever order the accounts were first seen in.
    pub fn reports(&self) -> Vec<AccountReport> {
        let mut out: Vec<AccountReport> = (0..self.accounts.len() as u32)
            .map(|i| self.report_of(i))
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
        self.index
            .get(account)
            .map(|&i| self.accounts[i as usize].state.features())
    }
}
