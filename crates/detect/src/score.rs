//! From features to signals, from signals to a score, and from the score to a verdict with
//! reasons. Each signal is a number in [0, 1] with a stable name; its weight (log-odds at full
//! strength) comes from the config. What each one measures, why harvesting differs, and which
//! legitimate traffic can mimic it is written in `docs/signals.md`.

use serde::{Deserialize, Serialize};

use crate::account::MAX_GAP_SECS;
use crate::config::Config;
use crate::features::Features;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Benign,
    Suspicious,
    Distilling,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Benign => "benign",
            Verdict::Suspicious => "suspicious",
            Verdict::Distilling => "distilling",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "benign" => Some(Verdict::Benign),
            "suspicious" => Some(Verdict::Suspicious),
            "distilling" => Some(Verdict::Distilling),
            _ => None,
        }
    }
}

/// One piece of evidence: a signal's contribution to the log-odds, with a sentence a human can check.
/// It reads back from its JSON (a replica reads the groups a worker published).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Reason {
    pub signal: &'static str,
    pub value: f64,
    pub detail: String,
}

/// The names a reason may carry besides the signals': a harvest stream inside an account, the
/// verdict of its linked group, and a verdict held back for want of a circumstance.
pub const OTHER_REASONS: [&str; 3] = ["harvest_stream", "linked_group", "held"];

/// A reason as its JSON holds it.
#[derive(Deserialize)]
struct ReasonRead {
    signal: String,
    value: f64,
    detail: String,
}

/// A reason's name as this build knows it; a name from a newer build reads as `other`.
impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = ReasonRead::deserialize(d)?;
        let signal = Signal::ALL
            .iter()
            .map(|s| s.name())
            .chain(OTHER_REASONS)
            .find(|n| *n == r.signal)
            .unwrap_or("other");
        Ok(Reason {
            signal,
            value: r.value,
            detail: r.detail,
        })
    }
}

/// An account's assessment at one moment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Assessment {
    pub score: f64,
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
}

fn clamp01(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

/// Gaps between calls whose coefficient of variation is below this are paced more evenly than
/// random arrivals; the evidence is full `STEADY_RAMP` lower (0.6).
const STEADY_CV: f64 = 0.95;
const STEADY_RAMP: f64 = 0.35;
/// Gaps are clipped at `MAX_GAP_SECS` (pauses are not rhythm), and clipping evens out a sparse
/// stream: random arrivals a quarter of an hour apart on average read as CV ~0.77. Only a
/// stream whose gaps average a fifth of the clip or less, where clipping changes nearly
/// nothing, is judged on its spacing.
const STEADY_MAX_MEAN_GAP_SECS: f64 = MAX_GAP_SECS / 5.0;

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// Formats a reason's sentence only when reasons are wanted: scoring runs on every exchange,
/// explaining only when someone asks.
macro_rules! detail {
    ($explain:expr, $($arg:tt)*) => {
        if $explain { format!($($arg)*) } else { String::new() }
    };
}

/// The signals of one account: (name, strength in [0,1], weight, detail when `explain`).
fn signals(f: &Features, c: &Config, explain: bool) -> [(Signal, f64, f64, String); 20] {
    let w = &c.weights;
    let s = &c.shape;
    let long = clamp01(f.mean_output_tokens / s.long_output_tokens);
    // A client that sends tools asks for a large cap because a tool call's arguments (a file
    // to write, code to run) can be long: agent frameworks set it by default, and it says
    // nothing about harvesting text. The cap counts on the calls without tools only.
    let high_max = f.high_max_tokens * (1.0 - f.tools);
    let output_harvest = clamp01(0.6 * long + 0.25 * high_max + 0.15 * f.finish_length);
    // Fresh-call shares need enough fresh calls to mean anything.
    let fresh_conf = f64::from(f.fresh) / (f64::from(f.fresh) + 10.0);
    // Asking for step-by-step reasoning harvests reasoning only as far as the answers carry
    // it: an evaluation's short derivation and final answer carries little, a reasoning trace
    // runs to hundreds of tokens. (Reasoning returned as such, `reasoning_high`, counts as is.)
    let room = clamp01(f.mean_output_tokens / s.reasoning_full_tokens);
    let asked = f.step_by_step.max(f.fresh_step_by_step * fresh_conf) * room;
    let reasoning = clamp01(asked.max(f.reasoning_high));
    let hidden = clamp01(2.0 * f.hidden_reasoning);
    let logprob = clamp01(
        f.logprobs * (0.5 + 0.5 * clamp01(f.many_top_logprobs / f.logprobs.max(1e-9)))
            + 0.3 * f.multi_sample,
    );
    // A sweep walks through many token ids; a fixed ban or boost list, however often sent, does not.
    let sweep = clamp01((f.logit_ids - 10.0) / (s.logit_sweep_ids - 10.0))
        * clamp01((f.logit_bias - 0.2) / 0.5);
    // The model must do the work: answers that are large next to the prompt. Retrieval and
    // extraction (long inputs, short outputs) do not harvest the model's knowledge.
    // Nor does transforming text it is given: when answers grow and shrink with their inputs
    // (translation, rewriting, proofreading), the topics spread over are the documents', and
    // the answers carry little the model knows. Knowledge questions show no such tracking
    // (their answer length owes little to the question's), long chains of reasoning on
    // longer problems only some (about 0.5 on worked math problems).
    let transformation = clamp01((f.length_tracking - 0.7) / 0.2);
    let generative_value = clamp01(f.output_ratio / 0.8) * (1.0 - transformation);
    // Coverage is a property of a collection: it grows with the number of distinct prompts.
    let distinct_fresh = f64::from(f.fresh) * f.unique_prompts;
    let scale = distinct_fresh / (distinct_fresh + s.coverage_half_prompts);
    let fresh_broad =
        clamp01(f.single_turn * f.unique_prompts * f.breadth * generative_value * scale);
    // An agent's calls come in trajectories: each task opens with one fresh call and goes on
    // through tool results, which make the prompts long and the shares of fresh calls and of
    // output small whatever the task. What a trajectory harvest collects is the trajectories
    // themselves, so for tool-using traffic coverage is read over the tasks alone: how many,
    // how distinct, how broad.
    let tasks = if f.tools >= 0.5 {
        clamp01(f.unique_prompts * f.breadth * scale)
    } else {
        0.0
    };
    let fresh_broad = fresh_broad.max(tasks);
    let templated =
        clamp01(f.template * f.breadth * f.unique_prompts * scale * (1.0 - transformation));
    let generation = clamp01(3.0 * f.task_generation);
    // People repeat a follow-up now and then ("continue", "thanks"), and a distinct counter
    // over a few dozen follow-ups is noisy: a quarter repeated says nothing yet. A synthetic
    // conversation generator draws from a small pool and repeats nearly every follow-up.
    let synthetic = if f.followups >= 8 {
        clamp01((f.followup_repeat - 0.25) / 0.5)
    } else {
        0.0
    };
    // A follow-up that quotes an answer back sooner than anyone could have read it was written
    // by a program: a synthetic conversation generator, whatever its follow-ups say. People
    // reply at once now and then (a quick-reply button, "thanks"), so the share counts from
    // 30 % of a few dozen timed follow-ups.
    let scripted = if f.timed_followups >= 8 {
        clamp01((f.quick_followups - 0.3) / 0.4)
    } else {
        0.0
    };
    let timing = if f.exchanges >= 48 {
        clamp01((f.quiet_hours_activity - 0.3) / 0.5)
    } else {
        0.0
    };
    // Before a whole day is seen, the spacing of calls can already show a paced machine: gaps
    // more even than random arrivals (CV under 1), where people come in sessions (CV well over
    // 1). Random arrivals themselves (CV ~1) are no evidence: they are what many independent
    // users of one product look like, as much as a randomised script. A few minutes of calls
    // say nothing about a rhythm: the stream must have lasted an hour.
    let even = clamp01((STEADY_CV - f.gap_cv) / STEADY_RAMP);
    let steady = if f.span_hours < 1.0 || f.mean_gap_secs > STEADY_MAX_MEAN_GAP_SECS {
        0.0
    } else if f.generative >= 30 && f.quiet_hours_activity == 0.0 && f.span_hours < 24.0 {
        even
    } else if f.generative >= 30 {
        0.5 * even
    } else {
        0.0
    };
    let timing = timing.max(steady);
    let rotation = clamp01((f.ip_churn - 0.1) / 0.4);
    let new_account = match f.account_age_days {
        Some(d) if d < s.new_account_days => 1.0,
        _ => 0.0,
    };
    let pivot = f.new_model;
    // Three accounts of one actor begin to be a fleet; ten are one in full.
    let fleet = clamp01((f64::from(f.accounts) - 2.0) / 8.0);
    // Follow-ups written before the answer was read are no conversation with a person.
    let conversational = clamp01(f.followup_share * (1.0 - f.followup_repeat) * (1.0 - scripted));
    let repetition = clamp01((1.0 - f.unique_prompts - 0.1) / 0.6);
    let ratio = clamp01(f.output_ratio / 1.5);
    let narrow = clamp01(f.template * (1.0 - ratio));
    let short = clamp01(1.0 - f.mean_output_tokens / 150.0);

    [
        (Signal::OutputHarvest, output_harvest, w.output_harvest, detail!(explain,
            "mean output {:.0} tokens ({:.1}x the input); {} of calls ask for max_tokens >= {} ({} of calls carry tools, whose cap does not count); {} stop at the length cap",
            f.mean_output_tokens, f.output_ratio, pct(f.high_max_tokens), s.high_max_tokens, pct(f.tools), pct(f.finish_length))),
        (Signal::ReasoningElicitation, reasoning, w.reasoning_elicitation, detail!(explain,
            "{} of prompts ({} of fresh single-turn prompts) ask for step-by-step reasoning, with answers of {:.0} tokens; {} request high reasoning effort or receive reasoning content",
            pct(f.step_by_step), pct(f.fresh_step_by_step), f.mean_output_tokens, pct(f.reasoning_high))),
        (Signal::HiddenReasoning, hidden, w.hidden_reasoning, detail!(explain,
            "{} of prompts ask for the model's internal or hidden reasoning", pct(f.hidden_reasoning))),
        (Signal::LogprobHarvest, logprob, w.logprob_harvest, detail!(explain,
            "{} of calls request logprobs ({} with top_logprobs >= {}); {} sample n > 1",
            pct(f.logprobs), pct(f.many_top_logprobs), s.many_top_logprobs, pct(f.multi_sample))),
        (Signal::LogitBiasSweep, sweep, w.logit_bias_sweep, detail!(explain,
            "logit_bias on {} of calls over about {:.0} distinct token ids; {} of calls use max_tokens = 1",
            pct(f.logit_bias), f.logit_ids, pct(f.max_one))),
        (Signal::FreshBroadCoverage, fresh_broad, w.fresh_broad_coverage, detail!(explain,
            "{} of calls are fresh single-turn contexts ({} tasks opened, {} of calls with tools), {} of prompts are distinct, topic spread {:.2} of the maximum",
            pct(f.single_turn), f.fresh, pct(f.tools), pct(f.unique_prompts), f.breadth)),
        (Signal::TemplatedCoverage, templated, w.templated_coverage, detail!(explain,
            "{} of {} fresh prompts share one skeleton while their content spreads over topics ({:.2})",
            pct(f.template), f.fresh, f.breadth)),
        (Signal::TaskGeneration, generation, w.task_generation, detail!(explain,
            "{} of prompts ask the model to invent new tasks or instructions", pct(f.task_generation))),
        (Signal::SyntheticFollowups, synthetic, w.synthetic_followups, detail!(explain,
            "{} of {} follow-up turns repeat earlier follow-ups word for word", pct(f.followup_repeat), f.followups)),
        (Signal::ScriptedFollowups, scripted, w.scripted_followups, detail!(explain,
            "{} of {} follow-ups timed against the answer they reply to came sooner than one second plus the answer read at 25 tokens a second",
            pct(f.quick_followups), f.timed_followups)),
        (Signal::MachineTiming, timing, w.machine_timing, detail!(explain,
            "machine rhythm: the quietest six hours of the day carry {} of an even share of calls (people sleep; machines do not); gaps between calls vary by {:.2}x their mean (sessions of people vary more); active in {} of the hours over {:.0} h",
            pct(f.quiet_hours_activity), f.gap_cv, pct(f.duty_cycle), f.span_hours)),
        (Signal::IpRotation, rotation, w.ip_rotation, detail!(explain,
            "{} distinct client addresses per call (about {:.0} addresses)", pct(f.ip_churn), f.client_addresses())),
        (Signal::NewAccount, new_account, w.new_account, detail!(explain,
            "account was {:.1} days old at its first call", f.account_age_days.unwrap_or(0.0))),
        (Signal::ModelPivot, pivot, w.model_pivot, detail!(explain,
            "{} of calls went to a model within {:.0} h of its release", pct(pivot), s.new_model_hours)),
        (Signal::AccountFleet, fleet, w.account_fleet + if f.concealed_fleet { w.concealed_fleet } else { 0.0 }, detail!(explain,
            "{} accounts of one actor take turns on this traffic{}", f.accounts,
            if f.concealed_fleet { ", each paying with an instrument of its own (a fleet that hides that it is one)" } else { "" })),
        (Signal::Conversational, conversational, -w.conversational, detail!(explain,
            "{} of calls are follow-up turns of conversations, {} of them distinct", pct(f.followup_share), pct(1.0 - f.followup_repeat))),
        (Signal::Repetition, repetition, -w.repetition, detail!(explain,
            "only {} of prompts are distinct (reruns of the same items)", pct(f.unique_prompts))),
        (Signal::NarrowTask, narrow, -w.narrow_task, detail!(explain,
            "{} of prompts share one skeleton and answers are short relative to inputs ({:.1}x): one narrow task",
            pct(f.template), f.output_ratio)),
        (Signal::ShortAnswers, short, -w.short_answers, detail!(explain,
            "answers average {:.0} tokens", f.mean_output_tokens)),
        (Signal::Transformation, transformation, -w.transformation, detail!(explain,
            "answer lengths follow input lengths (correlation {:.2} over fresh calls): the model transforms text it is given (translation, rewriting, proofreading) rather than answering from what it knows",
            f.length_tracking)),
    ]
}

/// The detector's signals: each with its stable name (what reasons and `docs/signals.md`
/// call it), whether it is a circumstance, and the lines of evidence it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    OutputHarvest,
    ReasoningElicitation,
    HiddenReasoning,
    LogprobHarvest,
    LogitBiasSweep,
    FreshBroadCoverage,
    TemplatedCoverage,
    TaskGeneration,
    SyntheticFollowups,
    ScriptedFollowups,
    MachineTiming,
    IpRotation,
    NewAccount,
    ModelPivot,
    AccountFleet,
    Conversational,
    Repetition,
    NarrowTask,
    ShortAnswers,
    Transformation,
}

impl Signal {
    /// Every signal, in the order reasons list them.
    pub const ALL: [Signal; 20] = [
        Signal::OutputHarvest,
        Signal::ReasoningElicitation,
        Signal::HiddenReasoning,
        Signal::LogprobHarvest,
        Signal::LogitBiasSweep,
        Signal::FreshBroadCoverage,
        Signal::TemplatedCoverage,
        Signal::TaskGeneration,
        Signal::SyntheticFollowups,
        Signal::ScriptedFollowups,
        Signal::MachineTiming,
        Signal::IpRotation,
        Signal::NewAccount,
        Signal::ModelPivot,
        Signal::AccountFleet,
        Signal::Conversational,
        Signal::Repetition,
        Signal::NarrowTask,
        Signal::ShortAnswers,
        Signal::Transformation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Signal::OutputHarvest => "output_harvest",
            Signal::ReasoningElicitation => "reasoning_elicitation",
            Signal::HiddenReasoning => "hidden_reasoning",
            Signal::LogprobHarvest => "logprob_harvest",
            Signal::LogitBiasSweep => "logit_bias_sweep",
            Signal::FreshBroadCoverage => "fresh_broad_coverage",
            Signal::TemplatedCoverage => "templated_coverage",
            Signal::TaskGeneration => "task_generation",
            Signal::SyntheticFollowups => "synthetic_followups",
            Signal::ScriptedFollowups => "scripted_followups",
            Signal::MachineTiming => "machine_timing",
            Signal::IpRotation => "ip_rotation",
            Signal::NewAccount => "new_account",
            Signal::ModelPivot => "model_pivot",
            Signal::AccountFleet => "account_fleet",
            Signal::Conversational => "conversational",
            Signal::Repetition => "repetition",
            Signal::NarrowTask => "narrow_task",
            Signal::ShortAnswers => "short_answers",
            Signal::Transformation => "transformation",
        }
    }

    /// A circumstance of a harvest (timing, addresses, account age, a pivot, a fleet) rather
    /// than the harvest itself: together they count at most as much as the harvest evidence.
    pub fn is_context(self) -> bool {
        matches!(
            self,
            Signal::MachineTiming
                | Signal::IpRotation
                | Signal::NewAccount
                | Signal::ModelPivot
                | Signal::AccountFleet
        )
    }

    /// The independent lines of harvest evidence this signal belongs to, as bits: what is
    /// covered (a broad collection of fresh prompts), what is extracted (long answers,
    /// reasoning, logprobs, logits), how prompts are made (one template wrapped around a broad
    /// collection, invented tasks, synthetic follow-ups: manufactured, where a product's users
    /// write their own), and one actor spreading the traffic over a fleet of accounts (no
    /// customer needs to). Evidence against belongs to none; the circumstances of evasion
    /// (machine timing, rotating addresses, a pivot to a new model: [`EVASION`]) make one line
    /// together when at least two of them are there ([`CIRCUMSTANCES`]); a new account is every
    /// new customer and makes none. A logit-bias sweep is extraction no product performs at
    /// volume, and counts as two lines by itself.
    fn lines(self) -> u32 {
        match self {
            Signal::FreshBroadCoverage => 1 << COVERAGE,
            Signal::OutputHarvest
            | Signal::ReasoningElicitation
            | Signal::HiddenReasoning
            | Signal::LogprobHarvest => 1 << EXTRACTION,
            Signal::TemplatedCoverage
            | Signal::TaskGeneration
            | Signal::SyntheticFollowups
            | Signal::ScriptedFollowups => 1 << MANUFACTURED,
            Signal::AccountFleet => 1 << FLEET,
            Signal::LogitBiasSweep => (1 << EXTRACTION) | (1 << SWEEP),
            Signal::MachineTiming | Signal::IpRotation | Signal::ModelPivot => 1 << EVASION,
            _ => 0,
        }
    }
}

/// The lines of evidence, as indices into [`LINE_MIN`] and bits of [`Signal::lines`];
/// [`EVASION`] marks the circumstances that make a line only together.
const COVERAGE: usize = 0;
const EXTRACTION: usize = 1;
const MANUFACTURED: usize = 2;
const FLEET: usize = 3;
const SWEEP: usize = 4;
const EVASION: usize = 5;

/// The log-odds each line's signals must add up to before it counts as a line of evidence
/// (coverage, extraction, generation, fleet, sweep). A fleet counts from about five accounts
/// of one actor taking turns.
const LINE_MIN: [f64; 5] = [1.0, 1.0, 1.0, 0.5, 1.0];
/// The circumstances line counts when at least this many circumstances each add at least
/// [`CIRCUMSTANCE_MIN`]: round-the-clock pacing alone is a global product's users as much as
/// a script, a new account alone every new customer.
const CIRCUMSTANCES: u32 = 2;
/// A line of evidence at least this share of its minimum counts as that share of a line
/// towards `min_evidence_lines`.
const PARTIAL_LINE: f64 = 0.5;
const CIRCUMSTANCE_MIN: f64 = 0.5;
/// Rotation through at least this many client addresses, most calls from one not seen before,
/// makes the circumstances line by itself: a rotating proxy pool, which no customer's traffic
/// needs. A person's devices use a few addresses a day, a product's servers a few, a
/// company's egress pool a few dozen; a few dozen calls from as many addresses (a developer
/// on a phone and a train's Wi-Fi, a team behind a pool) is a share, not a pool.
const ROTATION_POOL: f64 = 48.0;

/// Scores an account from its features, with the reasons behind the score.
pub fn assess(f: &Features, c: &Config) -> Assessment {
    evaluate(f, c, true)
}

/// Score and verdict only: the per-exchange fast path.
pub fn score(f: &Features, c: &Config) -> (f64, Verdict) {
    let a = evaluate(f, c, false);
    (a.score, a.verdict)
}

fn evaluate(f: &Features, c: &Config, explain: bool) -> Assessment {
    let n = f64::from(f.generative);
    let confidence = n / (n + c.shape.full_confidence_exchanges / 4.0);
    let signals = signals(f, c, explain);
    // Context (timing, addresses, account age, model pivot) makes harvest evidence more
    // believable but is no harvest by itself: a developer on a new account who tries the new
    // model in a steady burst of calls has all of it. Its total counts at most as much as the
    // evidence of harvesting it accompanies.
    let (mut harvest, mut context) = (0.0, 0.0);
    for (signal, strength, weight, _) in &signals {
        let value = confidence * strength * weight;
        if value > 0.0 {
            if signal.is_context() {
                context += value;
            } else {
                harvest += value;
            }
        }
    }
    let context_scale = if context > harvest {
        harvest / context
    } else {
        1.0
    };
    let mut logit = c.weights.bias;
    let mut reasons = Vec::new();
    let mut by_line = [0.0f64; LINE_MIN.len()];
    let mut circumstances = 0;
    let mut any_circumstance = false;
    let mut round_the_clock = false;
    let mut hidden_reasoning = 0.0;
    let mut rotated = false;
    for (signal, strength, weight, detail) in signals {
        let mut value = confidence * strength * weight;
        if value > 0.0 && signal.is_context() {
            value *= context_scale;
        }
        logit += value;
        let lines = signal.lines();
        let circumstance = lines & (1 << EVASION) != 0 && value >= CIRCUMSTANCE_MIN;
        circumstances += u32::from(circumstance);
        // A new account is every new customer: it puts no one on the watch list. Calls round
        // the clock at random intervals are what a product with users on several continents
        // sends: beside broad coverage (what such a product's users ask) they put no one there
        // either. Evenly paced calls are a machine's, and do.
        if signal.is_context() && signal != Signal::NewAccount && value >= CIRCUMSTANCE_MIN {
            if signal == Signal::MachineTiming && f.gap_cv >= STEADY_CV {
                round_the_clock = true;
            } else {
                any_circumstance = true;
            }
        }
        if signal == Signal::HiddenReasoning {
            hidden_reasoning = value;
        }
        if signal == Signal::IpRotation {
            rotated = circumstance;
        }
        for (i, total) in by_line.iter_mut().enumerate() {
            if lines & (1 << i) != 0 {
                *total += value;
            }
        }
        if explain && value.abs() >= 0.25 {
            reasons.push(Reason {
                signal: signal.name(),
                value: (value * 100.0).round() / 100.0,
                detail,
            });
        }
    }
    let score = 1.0 / (1.0 + (-logit).exp());
    // Each line's share: 1 when it counts in full, its share of the way when at least
    // `PARTIAL_LINE` there (a line's minimum is a convenient cut in a continuum, and long
    // answers at 98 % of it beside templated prompts at two thirds are more than one line's
    // worth), else 0. `lines` counts the full ones, `weighed` adds the shares; the
    // circumstances count only as a full line.
    let shares = by_line.iter().zip(LINE_MIN).map(|(&v, min)| {
        if v >= min {
            1.0
        } else if v >= PARTIAL_LINE * min {
            v / min
        } else {
            0.0
        }
    });
    let rotating_pool = rotated && f.client_addresses() >= ROTATION_POOL;
    let circumstance_line = u32::from(circumstances >= CIRCUMSTANCES || rotating_pool);
    let lines = shares.clone().filter(|&s| s == 1.0).count() as u32 + circumstance_line;
    let weighed = shares.sum::<f64>() + f64::from(circumstance_line);
    // A logit-bias sweep is extraction no product performs; it need not last to be acted on.
    let sweep = by_line[SWEEP] >= LINE_MIN[SWEEP];
    let sustained = f.active_hours >= c.thresholds.min_active_hours || sweep;
    let enough = f.generative >= c.thresholds.min_exchanges;
    // Extraction no product performs (a logit-bias sweep, the model's hidden reasoning) is
    // worth a look at once, alone and however brief.
    let conclusive = sweep || hidden_reasoning >= LINE_MIN[EXTRACTION];
    // One line of evidence with nothing around it but a new account (coverage alone: a
    // question-answering or agent product's users), or coverage with calls round the clock
    // (the same product's users on several continents), is not worth an analyst's time: the
    // watch list is for accounts with more than that.
    let product_like = by_line[COVERAGE] >= LINE_MIN[COVERAGE];
    let any_circumstance = any_circumstance || (round_the_clock && !product_like);
    let alone = lines < 2 && !any_circumstance && !conclusive;
    // Nor is a run that has not lasted yet: a benchmark run is over within the hour, and a
    // harvest that keeps going is `distilling` by its third hour.
    let brief = !sustained && !conclusive;
    let verdict = if score >= c.thresholds.distilling
        && enough
        && sustained
        && lines >= 1
        && weighed >= f64::from(c.thresholds.min_evidence_lines)
    {
        Verdict::Distilling
    } else if score >= c.thresholds.suspicious && !alone && !brief {
        Verdict::Suspicious
    } else {
        Verdict::Benign
    };
    // A score the verdict does not stand behind is not reported as one: an account held at
    // `suspicious` scores below the `distilling` threshold (mapped from [suspicious, 1) onto
    // [suspicious, distilling), so held accounts keep their order among themselves), and a
    // ranking by score agrees with the verdicts.
    let (t_s, t_d) = (c.thresholds.suspicious, c.thresholds.distilling);
    let held = score >= t_d && verdict < Verdict::Distilling;
    let reported = if score >= t_s && verdict == Verdict::Benign {
        // Held below the watch list: mapped from [suspicious, 1) under it, in order.
        (score * t_s).min(t_s - 1e-4)
    } else if held && t_s < t_d && t_s < 1.0 {
        (t_s + (score - t_s) * (t_d - t_s) / (1.0 - t_s)).min(t_d - 1e-4)
    } else if held {
        t_d - 1e-4
    } else {
        score
    };
    // Why a rule held the account back, when one did.
    let held_because = if !explain {
        None
    } else if score >= t_s && verdict == Verdict::Benign {
        Some(if brief {
            format!("held at benign: calls in {:.0} distinct clock hours, {} needed before anything is acted on or watched; a benchmark run or a one-off job is over within the hour, a harvest keeps going", f.active_hours, c.thresholds.min_active_hours)
        } else {
            "held at benign: one line of harvest evidence and no circumstance of evasion around it (rotating addresses, a model pivot, a fleet, evenly paced calls; calls round the clock at random intervals beside anything but broad coverage); that is what a product whose users ask broad questions shows, round the clock when they live on several continents".into()
        })
    } else if held && enough {
        Some(if weighed < f64::from(c.thresholds.min_evidence_lines) {
            format!(
                "held at suspicious: {weighed:.1} independent line(s) of harvest evidence (coverage, extraction, generated prompts, a fleet of accounts, two or more circumstances together or a rotating pool of addresses; a line at least half there counts as its share), {} needed; one line with one circumstance is what a product's many users also show",
                c.thresholds.min_evidence_lines
            )
        } else {
            format!(
                "held at suspicious: calls in {:.0} distinct clock hours, {} needed; a benchmark run or a one-off job is bounded, a harvest keeps going",
                f.active_hours, c.thresholds.min_active_hours
            )
        })
    } else {
        None
    };
    if let Some(detail) = held_because {
        reasons.push(Reason {
            signal: "held",
            value: 0.0,
            detail,
        });
    }
    // Evidence for first, strongest first; then what speaks against, strongest first.
    reasons.sort_by(|a, b| {
        (b.value > 0.0)
            .cmp(&(a.value > 0.0))
            .then(b.value.abs().total_cmp(&a.value.abs()))
    });
    Assessment {
        score: reported,
        verdict,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fleet of accounts with every circumstance of a harvest (round the clock, rotating
    /// addresses, new accounts, the newest model) and `coverage` of broad fresh prompts.
    fn circumstances(coverage: f64) -> Features {
        Features {
            exchanges: 400,
            generative: 400,
            fresh: 400,
            single_turn: 1.0,
            unique_prompts: coverage,
            breadth: coverage,
            output_ratio: 1.0,
            mean_output_tokens: 300.0,
            quiet_hours_activity: 1.0,
            span_hours: 48.0,
            active_hours: 48.0,
            gap_cv: 1.0,
            ip_churn: 1.0,
            account_age_days: Some(0.5),
            new_model: 1.0,
            accounts: 20,
            ..Features::default()
        }
    }

    /// A plain harvest at ordinary settings: broad fresh prompts, long answers asked for with
    /// the largest `max_tokens`, round the clock; `template` of them share one wrapper.
    fn plain_harvest(template: f64) -> Features {
        Features {
            exchanges: 600,
            generative: 600,
            fresh: 600,
            single_turn: 1.0,
            unique_prompts: 1.0,
            breadth: 0.9,
            template,
            output_ratio: 1.2,
            mean_output_tokens: 170.0,
            high_max_tokens: 1.0,
            quiet_hours_activity: 0.8,
            span_hours: 72.0,
            active_hours: 60.0,
            gap_cv: 1.0,
            ..Features::default()
        }
    }

    #[test]
    fn lines_part_there_add_up_to_the_second_line_a_verdict_needs() {
        let c = Config::default();
        let lines = |f: &Features| {
            let a = assess(f, &c);
            let of = |name: &str| {
                a.reasons
                    .iter()
                    .find(|r| r.signal == name)
                    .map_or(0.0, |r| r.value)
            };
            (a.verdict, of("output_harvest"), of("templated_coverage"))
        };
        // Coverage in full, long answers just short of a line, one circumstance (round the
        // clock): held (one line and a circumstance is what a global product shows).
        let (verdict, extraction, templated) = lines(&plain_harvest(0.0));
        assert!((0.5..1.0).contains(&extraction), "{extraction}");
        assert_eq!(templated, 0.0);
        assert_ne!(verdict, Verdict::Distilling);
        // A wrapper around a third of the prompts, itself short of a line: together with the
        // long answers, more than a second line's worth.
        let (verdict, extraction2, templated) = lines(&plain_harvest(0.4));
        assert_eq!(extraction2, extraction);
        assert!((0.5..1.0).contains(&templated), "{templated}");
        assert_eq!(verdict, Verdict::Distilling);
    }

    #[test]
    fn a_rotating_proxy_pool_is_a_line_of_circumstance_by_itself() {
        let c = Config::default();
        // The plain harvest in office hours (no timing to go with anything), from one
        // address: coverage and long answers just short of a second line, held.
        let office = Features {
            quiet_hours_activity: 0.0,
            ..plain_harvest(0.0)
        };
        assert_ne!(assess(&office, &c).verdict, Verdict::Distilling);
        // The same calls each from an address of a pool of hundreds: no customer's traffic
        // needs one.
        let rotating = Features {
            ip_churn: 0.9,
            ..office.clone()
        };
        assert_eq!(assess(&rotating, &c).verdict, Verdict::Distilling);
        // A few dozen addresses (a developer on the move, a team behind an egress pool) are a
        // share, not a pool: the rule reads the pool's size (share of addresses x calls), and
        // the same share over 40 calls, 36 addresses, is held.
        let few = Features {
            exchanges: 40,
            ..rotating.clone()
        };
        assert_ne!(assess(&few, &c).verdict, Verdict::Distilling);
    }

    #[test]
    fn an_agents_large_cap_is_no_harvest_of_text() {
        let c = Config::default();
        // A product's agent busy round the clock: broad tasks, answers of a few hundred
        // tokens, every call with tools and the framework's 4,096-token cap.
        let agent = Features {
            tools: 1.0,
            single_turn: 0.2,
            output_ratio: 0.3,
            mean_output_tokens: 250.0,
            ..plain_harvest(0.0)
        };
        let of = |f: &Features| {
            let a = assess(f, &c);
            let value = a
                .reasons
                .iter()
                .find(|r| r.signal == "output_harvest")
                .map_or(0.0, |r| r.value);
            (a.verdict, value)
        };
        let (verdict, with_tools) = of(&agent);
        assert_ne!(verdict, Verdict::Distilling);
        assert!(with_tools < 1.0, "{with_tools}");
        // The same cap on calls without tools is what a harvester asks for, and counts.
        let (_, without_tools) = of(&Features {
            tools: 0.0,
            ..agent
        });
        assert!(
            without_tools > with_tools + 0.5,
            "{without_tools} vs {with_tools}"
        );
    }

    #[test]
    fn a_fleet_paying_card_by_card_weighs_more_than_one_sharing_a_card() {
        // Thirteen accounts of one actor, a couple of dozen broad questions each, answers of
        // ordinary length, in office hours: a careful hydra's combined traffic, or a company's
        // teams on one card whose links happened to say one actor.
        let group = |concealed_fleet| Features {
            exchanges: 364,
            generative: 364,
            fresh: 364,
            single_turn: 1.0,
            unique_prompts: 0.98,
            breadth: 0.84,
            output_ratio: 2.1,
            mean_output_tokens: 185.0,
            span_hours: 160.0,
            active_hours: 90.0,
            gap_cv: 1.6,
            accounts: 13,
            concealed_fleet,
            ..Features::default()
        };
        let c = Config::default();
        let declared = assess(&group(false), &c);
        let concealed = assess(&group(true), &c);
        assert_eq!(
            declared.verdict,
            Verdict::Suspicious,
            "{:?}",
            declared.reasons
        );
        assert_eq!(
            concealed.verdict,
            Verdict::Distilling,
            "{:?}",
            concealed.reasons
        );
        let fleet = concealed
            .reasons
            .iter()
            .find(|r| r.signal == "account_fleet")
            .expect("the fleet is a reason");
        assert!(
            fleet.detail.contains("instrument of its own"),
            "{}",
            fleet.detail
        );
    }

    #[test]
    fn circumstances_count_only_as_much_as_the_harvest_they_accompany() {
        let c = Config::default();
        let none = assess(&circumstances(0.0), &c);
        assert_eq!(none.verdict, Verdict::Benign, "{:?}", none.reasons);
        let context: f64 = none
            .reasons
            .iter()
            .filter(|r| {
                [
                    "machine_timing",
                    "ip_rotation",
                    "new_account",
                    "model_pivot",
                    "account_fleet",
                ]
                .contains(&r.signal)
            })
            .map(|r| r.value)
            .sum();
        assert!(
            context < 0.5,
            "context alone added {context}: {:?}",
            none.reasons
        );
        let some = assess(&circumstances(0.9), &c);
        assert_eq!(some.verdict, Verdict::Distilling, "{:?}", some.reasons);
        assert!(some.reasons.iter().any(|r| r.signal == "machine_timing"));
        assert!(some.reasons.iter().any(|r| r.signal == "account_fleet"));
    }
}
