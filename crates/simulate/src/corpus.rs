//! Loads the development corpora and traces of `shared/data` (see its README) into memory.
//! Only what the simulator needs is kept: conversations as turn lists, prompt/answer pairs,
//! templated sets grouped by template, and the empirical arrival gaps of the timing traces.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    #[error("corpus directory {0} not found: pass --data-dir pointing at shared/data (it holds corpora/ and traces/)")]
    Missing(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Turn {
    pub role: String,
    pub content: String,
}

/// A real conversation: user and assistant turns in order.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub turns: Vec<Turn>,
}

/// A prompt with a reference answer.
#[derive(Debug, Clone)]
pub struct Pair {
    pub prompt: String,
    pub answer: String,
}

/// Everything the simulator draws from.
#[derive(Debug, Default)]
pub struct Corpora {
    /// Real user conversations (ShareGPT).
    pub chats: Vec<Conversation>,
    /// Red-team style human/assistant dialogues (HH-RLHF harmless).
    pub dialogues: Vec<Conversation>,
    /// Human-written task instructions with an answer (Self-Instruct seeds).
    pub seeds: Vec<Pair>,
    /// Templated NLP sets, one group per template.
    pub templated: Vec<Vec<Pair>>,
    /// Math word problems with worked answers.
    pub math: Vec<Pair>,
    /// Inter-arrival gaps in seconds from the conversation trace.
    pub chat_gaps: Vec<f64>,
    /// Inter-arrival gaps in seconds from the code trace.
    pub code_gaps: Vec<f64>,
}

#[derive(Deserialize)]
struct ConversationRecord {
    turns: Vec<Turn>,
}

#[derive(Deserialize)]
struct SeedRecord {
    instruction: String,
    #[serde(default)]
    input: String,
    output: String,
}

#[derive(Deserialize)]
struct TemplatedRecord {
    template: String,
    prompt: String,
    completion: String,
}

#[derive(Deserialize)]
struct MathRecord {
    question: String,
    answer: String,
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(
    path: &Path,
    mut each: impl FnMut(T),
) -> Result<(), CorpusError> {
    let file = File::open(path).map_err(|source| CorpusError::Io {
        path: path.to_owned(),
        source,
    })?;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| CorpusError::Io {
            path: path.to_owned(),
            source,
        })?;
        let record = serde_json::from_str(&line).map_err(|e| CorpusError::Parse {
            path: path.to_owned(),
            line: i + 1,
            message: e.to_string(),
        })?;
        each(record);
    }
    Ok(())
}

/// Arrival gaps (seconds, positive) from a `TIMESTAMP,ContextTokens,GeneratedTokens` trace.
fn read_gaps(path: &Path) -> Result<Vec<f64>, CorpusError> {
    let text = std::fs::read_to_string(path).map_err(|source| CorpusError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut times = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let stamp = line.split(',').next().unwrap_or("").trim();
        // "2023-11-16 18:15:46.6805900": seconds within the day are enough for gaps.
        let clock = stamp.split(' ').nth(1).ok_or_else(|| CorpusError::Parse {
            path: path.to_owned(),
            line: i + 1,
            message: format!("bad timestamp {stamp:?}"),
        })?;
        let mut secs = 0.0;
        for part in clock.split(':') {
            secs = secs * 60.0 + part.parse::<f64>().unwrap_or(0.0);
        }
        times.push(secs);
    }
    Ok(times
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|g| *g > 0.0)
        .collect())
}

impl Corpora {
    /// Loads every corpus under `dir` (the `shared/data` folder).
    pub fn load(dir: &Path) -> Result<Self, CorpusError> {
        if !dir.join("corpora").is_dir() {
            return Err(CorpusError::Missing(dir.to_owned()));
        }
        let c = dir.join("corpora");
        let t = dir.join("traces");
        let mut out = Corpora::default();
        read_jsonl(&c.join("benign-sharegpt.jsonl"), |r: ConversationRecord| {
            out.chats.push(Conversation { turns: r.turns })
        })?;
        read_jsonl(
            &c.join("benign-hh-harmless.jsonl"),
            |r: ConversationRecord| out.dialogues.push(Conversation { turns: r.turns }),
        )?;
        read_jsonl(
            &c.join("instruct-selfinstruct-seeds.jsonl"),
            |r: SeedRecord| {
                let prompt = if r.input.is_empty() {
                    r.instruction
                } else {
                    format!("{}\n\n{}", r.instruction, r.input)
                };
                out.seeds.push(Pair {
                    prompt,
                    answer: r.output,
                })
            },
        )?;
        let mut current: Option<String> = None;
        read_jsonl(&c.join("templated-t0-dev.jsonl"), |r: TemplatedRecord| {
            if current.as_deref() != Some(&r.template) {
                out.templated.push(Vec::new());
                current = Some(r.template);
            }
            out.templated.last_mut().expect("pushed").push(Pair {
                prompt: r.prompt,
                answer: r.completion,
            });
        })?;
        read_jsonl(&c.join("math-gsm8k-train.jsonl"), |r: MathRecord| {
            out.math.push(Pair {
                prompt: r.question,
                answer: r.answer,
            })
        })?;
        out.chat_gaps = read_gaps(&t.join("azure-llm-conv-2023.csv"))?;
        out.code_gaps = read_gaps(&t.join("azure-llm-code-2023.csv"))?;
        out.chats.retain(|c| {
            c.turns.iter().any(|t| t.role == "user")
                && c.turns.iter().any(|t| t.role == "assistant")
        });
        Ok(out)
    }

    /// The default location relative to the project root: `../shared/data`.
    pub fn default_dir() -> PathBuf {
        PathBuf::from("../shared/data")
    }
}
