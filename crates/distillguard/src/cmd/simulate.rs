use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use simulate::{neutralise, simulate, Corpora, Cue, SimConfig};

#[derive(clap::Args)]
pub struct Args {
    /// The shared data folder with corpora/ and traces/ (default: ../shared/data when it is
    /// there, else the sample built into the binary).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Benign accounts; attack campaigns scale with them (one per 25, at least one of each kind).
    #[arg(long, default_value_t = 300)]
    pub accounts: usize,
    /// Attack campaigns (overrides the default proportion).
    #[arg(long)]
    pub campaigns: Option<usize>,
    #[arg(long, default_value_t = 3.0)]
    pub days: f64,
    /// Share of developers and power users behind a carrier's CGNAT or a VPN exit shared with
    /// strangers (0 to 1; default 0, the earlier worlds draw for draw).
    #[arg(long, default_value_t = 0.0)]
    pub shared_egress: f64,
    /// The hard world: benign look-alikes that show harvest cues (broad step-by-step
    /// benchmark runs at temperature 0, answer and agent products used round the clock) and
    /// harvests that hide theirs (hydras sharing no fact of their accounts, low-and-slow
    /// harvests with their owner's client settings, agents that never sleep).
    #[arg(long)]
    pub hard: bool,
    /// Take one cue away, as `bench detect --neutralise` does: every account draws it from
    /// another account of the world, blind to labels (timing, addresses, age-and-payment,
    /// params, system-prompts, volume; `simulate::neutralise`). For looking into a
    /// neutralised world with `scan` and `groups`.
    #[arg(long)]
    pub neutralise: Option<Cue>,
    /// Where to write the exchange log (`-` for stdout; a name ending in .gz is compressed).
    #[arg(long, short, default_value = "-")]
    pub out: PathBuf,
    /// Where to write the labels (one JSON object per account).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Write the traffic as another producer would have logged it: `exchange` (this
    /// project's format), `litellm` (LiteLLM's StandardLoggingPayload, one per line, the
    /// account as its team id), `otel` (OpenTelemetry GenAI spans as OTLP/JSON, 100 to an
    /// export line, the account in user.id). What each producer does not record is left out
    /// (docs/importers.md), so `scan --format` judges what that producer would give it.
    #[arg(long = "as", default_value = "exchange", value_parser = ["exchange", "litellm", "otel"])]
    pub as_format: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (corpora, source) = Corpora::find(args.data_dir.as_deref())?;
    eprintln!("corpora: {source}");
    let config = SimConfig {
        seed: args.seed,
        benign_accounts: args.accounts,
        campaigns: args.campaigns,
        days: args.days,
        shared_egress: args.shared_egress,
        hard: args.hard,
        ..SimConfig::default()
    };
    let mut sim = simulate(&config, &corpora);
    if let Some(cue) = args.neutralise {
        neutralise(&mut sim, cue, args.seed);
    }
    let sink: Box<dyn Write> = if args.out.as_os_str() == "-" {
        Box::new(io::stdout().lock())
    } else {
        let file =
            File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
        if args.out.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::fast(),
            ))
        } else {
            Box::new(file)
        }
    };
    let mut out = BufWriter::with_capacity(1 << 20, sink);
    match args.as_format.as_str() {
        "litellm" => {
            for ex in &sim.exchanges {
                serde_json::to_writer(&mut out, &exchange::litellm::payload_of(ex))?;
                out.write_all(b"\n")?;
            }
        }
        "otel" => {
            for batch in sim.exchanges.chunks(100) {
                let spans = batch.iter().map(exchange::otel::span_of).collect();
                let line = exchange::otel::export_of(spans, "simulated-gateway");
                serde_json::to_writer(&mut out, &line)?;
                out.write_all(b"\n")?;
            }
        }
        _ => {
            for ex in &sim.exchanges {
                serde_json::to_writer(&mut out, ex)?;
                out.write_all(b"\n")?;
            }
        }
    }
    out.flush()?;
    drop(out);
    if let Some(path) = &args.labels {
        let mut w = BufWriter::new(
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        );
        for l in &sim.labels {
            serde_json::to_writer(&mut w, l)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
    }
    let attacks = sim.labels.iter().filter(|l| l.is_attack()).count();
    eprintln!(
        "simulated {} exchanges from {} accounts ({} attacking), seed {}",
        sim.exchanges.len(),
        sim.labels.len(),
        attacks,
        args.seed
    );
    Ok(ExitCode::SUCCESS)
}
