//! `distillguard bench console`: the analyst console's pages timed on a gateway holding many
//! accounts (issue 18 asks p95 ≤ 100 ms for the accounts and account pages at 100,000).
//!
//! A gateway on a fresh embedded store is started in process; `--accounts` accounts each send
//! `--calls` chat exchanges through the tap (the one way in: logged, judged), then the
//! console is signed into over HTTP and its pages fetched one after another, each timed from
//! request to last byte over loopback (the server's time plus a loopback round trip).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use gateway::{Gateway, GatewayConfig};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Accounts in the store and the detector.
    #[arg(long, default_value_t = 100_000)]
    pub accounts: usize,
    /// Chat exchanges per account.
    #[arg(long, default_value_t = 3)]
    pub calls: usize,
    /// Timed fetches of each page.
    #[arg(long, default_value_t = 40)]
    pub requests: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench(args))
}

async fn bench(args: Args) -> anyhow::Result<ExitCode> {
    let dir =
        std::env::temp_dir().join(format!("distillguard-bench-console-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = store::open(&dir.display().to_string())?;
    // Every account of a deployment has a key, so the store knows it as well as the detector.
    for i in 0..args.accounts {
        store.insert_account(&format!("acct-{i:06}"), None, 1_780_000_000_000)?;
    }
    let token = "bench-console-token".to_owned();
    let config = GatewayConfig {
        listen: "127.0.0.1:0".parse()?,
        data: dir.clone(),
        ..GatewayConfig::default()
    };
    let content = config.content;
    let gw = Gateway::start(config, store, Some(token.clone()))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let started = Instant::now();
    let t0 = 1_780_000_000_000i64;
    for i in 0..args.accounts {
        for c in 0..args.calls {
            let ts = t0 + (c * args.accounts + i) as i64 * 50;
            let line = json!({
                "id": format!("bench-{i}-{c}"),
                "ts": exchange::Timestamp::from_millis(ts).as_str(),
                "account": format!("acct-{i:06}"),
                "endpoint": "/v1/chat/completions",
                "status": 200,
                "ip": format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255),
                "request": {"model": "m", "max_tokens": 256, "messages": [
                    {"role": "user", "content": format!("Question {c} of customer {i}: how do tides work?")}
                ]},
                "response": {"choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "The moon's pull, mostly."}}],
                    "usage": {"prompt_tokens": 14, "completion_tokens": 8}},
                "latency_ms": 300.0,
            });
            gw.state.tap.record(line, content).await;
        }
    }
    // Every exchange judged before the pages are timed.
    let want = (args.accounts * args.calls) as u64;
    loop {
        let seen: u64 = gw
            .state
            .shared
            .detector
            .lock()
            .summaries()
            .iter()
            .map(|r| r.exchanges)
            .sum();
        if seen >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{} accounts x {} exchanges logged and judged in {:.1} s",
        args.accounts,
        args.calls,
        started.elapsed().as_secs_f64()
    );

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let base = format!("http://{}", gw.addr);
    let login = client
        .post(format!("{base}/admin/ui/login"))
        .form(&[("token", token.as_str())])
        .send()
        .await?;
    let cookie = login
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("the console gave no session"))?
        .to_owned();
    let pages = args.accounts.div_ceil(50).max(1);
    type Url = Box<dyn Fn(usize) -> String>;
    let kinds: [(&str, Url); 4] = [
        (
            "accounts, first page",
            Box::new(|_| "/admin/ui/accounts".to_owned()),
        ),
        (
            "accounts, a page deep in the list",
            Box::new(move |k| format!("/admin/ui/accounts?page={}", 1 + (k * 7919) % pages)),
        ),
        (
            "accounts, filtered and sorted",
            Box::new(|_| "/admin/ui/accounts?verdict=benign&sort=exchanges&page=3".to_owned()),
        ),
        (
            "account",
            Box::new(move |k| format!("/admin/ui/accounts/acct-{:06}", (k * 7919) % args.accounts)),
        ),
    ];
    println!("page | p50 | p95 | max | bytes");
    for (name, url) in &kinds {
        let mut times = Vec::new();
        let mut bytes = 0;
        for k in 0..args.requests {
            let t = Instant::now();
            let r = client
                .get(format!("{base}{}", url(k)))
                .header(reqwest::header::COOKIE, &cookie)
                .send()
                .await?;
            anyhow::ensure!(
                r.status().is_success(),
                "{} answered {}",
                url(k),
                r.status()
            );
            bytes = r.bytes().await?.len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        println!(
            "{name} | {:.1} ms | {:.1} ms | {:.1} ms | {bytes}",
            at(0.5),
            at(0.95),
            times[times.len() - 1]
        );
    }
    gw.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ExitCode::SUCCESS)
}
