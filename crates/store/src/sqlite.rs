//! The embedded store: one SQLite file in WAL mode with `synchronous = NORMAL`, so a commit
//! is durable against a process crash (the WAL is written before commit returns) and costs no
//! fsync per transaction.
//!
//! Checkpoints (copying the WAL back into the database file, with an fsync) do not run inside
//! a commit, as SQLite's automatic checkpoint would: a checkpointer thread with its own
//! connection runs a passive checkpoint twice a second, beside the writer. The gateway waits
//! for the log's commit before an answer's last byte (`log_durability = committed`), so a
//! checkpoint inside a commit was a few milliseconds added to some answers.

use parking_lot::Mutex;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::keys::new_key;
use crate::{
    Account, AccountField, AuditEntry, KeyRecord, Limits, LoggedExchange, NewKey, Override, Result,
    ScorePoint, Store, StoreError, StoredVerdict, SCORE_HISTORY_KEPT,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    rpm INTEGER, tpm INTEGER, concurrency INTEGER,
    allowlisted INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    meta TEXT,
    content TEXT,
    retention_days REAL
);
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(name),
    hash BLOB NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE TABLE IF NOT EXISTS exchanges (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    ts_ms INTEGER NOT NULL,
    account TEXT NOT NULL,
    line TEXT NOT NULL,
    facts TEXT
);
CREATE INDEX IF NOT EXISTS exchanges_by_account ON exchanges(account, seq);
CREATE INDEX IF NOT EXISTS exchanges_by_time ON exchanges(ts_ms);
CREATE TABLE IF NOT EXISTS verdicts (
    account TEXT PRIMARY KEY,
    score REAL NOT NULL,
    verdict TEXT NOT NULL,
    first_flagged TEXT,
    reasons TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS overrides (
    account TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    by TEXT NOT NULL,
    reason TEXT NOT NULL,
    ts_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    account TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_account ON audit(account, seq);
CREATE TABLE IF NOT EXISTS score_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    score REAL NOT NULL,
    verdict TEXT NOT NULL,
    exchange TEXT
);
CREATE INDEX IF NOT EXISTS score_history_by_account ON score_history(account, seq);
CREATE TABLE IF NOT EXISTS snapshots (
    name TEXT NOT NULL,
    part INTEGER NOT NULL,
    upto_seq INTEGER NOT NULL,
    taken_ms INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (name, part)
);
";

pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// Tells the checkpointer thread to stop when the store is dropped.
    stop_checkpoints: Option<std::sync::mpsc::Sender<()>>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.stop_checkpoints.take();
    }
}

/// How often the checkpointer runs.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs passive checkpoints of the database at `path` until `stop` hangs up. A passive
/// checkpoint never waits for the writer or readers; what it cannot copy now it copies next
/// time, and the WAL starts over once a checkpoint has caught up.
fn spawn_checkpointer(path: &Path) -> Option<std::sync::mpsc::Sender<()>> {
    let conn = Connection::open(path).ok()?;
    conn.busy_timeout(std::time::Duration::from_secs(1)).ok()?;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(CHECKPOINT_EVERY)
            {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                }
            }
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        })
        .ok()?;
    Some(tx)
}

impl SqliteStore {
    /// Opens (creating if needed) `distillguard.db` in `dir`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Invalid(format!("cannot create {}: {e}", dir.display())))?;
        Self::open(&dir.join("distillguard.db"))
    }

    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Checkpoints run beside the writer, not inside its commits (see the module docs);
        // without the thread (it could not open its connection), SQLite's own stay on.
        let stop_checkpoints = spawn_checkpointer(path);
        if stop_checkpoints.is_some() {
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        }
        conn.execute_batch(SCHEMA)?;
        // Stores made before these columns existed gain them (CREATE TABLE IF NOT EXISTS
        // leaves an old table as it was).
        for (table, column, kind) in [
            ("accounts", "meta", "TEXT"),
            ("accounts", "content", "TEXT"),
            ("accounts", "retention_days", "REAL"),
            ("accounts", "allowlist_expires_ms", "INTEGER"),
            ("exchanges", "facts", "TEXT"),
            ("overrides", "expires_ms", "INTEGER"),
        ] {
            add_missing_column(&conn, table, column, kind)?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
            stop_checkpoints,
        })
    }

    /// Sets one column of an account; an account that does not exist is an error.
    fn update_account(&self, name: &str, column: &str, value: &dyn rusqlite::ToSql) -> Result<()> {
        let sql = format!("UPDATE accounts SET {column} = ?2 WHERE name = ?1");
        if self.conn().execute(&sql, params![name, value])? == 0 {
            return Err(StoreError::Invalid(format!("no account {name:?}")));
        }
        Ok(())
    }

    fn conn(&self) -> parking_lot::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.conn.lock()
    }
}

/// Adds `column` to `table` unless the table has it already.
fn add_missing_column(conn: &Connection, table: &str, column: &str, kind: &str) -> Result<()> {
    let present = conn
        .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
        .exists([table, column])?;
    if !present {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind}"))?;
    }
    Ok(())
}

fn limit_from(v: Option<i64>) -> Option<u32> {
    v.and_then(|x| u32::try_from(x).ok())
}

fn account_row(row: &rusqlite::Row) -> rusqlite::Result<Account> {
    Ok(Account {
        name: row.get(0)?,
        limits: Limits {
            rpm: limit_from(row.get(1)?),
            tpm: limit_from(row.get(2)?),
            concurrency: limit_from(row.get(3)?),
        },
        allowlisted: row.get::<_, i64>(4)? != 0,
        created_ms: row.get(5)?,
        meta: row
            .get::<_, Option<String>>(6)?
            .and_then(|m| serde_json::from_str(&m).ok()),
        content: row.get(7)?,
        retention_days: row.get(8)?,
        allowlist_expires_ms: row.get(9)?,
    })
}

fn key_row(row: &rusqlite::Row) -> rusqlite::Result<KeyRecord> {
    let hash: Vec<u8> = row.get(2)?;
    let mut h = [0u8; 32];
    if hash.len() == 32 {
        h.copy_from_slice(&hash);
    }
    Ok(KeyRecord {
        id: row.get(0)?,
        account: row.get(1)?,
        hash: h,
        revoked: row.get::<_, Option<i64>>(3)?.is_some(),
        created_ms: row.get(4)?,
    })
}

const VERDICT_COLUMNS: &str = "account, score, verdict, first_flagged, reasons, updated_ms";

fn verdict_row(row: &rusqlite::Row) -> rusqlite::Result<StoredVerdict> {
    let reasons: String = row.get(4)?;
    Ok(StoredVerdict {
        account: row.get(0)?,
        score: row.get(1)?,
        verdict: row.get(2)?,
        first_flagged: row.get(3)?,
        reasons: serde_json::from_str(&reasons).unwrap_or(serde_json::Value::Null),
        updated_ms: row.get(5)?,
    })
}

impl Store for SqliteStore {
    fn insert_account(&self, name: &str, limits: Option<Limits>, now_ms: i64) -> Result<Account> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO accounts (name, created_ms) VALUES (?1, ?2)",
            params![name, now_ms],
        )?;
        if let Some(l) = limits {
            conn.execute(
                "UPDATE accounts SET rpm = ?2, tpm = ?3, concurrency = ?4 WHERE name = ?1",
                params![name, l.rpm, l.tpm, l.concurrency],
            )?;
        }
        let account = conn.query_row(
            "SELECT name, rpm, tpm, concurrency, allowlisted, created_ms, meta, content, retention_days, allowlist_expires_ms FROM accounts WHERE name = ?1",
            [name],
            account_row,
        )?;
        Ok(account)
    }

    fn account(&self, name: &str) -> Result<Option<Account>> {
        Ok(self
            .conn()
            .query_row("SELECT name, rpm, tpm, concurrency, allowlisted, created_ms, meta, content, retention_days, allowlist_expires_ms FROM accounts WHERE name = ?1", [name], account_row)
            .optional()?)
    }

    fn accounts(&self) -> Result<Vec<Account>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, rpm, tpm, concurrency, allowlisted, created_ms, meta, content, retention_days, allowlist_expires_ms FROM accounts ORDER BY name")?;
        let rows = stmt
            .query_map([], account_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn set_account_field(&self, name: &str, field: AccountField<'_>) -> Result<()> {
        let column = field.column();
        match field {
            AccountField::Allowlisted(b) => self.update_account(name, column, &i64::from(b)),
            AccountField::AllowlistExpiry(ms) => self.update_account(name, column, &ms),
            AccountField::Meta(json) => self.update_account(name, column, &json),
            AccountField::Content(c) => self.update_account(name, column, &c),
            AccountField::Retention(days) => self.update_account(name, column, &days),
        }
    }

    fn create_key(&self, account: &str, now_ms: i64) -> Result<NewKey> {
        let (key, hash) = new_key(account);
        self.conn().execute(
            "INSERT INTO keys (id, account, hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![key.id, account, &hash[..], now_ms],
        )?;
        Ok(key)
    }

    fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, account, hash, revoked_ms, created_ms FROM keys WHERE hash = ?1",
                [&hash[..]],
                key_row,
            )
            .optional()?)
    }

    fn keys(&self) -> Result<Vec<KeyRecord>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT id, account, hash, revoked_ms, created_ms FROM keys ORDER BY id")?;
        let rows = stmt
            .query_map([], key_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn revoke_key(&self, id: &str, now_ms: i64) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE keys SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
            params![id, now_ms],
        )?;
        Ok(n > 0)
    }

    fn append_exchanges(&self, batch: &[LoggedExchange]) -> Result<Vec<Option<i64>>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut new = Vec::with_capacity(batch.len());
        {
            let mut stmt = tx.prepare_cached("INSERT OR IGNORE INTO exchanges (id, ts_ms, account, line, facts) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for e in batch {
                let inserted =
                    stmt.execute(params![e.id, e.ts_ms, e.account, e.line, e.facts])? > 0;
                new.push(inserted.then(|| tx.last_insert_rowid()));
            }
        }
        tx.commit()?;
        Ok(new)
    }

    fn exchanges(
        &self,
        account: Option<&str>,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<(i64, LoggedExchange)>> {
        let conn = self.conn();
        let map = |row: &rusqlite::Row| -> rusqlite::Result<(i64, LoggedExchange)> {
            Ok((
                row.get(0)?,
                LoggedExchange {
                    id: row.get(1)?,
                    ts_ms: row.get(2)?,
                    account: row.get(3)?,
                    line: row.get(4)?,
                    facts: row.get(5)?,
                },
            ))
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match account {
            Some(a) => conn
                .prepare_cached("SELECT seq, id, ts_ms, account, line, facts FROM exchanges WHERE account = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")?
                .query_map(params![a, after_seq, limit], map)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            None => conn
                .prepare_cached("SELECT seq, id, ts_ms, account, line, facts FROM exchanges WHERE seq > ?1 ORDER BY seq LIMIT ?2")?
                .query_map(params![after_seq, limit], map)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        Ok(rows)
    }

    fn recent_exchanges(&self, account: &str, limit: usize) -> Result<Vec<LoggedExchange>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT id, ts_ms, account, line, facts FROM exchanges WHERE account = ?1 ORDER BY seq DESC LIMIT ?2")?;
        let rows = stmt
            .query_map(
                params![account, i64::try_from(limit).unwrap_or(i64::MAX)],
                |row| {
                    Ok(LoggedExchange {
                        id: row.get(0)?,
                        ts_ms: row.get(1)?,
                        account: row.get(2)?,
                        line: row.get(3)?,
                        facts: row.get(4)?,
                    })
                },
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn exchange_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM exchanges", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn last_seq(&self) -> Result<i64> {
        Ok(self
            .conn()
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM exchanges", [], |r| {
                r.get(0)
            })?)
    }

    fn expire_exchanges(&self, now_ms: i64, default_days: Option<f64>) -> Result<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let own: Vec<(String, f64)> = tx
            .prepare("SELECT name, retention_days FROM accounts WHERE retention_days IS NOT NULL")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut n = 0;
        for (account, days) in own {
            n += tx.execute(
                "DELETE FROM exchanges WHERE account = ?1 AND ts_ms < ?2",
                params![account, crate::expiry_cutoff(now_ms, days)],
            )?;
        }
        if let Some(days) = default_days {
            n += tx.execute(
                "DELETE FROM exchanges WHERE ts_ms < ?1 AND account NOT IN (SELECT name FROM accounts WHERE retention_days IS NOT NULL)",
                [crate::expiry_cutoff(now_ms, days)],
            )?;
        }
        tx.commit()?;
        Ok(n as u64)
    }

    fn put_verdict(&self, v: &StoredVerdict) -> Result<()> {
        self.conn().execute(
            "INSERT INTO verdicts (account, score, verdict, first_flagged, reasons, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(account) DO UPDATE SET score = ?2, verdict = ?3, first_flagged = ?4, reasons = ?5, updated_ms = ?6",
            params![v.account, v.score, v.verdict, v.first_flagged, v.reasons.to_string(), v.updated_ms],
        )?;
        Ok(())
    }

    fn verdicts(&self) -> Result<Vec<StoredVerdict>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {VERDICT_COLUMNS} FROM verdicts"))?;
        let rows = stmt
            .query_map([], verdict_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn verdict(&self, account: &str) -> Result<Option<StoredVerdict>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {VERDICT_COLUMNS} FROM verdicts WHERE account = ?1"),
                [account],
                verdict_row,
            )
            .optional()?)
    }

    fn set_override(&self, o: Option<&Override>, account: &str) -> Result<()> {
        let conn = self.conn();
        match o {
            Some(o) => conn.execute(
                "INSERT INTO overrides (account, action, by, reason, ts_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(account) DO UPDATE SET action = ?2, by = ?3, reason = ?4, ts_ms = ?5, expires_ms = ?6",
                params![o.account, o.action, o.by, o.reason, o.ts_ms, o.expires_ms],
            )?,
            None => conn.execute("DELETE FROM overrides WHERE account = ?1", [account])?,
        };
        Ok(())
    }

    fn overrides(&self) -> Result<Vec<Override>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT account, action, by, reason, ts_ms, expires_ms FROM overrides")?;
        let rows = stmt
            .query_map([], |row| {
                Ok(Override {
                    account: row.get(0)?,
                    action: row.get(1)?,
                    by: row.get(2)?,
                    reason: row.get(3)?,
                    ts_ms: row.get(4)?,
                    expires_ms: row.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn audit(&self, e: &AuditEntry) -> Result<()> {
        self.conn().execute(
            "INSERT INTO audit (ts_ms, account, action, actor, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![e.ts_ms, e.account, e.action, e.actor, e.reason],
        )?;
        Ok(())
    }

    fn audit_log(&self, account: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        let conn = self.conn();
        let map = |row: &rusqlite::Row| -> rusqlite::Result<AuditEntry> {
            Ok(AuditEntry {
                ts_ms: row.get(0)?,
                account: row.get(1)?,
                action: row.get(2)?,
                actor: row.get(3)?,
                reason: row.get(4)?,
            })
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match account {
            Some(a) => conn
                .prepare("SELECT ts_ms, account, action, actor, reason FROM audit WHERE account = ?1 ORDER BY seq DESC LIMIT ?2")?
                .query_map(params![a, limit], map)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
            None => conn
                .prepare("SELECT ts_ms, account, action, actor, reason FROM audit ORDER BY seq DESC LIMIT ?1")?
                .query_map(params![limit], map)?
                .collect::<rusqlite::Result<Vec<_>>>()?,
        };
        Ok(rows)
    }

    fn add_score_point(&self, p: &ScorePoint) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO score_history (account, ts_ms, score, verdict, exchange) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![p.account, p.ts_ms, p.score, p.verdict, p.exchange],
        )?;
        tx.execute(
            "DELETE FROM score_history WHERE account = ?1 AND seq <= (SELECT seq FROM score_history WHERE account = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
            params![p.account, SCORE_HISTORY_KEPT as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn score_history(&self, account: &str, limit: usize) -> Result<Vec<ScorePoint>> {
        let conn = self.conn();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = conn
            .prepare("SELECT account, ts_ms, score, verdict, exchange FROM score_history WHERE account = ?1 ORDER BY seq DESC LIMIT ?2")?
            .query_map(params![account, limit], |row| {
                Ok(ScorePoint {
                    account: row.get(0)?,
                    ts_ms: row.get(1)?,
                    score: row.get(2)?,
                    verdict: row.get(3)?,
                    exchange: row.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.reverse();
        Ok(rows)
    }

    fn put_snapshot(&self, name: &str, upto_seq: i64, taken_ms: i64, bytes: &[u8]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM snapshots WHERE name = ?1", params![name])?;
        {
            let mut stmt = tx.prepare("INSERT INTO snapshots (name, part, upto_seq, taken_ms, bytes) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for (part, chunk) in bytes.chunks(crate::SNAPSHOT_PART).enumerate() {
                stmt.execute(params![name, part as i64, upto_seq, taken_ms, chunk])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn snapshot(&self, name: &str) -> Result<Option<crate::Snapshot>> {
        let conn = self.conn();
        let parts = conn
            .prepare("SELECT part, upto_seq, taken_ms, bytes FROM snapshots WHERE name = ?1 ORDER BY part")?
            .query_map(params![name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        crate::join_snapshot(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash_key;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open_dir(dir.path()).unwrap();
        (dir, s)
    }

    #[test]
    fn checkpoints_run_beside_the_writer_so_the_wal_does_not_grow_without_end() {
        let (dir, s) = store();
        let wal = dir.path().join("distillguard.db-wal");
        let line = "x".repeat(2000);
        let mut n = 0;
        let mut append_mb = |mb: usize| {
            for _ in 0..mb {
                let batch: Vec<LoggedExchange> = (0..500)
                    .map(|_| {
                        n += 1;
                        LoggedExchange {
                            id: format!("req_{n}"),
                            ts_ms: n,
                            account: "a".into(),
                            line: line.clone(),
                            facts: None,
                        }
                    })
                    .collect();
                s.append_exchanges(&batch).unwrap();
            }
        };
        // Automatic checkpoints are off; without the checkpointer the WAL would hold all
        // 3 × 8 MB written here.
        for _ in 0..3 {
            append_mb(8);
            std::thread::sleep(CHECKPOINT_EVERY * 3);
        }
        let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
        assert!(size < 16 << 20, "the WAL grew to {size} bytes");
        drop(s);
        let again = SqliteStore::open_dir(dir.path()).unwrap();
        assert_eq!(again.exchanges(None, 0, 100_000).unwrap().len(), 24 * 500);
    }

    #[test]
    fn keys_are_stored_only_as_hashes_and_resolve_to_their_account() {
        let (dir, s) = store();
        s.upsert_account(
            "acme",
            Some(Limits {
                rpm: Some(60),
                tpm: None,
                concurrency: None,
            }),
            1,
        )
        .unwrap();
        let key = s.create_key("acme", 2).unwrap();
        let rec = s.key_by_hash(&hash_key(&key.secret)).unwrap().unwrap();
        assert_eq!((rec.account.as_str(), rec.revoked), ("acme", false));
        drop(s);
        let raw = std::fs::read(dir.path().join("distillguard.db")).unwrap();
        let wal = std::fs::read(dir.path().join("distillguard.db-wal")).unwrap_or_default();
        let needle = key.secret.as_bytes();
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle)
                && !wal.windows(needle.len()).any(|w| w == needle)
        );
    }

    #[test]
    fn revoked_keys_say_so_and_keys_need_an_account() {
        let (_d, s) = store();
        s.upsert_account("a", None, 1).unwrap();
        let key = s.create_key("a", 1).unwrap();
        assert!(s.revoke_key(&key.id, 5).unwrap());
        assert!(!s.revoke_key(&key.id, 6).unwrap());
        assert!(
            s.key_by_hash(&hash_key(&key.secret))
                .unwrap()
                .unwrap()
                .revoked
        );
        assert!(s.create_key("nobody", 1).is_err());
    }

    #[test]
    fn a_log_from_before_facts_and_meta_opens_and_gains_both_columns() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("old.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE accounts (name TEXT PRIMARY KEY, rpm INTEGER, tpm INTEGER, concurrency INTEGER, allowlisted INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL);
                 CREATE TABLE exchanges (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, ts_ms INTEGER NOT NULL, account TEXT NOT NULL, line TEXT NOT NULL);
                 INSERT INTO exchanges (id, ts_ms, account, line) VALUES ('old', 1, 'a', '{}');",
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let row = LoggedExchange {
            id: "new".into(),
            ts_ms: 2,
            account: "a".into(),
            line: "{}".into(),
            facts: Some("{}".into()),
        };
        s.append_exchanges(std::slice::from_ref(&row)).unwrap();
        let rows = s.exchanges(Some("a"), 0, 10).unwrap();
        assert_eq!(rows[0].1.facts, None);
        assert_eq!(rows[1].1, row);
        s.upsert_account("a", None, 0).unwrap();
    }

    #[test]
    fn exchanges_append_once_by_id_and_page_in_order() {
        let (_d, s) = store();
        let ex = |id: &str, acct: &str| LoggedExchange {
            id: id.into(),
            ts_ms: 1,
            account: acct.into(),
            line: "{}".into(),
            facts: None,
        };
        s.append_exchanges(&[ex("1", "a"), ex("2", "b"), ex("3", "a")])
            .unwrap();
        s.append_exchanges(&[ex("2", "b")]).unwrap();
        assert_eq!(s.exchange_count().unwrap(), 3);
        let a: Vec<String> = s
            .exchanges(Some("a"), 0, 10)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.id)
            .collect();
        assert_eq!(a, vec!["1", "3"]);
        let page = s.exchanges(None, 1, 1).unwrap();
        assert_eq!(page[0].1.id, "2");
    }
}
