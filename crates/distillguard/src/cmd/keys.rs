use std::process::ExitCode;

use store::Limits;

use super::StoreArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand)]
pub enum What {
    /// Create an API key (and the account if needed); the key is printed once, alone on the last line.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        account: String,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u32>,
        /// Tokens (input + output) per minute.
        #[arg(long)]
        tpm: Option<u32>,
        /// Calls in flight at once.
        #[arg(long)]
        concurrency: Option<u32>,
        /// What you know of the customer, as EXCHANGE_FORMAT.md `meta` (JSON object:
        /// payment_fingerprint, org, signup_ts, country, asn, email_domain, tls_fingerprint).
        /// The gateway logs it with every exchange, so accounts can be linked by it.
        #[arg(long)]
        meta: Option<String>,
        /// What the log keeps of this account's exchanges: `full`, `hashes` or `metadata`
        /// (default: the gateway's `content` setting).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(store::CONTENT_POLICIES))]
        content: Option<String>,
        /// Days this account's exchanges are kept in the log (default: the gateway's
        /// `retention_days`).
        #[arg(long)]
        retention_days: Option<f64>,
    },
    /// Revoke a key by its id.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        id: String,
    },
    /// List keys (ids, accounts, revoked); never the secrets, which are not stored.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn open(s: &StoreArgs) -> anyhow::Result<std::sync::Arc<dyn store::Store>> {
    s.open()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.what {
        What::Create {
            store,
            account,
            rpm,
            tpm,
            concurrency,
            meta,
            content,
            retention_days,
        } => {
            let meta: Option<serde_json::Value> = meta
                .map(|m| serde_json::from_str(&m))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--meta is not JSON: {e}"))?;
            if let Some(m) = &meta {
                store::check_meta(m)?;
            }
            let s = open(&store)?;
            let limits =
                (rpm.is_some() || tpm.is_some() || concurrency.is_some()).then_some(Limits {
                    rpm,
                    tpm,
                    concurrency,
                });
            let a = s.upsert_account(&account, limits, now_ms())?;
            if meta.is_some() {
                s.set_account_meta(&account, meta.as_ref())?;
            }
            if content.is_some() {
                s.set_account_content(&account, content.as_deref())?;
            }
            if retention_days.is_some() {
                s.set_account_retention(&account, retention_days)?;
            }
            let key = s.create_key(&account, now_ms())?;
            eprintln!(
                "created key {} for account {} ({}); it is shown once:",
                key.id,
                a.name,
                limits_text(&a.limits)
            );
            println!("{}", key.secret);
        }
        What::Revoke { store, id } => {
            let s = open(&store)?;
            if !s.revoke_key(&id, now_ms())? {
                anyhow::bail!("no active key with id {id}");
            }
            println!("revoked {id}");
        }
        What::List { store } => {
            let s = open(&store)?;
            let keys = s.keys()?;
            let mut limits = std::collections::HashMap::new();
            for k in &keys {
                if !limits.contains_key(&k.account) {
                    let text = s
                        .account(&k.account)?
                        .map_or_else(|| "-".to_owned(), |a| limits_text(&a.limits));
                    limits.insert(k.account.clone(), text);
                }
            }
            let rows: Vec<[String; 5]> = keys
                .iter()
                .map(|k| {
                    [
                        k.id.clone(),
                        k.account.clone(),
                        if k.revoked { "revoked" } else { "active" }.to_owned(),
                        exchange::Timestamp::from_millis(k.created_ms)
                            .as_str()
                            .to_owned(),
                        limits[&k.account].clone(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(["KEY", "ACCOUNT", "STATE", "CREATED", "LIMITS"], &rows)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An account's limits in words: "600 requests/min, no token limit, 4 at once".
fn limits_text(l: &Limits) -> String {
    let part = |v: Option<u32>, what: &str, none: &str| match v {
        Some(n) => format!("{n} {what}"),
        None => none.to_owned(),
    };
    [
        part(l.rpm, "requests/min", "no request limit"),
        part(l.tpm, "tokens/min", "no token limit"),
        part(l.concurrency, "at once", "no concurrency limit"),
    ]
    .join(", ")
}

/// Rows under a header, each column as wide as its widest cell, the last left ragged.
fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_read_as_words_and_keys_as_a_table() {
        let l = Limits {
            rpm: Some(600),
            tpm: None,
            concurrency: Some(4),
        };
        assert_eq!(
            limits_text(&l),
            "600 requests/min, no token limit, 4 at once"
        );
        let t = table(
            ["KEY", "ACCOUNT"],
            &[
                ["k1".to_owned(), "alice".to_owned()],
                ["key-22".to_owned(), "b".to_owned()],
            ],
        );
        assert_eq!(t, "KEY     ACCOUNT\nk1      alice\nkey-22  b\n");
    }
}
