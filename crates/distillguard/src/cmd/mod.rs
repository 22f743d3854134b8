//! One module per subcommand: argument parsing and output only; the work is in the crates.

pub mod bench;
pub mod demo;
pub mod evaluate;
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

/// Which store a command works on: the embedded one in `--data`, or `--store postgres://…`.
#[derive(clap::Args, Clone)]
pub struct StoreArgs {
    /// Folder of the embedded store (the gateway's --data).
    #[arg(long, default_value = "data")]
    pub data: PathBuf,
    /// The shared store instead: postgres://USER@HOST[:PORT]/DB (the replicas' --store).
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
