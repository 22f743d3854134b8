//! Finding a mark: score a token sequence against one key and say how surprising the score
//! would be for a text written without it.

use std::collections::{HashMap, HashSet};

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
    /// Positions left out by a filter of windows ([`detect_within`]): 0 without one.
    pub filtered: usize,
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

/// The watermark windows (the tokens that seed a step) of texts we marked: the filter of
/// Sander et al. 2024 ("Watermarking makes language models radioactive"). A student of our
/// answers keeps the mark only after windows it saw in them; positions after any other window
/// are noise that dilutes the test, and leaving them out sharpens it.
///
/// Why the p-value stays exact: a window enters the set because it was *written* in our text
/// (its own tokens chosen under the key, through other windows), not because of the tokens
/// that followed it. Whether a suspect's token after the window is green is a keyed function
/// of (window, token), independent of how the window got into the set; so under the null each
/// kept (window, token) pair is still green with probability `γ`. Filtering on the pairs
/// themselves would not be: our pairs are green more often than `γ` by construction, and an
/// innocent model writing common pairs would look marked.
#[derive(Debug, Clone, Default)]
pub struct Windows {
    /// By width (1 to 4 tokens, index 0 unused): every mark's context width is served.
    by_width: [HashSet<Vec<u32>>; MAX_WIDTH + 1],
}

impl Windows {
    /// The windows of every width in `texts`; with `top`, only each width's `top` most frequent
    /// (ties broken by the tokens, so the set does not depend on the texts' order).
    pub fn of<'a>(texts: impl IntoIterator<Item = &'a [u32]>, top: Option<usize>) -> Self {
        let mut by_width: [HashSet<Vec<u32>>; MAX_WIDTH + 1] = Default::default();
        for (width, count) in counts(texts).into_iter().enumerate() {
            let mut ranked: Vec<(&[u32], usize)> = count.into_iter().collect();
            ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            ranked.truncate(top.unwrap_or(usize::MAX));
            by_width[width] = ranked.into_iter().map(|(w, _)| w.to_vec()).collect();
        }
        Self { by_width }
    }

    /// The windows `ours` uses at least `ratio` times as often (a share of all its windows of
    /// that width) as `reference` does (public text; a window it never uses counts as once):
    /// windows after which a student's next token most likely came from us, since public
    /// text, the rest of any student's diet, rarely writes them. Our answers' most common
    /// windows ("the", a comma) are everyone's, and a student's followers there are mostly
    /// not ours. Chosen from the texts alone, never a key, so the p-value stays exact.
    pub fn over_represented<'a>(
        ours: impl IntoIterator<Item = &'a [u32]>,
        reference: impl IntoIterator<Item = &'a [u32]>,
        ratio: f64,
    ) -> Self {
        let ours = counts(ours);
        let mut public: [HashMap<&[u32], usize>; MAX_WIDTH + 1] = Default::default();
        let mut public_total = [0usize; MAX_WIDTH + 1];
        for text in reference {
            for width in 1..=MAX_WIDTH {
                for window in text.windows(width) {
                    public_total[width] += 1;
                    // Only our windows are counted: the reference can be large.
                    if let Some((&key, _)) = ours[width].get_key_value(window) {
                        *public[width].entry(key).or_default() += 1;
                    }
                }
            }
        }
        let mut by_width: [HashSet<Vec<u32>>; MAX_WIDTH + 1] = Default::default();
        for width in 1..=MAX_WIDTH {
            let ours_total = ours[width].values().sum::<usize>().max(1) as f64;
            let public_total = public_total[width].max(1) as f64;
            by_width[width] = ours[width]
                .iter()
                .filter(|(w, &c)| {
                    let elsewhere = public[width].get(*w).copied().unwrap_or(0).max(1);
                    c as f64 / ours_total >= ratio * elsewhere as f64 / public_total
                })
                .map(|(w, _)| w.to_vec())
                .collect();
        }
        Self { by_width }
    }

    /// How many windows of `width` tokens are kept.
    pub fn len(&self, width: usize) -> usize {
        self.by_width.get(width).map_or(0, HashSet::len)
    }

    pub fn is_empty(&self) -> bool {
        self.by_width.iter().all(HashSet::is_empty)
    }

    fn contains(&self, window: &[u32]) -> bool {
        self.by_width
            .get(window.len())
            .is_some_and(|set| set.contains(window))
    }
}

/// The widest window a mark seeds from ([`Watermark::new`] allows 1 to 4 tokens).
const MAX_WIDTH: usize = 4;

/// How often each window of each width occurs in `texts` (index: the width; 0 unused).
fn counts<'a>(
    texts: impl IntoIterator<Item = &'a [u32]>,
) -> [HashMap<&'a [u32], usize>; MAX_WIDTH + 1] {
    let mut counts: [HashMap<&[u32], usize>; MAX_WIDTH + 1] = Default::default();
    for text in texts {
        for (width, count) in counts.iter_mut().enumerate().skip(1) {
            for window in text.windows(width) {
                *count.entry(window).or_default() += 1;
            }
        }
    }
    counts
}

/// Scores `tokens` (in the engine's tokenizer) against `wm`; fewer than `min_scored` scored
/// positions is too short to judge.
pub fn detect(wm: &Watermark, tokens: &[u32], min_scored: usize) -> Detection {
    score(wm, tokens, min_scored, None)
}

/// [`detect`], scoring only the positions whose window is among `windows` (the texts we
/// marked): the radioactivity test's filter. The rest are counted as `filtered`.
pub fn detect_within(
    wm: &Watermark,
    tokens: &[u32],
    min_scored: usize,
    windows: &Windows,
) -> Detection {
    score(wm, tokens, min_scored, Some(windows))
}

fn score(
    wm: &Watermark,
    tokens: &[u32],
    min_scored: usize,
    windows: Option<&Windows>,
) -> Detection {
    let h = wm.context;
    let mut seen: HashSet<(u64, u32)> = HashSet::new();
    let (mut scored, mut repeats, mut filtered, mut green, mut sum) =
        (0usize, 0usize, 0usize, 0usize, 0.0f64);
    for i in h..tokens.len() {
        if windows.is_some_and(|w| !w.contains(&tokens[i - h..i])) {
            filtered += 1;
            continue;
        }
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
        filtered,
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
/// A name that is no account's gives a control key, whose p-value is uniform. With `windows`,
/// only the positions after a window of texts we marked are scored ([`detect_within`]).
pub fn test_keys(
    master: &Master,
    (scheme, context): (Scheme, usize),
    accounts: &[String],
    tokens: &[u32],
    min_scored: usize,
    alpha: f64,
    windows: Option<&Windows>,
) -> Result<Vec<KeyTest>, crate::ConfigError> {
    let level = alpha / accounts.len().max(1) as f64;
    accounts
        .iter()
        .map(|account| {
            let wm = Watermark::new(master.key_for(account), scheme, context)?;
            let detection = score(&wm, tokens, min_scored, windows);
            Ok(KeyTest {
                account: account.clone(),
                marked: detection.p_value.is_some_and(|p| p < level),
                detection,
            })
        })
        .collect()
}
