//! Writing the format: what a producer (the gateway) logs for one call. The envelope fields are
//! typed and named here, beside the reader's; the request and the response stay the JSON that
//! went over the wire, every field kept, whatever the reader knows of them today.

use serde_json::{Map, Value};

use crate::Timestamp;

/// One exchange line as the gateway writes it (`EXCHANGE_FORMAT.md`); it reads back with
/// [`crate::parse_line`].
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub id: String,
    pub ts: String,
    pub account: String,
    pub key: String,
    pub ip: String,
    pub user_agent: Option<String>,
    /// What the provider knows of the account (payment, sign-up, network), for linking.
    pub meta: Option<Value>,
    pub endpoint: String,
    pub status: u16,
    /// The whole call, from request to last byte, to a tenth of a millisecond.
    pub latency_ms: f64,
    pub request: Value,
    pub response: Option<Value>,
    /// Extension (distillguard): the watermark the answer was marked with, as the built-in
    /// engine names it (`wm1-<id>; scheme=kgw; gamma=..; delta=..; context=..`): the key's
    /// public id and the scheme, never the key. Other readers ignore it.
    pub watermark: Option<String>,
}

impl Written {
    /// A call begun at `ts_ms`, answered with `status`; `response` and `latency_ms` may be set
    /// later (a stream is logged when it ends).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        ts_ms: i64,
        account: String,
        key: String,
        ip: String,
        endpoint: String,
        status: u16,
        request: Value,
    ) -> Self {
        Self {
            id,
            ts: Timestamp::from_millis(ts_ms).as_str().to_owned(),
            account,
            key,
            ip,
            user_agent: None,
            meta: None,
            endpoint,
            status,
            latency_ms: 0.0,
            request,
            response: None,
            watermark: None,
        }
    }

    /// Sets the latency from seconds, rounded to a tenth of a millisecond.
    pub fn took(&mut self, secs: f64) {
        self.latency_ms = (secs * 10_000.0).round() / 10.0;
    }

    /// The line as JSON (for the tap, which redacts it per the content policy). The request
    /// and the response move into it, not copied: this runs once per proxied call.
    pub fn into_value(self) -> Value {
        let mut m = Map::with_capacity(14);
        m.insert("id".into(), self.id.into());
        m.insert("ts".into(), self.ts.into());
        m.insert("account".into(), self.account.into());
        m.insert("key".into(), self.key.into());
        m.insert("ip".into(), self.ip.into());
        if let Some(ua) = self.user_agent {
            m.insert("user_agent".into(), ua.into());
        }
        if let Some(meta) = self.meta {
            m.insert("meta".into(), meta);
        }
        m.insert("endpoint".into(), self.endpoint.into());
        m.insert("status".into(), self.status.into());
        m.insert("latency_ms".into(), self.latency_ms.into());
        m.insert("request".into(), self.request);
        if let Some(r) = self.response {
            m.insert("response".into(), r);
        }
        if let Some(w) = self.watermark {
            m.insert("watermark".into(), w.into());
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_written_line_reads_back_with_every_field() {
        let mut w = Written::new(
            "req_1".into(),
            1_767_323_045_678,
            "acme".into(),
            "key_1".into(),
            "203.0.113.7".into(),
            "/v1/chat/completions".into(),
            200,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "vendor_field": 1}),
        );
        w.user_agent = Some("openai-python/1.0".into());
        w.meta = Some(json!({"payment_fingerprint": "pf_1"}));
        w.response = Some(
            json!({"choices": [{"message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
        );
        w.watermark = Some("wm1-0011223344556677; scheme=gumbel; context=2".into());
        w.took(0.012_345_6);
        assert_eq!(w.latency_ms, 12.3);
        let line = w.clone().into_value().to_string();
        let ex = crate::parse_line(line.as_bytes()).expect("reads back");
        assert_eq!((ex.id.as_str(), ex.account.as_str()), ("req_1", "acme"));
        assert_eq!(ex.ts.millis(), 1_767_323_045_678);
        assert_eq!(ex.key.as_deref(), Some("key_1"));
        assert_eq!(ex.ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(ex.user_agent.as_deref(), Some("openai-python/1.0"));
        assert_eq!(
            ex.meta.unwrap().payment_fingerprint.as_deref(),
            Some("pf_1")
        );
        assert_eq!(
            (ex.endpoint.as_str(), ex.status),
            ("/v1/chat/completions", 200)
        );
        assert_eq!(ex.latency_ms, Some(12.3));
        assert_eq!(ex.response.unwrap().usage.unwrap().completion_tokens, 1);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v["watermark"],
            "wm1-0011223344556677; scheme=gumbel; context=2"
        );
        // A field not set is left out, not written as null.
        let bare = Written::new(
            "r".into(),
            0,
            "a".into(),
            "k".into(),
            "ip".into(),
            "/v1/x".into(),
            500,
            json!({}),
        );
        let bare = bare.into_value();
        assert!(bare.get("response").is_none() && bare.get("watermark").is_none());
        // What the reader does not know is still in the line.
        assert!(line.contains("vendor_field"));
        assert_eq!(
            crate::Peek::line(&line).unwrap().payer.as_deref(),
            Some("pf_1")
        );
    }
}
