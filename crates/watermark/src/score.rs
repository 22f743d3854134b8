//! Finding a mark: score a token sequence against one key and say how surprising the score
//! would be for a text written without it.

use std::collections::HashSet;

use serde::Serialize;

use crate::stats::{ln_binomial_tail, ln_gamma_tail};
use crate::{is_green, open_unit, Master, Scheme, Watermark};

/// What the detector concludes of one text and one key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    pub key_id: String,
    pub scheme: &'static str,
    /// Previous tokens seeding each step.
    pub context: usize,
    pub tokens: usize,
    /// Positions scored: those with a full context, each (context, token) pair once.
    pub scored: usize,
    /// Positions left out as repeats of a (context, token) pair already scored.
    pub repeats: usize,
    /// KGW: green tokens among the scored.
    pub green: Option<usize>,
    /// KGW: the z-score of the green count; Gumbel: the sum of `-ln(1 - r)`.
    pub score: f64,
    /// The chance of a score this high or higher in a text written without this key; `None`
    /// when the text is too short to judge.
    pub p_value: Option<f64>,
    /// Its base-10 logarithm, which stays readable where the p-value itself underflows.
    pub log10_p_value: Option<f64>,
    pub judgement: Judgement,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    /// Fewer scored tokens than asked for: no p-value is given.
    TooShort,
    Judged,
}

/// Scores `tokens` (in the engine's tokenizer) against `wm`; fewer than `min_scored` scored
/// positions is too short to judge.
pub fn detect(wm: &Watermark, tokens: &[u32], min_scored: usize) -> Detection {
    let h = wm.context;
    let mut seen: HashSet<(u64, u32)> = HashSet::new();
    let (mut scored, mut repeats, mut green, mut sum) = (0usize, 0usize, 0usize, 0.0f64);
    for i in h..tokens.len() {
        let seed = wm.key.seed(&tokens[i - h..i]);
        let t = tokens[i];
        if !seen.insert((seed, t)) {
            repeats += 1;
            continue;
        }
        scored += 1;
        match wm.scheme {
            Scheme::Kgw { gamma, .. } => green += usize::from(is_green(seed, t, gamma)),
            // -ln(1 - r): Exp(1) when r is uniform.
            Scheme::Gumbel => sum += -(1.0 - open_unit(seed, t)).ln(),
        }
    }
    let (score, ln_p, green) = match wm.scheme {
        Scheme::Kgw { gamma, .. } => {
            let n = scored as f64;
            let z = if scored == 0 {
                0.0
            } else {
                (green as f64 - gamma * n) / (n * gamma * (1.0 - gamma)).sqrt()
            };
            (z, ln_binomial_tail(green, scored, gamma), Some(green))
        }
        Scheme::Gumbel => (sum, ln_gamma_tail(scored, sum), None),
    };
    let judged = scored >= min_scored.max(1);
    Detection {
        key_id: wm.key_id().to_string(),
        scheme: wm.scheme.name(),
        context: h,
        tokens: tokens.len(),
        scored,
        repeats,
        green,
        score,
        p_value: judged.then(|| ln_p.exp()),
        log10_p_value: judged.then(|| ln_p / std::f64::consts::LN_10),
        judgement: if judged {
            Judgement::Judged
        } else {
            Judgement::TooShort
        },
    }
}

/// One account's key tested among several ([`test_keys`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyTest {
    pub account: String,
    #[serde(flatten)]
    pub detection: Detection,
    /// Found at the family-wise level: p below `alpha / keys tested`.
    pub marked: bool,
}

/// Whose answer is this? Each of `accounts`' keys (derived from `master`, marking as `scheme`
/// with `context` tokens) tested on `tokens`, each judged at `alpha / accounts.len()`
/// (Bonferroni, so that testing many keys does not find a mark by chance), in the order given.
/// A name that is no account's gives a control key, whose p-value is uniform.
pub fn test_keys(
    master: &Master,
    (scheme, context): (Scheme, usize),
    accounts: &[String],
    tokens: &[u32],
    min_scored: usize,
    alpha: f64,
) -> Result<Vec<KeyTest>, crate::ConfigError> {
    let level = alpha / accounts.len().max(1) as f64;
    accounts
        .iter()
        .map(|account| {
            let wm = Watermark::new(master.key_for(account), scheme, context)?;
            let detection = detect(&wm, tokens, min_scored);
            Ok(KeyTest {
                account: account.clone(),
                marked: detection.p_value.is_some_and(|p| p < level),
                detection,
            })
        })
        .collect()
}
