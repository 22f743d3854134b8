use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use recorder::WorkerConfig;

use super::StoreArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The exchange stream the replicas publish to: nats://HOST:PORT.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub bus: String,
    /// How many workers share the partitions, and which one this is (0-based).
    #[arg(long, default_value_t = 1)]
    pub workers: u32,
    #[arg(long, default_value_t = 0)]
    pub index: u32,
    /// Gateway config (TOML) whose `policy` names the actions in the audit trail and whose
    /// `detector` section configures the detector (as the gateway's must).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Save the detector's state to the store this often (and at shutdown), so a restart
    /// replays only what was stored after it; 0: never.
    #[arg(long, default_value_t = 10.0)]
    pub snapshot_minutes: f64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    super::serve::init_tracing();
    let gateway = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str::<gateway::GatewayConfig>(&text)
                .with_context(|| format!("parsing {}", p.display()))?
        }
        None => gateway::GatewayConfig::default(),
    };
    let store = args.store.open()?;
    let config = WorkerConfig {
        nats: args.bus.clone(),
        index: args.index,
        count: args.workers,
        policy: gateway.policy,
        detector: gateway.detector,
        snapshot_every: (args.snapshot_minutes.is_finite() && args.snapshot_minutes > 0.0)
            .then(|| std::time::Duration::from_secs_f64(args.snapshot_minutes * 60.0)),
        ..WorkerConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            super::serve::shutdown_signal().await;
            tracing::info!("shutting down: finishing the batches in hand");
            let _ = tx.send(true);
        });
        recorder::run_worker(config, store, rx)
            .await
            .map_err(|e| anyhow::anyhow!(e))
    })?;
    Ok(ExitCode::SUCCESS)
}
