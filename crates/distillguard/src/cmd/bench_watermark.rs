//! `distillguard bench watermark`: the evidence side's figures (`bench/README.md`): the
//! detector's false positives on human text, its power against length and edits on the
//! engine's marked answers, the quality cost of each δ, and the speeds (load, decode, the
//! mark's cost per token, detection). Needs the `engine` feature and the model file.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: crate::cmd::engine::ModelArgs,
    /// The shared data folder with corpora/ (default: ../shared/data, else the built-in sample).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Human texts scored for false positives (each cut to --fpr-tokens).
    #[arg(long, default_value_t = 10_000)]
    pub human: usize,
    #[arg(long, default_value_t = 200)]
    pub fpr_tokens: usize,
    /// Answers generated per δ: to the Self-Instruct seed tasks (175), then to the first
    /// turns of the chat corpora.
    #[arg(long, default_value_t = 10)]
    pub texts: usize,
    /// Prompts skipped first: a later run answers the next ones, and the two runs' counts
    /// pool as one (each answer is seeded by its prompt's position).
    #[arg(long, default_value_t = 0)]
    pub from: usize,
    /// Tokens per generated answer.
    #[arg(long, default_value_t = 400)]
    pub tokens: usize,
    /// The KGW biases to generate with (0: unmarked, the engine's own output).
    #[arg(long, value_delimiter = ',', default_value = "0,2,4")]
    pub deltas: Vec<f32>,
    /// Skip the perplexity of each answer (one more model pass per token: half the time).
    #[arg(long)]
    pub skip_quality: bool,
    /// Keys each unmarked answer (δ = 0) is tested with, per scheme (KGW over one and over
    /// two tokens, Gumbel): the false-positive rate on the engine's own output. The key is
    /// the test's only randomness (the text is fixed and was not made with it), so the keys
    /// of one answer are independent tests of the same text.
    #[arg(long, default_value_t = 50)]
    pub fpr_keys: usize,
    /// Append every generated answer to this JSON-lines file ({prompt, delta, seed, text}),
    /// so that later measurements read them again instead of decoding them again.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Test the unmarked answers (δ = 0) of files written by --save with the unused keys,
    /// instead of generating answers (no decoding; the marked-answer figures are skipped).
    #[arg(long, value_delimiter = ',')]
    pub read_answers: Vec<PathBuf>,
}

/// The unmarked answers' false-positive test: each answer (cut to `cut` tokens) against every
/// unused key, per scheme, with the rate at 1e-2 and 1e-3, the KS distance from uniform, and
/// how the rate spreads over keys. Over keys the tests are independent; over the answers of
/// one key they are not (answers share their commonest pairs, green or not under that key
/// for all of them), so one key's rate strays from the nominal more than independent tests
/// would, and only the spread over many keys shows it.
#[cfg(feature = "engine")]
fn unmarked_fpr(answers: &[Vec<u32>], keys: &[(&str, watermark::Watermark)], cut: usize) {
    use watermark::{detect, ks_critical, ks_sides};
    let mut by_scheme = std::collections::BTreeMap::<&str, (Vec<f64>, Vec<usize>)>::new();
    for (what, key) in keys {
        let p: Vec<f64> = answers
            .iter()
            .filter_map(|t| detect(key, &t[..t.len().min(cut)], 50).p_value)
            .collect();
        let e = by_scheme.entry(what).or_default();
        e.1.push(p.iter().filter(|&&x| x < 1e-2).count());
        e.0.extend(p);
    }
    for (what, (p, per_key)) in &by_scheme {
        let below = |alpha: f64| p.iter().filter(|&&x| x < alpha).count();
        let (excess, deficit) = ks_sides(p);
        let n = p.len().max(1) as f64;
        let k = per_key.len().max(1) as f64;
        let mean = per_key.iter().sum::<usize>() as f64 / k;
        let var = per_key
            .iter()
            .map(|&c| (c as f64 - mean).powi(2))
            .sum::<f64>()
            / k;
        let texts = n / k;
        println!(
            "  unmarked, {} keys ({what}), {} tests on {} answers of up to {cut} tokens: FPR at 1e-2 {} ({:.4}), at 1e-3 {} ({:.5}); KS distance from uniform {:.4} (0.001 critical {:.4}; small p-values in excess {excess:.4}, in deficit {deficit:.4}); answers under 1e-2 per key: mean {mean:.2}, variance {var:.2} (independent answers: {:.2}), most {}",
            per_key.len(),
            p.len(),
            answers.len(),
            below(1e-2),
            below(1e-2) as f64 / n,
            below(1e-3),
            below(1e-3) as f64 / n,
            excess.max(deficit),
            ks_critical(p.len()),
            texts * 0.01 * 0.99,
            per_key.iter().max().unwrap_or(&0),
        );
    }
}

/// The engine's answer to `prompt` as a user's message, at temperature 1 and exactly `tokens`
/// long (the end of turn waits for the full length: long texts are what the evidence benches
/// measure), marked with `mark` when given; with the prompt's tokens.
#[cfg(feature = "engine")]
pub(crate) fn long_answer(
    model: &mut engine::Model,
    prompt: &str,
    tokens: usize,
    seed: u64,
    mark: Option<&watermark::Watermark>,
) -> anyhow::Result<(Vec<u32>, engine::Generated)> {
    let ids = model
        .tokenizer
        .encode(&engine::chat_prompt(&[("user".into(), prompt.to_owned())]));
    let params = engine::Params {
        max_tokens: tokens,
        min_tokens: tokens,
        temperature: 1.0,
        top_p: 1.0,
        seed,
        logprobs: None,
    };
    let g =
        engine::generate(model, &ids, &params, mark, |_, _| true).map_err(anyhow::Error::msg)?;
    Ok((ids, g))
}

#[cfg(not(feature = "engine"))]
pub fn run(_: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!(crate::cmd::engine::not_built())
}

#[cfg(feature = "engine")]
pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    use rand::{Rng, SeedableRng};
    use std::io::Write;
    use std::time::Instant;
    use watermark::{detect, Master, Scheme, Watermark};

    let master = Master::new(b"bench watermark master secret, fixed")?;
    let mark = |delta: f32, account: &str| {
        Watermark::new(
            master.key_for(account),
            Scheme::Kgw { gamma: 0.25, delta },
            1,
        )
        .expect("a valid mark")
    };
    let started = Instant::now();
    let mut model = engine::Model::load(&a.model.path).map_err(anyhow::Error::msg)?;
    let load_secs = started.elapsed().as_secs_f64();
    println!("load: {load_secs:.2} s ({})", model.name);

    // The keys unmarked answers are tested with: never used to mark anything.
    let fpr_keys: Vec<(&str, Watermark)> = (0..a.fpr_keys)
        .flat_map(|k| {
            let key = || master.key_for(&format!("unused {k}"));
            let kgw = Scheme::Kgw {
                gamma: 0.25,
                delta: 2.0,
            };
            [
                ("KGW, one token", Watermark::new(key(), kgw, 1)),
                ("KGW, two tokens", Watermark::new(key(), kgw, 2)),
                (
                    "Gumbel, one token",
                    Watermark::new(key(), Scheme::Gumbel, 1),
                ),
            ]
        })
        .map(|(what, w)| (what, w.expect("a valid mark")))
        .collect();
    if !a.read_answers.is_empty() {
        let mut answers = Vec::new();
        for path in &a.read_answers {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            for (n, line) in text.lines().enumerate() {
                let v: serde_json::Value = serde_json::from_str(line)
                    .map_err(|e| anyhow::anyhow!("{} line {}: {e}", path.display(), n + 1))?;
                if v["delta"].as_f64() == Some(0.0) {
                    let answer = v["text"].as_str().unwrap_or_default();
                    answers.push(model.tokenizer.encode(answer));
                }
            }
        }
        println!("unmarked answers read: {}", answers.len());
        unmarked_fpr(&answers, &fpr_keys, a.fpr_tokens);
        return Ok(ExitCode::SUCCESS);
    }

    // 1. Detection speed, one core: random tokens (what a text is to the detector).
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let random: Vec<u32> = (0..2_000_000).map(|_| rng.gen_range(0..49_152)).collect();
    let t = Instant::now();
    let d = detect(&mark(2.0, "acme"), &random, 50);
    let per_sec = random.len() as f64 / t.elapsed().as_secs_f64();
    println!(
        "detection speed: {:.2} M tokens/s on one core (p on random tokens {:.3})",
        per_sec / 1e6,
        d.p_value.unwrap_or(1.0)
    );

    // 2. False positives on human text, through the model's tokenizer.
    let (corpora, source) = simulate::Corpora::find(a.data_dir.as_deref())?;
    let mut texts: Vec<String> = corpora.turns().map(str::to_owned).collect();
    for p in corpora.seeds.iter().chain(&corpora.math) {
        texts.push(format!("{} {}", p.prompt, p.answer));
    }
    let mut p_values = Vec::new();
    let key = mark(2.0, "acme");
    for text in &texts {
        let mut tokens = model.tokenizer.encode(text);
        tokens.truncate(a.fpr_tokens);
        if tokens.len() < 100 {
            continue;
        }
        if let Some(p) = detect(&key, &tokens, 50).p_value {
            p_values.push(p);
        }
        if p_values.len() >= a.human {
            break;
        }
    }
    let fpr = |alpha: f64| {
        p_values.iter().filter(|&&p| p < alpha).count() as f64 / p_values.len().max(1) as f64
    };
    println!(
        "human text ({source}): {} texts of 100-{} tokens; FPR at 1e-2: {:.4}, at 1e-3: {:.5}",
        p_values.len(),
        a.fpr_tokens,
        fpr(1e-2),
        fpr(1e-3)
    );

    // 3. Marked answers: power against length and edits, quality, decode speed, mark cost.
    let seeds = corpora
        .seeds
        .iter()
        .map(|p| p.prompt.clone())
        .filter(|p| p.len() > 20);
    let chats = corpora
        .chats
        .iter()
        .filter_map(|c| c.turns.first().map(|t| t.content.clone()))
        .filter(|p| p.len() > 20 && p.len() < 600);
    let prompts: Vec<(usize, String)> = seeds
        .chain(chats)
        .enumerate()
        .skip(a.from)
        .take(a.texts)
        .collect();
    let mut save = match &a.save {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| anyhow::anyhow!("opening {}: {e}", p.display()))?,
        ),
        None => None,
    };
    for &delta in &a.deltas {
        let wm = mark(delta, "acme");
        let mut unmarked: Vec<Vec<u32>> = Vec::new();
        let other = mark(delta, "globex");
        let (mut nll, mut counted, mut gen_tokens, mut gen_secs) = (0.0f64, 0usize, 0usize, 0.0);
        let mut found = std::collections::BTreeMap::<String, (usize, usize)>::new();
        let mut control = Vec::new();
        for (done, (i, prompt)) in prompts.iter().enumerate() {
            let i = *i;
            let t = Instant::now();
            let (ids, g) = long_answer(&mut model, prompt, a.tokens, i as u64, Some(&wm))?;
            gen_secs += t.elapsed().as_secs_f64();
            gen_tokens += g.tokens.len();
            // Quality: the answer's negative log-likelihood under the unmarked model.
            let mut logits = if a.skip_quality {
                Vec::new()
            } else {
                model.forward(&ids, 0).map_err(anyhow::Error::msg)?
            };
            for (k, &tok) in g.tokens.iter().enumerate().filter(|_| !a.skip_quality) {
                nll -= f64::from(engine::log_softmax(&logits)[tok as usize]);
                counted += 1;
                logits = model
                    .forward(&[tok], ids.len() + k)
                    .map_err(anyhow::Error::msg)?;
            }
            if let Some(f) = &mut save {
                let line = serde_json::json!({"prompt": prompt, "delta": delta, "seed": i, "text": g.text});
                writeln!(f, "{line}")?;
            }
            // The detector reads text, as a stranger would.
            let tokens = model.tokenizer.encode(&g.text);
            if delta == 0.0 {
                unmarked.push(tokens.clone());
            }
            let mut edit_rng = rand_chacha::ChaCha8Rng::seed_from_u64(100 + i as u64);
            let mut trial = |name: String, toks: &[u32]| {
                let e = found.entry(name).or_default();
                e.1 += 1;
                if detect(&wm, toks, 25).p_value.is_some_and(|p| p < 1e-3) {
                    e.0 += 1;
                }
            };
            for len in [50, 100, 200, 400] {
                if tokens.len() >= len {
                    trial(format!("{len} tokens"), &tokens[..len]);
                }
            }
            let n = tokens.len().min(200);
            for share in [0.1, 0.3] {
                let substituted: Vec<u32> = tokens[..n]
                    .iter()
                    .map(|&t| {
                        if edit_rng.gen_bool(share) {
                            edit_rng.gen_range(0..49_152)
                        } else {
                            t
                        }
                    })
                    .collect();
                trial(
                    format!("200, {:.0}% substituted", share * 100.0),
                    &substituted,
                );
                let deleted: Vec<u32> = tokens[..n]
                    .iter()
                    .copied()
                    .filter(|_| !edit_rng.gen_bool(share))
                    .collect();
                trial(format!("200, {:.0}% deleted", share * 100.0), &deleted);
            }
            control.extend(detect(&other, &tokens, 25).p_value);
            // A long run shows its figures as it goes: stopped early, it still said something.
            if (done + 1) % 25 == 0 && done + 1 < prompts.len() {
                let so_far: Vec<String> = found
                    .iter()
                    .map(|(what, (hit, n))| format!("{what} {hit}/{n}"))
                    .collect();
                eprintln!(
                    "delta {delta}, {} answers so far: {}",
                    done + 1,
                    so_far.join("; ")
                );
            }
        }
        let ppl = if a.skip_quality {
            "not measured".to_owned()
        } else {
            format!("{:.2}", (nll / counted.max(1) as f64).exp())
        };
        println!(
            "delta {delta}: {} answers, {:.1} tok/s decode, perplexity under the unmarked model {ppl}; another key's p < 1e-3: {} of {}",
            prompts.len(),
            gen_tokens as f64 / gen_secs,
            control.iter().filter(|&&p| p < 1e-3).count(),
            control.len()
        );
        for (what, (hit, n)) in &found {
            println!("  TPR at p < 1e-3, {what}: {hit}/{n}");
        }
        if !unmarked.is_empty() {
            unmarked_fpr(&unmarked, &fpr_keys, a.fpr_tokens);
        }
    }

    // 4. The mark's cost per token: bias + choice against one decode step.
    let wm = mark(2.0, "acme");
    let ids = model
        .tokenizer
        .encode("The lighthouse keeper watched the storm");
    let mut logits = model.forward(&ids, 0).map_err(anyhow::Error::msg)?;
    let steps = 20;
    let t = Instant::now();
    for k in 0..steps {
        logits = model
            .forward(&[ids[k % ids.len()]], ids.len() + k)
            .map_err(anyhow::Error::msg)?;
    }
    let decode = t.elapsed().as_secs_f64() / steps as f64;
    let t = Instant::now();
    let reps = 200;
    for k in 0..reps {
        let mut l = logits.clone();
        wm.bias(&ids[..1 + k % ids.len()], &mut l);
        let p = watermark::softmax(&l, 1.0);
        std::hint::black_box(wm.choose(&ids, &p, 0.5));
    }
    let plain_t = Instant::now();
    for _ in 0..reps {
        let l = logits.clone();
        let p = watermark::softmax(&l, 1.0);
        std::hint::black_box(watermark::sample_plain(&p, 0.5));
    }
    let plain = plain_t.elapsed().as_secs_f64() / reps as f64;
    let marked = (plain_t - t).as_secs_f64() / reps as f64;
    println!(
        "decode step {:.1} ms; sampling {:.3} ms plain, {:.3} ms marked: the mark costs {:.2} % of decode time",
        decode * 1e3,
        plain * 1e3,
        marked * 1e3,
        (marked - plain) / decode * 100.0
    );
    Ok(ExitCode::SUCCESS)
}
