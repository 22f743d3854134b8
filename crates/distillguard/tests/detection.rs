//! The detector on simulated traffic from the real corpora (`../shared/data`, or the sample
//! built into the binary on a clone without it): verdicts do not depend on names, never look
//! ahead, and separate benign customers from campaigns.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use detect::{Config, Detector, Verdict};
use exchange::Exchange;
use simulate::{simulate, Corpora, SimConfig, Simulation};

/// The development corpora beside the project, else the built-in sample (said on stderr);
/// `DISTILLGUARD_TEST_CORPORA=sample` takes the sample even where the corpora are.
fn corpora() -> Corpora {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    let sample = std::env::var("DISTILLGUARD_TEST_CORPORA").is_ok_and(|v| v == "sample");
    if dir.join("corpora").is_dir() && !sample {
        Corpora::load(&dir).expect("shared/data reads")
    } else {
        eprintln!("note: ../shared/data not found; these tests run on the built-in sample corpus");
        Corpora::sample().expect("the built-in sample reads")
    }
}

fn small_simulation(seed: u64) -> Simulation {
    let corpora = corpora();
    simulate(
        &SimConfig {
            seed,
            benign_accounts: 40,
            campaigns: Some(10),
            days: 2.0,
            ..SimConfig::default()
        },
        &corpora,
    )
}

fn run(exchanges: &[Exchange]) -> HashMap<String, detect::AccountReport> {
    let mut d = Detector::new(Config::default());
    for ex in exchanges {
        d.observe(ex);
    }
    d.reports()
        .into_iter()
        .map(|r| (r.account.clone(), r))
        .collect()
}

/// Writes `exchanges` as a JSONL log named `name` in `dir`.
fn write_log(dir: &std::path::Path, name: &str, exchanges: &[Exchange]) -> PathBuf {
    let path = dir.join(name);
    let mut text = String::new();
    for e in exchanges {
        text.push_str(&serde_json::to_string(e).unwrap());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// `distillguard scan --json ARGS`, which must succeed; its verdict lines.
fn scan_json(args: &[&std::ffi::OsStr]) -> String {
    common::run_ok(
        Command::new(common::BIN)
            .args(["scan", "--json"])
            .args(args),
    )
}

#[test]
fn verdicts_do_not_change_when_accounts_keys_and_ids_are_renamed() {
    let sim = small_simulation(11);
    let original = run(&sim.exchanges);
    let rename = |s: &str| format!("x{:016x}", detect::hash_bytes(s.as_bytes()));
    let renamed: Vec<Exchange> = sim
        .exchanges
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e.account = rename(&e.account);
            e.key = e.key.as_deref().map(rename);
            e.id = rename(&e.id);
            e
        })
        .collect();
    let after = run(&renamed);
    assert_eq!(original.len(), after.len());
    for (account, r) in &original {
        let a = &after[&rename(account)];
        assert_eq!(
            (r.verdict, r.score, &r.first_flagged),
            (a.verdict, a.score, &a.first_flagged),
            "{account}"
        );
    }
}

#[test]
fn first_flagged_needs_no_look_ahead() {
    let sim = small_simulation(12);
    let full = run(&sim.exchanges);
    let flagged: Vec<_> = full
        .values()
        .filter(|r| r.first_flagged.is_some())
        .collect();
    assert!(!flagged.is_empty(), "some campaign is flagged");
    for r in flagged.iter().take(5) {
        let at = r.first_flagged.clone().unwrap();
        // Cut the log right after the flagging exchange (its own, or a linked account's when
        // the group was flagged): the verdict must already be there, and not before it.
        let at_ms = exchange::Timestamp::parse(&at).unwrap().millis();
        let first = sim
            .exchanges
            .iter()
            .position(|e| e.ts.millis() == at_ms)
            .unwrap();
        let cut = sim
            .exchanges
            .iter()
            .rposition(|e| e.ts.millis() == at_ms)
            .unwrap();
        let partial = run(&sim.exchanges[..=cut]);
        assert_eq!(partial[&r.account].verdict, Verdict::Distilling);
        assert_eq!(
            partial[&r.account].first_flagged.as_deref(),
            Some(at.as_str())
        );
        let before = run(&sim.exchanges[..first]);
        assert_ne!(
            before.get(&r.account).map(|x| x.verdict),
            Some(Verdict::Distilling)
        );
    }
}

#[test]
fn benign_customers_are_not_flagged_and_campaigns_rank_above_them() {
    let sim = small_simulation(13);
    let reports = run(&sim.exchanges);
    let mut scored = Vec::new();
    for l in &sim.labels {
        let r = &reports[&l.account];
        if !l.is_attack() {
            assert_ne!(
                r.verdict,
                Verdict::Distilling,
                "benign {} ({}) flagged: {:?}",
                l.account,
                l.archetype,
                r.reasons
            );
        }
        scored.push((r.score, l.is_attack()));
    }
    let auroc = simulate::auroc(&scored);
    assert!(auroc > 0.95, "AUROC {auroc}");
    let caught = sim
        .labels
        .iter()
        .filter(|l| l.is_attack() && reports[&l.account].verdict == Verdict::Distilling)
        .count();
    let attacks = sim.labels.iter().filter(|l| l.is_attack()).count();
    assert!(caught * 10 >= attacks * 7, "caught {caught} of {attacks}");
}

#[test]
fn scan_of_the_written_log_equals_the_in_process_detector() {
    let sim = small_simulation(14);
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), "log.jsonl", &sim.exchanges);
    let lines = scan_json(&[path.as_os_str()]);
    let in_process = run(&sim.exchanges);
    assert_eq!(lines.lines().count(), in_process.len());
    for line in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let r = &in_process[v["account"].as_str().unwrap()];
        assert_eq!(v["verdict"], r.verdict.as_str());
        assert_eq!(v["score"].as_f64().unwrap(), r.score);
        assert_eq!(v["first_flagged"].as_str(), r.first_flagged.as_deref());
    }
}

#[test]
fn a_restored_state_goes_on_exactly_as_the_detector_that_saved_it() {
    let sim = small_simulation(15);
    let (first, rest) = sim.exchanges.split_at(sim.exchanges.len() / 2);
    let mut whole = Detector::new(Config::default());
    let mut saved = Detector::new(Config::default());
    for ex in first {
        whole.observe(ex);
        saved.observe(ex);
    }
    let bytes = saved.save_state();
    drop(saved);
    let mut restored = Detector::restore_state(Config::default(), &bytes).unwrap();
    // The restored detector reports what the saver did at the moment of saving...
    assert_eq!(restored.reports(), whole.reports());
    // ...and, fed the rest of the log, every verdict change, report and group of the one
    // that never stopped.
    for ex in rest {
        assert_eq!(restored.observe(ex), whole.observe(ex), "at {}", ex.id);
    }
    assert_eq!(restored.reports(), whole.reports());
    assert_eq!(restored.groups(), whole.groups());
    // The verdicts alone (what a restart enforces before serving) are the reports' verdicts.
    let reports = restored.reports();
    assert_eq!(restored.verdicts().count(), reports.len());
    for r in &reports {
        assert_eq!(
            restored.verdict(&r.account),
            Some(r.verdict),
            "{}",
            r.account
        );
    }
    assert!(
        whole.groups().iter().any(|g| g.members.len() > 2),
        "the test needs linked groups to mean anything"
    );

    // Bytes that are not this detector's state are refused, and the caller replays instead.
    let other = Config {
        thresholds: detect::Thresholds {
            distilling: 0.9,
            ..Default::default()
        },
        ..Config::default()
    };
    assert_eq!(
        Detector::restore_state(other, &bytes).err(),
        Some(detect::StateError::ConfigChanged)
    );
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    assert!(matches!(
        Detector::restore_state(Config::default(), &damaged),
        Err(detect::StateError::Damaged(_))
    ));
    assert_eq!(
        Detector::restore_state(Config::default(), b"{\"not\": \"a state\"}").err(),
        Some(detect::StateError::NotAState)
    );
}

#[test]
fn logs_scanned_one_after_another_with_a_state_file_equal_one_scan_of_them_all() {
    let sim = small_simulation(16);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, exchanges: &[Exchange]| write_log(dir.path(), name, exchanges);
    let (first, rest) = sim.exchanges.split_at(sim.exchanges.len() * 2 / 3);
    let (day1, day2, all) = (
        write("day1.jsonl", first),
        write("day2.jsonl", rest),
        write("all.jsonl", &sim.exchanges),
    );
    let state = dir.path().join("state.bin");
    let whole = scan_json(&[all.as_os_str()]);
    scan_json(&["--state".as_ref(), state.as_os_str(), day1.as_os_str()]);
    assert!(state.exists(), "the state was saved");
    let continued = scan_json(&["--state".as_ref(), state.as_os_str(), day2.as_os_str()]);
    assert_eq!(
        continued, whole,
        "day 1 then day 2 differs from both at once"
    );
    let only_day2 = scan_json(&[day2.as_os_str()]);
    assert_ne!(only_day2, whole, "the test needs day 1 to matter");

    // A state from another config is refused with a clear error, and not overwritten.
    let config = dir.path().join("strict.toml");
    std::fs::write(&config, "[thresholds]\ndistilling = 0.95\n").unwrap();
    let before = std::fs::read(&state).unwrap();
    let out = Command::new(common::BIN)
        .args(["scan", "--json", "--config"])
        .arg(&config)
        .arg("--state")
        .arg(&state)
        .arg(&day2)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another detector config"), "{err}");
    assert_eq!(std::fs::read(&state).unwrap(), before);
}

#[test]
fn the_table_shows_a_linked_group_as_one_row_and_why_explains_one_account() {
    let sim = small_simulation(16);
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), "log.jsonl", &sim.exchanges);
    let reports = run(&sim.exchanges);
    let table = common::run_ok(
        Command::new(common::BIN)
            .args(["scan", "--top", "1000"])
            .arg(&path),
    );
    // Every group has exactly one row, naming its size; its members have none of their own.
    let mut clusters: HashMap<&str, usize> = HashMap::new();
    for r in reports.values() {
        if let Some(c) = &r.cluster {
            *clusters.entry(c).or_default() += 1;
        }
    }
    assert!(!clusters.is_empty(), "this world links some accounts");
    for (c, n) in &clusters {
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with(c)).collect();
        assert_eq!(rows.len(), 1, "{c}: {rows:?}");
        assert!(rows[0].contains(&format!("({n} accounts)")), "{}", rows[0]);
    }
    for r in reports.values().filter(|r| r.cluster.is_some()) {
        assert!(
            !table
                .lines()
                .any(|l| l.starts_with(&format!("{} ", r.account))),
            "{} has a row of its own",
            r.account
        );
    }
    // --why explains one account, every reason with its sentence.
    let flagged = reports
        .values()
        .find(|r| r.verdict == Verdict::Distilling)
        .expect("a flagged account");
    let why = common::run_ok(
        Command::new(common::BIN)
            .args(["scan", "--why", &flagged.account])
            .arg(&path),
    );
    assert!(
        why.starts_with(&format!("why {} is distilling", flagged.account)),
        "{why}"
    );
    for reason in &flagged.reasons {
        assert!(why.contains(&reason.detail), "{why}");
    }
    let out = Command::new(common::BIN)
        .args(["scan", "--why", "no-such-account"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no account no-such-account"));
}

/// `scan --json` output as (account, verdict, score), sorted: what two readings of the same
/// traffic must agree on.
fn verdicts(out: String) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["account"].as_str().unwrap().to_owned(),
                v["verdict"].as_str().unwrap().to_owned(),
                v["score"].to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_litellm_log_of_the_same_traffic_gets_the_same_verdicts() {
    // The simulated traffic as LiteLLM would have logged it, and as an exchange log holding
    // only what LiteLLM records (no user agent, no account facts): the same verdicts, read
    // with --format litellm and with the format told line by line.
    let sim = small_simulation(17);
    let dir = tempfile::tempdir().unwrap();
    let bare: Vec<Exchange> = sim
        .exchanges
        .iter()
        .map(|e| Exchange {
            user_agent: None,
            meta: None,
            ..e.clone()
        })
        .collect();
    let exchange_log = write_log(dir.path(), "exchanges.jsonl", &bare);
    let litellm_log = dir.path().join("litellm.jsonl");
    let mut text = String::new();
    for e in &sim.exchanges {
        text.push_str(&exchange::litellm::payload_of(e).to_string());
        text.push('\n');
    }
    std::fs::write(&litellm_log, text).unwrap();
    let expected = verdicts(scan_json(&[exchange_log.as_os_str()]));
    assert!(expected.iter().any(|(_, v, _)| v == "distilling"));
    let litellm = verdicts(scan_json(&[
        std::ffi::OsStr::new("--format"),
        std::ffi::OsStr::new("litellm"),
        litellm_log.as_os_str(),
    ]));
    assert_eq!(litellm, expected);
    let auto = verdicts(scan_json(&[litellm_log.as_os_str()]));
    assert_eq!(auto, expected);
}

/// What an OpenTelemetry GenAI span records of an exchange, as the exchange it maps back to:
/// the model, messages, the parameters the conventions name, the answers with their finish
/// reasons, the usage, the client's address and user agent; not the key, the account facts,
/// logprobs, logit bias, tools offered or streaming.
fn as_otel_records(e: &Exchange) -> Exchange {
    use exchange::{Choice, Request, Response, ResponseMessage};
    Exchange {
        key: None,
        meta: None,
        latency_ms: e.latency_ms.map(f64::floor),
        request: Request {
            model: e.request.model.clone(),
            messages: e.request.messages.clone(),
            prompt: e.request.prompt.clone(),
            max_tokens: e.request.max_tokens,
            temperature: e.request.temperature,
            top_p: e.request.top_p,
            n: e.request.n,
            seed: e.request.seed,
            ..Request::default()
        },
        response: e
            .response
            .as_ref()
            .filter(|_| e.status == 200)
            .map(|r| Response {
                choices: r
                    .choices
                    .iter()
                    .map(|c| Choice {
                        index: c.index,
                        message: Some(ResponseMessage {
                            role: "assistant".into(),
                            content: c
                                .message
                                .as_ref()
                                .map(|m| m.content.clone())
                                .or_else(|| c.text.clone().map(Into::into))
                                .unwrap_or_default(),
                            reasoning_content: None,
                            tool_calls: c.message.as_ref().and_then(|m| m.tool_calls.clone()),
                        }),
                        text: None,
                        finish_reason: c.finish_reason.clone(),
                        logprobs: None,
                    })
                    .collect(),
                usage: r.usage,
                ..Response::default()
            }),
        ..e.clone()
    }
}

#[test]
fn an_otel_trace_export_of_the_same_traffic_gets_the_same_verdicts() {
    // The simulated traffic as an OpenTelemetry collector's file exporter would have written
    // its GenAI spans (a batch of spans per line, each batch with an HTTP span beside the
    // model calls), and as an exchange log holding only what those spans record: the same
    // verdicts, read with --format otel and with the format told line by line.
    let sim = small_simulation(17);
    let dir = tempfile::tempdir().unwrap();
    // The exchange id is the span's identity (trace id, span id).
    let recorded: Vec<Exchange> = sim
        .exchanges
        .iter()
        .enumerate()
        .map(|(i, e)| Exchange {
            id: format!("{:032x}-{i:016x}", 7),
            ..as_otel_records(e)
        })
        .collect();
    let exchange_log = write_log(dir.path(), "exchanges.jsonl", &recorded);
    let otel_log = dir.path().join("traces.jsonl");
    let mut text = String::new();
    for batch in recorded.chunks(40) {
        let mut spans: Vec<_> = batch.iter().map(exchange::otel::span_of).collect();
        spans.push(serde_json::json!({"traceId": "00", "spanId": "01", "name": "GET /healthz", "startTimeUnixNano": "1"}));
        // Exporters batch spans as they end, not as they start.
        spans.reverse();
        let line = serde_json::json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api-gateway"}}]},
            "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2"}, "spans": spans}],
        }]});
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(&otel_log, text).unwrap();
    let expected = verdicts(scan_json(&[exchange_log.as_os_str()]));
    assert!(expected.iter().any(|(_, v, _)| v == "distilling"));
    let otel = verdicts(scan_json(&[
        std::ffi::OsStr::new("--format"),
        std::ffi::OsStr::new("otel"),
        otel_log.as_os_str(),
    ]));
    assert_eq!(otel, expected);
    let auto = verdicts(scan_json(&[otel_log.as_os_str()]));
    assert_eq!(auto, expected);

    // The same spans with their text sent as log events instead (the openai
    // instrumentation's EVENT_ONLY mode, a collector writing the logs signal to a file of its
    // own): joined by span with --otel-logs, the same verdicts again.
    let (bare_log, logs_file) = (dir.path().join("bare.jsonl"), dir.path().join("logs.jsonl"));
    let (mut bare, mut logs) = (String::new(), String::new());
    for line in std::fs::read_to_string(&otel_log).unwrap().lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut records = Vec::new();
        for span in v["resourceSpans"][0]["scopeSpans"][0]["spans"]
            .as_array_mut()
            .unwrap()
        {
            let Some(attrs) = span["attributes"].as_array_mut() else {
                continue;
            };
            let content: Vec<_> = attrs
                .iter()
                .filter(|kv| kv["key"].as_str().unwrap().ends_with("put.messages"))
                .cloned()
                .collect();
            attrs.retain(|kv| !kv["key"].as_str().unwrap().ends_with("put.messages"));
            records.push(serde_json::json!({
                "traceId": span["traceId"], "spanId": span["spanId"],
                "eventName": "gen_ai.client.inference.operation.details",
                "attributes": content,
            }));
        }
        bare.push_str(&format!("{v}\n"));
        let export = serde_json::json!({"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "api-gateway"}}]},
            "scopeLogs": [{"logRecords": records}],
        }]});
        logs.push_str(&format!("{export}\n"));
    }
    std::fs::write(&bare_log, bare).unwrap();
    std::fs::write(&logs_file, logs).unwrap();
    let joined = verdicts(scan_json(&[
        std::ffi::OsStr::new("--otel-logs"),
        logs_file.as_os_str(),
        bare_log.as_os_str(),
    ]));
    assert_eq!(joined, expected);
    // Without the text the detector judges the shape alone, and judges differently.
    let shape_only = verdicts(scan_json(&[bare_log.as_os_str()]));
    assert_ne!(shape_only, expected);
}

#[test]
fn flagged_groups_are_shared_as_a_valid_stix_bundle_and_the_indicator_file_stays_as_it_was() {
    // A simulated world with hydra fleets: `groups --stix` writes a STIX 2.1 bundle of every
    // flagged group (identity, indicators with sightings, a report each) and `--indicators`
    // the JSON bundle it always wrote; no account name and no payment token in the clear.
    let sim = small_simulation(5);
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), "exchanges.jsonl", &sim.exchanges);
    let (stix_path, ind_path) = (dir.path().join("bundle.json"), dir.path().join("ind.json"));
    common::run_ok(
        Command::new(common::BIN)
            .args(["groups", "--producer", "Example AI", "--stix"])
            .arg(&stix_path)
            .arg("--indicators")
            .arg(&ind_path)
            .arg(&log),
    );
    let bundle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stix_path).unwrap()).unwrap();
    let indicators: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ind_path).unwrap()).unwrap();
    let groups = indicators.as_array().unwrap();
    assert!(!groups.is_empty(), "no flagged group in the world");
    assert!(groups[0]["indicators"]["ips"].is_array());
    let objects = bundle["objects"].as_array().unwrap();
    assert_eq!(bundle["type"], "bundle");
    let of = |t: &str| objects.iter().filter(|o| o["type"] == t).count();
    assert_eq!(of("report"), groups.len());
    assert_eq!(of("identity"), 1);
    assert!(of("indicator") > 0);
    assert_eq!(of("indicator"), of("sighting"));
    // Every reference points into the bundle.
    let ids: std::collections::HashSet<&str> =
        objects.iter().map(|o| o["id"].as_str().unwrap()).collect();
    for o in objects {
        for r in o["object_refs"].as_array().into_iter().flatten() {
            assert!(ids.contains(r.as_str().unwrap()), "{r}");
        }
        if let Some(r) = o["sighting_of_ref"].as_str() {
            assert!(ids.contains(r));
        }
    }
    let text = bundle.to_string();
    for g in groups {
        for m in g["members"].as_array().unwrap() {
            assert!(!text.contains(&format!("\"{}\"", m.as_str().unwrap())));
        }
        for p in g["indicators"]["payment_fingerprints"].as_array().unwrap() {
            assert!(
                !text.contains(p.as_str().unwrap()),
                "a payment token in the clear"
            );
        }
    }
    // The OASIS validator, where it is installed (CI installs it and requires this check).
    let installed = Command::new("python3")
        .args(["-c", "import stix2validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        assert!(
            std::env::var_os("DISTILLGUARD_REQUIRE_STIX_TEST").is_none(),
            "stix2-validator is required here: pip install stix2-validator"
        );
        eprintln!("SKIPPED the OASIS validation: pip install stix2-validator");
        return;
    }
    let out = Command::new("python3")
        .args(["-m", "stix2validator.scripts.stix2_validator", "--strict"])
        .arg(&stix_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stix2_validator: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn scan_html_writes_one_self_contained_page_of_the_same_verdicts() {
    let sim = small_simulation(9);
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), "exchanges.jsonl", &sim.exchanges);
    let page = dir.path().join("report.html");
    let with = scan_json(&[
        std::ffi::OsStr::new("--html"),
        page.as_os_str(),
        log.as_os_str(),
    ]);
    // The page changes nothing of the verdicts.
    assert_eq!(with, scan_json(&[log.as_os_str()]));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    // Every flagged account is detailed, with its reasons and escalations.
    for line in with.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["verdict"] == "distilling" {
            let account = v["account"].as_str().unwrap();
            assert!(
                html.contains(&format!("id=\"acct-{account}\"")),
                "{account}"
            );
            let reason = v["reasons"][0]["detail"].as_str().unwrap();
            let escaped = reason
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;");
            assert!(html.contains(&escaped), "{reason}");
        }
    }
    assert!(html.contains(" to distilling at score "));
    // Nothing is fetched from anywhere else: no script, no remote source.
    assert!(!html.contains("<script"));
    assert!(!html
        .replace("http://www.w3.org/2000/svg", "")
        .contains("http"));
}

/// A `distillguard serve` process in front of the stand-in upstream (or, with no upstream, a
/// `distillguard collect`), with a key per account of `accounts`, the log keeping full
/// content and the client's address read from X-Forwarded-For sent by this host (the
/// replaying SDK's place: a proxy in front of it). Enforcement is off, so every call is
/// answered as it was asked.
struct ServedGateway {
    child: std::process::Child,
    port: u16,
    data: PathBuf,
    keys: HashMap<String, String>,
}

impl ServedGateway {
    fn start(
        dir: &std::path::Path,
        upstream: Option<std::net::SocketAddr>,
        accounts: &[&str],
    ) -> Self {
        let name = if upstream.is_some() {
            "serve"
        } else {
            "collect"
        };
        let data = dir.join(format!("{name}-data"));
        let keys = accounts
            .iter()
            .map(|a| {
                let key = common::new_key(
                    Command::new(common::BIN)
                        .args(["keys", "create", "--account", a, "--data"])
                        .arg(&data),
                );
                (a.to_string(), key)
            })
            .collect();
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            "content = \"full\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n\
             [policy]\nsuspicious = \"allow\"\ndistilling = \"allow\"\n",
        )
        .unwrap();
        let port = testkit::free_port();
        let mut command = Command::new(common::BIN);
        command.args([name, "--listen", &format!("127.0.0.1:{port}")]);
        if let Some(upstream) = upstream {
            command
                .arg("--upstream")
                .arg(format!("http://{upstream}/v1"));
        }
        let child = command
            .arg("--data")
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .env("DISTILLGUARD_ADMIN_TOKEN", "replay-admin")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}").parse().unwrap();
        for _ in 0..500 {
            if testkit::listening(addr) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            testkit::listening(addr),
            "`distillguard {name}` did not come up"
        );
        Self {
            child,
            port,
            data,
            keys,
        }
    }

    /// Stops the gateway as an operator would (SIGTERM) and exports its log.
    fn stop_and_export(mut self, out: &std::path::Path) -> Vec<Exchange> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        common::run_ok(
            Command::new(common::BIN)
                .args(["export", "--data"])
                .arg(&self.data)
                .arg("--out")
                .arg(out),
        );
        std::fs::read_to_string(out)
            .unwrap()
            .lines()
            .map(|l| exchange::parse_line(l.as_bytes()).unwrap())
            .collect()
    }
}

/// The detector settings both sides of a replay are scanned with: a replay sends days of
/// traffic in a minute, so nothing would be sustained over clock hours.
fn replay_scan_config(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("detector.toml");
    std::fs::write(&path, "[thresholds]\nmin_active_hours = 0.0\n").unwrap();
    path
}

/// The simulated world a replay sends, as calls for `producers/replay.py`: each account's
/// first `REPLAY_CALLS_PER_ACCOUNT` calls (a real SDK takes milliseconds a call, not
/// microseconds).
fn replay_calls(dir: &std::path::Path, sim: &Simulation, chat_only: bool) -> PathBuf {
    const REPLAY_CALLS_PER_ACCOUNT: usize = 40;
    let path = dir.join("calls.jsonl");
    let mut text = String::new();
    let mut sent: HashMap<&str, usize> = HashMap::new();
    for e in &sim.exchanges {
        if chat_only && e.endpoint != "/v1/chat/completions" {
            continue;
        }
        let n = sent.entry(e.account.as_str()).or_default();
        if *n == REPLAY_CALLS_PER_ACCOUNT {
            continue;
        }
        *n += 1;
        // LiteLLM (drop_params on) does not send `reasoning_effort` to a model it judges
        // without reasoning, yet logs it among the model's parameters: its log would then say
        // what the caller asked for and the gateway's what was sent (docs/importers.md). The
        // replay compares the two on what both see.
        let body = exchange::Request {
            reasoning_effort: None,
            ..e.request.clone()
        };
        let call = serde_json::json!({
            "account": e.account,
            "ip": e.ip.as_deref().unwrap_or("198.51.100.1"),
            "endpoint": e.endpoint,
            "body": body,
        });
        text.push_str(&format!("{call}\n"));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// The replay's world, a folder, the stand-in upstream (on the runtime returned) and a gateway
/// in front of it with a key for each of the world's accounts.
fn replay_setup() -> (
    Simulation,
    tempfile::TempDir,
    tokio::runtime::Runtime,
    ServedGateway,
) {
    let sim = replay_world();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upstream = rt
        .block_on(standin::spawn("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let accounts: Vec<&str> = sim.labels.iter().map(|l| l.account.as_str()).collect();
    let gw = ServedGateway::start(dir.path(), Some(upstream), &accounts);
    (sim, dir, rt, gw)
}

fn replay_world() -> Simulation {
    simulate(
        &SimConfig {
            seed: 23,
            benign_accounts: 12,
            campaigns: Some(4),
            days: 1.0,
            ..SimConfig::default()
        },
        &corpora(),
    )
}

/// Runs `producers/replay.py MODE CALLS TARGET` against the gateway; its report line.
fn replay(mode: &str, calls: &std::path::Path, target: &str, gw: &ServedGateway) -> String {
    // The keys the calls are sent with, by account.
    let keyed = calls.with_extension("keyed.jsonl");
    let mut text = String::new();
    for line in std::fs::read_to_string(calls).unwrap().lines() {
        let mut call: serde_json::Value = serde_json::from_str(line).unwrap();
        call["key"] = serde_json::json!(gw.keys[call["account"].as_str().unwrap()]);
        text.push_str(&format!("{call}\n"));
    }
    std::fs::write(&keyed, text).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/producers/replay.py");
    let mut python = Command::new("python3");
    testkit::litellm_writer(&mut python)
        .args([script, mode])
        .arg(&keyed)
        .arg(target)
        .env("DG_BASE_URL", format!("http://127.0.0.1:{}/v1", gw.port))
        .env("DG_TOKEN", "replay-admin");
    // The instrumentation records the messages on the spans.
    let out = testkit::otel_genai_content(&mut python, "SPAN_ONLY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("OK"),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{mode} replay: {}", stdout.trim());
    stdout
}

/// The real `litellm` package (SDK mode) sends simulated traffic through the gateway: the
/// payloads its logging callbacks receive, scanned with `--format litellm`, get the verdicts
/// of the gateway's own log of the same calls (less what LiteLLM does not record: the user
/// agent, the key, the account facts). Needs `pip install litellm==1.110.2`; skipped with a
/// message without it, unless DISTILLGUARD_REQUIRE_LITELLM_TEST=1 (CI sets it).
#[test]
fn traffic_driven_through_the_real_litellm_gets_the_verdicts_of_the_gateway_log() {
    if !testkit::python_module_or_skip(
        "litellm",
        "DISTILLGUARD_REQUIRE_LITELLM_TEST",
        "pip install litellm==1.110.2",
    ) {
        return;
    }
    let (sim, dir, _upstream, gw) = replay_setup();
    let calls = replay_calls(dir.path(), &sim, false);
    let litellm_log = dir.path().join("litellm.jsonl");
    replay("litellm", &calls, litellm_log.to_str().unwrap(), &gw);
    let logged = gw.stop_and_export(&dir.path().join("gateway.jsonl"));
    let bare: Vec<Exchange> = logged
        .into_iter()
        .map(|e| Exchange {
            user_agent: None,
            key: None,
            meta: None,
            ..e
        })
        .collect();
    let gateway_log = write_log(dir.path(), "gateway-bare.jsonl", &bare);
    let config = replay_scan_config(dir.path());
    let expected = verdicts(scan_json(&[
        "--config".as_ref(),
        config.as_os_str(),
        gateway_log.as_os_str(),
    ]));
    assert!(
        expected.iter().any(|(_, v, _)| v == "distilling"),
        "{expected:?}"
    );
    let litellm = verdicts(scan_json(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--format".as_ref(),
        "litellm".as_ref(),
        litellm_log.as_os_str(),
    ]));
    assert_same_verdicts(&litellm, &expected);
}

/// The same accounts with the same verdicts, and scores within 0.05: each side stamps a
/// call with its own clock reading (the SDK as it sends, the gateway as it receives), a few
/// milliseconds apart, and the timing signals move by that much.
fn assert_same_verdicts(got: &[(String, String, String)], expected: &[(String, String, String)]) {
    let strip = |v: &[(String, String, String)]| -> Vec<(String, String)> {
        v.iter().map(|(a, v, _)| (a.clone(), v.clone())).collect()
    };
    assert_eq!(strip(got), strip(expected));
    for ((a, _, s), (_, _, t)) in got.iter().zip(expected) {
        let (s, t): (f64, f64) = (s.parse().unwrap(), t.parse().unwrap());
        assert!((s - t).abs() <= 0.05, "{a}: score {s} against {t}");
    }
}

/// The official OpenTelemetry instrumentation of the `openai` SDK traces simulated traffic
/// the SDK sends through the gateway, and exports the spans over OTLP/HTTP straight into a
/// `distillguard collect`: what the receiver logged gets the verdicts of the gateway's own
/// log of the same calls, less what the spans do not record (the key, the client's address
/// and user agent, the account facts, logprobs, tools, streaming). Needs the packages
/// pinned in `.ci/run`; skipped with a message without them, unless
/// DISTILLGUARD_REQUIRE_OTEL_TEST=1 (CI sets it).
#[test]
fn traffic_traced_by_the_real_openai_instrumentation_gets_the_verdicts_of_the_gateway_log() {
    if !testkit::python_module_or_skip(
        "opentelemetry.instrumentation.openai_v2",
        "DISTILLGUARD_REQUIRE_OTEL_TEST",
        "pip install openai opentelemetry-sdk opentelemetry-exporter-otlp-proto-http opentelemetry-instrumentation-openai-v2",
    ) {
        return;
    }
    let (sim, dir, _upstream, gw) = replay_setup();
    let receiver = ServedGateway::start(dir.path(), None, &[]);
    // The instrumentation traces chat completions (not the legacy completions endpoint).
    let calls = replay_calls(dir.path(), &sim, true);
    let traces = format!("http://127.0.0.1:{}/v1/traces", receiver.port);
    replay("otel", &calls, &traces, &gw);
    let recorded: Vec<Exchange> = gw
        .stop_and_export(&dir.path().join("gateway.jsonl"))
        .iter()
        .map(|e| {
            let mut seen = Exchange {
                ip: None,
                user_agent: None,
                ..as_otel_records(e)
            };
            // A streamed answer's usage reaches the SDK only when asked for in the stream.
            if e.request.stream == Some(true) {
                if let Some(r) = seen.response.as_mut() {
                    r.usage = None;
                }
            }
            seen
        })
        .collect();
    let gateway_log = write_log(dir.path(), "gateway-as-spans.jsonl", &recorded);
    let collected = receiver.stop_and_export(&dir.path().join("collected.jsonl"));
    assert_eq!(collected.len(), recorded.len());
    let collected_log = write_log(dir.path(), "collected-again.jsonl", &collected);
    let config = replay_scan_config(dir.path());
    let scan = |log: &std::path::Path| {
        verdicts(scan_json(&[
            "--config".as_ref(),
            config.as_os_str(),
            log.as_os_str(),
        ]))
    };
    let expected = scan(&gateway_log);
    // Forty calls an account, with no addresses or logprobs to read: the harvests are
    // watched, not yet acted on; what is compared must not be all benign.
    assert!(
        expected.iter().any(|(_, v, _)| v != "benign"),
        "{expected:?}"
    );
    assert_same_verdicts(&scan(&collected_log), &expected);
}

/// A listing's summaries (no reasons, nothing scored again) say of every account what its
/// report says: score, verdict, group, first flag, exchanges, in the same order.
#[test]
fn summaries_list_every_account_as_its_report_does() {
    for seed in [5, 17] {
        let sim = small_simulation(seed);
        let mut d = Detector::new(Config::default());
        for ex in &sim.exchanges {
            d.observe(ex);
        }
        let reports = d.reports();
        let summaries = d.summaries();
        assert_eq!(reports.len(), summaries.len());
        assert!(reports.iter().any(|r| r.cluster.is_some()));
        for (r, s) in reports.iter().zip(&summaries) {
            assert_eq!(
                (
                    &r.account,
                    r.score,
                    r.verdict,
                    &r.cluster,
                    &r.first_flagged,
                    r.exchanges
                ),
                (
                    &s.account,
                    s.score,
                    s.verdict,
                    &s.cluster,
                    &s.first_flagged,
                    s.exchanges
                ),
            );
        }
    }
}
