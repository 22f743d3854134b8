//! The spool: exchanges a replica could not hand to NATS wait here, on local disk, in the
//! order they finished, one JSON line each. Appends go to the OS at once (a process crash
//! loses nothing); they are not fsynced one by one, so a power loss may lose the last ones.
//!
//! The spool is bounded: past `max_bytes` new exchanges are dropped and counted
//! (`distillguard_spool_dropped_total`) rather than filling the disk the replica, its store
//! and its logs live on during a long outage. It is replayed as a stream, so its size never
//! becomes the replica's memory.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::envelope::Envelope;

pub struct Spool {
    path: PathBuf,
    file: File,
    backlog: u64,
    bytes: u64,
    /// 0: unbounded.
    max_bytes: u64,
    /// Dropped since the spool was last emptied (the first drop is logged, the rest counted).
    dropped: u64,
}

/// Why an exchange was not spooled.
#[derive(Debug)]
pub enum SpoolError {
    Full { max_bytes: u64 },
    Io(std::io::Error),
}

impl std::fmt::Display for SpoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpoolError::Full { max_bytes } => write!(f, "the spool is full ({max_bytes} bytes)"),
            SpoolError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl Spool {
    /// Opens (creating) the spool at `path`, holding at most `max_bytes` (0: unbounded);
    /// exchanges left by an earlier run count as backlog.
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let backlog = BufReader::new(File::open(path)?).lines().count() as u64;
        let bytes = file.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            file,
            backlog,
            bytes,
            max_bytes,
            dropped: 0,
        })
    }

    /// Exchanges waiting to be published.
    pub fn backlog(&self) -> u64 {
        self.backlog
    }

    /// Exchanges refused since the spool was last emptied.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn append(&mut self, e: &Envelope) -> Result<(), SpoolError> {
        let mut line = serde_json::to_vec(&e.to_spooled())
            .map_err(|e| SpoolError::Io(std::io::Error::other(e)))?;
        line.push(b'\n');
        if self.max_bytes > 0 && self.bytes + line.len() as u64 > self.max_bytes {
            self.dropped += 1;
            metrics::counter!("distillguard_spool_dropped_total").increment(1);
            return Err(SpoolError::Full {
                max_bytes: self.max_bytes,
            });
        }
        self.file.write_all(&line).map_err(SpoolError::Io)?;
        self.backlog += 1;
        self.bytes += line.len() as u64;
        metrics::gauge!("distillguard_spool_backlog").set(self.backlog as f64);
        Ok(())
    }

    /// Everything waiting, in order, read as it is consumed. A line that does not parse (a
    /// torn write at a crash) is reported and skipped.
    pub fn entries(&self) -> std::io::Result<impl Iterator<Item = Envelope>> {
        let lines = BufReader::new(File::open(&self.path)?).lines();
        Ok(lines
            .enumerate()
            .map_while(|(n, line)| match line {
                Ok(l) => Some((n, l)),
                Err(e) => {
                    tracing::error!(line = n + 1, error = %e, "reading the spool stopped");
                    None
                }
            })
            .filter_map(|(n, line)| match serde_json::from_str(&line) {
                Ok(s) => Some(Envelope::from_spooled(s)),
                Err(e) => {
                    tracing::error!(line = n + 1, error = %e, "unreadable spool line skipped");
                    None
                }
            }))
    }

    /// Empties the spool once everything in it is published.
    pub fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.backlog = 0;
        self.bytes = 0;
        self.dropped = 0;
        metrics::gauge!("distillguard_spool_backlog").set(0.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(i: usize) -> Envelope {
        Envelope {
            id: format!("req_{i:04}"),
            account: "a".into(),
            content: "full".into(),
            ts_ms: Some(i as i64),
            payer: None,
            line: format!("{{\"id\":\"req_{i:04}\"}}").into(),
        }
    }

    #[test]
    fn a_full_spool_refuses_and_counts_and_keeps_what_it_has_in_order() {
        let dir = std::env::temp_dir().join(format!("dg-spool-{}", std::process::id()));
        let path = dir.join("exchanges.jsonl");
        let _ = std::fs::remove_file(&path);
        let one = serde_json::to_vec(&envelope(0).to_spooled()).unwrap().len() as u64 + 1;
        let mut spool = Spool::open(&path, one * 3).unwrap();
        for i in 0..5 {
            let r = spool.append(&envelope(i));
            assert_eq!(r.is_ok(), i < 3, "exchange {i}: {r:?}");
        }
        assert_eq!((spool.backlog(), spool.dropped()), (3, 2));
        let ids: Vec<String> = spool.entries().unwrap().map(|e| e.id).collect();
        assert_eq!(ids, ["req_0000", "req_0001", "req_0002"]);
        // A restart sees the same backlog and the same room.
        drop(spool);
        let mut spool = Spool::open(&path, one * 3).unwrap();
        assert_eq!(spool.backlog(), 3);
        assert!(spool.append(&envelope(9)).is_err());
        spool.clear().unwrap();
        assert!(spool.append(&envelope(9)).is_ok());
        assert_eq!(spool.dropped(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
