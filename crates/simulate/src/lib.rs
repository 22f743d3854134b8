//! Labelled API traffic for tests and benchmarks, built from real corpora (`shared/data`).
//!
//! [`simulate`] draws a population of customers, benign look-alikes first (developers, chat
//! products, power users, batch and content pipelines, evaluation harnesses, RAG apps, agents)
//! and distillation campaigns (naive, chain-of-thought, logprob and logit-bias extraction,
//! hydra groups, low-and-slow, self-instruct, synthetic multi-turn, agentic, model pivot).
//! Everything is deterministic per seed. [`evaluate()`] scores a detector's verdicts against the
//! labels.

mod attack;
mod benign;
mod corpus;
mod evaluate;
mod neutralise;
mod world;

use exchange::Exchange;
use rand::prelude::*;
use serde::{Deserialize, Serialize};

pub use corpus::{Corpora, CorpusError};
pub use evaluate::{auroc, evaluate, Evaluation, Rate, Verdict};
pub use neutralise::{neutralise, Cue};

use crate::attack::Harvest;
use crate::world::{World, DAY};

/// Ground truth for one account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Label {
    pub account: String,
    /// `benign` or `attack`.
    pub class: String,
    pub archetype: String,
    /// Campaign id for attack accounts (several accounts share one in a hydra).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
}

impl Label {
    pub fn is_attack(&self) -> bool {
        self.class == "attack"
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub benign_accounts: usize,
    /// Attack campaigns; by default one per 25 benign accounts, at least one of each kind.
    pub campaigns: Option<usize>,
    pub days: f64,
    /// Start of the simulated window, milliseconds since the epoch.
    pub start_ms: i64,
    /// Share of developers and power users behind a carrier's CGNAT or a VPN exit shared with
    /// strangers (default 0: the worlds of earlier sessions, draw for draw).
    pub shared_egress: f64,
    /// The hard world: look-alikes that show harvest cues (evaluation runs over broad
    /// benchmarks with step-by-step prompts at temperature 0; answer and agent products with
    /// users round the clock) and harvests that hide theirs (hydras that share no fact of
    /// their accounts, low-and-slow harvests sent with their owner's own client settings,
    /// agentic harvests that never sleep). Default off: the earlier worlds, draw for draw.
    pub hard: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            benign_accounts: 300,
            campaigns: None,
            days: 3.0,
            start_ms: 1_772_323_200_000,
            shared_egress: 0.0,
            hard: false,
        }
    }
}

pub struct Simulation {
    /// Every exchange, in time order.
    pub exchanges: Vec<Exchange>,
    pub labels: Vec<Label>,
}

pub const BENIGN_KINDS: &[(&str, u32)] = &[
    ("developer", 22),
    ("chat_product", 15),
    ("answer_product", 6),
    ("power_user", 13),
    ("batch_pipeline", 12),
    ("content_pipeline", 5),
    ("eval_harness", 10),
    ("rag_app", 10),
    ("agent", 13),
];

pub const ATTACK_KINDS: &[&str] = &[
    "naive_harvest",
    "cot_harvest",
    "logprob_harvest",
    "logit_bias_sweep",
    "hydra",
    "low_and_slow",
    "self_instruct",
    "synthetic_multiturn",
    "agentic_harvest",
    "model_pivot",
];

/// Generates one labelled population.
pub fn simulate(config: &SimConfig, corpora: &Corpora) -> Simulation {
    let mut w = World::new(config.seed, corpora, config.start_ms, config.days);
    w.shared_egress = config.shared_egress;
    w.hard = config.hard;
    let mut exchanges = Vec::new();
    let mut labels = Vec::new();
    let weights =
        rand::distributions::WeightedIndex::new(BENIGN_KINDS.iter().map(|k| k.1)).expect("weights");
    for _ in 0..config.benign_accounts {
        let kind = BENIGN_KINDS[weights.sample(&mut w.rng)].0;
        let (who, ex) = match kind {
            "developer" => benign::developer(&mut w),
            "chat_product" => benign::chat_product(&mut w),
            "answer_product" => benign::answer_product(&mut w),
            "power_user" => benign::power_user(&mut w),
            "batch_pipeline" => benign::batch_pipeline(&mut w),
            "content_pipeline" => benign::content_pipeline(&mut w),
            "eval_harness" => benign::eval_harness(&mut w),
            "rag_app" => benign::rag_app(&mut w),
            _ => benign::agent(&mut w),
        };
        labels.push(Label {
            account: who.account,
            class: "benign".into(),
            archetype: kind.into(),
            campaign: None,
        });
        exchanges.extend(ex);
    }
    // Innocent sharing: a company's teams, each on its own account, behind one office NAT,
    // with one SDK and one e-mail domain. One company per 40 benign accounts.
    for _ in 0..config.benign_accounts / 40 {
        let (office, asn) = w.home_ip();
        let org = format!("org_{}", w.hex(8));
        let domain = format!("corp{}.example", w.hex(6));
        let ua = w.pick(world::USER_AGENTS).to_string();
        for _ in 0..w.rng.gen_range(3..9) {
            let (who, mut ex) = match w.rng.gen_range(0..4) {
                0 => benign::chat_product(&mut w),
                1 => benign::rag_app(&mut w),
                _ => benign::developer(&mut w),
            };
            for e in &mut ex {
                e.ip = Some(office.clone());
                e.user_agent = Some(ua.clone());
                let m = e.meta.get_or_insert_with(Default::default);
                m.org = Some(org.clone());
                m.email_domain = Some(domain.clone());
                m.asn = Some(asn);
            }
            labels.push(Label {
                account: who.account,
                class: "benign".into(),
                archetype: "company_team".into(),
                campaign: None,
            });
            exchanges.extend(ex);
        }
    }
    let campaigns = config
        .campaigns
        .unwrap_or((config.benign_accounts / 25).max(ATTACK_KINDS.len()));
    for c in 0..campaigns {
        let kind = ATTACK_KINDS[c % ATTACK_KINDS.len()];
        let campaign = format!("campaign-{c:03}");
        let members = match kind {
            "naive_harvest" => vec![attack::harvest(&mut w, Harvest::Naive)],
            "cot_harvest" => vec![attack::harvest(&mut w, Harvest::ChainOfThought)],
            "logprob_harvest" => vec![attack::harvest(&mut w, Harvest::Logprobs)],
            "model_pivot" => vec![attack::harvest(&mut w, Harvest::ModelPivot)],
            "logit_bias_sweep" => vec![attack::logit_sweep(&mut w)],
            "hydra" => attack::hydra(&mut w),
            "low_and_slow" => vec![attack::low_and_slow(&mut w)],
            "self_instruct" => vec![attack::self_instruct(&mut w)],
            "synthetic_multiturn" => vec![attack::synthetic_multiturn(&mut w)],
            _ => vec![attack::agentic_harvest(&mut w)],
        };
        for (who, ex) in members {
            labels.push(Label {
                account: who.account,
                class: "attack".into(),
                archetype: kind.into(),
                campaign: Some(campaign.clone()),
            });
            exchanges.extend(ex);
        }
    }
    exchanges.retain(|e| e.ts.millis() < config.start_ms + (config.days * DAY as f64) as i64);
    // Stable sort: same-millisecond calls keep generation order, so output is deterministic.
    exchanges.sort_by_key(|e| e.ts.millis());
    labels.shuffle(&mut w.rng);
    Simulation { exchanges, labels }
}
