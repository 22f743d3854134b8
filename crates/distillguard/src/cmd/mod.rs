//! One module per subcommand: argument parsing and output only; the work is in the crates.

pub mod bench;
pub mod demo;
pub mod evaluate;
pub mod export;
pub mod keys;
pub mod scan;
pub mod serve;
pub mod simulate;

use std::path::Path;

use anyhow::Context;

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
