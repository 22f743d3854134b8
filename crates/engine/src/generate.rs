//! The sampling loop: the model's logits, the watermark's bias, temperature and nucleus
//! truncation, the watermark's choice, until the end-of-turn token or the token limit.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use watermark::{softmax, top_p, Watermark};

use crate::model::{EngineError, Model};
use crate::tokenizer::TextStream;

/// How to sample, as the request asked.
#[derive(Debug, Clone)]
pub struct Params {
    pub max_tokens: usize,
    /// The end of turn is not sampled before this many tokens (vLLM's `min_tokens`): what a
    /// benchmark of long answers needs.
    pub min_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    /// Seeds the draws: the same seed, prompt and mark give the same answer.
    pub seed: u64,
    /// How many most likely alternatives to report per token (`top_logprobs`); `None`: no
    /// log-probabilities at all.
    pub logprobs: Option<usize>,
}

/// One generated token's log-probability and its most likely alternatives.
#[derive(Debug, Clone)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

#[derive(Debug, Clone)]
pub struct Generated {
    pub tokens: Vec<u32>,
    pub text: String,
    /// `stop` (the model ended its turn) or `length` (the token limit).
    pub finish_reason: &'static str,
    pub prompt_tokens: usize,
    pub logprobs: Vec<TokenLogprob>,
}

/// Log-softmax of `logits` at temperature 1: the model's log-probabilities.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|l| (l - top).exp()).sum();
    let ln = sum.ln() + top;
    logits.iter().map(|l| l - ln).collect()
}

/// Generates an answer to `prompt` (token ids), marked by `mark` when given; `on_text`
/// receives the text as it is made (a streamed answer) and returns whether to go on (a
/// client that left stops the generation).
pub fn generate(
    model: &mut Model,
    prompt: &[u32],
    params: &Params,
    mark: Option<&Watermark>,
    mut on_text: impl FnMut(&str, Option<&TokenLogprob>) -> bool,
) -> Result<Generated, EngineError> {
    if prompt.is_empty() {
        return Err(EngineError("the prompt is empty".into()));
    }
    let room = model.context_length.saturating_sub(prompt.len());
    if room == 0 {
        return Err(EngineError(format!(
            "the prompt is {} tokens; the model reads at most {}",
            prompt.len(),
            model.context_length
        )));
    }
    let end_of_turn = model.tokenizer.id("<|im_end|>");
    let eos = model.tokenizer.eos();
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut sequence = prompt.to_vec();
    let mut out = Vec::new();
    let mut logprobs = Vec::new();
    let mut stream = TextStream::default();
    let mut text = String::new();
    let mut finish_reason = "length";
    let mut logits = model.forward(prompt, 0)?;
    for _ in 0..params.max_tokens.min(room) {
        if out.len() < params.min_tokens {
            for end in [Some(eos), end_of_turn].into_iter().flatten() {
                if let Some(l) = logits.get_mut(end as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
        if let Some(mark) = mark {
            mark.bias(&sequence, &mut logits);
        }
        let mut probs = softmax(&logits, params.temperature);
        top_p(&mut probs, params.top_p);
        let u: f64 = rng.gen();
        let next = match mark {
            Some(mark) => mark.choose(&sequence, &probs, u),
            None => watermark::sample_plain(&probs, u),
        };
        if next == eos || Some(next) == end_of_turn {
            finish_reason = "stop";
            break;
        }
        let lp = params.logprobs.map(|k| {
            let ls = log_softmax(&logits);
            let mut order: Vec<u32> = (0..ls.len() as u32).collect();
            order.sort_by(|&a, &b| ls[b as usize].total_cmp(&ls[a as usize]));
            TokenLogprob {
                token: next,
                logprob: ls[next as usize],
                top: order
                    .into_iter()
                    .take(k)
                    .map(|t| (t, ls[t as usize]))
                    .collect(),
            }
        });
        let piece = stream.push(&model.tokenizer.token_bytes(next));
        let go_on = on_text(&piece, lp.as_ref());
        text.push_str(&piece);
        logprobs.extend(lp);
        out.push(next);
        sequence.push(next);
        if !go_on {
            finish_reason = "stop";
            break;
        }
        logits = model.forward(&[next], sequence.len() - 1)?;
    }
    let rest = stream.push(&[]);
    if !rest.is_empty() {
        on_text(&rest, None);
        text.push_str(&rest);
    }
    Ok(Generated {
        tokens: out,
        text,
        finish_reason,
        prompt_tokens: prompt.len(),
        logprobs,
    })
}
