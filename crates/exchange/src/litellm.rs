//! Reading LiteLLM's logs as exchanges.
//!
//! Many providers already run LiteLLM in front of their models, and it already logs every call:
//! its logging callbacks receive a `StandardLoggingPayload` (`kwargs["standard_logging_object"]`,
//! <https://docs.litellm.ai/docs/proxy/logging_spec>), and its proxy keeps a spend-log table
//! (`LiteLLM_SpendLogs`) that exports as JSON lines. Both carry what the detector reads: who
//! called (the virtual key's team, user, alias or hash), from where, when, with which model,
//! messages and parameters, and what came back. This module maps one such record onto the
//! exchange format, so `scan`, `groups` and the gateway's tail mode judge LiteLLM traffic as
//! they judge their own. The field-by-field mapping is `docs/importers.md`.
//!
//! What LiteLLM does not record (the client's user agent and TLS fingerprint, payment and
//! sign-up facts) is left out, never invented: the detector works without it, with fewer
//! links between accounts.

use serde_json::{json, Map, Value};

use crate::reader::BadLineKind;
use crate::{Exchange, Timestamp};

/// Which field names the account, tried in order; the first present and non-empty wins.
/// Default: the key's team, then its user, then the key's alias, then the key's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountFields(pub Vec<String>);

impl Default for AccountFields {
    fn default() -> Self {
        Self(
            ["team_id", "user_id", "key_alias", "key_hash"]
                .map(str::to_owned)
                .to_vec(),
        )
    }
}

/// Whether a log line looks like a LiteLLM record rather than an exchange: LiteLLM's records
/// name their `call_type`, which the exchange format never does. A byte search, so telling
/// the formats apart costs nothing next to parsing.
pub fn looks_like(line: &[u8]) -> bool {
    memchr::memmem::find(line, b"\"call_type\"").is_some()
}

/// Parses one LiteLLM record (a `StandardLoggingPayload` or a spend-log row) into an exchange.
pub fn parse_line(
    line: &[u8],
    accounts: &AccountFields,
) -> Result<Exchange, (BadLineKind, String)> {
    let text = std::str::from_utf8(line).map_err(|e| (BadLineKind::InvalidUtf8, e.to_string()))?;
    let v: Value =
        serde_json::from_str(text).map_err(|e| (BadLineKind::classify(&e), e.to_string()))?;
    let record = v.as_object().ok_or_else(|| {
        (
            BadLineKind::WrongType,
            "a LiteLLM record is a JSON object".to_owned(),
        )
    })?;
    let line = to_exchange(record, accounts).map_err(|m| (BadLineKind::MissingField, m))?;
    serde_json::from_value::<Exchange>(line)
        .map(Exchange::as_chat)
        .map_err(|e| (BadLineKind::classify(&e), e.to_string()))
}

/// The metadata LiteLLM keeps beside the call: `metadata` in both forms (a JSON string in
/// some spend-log exports).
fn metadata(record: &Map<String, Value>) -> Map<String, Value> {
    match record.get("metadata") {
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_default(),
        _ => Map::new(),
    }
}

fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The account: the first of `accounts` present, read from the metadata (`user_api_key_*`,
/// as the payload writes it) or the record (`team_id`, `user`, `api_key`, as the spend log does).
fn account(
    record: &Map<String, Value>,
    meta: &Map<String, Value>,
    accounts: &AccountFields,
) -> Option<String> {
    for field in &accounts.0 {
        let found = match field.as_str() {
            "team_id" => text(meta.get("user_api_key_team_id")).or(text(record.get("team_id"))),
            "user_id" => text(meta.get("user_api_key_user_id"))
                .or(text(record.get("user")))
                .or(text(record.get("end_user"))),
            "key_alias" => text(meta.get("user_api_key_alias")),
            "key_hash" => text(meta.get("user_api_key_hash")).or(text(record.get("api_key"))),
            other => text(meta.get(other)).or(text(record.get(other))),
        };
        if let Some(a) = found {
            return Some(a.to_owned());
        }
    }
    None
}

/// A time as LiteLLM writes it: seconds since the epoch (the payload) or ISO 8601 text (the
/// spend log), in milliseconds.
fn millis(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_f64().map(|s| (s * 1000.0).round() as i64),
        Value::String(s) => Timestamp::parse(s)
            .ok()
            .or_else(|| Timestamp::parse(&format!("{s}Z")).ok())
            .map(|t| t.millis()),
        _ => None,
    }
}

/// The endpoint a call type was served on.
fn endpoint(call_type: &str) -> String {
    match call_type {
        "completion" | "acompletion" => "/v1/chat/completions".into(),
        "text_completion" | "atext_completion" => "/v1/completions".into(),
        "embedding" | "aembedding" => "/v1/embeddings".into(),
        "responses" | "aresponses" => "/v1/responses".into(),
        other => format!("/v1/{other}"),
    }
}

fn to_exchange(record: &Map<String, Value>, accounts: &AccountFields) -> Result<Value, String> {
    let meta = metadata(record);
    let id = text(record.get("id"))
        .or(text(record.get("request_id")))
        .ok_or("no id or request_id")?;
    let started = millis(record.get("startTime")).ok_or("no startTime")?;
    let ended = millis(record.get("endTime"));
    let account = account(record, &meta, accounts).ok_or_else(|| {
        format!(
            "no account: none of {} is in the record",
            accounts.0.join(", ")
        )
    })?;
    let call_type = text(record.get("call_type")).unwrap_or("completion");
    let ok = match text(record.get("status")) {
        Some(s) => s == "success",
        None => record.get("response").is_some_and(|r| !r.is_null()),
    };
    let status = if ok {
        200
    } else {
        meta.get("error_information")
            .or(record.get("error_information"))
            .and_then(|e| e.get("error_code"))
            .and_then(|c| {
                c.as_str()
                    .and_then(|s| s.parse::<u16>().ok())
                    .or(c.as_u64().map(|n| n as u16))
            })
            .unwrap_or(500)
    };
    let model = text(record.get("model")).unwrap_or("unknown");

    // The request: the model, the messages (or the prompt), and the parameters it was called with.
    let mut request = Map::new();
    request.insert("model".into(), json!(model));
    match record.get("messages") {
        Some(Value::Array(m)) => {
            request.insert("messages".into(), Value::Array(m.clone()));
        }
        Some(Value::String(s)) if !s.is_empty() => {
            // Spend-log rows may hold the messages as JSON text, or a completion's prompt.
            match serde_json::from_str::<Value>(s) {
                Ok(Value::Array(m)) => {
                    request.insert("messages".into(), Value::Array(m));
                }
                _ => {
                    request.insert("prompt".into(), json!(s));
                }
            }
        }
        _ => {}
    }
    if let Some(Value::Object(params)) = record.get("model_parameters") {
        for (k, v) in params {
            request.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }

    // The response: LiteLLM keeps the provider's response object; a bare string is its text.
    let usage = json!({
        "prompt_tokens": record.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        "completion_tokens": record.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0),
    });
    let response = match record.get("response") {
        Some(Value::Object(r))
            if r.contains_key("choices") || r.contains_key("output") || r.contains_key("data") =>
        {
            let mut r = r.clone();
            r.entry("usage").or_insert(usage);
            Some(Value::Object(r))
        }
        Some(Value::String(s)) if !s.is_empty() => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(mut r)) if r.contains_key("choices") => {
                r.entry("usage").or_insert(usage);
                Some(Value::Object(r))
            }
            _ => Some(json!({
                "choices": [{"index": 0, "message": {"role": "assistant", "content": s}, "finish_reason": "stop"}],
                "usage": usage,
            })),
        },
        _ if ok => Some(json!({"choices": [], "usage": usage})),
        _ => None,
    };

    let ip = text(meta.get("requester_ip_address")).or(text(record.get("requester_ip_address")));
    let user_agent = text(meta.get("user_agent")).or(text(
        meta.get("requester_metadata")
            .and_then(|m| m.get("user_agent")),
    ));
    let mut out = json!({
        "id": id,
        "ts": Timestamp::from_millis(started).as_str(),
        "account": account,
        "endpoint": endpoint(call_type),
        "status": status,
        "request": Value::Object(request),
    });
    if let Some(key) = text(meta.get("user_api_key_hash")).or(text(record.get("api_key"))) {
        out["key"] = json!(key);
    }
    if let Some(ip) = ip {
        out["ip"] = json!(ip);
    }
    if let Some(ua) = user_agent {
        out["user_agent"] = json!(ua);
    }
    if let Some(end) = ended {
        out["latency_ms"] = json!((end - started).max(0) as f64);
    }
    if let Some(r) = response {
        out["response"] = r;
    }
    Ok(out)
}

/// One exchange as LiteLLM's logging callbacks would have received it (a
/// `StandardLoggingPayload`): what LiteLLM records, and nothing it does not (no user agent, no
/// account facts). The account goes where [`AccountFields::default`] reads it first, the team
/// id. `parse_line` reads it back; `distillguard simulate --as litellm` writes it.
pub fn payload_of(e: &Exchange) -> Value {
    let v = serde_json::to_value(e).unwrap();
    let start = e.ts.millis() as f64 / 1000.0;
    let mut params = v["request"].as_object().unwrap().clone();
    params.remove("model");
    let messages = params
        .remove("messages")
        .or_else(|| params.remove("prompt"))
        .unwrap_or(Value::Null);
    let usage = &v["response"]["usage"];
    json!({
        "id": e.id,
        "call_type": if e.endpoint == "/v1/completions" { "text_completion" } else { "acompletion" },
        "status": if e.status == 200 { "success" } else { "failure" },
        "startTime": start,
        "endTime": start + e.latency_ms.unwrap_or(0.0) / 1000.0,
        "model": e.request.model,
        "messages": messages,
        "model_parameters": params,
        "response": v["response"],
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "metadata": {
            "user_api_key_team_id": e.account,
            "user_api_key_hash": e.key,
            "requester_ip_address": e.ip,
            "error_information": if e.status == 200 { Value::Null } else { json!({"error_code": e.status.to_string()}) },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `StandardLoggingPayload` as LiteLLM's callbacks receive it (the fields this reads).
    fn payload() -> Value {
        json!({
            "id": "chatcmpl-1", "trace_id": "t", "call_type": "acompletion", "status": "success",
            "startTime": 1767225600.25, "endTime": 1767225601.5,
            "model": "gpt-4o-mini", "prompt_tokens": 12, "completion_tokens": 40, "total_tokens": 52,
            "metadata": {"user_api_key_hash": "88dc28", "user_api_key_alias": "prod",
                         "user_api_key_team_id": "team-7", "user_api_key_user_id": "u-1",
                         "requester_ip_address": "203.0.113.9"},
            "messages": [{"role": "user", "content": "Think step by step: why is the sky blue?"}],
            "response": {"id": "chatcmpl-1", "object": "chat.completion",
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": "Rayleigh scattering."}}]},
            "model_parameters": {"temperature": 0.7, "max_tokens": 4096},
        })
    }

    fn parse(v: &Value, fields: &AccountFields) -> Result<Exchange, (BadLineKind, String)> {
        let line = v.to_string();
        assert!(looks_like(line.as_bytes()));
        parse_line(line.as_bytes(), fields)
    }

    #[test]
    fn a_standard_logging_payload_reads_as_an_exchange() {
        let ex = parse(&payload(), &AccountFields::default()).unwrap();
        assert_eq!(ex.id, "chatcmpl-1");
        assert_eq!(ex.account, "team-7");
        assert_eq!(ex.ts.as_str(), "2026-01-01T00:00:00.250Z");
        assert_eq!(ex.endpoint, "/v1/chat/completions");
        assert_eq!(ex.status, 200);
        assert_eq!(ex.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(ex.latency_ms, Some(1250.0));
        assert_eq!(ex.request.max_tokens, Some(4096));
        assert_eq!(ex.request.temperature, Some(0.7));
        let r = ex.response.unwrap();
        assert_eq!(r.usage.unwrap().completion_tokens, 40);
        assert_eq!(r.choices.len(), 1);
    }

    #[test]
    fn the_account_field_is_chosen_in_order_and_a_record_without_one_is_a_bad_line() {
        let mut v = payload();
        v["metadata"]["user_api_key_team_id"] = Value::Null;
        assert_eq!(parse(&v, &AccountFields::default()).unwrap().account, "u-1");
        let alias = AccountFields(vec!["key_alias".into()]);
        assert_eq!(parse(&payload(), &alias).unwrap().account, "prod");
        let none = AccountFields(vec!["org_id".into()]);
        let (kind, why) = parse(&payload(), &none).unwrap_err();
        assert_eq!(kind, BadLineKind::MissingField);
        assert!(why.contains("org_id"), "{why}");
    }

    #[test]
    fn a_spend_log_row_reads_too() {
        let row = json!({
            "request_id": "req-9", "call_type": "completion", "api_key": "hashed-key",
            "startTime": "2026-01-01T00:00:05.000Z", "endTime": "2026-01-01T00:00:06.000Z",
            "model": "gpt-4o", "user": "", "team_id": "team-3", "prompt_tokens": 5, "completion_tokens": 7,
            "metadata": "{\"requester_ip_address\": \"198.51.100.4\"}",
            "messages": "[{\"role\": \"user\", \"content\": \"hello\"}]",
            "response": "{\"choices\": [{\"index\": 0, \"message\": {\"role\": \"assistant\", \"content\": \"hi\"}, \"finish_reason\": \"stop\"}]}",
        });
        let ex = parse(&row, &AccountFields::default()).unwrap();
        assert_eq!((ex.id.as_str(), ex.account.as_str()), ("req-9", "team-3"));
        assert_eq!(ex.key.as_deref(), Some("hashed-key"));
        assert_eq!(ex.ip.as_deref(), Some("198.51.100.4"));
        assert_eq!(ex.response.unwrap().choices.len(), 1);
    }

    #[test]
    fn a_failed_call_keeps_its_error_code_and_an_exchange_line_is_not_mistaken_for_one() {
        let mut v = payload();
        v["status"] = json!("failure");
        v["response"] = Value::Null;
        v["metadata"]["error_information"] = json!({"error_code": "429"});
        let ex = parse(&v, &AccountFields::default()).unwrap();
        assert_eq!(ex.status, 429);
        assert!(ex.response.is_none());
        let exchange_line = br#"{"id":"r1","ts":"2026-03-01T00:00:00Z","account":"a","endpoint":"/v1/chat/completions","status":200,"request":{"model":"m","messages":[{"role":"user","content":"what is \"call_type\"?"}]}}"#;
        assert!(!looks_like(exchange_line));
    }
}
