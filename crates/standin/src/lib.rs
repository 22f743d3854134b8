//! A stand-in model server for demos and tests — **not a model**. It speaks the OpenAI wire
//! format (JSON and SSE streams, usage, logprobs, reasoning content, tool calls) and answers
//! with text derived from the prompt, so the gateway can be exercised end to end over real
//! sockets on a machine with no model.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Json;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;

fn last_user_text(req: &Value) -> String {
    // The Responses API: `input` as text, or items whose last user message is the question.
    match req.get("input") {
        Some(Value::String(s)) => return s.clone(),
        Some(Value::Array(items)) if req.get("messages").is_none() => {
            let content = items
                .iter()
                .rev()
                .find(|i| i["role"] == "user")
                .map(|i| &i["content"]);
            return match content {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            };
        }
        _ => {}
    }
    if let Some(p) = req.get("prompt") {
        return p
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| p.to_string());
    }
    req["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_owned()
}

/// The answer: a few sentences that mention the prompt, as long as asked (capped by max_tokens).
fn answer(req: &Value) -> (String, &'static str) {
    let prompt = last_user_text(req);
    let words: Vec<&str> = prompt.split_whitespace().take(12).collect();
    let mut text = format!("[demo upstream] You asked about: {}.", words.join(" "));
    let wanted = req
        .get("max_completion_tokens")
        .or_else(|| req.get("max_tokens"))
        .or_else(|| req.get("max_output_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(200);
    while (text.len() as u64) / 4 < wanted.min(300) {
        text.push_str(" This is a placeholder sentence from the demo upstream.");
    }
    let cap = (wanted * 4) as usize;
    if text.len() > cap {
        text.truncate(cap);
        return (text, "length");
    }
    (text, "stop")
}

async fn chat(Json(req): Json<Value>) -> Response {
    let (text, finish) = answer(&req);
    let prompt_tokens = (req.to_string().len() as u64).div_ceil(4);
    let completion_tokens = (text.len() as u64).div_ceil(4);
    let model = req["model"].as_str().unwrap_or("demo").to_owned();
    let logprobs = req
        .get("logprobs")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let reasoning = req
        .get("reasoning_effort")
        .is_some()
        .then(|| "Demo reasoning: consider the question, then answer.".to_owned());
    if req.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        // The model `demo-no-usage` plays an upstream that never reports usage.
        let include_usage = model != "demo-no-usage"
            && req
                .pointer("/stream_options/include_usage")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        let mut events = Vec::new();
        events.push(json!({"id": "chatcmpl-demo", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]}));
        if let Some(r) = &reasoning {
            events.push(json!({"id": "chatcmpl-demo", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {"reasoning_content": r}, "finish_reason": null}]}));
        }
        for piece in text.split_inclusive(' ').collect::<Vec<_>>().chunks(4) {
            events.push(json!({"id": "chatcmpl-demo", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {"content": piece.concat()}, "finish_reason": null}]}));
        }
        events.push(json!({"id": "chatcmpl-demo", "object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}));
        if include_usage {
            events.push(json!({"id": "chatcmpl-demo", "object": "chat.completion.chunk", "model": model, "choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}}));
        }
        let stream = async_stream(events);
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(stream))
            .expect("response");
    }
    let mut message = json!({"role": "assistant", "content": text});
    if let Some(r) = reasoning {
        message["reasoning_content"] = json!(r);
    }
    let mut choice = json!({"index": 0, "message": message, "finish_reason": finish});
    if logprobs {
        choice["logprobs"] =
            json!({"content": [{"token": "demo", "logprob": -0.1, "top_logprobs": []}]});
    }
    let n = req
        .get("n")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .clamp(1, 8);
    let choices: Vec<Value> = (0..n)
        .map(|i| {
            let mut c = choice.clone();
            c["index"] = json!(i);
            c
        })
        .collect();
    let mut body = json!({
        "id": "chatcmpl-demo", "object": "chat.completion", "created": 0, "model": model,
        "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens * n, "total_tokens": prompt_tokens + completion_tokens * n}
    });
    if model == "demo-no-usage" {
        body.as_object_mut().expect("object").remove("usage");
    }
    Json(body).into_response()
}

/// `POST /v1/responses`: the Responses API, plain and streamed (typed events, the last one
/// `response.completed` carrying the whole response; no `[DONE]`).
async fn responses(Json(req): Json<Value>) -> Response {
    let (text, finish) = answer(&req);
    let input_tokens = (req.to_string().len() as u64).div_ceil(4);
    let output_tokens = (text.len() as u64).div_ceil(4);
    let model = req["model"].as_str().unwrap_or("demo").to_owned();
    let mut output = Vec::new();
    if req.get("reasoning").is_some() {
        output.push(json!({"type": "reasoning", "id": "rs_demo", "summary": [
            {"type": "summary_text", "text": "Demo reasoning: consider the question, then answer."}]}));
    }
    output.push(
        json!({"type": "message", "id": "msg_demo", "status": "completed", "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]}),
    );
    let cut = finish == "length";
    let whole = json!({
        "id": "resp_demo", "object": "response", "created_at": 0, "model": model,
        "status": if cut { "incomplete" } else { "completed" },
        "incomplete_details": if cut { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "output": output,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
            "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
    });
    if !req.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        return Json(whole).into_response();
    }
    let mut started = whole.clone();
    started["status"] = json!("in_progress");
    started["output"] = json!([]);
    started["usage"] = Value::Null;
    let mut events =
        vec![json!({"type": "response.created", "sequence_number": 0, "response": started})];
    for (i, piece) in text
        .split_inclusive(' ')
        .collect::<Vec<_>>()
        .chunks(8)
        .enumerate()
    {
        events.push(
            json!({"type": "response.output_text.delta", "sequence_number": i + 1,
            "item_id": "msg_demo", "output_index": 0, "content_index": 0, "delta": piece.concat()}),
        );
    }
    let last = if cut {
        "response.incomplete"
    } else {
        "response.completed"
    };
    events.push(json!({"type": last, "sequence_number": events.len(), "response": whole}));
    let frames: Vec<String> = events
        .into_iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
        .collect();
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(frames_stream(frames)))
        .expect("response")
}

fn async_stream(
    events: Vec<Value>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    let mut frames: Vec<String> = events
        .into_iter()
        .map(|e| format!("data: {e}\n\n"))
        .collect();
    frames.push("data: [DONE]\n\n".into());
    frames_stream(frames)
}

fn frames_stream(
    frames: Vec<String>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures_util::stream::unfold(frames.into_iter(), |mut it| async move {
        let next = it.next()?;
        tokio::time::sleep(Duration::from_millis(2)).await;
        Some((Ok(bytes::Bytes::from(next)), it))
    })
}

async fn completions(Json(req): Json<Value>) -> Response {
    let (text, finish) = answer(&req);
    let prompt_tokens = (req.to_string().len() as u64).div_ceil(4);
    let completion_tokens = (text.len() as u64).div_ceil(4);
    if req.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        let mut events = vec![
            json!({"id": "cmpl-demo", "object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": null}]}),
        ];
        events.push(json!({"id": "cmpl-demo", "object": "text_completion", "choices": [{"index": 0, "text": "", "finish_reason": finish}]}));
        if req
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            events.push(json!({"id": "cmpl-demo", "object": "text_completion", "choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}}));
        }
        return Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(async_stream(events)))
            .expect("response");
    }
    Json(json!({
        "id": "cmpl-demo", "object": "text_completion", "created": 0, "model": req["model"],
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": null}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
    }))
    .into_response()
}

async fn embeddings(Json(req): Json<Value>) -> Response {
    let inputs = match &req["input"] {
        Value::Array(a) => a.len(),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, 0.4]}))
        .collect();
    Json(json!({"object": "list", "data": data, "model": req["model"], "usage": {"prompt_tokens": 4, "total_tokens": 4}})).into_response()
}

async fn models() -> Response {
    Json(json!({"object": "list", "data": [
        {"id": "demo-model", "object": "model", "created": 0, "owned_by": "demo"},
        {"id": "demo-embed", "object": "model", "created": 0, "owned_by": "demo"}
    ]}))
    .into_response()
}

pub fn router() -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/responses", post(responses))
        .route("/v1/models", get(models))
}

/// Starts the demo upstream on `addr` (port 0 for any); returns its bound address.
pub async fn spawn(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    use axum::serve::ListenerExt;
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    // Stream frames are small: without TCP_NODELAY, Nagle and delayed ACKs hold them ~40 ms.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router()).await {
            tracing::error!(error = %e, "demo upstream stopped");
        }
    });
    Ok(bound)
}
