//! Every number the detector uses, in one typed config. `distillguard scan --config FILE`
//! reads it from TOML; any field left out keeps the default documented here.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub thresholds: Thresholds,
    pub shape: Shape,
    pub weights: Weights,
    /// Linking accounts into groups (`crate::link`).
    pub links: crate::link::LinkConfig,
}

/// Where scores turn into verdicts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Score at or above which an account is `suspicious` (default 0.5).
    pub suspicious: f64,
    /// Score at or above which an account is `distilling` (default 0.85).
    pub distilling: f64,
    /// Generation calls an account must have made before it can be `distilling` (default 12):
    /// a handful of calls is never enough evidence to act on a paying customer.
    pub min_exchanges: u32,
    /// Distinct clock hours with calls before an account can be `distilling` (default 3). A
    /// harvest wants volume and keeps going; a benchmark run, a backfill or a one-off job is
    /// bounded and over within an hour or two, with every content signal of a harvest while
    /// it lasts.
    pub min_active_hours: f64,
    /// Independent lines of harvest evidence (coverage, extraction, generated prompts; see
    /// `docs/signals.md`) needed for `distilling` (default 2). One line with the account's
    /// circumstances is what a product's users or a benchmark also show: `suspicious`.
    pub min_evidence_lines: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            suspicious: 0.5,
            distilling: 0.85,
            min_exchanges: 12,
            min_active_hours: 3.0,
            min_evidence_lines: 2,
        }
    }
}

/// What counts as "large", "long" or "new".
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Shape {
    /// A requested `max_tokens` at or above this is "near the model's limit" (default 4096).
    /// Today's models answer up to 8k–128k tokens; 1,024 and 2,048 are ordinary product
    /// defaults, 4,096 and more is asking for all a model will give.
    pub high_max_tokens: u64,
    /// Mean completion tokens at which output harvest counts fully (default 700).
    pub long_output_tokens: f64,
    /// `top_logprobs` at or above this counts as harvesting the distribution (default 5).
    pub many_top_logprobs: u32,
    /// Distinct `logit_bias` token ids that make a sweep (default 40).
    pub logit_sweep_ids: f64,
    /// A model counts as newly released for this long after it is first seen (default 24 h).
    pub new_model_hours: f64,
    /// Models seen in the first hours of a stream are not "new": the stream just started
    /// (default 24 h). A deployment that knows release times should lower this to 0.
    pub new_model_warmup_hours: f64,
    /// An account younger than this at its first call is "new" (default 7 days).
    pub new_account_days: f64,
    /// Generation calls at which the evidence is trusted fully (default 40); fewer damp it.
    pub full_confidence_exchanges: f64,
    /// Distinct fresh prompts at which broad or templated coverage counts half (default 25).
    /// A distillation set is thousands of prompts; a few dozen broad ones are also what one
    /// run of a content job or an afternoon of trials looks like.
    pub coverage_half_prompts: f64,
    /// Mean answer tokens at which asking for step-by-step reasoning counts fully (default
    /// 250): shorter answers carry less of the reasoning a harvest is after, and an evaluation
    /// harness that asks for it gets a short derivation and a final answer.
    pub reasoning_full_tokens: f64,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            high_max_tokens: 4096,
            long_output_tokens: 700.0,
            many_top_logprobs: 5,
            logit_sweep_ids: 40.0,
            new_model_hours: 24.0,
            new_model_warmup_hours: 24.0,
            new_account_days: 7.0,
            full_confidence_exchanges: 40.0,
            coverage_half_prompts: 25.0,
            reasoning_full_tokens: 250.0,
        }
    }
}

/// Log-odds each signal adds at full strength. The score is
/// `sigmoid(bias + confidence(n) · Σ weight · signal)`; see `docs/signals.md`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    pub bias: f64,
    pub output_harvest: f64,
    pub reasoning_elicitation: f64,
    pub hidden_reasoning: f64,
    pub logprob_harvest: f64,
    pub logit_bias_sweep: f64,
    pub fresh_broad_coverage: f64,
    pub templated_coverage: f64,
    pub task_generation: f64,
    pub synthetic_followups: f64,
    /// Follow-ups sent sooner than the answer they reply to could be read.
    pub scripted_followups: f64,
    pub machine_timing: f64,
    pub ip_rotation: f64,
    pub new_account: f64,
    pub model_pivot: f64,
    /// Many accounts of one actor (a group linked by payment or sign-ups) sharing the traffic.
    pub account_fleet: f64,
    /// Added to `account_fleet` when the fleet pays with a card per account: it hides that it
    /// is one, where a company's teams share the company's card.
    pub concealed_fleet: f64,
    /// Negative evidence: real multi-turn conversations.
    pub conversational: f64,
    /// Negative evidence: the same prompts asked again (evaluation reruns, retries, caches).
    pub repetition: f64,
    /// Negative evidence: one narrow task over and over (a batch pipeline).
    pub narrow_task: f64,
    /// Negative evidence: short answers (classification, extraction, RAG, agents' tool calls).
    pub short_answers: f64,
    /// Negative evidence: answers whose length follows their input's (text transformed, not
    /// knowledge asked for). It also takes its share off the coverage signals.
    pub transformation: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            bias: -4.0,
            output_harvest: 2.5,
            reasoning_elicitation: 1.5,
            hidden_reasoning: 4.0,
            logprob_harvest: 3.0,
            logit_bias_sweep: 12.0,
            fresh_broad_coverage: 4.5,
            templated_coverage: 2.0,
            task_generation: 4.0,
            synthetic_followups: 4.5,
            scripted_followups: 3.0,
            machine_timing: 2.0,
            ip_rotation: 1.5,
            new_account: 0.75,
            model_pivot: 1.5,
            account_fleet: 1.5,
            concealed_fleet: 0.75,
            conversational: 3.0,
            repetition: 3.0,
            narrow_task: 2.0,
            short_answers: 2.0,
            transformation: 1.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_toml_keeps_defaults() {
        let c: Config = toml::from_str("[thresholds]\ndistilling = 0.95\n").unwrap();
        assert_eq!(c.thresholds.distilling, 0.95);
        assert_eq!(c.weights, Weights::default());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<Config>("[weights]\nbogus = 1.0\n").is_err());
    }
}
