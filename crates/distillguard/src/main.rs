//! `distillguard`: a thin command line over the crates that do the work.
//!
//! Exit codes (all subcommands):
//! - 0: success (bad lines, if any, are reported on stderr and counted; the scan went on)
//! - 1: an error stopped the command (unreadable file, bad config, corpus missing)
//! - 2: the command line was wrong
//! - 3: the input ended with a read error (such as a gzip file cut short); verdicts for
//!   everything read before it were still printed
//! - 4: `--strict` and a bad line was found

mod cmd;
mod marks;
mod pipeline;
mod report;
mod suspect;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The gateway allocates a few small objects per request on many threads; mimalloc handles
// that with less contention and fragmentation than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "distillguard",
    version,
    about = "Detect, attribute and stop model distillation through an OpenAI-compatible API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The main job end to end: a gateway on the embedded store, simulated customers driven through it over HTTP, its verdicts and actions.
    Demo(cmd::demo::Args),
    /// Run the gateway: an OpenAI-compatible proxy that logs, detects and enforces.
    Serve(cmd::serve::Args),
    /// Judge traffic another gateway serves, from its OpenTelemetry GenAI traces sent over OTLP/HTTP to /v1/traces.
    Collect(cmd::collect::Args),
    /// Manage API keys (in the embedded store, or the shared one with --store).
    Keys(cmd::keys::Args),
    /// A detector worker for replicas on shared backends: consumes exchanges from NATS, stores them in PostgreSQL, detects, and pushes verdicts to every replica.
    Worker(cmd::worker::Args),
    /// Groups of accounts linked as one actor in a log, their evidence, and indicator bundles to share.
    Groups(cmd::groups::Args),
    /// Write the logged exchanges as JSONL (EXCHANGE_FORMAT.md).
    Export(cmd::export::Args),
    /// Score every account in an exchange log (JSONL, gzip or stdin) and rank them.
    Scan(cmd::scan::Args),
    /// Generate labelled traffic in the exchange format from the real corpora.
    Simulate(cmd::simulate::Args),
    /// Compare `scan --json` verdicts with simulation labels.
    Evaluate(cmd::evaluate::Args),
    /// Benchmarks: detection quality, scan throughput, detector memory, HTTP load.
    Bench(cmd::bench::Args),
    /// The built-in model engine (SmolLM2-135M) behind the OpenAI API, marking answers per account (feature `engine`).
    Engine(cmd::engine::Args),
    /// Evidence a stranger can check: is a text marked with an account's watermark key?
    Evidence(cmd::evidence::Args),
    /// Run the demo upstream alone: a stand-in speaking the OpenAI API (not a model), for
    /// trying the gateway and for benchmarks.
    DemoUpstream {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: std::net::SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(a) => cmd::demo::run(a),
        Command::Scan(a) => cmd::scan::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Collect(a) => cmd::collect::run(a),
        Command::Keys(a) => cmd::keys::run(a),
        Command::Worker(a) => cmd::worker::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Groups(a) => cmd::groups::run(a),
        Command::Simulate(a) => cmd::simulate::run(a),
        Command::Evaluate(a) => cmd::evaluate::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Engine(a) => cmd::engine::run(a),
        Command::Evidence(a) => cmd::evidence::run(a),
        Command::DemoUpstream { listen } => cmd::demo::upstream(listen),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    /// clap checks a command's definition only when that command is parsed in a debug
    /// build: this checks every subcommand at once (a clash of flattened argument groups
    /// once made `collect` panic before it read its arguments).
    #[test]
    fn every_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
