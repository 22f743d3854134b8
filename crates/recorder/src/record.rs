//! The record-and-judge core: append exchanges to the store until it takes them, read an
//! exchange's facts the way `scan` does, feed them to the detector, and record what changes
//! (policy table, stored verdict, audit trail). The threads that run it live in [`crate::tap`]
//! (this process) and [`crate::worker`] (the bus worker); [`crate::snapshot`] replays with it at
//! start-up.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use detect::Observer;
use detect::{Detector, Observation, Verdict};
use serde_json::Value;
use store::{AuditEntry, LoggedExchange, ScorePoint, Store, StoredVerdict};

use respond::{Policy, PolicyTable};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What the background threads share with the request path.
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub detector: Arc<Mutex<Detector>>,
    pub table: Arc<PolicyTable>,
    pub policy: Policy,
    /// The last point of each account's score history this process recorded.
    pub last_scored: Mutex<HashMap<String, (f32, Verdict)>>,
}

/// A move of less than this in an account's score is not worth a point of its history.
const SCORE_STEP: f64 = 0.05;

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
pub fn observation_of(line: &str, observer: &Observer) -> Option<Observation> {
    match exchange::parse_line(line.as_bytes()) {
        Ok(ex) => Some(observer.observe(&ex)),
        Err((kind, _)) => {
            metrics::counter!("distillguard_detector_bad_lines_total", "kind" => kind.name())
                .increment(1);
            tracing::warn!(
                kind = kind.name(),
                "an exchange line did not parse; the detector skipped it"
            );
            None
        }
    }
}

/// The facts to replay for a logged exchange: those kept beside a redacted line, or the line's
/// own when it was kept whole. A redacted line whose facts another version of the detector
/// made is skipped (`None`): its hash strings read as prompts would be false evidence.
pub fn replay_observation(row: &LoggedExchange, observer: &Observer) -> Option<Observation> {
    match row.facts.as_deref() {
        Some(facts) => Observation::from_facts(facts),
        None => observation_of(&row.line, observer),
    }
}

/// Feeds one exchange's facts to the detector; on a verdict change, updates the table, the
/// stored verdict and (when `audit`) the audit trail. Returns the accounts whose verdict
/// changed.
pub fn observe(shared: &Shared, obs: &Observation, audit: bool) -> Vec<(String, Verdict)> {
    // How far behind the traffic the detector is: live, about a commit; while replaying, the
    // age of what it replays.
    metrics::gauge!("distillguard_detector_lag_seconds")
        .set(((now_ms() - obs.ts).max(0) as f64) / 1000.0);
    let mut detector = shared.detector.lock();
    let changes = detector.observe_facts(obs);
    // Live only: a replay at start-up would write the history a second time.
    let current = audit.then(|| detector.current(&obs.account)).flatten();
    if changes.is_empty() {
        drop(detector);
        note_score(shared, obs, current);
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
    note_score(shared, obs, current);
    changed
}

/// Adds a point to the account's score history when its score moved by [`SCORE_STEP`] or
/// more since the last point, or its verdict changed: a bounded history an analyst can read
/// as a timeline (`GET /admin/accounts/NAME/history`).
fn note_score(shared: &Shared, obs: &Observation, current: Option<(f64, Verdict)>) {
    let Some((score, verdict)) = current else {
        return;
    };
    {
        let mut last = shared.last_scored.lock();
        if let Some(&(s, v)) = last.get(&obs.account) {
            if v == verdict && (score - f64::from(s)).abs() < SCORE_STEP {
                return;
            }
        }
        last.insert(obs.account.clone(), (score as f32, verdict));
    }
    let point = ScorePoint {
        account: obs.account.clone(),
        ts_ms: obs.ts,
        score: (score * 10_000.0).round() / 10_000.0,
        verdict: verdict.as_str().into(),
        exchange: (!obs.exchange_id.is_empty()).then(|| obs.exchange_id.clone()),
    };
    if let Err(e) = shared.store.add_score_point(&point) {
        tracing::error!(error = %e, "storing a point of score history failed");
    }
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
    // Accounts by verdict, for those the detector has flagged (every other account is benign).
    if change.from != detect::Verdict::Benign {
        metrics::gauge!("distillguard_accounts_flagged", "verdict" => change.from.as_str())
            .decrement(1.0);
    }
    if change.to != detect::Verdict::Benign {
        metrics::gauge!("distillguard_accounts_flagged", "verdict" => change.to.as_str())
            .increment(1.0);
    }
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
                "verdict {} -> {} (score {:.3}){}: {}",
                change.from.as_str(),
                change.to.as_str(),
                change.score,
                if change.exchange.is_empty() {
                    String::new()
                } else {
                    format!(" at exchange {}", change.exchange)
                },
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
    let observer = Observer::default();
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
            match replay_observation(e, &observer) {
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
