//! Sink: the replica side of the exchange stream. A task takes finished exchanges from a
//! bounded queue and publishes them to JetStream with up to [`IN_FLIGHT`] acknowledgements
//! pending (pipelined, not one round trip each). An exchange that cannot be published (NATS
//! away, no acknowledgement in time) goes to the [`Spool`]; while the spool holds anything,
//! new exchanges queue behind it so each account's exchanges keep their order, and once NATS
//! is back the spool is replayed and emptied. When NATS goes away with publishes still
//! unacknowledged, those go to the spool before the next exchange does (one that did arrive is
//! published again and dropped by JetStream, and by the store, as a repeat of its id).

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::Context;
use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::sync::mpsc;

use crate::envelope::Envelope;
use crate::spool::{Spool, SpoolError};
use crate::{partition_of, subject, Error, HEADER_ACCOUNT, HEADER_CONTENT, HEADER_TS_MS};

/// Publishes awaiting their acknowledgement at once.
pub const IN_FLIGHT: usize = 512;

/// Queues exchanges for publishing. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Envelope>,
}

impl Publisher {
    /// Starts the publishing task; it ends, after publishing or spooling everything queued,
    /// once every `Publisher` clone is dropped.
    pub fn start(
        client: async_nats::Client,
        spool_path: &Path,
        spool_max_bytes: u64,
        queue: usize,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), Error> {
        let spool = Spool::open(spool_path, spool_max_bytes)?;
        if spool.backlog() > 0 {
            tracing::warn!(
                backlog = spool.backlog(),
                "exchanges spooled by an earlier run will be published first"
            );
        }
        let (tx, rx) = mpsc::channel(queue.max(1));
        let task = tokio::spawn(run(client, rx, spool));
        Ok((Self { tx }, task))
    }

    /// Queues one exchange; waits for room when the publisher is behind (back-pressure).
    pub async fn send(&self, e: Envelope) {
        if self.tx.send(e).await.is_err() {
            tracing::error!("the exchange publisher is gone; an exchange was not published");
            metrics::counter!("distillguard_log_lost_total").increment(1);
        }
    }
}

fn connected(client: &async_nats::Client) -> bool {
    client.connection_state() == async_nats::connection::State::Connected
}

async fn publish(js: &Context, e: &Envelope) -> Result<PublishAckFuture, String> {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, e.id.as_str());
    headers.insert(HEADER_ACCOUNT, e.account.as_str());
    headers.insert(HEADER_CONTENT, e.content.as_str());
    if let Some(ts) = e.ts_ms {
        headers.insert(HEADER_TS_MS, ts.to_string().as_str());
    }
    let send = js.publish_with_headers(
        subject(partition_of(&e.account, e.payer.as_deref())),
        headers,
        e.line.clone(),
    );
    match tokio::time::timeout(Duration::from_secs(1), send).await {
        Ok(Ok(ack)) => Ok(ack),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("NATS did not take the message in time".into()),
    }
}

type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

fn pending(ack: PublishAckFuture) -> Pending {
    Box::pin(async move { ack.await.map(|_| ()).map_err(|err| err.to_string()) })
}

/// Publishes awaiting their acknowledgement, with their exchanges in the same order.
#[derive(Default)]
struct InFlight {
    acks: FuturesOrdered<Pending>,
    exchanges: VecDeque<Envelope>,
}

impl InFlight {
    fn push(&mut self, e: Envelope, ack: PublishAckFuture) {
        self.acks.push_back(pending(ack));
        self.exchanges.push_back(e);
    }

    fn len(&self) -> usize {
        self.exchanges.len()
    }

    fn is_empty(&self) -> bool {
        self.exchanges.is_empty()
    }

    /// The next acknowledgement in publishing order, with its exchange.
    async fn next(&mut self) -> Option<(Envelope, Result<(), String>)> {
        let r = self.acks.next().await?;
        let e = self
            .exchanges
            .pop_front()
            .expect("one exchange per acknowledgement");
        Some((e, r))
    }

    /// Gives up waiting: the exchanges still unacknowledged, oldest first. Any that did reach
    /// the stream are published again from the spool and dropped there by their id.
    fn abandon(&mut self) -> VecDeque<Envelope> {
        self.acks = FuturesOrdered::new();
        std::mem::take(&mut self.exchanges)
    }
}

fn spool_or_log(spool: &mut Spool, e: &Envelope) {
    metrics::counter!("distillguard_spooled_total").increment(1);
    match spool.append(e) {
        Ok(()) => {}
        Err(SpoolError::Full { max_bytes }) => {
            // Logged once per outage; every drop is counted.
            if spool.dropped() == 1 {
                tracing::error!(
                    max_bytes,
                    "the spool is full: exchanges are dropped (counted in \
                     distillguard_spool_dropped_total) until NATS is back"
                );
            }
        }
        Err(SpoolError::Io(err)) => {
            metrics::counter!("distillguard_log_lost_total").increment(1);
            tracing::error!(id = %e.id, error = %err, "an exchange could be neither published nor spooled");
        }
    }
}

/// Spools a new exchange behind those published before it and not yet acknowledged, which go
/// first, so each account keeps its order in the spool (waiting for their acknowledgements to
/// fail would stall the queue for the ack timeout).
fn spool_behind(inflight: &mut InFlight, spool: &mut Spool, e: &Envelope) {
    for earlier in inflight.abandon() {
        spool_or_log(spool, &earlier);
    }
    spool_or_log(spool, e);
}

async fn run(client: async_nats::Client, mut rx: mpsc::Receiver<Envelope>, mut spool: Spool) {
    let js = crate::jetstream(client.clone());
    let mut inflight = InFlight::default();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut open = true;
    while open || !inflight.is_empty() {
        tokio::select! {
            Some((e, r)) = inflight.next(), if !inflight.is_empty() => match r {
                Ok(()) => metrics::counter!("distillguard_exchanges_published_total").increment(1),
                Err(err) => {
                    tracing::warn!(error = %err, "publish not acknowledged; spooling");
                    spool_or_log(&mut spool, &e);
                }
            },
            msg = rx.recv(), if open && inflight.len() < IN_FLIGHT => match msg {
                None => open = false,
                Some(e) if spool.backlog() > 0 || !connected(&client) => {
                    spool_behind(&mut inflight, &mut spool, &e);
                }
                Some(e) => match publish(&js, &e).await {
                    Ok(ack) => inflight.push(e, ack),
                    Err(err) => {
                        tracing::warn!(error = %err, "publish failed; spooling");
                        spool_behind(&mut inflight, &mut spool, &e);
                    }
                },
            },
            _ = tick.tick() => {
                if spool.backlog() > 0 && inflight.is_empty() && connected(&client) {
                    drain(&js, &mut spool).await;
                }
            }
        }
    }
    if spool.backlog() > 0 && connected(&client) {
        drain(&js, &mut spool).await;
    }
    if spool.backlog() > 0 {
        tracing::warn!(
            backlog = spool.backlog(),
            "exchanges stay spooled; they are published at the next start"
        );
    }
}

/// Replays the spool in order; empties it only when every exchange in it was acknowledged
/// (one that was published twice is dropped downstream by its id).
async fn drain(js: &Context, spool: &mut Spool) {
    let waiting = match spool.entries() {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "reading the spool failed");
            return;
        }
    };
    let mut total = 0u64;
    let mut inflight: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut failed = false;
    for e in waiting {
        total += 1;
        while inflight.len() >= IN_FLIGHT {
            if let Some(Err(_)) = inflight.next().await {
                failed = true;
            }
        }
        if failed {
            break;
        }
        match publish(js, &e).await {
            Ok(ack) => inflight.push_back(pending(ack)),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    while let Some(r) = inflight.next().await {
        failed |= r.is_err();
    }
    if failed {
        tracing::warn!("replaying the spool failed part way; retrying shortly");
        return;
    }
    if let Err(e) = spool.clear() {
        tracing::error!(error = %e, "emptying the spool failed");
        return;
    }
    metrics::counter!("distillguard_exchanges_published_total").increment(total);
    tracing::info!(exchanges = total, "spool replayed to NATS");
}
