//! Keys: one per account, derived from one master secret.
//!
//! HKDF-SHA256 (RFC 5869) with a fixed salt and the account's name in the info: the same
//! master and account always give the same key, different accounts unrelated keys, and a key
//! says nothing of the master or of another account's key. The key id (public) is derived the
//! same way under another label, so a log line can name the key without revealing it.

use hkdf::Hkdf;
use sha2::Sha256;
use siphasher::sip::SipHasher24;
use std::hash::Hasher;

const SALT: &[u8] = b"distillguard watermark v1";

/// The master secret every account key is derived from (at least 16 bytes).
#[derive(Clone)]
pub struct Master(Vec<u8>);

/// Why a master secret was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyError(pub String);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

impl Master {
    pub fn new(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < 16 {
            return Err(KeyError(format!(
                "the watermark master secret must be at least 16 bytes, not {}",
                secret.len()
            )));
        }
        Ok(Self(secret.to_vec()))
    }

    /// The key of `account`.
    pub fn key_for(&self, account: &str) -> Key {
        let hk = Hkdf::<Sha256>::new(Some(SALT), &self.0);
        let mut secret = [0u8; 16];
        let mut id = [0u8; 8];
        hk.expand_multi_info(&[b"key\0", account.as_bytes()], &mut secret)
            .expect("16 bytes is a valid HKDF length");
        hk.expand_multi_info(&[b"id\0", account.as_bytes()], &mut id)
            .expect("8 bytes is a valid HKDF length");
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        Key {
            id: KeyId(format!("wm1-{hex}")),
            k0: u64::from_le_bytes(secret[..8].try_into().expect("8 bytes")),
            k1: u64::from_le_bytes(secret[8..].try_into().expect("8 bytes")),
        }
    }
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Master(..)")
    }
}

/// A key's public name, as the exchange log records it (`wm1-` and 16 hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One account's watermark key. Its `Debug` shows the id only.
#[derive(Clone)]
pub struct Key {
    id: KeyId,
    k0: u64,
    k1: u64,
}

impl Key {
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The keyed seed of a step after `context` (SipHash-2-4 under the key).
    pub(crate) fn seed(&self, context: &[u32]) -> u64 {
        let mut h = SipHasher24::new_with_keys(self.k0, self.k1);
        for t in context {
            h.write_u32(*t);
        }
        h.write_usize(context.len());
        h.finish()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_per_account_stable_and_never_printed() {
        let m = Master::new(b"0123456789abcdef0123456789abcdef").unwrap();
        let (a, b) = (m.key_for("acme"), m.key_for("globex"));
        assert_eq!(a.id(), m.key_for("acme").id());
        assert_ne!(a.id(), b.id());
        assert_ne!(a.seed(&[1, 2]), b.seed(&[1, 2]));
        assert_eq!(a.seed(&[1, 2]), m.key_for("acme").seed(&[1, 2]));
        assert!(a.id().as_str().starts_with("wm1-") && a.id().as_str().len() == 20);
        let shown = format!("{a:?} {m:?}");
        assert!(!shown.contains(&a.k0.to_string()) && !shown.contains("0123456789"));
        // Another master: other keys, other ids.
        let other = Master::new(b"another master secret, 32 bytes.").unwrap();
        assert_ne!(other.key_for("acme").id(), a.id());
        assert!(Master::new(b"short").is_err());
    }
}
