//! The record: accounts and their limits, API keys (stored only as SHA-256 hashes), the
//! exchange log, the latest verdict per account, manual overrides and the audit trail.
//!
//! [`Store`] is the one interface the gateway, the workers and the CLI use; [`SqliteStore`] is
//! the embedded default (one file, WAL mode, so readers never block the log writer) and
//! `PgStore` (feature `postgres`) the shared one for many replicas. [`open`] picks by address.

mod keys;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use keys::{hash_key, new_key, NewKey};
#[cfg(feature = "postgres")]
pub use postgres::{redact, PgStore};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[cfg(feature = "postgres")]
    #[error("postgres error: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("{0}")]
    Invalid(String),
}

/// Opens the store at `address`: `postgres://…` for the shared PostgreSQL store, otherwise a
/// directory holding the embedded SQLite file (`sqlite://DIR` or a plain path).
pub fn open(address: &str) -> Result<Arc<dyn Store>> {
    if address.starts_with("postgres://") || address.starts_with("postgresql://") {
        #[cfg(feature = "postgres")]
        return Ok(Arc::new(PgStore::connect(address)?));
        #[cfg(not(feature = "postgres"))]
        return Err(StoreError::Invalid(
            "this build has no PostgreSQL support (cargo feature `postgres`)".into(),
        ));
    }
    let dir = address.strip_prefix("sqlite://").unwrap_or(address);
    Ok(Arc::new(SqliteStore::open_dir(std::path::Path::new(dir))?))
}

fn check_account_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 200 {
        return Err(StoreError::Invalid(
            "account name must be 1 to 200 characters".into(),
        ));
    }
    Ok(())
}

pub type Result<T> = std::result::Result<T, StoreError>;

pub use limits::Limits;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub limits: Limits,
    pub allowlisted: bool,
    pub created_ms: i64,
    /// What the provider knows about the customer, in the `meta` shape of EXCHANGE_FORMAT.md
    /// (`payment_fingerprint`, `org`, `signup_ts`, `country`, `asn`, `email_domain`,
    /// `tls_fingerprint`); the gateway adds it to every exchange of the account, so the
    /// detector can link accounts by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
    /// What the log keeps of this account's exchanges: one of [`CONTENT_POLICIES`]; `None`
    /// leaves it to the gateway's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// How long this account's exchanges are kept, in days; `None` leaves it to the gateway's
    /// `retention_days`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<f64>,
    /// When the allowlist entry lapses (milliseconds since the epoch); `None`: it stands
    /// until removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowlist_expires_ms: Option<i64>,
}

const DAY_MS: f64 = 86_400_000.0;

/// The time before which exchanges kept for `days` are expired at `now_ms`.
fn expiry_cutoff(now_ms: i64, days: f64) -> i64 {
    now_ms - (days * DAY_MS) as i64
}

/// The content policies an account may have: the whole text, hashes of it, or metadata only.
pub const CONTENT_POLICIES: &[&str] = &["full", "hashes", "metadata"];

fn check_retention(days: Option<f64>) -> Result<()> {
    match days {
        Some(d) if !(d.is_finite() && d > 0.0) => Err(StoreError::Invalid(format!(
            "retention must be a positive number of days, not {d}"
        ))),
        _ => Ok(()),
    }
}

fn check_content(content: Option<&str>) -> Result<()> {
    match content {
        Some(c) if !CONTENT_POLICIES.contains(&c) => Err(StoreError::Invalid(format!(
            "content policy {c:?} is not one of {}",
            CONTENT_POLICIES.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// Checks that `meta` is an object of the EXCHANGE_FORMAT.md `meta` fields with their types.
pub fn check_meta(meta: &serde_json::Value) -> Result<()> {
    let obj = meta
        .as_object()
        .ok_or_else(|| StoreError::Invalid("meta must be a JSON object".into()))?;
    if let Some(unknown) = obj
        .keys()
        .find(|k| !exchange::Meta::FIELDS.contains(&k.as_str()))
    {
        return Err(StoreError::Invalid(format!(
            "unknown meta field {unknown:?} (known: {})",
            exchange::Meta::FIELDS.join(", ")
        )));
    }
    serde_json::from_value::<exchange::Meta>(meta.clone())
        .map(|_| ())
        .map_err(|e| StoreError::Invalid(format!("meta: {e}")))
}

/// What a presented key resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    pub account: String,
    pub hash: [u8; 32],
    pub revoked: bool,
    /// When the key was made (ms since the epoch).
    pub created_ms: i64,
}

/// The detector's latest word on an account, as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredVerdict {
    pub account: String,
    pub score: f64,
    pub verdict: String,
    pub first_flagged: Option<String>,
    pub reasons: serde_json::Value,
    pub updated_ms: i64,
}

/// A human decision that overrides the policy for one account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Override {
    pub account: String,
    pub action: String,
    pub by: String,
    pub reason: String,
    pub ts_ms: i64,
    /// When the decision lapses (milliseconds since the epoch); `None`: it stands until
    /// cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
}

/// One line of the audit trail: an action taken on an account, when, by whom, why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub ts_ms: i64,
    pub account: String,
    pub action: String,
    pub actor: String,
    pub reason: String,
}

/// One point of an account's score history: when the detector's score for its own traffic
/// moved (or its verdict did), to what, and at which exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorePoint {
    pub account: String,
    pub ts_ms: i64,
    pub score: f64,
    pub verdict: String,
    /// The exchange that moved it, when known.
    pub exchange: Option<String>,
}

/// The points of score history kept per account; older ones are dropped as new ones come.
pub const SCORE_HISTORY_KEPT: usize = 500;

/// One logged exchange: its id, time, account and the JSON line of EXCHANGE_FORMAT.md.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoggedExchange {
    pub id: String,
    pub ts_ms: i64,
    pub account: String,
    pub line: String,
    /// The detector's facts of the exchange (`detect::Observation::to_facts`), kept when the
    /// line is redacted, so a restart replays what the detector saw and not the redaction.
    pub facts: Option<String>,
}

impl LoggedExchange {
    /// The line as `distillguard export` writes it: a redacted line gains the detector's facts
    /// of the full exchange as `detector_facts` (an extension field other readers ignore), so
    /// `scan` of the export reaches the verdicts the gateway did.
    pub fn export_line(&self) -> std::borrow::Cow<'_, str> {
        let Some(facts) = self.facts.as_deref() else {
            return self.line.as_str().into();
        };
        match self.line.trim_end().strip_suffix('}') {
            Some(open) if open.trim_start().starts_with('{') => {
                let sep = if open.trim_end().ends_with('{') {
                    ""
                } else {
                    ","
                };
                format!("{open}{sep}\"detector_facts\":{facts}}}").into()
            }
            _ => self.line.as_str().into(),
        }
    }
}

/// One field of an account's row, as [`Store::set_account_field`] writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum AccountField<'a> {
    Allowlisted(bool),
    AllowlistExpiry(Option<i64>),
    /// The `meta` object as JSON text.
    Meta(Option<String>),
    Content(Option<&'a str>),
    Retention(Option<f64>),
}

impl AccountField<'_> {
    /// The column it is kept in.
    pub fn column(&self) -> &'static str {
        match self {
            AccountField::Allowlisted(_) => "allowlisted",
            AccountField::AllowlistExpiry(_) => "allowlist_expires_ms",
            AccountField::Meta(_) => "meta",
            AccountField::Content(_) => "content",
            AccountField::Retention(_) => "retention_days",
        }
    }
}

/// Everything the gateway and CLI keep. Implementations are synchronous; async callers run
/// them on a blocking thread.
pub trait Store: Send + Sync {
    /// Creates the account if it is new and sets its limits when given; returns its row.
    /// Validates the name, then [`Store::insert_account`] writes.
    fn upsert_account(&self, name: &str, limits: Option<Limits>, now_ms: i64) -> Result<Account> {
        check_account_name(name)?;
        self.insert_account(name, limits, now_ms)
    }
    /// The engine's half of [`Store::upsert_account`], given a valid name.
    fn insert_account(&self, name: &str, limits: Option<Limits>, now_ms: i64) -> Result<Account>;
    fn account(&self, name: &str) -> Result<Option<Account>>;
    fn accounts(&self) -> Result<Vec<Account>>;
    /// Writes one field of an existing account's row, already validated (the setters below
    /// validate, so every engine refuses the same input the same way); an unknown account is
    /// [`StoreError::Invalid`].
    fn set_account_field(&self, name: &str, field: AccountField<'_>) -> Result<()>;
    fn set_allowlisted(&self, name: &str, allowlisted: bool) -> Result<()> {
        self.set_account_field(name, AccountField::Allowlisted(allowlisted))
    }
    /// Sets (or with `None` clears) when an existing account's allowlist entry lapses.
    fn set_allowlist_expiry(&self, name: &str, expires_ms: Option<i64>) -> Result<()> {
        self.set_account_field(name, AccountField::AllowlistExpiry(expires_ms))
    }
    /// Sets (or with `None` clears) an existing account's `meta`.
    fn set_account_meta(&self, name: &str, meta: Option<&serde_json::Value>) -> Result<()> {
        if let Some(m) = meta {
            check_meta(m)?;
        }
        self.set_account_field(name, AccountField::Meta(meta.map(|m| m.to_string())))
    }
    /// Sets (or with `None` clears) what the log keeps of an account's exchanges.
    fn set_account_content(&self, name: &str, content: Option<&str>) -> Result<()> {
        check_content(content)?;
        self.set_account_field(name, AccountField::Content(content))
    }
    /// Sets (or with `None` clears) how many days an account's exchanges are kept.
    fn set_account_retention(&self, name: &str, days: Option<f64>) -> Result<()> {
        check_retention(days)?;
        self.set_account_field(name, AccountField::Retention(days))
    }
    /// Creates a key for an existing account; the secret is returned once and never stored.
    fn create_key(&self, account: &str, now_ms: i64) -> Result<NewKey>;
    fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>>;
    fn keys(&self) -> Result<Vec<KeyRecord>>;
    fn revoke_key(&self, id: &str, now_ms: i64) -> Result<bool>;
    /// Appends exchanges in one transaction (group commit); duplicates by id are ignored.
    /// Returns, for each exchange of the batch, its place in the log (`seq`) when it was new,
    /// `None` when it was a duplicate (so a redelivered exchange is not fed to the detector
    /// twice, and a detector snapshot can say which exchanges it holds).
    fn append_exchanges(&self, batch: &[LoggedExchange]) -> Result<Vec<Option<i64>>>;
    /// Exchanges in log order, optionally for one account, from `after_seq`, at most `limit`.
    fn exchanges(
        &self,
        account: Option<&str>,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<(i64, LoggedExchange)>>;
    /// The newest `limit` exchanges of an account, newest first.
    fn recent_exchanges(&self, account: &str, limit: usize) -> Result<Vec<LoggedExchange>>;
    fn exchange_count(&self) -> Result<u64>;
    /// The place in the log of the newest exchange kept (0 for an empty log).
    fn last_seq(&self) -> Result<i64>;
    /// Deletes exchanges older than their account's retention (`Account::retention_days`,
    /// else `default_days`; neither: kept) at `now_ms`. Returns how many were deleted.
    fn expire_exchanges(&self, now_ms: i64, default_days: Option<f64>) -> Result<u64>;
    fn put_verdict(&self, v: &StoredVerdict) -> Result<()>;
    fn verdicts(&self) -> Result<Vec<StoredVerdict>>;
    /// One account's stored verdict, if it has one.
    fn verdict(&self, account: &str) -> Result<Option<StoredVerdict>>;
    fn set_override(&self, o: Option<&Override>, account: &str) -> Result<()>;
    fn overrides(&self) -> Result<Vec<Override>>;
    fn audit(&self, entry: &AuditEntry) -> Result<()>;
    fn audit_log(&self, account: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>>;
    /// Appends a point to its account's score history, keeping the newest
    /// [`SCORE_HISTORY_KEPT`].
    fn add_score_point(&self, p: &ScorePoint) -> Result<()>;
    /// The newest `limit` points of an account's score history, oldest first.
    fn score_history(&self, account: &str, limit: usize) -> Result<Vec<ScorePoint>>;
    /// Replaces the snapshot kept under `name`: a detector's state holding every exchange up
    /// to `upto_seq`. Large states are split over rows by the engine.
    fn put_snapshot(&self, name: &str, upto_seq: i64, taken_ms: i64, bytes: &[u8]) -> Result<()>;
    /// The snapshot kept under `name`, if any.
    fn snapshot(&self, name: &str) -> Result<Option<Snapshot>>;
}

/// A detector's saved state and the last exchange it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub upto_seq: i64,
    pub taken_ms: i64,
    pub bytes: Vec<u8>,
}

/// Joins a snapshot's stored parts (`part`, `upto_seq`, `taken_ms`, bytes), in part order.
/// Parts that do not belong together (a write interrupted between them cannot leave that,
/// since each engine replaces a snapshot in one transaction, but a hand-edited table can)
/// are an error rather than a corrupt state.
pub(crate) fn join_snapshot(parts: Vec<(i64, i64, i64, Vec<u8>)>) -> Result<Option<Snapshot>> {
    let Some(&(_, upto_seq, taken_ms, _)) = parts.first() else {
        return Ok(None);
    };
    let mut bytes = Vec::with_capacity(parts.iter().map(|p| p.3.len()).sum());
    for (i, (part, seq, taken, b)) in parts.into_iter().enumerate() {
        if part != i as i64 || seq != upto_seq || taken != taken_ms {
            return Err(StoreError::Invalid(format!(
                "snapshot part {part} does not follow part {} of the snapshot up to {upto_seq}",
                i as i64 - 1
            )));
        }
        bytes.extend_from_slice(&b);
    }
    Ok(Some(Snapshot {
        upto_seq,
        taken_ms,
        bytes,
    }))
}

/// Snapshots are stored in parts of this size: one row stays well under the engines' limits
/// on a single value (1 GB for both), whatever the number of accounts.
pub const SNAPSHOT_PART: usize = 16 << 20;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{check_meta, LoggedExchange};

    #[test]
    fn meta_is_checked_for_unknown_fields_and_types() {
        assert!(check_meta(&json!({"payment_fingerprint": "pf_1", "asn": 64500})).is_ok());
        let unknown = check_meta(&json!({"card_number": "4111"})).unwrap_err();
        assert!(unknown.to_string().contains("card_number"), "{unknown}");
        let typed = check_meta(&json!({"asn": "AS64500"})).unwrap_err();
        assert!(typed.to_string().contains("meta"), "{typed}");
        assert!(check_meta(&json!(["not", "an", "object"])).is_err());
    }

    #[test]
    fn a_redacted_line_is_exported_with_its_facts_and_a_whole_line_as_it_is() {
        let row = |line: &str, facts: Option<&str>| LoggedExchange {
            line: line.into(),
            facts: facts.map(str::to_owned),
            ..LoggedExchange::default()
        };
        assert_eq!(row(r#"{"id":"a"}"#, None).export_line(), r#"{"id":"a"}"#);
        let out = row(r#"{"id":"a"}"#, Some(r#"{"v":2}"#))
            .export_line()
            .into_owned();
        assert_eq!(out, r#"{"id":"a","detector_facts":{"v":2}}"#);
        assert_eq!(
            row("{}", Some(r#"{"v":2}"#)).export_line(),
            r#"{"detector_facts":{"v":2}}"#
        );
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["detector_facts"]["v"], 2);
    }
}
