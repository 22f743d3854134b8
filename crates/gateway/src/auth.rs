//! Who is calling: the bearer key is hashed and looked up, first in a cache refreshed every
//! second from the store, then in the store itself, so a key created a moment ago by
//! `distillguard keys create` (another process) works at once. Revocations through the admin
//! API apply at once; through the CLI within a second.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use store::{hash_key, Store};

use crate::config::ContentPolicy;
use crate::error::ApiError;

#[derive(Debug, Clone)]
pub struct Principal {
    pub account: String,
    pub key_id: String,
    pub limits: limits::Limits,
    /// The account's `meta` (EXCHANGE_FORMAT.md), logged with each of its exchanges.
    pub meta: Option<Arc<serde_json::Value>>,
    /// What the log keeps of this account's exchanges, when the account has its own policy.
    pub content: Option<ContentPolicy>,
}

#[derive(Clone)]
struct CachedKey {
    id: String,
    account: String,
    revoked: bool,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<[u8; 32], CachedKey>,
    limits: HashMap<String, limits::Limits>,
    meta: HashMap<String, Arc<serde_json::Value>>,
    content: HashMap<String, ContentPolicy>,
}

impl Cache {
    /// Keeps what the request path needs of an account: its limits, `meta` and content policy.
    fn file_account(&mut self, a: store::Account) {
        if let Some(m) = a.meta {
            self.meta.insert(a.name.clone(), Arc::new(m));
        }
        if let Some(p) = a.content.as_deref().and_then(ContentPolicy::parse) {
            self.content.insert(a.name.clone(), p);
        }
        self.limits.insert(a.name, a.limits);
    }
}

#[derive(Clone)]
pub struct KeyCache {
    store: Arc<dyn Store>,
    cache: Arc<RwLock<Cache>>,
}

/// The bearer token of a request, if it has exactly one. Two `Authorization` headers are
/// refused, not resolved: a proxy in front and the gateway could each pick a different one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    if authorization_headers(headers) > 1 {
        return None;
    }
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn authorization_headers(headers: &HeaderMap) -> usize {
    headers
        .get_all(axum::http::header::AUTHORIZATION)
        .iter()
        .count()
}

impl KeyCache {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cache: Arc::new(RwLock::new(Cache::default())),
        }
    }

    /// Reloads keys and account limits from the store.
    pub fn refresh(&self) -> store::Result<()> {
        let keys = self.store.keys()?;
        let accounts = self.store.accounts()?;
        let mut c = Cache::default();
        for k in keys {
            c.keys.insert(
                k.hash,
                CachedKey {
                    id: k.id,
                    account: k.account,
                    revoked: k.revoked,
                },
            );
        }
        for a in accounts {
            c.file_account(a);
        }
        *self.cache.write() = c;
        Ok(())
    }

    /// Refreshes every `period` until the process ends.
    pub fn spawn_refresher(&self, period: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let c = this.clone();
                match tokio::task::spawn_blocking(move || c.refresh()).await {
                    Ok(Err(e)) => tracing::error!(error = %e, "refreshing the key cache failed"),
                    Err(e) => tracing::error!(error = %e, "key cache refresher panicked"),
                    Ok(Ok(())) => {}
                }
            }
        });
    }

    pub fn mark_revoked(&self, key_id: &str) {
        let mut c = self.cache.write();
        for k in c.keys.values_mut().filter(|k| k.id == key_id) {
            k.revoked = true;
        }
    }

    pub fn set_meta(&self, account: &str, meta: Option<serde_json::Value>) {
        let mut c = self.cache.write();
        match meta {
            Some(m) => c.meta.insert(account.to_owned(), Arc::new(m)),
            None => c.meta.remove(account),
        };
    }

    pub fn set_content(&self, account: &str, content: Option<ContentPolicy>) {
        let mut c = self.cache.write();
        match content {
            Some(p) => c.content.insert(account.to_owned(), p),
            None => c.content.remove(account),
        };
    }

    pub fn set_limits(&self, account: &str, limits: limits::Limits) {
        self.cache.write().limits.insert(account.to_owned(), limits);
    }

    /// Resolves the request's key to its account.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        if authorization_headers(headers) > 1 {
            return Err(ApiError::unauthorized(
                "Send exactly one Authorization header; this request has more than one.",
            ));
        }
        let Some(secret) = bearer(headers) else {
            return Err(ApiError::unauthorized(
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
            ));
        };
        // Only the hash is ever compared or kept; equal hashes are found by map lookup, which
        // reveals nothing about the secret (SHA-256 preimages are not guessable).
        let hash = hash_key(secret);
        let cached = self.cache.read().keys.get(&hash).cloned();
        let key = match cached {
            Some(k) => k,
            None => {
                let store = self.store.clone();
                let found = tokio::task::spawn_blocking(move || store.key_by_hash(&hash))
                    .await
                    .map_err(|e| ApiError::internal(format!("key lookup failed: {e}")))?
                    .map_err(|e| ApiError::internal(format!("key lookup failed: {e}")))?;
                let Some(rec) = found else {
                    return Err(ApiError::unauthorized("Incorrect API key provided."));
                };
                let entry = CachedKey {
                    id: rec.id,
                    account: rec.account.clone(),
                    revoked: rec.revoked,
                };
                let store = self.store.clone();
                let account = rec.account.clone();
                let found = tokio::task::spawn_blocking(move || store.account(&account))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten();
                let mut c = self.cache.write();
                c.keys.insert(hash, entry.clone());
                match found {
                    Some(a) => c.file_account(a),
                    None => {
                        c.limits.insert(rec.account, limits::Limits::default());
                    }
                }
                entry
            }
        };
        if key.revoked {
            return Err(ApiError::unauthorized("This API key has been revoked."));
        }
        let (limits, meta, content) = {
            let c = self.cache.read();
            (
                c.limits.get(&key.account).copied().unwrap_or_default(),
                c.meta.get(&key.account).cloned(),
                c.content.get(&key.account).copied(),
            )
        };
        Ok(Principal {
            account: key.account,
            key_id: key.id,
            limits,
            meta,
            content,
        })
    }
}

/// Constant-time comparison of the admin token.
pub fn admin_token_matches(presented: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    let (a, b) = (hash_key(presented), hash_key(expected));
    a.ct_eq(&b).into()
}
