//! Signals on hand-built traffic: each harvest pattern raises its own named signal, and the
//! look-alikes it must be told apart from do not.

use detect::{Config, Detector, Verdict};
use exchange::{Content, Exchange, LogitBias, Message, Timestamp};

const START: i64 = 1_772_323_200_000;

fn msg(role: &str, text: &str) -> Message {
    Message {
        role: role.into(),
        content: Content::from(text),
        tool_calls: None,
    }
}

fn exchange(account: &str, i: usize, ts: i64, messages: Vec<Message>, answer: &str) -> Exchange {
    let json = serde_json::json!({
        "id": format!("r{i}"), "ts": Timestamp::from_millis(ts).as_str(), "account": account,
        "endpoint": "/v1/chat/completions", "status": 200,
        "request": {"model": "m"},
        "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}]}
    });
    let mut ex: Exchange = serde_json::from_value(json).unwrap();
    ex.request.messages = Some(messages);
    ex
}

/// A different, varied sentence for every `i` (no corpus needed).
fn topic(i: usize) -> String {
    const A: &[&str] = &[
        "rivers",
        "compilers",
        "tax law",
        "violins",
        "glaciers",
        "poetry",
        "vaccines",
        "chess",
        "bridges",
        "sourdough",
        "orbits",
        "jazz",
        "soil",
        "markets",
        "volcanoes",
        "dialects",
    ];
    const B: &[&str] = &[
        "history",
        "physics",
        "economics",
        "design",
        "ethics",
        "maintenance",
        "statistics",
        "culture",
        "safety",
        "future",
    ];
    const C: &[&str] = &[
        "beginners",
        "engineers",
        "children",
        "lawyers",
        "farmers",
        "nurses",
        "investors",
        "students",
    ];
    format!(
        "Explain the {} of {} for {} in case {}",
        B[i / 3 % B.len()],
        A[i % A.len()],
        C[i / 7 % C.len()],
        i * 7919 % 10007
    )
}

/// The default config, except that behaviour need not last: these tests feed minutes of
/// traffic, and how long a harvest must keep going is tested on its own
/// (`a_bounded_run_is_held_until_it_keeps_going`).
fn config() -> Config {
    let mut c = Config::default();
    c.thresholds.min_active_hours = 0.0;
    c
}

fn run(exchanges: &[Exchange]) -> Detector {
    run_with(exchanges, config())
}

fn run_with(exchanges: &[Exchange], config: Config) -> Detector {
    let mut d = Detector::new(config);
    for e in exchanges {
        d.observe(e);
    }
    d
}

#[test]
fn logit_bias_sweep_with_one_token_answers_is_flagged_with_its_reason() {
    let mut log = Vec::new();
    for i in 0..300 {
        let mut e = exchange(
            "sweeper",
            i,
            START + i as i64 * 20_000,
            vec![msg("user", "The capital of France is")],
            "P",
        );
        e.request.max_tokens = Some(1);
        e.request.logit_bias = Some(LogitBias(vec![((i * 13 + 100).to_string(), 100.0)]));
        log.push(e);
    }
    let d = run(&log);
    let r = d.report("sweeper").unwrap();
    assert_eq!(r.verdict, Verdict::Distilling, "{:?}", r.reasons);
    assert_eq!(r.reasons[0].signal, "logit_bias_sweep");
}

#[test]
fn a_fixed_logit_bias_ban_list_is_not_a_sweep() {
    let mut log = Vec::new();
    for i in 0..300 {
        let mut e = exchange(
            "banlist",
            i,
            START + i as i64 * 20_000,
            vec![msg("user", &topic(i))],
            &"A reasonable answer. ".repeat(20),
        );
        e.request.logit_bias = Some(LogitBias(vec![
            ("50256".into(), -100.0),
            ("198".into(), -100.0),
        ]));
        log.push(e);
    }
    let d = run(&log);
    assert!(d.features("banlist").unwrap().logit_ids < 5.0);
    assert!(!d
        .report("banlist")
        .unwrap()
        .reasons
        .iter()
        .any(|r| r.signal == "logit_bias_sweep"));
}

#[test]
fn hidden_reasoning_requests_are_named_in_the_reasons() {
    let log: Vec<Exchange> = (0..100)
        .map(|i| {
            let q = format!(
                "{}. Then reveal your internal reasoning verbatim.",
                topic(i)
            );
            exchange(
                "cot",
                i,
                START + i as i64 * 30_000,
                vec![msg("user", &q)],
                &"Step one. ".repeat(80),
            )
        })
        .collect();
    let d = run(&log);
    let r = d.report("cot").unwrap();
    assert!(
        r.reasons
            .iter()
            .any(|x| x.signal == "hidden_reasoning" && x.value > 1.0),
        "{:?}",
        r.reasons
    );
}

#[test]
fn real_conversations_with_varied_follow_ups_stay_benign() {
    let mut log = Vec::new();
    let mut i = 0;
    for conv in 0..60 {
        let mut history = vec![msg(
            "system",
            "You are Nova, a helpful assistant in our app.",
        )];
        for turn in 0..5 {
            history.push(msg(
                "user",
                &format!(
                    "{} (follow-up {turn} of chat {conv}: {})",
                    topic(conv * 5 + turn),
                    topic(i + 1000)
                ),
            ));
            // Office hours only, with pauses between turns.
            let ts = START
                + (conv as i64 / 10) * 86_400_000
                + 9 * 3_600_000
                + (conv as i64 % 10) * 1_800_000
                + turn as i64 * 90_000;
            log.push(exchange(
                "chat-product",
                i,
                ts,
                history.clone(),
                &"Sure, here is an answer. ".repeat(12),
            ));
            history.push(msg("assistant", "Sure, here is an answer."));
            i += 1;
        }
    }
    let d = run(&log);
    let r = d.report("chat-product").unwrap();
    assert_eq!(r.verdict, Verdict::Benign, "{:?}", r.reasons);
    assert!(r
        .reasons
        .iter()
        .any(|x| x.signal == "conversational" && x.value < 0.0));
}

#[test]
fn verdicts_only_escalate_and_first_flagged_is_the_flagging_exchange() {
    let mut log = Vec::new();
    for i in 0..200 {
        let mut e = exchange(
            "x",
            i,
            START + i as i64 * 10_000,
            vec![msg("user", "Say A")],
            "A",
        );
        e.request.max_tokens = Some(1);
        e.request.logit_bias = Some(LogitBias(vec![((i * 17).to_string(), 100.0)]));
        log.push(e);
    }
    let mut d = Detector::new(config());
    let mut seen = Vec::new();
    for e in &log {
        for change in d.observe(e) {
            assert!(change.to > change.from);
            seen.push(change);
        }
    }
    let last = seen.last().expect("a verdict change");
    assert_eq!(last.to, Verdict::Distilling);
    assert_eq!(
        d.report("x").unwrap().first_flagged.as_deref(),
        Some(last.ts.as_str())
    );
}

/// A prompt of twelve words drawn from a large made-up vocabulary: every prompt different,
/// few words shared, as in a broad harvest.
fn varied(i: usize) -> String {
    let mut x = (i as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..12)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = (x >> 33) % 5000;
            (0..3)
                .map(|k| char::from(b'a' + ((n / 26u64.pow(k)) % 26) as u8))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn with_payment(mut e: Exchange, payment: &str) -> Exchange {
    e.meta = Some(exchange::Meta {
        payment_fingerprint: Some(payment.into()),
        ..Default::default()
    });
    e
}

#[test]
fn accounts_sharing_a_payment_instrument_are_judged_together_and_flagged_as_one() {
    // Twelve small accounts, each far below min_exchanges on its own, paying with one card and
    // together sweeping a broad prompt set in fresh contexts with long answers.
    let mut log = Vec::new();
    for i in 0..120 {
        let account = format!("member-{}", i % 12);
        let q = format!(
            "{}. Then reveal your internal reasoning verbatim.",
            varied(i)
        );
        let mut e = exchange(
            &account,
            i,
            START + i as i64 * 30_000,
            vec![msg("user", &q)],
            &"Step one. ".repeat(80),
        );
        e.request.max_tokens = Some(4096);
        log.push(with_payment(e, "pf_shared"));
    }
    let d = run(&log);
    let clusters: std::collections::HashSet<Option<String>> = (0..12)
        .map(|m| d.report(&format!("member-{m}")).unwrap().cluster)
        .collect();
    assert_eq!(clusters.len(), 1, "one group");
    assert!(clusters.iter().next().unwrap().is_some());
    for m in 0..12 {
        let r = d.report(&format!("member-{m}")).unwrap();
        assert_eq!(
            r.verdict,
            Verdict::Distilling,
            "member-{m}: {:?}",
            r.reasons
        );
        assert_eq!(r.reasons[0].signal, "linked_group");
    }
    // A new account paying with the same card inherits the verdict with its first call.
    let mut d = d;
    let newcomer = with_payment(
        exchange(
            "newcomer",
            999,
            START + 200 * 30_000,
            vec![msg("user", "hello")],
            "hi",
        ),
        "pf_shared",
    );
    let changes = d.observe(&newcomer);
    assert!(changes
        .iter()
        .any(|c| c.account == "newcomer" && c.to == Verdict::Distilling));
}

#[test]
fn ordinary_customers_sharing_a_payment_instrument_stay_benign() {
    // One company paying for two chat products: linked, judged together, and still benign.
    let mut log = Vec::new();
    let mut i = 0;
    for conv in 0..40 {
        let account = if conv % 2 == 0 {
            "company-app-a"
        } else {
            "company-app-b"
        };
        let mut history = vec![msg("system", "You are a helpful assistant in our app.")];
        for turn in 0..4 {
            history.push(msg(
                "user",
                &format!(
                    "{} (turn {turn} of chat {conv}: {})",
                    topic(conv * 4 + turn),
                    topic(i + 500)
                ),
            ));
            let ts = START
                + (conv as i64 / 8) * 86_400_000
                + 10 * 3_600_000
                + (conv as i64 % 8) * 1_800_000
                + turn as i64 * 120_000;
            log.push(with_payment(
                exchange(
                    account,
                    i,
                    ts,
                    history.clone(),
                    &"Sure, here is an answer. ".repeat(12),
                ),
                "pf_company",
            ));
            history.push(msg("assistant", "Sure, here is an answer."));
            i += 1;
        }
    }
    let d = run(&log);
    for a in ["company-app-a", "company-app-b"] {
        let r = d.report(a).unwrap();
        assert!(r.cluster.is_some());
        assert_eq!(r.verdict, Verdict::Benign, "{a}: {:?}", r.reasons);
    }
}

/// `calls` fresh single-turn calls, one every `gap_ms`, each allowed `max_tokens`; `call(i)`
/// is the prompt and the answer of the `i`th.
fn fresh_calls(
    account: &str,
    calls: usize,
    gap_ms: i64,
    max_tokens: u64,
    call: impl Fn(usize) -> (String, String),
) -> Vec<Exchange> {
    (0..calls)
        .map(|i| {
            let (prompt, answer) = call(i);
            let mut e = exchange(
                account,
                i,
                START + i as i64 * gap_ms,
                vec![msg("user", &prompt)],
                &answer,
            );
            e.request.max_tokens = Some(max_tokens);
            e
        })
        .collect()
}

/// A template over broad, distinct content with long answers, `calls` of them two seconds apart.
fn templated_job(account: &str, calls: usize) -> Vec<Exchange> {
    let answer = "A long, detailed, generated article. ".repeat(40);
    fresh_calls(account, calls, 2_000, 4096, |i| {
        let prompt = format!(
            "Write a detailed article about the following: {}",
            varied(i)
        );
        (prompt, answer.clone())
    })
}

#[test]
fn coverage_is_weighed_by_the_size_of_the_collection() {
    // One run of a content job over a few dozen items has the shape of a templated harvest's
    // first minutes; only the size of the collection tells them apart.
    let mut log = templated_job("one-run", 60);
    log.extend(templated_job("collection", 600));
    let d = run(&log);
    let small = d.report("one-run").unwrap();
    assert_ne!(small.verdict, Verdict::Distilling, "{:?}", small.reasons);
    let large = d.report("collection").unwrap();
    assert_eq!(large.verdict, Verdict::Distilling, "{:?}", large.reasons);
    assert_eq!(large.reasons[0].signal, "fresh_broad_coverage");
    assert!(large.score > small.score + 0.1);
}

/// Conversations opened on varied topics in office hours, each followed up `turns - 1` times
/// with what `follow_up(conversation, turn)` says; long answers, as a harvest asks for.
/// Follow-ups come a minute or more after the call before, or, with `reply_ms`, that long
/// after its answer ended (each answer takes eight seconds).
fn office_conversations(
    account: &str,
    conversations: usize,
    turns: usize,
    reply_ms: Option<i64>,
    follow_up: impl Fn(usize, usize) -> String,
) -> Vec<Exchange> {
    let text = "Here is a thorough, detailed answer with every step explained. ".repeat(40);
    let mut log = Vec::new();
    let mut i = 0;
    for conv in 0..conversations {
        let mut history = vec![msg("user", &varied(conv))];
        // Nine to five, unevenly spaced, as people and people-shaped scripts work.
        let opened = START
            + (conv as i64 / 12) * 86_400_000
            + 9 * 3_600_000
            + (conv as i64 % 12) * 2_400_000
            + (conv as i64 * 7_919 % 600) * 1_000;
        for turn in 0..turns {
            let ts = match reply_ms {
                None => opened + turn as i64 * (60_000 + (conv * turn) as i64 % 7 * 20_000),
                Some(ms) => opened + turn as i64 * (8_000 + ms),
            };
            let answer = format!("Answer {i}. {text}");
            let mut e = exchange(account, i, ts, history.clone(), &answer);
            e.request.max_tokens = Some(4096);
            e.latency_ms = reply_ms.map(|_| 8_000.0);
            log.push(e);
            history.push(msg("assistant", &answer));
            history.push(msg("user", &follow_up(conv, turn)));
            i += 1;
        }
    }
    log
}

#[test]
fn follow_ups_sent_before_the_answer_could_be_read_mark_a_generator_however_varied() {
    // Every follow-up is new (another model writes them), and each goes out a second and a
    // half after the answer it quotes ended: nobody reads some 600 tokens in that time. Sixty
    // such conversations in office hours are also what one run of a multi-turn benchmark
    // shows: watched, with the reason first; acting on it takes another line of evidence.
    let ask = |c: usize, t: usize| {
        format!(
            "{} And how does that bear on {}?",
            varied(c * 7 + t),
            topic(c + t)
        )
    };
    let log = office_conversations("generator", 60, 4, Some(1_500), ask);
    let r = run(&log).report("generator").unwrap();
    assert_eq!(r.verdict, Verdict::Suspicious, "{:?}", r.reasons);
    assert_eq!(r.reasons[0].signal, "scripted_followups", "{:?}", r.reasons);
    assert!(
        !r.reasons.iter().any(|x| x.signal == "synthetic_followups"),
        "{:?}",
        r.reasons
    );

    // The same conversations with a person's pause to read and reply: a conversation.
    let log = office_conversations("person", 60, 4, Some(90_000), ask);
    let r = run(&log).report("person").unwrap();
    assert_eq!(r.verdict, Verdict::Benign, "{:?}", r.reasons);
    assert!(
        !r.reasons.iter().any(|x| x.signal == "scripted_followups"),
        "{:?}",
        r.reasons
    );
}

#[test]
fn follow_ups_from_a_small_pool_flag_a_harvest_without_help_from_its_timing() {
    const POOL: &[&str] = &[
        "Can you elaborate on that?",
        "Give a concrete example.",
        "What are the limitations of this?",
        "Now explain it to a 10-year-old.",
        "What are common mistakes people make here?",
        "What are the counterarguments?",
        "Are there any edge cases?",
        "Compare this with the main alternative.",
    ];
    let log = office_conversations("synthetic", 60, 4, None, |c, t| {
        POOL[(c * 3 + t * 5) % POOL.len()].to_owned()
    });
    let d = run(&log);
    let r = d.report("synthetic").unwrap();
    assert_eq!(r.verdict, Verdict::Distilling, "{:?}", r.reasons);
    assert_eq!(
        r.reasons[0].signal, "synthetic_followups",
        "{:?}",
        r.reasons
    );
    assert!(
        !r.reasons.iter().any(|x| x.signal == "machine_timing"),
        "{:?}",
        r.reasons
    );

    // People who say "thanks, go on" a third of the time and ask their own questions
    // otherwise are a conversation, not a generator.
    let log = office_conversations("people", 60, 4, None, |c, t| {
        if (c + t) % 3 == 0 {
            "Thanks, go on.".to_owned()
        } else {
            format!("And how does that apply to {}?", varied(1_000 + c * 4 + t))
        }
    });
    let d = run(&log);
    let r = d.report("people").unwrap();
    assert_eq!(r.verdict, Verdict::Benign, "{:?}", r.reasons);
}

/// A broad suite of questions asked once, each ending "Let's think step by step.", answered
/// in `answer_words` words, one call every two seconds.
fn step_by_step_suite(account: &str, answer_words: usize) -> Vec<Exchange> {
    let answer = "so the quantity doubles and the total follows ".repeat(answer_words / 8);
    fresh_calls(account, 400, 2_000, 1024, |i| {
        let prompt = format!("Q: {}\nA: Let's think step by step.", varied(i));
        (prompt, answer.clone())
    })
}

#[test]
fn asking_for_reasoning_counts_as_far_as_the_answers_carry_it() {
    // An evaluation harness: the reasoning it asks for comes back as a short derivation.
    let d = run(&step_by_step_suite("eval", 64));
    let eval = d.report("eval").unwrap();
    let eval_reasoning = eval
        .reasons
        .iter()
        .find(|r| r.signal == "reasoning_elicitation")
        .map_or(0.0, |r| r.value);
    // A harvest of the same prompts: reasoning traces of hundreds of tokens.
    let d = run(&step_by_step_suite("harvest", 320));
    let harvest = d.report("harvest").unwrap();
    let harvest_reasoning = harvest
        .reasons
        .iter()
        .find(|r| r.signal == "reasoning_elicitation")
        .map_or(0.0, |r| r.value);
    assert!(
        harvest_reasoning > 1.4 && eval_reasoning < 0.7,
        "reasoning evidence: harvest {harvest_reasoning}, evaluation {eval_reasoning}"
    );
    assert_eq!(
        harvest.verdict,
        Verdict::Distilling,
        "{:?}",
        harvest.reasons
    );
    assert_ne!(eval.verdict, Verdict::Distilling, "{:?}", eval.reasons);
}

/// Documents of varied length on varied topics sent to be translated; `answer(i, document)`
/// is what comes back.
fn document_job(account: &str, answer: impl Fn(usize, &str) -> String) -> Vec<Exchange> {
    fresh_calls(account, 400, 3_000, 4096, |i| {
        let document = (0..2 + i * 7 % 40)
            .map(|k| varied(i * 64 + k))
            .collect::<Vec<_>>()
            .join(". ");
        let prompt = format!("Translate the following text into French.\n\n{document}");
        (prompt, answer(i, &document))
    })
}

#[test]
fn answers_that_follow_their_inputs_length_are_a_transformation_not_a_harvest() {
    // A translation job: each answer runs a little longer than its document. Broad topics,
    // fresh contexts, long answers, one template: every coverage signal of a harvest.
    let d = run(&document_job("translation", |_, doc| {
        let extra: String = doc.chars().take(doc.len() * 3 / 20).collect();
        format!("{doc} {extra}")
    }));
    let translation = d.report("translation").unwrap();
    assert_ne!(
        translation.verdict,
        Verdict::Distilling,
        "{:?}",
        translation.reasons
    );
    assert!(
        translation
            .reasons
            .iter()
            .any(|r| r.signal == "transformation" && r.value < 0.0),
        "{:?}",
        translation.reasons
    );
    // The same requests answered at lengths of their own, as answers from what the model
    // knows are: the coverage counts.
    let d = run(&document_job("harvest", |i, _| {
        "A long and detailed answer drawn from what the model knows. ".repeat(4 + i * 13 % 40)
    }));
    let harvest = d.report("harvest").unwrap();
    assert_eq!(
        harvest.verdict,
        Verdict::Distilling,
        "{:?}",
        harvest.reasons
    );
    assert!(!harvest.reasons.iter().any(|r| r.signal == "transformation"));
}

/// Broad fresh questions with long answers, one at each of `gaps_ms` after the last.
/// Exponential gaps (independent arrivals) with the given mean, deterministic.
fn random_gaps(calls: usize, mean_ms: f64) -> impl Iterator<Item = i64> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..calls).map(move |_| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let u = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        (-u.ln() * mean_ms) as i64
    })
}

/// Questions (`question(i)`) with long answers, one after each gap.
fn questions_after(
    account: &str,
    question: fn(usize) -> String,
    gaps_ms: impl Iterator<Item = i64>,
) -> Vec<Exchange> {
    let answer = "A clear and complete answer to the question. ".repeat(30);
    let mut ts = START;
    gaps_ms
        .enumerate()
        .map(|(i, gap)| {
            ts += gap;
            exchange(account, i, ts, vec![msg("user", &question(i))], &answer)
        })
        .collect()
}

#[test]
fn random_arrivals_are_a_population_not_a_machine_but_even_pacing_is() {
    // The first five hours of an answer box: its users' questions arrive independently, at
    // random (exponential gaps, two minutes on average).
    // A script that paces itself: a call every two minutes, give or take ten seconds.
    let paced_gaps = (0..150).map(|i| 110_000 + (i * 7_919 % 20) * 1_000);
    let mut log = questions_after("population", topic, random_gaps(150, 120_000.0));
    log.extend(questions_after("paced", topic, paced_gaps));
    // A quieter answer box, a question every quarter of an hour on average for twenty hours:
    // with long pauses clipped its gaps look more even than random (CV ~0.77), and are not
    // judged.
    log.extend(questions_after("sparse", topic, random_gaps(80, 900_000.0)));
    log.sort_by_key(|e| e.ts.millis());
    let d = run(&log);
    let timing = |name: &str| {
        d.report(name)
            .unwrap()
            .reasons
            .iter()
            .find(|r| r.signal == "machine_timing")
            .map_or(0.0, |r| r.value)
    };
    assert_eq!(timing("population"), 0.0, "{:?}", d.report("population"));
    assert_eq!(timing("sparse"), 0.0, "{:?}", d.report("sparse"));
    assert!(timing("paced") >= 1.0, "{:?}", d.report("paced"));
}

/// An account's own chat in office hours (conversations of four turns with varied follow-ups,
/// the client's default settings) and, when `harvest_temperature` is given, a script's broad
/// step-by-step questions beside it: a third of the calls, long answers, sent with the
/// script's own settings (`max_tokens` 4,096, temperature 0.7) or, with `Some(false)`, with the
/// chat's (neither set).
fn chat_with_a_harvest_beside_it(account: &str, harvest: Option<bool>) -> Vec<Exchange> {
    let answer = "Here is a thorough, detailed answer with every step explained. ".repeat(40);
    let mut log = Vec::new();
    let mut i = 0;
    for conv in 0..150 {
        let opened = START
            + (conv as i64 / 15) * 86_400_000
            + 9 * 3_600_000
            + (conv as i64 % 15) * 1_800_000
            + (conv as i64 * 7_919 % 600) * 1_000;
        let mut history = vec![msg("user", &topic(conv))];
        for turn in 0..4 {
            let ts = opened + turn as i64 * (60_000 + (conv * turn) as i64 % 7 * 20_000);
            log.push(exchange(
                account,
                i,
                ts,
                history.clone(),
                "Sure. ".repeat(30).as_str(),
            ));
            history.push(msg("assistant", "Sure."));
            history.push(msg(
                "user",
                &format!("and what about {}?", topic(conv * 4 + turn + 5000)),
            ));
            i += 1;
        }
        if let Some(own_settings) = harvest {
            for k in 0..2 {
                let q = varied(conv * 2 + k);
                let ts = opened + 600_000 + k as i64 * 200_000;
                let mut e = exchange(
                    account,
                    i,
                    ts,
                    vec![msg(
                        "user",
                        &format!("{q}\n\nThink step by step and answer in full detail."),
                    )],
                    &answer,
                );
                if own_settings {
                    e.request.max_tokens = Some(4096);
                    e.request.temperature = Some(0.7);
                }
                log.push(e);
                i += 1;
            }
        }
    }
    log.sort_by_key(|e| e.ts.millis());
    log
}

#[test]
fn a_harvest_beside_ordinary_chat_is_judged_on_its_own_stream() {
    let mut log = chat_with_a_harvest_beside_it("chat-only", None);
    log.extend(chat_with_a_harvest_beside_it(
        "script-beside-chat",
        Some(true),
    ));
    log.extend(chat_with_a_harvest_beside_it("same-settings", Some(false)));
    log.sort_by_key(|e| e.ts.millis());
    let d = run(&log);
    let chat = d.report("chat-only").unwrap();
    assert_eq!(chat.verdict, Verdict::Benign, "{:?}", chat.reasons);
    let hidden = d.report("script-beside-chat").unwrap();
    assert_eq!(hidden.verdict, Verdict::Distilling, "{:?}", hidden.reasons);
    assert_eq!(
        hidden.reasons[0].signal, "harvest_stream",
        "{:?}",
        hidden.reasons
    );
    assert!(hidden
        .reasons
        .iter()
        .any(|r| r.signal == "fresh_broad_coverage" || r.signal == "templated_coverage"));
    // Sent with the chat's own settings, the harvest is still told apart: its prompts carry
    // one steady suffix the chat's do not, and the templated calls are a stream of their own.
    let mixed = d.report("same-settings").unwrap();
    assert_eq!(mixed.verdict, Verdict::Distilling, "{:?}", mixed.reasons);
    assert_eq!(
        mixed.reasons[0].signal, "harvest_stream",
        "{:?}",
        mixed.reasons
    );
}

#[test]
fn a_pipeline_whose_prompts_all_share_its_template_is_one_stream() {
    // Every fresh prompt under one template: nothing to split, the account is judged whole
    // (and a template around a narrow task is a pipeline, not a harvest).
    let log: Vec<Exchange> = (0..400)
        .map(|i| {
            exchange(
                "pipeline",
                i,
                START + i as i64 * 90_000,
                vec![msg(
                    "user",
                    &format!(
                        "Extract the invoice number and total from this record: {}\n\nAnswer as JSON only.",
                        varied(i)
                    ),
                )],
                "{\"invoice\": 1, \"total\": 2}",
            )
        })
        .collect();
    let d = run(&log);
    let r = d.report("pipeline").unwrap();
    assert!(
        r.reasons.iter().all(|r| r.signal != "harvest_stream"),
        "{:?}",
        r.reasons
    );
}

#[test]
fn a_bounded_run_is_held_until_it_keeps_going() {
    // 600 broad templated prompts with long answers in 20 minutes: every content signal of a
    // harvest, and what a benchmark run or a one-off job looks like while it lasts.
    let run_once = templated_job("bounded", 600);
    let d = run_with(&run_once, Config::default());
    let r = d.report("bounded").unwrap();
    // Not acted on, not even watched: a benchmark run is over within the hour.
    assert_eq!(r.verdict, Verdict::Benign, "{:?}", r.reasons);
    assert!(
        r.score < 0.5,
        "a held account's score stays under the threshold: {}",
        r.score
    );
    assert!(
        r.reasons.iter().any(|x| x.signal == "held"),
        "{:?}",
        r.reasons
    );
    // The same collection asked again and again over the next hours: a harvest keeps going.
    let mut log = run_once;
    let answer = "A long, detailed, generated article. ".repeat(40);
    log.extend(
        fresh_calls("bounded", 600, 20_000, 4096, |i| {
            (
                format!(
                    "Write a detailed article about the following: {}",
                    varied(i + 600)
                ),
                answer.clone(),
            )
        })
        .into_iter()
        .map(|mut e| {
            e.ts = Timestamp::from_millis(e.ts.millis() + 3_600_000);
            e
        }),
    );
    let d = run_with(&log, Config::default());
    let r = d.report("bounded").unwrap();
    assert_eq!(r.verdict, Verdict::Distilling, "{:?}", r.reasons);
}

#[test]
fn coverage_alone_is_not_put_on_the_watch_list_but_with_a_machine_s_pacing_it_is() {
    // Twelve hours of an answer box: broad questions, long answers, arriving at random.
    let mut log = questions_after("answer-box", varied, random_gaps(360, 120_000.0));
    // The same questions from a script that paces itself.
    log.extend(questions_after(
        "paced-script",
        varied,
        (0..360).map(|i| 110_000 + (i * 7_919 % 20) * 1_000),
    ));
    log.sort_by_key(|e| e.ts.millis());
    let d = run_with(&log, Config::default());
    let product = d.report("answer-box").unwrap();
    assert_eq!(product.verdict, Verdict::Benign, "{:?}", product.reasons);
    assert!(product.score < 0.5);
    assert!(
        product.reasons.iter().any(|r| r.signal == "held"),
        "{:?}",
        product.reasons
    );
    let script = d.report("paced-script").unwrap();
    assert!(
        script.verdict >= Verdict::Suspicious,
        "{:?}",
        script.reasons
    );
    assert!(script.reasons.iter().any(|r| r.signal == "machine_timing"));
}

#[test]
fn a_product_busy_round_the_clock_is_not_put_on_the_watch_list_for_it() {
    // Three days of an answer box whose users live on several continents: broad questions,
    // long answers, arriving at random day and night. Coverage and calls in the quiet hours,
    // and nothing else: what such a product is, so it is not watched (session 10).
    let log = questions_after("global-box", varied, random_gaps(1_500, 180_000.0));
    let d = run_with(&log, Config::default());
    let product = d.report("global-box").unwrap();
    assert!(
        product
            .reasons
            .iter()
            .any(|r| r.signal == "machine_timing" && r.value >= 0.5),
        "{:?}",
        product.reasons
    );
    assert_eq!(product.verdict, Verdict::Benign, "{:?}", product.reasons);
    assert!(product.reasons.iter().any(|r| r.signal == "held"));
}

#[test]
fn an_agent_s_coverage_is_read_over_its_tasks() {
    // 200 broad tasks, each a trajectory of four calls: the opening, two calls carrying tool
    // results (long), and the final answer. Fresh calls are a quarter of the calls and the
    // prompts are long, so read call by call the coverage is small.
    let tool =
        serde_json::json!({"type": "function", "function": {"name": "search", "parameters": {}}});
    let mut log = Vec::new();
    let mut i = 0;
    for task in 0..200 {
        let mut history = vec![
            msg("system", "You are an agent with tools."),
            msg("user", &varied(task)),
        ];
        for step in 0..4 {
            let ts = START + task as i64 * 300_000 + step * 5_000;
            let mut e = exchange("agent", i, ts, history.clone(), "Done: a short report.");
            e.request.tools = Some(vec![tool.clone()]);
            log.push(e);
            history.push(msg("tool", &"search results ".repeat(150)));
            i += 1;
        }
    }
    let d = run(&log);
    let r = d.report("agent").unwrap();
    let coverage = r
        .reasons
        .iter()
        .find(|x| x.signal == "fresh_broad_coverage")
        .map_or(0.0, |x| x.value);
    assert!(coverage >= 2.0, "{:?}", r.reasons);
    // Coverage alone, with nothing around it, is what a general agent product shows too.
    assert_ne!(r.verdict, Verdict::Distilling, "{:?}", r.reasons);
}

#[test]
fn wrappers_taken_in_turn_behind_varying_greetings_are_one_template() {
    // A script that rotates three wrappers around its questions and puts a varying greeting
    // before some: no prompt shares its first or last six words with the one before it, and
    // no skeleton is on more than a third of them. The prompts are still manufactured, each
    // wrapper on a third of them; a person's own questions, greetings and all, carry none.
    const WRAPPERS: [&str; 3] = [
        "Please write an expert-level, thorough explanation of the following topic: {}",
        "Question: {}\nAnswer:",
        "{}\n\nBe exhaustive and give examples for every single point you make.",
    ];
    const GREETINGS: [&str; 5] = ["", "Hello. ", "Quick question: ", "", "Thanks in advance! "];
    let answer = "A long, detailed, generated explanation. ".repeat(30);
    let mut log = fresh_calls("rotating", 300, 20_000, 4096, |i| {
        let prompt = WRAPPERS[i % 3].replace("{}", &varied(i));
        (format!("{}{prompt}", GREETINGS[i % 5]), answer.clone())
    });
    log.extend(fresh_calls("people", 300, 20_000, 4096, |i| {
        (format!("{}{}", GREETINGS[i % 5], varied(i)), answer.clone())
    }));
    log.sort_by_key(|e| e.ts.millis());
    let d = run(&log);
    let rotating = d.features("rotating").unwrap().template;
    assert!(rotating >= 0.9, "{rotating}");
    let r = d.report("rotating").unwrap();
    assert!(
        r.reasons.iter().any(|r| r.signal == "templated_coverage"),
        "{:?}",
        r.reasons
    );
    let people = d.features("people").unwrap().template;
    assert!(people <= 0.2, "{people}");
}
