//! The streams inside one account, judged apart.
//!
//! One account can carry more than one job: a harvest script beside the owner's ordinary chat,
//! a batch of public-dataset questions under one steady suffix next to a product's users. The
//! account's whole traffic is their mixture, and the cover dilutes every content signal of the
//! harvest (the share of fresh calls, the answer sizes) while adding evidence against it (real
//! conversations). A script, though, sends its calls with one setting of the client (system
//! prompt, tools, `max_tokens` set or not, temperature, logprobs, `n`, user agent): that is
//! what keys a stream here ([`crate::Observation::stream`]), with the account's own template
//! when only some of its fresh prompts carry it (a harvest under one steady suffix sent with
//! the same client as the chat around it). People choosing their settings call by call make
//! many small streams, each too small to judge.
//!
//! Bounded: an account with one setting keeps nothing here; from its second setting on, it
//! follows the [`SLOTS`] most used streams (content counters at a smaller size than the
//! account's) and counts the rest in a heavy-hitters summary, so a stream that grows past a
//! followed one takes its place. Circumstances (timing, addresses, age) stay the account's.

use serde::{Deserialize, Serialize};

use crate::config::Shape;
use crate::content::Content;
use crate::features::Features;
use crate::observation::Observation;
use crate::sketch::HeavyHitters;

/// Streams followed at once.
pub const SLOTS: usize = 2;
/// A stream's content counters: fewer registers and topic bins than an account's.
type StreamContent = Content<128, 32, 32>;
/// A stream seen this much more often than a followed one (and by this many calls) replaces
/// it; the margin keeps two streams of about one size from taking turns.
const REPLACE_RATIO: f64 = 1.5;
const REPLACE_MARGIN: u32 = 4;

/// The followed streams of an account with more than one client setting.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Streams {
    /// (stream key, its content since followed); key 0 is an empty slot.
    slots: [(u64, StreamContent); SLOTS],
    /// Calls per stream key, the most frequent kept.
    seen: HeavyHitters<4>,
}

impl Streams {
    /// Starts following an account's streams when a second setting appears: `first` is the
    /// setting every earlier call used (`calls` of them; their content is the account's own,
    /// judged already, so this starts counting from here).
    pub fn starting(first: u64, calls: u32) -> Self {
        let mut s = Self::default();
        s.slots[0].0 = first;
        s.seen.insert_n(first, calls.max(1));
        s
    }

    /// Takes one generation call of stream `key` (never 0).
    pub fn note(&mut self, key: u64, obs: &Observation, shape: &Shape) {
        self.seen.insert(key);
        let slot = match self.slots.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => match self.slots.iter().position(|(k, _)| *k == 0) {
                Some(i) => {
                    self.slots[i] = (key, StreamContent::default());
                    i
                }
                None => {
                    let count = self.seen.count(key);
                    let (i, least) = self
                        .slots
                        .iter()
                        .enumerate()
                        .map(|(i, (k, _))| (i, self.seen.count(*k)))
                        .min_by_key(|&(_, c)| c)
                        .expect("slots");
                    if f64::from(count) > REPLACE_RATIO * f64::from(least)
                        && count >= least + REPLACE_MARGIN
                    {
                        self.slots[i] = (key, StreamContent::default());
                        i
                    } else {
                        return;
                    }
                }
            },
        };
        self.slots[slot].1.update(obs, shape);
    }

    /// The features of each followed stream with at least `min_calls` calls: the account's
    /// features (`whole`) with the content of that stream's calls alone.
    pub fn features<'a>(
        &'a self,
        whole: &'a Features,
        min_calls: u32,
    ) -> impl Iterator<Item = Features> + 'a {
        self.slots
            .iter()
            .filter(move |(k, c)| *k != 0 && c.generative >= min_calls)
            .map(move |(_, c)| {
                let mut f = whole.clone();
                c.fill(&mut f);
                f
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(key: u64) -> Observation {
        Observation {
            generative: true,
            stream: key,
            user_turns: 1,
            ..Observation::default()
        }
    }

    #[test]
    fn followed_streams_are_bounded() {
        // 1,136 bytes, allocated only for an account with a second client setting.
        let bytes = std::mem::size_of::<Streams>();
        assert!(bytes <= 1280, "{bytes}");
    }

    #[test]
    fn a_stream_that_grows_past_a_followed_one_takes_its_place() {
        let shape = Shape::default();
        let mut s = Streams::starting(1, 50);
        for _ in 0..30 {
            s.note(2, &call(2), &shape);
        }
        // Stream 3 comes; it must outgrow stream 2 (30 calls) by the margin to be followed.
        for _ in 0..40 {
            s.note(3, &call(3), &shape);
        }
        assert!(s.slots.iter().all(|(k, _)| *k != 3));
        for _ in 0..20 {
            s.note(3, &call(3), &shape);
        }
        assert!(s.slots.iter().any(|(k, _)| *k == 3));
        assert!(
            s.slots.iter().any(|(k, _)| *k == 1),
            "the account's first stream stays"
        );
        let whole = Features::default();
        assert_eq!(
            s.features(&whole, 1).count(),
            1,
            "stream 1 has no calls since followed"
        );
    }
}
