//! Every proxied call as an OpenTelemetry GenAI span, exported over OTLP/HTTP.
//!
//! Providers already read their traffic in observability tools (Jaeger, Tempo, Honeycomb,
//! Datadog) through an OpenTelemetry collector. With `[otlp] endpoint = ...` the gateway sends
//! each call it proxied as a span of the GenAI semantic conventions: the operation, model,
//! parameters, usage, response id and finish reasons, the account (`user.id`) and client
//! address, and the messages only when the account's content policy is `full`.
//!
//! Off the request path, and never slowing it: a call's span is queued with `try_send`; when
//! the queue is full, or the collector is slow, down or refuses a batch, the spans are dropped
//! and counted (`distillguard_otlp_spans_total{outcome}`), never retried into a backlog. A
//! batch leaves when it holds `batch` spans or `flush_ms` after its first.
//!
//! Traces received on `/v1/traces` ([`crate::collect`]) are not exported again: they are
//! another gateway's calls, already traced there.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value, AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use exchange::ContentPolicy;

/// `[otlp]` in the gateway config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP traces URL (`http://127.0.0.1:4318/v1/traces`); no export
    /// when empty.
    pub endpoint: String,
    /// Headers sent with every export (an API key, `Authorization`; never written out).
    #[serde(skip_serializing)]
    pub headers: BTreeMap<String, String>,
    /// Spans waiting at most (default 8192); past it, new spans are dropped and counted.
    pub queue: usize,
    /// Spans per export request at most (default 512).
    pub batch: usize,
    /// A batch leaves this long after its first span at the latest (default 1000 ms).
    pub flush_ms: u64,
    /// An export that takes longer is abandoned and its spans counted dropped (default 10 s).
    pub timeout_secs: u64,
    /// The resource's `service.name` (default `distillguard-gateway`).
    pub service_name: String,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            headers: BTreeMap::new(),
            queue: 8192,
            batch: 512,
            flush_ms: 1000,
            timeout_secs: 10,
            service_name: "distillguard-gateway".into(),
        }
    }
}

fn dropped(n: usize, reason: &'static str) {
    metrics::counter!("distillguard_otlp_spans_total", "outcome" => "dropped", "reason" => reason)
        .increment(n as u64);
}

/// The handle the request path holds: queueing a span is a `try_send`.
#[derive(Clone)]
pub struct Exporter {
    tx: mpsc::Sender<Span>,
}

impl Exporter {
    /// Starts the export task; it ends, after sending what is queued, once every handle is gone.
    pub fn start(config: OtlpConfig, client: reqwest::Client) -> Self {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        tokio::spawn(run(config, client, rx));
        Self { tx }
    }

    /// Queues the span of one finished call (its exchange line); drops it, counted, when the
    /// queue is full.
    pub fn export(&self, line: &Value, content: ContentPolicy) {
        match self.tx.try_send(span_of(line, content)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => dropped(1, "queue_full"),
            Err(mpsc::error::TrySendError::Closed(_)) => dropped(1, "closed"),
        }
    }
}

async fn run(config: OtlpConfig, client: reqwest::Client, mut rx: mpsc::Receiver<Span>) {
    let batch_max = config.batch.max(1);
    let flush = Duration::from_millis(config.flush_ms);
    let mut open = true;
    while open {
        let Some(first) = rx.recv().await else {
            break;
        };
        let mut batch = vec![first];
        let deadline = tokio::time::sleep(flush);
        tokio::pin!(deadline);
        while batch.len() < batch_max {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(s) => batch.push(s),
                    None => { open = false; break; }
                },
                _ = &mut deadline => break,
            }
        }
        send(&config, &client, batch).await;
    }
}

async fn send(config: &OtlpConfig, client: &reqwest::Client, spans: Vec<Span>) {
    let n = spans.len();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", string(&config.service_name))],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "distillguard".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..InstrumentationScope::default()
                }),
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    };
    let mut req = client
        .post(&config.endpoint)
        .timeout(Duration::from_secs(config.timeout_secs))
        .header("content-type", "application/x-protobuf");
    for (k, v) in &config.headers {
        req = req.header(k, v);
    }
    match req.body(request.encode_to_vec()).send().await {
        Ok(r) if r.status().is_success() => {
            metrics::counter!("distillguard_otlp_spans_total", "outcome" => "exported")
                .increment(n as u64);
        }
        Ok(r) => {
            tracing::warn!(status = %r.status(), spans = n, "the OTLP collector refused a batch; dropped");
            dropped(n, "refused");
        }
        Err(e) => {
            tracing::warn!(error = %e, spans = n, "the OTLP collector is unreachable or slow; a batch was dropped");
            dropped(n, "unreachable");
        }
    }
}

fn string(s: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(s.to_owned())),
    }
}

fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..KeyValue::default()
    }
}

/// A number of the exchange as an attribute: an integer when it is one.
fn number(v: &Value) -> Option<AnyValue> {
    let value = if let Some(i) = v.as_i64() {
        any_value::Value::IntValue(i)
    } else {
        any_value::Value::DoubleValue(v.as_f64()?)
    };
    Some(AnyValue { value: Some(value) })
}

/// Messages in the conventions' form: `{"role", "parts": [{"type": "text", "content"}]}`.
fn parts(messages: &[Value]) -> Value {
    Value::Array(
        messages
            .iter()
            .map(|m| {
                let mut parts = Vec::new();
                let text = match &m["content"] {
                    Value::String(s) => s.clone(),
                    Value::Array(items) => items
                        .iter()
                        .filter_map(|i| i["text"].as_str())
                        .collect::<Vec<_>>()
                        .join("\n"),
                    _ => String::new(),
                };
                if m["role"] == "tool" {
                    parts.push(json!({"type": "tool_call_response", "id": m["tool_call_id"], "response": text}));
                } else if !text.is_empty() {
                    parts.push(json!({"type": "text", "content": text}));
                }
                for c in m["tool_calls"].as_array().into_iter().flatten() {
                    parts.push(json!({"type": "tool_call", "id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}));
                }
                json!({"role": m["role"], "parts": parts})
            })
            .collect(),
    )
}

/// The span of one call, from its exchange line.
fn span_of(line: &Value, content: ContentPolicy) -> Span {
    let mut rng = rand::thread_rng();
    let start_ms = line["ts"]
        .as_str()
        .and_then(|t| exchange::Timestamp::parse(t).ok())
        .map_or(0, |t| t.millis());
    let start = u64::try_from(start_ms).unwrap_or(0) * 1_000_000;
    let latency_ns = line["latency_ms"].as_f64().unwrap_or(0.0).max(0.0) * 1e6;
    let endpoint = line["endpoint"].as_str().unwrap_or_default();
    let operation = match endpoint {
        "/v1/completions" => "text_completion",
        "/v1/embeddings" => "embeddings",
        _ => "chat",
    };
    let request = &line["request"];
    let response = &line["response"];
    let model = request["model"].as_str().unwrap_or("unknown");
    let mut attributes = vec![
        kv("gen_ai.operation.name", string(operation)),
        kv("gen_ai.provider.name", string("openai")),
        kv("gen_ai.request.model", string(model)),
        kv(
            "user.id",
            string(line["account"].as_str().unwrap_or_default()),
        ),
        kv(
            "distillguard.exchange.id",
            string(line["id"].as_str().unwrap_or_default()),
        ),
    ];
    for (field, attr) in [
        ("max_tokens", "gen_ai.request.max_tokens"),
        ("max_completion_tokens", "gen_ai.request.max_tokens"),
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
        ("seed", "gen_ai.request.seed"),
        ("n", "gen_ai.request.choice.count"),
    ] {
        if let Some(v) = number(&request[field]) {
            attributes.push(kv(attr, v));
        }
    }
    for (field, attr) in [
        ("ip", "client.address"),
        ("user_agent", "user_agent.original"),
    ] {
        if let Some(v) = line[field].as_str() {
            attributes.push(kv(attr, string(v)));
        }
    }
    if let Some(id) = response["id"].as_str() {
        attributes.push(kv("gen_ai.response.id", string(id)));
    }
    if let Some(m) = response["model"].as_str() {
        attributes.push(kv("gen_ai.response.model", string(m)));
    }
    let choices = response["choices"].as_array().cloned().unwrap_or_default();
    let finish: Vec<AnyValue> = choices
        .iter()
        .filter_map(|c| c["finish_reason"].as_str())
        .map(string)
        .collect();
    if !finish.is_empty() {
        attributes.push(kv(
            "gen_ai.response.finish_reasons",
            AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values: finish })),
            },
        ));
    }
    for (field, attr) in [
        ("prompt_tokens", "gen_ai.usage.input_tokens"),
        ("completion_tokens", "gen_ai.usage.output_tokens"),
    ] {
        if let Some(v) = number(&response["usage"][field]) {
            attributes.push(kv(attr, v));
        }
    }
    // The text, only where the account's policy keeps it.
    if content == ContentPolicy::Full {
        if let Some(m) = request["messages"].as_array() {
            attributes.push(kv("gen_ai.input.messages", string(&parts(m).to_string())));
        } else if let Some(p) = request["prompt"].as_str() {
            let m = [json!({"role": "user", "content": p})];
            attributes.push(kv("gen_ai.input.messages", string(&parts(&m).to_string())));
        }
        if !choices.is_empty() {
            let out: Vec<Value> = choices
                .iter()
                .map(|c| {
                    let mut m = c["message"].clone();
                    if m.is_null() {
                        m = json!({"role": "assistant", "content": c["text"]});
                    }
                    let mut p = parts(std::slice::from_ref(&m))[0].clone();
                    p["finish_reason"] = c["finish_reason"].clone();
                    p
                })
                .collect();
            attributes.push(kv(
                "gen_ai.output.messages",
                string(&Value::Array(out).to_string()),
            ));
        }
    }
    let code = line["status"].as_u64().unwrap_or(0);
    let ok = (200..300).contains(&code);
    attributes.push(kv(
        "http.response.status_code",
        AnyValue {
            value: Some(any_value::Value::IntValue(code as i64)),
        },
    ));
    if !ok {
        attributes.push(kv("error.type", string(&code.to_string())));
    }
    Span {
        trace_id: rng.gen::<[u8; 16]>().to_vec(),
        span_id: rng.gen::<[u8; 8]>().to_vec(),
        name: format!("{operation} {model}"),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + latency_ns as u64,
        attributes,
        status: Some(Status {
            code: if ok {
                status::StatusCode::Unset
            } else {
                status::StatusCode::Error
            } as i32,
            ..Status::default()
        }),
        ..Span::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GatewayConfig;

    #[test]
    fn the_otlp_section_reads_with_defaults_and_its_headers_are_never_written_out() {
        let c: GatewayConfig = toml::from_str(
            "[otlp]\nendpoint = \"http://127.0.0.1:4318/v1/traces\"\nheaders = { authorization = \"Bearer s3cret\" }\nbatch = 64\n",
        )
        .unwrap();
        let o = c.otlp.clone().unwrap();
        assert_eq!(o.batch, 64);
        assert_eq!(o.queue, OtlpConfig::default().queue);
        assert_eq!(o.headers["authorization"], "Bearer s3cret");
        assert!(!toml::to_string(&c).unwrap().contains("s3cret"));
        assert!(toml::from_str::<GatewayConfig>("[otlp]\nendpont = \"x\"\n").is_err());
    }

    #[test]
    fn a_span_carries_text_only_where_the_policy_keeps_it() {
        let line = json!({
            "id": "ex-1", "ts": "2026-03-01T00:00:00.000Z", "account": "acme", "endpoint": "/v1/chat/completions",
            "status": 200, "latency_ms": 1500.0, "ip": "192.0.2.1",
            "request": {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "private words"}]},
            "response": {"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "an answer"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
        });
        let attrs =
            |s: &Span| -> Vec<String> { s.attributes.iter().map(|kv| kv.key.clone()).collect() };
        let full = span_of(&line, ContentPolicy::Full);
        assert!(attrs(&full).contains(&"gen_ai.input.messages".to_owned()));
        assert_eq!(
            full.end_time_unix_nano - full.start_time_unix_nano,
            1_500_000_000
        );
        for policy in [ContentPolicy::Hashes, ContentPolicy::Metadata] {
            let s = span_of(&line, policy);
            assert!(!format!("{s:?}").contains("private words"));
            assert!(!format!("{s:?}").contains("an answer"));
            assert!(attrs(&s).contains(&"gen_ai.usage.output_tokens".to_owned()));
        }
    }
}
