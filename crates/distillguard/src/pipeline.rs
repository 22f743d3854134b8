//! The scan pipeline: source → transform → sink.
//!
//! - source: one thread reads the log ([`exchange::LineSource`]) a batch of lines at a time
//!   (about a MiB: one buffer, no copy per line);
//! - transform: worker threads parse each batch and reduce each exchange to its
//!   [`detect::Observation`] (the expensive, pure part);
//! - sink: the calling thread puts batches back in order and feeds the detector, which must
//!   see exchanges in log order to be deterministic.

use std::collections::BTreeMap;
use std::io;
use std::thread;

use crossbeam_channel::bounded;
use detect::Observer;
use detect::{Detector, Observation, VerdictChange};
use exchange::{parse_line, BadLine, BadLineKind, BadLineReport, BatchLine, LineBatch, LineSource};

/// Bytes of log per batch: large enough that handing batches between threads costs nothing
/// next to parsing them, small enough that a few per worker in flight stay a few MiB.
const BATCH_BYTES: usize = 1 << 20;

/// How the run ended.
pub struct Outcome {
    pub exchanges: u64,
    /// Which of the fields a source may not record were seen at least once.
    pub present: Present,
    pub bad: BadLineReport,
    /// The read error that ended the input early, if any.
    pub read_error: Option<io::Error>,
    /// Set when `strict` stopped the run at a bad line.
    pub strict_stop: Option<BadLine>,
}

type Parsed = Vec<(u64, Result<Observation, (BadLineKind, String)>)>;

/// The fields an imported source may not record at all (LiteLLM has no user agent, spans no
/// key or account facts), each with a test of one exchange. A field no exchange of a log
/// carried is said once, "not in this source", so a reader knows what the verdicts stood on.
type FieldTest = (&'static str, fn(&exchange::Exchange) -> bool);
const OPTIONAL_FIELDS: [FieldTest; 7] = [
    ("client address", |e| e.ip.is_some()),
    ("user agent", |e| e.user_agent.is_some()),
    ("API key", |e| e.key.is_some()),
    ("account facts (payment, sign-up, organisation, TLS)", |e| {
        e.meta.is_some()
    }),
    ("prompt text", |e| {
        e.request
            .messages
            .as_ref()
            .is_some_and(|m| m.iter().any(|m| !m.content.as_str().is_empty()))
            || e.request.prompt.is_some()
    }),
    ("answer text", |e| {
        e.response.as_ref().is_some_and(|r| {
            r.choices.iter().any(|c| {
                c.message
                    .as_ref()
                    .is_some_and(|m| !m.content.as_str().is_empty())
                    || c.text.is_some()
            })
        })
    }),
    ("token usage", |e| {
        e.response.as_ref().is_some_and(|r| r.usage.is_some())
    }),
];

/// A set of [`OPTIONAL_FIELDS`] seen.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Present(u8);

impl Present {
    fn see(&mut self, e: &exchange::Exchange) {
        for (i, (_, has)) in OPTIONAL_FIELDS.iter().enumerate() {
            if self.0 & (1 << i) == 0 && has(e) {
                self.0 |= 1 << i;
            }
        }
    }

    /// The fields no exchange carried.
    pub fn missing(self) -> Vec<&'static str> {
        OPTIONAL_FIELDS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) == 0)
            .map(|(_, (name, _))| *name)
            .collect()
    }
}

/// Runs `source` through the detector. `on_change` sees each verdict change as it happens;
/// `progress` is called with the count of exchanges read so far, once per batch.
pub fn run(
    source: LineSource,
    format: &exchange::Format,
    detector: &mut Detector,
    workers: usize,
    strict: bool,
    mut on_change: impl FnMut(&VerdictChange),
    mut progress: impl FnMut(u64),
) -> Outcome {
    let workers = workers.max(1);
    let (line_tx, line_rx) = bounded::<(u64, LineBatch)>(workers * 4);
    let (parsed_tx, parsed_rx) = bounded::<(u64, Parsed, Present)>(workers * 4);
    let mut outcome = Outcome {
        exchanges: 0,
        present: Present::default(),
        bad: BadLineReport::default(),
        read_error: None,
        strict_stop: None,
    };

    thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut source = source;
            let mut seq = 0u64;
            while let Some(item) = source.next_batch(BATCH_BYTES) {
                match item {
                    Ok(batch) => {
                        if line_tx.send((seq, batch)).is_err() {
                            return None;
                        }
                        seq += 1;
                    }
                    Err(e) => return Some(e),
                }
            }
            None
        });
        for _ in 0..workers {
            let rx = line_rx.clone();
            let tx = parsed_tx.clone();
            scope.spawn(move || {
                let observer = Observer::default();
                for (seq, lines) in rx {
                    let mut parsed: Parsed = Vec::new();
                    let mut present = Present::default();
                    for line in lines.lines() {
                        match line {
                            // A line may hold several exchanges (an OTLP/JSON export request):
                            // each is its own item, under the line's number.
                            BatchLine::Line { number, bytes } => format.parse_each(bytes, |r| {
                                parsed.push((
                                    number,
                                    r.map(|ex| {
                                        present.see(&ex);
                                        observer.observe(&ex)
                                    }),
                                ));
                            }),
                            BatchLine::TooLong { number, bytes } => parsed.push((
                                number,
                                Err((
                                    BadLineKind::TooLong,
                                    format!("line of {bytes} bytes is over the limit"),
                                )),
                            )),
                        }
                    }
                    if tx.send((seq, parsed, present)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(line_rx);
        drop(parsed_tx);

        // Batches finish out of order; hold early ones until their turn.
        let mut pending: BTreeMap<u64, Parsed> = BTreeMap::new();
        let mut next = 0u64;
        'outer: for (seq, parsed, present) in &parsed_rx {
            outcome.present.0 |= present.0;
            pending.insert(seq, parsed);
            while let Some(batch) = pending.remove(&next) {
                next += 1;
                for (line, item) in batch {
                    match item {
                        Ok(obs) => {
                            outcome.exchanges += 1;
                            for change in detector.observe_facts(&obs) {
                                on_change(&change);
                            }
                        }
                        Err((kind, message)) => {
                            let bad = BadLine {
                                line,
                                kind,
                                message,
                            };
                            if strict {
                                outcome.strict_stop = Some(bad.clone());
                                outcome.bad.record(bad);
                                break 'outer;
                            }
                            outcome.bad.record(bad);
                        }
                    }
                }
                progress(outcome.exchanges);
            }
        }
        // Stop the reader and workers early when strict mode ended the run.
        drop(parsed_rx);
        outcome.read_error = reader.join().expect("reader thread");
    });
    outcome
}

/// The same source and worker threads as [`run`], but workers only parse: the baseline that
/// scan throughput is measured against. Returns (exchanges, bad lines).
pub fn parse_only(source: LineSource, workers: usize) -> (u64, u64) {
    let (line_tx, line_rx) = bounded::<LineBatch>(workers * 4);
    thread::scope(|scope| {
        scope.spawn(move || {
            let mut source = source;
            while let Some(Ok(batch)) = source.next_batch(BATCH_BYTES) {
                if line_tx.send(batch).is_err() {
                    return;
                }
            }
        });
        let handles: Vec<_> = (0..workers.max(1))
            .map(|_| {
                let rx = line_rx.clone();
                scope.spawn(move || {
                    let (mut ok, mut bad) = (0u64, 0u64);
                    for lines in rx {
                        for line in lines.lines() {
                            match line {
                                BatchLine::Line { bytes, .. } if parse_line(bytes).is_ok() => {
                                    ok += 1
                                }
                                _ => bad += 1,
                            }
                        }
                    }
                    (ok, bad)
                })
            })
            .collect();
        drop(line_rx);
        handles
            .into_iter()
            .map(|h| h.join().expect("parser thread"))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    })
}
