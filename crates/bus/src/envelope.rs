//! The envelope an exchange travels in from a replica to the workers, and its two stored
//! forms: JetStream message headers, and a spool line while NATS is away. Both the publisher
//! and the spool use it; it depends on neither.

use bytes::Bytes;

use crate::{HEADER_ACCOUNT, HEADER_CONTENT, HEADER_TS_MS};

/// One exchange on its way to the workers: the full line (the worker redacts it per `content`
/// before storing, after the detector has read it).
#[derive(Debug, Clone)]
pub struct Envelope {
    pub id: String,
    pub account: String,
    /// The content policy to store it under: `full`, `hashes` or `metadata`.
    pub content: String,
    /// The exchange's `ts` in milliseconds, as the replica read it (`None` when the message
    /// did not say), so the worker need not parse the line to file it.
    pub ts_ms: Option<i64>,
    /// The account's payment instrument, when it has one: it chooses the partition
    /// ([`crate::partition_of`]).
    pub payer: Option<String>,
    pub line: Bytes,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Spooled {
    id: String,
    account: String,
    content: String,
    #[serde(default)]
    ts_ms: Option<i64>,
    #[serde(default)]
    payer: Option<String>,
    line: String,
}

impl Envelope {
    pub(crate) fn to_spooled(&self) -> Spooled {
        Spooled {
            id: self.id.clone(),
            account: self.account.clone(),
            content: self.content.clone(),
            ts_ms: self.ts_ms,
            payer: self.payer.clone(),
            line: String::from_utf8_lossy(&self.line).into_owned(),
        }
    }

    pub(crate) fn from_spooled(s: Spooled) -> Self {
        Self {
            id: s.id,
            account: s.account,
            content: s.content,
            ts_ms: s.ts_ms,
            payer: s.payer,
            line: Bytes::from(s.line),
        }
    }

    /// Reads an envelope back from a JetStream message.
    pub fn from_message(m: &async_nats::Message) -> Option<Self> {
        let h = m.headers.as_ref()?;
        Some(Self {
            id: h
                .get(async_nats::header::NATS_MESSAGE_ID)?
                .as_str()
                .to_owned(),
            account: h.get(HEADER_ACCOUNT)?.as_str().to_owned(),
            content: h
                .get(HEADER_CONTENT)
                .map_or("full", |v| v.as_str())
                .to_owned(),
            ts_ms: h.get(HEADER_TS_MS).and_then(|v| v.as_str().parse().ok()),
            // The subject already says the partition; the worker reads the payer from the line.
            payer: None,
            line: m.payload.clone(),
        })
    }
}
