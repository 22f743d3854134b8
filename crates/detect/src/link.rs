//! Links: evidence that two accounts are one actor.
//!
//! Each account contributes a few *values* per kind (its addresses, its client fingerprints,
//! its payment instrument, its templated prompt skeleton, …). A value held by several accounts
//! links them, with a weight that falls as the value gets common: a cloud provider's ASN, a
//! popular SDK's user agent or a generic system prompt is held by many accounts and links
//! nothing, while a rare one held by two accounts links them with the kind's full weight.
//! Two accounts are joined into one group when the evidence between them, summed over kinds
//! (each kind counted once, at its strongest), reaches [`LinkConfig::join`]. Only a shared
//! payment instrument is strong enough alone by default; every other kind needs another kind
//! beside it, so a shared office NAT or a common client never joins customers on its own.
//!
//! Memory is bounded: an account remembers at most a few values per kind, a value remembers
//! at most `max_share` holders (past that it is common and links nothing more), so the edges
//! a value can create are bounded too.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::sketch::mix;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    Payment,
    Ip,
    Subnet,
    Tls,
    UserAgent,
    Asn,
    Signup,
    SystemPrompt,
    Template,
    FirstSeen,
    SameHours,
    Pivot,
    Pool,
}

/// How many kinds of links there are.
pub const KINDS: usize = 13;

impl LinkKind {
    pub const ALL: [LinkKind; KINDS] = [
        LinkKind::Payment,
        LinkKind::Ip,
        LinkKind::Subnet,
        LinkKind::Tls,
        LinkKind::UserAgent,
        LinkKind::Asn,
        LinkKind::Signup,
        LinkKind::SystemPrompt,
        LinkKind::Template,
        LinkKind::FirstSeen,
        LinkKind::SameHours,
        LinkKind::Pivot,
        LinkKind::Pool,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LinkKind::Payment => "payment",
            LinkKind::Ip => "ip",
            LinkKind::Subnet => "subnet",
            LinkKind::Tls => "tls",
            LinkKind::UserAgent => "user_agent",
            LinkKind::Asn => "asn",
            LinkKind::Signup => "signup",
            LinkKind::SystemPrompt => "system_prompt",
            LinkKind::Template => "template",
            LinkKind::FirstSeen => "first_seen",
            LinkKind::SameHours => "same_hours",
            LinkKind::Pivot => "pivot",
            LinkKind::Pool => "pool",
        }
    }

    /// What sharing a value of this kind means, for reasons and reports.
    pub fn describe(self) -> &'static str {
        match self {
            LinkKind::Payment => "the same payment instrument",
            LinkKind::Ip => "the same client address",
            LinkKind::Subnet => "the same /24 (IPv4) or /48 (IPv6) network",
            LinkKind::Tls => "the same TLS client fingerprint",
            LinkKind::UserAgent => "the same uncommon user agent",
            LinkKind::Asn => "the same uncommon network (ASN)",
            LinkKind::Signup => "sign-ups within the same few minutes",
            LinkKind::SystemPrompt => "the same uncommon system prompt",
            LinkKind::Template => "the same prompt template (a repeated skeleton)",
            LinkKind::FirstSeen => "first calls within the same few minutes",
            LinkKind::SameHours => "activity in the same clock hours from their first calls on",
            LinkKind::Pivot => "a move to a newly released model within the same hour",
            LinkKind::Pool => {
                "the same several uncommon addresses, in different address blocks (one proxy pool)"
            }
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// Shared behaviour rather than shared infrastructure: what an edge must carry some of
    /// before it may join accounts ([`Edge::joins`]).
    pub fn is_behaviour(self) -> bool {
        matches!(
            self,
            LinkKind::Payment
                | LinkKind::Signup
                | LinkKind::SystemPrompt
                | LinkKind::Template
                | LinkKind::FirstSeen
                | LinkKind::SameHours
        )
    }

    /// Coincidences in time (sign-ups, first calls, active hours, a move to a new model in the
    /// same hour) rather than values the accounts hold.
    pub fn is_timing(self) -> bool {
        matches!(
            self,
            LinkKind::Signup | LinkKind::FirstSeen | LinkKind::SameHours | LinkKind::Pivot
        )
    }

    /// Facts of the accounts themselves (who pays, when they were made) that say one actor,
    /// where the other kinds may only say one tool, one network or one schedule.
    pub fn says_one_actor(self) -> bool {
        matches!(self, LinkKind::Payment | LinkKind::Signup)
    }

    /// Values of this kind an account remembers (more would only repeat the evidence).
    fn per_account(self) -> usize {
        match self {
            LinkKind::Ip | LinkKind::Subnet => 8,
            LinkKind::Payment | LinkKind::Template | LinkKind::SystemPrompt => 4,
            LinkKind::Tls | LinkKind::UserAgent | LinkKind::Asn => 2,
            LinkKind::Signup | LinkKind::FirstSeen | LinkKind::SameHours => 1,
            LinkKind::Pivot => 2,
            // Not noted: read off the addresses a pair shares and their blocks.
            LinkKind::Pool => 0,
        }
    }
}

/// Weights and bounds of linking; `[links]` in the detector's TOML.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LinkConfig {
    /// Link accounts into groups at all (default true).
    pub enabled: bool,
    /// Evidence between two accounts at which they are joined into one group (default 1.0).
    pub join: f64,
    /// Evidence gathered between an account and a group (its kinds may come from different
    /// members) must include at least this much payment or behaviour (default 0.4); between
    /// two accounts, any behaviour will do.
    pub min_behaviour: f64,
    /// Between an account (or a group) and a group, a kind counts fully only when at least
    /// this share of the group's members carry it, and in proportion below that (default
    /// 0.1): a big group offers many chances of a coincidence with any one member.
    pub group_support: f64,
    /// Evidence of each kind when the value is shared by just two accounts; it falls as more
    /// accounts share the value and reaches 0 at `max_share` holders.
    pub payment: f64,
    pub ip: f64,
    pub subnet: f64,
    pub tls: f64,
    pub user_agent: f64,
    pub asn: f64,
    pub signup: f64,
    pub system_prompt: f64,
    pub template: f64,
    /// Accounts whose first call falls in the same `signup_minutes` bucket: a fleet switched
    /// on together. Not counted in the stream's first `first_seen_warmup_hours`, when every
    /// account that existed before the log began makes its first call.
    pub first_seen: f64,
    pub first_seen_warmup_hours: f64,
    /// A group of three or more whose members (two thirds of them, first seen after the
    /// warm-up) made their first calls within this many hours of each other was switched on
    /// together (default 6: a fleet trickles its members in over a morning, a product's
    /// customers arrive over months); with a shared network and a shared tool across its
    /// joins, that makes it one actor (see `Group::one_actor` in the detector).
    pub switched_on_hours: f64,
    /// Accounts (first seen after the warm-up) active in exactly the same clock hours over
    /// their first `same_hours` active hours: started together and kept going together, as
    /// accounts taking turns on one job do. Long-running fleets started in the same hour
    /// share it; people, whose hours scatter over days, almost never do.
    pub same_hours_weight: f64,
    /// Active hours compared (default 8).
    pub same_hours: u32,
    /// Two accounts that share two or more uncommon addresses in two or more address blocks
    /// (IPv4 /16, IPv6 /32; default 0.35, scaled by the addresses' rarity): they move among the same
    /// addresses, as the members of one fleet do among its proxies. People move between their
    /// own home and office, not among the homes of other accounts on other ISPs; strangers
    /// behind one carrier exit or office NAT share one address (or one network) at a time.
    /// A fact beside the address itself, not another witness of it.
    pub pool: f64,
    /// Accounts moving to the same newly released model within the same hour. Weak, and not
    /// behaviour enough to join on its own with infrastructure: every release moves many
    /// customers at once.
    pub pivot: f64,
    /// A value held by more accounts than this is common: it links nothing (default 48).
    /// It also bounds memory: no value remembers more holders.
    pub max_share: u32,
    /// Payment instruments are shared by resellers and company cards, but rarely by more than
    /// a few hundred accounts (default 512).
    pub max_share_payment: u32,
    /// Rarity is judged against at least this many accounts (default 1000).
    pub min_population: u32,
    /// Sign-ups in the same bucket of this many minutes are "close together" (default 10).
    pub signup_minutes: f64,
    /// A prompt skeleton counts as an account's template once it has repeated this often
    /// (default 3).
    pub template_repeats: u32,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            join: 1.0,
            min_behaviour: 0.4,
            group_support: 0.1,
            payment: 1.0,
            ip: 0.5,
            subnet: 0.25,
            tls: 0.6,
            user_agent: 0.3,
            asn: 0.15,
            signup: 0.45,
            system_prompt: 0.5,
            template: 0.7,
            first_seen: 0.45,
            first_seen_warmup_hours: 2.0,
            switched_on_hours: 6.0,
            same_hours_weight: 0.45,
            same_hours: 8,
            pool: 0.35,
            pivot: 0.3,
            max_share: 48,
            max_share_payment: 512,
            min_population: 1000,
            signup_minutes: 10.0,
            template_repeats: 3,
        }
    }
}

impl LinkConfig {
    pub fn weight(&self, kind: LinkKind) -> f64 {
        match kind {
            LinkKind::Payment => self.payment,
            LinkKind::Ip => self.ip,
            LinkKind::Subnet => self.subnet,
            LinkKind::Tls => self.tls,
            LinkKind::UserAgent => self.user_agent,
            LinkKind::Asn => self.asn,
            LinkKind::Signup => self.signup,
            LinkKind::SystemPrompt => self.system_prompt,
            LinkKind::Template => self.template,
            LinkKind::FirstSeen => self.first_seen,
            LinkKind::SameHours => self.same_hours_weight,
            LinkKind::Pivot => self.pivot,
            LinkKind::Pool => self.pool,
        }
    }

    fn cap(&self, kind: LinkKind) -> usize {
        (if kind == LinkKind::Payment {
            self.max_share_payment
        } else {
            self.max_share
        })
        .max(2) as usize
    }

    /// The evidence a value of `kind` held by `holders` of `population` accounts gives each
    /// pair of them: the kind's weight times the value's rarity, an inverse document frequency
    /// (1 for a value two accounts share, falling with the log of the share of accounts
    /// holding it), and none past the cap. The population is floored at `min_population` so a
    /// small log does not make everything look rare. A payment instrument keeps its full
    /// weight up to its cap: one card paying for forty accounts is more damning than one
    /// paying for two, not less.
    pub fn evidence(&self, kind: LinkKind, holders: usize, population: usize) -> f64 {
        let cap = self.cap(kind);
        if holders < 2 || holders > cap {
            return 0.0;
        }
        if kind == LinkKind::Payment {
            return self.payment;
        }
        let p = population.max(self.min_population as usize).max(holders) as f64;
        let rarity = (p / holders as f64).ln() / (p / 2.0).ln();
        self.weight(kind) * rarity.clamp(0.0, 1.0)
    }
}

/// Evidence is kept in fixed point: there is an edge per linked pair, and a million accounts
/// have many; 1/4096 is far finer than any weight means.
const EDGE_UNIT: f64 = 4096.0;

/// The evidence between two accounts: the strongest contribution of each kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    by_kind: [u16; KINDS],
    /// Counted towards its group's pairs that say one actor ([`Edge::says_one_actor`]).
    #[serde(default)]
    pub(crate) counted: bool,
    /// What [`LinkKind::Pool`] is read from, packed (there is an edge per linked pair): the
    /// low bits of the first shared uncommon address's block (0 for none), and in `shared`
    /// how many such addresses the pair shares (bits 0-1, saturating at 3) and whether a later
    /// one lies in another block (bit 2).
    #[serde(default)]
    block: u16,
    #[serde(default)]
    shared: u8,
}

impl Edge {
    /// Keeps the strongest evidence of `kind`.
    pub fn raise(&mut self, kind: LinkKind, w: f32) {
        let w = (f64::from(w) * EDGE_UNIT)
            .round()
            .clamp(0.0, f64::from(u16::MAX)) as u16;
        let slot = &mut self.by_kind[kind.index()];
        *slot = (*slot).max(w);
    }

    /// The evidence of one kind.
    pub fn get(&self, kind: LinkKind) -> f64 {
        f64::from(self.by_kind[kind.index()]) / EDGE_UNIT
    }

    /// The evidence summed over kinds, except that a second witness of one fact is not a
    /// second fact: first calls and active hours together count once (at the stronger; both
    /// say "started together"), and so do address, network and ASN (one address is one /24
    /// is one ASN: they say "same network" once). Strangers behind one carrier NAT or VPN exit
    /// share all three, and summed they made a network look like three facts.
    pub fn total(&self) -> f64 {
        let sum: f64 = LinkKind::ALL.iter().map(|&k| self.get(k)).sum();
        sum - self.started_together_overlap() - self.same_network_overlap()
    }

    fn same_network_overlap(&self) -> f64 {
        let net = [LinkKind::Ip, LinkKind::Subnet, LinkKind::Asn].map(|k| self.get(k));
        net.iter().sum::<f64>() - net.iter().copied().fold(0.0, f64::max)
    }

    fn started_together_overlap(&self) -> f64 {
        self.get(LinkKind::FirstSeen)
            .min(self.get(LinkKind::SameHours))
    }

    /// Whether this evidence may join two accounts: enough of it, and enough of it behaviour.
    /// Addresses, networks and client fingerprints are shared innocently by offices, carriers
    /// and everyone on one library; they count only beside a shared payment instrument or
    /// shared behaviour (sign-up time, first calls, hours, system prompt, template) worth at least
    /// `min_behaviour`: one coincidence of timing is not enough.
    pub fn joins(&self, config: &LinkConfig, min_behaviour: f64) -> bool {
        let behaviour: f64 = LinkKind::ALL
            .iter()
            .filter(|k| k.is_behaviour())
            .map(|&k| self.get(k))
            .sum::<f64>()
            - self.started_together_overlap();
        behaviour > 0.0 && behaviour >= min_behaviour && self.total() >= config.join
    }

    /// Whether this pair's evidence alone says one actor: a fact of the accounts themselves (a
    /// payment instrument, sign-ups together), or three independent facts at once that
    /// strangers do not share together: the same uncommon address or network, the same
    /// uncommon prompt tool (template or system prompt), and a start together (first calls in
    /// the same minutes, or the same hours from then on). Strangers behind one carrier exit
    /// share the first, customers of one product the second, jobs on one cron schedule the
    /// third; accounts sharing all three are a fleet run by one hand. A proxy pool (the same
    /// several addresses in different address blocks) with a start together is one too: the pool
    /// is the operator's, where an exit or an office is everyone's behind it.
    pub fn says_one_actor(&self) -> bool {
        let has = |k: LinkKind| self.get(k) > 0.0;
        let started = has(LinkKind::FirstSeen) || has(LinkKind::SameHours);
        LinkKind::ALL.iter().any(|&k| k.says_one_actor() && has(k))
            || ((has(LinkKind::Ip) || has(LinkKind::Subnet))
                && (has(LinkKind::Template) || has(LinkKind::SystemPrompt))
                && started)
            || (has(LinkKind::Pool) && started)
    }

    /// Counts one more uncommon address the pair shares, in address block `block`, and reads
    /// the pool from them: two addresses in two blocks, at the weight of the rarest address's
    /// link.
    fn share_address(&mut self, block: u64, config: &LinkConfig) {
        let block = (block as u16).max(1);
        let addresses = (self.shared & 0b11).saturating_add(1).min(3);
        let mut other_block = self.shared & 0b100;
        if self.block == 0 {
            self.block = block;
        } else if self.block != block {
            other_block = 0b100;
        }
        self.shared = addresses | other_block;
        if addresses >= 2 && other_block != 0 && config.ip > 0.0 {
            let rarity = (self.get(LinkKind::Ip) / config.ip).min(1.0);
            self.raise(LinkKind::Pool, (config.pool * rarity) as f32);
        }
    }

    /// The block of the first uncommon address the pair shares (its low bits), if they share
    /// one: what lets the addresses an account shares with the members of a group be counted
    /// in blocks over the group, where [`LinkKind::Pool`] reads them over one pair.
    pub fn shared_block(&self) -> Option<u16> {
        (self.block != 0).then_some(self.block)
    }

    /// How many uncommon addresses the pair shares, up to 3.
    pub fn shared_addresses(&self) -> u8 {
        self.shared & 0b11
    }

    pub fn kinds(&self) -> impl Iterator<Item = (LinkKind, f64)> + '_ {
        LinkKind::ALL
            .into_iter()
            .map(|k| (k, self.get(k)))
            .filter(|(_, w)| *w > 0.0)
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Holders {
    accounts: Vec<u32>,
    /// More holders than the cap: the value is common and its list is dropped.
    common: bool,
}

/// The link graph: which account holds which values, and the evidence between pairs.
///
/// The edges are most of its memory (a value shared by `max_share` accounts makes that many
/// squared pairs), so they are held as compactly as their use allows: each pair's evidence
/// once, in a list in the order the pairs were first linked, and each account's adjacency as
/// (other account, index of the edge) under both accounts of the pair. Finding the edge of
/// a pair scans the shorter adjacency, bounded like the edges; a hash map of pairs cost
/// twice the bytes (its buckets, kept at most 7/8 full and doubling, were half empty at
/// 100,000 accounts; `bench memory`).
#[derive(Default, Serialize, Deserialize)]
pub struct Linker {
    values: HashMap<u64, Holders>,
    /// Every linked pair's evidence.
    edges: Vec<Edge>,
    /// Per account, the values it has contributed (kind mixed into the hash).
    contributed: Vec<Vec<u64>>,
    /// Per account, the accounts it has an edge with and that edge's index in `edges`:
    /// bounded like the edges, and what lets the detector weigh an account's (or a small
    /// group's) evidence against a whole group.
    adjacent: Vec<Vec<(u32, u32)>>,
}

fn key(kind: LinkKind, value: u64) -> u64 {
    mix(value ^ ((kind.index() as u64 + 1) << 56))
}

impl Linker {
    /// Records that `account` holds `value` of `kind`, adding the evidence to the edges with
    /// the value's other holders. Returns the evidence this value gives and those holders
    /// (empty when the value is new to nobody, common, or already counted for the account).
    pub fn note(
        &mut self,
        config: &LinkConfig,
        population: usize,
        account: u32,
        kind: LinkKind,
        value: u64,
    ) -> (f32, Vec<u32>) {
        let none = (0.0, Vec::new());
        let k = key(kind, value);
        let a = account as usize;
        if self.contributed.len() <= a {
            self.contributed.resize_with(a + 1, Vec::new);
        }
        let mine = &mut self.contributed[a];
        if mine.contains(&tag(k, kind)) {
            return none;
        }
        let same_kind = mine.iter().filter(|&&v| kind_of(v) == Some(kind)).count();
        if same_kind >= kind.per_account() {
            return none;
        }
        mine.push(tag(k, kind));
        let cap = config.cap(kind);
        let holders = self.values.entry(k).or_default();
        if holders.common {
            return none;
        }
        if holders.accounts.len() >= cap {
            // Now common: what it linked stays linked, it links nothing more.
            holders.common = true;
            holders.accounts = Vec::new();
            return none;
        }
        holders.accounts.push(account);
        let n = holders.accounts.len();
        let w = config.evidence(kind, n, population) as f32;
        if w <= 0.0 {
            return none;
        }
        let others: Vec<u32> = holders
            .accounts
            .iter()
            .copied()
            .filter(|&o| o != account)
            .collect();
        for &o in &others {
            let at = match self.edge_index(account, o) {
                Some(at) => at,
                None => self.add_edge(account, o),
            };
            self.edges[at].raise(kind, w);
        }
        (w, others)
    }

    /// Where the edge of `a` and `b` is in `edges`, if they have one.
    fn edge_index(&self, a: u32, b: u32) -> Option<usize> {
        let list = |x: u32| self.adjacent.get(x as usize).map_or(&[][..], Vec::as_slice);
        let (shorter, other) = if list(a).len() <= list(b).len() {
            (list(a), b)
        } else {
            (list(b), a)
        };
        shorter
            .iter()
            .find(|&&(n, _)| n == other)
            .map(|&(_, at)| at as usize)
    }

    /// A new, empty edge between `a` and `b`, listed under both.
    fn add_edge(&mut self, a: u32, b: u32) -> usize {
        let at = self.edges.len();
        let index = u32::try_from(at).expect("fewer than 2^32 edges");
        self.edges.push(Edge::default());
        for (x, y) in [(a, b), (b, a)] {
            let x = x as usize;
            if self.adjacent.len() <= x {
                self.adjacent.resize_with(x + 1, Vec::new);
            }
            self.adjacent[x].push((y, index));
        }
        at
    }

    /// [`Linker::note`] for a client address, with the block it belongs to
    /// ([`crate::text::ip_hashes`]): a pair that comes to share uncommon addresses in two
    /// blocks shares a pool ([`LinkKind::Pool`]).
    pub fn note_address(
        &mut self,
        config: &LinkConfig,
        population: usize,
        account: u32,
        ip: u64,
        block: Option<u64>,
    ) -> (f32, Vec<u32>) {
        let (w, others) = self.note(config, population, account, LinkKind::Ip, ip);
        if let Some(block) = block {
            for &o in &others {
                if let Some(e) = self.edge_mut(account, o) {
                    e.share_address(block, config);
                }
            }
        }
        (w, others)
    }

    /// The accounts `account` has evidence with, and that evidence.
    pub fn edges_of(&self, account: u32) -> impl Iterator<Item = (u32, &Edge)> + '_ {
        self.adjacent
            .get(account as usize)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|&(n, at)| (n, &self.edges[at as usize]))
    }

    /// The evidence between two accounts, if any.
    pub fn edge(&self, a: u32, b: u32) -> Option<&Edge> {
        self.edge_index(a, b).map(|at| &self.edges[at])
    }

    pub(crate) fn edge_mut(&mut self, a: u32, b: u32) -> Option<&mut Edge> {
        self.edge_index(a, b).map(|at| &mut self.edges[at])
    }

    /// Every edge with evidence at or above `min` (as `(a, b, edge)` with `a < b`), for
    /// reports.
    pub fn edges(&self, min: f64) -> impl Iterator<Item = (u32, u32, &Edge)> + '_ {
        self.adjacent.iter().enumerate().flat_map(move |(a, list)| {
            let a = a as u32;
            list.iter()
                .filter(move |&&(b, _)| a < b)
                .map(move |&(b, at)| (a, b, &self.edges[at as usize]))
                .filter(move |(_, _, e)| e.total() >= min)
        })
    }

    /// The value of `kind` most of `accounts` hold, with how many of them hold it (values as
    /// the linker keeps them: equal for equal values, not the value itself).
    pub fn most_held(&self, accounts: &[u32], kind: LinkKind) -> Option<(u64, usize)> {
        let mut held: Vec<u64> = accounts
            .iter()
            .flat_map(|&a| self.contributed.get(a as usize).into_iter().flatten())
            .copied()
            .filter(|&v| kind_of(v) == Some(kind))
            .collect();
        held.sort_unstable();
        held.chunk_by(|x, y| x == y)
            .map(|run| (run[0], run.len()))
            .max_by_key(|&(v, n)| (n, v))
    }

    /// Values and edges held (for memory figures).
    pub fn size(&self) -> (usize, usize) {
        (self.values.len(), self.edges.len())
    }
}

/// The contributed-value list keeps the kind in the low 4 bits of each entry.
fn tag(k: u64, kind: LinkKind) -> u64 {
    (k & !0xf) | kind.index() as u64
}

fn kind_of(tagged: u64) -> Option<LinkKind> {
    LinkKind::ALL.get((tagged & 0xf) as usize).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rare_values_link_fully_and_common_ones_not_at_all() {
        let c = LinkConfig::default();
        assert!((c.evidence(LinkKind::Ip, 2, 10) - c.ip).abs() < 1e-9);
        assert!(c.evidence(LinkKind::Ip, 40, 1000) < c.ip * 0.55);
        // The same share of a larger population is rarer evidence of a common tool.
        assert!(c.evidence(LinkKind::Ip, 40, 1_000_000) > c.evidence(LinkKind::Ip, 40, 1000));
        assert_eq!(c.evidence(LinkKind::Ip, 49, 1_000_000), 0.0);
        assert_eq!(c.evidence(LinkKind::Ip, 1, 1000), 0.0);
        assert_eq!(c.evidence(LinkKind::Payment, 49, 1000), c.payment);
    }

    #[test]
    fn one_weak_kind_never_reaches_the_join_two_do() {
        let c = LinkConfig::default();
        let mut l = Linker::default();
        let total = |l: &Linker| l.edge(0, 1).map_or(0.0, Edge::total);
        l.note(&c, 1000, 0, LinkKind::Ip, 7);
        l.note(&c, 1000, 1, LinkKind::Ip, 7);
        assert!(total(&l) < c.join, "a shared address alone");
        l.note(&c, 1000, 0, LinkKind::Subnet, 9);
        l.note(&c, 1000, 1, LinkKind::Subnet, 9);
        assert!(total(&l) < c.join, "an office: one address, one network");
        l.note(&c, 1000, 0, LinkKind::Template, 11);
        let (w, others) = l.note(&c, 1000, 1, LinkKind::Template, 11);
        assert_eq!(others, vec![0]);
        assert!((f64::from(w) - c.template).abs() < 1e-6);
        assert!(total(&l) >= c.join);
        assert_eq!(l.edge(0, 1).unwrap().kinds().count(), 3);
        // Noting the same value again adds nothing.
        assert!(l.note(&c, 1000, 1, LinkKind::Template, 11).1.is_empty());
    }

    #[test]
    fn the_same_addresses_in_different_blocks_are_a_pool_one_block_is_not() {
        let c = LinkConfig::default();
        let pool_of = |addresses: &[(u64, u64)]| {
            let mut l = Linker::default();
            for a in [0, 1] {
                for &(ip, block) in addresses {
                    l.note_address(&c, 1000, a, ip, Some(block));
                }
            }
            l.edge(0, 1).unwrap().clone()
        };
        // Strangers on one carrier (or in one office) rotating among its exits: however many
        // exits they share, one block.
        let carrier = pool_of(&[(1, 16), (2, 16), (3, 16), (4, 16)]);
        assert_eq!(carrier.get(LinkKind::Pool), 0.0);
        // One shared address is one address, whatever its block.
        assert_eq!(pool_of(&[(1, 16)]).get(LinkKind::Pool), 0.0);
        // Two accounts moving among the same addresses on two ISPs: a pool, a fact beside the
        // address (it is not folded into "same network").
        let e = pool_of(&[(1, 16), (2, 17)]);
        assert!((e.get(LinkKind::Pool) - c.pool).abs() < 1e-3, "{e:?}");
        assert!(e.total() >= c.ip + c.pool - 1e-3);
        assert!(!e.joins(&c, 0.0), "infrastructure alone never joins");
        assert!(!e.says_one_actor());
        // With a start together it joins (the address and the start alone do not) and says
        // one actor.
        let mut started = e.clone();
        started.raise(LinkKind::FirstSeen, c.first_seen as f32);
        assert!(started.joins(&c, 0.0) && started.says_one_actor());
        let mut strangers = carrier.clone();
        strangers.raise(LinkKind::FirstSeen, c.first_seen as f32);
        assert!(!strangers.joins(&c, 0.0) && !strangers.says_one_actor());
    }

    #[test]
    fn a_value_past_its_cap_links_nothing_more_and_memory_stays_bounded() {
        let c = LinkConfig {
            max_share: 4,
            ..LinkConfig::default()
        };
        let mut l = Linker::default();
        for a in 0..100 {
            l.note(&c, 1000, a, LinkKind::UserAgent, 3);
        }
        assert!(
            l.edges.len() <= 6,
            "only the first four holders were paired"
        );
        assert!(l.values.get(&key(LinkKind::UserAgent, 3)).unwrap().common);
        // An account remembers a bounded number of values per kind.
        for v in 0..100 {
            l.note(&c, 1000, 200, LinkKind::Ip, v);
        }
        assert_eq!(l.contributed[200].len(), LinkKind::Ip.per_account());
    }
}
