//! Server-sent events relayed chunk by chunk, with a tap: each complete event is forwarded as
//! soon as it arrives (changed only when the policy strips reasoning, or to hide the usage
//! chunk the gateway asked for itself) and folded into the assembled response that the log
//! records. If the client goes away, dropping the stream drops the upstream call, and the
//! exchange is still logged with the partial answer (`finish_reason: client_disconnected`).
//!
//! If the upstream fails mid-answer (its connection breaks, or it ends without `[DONE]` while
//! a choice is unfinished), the client must be able to tell: the partial event is dropped, an
//! error event in OpenAI's shape is sent (`data: {"error": {...}}`, as OpenAI does), and the
//! response is aborted rather than ended cleanly. The log says `finish_reason:
//! upstream_error`.
//!
//! A complete answer's last bytes (`data: [DONE]` and whatever follows it) are held until the
//! `OnDone` callback's future resolves: with `log_durability = committed`, that is when the
//! exchange is committed to the log, so a client that saw the end of its answer can find it
//! there.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use serde_json::{json, Map, Value};

use respond::strip_response;

/// Builds the non-streamed equivalent of a stream from its chunks.
#[derive(Default)]
pub struct Assembler {
    head: Map<String, Value>,
    choices: Vec<Choice>,
    pub usage: Option<Value>,
    /// A Responses API stream (typed `response.*` events) was seen.
    responses_api: bool,
    /// The Responses API's last event carries the whole response; it is what the log keeps.
    final_response: Option<Value>,
}

/// The Responses API's events that end a stream (there is no `[DONE]`).
fn is_terminal_event(chunk: &Value) -> bool {
    matches!(
        chunk.get("type").and_then(Value::as_str),
        Some("response.completed") | Some("response.incomplete") | Some("response.failed")
    )
}

#[derive(Default)]
struct Choice {
    content: String,
    text: String,
    reasoning: String,
    role: Option<String>,
    finish_reason: Option<Value>,
    tool_calls: Vec<Value>,
    completions: bool,
}

impl Assembler {
    pub fn add(&mut self, chunk: &Value) {
        if let Some(kind) = chunk
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| t.starts_with("response."))
        {
            self.responses_api = true;
            if self.choices.is_empty() {
                self.choices.push(Choice::default());
            }
            let delta = chunk.get("delta").and_then(Value::as_str).unwrap_or("");
            match kind {
                "response.output_text.delta" => self.choices[0].content.push_str(delta),
                "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                    self.choices[0].reasoning.push_str(delta)
                }
                _ if is_terminal_event(chunk) => {
                    self.final_response = chunk.get("response").cloned();
                    self.usage = self
                        .final_response
                        .as_ref()
                        .and_then(|r| r.get("usage"))
                        .filter(|u| !u.is_null())
                        .cloned();
                }
                _ => {}
            }
            return;
        }
        if self.head.is_empty() {
            for k in ["id", "model", "created", "system_fingerprint"] {
                if let Some(v) = chunk.get(k) {
                    self.head.insert(k.into(), v.clone());
                }
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
            return;
        };
        for c in choices {
            let i = c.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            if i > 128 {
                continue;
            }
            if self.choices.len() <= i {
                self.choices.resize_with(i + 1, Choice::default);
            }
            let slot = &mut self.choices[i];
            if let Some(t) = c.get("text").and_then(Value::as_str) {
                slot.text.push_str(t);
                slot.completions = true;
            }
            if let Some(d) = c.get("delta") {
                if let Some(r) = d.get("role").and_then(Value::as_str) {
                    slot.role = Some(r.to_owned());
                }
                if let Some(t) = d.get("content").and_then(Value::as_str) {
                    slot.content.push_str(t);
                }
                if let Some(t) = d
                    .get("reasoning_content")
                    .or_else(|| d.get("reasoning"))
                    .and_then(Value::as_str)
                {
                    slot.reasoning.push_str(t);
                }
                if let Some(calls) = d.get("tool_calls").and_then(Value::as_array) {
                    for call in calls {
                        merge_tool_call(&mut slot.tool_calls, call);
                    }
                }
            }
            if let Some(f) = c.get("finish_reason").filter(|f| !f.is_null()) {
                slot.finish_reason = Some(f.clone());
            }
        }
    }

    /// Whether every choice has its finish reason (and there is one), or the Responses API's
    /// last event came.
    fn finished(&self) -> bool {
        if self.responses_api {
            return self.final_response.is_some();
        }
        !self.choices.is_empty() && self.choices.iter().all(|c| c.finish_reason.is_some())
    }

    /// A Responses API answer: the whole response of the last event, or what came before the
    /// stream ended, with the way it ended as its status.
    fn finish_responses(&self, end: End) -> Value {
        if let Some(r) = &self.final_response {
            return r.clone();
        }
        let c = self.choices.first();
        let mut output = Vec::new();
        if let Some(r) = c.map(|c| &c.reasoning).filter(|r| !r.is_empty()) {
            output.push(
                json!({"type": "reasoning", "summary": [{"type": "summary_text", "text": r}]}),
            );
        }
        output.push(json!({"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": c.map_or("", |c| c.content.as_str())}]}));
        json!({"object": "response", "status": end.finish_reason().unwrap_or("in_progress"), "output": output})
    }

    /// The assembled response; `end` says how the stream ended, and names the finish reason
    /// of a choice that never got one.
    pub fn finish(&self, end: End) -> Value {
        if self.responses_api {
            return self.finish_responses(end);
        }
        let mut out = self.head.clone();
        let choices: Vec<Value> = self
            .choices
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let finish = c
                    .finish_reason
                    .clone()
                    .unwrap_or_else(|| end.finish_reason().map_or(Value::Null, Value::from));
                if c.completions {
                    json!({"index": i, "text": c.text, "finish_reason": finish})
                } else {
                    let mut m = json!({"role": c.role.clone().unwrap_or_else(|| "assistant".into()), "content": c.content});
                    if !c.reasoning.is_empty() {
                        m["reasoning_content"] = json!(c.reasoning);
                    }
                    if !c.tool_calls.is_empty() {
                        m["tool_calls"] = json!(c.tool_calls);
                    }
                    json!({"index": i, "message": m, "finish_reason": finish})
                }
            })
            .collect();
        out.insert("choices".into(), Value::Array(choices));
        if let Some(u) = &self.usage {
            out.insert("usage".into(), u.clone());
        }
        Value::Object(out)
    }
}

fn merge_tool_call(calls: &mut Vec<Value>, delta: &Value) {
    let i = delta.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
    if i > 128 {
        return;
    }
    while calls.len() <= i {
        calls.push(json!({"type": "function", "function": {"name": "", "arguments": ""}}));
    }
    let slot = &mut calls[i];
    if let Some(id) = delta.get("id") {
        slot["id"] = id.clone();
    }
    if let Some(f) = delta.get("function") {
        for key in ["name", "arguments"] {
            if let Some(part) = f.get(key).and_then(Value::as_str) {
                let prev = slot["function"][key].as_str().unwrap_or("").to_owned();
                slot["function"][key] = json!(prev + part);
            }
        }
    }
}

/// How a relayed stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The upstream finished its answer.
    Complete,
    /// The client went away first.
    ClientGone,
    /// The upstream failed mid-answer.
    UpstreamFailed,
}

impl End {
    /// The finish reason logged for a choice that was not finished.
    pub fn finish_reason(self) -> Option<&'static str> {
        match self {
            End::Complete => None,
            End::ClientGone => Some("client_disconnected"),
            End::UpstreamFailed => Some("upstream_error"),
        }
    }
}

/// What the relay waits for before it sends a complete answer's last bytes.
pub type Settled = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Called once when the stream ends, normally or not; for a complete answer, it may return a
/// future to wait for before the last bytes go out.
pub type OnDone = Box<dyn FnOnce(&Assembler, End) -> Option<Settled> + Send>;

/// The relayed stream.
pub struct Tapped<S> {
    inner: Pin<Box<S>>,
    buf: BytesMut,
    pub assembler: Assembler,
    strip: bool,
    hide_usage_chunk: bool,
    on_done: Option<OnDone>,
    /// The upstream sent `data: [DONE]`.
    saw_done: bool,
    /// The upstream failed: the error event has been sent, the response is to be aborted.
    failed: Option<String>,
    /// The error event has had its chance to be written out.
    flushed: bool,
    /// `[DONE]` and what follows, held until the end.
    held: BytesMut,
    /// The answer is complete: these last bytes go out when `settling` resolves.
    settling: Option<(Settled, Bytes)>,
}

impl<S> Tapped<S> {
    pub fn new(inner: S, strip: bool, hide_usage_chunk: bool, on_done: OnDone) -> Self {
        Self {
            inner: Box::pin(inner),
            buf: BytesMut::new(),
            assembler: Assembler::default(),
            strip,
            hide_usage_chunk,
            on_done: Some(on_done),
            saw_done: false,
            failed: None,
            flushed: false,
            held: BytesMut::new(),
            settling: None,
        }
    }

    /// Takes every complete event out of the buffer and returns the bytes to forward.
    fn drain_events(&mut self, at_end: bool) -> Bytes {
        let mut out = BytesMut::new();
        loop {
            let end = find_event_end(&self.buf);
            let (event_len, sep_len) = match end {
                Some(x) => x,
                None if at_end && !self.buf.is_empty() => (self.buf.len(), 0),
                None => break,
            };
            let event = self.buf.split_to(event_len + sep_len).freeze();
            let body = &event[..event_len];
            let relayed = self.process(body, &event);
            if self.saw_done {
                self.held.extend_from_slice(&relayed);
            } else {
                out.extend_from_slice(&relayed);
            }
        }
        out.freeze()
    }

    fn process(&mut self, body: &[u8], raw: &Bytes) -> Bytes {
        let text = String::from_utf8_lossy(body);
        let data: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect::<Vec<_>>()
            .join("\n");
        if data == "[DONE]" {
            self.saw_done = true;
        }
        if data.is_empty() || data == "[DONE]" {
            return raw.clone();
        }
        let Ok(mut chunk) = serde_json::from_str::<Value>(&data) else {
            return raw.clone();
        };
        self.assembler.add(&chunk);
        if is_terminal_event(&chunk) {
            // The Responses API's end, held like `[DONE]` until the exchange is settled.
            self.saw_done = true;
        }
        let usage_only = chunk
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
            && chunk.get("usage").is_some_and(|u| !u.is_null());
        if usage_only && self.hide_usage_chunk {
            return Bytes::new();
        }
        if self.hide_usage_chunk {
            if let Some(obj) = chunk.as_object_mut() {
                if obj.get("usage").is_some_and(Value::is_null) {
                    obj.remove("usage");
                }
            }
        }
        if self.strip {
            if chunk
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.starts_with("response.reasoning"))
            {
                // A Responses API reasoning event: nothing of it goes out.
                return Bytes::new();
            }
            strip_response(&mut chunk);
            let event = text
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .map(|e| format!("event:{e}\n"))
                .unwrap_or_default();
            return Bytes::from(format!("{event}data: {chunk}\n\n"));
        }
        raw.clone()
    }

    fn done(&mut self, end: End) -> Option<Settled> {
        self.on_done.take().and_then(|f| f(&self.assembler, end))
    }

    /// Ends the relay after an upstream failure: what was complete goes out, then an error
    /// event; the next poll aborts the response.
    fn fail(&mut self, out: Bytes, why: String) -> Bytes {
        self.buf.clear();
        self.held.clear();
        let _ = self.done(End::UpstreamFailed);
        metrics::counter!("distillguard_upstream_stream_failures_total").increment(1);
        let event = json!({"error": {
            "message": "The model server failed before finishing this answer; it is incomplete.",
            "type": "api_error",
            "param": null,
            "code": "upstream_stream_failed",
        }});
        self.failed = Some(why);
        let mut all = BytesMut::from(&out[..]);
        all.extend_from_slice(format!("data: {event}\n\n").as_bytes());
        all.freeze()
    }
}

/// Length of the first complete event and of its separator (`\n\n` or `\r\n\r\n`).
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

impl<S, E> Stream for Tapped<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some((settled, _)) = self.settling.as_mut() {
            if settled.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let (_, last) = self.settling.take().expect("just polled");
            return Poll::Ready((!last.is_empty()).then_some(Ok(last)));
        }
        if self.failed.is_some() {
            if !self.flushed {
                // Once Pending, so the server writes out the error event before the abort
                // (it flushes when the body has nothing ready).
                self.flushed = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Abort: the body ends with an error, so the client sees a broken response, not a
            // clean end.
            let why = self.failed.take().unwrap_or_default();
            return Poll::Ready(Some(Err(std::io::Error::other(why))));
        }
        if self.on_done.is_none() {
            return Poll::Ready(None);
        }
        loop {
            match self.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    self.buf.extend_from_slice(&chunk);
                    let out = self.drain_events(false);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    // Only whole events go out: the one the failure cut is dropped.
                    let out = self.drain_events(false);
                    tracing::warn!(error = %e, "upstream stream failed mid-answer");
                    let out = self.fail(out, format!("upstream stream failed: {e}"));
                    return Poll::Ready(Some(Ok(out)));
                }
                Poll::Ready(None) => {
                    let out = self.drain_events(true);
                    if !self.saw_done && !self.assembler.finished() {
                        tracing::warn!("upstream stream ended without [DONE], mid-answer");
                        let out = self.fail(out, "upstream stream ended mid-answer".into());
                        return Poll::Ready(Some(Ok(out)));
                    }
                    let mut last = BytesMut::from(&out[..]);
                    last.extend_from_slice(&std::mem::take(&mut self.held));
                    let last = last.freeze();
                    if let Some(settled) = self.done(End::Complete) {
                        self.settling = Some((settled, last));
                        return self.poll_next(cx);
                    }
                    return Poll::Ready((!last.is_empty()).then_some(Ok(last)));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S> Drop for Tapped<S> {
    fn drop(&mut self) {
        // Dropped before the end: the client went away. Log what was answered so far.
        let _ = self.done(End::ClientGone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// An `OnDone` that hands the assembled answer and how the stream ended to the receiver.
    fn recording() -> (OnDone, std::sync::mpsc::Receiver<(Value, End)>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let on_done: OnDone = Box::new(move |a: &Assembler, end| {
            tx.send((a.finish(end), end)).unwrap();
            None
        });
        (on_done, rx)
    }

    fn sse(chunks: &[&str]) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        let v: Vec<Result<Bytes, std::io::Error>> = chunks
            .iter()
            .map(|c| Ok(Bytes::from(c.to_string())))
            .collect();
        futures_util::stream::iter(v)
    }

    #[tokio::test]
    async fn events_split_across_chunks_are_relayed_whole_and_assembled() {
        let (on_done, rx) = recording();
        let s = Tapped::new(
            sse(&[
                "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"del",
                "ta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
            ]),
            false,
            true,
            on_done,
        );
        let out: Vec<Bytes> = s.map(|r| r.unwrap()).collect().await;
        let text: String = out
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        assert!(
            text.contains("\"Hel\"")
                && text.contains("\"lo\"")
                && text.ends_with("data: [DONE]\n\n")
        );
        assert!(
            !text.contains("usage"),
            "the usage chunk the gateway asked for is hidden"
        );
        let (assembled, end) = rx.recv().unwrap();
        assert_eq!(end, End::Complete);
        assert_eq!(assembled["choices"][0]["message"]["content"], "Hello");
        assert_eq!(assembled["choices"][0]["finish_reason"], "stop");
        assert_eq!(assembled["usage"]["completion_tokens"], 2);
    }

    #[tokio::test]
    async fn a_dropped_stream_is_still_reported_as_cut_short() {
        let (on_done, rx) = recording();
        let mut s = Tapped::new(
            sse(&[
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"par\"}}]}\n\n",
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tial\"}}]}\n\n",
            ]),
            false,
            false,
            on_done,
        );
        let _first = s.next().await;
        drop(s);
        let (assembled, end) = rx.recv().unwrap();
        assert_eq!(end, End::ClientGone);
        assert_eq!(assembled["choices"][0]["message"]["content"], "par");
        assert_eq!(
            assembled["choices"][0]["finish_reason"],
            "client_disconnected"
        );
    }

    #[tokio::test]
    async fn an_upstream_that_dies_mid_event_ends_in_an_error_event_and_an_abort() {
        let (on_done, rx) = recording();
        let v: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from(
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"whole\"}}]}\n\ndata: {\"choices\":[{\"ind",
            )),
            Err(std::io::Error::other("connection reset")),
        ];
        let mut s = Tapped::new(futures_util::stream::iter(v), false, false, on_done);
        let first = String::from_utf8(s.next().await.unwrap().unwrap().to_vec()).unwrap();
        assert!(first.contains("\"whole\""));
        let second = String::from_utf8(s.next().await.unwrap().unwrap().to_vec()).unwrap();
        assert!(
            !second.contains("\"ind"),
            "the cut event is not relayed: {second}"
        );
        assert!(second.contains("upstream_stream_failed"), "{second}");
        assert!(s.next().await.unwrap().is_err(), "the response is aborted");
        assert!(s.next().await.is_none());
        let (assembled, end) = rx.recv().unwrap();
        assert_eq!(end, End::UpstreamFailed);
        assert_eq!(assembled["choices"][0]["finish_reason"], "upstream_error");
        assert_eq!(assembled["choices"][0]["message"]["content"], "whole");
    }

    #[tokio::test]
    async fn a_clean_close_before_done_with_an_unfinished_choice_is_a_failure_too() {
        let (on_done, rx) = recording();
        let s = Tapped::new(
            sse(&["data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"half\"}}]}\n\n"]),
            false,
            false,
            on_done,
        );
        let items: Vec<_> = s.collect().await;
        assert!(items.last().unwrap().is_err());
        assert_eq!(rx.recv().unwrap().1, End::UpstreamFailed);
        // Finished choices with no [DONE] (some servers omit it) are complete.
        let (on_done, rx) = recording();
        let s = Tapped::new(
            sse(&["data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"all\"},\"finish_reason\":\"stop\"}]}\n\n"]),
            false,
            false,
            on_done,
        );
        let items: Vec<_> = s.collect().await;
        assert!(items.iter().all(Result::is_ok));
        assert_eq!(rx.recv().unwrap().1, End::Complete);
    }

    #[tokio::test]
    async fn the_last_bytes_wait_until_the_exchange_is_settled() {
        let (commit, committed) = tokio::sync::oneshot::channel::<()>();
        let mut s = Tapped::new(
            sse(&[
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}\n\n",
                "data: [DONE]\n\n",
            ]),
            false,
            false,
            Box::new(move |_: &Assembler, end| {
                assert_eq!(end, End::Complete);
                Some(Box::pin(async move {
                    let _ = committed.await;
                }) as Settled)
            }),
        );
        let first = s.next().await.unwrap().unwrap();
        assert!(!first.ends_with(b"[DONE]\n\n"));
        // Not committed yet: the end is held back.
        let waited = tokio::time::timeout(std::time::Duration::from_millis(100), s.next()).await;
        assert!(waited.is_err(), "[DONE] went out before the commit");
        commit.send(()).unwrap();
        let last = s.next().await.unwrap().unwrap();
        assert_eq!(&last[..], b"data: [DONE]\n\n");
        assert!(s.next().await.is_none());
    }
}
