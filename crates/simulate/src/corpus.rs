//! Loads the development corpora and traces of `shared/data` (see its README) into memory.
//! Only what the simulator needs is kept: conversations as turn lists, prompt/answer pairs,
//! templated sets grouped by template, and the empirical arrival gaps of the timing traces.
//!
//! Without `shared/data`, [`Corpora::sample`] gives a small sample of it that is built into
//! the binary (`sample/`, MIT, Apache-2.0 and CC-BY sources only, licences beside it), so a
//! fresh clone runs the demo and the tests; [`Corpora::find`] picks one or the other.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
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

/// The records of one corpus, from a file or from the built-in sample.
trait Input {
    fn name(&self) -> PathBuf;
    fn reader(&self) -> Result<Box<dyn BufRead + '_>, CorpusError>;
}

impl Input for &Path {
    fn name(&self) -> PathBuf {
        self.to_path_buf()
    }
    fn reader(&self) -> Result<Box<dyn BufRead + '_>, CorpusError> {
        let file = File::open(self).map_err(|source| CorpusError::Io {
            path: self.to_path_buf(),
            source,
        })?;
        Ok(Box::new(BufReader::new(file)))
    }
}

/// A gzip-compressed file of the built-in sample.
struct Bundled(&'static str, &'static [u8]);

impl Input for Bundled {
    fn name(&self) -> PathBuf {
        PathBuf::from(format!("(built-in sample)/{}", self.0))
    }
    fn reader(&self) -> Result<Box<dyn BufRead + '_>, CorpusError> {
        Ok(Box::new(BufReader::new(flate2::read::GzDecoder::new(
            self.1,
        ))))
    }
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(
    input: impl Input,
    mut each: impl FnMut(T),
) -> Result<(), CorpusError> {
    let path = input.name();
    let path = path.as_path();
    for (i, line) in input.reader()?.lines().enumerate() {
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
fn read_gaps(input: impl Input) -> Result<Vec<f64>, CorpusError> {
    let path = input.name();
    let path = path.as_path();
    let mut text = String::new();
    input
        .reader()?
        .read_to_string(&mut text)
        .map_err(|source| CorpusError::Io {
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

/// Where a set of corpora came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The full development corpora in this folder.
    Dir(PathBuf),
    /// The sample built into the binary.
    Sample,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Dir(d) => write!(f, "the corpora in {}", d.display()),
            Source::Sample => f.write_str(
                "the built-in sample corpus (1.9 MB of MIT, Apache-2.0 and CC-BY data; no \
                 ShareGPT: the full development corpora are shared/data, see the README)",
            ),
        }
    }
}

/// The six files of the corpora, as their inputs.
struct Files<I> {
    chats: Option<I>,
    dialogues: I,
    seeds: I,
    templated: I,
    math: I,
    chat_trace: I,
    code_trace: I,
}

impl Corpora {
    /// Every turn of the human conversations (the chats, then the dialogues), in order: the
    /// public text the evidence side measures against (false positives, students' diets, the
    /// probe's reference).
    pub fn turns(&self) -> impl Iterator<Item = &str> {
        self.chats
            .iter()
            .chain(&self.dialogues)
            .flat_map(|c| c.turns.iter().map(|t| t.content.as_str()))
    }

    /// Loads every corpus under `dir` (the `shared/data` folder).
    pub fn load(dir: &Path) -> Result<Self, CorpusError> {
        if !dir.join("corpora").is_dir() {
            return Err(CorpusError::Missing(dir.to_owned()));
        }
        let c = dir.join("corpora");
        let t = dir.join("traces");
        let paths = [
            c.join("benign-sharegpt.jsonl"),
            c.join("benign-hh-harmless.jsonl"),
            c.join("instruct-selfinstruct-seeds.jsonl"),
            c.join("templated-t0-dev.jsonl"),
            c.join("math-gsm8k-train.jsonl"),
            t.join("azure-llm-conv-2023.csv"),
            t.join("azure-llm-code-2023.csv"),
        ];
        Self::read(Files {
            chats: Some(paths[0].as_path()),
            dialogues: paths[1].as_path(),
            seeds: paths[2].as_path(),
            templated: paths[3].as_path(),
            math: paths[4].as_path(),
            chat_trace: paths[5].as_path(),
            code_trace: paths[6].as_path(),
        })
    }

    /// The sample built into the binary (`crates/simulate/sample/README.md`): every HH-RLHF
    /// dialogue (which also stand in for the ShareGPT chats it leaves out), the Self-Instruct
    /// seeds, 20 records of each T0 template, 2,000 GSM8K problems and both traces.
    pub fn sample() -> Result<Self, CorpusError> {
        macro_rules! bundled {
            ($name:literal) => {
                Bundled($name, include_bytes!(concat!("../sample/", $name)))
            };
        }
        let mut out = Self::read(Files {
            chats: None,
            dialogues: bundled!("benign-hh-harmless.jsonl.gz"),
            seeds: bundled!("instruct-selfinstruct-seeds.jsonl.gz"),
            templated: bundled!("templated-t0-dev.jsonl.gz"),
            math: bundled!("math-gsm8k-train.jsonl.gz"),
            chat_trace: bundled!("azure-llm-conv-2023.csv.gz"),
            code_trace: bundled!("azure-llm-code-2023.csv.gz"),
        })?;
        out.chats = out.dialogues.clone();
        Ok(out)
    }

    /// The corpora to use: `dir` when one is given (an error when it holds none); otherwise
    /// `../shared/data` when it is there, else the built-in sample.
    pub fn find(dir: Option<&Path>) -> Result<(Self, Source), CorpusError> {
        match dir {
            Some(d) => Ok((Self::load(d)?, Source::Dir(d.to_owned()))),
            None => {
                let d = Self::default_dir();
                if d.join("corpora").is_dir() {
                    Ok((Self::load(&d)?, Source::Dir(d)))
                } else {
                    Ok((Self::sample()?, Source::Sample))
                }
            }
        }
    }

    fn read<I: Input>(files: Files<I>) -> Result<Self, CorpusError> {
        let mut out = Corpora::default();
        if let Some(chats) = files.chats {
            read_jsonl(chats, |r: ConversationRecord| {
                out.chats.push(Conversation { turns: r.turns })
            })?;
        }
        read_jsonl(files.dialogues, |r: ConversationRecord| {
            out.dialogues.push(Conversation { turns: r.turns })
        })?;
        read_jsonl(files.seeds, |r: SeedRecord| {
            let prompt = if r.input.is_empty() {
                r.instruction
            } else {
                format!("{}\n\n{}", r.instruction, r.input)
            };
            out.seeds.push(Pair {
                prompt,
                answer: r.output,
            })
        })?;
        let mut current: Option<String> = None;
        read_jsonl(files.templated, |r: TemplatedRecord| {
            if current.as_deref() != Some(&r.template) {
                out.templated.push(Vec::new());
                current = Some(r.template);
            }
            out.templated.last_mut().expect("pushed").push(Pair {
                prompt: r.prompt,
                answer: r.completion,
            });
        })?;
        read_jsonl(files.math, |r: MathRecord| {
            out.math.push(Pair {
                prompt: r.question,
                answer: r.answer,
            })
        })?;
        out.chat_gaps = read_gaps(files.chat_trace)?;
        out.code_gaps = read_gaps(files.code_trace)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_sample_loads_whole() {
        let c = Corpora::sample().expect("the sample reads");
        assert_eq!(c.dialogues.len(), 2309);
        assert_eq!(
            c.chats.len(),
            c.dialogues.len(),
            "dialogues stand in for chats"
        );
        assert_eq!(c.seeds.len(), 175);
        assert_eq!(c.templated.len(), 141);
        assert!(c.templated.iter().all(|g| !g.is_empty() && g.len() <= 20));
        assert_eq!(c.math.len(), 2000);
        assert!(c.chat_gaps.len() > 19_000 && c.code_gaps.len() > 8_000);
    }

    #[test]
    fn an_explicit_folder_without_corpora_is_an_error_not_the_sample() {
        let dir = std::env::temp_dir().join("distillguard-no-corpora-here");
        assert!(matches!(
            Corpora::find(Some(&dir)),
            Err(CorpusError::Missing(_))
        ));
    }
}
