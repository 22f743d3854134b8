//! API keys: 256 random bits, shown once, stored as a SHA-256 hash. A fast hash is right here:
//! the secret is a uniformly random 256-bit value, not a password, so there is nothing to
//! brute-force and lookups stay cheap on every request.

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A freshly created key: the secret (to show once) and its public id.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: String,
    pub account: String,
    pub secret: String,
}

pub const KEY_PREFIX: &str = "dg-";

/// A new random secret and id.
pub fn new_key(account: &str) -> (NewKey, [u8; 32]) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let secret = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let mut id_bytes = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut id_bytes);
    let id = format!(
        "key_{}",
        id_bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let hash = hash_key(&secret);
    (
        NewKey {
            id,
            account: account.to_owned(),
            secret,
        },
        hash,
    )
}

pub fn hash_key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}
