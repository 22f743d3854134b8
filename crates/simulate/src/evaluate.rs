//! Detection quality against simulation labels: AUROC, true and false positive rates at the
//! `distilling` verdict (overall and per archetype), campaigns caught, and time to detect.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::Label;

/// What the detector said about one account (a subset of the verdict line).
#[derive(Debug, Clone)]
pub struct Verdict {
    pub score: f64,
    pub distilling: bool,
    /// `suspicious` or `distilling`: on the watch list someone reads.
    pub watched: bool,
    /// Milliseconds of the exchange at which the account was first flagged.
    pub first_flagged: Option<i64>,
    /// The group the detector placed the account in, if any.
    pub cluster: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Rate {
    pub hits: usize,
    pub of: usize,
}

impl Rate {
    pub fn value(&self) -> f64 {
        if self.of == 0 {
            0.0
        } else {
            self.hits as f64 / self.of as f64
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Evaluation {
    pub auroc: f64,
    pub tpr: Rate,
    pub fpr: Rate,
    /// Benign accounts left `suspicious` or worse: the watch list's false entries (budget 5 %).
    pub benign_watched: Rate,
    /// TPR at the score threshold that keeps the FPR within each budget (0.1 %, 0.5 %): how
    /// well the scores rank, apart from where the verdict thresholds sit.
    pub tpr_at_fpr: Vec<TprAtFpr>,
    pub fpr_by_archetype: BTreeMap<String, Rate>,
    pub tpr_by_archetype: BTreeMap<String, Rate>,
    pub campaigns_caught: Rate,
    /// Campaigns flagged before 10 % of their exchanges.
    pub campaigns_caught_early: Rate,
    /// Per campaign: share of its exchanges made before its first flag (1.0 when never flagged).
    pub time_to_detect: BTreeMap<String, f64>,
    /// Per kind of campaign: campaigns flagged at all, and flagged before 10 % of their
    /// exchanges.
    pub campaigns_by_archetype: BTreeMap<String, (Rate, Rate)>,
    pub false_positives: Vec<String>,
    /// Grouping of multi-account campaigns.
    pub grouping: Grouping,
}

/// The TPR at the highest score threshold whose FPR stays within `budget`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TprAtFpr {
    pub budget: f64,
    /// Accounts scoring strictly above this are flagged.
    pub threshold: f64,
    pub tpr: Rate,
    pub fpr: Rate,
}

/// The FPR budgets reported by [`Evaluation::tpr_at_fpr`].
pub const FPR_BUDGETS: [f64; 2] = [0.001, 0.005];

/// TPR at the score threshold that lets at most `budget` of the benign accounts above it
/// (strictly above: an attack tied with a benign account at the threshold is not counted).
pub fn tpr_at_fpr(scored: &[(f64, bool)], budget: f64) -> TprAtFpr {
    let mut benign: Vec<f64> = scored.iter().filter(|s| !s.1).map(|s| s.0).collect();
    benign.sort_by(|a, b| b.total_cmp(a));
    let allowed = (budget * benign.len() as f64).floor() as usize;
    let threshold = benign.get(allowed).copied().unwrap_or(f64::NEG_INFINITY);
    let count = |attack: bool| Rate {
        hits: scored
            .iter()
            .filter(|s| s.1 == attack && s.0 > threshold)
            .count(),
        of: scored.iter().filter(|s| s.1 == attack).count(),
    };
    TprAtFpr {
        budget,
        threshold,
        tpr: count(true),
        fpr: count(false),
    }
}

/// How well groups match multi-account campaigns.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Grouping {
    /// Multi-account campaigns seen.
    pub campaigns: usize,
    /// Members (over all multi-account campaigns) in their campaign's majority group.
    pub in_majority: Rate,
    /// Accounts of the campaigns' majority groups that belong to that campaign.
    pub purity: Rate,
    /// Benign accounts placed in a group that holds attack accounts.
    pub benign_in_attack_groups: usize,
    /// The worst campaign: (campaign, share in its majority group).
    pub worst: Option<(String, f64)>,
    /// Multi-account campaigns flagged before 10 % of their exchanges.
    pub early: Rate,
}

/// Area under the ROC curve, with ties counted half (Mann–Whitney U).
pub fn auroc(scored: &[(f64, bool)]) -> f64 {
    let mut v: Vec<(f64, bool)> = scored.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut pos, mut i) = (0.0, 0usize, 0usize);
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let avg_rank = (i + j + 1) as f64 / 2.0;
        for item in &v[i..j] {
            if item.1 {
                rank_sum += avg_rank;
                pos += 1;
            }
        }
        i = j;
    }
    let neg = v.len() - pos;
    if pos == 0 || neg == 0 {
        return f64::NAN;
    }
    (rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64
}

/// `exchange_times` maps each account to the times (ms) of its exchanges.
pub fn evaluate(
    labels: &[Label],
    verdicts: &HashMap<String, Verdict>,
    exchange_times: &HashMap<String, Vec<i64>>,
) -> Evaluation {
    let mut e = Evaluation::default();
    let mut scored = Vec::new();
    let mut campaigns: BTreeMap<String, (Vec<i64>, Option<i64>, String)> = BTreeMap::new();
    for l in labels {
        let v = verdicts.get(&l.account);
        let score = v.map_or(0.0, |v| v.score);
        let flagged = v.is_some_and(|v| v.distilling);
        scored.push((score, l.is_attack()));
        if l.is_attack() {
            e.tpr.of += 1;
            e.tpr.hits += usize::from(flagged);
            let r = e.tpr_by_archetype.entry(l.archetype.clone()).or_default();
            r.of += 1;
            r.hits += usize::from(flagged);
            let c = campaigns
                .entry(l.campaign.clone().unwrap_or_else(|| l.account.clone()))
                .or_default();
            c.2.clone_from(&l.archetype);
            if let Some(t) = exchange_times.get(&l.account) {
                c.0.extend(t);
            }
            if let Some(f) = v.and_then(|v| v.first_flagged) {
                c.1 = Some(c.1.map_or(f, |x: i64| x.min(f)));
            }
        } else {
            e.fpr.of += 1;
            e.fpr.hits += usize::from(flagged);
            e.benign_watched.of += 1;
            e.benign_watched.hits += usize::from(v.is_some_and(|v| v.watched));
            let r = e.fpr_by_archetype.entry(l.archetype.clone()).or_default();
            r.of += 1;
            r.hits += usize::from(flagged);
            if flagged {
                e.false_positives
                    .push(format!("{} ({})", l.account, l.archetype));
            }
        }
    }
    e.auroc = auroc(&scored);
    e.tpr_at_fpr = FPR_BUDGETS
        .iter()
        .map(|&b| tpr_at_fpr(&scored, b))
        .collect();
    for (name, (times, flag, archetype)) in campaigns {
        let share = match flag {
            Some(f) => times.iter().filter(|&&t| t < f).count() as f64 / times.len().max(1) as f64,
            None => 1.0,
        };
        let early = flag.is_some() && share < 0.10;
        let (caught, caught_early) = e.campaigns_by_archetype.entry(archetype).or_default();
        for (rate, hit) in [
            (&mut e.campaigns_caught, flag.is_some()),
            (caught, flag.is_some()),
            (&mut e.campaigns_caught_early, early),
            (caught_early, early),
        ] {
            rate.of += 1;
            rate.hits += usize::from(hit);
        }
        e.time_to_detect.insert(name, share);
    }
    e.grouping = grouping(labels, verdicts);
    let mut sizes: HashMap<&str, usize> = HashMap::new();
    for l in labels {
        if let Some(c) = &l.campaign {
            *sizes.entry(c.as_str()).or_default() += 1;
        }
    }
    for (name, share) in &e.time_to_detect {
        if sizes.get(name.as_str()).is_some_and(|&n| n >= 2) {
            e.grouping.early.of += 1;
            e.grouping.early.hits += usize::from(*share < 0.10);
        }
    }
    e
}

/// Majority group per multi-account campaign, its share of the members and its purity; benign
/// accounts in any group that holds attack accounts. An account without a group is a group
/// of its own.
pub fn grouping(labels: &[Label], verdicts: &HashMap<String, Verdict>) -> Grouping {
    let cluster_of = |account: &str| -> String {
        verdicts
            .get(account)
            .and_then(|v| v.cluster.clone())
            .unwrap_or_else(|| format!("alone:{account}"))
    };
    let mut cluster_members: HashMap<String, Vec<&Label>> = HashMap::new();
    for l in labels {
        cluster_members
            .entry(cluster_of(&l.account))
            .or_default()
            .push(l);
    }
    let mut by_campaign: BTreeMap<&str, Vec<&Label>> = BTreeMap::new();
    for l in labels {
        if let Some(c) = &l.campaign {
            by_campaign.entry(c).or_default().push(l);
        }
    }
    let mut g = Grouping::default();
    for (campaign, members) in by_campaign {
        if members.len() < 2 {
            continue;
        }
        g.campaigns += 1;
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for m in &members {
            *counts.entry(cluster_of(&m.account)).or_default() += 1;
        }
        let (majority, n) = counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
            .expect("members");
        g.in_majority.hits += n;
        g.in_majority.of += members.len();
        let group = &cluster_members[&majority];
        g.purity.of += group.len();
        g.purity.hits += group
            .iter()
            .filter(|l| l.campaign.as_deref() == Some(campaign))
            .count();
        let share = n as f64 / members.len() as f64;
        if g.worst.as_ref().is_none_or(|w| share < w.1) {
            g.worst = Some((campaign.to_owned(), share));
        }
    }
    g.benign_in_attack_groups = cluster_members
        .values()
        .filter(|m| m.iter().any(|l| l.is_attack()))
        .map(|m| m.iter().filter(|l| !l.is_attack()).count())
        .sum();
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_of_perfect_and_inverted_rankings() {
        assert_eq!(auroc(&[(0.1, false), (0.9, true)]), 1.0);
        assert_eq!(auroc(&[(0.9, false), (0.1, true)]), 0.0);
        assert_eq!(auroc(&[(0.5, false), (0.5, true)]), 0.5);
    }

    #[test]
    fn time_to_detect_counts_exchanges_before_the_flag() {
        let labels = vec![Label {
            account: "a".into(),
            class: "attack".into(),
            archetype: "x".into(),
            campaign: Some("c".into()),
        }];
        let verdicts = HashMap::from([(
            "a".to_owned(),
            Verdict {
                score: 1.0,
                distilling: true,
                watched: true,
                first_flagged: Some(5),
                cluster: None,
            },
        )]);
        let times = HashMap::from([("a".to_owned(), (0..100).collect::<Vec<i64>>())]);
        let e = evaluate(&labels, &verdicts, &times);
        assert_eq!(e.time_to_detect["c"], 0.05);
        assert_eq!(e.campaigns_caught_early.hits, 1);
        let (caught, early) = &e.campaigns_by_archetype["x"];
        assert_eq!((caught.hits, caught.of, early.hits, early.of), (1, 1, 1, 1));
        // Flagged at the 20th of 100 exchanges: caught, not early.
        let late = HashMap::from([(
            "a".to_owned(),
            Verdict {
                first_flagged: Some(20),
                ..verdicts["a"].clone()
            },
        )]);
        let e = evaluate(&labels, &late, &times);
        let (caught, early) = &e.campaigns_by_archetype["x"];
        assert_eq!((caught.hits, early.hits, early.of), (1, 0, 1));
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn tpr_at_a_budget_counts_only_attacks_strictly_above_the_benign_allowed() {
        // 1,000 benign accounts scoring 0..0.999; at 0.1 % one benign may stand above.
        let mut scored: Vec<(f64, bool)> =
            (0..1000).map(|i| (f64::from(i) / 1000.0, false)).collect();
        scored.extend([(0.9995, true), (0.998, true), (0.5, true), (0.9985, true)]);
        let r = tpr_at_fpr(&scored, 0.001);
        assert_eq!(r.threshold, 0.998);
        assert_eq!(
            (r.tpr.hits, r.tpr.of),
            (2, 4),
            "0.998 ties the threshold and is not counted"
        );
        assert_eq!(r.fpr.hits, 1);
    }
}
