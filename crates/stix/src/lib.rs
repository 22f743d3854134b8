//! Linked groups of accounts as STIX 2.1 bundles, for other providers.
//!
//! A provider that found a distillation fleet wants its peers to recognise the same actor on
//! their own APIs, and their threat-intelligence tools (OpenCTI, MISP, a TIP) read STIX 2.1
//! (<https://docs.oasis-open.org/cti/stix/v2.1/stix-v2.1.html>). For each flagged group a
//! bundle holds:
//!
//! - the producer's `identity`;
//! - an `indicator` per observable the group's members were seen with, with a STIX pattern:
//!   client addresses and their networks, ASNs, user agents, TLS client fingerprints, and,
//!   hashed (SHA-256) so no payment token or prompt text leaves the house, payment
//!   fingerprints and system-prompt hashes (the last three as custom `x-distillguard-*`
//!   observables: STIX names no such objects);
//! - a `sighting` of each indicator: how many exchanges, first and last seen;
//! - a `report` tying them to the group: its verdict, score, size and reasons.
//!
//! Account names stay out: they mean nothing outside and belong to customers. Identifiers
//! are UUIDs drawn from a hash of the producer, the group and the value, so a group's objects
//! keep their ids from one export to the next and a peer's tool updates them instead of adding
//! copies. Each group shares at most [`PER_KIND`] values of each kind, the most seen (a
//! rotating proxy pool has thousands of addresses used once); the report says how many more
//! there were.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// When and how often a value was seen: exchanges, first and last time (ms since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub count: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

impl Seen {
    /// One more exchange at `ts_ms`.
    pub fn note(&mut self, ts_ms: i64) {
        if self.count == 0 {
            self.first_ms = ts_ms;
            self.last_ms = ts_ms;
        }
        self.count += 1;
        self.first_ms = self.first_ms.min(ts_ms);
        self.last_ms = self.last_ms.max(ts_ms);
    }
}

impl Default for Seen {
    fn default() -> Self {
        Self {
            count: 0,
            first_ms: i64::MAX,
            last_ms: i64::MIN,
        }
    }
}

/// Notes what one exchange of a group's member was seen with: its address and the address's
/// network (as the linker counts it), ASN, user agent, TLS and payment fingerprints, and the
/// hashes of its system prompts.
pub fn note(ex: &exchange::Exchange, seen: &mut std::collections::BTreeMap<Observable, Seen>) {
    let ts = ex.ts.millis();
    let mut saw = |o: Observable| seen.entry(o).or_default().note(ts);
    if let Some(ip) = &ex.ip {
        if let Ok(addr) = ip.parse() {
            let (net, len) = detect::network(addr);
            saw(Observable::Network(format!("{net}/{len}")));
        }
        saw(Observable::Address(ip.clone()));
    }
    if let Some(ua) = &ex.user_agent {
        saw(Observable::UserAgent(ua.clone()));
    }
    if let Some(m) = &ex.meta {
        if let Some(p) = &m.payment_fingerprint {
            saw(Observable::PaymentFingerprint(p.clone()));
        }
        if let Some(t) = &m.tls_fingerprint {
            saw(Observable::TlsFingerprint(t.clone()));
        }
        if let Some(a) = m.asn {
            saw(Observable::Asn(a));
        }
    }
    for m in ex
        .request
        .messages
        .iter()
        .flatten()
        .filter(|m| m.role == "system")
    {
        saw(Observable::SystemPromptHash(format!(
            "{:016x}",
            detect::normalised_hash(m.content.as_str())
        )));
    }
}

/// A value a group's members were seen with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Observable {
    /// A client address (IPv4 or IPv6).
    Address(String),
    /// A network, as CIDR.
    Network(String),
    Asn(u64),
    UserAgent(String),
    /// A TLS client fingerprint (JA3/JA4 or the like).
    TlsFingerprint(String),
    /// A payment instrument's fingerprint; shared only as its SHA-256.
    PaymentFingerprint(String),
    /// The hash of a system prompt's normalised text (hex), as the detector computes it.
    SystemPromptHash(String),
}

/// One flagged group, as the bundle describes it.
#[derive(Debug, Clone)]
pub struct Group {
    pub cluster: String,
    pub verdict: String,
    pub score: f64,
    pub members: usize,
    /// The group's reasons, in words.
    pub reasons: Vec<String>,
    pub seen: Vec<(Observable, Seen)>,
}

const SPEC: &str = "2.1";

fn time(ms: i64) -> String {
    exchange::Timestamp::from_millis(ms).as_str().to_owned()
}

/// A stable identifier: a UUID in the version-4 layout the specification asks of objects,
/// its bits drawn from a hash of `kind` and `name` instead of a random source, so the same
/// object of the same group has the same id in every export.
fn id(kind: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("distillguard:{kind}:{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
    format!("{kind}--{uuid}")
}

/// A string literal of a STIX pattern: quotes and backslashes escaped.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Observable {
    /// The STIX pattern that matches it, and a name in words.
    fn pattern(&self) -> (String, String) {
        let v6 = |s: &str| s.contains(':');
        match self {
            Observable::Address(ip) => (
                format!(
                    "[{}:value = {}]",
                    if v6(ip) { "ipv6-addr" } else { "ipv4-addr" },
                    literal(ip)
                ),
                format!("client address {ip}"),
            ),
            Observable::Network(net) => (
                format!(
                    "[{}:value ISSUBSET {}]",
                    if v6(net) { "ipv6-addr" } else { "ipv4-addr" },
                    literal(net)
                ),
                format!("client network {net}"),
            ),
            Observable::Asn(n) => (
                format!("[autonomous-system:number = {n}]"),
                format!("autonomous system {n}"),
            ),
            Observable::UserAgent(ua) => (
                format!(
                    "[network-traffic:extensions.'http-request-ext'.request_header.'User-Agent' = {}]",
                    literal(ua)
                ),
                format!("user agent {ua}"),
            ),
            Observable::TlsFingerprint(f) => (
                format!("[x-distillguard-tls-client:fingerprint = {}]", literal(f)),
                format!("TLS client fingerprint {f}"),
            ),
            Observable::PaymentFingerprint(f) => {
                let h = sha256(f);
                (
                    format!("[x-distillguard-payment:fingerprint_sha256 = {}]", literal(&h)),
                    format!("payment fingerprint (SHA-256 {h})"),
                )
            }
            Observable::SystemPromptHash(h) => (
                format!("[x-distillguard-prompt:system_prompt_hash = {}]", literal(h)),
                format!("system prompt (hash {h})"),
            ),
        }
    }
}

/// The values of one kind shared per group at most, the most seen first.
pub const PER_KIND: usize = 100;

impl Observable {
    fn kind(&self) -> &'static str {
        match self {
            Observable::Address(_) => "client addresses",
            Observable::Network(_) => "client networks",
            Observable::Asn(_) => "autonomous systems",
            Observable::UserAgent(_) => "user agents",
            Observable::TlsFingerprint(_) => "TLS client fingerprints",
            Observable::PaymentFingerprint(_) => "payment fingerprints",
            Observable::SystemPromptHash(_) => "system prompts",
        }
    }
}

/// The bundle of every group given, produced by `producer` at `now_ms`.
pub fn bundle(producer: &str, groups: &[Group], now_ms: i64) -> Value {
    let now = time(now_ms);
    let identity_id = id("identity", &format!("producer:{producer}"));
    let mut objects = vec![json!({
        "type": "identity",
        "spec_version": SPEC,
        "id": identity_id,
        "created": now,
        "modified": now,
        "name": producer,
        "identity_class": "organization",
        "description": "An API provider running distillguard, which detects model distillation through its API.",
    })];
    for g in groups {
        let mut refs = vec![identity_id.clone()];
        // The most seen values of each kind, up to PER_KIND; the rest counted.
        let mut shared: Vec<&(Observable, Seen)> = g.seen.iter().collect();
        shared.sort_by(|a, b| {
            (a.0.kind(), std::cmp::Reverse(a.1.count), &a.0).cmp(&(
                b.0.kind(),
                std::cmp::Reverse(b.1.count),
                &b.0,
            ))
        });
        let mut left_out: std::collections::BTreeMap<&str, usize> = Default::default();
        let mut taken: std::collections::BTreeMap<&str, usize> = Default::default();
        shared.retain(|(o, _)| {
            let n = taken.entry(o.kind()).or_default();
            *n += 1;
            if *n > PER_KIND {
                *left_out.entry(o.kind()).or_default() += 1;
                return false;
            }
            true
        });
        for (observable, seen) in shared {
            let (pattern, what) = observable.pattern();
            let key = format!("{producer}:{}:{pattern}", g.cluster);
            let indicator_id = id("indicator", &key);
            objects.push(json!({
                "type": "indicator",
                "spec_version": SPEC,
                "id": indicator_id,
                "created": now,
                "modified": now,
                "created_by_ref": identity_id,
                "name": format!("{what}, used by distillation group {}", g.cluster),
                "description": format!(
                    "Seen in {} exchanges of {} accounts that distillguard judged one actor harvesting a model through its API ({}, score {:.3}).",
                    seen.count, g.members, g.verdict, g.score
                ),
                "indicator_types": ["anomalous-activity"],
                "pattern": pattern,
                "pattern_type": "stix",
                "pattern_version": SPEC,
                "valid_from": time(seen.first_ms),
            }));
            let sighting_id = id("sighting", &format!("{key}:sighting"));
            objects.push(json!({
                "type": "sighting",
                "spec_version": SPEC,
                "id": sighting_id,
                "created": now,
                "modified": now,
                "created_by_ref": identity_id,
                "sighting_of_ref": indicator_id,
                "where_sighted_refs": [identity_id],
                "count": seen.count.min(999_999_999),
                "first_seen": time(seen.first_ms),
                "last_seen": time(seen.last_ms.max(seen.first_ms)),
            }));
            refs.push(indicator_id);
            refs.push(sighting_id);
        }
        let mut description = format!(
            "{} accounts acting as one actor, judged {} (score {:.3}) by distillguard.",
            g.members, g.verdict, g.score
        );
        for r in &g.reasons {
            description.push_str("\n- ");
            description.push_str(r);
        }
        for (kind, n) in &left_out {
            description.push_str(&format!(
                "\n{n} more {kind}, each seen less often, are not shared here."
            ));
        }
        objects.push(json!({
            "type": "report",
            "spec_version": SPEC,
            "id": id("report", &format!("{producer}:{}", g.cluster)),
            "created": now,
            "modified": now,
            "created_by_ref": identity_id,
            "name": format!("Distillation group {}", g.cluster),
            "description": description,
            "report_types": ["threat-report"],
            "published": now,
            "confidence": (g.score * 100.0).round().clamp(0.0, 100.0) as u64,
            "object_refs": refs,
        }));
    }
    json!({
        "type": "bundle",
        "id": id("bundle", &format!("{producer}:{now_ms}")),
        "objects": objects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> Group {
        let mut seen = Seen::default();
        seen.note(1_772_323_200_000);
        seen.note(1_772_330_000_000);
        Group {
            cluster: "grp-1".into(),
            verdict: "distilling".into(),
            score: 0.97,
            members: 12,
            reasons: vec!["the same payment instrument x11".into()],
            seen: vec![
                (Observable::Address("203.0.113.9".into()), seen),
                (Observable::Network("2001:db8::/48".into()), seen),
                (Observable::UserAgent("it's \\ odd".into()), seen),
                (Observable::PaymentFingerprint("pf_secret".into()), seen),
            ],
        }
    }

    #[test]
    fn a_group_is_an_identity_indicators_sightings_and_a_report_with_stable_ids() {
        let b = bundle("Example AI", &[group()], 1_772_400_000_000);
        let objects = b["objects"].as_array().unwrap();
        let count = |t: &str| objects.iter().filter(|o| o["type"] == t).count();
        assert_eq!(
            (
                count("identity"),
                count("indicator"),
                count("sighting"),
                count("report")
            ),
            (1, 4, 4, 1)
        );
        let patterns: Vec<&str> = objects
            .iter()
            .filter_map(|o| o["pattern"].as_str())
            .collect();
        assert!(patterns.contains(&"[ipv4-addr:value = '203.0.113.9']"));
        assert!(patterns.contains(&"[ipv6-addr:value ISSUBSET '2001:db8::/48']"));
        assert!(patterns.iter().any(|p| p.ends_with("= 'it\\'s \\\\ odd']")));
        // No payment token leaves in the clear.
        assert!(!b.to_string().contains("pf_secret"));
        let sighting = objects.iter().find(|o| o["type"] == "sighting").unwrap();
        assert_eq!(sighting["count"], 2);
        assert_eq!(sighting["first_seen"], "2026-03-01T00:00:00.000Z");
        // The same group exported later keeps its objects' ids.
        let again = bundle("Example AI", &[group()], 1_772_500_000_000);
        let ids = |b: &Value| -> Vec<String> {
            b["objects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(ids(&b), ids(&again));
    }
}
