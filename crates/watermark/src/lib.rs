//! Watermarks in sampled text, and the statistics that find them.
//!
//! A reverse proxy cannot mark text: the mark lives in the sampling step, so this crate is what
//! a model engine that owns its sampling applies, token by token. It is pure (no I/O, no clock,
//! no randomness of its own: the caller passes the uniform draw), so the same text and key
//! always give the same evidence, on any machine.
//!
//! - [`Master`] → [`Key`]: one key per account, derived from one master secret (HKDF-SHA256),
//!   so a leaked text points to the account it was served to. A key has a public [`KeyId`],
//!   which the exchange log records; the key itself is never written anywhere.
//! - [`Watermark`]: a key, a [`Scheme`] and how many previous tokens seed each step (`h`, 1 to 4).
//!   **KGW** (Kirchenbauer et al. 2023): at each step a keyed pseudo-random function of the
//!   previous `h` tokens splits the vocabulary; the "green" share `γ` gets `δ` added to its
//!   logits ([`Watermark::bias`]). **Gumbel** (Aaronson 2022): the same function draws one
//!   uniform `r` per candidate and the token maximising `r^(1/p)` is chosen
//!   ([`Watermark::choose`]): exactly a sample from `p`, so the text's distribution is
//!   unchanged, yet the choice is predictable to whoever holds the key.
//! - [`detect`]: scores a token sequence against a key: the number of green tokens (KGW) or the
//!   sum of `-ln(1 - r)` (Gumbel) over the scored positions, each (context, token) pair counted
//!   once (a repeated phrase is not repeated evidence), and an **exact p-value** under the null
//!   hypothesis that the text was written without this key (binomial tail; Gamma tail). Below
//!   a minimum number of scored tokens the answer is "too short to judge", never a p-value it
//!   cannot stand behind. [`detect_within`] scores only the positions after a window of texts
//!   we marked ([`Windows`]): the radioactivity test's filter, which keeps the p-value exact.
//!
//! What the p-value assumes: under the null, each scored (context, token) pair is green with
//! probability `γ` (its `r` is uniform), independently, which holds when the text's author did
//! not know the key; deduplication removes the repeats that would break independence. What it
//! cannot prove is in `docs/evidence.md` (paraphrase removes a mark; radioactivity needs
//! enough of our text in a student's training data).

mod key;
mod sample;
mod score;
mod stats;

pub use key::{Key, KeyError, KeyId, Master};
pub use sample::{sample_plain, softmax, top_p};
pub use score::{detect, detect_within, test_keys, Detection, Judgement, KeyTest, Windows};
pub use stats::{binomial_tail, gamma_tail, ks_critical, ks_sides, ks_uniform};

use serde::{Deserialize, Serialize};

/// How the mark is made.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "scheme", rename_all = "lowercase")]
pub enum Scheme {
    /// Green lists: a share `gamma` of the vocabulary, `delta` added to their logits.
    Kgw { gamma: f64, delta: f32 },
    /// Gumbel-max sampling with keyed uniforms: distortion-free.
    Gumbel,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Kgw { .. } => "kgw",
            Scheme::Gumbel => "gumbel",
        }
    }
}

/// Why a watermark cannot be built as asked.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A key, a scheme and a context width: everything that marks, and everything that detects.
#[derive(Debug, Clone)]
pub struct Watermark {
    key: Key,
    scheme: Scheme,
    context: usize,
}

impl Watermark {
    /// `context`: how many previous tokens seed a step (1 to 4: wider is harder to find by
    /// frequency analysis, narrower survives edits better).
    pub fn new(key: Key, scheme: Scheme, context: usize) -> Result<Self, ConfigError> {
        if !(1..=4).contains(&context) {
            return Err(ConfigError(format!(
                "the context width must be 1 to 4 tokens, not {context}"
            )));
        }
        if let Scheme::Kgw { gamma, delta } = scheme {
            if !(gamma > 0.0 && gamma < 1.0) {
                return Err(ConfigError(format!(
                    "gamma (the green share) must be between 0 and 1, not {gamma}"
                )));
            }
            if !(delta.is_finite() && delta >= 0.0) {
                return Err(ConfigError(format!(
                    "delta must be a finite number, 0 or more, not {delta}"
                )));
            }
        }
        Ok(Self {
            key,
            scheme,
            context,
        })
    }

    pub fn key_id(&self) -> &KeyId {
        self.key.id()
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn context(&self) -> usize {
        self.context
    }

    /// The same mark with another strength (an account's action may raise it: `degrade` → a
    /// larger δ). Gumbel has no strength.
    pub fn with_delta(mut self, delta: f32) -> Result<Self, ConfigError> {
        if let Scheme::Kgw { gamma, .. } = self.scheme {
            self.scheme = Scheme::Kgw { gamma, delta };
        }
        Self::new(self.key, self.scheme, self.context)
    }

    /// The keyed seed of the step after `previous` (its last `context` tokens; fewer at the
    /// start of a text).
    fn seed(&self, previous: &[u32]) -> u64 {
        let from = previous.len().saturating_sub(self.context);
        self.key.seed(&previous[from..])
    }

    /// KGW: adds δ to the logits of this step's green tokens. Gumbel: leaves them (its mark is
    /// in [`Watermark::choose`]).
    pub fn bias(&self, previous: &[u32], logits: &mut [f32]) {
        let Scheme::Kgw { gamma, delta } = self.scheme else {
            return;
        };
        if delta == 0.0 {
            return;
        }
        let seed = self.seed(previous);
        for (t, l) in logits.iter_mut().enumerate() {
            if is_green(seed, t as u32, gamma) {
                *l += delta;
            }
        }
    }

    /// Chooses the next token from `probs` (tempered and truncated already). Gumbel: the token
    /// maximising `r^(1/p)` for this step's keyed uniforms; KGW: the plain inverse-CDF draw with
    /// `u` (its mark is in the logits).
    ///
    /// Gumbel's choice is a function of the context, so a context met again would choose the
    /// same token again, and a text could loop. Where the last `context` tokens already
    /// appeared earlier in `previous`, this step is drawn plainly with `u` instead: unmarked,
    /// and not scored twice either (the detector counts each (context, token) pair once).
    pub fn choose(&self, previous: &[u32], probs: &[f32], u: f64) -> u32 {
        match self.scheme {
            Scheme::Kgw { .. } => sample_plain(probs, u),
            Scheme::Gumbel if self.context_seen_before(previous) => sample_plain(probs, u),
            Scheme::Gumbel => {
                let seed = self.seed(previous);
                let mut best = (f64::NEG_INFINITY, 0u32);
                for (t, &p) in probs.iter().enumerate() {
                    if p <= 0.0 {
                        continue;
                    }
                    // argmax r^(1/p) = argmax ln(r) / p.
                    let v = open_unit(seed, t as u32).ln() / f64::from(p);
                    if v > best.0 {
                        best = (v, t as u32);
                    }
                }
                best.1
            }
        }
    }
}

impl Watermark {
    /// Whether the last `context` tokens of `previous` also occur earlier in it.
    fn context_seen_before(&self, previous: &[u32]) -> bool {
        let h = self.context;
        if previous.len() <= h {
            return false;
        }
        let now = &previous[previous.len() - h..];
        previous[..previous.len() - 1].windows(h).any(|w| w == now)
    }
}

/// A mark as the exchange log names it: the key's public id, the scheme and the context width
/// (`wm1-…; scheme=kgw; gamma=0.25; delta=2; context=1`), never the key. The engine writes it
/// ([`Watermark::named`]); `evidence detect --watermark` reads it back ([`Named::parse`]), so
/// the detector tests what the engine marked with.
#[derive(Debug, Clone, PartialEq)]
pub struct Named {
    pub key_id: String,
    pub scheme: Scheme,
    pub context: usize,
}

impl Watermark {
    pub fn named(&self) -> String {
        match self.scheme {
            Scheme::Kgw { gamma, delta } => format!(
                "{}; scheme=kgw; gamma={gamma}; delta={delta}; context={}",
                self.key_id(),
                self.context
            ),
            Scheme::Gumbel => format!("{}; scheme=gumbel; context={}", self.key_id(), self.context),
        }
    }
}

impl Named {
    /// Reads what [`Watermark::named`] wrote; a clear error naming what is wrong otherwise.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let mut parts = text.split(';').map(str::trim);
        let key_id = parts.next().unwrap_or_default();
        if !key_id.starts_with("wm1-") {
            return Err(ConfigError(format!(
                "{text:?} does not start with a key id (wm1-…)"
            )));
        }
        let mut fields = std::collections::HashMap::new();
        for p in parts.filter(|p| !p.is_empty()) {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| ConfigError(format!("{p:?} is not name=value")))?;
            fields.insert(k, v);
        }
        let number = |k: &str| -> Result<f64, ConfigError> {
            fields
                .get(k)
                .ok_or_else(|| ConfigError(format!("{text:?} has no {k}")))?
                .parse()
                .map_err(|_| ConfigError(format!("{k} in {text:?} is not a number")))
        };
        let scheme = match fields.get("scheme").copied() {
            Some("kgw") => Scheme::Kgw {
                gamma: number("gamma")?,
                delta: number("delta")? as f32,
            },
            Some("gumbel") => Scheme::Gumbel,
            other => {
                return Err(ConfigError(format!(
                    "unknown scheme {other:?} in {text:?}: kgw or gumbel"
                )))
            }
        };
        Ok(Self {
            key_id: key_id.to_owned(),
            scheme,
            context: number("context")? as usize,
        })
    }
}

/// SplitMix64's finaliser: one keyed seed and a token give an independent-looking 64 bits.
fn mix(seed: u64, token: u32) -> u64 {
    let mut z = seed ^ u64::from(token).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform in [0, 1) for (seed, token).
fn unit(seed: u64, token: u32) -> f64 {
    (mix(seed, token) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform in (0, 1), never 0 (its logarithm is taken).
fn open_unit(seed: u64, token: u32) -> f64 {
    ((mix(seed, token) >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
}

fn is_green(seed: u64, token: u32, gamma: f64) -> bool {
    unit(seed, token) < gamma
}
