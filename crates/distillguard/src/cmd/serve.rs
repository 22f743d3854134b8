use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use gateway::{Gateway, GatewayConfig, Upstream};

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Upstream base URL (with its API prefix, e.g. http://127.0.0.1:8000/v1) serving every model.
    #[arg(long)]
    pub upstream: Option<String>,
    /// The built-in engine (`distillguard engine`) as the upstream, at its base URL (e.g.
    /// http://127.0.0.1:8100/v1): told each call's account so it marks answers per account, the
    /// key it marked with logged beside each exchange.
    #[arg(long)]
    pub engine: Option<String>,
    /// Key for the upstream (or set DISTILLGUARD_UPSTREAM_KEY).
    #[arg(long, env = "DISTILLGUARD_UPSTREAM_KEY", hide_env_values = true)]
    pub upstream_key: Option<String>,
    /// Folder of the embedded store (with --store postgres://…, only the spool lives here).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Shared store: postgres://USER@HOST:PORT/DB, port optional (default: SQLite in --data).
    #[arg(long)]
    pub store: Option<String>,
    /// Shared limits: redis://HOST:PORT (default: counted in this process).
    #[arg(long)]
    pub limits: Option<String>,
    /// While Redis is unreachable: `local` (serve, limits counted per replica) or `closed`
    /// (503 for limited accounts).
    #[arg(long, value_parser = ["local", "closed"])]
    pub limits_fallback: Option<String>,
    /// Exchange stream: nats://HOST:PORT, for `distillguard worker` to log and detect
    /// (default: in this process).
    #[arg(long)]
    pub bus: Option<String>,
    /// When an answer may go out: `committed` (default: once its exchange is committed to the
    /// log) or `queued` (once queued; faster, and a kill -9 can lose the last commit interval).
    #[arg(long, value_parser = ["committed", "queued"])]
    pub log_durability: Option<String>,
    /// Gateway config (TOML): upstreams and routing, limits, log content policy, retention,
    /// enforcement policy. Flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// The gateway's config: `--config`, then the flags over it. Every upstream is optional here;
/// [`run`] asks for one, `collect` does not.
pub fn load(args: &Args) -> anyhow::Result<GatewayConfig> {
    let mut config: GatewayConfig = match &args.config {
        Some(p) => toml::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("parsing {}", p.display()))?,
        None => GatewayConfig::default(),
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = &args.data {
        config.data.clone_from(d);
    }
    if args.store.is_some() {
        config.store.clone_from(&args.store);
    }
    if args.limits.is_some() {
        config.limits.clone_from(&args.limits);
    }
    match args.limits_fallback.as_deref() {
        Some("closed") => config.limits_fallback = limits::Fallback::Closed,
        Some(_) => config.limits_fallback = limits::Fallback::Local,
        None => {}
    }
    if args.bus.is_some() {
        config.bus.clone_from(&args.bus);
    }
    if let Some(d) = &args.log_durability {
        config.log_durability = d.parse().map_err(anyhow::Error::msg)?;
    }
    if let Some(u) = &args.upstream {
        config.upstreams.insert(
            0,
            Upstream {
                base_url: u.clone(),
                api_key: args.upstream_key.clone(),
                models: Vec::new(),
                timeout_secs: 600,
                watermarks: false,
            },
        );
    }
    if let Some(u) = &args.engine {
        config.upstreams.insert(
            0,
            Upstream {
                base_url: u.clone(),
                api_key: None,
                models: Vec::new(),
                timeout_secs: 600,
                watermarks: true,
            },
        );
    }
    Ok(config)
}

pub fn init_tracing() {
    init_tracing_at("info");
}

/// Warnings only: the demo prints its own story.
pub fn init_tracing_quiet() {
    init_tracing_at("error");
}

/// Logs to stderr at `default` (or `RUST_LOG`), colored only on a terminal: a log file or a
/// collector gets plain `key=value` fields it can search.
fn init_tracing_at(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn admin_token() -> Option<String> {
    std::env::var("DISTILLGUARD_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_tracing();
    let config = load(&args)?;
    if config.upstreams.is_empty() {
        anyhow::bail!("no upstream: pass --upstream URL or list [[upstreams]] in --config");
    }
    run_gateway(config, "distillguard gateway listening")
}

/// Opens the store, starts the gateway and serves until SIGINT or SIGTERM, then drains.
pub fn run_gateway(config: GatewayConfig, listening: &'static str) -> anyhow::Result<ExitCode> {
    let store = super::StoreArgs {
        data: config.data.clone(),
        store: config.store.clone(),
    }
    .open()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let token = admin_token();
        if token.is_none() {
            tracing::warn!("DISTILLGUARD_ADMIN_TOKEN is not set: the admin API is disabled");
        }
        let running = Gateway::start(config, store, token)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(addr = %running.addr, "{listening}");
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight calls and the exchange log");
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
