//! The edge's reading of a request body: one normal form for what is proxied, logged and
//! judged.
//!
//! Upstreams such as vLLM coerce types (`"max_tokens":"512"` is served as 512 tokens), while
//! the exchange reader, and so the detector, reads them strictly. A body the two read
//! differently is a detection bypass (the upstream answers, the detector skips the line) and a
//! policy bypass (a `degrade` cap that only acts on integers misses `4096.0`). So the gateway
//! decides here, once, before the policy, the limits, the upstream and the log see the body:
//!
//! - a count written as an integral float (`4096.0`) is that integer, and becomes `4096`;
//! - what OpenAI's schema refuses is refused with an OpenAI-style 400 naming the field, as
//!   OpenAI's own API does: a number or boolean sent as a string, a fraction or a negative
//!   where a count is expected, a lone UTF-16 surrogate;
//! - last, the body must read as the exchange reader's typed [`exchange::Request`], with the
//!   reader's own code, so anything that reaches the upstream can be observed.
//!
//! The normal form is what goes upstream, serialized once here: the upstream never receives
//! bytes the log does not hold (duplicate keys, for one, are resolved once, by this parser).

use serde_json::{Number, Value};

use crate::error::ApiError;

pub use exchange::OUTPUT_CAPS;

/// The output cap a normalised body asks for, if any.
pub fn output_cap(body: &Value) -> Option<u64> {
    OUTPUT_CAPS
        .iter()
        .find_map(|k| body.get(k))
        .and_then(Value::as_u64)
}

/// Fields that count something: non-negative integers.
const COUNTS: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "n",
    "top_logprobs",
    "best_of",
    "dimensions",
];
/// Fields that are integers of either sign.
const INTEGERS: &[&str] = &["seed", "top_k"];
/// Fields that are numbers.
const NUMBERS: &[&str] = &[
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "min_p",
];
/// Fields that are booleans.
const BOOLEANS: &[&str] = &["stream", "echo", "parallel_tool_calls"];
/// Fields that are strings.
const STRINGS: &[&str] = &["model", "reasoning_effort", "user"];

/// Reads a request body into its normal form, or says why it is refused.
pub fn parse(body: &[u8]) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_slice(body).map_err(|e| json_error(body, &e))?;
    normalise(&mut v)?;
    Ok(v)
}

/// Brings a parsed body to its normal form in place (see the module docs).
pub fn normalise(v: &mut Value) -> Result<(), ApiError> {
    let Some(obj) = v.as_object_mut() else {
        return Err(ApiError::invalid_request(
            "The request body must be a JSON object.",
        ));
    };
    for (key, value) in obj.iter_mut() {
        let key = key.as_str();
        if value.is_null() {
            continue;
        }
        if COUNTS.contains(&key) {
            *value = Value::from(integer(key, value, true)?);
        } else if INTEGERS.contains(&key) {
            *value = Value::from(integer(key, value, false)?);
        } else if NUMBERS.contains(&key) {
            if !value.is_number() {
                return Err(wrong_type(key, "a number", value));
            }
        } else if BOOLEANS.contains(&key) {
            if !value.is_boolean() {
                return Err(wrong_type(key, "a boolean", value));
            }
        } else if STRINGS.contains(&key) {
            if !value.is_string() {
                return Err(wrong_type(key, "a string", value));
            }
        } else if key == "logprobs" {
            // A boolean on chat, a count on completions; both mean "logprobs wanted".
            if !value.is_boolean() {
                *value = Value::from(integer(key, value, true)?);
            }
        } else if key == "stream_options" {
            stream_options(value)?;
        }
    }
    check_typed(v)
}

fn stream_options(value: &mut Value) -> Result<(), ApiError> {
    let Some(o) = value.as_object() else {
        return Err(wrong_type("stream_options", "an object", value));
    };
    match o.get("include_usage") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => Ok(()),
        Some(other) => Err(wrong_type(
            "stream_options.include_usage",
            "a boolean",
            other,
        )),
    }
}

/// An integer field: an integer, or a float with no fraction (JSON has one number type, so
/// `4096.0` is 4096); anything else is refused.
fn integer(key: &str, value: &Value, non_negative: bool) -> Result<Number, ApiError> {
    let Value::Number(n) = value else {
        return Err(wrong_type(key, "an integer", value));
    };
    if let Some(u) = n.as_u64() {
        return Ok(u.into());
    }
    if let Some(i) = n.as_i64() {
        if non_negative {
            return Err(ApiError::invalid_request(format!(
                "Invalid '{key}': expected a non-negative integer, but got {i}."
            ))
            .with_param(key));
        }
        return Ok(i.into());
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    // Integral and exactly representable: 2^53 is where floats stop holding every integer.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if f.fract() == 0.0 && f.abs() <= EXACT {
        if f >= 0.0 {
            return Ok((f as u64).into());
        }
        if !non_negative {
            return Ok((f as i64).into());
        }
    }
    Err(ApiError::invalid_request(format!(
        "Invalid '{key}': expected {}, but got {n}.",
        if non_negative {
            "a non-negative integer"
        } else {
            "an integer"
        }
    ))
    .with_param(key))
}

fn wrong_type(key: &str, expected: &str, got: &Value) -> ApiError {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    ApiError::invalid_request(format!(
        "Invalid type for '{key}': expected {expected}, but got {kind} instead."
    ))
    .with_param(key)
}

/// The reader's typed parse, with the path of the field it refused.
fn check_typed(v: &Value) -> Result<(), ApiError> {
    match serde_path_to_error::deserialize::<_, exchange::Request>(v) {
        Ok(_) => Ok(()),
        Err(e) => {
            let path = e.path().to_string();
            Err(
                ApiError::invalid_request(format!("Invalid value for '{path}': {}.", e.inner()))
                    .with_param(&path),
            )
        }
    }
}

/// A JSON syntax error in words a client can act on. serde_json calls a lone UTF-16 surrogate
/// escape (`"\ud800"`) an "unexpected end of hex escape", which sends people looking for a
/// truncated body.
fn json_error(body: &[u8], e: &serde_json::Error) -> ApiError {
    let msg = e.to_string();
    if msg.contains("hex escape") && has_lone_surrogate_escape(body) {
        return ApiError::invalid_request(format!(
            "We could not parse the JSON body of your request: it contains a lone UTF-16 \
             surrogate escape (\\ud800 to \\udfff without its pair), which is not valid \
             Unicode ({msg})."
        ));
    }
    ApiError::invalid_request(format!(
        "We could not parse the JSON body of your request: {msg}"
    ))
}

fn has_lone_surrogate_escape(body: &[u8]) -> bool {
    body.windows(4).any(|w| {
        (w[0] == b'\\')
            & (w[1] == b'u')
            & matches!(w[2], b'd' | b'D')
            & matches!(w[3], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
    })
}

/// The normal form as the bytes sent upstream.
pub fn to_bytes(v: &Value) -> bytes::Bytes {
    bytes::Bytes::from(serde_json::to_vec(v).expect("a JSON value always serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(body: Value) -> Value {
        parse(body.to_string().as_bytes()).expect("accepted")
    }

    fn refused(body: &str) -> String {
        parse(body.as_bytes()).expect_err("refused").message
    }

    #[test]
    fn integral_floats_become_integers() {
        let v = ok(
            json!({"model": "m", "max_tokens": 4096.0, "n": 4.0, "max_completion_tokens": 1e3, "seed": -3.0}),
        );
        assert_eq!(v["max_tokens"], json!(4096));
        assert!(v["max_tokens"].is_u64());
        assert_eq!(v["n"], json!(4));
        assert_eq!(v["max_completion_tokens"], json!(1000));
        assert_eq!(v["seed"], json!(-3));
    }

    #[test]
    fn numbers_and_booleans_as_strings_are_refused_naming_the_field() {
        for (body, field) in [
            (r#"{"max_tokens":"512"}"#, "max_tokens"),
            (r#"{"temperature":"0.7"}"#, "temperature"),
            (r#"{"stream":"false"}"#, "stream"),
            (r#"{"n":"4"}"#, "n"),
            (r#"{"logprobs":"true"}"#, "logprobs"),
            (r#"{"max_tokens":512.5}"#, "max_tokens"),
            (r#"{"max_tokens":-1}"#, "max_tokens"),
            (r#"{"top_logprobs":1e300}"#, "top_logprobs"),
            (
                r#"{"stream_options":{"include_usage":"yes"}}"#,
                "include_usage",
            ),
        ] {
            let e = parse(body.as_bytes()).expect_err(body);
            assert_eq!(e.status, 400, "{body}");
            assert!(e.message.contains(field), "{body}: {}", e.message);
        }
    }

    #[test]
    fn what_the_reader_refuses_is_refused_here_with_its_path() {
        let e = parse(br#"{"messages":[{"role":"user","content":{"text":"hi"}}]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
        assert!(refused(r#"{"messages":"hi"}"#).contains("messages"));
        assert!(refused(r#"{"messages":[{"content":"no role"}]}"#).contains("role"));
        assert!(refused(r#"{"model":7}"#).contains("model"));
        assert!(refused(r#"[1,2]"#).contains("JSON object"));
    }

    #[test]
    fn everything_accepted_reads_with_the_exchange_reader() {
        for body in [
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "max_tokens": 5.0, "stream": false, "temperature": 0, "logprobs": true, "top_logprobs": 3.0}),
            json!({"model": "m", "prompt": ["a", "b"], "logprobs": 5.0, "echo": true}),
            json!({"model": "m", "input": [[1, 2, 3]], "dimensions": 256}),
            json!({"model": "m", "max_tokens": null, "stream_options": {"include_usage": true}}),
        ] {
            let v = ok(body);
            let line = json!({"id": "x", "ts": "2026-01-01T00:00:00Z", "account": "a", "endpoint": "/v1/chat/completions", "status": 200, "request": v});
            exchange::parse_line(line.to_string().as_bytes()).expect("reads");
        }
    }

    #[test]
    fn a_lone_surrogate_is_named_as_such() {
        let m = refused(r#"{"messages":[{"role":"user","content":"\ud800"}]}"#);
        assert!(m.contains("lone UTF-16 surrogate"), "{m}");
        // A proper pair is fine.
        ok(json!({"messages": [{"role": "user", "content": "\u{1F600}"}]}));
        assert!(!refused(r#"{"a": "\u12"}"#).contains("surrogate"));
    }
}
