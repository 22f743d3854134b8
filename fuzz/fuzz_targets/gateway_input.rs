//! What clients and upstreams send the gateway: request bodies through the edge's parser and
//! normal form, the degrade rewrite, stripping and redaction; and upstream bytes, cut into
//! arbitrary chunks, through the SSE relay and its assembler. Nothing may panic, and:
//! - a body the parser accepts reads with the exchange reader (what is proxied is judged);
//! - after `metadata` redaction no text is left but the schema's own words.
#![no_main]

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures_util::Stream;
use gateway::config::ContentPolicy;
use gateway::policy::{degrade_request, strip_response, Policy};
use gateway::stream::{Assembler, Tapped};
use gateway::redact::{redact, STRUCTURAL};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

/// Every string left under a non-structural key must be empty.
fn no_text_left(v: &Value, key: Option<&str>) -> bool {
    match v {
        Value::String(s) => s.is_empty() || key.is_some_and(|k| STRUCTURAL.contains(&k)),
        Value::Array(items) => items.iter().all(|i| no_text_left(i, key)),
        Value::Object(m) => m.iter().all(|(k, i)| no_text_left(i, Some(k))),
        _ => true,
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(mut request) = gateway::request::parse(data) {
        let line = json!({"id": "x", "ts": "2026-01-01T00:00:00Z", "account": "a",
            "endpoint": "/v1/chat/completions", "status": 200, "request": request});
        exchange::parse_line(line.to_string().as_bytes())
            .expect("a body the gateway accepts is one the detector reads");
        let _ = degrade_request(&mut request, &Policy::default(), data.len() % 2 == 0);
    }
    if let Ok(mut v) = serde_json::from_slice::<Value>(data) {
        let _ = degrade_request(&mut v, &Policy::default(), data.len() % 2 == 1);
        strip_response(&mut v);
        let mut line = json!({"request": v.clone(), "response": v.clone()});
        redact(&mut line, ContentPolicy::Hashes);
        redact(&mut line, ContentPolicy::Metadata);
        assert!(no_text_left(&line, None), "text left: {line}");
    }
    // The first byte picks the chunk size; the rest is the upstream's byte stream.
    let Some((&size, body)) = data.split_first() else { return };
    let size = usize::from(size).max(1);
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body.chunks(size).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
    let strip = size % 2 == 0;
    let mut tapped = Tapped::new(futures_util::stream::iter(chunks), strip, size % 3 == 0, Box::new(|a: &Assembler, end| {
        let _ = a.finish(end);
        None
    }));
    let mut cx = Context::from_waker(Waker::noop());
    while let Poll::Ready(Some(_)) = Pin::new(&mut tapped).poll_next(&mut cx) {}
});
