//! The gateway binary killed with SIGKILL under load: with the default durability
//! (`committed`), every exchange whose answer a client received in full before the kill,
//! streamed or not, is in the log after a restart, and the store opens cleanly.

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::{SqliteStore, Store};

use common::BIN;

fn start_gateway(port: u16, upstream: &str, data: &std::path::Path) -> Child {
    Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            upstream,
            "--data",
        ])
        .arg(data)
        .env("DISTILLGUARD_ADMIN_TOKEN", "t")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_healthy(client: &reqwest::Client, port: u16) {
    for _ in 0..300 {
        if client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gateway did not come up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exchange_completed_before_a_sigkill_is_in_the_log() {
    let upstream = standin::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let upstream = format!("http://{upstream}/v1");
    let dir = tempfile::tempdir().unwrap();
    let key = common::new_key(
        Command::new(BIN)
            .args(["keys", "create", "--account", "loadtest", "--data"])
            .arg(dir.path()),
    );
    assert!(key.starts_with("dg-"));

    let port = testkit::free_port();
    let mut child = start_gateway(port, &upstream, dir.path());
    let client = reqwest::Client::new();
    wait_healthy(&client, port).await;

    let completed: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (client, key, completed, stop) =
            (client.clone(), key.clone(), completed.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                // Every other worker streams: its answer's end must wait for the log too.
                let body = serde_json::json!({"model": "demo-model", "messages": [{"role": "user", "content": format!("worker {w} call {i}")}], "max_tokens": 20, "stream": w % 2 == 1});
                let Ok(r) = client.post(format!("http://127.0.0.1:{port}/v1/chat/completions")).bearer_auth(&key).json(&body).send().await else { break };
                if r.status() != 200 {
                    continue;
                }
                let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
                // Received in full: a stream up to its `[DONE]`, a body to its end.
                match r.bytes().await {
                    Ok(b) if w % 2 == 0 || b.ends_with(b"data: [DONE]\n\n") => {
                        completed.lock().unwrap().push((id, Instant::now()));
                    }
                    _ => {}
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap(); // SIGKILL on unix: no shutdown code runs.
    child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }

    let store = SqliteStore::open_dir(dir.path()).expect("the store opens cleanly after SIGKILL");
    let logged: HashSet<String> = store
        .exchanges(None, 0, 1_000_000)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.id)
        .collect();
    let completed = completed.lock().unwrap().clone();
    // Every answer received in full: its last byte was sent after its commit, so the log
    // has it, however close to the kill it came.
    let must_have: Vec<&String> = completed.iter().map(|(id, _)| id).collect();
    assert!(
        must_have.len() > 100,
        "the load was real: {} completed",
        completed.len()
    );
    let missing: Vec<&&String> = must_have
        .iter()
        .filter(|id| !logged.contains(**id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} completed exchanges missing after SIGKILL",
        missing.len(),
        must_have.len()
    );
    drop(store);

    // And the gateway starts again on the same store and serves.
    let port = testkit::free_port();
    let mut child = start_gateway(port, &upstream, dir.path());
    wait_healthy(&client, port).await;
    let r = client
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"model": "demo-model", "messages": [{"role": "user", "content": "after restart"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    child.kill().unwrap();
    let _ = child.wait();
}
