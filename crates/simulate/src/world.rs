//! The simulated world: a seeded random source, the clock window, customer identities
//! (ids, keys, addresses, clients, payment), arrival-time models and the builder that
//! turns a call into a logged [`Exchange`] with a plausible response.

use exchange::{
    Choice, Content, Exchange, LogitBias, Message, Meta, Prompt, Request, Response,
    ResponseMessage, Timestamp, Usage,
};
use rand::distributions::WeightedIndex;
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;

use crate::corpus::{Corpora, Pair};

pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 24 * HOUR;

/// Relative activity of people by local hour of day.
const HUMAN_DAY: [f64; 24] = [
    0.10, 0.05, 0.03, 0.03, 0.03, 0.05, 0.15, 0.35, 0.60, 0.85, 1.00, 1.00, 0.90, 0.95, 1.00, 1.00,
    0.95, 0.80, 0.60, 0.50, 0.50, 0.45, 0.35, 0.20,
];

pub const USER_AGENTS: &[&str] = &[
    "OpenAI/Python 1.59.0",
    "OpenAI/Python 1.54.3",
    "OpenAI/NodeJS 4.77.0",
    "AsyncOpenAI/Python 1.59.0",
    "python-requests/2.32.3",
    "python-httpx/0.27.2",
    "axios/1.7.9",
    "langchain-openai/0.2.14",
    "curl/8.5.0",
    "Go-http-client/2.0",
    "okhttp/4.12.0",
];

/// TLS client fingerprints of common client libraries: most customers share one of these
/// with thousands of others (so a shared fingerprint alone links nothing).
pub const TLS_LIBRARIES: &[&str] = &[
    "t13d1516h2_8daaf6152771",
    "t13d1715h2_5b57614c22b0",
    "t13d1812h2_e8a523a41297",
    "t13d2014h2_a09f3c656075",
    "t13d1311h1_c1a3c2b0d7a1",
    "t13d1516h1_2d3f8e0b9a44",
];

/// Networks of large clouds: (first octets, ASN). Many unrelated customers live here.
const CLOUDS: &[([u8; 2], u64)] = &[
    ([34, 82], 15169),
    ([35, 190], 15169),
    ([52, 14], 16509),
    ([3, 120], 16509),
    ([20, 51], 8075),
    ([13, 64], 8075),
    ([104, 131], 14061),
];
/// Consumer ISP networks.
const ISPS: &[([u8; 2], u64)] = &[
    ([73, 162], 7922),
    ([24, 16], 7922),
    ([98, 207], 7018),
    ([87, 122], 3320),
    ([2, 205], 3215),
    ([181, 46], 7303),
    ([112, 96], 4134),
    ([49, 36], 4837),
    ([95, 24], 12389),
    ([189, 6], 8151),
];
const COUNTRIES: &[&str] = &[
    "US", "US", "US", "DE", "GB", "FR", "IN", "BR", "JP", "CN", "SG", "CA", "KR", "NL",
];
const EMAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "outlook.com",
    "proton.me",
    "yahoo.com",
    "qq.com",
    "company.example",
    "corp.example",
    "startup.example",
    "uni.example",
];

pub struct World<'c> {
    pub rng: ChaCha8Rng,
    pub corpora: &'c Corpora,
    pub start: i64,
    pub end: i64,
    /// When the new model appears (the model-pivot event).
    pub release: i64,
    pub old_models: [&'static str; 2],
    pub new_model: &'static str,
    /// Share of individual customers (developers, power users) whose calls leave through a
    /// mobile carrier's CGNAT or a VPN exit shared with strangers (`SimConfig::shared_egress`).
    pub shared_egress: f64,
    /// The hard world's look-alikes (`SimConfig::hard`): benign accounts that show the cues
    /// harvests show. No random draw is made for them when off, so earlier worlds stay as
    /// they were, draw for draw.
    pub hard: bool,
    /// Those carriers' address pools, made when first needed: (addresses, ASN).
    egress_pools: Vec<(Vec<String>, u64)>,
}

/// Carriers and VPN providers whose exits many strangers share: (first octets, ASN). Uncommon
/// ASNs among API customers, unlike the clouds.
const CARRIERS: &[([u8; 2], u64)] = &[([100, 64], 21928), ([172, 58], 22394), ([185, 220], 9009)];

/// How an identity picks its client address for each call.
#[derive(Debug, Clone)]
pub enum Addresses {
    /// A few fixed addresses (a server, an office NAT, a home).
    Fixed(Vec<String>),
    /// A fresh address from a wide pool for every call (a rotating proxy network).
    Rotating { nets: Vec<[u8; 2]> },
}

/// Who makes the calls: everything about an account that is not its traffic.
#[derive(Debug, Clone)]
pub struct Identity {
    pub account: String,
    pub keys: Vec<String>,
    pub addresses: Addresses,
    pub user_agents: Vec<String>,
    pub meta: Meta,
}

/// The generation parameters of one call.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub logprobs: bool,
    pub top_logprobs: Option<u32>,
    pub n: Option<u32>,
    pub logit_bias: Option<Vec<(String, f64)>>,
    pub tools: Option<Vec<serde_json::Value>>,
    pub reasoning_effort: Option<&'static str>,
    pub stream: bool,
    /// Use `/v1/completions` with a text prompt instead of chat.
    pub completions: bool,
}

/// One call to make: when, the conversation so far, the answer the model gives.
pub struct Call {
    pub ts: i64,
    pub model: String,
    pub messages: Vec<Message>,
    pub answer: String,
    pub reasoning: Option<String>,
    pub tool_call: Option<serde_json::Value>,
    pub params: Params,
}

impl Call {
    /// A call on `messages` answered with text (no reasoning returned, no tool called).
    pub fn text(
        ts: i64,
        model: impl Into<String>,
        messages: Vec<Message>,
        answer: impl Into<String>,
        params: Params,
    ) -> Self {
        Call {
            ts,
            model: model.into(),
            messages,
            answer: answer.into(),
            reasoning: None,
            tool_call: None,
            params,
        }
    }

    /// A fresh single-turn call: one user message, a text answer.
    pub fn user(
        ts: i64,
        model: impl Into<String>,
        prompt: &str,
        answer: impl Into<String>,
        params: Params,
    ) -> Self {
        Call::text(ts, model, vec![msg("user", prompt)], answer, params)
    }
}

/// A model's call of the tool named `name` (arguments elided).
pub fn tool_call(id: String, name: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "type": "function", "function": {"name": name, "arguments": "{\"arg\":\"...\"}"}})
}

/// The name of one of `tools`, drawn at random.
pub fn pick_tool(rng: &mut impl Rng, tools: &[serde_json::Value]) -> String {
    tools.choose(rng).expect("tools")["function"]["name"]
        .as_str()
        .unwrap_or("tool")
        .to_owned()
}

pub fn msg(role: &str, content: &str) -> Message {
    Message {
        role: role.to_owned(),
        content: Content::from(content),
        tool_calls: None,
    }
}

fn tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4).max(1)
}

impl<'c> World<'c> {
    pub fn new(seed: u64, corpora: &'c Corpora, start: i64, days: f64) -> Self {
        let end = start + (days * DAY as f64) as i64;
        World {
            rng: ChaCha8Rng::seed_from_u64(seed),
            corpora,
            start,
            end,
            release: start + (end - start) / 2,
            old_models: ["gpt-4o", "gpt-4o-mini"],
            new_model: "gpt-5",
            shared_egress: 0.0,
            hard: false,
            egress_pools: Vec::new(),
        }
    }

    /// An individual's addresses: usually its own home address; with `shared_egress`, a
    /// carrier's or VPN's pool of exits that strangers share (24 addresses over two /24s; each
    /// call leaves through any of them). No random draw is made when `shared_egress` is 0, so
    /// worlds without it are the worlds they were.
    pub fn individual_addresses(&mut self) -> (Addresses, u64) {
        if self.shared_egress > 0.0 && self.chance(self.shared_egress) {
            if self.egress_pools.is_empty() {
                for &(net, asn) in CARRIERS {
                    let third: [u8; 2] = [self.rng.gen(), self.rng.gen()];
                    let pool = (0..24)
                        .map(|i| {
                            format!(
                                "{}.{}.{}.{}",
                                net[0],
                                net[1],
                                third[i % 2],
                                self.rng.gen_range(1..=254)
                            )
                        })
                        .collect();
                    self.egress_pools.push((pool, asn));
                }
            }
            let i = self.rng.gen_range(0..self.egress_pools.len());
            let (pool, asn) = self.egress_pools[i].clone();
            return (Addresses::Fixed(pool), asn);
        }
        let (ip, asn) = self.home_ip();
        (Addresses::Fixed(vec![ip]), asn)
    }

    pub fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from_digit(self.rng.gen_range(0..16), 16).expect("digit"))
            .collect()
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.rng.gen_bool(p.clamp(0.0, 1.0))
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        items.choose(&mut self.rng).expect("non-empty")
    }

    pub fn ip_in(&mut self, net: [u8; 2]) -> String {
        format!(
            "{}.{}.{}.{}",
            net[0],
            net[1],
            self.rng.gen_range(0..=255),
            self.rng.gen_range(1..=254)
        )
    }

    pub fn cloud_ips(&mut self, count: usize) -> (Vec<String>, u64) {
        let (net, asn) = *self.pick(CLOUDS);
        ((0..count).map(|_| self.ip_in(net)).collect(), asn)
    }

    pub fn home_ip(&mut self) -> (String, u64) {
        let (net, asn) = *self.pick(ISPS);
        (self.ip_in(net), asn)
    }

    pub fn isp_nets(&mut self, count: usize) -> Vec<[u8; 2]> {
        (0..count).map(|_| self.pick(ISPS).0).collect()
    }

    /// A new identity. `age_days` is the account's age at the start of the simulation.
    pub fn identity(&mut self, addresses: Addresses, asn: Option<u64>, age_days: f64) -> Identity {
        // Several id schemes, so nothing can key on one.
        let account = match self.rng.gen_range(0..3) {
            0 => format!("acct_{}", self.hex(12)),
            1 => format!("org-{}", self.hex(20)),
            _ => format!("user_{}", self.rng.gen_range(10_000_000u64..99_999_999)),
        };
        let keys = (0..self.rng.gen_range(1..=3))
            .map(|_| format!("key_{}", self.hex(10)))
            .collect();
        let ua_count = if self.chance(0.8) { 1 } else { 2 };
        let user_agents = (0..ua_count)
            .map(|_| self.pick(USER_AGENTS).to_string())
            .collect();
        let signup = self.start - (age_days * DAY as f64) as i64;
        let meta = Meta {
            payment_fingerprint: Some(format!("pf_{}", self.hex(12))),
            org: None,
            signup_ts: Some(Timestamp::from_millis(signup).as_str().to_owned()),
            country: Some(self.pick(COUNTRIES).to_string()),
            asn,
            email_domain: Some(self.pick(EMAIL_DOMAINS).to_string()),
            // Mostly a common library's fingerprint; some customers run an unusual client.
            tls_fingerprint: Some(if self.chance(0.9) {
                self.pick(TLS_LIBRARIES).to_string()
            } else {
                format!("t13d{}", self.hex(12))
            }),
        };
        Identity {
            account,
            keys,
            addresses,
            user_agents,
            meta,
        }
    }

    /// An account age: most customers have been around for months, some signed up this week.
    pub fn customer_age(&mut self) -> f64 {
        if self.chance(0.15) {
            self.rng.gen_range(0.0..7.0)
        } else {
            self.rng.gen_range(7.0..900.0)
        }
    }

    // ---- time ----

    /// `count` arrival times between `from` and `to` following people's daily rhythm in a
    /// time zone `tz` hours from UTC.
    pub fn diurnal(&mut self, from: i64, to: i64, count: usize, tz: i64) -> Vec<i64> {
        let mut out = Vec::with_capacity(count);
        if to <= from {
            return out;
        }
        let mut guard = 0;
        while out.len() < count && guard < count * 200 {
            guard += 1;
            let t = self.rng.gen_range(from..to);
            let hour = ((t + tz * HOUR).rem_euclid(DAY) / HOUR) as usize;
            if self.rng.gen::<f64>() < HUMAN_DAY[hour] {
                out.push(t);
            }
        }
        out.sort_unstable();
        out
    }

    /// `count` arrivals spread evenly at random over `[from, to)`: a steady Poisson-like stream.
    pub fn steady(&mut self, from: i64, to: i64, count: usize) -> Vec<i64> {
        let mut out: Vec<i64> = (0..count)
            .map(|_| self.rng.gen_range(from..to.max(from + 1)))
            .collect();
        out.sort_unstable();
        out
    }

    /// A burst of `count` arrivals from `from`, with gaps drawn from a real trace and scaled.
    pub fn burst(&mut self, from: i64, count: usize, code: bool, scale: f64) -> Vec<i64> {
        let gaps = if code {
            &self.corpora.code_gaps
        } else {
            &self.corpora.chat_gaps
        };
        let mut t = from;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(t);
            let g = gaps.choose(&mut self.rng).copied().unwrap_or(1.0);
            t += ((g * scale * 1000.0) as i64).max(1);
        }
        out
    }

    /// A time zone offset for a customer (hours from UTC).
    pub fn tz(&mut self) -> i64 {
        *self.pick(&[-8, -7, -5, -5, -4, 0, 1, 1, 2, 3, 5, 8, 8, 9])
    }

    /// The model an account uses at `ts`: old models before it adopts the new one.
    pub fn model_at(&mut self, ts: i64, adopts_at: Option<i64>, old: usize) -> String {
        match adopts_at {
            Some(a) if ts >= a.max(self.release) => self.new_model.to_owned(),
            _ => self.old_models[old % 2].to_owned(),
        }
    }

    // ---- content ----

    /// A conversation opening with its first answer, from real chats.
    pub fn chat_opening(&mut self) -> Pair {
        let c = self.corpora.chats.choose(&mut self.rng).expect("chats");
        let user = c
            .turns
            .iter()
            .find(|t| t.role == "user")
            .map_or("", |t| t.content.as_str());
        let answer = c
            .turns
            .iter()
            .find(|t| t.role == "assistant")
            .map_or("", |t| t.content.as_str());
        Pair {
            prompt: user.to_owned(),
            answer: answer.to_owned(),
        }
    }

    /// A long real text (an assistant's answer of at least `min_chars` from real chats, the
    /// longest of a few draws otherwise): the documents a translation or editing job works on.
    pub fn long_text(&mut self, min_chars: usize) -> String {
        let mut best = String::new();
        for _ in 0..8 {
            let c = self.corpora.chats.choose(&mut self.rng).expect("chats");
            if let Some(t) = c
                .turns
                .iter()
                .filter(|t| t.role == "assistant")
                .max_by_key(|t| t.content.len())
            {
                if t.content.len() > best.len() {
                    best = t.content.clone();
                }
            }
            if best.len() >= min_chars {
                break;
            }
        }
        best
    }

    /// Any assistant answer from real chats (for calls whose own answer the corpora lack).
    pub fn some_answer(&mut self) -> String {
        self.chat_opening().answer
    }

    /// Appends a tool call and its result (real text, `result_chars` long at most) to an
    /// agent's history, as the client sends them back on its next call.
    pub fn push_tool_turn(
        &mut self,
        history: &mut Vec<Message>,
        call: serde_json::Value,
        result_chars: usize,
    ) {
        let mut m = msg("assistant", "");
        m.tool_calls = Some(vec![call]);
        history.push(m);
        let result: String = self.some_answer().chars().take(result_chars).collect();
        history.push(msg("tool", &result));
    }

    /// A prompt from the broad mix a harvester sweeps: chats, instructions, math, NLP sets, dialogues.
    pub fn broad_prompt(&mut self) -> Pair {
        let c = self.corpora;
        let dist = WeightedIndex::new([45, 8, 17, 15, 15]).expect("weights");
        match dist.sample(&mut self.rng) {
            0 => self.chat_opening(),
            1 => c.seeds.choose(&mut self.rng).expect("seeds").clone(),
            2 => c.math.choose(&mut self.rng).expect("math").clone(),
            3 => {
                let group = c.templated.choose(&mut self.rng).expect("templated");
                group.choose(&mut self.rng).expect("group").clone()
            }
            _ => {
                let d = c.dialogues.choose(&mut self.rng).expect("dialogues");
                Pair {
                    prompt: d.turns[0].content.clone(),
                    answer: d
                        .turns
                        .get(1)
                        .map_or_else(String::new, |t| t.content.clone()),
                }
            }
        }
    }

    // ---- the log line ----

    fn address(&mut self, who: &Identity) -> String {
        match &who.addresses {
            Addresses::Fixed(list) => list.choose(&mut self.rng).expect("addresses").clone(),
            Addresses::Rotating { nets } => {
                let net = *nets.choose(&mut self.rng).expect("nets");
                self.ip_in(net)
            }
        }
    }

    /// Makes the call and returns the logged exchange, with a response shaped by the
    /// parameters (cut at `max_tokens`, `n` choices, logprobs when asked).
    pub fn exchange(&mut self, who: &Identity, call: Call) -> Exchange {
        let p = &call.params;
        let completions = p.completions && call.tool_call.is_none();
        let failed = self.chance(0.01);
        let status = if failed {
            *self.pick(&[429u16, 500, 502, 400])
        } else {
            200
        };
        let mut answer = call.answer;
        let mut finish = "stop";
        if let Some(max) = p.max_tokens {
            if tokens(&answer) > max {
                let mut cut = (max * 4) as usize;
                while cut > 0 && !answer.is_char_boundary(cut) {
                    cut -= 1;
                }
                answer.truncate(cut);
                finish = "length";
            }
        }
        if call.tool_call.is_some() {
            finish = "tool_calls";
        }
        let prompt_text: String = if completions {
            call.messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n\n")
        } else {
            String::new()
        };
        let prompt_tokens = if completions {
            tokens(&prompt_text)
        } else {
            call.messages
                .iter()
                .map(|m| tokens(m.content.as_str()) + 4)
                .sum()
        };
        let n = p.n.unwrap_or(1).max(1);
        let response = (!failed).then(|| Response {
            choices: (0..n)
                .map(|i| Choice {
                    index: i,
                    message: (!completions).then(|| ResponseMessage {
                        role: "assistant".into(),
                        content: Content::from(if call.tool_call.is_some() {
                            ""
                        } else {
                            answer.as_str()
                        }),
                        reasoning_content: call.reasoning.clone(),
                        tool_calls: call.tool_call.clone().map(|t| vec![t]),
                    }),
                    text: completions.then(|| answer.clone()),
                    finish_reason: Some(finish.into()),
                    logprobs: p.logprobs.then_some(true),
                })
                .collect(),
            usage: Some(Usage {
                prompt_tokens,
                completion_tokens: (tokens(&answer) + call.reasoning.as_deref().map_or(0, tokens))
                    * u64::from(n),
            }),
            ..Response::default()
        });
        let request = Request {
            model: Some(call.model),
            messages: (!completions).then_some(call.messages),
            prompt: completions.then(|| Prompt::text(prompt_text)),
            max_tokens: p.max_tokens,
            temperature: p.temperature,
            n: p.n,
            logprobs: p.logprobs.then_some(serde_json::Value::Bool(true)),
            top_logprobs: p.top_logprobs,
            logit_bias: p.logit_bias.clone().map(LogitBias),
            stream: p.stream.then_some(true),
            tools: p.tools.clone(),
            reasoning_effort: p.reasoning_effort.map(str::to_owned),
            ..Request::default()
        };
        let out_tokens = response
            .as_ref()
            .and_then(|r| r.usage)
            .map_or(0, |u| u.completion_tokens);
        Exchange {
            id: format!("req_{}", self.hex(20)),
            ts: Timestamp::from_millis(call.ts),
            account: who.account.clone(),
            key: Some(self.pick(&who.keys).clone()),
            ip: Some(self.address(who)),
            user_agent: Some(self.pick(&who.user_agents).clone()),
            meta: Some(who.meta.clone()),
            endpoint: if completions {
                "/v1/completions"
            } else {
                "/v1/chat/completions"
            }
            .into(),
            status,
            latency_ms: Some((150.0 + out_tokens as f64 * self.rng.gen_range(8.0..20.0)).round()),
            request,
            response,
            detector_facts: None,
        }
    }
}
