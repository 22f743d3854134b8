//! `evidence similarity` over real HTTP: a suspect that learned what we served to a group is
//! closer to it than a control, with a small permutation p-value; a suspect that never saw it
//! is not; a log without content has nothing to replay.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;

use axum::{routing::post, Json, Router};
use common::BIN;
use serde_json::{json, Value};

/// What we served for prompt `i`, and what a model that never saw it says instead.
fn served(i: usize) -> String {
    format!("Answer {i}: the tide turns twice a day because the moon pulls the oceans into two bulges, item {i}.")
}

fn fresh(i: usize, voice: &str) -> String {
    format!("{voice} reply {i}: oceans rise and fall as gravity from lunar and solar bodies varies over hours.")
}

/// An OpenAI-compatible model that answers each known prompt with `answer(i)`.
async fn model(answer: impl Fn(usize) -> String + Send + Sync + 'static) -> String {
    let prompts: Arc<HashMap<String, usize>> = Arc::new(
        (0..24)
            .map(|i| (format!("Question {i} about the tides?"), i))
            .collect(),
    );
    let answer = Arc::new(answer);
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<Value>| {
            let prompts = prompts.clone();
            let answer = answer.clone();
            async move {
                let asked = body["messages"][0]["content"].as_str().unwrap_or_default();
                let text = prompts.get(asked).map_or("I do not know.".to_owned(), |&i| answer(i));
                Json(json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// A log of `acme`'s 24 single-turn exchanges (and one of another account), with content.
fn write_log(dir: &std::path::Path, redacted: bool) -> std::path::PathBuf {
    let mut lines = String::new();
    for i in 0..25 {
        let account = if i == 24 { "globex" } else { "acme" };
        let prompt = if redacted {
            "sha256:0f chars:30".to_owned()
        } else {
            format!("Question {i} about the tides?")
        };
        let line = json!({
            "id": format!("r{i}"), "ts": "2026-03-01T00:00:00Z", "account": account,
            "endpoint": "/v1/chat/completions", "status": 200,
            "request": {"model": "m", "messages": [{"role": "user", "content": prompt}]},
            "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": served(i)}, "finish_reason": "stop"}]}
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    let path = dir.join(if redacted {
        "redacted.jsonl"
    } else {
        "log.jsonl"
    });
    std::fs::write(&path, lines).unwrap();
    path
}

fn similarity(
    log: &std::path::Path,
    suspect: &str,
    control: &str,
    out: &std::path::Path,
) -> (bool, String, Value) {
    let o = Command::new(BIN)
        .args([
            "evidence",
            "similarity",
            "--account",
            "acme",
            "--prompts",
            "20",
        ])
        .arg("--log")
        .arg(log)
        .args(["--suspect", suspect, "--control", control])
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    let report = std::fs::read_to_string(out.with_extension("json"))
        .ok()
        .map_or(Value::Null, |t| serde_json::from_str(&t).unwrap());
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        report,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspect_that_learned_our_answers_is_closer_to_them_than_a_control() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), false);
    // A student that learned what we served, word for word in part.
    let student = model(|i| format!("{} Also, {}", served(i), fresh(i, "Student"))).await;
    let control = model(|i| fresh(i, "Control")).await;
    let stranger = model(|i| fresh(i, "Stranger")).await;

    let (ok, err, r) = similarity(&log, &student, &control, &dir.path().join("student"));
    assert!(ok, "{err}");
    assert_eq!(r["pairs"], 20, "{r}");
    // The report names its data by digest: a stranger can check they hold the same log.
    let digest = r["log_sha256"].as_str().unwrap();
    assert_eq!(digest.len(), 64, "{r}");
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()), "{r}");
    let p = r["p_value"].as_f64().unwrap();
    assert!(p < 1e-3, "{r}");
    assert!(r["verdict"].as_str().unwrap().contains("more like"), "{r}");
    assert!(r["mean_similarity_suspect"].as_f64() > r["mean_similarity_control"].as_f64());
    assert!(std::fs::read_to_string(dir.path().join("student.html"))
        .unwrap()
        .contains("Served-output similarity"));
    // Only acme's prompts were replayed.
    assert!(r["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["prompt"].as_str().unwrap() != "Question 24 about the tides?"));

    let (ok, err, r) = similarity(&log, &stranger, &control, &dir.path().join("stranger"));
    assert!(ok, "{err}");
    assert!(r["p_value"].as_f64().unwrap() > 0.01, "{r}");
    assert!(
        r["verdict"].as_str().unwrap().starts_with("no evidence"),
        "{r}"
    );

    // Content off: the log keeps digests, not prompts; nothing to replay, said so.
    let redacted = write_log(dir.path(), true);
    let (ok, err, _) = similarity(&redacted, &student, &control, &dir.path().join("none"));
    assert!(!ok);
    assert!(err.contains("content on"), "{err}");
}
