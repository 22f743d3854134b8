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
            eprintln!("created key {} for account {} (limits: rpm {:?}, tpm {:?}, concurrency {:?}); it is shown once:", key.id, a.name, a.limits.rpm, a.limits.tpm, a.limits.concurrency);
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
            for k in open(&store)?.keys()? {
                println!(
                    "{}\t{}\t{}",
                    k.id,
                    k.account,
                    if k.revoked { "revoked" } else { "active" }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
