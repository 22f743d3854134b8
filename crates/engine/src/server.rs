//! The engine's HTTP side: the OpenAI chat-completions API (JSON and SSE), so the gateway
//! fronts the engine like any upstream.
//!
//! The gateway says whose call it is (`x-distillguard-account`) and what the account's action
//! is (`x-distillguard-action`); with a master secret configured, the answer is marked with
//! that account's key (stronger under `degrade`), and `x-distillguard-watermark` names the key
//! and the scheme, so the gateway's log records which key marked what, never the key. A call
//! without an account is served unmarked. One sequence runs at a time (the model holds one
//! cache); calls queue for it.
//!
//! With an admin token, `POST /admin/watermark/detect` answers the question `evidence detect`
//! answers offline (whose key marked this text?) where the master secret already lives, so
//! an analyst's tool need not hold it: the text is read through the model's tokenizer and
//! tested against each named account's key, Bonferroni over the keys.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use watermark::{Master, Scheme, Watermark};

use crate::generate::{generate, Params, TokenLogprob};
use crate::model::Model;
use crate::tokenizer::Tokenizer;

/// How answers are marked.
#[derive(Debug, Clone)]
pub struct MarkConfig {
    pub master: Master,
    pub scheme: Scheme,
    /// Previous tokens seeding each step.
    pub context: usize,
    /// KGW's δ for accounts under `degrade`.
    pub degrade_delta: f32,
}

pub struct Engine {
    model: Mutex<Model>,
    /// The model's tokenizer, outside the model's lock: a key test need not queue behind an
    /// answer being generated.
    tokenizer: Arc<crate::tokenizer::Tokenizer>,
    mark: Option<MarkConfig>,
    name: String,
    /// Bearer token of the admin endpoint; without one it is off.
    admin_token: Option<String>,
}

impl Engine {
    pub fn new(model: Model, mark: Option<MarkConfig>) -> Self {
        let name = model.name.clone();
        Self {
            tokenizer: model.tokenizer.clone(),
            model: Mutex::new(model),
            mark,
            name,
            admin_token: None,
        }
    }

    /// Turns the admin endpoint on, behind this bearer token.
    pub fn with_admin_token(mut self, token: Option<String>) -> Self {
        self.admin_token = token.filter(|t| !t.is_empty());
        self
    }

    /// The mark for a call from `account` under `action`, if answers are marked.
    pub fn mark_for(&self, account: Option<&str>, action: Option<&str>) -> Option<Watermark> {
        let (m, account) = (self.mark.as_ref()?, account?);
        let wm = Watermark::new(m.master.key_for(account), m.scheme, m.context).ok()?;
        match action {
            Some("degrade") => wm.with_delta(m.degrade_delta).ok(),
            _ => Some(wm),
        }
    }
}

pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/admin/watermark/detect", post(detect_keys))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(engine)
}

/// Serves on `addr` until the process ends; returns the bound address once listening.
pub async fn spawn(engine: Arc<Engine>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(engine)).await {
            tracing::error!(error = %e, "the engine's server stopped");
        }
    });
    Ok(bound)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let kind = if status.is_client_error() {
        "invalid_request_error"
    } else {
        "server_error"
    };
    (
        status,
        Json(json!({"error": {"message": message.into(), "type": kind, "param": null, "code": null}})),
    )
        .into_response()
}

async fn models(State(e): State<Arc<Engine>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [
        {"id": e.name, "object": "model", "created": 0, "owned_by": "distillguard"}
    ]}))
}

/// The text of a message's content: a string, or the text parts of a list.
fn content_text(c: &Value) -> Option<String> {
    match c {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(""),
        ),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

struct Call {
    messages: Vec<(String, String)>,
    params: Params,
    stream: bool,
    include_usage: bool,
}

fn parse(body: &Value) -> Result<Call, String> {
    let messages = body["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or("messages must be a non-empty list")?
        .iter()
        .map(|m| {
            let role = m["role"].as_str().ok_or("each message needs a role")?;
            let text = content_text(&m["content"]).ok_or("a message's content must be text")?;
            Ok((role.to_owned(), text))
        })
        .collect::<Result<Vec<_>, &str>>()?;
    let number = |k: &str| body.get(k).filter(|v| !v.is_null());
    let max_tokens = number("max_completion_tokens")
        .or(number("max_tokens"))
        .map(|v| v.as_u64().ok_or("max_tokens must be a positive integer"))
        .transpose()?
        .unwrap_or(256) as usize;
    let min_tokens = number("min_tokens")
        .map(|v| {
            v.as_u64()
                .ok_or("min_tokens must be a non-negative integer")
        })
        .transpose()?
        .unwrap_or(0) as usize;
    let temperature = number("temperature")
        .map(|v| v.as_f64().filter(|t| (0.0..=2.0).contains(t)))
        .map(|t| t.ok_or("temperature must be between 0 and 2"))
        .transpose()?
        .unwrap_or(1.0) as f32;
    let top_p = number("top_p")
        .map(|v| v.as_f64().filter(|p| *p > 0.0 && *p <= 1.0))
        .map(|p| p.ok_or("top_p must be above 0 and at most 1"))
        .transpose()?
        .unwrap_or(1.0) as f32;
    let seed = number("seed")
        .map(|v| v.as_u64().ok_or("seed must be a non-negative integer"))
        .transpose()?
        .unwrap_or_else(rand::random);
    let logprobs = body["logprobs"].as_bool().unwrap_or(false).then(|| {
        body["top_logprobs"]
            .as_u64()
            .map_or(0, |k| k.min(20) as usize)
    });
    Ok(Call {
        messages,
        params: Params {
            max_tokens,
            min_tokens,
            temperature,
            top_p,
            seed,
            logprobs,
        },
        stream: body["stream"].as_bool().unwrap_or(false),
        include_usage: body["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false),
    })
}

fn logprob_json(t: &Tokenizer, lp: &TokenLogprob) -> Value {
    let entry = |id: u32, logprob: f32| {
        let bytes = t.token_bytes(id);
        json!({"token": String::from_utf8_lossy(&bytes), "logprob": logprob, "bytes": bytes})
    };
    let mut v = entry(lp.token, lp.logprob);
    v["top_logprobs"] = lp.top.iter().map(|&(id, l)| entry(id, l)).collect();
    v
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
}

async fn chat(State(engine): State<Arc<Engine>>, headers: HeaderMap, body: String) -> Response {
    let body: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {e}"),
            )
        }
    };
    let call = match parse(&body) {
        Ok(c) => c,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let mark = engine.mark_for(
        header(&headers, "x-distillguard-account"),
        header(&headers, "x-distillguard-action"),
    );
    // Key id, scheme and parameters (`Watermark::named`), never the key.
    let marked = mark.as_ref().map(Watermark::named);
    let id = format!("chatcmpl-{:016x}", rand::random::<u64>());
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let model_name = engine.name.clone();
    let mut resp = if call.stream {
        stream(engine, call, mark, id, created, model_name)
    } else {
        let e = engine.clone();
        let Call {
            messages, params, ..
        } = call;
        let done = tokio::task::spawn_blocking(move || {
            let mut model = e.model.lock();
            let prompt = model.tokenizer.encode(&crate::chat::prompt(&messages));
            let g = generate(&mut model, &prompt, &params, mark.as_ref(), |_, _| true)?;
            let logprobs = params.logprobs.map(|_| {
                g.logprobs
                    .iter()
                    .map(|lp| logprob_json(&model.tokenizer, lp))
                    .collect::<Vec<_>>()
            });
            Ok::<_, crate::model::EngineError>((g, logprobs))
        })
        .await;
        match done {
            Ok(Ok((g, logprobs))) => Json(json!({
                "id": id,
                "object": "chat.completion",
                "created": created,
                "model": model_name,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": g.text},
                    "logprobs": logprobs.map(|c| json!({"content": c})),
                    "finish_reason": g.finish_reason,
                }],
                "usage": {
                    "prompt_tokens": g.prompt_tokens,
                    "completion_tokens": g.tokens.len(),
                    "total_tokens": g.prompt_tokens + g.tokens.len(),
                },
            }))
            .into_response(),
            Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e.0),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    };
    if let Some(v) = marked.and_then(|m| HeaderValue::from_str(&m).ok()) {
        resp.headers_mut().insert("x-distillguard-watermark", v);
    }
    resp
}

/// The answer as server-sent events, a chunk per piece of text as it is made.
fn stream(
    engine: Arc<Engine>,
    call: Call,
    mark: Option<Watermark>,
    id: String,
    created: u64,
    model_name: String,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(64);
    let chunk = move |delta: Value, finish: Option<&str>, logprobs: Option<Value>| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model_name,
            "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
        })
    };
    tokio::task::spawn_blocking(move || {
        let Call {
            messages,
            params,
            include_usage,
            ..
        } = call;
        let mut model = engine.model.lock();
        let tokenizer = model.tokenizer.clone();
        let prompt = tokenizer.encode(&crate::chat::prompt(&messages));
        let send = |v: Value| tx.blocking_send(format!("data: {v}\n\n")).is_ok();
        if !send(chunk(
            json!({"role": "assistant", "content": ""}),
            None,
            None,
        )) {
            return;
        }
        let with_logprobs = params.logprobs.is_some();
        // Each piece goes out as it is made; a client that left stops the generation.
        let result = generate(&mut model, &prompt, &params, mark.as_ref(), |text, lp| {
            let logprobs = lp
                .filter(|_| with_logprobs)
                .map(|lp| json!({"content": [logprob_json(&tokenizer, lp)]}));
            text.is_empty() && logprobs.is_none()
                || send(chunk(json!({"content": text}), None, logprobs))
        });
        match result {
            Ok(g) => {
                let mut last = chunk(json!({}), Some(g.finish_reason), None);
                if include_usage {
                    last["usage"] = json!({
                        "prompt_tokens": g.prompt_tokens,
                        "completion_tokens": g.tokens.len(),
                        "total_tokens": g.prompt_tokens + g.tokens.len(),
                    });
                }
                send(last);
            }
            Err(e) => {
                send(json!({"error": {"message": e.0, "type": "server_error"}}));
            }
        }
        let _ = tx.blocking_send("data: [DONE]\n\n".into());
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|s| (Ok::<_, Infallible>(bytes::Bytes::from(s)), rx))
    });
    let mut resp = axum::body::Body::from_stream(body).into_response();
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    resp
}

/// What `POST /admin/watermark/detect` is asked: a text and whose keys to test it against.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyQuestion {
    text: String,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    accounts: Vec<String>,
    /// The family-wise significance level (default 1e-3).
    #[serde(default = "default_alpha")]
    alpha: f64,
    /// Fewer scored tokens than this is too short to judge (default 50).
    #[serde(default = "default_min_tokens")]
    min_tokens: usize,
}

fn default_alpha() -> f64 {
    1e-3
}

fn default_min_tokens() -> usize {
    50
}

/// Most keys one question may test: each is a pass over the text.
const MAX_KEYS: usize = 10_000;

/// The refusal of a request without the admin token (compared in constant time), if any.
fn denied(engine: &Engine, headers: &HeaderMap) -> Option<Response> {
    use subtle::ConstantTimeEq;
    let Some(expected) = engine.admin_token.as_deref() else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "the admin API is off: start the engine with DISTILLGUARD_ADMIN_TOKEN set",
        ));
    };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    (!bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "the admin API needs the admin token as a bearer token",
        )
    })
}

async fn detect_keys(
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(refusal) = denied(&engine, &headers) {
        return refusal;
    }
    let Some(mark) = engine.mark.as_ref() else {
        return error(
            StatusCode::CONFLICT,
            "this engine marks nothing (no master secret), so it has no key to test",
        );
    };
    let q: KeyQuestion = match serde_json::from_str(&body) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad request: {e}")),
    };
    let mut accounts = q.accounts;
    accounts.extend(q.account);
    if accounts.is_empty() || accounts.len() > MAX_KEYS {
        return error(
            StatusCode::BAD_REQUEST,
            format!("name 1 to {MAX_KEYS} accounts (`account` or `accounts`) whose keys to test"),
        );
    }
    if !(q.alpha > 0.0 && q.alpha < 1.0) {
        return error(StatusCode::BAD_REQUEST, "alpha must lie between 0 and 1");
    }
    let tokens = engine.tokenizer.encode(&q.text);
    let tests = match watermark::test_keys(
        &mark.master,
        (mark.scheme, mark.context),
        &accounts,
        &tokens,
        q.min_tokens,
        q.alpha,
        None,
    ) {
        Ok(t) => t,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    // Most significant first; the marked accounts in that order.
    let mut ranked: Vec<&watermark::KeyTest> = tests.iter().collect();
    ranked.sort_by(|x, y| {
        let p = |t: &watermark::KeyTest| t.detection.p_value.unwrap_or(1.0);
        p(x).total_cmp(&p(y))
    });
    let marked: Vec<&str> = ranked
        .iter()
        .filter(|t| t.marked)
        .map(|t| t.account.as_str())
        .collect();
    tracing::info!(
        keys = accounts.len(),
        tokens = tokens.len(),
        marked = marked.len(),
        "admin: watermark keys tested"
    );
    Json(json!({
        "tests": accounts.len(), "alpha": q.alpha,
        "level_per_key": q.alpha / accounts.len() as f64,
        "marked": marked, "results": ranked,
    }))
    .into_response()
}
