//! `distillguard bench radioactivity`: does a model trained on our marked answers carry the
//! mark into its own text (Sander et al. 2024, "Watermarking makes language models
//! radioactive")? The engine writes answers marked for one account and unmarked answers to the
//! same prompts; small *students* learn from them, alone (100 %) or as a small share (5 %) of
//! human text; each student then writes text of its own, and that text is scored against the
//! account's key and against control keys no text was ever marked with.
//!
//! The students are n-gram language models over the engine's tokens (Witten-Bell backoff,
//! trained by counting): the smallest model that can learn a mark whose green lists hang on the
//! previous token (`context = 1`, the engine's default), and one that trains on these CPUs in
//! seconds. A neural student generalises where an n-gram one copies, so it carries less of the
//! mark per token it saw; a fine-tuned SmolLM2 (the paper's setting) needs a GPU and is the
//! next measurement where one is lent. The test is the probe's: every (context, token) pair
//! scored once across all the student's text, an exact binomial p-value under the null that
//! the text owes nothing to the key, which holds whatever else the student learned from.
//!
//! The engine's answers are slow to write on a CPU (about 14 tokens/s here), so they are kept
//! in `--cache` as they come (each with the mark it was written under, so one cache serves
//! several marks, and the unmarked answers serve them all) and a rerun writes only the ones
//! missing. `--scheme gumbel` measures the distortion-free mark the same way.
//!
//! Each student is tested twice: on all its text, and within the windows of the marked answers
//! (the paper's filter, what `evidence probe --served` does): positions after a window the
//! student never saw in our answers owe nothing to our mark, and leaving them out stops them
//! diluting it. The unmarked students, tested within the same windows, show the filter keeps
//! the test exact.

#[cfg(any(feature = "engine", test))]
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(any(feature = "engine", test))]
use rand::Rng;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: crate::cmd::engine::ModelArgs,
    /// The shared data folder with corpora/ (default: ../shared/data, else the built-in sample).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Answers the engine writes on each side (marked and unmarked), one prompt each.
    #[arg(long, default_value_t = 60)]
    pub answers: usize,
    /// Tokens per answer.
    #[arg(long, default_value_t = 256)]
    pub tokens: usize,
    /// How the marked answers are marked (the engine's options and defaults).
    #[command(flatten)]
    pub mark: crate::cmd::engine::MarkArgs,
    /// Where the engine's answers are kept between runs (JSON lines).
    #[arg(long, default_value = "out/radioactivity-answers.jsonl")]
    pub cache: PathBuf,
    /// Shares of the student's training tokens that are the engine's answers (the rest human
    /// text from the corpora).
    #[arg(long, value_delimiter = ',', default_value = "1,0.05")]
    pub shares: Vec<f64>,
    /// Student orders (2: the next token from the previous one; 3: from the previous two).
    #[arg(long, value_delimiter = ',', default_value = "2,3")]
    pub orders: Vec<usize>,
    /// Tokens each student writes for the test (in texts of 200).
    #[arg(long, default_value_t = 20_000)]
    pub student_tokens: usize,
    /// Control keys tested beside the account's.
    #[arg(long, default_value_t = 5)]
    pub controls: usize,
    /// Each test is also run within the windows of the marked answers (the paper's filter,
    /// `watermark::Windows`); with this, only the N most frequent windows are kept.
    #[arg(long)]
    pub top_windows: Option<usize>,
    /// Keep only the windows our marked answers use at least this many times as often as
    /// human text no student trained on (`Windows::over_represented`): where a student's
    /// followers come mostly from us.
    #[arg(long)]
    pub over_represented: Option<f64>,
}

/// An n-gram language model over token ids, trained by counting: the student.
///
/// Sampling is interpolated Witten-Bell: at the longest context seen, the next token is one of
/// that context's followers (in proportion to their counts) with probability `c / (c + t)`
/// (`c` followers counted, `t` distinct), else the model backs off to one token less of
/// context, down to the unigram.
#[cfg(any(feature = "engine", test))]
pub struct Student {
    order: usize,
    /// `tables[k - 1]`: contexts of `k` tokens → every token that followed them.
    tables: Vec<HashMap<Vec<u32>, Followers>>,
    unigram: Vec<u32>,
}

#[cfg(any(feature = "engine", test))]
#[derive(Default)]
struct Followers {
    all: Vec<u32>,
    distinct: usize,
}

#[cfg(any(feature = "engine", test))]
impl Student {
    /// Counts `docs` (token sequences, each learned on its own) into an order-`order` model.
    pub fn train<'a>(order: usize, docs: impl IntoIterator<Item = &'a [u32]>) -> Self {
        let order = order.max(1);
        let mut tables: Vec<HashMap<Vec<u32>, Followers>> =
            (1..order).map(|_| HashMap::new()).collect();
        let mut unigram = Vec::new();
        for doc in docs {
            for (i, &t) in doc.iter().enumerate() {
                unigram.push(t);
                for k in 1..order.min(i + 1) {
                    tables[k - 1]
                        .entry(doc[i - k..i].to_vec())
                        .or_default()
                        .all
                        .push(t);
                }
            }
        }
        for table in &mut tables {
            for f in table.values_mut() {
                let mut d = f.all.clone();
                d.sort_unstable();
                d.dedup();
                f.distinct = d.len();
            }
        }
        Self {
            order,
            tables,
            unigram,
        }
    }

    /// Writes `len` tokens, starting from a token drawn from the unigram.
    pub fn write(&self, len: usize, rng: &mut impl Rng) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::with_capacity(len);
        if self.unigram.is_empty() {
            return out;
        }
        while out.len() < len {
            let next = self.next(&out, rng);
            out.push(next);
        }
        out
    }

    fn next(&self, previous: &[u32], rng: &mut impl Rng) -> u32 {
        for k in (1..self.order.min(previous.len() + 1)).rev() {
            if let Some(f) = self.tables[k - 1].get(&previous[previous.len() - k..]) {
                let (c, t) = (f.all.len() as f64, f.distinct as f64);
                if rng.gen_bool(c / (c + t)) {
                    return f.all[rng.gen_range(0..f.all.len())];
                }
            }
        }
        self.unigram[rng.gen_range(0..self.unigram.len())]
    }
}

#[cfg(not(feature = "engine"))]
pub fn run(_: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!(crate::cmd::engine::not_built())
}

#[cfg(feature = "engine")]
pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    use rand::SeedableRng;
    use std::io::{BufRead, Write};
    use std::time::Instant;
    use watermark::{detect, detect_within, Master, Watermark, Windows};

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Answer {
        marked: bool,
        /// The mark as the exchange log names it (`Watermark::named`), or "none".
        mark: String,
        tokens: usize,
        i: usize,
        text: String,
    }

    let master = Master::new(b"bench radioactivity master secret, fixed")?;
    let mark = |account: &str| {
        Watermark::new(master.key_for(account), a.mark.scheme(), a.mark.context)
            .map_err(anyhow::Error::msg)
    };
    let acme = mark("acme")?;
    println!("mark: {}", acme.named());
    let named = |marked: bool| {
        if marked {
            acme.named()
        } else {
            "none".to_owned()
        }
    };
    let mut model = engine::Model::load(&a.model.path).map_err(anyhow::Error::msg)?;
    let (corpora, source) = simulate::Corpora::find(a.data_dir.as_deref())?;

    // 1. The engine's answers, marked for acme and unmarked, to the same prompts.
    let prompts: Vec<String> = corpora
        .seeds
        .iter()
        .map(|p| p.prompt.clone())
        .chain(
            corpora
                .chats
                .iter()
                .filter_map(|c| c.turns.first().map(|t| t.content.clone())),
        )
        .filter(|p| p.len() > 20 && p.len() < 600)
        .take(a.answers)
        .collect();
    let mut kept: HashMap<(bool, usize), String> = HashMap::new();
    if let Ok(f) = std::fs::File::open(&a.cache) {
        for line in std::io::BufReader::new(f).lines() {
            let Ok(answer) = serde_json::from_str::<Answer>(&line?) else {
                continue;
            };
            if answer.mark == named(answer.marked) && answer.tokens == a.tokens {
                kept.insert((answer.marked, answer.i), answer.text);
            }
        }
    }
    if let Some(dir) = a.cache.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut cache = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.cache)?;
    let (mut written, mut secs) = (0usize, 0.0f64);
    for (i, prompt) in prompts.iter().enumerate() {
        for marked in [true, false] {
            if kept.contains_key(&(marked, i)) {
                continue;
            }
            let t = Instant::now();
            let (_, g) = crate::cmd::bench_watermark::long_answer(
                &mut model,
                prompt,
                a.tokens,
                i as u64,
                marked.then_some(&acme),
            )?;
            secs += t.elapsed().as_secs_f64();
            written += g.tokens.len();
            let answer = Answer {
                marked,
                mark: named(marked),
                tokens: a.tokens,
                i,
                text: g.text,
            };
            writeln!(cache, "{}", serde_json::to_string(&answer)?)?;
            cache.flush()?;
            kept.insert((marked, i), answer.text);
        }
    }
    if written > 0 {
        println!(
            "engine: wrote {written} tokens at {:.1} tokens/s; answers kept in {}",
            written as f64 / secs,
            a.cache.display()
        );
    }
    // Students learn from text: everything is read through the engine's tokenizer.
    let side = |marked: bool| -> Vec<Vec<u32>> {
        (0..prompts.len())
            .filter_map(|i| kept.get(&(marked, i)))
            .map(|t| model.tokenizer.encode(t))
            .collect()
    };
    let (marked_docs, unmarked_docs) = (side(true), side(false));
    if marked_docs.is_empty() || unmarked_docs.is_empty() {
        anyhow::bail!("no answers to train students on (--answers {})", a.answers);
    }
    let count = |docs: &[Vec<u32>]| docs.iter().map(Vec::len).sum::<usize>();
    let teacher: Vec<u32> = marked_docs.concat();
    let d = detect(&acme, &teacher, 50);
    println!(
        "teacher data: {} marked answers, {} tokens, {} of {} scored, p {}; {} unmarked answers, {} tokens",
        marked_docs.len(),
        count(&marked_docs),
        statistic(&d),
        d.scored,
        d.log10_p_value
            .map_or("too short to judge".into(), |l| format!("1e{l:.1}")),
        unmarked_docs.len(),
        count(&unmarked_docs)
    );

    // 2. Human text for the rest of a student's diet, as much as the smallest share needs.
    let least = a.shares.iter().copied().fold(1.0f64, f64::min).max(1e-3);
    let need = (count(&marked_docs) as f64 * (1.0 - least) / least) as usize;
    let mut human: Vec<Vec<u32>> = Vec::new();
    let mut human_tokens = 0usize;
    for text in corpora.turns() {
        if human_tokens >= need {
            break;
        }
        let toks = model.tokenizer.encode(text);
        human_tokens += toks.len();
        human.push(toks);
    }
    println!("human text ({source}): {human_tokens} tokens available for the mixtures");
    let windows = match a.over_represented {
        None => Windows::of(marked_docs.iter().map(Vec::as_slice), a.top_windows),
        Some(ratio) => {
            // Public text the students never saw: the corpora's turns after those in any diet.
            let reference: Vec<Vec<u32>> = corpora
                .turns()
                .skip(human.len())
                .take(20_000)
                .map(|t| model.tokenizer.encode(t))
                .collect();
            println!(
                "reference: {} tokens of human text no student saw",
                count(&reference)
            );
            Windows::over_represented(
                marked_docs.iter().map(Vec::as_slice),
                reference.iter().map(Vec::as_slice),
                ratio,
            )
        }
    };
    println!(
        "filter: {} windows of {} tokens in the marked answers",
        windows.len(acme.context()),
        acme.context()
    );

    // 3. Students, their text, and the test.
    let controls: Vec<Watermark> = (0..a.controls)
        .map(|k| mark(&format!("control-{k}")))
        .collect::<anyhow::Result<_>>()?;
    // A control key's chance excess on our answers is inherited by every student that copies
    // them: one draw of the null, seen again in each row, not a new one each time.
    let on_teacher: Vec<String> = controls
        .iter()
        .map(|c| {
            let p = |d: watermark::Detection| d.p_value.map_or("-".into(), |p| format!("{p:.2}"));
            format!(
                "{} (within {})",
                p(detect(c, &teacher, 50)),
                p(detect_within(c, &teacher, 50, &windows))
            )
        })
        .collect();
    println!(
        "control keys on the marked answers themselves: p {}",
        on_teacher.join(", ")
    );

    println!(
        "| student | order | share of our answers | trained on (ours + human tokens) | scored | green (KGW) or score (Gumbel) | p, acme's key | control keys' p | within our windows: scored | statistic | p, acme's key | control keys' p |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &share in &a.shares {
        for (teacher_docs, what) in [(&marked_docs, "marked"), (&unmarked_docs, "unmarked")] {
            let ours = count(teacher_docs);
            let want = (ours as f64 * (1.0 - share) / share.max(1e-3)) as usize;
            let mut diet: Vec<&[u32]> = teacher_docs.iter().map(Vec::as_slice).collect();
            let mut taken = 0usize;
            for doc in &human {
                if taken >= want {
                    break;
                }
                taken += doc.len();
                diet.push(doc);
            }
            for &order in &a.orders {
                let student = Student::train(order, diet.iter().copied());
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(order as u64);
                let mut tokens = Vec::with_capacity(a.student_tokens);
                while tokens.len() < a.student_tokens {
                    let written = student.write(200, &mut rng);
                    if written.is_empty() {
                        break; // A student that learned nothing writes nothing.
                    }
                    // The stranger reads text: decoded, then tokenized again.
                    let text = model.tokenizer.decode(&written);
                    tokens.extend(model.tokenizer.encode(&text));
                }
                let log10 = |d: &watermark::Detection| {
                    d.log10_p_value
                        .map_or("too short".into(), |l| format!("1e{l:.1}"))
                };
                let controls_p = |test: &dyn Fn(&Watermark) -> watermark::Detection| {
                    controls
                        .iter()
                        .map(|c| {
                            test(c)
                                .p_value
                                .map_or("too short".into(), |p| format!("{p:.2}"))
                        })
                        .collect::<Vec<String>>()
                        .join(", ")
                };
                let all = |k: &Watermark| detect(k, &tokens, 50);
                let within = |k: &Watermark| detect_within(k, &tokens, 50, &windows);
                let (d, f) = (all(&acme), within(&acme));
                println!(
                    "| {what} answers | {order} | {:.0} % | {ours} + {taken} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    share * 100.0,
                    d.scored,
                    statistic(&d),
                    log10(&d),
                    controls_p(&all),
                    f.scored,
                    statistic(&f),
                    log10(&f),
                    controls_p(&within),
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What was counted: KGW's green tokens and their share (0.25 by chance at the default γ), or
/// Gumbel's score and its mean per scored pair (1.0 by chance).
#[cfg(feature = "engine")]
fn statistic(d: &watermark::Detection) -> String {
    let per = |x: f64| x / d.scored.max(1) as f64;
    match d.green {
        Some(g) => format!("green {g} ({:.3})", per(g as f64)),
        None => format!("score {:.0} (mean {:.3})", d.score, per(d.score)),
    }
}

#[cfg(test)]
mod tests {
    use super::Student;
    use rand::{Rng, SeedableRng};
    use watermark::{detect, sample_plain, softmax, Master, Scheme, Watermark};

    /// A teacher over a small vocabulary: each token's followers drawn from fixed random
    /// logits, marked with `mark` when given (as the engine does: the bias, then a plain draw).
    fn teacher(mark: Option<&Watermark>, docs: usize, len: usize, seed: u64) -> Vec<Vec<u32>> {
        const VOCAB: usize = 300;
        let mut world = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let logits: Vec<Vec<f32>> = (0..VOCAB)
            .map(|_| (0..VOCAB).map(|_| world.gen_range(-3.0..3.0)).collect())
            .collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..docs)
            .map(|_| {
                let mut doc = vec![rng.gen_range(0..VOCAB as u32)];
                while doc.len() < len {
                    let mut l = logits[*doc.last().expect("a token") as usize].clone();
                    if let Some(m) = mark {
                        m.bias(&doc, &mut l);
                    }
                    doc.push(sample_plain(&softmax(&l, 1.0), rng.gen()));
                }
                doc
            })
            .collect()
    }

    fn p_of_students_text(docs: &[Vec<u32>], key: &Watermark) -> f64 {
        let student = Student::train(2, docs.iter().map(Vec::as_slice));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let text: Vec<u32> = (0..20).flat_map(|_| student.write(200, &mut rng)).collect();
        detect(key, &text, 50)
            .p_value
            .expect("long enough to judge")
    }

    #[test]
    fn a_student_of_marked_text_carries_the_mark_and_a_student_of_unmarked_text_does_not() {
        let master = Master::new(b"a test master secret").expect("a master");
        let key = |name: &str| {
            Watermark::new(
                master.key_for(name),
                Scheme::Kgw {
                    gamma: 0.25,
                    delta: 2.0,
                },
                1,
            )
            .expect("a mark")
        };
        let (acme, control) = (key("acme"), key("control"));
        let marked = teacher(Some(&acme), 40, 250, 1);
        let unmarked = teacher(None, 40, 250, 1);

        assert!(p_of_students_text(&marked, &acme) < 1e-6);
        assert!(p_of_students_text(&marked, &control) > 1e-3);
        assert!(p_of_students_text(&unmarked, &acme) > 1e-3);
    }

    #[test]
    fn a_student_writes_only_what_it_learned_and_backs_off_to_shorter_contexts() {
        let docs = [vec![1u32, 2, 3, 1, 2, 3], vec![4, 5]];
        let student = Student::train(3, docs.iter().map(Vec::as_slice));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let text = student.write(500, &mut rng);
        assert_eq!(text.len(), 500);
        assert!(text.iter().all(|t| (1..=5).contains(t)));
        // After 1 then 2 the trigram table says 3, and says so more often than not.
        let after: Vec<u32> = text
            .windows(3)
            .filter(|w| w[0] == 1 && w[1] == 2)
            .map(|w| w[2])
            .collect();
        let threes = after.iter().filter(|&&t| t == 3).count();
        assert!(threes * 2 > after.len(), "{threes} of {}", after.len());
        assert!(Student::train(2, std::iter::empty())
            .write(10, &mut rng)
            .is_empty());
    }
}
