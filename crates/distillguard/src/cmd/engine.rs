//! `distillguard engine`: the built-in model engine (crate `engine`) behind the OpenAI API,
//! marking each answer with the calling account's watermark key.
//!
//! Built only with the `engine` feature (`cargo build --release --features engine`): candle
//! and the model are heavy, and most deployments front another upstream.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// The model file: the engine runs it, and `evidence detect` reads text through its tokenizer.
#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// The model file (GGUF); scripts/fetch-model.sh fetches the default.
    #[arg(
        long = "model",
        id = "model",
        env = "DISTILLGUARD_MODEL",
        default_value = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    )]
    pub path: PathBuf,
}

/// How answers are marked and found: shared by `engine` and `evidence detect`, which must agree.
#[derive(clap::Args, Clone)]
pub struct MarkArgs {
    /// `kgw` (green lists, a bias of --delta) or `gumbel` (distortion-free choice).
    #[arg(long, default_value = "kgw", value_parser = ["kgw", "gumbel"])]
    pub scheme: String,
    /// KGW: the green share of the vocabulary at each step.
    #[arg(long, default_value_t = 0.25)]
    pub gamma: f64,
    /// KGW: the bias added to green tokens' logits.
    #[arg(long, default_value_t = 2.0)]
    pub delta: f32,
    /// Previous tokens seeding each step (1 to 4).
    #[arg(long, default_value_t = 1)]
    pub context: usize,
}

impl MarkArgs {
    pub fn scheme(&self) -> watermark::Scheme {
        match self.scheme.as_str() {
            "gumbel" => watermark::Scheme::Gumbel,
            _ => watermark::Scheme::Kgw {
                gamma: self.gamma,
                delta: self.delta,
            },
        }
    }
}

/// The watermark master secret: from DISTILLGUARD_WATERMARK_SECRET or a file (at least 16
/// bytes; `openssl rand -hex 32` makes one). Never printed.
#[derive(clap::Args, Clone)]
pub struct SecretArgs {
    /// File holding the master secret (else DISTILLGUARD_WATERMARK_SECRET).
    #[arg(long)]
    pub watermark_secret_file: Option<PathBuf>,
}

impl SecretArgs {
    pub fn master(&self) -> anyhow::Result<Option<watermark::Master>> {
        let secret = match &self.watermark_secret_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => std::env::var("DISTILLGUARD_WATERMARK_SECRET").ok(),
        };
        secret
            .map(|s| watermark::Master::new(s.as_bytes()).map_err(anyhow::Error::msg))
            .transpose()
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "127.0.0.1:8100")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub model: crate::cmd::engine::ModelArgs,
    #[command(flatten)]
    pub mark: MarkArgs,
    /// KGW's bias for accounts whose action is `degrade`.
    #[arg(long, default_value_t = 4.0)]
    pub degrade_delta: f32,
    #[command(flatten)]
    pub secret: SecretArgs,
}

#[cfg(feature = "engine")]
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::cmd::serve::init_tracing();
    let master = args.secret.master()?;
    let started = std::time::Instant::now();
    let model = engine::Model::load(&args.model.path).map_err(anyhow::Error::msg)?;
    eprintln!(
        "loaded {} from {} in {:.1}s",
        model.name,
        args.model.path.display(),
        started.elapsed().as_secs_f64()
    );
    let mark = match master {
        Some(master) => {
            // Refuse a bad scheme now rather than serve unmarked answers later.
            let probe = master.key_for("probe");
            watermark::Watermark::new(probe, args.mark.scheme(), args.mark.context)
                .map_err(anyhow::Error::msg)?;
            Some(engine::MarkConfig {
                master,
                scheme: args.mark.scheme(),
                context: args.mark.context,
                degrade_delta: args.degrade_delta,
            })
        }
        None => {
            eprintln!("warning: no DISTILLGUARD_WATERMARK_SECRET (or --watermark-secret-file): answers are not marked");
            None
        }
    };
    let token = crate::cmd::serve::admin_token();
    if token.is_none() {
        eprintln!("note: DISTILLGUARD_ADMIN_TOKEN is not set: the admin endpoint (POST /admin/watermark/detect) is off");
    }
    let engine = std::sync::Arc::new(engine::Engine::new(model, mark).with_admin_token(token));
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let addr = engine::spawn(engine, args.listen).await?;
        eprintln!("engine: OpenAI API on http://{addr}/v1 (front it with `distillguard serve --engine http://{addr}/v1`)");
        tokio::signal::ctrl_c().await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "engine"))]
pub fn run(_: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!(not_built())
}

/// What to say when the binary was built without the engine.
#[cfg(not(feature = "engine"))]
pub fn not_built() -> &'static str {
    "this distillguard was built without the model engine: cargo build --release --features engine"
}
