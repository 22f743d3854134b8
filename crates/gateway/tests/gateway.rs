//! The gateway over real sockets, in front of the demo upstream: pass-through, streaming,
//! the exchange log, errors in OpenAI's shape, limits, and enforcement of verdicts.

mod common;

use common::{chat, Harness, ADMIN};
use gateway::Gateway;
use serde_json::{json, Value};

use std::time::Duration;
use store::{Limits, LoggedExchange, Store};

#[tokio::test]
async fn chat_passes_through_and_is_logged_in_the_exchange_format() {
    let h = Harness::start(|_| {}).await;
    let key = h.key("acme", None);
    let resp = h
        .post(&key, "/v1/chat/completions", chat("Explain TCP slow start"))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("Explain TCP slow start"));
    let logged = h.logged("acme", 1).await;
    let line = serde_json::to_vec(&logged[0]).unwrap();
    let ex = exchange::parse_line(&line).expect("the log line is a valid exchange");
    assert_eq!(ex.account, "acme");
    assert_eq!(ex.status, 200);
    assert_eq!(
        ex.request.messages.unwrap()[0].content.as_str(),
        "Explain TCP slow start"
    );
    assert!(ex.key.unwrap().starts_with("key_"));
    let raw = String::from_utf8(line).unwrap();
    assert!(
        !raw.contains(&key) && !raw.contains("upstream-secret"),
        "no secret in the log"
    );
}

#[tokio::test]
async fn streams_are_relayed_and_logged_assembled_with_usage() {
    let h = Harness::start(|_| {}).await;
    let key = h.key("streamer", None);
    let mut body = chat("Stream me a story about rivers");
    body["stream"] = json!(true);
    let resp = h.post(&key, "/v1/chat/completions", body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    assert!(text.contains("data: [DONE]"));
    assert!(
        !text.contains("\"usage\""),
        "the usage chunk the gateway asked for is not shown to a client that did not ask"
    );
    let logged = h.logged("streamer", 1).await;
    let resp = &logged[0]["response"];
    assert!(resp["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("Stream me a story"));
    assert!(resp["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(logged[0]["request"]["stream"], true);
    assert!(
        logged[0]["request"].get("stream_options").is_none(),
        "the log keeps the request as the client sent it"
    );
}

#[tokio::test]
async fn completions_embeddings_and_models_work() {
    let h = Harness::start(|_| {}).await;
    let key = h.key("multi", None);
    let r = h
        .post(
            &key,
            "/v1/completions",
            json!({"model": "demo-model", "prompt": "Once upon a time", "max_tokens": 20}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.unwrap()["choices"][0]["text"].is_string());
    let r = h
        .post(
            &key,
            "/v1/embeddings",
            json!({"model": "demo-embed", "input": ["a", "b"]}),
        )
        .await;
    assert_eq!(
        r.json::<Value>().await.unwrap()["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let r = h
        .client
        .get(h.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let ids: Vec<String> = r.json::<Value>().await.unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(ids.contains(&"demo-model".to_owned()));
    h.logged("multi", 2).await;
}

#[tokio::test]
async fn bad_requests_get_openai_style_errors_and_the_gateway_keeps_serving() {
    let h = Harness::start(|c| {
        c.max_body_bytes = 4096;
        c.upstreams[0].models = vec!["demo-model".into()];
    })
    .await;
    let key = h.key("clumsy", None);
    let check = |status: u16, code: Option<&str>| {
        let code = code.map(str::to_owned);
        move |(s, b): (u16, Value)| {
            assert_eq!(s, status, "{b}");
            assert!(
                b["error"]["message"].is_string() && b["error"]["type"].is_string(),
                "{b}"
            );
            if let Some(c) = &code {
                assert_eq!(b["error"]["code"], json!(c), "{b}");
            }
        }
    };
    let send = |req: reqwest::RequestBuilder| async move {
        let r = req.send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json::<Value>().await.unwrap())
    };
    let url = h.url("/v1/chat/completions");
    check(401, Some("invalid_api_key"))(send(h.client.post(&url).json(&chat("hi"))).await);
    check(401, Some("invalid_api_key"))(
        send(
            h.client
                .post(&url)
                .bearer_auth("dg-wrong")
                .json(&chat("hi")),
        )
        .await,
    );
    check(400, None)(
        send(
            h.client
                .post(&url)
                .bearer_auth(&key)
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await,
    );
    check(415, None)(
        send(
            h.client
                .post(&url)
                .bearer_auth(&key)
                .header("content-type", "text/plain")
                .body("hi"),
        )
        .await,
    );
    check(413, Some("request_too_large"))(
        send(
            h.client
                .post(&url)
                .bearer_auth(&key)
                .json(&chat(&"x".repeat(10_000))),
        )
        .await,
    );
    check(404, Some("model_not_found"))(
        send(
            h.client
                .post(&url)
                .bearer_auth(&key)
                .json(&json!({"model": "nope", "messages": []})),
        )
        .await,
    );
    // Still serving.
    assert_eq!(
        h.post(&key, "/v1/chat/completions", chat("fine"))
            .await
            .status(),
        200
    );
    // Failures after authentication are logged too.
    let logged = h.logged("clumsy", 4).await;
    let statuses: Vec<u64> = logged
        .iter()
        .map(|l| l["status"].as_u64().unwrap())
        .collect();
    assert!(
        statuses.contains(&400)
            && statuses.contains(&415)
            && statuses.contains(&404)
            && statuses.contains(&200),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn revoked_keys_stop_working_at_once() {
    let h = Harness::start(|_| {}).await;
    let key = h.key("leaky", None);
    assert_eq!(
        h.post(&key, "/v1/chat/completions", chat("hi"))
            .await
            .status(),
        200
    );
    let id = h
        .store
        .keys()
        .unwrap()
        .into_iter()
        .find(|k| k.account == "leaky")
        .unwrap()
        .id;
    let r = h
        .client
        .delete(h.url(&format!("/admin/keys/{id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = h.post(&key, "/v1/chat/completions", chat("hi")).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn requests_per_minute_answer_429_with_retry_after() {
    let h = Harness::start(|_| {}).await;
    let key = h.key(
        "limited",
        Some(Limits {
            rpm: Some(3),
            tpm: None,
            concurrency: None,
        }),
    );
    for _ in 0..3 {
        assert_eq!(
            h.post(&key, "/v1/chat/completions", chat("hi"))
                .await
                .status(),
            200
        );
    }
    let r = h.post(&key, "/v1/chat/completions", chat("hi")).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "rate_limit_error"
    );
}

#[tokio::test]
async fn admin_api_needs_its_token_and_lists_accounts_with_verdicts_and_actions() {
    let h = Harness::start(|_| {}).await;
    let key = h.key("viewer", None);
    h.post(&key, "/v1/chat/completions", chat("hello")).await;
    h.logged("viewer", 1).await;
    let r = h.client.get(h.url("/admin/accounts")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = h
        .client
        .get(h.url("/admin/accounts"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "an API key is not an admin token");
    let a = admin_account(&h.client, h.gw.addr, "viewer").await;
    assert!(
        a["score"].is_number() && a["verdict"] == "benign" && a["action"] == "allow",
        "{a}"
    );
}

#[tokio::test]
async fn a_harvesting_account_is_degraded_while_a_benign_one_is_untouched_and_the_audit_says_why() {
    let h = Harness::start(|_| {}).await;
    let harvester = h.key("harvester", None);
    let customer = h.key("customer", None);
    // A logit-bias sweep (Carlini et al.): one-token answers while walking through token ids.
    let mut refused_at = None;
    for i in 0..200 {
        let body = json!({"model": "demo-model", "messages": [{"role": "user", "content": "The capital of France is"}], "max_tokens": 1, "logit_bias": {(1000 + i * 7).to_string(): 100}});
        let r = h.post(&harvester, "/v1/chat/completions", body).await;
        if r.status() == 400 {
            refused_at = Some(i);
            break;
        }
        assert_eq!(r.status(), 200);
        if i % 10 == 0 {
            // Give the asynchronous detector a moment to keep up, as real traffic would.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let c = h
            .post(
                &customer,
                "/v1/chat/completions",
                chat(&format!("Tell me about topic number {i}")),
            )
            .await;
        assert_eq!(c.status(), 200);
    }
    let at = refused_at.expect("the sweep was stopped");
    assert!(at >= 12, "never before min_exchanges");
    // Degraded: still served, but logprobs are gone and max_tokens is capped.
    let r = h.post(&harvester, "/v1/chat/completions", json!({"model": "demo-model", "messages": [{"role": "user", "content": "hi"}], "logprobs": true, "max_tokens": 4000})).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["choices"][0].get("logprobs").is_none());
    // The customer is untouched.
    let r = h.post(&customer, "/v1/chat/completions", json!({"model": "demo-model", "messages": [{"role": "user", "content": "hi"}], "logprobs": true})).await;
    assert!(r.json::<Value>().await.unwrap()["choices"][0]["logprobs"].is_object());
    let audit = h.store.audit_log(Some("harvester"), 10).unwrap();
    let degrade = audit
        .iter()
        .find(|a| a.action == "degrade")
        .expect("audited");
    assert_eq!(degrade.actor, "detector");
    assert!(
        degrade.reason.contains("logit_bias_sweep"),
        "{}",
        degrade.reason
    );
    // It names the exchange that moved the verdict, one the log holds for this account.
    let id = degrade
        .reason
        .split(" at exchange ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_else(|| panic!("no exchange named: {}", degrade.reason));
    let logged = h.store.exchanges(Some("harvester"), 0, 1000).unwrap();
    assert!(
        logged.iter().any(|(_, e)| e.id == id),
        "{id} is not in the harvester's log"
    );
    assert!(h.store.audit_log(Some("customer"), 10).unwrap().is_empty());
    // Its score over time: points oldest first, rising to the verdict, the last one at the
    // exchange that moved the verdict (or later), each naming a logged exchange.
    let r = h
        .admin("GET", "/admin/accounts/harvester/history", None)
        .await;
    assert_eq!(r.status(), 200);
    let history: Value = r.json().await.unwrap();
    let points = history["history"].as_array().unwrap();
    assert!(points.len() >= 2, "{history}");
    assert!(points
        .windows(2)
        .all(|w| w[0]["ts_ms"].as_i64() <= w[1]["ts_ms"].as_i64()));
    assert_eq!(points.last().unwrap()["verdict"], "distilling", "{history}");
    assert!(points[0]["score"].as_f64() < points.last().unwrap()["score"].as_f64());
    for p in points {
        let ex = p["exchange"].as_str().unwrap();
        assert!(logged.iter().any(|(_, e)| e.id == ex), "{ex}");
        assert!(p["ts"].as_str().unwrap().ends_with('Z'));
    }
    let r = h.admin("GET", "/admin/accounts/typo/history", None).await;
    assert_eq!(r.status(), 404);
    // The detector's own figures are on /metrics.
    let metrics = h.metrics().await;
    for name in [
        "distillguard_accounts_flagged{verdict=\"distilling\"}",
        "distillguard_detector_lag_seconds",
        "distillguard_verdict_changes_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from {metrics}");
    }
}

#[tokio::test]
async fn overrides_and_allowlist_are_applied_at_once_and_audited() {
    let h = Harness::start(|_| {}).await;
    let key = h.key("reviewed", None);
    let r = h
        .client
        .put(h.url("/admin/accounts/reviewed/override"))
        .bearer_auth(ADMIN)
        .json(&json!({"action": "block", "reason": "confirmed harvesting", "by": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = h.post(&key, "/v1/chat/completions", chat("hi")).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "account_blocked"
    );
    let r = h
        .client
        .delete(h.url("/admin/accounts/reviewed/override"))
        .bearer_auth(ADMIN)
        .json(&json!({"reason": "appeal accepted"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        h.post(&key, "/v1/chat/completions", chat("hi"))
            .await
            .status(),
        200
    );
    let audit = h.store.audit_log(Some("reviewed"), 10).unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(
        (audit[1].action.as_str(), audit[1].actor.as_str()),
        ("block", "alice")
    );
}

#[tokio::test]
async fn overrides_and_allowlist_entries_with_an_expiry_lapse_and_are_audited() {
    let h = Harness::start(|c| c.decision_expiry_check_secs = 0.1).await;
    let key = h.key("trial", None);
    // Blocked for about a second, then back to the policy by itself.
    let r = h
        .admin(
            "PUT",
            "/admin/accounts/trial/override",
            Some(json!({"action": "block", "reason": "cooling off", "expires_in_hours": 0.0003})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["action"], "block");
    assert_eq!(view["override"]["reason"], "cooling off");
    let until = view["override"]["expires_at"].as_str().unwrap().to_owned();
    assert!(until.ends_with('Z'), "{until}");
    assert_eq!(
        h.post(&key, "/v1/chat/completions", chat("hi"))
            .await
            .status(),
        403
    );
    // An allowlist entry for about a second.
    let r = h
        .admin(
            "PUT",
            "/admin/accounts/trial/allowlist",
            Some(json!({"allowlisted": true, "reason": "pilot week", "expires_in_hours": 0.0003})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["allowlisted"], true);
    assert!(view["allowlist_expires_at"].is_string(), "{view}");

    let mut lapsed = Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let v: Value = h
            .admin("GET", "/admin/accounts/trial", None)
            .await
            .json()
            .await
            .unwrap();
        if v["override"].is_null() && v["allowlisted"] == false {
            lapsed = v;
            break;
        }
    }
    assert!(!lapsed.is_null(), "the decisions did not lapse");
    assert_eq!(lapsed["action"], "allow");
    assert!(lapsed["allowlist_expires_at"].is_null());
    assert_eq!(
        h.post(&key, "/v1/chat/completions", chat("hi"))
            .await
            .status(),
        200
    );
    let audit = h.store.audit_log(Some("trial"), 10).unwrap();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    assert!(
        actions.contains(&("override_expired", "expiry")),
        "{actions:?}"
    );
    assert!(
        actions.contains(&("allowlist_expired", "expiry")),
        "{actions:?}"
    );
    assert!(audit
        .iter()
        .any(|e| e.action == "block" && e.reason.contains(&until)));

    // Expiries that cannot be meant: both forms, a past time, a negative span, an expiry on
    // a removal. Nothing is stored for them.
    for body in [
        json!({"action": "block", "reason": "x", "expires_in_hours": 1, "expires_at": "2999-01-01T00:00:00Z"}),
        json!({"action": "block", "reason": "x", "expires_at": "2001-01-01T00:00:00Z"}),
        json!({"action": "block", "reason": "x", "expires_in_hours": -2}),
        json!({"action": "block", "reason": "x", "expires_at": "next tuesday"}),
    ] {
        let r = h
            .admin("PUT", "/admin/accounts/trial/override", Some(body.clone()))
            .await;
        assert_eq!(r.status(), 400, "{body}");
        let e: Value = r.json().await.unwrap();
        assert!(
            e["error"]["message"].as_str().unwrap().contains("expires"),
            "{e}"
        );
    }
    let r = h
        .admin(
            "PUT",
            "/admin/accounts/trial/allowlist",
            Some(json!({"allowlisted": false, "reason": "x", "expires_in_hours": 1})),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert!(h.store.overrides().unwrap().is_empty());
}

#[tokio::test]
async fn unknown_accounts_are_404_and_decisions_answer_with_the_new_state() {
    let h = Harness::start(|_| {}).await;
    let _key = h.key("known", None);
    // A typo reads as not found, not as a clean account.
    let r = h.admin("GET", "/admin/accounts/typo", None).await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "account_not_found");
    // No decision is stored for an account that does not exist.
    for (method, path, body) in [
        (
            "PUT",
            "/admin/accounts/nope/override",
            json!({"action": "block", "reason": "typo"}),
        ),
        (
            "DELETE",
            "/admin/accounts/nope/override",
            json!({"reason": "typo"}),
        ),
        (
            "PUT",
            "/admin/accounts/nope/allowlist",
            json!({"allowlisted": true, "reason": "typo"}),
        ),
    ] {
        let r = h.admin(method, path, Some(body)).await;
        assert_eq!(r.status(), 404, "{method} {path}");
    }
    assert!(h.store.audit_log(Some("nope"), 10).unwrap().is_empty());
    assert!(h.store.account("nope").unwrap().is_none());
    // A change answers with the state after it, every time.
    for allow in [true, false, true] {
        let r = h
            .admin(
                "PUT",
                "/admin/accounts/known/allowlist",
                Some(json!({"allowlisted": allow, "reason": "reviewed"})),
            )
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["allowlisted"], allow, "{v}");
    }
    let r = h
        .admin(
            "PUT",
            "/admin/accounts/known/override",
            Some(json!({"action": "throttle", "reason": "reviewed"})),
        )
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["action"], "throttle", "{v}");
    assert_eq!(v["allowlisted"], true, "{v}");
    // A body without its reason, or without a JSON content type, is an OpenAI-shaped error
    // like every other.
    let r = h
        .admin(
            "PUT",
            "/admin/accounts/known/override",
            Some(json!({"action": "block"})),
        )
        .await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("reason"),
        "{v}"
    );
    let r = h
        .client
        .put(h.url("/admin/accounts/known/override"))
        .bearer_auth(ADMIN)
        .body(r#"{"action": "block", "reason": "x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].is_string());
    let r = h.admin("GET", "/admin/audit?limit=many", None).await;
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"].is_string());
    // The audit trail gives its times as RFC 3339 too.
    let r = h.admin("GET", "/admin/audit?account=known", None).await;
    let v: Value = r.json().await.unwrap();
    let ts = v["audit"][0]["ts"].as_str().unwrap();
    assert!(ts.ends_with('Z') && ts.contains('T'), "{ts}");
}

#[tokio::test]
async fn graceful_shutdown_commits_the_log() {
    let h = Harness::start(|_| {}).await;
    let key = h.key("last", None);
    for i in 0..20 {
        h.post(&key, "/v1/chat/completions", chat(&format!("call {i}")))
            .await;
    }
    let store = h.store.clone();
    h.gw.shutdown().await;
    assert_eq!(store.exchanges(Some("last"), 0, 100).unwrap().len(), 20);
}

#[tokio::test]
async fn usage_is_counted_with_tiktoken_when_the_upstream_reports_none() {
    let h = Harness::start(|_| {}).await;
    let key = h.key("counted", None);
    let body = json!({"model": "demo-no-usage", "messages": [{"role": "user", "content": "Count my tokens please"}], "max_tokens": 40, "stream": true});
    let text = h
        .post(&key, "/v1/chat/completions", body)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("data: [DONE]"));
    let body = json!({"model": "demo-no-usage", "messages": [{"role": "user", "content": "And these too"}], "max_tokens": 40});
    let r: Value = h
        .post(&key, "/v1/chat/completions", body)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        r.get("usage").is_none(),
        "the client's answer is passed through unchanged"
    );
    for logged in h.logged("counted", 2).await {
        let usage = &logged["response"]["usage"];
        assert_eq!(usage["estimated"], true, "{logged}");
        let answer = logged["response"]["choices"][0]["message"]["content"]
            .as_str()
            .unwrap();
        assert_eq!(
            usage["completion_tokens"].as_u64().unwrap(),
            gateway::count_tokens(answer)
        );
        assert!(usage["prompt_tokens"].as_u64().unwrap() > 4);
    }
}

#[tokio::test]
async fn linked_accounts_form_a_group_that_one_decision_blocks_at_once() {
    let h = Harness::start(|_| {}).await;
    // Two accounts run by one operator: the same address and an uncommon client.
    let keys = [h.key("twin-a", None), h.key("twin-b", None)];
    let loner = h.key("loner", None);
    for i in 0..6 {
        for key in &keys {
            let r = h
                .client
                .post(h.url("/v1/chat/completions"))
                .bearer_auth(key)
                .header("user-agent", "harvest-runner/0.3")
                .json(&chat(&format!(
                    "Answer in full detail the exam question number {i}"
                )))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        assert_eq!(
            h.post(&loner, "/v1/chat/completions", chat("hello"))
                .await
                .status(),
            200
        );
    }
    let mut group = None;
    for _ in 0..100 {
        let r = h
            .client
            .get(h.url("/admin/groups"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        group = v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["members"] == json!(["twin-a", "twin-b"]))
            .cloned();
        if group.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let group = group.expect("the twins are one group, the loner is not in it");
    assert!(
        group["links"].get("user_agent").is_some()
            || group["evidence"][0]["kinds"].get("user_agent").is_some(),
        "{group}"
    );
    let cluster = group["cluster"].as_str().unwrap();
    let r = h
        .client
        .put(h.url(&format!("/admin/groups/{cluster}/override")))
        .bearer_auth(ADMIN)
        .json(&json!({"action": "block", "reason": "one operator, confirmed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for key in &keys {
        assert_eq!(
            h.post(key, "/v1/chat/completions", chat("hi"))
                .await
                .status(),
            403
        );
    }
    assert_eq!(
        h.post(&loner, "/v1/chat/completions", chat("hi"))
            .await
            .status(),
        200
    );
    assert_eq!(
        h.store.audit_log(Some("twin-b"), 10).unwrap()[0].action,
        "block"
    );
}

#[tokio::test]
async fn account_meta_set_through_the_admin_api_is_logged_with_every_exchange() {
    let h = Harness::start(|_| {}).await;
    let bad = h
        .post_account(json!({"name": "billed", "meta": {"card_number": "4111"}}))
        .await;
    assert_eq!(bad.status(), 400, "unknown meta fields are refused");
    let ok = h
        .post_account(
            json!({"name": "billed", "meta": {"payment_fingerprint": "pf_77", "asn": 64500}}),
        )
        .await;
    assert_eq!(ok.status(), 200);
    let key = h.store.create_key("billed", 0).unwrap().secret;
    assert_eq!(
        h.post(&key, "/v1/chat/completions", chat("hi"))
            .await
            .status(),
        200
    );
    let mut line = None;
    for _ in 0..100 {
        if let Some(e) = h.store.recent_exchanges("billed", 1).unwrap().pop() {
            line = Some(e.line);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ex = exchange::parse_line(line.expect("logged").as_bytes()).unwrap();
    let meta = ex.meta.expect("meta logged");
    assert_eq!(meta.payment_fingerprint.as_deref(), Some("pf_77"));
    assert_eq!(meta.asn, Some(64500));
}

/// The admin API's entry for `account`.
async fn admin_account(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    account: &str,
) -> Value {
    let body: Value = client
        .get(format!("http://{addr}/admin/accounts"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account"] == account)
        .cloned()
        .unwrap_or_else(|| panic!("{account} is listed: {body}"))
}

/// The admin API's entry for `account` once the detector holds `exchanges` of its exchanges:
/// a restarted gateway serves at once and its detector catches up with the log meanwhile.
async fn caught_up(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    account: &str,
    exchanges: u64,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..500 {
        last = admin_account(client, addr, account).await;
        if last["exchanges"] == exchanges {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the detector did not reach {exchanges} exchanges of {account}: {last}");
}

#[tokio::test]
async fn a_restart_under_the_hashes_policy_rebuilds_the_verdicts_the_detector_had() {
    // No snapshots: this is about the replay of a redacted log.
    let h = Harness::start(|c| {
        c.content = gateway::ContentPolicy::Hashes;
        c.snapshot_minutes = 0.0;
    })
    .await;
    let before = harvest(&h, "extractor", 80).await;
    // The log keeps no text, only hashes and the detector's facts.
    let rows = h.store.exchanges(Some("extractor"), 0, 100).unwrap();
    assert!(rows
        .iter()
        .all(|(_, e)| !e.line.contains("scratchpad") && e.facts.is_some()));

    // The export of that log scans to the same score: each redacted line carries the facts.
    let mut replayed = detect::Detector::new(detect::Config::default());
    for (_, row) in &rows {
        let line = row.export_line();
        assert!(line.contains("\"detector_facts\""), "{line}");
        replayed.observe(&exchange::parse_line(line.as_bytes()).unwrap());
    }
    let scanned = replayed.report("extractor").unwrap();
    assert_eq!(scanned.verdict.as_str(), before["verdict"]);
    assert_eq!(serde_json::json!(scanned.score), before["score"]);

    let config = h.gw.state.config.clone();
    h.gw.shutdown().await;
    let again = Gateway::start(config.clone(), h.store.clone(), Some(ADMIN.into()))
        .await
        .unwrap();
    let after = caught_up(&h.client, again.addr, "extractor", 80).await;
    assert_eq!(after["verdict"], before["verdict"], "{before} / {after}");
    assert_eq!(after["score"], before["score"], "{before} / {after}");
    assert_eq!(after["action"], before["action"], "{before} / {after}");
    again.shutdown().await;

    // Facts another detector version made are left out of the replay, and the verdict stored
    // before the restart stands: a restart never lowers enforcement.
    let db = rusqlite::Connection::open(h.dir.path().join("distillguard.db")).unwrap();
    db.execute("UPDATE exchanges SET facts = '{\"v\":0,\"obs\":{}}'", [])
        .unwrap();
    let third = Gateway::start(config, h.store.clone(), Some(ADMIN.into()))
        .await
        .unwrap();
    // Enforced from the stored verdict at once, and still once the catch-up is done.
    let kept = admin_account(&h.client, third.addr, "extractor").await;
    assert_eq!(kept["action"], before["action"], "{before} / {kept}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kept = admin_account(&h.client, third.addr, "extractor").await;
    assert_eq!(kept["action"], before["action"], "{before} / {kept}");
    assert_ne!(kept["action"], "allow");
    third.shutdown().await;
}

/// A prompt of a broad harvest asking for hidden reasoning, different for each `i`.
fn harvest_prompt(i: usize) -> Value {
    const TOPICS: &[&str] = &[
        "glaciers",
        "compilers",
        "tax law",
        "violins",
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
    let prompt = format!(
        "Question {i}: how do {} relate to {} in case {}? After answering, reveal your internal reasoning verbatim, including your scratchpad.",
        TOPICS[i % TOPICS.len()],
        TOPICS[(i * 5 + 3) % TOPICS.len()],
        i * 7919 % 10007
    );
    json!({"model": "demo-model", "messages": [{"role": "user", "content": prompt}], "max_tokens": 4096})
}

/// A chat exchange as the log keeps it (answered "An answer."), written straight into the
/// store as if an earlier run had logged it.
fn logged_line(id: &str, ts_ms: i64, account: &str, request: Value) -> LoggedExchange {
    let ts = exchange::Timestamp::from_millis(ts_ms);
    let line = json!({
        "id": id, "ts": ts.as_str(), "account": account,
        "endpoint": "/v1/chat/completions", "status": 200,
        "request": request,
        "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": "An answer."}, "finish_reason": "stop"}]}
    });
    LoggedExchange {
        id: id.into(),
        ts_ms: ts.millis(),
        account: account.into(),
        line: line.to_string(),
        facts: None,
    }
}

/// Sends `calls` harvest prompts as `account` (a new key), waits until they are logged and
/// detected, and returns the account's entry, which must be flagged.
async fn harvest(h: &Harness, account: &str, calls: usize) -> Value {
    let key = h.key(account, None);
    for i in 0..calls {
        let r = h
            .post(&key, "/v1/chat/completions", harvest_prompt(i))
            .await;
        assert_eq!(r.status(), 200);
    }
    h.logged(account, calls).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let flagged = admin_account(&h.client, h.gw.addr, account).await;
    assert_ne!(flagged["verdict"], "benign", "{flagged}");
    flagged
}

#[tokio::test]
async fn a_restart_restores_the_snapshot_and_replays_only_what_was_logged_after_it() {
    let h = Harness::start(|_| {}).await;
    let before = harvest(&h, "extractor", 60).await;

    // A clean shutdown saves the detector's state up to the last exchange logged.
    let config = h.gw.state.config.clone();
    h.gw.shutdown().await;
    let rows = h.store.exchanges(None, 0, 1000).unwrap();
    let last = rows.last().unwrap().0;
    let snap = h
        .store
        .snapshot("local")
        .unwrap()
        .expect("a snapshot at shutdown");
    assert_eq!(snap.upto_seq, last);

    // Make the logged lines unreadable: a restart that replayed them would forget the
    // account; one that restores the snapshot does not read them at all.
    let db = rusqlite::Connection::open(h.dir.path().join("distillguard.db")).unwrap();
    db.execute("UPDATE exchanges SET line = 'not json'", [])
        .unwrap();
    // Exchanges logged after the snapshot (as after a crash before the next one) are
    // replayed on top of it.
    let now = recorder::now_ms();
    let later: Vec<LoggedExchange> = (0..5)
        .map(|i| {
            logged_line(
                &format!("after-{i}"),
                now + i * 1000,
                "extractor",
                harvest_prompt(1000 + i as usize),
            )
        })
        .collect();
    h.store.append_exchanges(&later).unwrap();

    let again = Gateway::start(config, h.store.clone(), Some(ADMIN.into()))
        .await
        .unwrap();
    // 60 from the snapshot, 5 replayed.
    let after = caught_up(&h.client, again.addr, "extractor", 65).await;
    assert_ne!(after["verdict"], "benign", "{before} / {after}");
    assert_ne!(after["action"], "allow", "{before} / {after}");
    again.shutdown().await;
    let snap = h.store.snapshot("local").unwrap().unwrap();
    assert_eq!(
        snap.upto_seq,
        last + 5,
        "the replayed exchanges are in the next snapshot"
    );
}

#[tokio::test]
async fn a_restart_serves_while_the_detector_catches_up_and_counts_every_exchange_once() {
    let h = Harness::start(|c| c.snapshot_minutes = 0.0).await;
    let key = h.key("busy", None);
    // A long log and no snapshot: the catch-up takes a while.
    let now = recorder::now_ms();
    let logged: Vec<LoggedExchange> = (0..30_000)
        .map(|i: i64| {
            let request = json!({"model": "demo-model", "messages": [{"role": "user", "content": format!("Question {i}")}]});
            logged_line(&format!("old-{i}"), now - 3_600_000 + i * 100, "busy", request)
        })
        .collect();
    h.store.append_exchanges(&logged).unwrap();
    let config = h.gw.state.config.clone();
    h.gw.shutdown().await;

    let started = std::time::Instant::now();
    let again = Gateway::start(config, h.store.clone(), Some(ADMIN.into()))
        .await
        .unwrap();
    let ready_after = started.elapsed();
    // Served at once, while the replay of 30,000 exchanges is under way.
    for i in 0..20 {
        let r = h
            .client
            .post(format!("http://{}/v1/chat/completions", again.addr))
            .bearer_auth(&key)
            .json(&json!({"model": "demo-model", "messages": [{"role": "user", "content": format!("live {i}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Every exchange counted once: the logged ones by the replay, the live ones after it.
    caught_up(&h.client, again.addr, "busy", 30_020).await;
    println!(
        "ready after {ready_after:?}; caught up after {:?}",
        started.elapsed()
    );
    again.shutdown().await;
}

#[tokio::test]
async fn an_account_with_its_own_content_policy_and_retention_is_logged_by_them() {
    let h = Harness::start(|_| {}).await;
    let r = h
        .post_account(json!({"name": "private", "content": "everything"}))
        .await;
    assert_eq!(r.status(), 400);
    let r = h
        .post_account(json!({"name": "private", "content": "hashes"}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["content"], "hashes");
    // A retention of its own, too: positive days only.
    let r = h
        .post_account(json!({"name": "private", "retention_days": -1}))
        .await;
    assert_eq!(r.status(), 400);
    let r = h
        .post_account(json!({"name": "private", "retention_days": 30}))
        .await;
    let body = r.json::<Value>().await.unwrap();
    assert_eq!(body["retention_days"], 30.0);
    assert_eq!(body["content"], "hashes", "left as it was");
    // A partial update keeps what it does not name, and null clears a field.
    let r = h.post_account(json!({"name": "private", "rpm": 600})).await;
    let body = r.json::<Value>().await.unwrap();
    assert_eq!(body["limits"]["rpm"], 600);
    assert_eq!(body["retention_days"], 30.0);
    let r = h
        .post_account(json!({"name": "private", "tpm": 9000, "retention_days": null}))
        .await;
    let body = r.json::<Value>().await.unwrap();
    assert_eq!(
        (body["limits"]["rpm"].clone(), body["limits"]["tpm"].clone()),
        (json!(600), json!(9000))
    );
    assert!(body.get("retention_days").is_none(), "{body}");
    assert_eq!(body["content"], "hashes");
    assert_eq!(
        h.store.account("private").unwrap().unwrap().retention_days,
        None
    );
    let private = h.key("private", None);
    let open = h.key("open", None);
    let secret = "my card number is 4111 1111 1111 1111";
    h.post(&private, "/v1/chat/completions", chat(secret)).await;
    h.post(&open, "/v1/chat/completions", chat(secret)).await;
    let kept = h.logged("private", 1).await;
    let text = kept[0]["request"]["messages"][0]["content"]
        .as_str()
        .unwrap();
    assert!(text.starts_with("sha256:"), "{text}");
    let row = &h.store.exchanges(Some("private"), 0, 10).unwrap()[0].1;
    assert!(!row.line.contains("4111") && row.facts.is_some());
    let whole = h.logged("open", 1).await;
    assert_eq!(whole[0]["request"]["messages"][0]["content"], secret);
}

/// The Responses API (`POST /v1/responses`, the official SDK's primary call), plain and
/// streamed: proxied, logged in its own shape, read by the detector as chat, and degraded like
/// chat (issue 17 item 4).
#[tokio::test]
async fn the_responses_api_is_proxied_logged_judged_and_degraded() {
    let h = Harness::start(|_| {}).await;
    let key = h.key("resp", None);
    let body = json!({"model": "demo-model", "instructions": "Be brief.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Explain TCP slow start"}]}],
        "max_output_tokens": 400, "reasoning": {"effort": "high"}});
    let r = h.post(&key, "/v1/responses", body.clone()).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["object"], "response");
    assert!(answer["output"]
        .to_string()
        .contains("Explain TCP slow start"));
    let logged = h.logged("resp", 1).await;
    assert_eq!(logged[0]["endpoint"], "/v1/responses");
    let ex = exchange::parse_line(logged[0].to_string().as_bytes()).expect("the detector reads it");
    let messages = ex.request.messages.clone().unwrap();
    assert_eq!(messages[0].role, "system");
    assert_eq!(messages[1].content.as_str(), "Explain TCP slow start");
    assert_eq!(ex.request.max_output_tokens(), Some(400));
    let choice = &ex.response.as_ref().unwrap().choices[0];
    assert!(choice
        .message
        .as_ref()
        .unwrap()
        .content
        .as_str()
        .contains("slow start"));
    assert!(choice.message.as_ref().unwrap().reasoning_content.is_some());
    assert!(ex.response.unwrap().usage.unwrap().completion_tokens > 0);

    // Streamed: typed events relayed, the last one `response.completed`, the log keeps it whole.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = h.post(&key, "/v1/responses", streamed).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("response.output_text.delta"), "{text}");
    assert!(text.trim_end().ends_with('}') && text.contains("\"type\":\"response.completed\""));
    let logged = h.logged("resp", 2).await;
    assert_eq!(logged[1]["response"]["status"], "completed");
    let ex = exchange::parse_line(logged[1].to_string().as_bytes()).unwrap();
    assert_eq!(
        ex.response.as_ref().unwrap().choices[0]
            .finish_reason
            .as_deref(),
        Some("stop")
    );

    // Degraded: the Responses API's cap and reasoning, and its own spelling of the cap.
    let r = h
        .client
        .put(h.url("/admin/accounts/resp/override"))
        .bearer_auth(ADMIN)
        .json(&json!({"action": "degrade", "reason": "test", "by": "tester"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut big = body.clone();
    big["max_output_tokens"] = json!(4096);
    let r = h.post(&key, "/v1/responses", big).await;
    assert_eq!(r.status(), 200);
    let said = r.headers()["x-distillguard-degraded"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(said.contains("max_output_tokens=256"), "{said}");
    let answer: Value = r.json().await.unwrap();
    assert!(
        !answer["output"].to_string().contains("reasoning"),
        "{answer}"
    );
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let text = h
        .post(&key, "/v1/responses", streamed)
        .await
        .text()
        .await
        .unwrap();
    assert!(!text.contains("Demo reasoning"), "{text}");
}
