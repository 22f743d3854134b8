//! Detector snapshots: the detector's whole state saved to the store now and then, so a
//! restart restores it and replays only the exchanges logged after it, instead of the whole
//! log (which grows without bound when no retention is set).
//!
//! A snapshot holds every exchange up to a place in the log (`seq`): the detector thread
//! knows the place of each batch it takes, because the writer hands batches over only after
//! committing them, with the places the store gave them. Saving holds the detector's lock
//! only to copy the state out; compressing and writing happen on a thread of their own.
//!
//! At start-up, [`prepare`] enforces the stored verdicts and restores the snapshot before the
//! gateway serves; [`catch_up`] then replays the rest of the log on a thread of its own while
//! the detector thread holds live exchanges (`tap::start`).

use std::io::{Read, Write};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use detect::{Detector, Verdict};
use flate2::{read::GzDecoder, write::GzEncoder, Compression};

use crate::record::{self, Shared};

/// The name the embedded gateway's snapshot is kept under.
pub const LOCAL: &str = "local";

/// Takes snapshots from the detector thread: at most one every `every`, only when new
/// exchanges came in, never two writes at once.
pub struct Snapshotter {
    shared: Arc<Shared>,
    every: Option<Duration>,
    /// The last exchange the detector holds.
    upto: i64,
    saved_upto: i64,
    last: Instant,
    writing: Option<thread::JoinHandle<()>>,
}

impl Snapshotter {
    /// `start`: what the restore left (the last exchange the detector holds, and the last one
    /// the stored snapshot holds). When the restore replayed exchanges, the first snapshot is
    /// due at once: a process that keeps restarting must not replay the same tail each time.
    pub fn new(shared: Arc<Shared>, every: Option<Duration>, start: Held) -> Self {
        let now = Instant::now();
        let last = match every {
            Some(every) if start.upto > start.saved => now.checked_sub(every).unwrap_or(now),
            _ => now,
        };
        Self {
            shared,
            every,
            upto: start.upto,
            saved_upto: start.saved,
            last,
            writing: None,
        }
    }

    /// The detector now holds every exchange up to `seq`.
    pub fn held(&mut self, seq: i64) {
        self.upto = self.upto.max(seq);
    }

    /// Takes a snapshot when one is due.
    pub fn tick(&mut self) {
        let Some(every) = self.every else { return };
        let busy = self.writing.as_ref().is_some_and(|w| !w.is_finished());
        if self.upto > self.saved_upto && self.last.elapsed() >= every && !busy {
            self.take();
        }
    }

    /// At shutdown: waits for a write in progress, then saves what is new, so a clean restart
    /// replays nothing.
    pub fn finish(mut self) {
        if let Some(w) = self.writing.take() {
            let _ = w.join();
        }
        if self.every.is_some() && self.upto > self.saved_upto {
            self.take();
            if let Some(w) = self.writing.take() {
                let _ = w.join();
            }
        }
    }

    fn take(&mut self) {
        if let Some(w) = self.writing.take() {
            let _ = w.join();
        }
        let started = Instant::now();
        let state = self.shared.detector.lock().save_state();
        let held_ms = started.elapsed().as_millis() as u64;
        let (store, upto) = (self.shared.store.clone(), self.upto);
        self.saved_upto = upto;
        self.last = Instant::now();
        let spawned = thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || {
                let meta = serde_json::json!({});
                let saved = write(store.as_ref(), LOCAL, upto, &meta, &state, started, held_ms);
                if let Err(e) = saved {
                    tracing::error!(error = %e, "saving a detector snapshot failed");
                }
            });
        match spawned {
            Ok(handle) => self.writing = Some(handle),
            Err(e) => tracing::error!(error = %e, "could not start the snapshot thread"),
        }
    }
}

/// Packs a saved state with its `meta`, stores it under `name` as holding every exchange up
/// to `upto`, and reports it (a counter, and a log line with its size and how long the
/// detector's lock was held, `held_ms`, of the time since `started`).
pub fn write(
    store: &dyn store::Store,
    name: &str,
    upto: i64,
    meta: &serde_json::Value,
    state: &[u8],
    started: Instant,
    held_ms: u64,
) -> store::Result<()> {
    let bytes = pack(meta, state);
    store.put_snapshot(name, upto, record::now_ms(), &bytes)?;
    metrics::counter!("distillguard_snapshots_total").increment(1);
    tracing::info!(
        name,
        upto_seq = upto,
        bytes = bytes.len(),
        state_bytes = state.len(),
        lock_held_ms = held_ms,
        total_ms = started.elapsed().as_millis() as u64,
        "detector snapshot saved"
    );
    Ok(())
}

/// What is stored: gzip of the length of `meta` (u32, little-endian), `meta` (JSON: what the
/// state holds, beyond the stored `upto_seq`) and the detector's state.
pub fn pack(meta: &serde_json::Value, state: &[u8]) -> Vec<u8> {
    let meta = meta.to_string();
    let mut gz = GzEncoder::new(Vec::with_capacity(state.len() / 4), Compression::fast());
    gz.write_all(&(meta.len() as u32).to_le_bytes())
        .and_then(|()| gz.write_all(meta.as_bytes()))
        .and_then(|()| gz.write_all(state))
        .expect("writing to memory");
    gz.finish().expect("writing to memory")
}

/// The `meta` and state that [`pack`] stored.
pub fn unpack(bytes: &[u8]) -> Result<(serde_json::Value, Vec<u8>), String> {
    let mut raw = Vec::with_capacity(bytes.len() * 4);
    GzDecoder::new(bytes)
        .read_to_end(&mut raw)
        .map_err(|e| format!("not gzip: {e}"))?;
    let len = raw
        .get(..4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or("too short")?;
    let meta = raw.get(4..4 + len).ok_or("too short for its metadata")?;
    let meta = serde_json::from_slice(meta).map_err(|e| format!("metadata: {e}"))?;
    Ok((meta, raw.split_off(4 + len)))
}

/// Where the detector stands after the restore: the last exchange it holds, and the last one
/// the stored snapshot holds (0 without one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub upto: i64,
    pub saved: i64,
}

/// The metadata, detector and last place held of the snapshot kept under `name`, when there
/// is one this detector can use. One it cannot use (another detector version or config,
/// damaged) is reported and passed over: the caller replays instead, which costs time, never
/// correctness.
pub fn load(
    shared: &Shared,
    name: &str,
) -> store::Result<Option<(serde_json::Value, Detector, i64)>> {
    let Some(snap) = shared.store.snapshot(name)? else {
        return Ok(None);
    };
    let config = shared.detector.lock().config().clone();
    let restored = unpack(&snap.bytes).and_then(|(meta, state)| {
        Detector::restore_state(config, &state)
            .map(|detector| (meta, detector))
            .map_err(|e| e.to_string())
    });
    match restored {
        Ok((meta, detector)) => Ok(Some((meta, detector, snap.upto_seq))),
        Err(why) => {
            tracing::warn!(%why, name, "the detector snapshot cannot be used; replaying instead");
            Ok(None)
        }
    }
}

/// What start-up leaves for the detector thread to do, so the gateway can serve at once:
/// replay the exchanges logged after the snapshot (`from`; all of them without one) up to the
/// last one logged before this process began writing (`to`), then make sure no verdict stored
/// before the restart (`stored`) ends lower than it was.
#[derive(Debug, Clone, Default)]
pub struct CatchUp {
    /// The last exchange the stored snapshot holds (0 without one).
    pub from: i64,
    pub to: i64,
    pub stored: Vec<store::StoredVerdict>,
}

/// At start-up, and quick: enforcement starts from the stored verdicts, the detector from the
/// snapshot when there is a usable one; what is left to replay is returned for
/// [`catch_up`].
pub fn prepare(shared: &Shared) -> store::Result<CatchUp> {
    let stored = shared.store.verdicts()?;
    for v in &stored {
        if let Some(verdict) = Verdict::parse(&v.verdict) {
            shared.table.raise_verdict(&v.account, verdict);
        }
    }
    let mut from = 0;
    if let Some((_, detector, upto)) = load(shared, LOCAL)? {
        for (account, verdict) in detector.verdicts() {
            if verdict > Verdict::Benign {
                shared.table.raise_verdict(account, verdict);
            }
        }
        *shared.detector.lock() = detector;
        from = upto;
    }
    Ok(CatchUp {
        from,
        to: shared.store.last_seq()?.max(from),
        stored,
    })
}

/// Replays what [`prepare`] left, then keeps each verdict stored before the restart that the
/// replay ended below (rows it had to leave out, another detector version): a restart never
/// lowers enforcement. Returns how many exchanges were replayed.
pub fn catch_up(shared: &Shared, c: &CatchUp) -> store::Result<u64> {
    let replayed = record::replay_after(shared, c.from, c.to, |_, _| true)?;
    for v in &c.stored {
        let Some(stored) = Verdict::parse(&v.verdict) else {
            continue;
        };
        let replayed_verdict = shared
            .detector
            .lock()
            .verdict(&v.account)
            .unwrap_or(Verdict::Benign);
        if stored > replayed_verdict {
            tracing::warn!(
                account = %v.account,
                stored = %v.verdict,
                replayed = replayed_verdict.as_str(),
                "the replay ended below the stored verdict; keeping the stored one"
            );
            shared.table.raise_verdict(&v.account, stored);
            shared.store.put_verdict(v)?;
        }
    }
    Ok(replayed)
}
