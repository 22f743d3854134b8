//! The OTLP/HTTP trace receiver: `POST /v1/traces`.
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
//! The route sits behind the admin token (`OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer
//! <token>`): what it accepts becomes evidence about accounts.

use std::io::Read;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
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

/// `POST /v1/traces`.
pub async fn traces(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
                return bad_request(format!("the gzip body inflates past {limit} bytes"))
            }
            Ok(_) => Bytes::from(out),
            Err(e) => return bad_request(format!("the gzip body does not inflate: {e}")),
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
    let protobuf = match content_type.as_str() {
        "application/x-protobuf" => true,
        "application/json" => false,
        other => {
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request_error",
                Some("unsupported_media_type"),
                format!(
                "an OTLP/HTTP body is application/x-protobuf or application/json, not {other:?}"
            ),
            )
            .into_response()
        }
    };
    let request = if protobuf {
        match ExportTraceServiceRequest::decode(body) {
            Ok(r) => request_json(&r),
            Err(e) => return bad_request(format!("not an OTLP ExportTraceServiceRequest: {e}")),
        }
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => v,
            Err(e) => return bad_request(format!("not JSON: {e}")),
        }
    };

    let accounts = exchange::otel::AccountAttributes(state.config.otel_account.clone());
    let mut accepted = Vec::new();
    let mut rejected = 0i64;
    let mut why = None;
    let mapped = exchange::otel::parse_request(&request, &accounts, |r| match r {
        Ok(ex) => accepted.push(ex),
        Err((_, message)) => {
            rejected += 1;
            why.get_or_insert(message);
        }
    });
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
