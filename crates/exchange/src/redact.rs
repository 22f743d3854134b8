//! What the log keeps of an exchange's text under each content policy (`full`, `hashes`,
//! `metadata`). One concern, used by the local log writer and by the bus worker alike; it
//! belongs with the format, whose fields it walks.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What a log keeps of an exchange's text: all of it, each text by its hash and length, or
/// none (metadata only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentPolicy {
    Full,
    Hashes,
    Metadata,
}

impl ContentPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ContentPolicy::Full => "full",
            ContentPolicy::Hashes => "hashes",
            ContentPolicy::Metadata => "metadata",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(ContentPolicy::Full),
            "hashes" => Some(ContentPolicy::Hashes),
            "metadata" => Some(ContentPolicy::Metadata),
            _ => None,
        }
    }
}

/// Keys whose string values are the schema's own words (a role, a model, a finish reason, an
/// id), not what a person or the model wrote: they are kept under every content policy.
/// Everything else in a request or a response is text until proven otherwise.
pub const STRUCTURAL: &[&str] = &[
    "model",
    "role",
    "type",
    "object",
    "id",
    "finish_reason",
    "system_fingerprint",
    "service_tier",
    "reasoning_effort",
    "encoding_format",
    "tool_choice",
    "tool_call_id",
    "detail",
    "format",
];

/// Keys whose numbers stand for text: token ids of a completions prompt or an embeddings
/// input, the bytes of a logprob token, an embedding vector (from which text can be
/// recovered).
const NUMBERS_AS_TEXT: &[&str] = &["prompt", "input", "bytes", "embedding"];

/// What the log keeps of an exchange under `hashes` (each text by its SHA-256 and length) and
/// `metadata` (no text). The whole request and response are walked, whatever their shape, and
/// every string is redacted unless its key is one of a few structural ones ([`STRUCTURAL`]):
/// message content as a string or as content parts, tool descriptions and call arguments,
/// tool results, reasoning fields, logprob tokens, completions prompts, embeddings input, an
/// unparsed body. A field OpenAI adds tomorrow is redacted by default. Identity facts outside
/// the request and response (account, key id, address, `meta`) are kept: they are what
/// linking reads.
pub fn redact(v: &mut Value, policy: ContentPolicy) {
    if policy == ContentPolicy::Full {
        return;
    }
    for section in ["request", "response"] {
        if let Some(part) = v.get_mut(section) {
            redact_value(part, None, policy);
        }
    }
}

fn redact_value(v: &mut Value, key: Option<&str>, policy: ContentPolicy) {
    match v {
        Value::String(text) => {
            if !key.is_some_and(|k| STRUCTURAL.contains(&k)) {
                *v = redacted_text(text, policy);
            }
        }
        Value::Array(items) => {
            if key.is_some_and(|k| NUMBERS_AS_TEXT.contains(&k)) && holds_numbers(items) {
                *v = redacted_text(&Value::Array(std::mem::take(items)).to_string(), policy);
                return;
            }
            // An array's items are read under the array's key (`prompt: ["a", "b"]`).
            for item in items {
                redact_value(item, key, policy);
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                redact_value(item, Some(k.as_str()), policy);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn holds_numbers(items: &[Value]) -> bool {
    items.iter().any(|i| match i {
        Value::Number(_) => true,
        Value::Array(inner) => holds_numbers(inner),
        _ => false,
    })
}

fn redacted_text(text: &str, policy: ContentPolicy) -> Value {
    match policy {
        ContentPolicy::Hashes => Value::String(format!(
            "sha256:{:x} chars:{}",
            Sha256::digest(text.as_bytes()),
            text.chars().count()
        )),
        _ => Value::String(String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An exchange with text in every place the OpenAI schema puts it.
    fn everywhere() -> Value {
        json!({
            "id": "req_1", "ts": "2026-01-01T00:00:00Z", "account": "acme", "key": "key_1",
            "ip": "10.0.0.1", "endpoint": "/v1/chat/completions", "status": 200,
            "meta": {"payment_fingerprint": "pf_1"},
            "request": {
                "model": "m",
                "messages": [
                    {"role": "system", "content": "SECRET-system"},
                    {"role": "user", "content": [
                        {"type": "text", "text": "SECRET-part"},
                        {"type": "image_url", "image_url": {"url": "data:SECRET-image", "detail": "low"}}
                    ]},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "SECRET-fn", "arguments": "{\"q\":\"SECRET-args\"}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "SECRET-result"}
                ],
                "tools": [{"type": "function", "function": {"name": "lookup", "description": "SECRET-tool",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string", "description": "SECRET-param"}}}}}],
                "stop": ["SECRET-stop"],
                "user": "SECRET-user",
                "max_tokens": 50,
                "some_future_field": {"nested": ["SECRET-future"]}
            },
            "response": {
                "id": "chatcmpl-1", "object": "chat.completion", "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": [{"type": "output_text", "text": "SECRET-answer"}],
                        "reasoning_content": "SECRET-reasoning", "reasoning": "SECRET-reasoning2", "refusal": "SECRET-refusal"},
                    "logprobs": {"content": [{"token": "SECRET-token", "logprob": -0.1, "bytes": [83, 69],
                        "top_logprobs": [{"token": "SECRET-top", "logprob": -1.0, "bytes": [83]}]}]}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 7}
            }
        })
    }

    #[test]
    fn redaction_walks_the_whole_schema_and_keeps_the_structure() {
        for policy in [ContentPolicy::Metadata, ContentPolicy::Hashes] {
            let mut v = everywhere();
            redact(&mut v, policy);
            let text = v.to_string();
            assert!(!text.contains("SECRET"), "{policy:?} left text: {text}");
            assert!(!text.contains("[83,69]"), "logprob bytes are text too");
            // What detection and linking read stays.
            assert_eq!(v["account"], "acme");
            assert_eq!(v["meta"]["payment_fingerprint"], "pf_1");
            assert_eq!(v["request"]["model"], "m");
            assert_eq!(v["request"]["max_tokens"], 50);
            assert_eq!(v["request"]["messages"][1]["role"], "user");
            assert_eq!(v["request"]["messages"][1]["content"][0]["type"], "text");
            assert_eq!(v["response"]["choices"][0]["finish_reason"], "stop");
            assert_eq!(v["response"]["usage"]["completion_tokens"], 7);
            // And the line still reads as an exchange.
            crate::parse_line(text.as_bytes()).expect("a redacted line still reads");
        }
    }

    #[test]
    fn completions_prompts_and_embeddings_input_are_redacted_in_every_shape() {
        for request in [
            json!({"model": "m", "prompt": "SECRET"}),
            json!({"model": "m", "prompt": ["SECRET-a", "SECRET-b"]}),
            json!({"model": "m", "prompt": [1234, 5678]}),
            json!({"model": "m", "input": [[1234, 5678], [91011]]}),
            json!({"unparsed_body": "{\"messages\": SECRET"}),
        ] {
            let mut v = json!({"id": "x", "ts": "2026-01-01T00:00:00Z", "account": "a",
                "endpoint": "/v1/embeddings", "status": 200, "request": request,
                "response": {"data": [{"object": "embedding", "embedding": [0.25, -0.5]}]}});
            redact(&mut v, ContentPolicy::Metadata);
            let text = v.to_string();
            for leak in ["SECRET", "1234", "91011", "0.25"] {
                assert!(!text.contains(leak), "{leak} in {text}");
            }
        }
        // Hashes keep equal texts equal, so repeats can still be counted.
        let hashed = |t: &str| {
            let mut v = json!({"request": {"prompt": t}});
            redact(&mut v, ContentPolicy::Hashes);
            v["request"]["prompt"].clone()
        };
        assert_eq!(hashed("same"), hashed("same"));
        assert_ne!(hashed("same"), hashed("other"));
    }
}
