//! The standing every replica acts on, pushed through a JetStream KV bucket: the detector's
//! verdict per account (written by workers), human overrides and the allowlist (written by
//! whichever replica's admin API took the decision). Each replica watches the bucket, getting
//! the latest value of every key first and then each change as it is written.
//!
//! Keys are `v.<account hex>`, `o.<account hex>`, `a.<account hex>`: hex keeps any account name
//! inside the characters KV keys allow.

use async_nats::jetstream::kv;
use futures_util::{Stream, StreamExt};

use crate::{nats_err, Error, STANDING_BUCKET};

#[derive(Debug, Clone, PartialEq)]
pub enum StandingUpdate {
    Verdict {
        account: String,
        verdict: String,
    },
    /// `None` clears the override.
    Override {
        account: String,
        action: Option<(String, String)>,
    },
    Allowlist {
        account: String,
        allowlisted: bool,
    },
    /// A group of linked accounts as a worker last judged it (its JSON report), so that every
    /// replica's admin API can show groups and act on them.
    Group {
        cluster: String,
        report: serde_json::Value,
    },
}

#[derive(Clone)]
pub struct Standing {
    kv: kv::Store,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct OverrideValue {
    action: String,
    by: String,
}

fn hex(account: &str) -> String {
    account.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

impl Standing {
    /// Opens the bucket, creating it if needed.
    pub async fn open(js: &async_nats::jetstream::Context) -> Result<Self, Error> {
        if let Ok(kv) = js.get_key_value(STANDING_BUCKET).await {
            return Ok(Self { kv });
        }
        // The bucket's stream, laid out as the KV design (ADR-8) says, created directly: the
        // client's own `create_key_value` first reads account limits in a shape that servers
        // before 2.10 do not send (Debian 12 ships 2.9).
        use async_nats::jetstream::stream;
        js.get_or_create_stream(stream::Config {
            name: format!("KV_{STANDING_BUCKET}"),
            subjects: vec![format!("$KV.{STANDING_BUCKET}.>")],
            max_messages_per_subject: 1,
            discard: stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            storage: stream::StorageType::File,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(nats_err)?;
        let kv = js.get_key_value(STANDING_BUCKET).await.map_err(nats_err)?;
        Ok(Self { kv })
    }

    pub async fn put(&self, u: &StandingUpdate) -> Result<(), Error> {
        let r = match u {
            StandingUpdate::Verdict { account, verdict } => {
                self.kv
                    .put(format!("v.{}", hex(account)), verdict.clone().into())
                    .await
            }
            StandingUpdate::Override {
                account,
                action: Some((action, by)),
            } => {
                let v = serde_json::to_vec(&OverrideValue {
                    action: action.clone(),
                    by: by.clone(),
                })
                .expect("serialisable");
                self.kv.put(format!("o.{}", hex(account)), v.into()).await
            }
            StandingUpdate::Override {
                account,
                action: None,
            } => {
                return self
                    .kv
                    .delete(format!("o.{}", hex(account)))
                    .await
                    .map_err(nats_err)
            }
            StandingUpdate::Allowlist {
                account,
                allowlisted,
            } => {
                self.kv
                    .put(
                        format!("a.{}", hex(account)),
                        if *allowlisted { "1" } else { "0" }.into(),
                    )
                    .await
            }
            StandingUpdate::Group { cluster, report } => {
                let v = serde_json::to_vec(report).expect("serialisable");
                self.kv.put(format!("g.{}", hex(cluster)), v.into()).await
            }
        };
        r.map(|_| ()).map_err(nats_err)
    }

    /// Every current value, then every change, as they happen.
    pub async fn watch(&self) -> Result<impl Stream<Item = StandingUpdate> + Send, Error> {
        let w = self.kv.watch_with_history(">").await.map_err(nats_err)?;
        Ok(w.filter_map(|entry| async move {
            let entry = entry.ok()?;
            decode(&entry.key, &entry.value, entry.operation)
        }))
    }
}

fn decode(key: &str, value: &[u8], op: kv::Operation) -> Option<StandingUpdate> {
    let (kind, h) = key.split_once('.')?;
    let account = unhex(h)?;
    let deleted = op != kv::Operation::Put;
    Some(match kind {
        "v" if !deleted => StandingUpdate::Verdict {
            account,
            verdict: String::from_utf8(value.to_vec()).ok()?,
        },
        "o" if deleted => StandingUpdate::Override {
            account,
            action: None,
        },
        "o" => {
            let v: OverrideValue = serde_json::from_slice(value).ok()?;
            StandingUpdate::Override {
                account,
                action: Some((v.action, v.by)),
            }
        }
        "a" => StandingUpdate::Allowlist {
            account,
            allowlisted: !deleted && value == b"1",
        },
        "g" if !deleted => StandingUpdate::Group {
            cluster: account,
            report: serde_json::from_slice(value).ok()?,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_account_name_survives_the_key_encoding() {
        for name in ["acme", "ünïcode/with spaces.and>wildcards*", ""] {
            assert_eq!(unhex(&hex(name)).as_deref(), Some(name));
        }
        assert_eq!(
            decode(&format!("o.{}", hex("a b")), b"", kv::Operation::Delete),
            Some(StandingUpdate::Override {
                account: "a b".into(),
                action: None
            })
        );
    }
}
