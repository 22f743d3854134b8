//! Saving and restoring the detector's whole state, so a process that restarts can take up
//! where it stopped instead of replaying its entire log.
//!
//! The bytes are a small header and the state in postcard (a compact serde format). The
//! header ties them to this detector: a state saved by another layout of the state
//! ([`STATE_VERSION`]), another reduction of exchanges ([`FACTS_VERSION`]) or another config
//! would not be the state this detector reaches on the same exchanges, so it is refused and
//! the caller replays the log instead. A checksum refuses damaged bytes the same way.

use std::fmt;

use crate::observation::Observer;
use crate::observation::FACTS_VERSION;
use crate::sketch::hash_bytes;
use crate::{Config, Detector};

/// The layout of the saved state; raise it whenever a saved type changes shape.
pub const STATE_VERSION: u32 = 11;

const MAGIC: &[u8; 8] = b"DGSTATE\0";
/// Magic, state version, facts version, config fingerprint, payload checksum.
const HEADER: usize = 8 + 4 + 4 + 8 + 8;

/// Why saved bytes could not be restored. Every case means "replay the log instead".
#[derive(Debug, Clone, PartialEq)]
pub enum StateError {
    NotAState,
    Version {
        saved: (u32, u32),
        current: (u32, u32),
    },
    ConfigChanged,
    Damaged(String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::NotAState => write!(f, "not a saved detector state"),
            StateError::Version { saved, current } => write!(
                f,
                "saved by state version {} (facts {}); this detector is {} (facts {})",
                saved.0, saved.1, current.0, current.1
            ),
            StateError::ConfigChanged => {
                write!(f, "saved under another detector config")
            }
            StateError::Damaged(why) => write!(f, "damaged: {why}"),
        }
    }
}

impl std::error::Error for StateError {}

/// A fingerprint of the config: any changed number changes it.
fn fingerprint(config: &Config) -> u64 {
    hash_bytes(
        serde_json::to_string(config)
            .expect("the config serialises")
            .as_bytes(),
    )
}

impl Detector {
    /// The detector's whole state as bytes, for [`Detector::restore_state`].
    pub fn save_state(&self) -> Vec<u8> {
        let payload = postcard::to_stdvec(self).expect("the detector's state serialises");
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&STATE_VERSION.to_le_bytes());
        out.extend_from_slice(&FACTS_VERSION.to_le_bytes());
        out.extend_from_slice(&fingerprint(&self.config).to_le_bytes());
        out.extend_from_slice(&hash_bytes(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// A detector with `config` and the state saved in `bytes`: fed the same exchanges
    /// afterwards, it reaches exactly what the detector that saved them would have.
    pub fn restore_state(config: Config, bytes: &[u8]) -> Result<Detector, StateError> {
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(StateError::NotAState);
        }
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let long = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let saved = (word(8), word(12));
        let current = (STATE_VERSION, FACTS_VERSION);
        if saved != current {
            return Err(StateError::Version { saved, current });
        }
        if long(16) != fingerprint(&config) {
            return Err(StateError::ConfigChanged);
        }
        let payload = &bytes[HEADER..];
        if long(24) != hash_bytes(payload) {
            return Err(StateError::Damaged("checksum mismatch".into()));
        }
        let mut detector: Detector =
            postcard::from_bytes(payload).map_err(|e| StateError::Damaged(e.to_string()))?;
        detector.config = config;
        detector.observer = Observer::default();
        Ok(detector)
    }
}
