//! Token counts when an upstream does not report usage: the gateway asks streams for
//! `include_usage`, and counts with OpenAI's `o200k_base` encoding (the GPT-4o family's) when
//! the answer still comes without it. Other model families tokenise differently; the count is
//! then an estimate, and the log says so (`usage.estimated`).

use std::sync::OnceLock;

use serde_json::Value;
use tiktoken_rs::CoreBPE;

fn bpe() -> &'static CoreBPE {
    static BPE: OnceLock<CoreBPE> = OnceLock::new();
    BPE.get_or_init(|| {
        tiktoken_rs::o200k_base().expect("the o200k_base vocabulary is built into tiktoken-rs")
    })
}

pub fn count(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    bpe().encode_ordinary(text).len() as u64
}

/// Tokens of a request's prompt: its messages' text (plus a few per message for the chat
/// framing, as OpenAI counts), or its completion prompt.
pub fn prompt_tokens(request: &Value) -> u64 {
    if let Some(messages) = request.get("messages").and_then(Value::as_array) {
        return messages
            .iter()
            .map(|m| {
                let text = match m.get("content") {
                    Some(Value::String(s)) => count(s),
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .map(count)
                        .sum(),
                    _ => 0,
                };
                text + 4
            })
            .sum::<u64>()
            + 3;
    }
    match request.get("prompt") {
        Some(Value::String(s)) => count(s),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(count).sum(),
        _ => 0,
    }
}

/// Tokens used by a call: the response's own `usage` when it has one; otherwise counted here
/// and written into the (logged) response as `usage` with `"estimated": true`.
pub fn fill_usage(request: &Value, response: &mut Value) -> u64 {
    if let Some(u) = response.get("usage").filter(|u| u.is_object()) {
        let get = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        return u
            .get("total_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(get("prompt_tokens") + get("completion_tokens"));
    }
    let mut completion = 0;
    for c in response
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        completion += c.get("text").and_then(Value::as_str).map_or(0, count);
        if let Some(m) = c.get("message") {
            for key in ["content", "reasoning_content"] {
                completion += m.get(key).and_then(Value::as_str).map_or(0, count);
            }
        }
    }
    let prompt = prompt_tokens(request);
    if let Some(obj) = response.as_object_mut() {
        obj.insert(
            "usage".into(),
            serde_json::json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion, "estimated": true}),
        );
    }
    prompt + completion
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_with_o200k() {
        assert_eq!(count("hello world"), 2);
        assert_eq!(count(""), 0);
        let req = serde_json::json!({"messages": [{"role": "user", "content": "hello world"}]});
        assert_eq!(prompt_tokens(&req), 2 + 4 + 3);
    }
}
