//! One module per subcommand: argument parsing and output only; the work is in the crates.

pub mod bench;
pub mod bench_console;
pub mod bench_radioactivity;
pub mod bench_watermark;
pub mod collect;
pub mod demo;
pub mod engine;
pub mod evaluate;
pub mod evidence;
pub mod evidence_probe;
pub mod evidence_similarity;
pub mod export;
pub mod groups;
pub mod keys;
pub mod scan;
pub mod serve;
pub mod simulate;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

/// The log a command reads and how: shared by `scan` and `groups`, which both run it through
/// the detector.
#[derive(clap::Args)]
pub struct LogArgs {
    /// Exchange log: a JSONL file, a gzip file, or `-` for stdin.
    #[arg(default_value = "-")]
    pub input: PathBuf,
    /// Detector config (TOML); defaults are documented in docs/signals.md.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Lines longer than this are bad lines (`too_long`).
    #[arg(long, default_value_t = 16 << 20)]
    pub max_line_bytes: usize,
    /// Parser threads (default: the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Carry the detector's state from log to log: start from the state saved in FILE when it
    /// exists, and save the state there after this log, so logs scanned one after another
    /// (yesterday's, then today's) reach what one scan of them all would. Not saved when the
    /// log ended early (a read error, or `--strict` stopping).
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    #[command(flatten)]
    pub read: FormatArgs,
    /// For OpenTelemetry spans, the attributes that name the account, tried in order on the
    /// span and then on its resource (comma separated).
    #[arg(
        long,
        default_value = "user.id,enduser.id,service.name",
        value_name = "ATTRIBUTES"
    )]
    pub otel_account: String,
    /// For OpenTelemetry spans whose producer recorded the messages as log events (the
    /// openai instrumentation's default): the OTLP/JSON logs file (a collector's file
    /// exporter for the logs signal) whose `gen_ai.*` events are joined to their spans by
    /// trace and span id. Read whole before the log, up to a million calls' content.
    #[arg(long, value_name = "FILE")]
    pub otel_logs: Option<PathBuf>,
}

/// How a log's lines read: shared by the commands that read logs (`scan`, `groups`) and the
/// one that follows them (`collect --tail`).
#[derive(clap::Args)]
pub struct FormatArgs {
    /// The log's format: `exchange` (distillguard's), `litellm` (LiteLLM's
    /// StandardLoggingPayload or spend-log rows as JSON lines), `otel` (OpenTelemetry GenAI
    /// spans as OTLP/JSON, one export request per line, as a collector's file exporter writes
    /// them), or `auto`, decided line by line (docs/importers.md).
    #[arg(long, default_value = "auto", value_parser = ["auto", "exchange", "litellm", "otel"])]
    pub format: String,
    /// For LiteLLM logs, the fields that name the account, tried in order (comma separated:
    /// team_id, user_id, key_alias, key_hash, or any metadata field).
    #[arg(
        long,
        default_value = "team_id,user_id,key_alias,key_hash",
        value_name = "FIELDS"
    )]
    pub litellm_account: String,
}

impl FormatArgs {
    /// The format, reading spans with `otel`.
    pub fn format(&self, otel: exchange::otel::Options) -> exchange::Format {
        let litellm = exchange::litellm::AccountFields(list(&self.litellm_account));
        match self.format.as_str() {
            "exchange" => exchange::Format::Exchange,
            "litellm" => exchange::Format::LiteLlm(litellm),
            "otel" => exchange::Format::Otel(otel),
            _ => exchange::Format::Auto { litellm, otel },
        }
    }
}

/// The most calls whose content an `--otel-logs` file may hold; the oldest beyond it are
/// dropped and counted.
const MAX_LOG_CONTENT: usize = 1_000_000;

/// A comma-separated list, trimmed, empty items dropped.
pub fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect()
}

impl LogArgs {
    /// How each line is read (reading `--otel-logs` first, when given).
    pub fn format(&self) -> anyhow::Result<exchange::Format> {
        let otel = exchange::otel::Options {
            accounts: exchange::otel::AccountAttributes(list(&self.otel_account)),
            contents: match &self.otel_logs {
                Some(path) => Some(Arc::new(self.read_otel_logs(path)?)),
                None => None,
            },
        };
        Ok(self.read.format(otel))
    }

    /// The content events of an OTLP/JSON logs file, kept for their spans. Lines that are
    /// not logs exports are counted and named, as bad lines of a log are.
    fn read_otel_logs(&self, path: &Path) -> anyhow::Result<exchange::otel::Contents> {
        let mut source = exchange::LineSource::open(path, self.reader_options())
            .with_context(|| format!("opening {}", path.display()))?;
        let mut contents = exchange::otel::Contents::new(MAX_LOG_CONTENT);
        let (mut taken, mut bad) = (exchange::otel::Taken::default(), Vec::new());
        let mut lines = 0u64;
        while let Some(line) = source.next_line() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            lines += 1;
            let exchange::RawLine::Line { bytes, .. } = line else {
                bad.push(format!("line {lines}: too long"));
                continue;
            };
            // Every record read, the time it was read: the file is one moment here.
            match contents.add_line(&bytes, 0) {
                Ok(t) => {
                    taken.events += t.events;
                    taken.ignored += t.ignored;
                    taken.unjoinable += t.unjoinable;
                    taken.evicted += t.evicted;
                }
                Err((kind, why)) => bad.push(format!("line {lines}: {}: {why}", kind.name())),
            }
        }
        eprintln!(
            "{}: {} content events for {} calls ({} other records, {} with no span, {} calls' content dropped past {MAX_LOG_CONTENT} calls or {} MiB, {} bad lines)",
            path.display(),
            taken.events,
            contents.len(),
            taken.ignored,
            taken.unjoinable,
            taken.evicted,
            exchange::otel::DEFAULT_MAX_BYTES >> 20,
            bad.len()
        );
        for why in bad.iter().take(5) {
            eprintln!("  {why}");
        }
        Ok(contents)
    }

    pub fn reader_options(&self) -> exchange::ReaderOptions {
        exchange::ReaderOptions {
            max_line_bytes: self.max_line_bytes,
        }
    }

    /// Feeds the whole log to a detector built from `--config`; `progress` sees the count
    /// of exchanges read, once per batch.
    pub fn detect(
        &self,
        strict: bool,
        progress: impl FnMut(u64),
    ) -> anyhow::Result<(detect::Detector, crate::pipeline::Outcome)> {
        self.detect_watching(strict, |_| {}, progress)
    }

    /// [`LogArgs::detect`], with every verdict change seen as it happens.
    pub fn detect_watching(
        &self,
        strict: bool,
        on_change: impl FnMut(&detect::VerdictChange),
        progress: impl FnMut(u64),
    ) -> anyhow::Result<(detect::Detector, crate::pipeline::Outcome)> {
        let config = load_config(self.config.as_deref())?;
        let source = exchange::LineSource::open(&self.input, self.reader_options())
            .with_context(|| format!("opening {}", self.input.display()))?;
        let mut detector = match self.state.as_deref().filter(|p| p.exists()) {
            Some(path) => {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("reading the state {}", path.display()))?;
                detect::Detector::restore_state(config, &bytes).map_err(|why| {
                    anyhow::anyhow!(
                        "the state {} cannot be used ({why}); remove it to start from nothing",
                        path.display()
                    )
                })?
            }
            None => detect::Detector::new(config),
        };
        let workers = self
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let outcome = crate::pipeline::run(
            source,
            &self.format()?,
            &mut detector,
            workers,
            strict,
            on_change,
            progress,
        );
        if let Some(path) = &self.state {
            if outcome.strict_stop.is_none() && outcome.read_error.is_none() {
                save_state(path, &detector.save_state())?;
            } else {
                eprintln!(
                    "the log ended early: the state in {} was left as it was",
                    path.display()
                );
            }
        }
        Ok((detector, outcome))
    }
}

/// Writes beside the file and renames over it: a crash leaves the old state or the new one,
/// never half of one.
fn save_state(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Which store a command works on: the embedded one in `--data`, or `--store postgres://…`.
#[derive(clap::Args, Clone)]
pub struct StoreArgs {
    /// Folder of the embedded store (the gateway's --data).
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// The shared store instead: postgres://USER@HOST:PORT/DB, port optional (the replicas' --store).
    #[arg(long)]
    pub store: Option<String>,
}

impl StoreArgs {
    /// Opens the store. Call outside an async runtime: the PostgreSQL client blocks.
    pub fn open(&self) -> anyhow::Result<Arc<dyn store::Store>> {
        match &self.store {
            Some(address) => store::open(address)
                .with_context(|| format!("opening the store at {}", redact(address))),
            None => store::open(&self.data.display().to_string())
                .with_context(|| format!("opening the store in {}", self.data.display())),
        }
    }
}

/// An address fit for messages: no password.
pub fn redact(address: &str) -> String {
    store::redact(address)
}

/// Reads a detector config from TOML, or the defaults when no file is given.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<detect::Config> {
    match path {
        None => Ok(detect::Config::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing config {}", p.display()))
        }
    }
}
