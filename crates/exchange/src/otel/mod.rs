//! Reading OpenTelemetry GenAI spans as exchanges.
//!
//! Many providers already trace their model calls: the OpenTelemetry GenAI semantic
//! conventions (<https://opentelemetry.io/docs/specs/semconv/gen-ai/>) name what a span of a
//! model call carries (`gen_ai.operation.name`, `gen_ai.request.model`, the parameters, the
//! usage, the response id and finish reasons, and, where the producer records content,
//! `gen_ai.input.messages`, `gen_ai.system_instructions` and `gen_ai.output.messages`).
//! A collector's file exporter writes them as OTLP/JSON, one `ExportTraceServiceRequest` per
//! line. This module maps every model-call span of such a line onto the exchange format, so
//! `scan` and `groups` judge that traffic as they judge their own. The field-by-field
//! mapping is `docs/importers.md`.
//!
//! A trace holds more than model calls (HTTP handlers, database queries, tool executions,
//! agent steps): spans without a generation or embedding operation are skipped, not counted
//! as bad. What a span does not carry (message content when the producer did not capture
//! it, payment, sign-up and TLS facts) is left out, never invented: the detector works on
//! the shape, timing and addresses that remain.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::reader::BadLineKind;
use crate::{Exchange, Timestamp};

mod logs;
mod value;

pub use logs::{looks_like as looks_like_logs, Contents, Taken, DEFAULT_MAX_BYTES};
use value::{attributes, nanos_to_millis, text};

/// Which attributes name the account, tried in order on the span and then on its resource;
/// the first present and non-empty wins. Default: `user.id`, `enduser.id`, then the calling
/// service's `service.name` (every SDK sets it, so every span has an account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountAttributes(pub Vec<String>);

impl Default for AccountAttributes {
    fn default() -> Self {
        Self(
            ["user.id", "enduser.id", "service.name"]
                .map(str::to_owned)
                .to_vec(),
        )
    }
}

/// How spans are read: which attributes name the account, and the message content that came
/// as log events ([`Contents`]), where there is any.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub accounts: AccountAttributes,
    pub contents: Option<Arc<Contents>>,
}

impl PartialEq for Options {
    fn eq(&self, other: &Self) -> bool {
        self.accounts == other.accounts
            && match (&self.contents, &other.contents) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

impl Eq for Options {}

impl From<AccountAttributes> for Options {
    fn from(accounts: AccountAttributes) -> Self {
        Self {
            accounts,
            contents: None,
        }
    }
}

/// Whether a log line looks like OTLP/JSON traces rather than an exchange or a LiteLLM
/// record: an export request's only field, `resourceSpans`, opens it. Only the line's first
/// bytes are searched, so telling the formats apart costs nothing next to parsing.
pub fn looks_like(line: &[u8]) -> bool {
    memchr::memmem::find(&line[..line.len().min(64)], b"\"resourceSpans\"").is_some()
}

/// Parses one OTLP/JSON line (an `ExportTraceServiceRequest`) and hands each model-call span
/// to `out`, in the order the spans started: an exchange, or the reason that span could not
/// be mapped. A line that is not such a request is one error for the line.
pub fn parse_line(
    line: &[u8],
    options: &Options,
    out: impl FnMut(Result<Exchange, (BadLineKind, String)>),
) -> Result<(), (BadLineKind, String)> {
    let utf8 = std::str::from_utf8(line).map_err(|e| (BadLineKind::InvalidUtf8, e.to_string()))?;
    let v: Value =
        serde_json::from_str(utf8).map_err(|e| (BadLineKind::classify(&e), e.to_string()))?;
    parse_request(&v, &options.accounts, options.contents.as_deref(), out)
}

/// Maps each model-call span of one `ExportTraceServiceRequest` in its OTLP/JSON form (a file
/// line, or what a receiver was sent) as [`parse_line`] does, with the content `contents`
/// holds for a span that carries none itself.
pub fn parse_request(
    v: &Value,
    accounts: &AccountAttributes,
    contents: Option<&Contents>,
    mut out: impl FnMut(Result<Exchange, (BadLineKind, String)>),
) -> Result<(), (BadLineKind, String)> {
    let resource_spans = v
        .get("resourceSpans")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            let why = if v.get("resourceLogs").is_some() {
                "this is an OTLP/JSON logs export (resourceLogs): its message content is read beside the traces (scan --otel-logs FILE), not as one"
            } else {
                "an OTLP/JSON line is an object with a resourceSpans array"
            };
            (BadLineKind::WrongType, why.to_owned())
        })?;
    let mut found = Vec::new();
    for rs in resource_spans {
        let resource = attributes(rs.get("resource").and_then(|r| r.get("attributes")));
        let scopes = rs.get("scopeSpans").and_then(Value::as_array);
        for span in scopes.into_iter().flatten().flat_map(|s| {
            s.get("spans")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        }) {
            let mut attrs = attributes(span.get("attributes"));
            let Some(endpoint) = text(attrs.get("gen_ai.operation.name")).and_then(endpoint) else {
                continue;
            };
            if let (Some(contents), Some(key)) = (contents, key_of(span)) {
                contents.attach(&key, &mut attrs);
            }
            let start = nanos_to_millis(span.get("startTimeUnixNano"));
            let mapped = to_exchange(span, &attrs, &resource, endpoint, accounts)
                .map_err(|m| (BadLineKind::MissingField, m))
                .and_then(|line| {
                    serde_json::from_value::<Exchange>(line)
                        .map(Exchange::as_chat)
                        .map_err(|e| (BadLineKind::classify(&e), e.to_string()))
                });
            found.push((start.unwrap_or(i64::MAX), mapped));
        }
    }
    // Exporters batch spans as they end; the detector wants them as they began.
    found.sort_by_key(|(start, _)| *start);
    for (_, mapped) in found {
        out(mapped);
    }
    Ok(())
}

/// The key a span's content events name it by (`traceId-spanId`).
fn key_of(span: &Value) -> Option<String> {
    Some(logs::span_key(
        text(span.get("traceId"))?,
        text(span.get("spanId"))?,
    ))
}

/// The model-call spans of an export request that carry no message content, come from a
/// service that sends its content as log events ([`Contents::sends_content`]) and whose
/// events are not here yet: the keys a receiver may wait a moment for.
pub fn awaiting_content(v: &Value, contents: &Contents, now_ms: i64) -> Vec<String> {
    let mut keys = Vec::new();
    for rs in v
        .get("resourceSpans")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let resource = attributes(rs.get("resource").and_then(|r| r.get("attributes")));
        let service = text(resource.get("service.name")).unwrap_or("");
        if !contents.sends_content(service, now_ms) {
            continue;
        }
        for span in rs
            .get("scopeSpans")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|s| {
                s.get("spans")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
        {
            let attrs = attributes(span.get("attributes"));
            let model_call = text(attrs.get("gen_ai.operation.name"))
                .and_then(endpoint)
                .is_some();
            if !model_call || attrs.contains_key("gen_ai.input.messages") {
                continue;
            }
            if let Some(key) = key_of(span).filter(|k| !contents.has(k)) {
                keys.push(key);
            }
        }
    }
    keys
}

/// The endpoint a GenAI operation was served on; `None` for operations that are not a model
/// call (tool executions, agent invocations), which are skipped.
fn endpoint(operation: &str) -> Option<&'static str> {
    match operation {
        "chat" | "generate_content" => Some("/v1/chat/completions"),
        "text_completion" => Some("/v1/completions"),
        "embeddings" => Some("/v1/embeddings"),
        _ => None,
    }
}

/// The account: the first of `accounts` on the span, else on its resource.
fn account(
    attrs: &Map<String, Value>,
    resource: &Map<String, Value>,
    accounts: &AccountAttributes,
) -> Option<String> {
    accounts
        .0
        .iter()
        .find_map(|key| text(attrs.get(key)).or(text(resource.get(key))))
        .map(str::to_owned)
}

/// A message of the GenAI conventions (`{"role", "parts": [{"type": "text", "content"}, ..]}`)
/// in the chat-completions form the exchange format keeps.
fn message(m: &Value) -> Value {
    let role = text(m.get("role")).unwrap_or("user");
    let parts = m.get("parts").and_then(Value::as_array);
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    let mut tool_call_id = None;
    for part in parts.into_iter().flatten() {
        match text(part.get("type")) {
            Some("text") | Some("reasoning") => {
                if let Some(t) = text(part.get("content")) {
                    if !content.is_empty() {
                        content.push('\n');
                    }
                    content.push_str(t);
                }
            }
            Some("tool_call") => {
                let arguments = match part.get("arguments") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => "{}".to_owned(),
                };
                tool_calls.push(json!({
                    "id": text(part.get("id")).unwrap_or(""),
                    "type": "function",
                    "function": {"name": text(part.get("name")).unwrap_or(""), "arguments": arguments},
                }));
            }
            Some("tool_call_response") => {
                tool_call_id = text(part.get("id")).map(str::to_owned);
                match part.get("response") {
                    Some(Value::String(s)) => content.push_str(s),
                    Some(other) => content.push_str(&other.to_string()),
                    None => {}
                }
            }
            _ => {}
        }
    }
    // A message written in the chat-completions form already (some producers do) reads as is.
    if parts.is_none() {
        if let Some(c) = m.get("content") {
            let mut out = m.clone();
            out["role"] = json!(role);
            out["content"] = c.clone();
            return out;
        }
    }
    let mut out = json!({"role": role, "content": content});
    if !tool_calls.is_empty() {
        out["tool_calls"] = Value::Array(tool_calls);
    }
    if let Some(id) = tool_call_id {
        out["tool_call_id"] = json!(id);
    }
    out
}

/// A list of messages recorded as an attribute: JSON text (what the conventions specify) or,
/// from some writers, the array itself.
fn messages(v: Option<&Value>) -> Option<Vec<Value>> {
    let list = match v? {
        Value::String(s) => serde_json::from_str::<Value>(s).ok()?,
        other => other.clone(),
    };
    Some(list.as_array()?.iter().map(message).collect())
}

fn to_exchange(
    span: &Value,
    attrs: &Map<String, Value>,
    resource: &Map<String, Value>,
    endpoint: &str,
    accounts: &AccountAttributes,
) -> Result<Value, String> {
    let started = nanos_to_millis(span.get("startTimeUnixNano")).ok_or("no startTimeUnixNano")?;
    let ended = nanos_to_millis(span.get("endTimeUnixNano"));
    let account = account(attrs, resource, accounts).ok_or_else(|| {
        format!(
            "no account: none of {} is on the span or its resource",
            accounts.0.join(", ")
        )
    })?;
    // The span's identity, not the response id: a span is unique where response ids need not
    // be (a stand-in server, a retried call), and a redelivered export names the same spans.
    let id = format!(
        "{}-{}",
        text(span.get("traceId")).ok_or("no traceId")?,
        text(span.get("spanId")).ok_or("no spanId")?
    );
    // An error span: the HTTP status when recorded, else a server error.
    let failed = match span.get("status").and_then(|s| s.get("code")) {
        Some(Value::Number(n)) => n.as_u64() == Some(2),
        Some(Value::String(s)) => s == "STATUS_CODE_ERROR",
        _ => false,
    } || attrs.contains_key("error.type");
    let status = if failed {
        attrs
            .get("http.response.status_code")
            .and_then(Value::as_u64)
            .unwrap_or(500)
    } else {
        200
    };
    let model = text(attrs.get("gen_ai.request.model")).unwrap_or("unknown");

    let mut request = Map::new();
    request.insert("model".into(), json!(model));
    let mut history = Vec::new();
    if let Some(system) = attrs.get("gen_ai.system_instructions") {
        let parts = match system {
            Value::String(s) => serde_json::from_str::<Value>(s).unwrap_or(json!(s)),
            other => other.clone(),
        };
        let parts = match parts {
            Value::Array(p) => Value::Array(p),
            Value::String(s) => json!([{"type": "text", "content": s}]),
            _ => Value::Array(Vec::new()),
        };
        history.push(message(&json!({"role": "system", "parts": parts})));
    }
    if let Some(m) = messages(attrs.get("gen_ai.input.messages")) {
        // A system message recorded both ways is kept once.
        let system = history.first().cloned();
        history.extend(m.into_iter().filter(|x| system.as_ref() != Some(x)));
    }
    match history.as_slice() {
        // A completion's prompt is recorded as one user message: it reads back as the prompt.
        [only] if endpoint == "/v1/completions" && only.get("role") == Some(&json!("user")) => {
            request.insert("prompt".into(), only["content"].clone());
        }
        [] => {}
        _ => {
            request.insert("messages".into(), Value::Array(history));
        }
    }
    for (attr, field) in [
        ("gen_ai.request.max_tokens", "max_tokens"),
        ("gen_ai.request.temperature", "temperature"),
        ("gen_ai.request.top_p", "top_p"),
        ("gen_ai.request.seed", "seed"),
        ("gen_ai.request.frequency_penalty", "frequency_penalty"),
        ("gen_ai.request.presence_penalty", "presence_penalty"),
        ("gen_ai.request.stop_sequences", "stop"),
        ("gen_ai.request.choice.count", "n"),
    ] {
        if let Some(v) = attrs.get(attr).filter(|v| !v.is_null()) {
            request.insert(field.into(), v.clone());
        }
    }

    // Usage only where the span recorded it (a streamed call's span has none unless the
    // client asked for it in the stream): never zeros in its place.
    let (input_tokens, output_tokens) = (
        attrs
            .get("gen_ai.usage.input_tokens")
            .and_then(Value::as_u64),
        attrs
            .get("gen_ai.usage.output_tokens")
            .and_then(Value::as_u64),
    );
    let usage = (input_tokens.is_some() || output_tokens.is_some()).then(|| {
        json!({
            "prompt_tokens": input_tokens.unwrap_or(0),
            "completion_tokens": output_tokens.unwrap_or(0),
        })
    });
    let finish: Vec<&str> = attrs
        .get("gen_ai.response.finish_reasons")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let choices: Vec<Value> = match messages(attrs.get("gen_ai.output.messages")) {
        Some(out) => {
            let raw = attrs
                .get("gen_ai.output.messages")
                .and_then(|v| match v {
                    Value::String(s) => serde_json::from_str::<Value>(s).ok(),
                    other => Some(other.clone()),
                })
                .unwrap_or(Value::Null);
            out.into_iter()
                .enumerate()
                .map(|(i, m)| {
                    let reason = raw
                        .get(i)
                        .and_then(|r| text(r.get("finish_reason")))
                        .or(finish.get(i).copied())
                        .unwrap_or("stop");
                    json!({"index": i, "message": m, "finish_reason": reason})
                })
                .collect()
        }
        // No content recorded: the choices' finish reasons alone.
        None => finish
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"index": i, "message": {"role": "assistant"}, "finish_reason": r}))
            .collect(),
    };
    let mut response = json!({"choices": choices});
    if let Some(usage) = usage {
        response["usage"] = usage;
    }
    if let Some(rid) = text(attrs.get("gen_ai.response.id")) {
        response["id"] = json!(rid);
    }
    if let Some(m) = text(attrs.get("gen_ai.response.model")) {
        response["model"] = json!(m);
    }

    let mut out = json!({
        "id": id,
        "ts": Timestamp::from_millis(started).as_str(),
        "account": account,
        "endpoint": endpoint,
        "status": status,
        "request": Value::Object(request),
    });
    if let Some(ip) = text(attrs.get("client.address")) {
        out["ip"] = json!(ip);
    }
    if let Some(ua) = text(attrs.get("user_agent.original")) {
        out["user_agent"] = json!(ua);
    }
    if let Some(end) = ended {
        out["latency_ms"] = json!((end - started).max(0) as f64);
    }
    if !failed {
        out["response"] = response;
    }
    Ok(out)
}

/// One span of the GenAI conventions for an exchange, in OTLP/JSON, with its content on the
/// span and the account in `user.id`: what a traced call records, and nothing the
/// conventions do not name (key, account facts, logprobs, tools, streaming). Its id is the
/// exchange id when that reads as `traceId-spanId`, else derived from it.
/// [`parse_request`] reads it back; `distillguard simulate --as otel` writes it.
pub fn span_of(e: &Exchange) -> Value {
    let (trace_id, span_id) = span_ids(&e.id);
    let kv = |key: &str, v: Value| json!({"key": key, "value": v});
    let s = |x: &str| json!({"stringValue": x});
    let parts = |role: &str, content: &str, calls: Option<&Vec<Value>>| {
        let mut parts = Vec::new();
        if role == "tool" {
            parts.push(json!({"type": "tool_call_response", "id": "", "response": content}));
        } else if !content.is_empty() {
            parts.push(json!({"type": "text", "content": content}));
        }
        for c in calls.into_iter().flatten() {
            parts.push(json!({"type": "tool_call", "id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}));
        }
        json!({"role": role, "parts": parts})
    };
    let completion = e.endpoint == "/v1/completions";
    let input: Vec<Value> = match (&e.request.messages, &e.request.prompt) {
        (Some(m), _) => m
            .iter()
            .map(|m| parts(&m.role, m.content.as_str(), m.tool_calls.as_ref()))
            .collect(),
        (None, Some(p)) => {
            let prompt = serde_json::to_value(p).unwrap();
            vec![parts("user", prompt.as_str().unwrap_or_default(), None)]
        }
        _ => Vec::new(),
    };
    let mut attrs = vec![
        kv(
            "gen_ai.operation.name",
            s(if completion {
                "text_completion"
            } else {
                "chat"
            }),
        ),
        kv("gen_ai.provider.name", s("openai")),
        kv("gen_ai.response.id", s("chatcmpl-the-same-for-all")),
        kv("user.id", s(&e.account)),
        kv("gen_ai.input.messages", s(&Value::Array(input).to_string())),
    ];
    if let Some(m) = &e.request.model {
        attrs.push(kv("gen_ai.request.model", s(m)));
    }
    if let Some(ip) = &e.ip {
        attrs.push(kv("client.address", s(ip)));
    }
    if let Some(ua) = &e.user_agent {
        attrs.push(kv("user_agent.original", s(ua)));
    }
    let int = |n: u64| json!({"intValue": n.to_string()});
    let dbl = |x: f64| json!({"doubleValue": x});
    if let Some(x) = e.request.max_tokens {
        attrs.push(kv("gen_ai.request.max_tokens", int(x)));
    }
    if let Some(x) = e.request.temperature {
        attrs.push(kv("gen_ai.request.temperature", dbl(x)));
    }
    if let Some(x) = e.request.top_p {
        attrs.push(kv("gen_ai.request.top_p", dbl(x)));
    }
    if let Some(x) = e.request.n {
        attrs.push(kv("gen_ai.request.choice.count", int(x.into())));
    }
    if let Some(x) = e.request.seed {
        attrs.push(kv(
            "gen_ai.request.seed",
            json!({"intValue": x.to_string()}),
        ));
    }
    match &e.response {
        Some(r) if e.status == 200 => {
            let out: Vec<Value> = r
                .choices
                .iter()
                .map(|c| {
                    let m = c.message.as_ref().unwrap();
                    let mut p = parts("assistant", m.content.as_str(), m.tool_calls.as_ref());
                    p["finish_reason"] = json!(c.finish_reason);
                    p
                })
                .collect();
            attrs.push(kv(
                "gen_ai.output.messages",
                s(&Value::Array(out).to_string()),
            ));
            if let Some(u) = r.usage {
                attrs.push(kv("gen_ai.usage.input_tokens", int(u.prompt_tokens)));
                attrs.push(kv("gen_ai.usage.output_tokens", int(u.completion_tokens)));
            }
        }
        _ => {
            attrs.push(kv("error.type", s(&e.status.to_string())));
            attrs.push(kv("http.response.status_code", int(e.status.into())));
        }
    }
    let start = e.ts.millis() as i128 * 1_000_000;
    let end = start + (e.latency_ms.unwrap_or(0.0) as i128) * 1_000_000;
    json!({
        "traceId": trace_id,
        "spanId": span_id,
        "name": "chat",
        "kind": 3,
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": end.to_string(),
        "attributes": attrs,
        "status": if e.status == 200 { json!({}) } else { json!({"code": 2}) },
    })
}

/// The span identity an exchange id names: itself when it is `traceId-spanId` in hex, else
/// one derived from it (FNV-1a, stable across builds), so the same id always maps alike.
fn span_ids(id: &str) -> (String, String) {
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some((t, s)) = id.split_once('-') {
        if hex(t, 32) && hex(s, 16) {
            return (t.to_owned(), s.to_owned());
        }
    }
    let fnv = |salt: u8| {
        id.bytes()
            .chain([salt])
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            })
    };
    (
        format!("{:016x}{:016x}", fnv(1), fnv(2)),
        format!("{:016x}", fnv(3)),
    )
}

/// An `ExportTraceServiceRequest` holding `spans` from one service, as one OTLP/JSON line.
pub fn export_of(spans: Vec<Value>, service: &str) -> Value {
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "distillguard"}, "spans": spans}],
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: Value) -> Value {
        let v = match value {
            Value::String(s) => json!({"stringValue": s}),
            Value::Number(n) if n.is_i64() => json!({"intValue": n.to_string()}),
            Value::Number(n) => json!({"doubleValue": n}),
            Value::Array(a) => {
                json!({"arrayValue": {"values": a.into_iter().map(|s| json!({"stringValue": s})).collect::<Vec<_>>()}})
            }
            other => other,
        };
        json!({"key": key, "value": v})
    }

    fn line(spans: Vec<Value>) -> Vec<u8> {
        json!({"resourceSpans": [{
            "resource": {"attributes": [kv("service.name", json!("support-bot"))]},
            "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2"}, "spans": spans}],
        }]})
        .to_string()
        .into_bytes()
    }

    fn chat_span(span_id: &str, start_s: i64, extra: Vec<Value>) -> Value {
        let mut attrs = vec![
            kv("gen_ai.operation.name", json!("chat")),
            kv("gen_ai.provider.name", json!("openai")),
            kv("gen_ai.request.model", json!("gpt-4o-mini")),
            kv("gen_ai.request.max_tokens", json!(4096)),
            kv("gen_ai.request.temperature", json!(0.7)),
            kv("gen_ai.response.id", json!(format!("chatcmpl-{span_id}"))),
            kv("gen_ai.response.finish_reasons", json!(["length"])),
            kv("gen_ai.usage.input_tokens", json!(12)),
            kv("gen_ai.usage.output_tokens", json!(4096)),
            kv("client.address", json!("203.0.113.7")),
        ];
        attrs.extend(extra);
        json!({
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": span_id,
            "name": "chat gpt-4o-mini",
            "kind": 3,
            "startTimeUnixNano": (start_s * 1_000_000_000).to_string(),
            "endTimeUnixNano": ((start_s + 2) * 1_000_000_000).to_string(),
            "attributes": attrs,
            "status": {},
        })
    }

    fn parse(bytes: &[u8]) -> Vec<Result<Exchange, (BadLineKind, String)>> {
        let mut out = Vec::new();
        parse_line(bytes, &Options::default(), |r| out.push(r)).unwrap();
        out
    }

    #[test]
    fn a_chat_span_with_content_reads_as_the_exchange_it_records() {
        let input = json!([{"role": "user", "parts": [{"type": "text", "content": "Explain entropy step by step."}]}]).to_string();
        let output = json!([{"role": "assistant", "parts": [{"type": "text", "content": "Entropy is ..."}], "finish_reason": "length"}]).to_string();
        let span = chat_span(
            "00f067aa0ba902b7",
            1_772_323_200,
            vec![
                kv("gen_ai.input.messages", json!(input)),
                kv("gen_ai.output.messages", json!(output)),
                kv(
                    "gen_ai.system_instructions",
                    json!(json!([{"type": "text", "content": "Be brief."}]).to_string()),
                ),
                kv("user.id", json!("acct-42")),
            ],
        );
        let got = parse(&line(vec![span]));
        assert_eq!(got.len(), 1);
        let ex = got[0].as_ref().unwrap();
        assert_eq!(ex.account, "acct-42");
        assert_eq!(ex.id, "5b8efff798038103d269b633813fc60c-00f067aa0ba902b7");
        assert_eq!(ex.ts.millis(), 1_772_323_200_000);
        assert_eq!(ex.endpoint, "/v1/chat/completions");
        assert_eq!(ex.ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(ex.request.max_tokens, Some(4096));
        let messages = ex.request.messages.as_ref().unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].role, "system");
        assert_eq!(messages[1].role, "user");
        let response = ex.response.as_ref().unwrap();
        assert_eq!(response.choices[0].finish_reason.as_deref(), Some("length"));
        assert_eq!(response.usage.as_ref().unwrap().completion_tokens, 4096);
        // The same line read back through the exchange format is the same exchange.
        let text = serde_json::to_string(ex).unwrap();
        assert_eq!(&crate::parse_line(text.as_bytes()).unwrap(), ex);
    }

    #[test]
    fn spans_without_content_or_a_user_read_with_what_they_carry_and_other_spans_are_skipped() {
        let http = json!({
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "aaaaaaaaaaaaaaaa",
            "name": "POST /ask", "startTimeUnixNano": "1772323190000000000",
            "attributes": [kv("http.request.method", json!("POST"))],
        });
        let tool = chat_span(
            "bbbbbbbbbbbbbbbb",
            1_772_323_195,
            vec![kv("gen_ai.operation.name", json!("execute_tool"))],
        );
        let later = chat_span("cccccccccccccccc", 1_772_323_300, vec![]);
        let earlier = chat_span("dddddddddddddddd", 1_772_323_250, vec![]);
        let got = parse(&line(vec![http, tool, later, earlier]));
        // Only the two model calls, in the order they started; the account is the service.
        assert_eq!(got.len(), 2);
        let first = got[0].as_ref().unwrap();
        assert_eq!(
            first.id,
            "5b8efff798038103d269b633813fc60c-dddddddddddddddd"
        );
        assert_eq!(first.account, "support-bot");
        assert!(first.request.messages.is_none());
        assert_eq!(
            first.response.as_ref().unwrap().choices[0]
                .finish_reason
                .as_deref(),
            Some("length")
        );
        assert_eq!(
            got[1].as_ref().unwrap().id,
            "5b8efff798038103d269b633813fc60c-cccccccccccccccc"
        );
    }

    #[test]
    fn a_span_that_cannot_be_mapped_is_a_reason_and_a_line_that_is_not_otlp_an_error() {
        let mut no_start = chat_span("eeeeeeeeeeeeeeee", 1, vec![]);
        no_start
            .as_object_mut()
            .unwrap()
            .remove("startTimeUnixNano");
        let got = parse(&line(vec![no_start]));
        let (kind, why) = got[0].as_ref().unwrap_err();
        assert_eq!(*kind, BadLineKind::MissingField);
        assert!(why.contains("startTimeUnixNano"), "{why}");
        let err = parse_line(br#"{"resourceSpans": 3}"#, &Options::default(), |_| {}).unwrap_err();
        assert_eq!(err.0, BadLineKind::WrongType);
        assert!(looks_like(&line(vec![])));
        assert!(!looks_like(br#"{"id":"x","account":"a"}"#));
    }

    #[test]
    fn tool_calls_and_their_results_keep_their_ids() {
        let input = json!([
            {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
            {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}]},
            {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "rainy, 57F"}]},
        ])
        .to_string();
        let span = chat_span(
            "ffffffffffffffff",
            1_772_323_200,
            vec![kv("gen_ai.input.messages", json!(input))],
        );
        let got = parse(&line(vec![span]));
        let ex = got[0].as_ref().unwrap();
        let m = ex.request.messages.as_ref().unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].role, "assistant");
        assert_eq!(m[2].role, "tool");
    }

    fn event(span_id: &str, name: &str, body: Value) -> Value {
        json!({
            "timeUnixNano": "1772323200000000000",
            "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": span_id,
            "eventName": name,
            "attributes": [kv("gen_ai.system", json!("openai"))],
            "body": {"kvlistValue": {"values": body.as_object().unwrap().iter().map(|(k, v)| {
                let v = match v {
                    Value::String(s) => json!({"stringValue": s}),
                    Value::Number(n) => json!({"intValue": n.to_string()}),
                    Value::Object(o) => json!({"kvlistValue": {"values": o.iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}})).collect::<Vec<_>>()}}),
                    other => other.clone(),
                };
                json!({"key": k, "value": v})
            }).collect::<Vec<_>>()}},
        })
    }

    fn logs(records: Vec<Value>) -> Value {
        json!({"resourceLogs": [{
            "resource": {"attributes": [kv("service.name", json!("support-bot"))]},
            "scopeLogs": [{"scope": {"name": "opentelemetry.instrumentation.openai_v2"}, "logRecords": records}],
        }]})
    }

    /// The openai instrumentation's default: the span has no text, the log events have it.
    #[test]
    fn content_sent_as_log_events_is_joined_to_its_span() {
        let span_id = "1111111111111111";
        let mut contents = Contents::new(16);
        let taken = contents
            .add_request(
                &logs(vec![
                    event(span_id, "gen_ai.system.message", json!({"content": "Be brief."})),
                    event(span_id, "gen_ai.user.message", json!({"content": "Explain entropy."})),
                    event(
                        span_id,
                        "gen_ai.choice",
                        json!({"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Disorder."}}),
                    ),
                    // An application's own log line, and an event of no span: not content.
                    json!({"body": {"stringValue": "request handled"}, "traceId": "5b8efff798038103d269b633813fc60c", "spanId": span_id}),
                    json!({"eventName": "gen_ai.user.message", "body": {"kvlistValue": {"values": []}}}),
                ]),
                1_000,
            )
            .unwrap();
        assert_eq!(
            taken,
            logs::Taken {
                events: 3,
                ignored: 1,
                unjoinable: 1,
                evicted: 0
            }
        );
        assert!(contents.sends_content("support-bot", 2_000));
        assert!(!contents.sends_content("other", 2_000));

        let request: Value =
            serde_json::from_slice(&line(vec![chat_span(span_id, 1_772_323_200, vec![])])).unwrap();
        let bare = Contents::new(1);
        assert!(awaiting_content(&request, &bare, 2_000).is_empty());
        assert!(awaiting_content(&request, &contents, 2_000).is_empty());
        let mut read = Vec::new();
        parse_request(
            &request,
            &AccountAttributes::default(),
            Some(&contents),
            |r| read.push(r.unwrap()),
        )
        .unwrap();
        let ex = &read[0];
        let messages = ex.request.messages.as_ref().unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].role, "system");
        assert_eq!(messages[1].content.as_str(), "Explain entropy.");
        let choice = &ex.response.as_ref().unwrap().choices[0];
        assert_eq!(choice.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            choice.message.as_ref().unwrap().content.as_str(),
            "Disorder."
        );

        // A span of a service known to send its content this way, whose events are not here
        // yet, is one a receiver waits for.
        let other: Value = serde_json::from_slice(&line(vec![chat_span(
            "2222222222222222",
            1_772_323_201,
            vec![],
        )]))
        .unwrap();
        assert_eq!(
            awaiting_content(&other, &contents, 2_000),
            vec!["5b8efff798038103d269b633813fc60c-2222222222222222".to_owned()]
        );
        contents.forget("5b8efff798038103d269b633813fc60c-1111111111111111");
        assert!(contents.is_empty());
    }

    #[test]
    fn content_kept_for_spans_is_bounded_oldest_first() {
        let mut contents = Contents::new(2);
        let mut evicted = 0;
        for id in ["aaaaaaaaaaaaaaa1", "aaaaaaaaaaaaaaa2", "aaaaaaaaaaaaaaa3"] {
            let t = contents
                .add_request(
                    &logs(vec![event(
                        id,
                        "gen_ai.user.message",
                        json!({"content": "hi"}),
                    )]),
                    0,
                )
                .unwrap();
            evicted += t.evicted;
        }
        assert_eq!(evicted, 1);
        assert_eq!(contents.len(), 2);
        assert!(!contents.has("5b8efff798038103d269b633813fc60c-aaaaaaaaaaaaaaa1"));
        assert!(contents.has("5b8efff798038103d269b633813fc60c-aaaaaaaaaaaaaaa3"));
        assert!(looks_like_logs(logs(vec![]).to_string().as_bytes()));
        // A logs export read as traces says where it belongs.
        let (kind, why) = parse_line(
            logs(vec![]).to_string().as_bytes(),
            &Options::default(),
            |_| {},
        )
        .unwrap_err();
        assert_eq!(kind, BadLineKind::WrongType);
        assert!(why.contains("--otel-logs"), "{why}");
        // And so does one in a log read line by line in any format (scan's default).
        let mut said = Vec::new();
        crate::Format::default().parse_each(logs(vec![]).to_string().as_bytes(), |r| {
            said.push(r.map(|_| ()))
        });
        assert!(
            matches!(&said[..], [Err((BadLineKind::WrongType, why))] if why.contains("--otel-logs")),
            "{said:?}"
        );

        // A memory budget as well: long histories push the oldest calls' content out.
        let mut small = Contents::new(1000).with_max_bytes(2_500);
        let long = "x".repeat(900);
        let mut evicted = 0;
        for id in ["bbbbbbbbbbbbbbb1", "bbbbbbbbbbbbbbb2", "bbbbbbbbbbbbbbb3"] {
            evicted += small
                .add_request(
                    &logs(vec![event(
                        id,
                        "gen_ai.user.message",
                        json!({"content": long}),
                    )]),
                    0,
                )
                .unwrap()
                .evicted;
        }
        assert_eq!(evicted, 1);
        assert!(small.bytes() <= 2_500, "{}", small.bytes());
        assert!(!small.has("5b8efff798038103d269b633813fc60c-bbbbbbbbbbbbbbb1"));
        let before = small.bytes();
        small.forget("5b8efff798038103d269b633813fc60c-bbbbbbbbbbbbbbb3");
        assert!(small.bytes() > 0 && small.bytes() * 3 < before * 2);
        assert!(contents.add_line(br#"{"resourceLogs": 1}"#, 0).is_err());
    }
}
