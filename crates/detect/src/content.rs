//! What a stream of generation calls asks for and gets back: the counters and sketches behind
//! the content signals (coverage, templates, answer sizes, reasoning, logprobs, follow-ups).
//!
//! It is kept twice at different sizes: once for an account's whole traffic
//! ([`crate::account::AccountState`]) and once for each of the few streams inside an account
//! ([`crate::stream`]), so that the same code reads a harvest whether it is the whole account
//! or one client's calls beside ordinary chat. Circumstances (timing, addresses, account age)
//! are the account's, not a stream's, and live in the account's state.

use serde::{Deserialize, Serialize};

use crate::config::Shape;
use crate::features::Features;
use crate::observation::Observation;
use crate::sketch::{mix, normalised_entropy, CoMoments, HeavyHitters, Histogram, Hll};

/// Fresh answered calls before the tracking of answer length by input length means anything.
const MIN_TRACKED_CALLS: u32 = 20;
/// Inputs whose lengths vary less than this (standard deviation of the log, about ±20 %)
/// cannot show whether answers follow them.
const MIN_INPUT_SPREAD: f64 = 0.2;

/// Content counters with `P` registers for distinct prompts, `F` for distinct follow-ups and
/// `T` topic bins. More registers and bins estimate closer; the account's whole traffic gets
/// the large sizes, its streams smaller ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Content<const P: usize, const F: usize, const T: usize> {
    /// Chat and completions calls: the ones that can be harvested.
    pub generative: u32,
    /// Fresh single-turn calls.
    pub single_turn: u32,
    fresh_step_by_step: u32,
    followups: u32,
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
    distinct_prompts: Hll<P>,
    distinct_followups: Hll<F>,
    topics: Histogram<T>,
    pub(crate) heads: HeavyHitters<4>,
    pub(crate) tails: HeavyHitters<4>,
    /// Log prompt tokens against log answer tokens on fresh answered calls.
    lengths: CoMoments,
}

/// `count` as a share of `of` (0 when `of` is 0).
pub(crate) fn share(count: u32, of: u32) -> f64 {
    if of == 0 {
        0.0
    } else {
        f64::from(count) / f64::from(of)
    }
}

impl<const P: usize, const F: usize, const T: usize> Content<P, F, T> {
    /// Takes one generation call (the caller skips the others).
    pub fn update(&mut self, obs: &Observation, shape: &Shape) {
        let inc = |c: &mut u32, yes: bool| *c = c.saturating_add(u32::from(yes));
        self.generative = self.generative.saturating_add(1);
        inc(&mut self.single_turn, obs.single_turn());
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
        if !obs.tool_call_answer {
            self.answers = self.answers.saturating_add(1);
            self.prompt_tokens = self.prompt_tokens.saturating_add(obs.prompt_tokens);
            self.completion_tokens = self.completion_tokens.saturating_add(obs.completion_tokens);
        }
        self.distinct_prompts.insert(obs.request_hash);
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
    }

    /// Folds another stream's content in, as if one stream had made every call.
    pub fn merge(&mut self, o: &Self) {
        macro_rules! add {
            ($($f:ident),*) => { $( self.$f = self.$f.saturating_add(o.$f); )* };
        }
        add!(
            generative,
            single_turn,
            fresh_step_by_step,
            followups,
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
            multi_sample
        );
        macro_rules! merge {
            ($($f:ident),*) => { $( self.$f.merge(&o.$f); )* };
        }
        merge!(
            distinct_prompts,
            distinct_followups,
            topics,
            heads,
            tails,
            lengths
        );
    }

    /// Writes the content features of these calls into `f`, leaving the rest of it (timing,
    /// addresses, account age) as it is.
    pub fn fill(&self, f: &mut Features) {
        let g = self.generative;
        let distinct_followups = self
            .distinct_followups
            .estimate()
            .min(f64::from(self.followups));
        f.generative = g;
        f.single_turn = share(self.single_turn, g);
        f.unique_prompts = (self.distinct_prompts.estimate() / f64::from(g.max(1))).min(1.0);
        f.breadth = normalised_entropy(&self.topics.0);
        f.template = share(
            self.heads.top_count().max(self.tails.top_count()),
            self.single_turn,
        );
        f.followups = self.followups;
        f.followup_share = share(self.followups, g);
        // A suite run again repeats its follow-ups with the rest of each request: only the
        // repeats beyond the requests' own (distinct requests over calls) come from a pool.
        let rerun = f.unique_prompts.max(0.05);
        f.followup_repeat = if self.followups == 0 {
            0.0
        } else {
            (1.0 - distinct_followups / (f64::from(self.followups) * rerun)).max(0.0)
        };
        f.mean_output_tokens = self.completion_tokens as f64 / f64::from(self.answers.max(1));
        f.output_ratio = self.completion_tokens as f64 / (self.prompt_tokens.max(1)) as f64;
        f.high_max_tokens = share(self.high_max, g);
        f.finish_length = share(self.finish_length, g);
        f.step_by_step = share(self.step_by_step, g);
        f.fresh_step_by_step = share(self.fresh_step_by_step, self.single_turn);
        f.fresh = self.single_turn;
        f.hidden_reasoning = share(self.hidden_reasoning, g);
        f.task_generation = share(self.task_generation, g);
        f.reasoning_high = share(self.reasoning_high, g);
        f.logprobs = share(self.logprobs, g);
        f.many_top_logprobs = share(self.many_top_logprobs, g);
        f.multi_sample = share(self.multi_sample, g);
        f.length_tracking =
            if self.lengths.n >= MIN_TRACKED_CALLS && self.lengths.sd_x() >= MIN_INPUT_SPREAD {
                self.lengths.correlation()
            } else {
                0.0
            };
    }
}
