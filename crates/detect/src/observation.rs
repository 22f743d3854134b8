//! What one exchange says, reduced to the facts the signals use. Pure function of the exchange.

use std::sync::Arc;

use exchange::Exchange;
use serde::{Deserialize, Serialize};

use crate::sketch::{hash_bytes, mix};
use crate::text::{ip_hashes, normalised_hash, PhraseHits, PhraseMatcher, TextFacts};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    Other,
}

/// Version of what [`Observation`]'s hashes mean. Facts kept with a redacted log line are only
/// replayed under the same version; bump it whenever a change to text or hashing would give
/// the same exchange different facts.
pub const FACTS_VERSION: u32 = 5;

/// Reduces exchanges to [`Observation`]s, the detector's one way in: it owns what that takes
/// (the phrase matcher, built once), so callers never touch the text machinery. Reducing is
/// pure and the costly part of taking an exchange in, so it runs wherever the caller likes
/// (parser threads, a blocking pool): clone the observer for each, the matcher is shared.
#[derive(Clone, Default)]
pub struct Observer {
    phrases: Arc<PhraseMatcher>,
}

impl Observer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The facts of one exchange the detector keeps.
    pub fn observe(&self, ex: &Exchange) -> Observation {
        Observation::of(ex, &self.phrases)
    }
}

/// The facts of one exchange: everything the detector keeps of it, and no text. A log that
/// keeps only hashes or metadata keeps these beside each line, so a restart rebuilds the
/// detector's state as it was ([`Observation::to_facts`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Observation {
    pub account: String,
    /// The exchange's `ts` as written, echoed in `first_flagged`.
    pub ts_text: String,
    /// The exchange's `id`, named in the verdict change it causes (for the audit trail). Not
    /// kept in the stored facts: empty when replayed from them.
    #[serde(skip)]
    pub exchange_id: String,
    pub ts: i64,
    /// Generation calls (chat or completions); embeddings and others carry little harvest value.
    pub generative: bool,
    pub ok: bool,
    /// Facts of the last user message (chat) or the prompt (completions).
    pub prompt: TextFacts,
    pub phrases: PhraseHits,
    pub system: Option<u64>,
    pub user_turns: u32,
    pub assistant_turns: u32,
    pub tool_turns: u32,
    /// Hash of the conversation's first user message: one value per conversation.
    pub opening: u64,
    /// Identity of the request as a whole (opening, last prompt, position in the conversation,
    /// logit-bias ids): equal only when the same request is sent again.
    pub request_hash: u64,
    pub has_tools: bool,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub max_tokens: Option<u64>,
    pub finish_length: bool,
    /// The answer was a tool call: its length says nothing about harvested text.
    pub tool_call_answer: bool,
    pub logprobs: bool,
    pub top_logprobs: u32,
    pub n: u32,
    pub logit_bias_entries: usize,
    /// Hashes of the first `logit_bias` token ids (bounded), for the sweep sketch.
    pub logit_ids: Vec<u64>,
    pub reasoning_high: bool,
    pub reasoning_returned: bool,
    pub model: u64,
    pub ip: Option<(u64, u64)>,
    /// The block the address belongs to (`text::ip_hashes`): what tells a proxy pool on many
    /// ISPs from a carrier's or an office's exits. Absent from facts kept by earlier builds.
    #[serde(default)]
    pub ip_block: Option<u64>,
    pub signup: Option<i64>,
    /// Hash of `meta.payment_fingerprint`: accounts paying with one instrument are one payer.
    pub payment: Option<u64>,
    /// Client facts for linking accounts: user agent, TLS fingerprint, network (ASN).
    pub user_agent: Option<u64>,
    pub tls: Option<u64>,
    pub asn: Option<u64>,
    /// The client's settings for this call (system prompt, tools, whether `max_tokens` is
    /// set, temperature, logprobs, `n`, user agent): the same for every call of one script or
    /// one product's client, and what tells one stream of an account's traffic from another
    /// (the detector's streams). 0 when unknown (facts kept by an earlier version).
    pub stream: u64,
    /// Time from request to the answer's last byte (`latency_ms`), when the log has it: where
    /// the answer ended, and so how soon a follow-up came after it was read.
    #[serde(default)]
    pub latency_ms: Option<u32>,
    /// `head_hash` of the answer's text (0 without one): what a follow-up quotes back.
    #[serde(default)]
    pub answer_head: u64,
    /// `head_hash` of the assistant message a follow-up answers (the request ends with a
    /// user turn after it); 0 for any other call. Equal to the `answer_head` of the call that
    /// produced that answer, which ties a follow-up to its predecessor exactly, where a
    /// conversation's opening alone is shared by every conversation that begins "Hi".
    #[serde(default)]
    pub replies_to: u64,
}

/// Bytes of a text that identify it as an earlier answer: enough to tell answers apart, few
/// enough that hashing them costs nothing beside parsing the line.
const HEAD_BYTES: usize = 64;

/// A hash of a text's first [`HEAD_BYTES`] bytes (leading whitespace skipped); 0 for empty text.
pub fn head_hash(text: &str) -> u64 {
    let t = text.trim_start().as_bytes();
    if t.is_empty() {
        0
    } else {
        hash_bytes(&t[..t.len().min(HEAD_BYTES)]).max(1)
    }
}

/// Rough token count for text when the log has no `usage` (about four bytes a token in English).
pub fn estimate_tokens(bytes: usize) -> u64 {
    (bytes as u64).div_ceil(4)
}

impl Observation {
    pub(crate) fn of(ex: &Exchange, phrases: &PhraseMatcher) -> Self {
        // An exported line whose text was redacted carries the facts the detector had of the
        // full exchange; the line itself stays authoritative for who and when.
        if let Some(mut obs) = ex.detector_facts.as_ref().and_then(Self::from_facts_value) {
            obs.account = ex.account.clone();
            obs.ts_text = ex.ts.as_str().to_owned();
            obs.ts = ex.ts.millis();
            obs.latency_ms = latency(ex);
            return obs;
        }
        let endpoint = if ex.endpoint.ends_with("/chat/completions") {
            Endpoint::Chat
        } else if ex.endpoint.ends_with("/completions") {
            Endpoint::Completions
        } else if ex.endpoint.ends_with("/embeddings") {
            Endpoint::Embeddings
        } else {
            Endpoint::Other
        };
        let req = &ex.request;
        let address = ex.ip.as_deref().map(ip_hashes);
        let mut obs = Observation {
            account: ex.account.clone(),
            ts_text: ex.ts.as_str().to_owned(),
            exchange_id: ex.id.clone(),
            ts: ex.ts.millis(),
            generative: matches!(endpoint, Endpoint::Chat | Endpoint::Completions)
                || (endpoint == Endpoint::Other
                    && (req.messages.is_some() || req.prompt.is_some())),
            ok: ex.status < 400,
            max_tokens: req.max_output_tokens(),
            logprobs: req.wants_logprobs(),
            top_logprobs: req.top_logprobs.unwrap_or(0),
            n: req.n.unwrap_or(1),
            logit_bias_entries: req.logit_bias.as_ref().map_or(0, |b| b.0.len()),
            has_tools: req.tools.as_ref().is_some_and(|t| !t.is_empty()),
            reasoning_high: matches!(
                req.reasoning_effort.as_deref(),
                Some("high") | Some("medium")
            ),
            model: hash_bytes(req.model.as_deref().unwrap_or("").as_bytes()),
            ip: address.map(|(full, net, _)| (full, net)),
            ip_block: address.and_then(|(_, _, block)| block),
            signup: ex.meta.as_ref().and_then(|m| m.signup_millis()),
            payment: ex
                .meta
                .as_ref()
                .and_then(|m| m.payment_fingerprint.as_deref())
                .filter(|p| !p.is_empty())
                .map(|p| hash_bytes(p.as_bytes())),
            user_agent: ex
                .user_agent
                .as_deref()
                .filter(|u| !u.is_empty())
                .map(|u| hash_bytes(u.as_bytes())),
            tls: ex
                .meta
                .as_ref()
                .and_then(|m| m.tls_fingerprint.as_deref())
                .filter(|t| !t.is_empty())
                .map(|t| hash_bytes(t.as_bytes())),
            asn: ex.meta.as_ref().and_then(|m| m.asn),
            latency_ms: latency(ex),
            ..Default::default()
        };

        let mut prompt_bytes = 0usize;
        if let Some(messages) = &req.messages {
            let mut last_user: &str = "";
            let mut first_user: Option<&str> = None;
            let mut system_text: Option<&str> = None;
            // The assistant message the last user turn answers, while it is the last one.
            let mut replied: Option<&str> = None;
            let mut last_answer: Option<&str> = None;
            for m in messages {
                prompt_bytes += m.content.as_str().len();
                match m.role.as_str() {
                    "user" => {
                        obs.user_turns += 1;
                        last_user = m.content.as_str();
                        first_user.get_or_insert(m.content.as_str());
                        replied = last_answer.take();
                    }
                    "assistant" => {
                        obs.assistant_turns += 1;
                        last_answer = Some(m.content.as_str());
                        replied = None;
                    }
                    "tool" | "function" => {
                        obs.tool_turns += 1;
                        replied = None;
                    }
                    "system" | "developer" => {
                        system_text.get_or_insert(m.content.as_str());
                    }
                    _ => {}
                }
            }
            (obs.prompt, obs.phrases) = phrases.read(last_user);
            obs.replies_to = replied.map_or(0, head_hash);
            if let Some(sys) = system_text {
                let (facts, hits) = phrases.read(sys);
                obs.system = Some(facts.identity);
                obs.phrases.step_by_step |= hits.step_by_step;
                obs.phrases.hidden_reasoning |= hits.hidden_reasoning;
                obs.phrases.task_generation |= hits.task_generation;
            }
            // A fresh call opens its conversation with the prompt just read.
            obs.opening = match first_user {
                Some(first) if !std::ptr::eq(first, last_user) => normalised_hash(first),
                _ => obs.prompt.identity,
            };
        } else if let Some(p) = req.prompt.as_ref().or(req.input.as_ref()) {
            let text = p.first_text();
            prompt_bytes = p.texts.iter().map(String::len).sum::<usize>();
            obs.user_turns = 1;
            (obs.prompt, obs.phrases) = phrases.read(text);
            obs.opening = obs.prompt.exact;
        }

        let mut h = mix(obs.opening
            ^ mix(obs.prompt.exact)
            ^ u64::from(obs.user_turns + obs.assistant_turns + obs.tool_turns));
        if let Some(bias) = &req.logit_bias {
            obs.logit_ids = bias
                .0
                .iter()
                .take(64)
                .map(|(id, _)| hash_bytes(id.as_bytes()))
                .collect();
            for id in &obs.logit_ids {
                h = mix(h ^ id);
            }
        }
        obs.request_hash = h;
        obs.stream = stream_key(&obs, req.temperature);

        match ex.response.as_ref() {
            Some(resp) => {
                obs.finish_length = resp
                    .choices
                    .iter()
                    .any(|c| c.finish_reason.as_deref() == Some("length"));
                obs.tool_call_answer = resp.choices.iter().any(|c| {
                    c.finish_reason.as_deref() == Some("tool_calls")
                        || c.message
                            .as_ref()
                            .is_some_and(|m| m.tool_calls.as_ref().is_some_and(|t| !t.is_empty()))
                });
                obs.answer_head = resp.choices.first().map_or(0, |c| {
                    head_hash(
                        c.message
                            .as_ref()
                            .map(|m| m.content.as_str())
                            .or(c.text.as_deref())
                            .unwrap_or(""),
                    )
                });
                obs.reasoning_returned = resp.choices.iter().any(|c| {
                    c.message
                        .as_ref()
                        .is_some_and(|m| m.reasoning_content.is_some())
                });
                match resp.usage {
                    Some(u) => {
                        obs.prompt_tokens = u.prompt_tokens;
                        obs.completion_tokens = u.completion_tokens;
                    }
                    None => {
                        obs.prompt_tokens = estimate_tokens(prompt_bytes);
                        obs.completion_tokens = estimate_tokens(resp.output_chars());
                    }
                }
            }
            None => obs.prompt_tokens = estimate_tokens(prompt_bytes),
        }
        obs
    }

    /// The facts as kept beside a redacted log line: JSON tagged with [`FACTS_VERSION`].
    pub fn to_facts(&self) -> String {
        serde_json::to_string(&Facts {
            v: FACTS_VERSION,
            obs: std::borrow::Cow::Borrowed(self),
        })
        .expect("facts serialise")
    }

    /// Facts kept by [`Observation::to_facts`], when they parse and were made by this version
    /// of the detector.
    pub fn from_facts(text: &str) -> Option<Self> {
        serde_json::from_str::<Facts>(text).ok()?.current()
    }

    /// [`Observation::from_facts`] for facts already parsed as JSON.
    pub fn from_facts_value(value: &serde_json::Value) -> Option<Self> {
        Facts::deserialize(value).ok()?.current()
    }

    /// A fresh context: one user turn and no earlier answers in the request.
    pub fn single_turn(&self) -> bool {
        self.user_turns <= 1 && self.assistant_turns == 0 && self.tool_turns == 0
    }
}

/// The line's `latency_ms`, when it is a plausible duration (under 49 days).
fn latency(ex: &Exchange) -> Option<u32> {
    ex.latency_ms
        .filter(|l| l.is_finite() && *l >= 0.0 && *l < f64::from(u32::MAX))
        .map(|l| l as u32)
}

/// The stream key of [`Observation::stream`]: never 0.
fn stream_key(obs: &Observation, temperature: Option<f64>) -> u64 {
    let flags = u64::from(obs.has_tools)
        | u64::from(obs.max_tokens.is_some()) << 1
        | u64::from(obs.logprobs) << 2
        | u64::from(obs.n > 1) << 3
        | u64::from(temperature.is_some()) << 4;
    let mut h = mix(0x5eed ^ flags);
    h = mix(h ^ obs.system.unwrap_or(0));
    h = mix(h ^ obs.user_agent.unwrap_or(0));
    h = mix(h ^ temperature.map_or(0, |t| (t * 100.0).round() as i64 as u64));
    h.max(1)
}

#[derive(Serialize, Deserialize)]
struct Facts<'a> {
    v: u32,
    obs: std::borrow::Cow<'a, Observation>,
}

impl Facts<'_> {
    /// The observation, when this version of the detector made it.
    fn current(self) -> Option<Observation> {
        (self.v == FACTS_VERSION).then(|| self.obs.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::PhraseMatcher;

    #[test]
    fn facts_round_trip_and_refuse_another_version() {
        let line = r#"{"id":"r1","ts":"2026-03-01T00:00:00Z","account":"a","endpoint":"/v1/chat/completions","status":200,"request":{"model":"m","messages":[{"role":"user","content":"Think step by step: why is the sky blue?"}],"max_tokens":4096},"response":{"choices":[{"index":0,"message":{"role":"assistant","content":"Rayleigh scattering."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3}}}"#;
        let ex = exchange::parse_line(line.as_bytes()).unwrap();
        let obs = Observation::of(&ex, &PhraseMatcher::default());
        assert!(obs.phrases.step_by_step);
        let kept = obs.to_facts();
        assert!(!kept.contains("sky"), "facts keep no text: {kept}");
        // Everything but the exchange's id, which the facts do not keep.
        assert_eq!(
            Observation::from_facts(&kept),
            Some(Observation {
                exchange_id: String::new(),
                ..obs
            })
        );
        let other = kept.replacen(
            &format!("\"v\":{FACTS_VERSION}"),
            &format!("\"v\":{}", FACTS_VERSION + 1),
            1,
        );
        assert_eq!(Observation::from_facts(&other), None);
        assert_eq!(Observation::from_facts("not json"), None);

        // A line that carries facts is read from them (the line names the account and time);
        // facts of another version, or malformed ones, leave the line's own text to be read.
        let phrases = PhraseMatcher::default();
        let redacted = line
            .replace(
                "Think step by step: why is the sky blue?",
                "sha256:00 chars:40",
            )
            .replace("\"account\":\"a\"", "\"account\":\"b\"");
        let with = |facts: &str| {
            let l = format!(
                "{},\"detector_facts\":{facts}}}",
                &redacted[..redacted.len() - 1]
            );
            Observation::of(&exchange::parse_line(l.as_bytes()).unwrap(), &phrases)
        };
        let carried = with(&kept);
        assert!(carried.phrases.step_by_step && carried.account == "b");
        for stale in [other.as_str(), "{\"v\":1}", "[1,2]"] {
            assert!(!with(stale).phrases.step_by_step, "{stale}");
        }
    }
}
