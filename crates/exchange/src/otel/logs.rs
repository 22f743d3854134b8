//! Message content recorded as OpenTelemetry *log events*, joined to the span of its call.
//!
//! Not every producer puts a call's messages on its span. The official instrumentation of the
//! `openai` SDK (`opentelemetry-instrumentation-openai-v2`), in its default mode, records
//! them as log events through the Logs signal: one `gen_ai.{system,user,assistant,tool}.message`
//! event per message sent and one `gen_ai.choice` per answer, each carrying the trace and
//! span id of the call (the GenAI event conventions, semconv 1.28 to 1.36). Newer producers
//! send one `gen_ai.client.inference.operation.details` event with the same
//! `gen_ai.input.messages` / `gen_ai.output.messages` / `gen_ai.system_instructions`
//! attributes a span may carry. Either way the span holds the call (time, model, usage,
//! parameters, the account) and the events hold its text: without the join the detector
//! sees the shape of the traffic and none of its prompts.
//!
//! [`Contents`] keeps, per span, what the events of that span said, in the GenAI message form
//! the span reader takes (`{"role", "parts": [..]}`), until the span arrives and takes it.
//! The two signals are exported apart and in either order (an SDK's log processor flushes
//! every second by default, its span processor every five), so the store is bounded (oldest
//! span first out, counted) and remembers which services send their content this way, so a
//! receiver knows a span of theirs without text is worth a short wait.

use std::collections::{HashMap, VecDeque};

use serde_json::{json, Map, Value};

use super::value::{any_value, attributes, text};
use crate::reader::BadLineKind;

/// How long a service that sent content events is expected to keep sending them.
const SENDER_MEMORY_MS: i64 = 10 * 60 * 1000;

/// What the log events of one call said.
#[derive(Debug, Default, Clone)]
struct Recorded {
    /// Messages sent, in the order they were recorded.
    input: Vec<Value>,
    /// Answers by choice index.
    output: Vec<(u64, Value)>,
    /// Attributes of an `operation.details` event, as a span would carry them.
    details: Map<String, Value>,
    /// About how much memory the above holds.
    bytes: usize,
}

/// What [`Contents::add_request`] took from one export request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// GenAI content events kept for their span.
    pub events: u64,
    /// Log records that are not GenAI content events (application logs): not ours to read.
    pub ignored: u64,
    /// GenAI events with no span to join them to: their text has no call to belong to.
    pub unjoinable: u64,
    /// Spans whose kept content was pushed out by newer ones before their span came.
    pub evicted: u64,
}

/// Message content from log events, per span, waiting for the span (see the module docs).
pub struct Contents {
    spans: HashMap<String, Recorded>,
    /// Spans in the order their first event came, for eviction.
    arrival: VecDeque<String>,
    /// Services that sent content events, with the last time they did.
    senders: HashMap<String, i64>,
    max_spans: usize,
    /// About how much memory the kept content holds, and the most it may.
    bytes: usize,
    max_bytes: usize,
}

/// The default memory budget of kept content: a producer that sends long histories and never
/// their spans cannot make the receiver hold more.
pub const DEFAULT_MAX_BYTES: usize = 256 << 20;

/// About how much memory a JSON value holds: its text, plus a little per node.
fn size_of(v: &Value) -> usize {
    16 + match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(size_of).sum(),
        Value::Object(o) => o.iter().map(|(k, v)| k.len() + size_of(v)).sum(),
        _ => 0,
    }
}

impl std::fmt::Debug for Contents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contents")
            .field("spans", &self.spans.len())
            .field("senders", &self.senders.len())
            .field("max_spans", &self.max_spans)
            .finish()
    }
}

/// Whether a line looks like an OTLP/JSON logs export (`resourceLogs` opens it).
pub fn looks_like(line: &[u8]) -> bool {
    memchr::memmem::find(&line[..line.len().min(64)], b"\"resourceLogs\"").is_some()
}

/// The key a span and its events share: `traceId-spanId`, the exchange id the span reader
/// gives the call.
pub fn span_key(trace_id: &str, span_id: &str) -> String {
    format!("{trace_id}-{span_id}")
}

impl Contents {
    /// Keeps the content of at most `max_spans` calls waiting for their spans.
    pub fn new(max_spans: usize) -> Self {
        Self {
            spans: HashMap::new(),
            arrival: VecDeque::new(),
            senders: HashMap::new(),
            max_spans: max_spans.max(1),
            bytes: 0,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// The same, holding at most about `max_bytes` of content (default [`DEFAULT_MAX_BYTES`]);
    /// past it the oldest calls' content goes first, counted as evicted.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes.max(1);
        self
    }

    /// About how much memory the kept content holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops one call's content, keeping the byte count right.
    fn drop_span(&mut self, key: &str) -> bool {
        match self.spans.remove(key) {
            Some(r) => {
                self.bytes = self.bytes.saturating_sub(r.bytes);
                true
            }
            None => false,
        }
    }

    /// Calls whose content waits for its span.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Whether the content of the call `key` (see [`span_key`]) is here.
    pub fn has(&self, key: &str) -> bool {
        self.spans.contains_key(key)
    }

    /// Whether `service` sent content as log events within the last ten minutes (`now_ms`),
    /// so a span of its without text should wait a moment for them.
    pub fn sends_content(&self, service: &str, now_ms: i64) -> bool {
        self.senders
            .get(service)
            .is_some_and(|t| now_ms - t < SENDER_MEMORY_MS)
    }

    /// Drops what was kept for `key`, once its span has taken it.
    pub fn forget(&mut self, key: &str) {
        // The arrival queue keeps the key; eviction skips keys already gone.
        self.drop_span(key);
    }

    /// Reads one OTLP/JSON `ExportLogsServiceRequest` (a file line, or what a receiver was
    /// sent) and keeps the GenAI content events for their spans. `now_ms` stamps the
    /// services seen sending. An error is one for the whole request.
    pub fn add_request(&mut self, v: &Value, now_ms: i64) -> Result<Taken, (BadLineKind, String)> {
        let resource_logs = v
            .get("resourceLogs")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                (
                    BadLineKind::WrongType,
                    "an OTLP/JSON logs line is an object with a resourceLogs array".to_owned(),
                )
            })?;
        let mut taken = Taken::default();
        for rl in resource_logs {
            let resource = attributes(rl.get("resource").and_then(|r| r.get("attributes")));
            let service = text(resource.get("service.name")).unwrap_or("").to_owned();
            let records = rl
                .get("scopeLogs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|s| {
                    s.get("logRecords")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                });
            for record in records {
                let attrs = attributes(record.get("attributes"));
                let name = text(record.get("eventName"))
                    .or(text(attrs.get("event.name")))
                    .unwrap_or("");
                let Some(event) = Event::of(name) else {
                    taken.ignored += 1;
                    continue;
                };
                let (Some(trace), Some(span)) =
                    (text(record.get("traceId")), text(record.get("spanId")))
                else {
                    taken.unjoinable += 1;
                    continue;
                };
                let body = record.get("body").map(any_value).unwrap_or(Value::Null);
                taken.evicted += self.keep(span_key(trace, span), event, &body, attrs);
                taken.events += 1;
                self.senders.insert(service.clone(), now_ms);
            }
        }
        // The set of services stays small: forget the ones long quiet.
        if self.senders.len() > 1024 {
            self.senders.retain(|_, t| now_ms - *t < SENDER_MEMORY_MS);
        }
        Ok(taken)
    }

    /// Reads one line of an OTLP/JSON logs file (a collector's file exporter) as
    /// [`Contents::add_request`] does.
    pub fn add_line(&mut self, line: &[u8], now_ms: i64) -> Result<Taken, (BadLineKind, String)> {
        let utf8 =
            std::str::from_utf8(line).map_err(|e| (BadLineKind::InvalidUtf8, e.to_string()))?;
        let v: Value =
            serde_json::from_str(utf8).map_err(|e| (BadLineKind::classify(&e), e.to_string()))?;
        self.add_request(&v, now_ms)
    }

    /// Keeps one event for its span; the number of spans evicted to make room.
    fn keep(&mut self, key: String, event: Event, body: &Value, attrs: Map<String, Value>) -> u64 {
        let mut evicted = 0;
        if !self.spans.contains_key(&key) {
            while self.spans.len() >= self.max_spans {
                match self.arrival.pop_front() {
                    Some(old) => evicted += u64::from(self.drop_span(&old)),
                    None => break,
                }
            }
            self.arrival.push_back(key.clone());
            // Keys of spans already taken pile up in the queue: sweep them now and then.
            if self.arrival.len() > 2 * self.max_spans {
                let spans = &self.spans;
                self.arrival.retain(|k| spans.contains_key(k));
            }
        }
        let recorded = self.spans.entry(key.clone()).or_default();
        let before = recorded.bytes;
        match event {
            Event::Message(role) => {
                let m = message(role, body);
                recorded.bytes += size_of(&m);
                recorded.input.push(m);
            }
            Event::Choice => {
                let index = body.get("index").and_then(Value::as_u64).unwrap_or(0);
                let answer = body.get("message").cloned().unwrap_or(Value::Null);
                let role = text(answer.get("role")).unwrap_or("assistant");
                let mut m = message(role, &answer);
                if let Some(reason) = text(body.get("finish_reason")) {
                    m["finish_reason"] = json!(reason);
                }
                recorded.bytes += size_of(&m);
                recorded.output.push((index, m));
            }
            Event::Details => {
                for key in [
                    "gen_ai.input.messages",
                    "gen_ai.output.messages",
                    "gen_ai.system_instructions",
                ] {
                    if let Some(v) = attrs.get(key) {
                        recorded.bytes += size_of(v);
                        recorded.details.insert(key.to_owned(), v.clone());
                    }
                }
            }
        }
        self.bytes += recorded.bytes - before;
        // Over the memory budget: the oldest calls' content goes, never this call's own.
        while self.bytes > self.max_bytes {
            match self.arrival.pop_front() {
                Some(old) if old == key => {
                    self.arrival.push_front(old);
                    break;
                }
                Some(old) => evicted += u64::from(self.drop_span(&old)),
                None => break,
            }
        }
        evicted
    }

    /// Puts what the events of call `key` said on its span's attributes, where the span does
    /// not carry that content itself (a span's own attributes win).
    pub(super) fn attach(&self, key: &str, attrs: &mut Map<String, Value>) {
        let Some(recorded) = self.spans.get(key) else {
            return;
        };
        for (k, v) in &recorded.details {
            attrs.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if !recorded.input.is_empty() {
            attrs
                .entry("gen_ai.input.messages")
                .or_insert_with(|| Value::Array(recorded.input.clone()));
        }
        if !recorded.output.is_empty() {
            let mut output = recorded.output.clone();
            output.sort_by_key(|(i, _)| *i);
            attrs
                .entry("gen_ai.output.messages")
                .or_insert_with(|| Value::Array(output.into_iter().map(|(_, m)| m).collect()));
        }
    }
}

/// The content events read; every other log record is ignored.
#[derive(Debug, Clone, Copy)]
enum Event {
    /// `gen_ai.{system,user,assistant,tool}.message`: one message sent, of this role.
    Message(&'static str),
    /// `gen_ai.choice`: one answer.
    Choice,
    /// `gen_ai.client.inference.operation.details`: the whole call's content as attributes.
    Details,
}

impl Event {
    fn of(name: &str) -> Option<Self> {
        Some(match name {
            "gen_ai.system.message" => Self::Message("system"),
            "gen_ai.user.message" => Self::Message("user"),
            "gen_ai.assistant.message" => Self::Message("assistant"),
            "gen_ai.tool.message" => Self::Message("tool"),
            "gen_ai.choice" => Self::Choice,
            "gen_ai.client.inference.operation.details" => Self::Details,
            _ => return None,
        })
    }
}

/// An event's body (`{"content", "tool_calls", "id"}`, the chat-completions shapes the
/// openai instrumentation records) as a GenAI message with parts.
fn message(role: &str, body: &Value) -> Value {
    let mut parts = Vec::new();
    let content = match body.get("content") {
        Some(Value::String(s)) => Some(s.clone()),
        // Content given as a list of parts (`[{"type": "text", "text": ..}]`).
        Some(Value::Array(list)) => Some(
            list.iter()
                .filter_map(|p| text(p.get("text")).or(text(p.get("content"))))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    };
    if role == "tool" {
        parts.push(json!({
            "type": "tool_call_response",
            "id": text(body.get("id")).unwrap_or(""),
            "response": content.unwrap_or_default(),
        }));
    } else if let Some(c) = content.filter(|c| !c.is_empty()) {
        parts.push(json!({"type": "text", "content": c}));
    }
    for call in body
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let function = call.get("function").unwrap_or(&Value::Null);
        parts.push(json!({
            "type": "tool_call",
            "id": text(call.get("id")).unwrap_or(""),
            "name": text(function.get("name")).unwrap_or(""),
            "arguments": function.get("arguments").cloned().unwrap_or(json!("{}")),
        }));
    }
    json!({"role": role, "parts": parts})
}
