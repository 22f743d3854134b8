//! The few fields that route an exchange, read without reading it whole: which exchange, whose,
//! when, and who paid. The log writer keys rows by them and the bus partitions by them; both
//! ask here rather than digging in the JSON, so the field names live with the format.

use serde::Deserialize;
use serde_json::Value;

use crate::Timestamp;

/// An exchange's id, account, time and payment instrument (`meta.payment_fingerprint`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peek {
    pub id: String,
    pub account: String,
    /// `ts` in milliseconds since the epoch; `None` when it is missing or not a timestamp.
    pub ts_ms: Option<i64>,
    pub payer: Option<String>,
}

#[derive(Deserialize)]
struct Fields {
    #[serde(default)]
    id: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    ts: Option<String>,
    #[serde(default)]
    meta: Option<MetaFields>,
}

#[derive(Deserialize)]
struct MetaFields {
    #[serde(default)]
    payment_fingerprint: Option<String>,
}

impl Peek {
    /// Peeks at a line of the log; an error when it is not a JSON object of the format.
    pub fn line(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<Fields>(line).map(Self::from)
    }

    /// Peeks at an exchange already held as JSON (missing fields read as empty).
    pub fn value(v: &Value) -> Self {
        let text = |v: &Value| v.as_str().map(str::to_owned);
        Self {
            id: text(&v["id"]).unwrap_or_default(),
            account: text(&v["account"]).unwrap_or_default(),
            ts_ms: v["ts"].as_str().and_then(ts_ms),
            payer: text(&v["meta"]["payment_fingerprint"]),
        }
    }
}

impl From<Fields> for Peek {
    fn from(f: Fields) -> Self {
        Self {
            id: f.id,
            account: f.account,
            ts_ms: f.ts.as_deref().and_then(ts_ms),
            payer: f.meta.and_then(|m| m.payment_fingerprint),
        }
    }
}

fn ts_ms(ts: &str) -> Option<i64> {
    Timestamp::parse(ts).ok().map(|t| t.millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_and_its_json_peek_the_same() {
        let line = r#"{"id":"x","account":"a","ts":"2026-01-02T03:04:05.678Z","meta":{"payment_fingerprint":"pf_1","asn":1},"request":{}}"#;
        let p = Peek::line(line).unwrap();
        assert_eq!(p.id, "x");
        assert_eq!(p.account, "a");
        assert_eq!(p.payer.as_deref(), Some("pf_1"));
        assert_eq!(p.ts_ms, Some(1_767_323_045_678));
        assert_eq!(p, Peek::value(&serde_json::from_str(line).unwrap()));
    }

    #[test]
    fn missing_fields_peek_as_empty_and_a_bad_time_as_none() {
        let p = Peek::line(r#"{"id":"x","ts":"yesterday"}"#).unwrap();
        assert_eq!((p.account.as_str(), p.ts_ms, p.payer), ("", None, None));
        assert!(Peek::line("not json").is_err());
    }
}
