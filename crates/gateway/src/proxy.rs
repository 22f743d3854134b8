//! The OpenAI-compatible endpoints. Each call goes through the same steps, in this order:
//!
//! 1. **auth**: the bearer key names the account (401 otherwise), on the headers alone: the
//!    body of a client without a key is never read;
//! 2. **parse**: the body, read only now (413 past `max_body_bytes`, 408 when it stalls or
//!    trickles past its time), brought to its normal form (`request.rs`: 415 for another
//!    content type, 400 for bad JSON or a mistyped field);
//! 3. **policy**: the account's action: `block` answers 403, `degrade` rewrites the request,
//!    `throttle` lowers the limits;
//! 4. **route**: the model picks the upstream (404 for a model no upstream serves);
//! 5. **limits**: requests, tokens (reserved now, trued up at the end) and concurrency (429
//!    with `Retry-After`);
//! 6. **proxy**: the body goes upstream unchanged except for the policy's rewrite (and
//!    `stream_options.include_usage`, whose extra chunk is hidden from a client that did not
//!    ask for it); the answer comes back unchanged except for the policy's stripping;
//! 7. **tap**: the exchange, success or failure after auth, is handed to the log and the
//!    detector off the request path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::auth::Principal;
use crate::config::{ContentPolicy, Upstream};
use crate::error::ApiError;
use crate::stream::{Assembler, End, Settled, Tapped};
use crate::AppState;
use recorder::now_ms;
use respond::{degrade_request, strip_response, Action};

/// What is known about a call so far, for its log line.
struct CallRecord {
    id: String,
    ts_ms: i64,
    started: Instant,
    account: String,
    key_id: String,
    ip: String,
    user_agent: Option<String>,
    /// What the provider knows about the account (payment, sign-up, …), for linking.
    meta: Option<std::sync::Arc<Value>>,
    /// What the log keeps of this exchange: the account's own policy, else the gateway's.
    content: ContentPolicy,
    endpoint: String,
    body_bytes: usize,
    /// The request in its normal form (`request::parse`): what is proxied, logged and judged.
    request: Value,
}

impl CallRecord {
    /// The exchange line of this call (`exchange::Written`: the format's own writer).
    fn line(&self, status: u16, response: Option<Value>) -> exchange::Written {
        let mut w = exchange::Written::new(
            self.id.clone(),
            self.ts_ms,
            self.account.clone(),
            self.key_id.clone(),
            self.ip.clone(),
            self.endpoint.clone(),
            status,
            self.request.clone(),
        );
        w.user_agent.clone_from(&self.user_agent);
        w.meta = self.meta.as_deref().cloned();
        w.response = response;
        w.took(self.started.elapsed().as_secs_f64());
        w
    }
}

/// A new exchange id: `req_`, the time in milliseconds (12 hex digits), then 48 random bits.
/// Time first, so ids sort by time: the log's unique index on `id` then grows at its end
/// instead of touching a random page per row, which was most of the log writer's disk writes.
fn request_id() -> String {
    use rand::Rng;
    let random: u64 = rand::thread_rng().gen::<u64>() >> 16;
    format!("req_{:012x}{random:012x}", recorder::now_ms().max(0))
}

/// `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/responses`.
pub async fn generate(
    State(state): State<Arc<AppState>>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
) -> Response {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let (uri, headers) = (parts.uri, parts.headers);
    let endpoint = uri.path().to_owned();
    metrics::counter!("distillguard_requests_total", "endpoint" => endpoint_label(&endpoint))
        .increment(1);
    let principal = match state.keys.authenticate(&headers).await {
        Ok(p) => p,
        Err(e) => {
            metrics::counter!("distillguard_rejected_total", "reason" => "auth").increment(1);
            return e.into_response();
        }
    };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"));
    // The body is read only for a known key (a client without one cannot hold the connection
    // by trickling a body) and only when it is JSON.
    let body = if is_json {
        read_body(&headers, body, state.config.max_body_bytes).await
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            None,
            "Content-Type must be application/json.",
        ))
    };
    let (body, parsed) = match body {
        Ok(b) => {
            let parsed = crate::request::parse(&b);
            (b, parsed)
        }
        Err(e) => (Bytes::new(), Err(e)),
    };
    // The log keeps the request in the normal form it is proxied in; a body that is refused
    // is kept as text (which every content policy but `full` redacts).
    let (request, parse_error) = match parsed {
        Ok(v) => (v, None),
        Err(e) => (
            json!({"unparsed_body": String::from_utf8_lossy(&body[..body.len().min(4096)])}),
            Some(e),
        ),
    };
    warn_of_ignored_forwarding(remote.ip(), &headers, &state.config.trusted_proxies);
    let call = CallRecord {
        id: request_id(),
        ts_ms: now_ms(),
        started,
        account: principal.account.clone(),
        key_id: principal.key_id.clone(),
        ip: crate::client_ip::client_ip(remote.ip(), &headers, &state.config.trusted_proxies)
            .to_string(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        meta: principal.meta.clone(),
        content: principal.content.unwrap_or(state.config.content),
        endpoint,
        body_bytes: body.len(),
        request,
    };
    let mut resp = match serve_call(&state, &principal, &call, parse_error).await {
        Ok(resp) => resp,
        Err(e) => {
            let line = call.line(e.status.as_u16(), None).into_value();
            export(&state, &line, call.content);
            state.tap.record(line, call.content).await;
            metrics::counter!("distillguard_responses_total", "status" => e.status.as_str().to_owned()).increment(1);
            e.into_response()
        }
    };
    // The exchange id, so a client or an operator can find the call in the log.
    if let Ok(v) = HeaderValue::from_str(&call.id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    metrics::histogram!("distillguard_request_seconds").record(started.elapsed().as_secs_f64());
    resp
}

/// Reads a request body up to `limit` bytes: 413 past it (at once when `Content-Length`
/// says so), 408 when the body timed out (`conn::TimeoutBody`), 400 when it broke off.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if s.is::<crate::conn::BodyTimedOut>() {
                return ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "invalid_request_error",
                    Some("request_timeout"),
                    "The request body was not sent in time.",
                );
            }
            if s.is::<http_body_util::LengthLimitError>() {
                return ApiError::too_large();
            }
            source = s.source();
        }
        ApiError::invalid_request(format!("The request body could not be read: {e}"))
    })
}

/// The endpoint as a metric label: one of a fixed few, so the label set stays small and no
/// string is built per request.
fn endpoint_label(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/completions" => "/v1/completions",
        "/v1/embeddings" => "/v1/embeddings",
        "/v1/responses" => "/v1/responses",
        _ => "other",
    }
}

fn route<'a>(upstreams: &'a [Upstream], model: Option<&str>) -> Option<&'a Upstream> {
    if let Some(m) = model {
        if let Some(u) = upstreams.iter().find(|u| u.models.iter().any(|x| x == m)) {
            return Some(u);
        }
    }
    upstreams.iter().find(|u| u.models.is_empty())
}

async fn serve_call(
    state: &Arc<AppState>,
    principal: &Principal,
    call: &CallRecord,
    parse_error: Option<ApiError>,
) -> Result<Response, ApiError> {
    if let Some(e) = parse_error {
        return Err(e);
    }
    // Copied only when the gateway must change what goes upstream.
    let mut body = std::borrow::Cow::Borrowed(&call.request);
    let policy = &state.shared.policy;
    let standing = state.shared.table.standing(policy, &principal.account);
    metrics::counter!("distillguard_policy_applied_total", "action" => standing.action.as_str())
        .increment(1);
    if standing.action == Action::Block {
        return Err(blocked());
    }
    let degrade = standing.action == Action::Degrade;
    // What `degrade` changed, said to the client in a header (docs/gateway.md) so an honest
    // customer can tell a cap from a bug.
    let mut degraded: Vec<String> = Vec::new();
    if degrade {
        let responses_api = call.endpoint == "/v1/responses";
        degraded = degrade_request(body.to_mut(), policy, responses_api)
            .map_err(ApiError::invalid_request)?;
    }
    let model = body.get("model").and_then(Value::as_str).map(str::to_owned);
    let upstream = route(&state.config.upstreams, model.as_deref()).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("model_not_found"),
            format!(
                "The model `{}` does not exist or you do not have access to it.",
                model.as_deref().unwrap_or("")
            ),
        )
    })?;

    // Reserve what the call can use at most: its prompt (about four bytes a token) and its output cap.
    let max_out = crate::request::output_cap(&body).unwrap_or(1024);
    let prompt_estimate = (call.body_bytes as u64).div_ceil(4);
    let limits = policy.limits_for(standing.action, principal.limits);
    let permit = state
        .limiter
        // Saturating: a client's `max_tokens` near 2^64 must reserve the most, not wrap to little.
        .admit(
            &principal.account,
            limits,
            prompt_estimate.saturating_add(max_out),
        )
        .await
        .map_err(|d| {
            if d.limit == limits::Limit::Unavailable {
                metrics::counter!("distillguard_rejected_total", "reason" => "limits_unavailable")
                    .increment(1);
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "api_error",
                    Some("limits_unavailable"),
                    "Rate limits cannot be checked right now. Please try again shortly.",
                );
                e.retry_after_secs = Some(1);
                return e;
            }
            metrics::counter!("distillguard_rejected_total", "reason" => "limit").increment(1);
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                Some("rate_limit_exceeded"),
                format!(
                    "Rate limit reached for {}. Please try again in {:.1}s.",
                    d.limit.name(),
                    d.retry_after.as_secs_f64()
                ),
            );
            e.retry_after_secs = Some(d.retry_after.as_secs_f64().ceil() as u64);
            e
        })?;

    let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let mut hide_usage_chunk = false;
    let usage_asked = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    if streaming && call.endpoint.ends_with("completions") && !usage_asked {
        hide_usage_chunk = true;
        let obj = body
            .to_mut()
            .as_object_mut()
            .expect("a JSON object, checked when parsed");
        let opts = obj.entry("stream_options").or_insert_with(|| json!({}));
        match opts.as_object_mut() {
            Some(o) => {
                o.insert("include_usage".into(), Value::Bool(true));
            }
            None => *opts = json!({"include_usage": true}),
        }
    }

    let path = call.endpoint.strip_prefix("/v1").unwrap_or(&call.endpoint);
    let url = format!("{}{}", upstream.base_url.trim_end_matches('/'), path);
    let req = state
        .client
        .post(&url)
        .timeout(Duration::from_secs(upstream.timeout_secs));
    // The normal form, serialized: the upstream receives exactly what the log holds.
    let mut req = req
        .header(header::CONTENT_TYPE, "application/json")
        .body(crate::request::to_bytes(&body));
    if let Some(k) = &upstream.api_key {
        req = req.bearer_auth(k);
    }
    if upstream.watermarks {
        req = req
            .header("x-distillguard-account", principal.account.as_str())
            .header("x-distillguard-action", standing.action.as_str());
    }
    let upstream_started = Instant::now();
    let resp = req.send().await.map_err(|e| {
        if e.is_timeout() {
            ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "api_error",
                Some("upstream_timeout"),
                "The model server did not answer in time.",
            )
        } else {
            ApiError::upstream(format!(
                "The model server could not be reached: {}",
                without_url(&e)
            ))
        }
    })?;
    let status = resp.status();
    // The key the built-in engine marked the answer with (its public id, never the key).
    let watermark = upstream
        .watermarks
        .then(|| resp.headers().get("x-distillguard-watermark"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));

    if streaming && is_sse && status.is_success() {
        let tap = state.tap.clone();
        let otlp = state.otlp.clone();
        let content = call.content;
        let mut call_line = call.line(status.as_u16(), None);
        call_line.watermark = watermark;
        let call_started = call.started;
        let on_done = Box::new(move |a: &Assembler, end: End| -> Option<Settled> {
            let mut line = call_line;
            let mut assembled = a.finish(end);
            let used = crate::tokens::fill_usage(&line.request, &mut assembled);
            permit.settle(used);
            drop(permit);
            line.response = Some(assembled);
            // The whole call, from request to last byte.
            line.took(call_started.elapsed().as_secs_f64());
            let line = line.into_value();
            metrics::counter!("distillguard_tokens_total", "kind" => "total").increment(used);
            // Recorded on a task of its own, so a client that leaves while the relay waits
            // cannot cancel it; a complete answer's last bytes wait for it (durability).
            if let Some(x) = &otlp {
                x.export(&line, content);
            }
            let (logged, waiting) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(async move {
                tap.record(line, content).await;
                let _ = logged.send(());
            });
            (end == End::Complete).then(|| -> Settled {
                Box::pin(async move {
                    let _ = waiting.await;
                })
            })
        });
        let tapped = Tapped::new(resp.bytes_stream(), degrade, hide_usage_chunk, on_done);
        let mut out = Response::new(Body::from_stream(tapped));
        *out.status_mut() = status;
        out.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        out.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        mark_degraded(&mut out, degrade, &degraded);
        return Ok(out);
    }

    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = read_limited(resp, state.config.max_response_bytes).await?;
    metrics::histogram!("distillguard_upstream_seconds")
        .record(upstream_started.elapsed().as_secs_f64());
    let mut json_body: Option<Value> = serde_json::from_slice(&bytes).ok();
    if degrade {
        if let Some(v) = json_body.as_mut() {
            strip_response(v);
        }
    }
    // The client gets the upstream's bytes (or the stripped body); the log gets the body with
    // its usage, counted here when the upstream sent none.
    let out_body = match (&json_body, degrade) {
        (Some(v), true) => Bytes::from(v.to_string()),
        _ => bytes,
    };
    let used = match json_body.as_mut() {
        Some(v) if status.is_success() => crate::tokens::fill_usage(&call.request, v),
        _ => prompt_estimate,
    };
    permit.settle(used);
    drop(permit);
    metrics::counter!("distillguard_tokens_total", "kind" => "total").increment(used);
    let logged_response = if status.is_success() { json_body } else { None };
    let mut line = call.line(status.as_u16(), logged_response);
    line.watermark = watermark;
    let line = line.into_value();
    export(state, &line, call.content);
    state.tap.record(line, call.content).await;
    metrics::counter!("distillguard_responses_total", "status" => status.as_str().to_owned())
        .increment(1);
    let overhead = call
        .started
        .elapsed()
        .saturating_sub(upstream_started.elapsed());
    metrics::histogram!("distillguard_overhead_seconds").record(overhead.as_secs_f64());
    let mut out = Response::new(Body::from(out_body));
    *out.status_mut() = status;
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("application/json")),
    );
    mark_degraded(&mut out, degrade, &degraded);
    Ok(out)
}

/// The header names that tell a client its answer was served under `degrade`.
pub const ACTION_HEADER: &str = "x-distillguard-action";
pub const DEGRADED_HEADER: &str = "x-distillguard-degraded";

/// Marks a degraded answer: `x-distillguard-action: degrade` and, in
/// `x-distillguard-degraded`, what was changed (`max_tokens=256, logprobs removed, …`).
/// Only `degrade` says so: `watch` is silent by design, `throttle` answers 429s that say
/// which limit, and `block` a 403.
fn mark_degraded(out: &mut Response, degrade: bool, changes: &[String]) {
    if !degrade {
        return;
    }
    out.headers_mut()
        .insert(ACTION_HEADER, HeaderValue::from_static("degrade"));
    let what = if changes.is_empty() {
        "none".to_owned()
    } else {
        changes.join(", ")
    };
    if let Ok(v) = HeaderValue::from_str(&what) {
        out.headers_mut().insert(DEGRADED_HEADER, v);
    }
}

fn blocked() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "permission_denied",
        Some("account_blocked"),
        "This account is blocked. Contact support if you believe this is a mistake.",
    )
}

/// An upstream error without its URL, which may carry credentials in a query string.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "(upstream)");
    }
    s
}

async fn read_limited(resp: reqwest::Response, limit: usize) -> Result<Bytes, ApiError> {
    let mut stream = resp.bytes_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::upstream(format!(
                "The model server's answer broke off: {}",
                without_url(&e)
            ))
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::upstream(
                "The model server's answer is larger than this gateway accepts.",
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// `GET /v1/models`: the union of the upstreams' model lists.
pub async fn models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let principal = match state.keys.authenticate(&headers).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    // A blocked account is refused here too, as on every other endpoint.
    let standing = state
        .shared
        .table
        .standing(&state.shared.policy, &principal.account);
    if standing.action == Action::Block {
        return blocked().into_response();
    }
    let mut data: Vec<Value> = Vec::new();
    for u in &state.config.upstreams {
        let mut req = state
            .client
            .get(format!("{}/models", u.base_url.trim_end_matches('/')))
            .timeout(Duration::from_secs(u.timeout_secs.min(30)));
        if let Some(k) = &u.api_key {
            req = req.bearer_auth(k);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => {
                if let Ok(v) = r.json::<Value>().await {
                    for m in v["data"].as_array().cloned().unwrap_or_default() {
                        let id = m.get("id").cloned();
                        let routed_here = u.models.is_empty()
                            || id
                                .as_ref()
                                .and_then(Value::as_str)
                                .is_some_and(|i| u.models.iter().any(|x| x == i));
                        if routed_here && !data.iter().any(|d| d.get("id") == id.as_ref()) {
                            data.push(m);
                        }
                    }
                }
            }
            Ok(r) => tracing::warn!(status = %r.status(), "an upstream refused to list its models"),
            Err(e) => {
                tracing::warn!(error = %without_url(&e), "an upstream could not list its models")
            }
        }
        for m in &u.models {
            if !data.iter().any(|d| d["id"] == json!(m)) {
                data.push(
                    json!({"id": m, "object": "model", "created": 0, "owned_by": "distillguard"}),
                );
            }
        }
    }
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// Exports the call as an OpenTelemetry span when `[otlp]` is set: a queue push, never a wait.
fn export(state: &AppState, line: &Value, content: crate::config::ContentPolicy) {
    if let Some(x) = &state.otlp {
        x.export(line, content);
    }
}

/// Says once per process that a proxy of the operator's own network forwards client addresses
/// the gateway ignores (`client_ip::ignored_forwarding`): every call is then attributed to
/// that proxy, and the detector's address evidence is one address for everyone.
fn warn_of_ignored_forwarding(
    peer: std::net::IpAddr,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.load(std::sync::atomic::Ordering::Relaxed)
        && crate::client_ip::ignored_forwarding(peer, headers, trusted)
        && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(
            %peer,
            "requests from {peer} name their client in Forwarded/X-Forwarded-For, which is ignored because {peer} is not in trusted_proxies: every call from it is recorded as {peer}, and address links and rotation see one address for all its clients; if {peer} is a load balancer or sidecar in front of the gateway, add it to trusted_proxies (if clients on your own network connect directly, ignore this)"
        );
    }
}
