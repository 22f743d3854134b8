//! Everything an operator sets for the gateway, in one typed config (TOML via `--config`;
//! the main options also as flags). Defaults are documented next to each field.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use exchange::ContentPolicy;
pub use recorder::Durability;
use respond::Policy;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address to listen on (default 127.0.0.1:8080).
    pub listen: SocketAddr,
    /// Where the embedded store lives (default `./data`); a replica on shared backends keeps
    /// only its spool here.
    pub data: PathBuf,
    /// The store: unset for the embedded SQLite store in `data`, or `postgres://…` for the
    /// shared one.
    pub store: Option<String>,
    /// Limits: unset to count in this process's memory, or `redis://…` to share them with
    /// every replica.
    pub limits: Option<String>,
    /// When Redis is unreachable: `local` (serve, counting limits in this replica only; the
    /// default) or `closed` (refuse limited accounts with 503 until it is back).
    pub limits_fallback: limits::Fallback,
    /// The exchange stream: unset to log and detect in this process, or `nats://…` to publish
    /// exchanges to JetStream for `distillguard worker` and take verdicts from it.
    pub bus: Option<String>,
    /// With `bus`: the most a replica spools on its disk while NATS is away (default 1 GiB;
    /// 0 for no limit). Past it, new exchanges are dropped and counted
    /// (`distillguard_spool_dropped_total`) rather than filling the disk.
    pub bus_spool_max_bytes: u64,
    /// Upstreams; the first whose `models` list contains the request's model serves it.
    /// An upstream with an empty `models` list serves every model not routed elsewhere.
    pub upstreams: Vec<Upstream>,
    /// Largest request body accepted, in bytes (default 8 MiB); larger gets 413.
    pub max_body_bytes: usize,
    /// Time a client has to send its request headers (default 10 s).
    pub header_timeout_secs: u64,
    /// Longest silence while a client sends its request body (default 30 s).
    pub body_timeout_secs: u64,
    /// Time a client has to send its whole request body, however steadily it trickles
    /// (default 120 s).
    pub body_total_timeout_secs: u64,
    /// A connection with no call in flight and no bytes either way for this long is closed
    /// (default 60 s). Keep it above your clients' keep-alive and below your load balancer's
    /// idle timeout if one sits in front.
    pub idle_timeout_secs: u64,
    /// Load balancers and proxies in front of the gateway, as addresses or networks
    /// (`["10.0.0.0/8", "192.0.2.7"]`; default none). Only for connections from these are
    /// `Forwarded` / `X-Forwarded-For` read to find the client's address (`client_ip.rs`); a
    /// client's own such header is never trusted.
    #[serde(deserialize_with = "addresses_or_networks")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Open client connections at most (default 10,000); one more is answered 503
    /// `too_many_connections` and closed. Keep it below the process's file-descriptor limit
    /// (`ulimit -n`), less a few hundred for the store, the upstreams and the logs.
    pub max_connections: usize,
    /// Largest upstream response body buffered for a non-streamed call (default 64 MiB).
    pub max_response_bytes: usize,
    /// Exchange log: queue size between requests and the writer (default 65536). When full,
    /// requests wait for room (back-pressure) rather than dropping log lines.
    pub log_queue: usize,
    /// Group commit: the writer commits at least this often (default 50 ms) or every 1024 lines.
    pub log_flush_ms: u64,
    /// When an answer may go out: `committed` (default) once its exchange is committed to the
    /// log, so an answer a client received is never missing from the log after a crash of the
    /// process; or `queued`, once it is queued for the log, faster, and a kill -9 can lose
    /// the exchanges of the last commit interval (docs/gateway.md).
    pub log_durability: Durability,
    /// What of each exchange's text the log keeps: `full`, `hashes` or `metadata` (default full).
    /// The detector always sees the full exchange, in memory.
    pub content: ContentPolicy,
    /// Delete logged exchanges older than this many days (default: keep forever).
    pub retention_days: Option<f64>,
    /// Save the detector's state to the store at most this often while exchanges come in,
    /// and at shutdown, so a restart replays only what was logged after it (default 10
    /// minutes; 0 for never: every start replays the whole log).
    pub snapshot_minutes: f64,
    /// Verdicts to actions.
    pub policy: Policy,
    /// The detector's thresholds, shape and weights (`[detector]`, the same keys as
    /// `scan --config`; every one left out keeps its default).
    pub detector: detect::Config,
    /// For traces received on `/v1/traces`: the span (then resource) attributes that name the
    /// account, tried in order (default `user.id`, `enduser.id`, `service.name`).
    pub otel_account: Vec<String>,
    /// For spans received with no message content from a service that sends its content as
    /// log events (`/v1/logs`): how long the span waits for them before it is recorded
    /// without (default 2000).
    pub otel_content_wait_ms: u64,
    /// Where `distillguard evidence probe` reports are kept (`--out DIR/NAME`): the console's
    /// evidence page lists and shows them (default: none, and the page says how to make one).
    pub evidence_dir: Option<std::path::PathBuf>,
    /// Log files followed as they grow (`collect --tail`), each read in its format and
    /// recorded like a proxied call. Set from the command line, not the file.
    #[serde(skip)]
    pub tail: Vec<recorder::Follow>,
    /// `[otlp]`: export every proxied call as an OpenTelemetry GenAI span (default: none).
    pub otlp: Option<crate::otlp::OtlpConfig>,
    /// How often overrides and allowlist entries with an expiry are checked and lapsed
    /// (default 30 s): a decision lapses within this long of its time.
    pub decision_expiry_check_secs: f64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("static address"),
            data: PathBuf::from("data"),
            store: None,
            limits: None,
            limits_fallback: limits::Fallback::Local,
            bus: None,
            upstreams: Vec::new(),
            max_body_bytes: 8 << 20,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            body_total_timeout_secs: 120,
            idle_timeout_secs: 60,
            max_connections: 10_000,
            trusted_proxies: Vec::new(),
            max_response_bytes: 64 << 20,
            log_queue: 65536,
            log_durability: Durability::Committed,
            bus_spool_max_bytes: 1 << 30,
            log_flush_ms: 50,
            content: ContentPolicy::Full,
            retention_days: None,
            snapshot_minutes: 10.0,
            policy: Policy::default(),
            detector: detect::Config::default(),
            otel_account: exchange::otel::AccountAttributes::default().0,
            otel_content_wait_ms: 2000,
            tail: Vec::new(),
            evidence_dir: None,
            otlp: None,
            decision_expiry_check_secs: 30.0,
        }
    }
}

/// `["10.0.0.0/8", "192.0.2.7"]`: networks, or single addresses (a /32 or /128).
fn addresses_or_networks<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let items: Vec<String> = Vec::deserialize(d)?;
    items
        .iter()
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{s}` is neither an address nor a network (like 10.0.0.0/8)"
                    ))
                })
        })
        .collect()
}

impl GatewayConfig {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }

    pub fn body_total_timeout(&self) -> Duration {
        Duration::from_secs(self.body_total_timeout_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }

    pub fn snapshot_every(&self) -> Option<Duration> {
        (self.snapshot_minutes.is_finite() && self.snapshot_minutes > 0.0)
            .then(|| Duration::from_secs_f64(self.snapshot_minutes * 60.0))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Base URL including the API prefix, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// Key sent upstream as `Authorization: Bearer …` (never logged).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Models this upstream serves; empty means any.
    #[serde(default)]
    pub models: Vec<String>,
    /// Whole-call timeout in seconds (default 600).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// The upstream is distillguard's built-in engine (`distillguard engine`): it is told each
    /// call's account and action (`x-distillguard-account`, `x-distillguard-action`) so it
    /// marks the answer with that account's key, and the key it names is logged with the
    /// exchange (`watermark`). Off by default: an outside upstream is not told who calls.
    #[serde(default)]
    pub watermarks: bool,
}

fn default_timeout() -> u64 {
    600
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detector_section_sets_the_detector_and_keeps_the_rest() {
        let c: GatewayConfig =
            toml::from_str("[detector.thresholds]\nmin_active_hours = 0.0\n").unwrap();
        assert_eq!(c.detector.thresholds.min_active_hours, 0.0);
        assert_eq!(
            c.detector.thresholds.distilling,
            detect::Config::default().thresholds.distilling
        );
        assert!(toml::from_str::<GatewayConfig>("[detector]\nbogus = 1\n").is_err());
    }
}
