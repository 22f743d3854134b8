//! The typed view of one exchange line. Field names and meanings follow `EXCHANGE_FORMAT.md`.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::text::{Content, Item, LogitBias, Prompt};
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
    /// Responses API: the system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Responses API: the output cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// Responses API: `{"effort": …, "summary": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningParams>,
}

/// The Responses API's reasoning settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReasoningParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
}

/// The request fields that cap the output, in the order [`Request::max_output_tokens`] takes
/// them: chat's two spellings, then the Responses API's.
pub const OUTPUT_CAPS: [&str; 3] = ["max_completion_tokens", "max_tokens", "max_output_tokens"];

impl Request {
    /// The requested output cap, whichever of the three spellings was used ([`OUTPUT_CAPS`]).
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens
            .or(self.max_tokens)
            .or(self.max_output_tokens)
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
    /// Responses API: the output items (read into `choices` by [`Exchange::as_chat`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Vec<Item>>,
    /// Responses API: `completed`, `incomplete`, `failed`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Responses API: why an answer is incomplete (`{"reason": "max_output_tokens"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete_details: Option<serde_json::Value>,
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

/// Token counts; the Responses API's `input_tokens` / `output_tokens` read as the same.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    #[serde(default, alias = "input_tokens")]
    pub prompt_tokens: u64,
    #[serde(default, alias = "output_tokens")]
    pub completion_tokens: u64,
}

impl Exchange {
    /// A Responses API exchange (`/v1/responses`) in the chat form every reader of exchanges
    /// knows: `instructions` as a system message, `input` (text or items) as the messages,
    /// `max_output_tokens` as the cap, `reasoning.effort`, and the `output` items as one
    /// choice (text, reasoning summary, tool calls, and a finish reason from `status`).
    /// Other exchanges are returned as they are.
    pub fn as_chat(mut self) -> Self {
        if !self.endpoint.ends_with("/responses") {
            return self;
        }
        let req = &mut self.request;
        let mut messages = req.messages.take().unwrap_or_default();
        if let Some(sys) = req.instructions.take() {
            messages.insert(0, Message::text("system", sys));
        }
        if let Some(input) = req.input.take() {
            for t in input.texts {
                messages.push(Message::text("user", t));
            }
            for item in input.items {
                messages.push(input_message(item));
            }
        }
        req.messages = Some(messages);
        if req.reasoning_effort.is_none() {
            req.reasoning_effort = req.reasoning.as_ref().and_then(|r| r.effort.clone());
        }
        if let Some(resp) = self.response.as_mut() {
            if let Some(items) = resp.output.take() {
                resp.choices = vec![output_choice(items, resp)];
            }
        }
        self
    }
}

impl Message {
    fn text(role: &str, text: String) -> Self {
        Message {
            role: role.to_owned(),
            content: Content(text),
            tool_calls: None,
        }
    }
}

fn input_message(item: Item) -> Message {
    match item.kind.as_deref() {
        Some("function_call_output") | Some("custom_tool_call_output") => Message {
            role: "tool".into(),
            content: item.output.unwrap_or_default(),
            tool_calls: None,
        },
        Some("function_call") | Some("custom_tool_call") => Message {
            role: "assistant".into(),
            content: Content::default(),
            tool_calls: Some(vec![serde_json::json!({"type": "function", "function": {
                "name": item.name.unwrap_or_default(),
                "arguments": item.arguments.unwrap_or_default()}})]),
        },
        _ => Message {
            role: item.role.unwrap_or_else(|| "user".into()),
            content: item.content,
            tool_calls: None,
        },
    }
}

fn output_choice(items: Vec<Item>, resp: &Response) -> Choice {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for item in items {
        match item.kind.as_deref() {
            Some("reasoning") => {
                for part in [item.summary.0, item.content.0] {
                    if !part.is_empty() {
                        if !reasoning.is_empty() {
                            reasoning.push('\n');
                        }
                        reasoning.push_str(&part);
                    }
                }
            }
            Some("function_call") | Some("custom_tool_call") => calls.push(serde_json::json!({
                "id": item.call_id, "type": "function",
                "function": {"name": item.name, "arguments": item.arguments}})),
            _ => {
                if !item.content.0.is_empty() {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(&item.content.0);
                }
            }
        }
    }
    let cut = resp
        .incomplete_details
        .as_ref()
        .and_then(|d| d.get("reason"))
        .and_then(serde_json::Value::as_str)
        == Some("max_output_tokens");
    let finish = match resp.status.as_deref() {
        _ if cut => Some("length".to_owned()),
        Some("completed") if !calls.is_empty() => Some("tool_calls".to_owned()),
        Some("completed") => Some("stop".to_owned()),
        Some(other) => Some(other.to_owned()),
        None => None,
    };
    Choice {
        index: 0,
        message: Some(ResponseMessage {
            role: "assistant".into(),
            content: Content(text),
            reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
            tool_calls: (!calls.is_empty()).then_some(calls),
        }),
        text: None,
        finish_reason: finish,
        logprobs: None,
    }
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
    fn a_responses_api_exchange_reads_as_chat() {
        let line = serde_json::json!({
            "id": "r1", "ts": "2026-01-01T00:00:00Z", "account": "a", "endpoint": "/v1/responses",
            "status": 200,
            "request": {"model": "m", "instructions": "Be brief.", "max_output_tokens": 512,
                "reasoning": {"effort": "high"},
                "input": [
                    {"role": "user", "content": [{"type": "input_text", "text": "Explain TCP."}]},
                    {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c1", "output": "a result"},
                    {"role": "user", "content": "And UDP?"}
                ]},
            "response": {"id": "resp_1", "object": "response", "status": "incomplete",
                "incomplete_details": {"reason": "max_output_tokens"},
                "output": [
                    {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Think."}]},
                    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "UDP is"}]}
                ],
                "usage": {"input_tokens": 30, "output_tokens": 512, "total_tokens": 542}}
        });
        let ex = crate::parse_line(line.to_string().as_bytes()).unwrap();
        let m = ex.request.messages.as_ref().unwrap();
        let roles: Vec<&str> = m.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
        assert_eq!(m[1].content.as_str(), "Explain TCP.");
        assert_eq!(m[3].content.as_str(), "a result");
        assert_eq!(ex.request.max_output_tokens(), Some(512));
        assert_eq!(ex.request.reasoning_effort.as_deref(), Some("high"));
        let r = ex.response.unwrap();
        let c = &r.choices[0];
        assert_eq!(c.finish_reason.as_deref(), Some("length"));
        let msg = c.message.as_ref().unwrap();
        assert_eq!(msg.content.as_str(), "UDP is");
        assert_eq!(msg.reasoning_content.as_deref(), Some("Think."));
        assert_eq!(r.usage.unwrap().completion_tokens, 512);
        // A plain text input is one user message.
        let line = serde_json::json!({"id": "r2", "ts": "2026-01-01T00:00:00Z", "account": "a",
            "endpoint": "/v1/responses", "status": 200, "request": {"input": "hi"}});
        let ex = crate::parse_line(line.to_string().as_bytes()).unwrap();
        assert_eq!(ex.request.messages.unwrap()[0].content.as_str(), "hi");
    }

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
