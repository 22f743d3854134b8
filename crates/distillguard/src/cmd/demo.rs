//! `distillguard demo`: the main job end to end on a fresh machine, with nothing installed.
//!
//! 1. starts the demo upstream (a stand-in that speaks the OpenAI API, not a model);
//! 2. starts the gateway in front of it on a fresh embedded store;
//! 3. simulates customers from the real corpora (benign look-alikes and distillation
//!    campaigns) and gives each an account and a key;
//! 4. drives their requests through the gateway over real HTTP;
//! 5. shows what the gateway concluded and did (verdicts, actions, the audit trail);
//! 6. exports the log and scans it offline: the same verdicts.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use gateway::{Gateway, GatewayConfig, Upstream};
use serde_json::Value;
use simulate::{simulate, Corpora, SimConfig};
use store::{SqliteStore, Store};

#[derive(clap::Args)]
pub struct Args {
    /// The shared data folder with corpora/ and traces/ (default: ../shared/data when it is
    /// there, else the sample built into the binary).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where the demo's store and exported log go (replaced on each run).
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// Benign accounts to simulate (campaigns come with them).
    #[arg(long, default_value_t = 40)]
    pub accounts: usize,
    /// Requests sent per account at most, to keep the demo short.
    #[arg(long, default_value_t = 150)]
    pub per_account: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// After the traffic, leave the gateway and its analyst console up (printing the URL and
    /// a sign-in token) until Ctrl-C, then finish with the offline scan.
    #[arg(long)]
    pub keep_serving: bool,
    #[command(flatten)]
    pub model: crate::cmd::engine::ModelArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    super::serve::init_tracing_quiet();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(demo(args))
}

async fn demo(args: Args) -> anyhow::Result<ExitCode> {
    let data = args.out.join("data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;

    println!("== 1. demo upstream (a stand-in speaking the OpenAI API; not a model)");
    let upstream = standin::spawn("127.0.0.1:0".parse()?).await?;
    println!("   listening on http://{upstream}/v1");

    println!("== 2. gateway on the embedded store in {}", data.display());
    let store = Arc::new(SqliteStore::open_dir(&data)?);
    let mut config = GatewayConfig {
        listen: "127.0.0.1:0".parse()?,
        data: data.clone(),
        ..GatewayConfig::default()
    };
    // The demo sends days of simulated traffic in seconds, with the gateway's clock: no
    // behaviour here can last the three clock hours the detector wants before it acts on an
    // account (`[detector.thresholds] min_active_hours`), so the demo waives that one rule,
    // and says so. A deployment keeps it.
    config.detector.thresholds.min_active_hours = 0.0;
    // Every request comes from this process over loopback; each simulated customer's own
    // address travels in `X-Forwarded-For`, read from loopback as from a load balancer in
    // front of a deployment (`trusted_proxies`). Without it every account of the log shares
    // 127.0.0.1, and the links read one office where there are dozens of customers.
    config.trusted_proxies = vec!["127.0.0.1/32".parse()?];
    let detector_config = config.detector.clone();
    config.upstreams.push(Upstream {
        base_url: format!("http://{upstream}/v1"),
        api_key: None,
        models: vec![],
        timeout_secs: 60,
        watermarks: false,
    });
    // The built-in engine, when this binary has it and the model file is here: answers to
    // model `smollm2` come from it, marked per account (act 7).
    let evidence = evidence::start(&args.model.path).await;
    if let Some(e) = &evidence {
        config.upstreams.insert(0, e.upstream());
    }
    // A fresh token each run: the console signs in with it (`--keep-serving` prints it).
    let admin_token: String = rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let gw = Gateway::start(config, store.clone(), Some(admin_token.clone()))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let base = format!("http://{}", gw.addr);
    println!("   listening on {base}  (policy: suspicious -> watch, distilling -> degrade)");
    println!("   (days of traffic arrive here in seconds, so the rule that behaviour must last 3 clock hours before it is acted on is off: min_active_hours = 0)");

    let (corpora, source) =
        Corpora::find(args.data_dir.as_deref()).context("the demo needs corpora (see README)")?;
    println!("== 3. simulated customers from {source}");
    let sim = simulate(
        &SimConfig {
            seed: args.seed,
            benign_accounts: args.accounts,
            days: 2.0,
            ..SimConfig::default()
        },
        &corpora,
    );
    let labels: HashMap<String, (bool, String)> = sim
        .labels
        .iter()
        .map(|l| (l.account.clone(), (l.is_attack(), l.archetype.clone())))
        .collect();
    // What a provider knows of each customer from sign-up and billing (payment instrument,
    // sign-up time, client fingerprint, network): the gateway logs it with every exchange.
    let mut meta: HashMap<&str, serde_json::Value> = HashMap::new();
    for ex in &sim.exchanges {
        if let Some(m) = &ex.meta {
            meta.entry(ex.account.as_str())
                .or_insert_with(|| serde_json::to_value(m).unwrap_or_default());
        }
    }
    let mut keys = HashMap::new();
    for l in &sim.labels {
        store.upsert_account(&l.account, None, 0)?;
        store.set_account_meta(&l.account, meta.get(l.account.as_str()))?;
        keys.insert(l.account.clone(), store.create_key(&l.account, 0)?.secret);
    }
    let attackers = sim.labels.iter().filter(|l| l.is_attack()).count();
    println!(
        "   {} accounts ({} benign, {} in distillation campaigns), each with an API key",
        sim.labels.len(),
        sim.labels.len() - attackers,
        attackers
    );

    // Each account's first requests, in the simulated order.
    let mut sent: HashMap<String, usize> = HashMap::new();
    let mut plan = Vec::new();
    for ex in &sim.exchanges {
        let n = sent.entry(ex.account.clone()).or_default();
        if *n < args.per_account {
            *n += 1;
            plan.push((
                ex.account.clone(),
                ex.endpoint.clone(),
                serde_json::to_vec(&ex.request)?,
                ex.user_agent.clone(),
                ex.ip.clone(),
            ));
        }
    }
    println!(
        "== 4. driving {} requests through the gateway over HTTP ({} in flight)",
        plan.len(),
        args.concurrency
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let started = Instant::now();
    let statuses = Arc::new(std::sync::Mutex::new(BTreeMap::<u16, usize>::new()));
    let sem = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let mut tasks = Vec::with_capacity(plan.len());
    for (account, endpoint, body, ua, ip) in plan.iter().cloned() {
        let permit = sem.clone().acquire_owned().await?;
        let client = client.clone();
        let url = format!("{base}{endpoint}");
        let key = keys[&account].clone();
        let statuses = statuses.clone();
        tasks.push(tokio::spawn(async move {
            let mut req = client
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(body);
            if let Some(ua) = ua {
                req = req.header("user-agent", ua);
            }
            if let Some(ip) = ip {
                req = req.header("x-forwarded-for", ip);
            }
            let status = match req.send().await {
                Ok(r) => {
                    let s = r.status().as_u16();
                    let _ = r.bytes().await;
                    s
                }
                Err(_) => 0,
            };
            *statuses.lock().expect("lock").entry(status).or_default() += 1;
            drop(permit);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let statuses: Vec<String> = statuses
        .lock()
        .expect("lock")
        .iter()
        .map(|(status, n)| match status {
            0 => format!("{n} failed to connect"),
            s => format!("{n} x {s}"),
        })
        .collect();
    println!(
        "   done in {secs:.1} s ({:.0} requests/s); statuses: {}",
        plan.len() as f64 / secs,
        statuses.join(", ")
    );

    // The detector runs off the request path; wait until it has seen everything logged.
    let total = plan.len() as u64;
    for _ in 0..600 {
        if store.exchange_count()? >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    println!("== 5. what the gateway concluded and did (GET /admin/accounts)");
    let body: Value = client
        .get(format!("{base}/admin/accounts"))
        .bearer_auth(&admin_token)
        .send()
        .await?
        .json()
        .await?;
    let accounts = body["accounts"].as_array().cloned().unwrap_or_default();
    println!(
        "   {:<28} {:<20} {:<11} {:>6} {:<9} top reasons",
        "account", "truth (simulation)", "verdict", "score", "action"
    );
    let mut confusion = BTreeMap::<(&str, &str), usize>::new();
    for a in &accounts {
        let name = a["account"].as_str().unwrap_or("");
        let (attack, kind) = labels.get(name).cloned().unwrap_or((false, "?".into()));
        let verdict = a["verdict"].as_str().unwrap_or("");
        *confusion
            .entry((
                if attack { "attack" } else { "benign" },
                match verdict {
                    "distilling" => "distilling",
                    "suspicious" => "suspicious (watched)",
                    _ => "benign",
                },
            ))
            .or_default() += 1;
        if verdict != "benign" || attack {
            let reasons: Vec<String> = a["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["value"].as_f64().unwrap_or(0.0) > 0.0)
                .take(2)
                .map(|r| r["signal"].as_str().unwrap_or("").to_owned())
                .collect();
            println!(
                "   {:<28} {:<20} {:<11} {:>6.3} {:<9} {}",
                name,
                kind,
                verdict,
                a["score"].as_f64().unwrap_or(0.0),
                a["action"].as_str().unwrap_or(""),
                reasons.join(", ")
            );
        }
    }
    println!("   (benign accounts with a benign verdict are not listed)");
    let counts: Vec<String> = confusion
        .iter()
        .map(|((truth, verdict), n)| format!("{n} {truth} judged {verdict}"))
        .collect();
    println!("   truth vs verdict: {}", counts.join("; "));
    let audit: Value = client
        .get(format!("{base}/admin/audit?limit=5"))
        .bearer_auth(&admin_token)
        .send()
        .await?
        .json()
        .await?;
    println!("   audit trail, newest first:");
    for e in audit["audit"].as_array().into_iter().flatten() {
        let reason: String = e["reason"]
            .as_str()
            .unwrap_or("")
            .chars()
            .take(150)
            .collect();
        println!(
            "     {} {} by {}: {}",
            e["account"].as_str().unwrap_or(""),
            e["action"].as_str().unwrap_or(""),
            e["actor"].as_str().unwrap_or(""),
            reason
        );
    }

    let groups: Value = client
        .get(format!("{base}/admin/groups"))
        .bearer_auth(&admin_token)
        .send()
        .await?
        .json()
        .await?;
    println!("   groups of linked accounts (GET /admin/groups), largest first:");
    let mut groups: Vec<&Value> = groups["groups"].as_array().into_iter().flatten().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g["members"].as_array().map_or(0, Vec::len)));
    for g in groups.iter().take(3) {
        let members: Vec<&str> = g["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let truth: BTreeMap<&str, usize> = members.iter().fold(BTreeMap::new(), |mut m, a| {
            *m.entry(labels.get(*a).map_or("?", |l| l.1.as_str()))
                .or_default() += 1;
            m
        });
        println!(
            "     {} {} members (truth: {truth:?}), verdict {} score {:.3}, joined by {}",
            g["cluster"].as_str().unwrap_or(""),
            members.len(),
            g["verdict"].as_str().unwrap_or(""),
            g["score"].as_f64().unwrap_or(0.0),
            g["links"]
        );
    }

    if args.keep_serving {
        println!("== the analyst console: {base}/admin/ui");
        println!("   sign in with the token {admin_token}");
        println!("   (the admin API takes it too: Authorization: Bearer {admin_token})");
        println!("   Ctrl-C to stop serving and finish with the offline scan");
        super::serve::shutdown_signal().await;
    }
    println!("== 6. evidence: marked answers, found with their account's key");
    match &evidence {
        Some(e) => e.act(&store, &base).await?,
        None => println!("   {}", evidence::absent(&args.model.path)),
    }
    println!("== 7. export the log and scan it offline");
    gw.shutdown().await;
    let log = args.out.join("exchanges.jsonl");
    super::export::run(super::export::Args {
        store: super::StoreArgs {
            data: data.clone(),
            store: None,
        },
        account: None,
        out: Some(log.clone()),
    })?;
    let mut detector = detect::Detector::new(detector_config);
    let mut source = exchange::LineSource::open(&log, exchange::ReaderOptions::default())?;
    while let Some(line) = source.next_line() {
        if let exchange::RawLine::Line { bytes, .. } = line? {
            if let Ok(ex) = exchange::parse_line(&bytes) {
                detector.observe(&ex);
            }
        }
    }
    let offline: HashMap<String, String> = detector
        .reports()
        .into_iter()
        .map(|r| (r.account, r.verdict.as_str().to_owned()))
        .collect();
    let agree = accounts
        .iter()
        .filter(|a| {
            offline
                .get(a["account"].as_str().unwrap_or(""))
                .map(String::as_str)
                == a["verdict"].as_str()
        })
        .count();
    println!(
        "   `distillguard scan {}` agrees with the gateway on {agree} of {} accounts",
        log.display(),
        accounts.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `distillguard demo-upstream`: the stand-in model server on its own.
pub fn upstream(listen: std::net::SocketAddr) -> anyhow::Result<ExitCode> {
    super::serve::init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let addr = standin::spawn(listen).await?;
        eprintln!(
            "demo upstream (a stand-in speaking the OpenAI API, not a model) on http://{addr}/v1"
        );
        tokio::signal::ctrl_c().await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The demo's evidence act: a few answers from the built-in engine, served through the
/// gateway to one account and marked with its key, then tested against that key and another's.
mod evidence {
    use std::path::Path;

    use gateway::Upstream;

    #[cfg(feature = "engine")]
    pub struct Evidence {
        addr: std::net::SocketAddr,
        master: watermark::Master,
        scheme: watermark::Scheme,
        tokenizer: std::sync::Arc<engine::Tokenizer>,
    }

    /// Why there is no evidence act, and how to get one.
    pub fn absent(model: &Path) -> String {
        if cfg!(feature = "engine") {
            format!(
                "(skipped: the model file {} is absent; scripts/fetch-model.sh fetches it)",
                model.display()
            )
        } else {
            "(skipped: this binary has no model engine; scripts/fetch-model.sh, then cargo run --release --features engine -- demo)".into()
        }
    }

    #[cfg(not(feature = "engine"))]
    pub struct Evidence;

    #[cfg(not(feature = "engine"))]
    pub async fn start(_: &Path) -> Option<Evidence> {
        None
    }

    #[cfg(not(feature = "engine"))]
    impl Evidence {
        pub fn upstream(&self) -> Upstream {
            unreachable!("no engine")
        }

        pub async fn act(
            &self,
            _: &std::sync::Arc<store::SqliteStore>,
            _: &str,
        ) -> anyhow::Result<()> {
            Ok(())
        }
    }

    #[cfg(feature = "engine")]
    pub async fn start(model: &Path) -> Option<Evidence> {
        if !model.is_file() {
            return None;
        }
        let loaded = match engine::Model::load(model) {
            Ok(m) => m,
            Err(e) => {
                println!("   (the evidence act is skipped: {e})");
                return None;
            }
        };
        // A master secret for this run only; it is never printed.
        let master = watermark::Master::new(&rand::random::<[u8; 32]>()).ok()?;
        let tokenizer = loaded.tokenizer.clone();
        let scheme = watermark::Scheme::Kgw {
            gamma: 0.25,
            delta: 2.0,
        };
        let mark = engine::MarkConfig {
            master: master.clone(),
            scheme,
            context: 1,
            degrade_delta: 4.0,
        };
        let e = std::sync::Arc::new(engine::Engine::new(loaded, Some(mark)));
        let addr = engine::spawn(e, "127.0.0.1:0".parse().ok()?).await.ok()?;
        Some(Evidence {
            addr,
            master,
            scheme,
            tokenizer,
        })
    }

    #[cfg(feature = "engine")]
    impl Evidence {
        pub fn upstream(&self) -> Upstream {
            Upstream {
                base_url: format!("http://{}/v1", self.addr),
                api_key: None,
                models: vec!["smollm2".into()],
                timeout_secs: 600,
                watermarks: true,
            }
        }

        pub async fn act(
            &self,
            store: &std::sync::Arc<store::SqliteStore>,
            base: &str,
        ) -> anyhow::Result<()> {
            use store::Store;
            store.upsert_account("novelist", None, 0)?;
            let key = store.create_key("novelist", 0)?.secret;
            println!("   account `novelist` asks the built-in engine (SmolLM2-135M) through the gateway; its answers are marked with its key");
            let client = reqwest::Client::new();
            let prompts = [
                "Write a story about a lighthouse keeper and a storm.",
                "Describe a day at a busy harbour market.",
                "Tell the story of a clockmaker who builds a clock that runs backwards.",
            ];
            for (i, prompt) in prompts.iter().enumerate() {
                let body = serde_json::json!({
                    "model": "smollm2", "max_tokens": 150, "temperature": 1.0, "seed": i,
                    "messages": [{"role": "user", "content": prompt}],
                });
                let v: serde_json::Value = client
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await?
                    .json()
                    .await?;
                let answer = v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap_or_default();
                let tokens = self.tokenizer.encode(answer);
                let p = |account: &str| {
                    let wm =
                        watermark::Watermark::new(self.master.key_for(account), self.scheme, 1)
                            .expect("a valid mark");
                    watermark::detect(&wm, &tokens, 50)
                        .p_value
                        .map_or("too short".to_owned(), |p| format!("p = {p:.1e}"))
                };
                let start: String = answer.chars().take(70).collect();
                println!(
                    "   answer {} ({} tokens, \"{}...\"): with novelist's key {}; with another account's key {}",
                    i + 1,
                    tokens.len(),
                    start.replace('\n', " "),
                    p("novelist"),
                    p("someone-else")
                );
            }
            println!("   (the log names the key that marked each answer, never the key: `distillguard evidence detect --key-id` leads back to the account)");
            Ok(())
        }
    }
}
