//! [`Features`]: what the signals are computed from, in interpretable units: the one shape
//! every judged unit is read into (an account, a stream inside one, a linked group), so that
//! the scoring never needs to know which it is reading. Plain data, filled by the counters
//! that own each part (the account's state, its content counters) and read by the score.

use serde::Serialize;

/// Everything the signals are computed from, in interpretable units. Printed by
/// `scan --features` for analysis.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Features {
    pub exchanges: u32,
    pub generative: u32,
    pub single_turn: f64,
    pub unique_prompts: f64,
    pub conversations: f64,
    pub breadth: f64,
    /// Share of fresh calls that share the most common prompt skeleton.
    pub template: f64,
    pub system_share: f64,
    pub followups: u32,
    /// Share of calls that carry a second or later user turn.
    pub followup_share: f64,
    pub followup_repeat: f64,
    pub mean_output_tokens: f64,
    pub output_ratio: f64,
    pub high_max_tokens: f64,
    pub finish_length: f64,
    pub step_by_step: f64,
    /// Share of fresh (single-turn) calls that ask for step-by-step reasoning.
    pub fresh_step_by_step: f64,
    /// Fresh single-turn calls.
    pub fresh: u32,
    pub hidden_reasoning: f64,
    pub task_generation: f64,
    pub reasoning_high: f64,
    pub logprobs: f64,
    pub many_top_logprobs: f64,
    pub multi_sample: f64,
    pub logit_bias: f64,
    pub logit_ids: f64,
    pub max_one: f64,
    pub tools: f64,
    pub span_hours: f64,
    pub duty_cycle: f64,
    /// Distinct clock hours with calls (estimated): how long the behaviour has been sustained.
    pub active_hours: f64,
    pub calls_per_active_hour: f64,
    pub gap_cv: f64,
    /// Mean gap between calls, pauses clipped at 30 minutes.
    pub mean_gap_secs: f64,
    /// Activity in the quietest six hours of the day relative to an even spread: near 0 for
    /// people (they sleep), near 1 for round-the-clock machines. 0 until a day is covered.
    pub quiet_hours_activity: f64,
    /// Follow-ups timed against the answer they reply to (long enough answers only).
    pub timed_followups: u32,
    /// Share of timed follow-ups sent sooner than a person could read the answer and type:
    /// one second plus the answer at skimming pace (25 tokens a second).
    pub quick_followups: f64,
    pub ip_churn: f64,
    pub account_age_days: Option<f64>,
    pub new_model: f64,
    /// Correlation of answer length with input length (logs) over fresh answered calls: near
    /// 1 when the model transforms text it is given (translation, rewriting, proofreading),
    /// near 0 for questions answered from the model's knowledge. 0 until at least 20 such
    /// calls with inputs of varied length are seen.
    pub length_tracking: f64,
    /// Accounts acting as one actor behind these features: 1 for an account; for a group
    /// linked by payment or sign-ups, its members.
    pub accounts: u32,
    /// The accounts are one actor, yet the log shows them paying and no two paying with one
    /// instrument: a fleet that hides that it is one (a company's teams share its card).
    pub concealed_fleet: bool,
}

impl Features {
    /// About how many distinct client addresses the calls came from: the pool behind
    /// `ip_churn`, which is this count over the calls.
    pub fn client_addresses(&self) -> f64 {
        self.ip_churn * f64::from(self.exchanges)
    }
}
