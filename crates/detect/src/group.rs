//! Linked accounts judged as one actor: a group's combined state, whether its links say one
//! actor or only one tool, and the report an analyst reads (which reads back from its JSON, as
//! the replicas read what workers publish). How accounts are joined into groups (union-find
//! over the link evidence) is the detector's ([`crate::Detector`]); what a group is, is here.

use serde::{Deserialize, Serialize};

use crate::account::AccountState;
use crate::features::Features;
use crate::link::{LinkKind, KINDS};
use crate::score::{Reason, Verdict};

/// Accounts linked into one actor, judged on their combined traffic.
#[derive(Serialize, Deserialize)]
pub(crate) struct Group {
    pub(crate) state: AccountState,
    pub(crate) members: Vec<u32>,
    pub(crate) verdict: Verdict,
    pub(crate) peak_score: f64,
    pub(crate) first_flagged: Option<String>,
    /// Joins that made the group, by the kinds of evidence each joining pair shared.
    pub(crate) links: [u32; KINDS],
    /// Pairs of members whose own evidence says one actor ([`Edge::says_one_actor`]).
    #[serde(default)]
    pub(crate) actor_pairs: u32,
    /// Two thirds of the members (three or more) made their first calls within
    /// `switched_on_hours` of each other, after the stream's warm-up.
    #[serde(default)]
    pub(crate) switched_on_together: bool,
    /// The group has passed `distilling` on to its members as one actor. It stays one actor:
    /// verdicts do not fall back, and a group that grows by joins that carry less (the share
    /// of joins on a network or a tool falls) must not report its members, already acted on,
    /// as only watched.
    #[serde(default)]
    pub(crate) acted: bool,
    /// The TLS fingerprint most of the members run, when a third of them or more run it, and
    /// whether it is the group's own (uncommon: it linked members; a fingerprint everyone's
    /// library has links no one). Read when the group forms or grows
    /// ([`crate::Detector::clients_differ`]).
    #[serde(default)]
    pub(crate) client: Option<(u64, bool)>,
}

impl Group {
    /// Whether the group's links say its members are one actor (a payment instrument, accounts
    /// signed up together) rather than users of one tool on one schedule (a template, a system
    /// prompt, a client and its network, first calls at the same time): customers of one
    /// pipeline product share the latter innocently (and cron starts their jobs on the hour),
    /// and judging them as one would sum their traffic.
    ///
    /// Without such a fact, a group is one actor when its members are tied pair by pair by
    /// evidence that says one actor (an uncommon address, prompt tool and start, all shared):
    /// at least half as many such pairs as the joins that hold the group together, so a chain
    /// of strangers through one tied pair is not one actor, while a fleet, whose members share
    /// its proxies, template and schedule with many others, is.
    ///
    /// Or, as a whole, when it was switched on together (two thirds of its members' first
    /// calls within `switched_on_hours`) and at least half of its joins carry a shared
    /// uncommon network and half a shared tool (a prompt template or system prompt, an
    /// uncommon client) or a proxy pool (the same several addresses in different address blocks):
    /// a product's customers share its tool but arrive over months from their own networks;
    /// strangers behind one exit share a network but neither tool nor start, nor several
    /// addresses on several ISPs.
    ///
    /// Or, with no network in common (bought accounts behind residential proxies, each on an
    /// ISP of its own), when it was switched on together and at least half of its joins carry
    /// each of three things: a shared prompt tool (template or system prompt), a client that
    /// is uncommon (the operator's own TLS fingerprint or user agent) and a start together
    /// (first calls in the same minutes, or the same hours from then on). A tool's customers
    /// share its template and client but arrive over months; a launch morning's new customers
    /// share a template and a start but run the clients everyone runs.
    pub(crate) fn one_actor(&self) -> bool {
        let joins = self.members.len().saturating_sub(1);
        let carried = |kinds: &[LinkKind]| {
            2 * kinds
                .iter()
                .map(|&k| self.links[k as usize])
                .max()
                .unwrap_or(0) as usize
                >= joins
        };
        self.acted
            || LinkKind::ALL
                .iter()
                .any(|k| k.says_one_actor() && self.links[*k as usize] > 0)
            || (self.actor_pairs > 0 && 2 * self.actor_pairs as usize >= joins)
            || (self.switched_on_together
                && carried(&[LinkKind::Ip, LinkKind::Subnet])
                && carried(&[
                    LinkKind::Template,
                    LinkKind::SystemPrompt,
                    LinkKind::Tls,
                    LinkKind::UserAgent,
                    LinkKind::Pool,
                ]))
            || (self.switched_on_together
                && carried(&[LinkKind::Template, LinkKind::SystemPrompt])
                && carried(&[LinkKind::Tls, LinkKind::UserAgent])
                && carried(&[LinkKind::FirstSeen]))
    }

    /// The group's features: its combined traffic, and how many accounts it spread over when
    /// they are one actor (a fleet is a circumstance of evasion; a tool's customers are not).
    pub(crate) fn features(&self) -> Features {
        let mut f = self.state.features();
        if self.one_actor() {
            f.accounts = u32::try_from(self.members.len()).unwrap_or(u32::MAX);
            f.concealed_fleet = self.state.paid() && self.links[LinkKind::Payment as usize] == 0;
        }
        f
    }

    /// The verdict members take from the group: all of it when the links say one actor, at most
    /// `suspicious` (watched, for an analyst to judge) when they say only one tool.
    /// Whether an account scoring `score` is shown with the group's evidence: the group passes
    /// a verdict on and scores higher than the account alone.
    pub(crate) fn lifts(&self, score: f64) -> bool {
        self.passed_on() > Verdict::Benign && self.peak_score > score
    }

    pub(crate) fn passed_on(&self) -> Verdict {
        if self.one_actor() {
            self.verdict
        } else {
            self.verdict.min(Verdict::Suspicious)
        }
    }
}

/// A group of linked accounts, for `distillguard groups` and the admin API. It reads back from
/// its JSON: the workers publish groups that way and the replicas read them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "GroupRead")]
pub struct GroupReport {
    pub cluster: String,
    pub verdict: Verdict,
    pub score: f64,
    pub first_flagged: Option<String>,
    pub members: Vec<String>,
    pub exchanges: u64,
    /// Joins that formed the group, by kind of evidence.
    pub links: std::collections::BTreeMap<&'static str, u32>,
    /// The strongest pairwise evidence among members (at most 20 pairs).
    pub evidence: Vec<LinkEvidence>,
    /// Why the combined traffic scores as it does, strongest first.
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "EvidenceRead")]
pub struct LinkEvidence {
    pub a: String,
    pub b: String,
    pub total: f64,
    pub kinds: std::collections::BTreeMap<&'static str, f64>,
}

/// A group as its JSON holds it.
#[derive(Deserialize)]
struct GroupRead {
    cluster: String,
    verdict: Verdict,
    score: f64,
    first_flagged: Option<String>,
    members: Vec<String>,
    exchanges: u64,
    links: std::collections::BTreeMap<String, u32>,
    evidence: Vec<LinkEvidence>,
    reasons: Vec<Reason>,
}

impl From<GroupRead> for GroupReport {
    fn from(g: GroupRead) -> Self {
        Self {
            cluster: g.cluster,
            verdict: g.verdict,
            score: g.score,
            first_flagged: g.first_flagged,
            members: g.members,
            exchanges: g.exchanges,
            links: link_names(g.links),
            evidence: g.evidence,
            reasons: g.reasons,
        }
    }
}

/// A link's evidence as its JSON holds it.
#[derive(Deserialize)]
struct EvidenceRead {
    a: String,
    b: String,
    total: f64,
    kinds: std::collections::BTreeMap<String, f64>,
}

impl From<EvidenceRead> for LinkEvidence {
    fn from(e: EvidenceRead) -> Self {
        Self {
            a: e.a,
            b: e.b,
            total: e.total,
            kinds: link_names(e.kinds),
        }
    }
}

/// A map keyed by kinds of link, read back: a kind this build does not know (a newer build's)
/// is left out.
fn link_names<V>(
    named: std::collections::BTreeMap<String, V>,
) -> std::collections::BTreeMap<&'static str, V> {
    named
        .into_iter()
        .filter_map(|(k, v)| {
            LinkKind::ALL
                .iter()
                .find(|kind| kind.name() == k)
                .map(|kind| (kind.name(), v))
        })
        .collect()
}

/// "12 joins by payment, 3 by template+tls", in words a reviewer can check.
pub(crate) fn describe_links(links: &[u32; KINDS]) -> String {
    let parts: Vec<String> = LinkKind::ALL
        .iter()
        .filter(|k| links[**k as usize] > 0)
        .map(|k| format!("{} x{}", k.describe(), links[*k as usize]))
        .collect();
    if parts.is_empty() {
        "no recorded links".into()
    } else {
        parts.join(", ")
    }
}
