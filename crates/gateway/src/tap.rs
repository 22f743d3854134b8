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

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use detect::text::PhraseMatcher;
use detect::{Detector, Observation, Verdict};
use serde_json::Value;
use sha2::{Digest, Sha256};
use store::{AuditEntry, LoggedExchange, Store, StoredVerdict};
use tokio::sync::mpsc;

use crate::config::{ContentPolicy, Durability};
use crate::policy::{Policy, PolicyTable};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
        let id = exchange["id"].as_str().unwrap_or_default().to_owned();
        let account = exchange["account"].as_str().unwrap_or_default().to_owned();
        let ts_ms = exchange::Timestamp::parse(exchange["ts"].as_str().unwrap_or_default())
            .map_or_else(|_| now_ms(), |t| t.millis());
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
                    payer: exchange["meta"]["payment_fingerprint"]
                        .as_str()
                        .map(str::to_owned),
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

/// Keys whose string values are the schema's own words (a role, a model, a finish reason, an
/// id), not what a person or the model wrote: they are kept under every content policy.
/// Everything else in a request or a response is text until proven otherwise.
pub const STRUCTURAL: &[&str] = &[
    "model",
    "role",
    "type",
    "object",
    "id",
    "finish_reason",
    "system_fingerprint",
    "service_tier",
    "reasoning_effort",
    "encoding_format",
    "tool_choice",
    "tool_call_id",
    "detail",
    "format",
];

/// Keys whose numbers stand for text: token ids of a completions prompt or an embeddings
/// input, the bytes of a logprob token, an embedding vector (from which text can be
/// recovered).
const NUMBERS_AS_TEXT: &[&str] = &["prompt", "input", "bytes", "embedding"];

/// What the log keeps of an exchange under `hashes` (each text by its SHA-256 and length) and
/// `metadata` (no text). The whole request and response are walked, whatever their shape, and
/// every string is redacted unless its key is one of a few structural ones ([`STRUCTURAL`]):
/// message content as a string or as content parts, tool descriptions and call arguments,
/// tool results, reasoning fields, logprob tokens, completions prompts, embeddings input, an
/// unparsed body. A field OpenAI adds tomorrow is redacted by default. Identity facts outside
/// the request and response (account, key id, address, `meta`) are kept: they are what
/// linking reads.
pub fn redact(v: &mut Value, policy: ContentPolicy) {
    if policy == ContentPolicy::Full {
        return;
    }
    for section in ["request", "response"] {
        if let Some(part) = v.get_mut(section) {
            redact_value(part, None, policy);
        }
    }
}

fn redact_value(v: &mut Value, key: Option<&str>, policy: ContentPolicy) {
    match v {
        Value::String(text) => {
            if !key.is_some_and(|k| STRUCTURAL.contains(&k)) {
                *v = redacted_text(text, policy);
            }
        }
        Value::Array(items) => {
            if key.is_some_and(|k| NUMBERS_AS_TEXT.contains(&k)) && holds_numbers(items) {
                *v = redacted_text(&Value::Array(std::mem::take(items)).to_string(), policy);
                return;
            }
            // An array's items are read under the array's key (`prompt: ["a", "b"]`).
            for item in items {
                redact_value(item, key, policy);
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                redact_value(item, Some(k.as_str()), policy);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn holds_numbers(items: &[Value]) -> bool {
    items.iter().any(|i| match i {
        Value::Number(_) => true,
        Value::Array(inner) => holds_numbers(inner),
        _ => false,
    })
}

fn redacted_text(text: &str, policy: ContentPolicy) -> Value {
    match policy {
        ContentPolicy::Hashes => Value::String(format!(
            "sha256:{:x} chars:{}",
            Sha256::digest(text.as_bytes()),
            text.chars().count()
        )),
        _ => Value::String(String::new()),
    }
}

/// What the background threads share with the request path.
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub detector: Arc<Mutex<Detector>>,
    pub table: Arc<PolicyTable>,
    pub policy: Policy,
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
            let phrases = PhraseMatcher::default();
            let upto = catch_up_with_the_log(&detector_shared, &catch_up, &det_rx, &phrases);
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
                    .filter_map(|c| c.into_observation(&phrases))
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
            let phrases = PhraseMatcher::default();
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
                        Some(full) => match observation_of(&full, &phrases) {
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
    phrases: &PhraseMatcher,
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
                        .filter_map(|c| c.into_observation(phrases)),
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
    fn into_observation(self, phrases: &PhraseMatcher) -> Option<Observation> {
        match self {
            Committed::Line(line) => observation_of(&line, phrases),
            Committed::Facts(obs) => Some(*obs),
        }
    }
}

/// Appends a batch to the log, retrying (with a growing pause) until the store takes it: an
/// exchange that was served is never dropped for a passing store error. Returns each
/// exchange's place in the log (`None` for one the log already held).
pub fn append_until_stored(store: &dyn Store, rows: &[LoggedExchange]) -> Vec<Option<i64>> {
    let mut attempt = 0u64;
    loop {
        match store.append_exchanges(rows) {
            Ok(places) => return places,
            Err(e) => {
                attempt += 1;
                tracing::error!(error = %e, attempt, "writing exchanges failed; retrying");
                thread::sleep(Duration::from_millis(100 * attempt.min(50)));
            }
        }
    }
}

/// The detector's facts of one line (the same parser and reduction `scan` uses), or `None`
/// with a warning when the line does not parse.
pub fn observation_of(line: &str, phrases: &PhraseMatcher) -> Option<Observation> {
    match exchange::parse_line(line.as_bytes()) {
        Ok(ex) => Some(Observation::of(&ex, phrases)),
        Err(_) => {
            tracing::warn!("an exchange line did not parse; the detector skipped it");
            None
        }
    }
}

/// The facts to replay for a logged exchange: those kept beside a redacted line, or the line's
/// own when it was kept whole. A redacted line whose facts another version of the detector
/// made is skipped (`None`): its hash strings read as prompts would be false evidence.
pub fn replay_observation(row: &LoggedExchange, phrases: &PhraseMatcher) -> Option<Observation> {
    match row.facts.as_deref() {
        Some(facts) => Observation::from_facts(facts),
        None => observation_of(&row.line, phrases),
    }
}

/// Feeds one exchange's facts to the detector; on a verdict change, updates the table, the
/// stored verdict and (when `audit`) the audit trail. Returns the accounts whose verdict
/// changed.
pub fn observe(shared: &Shared, obs: &Observation, audit: bool) -> Vec<(String, Verdict)> {
    let mut detector = shared.detector.lock().unwrap_or_else(|p| p.into_inner());
    let changes = detector.observe_facts(obs);
    if changes.is_empty() {
        return Vec::new();
    }
    let reports: Vec<_> = changes
        .iter()
        .map(|c| detector.report(&c.account))
        .collect();
    drop(detector);
    let changed = changes.iter().map(|c| (c.account.clone(), c.to)).collect();
    for (change, report) in changes.into_iter().zip(reports) {
        record_change(shared, obs.ts, change, report, audit);
    }
    changed
}

fn record_change(
    shared: &Shared,
    ts_ms: i64,
    change: detect::VerdictChange,
    report: Option<detect::AccountReport>,
    audit: bool,
) {
    shared.table.raise_verdict(&change.account, change.to);
    metrics::counter!("distillguard_verdict_changes_total", "verdict" => change.to.as_str())
        .increment(1);
    let Some(report) = report else { return };
    let stored = StoredVerdict {
        account: change.account.clone(),
        score: report.score,
        verdict: change.to.as_str().into(),
        first_flagged: report.first_flagged.clone(),
        reasons: serde_json::to_value(&report.reasons).unwrap_or(Value::Null),
        updated_ms: ts_ms,
    };
    if let Err(e) = shared.store.put_verdict(&stored) {
        tracing::error!(error = %e, "storing a verdict failed");
    }
    if audit {
        let (from, to) = (
            shared.policy.for_verdict(change.from),
            shared.policy.for_verdict(change.to),
        );
        let why: Vec<String> = report
            .reasons
            .iter()
            .filter(|r| r.value > 0.0)
            .take(3)
            .map(|r| format!("{} (+{:.1}): {}", r.signal, r.value, r.detail))
            .collect();
        let entry = AuditEntry {
            ts_ms,
            account: change.account.clone(),
            action: if from == to {
                format!("verdict {}", change.to.as_str())
            } else {
                to.as_str().into()
            },
            actor: "detector".into(),
            reason: format!(
                "verdict {} -> {} (score {:.3}): {}",
                change.from.as_str(),
                change.to.as_str(),
                change.score,
                why.join("; ")
            ),
        };
        if let Err(e) = shared.store.audit(&entry) {
            tracing::error!(error = %e, "writing the audit trail failed");
        }
        if to != from {
            metrics::counter!("distillguard_actions_total", "action" => to.as_str()).increment(1);
        }
    }
    if change.to == Verdict::Distilling {
        tracing::warn!(account = %change.account, score = change.score, "account flagged as distilling");
    }
}

/// Replays the exchanges logged after `from_seq` (where a snapshot holds up to) that `mine`
/// accepts, given each one's place in the log and row (a worker takes its partitions, each
/// after its own place), up to `upto_seq` (`i64::MAX`: to the end). Returns how many were
/// replayed.
pub fn replay_after(
    shared: &Shared,
    from_seq: i64,
    upto_seq: i64,
    mut mine: impl FnMut(i64, &LoggedExchange) -> bool,
) -> store::Result<u64> {
    let phrases = PhraseMatcher::default();
    let (mut after, mut n, mut skipped) = (from_seq, 0, 0u64);
    loop {
        let page = shared.store.exchanges(None, after, 4096)?;
        let Some(last) = page.last() else { break };
        after = last.0;
        let done = after >= upto_seq;
        for (_, e) in page
            .iter()
            .filter(|(seq, e)| *seq <= upto_seq && mine(*seq, e))
        {
            match replay_observation(e, &phrases) {
                Some(obs) => {
                    observe(shared, &obs, false);
                }
                None => skipped += 1,
            }
            n += 1;
        }
        if done {
            break;
        }
    }
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "exchanges left out of the replay: unreadable, or redacted with facts from another detector version"
        );
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An exchange with text in every place the OpenAI schema puts it.
    fn everywhere() -> Value {
        json!({
            "id": "req_1", "ts": "2026-01-01T00:00:00Z", "account": "acme", "key": "key_1",
            "ip": "10.0.0.1", "endpoint": "/v1/chat/completions", "status": 200,
            "meta": {"payment_fingerprint": "pf_1"},
            "request": {
                "model": "m",
                "messages": [
                    {"role": "system", "content": "SECRET-system"},
                    {"role": "user", "content": [
                        {"type": "text", "text": "SECRET-part"},
                        {"type": "image_url", "image_url": {"url": "data:SECRET-image", "detail": "low"}}
                    ]},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "SECRET-fn", "arguments": "{\"q\":\"SECRET-args\"}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "SECRET-result"}
                ],
                "tools": [{"type": "function", "function": {"name": "lookup", "description": "SECRET-tool",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string", "description": "SECRET-param"}}}}}],
                "stop": ["SECRET-stop"],
                "user": "SECRET-user",
                "max_tokens": 50,
                "some_future_field": {"nested": ["SECRET-future"]}
            },
            "response": {
                "id": "chatcmpl-1", "object": "chat.completion", "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": [{"type": "output_text", "text": "SECRET-answer"}],
                        "reasoning_content": "SECRET-reasoning", "reasoning": "SECRET-reasoning2", "refusal": "SECRET-refusal"},
                    "logprobs": {"content": [{"token": "SECRET-token", "logprob": -0.1, "bytes": [83, 69],
                        "top_logprobs": [{"token": "SECRET-top", "logprob": -1.0, "bytes": [83]}]}]}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 7}
            }
        })
    }

    #[test]
    fn redaction_walks_the_whole_schema_and_keeps_the_structure() {
        for policy in [ContentPolicy::Metadata, ContentPolicy::Hashes] {
            let mut v = everywhere();
            redact(&mut v, policy);
            let text = v.to_string();
            assert!(!text.contains("SECRET"), "{policy:?} left text: {text}");
            assert!(!text.contains("[83,69]"), "logprob bytes are text too");
            // What detection and linking read stays.
            assert_eq!(v["account"], "acme");
            assert_eq!(v["meta"]["payment_fingerprint"], "pf_1");
            assert_eq!(v["request"]["model"], "m");
            assert_eq!(v["request"]["max_tokens"], 50);
            assert_eq!(v["request"]["messages"][1]["role"], "user");
            assert_eq!(v["request"]["messages"][1]["content"][0]["type"], "text");
            assert_eq!(v["response"]["choices"][0]["finish_reason"], "stop");
            assert_eq!(v["response"]["usage"]["completion_tokens"], 7);
            // And the line still reads as an exchange.
            exchange::parse_line(text.as_bytes()).expect("a redacted line still reads");
        }
    }

    #[test]
    fn completions_prompts_and_embeddings_input_are_redacted_in_every_shape() {
        for request in [
            json!({"model": "m", "prompt": "SECRET"}),
            json!({"model": "m", "prompt": ["SECRET-a", "SECRET-b"]}),
            json!({"model": "m", "prompt": [1234, 5678]}),
            json!({"model": "m", "input": [[1234, 5678], [91011]]}),
            json!({"unparsed_body": "{\"messages\": SECRET"}),
        ] {
            let mut v = json!({"id": "x", "ts": "2026-01-01T00:00:00Z", "account": "a",
                "endpoint": "/v1/embeddings", "status": 200, "request": request,
                "response": {"data": [{"object": "embedding", "embedding": [0.25, -0.5]}]}});
            redact(&mut v, ContentPolicy::Metadata);
            let text = v.to_string();
            for leak in ["SECRET", "1234", "91011", "0.25"] {
                assert!(!text.contains(leak), "{leak} in {text}");
            }
        }
        // Hashes keep equal texts equal, so repeats can still be counted.
        let hashed = |t: &str| {
            let mut v = json!({"request": {"prompt": t}});
            redact(&mut v, ContentPolicy::Hashes);
            v["request"]["prompt"].clone()
        };
        assert_eq!(hashed("same"), hashed("same"));
        assert_ne!(hashed("same"), hashed("other"));
    }
}
