//! `distillguard collect`: judge traffic that another gateway serves, from its traces.
//!
//! The gateway's log, detector, policy table and admin API, fed by OpenTelemetry GenAI spans
//! sent over OTLP/HTTP to `/v1/traces` (protobuf or JSON) instead of by proxied calls: point
//! an existing exporter here and get verdicts with no change in the request path. It is
//! `serve` without the need for an upstream (with one, it proxies as well), so traces and
//! proxied calls take the one same way in.
//!
//! With `--tail FILE` it also follows log files as they grow (LiteLLM payloads, OTLP/JSON
//! lines or exchanges, `recorder::follow`): a gateway that writes its traffic to a file is
//! judged live with no exporter at all.

use std::process::ExitCode;

#[derive(clap::Args)]
// `serve`'s arguments are flattened in, and a derived group takes its struct's name: two
// groups named `Args` would make clap refuse the command.
#[group(id = "collect")]
pub struct Args {
    #[command(flatten)]
    pub gateway: super::serve::Args,
    /// The span (then resource) attributes that name the account, tried in order (comma
    /// separated; default user.id,enduser.id,service.name).
    #[arg(long, value_name = "ATTRIBUTES")]
    pub otel_account: Option<String>,
    /// Follow this log file as it grows (repeatable): read from its start, then what is
    /// appended, each line in `--format`; a restart reads it again and counts nothing twice.
    #[arg(long, value_name = "FILE")]
    pub tail: Vec<std::path::PathBuf>,
    /// How the followed files' lines read.
    #[command(flatten)]
    pub read: super::FormatArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    super::serve::init_tracing();
    let mut config = super::serve::load(&args.gateway)?;
    if let Some(attrs) = &args.otel_account {
        config.otel_account = super::list(attrs);
    }
    let format = args
        .read
        .format(exchange::otel::AccountAttributes(config.otel_account.clone()).into());
    config.tail = args
        .tail
        .iter()
        .map(|path| recorder::Follow {
            path: path.clone(),
            format: format.clone(),
            max_line_bytes: 16 << 20,
        })
        .collect();
    if super::serve::admin_token().is_none() {
        anyhow::bail!(
            "set DISTILLGUARD_ADMIN_TOKEN: /v1/traces takes it (OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20TOKEN), since what it accepts becomes evidence about accounts"
        );
    }
    super::serve::run_gateway(
        config,
        "distillguard collecting OTLP/HTTP traces on /v1/traces",
    )
}
