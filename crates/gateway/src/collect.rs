//! The OTLP/HTTP receiver: `POST /v1/traces`, and `POST /v1/logs` for the message content
//! some producers record as log events.
//!
//! A provider that already runs its own gateway and traces its model calls with the
//! OpenTelemetry GenAI conventions can point its exporter here and get verdicts with no change
//! in its request path. Each model-call span of an export request becomes an exchange
//! (`exchange::otel`, the same mapping `scan --format otel` uses) and goes through the tap,
//! the one way in: the log, the detector, the policy table, as if the gateway had proxied the
//! call. Bodies are OTLP protobuf or OTLP/JSON, gzip or not; the answer is an
//! `ExportTraceServiceResponse` in the same encoding, with the spans that could not be mapped
//! counted in its partial success (the exporter does not retry those).
//!
//! Producers that record a call's messages as log events (the openai instrumentation's default
//! mode) send them to `/v1/logs`; they are kept per span (`exchange::otel::logs`, bounded)
//! until the span comes and takes them. The two signals are exported apart, so a span with no
//! text from a service known to send its text this way waits up to `otel_content_wait_ms`
//! for its events before it is recorded without them.
//!
//! The routes sit behind the admin token (`OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer
//! <token>`): what it accepts becomes evidence about accounts.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::AppState;

/// The most a gzip body may inflate to: the body limit, times this.
const INFLATE_FACTOR: usize = 8;

fn bad_request(message: String) -> Response {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some("invalid_otlp"),
        message,
    )
    .into_response()
}

/// The most calls whose content (from `/v1/logs`) is kept waiting for their spans.
const MAX_WAITING_CONTENT: usize = 100_000;

/// Message content received as log events, waiting for its spans (`exchange::otel::logs`).
pub struct LogContent {
    contents: parking_lot::Mutex<exchange::otel::Contents>,
    /// Woken whenever content arrives, for spans that wait for theirs.
    arrived: tokio::sync::Notify,
}

impl Default for LogContent {
    fn default() -> Self {
        Self {
            contents: parking_lot::Mutex::new(exchange::otel::Contents::new(MAX_WAITING_CONTENT)),
            arrived: tokio::sync::Notify::new(),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An OTLP/HTTP body, inflated and decoded: `(protobuf?, bytes)`, or the reply that refuses it.
fn decode_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(bool, Bytes), Box<Response>> {
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = if gzip {
        let limit = state.config.max_body_bytes.saturating_mul(INFLATE_FACTOR);
        let mut out = Vec::new();
        let read = flate2::read::GzDecoder::new(&body[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out);
        match read {
            Ok(n) if n > limit => {
                return Err(Box::new(bad_request(format!(
                    "the gzip body inflates past {limit} bytes"
                ))))
            }
            Ok(_) => Bytes::from(out),
            Err(e) => {
                return Err(Box::new(bad_request(format!(
                    "the gzip body does not inflate: {e}"
                ))))
            }
        }
    } else {
        body
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match content_type.as_str() {
        "application/x-protobuf" => Ok((true, body)),
        "application/json" => Ok((false, body)),
        other => Err(Box::new(
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request_error",
                Some("unsupported_media_type"),
                format!(
                "an OTLP/HTTP body is application/x-protobuf or application/json, not {other:?}"
            ),
            )
            .into_response(),
        )),
    }
}

/// An export request `M` (traces or logs) in its OTLP/JSON form, whichever encoding it came
/// in (`to_json` turns the protobuf form into it): `(protobuf?, request)`, or the refusal.
fn decode_request<M: Message + Default>(
    state: &AppState,
    headers: &HeaderMap,
    body: Bytes,
    to_json: fn(&M) -> Value,
) -> Result<(bool, Value), Box<Response>> {
    let (protobuf, body) = decode_body(state, headers, body)?;
    let request = if protobuf {
        let name = std::any::type_name::<M>()
            .rsplit("::")
            .next()
            .unwrap_or("request");
        M::decode(body)
            .map(|r| to_json(&r))
            .map_err(|e| Box::new(bad_request(format!("not an OTLP {name}: {e}"))))?
    } else {
        serde_json::from_slice::<Value>(&body)
            .map_err(|e| Box::new(bad_request(format!("not JSON: {e}"))))?
    };
    Ok((protobuf, request))
}

/// `POST /v1/logs`: keeps the GenAI content events for their spans; other log records are
/// not ours to read and are accepted without a word.
pub async fn logs(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let (protobuf, request) = match decode_request(&state, &headers, body, logs_json) {
        Ok(r) => r,
        Err(reply) => return *reply,
    };
    let taken = state
        .log_content
        .contents
        .lock()
        .add_request(&request, now_ms());
    let taken = match taken {
        Ok(t) => t,
        Err((_, message)) => return bad_request(message),
    };
    for (outcome, n) in [
        ("kept", taken.events),
        ("ignored", taken.ignored),
        ("unjoinable", taken.unjoinable),
        ("evicted", taken.evicted),
    ] {
        metrics::counter!("distillguard_collected_log_events_total", "outcome" => outcome)
            .increment(n);
    }
    state.log_content.arrived.notify_waiters();
    if protobuf {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            )],
            ExportLogsServiceResponse {
                partial_success: None,
            }
            .encode_to_vec(),
        )
            .into_response()
    } else {
        axum::Json(json!({})).into_response()
    }
}

/// `POST /v1/traces`.
pub async fn traces(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (protobuf, request) = match decode_request(&state, &headers, body, request_json) {
        Ok(r) => r,
        Err(reply) => return *reply,
    };

    // Spans whose text comes as log events that have not arrived yet wait a moment for them.
    let wait = Duration::from_millis(state.config.otel_content_wait_ms);
    let deadline = Instant::now() + wait;
    loop {
        let arrived = state.log_content.arrived.notified();
        let missing = {
            let contents = state.log_content.contents.lock();
            exchange::otel::awaiting_content(&request, &contents, now_ms()).len()
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if missing == 0 || left.is_zero() {
            if missing > 0 {
                metrics::counter!("distillguard_collected_spans_without_content_total")
                    .increment(missing as u64);
            }
            break;
        }
        let _ = tokio::time::timeout(left, arrived).await;
    }

    let accounts = exchange::otel::AccountAttributes(state.config.otel_account.clone());
    let mut accepted = Vec::new();
    let mut rejected = 0i64;
    let mut why = None;
    let mapped = {
        let mut contents = state.log_content.contents.lock();
        let mapped =
            exchange::otel::parse_request(&request, &accounts, Some(&contents), |r| match r {
                Ok(ex) => accepted.push(ex),
                Err((_, message)) => {
                    rejected += 1;
                    why.get_or_insert(message);
                }
            });
        // The span took its content: what was kept for it is done with.
        for ex in &accepted {
            contents.forget(&ex.id);
        }
        mapped
    };
    if let Err((_, message)) = mapped {
        return bad_request(message);
    }
    metrics::counter!("distillguard_collected_spans_total", "outcome" => "accepted")
        .increment(accepted.len() as u64);
    metrics::counter!("distillguard_collected_spans_total", "outcome" => "rejected")
        .increment(rejected as u64);
    // Queued together, so one group commit carries the batch; answered once they are logged
    // (with `committed` durability), so an exporter told 200 lost nothing.
    let content = state.config.content;
    let lines = accepted.iter().map(|ex| {
        let line = serde_json::to_value(ex).expect("an exchange serialises");
        state.tap.record(line, content)
    });
    futures_util::future::join_all(lines).await;

    let error_message = why.unwrap_or_default();
    if protobuf {
        let reply = ExportTraceServiceResponse {
            partial_success: (rejected > 0).then_some(ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message,
            }),
        };
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            )],
            reply.encode_to_vec(),
        )
            .into_response()
    } else if rejected > 0 {
        axum::Json(json!({"partialSuccess": {"rejectedSpans": rejected.to_string(), "errorMessage": error_message}}))
            .into_response()
    } else {
        axum::Json(json!({})).into_response()
    }
}

/// A protobuf export request in its OTLP/JSON form (ids as hex, 64-bit numbers as text), the
/// form `exchange::otel` reads.
fn request_json(r: &ExportTraceServiceRequest) -> Value {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let resource_spans: Vec<Value> = r
        .resource_spans
        .iter()
        .map(|rs| {
            let scopes: Vec<Value> = rs
                .scope_spans
                .iter()
                .map(|ss| {
                    let spans: Vec<Value> = ss
                        .spans
                        .iter()
                        .map(|s| {
                            json!({
                                "traceId": hex(&s.trace_id),
                                "spanId": hex(&s.span_id),
                                "name": s.name,
                                "kind": s.kind,
                                "startTimeUnixNano": s.start_time_unix_nano.to_string(),
                                "endTimeUnixNano": s.end_time_unix_nano.to_string(),
                                "attributes": attributes_json(&s.attributes),
                                "status": s.status.as_ref().map_or(json!({}), |st| json!({"code": st.code, "message": st.message})),
                            })
                        })
                        .collect();
                    json!({"spans": spans})
                })
                .collect();
            let resource = rs.resource.as_ref().map_or(json!([]), |r| attributes_json(&r.attributes));
            json!({"resource": {"attributes": resource}, "scopeSpans": scopes})
        })
        .collect();
    json!({"resourceSpans": resource_spans})
}

/// A protobuf logs export request in its OTLP/JSON form, the form `exchange::otel::logs` reads.
fn logs_json(r: &ExportLogsServiceRequest) -> Value {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let resource_logs: Vec<Value> = r
        .resource_logs
        .iter()
        .map(|rl| {
            let scopes: Vec<Value> = rl
                .scope_logs
                .iter()
                .map(|sl| {
                    let records: Vec<Value> = sl
                        .log_records
                        .iter()
                        .map(|l| {
                            let mut record = json!({
                                "timeUnixNano": l.time_unix_nano.to_string(),
                                "observedTimeUnixNano": l.observed_time_unix_nano.to_string(),
                                "attributes": attributes_json(&l.attributes),
                                "body": l.body.as_ref().map_or(json!({}), any_json),
                            });
                            if !l.event_name.is_empty() {
                                record["eventName"] = json!(l.event_name);
                            }
                            // Records outside a span carry empty ids: leave them out.
                            if !l.trace_id.is_empty() && !l.span_id.is_empty() {
                                record["traceId"] = json!(hex(&l.trace_id));
                                record["spanId"] = json!(hex(&l.span_id));
                            }
                            record
                        })
                        .collect();
                    json!({"logRecords": records})
                })
                .collect();
            let resource = rl
                .resource
                .as_ref()
                .map_or(json!([]), |r| attributes_json(&r.attributes));
            json!({"resource": {"attributes": resource}, "scopeLogs": scopes})
        })
        .collect();
    json!({"resourceLogs": resource_logs})
}

fn attributes_json(list: &[KeyValue]) -> Value {
    Value::Array(
        list.iter()
            .map(
                |kv| json!({"key": kv.key, "value": kv.value.as_ref().map_or(json!({}), any_json)}),
            )
            .collect(),
    )
}

fn any_json(v: &AnyValue) -> Value {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => json!({"stringValue": s}),
        Some(any_value::Value::BoolValue(b)) => json!({"boolValue": b}),
        Some(any_value::Value::IntValue(i)) => json!({"intValue": i.to_string()}),
        Some(any_value::Value::DoubleValue(d)) => json!({"doubleValue": d}),
        Some(any_value::Value::ArrayValue(a)) => {
            json!({"arrayValue": {"values": a.values.iter().map(any_json).collect::<Vec<_>>()}})
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            json!({"kvlistValue": {"values": attributes_json(&kv.values)}})
        }
        // Bytes (and any kind a newer protocol adds) carry no text the detector reads.
        _ => json!({}),
    }
}
