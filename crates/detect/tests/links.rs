//! Linking accounts into groups: each kind of evidence, the innocent sharing that must not
//! link, and a group growing while exchanges stream in.

use detect::{Config, Detector, Verdict};
use serde_json::{json, Value};

/// Who sends an exchange: the facts linking reads.
#[derive(Clone, Default)]
struct Who {
    ip: Option<String>,
    ua: Option<String>,
    payment: Option<String>,
    tls: Option<String>,
    asn: Option<u64>,
    signup: Option<String>,
    system: Option<String>,
    model: Option<String>,
}

fn line(account: &str, i: usize, who: &Who, prompt: &str, max_tokens: u64) -> exchange::Exchange {
    let mut messages = Vec::new();
    if let Some(s) = &who.system {
        messages.push(json!({"role": "system", "content": s}));
    }
    messages.push(json!({"role": "user", "content": prompt}));
    let mut meta = serde_json::Map::new();
    if let Some(p) = &who.payment {
        meta.insert("payment_fingerprint".into(), json!(p));
    }
    if let Some(t) = &who.tls {
        meta.insert("tls_fingerprint".into(), json!(t));
    }
    if let Some(a) = who.asn {
        meta.insert("asn".into(), json!(a));
    }
    if let Some(s) = &who.signup {
        meta.insert("signup_ts".into(), json!(s));
    }
    let ts = 1_767_225_600_000i64 + (i as i64) * 37_000;
    // Large requests get the long answers harvesting is after.
    let (answer, completion, finish) = if max_tokens >= 4096 {
        (
            format!(
                "Step 1. {}",
                "We reason carefully about each part of the problem. ".repeat(60)
            ),
            max_tokens,
            "length",
        )
    } else {
        ("An answer of moderate length.".to_owned(), 40, "stop")
    };
    let v: Value = json!({
        "id": format!("{account}-{i}"),
        "ts": exchange::Timestamp::from_millis(ts).as_str(),
        "account": account,
        "endpoint": "/v1/chat/completions",
        "status": 200,
        "ip": who.ip,
        "user_agent": who.ua,
        "meta": meta,
        "request": {"model": who.model.as_deref().unwrap_or("m"), "messages": messages, "max_tokens": max_tokens},
        "response": {"choices": [{"message": {"role": "assistant", "content": answer}, "finish_reason": finish}],
                     "usage": {"prompt_tokens": 20, "completion_tokens": completion}},
    });
    exchange::parse_line(v.to_string().as_bytes()).unwrap()
}

fn chat(i: usize) -> String {
    let topics = [
        "my garden",
        "a tax form",
        "the rust borrow checker",
        "a birthday card",
        "train times",
        "a recipe for soup",
    ];
    format!("Can you help me with {} ({i})?", topics[i % topics.len()])
}

fn templated(i: usize) -> String {
    format!(
        "Answer the following exam question in full detail please: question {i} about subject {}",
        i * 7919 % 1000
    )
}

/// An account of a test: its name, who it is, and what it asks.
type Sender<'a> = (&'a str, Who, fn(usize) -> String);

/// Feeds `accounts` interleaved, `per` exchanges each.
fn feed(d: &mut Detector, accounts: &[Sender], per: usize) -> usize {
    let mut n = 0;
    for i in 0..per {
        for (name, who, prompt) in accounts {
            d.observe(&line(name, n, who, &prompt(i), 256));
            n += 1;
        }
    }
    n
}

fn cluster(d: &Detector, account: &str) -> Option<String> {
    d.report(account).unwrap().cluster
}

fn linked(d: &Detector, a: &str, b: &str) -> bool {
    cluster(d, a).is_some() && cluster(d, a) == cluster(d, b)
}

fn rare(tag: &str) -> Who {
    Who {
        ip: Some(format!("203.0.113.{}", tag.len() + 10)),
        ..Who::default()
    }
}

#[test]
fn a_shared_payment_instrument_links_on_its_own() {
    let mut d = Detector::new(Config::default());
    let a = Who {
        payment: Some("pf_one".into()),
        ..Who::default()
    };
    feed(&mut d, &[("a", a.clone(), chat), ("b", a, chat)], 3);
    assert!(linked(&d, "a", "b"));
    let g = &d.groups()[0];
    assert_eq!(g.links.get("payment"), Some(&1));
    assert_eq!(g.evidence[0].kinds.get("payment"), Some(&1.0));
    // A replica reads the group back from the JSON a worker published, whole.
    let json = serde_json::to_value(g).unwrap();
    let read: detect::GroupReport = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(&read, g);
    // A newer build's kind of link is left out and its signal reads as `other`.
    let mut newer = json;
    newer["links"]["quantum"] = serde_json::json!(3);
    newer["reasons"] = serde_json::json!([{"signal": "quantum", "value": 1.0, "detail": "d"}]);
    let read: detect::GroupReport = serde_json::from_value(newer).unwrap();
    assert_eq!(read.links, g.links);
    assert_eq!(read.reasons[0].signal, "other");
}

/// Sixty customers, each on an address of its own, all on one SDK (`ua`) and, when given, one
/// network (`asn`): what makes that SDK and network common in the log.
fn everyday_customers(d: &mut Detector, ua: &str, asn: Option<u64>) {
    let names: Vec<String> = (0..60).map(|i| format!("other{i}")).collect();
    let others: Vec<Sender> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let who = Who {
                ip: Some(format!("10.1.{i}.5")),
                ua: Some(ua.into()),
                asn,
                ..Who::default()
            };
            (n.as_str(), who, chat as fn(usize) -> String)
        })
        .collect();
    feed(d, &others, 1);
}

/// A detector that has seen the stream's first call and [`everyday_customers`] on the common
/// SDK: the population that makes an address or a client rare or common.
fn busy_detector() -> Detector {
    busy_detector_with(Config::default())
}

/// [`busy_detector`] under `config`.
fn busy_detector_with(config: Config) -> Detector {
    let mut d = Detector::new(config);
    d.observe(&line("clock", 0, &Who::default(), "hello", 64));
    everyday_customers(&mut d, "OpenAI/Python 1.59.0", None);
    d
}

#[test]
fn a_shared_office_address_alone_links_nothing() {
    let mut d = Detector::new(Config::default());
    // The office's SDK and network are those of many other customers.
    everyday_customers(&mut d, "OpenAI/Python 1.59.0", Some(64500));
    let office = Who {
        ip: Some("198.51.100.20".into()),
        ua: Some("OpenAI/Python 1.59.0".into()),
        asn: Some(64500),
        ..Who::default()
    };
    feed(
        &mut d,
        &[
            ("dev1", office.clone(), chat),
            ("dev2", office.clone(), chat),
            ("dev3", office, chat),
        ],
        5,
    );
    assert!(
        !linked(&d, "dev1", "dev2"),
        "one address behind a NAT with a common SDK is not one actor"
    );
    assert!(d.groups().is_empty());
}

#[test]
fn rare_client_fingerprint_and_a_shared_template_link() {
    let mut d = Detector::new(Config::default());
    let a = Who {
        tls: Some("t13d_custom_client".into()),
        ..rare("a")
    };
    let b = Who {
        tls: Some("t13d_custom_client".into()),
        ..rare("bb")
    };
    feed(&mut d, &[("a", a, templated), ("b", b, templated)], 5);
    assert!(linked(&d, "a", "b"));
    let kinds = &d.groups()[0].evidence[0].kinds;
    assert!(
        kinds.contains_key("tls") && kinds.contains_key("template"),
        "{kinds:?}"
    );
}

#[test]
fn a_rare_system_prompt_with_a_shared_address_links_but_either_alone_does_not() {
    let sys =
        Some("You are Zephyr, the internal assistant of the Quillon research archive.".to_owned());
    let mut d = Detector::new(Config::default());
    let a = Who {
        system: sys.clone(),
        ..rare("a")
    };
    let b = Who {
        system: sys.clone(),
        ..rare("bb")
    };
    feed(&mut d, &[("a", a, chat), ("b", b, chat)], 5);
    assert!(!linked(&d, "a", "b"), "a system prompt alone");
    let mut d = Detector::new(Config::default());
    let same_ip = Who {
        system: sys,
        ip: Some("192.0.2.77".into()),
        ..Who::default()
    };
    feed(
        &mut d,
        &[("a", same_ip.clone(), chat), ("b", same_ip, chat)],
        5,
    );
    assert!(linked(&d, "a", "b"));
}

#[test]
fn close_sign_ups_with_a_rare_client_link_but_subnet_and_network_do_not() {
    let mut d = Detector::new(Config::default());
    let signup = Some("2025-12-30T10:01:00Z".to_owned());
    let a = Who {
        signup: signup.clone(),
        tls: Some("t13d_rare".into()),
        ..rare("a")
    };
    let b = Who {
        signup: Some("2025-12-30T10:04:00Z".to_owned()),
        tls: Some("t13d_rare".into()),
        ..rare("bb")
    };
    feed(&mut d, &[("a", a, chat), ("b", b, chat)], 3);
    assert!(
        linked(&d, "a", "b"),
        "sign-ups minutes apart + the same rare client"
    );

    let mut d = Detector::new(Config::default());
    let a = Who {
        ip: Some("192.0.2.10".into()),
        asn: Some(64501),
        signup,
        ..Who::default()
    };
    let b = Who {
        ip: Some("192.0.2.11".into()),
        asn: Some(64501),
        ..Who::default()
    };
    feed(&mut d, &[("a", a, chat), ("b", b, chat)], 3);
    assert!(!linked(&d, "a", "b"), "a /24 and an ASN are weak");
}

#[test]
fn a_common_user_agent_or_generic_system_prompt_links_no_one() {
    let mut d = Detector::new(Config::default());
    let names: Vec<String> = (0..60).map(|i| format!("cust{i}")).collect();
    let accounts: Vec<Sender> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let who = Who {
                ua: Some("python-httpx/0.27.2".into()),
                tls: Some("t13d_library".into()),
                system: Some("You are a helpful assistant.".into()),
                ip: Some(format!("10.{}.{}.9", i / 200, i % 200)),
                ..Who::default()
            };
            (n.as_str(), who, templated as fn(usize) -> String)
        })
        .collect();
    feed(&mut d, &accounts, 4);
    let biggest = d
        .groups()
        .iter()
        .map(|g| g.members.len())
        .max()
        .unwrap_or(0);
    assert!(
        biggest < 60,
        "sixty customers of one tool are not one actor (largest group {biggest})"
    );
}

/// A chain-of-thought harvesting prompt, item `i` of a broad set.
fn cot(i: usize) -> String {
    format!(
        "Think step by step and show all of your reasoning before answering: problem {i} on topic {}",
        i * 104_729 % 977
    )
}

/// `members` take turns, 60 harvesting calls each with the largest answers allowed; returns
/// the next stream position.
fn harvest_in_turns(d: &mut Detector, members: &[&str], who: &Who) -> usize {
    let mut n = 0;
    for i in 0..60 {
        for m in members {
            d.observe(&line(
                m,
                n,
                who,
                &cot(i * members.len() + n % members.len()),
                4096,
            ));
            n += 1;
        }
    }
    n
}

#[test]
fn a_group_grows_while_streaming_and_a_newcomer_inherits_its_verdict_at_once() {
    let mut d = Detector::new(Config::default());
    // Five accounts on one card, each harvesting a little with a chain-of-thought template
    // and the largest answers allowed.
    let card = Who {
        payment: Some("pf_hydra".into()),
        ..Who::default()
    };
    let members = ["h1", "h2", "h3", "h4", "h5"];
    let n = harvest_in_turns(&mut d, &members, &card);
    let g = d.groups();
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].members.len(), 5);
    assert_eq!(
        g[0].verdict,
        Verdict::Distilling,
        "the group's combined traffic: {:?}",
        g[0].score
    );
    // The banned-and-replaced pattern: a fresh account on the same card is distilling on its
    // first exchange.
    let changes = d.observe(&line("h6", n, &card, &cot(9999), 4096));
    assert!(changes
        .iter()
        .any(|c| c.account == "h6" && c.to == Verdict::Distilling));
    let r = d.report("h6").unwrap();
    assert_eq!(r.verdict, Verdict::Distilling);
    assert_eq!(r.reasons[0].signal, "linked_group");
    assert!(
        r.reasons[0].detail.contains("payment"),
        "{}",
        r.reasons[0].detail
    );
    assert_eq!(d.groups()[0].members.len(), 6);
}

#[test]
fn infrastructure_alone_never_joins_but_a_fleet_switched_on_together_does() {
    let shared = Who {
        ip: Some("192.0.2.44".into()),
        tls: Some("t13d_rare_client".into()),
        ua: Some("fleet-runner/2.1".into()),
        ..Who::default()
    };
    // Address, client and user agent, all rare: 1.4 of evidence, but infrastructure only.
    let mut d = Detector::new(Config::default());
    feed(
        &mut d,
        &[("a", shared.clone(), chat), ("b", shared.clone(), chat)],
        3,
    );
    assert!(
        !linked(&d, "a", "b"),
        "one office, one client: not one actor on its own"
    );

    // The same two accounts making their first calls within minutes of each other, hours
    // into the stream (not at its start, when every existing customer makes its first call).
    let mut d = Detector::new(Config::default());
    d.observe(&line("clock", 0, &Who::default(), "hello", 64));
    let mut n = 400; // ~4 hours later
    for i in 0..3 {
        for name in ["a", "b"] {
            d.observe(&line(name, n, &shared, &chat(i), 64));
            n += 1;
        }
    }
    assert!(linked(&d, "a", "b"));
    assert!(
        d.groups()[0].links.contains_key("first_seen"),
        "{:?}",
        d.groups()[0].links
    );
}

#[test]
fn moving_to_a_new_model_in_the_same_hour_adds_to_a_shared_template() {
    let mut d = Detector::new(Config::default());
    // The stream has run for a day and a half when model m2 appears.
    d.observe(&line("clock", 0, &Who::default(), "hello", 64));
    // Two customers since hours apart on the old model, sharing one template there: 0.7 of
    // evidence, not enough.
    for (name, at) in [("p1", 300), ("p2", 900)] {
        for i in 0..4 {
            d.observe(&line(name, at + i, &Who::default(), &templated(i), 64));
        }
    }
    assert!(!linked(&d, "p1", "p2"));
    // Both move to m2 within the same hour: 0.3 more.
    let pivot = Who {
        model: Some("m2".into()),
        ..Who::default()
    };
    d.observe(&line("p1", 3500, &pivot, &chat(1), 64));
    d.observe(&line("p2", 3501, &pivot, &chat(2), 64));
    assert!(linked(&d, "p1", "p2"));
    assert!(
        d.groups()[0].links.contains_key("pivot"),
        "{:?}",
        d.groups()[0].links
    );
}

/// One exchange at stream position `n` (37 s apart): what the group tests below place by hand.
/// Each account asks its own kind of question, so no template links them.
fn at(d: &mut Detector, name: &str, n: usize, who: &Who) {
    let prompt = format!("{name} would like some help, please, with item number {n}");
    d.observe(&line(name, n, who, &prompt, 64));
}

/// Members of a group on one card, each with its own sign-up time and first call (hours into
/// the stream, each in its own ten minutes), except where `who` says otherwise.
fn member(i: usize, tls: &str) -> Who {
    Who {
        payment: Some("pf_group".into()),
        tls: Some(tls.into()),
        signup: Some(format!("2026-01-0{}T00:00:00.000Z", i % 9 + 1)),
        ip: Some(format!("198.18.{i}.7")),
        ..Who::default()
    }
}

#[test]
fn evidence_spread_over_a_group_adds_up() {
    let mut d = Detector::new(Config::default());
    at(&mut d, "clock", 0, &Who::default());
    // Six members on one card and one uncommon client. Two signed up in the same minutes as
    // the newcomer below, two others make their first calls in the same minutes as it.
    let mut n = 400; // hours into the stream: first calls count
    let close_signup = "2026-02-01T00:01:00.000Z".to_owned();
    for i in 1..=6 {
        let mut who = member(i, "t13d_group_client");
        if i <= 2 {
            who.signup = Some(close_signup.clone());
        }
        let pos = if i == 3 || i == 4 { 1007 + i } else { n };
        at(&mut d, &format!("g{i}"), pos, &who);
        n += 40;
    }
    assert_eq!(d.groups().len(), 1);
    // The newcomer pays with its own card; with any one member it shares too little (client
    // and sign-up with g1, client and first call with g3), with the group enough.
    let newcomer = Who {
        payment: Some("pf_own".into()),
        signup: Some(close_signup),
        ..member(99, "t13d_group_client")
    };
    at(&mut d, "new", 1012, &newcomer);
    for g in ["g1", "g3"] {
        let e = d.groups()[0]
            .evidence
            .iter()
            .find(|e| (e.a == "new" || e.b == "new") && (e.a == g || e.b == g))
            .map_or(0.0, |e| e.total);
        assert!(e < 1.0, "pairwise evidence with {g} alone is {e}");
    }
    assert!(linked(&d, "new", "g1"), "{:?}", d.groups());
    let links = &d.groups()[0].links;
    assert!(
        links.contains_key("signup") && links.contains_key("first_seen"),
        "{links:?}"
    );
}

#[test]
fn a_group_is_not_chained_to_an_outsider_through_one_member() {
    let mut d = Detector::new(Config::default());
    at(&mut d, "clock", 0, &Who::default());
    // Three members on one card, each on an address and client of its own.
    for i in 1..=3 {
        at(
            &mut d,
            &format!("g{i}"),
            400 + 20 * i,
            &member(i, &format!("t13d_own_{i}")),
        );
    }
    assert_eq!(d.groups()[0].members.len(), 3);
    // A stranger shares g1's address and client and makes its first call in g1's ten minutes:
    // enough between the two of them (address 0.5, client 0.6, first calls 0.45), but nothing
    // with the group as a whole, and no fact that says one actor.
    let stranger = Who {
        ip: Some("198.18.1.7".into()),
        tls: Some("t13d_own_1".into()),
        payment: Some("pf_stranger".into()),
        ..Who::default()
    };
    at(&mut d, "stranger", 421, &stranger);
    at(&mut d, "stranger", 422, &stranger);
    assert!(cluster(&d, "stranger").is_none(), "{:?}", d.groups());
    // Without the group, the same tie joins the pair: two accounts alone are judged as a pair.
    let mut d = Detector::new(Config::default());
    at(&mut d, "clock", 0, &Who::default());
    at(&mut d, "g1", 420, &member(1, "t13d_own_1"));
    at(&mut d, "stranger", 421, &stranger);
    at(&mut d, "stranger", 422, &stranger);
    assert!(linked(&d, "g1", "stranger"), "{:?}", d.groups());
}

#[test]
fn one_members_coincidences_do_not_pull_an_outsider_into_a_big_group() {
    let mut d = Detector::new(Config::default());
    at(&mut d, "clock", 0, &Who::default());
    // Twenty members on one card and one client, except g3, who runs a client of its own.
    for i in 1..=20 {
        let tls = if i == 3 {
            "t13d_rare_other"
        } else {
            "t13d_group_client"
        };
        let mut who = member(i, tls);
        if i == 1 {
            who.signup = Some("2026-02-01T00:01:00.000Z".into());
        }
        let pos = if i == 2 { 2000 } else { 400 + 20 * i };
        at(&mut d, &format!("g{i}"), pos, &who);
    }
    assert_eq!(d.groups()[0].members.len(), 20);
    // An outsider shares its sign-up minutes with g1, its first call with g2 and its client
    // with g3: three coincidences, each with a different member of twenty. Summed at full
    // weight they would be 1.5 of evidence; no member of the group vouches for two of them.
    let outsider = Who {
        payment: Some("pf_outsider".into()),
        signup: Some("2026-02-01T00:01:00.000Z".into()),
        ..member(98, "t13d_rare_other")
    };
    at(&mut d, "outsider", 2001, &outsider);
    assert!(cluster(&d, "outsider").is_none(), "{:?}", d.groups());
}

/// The stream position (37 s apart) of `minute` past `hour` hours into the stream.
fn pos(hour: usize, minute: usize) -> usize {
    ((hour * 3600 + minute * 60) as f64 / 37.0).ceil() as usize
}

/// Calls once in each of `hours`, at `minute` past.
fn hourly(d: &mut Detector, name: &str, who: &Who, hours: &[usize], minute: usize) {
    for &h in hours {
        at(d, name, pos(h, minute), who);
    }
}

#[test]
fn strangers_behind_one_carrier_nat_whose_first_calls_coincide_are_not_joined() {
    // Two developers who do not know each other, on one mobile carrier's NAT address (rare in
    // this log: only they use it), its /24 and its ASN, with the everyday SDK, who happen to
    // make their first calls within the same ten minutes, hours into the stream. Address,
    // network and ASN are one fact ("same network"), and one coincidence of timing beside it
    // is not one actor.
    let carrier = Who {
        ip: Some("100.64.12.7".into()),
        ua: Some("OpenAI/Python 1.59.0".into()),
        asn: Some(64_777),
        ..Who::default()
    };
    let mut d = Detector::new(Config::default());
    d.observe(&line("clock", 0, &Who::default(), "hello", 64));
    // The everyday SDK is everyone's.
    everyday_customers(&mut d, "OpenAI/Python 1.59.0", None);
    let mut n = 400; // ~4 hours later
    for i in 0..3 {
        for name in ["dev_a", "dev_b"] {
            d.observe(&line(name, n, &carrier, &chat(i), 64));
            n += 1;
        }
    }
    assert!(!linked(&d, "dev_a", "dev_b"), "{:?}", d.groups());
}

#[test]
fn accounts_keeping_the_same_hours_link_with_a_rare_client_and_skipping_one_hour_breaks_it() {
    let client = Who {
        tls: Some("t13d_fleet_client".into()),
        ..Who::default()
    };
    let hours: Vec<usize> = (5..13).collect();
    let mut d = Detector::new(Config::default());
    at(&mut d, "clock", 0, &Who::default());
    // Interleaved hour by hour, first calls 20 minutes apart (not "first calls together").
    for &h in &hours {
        hourly(&mut d, "a", &client, &[h], 2);
        if h == 12 {
            assert!(
                !linked(&d, "a", "b"),
                "seven shared hours are not yet eight"
            );
        }
        hourly(&mut d, "b", &client, &[h], 22);
    }
    assert!(linked(&d, "a", "b"));
    let links = &d.groups()[0].links;
    assert!(
        links.contains_key("same_hours") && !links.contains_key("first_seen"),
        "{links:?}"
    );

    // The same, but one account skips an hour and works one more at the end.
    let mut d = Detector::new(Config::default());
    at(&mut d, "clock", 0, &Who::default());
    hourly(&mut d, "a", &client, &hours, 2);
    let skipping: Vec<usize> = (5..14).filter(|&h| h != 9).collect();
    hourly(&mut d, "b", &client, &skipping, 22);
    assert!(!linked(&d, "a", "b"));
}

#[test]
fn first_calls_and_hours_together_count_once() {
    // Started in the same ten minutes and kept the same hours: one fact seen twice. With an
    // uncommon user agent that is 0.75 of evidence, not 1.2.
    let sdk = Who {
        ua: Some("fleet-runner/2.1".into()),
        ..Who::default()
    };
    let hours: Vec<usize> = (5..13).collect();
    let mut d = Detector::new(Config::default());
    at(&mut d, "clock", 0, &Who::default());
    hourly(&mut d, "a", &sdk, &hours, 2);
    hourly(&mut d, "b", &sdk, &hours, 4);
    assert!(!linked(&d, "a", "b"));
    assert!(d.groups().is_empty());
}

#[test]
fn group_changes_report_what_changed_since_last_time_and_what_merged_away() {
    let mut d = Detector::new(Config::default());
    let card = |c: &str| Who {
        payment: Some(c.into()),
        ..Who::default()
    };
    feed(
        &mut d,
        &[("a1", card("pf_a"), chat), ("a2", card("pf_a"), chat)],
        2,
    );
    feed(
        &mut d,
        &[("b1", card("pf_b"), chat), ("b2", card("pf_b"), chat)],
        2,
    );
    feed(&mut d, &[("alone", card("pf_c"), chat)], 2);
    let first = d.take_group_changes();
    assert_eq!(first.updated.len(), 2);
    assert!(first.dissolved.is_empty());
    // Each changed group's report is the one the full listing gives.
    let all = d.groups();
    for g in &first.updated {
        assert_eq!(Some(g), all.iter().find(|x| x.cluster == g.cluster));
    }
    // Nothing happened to any group since: nothing to report.
    feed(&mut d, &[("alone", card("pf_c"), chat)], 1);
    let quiet = d.take_group_changes();
    assert!(quiet.updated.is_empty() && quiet.dissolved.is_empty());
    // b1 also pays with a's card: the two groups become one; one name is gone.
    d.observe(&line("b1", 500, &card("pf_a"), "one more", 64));
    let merged = d.take_group_changes();
    assert_eq!(merged.updated.len(), 1);
    assert_eq!(merged.updated[0].members.len(), 4);
    assert_eq!(merged.dissolved.len(), 1);
    assert!(first
        .updated
        .iter()
        .any(|g| g.cluster == merged.dissolved[0]));
    assert_ne!(merged.updated[0].cluster, merged.dissolved[0]);
}

#[test]
fn a_group_linked_only_by_tool_and_client_is_watched_not_acted_on() {
    // Five accounts on one uncommon client with one chain-of-thought template, each
    // harvesting a little: linked, and their combined traffic scores as a harvest. But nothing
    // says they are one customer (no shared card, no sign-ups together): customers of one
    // pipeline tool look the same, so members are only watched. (Nor is the group itself
    // `distilling`: without one actor there is no fleet, and extraction with round-the-clock
    // pacing is one line of evidence with one circumstance.)
    let mut d = Detector::new(Config::default());
    let client = Who {
        tls: Some("t13d_pipeline_tool".into()),
        ..Who::default()
    };
    let members = ["p1", "p2", "p3", "p4", "p5"];
    let n = harvest_in_turns(&mut d, &members, &client);
    let g = &d.groups()[0];
    assert_eq!(g.members.len(), 5);
    assert!(g.verdict >= Verdict::Suspicious, "{g:?}");
    assert!(g.reasons.iter().any(|r| r.signal == "held"), "{g:?}");
    for m in members {
        let r = d.report(m).unwrap();
        assert_eq!(r.verdict, Verdict::Suspicious, "{m}: {:?}", r.reasons);
        assert_eq!(r.reasons[0].signal, "linked_group");
        assert!(
            r.reasons[0].detail.contains("watched"),
            "{}",
            r.reasons[0].detail
        );
    }
    // One card paying for a second member too makes them one actor: the verdict passes.
    let carded = Who {
        payment: Some("pf_shared".into()),
        ..client.clone()
    };
    d.observe(&line("p1", n, &carded, &cot(9_001), 4096));
    d.observe(&line("p2", n + 1, &carded, &cot(9_002), 4096));
    assert_eq!(d.report("p3").unwrap().verdict, Verdict::Distilling);
}

/// Members take turns from stream position `from` (after a first exchange at 0, so the stream's
/// warm-up is behind them), each with its own `who`, 60 harvesting calls each; `gap` stream
/// positions pass between a member's first call and the next member's first call.
fn fleet_in_turns(d: &mut Detector, members: &[(&str, Who)], from: usize, gap: usize) -> usize {
    d.observe(&line("clock", 0, &Who::default(), "hello", 64));
    let mut n = from;
    for (k, (m, who)) in members.iter().enumerate() {
        d.observe(&line(m, n, who, &cot(k), 4096));
        n += gap;
    }
    for i in 1..60 {
        for (k, (m, who)) in members.iter().enumerate() {
            d.observe(&line(m, n, who, &cot(i * members.len() + k), 4096));
            n += 1;
        }
    }
    n
}

/// Five accounts, each on its own card, on two addresses of a small pool, one uncommon client.
fn fleet_members() -> Vec<(&'static str, Who)> {
    let pool = ["198.51.100.7", "198.51.100.9"];
    ["f1", "f2", "f3", "f4", "f5"]
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (
                *m,
                Who {
                    ip: Some(pool[i % 2].into()),
                    tls: Some("t13d_fleet_client".into()),
                    payment: Some(format!("pf_own_{i}")),
                    ..Who::default()
                },
            )
        })
        .collect()
}

#[test]
fn a_fleet_switched_on_together_on_one_pool_and_one_template_is_one_actor_without_a_card() {
    // Each member pays on its own card and signed up on its own day: no fact of the accounts
    // ties them. They start within minutes of each other, hours into the stream, from one
    // small address pool with one template: one hand runs them, and their combined harvest
    // is theirs (the hydra that buys its accounts one by one).
    let mut d = Detector::new(Config::default());
    fleet_in_turns(&mut d, &fleet_members(), 400, 3);
    let g = d.groups();
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(g[0].members.len(), 5);
    assert_eq!(g[0].verdict, Verdict::Distilling, "{:?}", g[0].reasons);
    for m in ["f1", "f2", "f3", "f4", "f5"] {
        let r = d.report(m).unwrap();
        assert_eq!(r.verdict, Verdict::Distilling, "{m}: {:?}", r.reasons);
        assert!(
            r.reasons[0].detail.contains("one actor"),
            "{}",
            r.reasons[0].detail
        );
    }
}

#[test]
fn customers_of_one_tool_behind_shared_addresses_arriving_apart_are_watched_not_acted_on() {
    // The same five accounts, pool, client and template, but arriving hours apart, as a
    // tool's customers do: linked, judged together, and only watched.
    let mut d = Detector::new(Config::default());
    fleet_in_turns(&mut d, &fleet_members(), 400, 600);
    let g = d.groups();
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(g[0].members.len(), 5);
    for m in ["f1", "f2", "f3", "f4", "f5"] {
        let r = d.report(m).unwrap();
        assert!(r.verdict < Verdict::Distilling, "{m}: {:?}", r.reasons);
    }
}

/// Five accounts, each on its own card and its own residential address on its own ISP (no
/// address, network or pool shared), all running one client of the operator's own (`tls`)
/// and one template, first calls `gap` positions apart from four hours into the stream, then
/// taking turns for some twelve hours (80 calls each, one every nine minutes).
fn fleet_on_own_networks(tls: Option<&str>, gap: usize) -> Detector {
    fleet_on_own_networks_from(tls, gap, 0)
}

/// [`fleet_on_own_networks`], each account asking untemplated questions for its first
/// `plain` rounds and the step-by-step ones only after.
fn fleet_on_own_networks_from(tls: Option<&str>, gap: usize, plain: usize) -> Detector {
    let mut d = busy_detector();
    let isps = [
        "81.2.69.142",
        "93.184.5.10",
        "151.101.7.33",
        "62.30.112.4",
        "24.5.77.19",
    ];
    let who = |k: usize| Who {
        ip: Some(isps[k].into()),
        tls: tls.map(str::to_owned),
        payment: Some(format!("pf_own_{k}")),
        ..Who::default()
    };
    let mut n = 400;
    for k in 0..5 {
        d.observe(&line(&format!("w{k}"), n, &who(k), &cot(k), 4096));
        n += gap;
    }
    for i in 1..80 + plain {
        for k in 0..5 {
            let prompt = if i < plain {
                untemplated(i * 5 + k)
            } else {
                cot(i * 5 + k)
            };
            d.observe(&line(&format!("w{k}"), n, &who(k), &prompt, 4096));
            n += 3;
        }
    }
    d
}

#[test]
fn a_fleet_switched_on_together_with_its_own_client_template_and_hours_is_one_actor() {
    // Nothing of the network ties these five (each is on an address and ISP of its own, as
    // bought accounts behind residential proxies are), and each pays with its own card. What
    // ties them is what they do together: one client that no one else runs, one template,
    // first calls within minutes and every hour since in common. A tool's customers share
    // its client and template but arrive over months and keep their own hours.
    let d = fleet_on_own_networks(Some("t13d_fleet_client"), 3);
    let g = d.groups();
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(g[0].members.len(), 5);
    for k in 0..5 {
        let r = d.report(&format!("w{k}")).unwrap();
        assert_eq!(r.verdict, Verdict::Distilling, "w{k}: {:?}", r.reasons);
        assert!(
            r.reasons[0].detail.contains("one actor"),
            "{}",
            r.reasons[0].detail
        );
    }
}

#[test]
fn a_tools_customers_on_their_own_networks_are_not_one_actor_without_a_start_and_hours_together() {
    // The same five on the same client and template, but arriving six hours apart: customers
    // of one tool. Linked or not, none of them is acted on.
    let apart = fleet_on_own_networks(Some("t13d_fleet_client"), 600);
    // Switched on together, but on the client everyone runs: a launch morning's customers of
    // one template, not one hand.
    let common_client = fleet_on_own_networks(None, 3);
    for d in [&apart, &common_client] {
        for k in 0..5 {
            let r = d.report(&format!("w{k}")).unwrap();
            assert!(r.verdict < Verdict::Distilling, "w{k}: {:?}", r.reasons);
        }
    }
}

#[test]
fn accounts_keeping_the_same_hours_on_one_client_and_habit_are_not_one_actor() {
    // On the same uncommon client, arriving twelve minutes apart within one hour and keeping
    // the same hours from then on, taking up one habit (asking step by step) only hours
    // later, when they link: people of one time zone and one habit keep the same hours
    // without being one hand; a fleet switched on together makes its first calls in the same
    // minutes. Linked, they are watched as users of one tool, not one actor (session 16: five
    // power users and a harvester so grouped in a neutralised world, and acted on).
    let d = fleet_on_own_networks_from(Some("t13d_fleet_client"), 20, 200);
    assert_eq!(d.groups().len(), 1, "{:?}", d.groups());
    for k in 0..5 {
        let r = d.report(&format!("w{k}")).unwrap();
        assert!(
            r.reasons.iter().all(|x| !x.detail.contains("one actor")),
            "w{k}: {:?}",
            r.reasons
        );
    }
}

/// A question with no skeleton shared with the others: its first and last words vary.
fn untemplated(i: usize) -> String {
    const WORDS: [&str; 40] = [
        "why",
        "rivers",
        "proteins",
        "ancient",
        "orbits",
        "markets",
        "glaciers",
        "verbs",
        "enzymes",
        "bridges",
        "tides",
        "poems",
        "volcanoes",
        "tariffs",
        "neurons",
        "sonnets",
        "comets",
        "deserts",
        "alloys",
        "vaccines",
        "empires",
        "fungi",
        "lenses",
        "monsoons",
        "quarks",
        "ballads",
        "canals",
        "fossils",
        "algebra",
        "reefs",
        "dialects",
        "turbines",
        "parasites",
        "treaties",
        "magnets",
        "lichens",
        "operas",
        "storms",
        "pigments",
        "ledgers",
    ];
    let w = |k: usize| WORDS[(i * (7 + 6 * k) + k * 5) % WORDS.len()];
    format!(
        "{} {} {} and what item {i} says of them, {} {} {}",
        w(0),
        w(1),
        w(2),
        w(2),
        w(0),
        w(1)
    )
}

/// Five accounts, each on its own card with the everyday client and no template, switched on
/// within minutes of each other hours into the stream, every one moving among the same three
/// `addresses`; 60 harvesting calls each, in turns.
fn pooled_fleet(addresses: [&str; 3]) -> Detector {
    pooled_fleet_with(Config::default(), addresses, None)
}

/// [`pooled_fleet`] under `config`, every member paying with `card` where one is given.
fn pooled_fleet_with(config: Config, addresses: [&str; 3], card: Option<&str>) -> Detector {
    let mut d = busy_detector_with(config);
    pooled_fleet_on(&mut d, addresses, card);
    d
}

/// [`pooled_fleet_with`]'s fleet, sent to a detector of the caller's.
fn pooled_fleet_on(d: &mut Detector, addresses: [&str; 3], card: Option<&str>) {
    // Four hours in, all five first calls inside one ten-minute bucket.
    let mut n = 390;
    for i in 0..60 {
        for k in 0..5 {
            let who = Who {
                ip: Some(addresses[(i + k) % 3].into()),
                ua: Some("OpenAI/Python 1.59.0".into()),
                payment: Some(card.map_or_else(|| format!("pf_own_{k}"), str::to_owned)),
                ..Who::default()
            };
            d.observe(&line(
                &format!("m{k}"),
                n,
                &who,
                &untemplated(i * 5 + k),
                4096,
            ));
            n += if i == 0 { 3 } else { 1 };
        }
    }
}

#[test]
fn a_fleet_on_one_proxy_pool_over_several_isps_switched_on_together_is_one_actor() {
    // No card, no sign-ups, no template, no client of its own: what ties these five is that
    // they move among the same three residential addresses on three ISPs and started
    // together. People move between their own home and office, not among other accounts'
    // homes on other ISPs: the pool is the operator's.
    let d = pooled_fleet(["81.2.69.142", "93.184.5.10", "151.101.7.33"]);
    let g = d.groups();
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(g[0].members.len(), 5);
    for k in 0..5 {
        let r = d.report(&format!("m{k}")).unwrap();
        assert_eq!(r.verdict, Verdict::Distilling, "m{k}: {:?}", r.reasons);
        assert!(
            r.reasons[0].detail.contains("one actor") && r.reasons[0].detail.contains("pool"),
            "{}",
            r.reasons[0].detail
        );
    }
}

#[test]
fn strangers_rotating_among_one_carriers_exits_are_not_a_pool() {
    // The same five accounts and schedule, but the three addresses are one carrier's exits in
    // its own block: strangers on one carrier share its exits in turn. Not linked.
    let d = pooled_fleet(["100.64.12.7", "100.64.40.9", "100.64.77.3"]);
    assert!(d.groups().is_empty(), "{:?}", d.groups());
    for k in 0..5 {
        assert!(d.report(&format!("m{k}")).unwrap().verdict < Verdict::Distilling);
    }
}

/// [`pooled_fleet`] on its three addresses on three ISPs, and one more account on a card of its
/// own with the everyday client, moving between two of those addresses and asking untemplated
/// questions of its own: 40 calls from stream position `from`, one every four positions (so
/// in none of the fleet's ten minutes and, over 100 minutes, in none of its hours).
fn pooled_fleet_and_one_more(from: usize) -> Detector {
    pooled_fleet_and_one_more_with(Config::default(), from, None)
}

/// [`pooled_fleet_and_one_more`] under `config`, the fleet paying with `card` where one is
/// given.
fn pooled_fleet_and_one_more_with(config: Config, from: usize, card: Option<&str>) -> Detector {
    let addresses = ["81.2.69.142", "93.184.5.10", "151.101.7.33"];
    let mut d = pooled_fleet_with(config, addresses, card);
    one_more(&mut d, [addresses[0], addresses[1]], from, 40);
    d
}

#[test]
fn an_account_on_a_fleets_proxy_pool_switched_on_in_its_wave_joins_the_fleet() {
    // A hydra buys its members one by one and gives each a mixture of its proxies: this one
    // started three hours after the rest, shares no minute, hour, template or card with any
    // of them, and moves between two of the fleet's addresses on two ISPs. Alone it is one
    // small account; on the operator's pool, switched on in the operator's wave, it is one of
    // the fleet.
    let d = pooled_fleet_and_one_more(pos(7, 30));
    assert!(linked(&d, "late", "m0"), "{:?}", d.groups());
    let r = d.report("late").unwrap();
    assert_eq!(r.verdict, Verdict::Distilling, "{:?}", r.reasons);
}

#[test]
fn an_account_on_a_fleets_proxies_that_came_a_day_later_stays_apart() {
    // The same account on the same two proxies, arriving a day after the fleet was switched
    // on: residential proxies are sold to many; sharing them is no start together.
    let d = pooled_fleet_and_one_more(pos(30, 0));
    assert!(!linked(&d, "late", "m0"), "{:?}", d.groups());
    assert!(d.report("late").unwrap().cluster.is_none());
}

#[test]
fn a_pool_weighed_at_nothing_joins_no_one_to_a_fleet() {
    // An operator who turns the pool off (`[links] pool = 0`: its customers share proxies
    // for reasons of their own) turns off what it brings, joins of stragglers included. The
    // fleet still holds together by its one card; the straggler, on two of its proxies in its
    // wave, stays apart.
    let mut config = Config::default();
    config.links.pool = 0.0;
    let d = pooled_fleet_and_one_more_with(config, pos(7, 30), Some("pf_team"));
    let g = d.groups();
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(g[0].members.len(), 5, "{g:?}");
    assert!(!linked(&d, "late", "m0"), "{g:?}");
}

/// Six residential proxies, each on an ISP (an address block) of its own.
const PROXIES: [&str; 6] = [
    "81.2.69.142",
    "93.184.5.10",
    "151.101.7.33",
    "62.30.8.21",
    "185.60.3.77",
    "201.17.9.4",
];

/// Six accounts switched on within minutes of each other four hours into the stream, member
/// `k` dealt two of [`PROXIES`] (`k` and `k + 1`, round the ring, so no two members share more
/// than one address), paying with `card` (each its own where none is given) and asking
/// `prompt`s, 60 harvesting calls each in turns.
fn fleet_dealt_proxies(d: &mut Detector, card: Option<&str>, prompt: fn(usize) -> String) {
    let mut n = 390;
    for i in 0..60 {
        for k in 0..6 {
            let who = Who {
                ip: Some(PROXIES[(k + i % 2) % 6].into()),
                ua: Some("OpenAI/Python 1.59.0".into()),
                payment: Some(card.map_or_else(|| format!("pf_own_{k}"), str::to_owned)),
                ..Who::default()
            };
            d.observe(&line(&format!("m{k}"), n, &who, &prompt(i * 6 + k), 4096));
            n += if i == 0 { 3 } else { 1 };
        }
    }
}

/// One more account on a card of its own, asking untemplated questions of its own from
/// `addresses`: `calls` calls from stream position `from`, one every four positions.
fn one_more(d: &mut Detector, addresses: [&str; 2], from: usize, calls: usize) {
    for i in 0..calls {
        let who = Who {
            ip: Some(addresses[i % 2].into()),
            ua: Some("OpenAI/Python 1.59.0".into()),
            payment: Some("pf_own_late".into()),
            ..Who::default()
        };
        d.observe(&line(
            "late",
            from + 4 * i,
            &who,
            &untemplated(1000 + i),
            4096,
        ));
    }
}

/// [`fleet_dealt_proxies`] on one card, then [`one_more`] with 40 calls.
fn fleet_dealt_proxies_and_one_more(addresses: [&str; 2], from: usize) -> Detector {
    let mut d = busy_detector();
    fleet_dealt_proxies(&mut d, Some("pf_team"), untemplated);
    one_more(&mut d, addresses, from, 40);
    d
}

#[test]
fn an_account_on_two_of_a_fleets_proxies_each_shared_with_other_members_joins_the_fleet() {
    // The fleet deals each member two of its six proxies; this member, switched on in the
    // fleet's wave, got proxies 0 and 3: it shares the one with members 5 and 0, the other
    // with members 2 and 3, and two addresses with none of them. Read over one pair there is
    // no pool; read over the fleet, it moves between two of the fleet's homes on two ISPs.
    let d = fleet_dealt_proxies_and_one_more([PROXIES[0], PROXIES[3]], pos(7, 30));
    assert!(linked(&d, "m0", "m3"), "{:?}", d.groups());
    assert!(linked(&d, "late", "m0"), "{:?}", d.groups());
    let r = d.report("late").unwrap();
    assert_eq!(r.verdict, Verdict::Distilling, "{:?}", r.reasons);
    // The join is on the pool, and the group says so (no one pair of it shares a pool).
    let g = d.groups();
    assert_eq!(g[0].links.get("pool"), Some(&1), "{g:?}");
}

#[test]
fn an_account_behind_one_of_a_fleets_proxies_and_its_own_home_stays_apart() {
    // The same account and wave, but only one of its two addresses is the fleet's (a home
    // connection sold as a proxy is still its owner's, and the owner calls from it and from
    // the office): one address in common is no pool.
    let d = fleet_dealt_proxies_and_one_more([PROXIES[0], "145.4.71.9"], pos(7, 30));
    assert!(linked(&d, "m0", "m3"), "{:?}", d.groups());
    assert!(!linked(&d, "late", "m0"), "{:?}", d.groups());
    assert!(d.report("late").unwrap().cluster.is_none());
}

#[test]
fn a_fleet_that_forms_late_gathers_a_member_on_its_pool_that_has_gone_quiet() {
    // A member dealt proxies 0 and 3 made its seven calls an hour before the rest started,
    // and none since. The others, each on a card of its own, become one group only at their
    // third call, when their shared template is established; by then nothing new comes from
    // the quiet member to weigh it again. The fleet, as it forms, looks again at the accounts
    // alone on its pool.
    let mut d = busy_detector();
    one_more(&mut d, [PROXIES[0], PROXIES[3]], pos(3, 0), 7);
    fleet_dealt_proxies(&mut d, None, templated);
    assert!(linked(&d, "m0", "m3"), "{:?}", d.groups());
    assert!(linked(&d, "late", "m0"), "{:?}", d.groups());
}

/// Six customers chatting from `addresses` (three on each) from the stream's first minutes,
/// long before any fleet: the addresses' own residents.
fn residents(d: &mut Detector, addresses: [&str; 2]) {
    for k in 0..6 {
        let who = Who {
            ip: Some(addresses[k % 2].into()),
            ua: Some("OpenAI/Python 1.59.0".into()),
            ..Who::default()
        };
        for i in 0..3 {
            d.observe(&line(
                &format!("resident{k}"),
                2 + 6 * i + k,
                &who,
                &chat(i + k),
                512,
            ));
        }
    }
}

/// Three proxies on one ISP (one address block).
const ONE_ISP: [&str; 3] = ["24.16.25.161", "24.16.144.160", "24.16.129.208"];

/// [`pooled_fleet_with`] on [`ONE_ISP`] and one card, after [`residents`] of two of those
/// addresses where `with_residents` is set, then [`one_more`] on those two, 40 calls from 7:30.
fn one_isp_fleet_and_one_more(with_residents: bool) -> Detector {
    let mut d = busy_detector();
    if with_residents {
        residents(&mut d, [ONE_ISP[0], ONE_ISP[1]]);
    }
    pooled_fleet_on(&mut d, ONE_ISP, Some("pf_team"));
    one_more(&mut d, [ONE_ISP[0], ONE_ISP[1]], pos(7, 30), 40);
    d
}

#[test]
fn an_account_on_a_fleets_own_proxies_of_one_isp_joins_the_fleet() {
    // A fleet on one card bought three proxies of one ISP, which carry nobody else; an
    // account switched on in its wave moves between two of them. One block is no pool read
    // off a pair (a carrier's exits are in one block), but addresses that carry the fleet's
    // members and no one else are the fleet's.
    let d = one_isp_fleet_and_one_more(false);
    assert!(linked(&d, "late", "m0"), "{:?}", d.groups());
}

#[test]
fn an_account_on_one_isps_exits_that_others_use_too_stays_apart_from_a_fleet_there() {
    // The same, but the two addresses are also the exits of customers here long before the
    // fleet (a carrier's exits): the fleet's members are not all they carry.
    let d = one_isp_fleet_and_one_more(true);
    assert!(!linked(&d, "late", "m0"), "{:?}", d.groups());
}

#[test]
fn an_account_on_a_fleets_proxies_that_many_others_use_stays_apart() {
    // Proxies 0 and 3 are also the exits of many customers who were here before the fleet
    // came (residential addresses sold to many, or a carrier's exits): an account switched
    // on in the fleet's wave on those two shares them with strangers more than with the
    // fleet, and stays apart.
    let mut d = busy_detector();
    residents(&mut d, [PROXIES[0], PROXIES[3]]);
    fleet_dealt_proxies(&mut d, Some("pf_team"), untemplated);
    one_more(&mut d, [PROXIES[0], PROXIES[3]], pos(7, 30), 40);
    assert!(linked(&d, "m0", "m3"), "{:?}", d.groups());
    assert!(!linked(&d, "late", "m0"), "{:?}", d.groups());
}

#[test]
fn a_fleets_first_pair_takes_a_third_on_its_pool() {
    // Two accounts, each on a card of its own, switched on in the same minutes on proxies
    // {0, 1, 2} and {1, 2, 3}: a pool and a start together, one actor. A third, switched on
    // two hours later on proxies 0 and 3, shares one address with each and two with neither:
    // over the pair it is on the pool, and a fleet grows from its first pair.
    let mut d = busy_detector();
    let mut n = 390;
    for i in 0..40 {
        for (k, name) in ["a", "b"].into_iter().enumerate() {
            let who = Who {
                ip: Some(PROXIES[k + i % 3].into()),
                ua: Some("OpenAI/Python 1.59.0".into()),
                payment: Some(format!("pf_own_{name}")),
                ..Who::default()
            };
            d.observe(&line(name, n, &who, &untemplated(i * 2 + k), 4096));
            n += 2;
        }
    }
    assert!(linked(&d, "a", "b"), "{:?}", d.groups());
    one_more(&mut d, [PROXIES[0], PROXIES[3]], pos(6, 0), 40);
    assert!(linked(&d, "late", "a"), "{:?}", d.groups());
}

/// Two fleets of five, each paying with its own card, whose sign-ups fell in the same hour, on
/// one public step-by-step wrapper, from addresses of one /24; the second fleet's first call
/// comes `lag` rounds (five calls each) after the first fleet's.
fn two_fleets(lag: usize) -> Detector {
    two_fleets_on(lag, [None, None])
}

/// [`two_fleets`], each fleet's members sending the TLS fingerprint `builds[fleet]`.
fn two_fleets_on(lag: usize, builds: [Option<&str>; 2]) -> Detector {
    let mut d = busy_detector();
    let who = |fleet: usize, k: usize| Who {
        ip: Some(format!("203.0.113.{}", 10 + fleet * 20 + k)),
        payment: Some(format!("pf_fleet_{fleet}")),
        signup: Some(format!("2025-12-30T09:{:02}:00Z", k * 6)),
        tls: builds[fleet].map(str::to_owned),
        ..Who::default()
    };
    let mut n = 400;
    for i in 0..60 + lag {
        for fleet in 0..2 {
            let round = if fleet == 0 {
                Some(i)
            } else {
                i.checked_sub(lag)
            };
            let Some(round) = round.filter(|&r| r < 60) else {
                continue;
            };
            for k in 0..5 {
                let name = format!("fleet{fleet}_{k}");
                let prompt = cot(round * 10 + fleet * 5 + k);
                d.observe(&line(&name, n, &who(fleet, k), &prompt, 4096));
                n += 1;
            }
        }
    }
    d
}

#[test]
fn two_fleets_at_work_in_the_same_days_stay_two_groups() {
    // The second fleet starts two hours after the first. Between two groups, sign-ups in the
    // same minutes are a coincidence of two busy mornings (its chance grows with both
    // sizes), and a wrapper and a network are what strangers share: they stay apart.
    assert_the_two_fleets_apart(&two_fleets(30));
}

/// Two groups, each the five members of one fleet of [`two_fleets_on`].
fn assert_the_two_fleets_apart(d: &Detector) {
    let g = d.groups();
    assert_eq!(g.len(), 2, "{g:?}");
    for group in &g {
        assert_eq!(group.members.len(), 5, "{group:?}");
        let fleet = &group.members[0][..6];
        assert!(
            group.members.iter().all(|m| m.starts_with(fleet)),
            "{group:?}"
        );
    }
}

#[test]
fn parts_of_one_fleet_paid_with_two_cards_switched_on_in_one_wave_are_one_group() {
    // The same two card groups taking turns from one first call: one wave, one fleet.
    let d = two_fleets(0);
    let g = d.groups();
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(g[0].members.len(), 10);
}

#[test]
fn two_fleets_switched_on_in_one_wave_each_on_a_build_of_its_own_stay_two_groups() {
    // The two card groups taking turns from one first call, as above, but each running a
    // client build of its own: an operator runs its one build on every account it owns, so
    // these are two operators whose mornings coincide, and the sign-ups in the same minutes,
    // the wrapper and the network between them are no evidence.
    assert_the_two_fleets_apart(&two_fleets_on(
        0,
        [Some("t13d_own_build_a"), Some("t13d_own_build_b")],
    ));
}

#[test]
fn parts_of_one_fleet_on_one_build_paid_with_two_cards_are_one_group() {
    // The same, both card groups on the operator's one build: one fleet.
    let d = two_fleets_on(0, [Some("t13d_own_build_a"), Some("t13d_own_build_a")]);
    let g = d.groups();
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(g[0].members.len(), 10);
}
