//! The OTLP/HTTP trace receiver (`POST /v1/traces`) over real sockets: OTLP/JSON and
//! protobuf (gzip) bodies become exchanges in the log and the detector, what cannot be mapped
//! is counted back to the exporter, and the route takes the admin token.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Harness, ADMIN};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::{json, Value};
use store::Store;

const START_NS: u64 = 1_772_323_200_000_000_000;

fn kv(key: &str, value: Value) -> Value {
    let v = match value {
        Value::String(s) => json!({"stringValue": s}),
        Value::Number(n) => json!({"intValue": n.to_string()}),
        other => other,
    };
    json!({"key": key, "value": v})
}

fn json_span(i: u64, account: &str, prompt: &str) -> Value {
    let input =
        json!([{"role": "user", "parts": [{"type": "text", "content": prompt}]}]).to_string();
    json!({
        "traceId": format!("{i:032x}"), "spanId": format!("{i:016x}"), "name": "chat demo-model",
        "startTimeUnixNano": (START_NS + i * 1_000_000_000).to_string(),
        "endTimeUnixNano": (START_NS + i * 1_000_000_000 + 500_000_000).to_string(),
        "attributes": [
            kv("gen_ai.operation.name", json!("chat")),
            kv("gen_ai.request.model", json!("demo-model")),
            kv("gen_ai.response.id", json!(format!("chatcmpl-json-{i}"))),
            kv("gen_ai.usage.input_tokens", json!(9)),
            kv("gen_ai.usage.output_tokens", json!(120)),
            kv("gen_ai.input.messages", json!(input)),
            kv("user.id", json!(account)),
            kv("client.address", json!("198.51.100.4")),
        ],
    })
}

fn export(spans: Vec<Value>) -> Value {
    json!({"resourceSpans": [{
        "resource": {"attributes": [kv("service.name", json!("their-gateway"))]},
        "scopeSpans": [{"spans": spans}],
    }]})
}

async fn post_traces(
    h: &Harness,
    token: Option<&str>,
    content_type: &str,
    gzip: bool,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut req = h
        .client
        .post(h.url("/v1/traces"))
        .header("content-type", content_type);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let body = if gzip {
        req = req.header("content-encoding", "gzip");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&body).unwrap();
        enc.finish().unwrap()
    } else {
        body
    };
    req.body(body).send().await.unwrap()
}

#[tokio::test]
async fn otlp_json_spans_become_exchanges_and_what_cannot_be_mapped_is_counted_back() {
    let h = Harness::start(|_| {}).await;
    let mut no_start = json_span(9, "traced-acct", "lost");
    no_start
        .as_object_mut()
        .unwrap()
        .remove("startTimeUnixNano");
    let http = json!({"traceId": "01", "spanId": "02", "name": "GET /", "startTimeUnixNano": "1", "attributes": []});
    let body = export(vec![
        json_span(2, "traced-acct", "What is entropy?"),
        http,
        json_span(1, "traced-acct", "Define enthalpy."),
        no_start,
    ]);
    let bytes = serde_json::to_vec(&body).unwrap();

    // Without the admin token nothing is taken.
    let r = post_traces(&h, None, "application/json", false, bytes.clone()).await;
    assert_eq!(r.status(), 401);
    let r = post_traces(
        &h,
        Some("not-the-token"),
        "application/json",
        false,
        bytes.clone(),
    )
    .await;
    assert_eq!(r.status(), 401);
    assert!(h
        .store
        .exchanges(Some("traced-acct"), 0, 10)
        .unwrap()
        .is_empty());

    let r = post_traces(
        &h,
        Some(ADMIN),
        "application/json; charset=utf-8",
        false,
        bytes,
    )
    .await;
    assert_eq!(r.status(), 200);
    let reply: Value = r.json().await.unwrap();
    assert_eq!(reply["partialSuccess"]["rejectedSpans"], "1");
    assert!(
        reply["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("startTimeUnixNano"),
        "{reply}"
    );
    // The two model calls, logged in the order they started, as exchanges.
    let logged = h.logged("traced-acct", 2).await;
    assert_eq!(logged.len(), 2);
    assert_eq!(logged[0]["id"], format!("{:032x}-{:016x}", 1, 1));
    assert_eq!(logged[1]["id"], format!("{:032x}-{:016x}", 2, 2));
    assert_eq!(logged[0]["ip"], "198.51.100.4");
    assert_eq!(
        logged[1]["request"]["messages"][0]["content"],
        "What is entropy?"
    );
    assert_eq!(logged[1]["response"]["usage"]["completion_tokens"], 120);

    // An exporter that sends the same batch again (a retry after a lost answer) adds
    // nothing: the log keeps each span once and the detector counts it once.
    let again = serde_json::to_vec(&body).unwrap();
    let r = post_traces(&h, Some(ADMIN), "application/json", false, again).await;
    assert_eq!(r.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        h.store.exchanges(Some("traced-acct"), 0, 10).unwrap().len(),
        2
    );
    let seen = h.gw.state.shared.detector.lock().report("traced-acct");
    assert_eq!(seen.map(|r| r.exchanges), Some(2));
    h.gw.shutdown().await;
}

#[tokio::test]
async fn otlp_protobuf_gzip_spans_are_taken_and_answered_in_protobuf() {
    let h = Harness::start(|c| c.otel_account = vec!["tenant.id".into()]).await;
    let s = |v: &str| AnyValue {
        value: Some(any_value::Value::StringValue(v.into())),
    };
    let attr = |k: &str, v: AnyValue| KeyValue {
        key: k.into(),
        value: Some(v),
        ..KeyValue::default()
    };
    let spans = (0..3u64)
        .map(|i| Span {
            trace_id: vec![7; 16],
            span_id: vec![i as u8 + 1; 8],
            name: "chat demo-model".into(),
            start_time_unix_nano: START_NS + i * 2_000_000_000,
            end_time_unix_nano: START_NS + i * 2_000_000_000 + 300_000_000,
            attributes: vec![
                attr("gen_ai.operation.name", s("chat")),
                attr("gen_ai.request.model", s("demo-model")),
                attr(
                    "gen_ai.request.max_tokens",
                    AnyValue {
                        value: Some(any_value::Value::IntValue(4096)),
                    },
                ),
                attr(
                    "gen_ai.response.finish_reasons",
                    AnyValue {
                        value: Some(any_value::Value::ArrayValue(
                            opentelemetry_proto::tonic::common::v1::ArrayValue {
                                values: vec![s("length")],
                            },
                        )),
                    },
                ),
            ],
            ..Span::default()
        })
        .collect();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![attr("tenant.id", s("tenant-7"))],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    let r = post_traces(
        &h,
        Some(ADMIN),
        "application/x-protobuf",
        true,
        request.encode_to_vec(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let reply = ExportTraceServiceResponse::decode(r.bytes().await.unwrap()).unwrap();
    assert!(reply.partial_success.is_none());
    // The account from the resource's tenant.id; ids from the trace and span ids; the
    // parameters and finish reasons the spans carry.
    let logged = h.logged("tenant-7", 3).await;
    assert_eq!(logged.len(), 3);
    assert_eq!(
        logged[0]["id"],
        format!("{}-{}", "07".repeat(16), "01".repeat(8))
    );
    assert_eq!(logged[2]["request"]["max_tokens"], 4096);
    assert_eq!(
        logged[2]["response"]["choices"][0]["finish_reason"],
        "length"
    );

    // Not OTLP at all: a 400 in OpenAI's error shape; another media type: 415.
    let r = post_traces(
        &h,
        Some(ADMIN),
        "application/x-protobuf",
        false,
        vec![0xff; 9],
    )
    .await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_otlp");
    let r = post_traces(&h, Some(ADMIN), "text/plain", false, b"hi".to_vec()).await;
    assert_eq!(r.status(), 415);
    h.gw.shutdown().await;
}

/// The real producer: `opentelemetry-instrumentation-openai-v2` tracing the `openai` SDK's calls
/// to a model server, exporting over OTLP/HTTP straight into /v1/traces. Needs `python3` with
/// `pip install openai opentelemetry-sdk opentelemetry-exporter-otlp-proto-http
/// opentelemetry-instrumentation-openai-v2`; without them the test says so and passes, unless
/// DISTILLGUARD_REQUIRE_OTEL_TEST=1 (CI sets it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_instrumentation_exports_straight_into_the_receiver() {
    if !testkit::python_module_or_skip(
        "opentelemetry.instrumentation.openai_v2",
        "DISTILLGUARD_REQUIRE_OTEL_TEST",
        "pip install openai opentelemetry-sdk opentelemetry-exporter-otlp-proto-http opentelemetry-instrumentation-openai-v2",
    ) {
        return;
    }
    let h = Harness::start(|_| {}).await;
    let model = standin::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/otel_openai.py");
    let traces = h.url("/v1/traces");
    let out = tokio::task::spawn_blocking(move || {
        let mut python = std::process::Command::new("python3");
        python
            .arg(script)
            .env("DG_MODEL_URL", format!("http://{model}/v1"))
            .env("DG_TRACES_URL", traces)
            .env("DG_TOKEN", ADMIN)
            .env("DG_CALLS", "5");
        testkit::otel_genai_content(&mut python, "SPAN_ONLY")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("OK 5"),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Five calls the gateway never proxied, logged as exchanges of the traced service, with
    // what the instrumentation recorded: ids, model, parameters, messages, usage.
    let logged = h.logged("traced-app", 5).await;
    assert_eq!(logged.len(), 5);
    for (i, e) in logged.iter().enumerate() {
        assert_eq!(e["id"].as_str().unwrap().len(), 32 + 1 + 16, "{e}");
        assert_eq!(e["endpoint"], "/v1/chat/completions");
        assert_eq!(e["request"]["model"], "demo-model");
        assert_eq!(e["request"]["max_tokens"], 64);
        let messages = e["request"]["messages"].as_array().unwrap();
        assert_eq!(messages[0]["role"], "system", "{e}");
        assert_eq!(
            messages.last().unwrap()["content"],
            format!("Question {i}: why is the sky blue?")
        );
        assert!(
            e["response"]["usage"]["completion_tokens"]
                .as_u64()
                .unwrap()
                > 0
        );
        assert!(!e["response"]["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty());
    }
    h.gw.shutdown().await;
}

/// Content as log events (`EVENT_ONLY`): the span carries the call, the messages go as a
/// `gen_ai.client.inference.operation.details` event on the logs signal (`/v1/logs`), and
/// the receiver joins them by span. (The per-message events of older versions of the same
/// instrumentation are read too: `exchange::otel` tests them.) The script
/// flushes the spans before the logs, so the receiver has to wait for text it was promised:
/// the first span of a service has no promise yet (it is recorded without text), the later
/// ones wait for their events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_sent_as_log_events_is_joined_to_the_spans_of_its_calls() {
    if !testkit::python_module_or_skip(
        "opentelemetry.instrumentation.openai_v2",
        "DISTILLGUARD_REQUIRE_OTEL_TEST",
        "pip install openai opentelemetry-sdk opentelemetry-exporter-otlp-proto-http opentelemetry-instrumentation-openai-v2",
    ) {
        return;
    }
    let h = Harness::start(|c| c.otel_content_wait_ms = 5_000).await;
    let model = standin::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/otel_openai.py");
    let run = |calls: &'static str| {
        let (traces, logs) = (h.url("/v1/traces"), h.url("/v1/logs"));
        async move {
            tokio::task::spawn_blocking(move || {
                let mut python = std::process::Command::new("python3");
                python
                    .arg(script)
                    .env("DG_MODEL_URL", format!("http://{model}/v1"))
                    .env("DG_TRACES_URL", traces)
                    .env("DG_LOGS_URL", logs)
                    .env("DG_TOKEN", ADMIN)
                    .env("DG_CALLS", calls);
                testkit::otel_genai_content(&mut python, "EVENT_ONLY")
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    // A first run teaches the receiver that this service sends its text as events; the
    // second run's spans, flushed before their events, wait for them.
    for (calls, want) in [("1", 1), ("3", 4)] {
        let out = run(calls).await;
        assert!(
            out.status.success(),
            "stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(h.logged("traced-app", want).await.len(), want);
    }
    let logged = h.logged("traced-app", 4).await;
    for e in &logged[1..] {
        let messages = e["request"]["messages"]
            .as_array()
            .expect("messages joined");
        assert_eq!(messages[0]["role"], "system", "{e}");
        assert_eq!(messages[0]["content"], "You answer briefly.");
        assert!(messages[1]["content"]
            .as_str()
            .unwrap()
            .ends_with("why is the sky blue?"));
        assert!(!e["response"]["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty());
        assert_eq!(e["request"]["max_tokens"], 64);
    }
    h.gw.shutdown().await;
}

/// The gateway's own export, read by a receiver: calls proxied by one gateway with `[otlp]`
/// arrive as spans at another's `/v1/traces` (the receiver above), so what the export writes
/// is checked by what reads it. Text goes only where the account's policy keeps it; a
/// collector that is down costs the calls nothing, and the spans are counted dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxied_calls_are_exported_as_genai_spans_and_a_down_collector_costs_nothing() {
    let receiver = Harness::start(|_| {}).await;
    let endpoint = receiver.url("/v1/traces");
    let h = Harness::start(|c| {
        c.otlp = Some(gateway::OtlpConfig {
            endpoint,
            headers: [("authorization".to_owned(), format!("Bearer {ADMIN}"))].into(),
            flush_ms: 20,
            ..Default::default()
        })
    })
    .await;
    let key = h.key("exported-acct", None);
    let quiet = h.key("quiet-acct", None);
    let r = h
        .admin(
            "POST",
            "/admin/accounts",
            Some(json!({"name": "quiet-acct", "content": "metadata"})),
        )
        .await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    for i in 0..3 {
        let r = h
            .post(
                &key,
                "/v1/chat/completions",
                common::chat(&format!("question {i}")),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    // A streamed call is exported once its stream has ended.
    let mut streamed = common::chat("question 3");
    streamed["stream"] = json!(true);
    let r = h.post(&key, "/v1/chat/completions", streamed).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("[DONE]"));
    let r = h
        .post(
            &quiet,
            "/v1/chat/completions",
            common::chat("a secret prompt"),
        )
        .await;
    assert_eq!(r.status(), 200);

    let spans = receiver.logged("exported-acct", 4).await;
    assert_eq!(spans.len(), 4);
    let logged = h.logged("exported-acct", 4).await;
    for (span, call) in spans.iter().zip(&logged) {
        assert_eq!(span["request"]["model"], "demo-model");
        assert_eq!(span["request"]["max_tokens"], 50);
        assert_eq!(span["ip"], call["ip"]);
        assert_eq!(
            span["request"]["messages"][0]["content"],
            call["request"]["messages"][0]["content"]
        );
        assert_eq!(
            span["response"]["usage"]["completion_tokens"],
            call["response"]["usage"]["completion_tokens"]
        );
        assert_eq!(
            span["response"]["choices"][0]["finish_reason"],
            call["response"]["choices"][0]["finish_reason"]
        );
    }
    // The account whose policy keeps no text: its span carries none.
    let quiet_span = &receiver.logged("quiet-acct", 1).await[0];
    assert!(quiet_span["request"]["messages"].is_null(), "{quiet_span}");
    assert!(!quiet_span.to_string().contains("a secret prompt"));
    receiver.gw.shutdown().await;

    // The collector is gone: calls are answered as before, and the spans counted dropped.
    for i in 0..2 {
        let r = h
            .post(
                &key,
                "/v1/chat/completions",
                common::chat(&format!("later {i}")),
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    let mut dropped = false;
    for _ in 0..200 {
        let metrics = h.metrics().await;
        if metrics.lines().any(|l| {
            l.starts_with("distillguard_otlp_spans_total")
                && l.contains("outcome=\"dropped\"")
                && l.contains("reason=\"unreachable\"")
        }) {
            dropped = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(dropped, "no dropped spans counted");
    h.gw.shutdown().await;
}

/// One LiteLLM `StandardLoggingPayload` line of team `team-tail`.
fn litellm_line(i: u32) -> String {
    json!({
        "id": format!("chatcmpl-tail-{i}"), "call_type": "acompletion", "status": "success",
        "startTime": 1767225600.25 + f64::from(i), "endTime": 1767225601.5 + f64::from(i),
        "model": "gpt-4o-mini", "prompt_tokens": 12, "completion_tokens": 40,
        "metadata": {"user_api_key_team_id": "team-tail", "requester_ip_address": "203.0.113.9"},
        "messages": [{"role": "user", "content": format!("Question {i}: why is the sky blue?")}],
        "response": {"id": format!("chatcmpl-tail-{i}"), "object": "chat.completion",
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": "Rayleigh scattering."}}]},
        "model_parameters": {"temperature": 0.7, "max_tokens": 256},
    })
    .to_string()
}

/// `collect --tail`: a LiteLLM log followed as LiteLLM writes it. Whole lines are taken as
/// they come, a half-written line waits for its end, a bad line is counted and skipped, and a
/// rotated file (moved away, a new one in its place) is read from its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_litellm_log_is_judged_as_it_grows_and_across_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("litellm.jsonl");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "{}", litellm_line(0)).unwrap();
    writeln!(file, "{{\"call_type\": \"acompletion\", truncated").unwrap();
    writeln!(file, "{}", litellm_line(1)).unwrap();
    let half = litellm_line(2);
    write!(file, "{}", &half[..40]).unwrap();
    file.flush().unwrap();
    let h = Harness::start(|c| {
        c.tail = vec![recorder::Follow {
            path: path.clone(),
            format: exchange::Format::default(),
            max_line_bytes: 1 << 20,
        }];
    })
    .await;
    assert_eq!(h.logged("team-tail", 2).await.len(), 2);
    // The half line is not taken until its writer finishes it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        h.store.exchanges(Some("team-tail"), 0, 100).unwrap().len(),
        2
    );
    writeln!(file, "{}", &half[40..]).unwrap();
    file.flush().unwrap();
    assert_eq!(h.logged("team-tail", 3).await.len(), 3);

    // Rotated: the old file moved away, a new one in its place.
    std::fs::rename(&path, dir.path().join("litellm.jsonl.1")).unwrap();
    let mut fresh = std::fs::File::create(&path).unwrap();
    writeln!(fresh, "{}", litellm_line(3)).unwrap();
    fresh.flush().unwrap();
    let logged = h.logged("team-tail", 4).await;
    let mut ids: Vec<&str> = logged.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "chatcmpl-tail-0",
            "chatcmpl-tail-1",
            "chatcmpl-tail-2",
            "chatcmpl-tail-3"
        ]
    );
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("distillguard_tail_bad_lines_total{kind="),
        "{metrics}"
    );
    h.gw.shutdown().await;
}
