//! `distillguard bench detect`: simulate → detect → evaluate over several seeds and sizes,
//! in process, and print the pooled figures recorded in `bench/README.md`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use detect::{Detector, Verdict as DetectVerdict};
use simulate::{
    evaluate, neutralise, simulate, Corpora, Cue, Evaluation, Label, SimConfig, Verdict,
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(clap::Subcommand)]
pub enum What {
    /// Detection quality: AUROC, TPR/FPR at `distilling`, per archetype, time to detect.
    Detect(DetectArgs),
    /// Parse-only pass over a log (read + serde_json into the exchange type, no detection):
    /// the baseline `scan` throughput is compared with.
    Parse(ParseArgs),
    /// Detector memory: replay simulated exchanges spread over N distinct accounts and
    /// report the process's peak resident memory.
    Memory(MemoryArgs),
    /// Fixed-rate HTTP load (open loop, wrk2-style): latency is measured from when each request
    /// was due, not when it was sent, so a slow server cannot hide its queueing.
    Load(LoadArgs),
    /// The watermark: false positives on human text, power against length and edits, the
    /// quality cost of each δ, load, decode and detection speeds (feature `engine`).
    Watermark(crate::cmd::bench_watermark::Args),
    /// Radioactivity: students trained on the engine's marked answers (alone or as 5 % of
    /// human text) and on its unmarked ones, their text tested for the mark (feature `engine`).
    Radioactivity(crate::cmd::bench_radioactivity::Args),
    /// The analyst console's pages timed on a gateway holding many accounts.
    Console(crate::cmd::bench_console::Args),
}

#[derive(clap::Args)]
pub struct LoadArgs {
    /// Full URL of the chat completions endpoint; repeat it to spread the load round-robin
    /// over several gateway replicas, as a load balancer would.
    #[arg(long, required = true)]
    pub url: Vec<String>,
    #[arg(long, default_value = "")]
    pub key: String,
    /// Requests per second.
    #[arg(long)]
    pub rate: f64,
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Streamed requests; latency is then time to first byte of the answer.
    #[arg(long)]
    pub stream: bool,
    /// Append the `x-request-id` of every answer received in full (a stream through its
    /// `[DONE]`) to FILE, one a line, as it arrives: what `bench/soak.sh` checks against the
    /// log after each kill.
    #[arg(long)]
    pub record: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct MemoryArgs {
    /// The shared data folder with corpora/ and traces/ (default: ../shared/data when it is
    /// there, else the sample built into the binary).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long, default_value_t = 100_000)]
    pub accounts: usize,
    /// Exchanges fed per account.
    #[arg(long, default_value_t = 20)]
    pub per_account: usize,
    /// Drop the facts that link accounts (address, client, payment, sign-up, system prompt):
    /// the replay gives 50 accounts each observation, so every such value is shared up to
    /// the cap and the link graph is as large as it can be; this measures without it.
    #[arg(long)]
    pub without_link_facts: bool,
}

#[derive(clap::Args)]
pub struct ParseArgs {
    pub input: PathBuf,
    /// Parser threads (default: the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(clap::Args)]
pub struct DetectArgs {
    /// The shared data folder with corpora/ and traces/ (default: ../shared/data when it is
    /// there, else the sample built into the binary).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Seeds 1..=N.
    #[arg(long, default_value_t = 5)]
    pub seeds: u64,
    /// Population sizes (benign accounts), comma separated.
    #[arg(long, default_value = "300", value_delimiter = ',')]
    pub sizes: Vec<usize>,
    #[arg(long, default_value_t = 3.0)]
    pub days: f64,
    /// Share of developers and power users behind a carrier's CGNAT or a VPN exit shared with
    /// strangers (0 to 1; default 0, the earlier worlds draw for draw).
    #[arg(long, default_value_t = 0.0)]
    pub shared_egress: f64,
    /// The hard world: benign look-alikes that show harvest cues (broad step-by-step
    /// benchmark runs at temperature 0, answer and agent products used round the clock) and
    /// harvests that hide theirs (hydras sharing no fact of their accounts, low-and-slow
    /// harvests with their owner's client settings, agents that never sleep).
    #[arg(long)]
    pub hard: bool,
    /// Take one cue away: every account draws it from another account of its world, blind to
    /// labels (timing, addresses, age-and-payment, params, system-prompts, volume; see
    /// `simulate::neutralise`).
    #[arg(long)]
    pub neutralise: Option<Cue>,
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Write every account's label, score, verdict and features as JSON lines (for analysis).
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// List false positives and missed attacks.
    #[arg(long)]
    pub verbose: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.what {
        What::Detect(a) => detect(a),
        What::Parse(a) => parse(a),
        What::Memory(a) => memory(a),
        What::Load(a) => load(a),
        What::Watermark(a) => crate::cmd::bench_watermark::run(a),
        What::Radioactivity(a) => crate::cmd::bench_radioactivity::run(a),
        What::Console(a) => crate::cmd::bench_console::run(a),
    }
}

fn parse(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let source = exchange::LineSource::open(&args.input, exchange::ReaderOptions::default())?;
    let workers = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let start = std::time::Instant::now();
    let (ok, bad) = crate::pipeline::parse_only(source, workers);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "parsed {ok} exchanges ({bad} bad lines) in {secs:.2} s: {:.0} exchanges/s",
        ok as f64 / secs
    );
    Ok(ExitCode::SUCCESS)
}

fn detect(args: DetectArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(args.config.as_deref())?;
    let (corpora, source) = Corpora::find(args.data_dir.as_deref())?;
    eprintln!("corpora: {source}");
    let mut dump = args
        .dump
        .as_ref()
        .map(|p| File::create(p).map(BufWriter::new))
        .transpose()?;
    let mut all_labels: Vec<Label> = Vec::new();
    let mut all_verdicts = HashMap::new();
    let mut all_times: HashMap<String, Vec<i64>> = HashMap::new();
    for &size in &args.sizes {
        for seed in 1..=args.seeds {
            let mut sim = simulate(
                &SimConfig {
                    seed,
                    benign_accounts: size,
                    days: args.days,
                    shared_egress: args.shared_egress,
                    hard: args.hard,
                    ..SimConfig::default()
                },
                &corpora,
            );
            if let Some(cue) = args.neutralise {
                neutralise(&mut sim, cue, seed);
            }
            let mut detector = Detector::new(config.clone());
            let mut times: HashMap<String, Vec<i64>> = HashMap::new();
            for ex in &sim.exchanges {
                detector.observe(ex);
                times
                    .entry(ex.account.clone())
                    .or_default()
                    .push(ex.ts.millis());
            }
            let mut verdicts = HashMap::new();
            for r in detector.reports() {
                let first_flagged = r
                    .first_flagged
                    .as_deref()
                    .and_then(|t| exchange::Timestamp::parse(t).ok())
                    .map(|t| t.millis());
                verdicts.insert(
                    r.account.clone(),
                    Verdict {
                        score: r.score,
                        distilling: r.verdict == DetectVerdict::Distilling,
                        watched: r.verdict >= DetectVerdict::Suspicious,
                        first_flagged,
                        cluster: r.cluster.clone(),
                    },
                );
            }
            let e = evaluate(&sim.labels, &verdicts, &times);
            println!(
                "size {size} seed {seed}: {} exchanges, {} accounts, AUROC {:.4}, TPR {:.3}, FPR {:.4}, early {}/{}",
                sim.exchanges.len(),
                sim.labels.len(),
                e.auroc,
                e.tpr.value(),
                e.fpr.value(),
                e.campaigns_caught_early.hits,
                e.campaigns_caught_early.of
            );
            if args.verbose {
                print_misses(&e, &sim.labels, &verdicts);
            }
            if let Some(d) = dump.as_mut() {
                for l in &sim.labels {
                    let v = verdicts.get(&l.account);
                    let line = serde_json::json!({
                        "seed": seed, "size": size, "account": l.account, "class": l.class, "archetype": l.archetype,
                        "campaign": l.campaign, "cluster": v.and_then(|v| v.cluster.clone()),
                        "score": v.map_or(0.0, |v| v.score), "distilling": v.is_some_and(|v| v.distilling),
                        "features": detector.features(&l.account),
                        "reasons": detector.report(&l.account).map(|r| r.reasons),
                    });
                    serde_json::to_writer(&mut *d, &line)?;
                    d.write_all(b"\n")?;
                }
            }
            // Pool runs under distinct names so campaigns of different runs stay apart.
            let tag = format!("s{size}-{seed}/");
            for mut l in sim.labels {
                l.account = format!("{tag}{}", l.account);
                l.campaign = l.campaign.map(|c| format!("{tag}{c}"));
                all_labels.push(l);
            }
            for (k, mut v) in verdicts {
                v.cluster = v.cluster.map(|c| format!("{tag}{c}"));
                all_verdicts.insert(format!("{tag}{k}"), v);
            }
            for (k, v) in times {
                all_times.insert(format!("{tag}{k}"), v);
            }
        }
    }
    let pooled: Evaluation = evaluate(&all_labels, &all_verdicts, &all_times);
    println!(
        "\npooled over {} runs:",
        args.sizes.len() as u64 * args.seeds
    );
    print!("{}", super::evaluate::render(&pooled));
    Ok(ExitCode::SUCCESS)
}

fn print_misses(e: &Evaluation, labels: &[Label], verdicts: &HashMap<String, Verdict>) {
    for (campaign, share) in &e.time_to_detect {
        let kind = labels
            .iter()
            .find(|l| l.campaign.as_deref() == Some(campaign))
            .map_or("?", |l| l.archetype.as_str());
        println!(
            "  {campaign} ({kind}): {:.3} of its exchanges before the first flag",
            share
        );
    }
    for fp in &e.false_positives {
        println!("  false positive: {fp}");
    }
    // Groups that hold more than one campaign, or attack and benign accounts together: what
    // the purity figure counts against, named so a wrong join can be looked into (`groups`
    // on the same world shows the links).
    let mut groups: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    for l in labels {
        if let Some(c) = verdicts.get(&l.account).and_then(|v| v.cluster.as_deref()) {
            let who = match &l.campaign {
                Some(campaign) => format!("{campaign} ({})", l.archetype),
                None => format!("benign {}", l.archetype),
            };
            *groups.entry(c).or_default().entry(who).or_default() += 1;
        }
    }
    for (cluster, members) in groups {
        let campaigns = members.keys().filter(|k| !k.starts_with("benign ")).count();
        if campaigns > 1 || (campaigns == 1 && members.len() > 1) {
            let list: Vec<String> = members.iter().map(|(k, n)| format!("{k} x{n}")).collect();
            println!("  mixed group {cluster}: {}", list.join(", "));
        }
    }
    for l in labels.iter().filter(|l| l.is_attack()) {
        if !verdicts.get(&l.account).is_some_and(|v| v.distilling) {
            println!(
                "  missed: {} ({}) score {:.3}",
                l.account,
                l.archetype,
                verdicts.get(&l.account).map_or(0.0, |v| v.score)
            );
        }
    }
}

/// A memory figure of this process from `/proc/self/status`, in MiB.
fn status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn peak_rss_mib() -> Option<f64> {
    status_mib("VmHWM:")
}

fn rss_mib() -> Option<f64> {
    status_mib("VmRSS:")
}

fn memory(args: MemoryArgs) -> anyhow::Result<ExitCode> {
    let (corpora, source) = Corpora::find(args.data_dir.as_deref())?;
    eprintln!("corpora: {source}");
    let sim = simulate(
        &SimConfig {
            seed: 1,
            benign_accounts: 40,
            ..SimConfig::default()
        },
        &corpora,
    );
    // Observations are made once; each is replayed under many account names.
    let mut detector = Detector::new(detect::Config::default());
    let observations: Vec<detect::Observation> = sim
        .exchanges
        .iter()
        .take(2000)
        .map(|e| detector.observation(e))
        .map(|mut o| {
            if args.without_link_facts {
                o.ip = None;
                o.user_agent = None;
                o.tls = None;
                o.asn = None;
                o.payment = None;
                o.signup = None;
                o.system = None;
            }
            o
        })
        .collect();
    drop(sim);
    drop(corpora);
    // The simulation's peak is behind us. Freed pages stay with the allocator, and the
    // detector would grow into them unseen: hand them back, so what the process holds now is
    // the baseline the detector grows from.
    let before = peak_rss_mib().unwrap_or(0.0);
    // SAFETY: mi_collect takes no pointers; it only returns the allocator's free pages.
    unsafe { libmimalloc_sys::mi_collect(true) };
    let baseline = rss_mib().unwrap_or(0.0);
    let mut obs_index = 0;
    for round in 0..args.per_account {
        for a in 0..args.accounts {
            let mut obs = observations[obs_index % observations.len()].clone();
            obs_index += 1;
            obs.account = format!("acct_{a:08}");
            obs.ts += (round * 60_000) as i64;
            detector.observe_facts(&obs);
        }
    }
    let after = peak_rss_mib().unwrap_or(0.0);
    let held = rss_mib().unwrap_or(0.0);
    println!(
        "{} accounts x {} exchanges: peak RSS {:.0} MiB ({:.0} MiB before the detector grew, from the simulation that made the observations); RSS {:.0} MiB with the detector, {:.0} MiB before it, so about {:.0} bytes per account; per-account state {} bytes",
        detector.account_count(),
        args.per_account,
        after,
        before,
        held,
        baseline,
        (held - baseline) * 1024.0 * 1024.0 / args.accounts as f64,
        std::mem::size_of::<detect::AccountState>()
    );
    let (values, edges) = detector.link_index_size();
    println!(
        "link graph: {values} values, {edges} edges ({:.1} per account)",
        2.0 * edges as f64 / args.accounts as f64
    );
    // What a gateway's snapshot of this detector costs (after the peak above was read: the
    // bytes are a second copy of the state while they exist).
    let started = std::time::Instant::now();
    let state = detector.save_state();
    let saved = started.elapsed();
    let started = std::time::Instant::now();
    let restored = Detector::restore_state(detect::Config::default(), &state)?;
    let loaded = started.elapsed();
    println!(
        "snapshot: {} bytes ({:.0} per account), saved in {:.0} ms, restored in {:.0} ms ({} accounts)",
        state.len(),
        state.len() as f64 / args.accounts as f64,
        saved.as_secs_f64() * 1e3,
        loaded.as_secs_f64() * 1e3,
        restored.account_count()
    );
    Ok(ExitCode::SUCCESS)
}

fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let client = reqwest::Client::builder().pool_max_idle_per_host(args.connections).tcp_nodelay(true).build()?;
        let total = (args.rate * args.seconds) as u64;
        let interval = std::time::Duration::from_secs_f64(1.0 / args.rate);
        let body = if args.stream {
            bytes::Bytes::from_static(br#"{"model":"demo-model","messages":[{"role":"user","content":"Benchmark request: say something short."}],"max_tokens":16,"stream":true}"#)
        } else {
            bytes::Bytes::from_static(br#"{"model":"demo-model","messages":[{"role":"user","content":"Benchmark request: say something short."}],"max_tokens":16}"#)
        };
        let stream = args.stream;
        let record = match &args.record {
            Some(p) => Some(std::sync::Arc::new(std::sync::Mutex::new(
                std::fs::OpenOptions::new().create(true).append(true).open(p)?,
            ))),
            None => None,
        };
        let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let start = tokio::time::Instant::now() + std::time::Duration::from_millis(100);
        let mut workers = Vec::new();
        for _ in 0..args.connections {
            let (client, next, body, urls, key, record) = (client.clone(), next.clone(), body.clone(), args.url.clone(), args.key.clone(), record.clone());
            workers.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let due = start + interval.mul_f64(i as f64);
                    tokio::time::sleep_until(due).await;
                    let url = &urls[i as usize % urls.len()];
                    let mut req = client.post(url).header("content-type", "application/json").body(body.clone());
                    if !key.is_empty() {
                        req = req.bearer_auth(&key);
                    }
                    match req.send().await {
                        Ok(mut r) if r.status().is_success() => {
                            let id = r.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
                            let whole = if stream {
                                // Time to first byte of the answer, then drain the rest.
                                let mut tail = Vec::new();
                                if let Ok(Some(first)) = r.chunk().await {
                                    latencies.push(due.elapsed().as_secs_f64());
                                    tail.extend_from_slice(&first);
                                }
                                let mut broke = false;
                                loop {
                                    match r.chunk().await {
                                        Ok(Some(c)) => {
                                            tail.extend_from_slice(&c);
                                            let keep = tail.len().saturating_sub(32);
                                            tail.drain(..keep);
                                        }
                                        Ok(None) => break,
                                        Err(_) => {
                                            broke = true;
                                            break;
                                        }
                                    }
                                }
                                !broke && tail.ends_with(b"data: [DONE]\n\n")
                            } else {
                                let ok = r.bytes().await.is_ok();
                                latencies.push(due.elapsed().as_secs_f64());
                                ok
                            };
                            if let (true, Some(id), Some(f)) = (whole, id, &record) {
                                // One write of the whole line: O_APPEND keeps it whole beside
                                // another load generator appending to the same file.
                                let _ = f.lock().unwrap_or_else(|p| p.into_inner()).write_all(format!("{id}\n").as_bytes());
                            }
                        }
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for w in workers {
            let (l, e) = w.await?;
            all.extend(l);
            errors += e;
        }
        let elapsed = start.elapsed().as_secs_f64();
        all.sort_by(f64::total_cmp);
        let q = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(f64::NAN) * 1000.0;
        let (p50, p90, p99, max) = (q(0.5), q(0.9), q(0.99), all.last().copied().unwrap_or(f64::NAN) * 1000.0);
        let achieved = all.len() as f64 / elapsed;
        if args.json {
            println!("{}", serde_json::json!({"rate": args.rate, "achieved": achieved, "ok": all.len(), "errors": errors, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": max}));
        } else {
            println!("rate {:.0}/s: {} ok, {} errors, achieved {:.0}/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms", args.rate, all.len(), errors, achieved, p50, p90, p99, max);
        }
        Ok(ExitCode::SUCCESS)
    })
}
