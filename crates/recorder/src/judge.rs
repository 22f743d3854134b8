//! Who judges the traffic a gateway serves, asked one way.
//!
//! A gateway either detects in-process (its tap feeds its own detector) or leaves detection to
//! workers over the bus (their verdicts are in the store, their groups arrive on the standing
//! bucket). The admin API and the console ask [`Verdicts`] for an account's judgement and the
//! linked groups, and never which of the two answers.

use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::sync::Arc;

use detect::{Detector, GroupReport, Reason, Verdict};
use store::Store;

/// An account as the detector judged it.
#[derive(Debug, Clone, PartialEq)]
pub struct Judged {
    pub account: String,
    pub score: f64,
    pub verdict: Verdict,
    pub first_flagged: Option<String>,
    /// Exchanges the detector counted; `None` where only a stored verdict is known.
    pub exchanges: Option<u64>,
    /// The linked group it belongs to, if any.
    pub cluster: Option<String>,
    pub reasons: Vec<Reason>,
}

/// The judgements a gateway shows and enforces. Implementations may read the store: call them
/// off the async runtime.
pub trait Verdicts: Send + Sync {
    /// One account's judgement; `None` when it was never judged.
    fn account(&self, name: &str) -> store::Result<Option<Judged>>;
    /// Every judged account.
    fn accounts(&self) -> store::Result<Vec<Judged>>;
    /// Every judged account for a listing, highest score first: as [`Verdicts::accounts`],
    /// but the reasons may be left out (writing them for every account is what costs at a
    /// hundred thousand accounts).
    fn listing(&self) -> store::Result<Vec<Judged>> {
        let mut all = self.accounts()?;
        all.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.account.cmp(&b.account))
        });
        Ok(all)
    }
    /// The linked groups, highest score first.
    fn groups(&self) -> Vec<GroupReport>;
    /// One group by its cluster name.
    fn group(&self, cluster: &str) -> Option<GroupReport> {
        self.groups().into_iter().find(|g| g.cluster == cluster)
    }
}

/// This process's own detector judges.
pub struct Here(pub Arc<Mutex<Detector>>);

impl Verdicts for Here {
    fn account(&self, name: &str) -> store::Result<Option<Judged>> {
        Ok(self.0.lock().report(name).map(judged))
    }

    fn accounts(&self) -> store::Result<Vec<Judged>> {
        Ok(self.0.lock().reports().into_iter().map(judged).collect())
    }

    fn listing(&self) -> store::Result<Vec<Judged>> {
        let summaries = self.0.lock().summaries();
        Ok(summaries
            .into_iter()
            .map(|s| Judged {
                account: s.account,
                score: s.score,
                verdict: s.verdict,
                first_flagged: s.first_flagged,
                exchanges: Some(s.exchanges),
                cluster: s.cluster,
                reasons: Vec::new(),
            })
            .collect())
    }

    fn groups(&self) -> Vec<GroupReport> {
        let mut groups = self.0.lock().groups();
        by_score(&mut groups);
        groups
    }
}

fn judged(r: detect::AccountReport) -> Judged {
    Judged {
        account: r.account,
        score: r.score,
        verdict: r.verdict,
        first_flagged: r.first_flagged,
        exchanges: Some(r.exchanges),
        cluster: r.cluster,
        reasons: r.reasons,
    }
}

/// Workers judge: their verdicts are read from the store, their groups as they last published
/// them ([`Workers::publish`], from the standing bucket).
pub struct Workers {
    store: Arc<dyn Store>,
    groups: RwLock<BTreeMap<String, GroupReport>>,
}

impl Workers {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            groups: RwLock::default(),
        }
    }

    /// A group as a worker published it; `None`: merged into another, gone.
    pub fn publish(&self, cluster: &str, report: Option<GroupReport>) {
        let mut groups = self.groups.write();
        match report {
            Some(r) => groups.insert(cluster.to_owned(), r),
            None => groups.remove(cluster),
        };
    }
}

impl Verdicts for Workers {
    fn account(&self, name: &str) -> store::Result<Option<Judged>> {
        Ok(self.store.verdict(name)?.map(stored))
    }

    fn accounts(&self) -> store::Result<Vec<Judged>> {
        // The group of each member, as the workers last published them.
        let member_of: BTreeMap<String, String> = self
            .groups
            .read()
            .values()
            .flat_map(|g| g.members.iter().map(|m| (m.clone(), g.cluster.clone())))
            .collect();
        Ok(self
            .store
            .verdicts()?
            .into_iter()
            .map(|v| {
                let mut j = stored(v);
                j.cluster = member_of.get(&j.account).cloned();
                j
            })
            .collect())
    }

    fn groups(&self) -> Vec<GroupReport> {
        let mut groups: Vec<GroupReport> = self.groups.read().values().cloned().collect();
        by_score(&mut groups);
        groups
    }

    fn group(&self, cluster: &str) -> Option<GroupReport> {
        self.groups.read().get(cluster).cloned()
    }
}

fn stored(v: store::StoredVerdict) -> Judged {
    Judged {
        account: v.account,
        score: v.score,
        verdict: Verdict::parse(&v.verdict).unwrap_or(Verdict::Benign),
        first_flagged: v.first_flagged,
        exchanges: None,
        cluster: None,
        reasons: serde_json::from_value(v.reasons).unwrap_or_default(),
    }
}

fn by_score(groups: &mut [GroupReport]) {
    groups.sort_by(|a, b| b.score.total_cmp(&a.score));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(cluster: &str, score: f64, members: &[&str]) -> GroupReport {
        GroupReport {
            cluster: cluster.into(),
            verdict: Verdict::Suspicious,
            score,
            first_flagged: None,
            members: members.iter().map(|m| m.to_string()).collect(),
            exchanges: 10,
            links: BTreeMap::new(),
            evidence: Vec::new(),
            reasons: Vec::new(),
        }
    }

    #[test]
    fn a_group_merged_away_is_gone_and_the_rest_come_highest_score_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::open(&dir.path().join("s.db").to_string_lossy()).unwrap();
        let w = Workers::new(store);
        w.publish("grp-a", Some(group("grp-a", 0.4, &["a1", "a2"])));
        w.publish("grp-b", Some(group("grp-b", 0.9, &["b1", "b2"])));
        let names = |w: &Workers| {
            w.groups()
                .into_iter()
                .map(|g| g.cluster)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&w), ["grp-b", "grp-a"]);
        // grp-b merged into grp-a: the worker publishes the bigger group and retires the other.
        w.publish(
            "grp-a",
            Some(group("grp-a", 0.9, &["a1", "a2", "b1", "b2"])),
        );
        w.publish("grp-b", None);
        assert_eq!(names(&w), ["grp-a"]);
        assert_eq!(w.group("grp-a").unwrap().members.len(), 4);
        assert!(w.group("grp-b").is_none());
    }

    #[test]
    fn workers_judge_from_the_stored_verdicts() {
        let dir = tempfile::tempdir().unwrap();
        let store = store::open(&dir.path().join("s.db").to_string_lossy()).unwrap();
        store
            .put_verdict(&store::StoredVerdict {
                account: "acme".into(),
                score: 0.8,
                verdict: "distilling".into(),
                first_flagged: Some("2026-01-01T00:00:00Z".into()),
                reasons: serde_json::json!([{"signal": "output_harvest", "value": 1.5, "detail": "d"}]),
                updated_ms: 1,
            })
            .unwrap();
        let w = Workers::new(store);
        let j = w.account("acme").unwrap().unwrap();
        assert_eq!(j.verdict, Verdict::Distilling);
        assert_eq!(j.reasons[0].signal, "output_harvest");
        assert_eq!(j.exchanges, None);
        assert!(w.account("nobody").unwrap().is_none());
        assert_eq!(w.accounts().unwrap().len(), 1);
    }
}
