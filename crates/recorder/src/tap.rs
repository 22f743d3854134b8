//! The exchange tap, off the request path: every finished call becomes one exchange line
//! (EXCHANGE_FORMAT.md) that goes two ways.
//!
//! - **sink: the log.** A writer thread drains its queue and appends everything waiting in
//!   one transaction (group commit): under load a commit carries many lines, when idle one
//!   line is committed at once. With `log_durability = committed` (the default) the writer
//!   acknowledges each exchange once its transaction is committed, and the answer waits for
//!   that ([`Tap::record`]): an answer a client received is in the log, whatever happens to the
//!   process after. With `queued` the answer goes out once the line is queued.
//!   The queue is bounded; when it is full, finishing requests wait for room (back-pressure)
//!   rather than dropping lines.
//! - **transform: the detector.** A detector thread parses the same line with the same parser
//!   `scan` uses and feeds the same `Detector`, so live verdicts equal a replay's. Verdict
//!   changes update the policy table, the stored verdict and the audit trail.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use detect::Observation;
use detect::Observer;
use serde_json::Value;
use store::LoggedExchange;
use tokio::sync::mpsc;

use exchange::redact;
use exchange::ContentPolicy;
use serde::{Deserialize, Serialize};

use crate::record::{append_until_stored, now_ms, observation_of, observe, Shared};

/// When an answer may go out, relative to its exchange reaching the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// After the exchange is committed (group commit: one transaction for all waiting).
    Committed,
    /// After the exchange is queued for the writer.
    Queued,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "committed" => Ok(Durability::Committed),
            "queued" => Ok(Durability::Queued),
            other => Err(format!(
                "unknown log durability `{other}`: use committed or queued"
            )),
        }
    }
}

/// A finished exchange on its way to the sinks.
pub struct Finished {
    /// The row as the log keeps it (its line redacted per the content policy).
    pub row: LoggedExchange,
    /// The full line for the detector when the log keeps less; `None` when they are the same,
    /// so the common case carries one copy of the line, not two.
    pub full_line: Option<String>,
    /// Told once the row is committed (`log_durability = committed`).
    pub ack: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Where finished exchanges go: this process's log writer and detector, or the bus to the
/// workers.
#[derive(Clone)]
pub enum Tap {
    Local(mpsc::Sender<Finished>, Durability),
    Bus(bus::Publisher),
}

impl Tap {
    /// Queues an exchange; waits for room when the writer is behind, and with `committed`
    /// durability until the exchange is committed.
    pub async fn record(&self, exchange: Value, content: ContentPolicy) {
        let exchange::Peek {
            id,
            account,
            ts_ms,
            payer,
        } = exchange::Peek::value(&exchange);
        let ts_ms = ts_ms.unwrap_or_else(now_ms);
        let line = exchange.to_string();
        let (log, durability) = match self {
            Tap::Local(log, durability) => (log, *durability),
            Tap::Bus(publisher) => {
                // The worker redacts per the content policy after its detector has read it.
                let e = bus::Envelope {
                    id,
                    account,
                    content: content.as_str().into(),
                    ts_ms: Some(ts_ms),
                    payer,
                    line: line.into(),
                };
                publisher.send(e).await;
                return;
            }
        };
        let (stored, full_line) = match content {
            ContentPolicy::Full => (line, None),
            other => {
                let mut redacted = exchange;
                redact(&mut redacted, other);
                (redacted.to_string(), Some(line))
            }
        };
        metrics::gauge!("distillguard_log_queue_free").set(log.capacity() as f64);
        let row = LoggedExchange {
            id,
            ts_ms,
            account,
            line: stored,
            facts: None,
        };
        let (ack, committed) = match durability {
            Durability::Committed => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                (Some(tx), Some(rx))
            }
            Durability::Queued => (None, None),
        };
        let finished = Finished {
            row,
            full_line,
            ack,
        };
        if log.send(finished).await.is_err() {
            tracing::error!("exchange log writer is gone; an exchange was not logged");
            metrics::counter!("distillguard_log_lost_total").increment(1);
            return;
        }
        if let Some(rx) = committed {
            // The writer retries until the store takes the row; it drops the sender only if it
            // is gone, which the send above would have seen.
            let _ = rx.await;
        }
    }
}

/// Starts the writer and detector threads; returns the tap and a handle that finishes when
/// both have drained (after every `Tap` clone is dropped). The detector thread first catches
/// up with the log as start-up left it (`catch_up`), holding live exchanges in order
/// meanwhile, so the gateway serves while it does; with `snapshot_every`, the detector's
/// state is then saved that often while exchanges come in, and at shutdown.
pub fn start(
    shared: Arc<Shared>,
    durability: Durability,
    queue: usize,
    flush: Duration,
    snapshot_every: Option<Duration>,
    catch_up: crate::snapshot::CatchUp,
) -> (Tap, thread::JoinHandle<()>) {
    let (log_tx, mut log_rx) = mpsc::channel::<Finished>(queue.max(1));
    // Whole committed batches go to the detector: one wake-up per commit, not per exchange;
    // with each, the place in the log of its last exchange.
    let (det_tx, det_rx) =
        std::sync::mpsc::sync_channel::<DetectorBatch>((queue / 1024).clamp(2, 64));
    let detector_shared = shared.clone();
    let detector_thread = thread::Builder::new()
        .name("detector".into())
        .spawn(move || {
            let observer = Observer::default();
            let upto = catch_up_with_the_log(&detector_shared, &catch_up, &det_rx, &observer);
            let held = crate::snapshot::Held {
                upto,
                saved: catch_up.from,
            };
            let mut snapshots =
                crate::snapshot::Snapshotter::new(detector_shared.clone(), snapshot_every, held);
            loop {
                // Wake up now and then without traffic too, so the last burst gets saved.
                let (batch, last_seq) = match det_rx.recv_timeout(Duration::from_secs(5)) {
                    Ok(received) => received,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        snapshots.tick();
                        continue;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                };
                for obs in batch
                    .into_iter()
                    .filter_map(|c| c.into_observation(&observer))
                {
                    observe(&detector_shared, &obs, true);
                }
                if let Some(seq) = last_seq {
                    snapshots.held(seq);
                }
                snapshots.tick();
            }
            snapshots.finish();
        })
        .expect("spawn detector thread");
    let writer = thread::Builder::new()
        .name("exchange-log".into())
        .spawn(move || {
            let observer = Observer::default();
            let mut batch: Vec<Finished> = Vec::with_capacity(1024);
            while let Some(first) = log_rx.blocking_recv() {
                batch.push(first);
                // Take what else is already waiting: one commit for all of it.
                let deadline = std::time::Instant::now() + flush;
                while batch.len() < 1024 && std::time::Instant::now() < deadline {
                    match log_rx.try_recv() {
                        Ok(f) => batch.push(f),
                        Err(_) => break,
                    }
                }
                // A redacted line keeps the detector's facts beside it (for replays); the
                // detector then takes those facts instead of parsing the full line again.
                let mut rows = Vec::with_capacity(batch.len());
                let mut committed = Vec::with_capacity(batch.len());
                let mut acks = Vec::new();
                for Finished {
                    mut row,
                    full_line,
                    ack,
                } in batch.drain(..)
                {
                    acks.extend(ack);
                    match full_line {
                        None => committed.push(Committed::Line(row.line.clone())),
                        Some(full) => match observation_of(&full, &observer) {
                            Some(obs) => {
                                row.facts = Some(obs.to_facts());
                                committed.push(Committed::Facts(Box::new(obs)));
                            }
                            None => committed.push(Committed::Line(full)),
                        },
                    }
                    rows.push(row);
                }
                let places = append_until_stored(shared.store.as_ref(), &rows);
                // Committed: the answers waiting for it may go out.
                for ack in acks {
                    let _ = ack.send(());
                }
                metrics::counter!("distillguard_exchanges_logged_total")
                    .increment(rows.len() as u64);
                // The detector sees each exchange after it is committed, in commit order, and
                // only once: an id already in the log is not counted again (as a replay,
                // which reads the log, would not count it).
                let last_seq = places.iter().flatten().max().copied();
                let committed: Vec<Committed> = committed
                    .into_iter()
                    .zip(&places)
                    .filter_map(|(c, place)| place.map(|_| c))
                    .collect();
                if det_tx.send((committed, last_seq)).is_err() {
                    tracing::error!("detector thread is gone");
                }
            }
            drop(det_tx);
            let _ = detector_thread.join();
        })
        .expect("spawn writer thread");
    (Tap::Local(log_tx, durability), writer)
}

type DetectorBatch = (Vec<Committed>, Option<i64>);

/// Live exchanges held while the detector catches up (about 400 bytes of facts each, so
/// ~400 MB at most); past it, traffic waits for the replay, as it did before it could go on.
const MAX_HELD_DURING_CATCH_UP: usize = 1_000_000;

/// Replays what start-up left (a thread of its own) while this thread takes live batches and
/// holds their facts in order; once the replay is done, feeds them. Returns the last place in
/// the log the detector then holds.
fn catch_up_with_the_log(
    shared: &Arc<Shared>,
    c: &crate::snapshot::CatchUp,
    live: &std::sync::mpsc::Receiver<DetectorBatch>,
    observer: &Observer,
) -> i64 {
    let mut upto = c.to;
    if c.to <= c.from {
        return upto;
    }
    let started = std::time::Instant::now();
    metrics::gauge!("distillguard_detector_catching_up").set(1.0);
    tracing::info!(
        from_seq = c.from,
        to_seq = c.to,
        "the detector is catching up with the log; serving meanwhile on the stored verdicts"
    );
    let replay = {
        let (s, c) = (shared.clone(), c.clone());
        thread::Builder::new()
            .name("catch-up".into())
            .spawn(move || crate::snapshot::catch_up(&s, &c))
            .expect("spawn catch-up thread")
    };
    let mut held: Vec<Observation> = Vec::new();
    while !replay.is_finished() {
        if held.len() >= MAX_HELD_DURING_CATCH_UP {
            // Holding more would only move the wait into memory: let the log queue fill and
            // finishing requests wait for room (back-pressure) until the replay is done.
            thread::sleep(Duration::from_millis(20));
            continue;
        }
        match live.recv_timeout(Duration::from_millis(20)) {
            Ok((batch, last_seq)) => {
                held.extend(
                    batch
                        .into_iter()
                        .filter_map(|c| c.into_observation(observer)),
                );
                upto = upto.max(last_seq.unwrap_or(upto));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    match replay.join() {
        Ok(Ok(replayed)) => tracing::info!(
            replayed,
            live_held = held.len(),
            secs = started.elapsed().as_secs_f64(),
            "the detector caught up with the log"
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "catching up with the log failed; detecting from here on")
        }
        Err(_) => tracing::error!("the catch-up thread panicked; detecting from here on"),
    }
    for obs in held {
        observe(shared, &obs, true);
    }
    metrics::gauge!("distillguard_detector_catching_up").set(0.0);
    upto
}

/// One committed exchange on its way to the detector: its line, or the facts already taken
/// from it.
enum Committed {
    Line(String),
    Facts(Box<Observation>),
}

impl Committed {
    fn into_observation(self, observer: &Observer) -> Option<Observation> {
        match self {
            Committed::Line(line) => observation_of(&line, observer),
            Committed::Facts(obs) => Some(*obs),
        }
    }
}
