//! Scale-out against the real engines: gateway replicas as separate `distillguard serve`
//! processes on PostgreSQL, Redis and NATS JetStream, with `distillguard worker` detecting.
//! NATS is a private server of this test (it is stopped on purpose); PostgreSQL gets a
//! throwaway database; Redis keys are per account, so the machine's Redis is shared safely.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

use common::BIN;

const ADMIN: &str = "scale-out-admin";

struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(args: &[&str], log: PathBuf) -> Proc {
        let err = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(args)
            .env("DISTILLGUARD_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL: no shutdown code runs
        let _ = self.child.wait();
    }

    /// SIGTERM, as an operator's stop: shutdown code runs (a worker saves its snapshot).
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Replica {
    port: u16,
    _proc: Proc,
}

fn replica(
    dir: &Path,
    n: usize,
    upstream: &str,
    pg: &str,
    redis: Option<&str>,
    nats: Option<&str>,
) -> Replica {
    let port = testkit::free_port();
    let data = dir.join(format!("replica-{n}"));
    let listen = format!("127.0.0.1:{port}");
    let data_s = data.display().to_string();
    let mut args = vec![
        "serve",
        "--listen",
        &listen,
        "--upstream",
        upstream,
        "--store",
        pg,
        "--data",
        &data_s,
    ];
    if let Some(r) = redis {
        args.extend(["--limits", r]);
    }
    if let Some(b) = nats {
        args.extend(["--bus", b]);
    }
    let proc = Proc::spawn(&args, dir.join(format!("replica-{n}.log")));
    Replica { port, _proc: proc }
}

fn worker(dir: &Path, pg: &str, nats: &str, run: usize) -> Proc {
    // Snapshots every 1.2 s: the restarts below start from one, not from the whole log.
    Proc::spawn(
        &[
            "worker",
            "--store",
            pg,
            "--bus",
            nats,
            "--snapshot-minutes",
            "0.02",
        ],
        dir.join(format!("worker-{run}.log")),
    )
}

fn create_key(pg: &str, account: &str, extra: &[&str]) -> String {
    common::new_key(
        Command::new(BIN)
            .args(["keys", "create", "--store", pg, "--account", account])
            .args(extra),
    )
}

/// The cluster of the group whose members are exactly `members`, as the replica on `port`
/// lists it, once it does (waiting up to 10 s for the worker's groups to reach it).
async fn group_of(client: &reqwest::Client, port: u16, members: &[&str]) -> Option<String> {
    for _ in 0..200 {
        let v: Value = client
            .get(format!("http://127.0.0.1:{port}/admin/groups"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let cluster = v["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["members"] == json!(members))
            .and_then(|g| g["cluster"].as_str().map(str::to_owned));
        if cluster.is_some() {
            return cluster;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn wait_healthy(client: &reqwest::Client, replicas: &[Replica]) {
    for r in replicas {
        let mut up = false;
        for _ in 0..500 {
            if client
                .get(format!("http://127.0.0.1:{}/healthz", r.port))
                .send()
                .await
                .is_ok_and(|x| x.status().is_success())
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(up, "replica on {} did not come up", r.port);
    }
}

async fn post(client: &reqwest::Client, port: u16, key: &str, body: &Value) -> (u16, Value) {
    let r = client
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn chat(text: &str, max_tokens: u32) -> Value {
    json!({"model": "demo-model", "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens})
}

async fn upstream() -> String {
    let addr = standin::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    format!("http://{addr}/v1")
}

fn redis_reachable() -> bool {
    let url = testkit::redis_url();
    let addr = url.trim_start_matches("redis://");
    match addr.parse() {
        Ok(a) if testkit::listening(a) => true,
        _ => {
            testkit::unavailable("Redis", &url);
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_share_one_limit_through_redis() {
    let Some(db) = testkit::postgres() else {
        return;
    };
    if !redis_reachable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let upstream = upstream().await;
    let redis = testkit::redis_url();
    // Names unique to this run: the machine's Redis outlives it.
    let run = format!("{:x}", rand_suffix());
    let (rpm_account, tpm_account) = (format!("rpm-{run}"), format!("tpm-{run}"));
    const RPM: usize = 120;
    const TPM: u64 = 20_000;
    let rpm_key = create_key(&db.url, &rpm_account, &["--rpm", &RPM.to_string()]);
    let tpm_key = create_key(&db.url, &tpm_account, &["--tpm", &TPM.to_string()]);
    let replicas: Vec<Replica> = (0..3)
        .map(|n| replica(dir.path(), n, &upstream, &db.url, Some(&redis), None))
        .collect();
    let client = reqwest::Client::new();
    wait_healthy(&client, &replicas).await;
    let ports: Arc<Vec<u16>> = Arc::new(replicas.iter().map(|r| r.port).collect());

    // Requests: three times the limit, round-robin over the replicas, eight at a time.
    let next = Arc::new(AtomicUsize::new(0));
    let admitted = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, ports, next, admitted, key) = (
            client.clone(),
            ports.clone(),
            next.clone(),
            admitted.clone(),
            rpm_key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= 3 * RPM {
                    break;
                }
                let (status, _) = post(&client, ports[i % 3], &key, &chat("hello", 8)).await;
                match status {
                    200 => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    429 => {}
                    other => panic!("unexpected status {other}"),
                }
            }
        }));
    }
    let started = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "the burst fits in one window"
    );
    let admitted = admitted.load(Ordering::Relaxed);
    println!(
        "rpm {RPM}: admitted {admitted} of {} over 3 replicas",
        3 * RPM
    );
    assert_eq!(admitted, RPM, "exactly the limit, summed over the replicas");

    // Tokens: call until the budget is spent; the tokens the upstream reports for the admitted
    // calls add up to the budget, less at most one call's reservation.
    let mut used = 0u64;
    let mut refused_in_a_row = 0;
    let mut i = 0;
    while refused_in_a_row < 40 {
        let (status, body) = post(&client, ports[i % 3], &tpm_key, &chat("hello there", 16)).await;
        i += 1;
        match status {
            200 => {
                refused_in_a_row = 0;
                used += body["usage"]["total_tokens"].as_u64().unwrap();
            }
            429 => {
                refused_in_a_row += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => panic!("unexpected status {other}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(58),
            "within one window"
        );
    }
    println!("tpm {TPM}: admitted calls used {used} tokens over 3 replicas ({i} calls)");
    assert!(used <= TPM, "never more than the budget: {used}");
    assert!(
        used as f64 >= TPM as f64 * 0.99,
        "within 1% of the budget: {used}"
    );
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ u64::from(std::process::id())
}

async fn admin_action(client: &reqwest::Client, port: u16, account: &str) -> String {
    let r = client
        .get(format!("http://127.0.0.1:{port}/admin/accounts/{account}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    v["action"].as_str().unwrap_or_default().to_owned()
}

/// Polls every replica until each shows `action` for `account`; returns how long that took.
async fn until_all_replicas(
    client: &reqwest::Client,
    ports: &[u16],
    account: &str,
    action: &str,
) -> Duration {
    let t0 = Instant::now();
    let mut pending: Vec<u16> = ports.to_vec();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for &p in &pending {
            if admin_action(client, p, account).await != action {
                still.push(p);
            }
        }
        pending = still;
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{account} never became {action} on {pending:?}"
        );
    }
    t0.elapsed()
}

async fn pg<T: Send + 'static>(
    url: &str,
    f: impl FnOnce(&dyn store::Store) -> T + Send + 'static,
) -> T {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || f(store::open(&url).unwrap().as_ref()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_publish_workers_detect_and_nothing_is_lost_through_crashes_and_outages() {
    let Some(db) = testkit::postgres() else {
        return;
    };
    let Some(mut nats) = testkit::Server::nats() else {
        return;
    };
    let nats_url = format!("nats://{}", nats.addr());
    let dir = tempfile::tempdir().unwrap();
    let upstream = upstream().await;
    let harvester = create_key(&db.url, "harvester", &[]);
    let loader = create_key(&db.url, "loader", &[]);
    let reviewed = create_key(&db.url, "reviewed", &[]);
    let twins = [
        create_key(
            &db.url,
            "twin-a",
            &["--meta", r#"{"payment_fingerprint":"pf_twins"}"#],
        ),
        create_key(
            &db.url,
            "twin-b",
            &["--meta", r#"{"payment_fingerprint":"pf_twins"}"#],
        ),
    ];
    let replicas: Vec<Replica> = (0..3)
        .map(|n| replica(dir.path(), n, &upstream, &db.url, None, Some(&nats_url)))
        .collect();
    let mut worker_proc = worker(dir.path(), &db.url, &nats_url, 0);
    let client = reqwest::Client::new();
    wait_healthy(&client, &replicas).await;
    let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();

    // 1. A human decision taken on one replica applies on all of them.
    let (status, _) = post(&client, ports[2], &reviewed, &chat("hi", 4)).await;
    assert_eq!(status, 200);
    let r = client
        .put(format!(
            "http://127.0.0.1:{}/admin/accounts/reviewed/override",
            ports[0]
        ))
        .bearer_auth(ADMIN)
        .json(&json!({"action": "block", "reason": "confirmed harvesting", "by": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let took = until_all_replicas(&client, &ports, "reviewed", "block").await;
    println!("override reached all 3 replicas in {took:?}");
    assert!(took < Duration::from_secs(1));
    let (status, _) = post(&client, ports[2], &reviewed, &chat("hi", 4)).await;
    assert_eq!(status, 403);

    // 2. A detector verdict (a logit-bias sweep, through all replicas) reaches every replica:
    //    measured from the moment the worker's verdict is visible on the bus.
    let js = bus::jetstream(bus::connect(&nats_url).await.unwrap());
    let standing = bus::Standing::open(&js).await.unwrap();
    let mut updates = Box::pin(standing.watch().await.unwrap());
    let watcher = {
        let (client, ports) = (client.clone(), ports.clone());
        tokio::spawn(async move {
            while let Some(u) = updates.next().await {
                if let bus::StandingUpdate::Verdict { account, verdict } = u {
                    if account == "harvester" && verdict == "distilling" {
                        return until_all_replicas(&client, &ports, "harvester", "degrade").await;
                    }
                }
            }
            panic!("the standing watch ended");
        })
    };
    let mut refused = false;
    for i in 0..300u32 {
        let body = json!({"model": "demo-model", "messages": [{"role": "user", "content": "The capital of France is"}], "max_tokens": 1, "logit_bias": {(1000 + i * 7).to_string(): 100}});
        let (status, _) = post(&client, ports[i as usize % 3], &harvester, &body).await;
        if status == 400 {
            refused = true;
            break;
        }
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the sweep was degraded on the replicas");
    let took = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("verdict propagated")
        .unwrap();
    println!("detector verdict reached all 3 replicas {took:?} after it was on the bus");
    assert!(took < Duration::from_secs(1));

    // 3. Accounts on one card, served by different replicas, are one group on every replica,
    //    and one decision there blocks both everywhere.
    for i in 0..3 {
        for (k, key) in twins.iter().enumerate() {
            let (status, _) = post(&client, ports[(i + k) % 3], key, &chat("hello", 4)).await;
            assert_eq!(status, 200);
        }
    }
    let cluster = group_of(&client, ports[1], &["twin-a", "twin-b"])
        .await
        .expect("the worker's group reached the replicas");
    let r = client
        .put(format!(
            "http://127.0.0.1:{}/admin/groups/{cluster}/override",
            ports[1]
        ))
        .bearer_auth(ADMIN)
        .json(&json!({"action": "block", "reason": "one card, one operator"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    until_all_replicas(&client, &ports, "twin-a", "block").await;
    until_all_replicas(&client, &ports, "twin-b", "block").await;

    // 4. Load through all replicas while the worker is killed and restarted, and while NATS
    //    is away for 30 s. Every call of the loader must end in the store exactly once.
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, ports, sent, stop, key) = (
            client.clone(),
            ports.clone(),
            sent.clone(),
            stop.clone(),
            loader.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let text = format!("Summarise document {i} of the quarterly archive.");
                let (status, _) = post(&client, ports[i % 3], &key, &chat(&text, 16)).await;
                assert_eq!(status, 200);
                sent.fetch_add(1, Ordering::Relaxed);
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    worker_proc.kill();
    let killed_at = sent.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A worker that died holding a batch: fetch the loader's next messages from the workers'
    // durable consumer and never acknowledge them. They must come back to the next worker.
    let held = {
        let stream = bus::ensure_stream(&js).await.unwrap();
        let name = format!("dg-detector-{}", bus::partition("loader"));
        let consumer: bus::async_nats::jetstream::consumer::PullConsumer =
            stream.get_consumer(&name).await.unwrap();
        let mut batch = consumer
            .fetch()
            .max_messages(50)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .unwrap();
        let mut n = 0;
        while let Some(Ok(_unacknowledged)) = batch.next().await {
            n += 1;
        }
        n
    };
    assert!(held > 0, "the dead worker held messages");
    let worker_proc = worker(dir.path(), &db.url, &nats_url, 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Killed, as a crash would.
    nats.stop();
    let nats_down_at = sent.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during_outage = sent.load(Ordering::Relaxed) - nats_down_at;
    nats.start().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let total = sent.load(Ordering::Relaxed);
    println!("loader: {total} calls; worker killed after {killed_at} holding {held} unacknowledged; {during_outage} served while NATS was down");
    assert!(
        during_outage > 100,
        "the replicas kept serving while NATS was away"
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    let stored = loop {
        let n = pg(&db.url, |s| {
            s.exchanges(Some("loader"), 0, 1_000_000).unwrap().len()
        })
        .await;
        if n >= total || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        stored,
        total,
        "every loader exchange stored exactly once\nworker log:\n{}",
        worker_proc.log()
    );

    // 5. The stored verdicts equal an offline scan of the stored exchanges.
    let export = dir.path().join("export.jsonl");
    common::run_ok(
        Command::new(BIN)
            .args(["export", "--store", &db.url, "-o"])
            .arg(&export),
    );
    let out = Command::new(BIN)
        .args(["scan", "--json"])
        .arg(&export)
        .output()
        .unwrap();
    let scanned: HashMap<String, String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            (
                v["account"].as_str().unwrap().to_owned(),
                v["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let stored: HashMap<String, String> = pg(&db.url, |s| {
        s.verdicts()
            .unwrap()
            .into_iter()
            .map(|v| (v.account, v.verdict))
            .collect()
    })
    .await;
    assert_eq!(
        scanned.get("harvester").map(String::as_str),
        Some("distilling")
    );
    for (account, verdict) in &scanned {
        let live = stored.get(account).map_or("benign", String::as_str);
        assert_eq!(
            live, verdict,
            "{account}: worker says {live}, scan says {verdict}"
        );
    }

    // 6. The restarted worker began from the snapshot the killed one had saved, and replayed
    //    only what was stored after it; stopped, it saves a snapshot whose detector holds
    //    every loader exchange exactly once, through the kill, the held batch and the outage.
    let mut worker_proc = worker_proc;
    let log = worker_proc.log();
    assert!(
        log.contains("snapshot=true"),
        "the second worker started from a snapshot:\n{log}"
    );
    worker_proc.stop();
    let snap = pg(&db.url, |s| s.snapshot("worker-0-of-1-by-payer").unwrap())
        .await
        .expect("a snapshot at shutdown");
    let (_, state) = recorder::unpack_snapshot(&snap.bytes).unwrap();
    let detector = detect::Detector::restore_state(detect::Config::default(), &state).unwrap();
    assert_eq!(
        detector.report("loader").unwrap().exchanges,
        total as u64,
        "worker log:\n{}",
        worker_proc.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_link_accounts_that_pay_with_one_card() {
    let Some(db) = testkit::postgres() else {
        return;
    };
    let Some(nats) = testkit::Server::nats() else {
        return;
    };
    let nats_url = format!("nats://{}", nats.addr());
    let dir = tempfile::tempdir().unwrap();
    let upstream = upstream().await;
    // By name these two fall on different workers of two; by their card, on one.
    let (a, b) = ("twin-a", "twin-b");
    assert_ne!(bus::partition(a) % 2, bus::partition(b) % 2);
    let keys: Vec<String> = [a, b]
        .iter()
        .map(|account| {
            create_key(
                &db.url,
                account,
                &["--meta", r#"{"payment_fingerprint":"pf_shared_card"}"#],
            )
        })
        .collect();
    let gateway = replica(dir.path(), 0, &upstream, &db.url, None, Some(&nats_url));
    let _workers: Vec<Proc> = (0..2)
        .map(|index| {
            Proc::spawn(
                &[
                    "worker",
                    "--store",
                    &db.url,
                    "--bus",
                    &nats_url,
                    "--workers",
                    "2",
                    "--index",
                    &index.to_string(),
                ],
                dir.path().join(format!("worker-{index}.log")),
            )
        })
        .collect();
    let client = reqwest::Client::new();
    wait_healthy(&client, std::slice::from_ref(&gateway)).await;
    for i in 0..3 {
        for key in &keys {
            let (status, _) =
                post(&client, gateway.port, key, &chat(&format!("hello {i}"), 4)).await;
            assert_eq!(status, 200);
        }
    }
    assert!(
        group_of(&client, gateway.port, &[a, b]).await.is_some(),
        "one worker saw both accounts and linked them"
    );
}
