//! The typed view of one exchange line. Field names and meanings follow `EXCHANGE_FORMAT.md`.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::text::{Content, LogitBias, Prompt};
use crate::Timestamp;

/// One call to an OpenAI-compatible API, as logged by the gateway.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Exchange {
    pub id: String,
    pub ts: Timestamp,
    pub account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    pub endpoint: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    pub request: Request,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Response>,
    /// Extension (distillguard): the detector's facts of the exchange as it was served, written
    /// by `distillguard export` beside a line whose text the log redacted, so a scan of the
    /// export reaches the verdicts the gateway did. Other readers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector_facts: Option<serde_json::Value>,
}

/// Identity facts the provider knows about the account; every one optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Kept as text: a malformed sign-up time only loses this fact, not the whole line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signup_ts: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
}

impl Meta {
    /// The field names, for callers that reject unknown ones (the admin API does; the log
    /// reader does not, so newer writers' logs still read). A test keeps it in step with the
    /// struct.
    pub const FIELDS: &'static [&'static str] = &[
        "payment_fingerprint",
        "org",
        "signup_ts",
        "country",
        "asn",
        "email_domain",
        "tls_fingerprint",
    ];

    /// Sign-up time in milliseconds since the epoch, when present and well formed.
    pub fn signup_millis(&self) -> Option<i64> {
        let text = self.signup_ts.as_deref()?;
        Timestamp::parse(text).ok().map(|t| t.millis())
    }
}

/// The request body (chat, completions or embeddings); fields not listed are ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Request {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<Message>>,
    /// Completions prompt (string, list of strings or token arrays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Prompt>,
    /// Embeddings input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Prompt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// `true` on chat, an integer (how many) on completions; both mean "logprobs wanted".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<LogitBias>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
}

impl Request {
    /// The requested output cap, whichever of the two spellings was used.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Whether token log-probabilities were asked for, in either API's spelling.
    pub fn wants_logprobs(&self) -> bool {
        match &self.logprobs {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or(0) > 0,
            _ => self.top_logprobs.unwrap_or(0) > 0,
        }
    }
}

/// One chat message. Content parts (text, images) are flattened to their text.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Content,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<serde_json::Value>>,
}

/// The response body; streamed calls are logged in their assembled form.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Response {
    #[serde(default)]
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<ResponseMessage>,
    /// Completions output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Only whether log-probabilities were returned matters to detection; their bulk is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present")]
    pub logprobs: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResponseMessage {
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub content: Content,
    /// Reasoning text some servers return beside the answer (vLLM, DeepSeek).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

impl Response {
    /// Total characters of answer text (content, completion text and reasoning) over all choices.
    pub fn output_chars(&self) -> usize {
        self.choices
            .iter()
            .map(|c| {
                c.text.as_deref().map_or(0, str::len)
                    + c.message.as_ref().map_or(0, |m| {
                        m.content.as_str().len()
                            + m.reasoning_content.as_deref().map_or(0, str::len)
                    })
            })
            .sum()
    }
}

/// `Some(true)` for any non-null value, skipping it without building it.
mod present {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        let v: Option<IgnoredAny> = Option::deserialize(d)?;
        Ok(v.map(|_| true))
    }

    pub fn serialize<S: Serializer>(v: &Option<bool>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(true) => s.serialize_some(&serde_json::json!({"content": []})),
            _ => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_fields_lists_every_field() {
        let full = Meta {
            payment_fingerprint: Some("p".into()),
            org: Some("o".into()),
            signup_ts: Some("2026-01-01T00:00:00Z".into()),
            country: Some("NL".into()),
            asn: Some(1),
            email_domain: Some("e".into()),
            tls_fingerprint: Some("t".into()),
        };
        let v = serde_json::to_value(&full).unwrap();
        let mut names: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut listed = Meta::FIELDS.to_vec();
        names.sort_unstable();
        listed.sort_unstable();
        assert_eq!(names, listed);
    }
}
