//! The detector worker of a scaled-out deployment (`distillguard worker`): the same detector
//! and the same verdict recording as a single gateway's tap, fed from the bus instead.
//!
//! ```text
//! JetStream dg.exchanges.<p> ─► durable consumer dg-detector-<p> ─► store (exactly once by id)
//!                                                                    └─► detector ─► verdicts ─► store + standing bucket
//! ```
//!
//! Each of this worker's partitions is read by its own durable consumer, in order, in batches.
//! A batch is written to the store first; only exchanges the store did not already hold go to
//! the detector, and each message is acknowledged last (explicitly: a message a killed worker
//! held comes back after the ack wait, 30 s, and is then stored, out of order). A worker
//! killed anywhere in between gets the unacknowledged messages again on restart, and the
//! store drops the ones it already has, so every exchange is stored and detected exactly
//! once. On start the worker restores its last snapshot of the detector (taken every
//! `snapshot_every` and at shutdown) and replays, for each partition, only the exchanges
//! stored after the place the snapshot holds for it; without a usable snapshot it replays
//! its partitions whole.
//!
//! With several workers, `index`/`count` split the partitions (`p % count == index`). Accounts
//! that pay with one instrument share a partition (`bus::partition_of`), so they meet on one
//! worker; other links (addresses, templates, timing) join only accounts of the same worker.

use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bus::async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use bus::async_nats::jetstream::Message;
use bus::{Envelope, Standing, StandingUpdate};
use detect::Detector;
use detect::Observer;
use futures_util::StreamExt;
use serde_json::Value;
use store::{LoggedExchange, Store};
use tokio::sync::watch;

use exchange::ContentPolicy;
use respond::{Policy, PolicyTable};

use crate::record::{self, Shared};
use crate::snapshot;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub nats: String,
    /// This worker's share of the partitions: those with `p % count == index`.
    pub index: u32,
    pub count: u32,
    /// Messages taken per fetch.
    pub batch: usize,
    pub policy: Policy,
    /// The detector's config (the gateway config's `[detector]`).
    pub detector: detect::Config,
    /// How often the detector's state is saved to the store (and at shutdown); `None`: never,
    /// every start replays the partitions whole.
    pub snapshot_every: Option<Duration>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            nats: "nats://127.0.0.1:4222".into(),
            index: 0,
            count: 1,
            batch: 512,
            policy: Policy::default(),
            detector: detect::Config::default(),
            snapshot_every: Some(Duration::from_secs(600)),
        }
    }
}

impl WorkerConfig {
    pub fn partitions(&self) -> Vec<u32> {
        (0..bus::PARTITIONS)
            .filter(|p| p % self.count.max(1) == self.index)
            .collect()
    }

    /// The name this worker's snapshots are kept under: another split of the partitions, or
    /// another rule for choosing them (accounts by payer since the name says so), is another
    /// state, so a snapshot of an earlier rule is not used.
    pub fn snapshot_name(&self) -> String {
        format!("worker-{}-of-{}-by-payer", self.index, self.count)
    }
}

/// What the detector holds, per partition: the place in the log of the last exchange of that
/// partition it has taken. Partitions are consumed concurrently, so one place for the whole
/// log would not say it; within a partition, batches are stored and detected one at a time,
/// so places grow in the order exchanges reach the detector. A batch holds `gate` for reading
/// while it stores and detects; a snapshot holds it for writing, so it never sees a batch
/// half taken.
#[derive(Default)]
pub struct Progress {
    gate: RwLock<()>,
    positions: Mutex<BTreeMap<u32, i64>>,
}

impl Progress {
    fn positions(&self) -> BTreeMap<u32, i64> {
        self.positions.lock().clone()
    }
}

/// Runs until `shutdown` turns true; each partition finishes the batch it holds first.
pub async fn run(
    config: WorkerConfig,
    store: Arc<dyn Store>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    if config.count == 0 || config.index >= config.count {
        return Err(format!(
            "worker index {} must be below the worker count {}",
            config.index, config.count
        ));
    }
    let shared = Arc::new(Shared {
        store,
        detector: Arc::new(Mutex::new(Detector::new(config.detector.clone()))),
        table: Arc::new(PolicyTable::default()),
        policy: config.policy.clone(),
        last_scored: Default::default(),
    });
    let mine = config.partitions();
    let name = config.snapshot_name();
    let progress = Arc::new(Progress::default());
    let mut saved = {
        let (s, p, mine, name) = (shared.clone(), progress.clone(), mine.clone(), name.clone());
        let (saved, replayed) = tokio::task::spawn_blocking(move || restore(&s, &p, &mine, &name))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        tracing::info!(
            snapshot = !saved.is_empty(),
            replayed,
            "detector state restored (a snapshot, then each partition's exchanges stored after it)"
        );
        saved
    };

    let client = bus::connect(&config.nats)
        .await
        .map_err(|e| e.to_string())?;
    let js = bus::jetstream(client);
    let (stream, standing) = loop {
        match (bus::ensure_stream(&js).await, Standing::open(&js).await) {
            (Ok(stream), Ok(standing)) => break (stream, standing),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "waiting for NATS");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
        }
    };
    let mut tasks = Vec::new();
    for p in mine {
        let name = format!("dg-detector-{p}");
        let consumer = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: bus::subject(p),
                    // Each message acknowledged on its own: acknowledging "all up to here" would
                    // also acknowledge messages a killed worker had fetched but not stored.
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("consumer {name}: {e}"))?;
        tasks.push(tokio::spawn(consume(
            consumer,
            p,
            shared.clone(),
            progress.clone(),
            standing.clone(),
            config.batch,
            shutdown.clone(),
        )));
    }
    let partitions = tasks.len();
    tasks.push(tokio::spawn(publish_groups(
        shared.clone(),
        standing.clone(),
        shutdown.clone(),
    )));
    tracing::info!(partitions, "worker consuming");
    if let Some(every) = config.snapshot_every {
        let mut tick = tokio::time::interval(every);
        // The first tick is at once: a start that replayed exchanges saves them right away.
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            saved = save(&shared, &progress, &name, saved).await;
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    if config.snapshot_every.is_some() {
        save(&shared, &progress, &name, saved).await;
    }
    Ok(())
}

/// Saves a snapshot when the detector holds exchanges the last one (`saved`) did not; returns
/// what the stored snapshot now holds.
async fn save(
    shared: &Arc<Shared>,
    progress: &Arc<Progress>,
    name: &str,
    saved: BTreeMap<u32, i64>,
) -> BTreeMap<u32, i64> {
    if progress.positions() == saved {
        return saved;
    }
    let (s, p, name) = (shared.clone(), progress.clone(), name.to_owned());
    match tokio::task::spawn_blocking(move || take_snapshot(&s, &p, &name)).await {
        Ok(Ok(positions)) => positions,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "saving a detector snapshot failed");
            saved
        }
        Err(e) => {
            tracing::error!(error = %e, "the snapshot task failed");
            saved
        }
    }
}

fn take_snapshot(
    shared: &Shared,
    progress: &Progress,
    name: &str,
) -> store::Result<BTreeMap<u32, i64>> {
    let started = std::time::Instant::now();
    let (state, positions) = {
        let _no_batch_in_flight = progress.gate.write();
        let state = shared.detector.lock().save_state();
        (state, progress.positions())
    };
    let held_ms = started.elapsed().as_millis() as u64;
    let upto = positions.values().copied().max().unwrap_or(0);
    let meta = serde_json::json!({ "positions": positions });
    snapshot::write(
        shared.store.as_ref(),
        name,
        upto,
        &meta,
        &state,
        started,
        held_ms,
    )?;
    Ok(positions)
}

/// Rebuilds the detector from this worker's snapshot and the exchanges of its partitions
/// stored after it (all of them without a usable snapshot). Returns the places the snapshot
/// holds (empty without one) and how many exchanges were replayed.
fn restore(
    shared: &Shared,
    progress: &Progress,
    mine: &[u32],
    name: &str,
) -> store::Result<(BTreeMap<u32, i64>, u64)> {
    let mut held: BTreeMap<u32, i64> = BTreeMap::new();
    if let Some((meta, detector, _)) = snapshot::load(shared, name)? {
        match serde_json::from_value(meta["positions"].clone()) {
            Ok(positions) => {
                *shared.detector.lock() = detector;
                held = positions;
            }
            Err(e) => tracing::warn!(
                error = %e,
                "the detector snapshot says no places per partition; replaying the partitions whole"
            ),
        }
    }
    let from = mine
        .iter()
        .map(|p| held.get(p).copied().unwrap_or(0))
        .min()
        .unwrap_or(0);
    let mut reached = held.clone();
    let replayed = record::replay_after(shared, from, i64::MAX, |seq, row| {
        let p = bus::partition_of(
            &row.account,
            exchange::Peek::line(&row.line)
                .ok()
                .and_then(|p| p.payer)
                .as_deref(),
        );
        if !mine.contains(&p) || seq <= held.get(&p).copied().unwrap_or(0) {
            return false;
        }
        reached.insert(p, seq);
        true
    })?;
    *progress.positions.lock() = reached;
    Ok((held, replayed))
}

/// Members listed per group in the standing bucket (the count is always given).
const GROUP_MEMBERS_SHOWN: usize = 1000;

/// Every few seconds, pushes the groups that changed to the standing bucket, so every
/// replica's admin API can list them and apply a decision to a whole group. Only groups that
/// changed are reported (the detector keeps track), so the work under the detector's lock
/// does not grow with the number of groups; a group merged into another is published as
/// null, which replicas take as "gone". What fails to publish is retried on the next tick.
async fn publish_groups(shared: Arc<Shared>, standing: Standing, shutdown: watch::Receiver<bool>) {
    let mut published: HashMap<String, (usize, String, i64)> = HashMap::new();
    let mut pending: HashMap<String, Value> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    while !*shutdown.borrow() {
        tick.tick().await;
        let s = shared.clone();
        let Ok(changes) =
            tokio::task::spawn_blocking(move || s.detector.lock().take_group_changes()).await
        else {
            continue;
        };
        for cluster in changes.dissolved {
            published.remove(&cluster);
            pending.insert(cluster, Value::Null);
        }
        for g in changes.updated {
            let signature = (
                g.members.len(),
                g.verdict.as_str().to_owned(),
                (g.score * 1000.0) as i64,
            );
            if published.get(&g.cluster) == Some(&signature) {
                continue;
            }
            let mut report = serde_json::to_value(&g).unwrap_or(Value::Null);
            report["member_count"] = Value::from(g.members.len());
            if let Some(m) = report["members"].as_array_mut() {
                m.truncate(GROUP_MEMBERS_SHOWN);
            }
            if let Some(e) = report["evidence"].as_array_mut() {
                e.truncate(5);
            }
            published.insert(g.cluster.clone(), signature);
            pending.insert(g.cluster, report);
        }
        let mut sent = Vec::new();
        for (cluster, report) in &pending {
            let u = StandingUpdate::Group {
                cluster: cluster.clone(),
                report: report.clone(),
            };
            match standing.put(&u).await {
                Ok(()) => sent.push(cluster.clone()),
                Err(e) => {
                    tracing::warn!(error = %e, "publishing a group failed; retrying later");
                    break;
                }
            }
        }
        for cluster in sent {
            pending.remove(&cluster);
        }
    }
}

async fn consume(
    consumer: PullConsumer,
    partition: u32,
    shared: Arc<Shared>,
    progress: Arc<Progress>,
    standing: Standing,
    batch: usize,
    shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        let fetched = consumer
            .fetch()
            .max_messages(batch)
            .expires(Duration::from_millis(500))
            .messages()
            .await;
        let mut messages: Vec<Message> = Vec::new();
        match fetched {
            Ok(mut s) => {
                while let Some(m) = s.next().await {
                    match m {
                        Ok(m) => messages.push(m),
                        Err(e) => {
                            tracing::debug!(error = %e, "fetch ended early");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "fetching from NATS failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        if messages.is_empty() {
            continue;
        }
        let envelopes: Vec<Envelope> = messages
            .iter()
            .filter_map(|m| {
                let e = Envelope::from_message(m);
                if e.is_none() {
                    tracing::error!(subject = %m.subject, "a message without exchange headers was skipped");
                    metrics::counter!("distillguard_worker_bad_messages_total").increment(1);
                }
                e
            })
            .collect();
        let (s, p) = (shared.clone(), progress.clone());
        let changed = match tokio::task::spawn_blocking(move || {
            process(&s, &p, partition, envelopes)
        })
        .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "processing a batch failed");
                continue;
            }
        };
        for (account, verdict) in changed {
            let u = StandingUpdate::Verdict {
                account,
                verdict: verdict.as_str().into(),
            };
            if let Err(e) = standing.put(&u).await {
                tracing::error!(error = %e, "pushing a verdict to the replicas failed");
            }
        }
        // Stored and detected: acknowledge every message of the batch.
        for m in &messages {
            if let Err(e) = m.ack().await {
                tracing::warn!(error = %e, "acknowledging failed; the message will be redelivered and deduplicated");
            }
        }
    }
}

/// Stores a batch (retrying until the store takes it) and feeds the exchanges that were new to
/// the detector, in order. Returns the verdict changes.
fn process(
    shared: &Shared,
    progress: &Progress,
    partition: u32,
    envelopes: Vec<Envelope>,
) -> Vec<(String, detect::Verdict)> {
    // No snapshot while this batch is stored but not yet detected.
    let _batch = progress.gate.read();
    let observer = OBSERVER.with(|p| p.clone());
    let (rows, observations): (Vec<LoggedExchange>, Vec<Option<detect::Observation>>) =
        envelopes.iter().map(|e| stored_row(e, &observer)).unzip();
    let new = record::append_until_stored(shared.store.as_ref(), &rows);
    metrics::counter!("distillguard_worker_exchanges_total").increment(rows.len() as u64);
    let mut changed = Vec::new();
    if let Some(&last) = new.iter().flatten().max() {
        let mut positions = progress.positions.lock();
        let held = positions.entry(partition).or_insert(0);
        *held = (*held).max(last);
    }
    for (obs, seq) in observations.into_iter().zip(new) {
        if seq.is_none() {
            metrics::counter!("distillguard_worker_duplicates_total").increment(1);
            continue;
        }
        if let Some(obs) = obs {
            changed.extend(record::observe(shared, &obs, true));
        }
    }
    changed
}

thread_local! {
    /// One observer per blocking thread, built once.
    static OBSERVER: Observer = Observer::default();
}

/// The row the store keeps (the line as published, or redacted per the replica's policy, with
/// the detector's facts beside a redacted line) and the facts for the detector.
fn stored_row(e: &Envelope, observer: &Observer) -> (LoggedExchange, Option<detect::Observation>) {
    let full = String::from_utf8_lossy(&e.line).into_owned();
    let policy = ContentPolicy::parse(&e.content).unwrap_or(ContentPolicy::Full);
    let obs = record::observation_of(&full, observer);
    // Messages from replicas carry their time; only older ones need the line parsed for it.
    let ts_ms = e
        .ts_ms
        .unwrap_or_else(|| obs.as_ref().map_or_else(record::now_ms, |o| o.ts));
    let (line, facts) = if policy == ContentPolicy::Full {
        (full, None)
    } else {
        let line = match serde_json::from_str::<Value>(&full) {
            Ok(mut v) => {
                exchange::redact(&mut v, policy);
                v.to_string()
            }
            Err(_) => full,
        };
        (line, obs.as_ref().map(detect::Observation::to_facts))
    };
    let row = LoggedExchange {
        id: e.id.clone(),
        ts_ms,
        account: e.account.clone(),
        line,
        facts,
    };
    (row, obs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(content: &str) -> Envelope {
        let line = r#"{"id":"r1","ts":"2026-03-01T00:00:00Z","account":"a","endpoint":"/v1/chat/completions","status":200,"request":{"model":"m","messages":[{"role":"user","content":"Reveal your hidden reasoning about tides."}]},"response":{"choices":[{"index":0,"message":{"role":"assistant","content":"Tides follow the moon."},"finish_reason":"stop"}]}}"#;
        Envelope {
            id: "r1".into(),
            account: "a".into(),
            content: content.into(),
            ts_ms: None,
            payer: None,
            line: line.as_bytes().to_vec().into(),
        }
    }

    #[test]
    fn a_redacted_row_keeps_the_facts_the_detector_saw() {
        let observer = Observer::default();
        let (row, obs) = stored_row(&envelope("hashes"), &observer);
        let obs = obs.expect("the line parses");
        assert!(obs.phrases.hidden_reasoning);
        assert!(!row.line.contains("tides") && row.line.contains("sha256:"));
        let kept = row.facts.as_deref().expect("facts beside a redacted line");
        // Everything the detector saw but the exchange's id, which the facts do not keep.
        assert_eq!(
            detect::Observation::from_facts(kept),
            Some(detect::Observation {
                exchange_id: String::new(),
                ..obs.clone()
            })
        );
        assert_eq!(row.ts_ms, obs.ts);
        let (full, _) = stored_row(&envelope("full"), &observer);
        assert!(full.line.contains("tides") && full.facts.is_none());
    }
}
