//! The bus between gateway replicas and detector workers, on NATS JetStream.
//!
//! ```text
//! replica ─► publish ─► JetStream stream DG_EXCHANGES ─► durable consumer per partition ─► worker
//!    │  (NATS away: spool to disk, replay in order)   dg.exchanges.<partition>
//!    ◄──────────── KV bucket dg_standing (verdicts, overrides, allowlist) ◄──────────── worker, admin
//! ```
//!
//! - **Exchanges** go to `dg.exchanges.<p>`, `p` a stable hash of the account, or of its payment
//!   instrument when it has one, so one account's exchanges stay in order on one subject,
//!   workers can split the partitions between them, and accounts that pay with one instrument
//!   (a hydra's strongest link) meet on one worker, which links them.
//!   Each message carries its exchange id as `Nats-Msg-Id`: JetStream drops a duplicate within
//!   its window and the worker drops one that is already in the store.
//! - **Standing** (what the gateway acts on) is a KV bucket every replica watches, so a verdict
//!   or a human decision reaches all replicas as soon as it is written.

mod envelope;
mod publish;
mod spool;
mod standing;

use std::time::Duration;

pub use envelope::Envelope;
pub use publish::Publisher;
pub use spool::Spool;
pub use standing::{Standing, StandingUpdate};
// Re-exported so users of the bus name the same client type.
pub use async_nats;

pub const STREAM: &str = "DG_EXCHANGES";
pub const SUBJECT_PREFIX: &str = "dg.exchanges";
pub const STANDING_BUCKET: &str = "dg_standing";
/// Partitions of the exchange stream. Changing it moves accounts between partitions, so every
/// replica and worker of one deployment must agree on it.
pub const PARTITIONS: u32 = 16;
/// How long JetStream keeps exchanges (the store is the record; this is the replay margin).
pub const STREAM_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// JetStream drops a message whose id it saw within this window.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(10 * 60);

pub const HEADER_ACCOUNT: &str = "Dg-Account";
pub const HEADER_CONTENT: &str = "Dg-Content";
pub const HEADER_TS_MS: &str = "Dg-Ts-Ms";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("NATS: {0}")]
    Nats(String),
    #[error("spool: {0}")]
    Spool(#[from] std::io::Error),
}

fn nats_err(e: impl std::fmt::Display) -> Error {
    Error::Nats(e.to_string())
}

/// The partition of an account's exchanges: that of its payment instrument (`payer`) when it
/// has one, so one payer's accounts share a partition; else that of the account.
pub fn partition_of(account: &str, payer: Option<&str>) -> u32 {
    partition(payer.unwrap_or(account))
}

/// The partition of a key (FNV-1a, stable across builds and machines).
pub fn partition(account: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in account.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(PARTITIONS)) as u32
}

pub fn subject(partition: u32) -> String {
    format!("{SUBJECT_PREFIX}.{partition}")
}

/// Connects to NATS; a process started while NATS is down keeps trying in the background
/// instead of failing, and reconnects for ever after a loss.
pub async fn connect(url: &str) -> Result<async_nats::Client, Error> {
    async_nats::ConnectOptions::new()
        .name("distillguard")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempt| {
            Duration::from_millis((100 * 2u64.pow(attempt.min(4) as u32)).min(1000))
        })
        .connect(url)
        .await
        .map_err(nats_err)
}

/// The JetStream context with a short ack timeout: a publish that is not acknowledged in time
/// goes to the spool rather than holding up the ones behind it.
pub fn jetstream(client: async_nats::Client) -> async_nats::jetstream::Context {
    let mut js = async_nats::jetstream::new(client);
    js.set_timeout(Duration::from_secs(2));
    js
}

/// Creates the exchange stream if it does not exist yet.
pub async fn ensure_stream(
    js: &async_nats::jetstream::Context,
) -> Result<async_nats::jetstream::stream::Stream, Error> {
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: STREAM.into(),
        subjects: vec![format!("{SUBJECT_PREFIX}.>")],
        max_age: STREAM_MAX_AGE,
        duplicate_window: DEDUP_WINDOW,
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(nats_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(partition("acme"), partition("acme"));
        // One payer's accounts meet; an account without one goes by its name.
        assert_eq!(
            partition_of("twin-a", Some("pf_1")),
            partition_of("twin-b", Some("pf_1"))
        );
        assert_ne!(partition("twin-a"), partition("twin-b"));
        assert_eq!(partition_of("acme", None), partition("acme"));
        let used: std::collections::HashSet<u32> =
            (0..200).map(|i| partition(&format!("acct-{i}"))).collect();
        assert_eq!(used.len(), PARTITIONS as usize);
        assert!(used.iter().all(|&p| p < PARTITIONS));
    }
}
