//! Per-account state: counters and fixed-size sketches, updated once per exchange.
//! Its size does not depend on the account's volume (about 1.3 KB; see the size test).

use serde::{Deserialize, Serialize};

use crate::config::Shape;
use crate::observation::Observation;
use crate::sketch::{mix, normalised_entropy, CoMoments, HeavyHitters, Histogram, Hll, Moments};

const TOPIC_BINS: usize = 64;
const HOUR_MS: i64 = 3_600_000;
/// Gaps longer than this are pauses, not part of a rhythm; they are clipped before the moments.
pub const MAX_GAP_SECS: f64 = 1800.0;
/// Fresh answered calls before the tracking of answer length by input length means anything.
const MIN_TRACKED_CALLS: u32 = 20;
/// Inputs whose lengths vary less than this (standard deviation of the log, about ±20 %)
/// cannot show whether answers follow them.
const MIN_INPUT_SPREAD: f64 = 0.2;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccountState {
    /// Every exchange, generative or not.
    pub exchanges: u32,
    /// Chat and completions calls: the ones that can be harvested.
    pub generative: u32,
    first_ts: i64,
    last_ts: i64,
    single_turn: u32,
    fresh_step_by_step: u32,
    followups: u32,
    with_system: u32,
    tools: u32,
    /// Calls answered with text (not a tool call): the denominator of output volume.
    answers: u32,
    prompt_tokens: u64,
    completion_tokens: u64,
    high_max: u32,
    finish_length: u32,
    step_by_step: u32,
    hidden_reasoning: u32,
    task_generation: u32,
    reasoning_high: u32,
    logprobs: u32,
    many_top_logprobs: u32,
    multi_sample: u32,
    logit_bias: u32,
    max_one: u32,
    new_model: u32,
    signup: Option<i64>,
    distinct_prompts: Hll<256>,
    distinct_followups: Hll<128>,
    distinct_openings: Hll<64>,
    logit_ids: Hll<32>,
    ips: Hll<32>,
    active_hours: Hll<64>,
    topics: Histogram<TOPIC_BINS>,
    heads: HeavyHitters<4>,
    tails: HeavyHitters<4>,
    systems: HeavyHitters<2>,
    gaps: Moments,
    hour_of_day: Histogram<24>,
    /// Log prompt tokens against log answer tokens on fresh answered calls.
    lengths: CoMoments,
}

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
    pub calls_per_active_hour: f64,
    pub gap_cv: f64,
    /// Mean gap between calls, pauses clipped at 30 minutes.
    pub mean_gap_secs: f64,
    /// Activity in the quietest six hours of the day relative to an even spread: near 0 for
    /// people (they sleep), near 1 for round-the-clock machines. 0 until a day is covered.
    pub quiet_hours_activity: f64,
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
}

fn share(count: u32, of: u32) -> f64 {
    if of == 0 {
        0.0
    } else {
        f64::from(count) / f64::from(of)
    }
}

impl AccountState {
    /// The account's most repeated prompt skeleton and its (lower-bound) count.
    pub fn top_template(&self) -> Option<(u64, u32)> {
        self.heads.top()
    }

    /// The account's most used system prompt and its count.
    pub fn top_system(&self) -> Option<(u64, u32)> {
        self.systems.top()
    }

    /// `new_model` says whether the call went to a model released within the configured window.
    pub fn update(&mut self, obs: &Observation, shape: &Shape, new_model: bool) {
        if self.exchanges == 0 {
            self.first_ts = obs.ts;
            self.last_ts = obs.ts;
            self.signup = obs.signup;
        }
        self.exchanges = self.exchanges.saturating_add(1);
        // Logs may be slightly out of order: time only moves forward here.
        if obs.ts > self.last_ts {
            let gap = (obs.ts - self.last_ts) as f64 / 1000.0;
            self.gaps.push(gap.min(MAX_GAP_SECS));
            self.last_ts = obs.ts;
        } else if self.exchanges > 1 {
            self.gaps.push(0.0);
        }
        self.first_ts = self.first_ts.min(obs.ts);
        self.active_hours
            .insert(mix(obs.ts.div_euclid(HOUR_MS) as u64));
        self.hour_of_day
            .add((obs.ts.rem_euclid(24 * HOUR_MS) / HOUR_MS) as usize);
        if let Some((ip, _)) = obs.ip {
            self.ips.insert(ip);
        }
        if !obs.generative {
            return;
        }
        let inc = |c: &mut u32, yes: bool| *c = c.saturating_add(u32::from(yes));
        self.generative = self.generative.saturating_add(1);
        inc(&mut self.single_turn, obs.single_turn());
        inc(&mut self.with_system, obs.system.is_some());
        inc(&mut self.tools, obs.has_tools);
        inc(
            &mut self.high_max,
            obs.max_tokens.is_some_and(|m| m >= shape.high_max_tokens),
        );
        inc(&mut self.finish_length, obs.finish_length);
        inc(&mut self.step_by_step, obs.phrases.step_by_step);
        inc(&mut self.hidden_reasoning, obs.phrases.hidden_reasoning);
        inc(&mut self.task_generation, obs.phrases.task_generation);
        inc(
            &mut self.reasoning_high,
            obs.reasoning_high || obs.reasoning_returned,
        );
        inc(&mut self.logprobs, obs.logprobs);
        inc(
            &mut self.many_top_logprobs,
            obs.top_logprobs >= shape.many_top_logprobs,
        );
        inc(&mut self.multi_sample, obs.n > 1);
        inc(&mut self.logit_bias, obs.logit_bias_entries > 0);
        inc(&mut self.max_one, obs.max_tokens == Some(1));
        inc(&mut self.new_model, new_model);
        if !obs.tool_call_answer {
            self.answers = self.answers.saturating_add(1);
            self.prompt_tokens += obs.prompt_tokens;
            self.completion_tokens += obs.completion_tokens;
        }
        self.distinct_prompts.insert(obs.request_hash);
        self.distinct_openings.insert(obs.opening);
        if obs.user_turns > 1 {
            inc(&mut self.followups, true);
            self.distinct_followups.insert(obs.prompt.exact);
        }
        // Breadth and templates are read on fresh contexts only: that is where a harvest
        // shows, and where ordinary chat mixed in around it cannot dilute it.
        if obs.single_turn() {
            if obs.prompt.words > 0 {
                // The minimum itself is biased small; a re-mix of it is a uniform bucket.
                self.topics.add((mix(obs.prompt.minhash) >> 58) as usize);
            }
            self.heads.insert(obs.prompt.head_skeleton);
            self.tails.insert(obs.prompt.tail_skeleton);
            inc(&mut self.fresh_step_by_step, obs.phrases.step_by_step);
            if !obs.tool_call_answer && obs.prompt_tokens > 0 && obs.completion_tokens > 0 {
                self.lengths.push(
                    (obs.prompt_tokens as f64).ln(),
                    (obs.completion_tokens as f64).ln(),
                );
            }
        }
        if let Some(s) = obs.system {
            self.systems.insert(s);
        }
    }

    /// Folds another account's state in: the state of their combined traffic, as if one
    /// account had made every call (used to judge a group of linked accounts).
    pub fn merge(&mut self, o: &AccountState) {
        if o.exchanges == 0 {
            return;
        }
        if self.exchanges == 0 {
            *self = o.clone();
            return;
        }
        // Gaps are a property of the stream, not of each call: see `merge_streams`.
        let concurrent = self.first_ts <= o.last_ts && o.first_ts <= self.last_ts;
        self.gaps.merge_streams(&o.gaps, concurrent);
        self.first_ts = self.first_ts.min(o.first_ts);
        self.last_ts = self.last_ts.max(o.last_ts);
        self.signup = match (self.signup, o.signup) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        macro_rules! add {
            ($($f:ident),*) => { $( self.$f = self.$f.saturating_add(o.$f); )* };
        }
        add!(
            exchanges,
            generative,
            single_turn,
            fresh_step_by_step,
            followups,
            with_system,
            tools,
            answers,
            prompt_tokens,
            completion_tokens,
            high_max,
            finish_length,
            step_by_step,
            hidden_reasoning,
            task_generation,
            reasoning_high,
            logprobs,
            many_top_logprobs,
            multi_sample,
            logit_bias,
            max_one,
            new_model
        );
        macro_rules! merge {
            ($($f:ident),*) => { $( self.$f.merge(&o.$f); )* };
        }
        merge!(
            distinct_prompts,
            distinct_followups,
            distinct_openings,
            logit_ids,
            ips,
            active_hours,
            topics,
            heads,
            tails,
            systems,
            hour_of_day,
            lengths
        );
    }

    /// Folds one `logit_bias` token id into the sweep sketch.
    pub fn note_logit_id(&mut self, id_hash: u64) {
        self.logit_ids.insert(id_hash);
    }

    pub fn first_ts(&self) -> i64 {
        self.first_ts
    }

    pub fn features(&self) -> Features {
        let g = self.generative;
        let span_hours = (self.last_ts - self.first_ts) as f64 / HOUR_MS as f64;
        let active_hours = self.active_hours.estimate().max(1.0);
        let template = share(
            self.heads.top_count().max(self.tails.top_count()),
            self.single_turn,
        );
        let distinct_followups = self
            .distinct_followups
            .estimate()
            .min(f64::from(self.followups));
        Features {
            exchanges: self.exchanges,
            generative: g,
            single_turn: share(self.single_turn, g),
            unique_prompts: (self.distinct_prompts.estimate() / f64::from(g.max(1))).min(1.0),
            conversations: (self.distinct_openings.estimate() / f64::from(g.max(1))).min(1.0),
            breadth: normalised_entropy(&self.topics.0),
            template,
            system_share: share(self.systems.top_count(), g),
            followups: self.followups,
            followup_share: share(self.followups, g),
            followup_repeat: if self.followups == 0 {
                0.0
            } else {
                1.0 - distinct_followups / f64::from(self.followups)
            },
            mean_output_tokens: self.completion_tokens as f64 / f64::from(self.answers.max(1)),
            output_ratio: self.completion_tokens as f64 / (self.prompt_tokens.max(1)) as f64,
            high_max_tokens: share(self.high_max, g),
            finish_length: share(self.finish_length, g),
            step_by_step: share(self.step_by_step, g),
            fresh_step_by_step: share(self.fresh_step_by_step, self.single_turn),
            fresh: self.single_turn,
            hidden_reasoning: share(self.hidden_reasoning, g),
            task_generation: share(self.task_generation, g),
            reasoning_high: share(self.reasoning_high, g),
            logprobs: share(self.logprobs, g),
            many_top_logprobs: share(self.many_top_logprobs, g),
            multi_sample: share(self.multi_sample, g),
            logit_bias: share(self.logit_bias, g),
            logit_ids: if self.logit_bias == 0 {
                0.0
            } else {
                self.logit_ids.estimate()
            },
            max_one: share(self.max_one, g),
            tools: share(self.tools, g),
            span_hours,
            duty_cycle: (active_hours / (span_hours.ceil() + 1.0)).min(1.0),
            calls_per_active_hour: f64::from(self.exchanges) / active_hours,
            gap_cv: self.gaps.cv(),
            mean_gap_secs: self.gaps.mean,
            quiet_hours_activity: if span_hours >= 24.0 {
                quiet_ratio(&self.hour_of_day.0)
            } else {
                0.0
            },
            ip_churn: (self.ips.estimate() / f64::from(self.exchanges.max(1))).min(1.0),
            account_age_days: self
                .signup
                .map(|s| (self.first_ts - s) as f64 / (24.0 * HOUR_MS as f64)),
            new_model: share(self.new_model, g),
            length_tracking: if self.lengths.n >= MIN_TRACKED_CALLS
                && self.lengths.sd_x() >= MIN_INPUT_SPREAD
            {
                self.lengths.correlation()
            } else {
                0.0
            },
            accounts: 1,
        }
    }
}

/// Calls in the quietest 6-hour window of the day (wrapping midnight), over the calls an
/// even spread would put there.
fn quiet_ratio(hours: &[u32; 24]) -> f64 {
    let total: u32 = hours.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let quietest = (0..24)
        .map(|s| (0..6).map(|k| hours[(s + k) % 24]).sum::<u32>())
        .min()
        .unwrap_or(0);
    f64::from(quietest) / (f64::from(total) / 4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_ratio_tells_sleepers_from_machines() {
        let mut human = [10u32; 24];
        for h in human.iter_mut().take(7) {
            *h = 0;
        }
        assert_eq!(quiet_ratio(&human), 0.0);
        assert!((quiet_ratio(&[5u32; 24]) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn state_is_small_and_fixed_size() {
        assert!(
            std::mem::size_of::<AccountState>() <= 1536,
            "{}",
            std::mem::size_of::<AccountState>()
        );
    }
}
