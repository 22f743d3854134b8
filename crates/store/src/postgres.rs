//! The shared store: PostgreSQL, for many gateway replicas and detector workers keeping one
//! record. Same tables and queries as the SQLite store; the schema is versioned with refinery
//! migrations, applied under an advisory lock so replicas starting together do not race.
//!
//! The [`Store`] trait is synchronous (callers run it on blocking threads), so this uses the
//! synchronous `postgres` client over a small pool of connections.

use parking_lot::Mutex;
use postgres::{Client, NoTls};

use crate::keys::new_key;
use crate::{
    Account, AccountField, AuditEntry, KeyRecord, Limits, LoggedExchange, NewKey, Override, Result,
    ScorePoint, Store, StoreError, StoredVerdict, SCORE_HISTORY_KEPT,
};

/// Versioned schema. A new version is a new entry here; an applied one is never edited.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "V1__initial",
        "
CREATE TABLE accounts (
    name TEXT PRIMARY KEY,
    rpm BIGINT, tpm BIGINT, concurrency BIGINT,
    allowlisted BOOLEAN NOT NULL DEFAULT FALSE,
    created_ms BIGINT NOT NULL
);
CREATE TABLE keys (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(name),
    hash BYTEA NOT NULL UNIQUE,
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT
);
-- seq gives one log order across writers; per-account and time-range reads have their indexes.
CREATE TABLE exchanges (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    ts_ms BIGINT NOT NULL,
    account TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX exchanges_by_account ON exchanges(account, seq);
CREATE INDEX exchanges_by_time ON exchanges(ts_ms);
CREATE TABLE verdicts (
    account TEXT PRIMARY KEY,
    score DOUBLE PRECISION NOT NULL,
    verdict TEXT NOT NULL,
    first_flagged TEXT,
    reasons TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE TABLE overrides (
    account TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    by TEXT NOT NULL,
    reason TEXT NOT NULL,
    ts_ms BIGINT NOT NULL
);
CREATE TABLE audit (
    seq BIGSERIAL PRIMARY KEY,
    ts_ms BIGINT NOT NULL,
    account TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX audit_by_account ON audit(account, seq);
",
    ),
    (
        "V2__account_meta",
        "ALTER TABLE accounts ADD COLUMN meta TEXT;",
    ),
    (
        "V3__exchange_facts",
        "ALTER TABLE exchanges ADD COLUMN facts TEXT;",
    ),
    (
        "V4__account_content",
        "ALTER TABLE accounts ADD COLUMN content TEXT;",
    ),
    (
        "V5__account_retention",
        "ALTER TABLE accounts ADD COLUMN retention_days DOUBLE PRECISION;",
    ),
    (
        "V6__detector_snapshots",
        "
CREATE TABLE snapshots (
    name TEXT NOT NULL,
    part INTEGER NOT NULL,
    upto_seq BIGINT NOT NULL,
    taken_ms BIGINT NOT NULL,
    bytes BYTEA NOT NULL,
    PRIMARY KEY (name, part)
);
",
    ),
    (
        "V7__decision_expiry",
        "ALTER TABLE accounts ADD COLUMN allowlist_expires_ms BIGINT;
ALTER TABLE overrides ADD COLUMN expires_ms BIGINT;",
    ),
    (
        "V8__score_history",
        "
CREATE TABLE score_history (
    seq BIGSERIAL PRIMARY KEY,
    account TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    verdict TEXT NOT NULL,
    exchange TEXT
);
CREATE INDEX score_history_by_account ON score_history(account, seq);
",
    ),
];

/// Arbitrary but fixed: every distillguard process migrating the same database takes this lock.
const MIGRATION_LOCK: i64 = 0x0064_6973_7469_6c6c;

/// Connections kept idle for reuse; more are opened on demand and closed after use.
const POOL_IDLE: usize = 8;

pub struct PgStore {
    url: String,
    idle: Mutex<Vec<Client>>,
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`) and brings its schema up to date.
    pub fn connect(url: &str) -> Result<Self> {
        let store = Self {
            url: url.to_owned(),
            idle: Mutex::new(Vec::new()),
        };
        store
            .with(|c| {
                c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
                let migrations = MIGRATIONS
                    .iter()
                    .map(|(name, sql)| refinery::Migration::unapplied(name, sql))
                    .collect::<std::result::Result<Vec<_>, _>>();
                let ran = migrations.map_err(|e| e.to_string()).and_then(|m| {
                    refinery::Runner::new(&m)
                        .set_migration_table_name("distillguard_migrations")
                        .run(c)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
                c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])?;
                Ok(ran)
            })?
            .map_err(|e| StoreError::Invalid(format!("migrating {}: {e}", redact(url))))?;
        Ok(store)
    }

    /// Runs `f` on a pooled connection; a connection that failed is dropped, not reused.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        let pooled = self.idle.lock().pop();
        let mut client = match pooled {
            Some(c) if !c.is_closed() => c,
            _ => Client::connect(&self.url, NoTls)?,
        };
        let out = f(&mut client);
        if !client.is_closed() {
            let mut idle = self.idle.lock();
            if idle.len() < POOL_IDLE {
                idle.push(client);
            }
        }
        Ok(out?)
    }

    /// Sets one column of an account; an account that does not exist is an error.
    fn update_account(
        &self,
        name: &str,
        column: &str,
        value: &(dyn postgres::types::ToSql + Sync),
    ) -> Result<()> {
        let sql = format!("UPDATE accounts SET {column} = $2 WHERE name = $1");
        if self.with(|c| c.execute(&sql, &[&name, value]))? == 0 {
            return Err(StoreError::Invalid(format!("no account {name:?}")));
        }
        Ok(())
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Each client owns a small runtime, which must not be dropped on an async thread.
        let idle = std::mem::take(self.idle.get_mut());
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(idle));
        }
    }
}

/// The URL without its password, for error messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn limit_from(v: Option<i64>) -> Option<u32> {
    v.and_then(|x| u32::try_from(x).ok())
}

fn account_row(row: &postgres::Row) -> Account {
    Account {
        name: row.get(0),
        limits: Limits {
            rpm: limit_from(row.get(1)),
            tpm: limit_from(row.get(2)),
            concurrency: limit_from(row.get(3)),
        },
        allowlisted: row.get(4),
        created_ms: row.get(5),
        meta: row
            .get::<_, Option<String>>(6)
            .and_then(|m| serde_json::from_str(&m).ok()),
        content: row.get(7),
        retention_days: row.get(8),
        allowlist_expires_ms: row.get(9),
    }
}

fn key_row(row: &postgres::Row) -> KeyRecord {
    let hash: Vec<u8> = row.get(2);
    let mut h = [0u8; 32];
    if hash.len() == 32 {
        h.copy_from_slice(&hash);
    }
    KeyRecord {
        id: row.get(0),
        account: row.get(1),
        hash: h,
        revoked: row.get::<_, Option<i64>>(3).is_some(),
        created_ms: row.get(4),
    }
}

fn exchange_row(row: &postgres::Row, from: usize) -> LoggedExchange {
    LoggedExchange {
        id: row.get(from),
        ts_ms: row.get(from + 1),
        account: row.get(from + 2),
        line: row.get(from + 3),
        facts: row.get(from + 4),
    }
}

fn audit_row(row: &postgres::Row) -> AuditEntry {
    AuditEntry {
        ts_ms: row.get(0),
        account: row.get(1),
        action: row.get(2),
        actor: row.get(3),
        reason: row.get(4),
    }
}

const VERDICT_COLUMNS: &str = "account, score, verdict, first_flagged, reasons, updated_ms";

fn verdict_row(row: &postgres::Row) -> StoredVerdict {
    let reasons: String = row.get(4);
    StoredVerdict {
        account: row.get(0),
        score: row.get(1),
        verdict: row.get(2),
        first_flagged: row.get(3),
        reasons: serde_json::from_str(&reasons).unwrap_or(serde_json::Value::Null),
        updated_ms: row.get(5),
    }
}

const ACCOUNT_COLUMNS: &str =
    "name, rpm, tpm, concurrency, allowlisted, created_ms, meta, content, retention_days, allowlist_expires_ms";

fn as_i64(l: Option<u32>) -> Option<i64> {
    l.map(i64::from)
}

impl Store for PgStore {
    fn insert_account(&self, name: &str, limits: Option<Limits>, now_ms: i64) -> Result<Account> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO accounts (name, created_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &now_ms],
            )?;
            if let Some(l) = limits {
                tx.execute(
                    "UPDATE accounts SET rpm = $2, tpm = $3, concurrency = $4 WHERE name = $1",
                    &[&name, &as_i64(l.rpm), &as_i64(l.tpm), &as_i64(l.concurrency)],
                )?;
            }
            let row = tx.query_one(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1"),
                &[&name],
            )?;
            tx.commit()?;
            Ok(account_row(&row))
        })
    }

    fn account(&self, name: &str) -> Result<Option<Account>> {
        self.with(|c| {
            Ok(c.query_opt(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = $1"),
                &[&name],
            )?
            .as_ref()
            .map(account_row))
        })
    }

    fn accounts(&self) -> Result<Vec<Account>> {
        self.with(|c| {
            Ok(c.query(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY name"),
                &[],
            )?
            .iter()
            .map(account_row)
            .collect())
        })
    }

    fn set_account_field(&self, name: &str, field: AccountField<'_>) -> Result<()> {
        let column = field.column();
        match field {
            AccountField::Allowlisted(b) => self.update_account(name, column, &b),
            AccountField::AllowlistExpiry(ms) => self.update_account(name, column, &ms),
            AccountField::Meta(json) => self.update_account(name, column, &json),
            AccountField::Content(c) => self.update_account(name, column, &c),
            AccountField::Retention(days) => self.update_account(name, column, &days),
        }
    }

    fn create_key(&self, account: &str, now_ms: i64) -> Result<NewKey> {
        let (key, hash) = new_key(account);
        self.with(|c| {
            c.execute(
                "INSERT INTO keys (id, account, hash, created_ms) VALUES ($1, $2, $3, $4)",
                &[&key.id, &account, &&hash[..], &now_ms],
            )
        })?;
        Ok(key)
    }

    fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>> {
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT id, account, hash, revoked_ms, created_ms FROM keys WHERE hash = $1",
                &[&&hash[..]],
            )?
            .as_ref()
            .map(key_row))
        })
    }

    fn keys(&self) -> Result<Vec<KeyRecord>> {
        self.with(|c| {
            Ok(c.query(
                "SELECT id, account, hash, revoked_ms, created_ms FROM keys ORDER BY id",
                &[],
            )?
            .iter()
            .map(key_row)
            .collect())
        })
    }

    fn revoke_key(&self, id: &str, now_ms: i64) -> Result<bool> {
        let n = self.with(|c| {
            c.execute(
                "UPDATE keys SET revoked_ms = $2 WHERE id = $1 AND revoked_ms IS NULL",
                &[&id, &now_ms],
            )
        })?;
        Ok(n > 0)
    }

    fn append_exchanges(&self, batch: &[LoggedExchange]) -> Result<Vec<Option<i64>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // One statement per batch: the arrays travel in one round trip and the ids that were
        // new come back, so a redelivered exchange is recognised and not counted twice.
        let ids: Vec<&str> = batch.iter().map(|e| e.id.as_str()).collect();
        let ts: Vec<i64> = batch.iter().map(|e| e.ts_ms).collect();
        let accounts: Vec<&str> = batch.iter().map(|e| e.account.as_str()).collect();
        let lines: Vec<&str> = batch.iter().map(|e| e.line.as_str()).collect();
        let facts: Vec<Option<&str>> = batch.iter().map(|e| e.facts.as_deref()).collect();
        let inserted: std::collections::HashMap<String, i64> = self.with(|c| {
            Ok(c.query(
                "INSERT INTO exchanges (id, ts_ms, account, line, facts)
                 SELECT id, ts_ms, account, line, facts FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS t(id, ts_ms, account, line, facts, n)
                 ORDER BY n
                 ON CONFLICT (id) DO NOTHING RETURNING id, seq",
                &[&ids, &ts, &accounts, &lines, &facts],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })?;
        // A batch may repeat an id: only its first occurrence counts as new.
        let mut seen = std::collections::HashSet::new();
        Ok(batch
            .iter()
            .map(|e| {
                inserted
                    .get(&e.id)
                    .copied()
                    .filter(|_| seen.insert(e.id.as_str()))
            })
            .collect())
    }

    fn exchanges(
        &self,
        account: Option<&str>,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<(i64, LoggedExchange)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            let rows = match account {
                Some(a) => c.query(
                    "SELECT seq, id, ts_ms, account, line, facts FROM exchanges WHERE account = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    &[&a, &after_seq, &limit],
                )?,
                None => c.query(
                    "SELECT seq, id, ts_ms, account, line, facts FROM exchanges WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&after_seq, &limit],
                )?,
            };
            Ok(rows
                .iter()
                .map(|r| (r.get(0), exchange_row(r, 1)))
                .collect())
        })
    }

    fn recent_exchanges(&self, account: &str, limit: usize) -> Result<Vec<LoggedExchange>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            Ok(c.query(
                "SELECT id, ts_ms, account, line, facts FROM exchanges WHERE account = $1 ORDER BY seq DESC LIMIT $2",
                &[&account, &limit],
            )?
            .iter()
            .map(|r| exchange_row(r, 0))
            .collect())
        })
    }

    fn exchange_count(&self) -> Result<u64> {
        self.with(|c| {
            let n: i64 = c.query_one("SELECT COUNT(*) FROM exchanges", &[])?.get(0);
            Ok(n as u64)
        })
    }

    fn last_seq(&self) -> Result<i64> {
        self.with(|c| {
            c.query_one("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM exchanges", &[])
                .map(|r| r.get(0))
        })
    }

    fn expire_exchanges(&self, now_ms: i64, default_days: Option<f64>) -> Result<u64> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let own = tx.query(
                "SELECT name, retention_days FROM accounts WHERE retention_days IS NOT NULL",
                &[],
            )?;
            let mut n = 0;
            for row in own {
                let (account, days): (String, f64) = (row.get(0), row.get(1));
                let cutoff = crate::expiry_cutoff(now_ms, days);
                n += tx.execute(
                    "DELETE FROM exchanges WHERE account = $1 AND ts_ms < $2",
                    &[&account, &cutoff],
                )?;
            }
            if let Some(days) = default_days {
                let cutoff = crate::expiry_cutoff(now_ms, days);
                n += tx.execute(
                    "DELETE FROM exchanges WHERE ts_ms < $1 AND account NOT IN (SELECT name FROM accounts WHERE retention_days IS NOT NULL)",
                    &[&cutoff],
                )?;
            }
            tx.commit()?;
            Ok(n)
        })
    }

    fn put_verdict(&self, v: &StoredVerdict) -> Result<()> {
        let reasons = v.reasons.to_string();
        self.with(|c| {
            c.execute(
                "INSERT INTO verdicts (account, score, verdict, first_flagged, reasons, updated_ms) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (account) DO UPDATE SET score = $2, verdict = $3, first_flagged = $4, reasons = $5, updated_ms = $6",
                &[&v.account, &v.score, &v.verdict, &v.first_flagged, &reasons, &v.updated_ms],
            )
        })?;
        Ok(())
    }

    fn verdicts(&self) -> Result<Vec<StoredVerdict>> {
        self.with(|c| {
            Ok(
                c.query(&format!("SELECT {VERDICT_COLUMNS} FROM verdicts"), &[])?
                    .iter()
                    .map(verdict_row)
                    .collect(),
            )
        })
    }

    fn verdict(&self, account: &str) -> Result<Option<StoredVerdict>> {
        self.with(|c| {
            Ok(c.query_opt(
                &format!("SELECT {VERDICT_COLUMNS} FROM verdicts WHERE account = $1"),
                &[&account],
            )?
            .as_ref()
            .map(verdict_row))
        })
    }

    fn set_override(&self, o: Option<&Override>, account: &str) -> Result<()> {
        self.with(|c| match o {
            Some(o) => c.execute(
                "INSERT INTO overrides (account, action, by, reason, ts_ms, expires_ms) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (account) DO UPDATE SET action = $2, by = $3, reason = $4, ts_ms = $5, expires_ms = $6",
                &[&o.account, &o.action, &o.by, &o.reason, &o.ts_ms, &o.expires_ms],
            ),
            None => c.execute("DELETE FROM overrides WHERE account = $1", &[&account]),
        })?;
        Ok(())
    }

    fn overrides(&self) -> Result<Vec<Override>> {
        self.with(|c| {
            Ok(c.query(
                "SELECT account, action, by, reason, ts_ms, expires_ms FROM overrides",
                &[],
            )?
            .iter()
            .map(|row| Override {
                account: row.get(0),
                action: row.get(1),
                by: row.get(2),
                reason: row.get(3),
                ts_ms: row.get(4),
                expires_ms: row.get(5),
            })
            .collect())
        })
    }

    fn audit(&self, e: &AuditEntry) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO audit (ts_ms, account, action, actor, reason) VALUES ($1, $2, $3, $4, $5)",
                &[&e.ts_ms, &e.account, &e.action, &e.actor, &e.reason],
            )
        })?;
        Ok(())
    }

    fn audit_log(&self, account: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            let rows = match account {
                Some(a) => c.query(
                    "SELECT ts_ms, account, action, actor, reason FROM audit WHERE account = $1 ORDER BY seq DESC LIMIT $2",
                    &[&a, &limit],
                )?,
                None => c.query(
                    "SELECT ts_ms, account, action, actor, reason FROM audit ORDER BY seq DESC LIMIT $1",
                    &[&limit],
                )?,
            };
            Ok(rows.iter().map(audit_row).collect())
        })
    }

    fn add_score_point(&self, p: &ScorePoint) -> Result<()> {
        let keep = SCORE_HISTORY_KEPT as i64;
        self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO score_history (account, ts_ms, score, verdict, exchange) VALUES ($1, $2, $3, $4, $5)",
                &[&p.account, &p.ts_ms, &p.score, &p.verdict, &p.exchange],
            )?;
            tx.execute(
                "DELETE FROM score_history WHERE account = $1 AND seq <= (SELECT seq FROM score_history WHERE account = $1 ORDER BY seq DESC LIMIT 1 OFFSET $2)",
                &[&p.account, &keep],
            )?;
            tx.commit()
        })?;
        Ok(())
    }

    fn score_history(&self, account: &str, limit: usize) -> Result<Vec<ScorePoint>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            let rows = c.query(
                "SELECT account, ts_ms, score, verdict, exchange FROM score_history WHERE account = $1 ORDER BY seq DESC LIMIT $2",
                &[&account, &limit],
            )?;
            let mut points: Vec<ScorePoint> = rows
                .iter()
                .map(|row| ScorePoint {
                    account: row.get(0),
                    ts_ms: row.get(1),
                    score: row.get(2),
                    verdict: row.get(3),
                    exchange: row.get(4),
                })
                .collect();
            points.reverse();
            Ok(points)
        })
    }

    fn put_snapshot(&self, name: &str, upto_seq: i64, taken_ms: i64, bytes: &[u8]) -> Result<()> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            tx.execute("DELETE FROM snapshots WHERE name = $1", &[&name])?;
            for (part, chunk) in bytes.chunks(crate::SNAPSHOT_PART).enumerate() {
                let part = part as i32;
                tx.execute(
                    "INSERT INTO snapshots (name, part, upto_seq, taken_ms, bytes) VALUES ($1, $2, $3, $4, $5)",
                    &[&name, &part, &upto_seq, &taken_ms, &chunk],
                )?;
            }
            tx.commit()
        })
    }

    fn snapshot(&self, name: &str) -> Result<Option<crate::Snapshot>> {
        let parts = self.with(|c| {
            Ok(c
                .query(
                    "SELECT part, upto_seq, taken_ms, bytes FROM snapshots WHERE name = $1 ORDER BY part",
                    &[&name],
                )?
                .iter()
                .map(|r| {
                    (
                        i64::from(r.get::<_, i32>(0)),
                        r.get(1),
                        r.get(2),
                        r.get(3),
                    )
                })
                .collect::<Vec<_>>())
        })?;
        crate::join_snapshot(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://dg:s3cret@db:5432/x"),
            "postgres://dg:***@db:5432/x"
        );
        assert_eq!(redact("postgres://dg@db/x"), "postgres://dg@db/x");
    }
}
