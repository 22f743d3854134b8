//! Per-account state: counters and fixed-size sketches, updated once per exchange.
//! Its size does not depend on the account's volume (about 1.3 KB; see the size test).

use serde::{Deserialize, Serialize};

use crate::config::Shape;
use crate::content::{share, Content};
use crate::features::Features;
use crate::observation::Observation;
use crate::sketch::{mix, HeavyHitters, Histogram, Hll, Moments, Recurring};
use crate::text::FRAGMENTS;

const TOPIC_BINS: usize = 64;
const HOUR_MS: i64 = 3_600_000;
/// Gaps longer than this are pauses, not part of a rhythm; they are clipped before the moments.
pub const MAX_GAP_SECS: f64 = 1800.0;

/// The content counters of an account's whole traffic: the large sizes.
pub type AccountContent = Content<256, 128, TOPIC_BINS>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccountState {
    /// Every exchange, generative or not.
    pub exchanges: u32,
    first_ts: i64,
    last_ts: i64,
    with_system: u32,
    tools: u32,
    logit_bias: u32,
    max_one: u32,
    new_model: u32,
    /// Calls that carry the account's payment instrument (`meta.payment_fingerprint`): whether
    /// the log says how an account pays at all.
    paid: u32,
    signup: Option<i64>,
    /// What the generation calls ask for and get back.
    content: AccountContent,
    /// Wrapper fragments recurring across fresh prompts: a template behind a few varying
    /// words, or several wrappers taken in turn, which the content's skeletons miss. The
    /// account's alone: its streams read templates by the skeletons only (docs/signals.md,
    /// known gaps).
    wrappers: Recurring<FRAGMENTS>,
    distinct_openings: Hll<64>,
    logit_ids: Hll<32>,
    ips: Hll<32>,
    active_hours: Hll<64>,
    systems: HeavyHitters<2>,
    gaps: Moments,
    hour_of_day: Histogram<24>,
    /// The last answer of each of the account's most recent conversations, to time the
    /// follow-ups that quote them back.
    answered: [Answered; RECENT_ANSWERS],
    /// Follow-ups whose predecessor was found and long enough to need reading, and those of
    /// them that came sooner than anyone reads.
    timed_followups: u32,
    quick_followups: u32,
}

/// Recent answers kept per account: a script runs its conversations one or a few at a time;
/// a product's many users interleave theirs, and only some of their follow-ups are timed.
const RECENT_ANSWERS: usize = 8;
/// Answers shorter than this are read at a glance ("Sure!", "4"): a quick reply says nothing.
const MIN_READ_TOKENS: u16 = 40;
/// Tokens a second that a person reads at while skimming: four times a careful reading pace
/// (about 250 words a minute, some 5 tokens a second). A follow-up sooner than one second
/// plus the answer at this pace was written before the answer could be read.
const SKIM_TOKENS_PER_SEC: i64 = 25;
/// Where the log has no `latency_ms`, the answer is taken to end this long a token after the
/// request (50 tokens a second, a fast model's pace): errs towards later ends, so fewer
/// follow-ups read as quick.
const ESTIMATED_MS_PER_TOKEN: i64 = 20;

/// An answer an account received, for timing the follow-up that quotes it.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Answered {
    /// Low bits of the answer's [`Observation::answer_head`]; 0 for an empty slot.
    head: u32,
    tokens: u16,
    /// When its last byte arrived (ms).
    end: i64,
}

impl AccountState {
    /// The account's most repeated prompt skeleton and its (lower-bound) count.
    /// A template is a fixed wrapper around a slot, at the prompt's start or at its end
    /// ("{question}\n\nThink step by step..."): the more repeated of the two skeletons.
    pub fn top_template(&self) -> Option<(u64, u32)> {
        match (self.content.heads.top(), self.content.tails.top()) {
            (Some(h), Some(t)) => Some(if t.1 > h.1 { t } else { h }),
            (h, t) => h.or(t),
        }
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
        self.paid = self.paid.saturating_add(u32::from(obs.payment.is_some()));
        if !obs.generative {
            return;
        }
        let inc = |c: &mut u32, yes: bool| *c = c.saturating_add(u32::from(yes));
        self.content.update(obs, shape);
        if obs.single_turn() {
            self.wrappers.observe(&obs.prompt.fragments);
        }
        inc(&mut self.with_system, obs.system.is_some());
        inc(&mut self.tools, obs.has_tools);
        inc(&mut self.logit_bias, obs.logit_bias_entries > 0);
        inc(&mut self.max_one, obs.max_tokens == Some(1));
        inc(&mut self.new_model, new_model);
        self.distinct_openings.insert(obs.opening);
        if let Some(s) = obs.system {
            self.systems.insert(s);
        }
        self.time_followup(obs);
    }

    /// Times a follow-up against the answer it quotes, when that answer is among the recent
    /// ones, and keeps this call's answer for its own follow-up.
    fn time_followup(&mut self, obs: &Observation) {
        let low = |h: u64| (h as u32).max(1);
        if obs.replies_to != 0 && obs.tool_turns == 0 && !obs.has_tools {
            let head = low(obs.replies_to);
            if let Some(prev) = self.answered.iter().find(|a| a.head == head) {
                if prev.tokens >= MIN_READ_TOKENS {
                    let reading_ms = 1000 + i64::from(prev.tokens) * 1000 / SKIM_TOKENS_PER_SEC;
                    let quick = obs.ts - prev.end < reading_ms;
                    self.timed_followups = self.timed_followups.saturating_add(1);
                    self.quick_followups = self.quick_followups.saturating_add(u32::from(quick));
                }
            }
        }
        if obs.answer_head == 0 || obs.tool_call_answer {
            return;
        }
        let tokens = obs.completion_tokens.min(u64::from(u16::MAX)) as u16;
        let took = obs
            .latency_ms
            .map_or_else(|| i64::from(tokens) * ESTIMATED_MS_PER_TOKEN, i64::from);
        // The slot of the answer this call replied to (its conversation moves on), else the
        // one that ended longest ago.
        let replaced = low(obs.replies_to);
        let slot = self
            .answered
            .iter()
            .position(|a| obs.replies_to != 0 && a.head == replaced)
            .unwrap_or_else(|| {
                (0..RECENT_ANSWERS)
                    .min_by_key(|&i| (self.answered[i].head != 0, self.answered[i].end))
                    .unwrap_or(0)
            });
        self.answered[slot] = Answered {
            head: low(obs.answer_head),
            tokens,
            end: obs.ts.saturating_add(took),
        };
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
        self.exchanges = self.exchanges.saturating_add(o.exchanges);
        self.with_system = self.with_system.saturating_add(o.with_system);
        self.tools = self.tools.saturating_add(o.tools);
        self.logit_bias = self.logit_bias.saturating_add(o.logit_bias);
        self.max_one = self.max_one.saturating_add(o.max_one);
        self.new_model = self.new_model.saturating_add(o.new_model);
        self.paid = self.paid.saturating_add(o.paid);
        self.timed_followups = self.timed_followups.saturating_add(o.timed_followups);
        self.quick_followups = self.quick_followups.saturating_add(o.quick_followups);
        self.content.merge(&o.content);
        self.wrappers.merge(&o.wrappers);
        macro_rules! merge {
            ($($f:ident),*) => { $( self.$f.merge(&o.$f); )* };
        }
        merge!(
            distinct_openings,
            logit_ids,
            ips,
            active_hours,
            systems,
            hour_of_day
        );
    }

    /// Folds one `logit_bias` token id into the sweep sketch.
    pub fn note_logit_id(&mut self, id_hash: u64) {
        self.logit_ids.insert(id_hash);
    }

    /// Whether any of these calls carried a payment instrument.
    pub fn paid(&self) -> bool {
        self.paid > 0
    }

    pub fn first_ts(&self) -> i64 {
        self.first_ts
    }

    /// Chat and completions calls: the ones that can be harvested.
    pub fn generative(&self) -> u32 {
        self.content.generative
    }

    /// Fresh single-turn calls: where templates are counted.
    pub fn fresh_calls(&self) -> u32 {
        self.content.single_turn
    }

    pub fn features(&self) -> Features {
        let g = self.content.generative;
        let span_hours = (self.last_ts - self.first_ts) as f64 / HOUR_MS as f64;
        let active_hours = self.active_hours.estimate().max(1.0);
        let mut f = Features {
            exchanges: self.exchanges,
            conversations: (self.distinct_openings.estimate() / f64::from(g.max(1))).min(1.0),
            system_share: share(self.systems.top_count(), g),
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
            active_hours: self.active_hours.estimate(),
            calls_per_active_hour: f64::from(self.exchanges) / active_hours,
            gap_cv: self.gaps.cv(),
            mean_gap_secs: self.gaps.mean,
            quiet_hours_activity: if span_hours >= 24.0 {
                quiet_ratio(&self.hour_of_day.0)
            } else {
                0.0
            },
            timed_followups: self.timed_followups,
            quick_followups: share(self.quick_followups, self.timed_followups),
            ip_churn: (self.ips.estimate() / f64::from(self.exchanges.max(1))).min(1.0),
            account_age_days: self
                .signup
                .map(|s| (self.first_ts - s) as f64 / (24.0 * HOUR_MS as f64)),
            new_model: share(self.new_model, g),
            accounts: 1,
            ..Features::default()
        };
        self.content.fill(&mut f);
        f.template = f.template.max(self.wrappers.share());
        f
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

    /// A call of a conversation: its answer (`tokens` long, ending `took` ms after `ts`), and
    /// the answer it replies to, if any.
    fn call(ts: i64, took: Option<u32>, answer: u64, replies_to: u64, tokens: u64) -> Observation {
        Observation {
            ts,
            generative: true,
            user_turns: 1 + u32::from(replies_to != 0),
            assistant_turns: u32::from(replies_to != 0),
            latency_ms: took,
            answer_head: answer,
            replies_to,
            completion_tokens: tokens,
            ..Observation::default()
        }
    }

    #[test]
    fn follow_ups_are_timed_against_the_answer_they_quote() {
        let shape = Shape::default();
        let mut s = AccountState::default();
        // Ten conversations interleaved (more than are kept, so the two oldest answers are let
        // go): each opening's 400-token answer takes 10 s; the follow-ups, the newest
        // conversation's first, come 2 s after their own answer in the even conversations and
        // 60 s after in the odd ones.
        for c in 0..10u64 {
            s.update(
                &call(c as i64 * 1_000, Some(10_000), 100 + c, 0, 400),
                &shape,
                false,
            );
        }
        for c in (0..10u64).rev() {
            let pause = if c % 2 == 0 { 2_000 } else { 60_000 };
            let ts = c * 1_000 + 10_000 + pause;
            s.update(
                &call(ts as i64, Some(10_000), 200 + c, 100 + c, 400),
                &shape,
                false,
            );
        }
        let f = s.features();
        assert_eq!(f.timed_followups, 8, "the two oldest answers were let go");
        assert_eq!(f.quick_followups, 0.5);

        // Short answers are read at a glance: a quick reply to them is no evidence.
        let mut s = AccountState::default();
        s.update(&call(0, Some(500), 7, 0, 5), &shape, false);
        s.update(&call(900, None, 8, 7, 5), &shape, false);
        assert_eq!(s.features().timed_followups, 0);

        // Without `latency_ms` the answer is taken to end 20 ms a token after the request:
        // 400 tokens end 8 s after it. Reading them takes 17 s: a follow-up 12 s after the
        // end is quick, one 32 s after is not.
        let mut s = AccountState::default();
        s.update(&call(0, None, 7, 0, 400), &shape, false);
        s.update(&call(20_000, None, 8, 7, 400), &shape, false);
        s.update(&call(60_000, None, 9, 8, 400), &shape, false);
        let f = s.features();
        assert_eq!((f.timed_followups, f.quick_followups), (2, 0.5));
    }

    #[test]
    fn state_is_small_and_fixed_size() {
        assert!(
            std::mem::size_of::<AccountState>() <= 1560,
            "{}",
            std::mem::size_of::<AccountState>()
        );
    }
}
