//! What clients and upstreams send the gateway: request bodies through parsing, the degrade
//! rewrite, stripping and redaction; and upstream bytes, cut into arbitrary chunks, through
//! the SSE relay and its assembler. Nothing may panic.
#![no_main]

use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use futures_util::Stream;
use gateway::config::ContentPolicy;
use gateway::policy::{degrade_request, strip_response, Policy};
use gateway::stream::{Assembler, Tapped};
use gateway::tap::redact;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = degrade_request(&mut v, &Policy::default());
        strip_response(&mut v);
        redact(&mut v, ContentPolicy::Hashes);
        redact(&mut v, ContentPolicy::Metadata);
    }
    // The first byte picks the chunk size; the rest is the upstream's byte stream.
    let Some((&size, body)) = data.split_first() else { return };
    let size = usize::from(size).max(1);
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body.chunks(size).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
    let strip = size % 2 == 0;
    let mut tapped = Tapped::new(futures_util::stream::iter(chunks), strip, size % 3 == 0, Box::new(|a: &Assembler, cut| {
        let _ = a.finish(cut);
    }));
    let mut cx = Context::from_waker(Waker::noop());
    while let Poll::Ready(Some(_)) = Pin::new(&mut tapped).poll_next(&mut cx) {}
});
