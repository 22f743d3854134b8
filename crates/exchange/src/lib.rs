//! The exchange record (`EXCHANGE_FORMAT.md`, version 1) and the reader of exchange logs.
//!
//! An [`Exchange`] is one call to an OpenAI-compatible API: who made it, when, from where,
//! what was asked and what was answered. The gateway writes them and `scan` reads them; the
//! detector sees nothing else.
//!
//! The types here are a typed *view* of the fields distillguard reasons about. Unknown fields
//! are accepted and ignored, so logs from newer writers still read.
//!
//! [`LineSource`] turns a file, a gzip file or stdin into a stream of lines and [`parse_line`]
//! parses each one, counting every bad line with its number instead of stopping.
//!
//! Everything is reached from this root, except the two foreign formats, which keep a
//! namespace each because their items would collide: [`litellm`] (LiteLLM's spend logs) and
//! [`otel`] (OpenTelemetry GenAI spans and their log events).

pub mod litellm;
pub mod otel;
mod peek;
mod reader;
mod record;
mod redact;
mod text;
mod timestamp;
mod write;

pub use peek::Peek;
pub use reader::{
    BadLine, BadLineKind, BadLineReport, BatchLine, LineBatch, LineSource, RawLine, ReaderOptions,
};
pub use record::{
    Choice, Exchange, Message, Meta, ReasoningParams, Request, Response, ResponseMessage, Usage,
    OUTPUT_CAPS,
};
pub use redact::{redact, ContentPolicy};
pub use text::{Content, Item, LogitBias, Prompt};
pub use timestamp::Timestamp;
pub use write::Written;

/// The formats a log can be read in. `Auto` decides line by line: a LiteLLM record names its
/// `call_type` ([`litellm::looks_like`]) and an OTLP/JSON line its `resourceSpans`
/// ([`otel::looks_like`]), which an exchange line never does. The imported formats carry the
/// fields that name the account, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    Auto {
        litellm: litellm::AccountFields,
        otel: otel::Options,
    },
    Exchange,
    /// LiteLLM's `StandardLoggingPayload` or spend-log rows.
    LiteLlm(litellm::AccountFields),
    /// OpenTelemetry GenAI spans as OTLP/JSON, one export request per line.
    Otel(otel::Options),
}

impl Default for Format {
    fn default() -> Self {
        Format::Auto {
            litellm: litellm::AccountFields::default(),
            otel: otel::Options::default(),
        }
    }
}

impl Format {
    /// Parses one line in this format and hands each exchange it holds to `out`, or the
    /// reason one of them could not be read. A line of the exchange format or of LiteLLM's
    /// holds one exchange; an OTLP/JSON line holds as many as its model-call spans, none
    /// when it traced other work only. An error returned is one for the whole line.
    pub fn parse_each(
        &self,
        line: &[u8],
        mut out: impl FnMut(Result<Exchange, (BadLineKind, String)>),
    ) {
        let one = match self {
            Format::Otel(attrs) => otel::parse_line(line, attrs, &mut out).err(),
            // A logs export in a traces file is read as OTLP too, to be told where it belongs.
            Format::Auto { otel: attrs, .. }
                if otel::looks_like(line) || otel::looks_like_logs(line) =>
            {
                otel::parse_line(line, attrs, &mut out).err()
            }
            Format::LiteLlm(fields) => {
                out(litellm::parse_line(line, fields));
                None
            }
            Format::Auto {
                litellm: fields, ..
            } if litellm::looks_like(line) => {
                out(litellm::parse_line(line, fields));
                None
            }
            Format::Auto { .. } | Format::Exchange => {
                out(parse_line(line));
                None
            }
        };
        if let Some(e) = one {
            out(Err(e));
        }
    }
}

/// Parses one log line into an exchange, classifying the failure when it is not one. A
/// Responses API exchange comes back in the chat form ([`Exchange::as_chat`]), so every
/// reader judges it as it judges chat.
pub fn parse_line(line: &[u8]) -> Result<Exchange, (BadLineKind, String)> {
    let text = std::str::from_utf8(line).map_err(|e| (BadLineKind::InvalidUtf8, e.to_string()))?;
    serde_json::from_str::<Exchange>(text)
        .map(Exchange::as_chat)
        .map_err(|e| (BadLineKind::classify(&e), e.to_string()))
}
