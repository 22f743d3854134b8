//! Following a log file as it grows: another gateway's traffic, judged live.
//!
//! A provider whose gateway is LiteLLM (or anything that writes exchanges, LiteLLM payloads or
//! OTLP/JSON lines to a file) can have distillguard judge that traffic as it happens without
//! touching the request path: `distillguard collect --tail FILE` reads the file from its start,
//! then waits for what is appended, as `tail -F` does, and sends every exchange through the tap,
//! the one way in (the log, the detector, the policy table the admin API reads).
//!
//! - **From the start, every time.** An exchange already in the log is not counted again (the
//!   tap's writer skips ids it has), so a restart re-reads the file instead of keeping an
//!   offset that could disagree with the log.
//! - **A line is taken once it is whole.** A writer's half-written last line waits for its
//!   newline; a line longer than the reader's limit is skipped and counted.
//! - **Rotation.** When the path names a new file (another inode) or the file got shorter
//!   (truncated), reading starts again at the new file's start.
//! - **Bad lines** are counted by kind (`distillguard_tail_bad_lines_total{kind}`) and never
//!   stop the follower.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Duration;

use exchange::{BadLineKind, ContentPolicy, Format};
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::Tap;

/// How often the end of the file is looked at again for new lines.
const POLL: Duration = Duration::from_millis(200);

/// One file to follow, and how its lines read.
#[derive(Debug, Clone)]
pub struct Follow {
    pub path: PathBuf,
    pub format: Format,
    /// Lines longer than this are skipped and counted.
    pub max_line_bytes: usize,
}

/// Starts following `follow.path` on a thread of its own (file reads block), recording every
/// exchange it reads through `tap` under `content` on `runtime`, until `shutdown` turns true.
pub fn spawn(
    follow: Follow,
    tap: Tap,
    content: ContentPolicy,
    shutdown: watch::Receiver<bool>,
    runtime: Handle,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("distillguard-follow".into())
        .spawn(move || run(follow, tap, content, shutdown, runtime))
}

fn run(
    follow: Follow,
    tap: Tap,
    content: ContentPolicy,
    shutdown: watch::Receiver<bool>,
    runtime: Handle,
) {
    let mut warned_missing = false;
    let mut line = Vec::new();
    'open: loop {
        if *shutdown.borrow() {
            return;
        }
        let file = match File::open(&follow.path) {
            Ok(f) => f,
            Err(e) => {
                if !warned_missing {
                    tracing::warn!(path = %follow.path.display(), error = %e, "cannot open the file to follow; trying again");
                    warned_missing = true;
                }
                if wait(&shutdown, POLL * 5) {
                    return;
                }
                continue 'open;
            }
        };
        warned_missing = false;
        let identity = file.metadata().ok().and_then(|m| file_id(&m));
        tracing::info!(path = %follow.path.display(), "following");
        let mut reader = BufReader::new(file);
        // Bytes consumed from this file; whether the line being read is past the limit.
        let mut read_so_far = 0u64;
        let mut too_long = false;
        line.clear();
        loop {
            let buf = match reader.fill_buf() {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(path = %follow.path.display(), error = %e, "reading the followed file failed; opening it again");
                    continue 'open;
                }
            };
            if buf.is_empty() {
                // At the end: wait for more, unless the path now names another file or this
                // one was cut shorter than what was read.
                if rotated(&follow.path, identity, read_so_far) {
                    if !line.is_empty() || too_long {
                        bad(BadLineKind::Truncated);
                    }
                    continue 'open;
                }
                if wait(&shutdown, POLL) {
                    return;
                }
                continue;
            }
            let (chunk, whole) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..=i], true),
                None => (buf, false),
            };
            // Never more than the limit in memory: past it, the rest of the line is dropped.
            if !too_long && line.len() + chunk.len() <= follow.max_line_bytes {
                line.extend_from_slice(chunk);
            } else {
                too_long = true;
                line.clear();
            }
            let used = chunk.len();
            reader.consume(used);
            read_so_far += used as u64;
            if whole {
                if std::mem::take(&mut too_long) {
                    bad(BadLineKind::TooLong);
                } else {
                    runtime.block_on(take(&line, &follow.format, &tap, content));
                }
                line.clear();
            }
        }
    }
}

/// Reads one whole line and records what it holds.
async fn take(line: &[u8], format: &Format, tap: &Tap, content: ContentPolicy) {
    let text = line.trim_ascii_end();
    if text.is_empty() {
        return;
    }
    let mut read = Vec::new();
    format.parse_each(text, |r| match r {
        Ok(ex) => read.push(ex),
        Err((kind, _)) => bad(kind),
    });
    metrics::counter!("distillguard_tail_exchanges_total").increment(read.len() as u64);
    for ex in read {
        match serde_json::to_value(&ex) {
            Ok(v) => tap.record(v, content).await,
            Err(_) => bad(BadLineKind::WrongType),
        }
    }
}

fn bad(kind: BadLineKind) {
    metrics::counter!("distillguard_tail_bad_lines_total", "kind" => kind.name()).increment(1);
}

/// What tells one file from another at the same path (device and inode on Unix).
#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_id(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// Whether the path names another file now, or the file is shorter than what was read of it.
fn rotated(path: &std::path::Path, was: Option<(u64, u64)>, read: u64) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) => file_id(&meta) != was || meta.len() < read,
        // Gone for now (moved away, not yet recreated): keep reading the old one.
        Err(_) => false,
    }
}

/// Sleeps `d`; true when shutdown came (or its sender is gone).
fn wait(shutdown: &watch::Receiver<bool>, d: Duration) -> bool {
    std::thread::sleep(d);
    *shutdown.borrow() || shutdown.has_changed().is_err()
}
