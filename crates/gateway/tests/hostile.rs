//! Hostile clients (issue 14): the bypasses an outside probe found, each as a test that failed
//! before its fix. The gateway runs over real sockets; where the test must see what the
//! upstream received, or make the upstream fail, the upstream is a small recording server.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use common::{chat, Harness, ADMIN};
use futures_util::StreamExt;
use serde_json::{json, Value};
use store::{Limits, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that records every body it receives and answers a fixed chat completion of 100
/// tokens (with logprobs and reasoning, so stripping can be seen).
async fn recording_upstream() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |body: axum::body::Bytes| {
            let log = log.clone();
            async move {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                log.lock().unwrap().push(v);
                axum::Json(json!({
                    "id": "chatcmpl-rec", "object": "chat.completion", "model": "m",
                    "choices": [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "an answer", "reasoning_content": "thoughts"},
                        "logprobs": {"content": []}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 100, "total_tokens": 110}
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), seen)
}

async fn with_recording_upstream() -> (Harness, Arc<Mutex<Vec<Value>>>) {
    let (url, seen) = recording_upstream().await;
    let h = Harness::start(|c| c.upstreams[0].base_url = url).await;
    (h, seen)
}

async fn set_action(h: &Harness, account: &str, action: &str) {
    let r = h
        .client
        .put(h.url(&format!("/admin/accounts/{account}/override")))
        .bearer_auth(ADMIN)
        .json(&json!({"action": action, "reason": "test", "by": "tester"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn post_raw(h: &Harness, key: &str, body: &str) -> (u16, Value) {
    let r = h
        .client
        .post(h.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

const MSGS: &str = r#""model":"demo-model","messages":[{"role":"user","content":"hi"}]"#;

/// Item 1: what reaches the upstream is what the detector observes. A mistyped field is
/// refused at the edge (as OpenAI does); an integral float is normalised, then proxied,
/// logged and judged as the integer.
#[tokio::test]
async fn mistyped_fields_are_refused_at_the_edge_and_never_reach_the_upstream() {
    let (h, seen) = with_recording_upstream().await;
    let key = h.key("typist", None);
    for (field, value) in [
        ("max_tokens", r#""512""#),
        ("temperature", r#""0.7""#),
        ("stream", r#""false""#),
        ("n", r#""2""#),
        ("max_tokens", "512.5"),
        ("max_tokens", "-1"),
    ] {
        let (status, body) = post_raw(&h, &key, &format!("{{{MSGS},\"{field}\":{value}}}")).await;
        assert_eq!(status, 400, "{field}={value}: {body}");
        assert_eq!(body["error"]["param"], field, "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing refused was proxied"
    );

    let (status, _) = post_raw(&h, &key, &format!("{{{MSGS},\"max_tokens\":512.0}}")).await;
    assert_eq!(status, 200);
    let upstream_got = seen.lock().unwrap()[0].clone();
    assert!(upstream_got["max_tokens"].is_u64(), "{upstream_got}");
    // Every call, refused or served, is a line the exchange reader reads: the detector sees all.
    let logged = h.logged("typist", 7).await;
    for line in &logged {
        exchange::parse_line(line.to_string().as_bytes()).expect("the detector reads it");
    }
    let served = logged.iter().find(|l| l["status"] == 200).unwrap();
    assert_eq!(served["request"], upstream_got, "logged = proxied");
}

/// Item 2: a client's `max_tokens` near 2^64 must not wrap the token reservation.
#[tokio::test]
async fn a_huge_max_tokens_cannot_wrap_the_token_limit() {
    let (h, _seen) = with_recording_upstream().await;
    let key = h.key(
        "wrapper",
        Some(Limits {
            tpm: Some(3000),
            ..Limits::default()
        }),
    );
    let body = format!("{{{MSGS},\"max_tokens\":{}}}", u64::MAX);
    let calls = (0..60).map(|_| post_raw(&h, &key, &body));
    let results = futures_util::future::join_all(calls).await;
    let served = results.iter().filter(|(s, _)| *s == 200).count() as u64;
    let limited = results.iter().filter(|(s, _)| *s == 429).count();
    assert!(served >= 1, "one call fits the budget");
    assert_eq!(served as usize + limited, 60, "{results:?}");
    // Each served call used 110 tokens (the upstream's usage).
    assert!(
        served * 110 <= 3000,
        "{served} calls served: {} tokens against a limit of 3000",
        served * 110
    );
}

/// Item 3: with `metadata` or `hashes`, no text stays in the log or in the database file,
/// whatever shape it was sent in.
#[tokio::test]
async fn content_policies_redact_text_in_every_shape_even_in_the_database_file() {
    let (h, _seen) = with_recording_upstream().await;
    for (account, policy) in [("meta", "metadata"), ("hashed", "hashes")] {
        let r = h
            .post_account(json!({"name": account, "content": policy}))
            .await;
        assert_eq!(r.status(), 200);
        let key = h.key(account, None);
        let body = json!({
            "model": "demo-model",
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "PLAINTEXT-system-part"}]},
                {"role": "user", "content": [{"type": "text", "text": "PLAINTEXT-user-part"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "f", "arguments": "{\"q\": \"PLAINTEXT-args\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "PLAINTEXT-tool-result"}
            ],
            "tools": [{"type": "function", "function": {"name": "f", "description": "PLAINTEXT-tool-description",
                "parameters": {"type": "object"}}}],
        });
        assert_eq!(
            h.post(&key, "/v1/chat/completions", body).await.status(),
            200
        );
        // And a refused body is kept redacted too.
        let (status, _) = post_raw(&h, &key, r#"{"messages": PLAINTEXT-unparsed"#).await;
        assert_eq!(status, 400);
        h.logged(account, 2).await;
    }
    let Harness { gw, store, dir, .. } = h;
    gw.shutdown().await;
    drop(store);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            let found = bytes.windows(9).any(|w| w == b"PLAINTEXT");
            assert!(!found, "plain text in {}", path.display());
        }
    }
}

/// Item 4: `degrade` caps hold however the numbers are written, and item 8: the answer says it
/// was degraded.
#[tokio::test]
async fn degrade_caps_hold_for_every_spelling_and_the_answer_says_so() {
    let (h, seen) = with_recording_upstream().await;
    let key = h.key("capped", None);
    set_action(&h, "capped", "degrade").await;
    for extra in [
        r#""max_tokens":4096.0"#,
        r#""max_completion_tokens":4096.0"#,
        r#""max_tokens":4096,"n":4.0"#,
        r#""max_tokens":null"#,
        r#""logprobs":true,"top_logprobs":5.0"#,
    ] {
        let r = h
            .client
            .post(h.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(format!("{{{MSGS},{extra}}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{extra}");
        assert_eq!(r.headers()["x-distillguard-action"], "degrade", "{extra}");
        let said = r.headers()["x-distillguard-degraded"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: Value = r.json().await.unwrap();
        assert!(body["choices"][0].get("logprobs").is_none());
        assert!(body["choices"][0]["message"]
            .get("reasoning_content")
            .is_none());
        let got = seen.lock().unwrap().last().unwrap().clone();
        let cap = got["max_tokens"]
            .as_u64()
            .or(got["max_completion_tokens"].as_u64())
            .expect("a cap is always sent");
        assert!(cap <= 256, "{extra}: upstream got {got}");
        assert!(
            got["n"].as_u64().unwrap_or(1) <= 1,
            "{extra}: upstream got {got}"
        );
        assert!(got.get("logprobs").is_none() && got.get("top_logprobs").is_none());
        if extra.contains("4096") || extra.contains("null") {
            assert!(said.contains("=256"), "{extra}: {said}");
        }
    }
    // "4096" as a string is refused, not passed around the cap.
    let (status, _) = post_raw(&h, &key, &format!("{{{MSGS},\"max_tokens\":\"4096\"}}")).await;
    assert_eq!(status, 400);
    // An allowed account's answer carries no such header.
    let other = h.key("untouched", None);
    let r = h.post(&other, "/v1/chat/completions", chat("hi")).await;
    assert!(r.headers().get("x-distillguard-action").is_none());
}

/// Item 9: `/v1/models` refuses a blocked account; two `Authorization` headers are refused;
/// a lone surrogate is named as such.
#[tokio::test]
async fn small_holes_blocked_models_two_authorizations_and_lone_surrogates() {
    let h = Harness::start(|_| {}).await;
    let key = h.key("blocked", None);
    set_action(&h, "blocked", "block").await;
    let r = h
        .client
        .get(h.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "account_blocked"
    );

    let good = h.key("twice", None);
    for path in ["/v1/chat/completions", "/v1/models"] {
        let req = if path == "/v1/models" {
            h.client.get(h.url(path))
        } else {
            h.client.post(h.url(path)).json(&chat("hi"))
        };
        let r = req
            .header("authorization", format!("Bearer {good}"))
            .header("authorization", "Bearer dg-someone-else")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let msg = r.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(msg.contains("one Authorization header"), "{msg}");
    }
    let admin = h
        .client
        .get(h.url("/admin/accounts"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 401, "the admin API refuses two as well");

    let (status, body) = post_raw(
        &h,
        &good,
        r#"{"model":"demo-model","messages":[{"role":"user","content":"\ud800"}]}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lone UTF-16 surrogate"),
        "{body}"
    );
}

/// Item 5: an upstream that dies inside a streamed event: the client gets an error event and
/// an aborted response, never a clean end, and the log says the upstream failed.
#[tokio::test]
async fn a_stream_the_upstream_cuts_is_aborted_and_logged_as_the_upstreams_failure() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the request (headers and a small body), then answer half an event.
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                loop {
                    let n = sock.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let whole =
                    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"whole\"}}]}\n\n";
                let cut = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"CUTOFF";
                let mut out = String::from("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n");
                for part in [whole, cut] {
                    out.push_str(&format!("{:x}\r\n{part}\r\n", part.len()));
                }
                let _ = sock.write_all(out.as_bytes()).await;
                let _ = sock.flush().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                // Dropped without the final chunk: the upstream died.
            });
        }
    });
    let h = Harness::start(|c| c.upstreams[0].base_url = format!("http://{addr}/v1")).await;
    let key = h.key("streamer", None);
    let mut body = chat("tell me a story");
    body["stream"] = json!(true);
    let r = h.post(&key, "/v1/chat/completions", body).await;
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let mut text = String::new();
    let mut aborted = false;
    while let Some(part) = stream.next().await {
        match part {
            Ok(b) => text.push_str(&String::from_utf8_lossy(&b)),
            Err(_) => {
                aborted = true;
                break;
            }
        }
    }
    assert!(text.contains("\"whole\""), "{text}");
    assert!(
        !text.contains("CUTOFF"),
        "the cut event is not relayed: {text}"
    );
    assert!(text.contains("upstream_stream_failed"), "{text}");
    assert!(!text.contains("[DONE]"));
    assert!(aborted, "the response is aborted, not ended cleanly");
    let logged = h.logged("streamer", 1).await;
    assert_eq!(
        logged[0]["response"]["choices"][0]["finish_reason"],
        "upstream_error"
    );
}

/// Reads from a raw socket until it closes or `limit` passes; what was read, and whether it
/// closed.
async fn read_until_closed(sock: &mut tokio::net::TcpStream, limit: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&got).into_owned(), closed)
}

/// Item 7: authentication on the headers, before the body; a client without a key cannot hold
/// the connection by trickling a body.
#[tokio::test]
async fn a_client_without_a_key_is_refused_before_it_sends_its_body() {
    let h = Harness::start(|_| {}).await;
    let mut sock = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    sock.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{\"mo",
    )
    .await
    .unwrap();
    // The body never comes; the 401 does, and the connection is closed.
    let (answer, closed) = read_until_closed(&mut sock, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("invalid_api_key"), "{answer}");
    assert!(
        closed,
        "the connection is not kept for the rest of the body"
    );
}

/// Item 7: idle connections are closed; a connection over the cap is refused with a clear
/// answer; a body trickled past its total time is cut off with 408.
#[tokio::test]
async fn connections_are_capped_idle_ones_closed_and_trickled_bodies_cut() {
    let h = Harness::start(|c| {
        c.max_connections = 2;
        c.idle_timeout_secs = 1;
        c.body_timeout_secs = 5;
        c.body_total_timeout_secs = 1;
    })
    .await;
    let key = h.key("slow", None);
    // Two idle sockets take both slots.
    let mut a = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    let _b = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut c, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    assert!(closed);
    // The idle ones are closed after the idle timeout, which frees the slots.
    let (_, closed) = read_until_closed(&mut a, Duration::from_secs(10)).await;
    assert!(closed, "an idle connection was kept");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        h.post(&key, "/v1/chat/completions", chat("hi"))
            .await
            .status(),
        200
    );
    // An authenticated client trickling a body, a byte at a time, well within the silence
    // timeout: cut off at the total time.
    let mut t = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"
    );
    t.write_all(head.as_bytes()).await.unwrap();
    // Trickle until the answer comes, then stop writing (more bytes at a closed socket would
    // have its kernel reset the connection, which may lose the answer before it is read).
    let (mut rd, mut wr) = t.split();
    let mut first = vec![0u8; 4096];
    let mut got = 0;
    for _ in 0..40 {
        tokio::select! {
            r = rd.read(&mut first) => {
                got = r.unwrap_or(0);
                break;
            }
            _ = async {
                let _ = wr.write_all(b" ").await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            } => {}
        }
    }
    let (rest, _) = read_until_closed(&mut t, Duration::from_secs(5)).await;
    let answer = format!("{}{rest}", String::from_utf8_lossy(&first[..got]));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
}

/// Raw JSON for one field: valid, borderline and hostile spellings.
fn field() -> impl proptest::strategy::Strategy<Value = (String, String)> {
    use proptest::prelude::*;
    let count = prop_oneof![
        Just("16".to_owned()),
        Just("4096".to_owned()),
        Just("4096.0".to_owned()),
        Just("1e3".to_owned()),
        Just("\"512\"".to_owned()),
        Just("512.5".to_owned()),
        Just("-1".to_owned()),
        Just("null".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("1e300".to_owned()),
        Just("[]".to_owned()),
        (0u64..100_000).prop_map(|n| n.to_string()),
    ];
    let number = prop_oneof![
        Just("0.7".to_owned()),
        Just("1".to_owned()),
        Just("\"0.7\"".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
    ];
    let boolean = prop_oneof![
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("\"false\"".to_owned()),
        Just("0".to_owned()),
        Just("null".to_owned()),
    ];
    let content = prop_oneof![
        Just(r#""hello""#.to_owned()),
        Just(r#"[{"type":"text","text":"part"}]"#.to_owned()),
        Just(r#"{"text":"object"}"#.to_owned()),
        Just("null".to_owned()),
        Just(r#""\u00e9\ud83d\ude00""#.to_owned()),
        Just("7".to_owned()),
    ];
    let messages = prop_oneof![
        content.prop_map(|c| format!(r#"[{{"role":"user","content":{c}}}]"#)),
        Just(r#""hi""#.to_owned()),
        Just(r#"[{"content":"no role"}]"#.to_owned()),
        Just("[]".to_owned()),
    ];
    prop_oneof![
        count.clone().prop_map(|v| ("max_tokens".to_owned(), v)),
        count
            .clone()
            .prop_map(|v| ("max_completion_tokens".to_owned(), v)),
        count.clone().prop_map(|v| ("n".to_owned(), v)),
        count.prop_map(|v| ("top_logprobs".to_owned(), v)),
        number.clone().prop_map(|v| ("temperature".to_owned(), v)),
        number.prop_map(|v| ("top_p".to_owned(), v)),
        boolean.clone().prop_map(|v| ("stream".to_owned(), v)),
        boolean.prop_map(|v| ("logprobs".to_owned(), v)),
        messages.prop_map(|v| ("messages".to_owned(), v)),
        Just(("model".to_owned(), "7".to_owned())),
        Just(("logit_bias".to_owned(), r#"{"42": 5}"#.to_owned())),
        Just(("reasoning_effort".to_owned(), r#""high""#.to_owned())),
        Just(("x_unknown".to_owned(), r#"{"a":[1,"b"]}"#.to_owned())),
    ]
}

/// The differential property: for any generated body, under `allow` or `degrade`, whatever
/// the upstream receives is the logged request (with `degrade`'s rewrite applied), that
/// line reads with the detector's parser, the caps hold, and a refused body reaches nobody.
#[test]
fn what_the_upstream_receives_is_what_is_logged_and_judged() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (h, seen) = rt.block_on(with_recording_upstream());
    let allowed = h.key("allowed", None);
    let degraded = h.key("degraded", None);
    rt.block_on(set_action(&h, "degraded", "degrade"));
    let served = std::sync::atomic::AtomicUsize::new(0);
    let refused = std::sync::atomic::AtomicUsize::new(0);
    let config = ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(fields in proptest::collection::vec(field(), 0..6), degrade in any::<bool>())| {
        let mut body = String::from(r#"{"model":"demo-model""#);
        for (k, v) in &fields {
            body.push_str(&format!(",\"{k}\":{v}"));
        }
        body.push('}');
        let (account, key) = if degrade { ("degraded", &degraded) } else { ("allowed", &allowed) };
        let before = seen.lock().unwrap().len();
        let (status, id) = rt.block_on(async {
            let r = h.client.post(h.url("/v1/chat/completions")).bearer_auth(key)
                .header("content-type", "application/json").body(body.clone()).send().await.unwrap();
            let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            (status, id)
        });
        let received: Vec<Value> = seen.lock().unwrap()[before..].to_vec();
        // Committed durability: the line is in the log when the answer is back.
        let rows = h.store.exchanges(Some(account), 0, 100_000).unwrap();
        let (_, row) = rows.iter().find(|(_, e)| e.id == id).expect("every call is logged");
        let line: Value = serde_json::from_str(&row.line).unwrap();
        let parsed = exchange::parse_line(row.line.as_bytes());
        prop_assert!(parsed.is_ok(), "the detector reads every line: {}", row.line);
        if status != 200 {
            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            prop_assert!(received.is_empty(), "{body}: refused ({status}) but proxied: {received:?}");
            return Ok(());
        }
        served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        prop_assert_eq!(received.len(), 1, "{}", body);
        let got = &received[0];
        let mut expected = line["request"].clone();
        if degrade {
            respond::degrade_request(&mut expected, &gateway::Policy::default(), false).unwrap();
            prop_assert!(got["max_tokens"].as_u64().or(got["max_completion_tokens"].as_u64()).is_some_and(|m| m <= 256), "{body} -> {got}");
            prop_assert!(got["n"].as_u64().unwrap_or(1) <= 1, "{body} -> {got}");
            prop_assert!(got.get("logprobs").is_none() && got.get("top_logprobs").is_none());
        }
        if got["stream"] == json!(true) {
            // The gateway asks a stream for its usage; nothing else differs.
            expected["stream_options"]["include_usage"] = json!(true);
        }
        prop_assert_eq!(got, &expected, "{}", body);
    });
    // Not vacuous: both sides of the edge were exercised.
    let (served, refused) = (served.into_inner(), refused.into_inner());
    assert!(
        served >= 20 && refused >= 20,
        "served {served}, refused {refused}"
    );
}

/// Issue 17 item 4, a spoofing defence: the client's address is read from `X-Forwarded-For`
/// only on connections from a configured trusted proxy.
#[tokio::test]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    let spoof = |h: &Harness, key: &str| {
        h.client
            .post(h.url("/v1/chat/completions"))
            .bearer_auth(key)
            .header("x-forwarded-for", "6.6.6.6, 203.0.113.5")
            .json(&chat("hi"))
            .send()
    };
    // Nothing trusted: a client's own header changes nothing.
    let h = Harness::start(|_| {}).await;
    let key = h.key("direct", None);
    assert_eq!(spoof(&h, &key).await.unwrap().status(), 200);
    assert_eq!(h.logged("direct", 1).await[0]["ip"], "127.0.0.1");
    // Behind a trusted balancer (the test client connects from loopback): the right-most
    // forwarded address.
    let toml = r#"trusted_proxies = ["127.0.0.0/8", "::1"]"#;
    let parsed: gateway::GatewayConfig = toml::from_str(toml).unwrap();
    let h = Harness::start(|c| c.trusted_proxies = parsed.trusted_proxies).await;
    let key = h.key("balanced", None);
    assert_eq!(spoof(&h, &key).await.unwrap().status(), 200);
    assert_eq!(h.logged("balanced", 1).await[0]["ip"], "203.0.113.5");
    let bad: Result<gateway::GatewayConfig, _> = toml::from_str(r#"trusted_proxies = ["lb"]"#);
    assert!(bad
        .unwrap_err()
        .to_string()
        .contains("neither an address nor a network"));
}
