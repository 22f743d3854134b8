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
    /// Milliseconds of the exchange at which the account was first flagged.
    pub first_flagged: Option<i64>,
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
    pub fpr_by_archetype: BTreeMap<String, Rate>,
    pub tpr_by_archetype: BTreeMap<String, Rate>,
    pub campaigns_caught: Rate,
    /// Campaigns flagged before 10 % of their exchanges.
    pub campaigns_caught_early: Rate,
    /// Per campaign: share of its exchanges made before its first flag (1.0 when never flagged).
    pub time_to_detect: BTreeMap<String, f64>,
    pub false_positives: Vec<String>,
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
    let mut campaigns: BTreeMap<String, (Vec<i64>, Option<i64>)> = BTreeMap::new();
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
            if let Some(t) = exchange_times.get(&l.account) {
                c.0.extend(t);
            }
            if let Some(f) = v.and_then(|v| v.first_flagged) {
                c.1 = Some(c.1.map_or(f, |x: i64| x.min(f)));
            }
        } else {
            e.fpr.of += 1;
            e.fpr.hits += usize::from(flagged);
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
    for (name, (times, flag)) in campaigns {
        e.campaigns_caught.of += 1;
        e.campaigns_caught_early.of += 1;
        let share = match flag {
            Some(f) => {
                e.campaigns_caught.hits += 1;
                times.iter().filter(|&&t| t < f).count() as f64 / times.len().max(1) as f64
            }
            None => 1.0,
        };
        if flag.is_some() && share < 0.10 {
            e.campaigns_caught_early.hits += 1;
        }
        e.time_to_detect.insert(name, share);
    }
    e
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
                first_flagged: Some(5),
            },
        )]);
        let times = HashMap::from([("a".to_owned(), (0..100).collect::<Vec<i64>>())]);
        let e = evaluate(&labels, &verdicts, &times);
        assert_eq!(e.time_to_detect["c"], 0.05);
        assert_eq!(e.campaigns_caught_early.hits, 1);
    }
}
