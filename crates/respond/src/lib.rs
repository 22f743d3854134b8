//! From verdicts to actions, and what each action does to a call: the *Respond* floor.
//!
//! The detector only judges; this crate only maps its verdicts to actions, lets humans
//! override them (allowlist, manual actions), and applies the action to each call. The gateway
//! never re-implements a detection rule.

use parking_lot::RwLock;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use exchange::OUTPUT_CAPS;

/// What the gateway does with an account's calls, mildest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Serve as usual.
    Allow,
    /// Serve as usual, but mark the account for review (metrics, admin API).
    Watch,
    /// Serve under lower limits (`throttle_factor` of the account's limits; 10 per minute when unlimited).
    Throttle,
    /// Serve a reduced product: no logprobs, no logit_bias, `max_tokens` capped, no reasoning content.
    Degrade,
    /// Refuse every call with 403.
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Watch => "watch",
            Action::Throttle => "throttle",
            Action::Degrade => "degrade",
            Action::Block => "block",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "allow" => Action::Allow,
            "watch" => Action::Watch,
            "throttle" => Action::Throttle,
            "degrade" => Action::Degrade,
            "block" => Action::Block,
            _ => return None,
        })
    }
}

/// The policy file: which action each verdict gets, and how strong throttling and degrading are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Default `allow`.
    pub benign: Action,
    /// Default `watch`: a suspicion alone changes nothing for the customer.
    pub suspicious: Action,
    /// Default `degrade`: harvesting stops paying off, while a wrongly flagged customer keeps a
    /// working product until a human reviews; set `block` to refuse outright.
    pub distilling: Action,
    /// Share of the account's limits left when throttled (default 0.1).
    pub throttle_factor: f64,
    /// Requests per minute when throttling an account that has no limit (default 10).
    pub throttle_rpm: u32,
    /// `max_tokens` cap when degraded (default 256).
    pub degrade_max_tokens: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            benign: Action::Allow,
            suspicious: Action::Watch,
            distilling: Action::Degrade,
            throttle_factor: 0.1,
            throttle_rpm: 10,
            degrade_max_tokens: 256,
        }
    }
}

impl Policy {
    pub fn for_verdict(&self, verdict: detect::Verdict) -> Action {
        match verdict {
            detect::Verdict::Benign => self.benign,
            detect::Verdict::Suspicious => self.suspicious,
            detect::Verdict::Distilling => self.distilling,
        }
    }

    /// The limits an account runs under for an action.
    pub fn limits_for(&self, action: Action, limits: limits::Limits) -> limits::Limits {
        if action != Action::Throttle {
            return limits;
        }
        let scale = |v: Option<u32>, unlimited: u32| {
            Some(v.map_or(unlimited, |x| {
                ((f64::from(x) * self.throttle_factor) as u32).max(1)
            }))
        };
        limits::Limits {
            rpm: scale(limits.rpm, self.throttle_rpm),
            tpm: limits
                .tpm
                .map(|t| ((f64::from(t) * self.throttle_factor) as u32).max(1)),
            concurrency: scale(limits.concurrency, 1),
        }
    }
}

/// Why an account has its current action.
#[derive(Debug, Clone, Serialize)]
pub struct Standing {
    pub action: Action,
    /// `detector`, `override:<who>`, `allowlist` or `default`.
    pub source: String,
}

/// The live table the request path reads: per account, the detector's verdict, any human
/// override and the allowlist, folded into one action.
#[derive(Default)]
pub struct PolicyTable {
    inner: RwLock<Tables>,
}

#[derive(Default)]
struct Tables {
    verdicts: HashMap<String, detect::Verdict>,
    overrides: HashMap<String, (Action, String)>,
    allowlist: HashMap<String, bool>,
}

impl PolicyTable {
    pub fn standing(&self, policy: &Policy, account: &str) -> Standing {
        let t = self.inner.read();
        if let Some((action, by)) = t.overrides.get(account) {
            return Standing {
                action: *action,
                source: format!("override:{by}"),
            };
        }
        if t.allowlist.get(account).copied().unwrap_or(false) {
            return Standing {
                action: Action::Allow,
                source: "allowlist".into(),
            };
        }
        match t.verdicts.get(account) {
            Some(v) => Standing {
                action: policy.for_verdict(*v),
                source: "detector".into(),
            },
            None => Standing {
                action: policy.benign,
                source: "default".into(),
            },
        }
    }

    /// The detector's verdict on `account`, if one was set.
    pub fn verdict(&self, account: &str) -> Option<detect::Verdict> {
        let t = self.inner.read();
        t.verdicts.get(account).copied()
    }

    pub fn set_verdict(&self, account: &str, verdict: detect::Verdict) {
        self.inner
            .write()
            .verdicts
            .insert(account.to_owned(), verdict);
    }

    /// Sets the verdict unless the table already holds a higher one: the detector only
    /// escalates, and a restart's replay must not lower what was enforced before it.
    pub fn raise_verdict(&self, account: &str, verdict: detect::Verdict) {
        let mut t = self.inner.write();
        let held = t.verdicts.entry(account.to_owned()).or_insert(verdict);
        *held = (*held).max(verdict);
    }

    pub fn set_override(&self, account: &str, action: Option<(Action, String)>) {
        let mut t = self.inner.write();
        match action {
            Some(a) => t.overrides.insert(account.to_owned(), a),
            None => t.overrides.remove(account),
        };
    }

    pub fn set_allowlisted(&self, account: &str, allowlisted: bool) {
        self.inner
            .write()
            .allowlist
            .insert(account.to_owned(), allowlisted);
    }
}

/// Rewrites a request body for `Degrade` and says what it changed (for the client's
/// `x-distillguard-degraded` header). Returns an error message when the request cannot be
/// served degraded (a `logit_bias` request: refusing is clearer than silently ignoring it).
///
/// The body is in its normal form (`request::parse`): counts are integers, so a cap cannot be
/// slipped past as `4096.0` or `"4096"`.
/// `responses_api`: the body is a Responses API request (`max_output_tokens`, `reasoning`,
/// `include`), which refuses the chat spellings.
pub fn degrade_request(
    body: &mut Value,
    policy: &Policy,
    responses_api: bool,
) -> Result<Vec<String>, String> {
    let mut changed = Vec::new();
    let Some(obj) = body.as_object_mut() else {
        return Ok(changed);
    };
    if obj
        .get("logit_bias")
        .is_some_and(|v| !v.is_null() && v.as_object().is_none_or(|m| !m.is_empty()))
    {
        return Err("logit_bias is not available for this account".into());
    }
    let mut asked_logprobs = [obj.remove("logprobs"), obj.remove("top_logprobs")]
        .iter()
        .flatten()
        .any(|v| !v.is_null() && *v != Value::Bool(false) && v.as_u64() != Some(0));
    let mut asked_reasoning = false;
    if responses_api {
        // Logprobs and reasoning asked for through `include`.
        if let Some(Value::Array(include)) = obj.get_mut("include") {
            include.retain(|i| match i.as_str() {
                Some(s) if s.contains("logprobs") => {
                    asked_logprobs = true;
                    false
                }
                Some(s) if s.contains("reasoning") => {
                    asked_reasoning = true;
                    false
                }
                _ => true,
            });
        }
        asked_reasoning |= obj.remove("reasoning").is_some_and(|r| !r.is_null());
    }
    if asked_logprobs {
        changed.push("logprobs removed".to_owned());
    }
    if asked_reasoning {
        changed.push("reasoning removed".to_owned());
    }
    let cap = policy.degrade_max_tokens;
    for field in OUTPUT_CAPS {
        if let Some(v) = obj.get(field).and_then(Value::as_u64) {
            if v > cap {
                obj.insert(field.into(), Value::from(cap));
                changed.push(format!("{field}={cap}"));
            }
        }
    }
    let unset = |o: &serde_json::Map<String, Value>, k: &str| o.get(k).is_none_or(Value::is_null);
    let cap_field = if responses_api {
        "max_output_tokens"
    } else {
        "max_tokens"
    };
    if OUTPUT_CAPS.iter().all(|k| unset(obj, k)) {
        obj.insert(cap_field.into(), Value::from(cap));
        changed.push(format!("{cap_field}={cap}"));
    }
    if obj.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        obj.insert("n".into(), Value::from(1));
        changed.push("n=1".to_owned());
    }
    if obj.remove("reasoning_effort").is_some() {
        changed.push("reasoning_effort removed".to_owned());
    }
    changed.push("reasoning stripped from the answer".to_owned());
    Ok(changed)
}

/// Removes reasoning text and logprobs from a response (or one streamed chunk) for `Degrade`:
/// chat and completions choices, and the Responses API's output items (reasoning items go,
/// `logprobs` of output text go), also inside a stream's `response.completed` event.
pub fn strip_response(body: &mut Value) {
    for path in ["/output", "/response/output", "/item"] {
        if let Some(output) = body.pointer_mut(path) {
            strip_output(output);
        }
    }
    if let Some(part) = body.get_mut("part").and_then(Value::as_object_mut) {
        part.remove("logprobs");
    }
    if let Some(obj) = body.as_object_mut() {
        if obj
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.starts_with("response.output_text"))
        {
            obj.remove("logprobs");
        }
    }
    if let Some(choices) = body.get_mut("choices").and_then(Value::as_array_mut) {
        for c in choices {
            if let Some(obj) = c.as_object_mut() {
                obj.remove("logprobs");
                for part in ["message", "delta"] {
                    if let Some(m) = obj.get_mut(part).and_then(Value::as_object_mut) {
                        m.remove("reasoning_content");
                        m.remove("reasoning");
                    }
                }
            }
        }
    }
}

/// The Responses API's output items without reasoning, and their text without logprobs.
fn strip_output(output: &mut Value) {
    let strip_item = |item: &mut Value| {
        if let Some(parts) = item.get_mut("content").and_then(Value::as_array_mut) {
            for p in parts {
                if let Some(p) = p.as_object_mut() {
                    p.remove("logprobs");
                }
            }
        }
    };
    match output {
        Value::Array(items) => {
            items.retain(|i| i.get("type").and_then(Value::as_str) != Some("reasoning"));
            items.iter_mut().for_each(strip_item);
        }
        item @ Value::Object(_) => {
            if item.get("type").and_then(Value::as_str) == Some("reasoning") {
                if let Some(o) = item.as_object_mut() {
                    o.remove("summary");
                    o.remove("content");
                    o.remove("encrypted_content");
                }
            }
            strip_item(item);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn degrade_caps_and_strips_and_refuses_logit_bias() {
        let p = Policy::default();
        let mut body =
            json!({"model": "m", "max_tokens": 4096, "logprobs": true, "top_logprobs": 20, "n": 4});
        let changed = degrade_request(&mut body, &p, false).unwrap();
        assert_eq!(body, json!({"model": "m", "max_tokens": 256, "n": 1}));
        assert_eq!(
            changed,
            [
                "logprobs removed",
                "max_tokens=256",
                "n=1",
                "reasoning stripped from the answer"
            ]
        );
        // A null cap is no cap: it is set, not left for the upstream's default.
        let mut null_cap = json!({"model": "m", "max_tokens": null});
        degrade_request(&mut null_cap, &p, false).unwrap();
        assert_eq!(null_cap["max_tokens"], 256);
        let mut bias = json!({"model": "m", "logit_bias": {"42": 100}});
        assert!(degrade_request(&mut bias, &p, false).is_err());
        // The Responses API's spellings.
        let mut r = json!({"model": "m", "input": "hi", "max_output_tokens": 9000, "reasoning": {"effort": "high"}, "include": ["message.output_text.logprobs", "file_search_call.results"], "top_logprobs": 5});
        let changed = degrade_request(&mut r, &p, true).unwrap();
        for said in [
            "logprobs removed",
            "reasoning removed",
            "max_output_tokens=256",
        ] {
            assert!(changed.iter().any(|c| c == said), "{said} in {changed:?}");
        }
        assert_eq!(
            r,
            json!({"model": "m", "input": "hi", "max_output_tokens": 256, "include": ["file_search_call.results"]})
        );
        let mut unset = json!({"model": "m", "input": "hi"});
        degrade_request(&mut unset, &p, true).unwrap();
        assert_eq!(unset["max_output_tokens"], 256);
        assert!(
            unset.get("max_tokens").is_none(),
            "the Responses API refuses max_tokens"
        );
    }

    #[test]
    fn overrides_beat_allowlist_beat_verdicts() {
        let p = Policy::default();
        let t = PolicyTable::default();
        t.set_verdict("a", detect::Verdict::Distilling);
        assert_eq!(t.standing(&p, "a").action, Action::Degrade);
        t.set_allowlisted("a", true);
        assert_eq!(t.standing(&p, "a").action, Action::Allow);
        t.set_override("a", Some((Action::Block, "alice".into())));
        assert_eq!(t.standing(&p, "a").action, Action::Block);
        assert_eq!(t.standing(&p, "b").action, Action::Allow);
    }

    #[test]
    fn reasoning_items_are_stripped_from_responses_api_answers_and_events() {
        let mut r = json!({"output": [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "secret"}]},
            {"type": "message", "content": [{"type": "output_text", "text": "a", "logprobs": [{"token": "a"}]}]}]});
        strip_response(&mut r);
        assert_eq!(
            r,
            json!({"output": [{"type": "message", "content": [{"type": "output_text", "text": "a"}]}]})
        );
        let mut done = json!({"type": "response.completed", "response": {"output": [{"type": "reasoning", "summary": []}]}});
        strip_response(&mut done);
        assert_eq!(done["response"]["output"], json!([]));
        let mut delta =
            json!({"type": "response.output_text.delta", "delta": "a", "logprobs": [1]});
        strip_response(&mut delta);
        assert!(delta.get("logprobs").is_none());
    }

    #[test]
    fn reasoning_is_stripped_from_messages_and_deltas() {
        let mut r = json!({"choices": [{"message": {"content": "a", "reasoning_content": "secret"}, "logprobs": {}}, {"delta": {"reasoning_content": "x"}}]});
        strip_response(&mut r);
        assert_eq!(
            r,
            json!({"choices": [{"message": {"content": "a"}}, {"delta": {}}]})
        );
    }
}
