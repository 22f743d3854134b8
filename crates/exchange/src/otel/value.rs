//! OTLP/JSON values as plain JSON: attribute lists, `AnyValue`s, times. Spans and log
//! records share these forms, so both readers take them from here.

use serde_json::{json, Map, Value};

/// An OTLP/JSON attribute list (`[{"key": .., "value": {"stringValue": ..}}]`) as a map of
/// plain JSON values.
pub(super) fn attributes(list: Option<&Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for kv in list.and_then(Value::as_array).into_iter().flatten() {
        if let (Some(k), Some(v)) = (kv.get("key").and_then(Value::as_str), kv.get("value")) {
            out.insert(k.to_owned(), any_value(v));
        }
    }
    out
}

/// One OTLP `AnyValue` as plain JSON. 64-bit integers are strings in OTLP/JSON; both forms read.
pub(super) fn any_value(v: &Value) -> Value {
    if let Some(s) = v.get("stringValue") {
        return s.clone();
    }
    if let Some(i) = v.get("intValue") {
        return match i {
            Value::String(s) => s.parse::<i64>().map_or(Value::Null, |n| json!(n)),
            other => other.clone(),
        };
    }
    if let Some(d) = v.get("doubleValue") {
        return d.clone();
    }
    if let Some(b) = v.get("boolValue") {
        return b.clone();
    }
    if let Some(a) = v.get("arrayValue") {
        let values = a.get("values").and_then(Value::as_array);
        return Value::Array(values.into_iter().flatten().map(any_value).collect());
    }
    if let Some(kv) = v.get("kvlistValue") {
        return Value::Object(attributes(kv.get("values")));
    }
    Value::Null
}

pub(super) fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A time in nanoseconds since the epoch (a string in OTLP/JSON, a number from some
/// writers), in milliseconds.
pub(super) fn nanos_to_millis(v: Option<&Value>) -> Option<i64> {
    let nanos = match v? {
        Value::String(s) => s.parse::<i128>().ok()?,
        Value::Number(n) => n.as_i64().map(i128::from)?,
        _ => return None,
    };
    (nanos > 0).then_some((nanos / 1_000_000) as i64)
}
