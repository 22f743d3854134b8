//! The spool: exchanges a replica could not hand to NATS wait here, on local disk, in the
//! order they finished, one JSON line each. Appends go to the OS at once (a process crash
//! loses nothing); they are not fsynced one by one, so a power loss may lose the last ones.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::publish::Envelope;

pub struct Spool {
    path: PathBuf,
    file: File,
    backlog: u64,
}

impl Spool {
    /// Opens (creating) the spool at `path`; exchanges left by an earlier run count as backlog.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        let backlog = BufReader::new(File::open(path)?).lines().count() as u64;
        Ok(Self {
            path: path.to_owned(),
            file,
            backlog,
        })
    }

    /// Exchanges waiting to be published.
    pub fn backlog(&self) -> u64 {
        self.backlog
    }

    pub fn append(&mut self, e: &Envelope) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&e.to_spooled()).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.backlog += 1;
        metrics::gauge!("distillguard_spool_backlog").set(self.backlog as f64);
        Ok(())
    }

    /// Everything waiting, in order. A line that does not parse (a torn write at a crash) is
    /// reported and skipped.
    pub fn read_all(&self) -> std::io::Result<Vec<Envelope>> {
        let mut out = Vec::with_capacity(self.backlog as usize);
        for (n, line) in BufReader::new(File::open(&self.path)?).lines().enumerate() {
            let line = line?;
            match serde_json::from_str(&line) {
                Ok(s) => out.push(Envelope::from_spooled(s)),
                Err(e) => {
                    tracing::error!(line = n + 1, error = %e, "unreadable spool line skipped")
                }
            }
        }
        Ok(out)
    }

    /// Empties the spool once everything in it is published.
    pub fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.backlog = 0;
        metrics::gauge!("distillguard_spool_backlog").set(0.0);
        Ok(())
    }
}
