//! Both stores answer the same calls the same way: the gateway, the workers and the CLI may use
//! either without knowing which.

use store::{AuditEntry, Limits, LoggedExchange, Override, ScorePoint, Store, StoredVerdict};

fn ex(id: &str, account: &str, ts: i64) -> LoggedExchange {
    LoggedExchange {
        id: id.into(),
        ts_ms: ts,
        account: account.into(),
        line: format!("{{\"id\":\"{id}\"}}"),
        facts: None,
    }
}

fn behaves_as_a_store(s: &dyn Store) {
    // Accounts and limits.
    let a = s.upsert_account("acme", None, 10).unwrap();
    assert_eq!(a.limits, Limits::default());
    let limits = Limits {
        rpm: Some(60),
        tpm: Some(10_000),
        concurrency: None,
    };
    let a = s.upsert_account("acme", Some(limits), 20).unwrap();
    assert_eq!((a.limits, a.created_ms), (limits, 10));
    assert!(s.upsert_account("", None, 1).is_err());
    s.set_allowlisted("acme", true).unwrap();
    assert!(s.account("acme").unwrap().unwrap().allowlisted);
    assert!(s.set_allowlisted("nobody", true).is_err());
    assert_eq!(
        s.account("acme").unwrap().unwrap().allowlist_expires_ms,
        None
    );
    s.set_allowlist_expiry("acme", Some(12_345)).unwrap();
    assert_eq!(
        s.account("acme").unwrap().unwrap().allowlist_expires_ms,
        Some(12_345)
    );
    s.set_allowlist_expiry("acme", None).unwrap();
    assert_eq!(
        s.account("acme").unwrap().unwrap().allowlist_expires_ms,
        None
    );
    assert!(s.set_allowlist_expiry("nobody", Some(1)).is_err());
    let meta = serde_json::json!({"payment_fingerprint": "pf_1", "asn": 64500});
    s.set_account_meta("acme", Some(&meta)).unwrap();
    assert_eq!(s.account("acme").unwrap().unwrap().meta, Some(meta));
    assert!(s
        .set_account_meta("acme", Some(&serde_json::json!({"asn": "x"})))
        .is_err());
    assert!(s
        .set_account_meta("acme", Some(&serde_json::json!({"card_number": "4111"})))
        .is_err());
    assert!(s.set_account_meta("nobody", None).is_err());
    assert!(s.account("nobody").unwrap().is_none());
    // A content policy of the account's own, only one of the known ones, and cleared again.
    assert_eq!(s.account("acme").unwrap().unwrap().content, None);
    s.set_account_content("acme", Some("hashes")).unwrap();
    assert_eq!(s.accounts().unwrap()[0].content.as_deref(), Some("hashes"));
    assert!(s.set_account_content("acme", Some("everything")).is_err());
    assert!(s.set_account_content("nobody", Some("full")).is_err());
    s.set_account_content("acme", None).unwrap();
    assert_eq!(s.account("acme").unwrap().unwrap().content, None);

    // Keys: only the hash is kept, revocation sticks, keys need an account.
    let key = s.create_key("acme", 30).unwrap();
    let found = s
        .key_by_hash(&store::hash_key(&key.secret))
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.id.as_str(), found.account.as_str()),
        (key.id.as_str(), "acme")
    );
    assert!(!found.revoked);
    assert!(s.create_key("nobody", 30).is_err());
    assert!(s.revoke_key(&key.id, 40).unwrap());
    assert!(!s.revoke_key(&key.id, 41).unwrap());
    assert!(s.keys().unwrap()[0].revoked);

    // Exchanges: once by id, in log order, per account, newest first, expiry.
    assert_eq!(s.last_seq().unwrap(), 0, "an empty log");
    let new = s
        .append_exchanges(&[
            ex("e1", "acme", 100),
            ex("e2", "beta", 200),
            LoggedExchange {
                facts: Some("{\"v\":2}".into()),
                ..ex("e3", "acme", 300)
            },
        ])
        .unwrap();
    assert!(new.iter().all(Option::is_some), "{new:?}");
    let new_again = s
        .append_exchanges(&[
            ex("e2", "beta", 200),
            ex("e4", "beta", 400),
            ex("e4", "beta", 400),
        ])
        .unwrap();
    assert!(
        new_again[0].is_none() && new_again[2].is_none(),
        "{new_again:?}"
    );
    assert_eq!(s.exchange_count().unwrap(), 4);
    let all = s.exchanges(None, 0, 10).unwrap();
    let ids: Vec<&str> = all.iter().map(|(_, e)| e.id.as_str()).collect();
    assert_eq!(ids, ["e1", "e2", "e3", "e4"]);
    assert_eq!(s.last_seq().unwrap(), all.last().unwrap().0);
    // The seq each new exchange was given is its place in the log.
    let seqs: Vec<i64> = all.iter().map(|(seq, _)| *seq).collect();
    let given: Vec<i64> = new
        .iter()
        .chain(&new_again[1..2])
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(seqs, given);
    let after = s.exchanges(None, all[1].0, 1).unwrap();
    assert_eq!(after[0].1.id, "e3");
    let acme = s.exchanges(Some("acme"), 0, 10).unwrap();
    assert_eq!(acme.len(), 2);
    // A redacted line's facts come back with it; other lines have none.
    assert_eq!(acme[0].1.facts, None);
    assert_eq!(acme[1].1.facts.as_deref(), Some("{\"v\":2}"));
    let recent = s.recent_exchanges("beta", 1).unwrap();
    assert_eq!(recent[0], ex("e4", "beta", 400));
    // Expiry: nothing without a retention; an account's own retention first, then the
    // default for every account without one.
    const DAY: i64 = 86_400_000;
    assert_eq!(s.expire_exchanges(1_000 * DAY, None).unwrap(), 0);
    assert!(s.set_account_retention("acme", Some(0.0)).is_err());
    assert!(s.set_account_retention("acme", Some(f64::NAN)).is_err());
    s.set_account_retention("acme", Some(1.0)).unwrap();
    assert_eq!(
        s.account("acme").unwrap().unwrap().retention_days,
        Some(1.0)
    );
    assert_eq!(
        s.expire_exchanges(350 + DAY, None).unwrap(),
        2,
        "acme's e1, e3"
    );
    assert_eq!(
        s.expire_exchanges(250 + DAY, Some(1.0)).unwrap(),
        1,
        "beta's e2"
    );
    assert_eq!(s.exchange_count().unwrap(), 1);
    s.set_account_retention("acme", None).unwrap();

    // Verdicts, overrides, audit.
    let v = StoredVerdict {
        account: "beta".into(),
        score: 0.91,
        verdict: "distilling".into(),
        first_flagged: Some("2026-01-01T00:00:00Z".into()),
        reasons: serde_json::json!(["harvests logprobs"]),
        updated_ms: 500,
    };
    s.put_verdict(&v).unwrap();
    s.put_verdict(&StoredVerdict {
        score: 0.95,
        ..v.clone()
    })
    .unwrap();
    let vs = s.verdicts().unwrap();
    assert_eq!(
        vs,
        vec![StoredVerdict {
            score: 0.95,
            ..v.clone()
        }]
    );
    assert_eq!(
        s.verdict("beta").unwrap(),
        Some(StoredVerdict { score: 0.95, ..v })
    );
    assert_eq!(s.verdict("acme").unwrap(), None);
    let o = Override {
        account: "beta".into(),
        action: "block".into(),
        by: "analyst".into(),
        reason: "confirmed".into(),
        ts_ms: 600,
        expires_ms: None,
    };
    s.set_override(Some(&o), "beta").unwrap();
    assert_eq!(s.overrides().unwrap(), vec![o.clone()]);
    // A decision with an expiry keeps it; setting it again replaces it.
    let o = Override {
        expires_ms: Some(9_000),
        ..o
    };
    s.set_override(Some(&o), "beta").unwrap();
    assert_eq!(s.overrides().unwrap(), vec![o]);
    s.set_override(None, "beta").unwrap();
    assert!(s.overrides().unwrap().is_empty());
    for (i, account) in ["acme", "beta", "acme"].iter().enumerate() {
        s.audit(&AuditEntry {
            ts_ms: i as i64,
            account: (*account).into(),
            action: "watch".into(),
            actor: "detector".into(),
            reason: format!("r{i}"),
        })
        .unwrap();
    }
    // Score history: oldest first, the newest kept, per account.
    let point = |account: &str, ts_ms: i64| ScorePoint {
        account: account.into(),
        ts_ms,
        score: ts_ms as f64 / 10_000.0,
        verdict: "benign".into(),
        exchange: Some(format!("ex-{ts_ms}")),
    };
    for t in [1, 2, 3] {
        s.add_score_point(&point("acme", t)).unwrap();
    }
    s.add_score_point(&point("beta", 7)).unwrap();
    assert_eq!(
        s.score_history("acme", 10).unwrap(),
        vec![point("acme", 1), point("acme", 2), point("acme", 3)]
    );
    assert_eq!(
        s.score_history("acme", 2).unwrap(),
        vec![point("acme", 2), point("acme", 3)]
    );
    for t in 4..(store::SCORE_HISTORY_KEPT as i64 + 6) {
        s.add_score_point(&point("acme", t)).unwrap();
    }
    let kept = s.score_history("acme", usize::MAX).unwrap();
    assert_eq!(kept.len(), store::SCORE_HISTORY_KEPT);
    assert_eq!(kept[0].ts_ms, 6);
    assert_eq!(s.score_history("beta", 10).unwrap(), vec![point("beta", 7)]);

    let log = s.audit_log(Some("acme"), 10).unwrap();
    assert_eq!(
        log.iter().map(|e| e.reason.as_str()).collect::<Vec<_>>(),
        ["r2", "r0"]
    );
    assert_eq!(s.audit_log(None, 1).unwrap()[0].reason, "r2");

    // Snapshots: none at first; a large one comes back whole from its parts; a new one
    // replaces the old, parts and all; names are separate.
    assert_eq!(s.snapshot("local").unwrap(), None);
    let big: Vec<u8> = (0..store::SNAPSHOT_PART * 2 + 123)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    s.put_snapshot("local", 41, 7, &big).unwrap();
    let got = s.snapshot("local").unwrap().unwrap();
    assert_eq!((got.upto_seq, got.taken_ms), (41, 7));
    assert!(
        got.bytes == big,
        "the parts joined differ from what was stored"
    );
    s.put_snapshot("local", 42, 8, b"small").unwrap();
    s.put_snapshot("worker-0", 3, 9, b"other").unwrap();
    let got = s.snapshot("local").unwrap().unwrap();
    assert_eq!((got.upto_seq, got.bytes.as_slice()), (42, &b"small"[..]));
    assert_eq!(s.snapshot("worker-0").unwrap().unwrap().upto_seq, 3);
}

#[test]
fn sqlite_behaves_as_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let s = store::open(&dir.path().display().to_string()).unwrap();
    behaves_as_a_store(s.as_ref());
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_behaves_as_a_store_and_migrates_once() {
    let Some(db) = testkit::postgres() else {
        return;
    };
    let s = store::open(&db.url).unwrap();
    behaves_as_a_store(s.as_ref());
    // A second process opening the same database finds the schema current and the data kept.
    let again = store::open(&db.url).unwrap();
    assert_eq!(again.exchange_count().unwrap(), 1);
    drop((s, again));
}

#[cfg(feature = "postgres")]
#[test]
fn replicas_migrating_at_once_do_not_race() {
    let Some(db) = testkit::postgres() else {
        return;
    };
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || store::open(&url).map(|_| ()))
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
}
