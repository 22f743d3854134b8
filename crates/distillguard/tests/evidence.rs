//! End to end, with the real model: the built-in engine behind the gateway marks an answer
//! with the calling account's key; the gateway's log names the key (never the key itself);
//! `evidence detect` finds the mark with that account's key and not with another's.
//!
//! Built with `--features engine`; skipped, saying so, when the model file is absent (CI
//! fetches it and sets DISTILLGUARD_REQUIRE_MODEL).
#![cfg(feature = "engine")]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{new_key, run_ok, BIN};

const SECRET: &str = "an evidence test master secret, 32b";

/// Kills the child when the test ends, passing or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_healthy(client: &reqwest::Client, port: u16) {
    for _ in 0..600 {
        let up = client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await;
        if up.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing came up on port {port}");
}

fn evidence(model: &PathBuf, args: &[&str], text: &PathBuf) -> serde_json::Value {
    let out = run_ok(
        Command::new(BIN)
            .args(["evidence", "detect"])
            .args(args)
            .arg(text)
            .env("DISTILLGUARD_WATERMARK_SECRET", SECRET)
            .env("DISTILLGUARD_MODEL", model),
    );
    serde_json::from_str(&out).unwrap()
}

/// The engine marking answers per account, behind a gateway that names the account: keys for
/// `acme` and `globex` in the store at `data`.
struct MarkingGateway {
    _engine: Killed,
    _gateway: Killed,
    port: u16,
    /// The engine's own port: its admin endpoint (token `ENGINE_ADMIN`) tests keys.
    engine_port: u16,
    acme_key: String,
}

const ENGINE_ADMIN: &str = "engine admin token";

impl MarkingGateway {
    async fn start(model: &PathBuf, data: &std::path::Path) -> Self {
        let key = new_key(
            Command::new(BIN)
                .args(["keys", "create", "--account", "acme", "--data"])
                .arg(data),
        );
        new_key(
            Command::new(BIN)
                .args(["keys", "create", "--account", "globex", "--data"])
                .arg(data),
        );
        let (engine_port, gateway_port) = (testkit::free_port(), testkit::free_port());
        let engine = Killed(
            Command::new(BIN)
                .args(["engine", "--listen", &format!("127.0.0.1:{engine_port}")])
                .env("DISTILLGUARD_MODEL", model)
                .env("DISTILLGUARD_WATERMARK_SECRET", SECRET)
                .env("DISTILLGUARD_ADMIN_TOKEN", ENGINE_ADMIN)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let gateway = Killed(
            Command::new(BIN)
                .args([
                    "serve",
                    "--listen",
                    &format!("127.0.0.1:{gateway_port}"),
                    "--engine",
                    &format!("http://127.0.0.1:{engine_port}/v1"),
                    "--data",
                ])
                .arg(data)
                .env("DISTILLGUARD_ADMIN_TOKEN", "t")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let client = reqwest::Client::new();
        wait_healthy(&client, engine_port).await;
        wait_healthy(&client, gateway_port).await;
        Self {
            _engine: engine,
            _gateway: gateway,
            port: gateway_port,
            engine_port,
            acme_key: key,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marked_answer_through_the_gateway_is_found_with_its_accounts_key_only() {
    let Some(model) = testkit::model_file() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let served = MarkingGateway::start(&model, &data).await;
    let (key, gateway_port) = (served.acme_key.clone(), served.port);
    let client = reqwest::Client::new();

    let body = serde_json::json!({
        "model": "smollm2", "max_tokens": 200, "temperature": 1.0, "seed": 11,
        "messages": [{"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."}],
    });
    let resp = client
        .post(format!(
            "http://127.0.0.1:{gateway_port}/v1/chat/completions"
        ))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    let answer = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = data.join("answer.txt");
    std::fs::write(&text, &answer).unwrap();

    // The log names the key that marked the answer, and holds nothing of the secret.
    let logged = run_ok(Command::new(BIN).args(["export", "--data"]).arg(&data));
    let line: serde_json::Value = serde_json::from_str(logged.lines().last().unwrap()).unwrap();
    let named = line["watermark"].as_str().expect("the log names the mark");
    assert!(
        named.starts_with("wm1-") && named.contains("scheme=kgw"),
        "{named}"
    );
    assert!(!logged.contains(SECRET));
    let key_id = named.split(';').next().unwrap();

    let found = evidence(&model, &["--account", "acme"], &text);
    assert!(
        found["p_value"].as_f64().unwrap() < 1e-3,
        "{found}\n{answer}"
    );
    assert_eq!(found["key_id"], key_id);
    let other = evidence(&model, &["--account", "globex"], &text);
    assert!(other["p_value"].as_f64().unwrap() > 1e-3, "{other}");
    // The key id in the log leads back to the account.
    let data_arg = data.to_string_lossy().into_owned();
    let by_id = evidence(&model, &["--key-id", key_id, "--data", &data_arg], &text);
    assert_eq!(by_id["account"], "acme");
    // The log's whole `watermark` field: key id and scheme, as the engine marked.
    let as_logged = evidence(&model, &["--watermark", named, "--data", &data_arg], &text);
    assert_eq!(as_logged["account"], "acme");
    assert_eq!(as_logged["p_value"], found["p_value"]);
    // Whose answer leaked? Every account of the store tested, Bonferroni: acme's, alone.
    let all = evidence(&model, &["--all-accounts", "--data", &data_arg], &text);
    assert_eq!(all["tests"], 2);
    assert_eq!(all["marked"], serde_json::json!(["acme"]), "{all}");
    assert_eq!(all["results"][0]["account"], "acme");

    // The same question asked of the engine, where the secret lives: admin only.
    let admin = format!(
        "http://127.0.0.1:{}/admin/watermark/detect",
        served.engine_port
    );
    let question = serde_json::json!({"text": answer, "accounts": ["globex", "acme"]});
    let asked = client
        .post(&admin)
        .bearer_auth(ENGINE_ADMIN)
        .json(&question)
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 200);
    let online: serde_json::Value = asked.json().await.unwrap();
    assert_eq!(online["marked"], serde_json::json!(["acme"]), "{online}");
    assert_eq!(online["results"][0]["account"], "acme");
    assert_eq!(online["results"][0]["key_id"], key_id);
    assert_eq!(
        online["results"][0]["p_value"],
        all["results"][0]["p_value"]
    );
    for (token, status) in [(None, 401), (Some("wrong"), 401)] {
        let mut req = client.post(&admin).json(&question);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let denied = req.send().await.unwrap();
        assert_eq!(denied.status(), status);
        let e: serde_json::Value = denied.json().await.unwrap();
        assert!(e["error"]["message"].is_string(), "{e}");
    }
    let bad = client
        .post(&admin)
        .bearer_auth(ENGINE_ADMIN)
        .json(&serde_json::json!({"text": answer}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[test]
fn the_demo_ends_with_marked_answers_found_with_their_accounts_key() {
    let Some(model) = testkit::model_file() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(
        Command::new(BIN)
            .args(["demo", "--accounts", "4", "--per-account", "5", "--out"])
            .arg(dir.path())
            .env("DISTILLGUARD_MODEL", &model),
    );
    let answers: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("with novelist's key"))
        .collect();
    assert_eq!(answers.len(), 3, "{out}");
    // "… with novelist's key p = 1.2e-9; with another account's key p = 4.1e-1" (or "too short").
    let p_after = |line: &str, marker: &str| -> Option<f64> {
        let rest = line.split(marker).nth(1)?.strip_prefix("p = ")?;
        rest.split(';').next()?.trim().parse().ok()
    };
    let found = answers
        .iter()
        .filter(|l| p_after(l, "with novelist's key ").is_some_and(|p| p < 1e-3))
        .count();
    assert!(found >= 2, "{out}");
    let wrongly = answers
        .iter()
        .filter(|l| p_after(l, "another account's key ").is_some_and(|p| p < 1e-3))
        .count();
    assert_eq!(wrongly, 0, "{out}");
}

/// `evidence probe` against a suspect that serves our marked text (a reseller of acme's
/// answers, the strongest case of a model that learned from them): acme's key is found, globex's
/// and the control keys are not; against a suspect that never saw our engine (the stand-in
/// upstream), no key is found. The report is written as JSON and HTML.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_finds_the_key_of_the_account_a_suspect_learned_from_and_no_other() {
    let Some(model) = testkit::model_file() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let served = MarkingGateway::start(&model, dir.path()).await;
    let probe = |suspect: String, key: Option<&str>, out: &str, extra: &[&std::ffi::OsStr]| {
        let mut c = Command::new(BIN);
        c.args(["evidence", "probe", "--suspect", &suspect])
            .args(extra)
            .args([
                "--account",
                "acme,globex",
                "--prompts",
                "3",
                "--max-tokens",
                "120",
            ])
            .arg("--out")
            .arg(dir.path().join(out))
            .env("DISTILLGUARD_WATERMARK_SECRET", SECRET)
            .env("DISTILLGUARD_MODEL", &model);
        if let Some(k) = key {
            c.env("DISTILLGUARD_SUSPECT_KEY", k);
        }
        run_ok(&mut c);
        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(format!("{out}.json"))).unwrap(),
        )
        .unwrap();
        let html = std::fs::read_to_string(dir.path().join(format!("{out}.html"))).unwrap();
        assert!(html.contains("Evidence report") && html.contains("control 1"));
        report
    };
    let suspect = format!("http://127.0.0.1:{}/v1", served.port);
    // The probe runs as a child process and waits for it: the suspects live in other
    // processes, or on this runtime's other worker.
    let report = probe(suspect.clone(), Some(&served.acme_key), "reseller", &[]);
    let keys = report["keys"].as_array().unwrap();
    assert_eq!(keys[0]["account"], "acme");
    assert_eq!(keys[0]["marked"], true, "{report}");
    assert_eq!(keys[1]["marked"], false, "{report}");
    let level = report["level_per_key"].as_f64().unwrap();
    for c in report["controls"].as_array().unwrap() {
        assert!(c["p_value"].as_f64().unwrap() > level, "{c}");
    }

    // A model that never saw our engine: nothing found.
    let rt_upstream = standin::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let stranger = format!("http://{rt_upstream}/v1");
    let report = probe(stranger.clone(), None, "stranger", &[]);
    for k in report["keys"].as_array().unwrap() {
        assert_eq!(k["marked"], false, "{report}");
    }
    assert!(report["filter"].is_null(), "{report}");

    // Within the windows of what we served to acme (the reseller's answers above, read back
    // from the gateway's log) that public text uses far less: the reseller is still found,
    // the stranger still is not.
    let log = dir.path().join("served.jsonl");
    let exported = run_ok(
        Command::new(BIN)
            .arg("export")
            .arg("--data")
            .arg(dir.path()),
    );
    std::fs::write(&log, exported).unwrap();
    let within: [&std::ffi::OsStr; 4] = [
        "--served".as_ref(),
        log.as_os_str(),
        "--reference-texts".as_ref(),
        "1000".as_ref(),
    ];
    let report = probe(stranger, None, "stranger-within", &within);
    assert!(
        report["filter"]["answers"].as_u64().unwrap() >= 3,
        "{report}"
    );
    assert!(
        report["filter"]["windows"].as_u64().unwrap() > 10,
        "{report}"
    );
    assert_eq!(report["filter"]["reference"]["texts"], 1000, "{report}");
    for k in report["keys"].as_array().unwrap() {
        assert_eq!(k["marked"], false, "{report}");
        assert!(k["filtered"].as_u64().unwrap() > 0, "{k}");
    }
    let report = probe(suspect, Some(&served.acme_key), "reseller-within", &within);
    let keys = report["keys"].as_array().unwrap();
    assert_eq!(keys[0]["marked"], true, "{report}");
    assert_eq!(keys[1]["marked"], false, "{report}");
}

/// A suspect that fails its first call, refuses its second, stalls past the timeout on its
/// third and answers the rest, always with the same words about itself; or, `broken`, fails
/// every call.
async fn unreliable_suspect(broken: bool) -> u16 {
    use axum::{http::StatusCode, routing::post, Json, Router};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let say = |text: &str| {
                    (
                        StatusCode::OK,
                        Json(serde_json::json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})),
                    )
                };
                match (broken, n) {
                    (true, _) | (false, 0) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        Json(serde_json::json!({"error": {"message": "overloaded"}})),
                    ),
                    (false, 1) => say("I'm sorry, but I can't help with that."),
                    (false, 2) => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        say("too late")
                    }
                    _ => say("I am SmolLM2, a small model trained by Hugging Face. Here is a long answer about lighthouses, storms and the sea."),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// A suspect is not ours to trust: its errors, refusals and stalls are counted and named, the
/// rest is still scored, the identity answers are quoted with the names of ours they mention,
/// and the report is written even when nothing answered (the command then fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_counts_what_an_unreliable_suspect_does_and_still_reports() {
    let Some(model) = testkit::model_file() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let probe = |port: u16, out: &str| {
        let output = Command::new(BIN)
            .args([
                "evidence",
                "probe",
                "--account",
                "acme",
                "--prompts",
                "4",
                "--timeout",
                "1",
            ])
            .arg("--suspect")
            .arg(format!("http://127.0.0.1:{port}/v1"))
            .arg("--out")
            .arg(dir.path().join(out))
            .env("DISTILLGUARD_WATERMARK_SECRET", SECRET)
            .env("DISTILLGUARD_MODEL", &model)
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(format!("{out}.json"))).unwrap(),
        )
        .unwrap();
        let html = std::fs::read_to_string(dir.path().join(format!("{out}.html"))).unwrap();
        assert!(html.contains("Identity probes"), "{html}");
        (output.status.success(), report)
    };

    let (ok, report) = probe(unreliable_suspect(false).await, "unreliable");
    assert!(ok, "{report}");
    let calls = &report["suspect_calls"];
    // Four test questions and five identity probes.
    assert_eq!(calls["asked"], 9, "{report}");
    assert_eq!(calls["answered"], 6, "{report}");
    assert_eq!(calls["refused"], 1, "{report}");
    assert_eq!(calls["errors"], 1, "{report}");
    assert_eq!(calls["timeouts"], 1, "{report}");
    assert!(
        calls["first_errors"][0].as_str().unwrap().contains("500"),
        "{report}"
    );
    let answers = report["answers"].as_array().unwrap();
    let outcomes: Vec<&str> = answers
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["error", "refused", "timeout", "answered"]);
    // Only the answer is scored.
    assert_eq!(answers[1]["tokens"], 0);
    assert!(answers[3]["tokens"].as_u64().unwrap() > 0);
    let identity = report["identity"]["answers"].as_array().unwrap();
    assert_eq!(identity.len(), 5);
    assert_eq!(
        identity[0]["mentions"],
        serde_json::json!(["SmolLM", "Hugging Face"])
    );

    let (ok, report) = probe(unreliable_suspect(true).await, "broken");
    assert!(!ok, "nothing answered, yet the probe succeeded: {report}");
    assert_eq!(report["suspect_calls"]["errors"], 9, "{report}");
    assert!(
        report["verdict"]
            .as_str()
            .unwrap()
            .contains("nothing to judge"),
        "{report}"
    );
}

/// `--served` with a log that holds no answer of the accounts tested (empty, or kept with
/// content off) has nothing to filter on: the probe says so and stops before asking the
/// suspect (the address below answers nothing).
#[test]
fn a_probe_within_a_log_with_no_served_answer_says_why() {
    let Some(model) = testkit::model_file() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("empty.jsonl");
    std::fs::write(&log, "").unwrap();
    let o = Command::new(BIN)
        .args(["evidence", "probe", "--suspect", "http://127.0.0.1:9/v1"])
        .args(["--account", "acme", "--over-represented", "0"])
        .arg("--served")
        .arg(&log)
        .arg("--out")
        .arg(dir.path().join("none"))
        .env("DISTILLGUARD_WATERMARK_SECRET", SECRET)
        .env("DISTILLGUARD_MODEL", &model)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("holds no answer served to acme"), "{err}");
    assert!(
        !dir.path().join("none.json").exists(),
        "no report without a test"
    );
}
