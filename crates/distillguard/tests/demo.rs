//! The README's first command on a fresh clone: `distillguard demo` run where no
//! `../shared/data` exists takes the built-in sample corpus and goes end to end (gateway,
//! simulated customers over HTTP, verdicts, export and an offline scan that agrees).

mod common;

use std::process::Command;

#[test]
fn the_demo_runs_end_to_end_without_the_shared_corpora() {
    // A folder with no ../shared/data beside it.
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("clone");
    std::fs::create_dir(&cwd).unwrap();
    assert!(!cwd.join("../shared/data").exists());
    let out = common::run_ok(
        Command::new(common::BIN)
            .current_dir(&cwd)
            .args(["demo", "--accounts", "12", "--per-account", "25", "--out"])
            .arg(dir.path().join("out")),
    );
    assert!(out.contains("built-in sample corpus"), "{out}");
    // The demo shows the detector acting: harvesters beyond the logit-bias sweep (which is
    // acted on at once) are degraded, though their traffic arrives in seconds.
    let degraded = out
        .lines()
        .filter(|l| l.contains(" distilling ") && l.contains(" degrade "))
        .count();
    assert!(degraded >= 3, "{out}");
    let agree = out
        .lines()
        .find(|l| l.contains("agrees with the gateway on"))
        .unwrap_or_else(|| panic!("no offline scan in: {out}"));
    // "… agrees with the gateway on N of N accounts"
    let words: Vec<&str> = agree.split_whitespace().collect();
    let on = words.iter().position(|w| *w == "on").unwrap();
    assert_eq!(words[on + 1], words[on + 3], "{agree}");
    assert!(words[on + 1].parse::<usize>().unwrap() > 12, "{agree}");
    // Each simulated customer's own address reaches the log (through the trusted loopback
    // proxy), not the demo's 127.0.0.1 for all of them: the links read addresses.
    let log = std::fs::read_to_string(dir.path().join("out/exchanges.jsonl")).unwrap();
    let addresses: std::collections::HashSet<String> = log
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["ip"].as_str().map(str::to_owned)
        })
        .collect();
    assert!(addresses.len() > 12, "{addresses:?}");
    assert!(!addresses.contains("127.0.0.1"), "{addresses:?}");
}

#[test]
fn demo_keep_serving_leaves_the_console_up_until_interrupted_then_finishes() {
    use std::io::{BufRead, BufReader, Read};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(common::BIN)
        .args([
            "demo",
            "--keep-serving",
            "--accounts",
            "8",
            "--per-account",
            "15",
            "--out",
        ])
        .arg(dir.path().join("out"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let (mut url, mut token) = (None, None);
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap() > 0 {
        if let Some(u) = line.trim().strip_prefix("== the analyst console: ") {
            url = Some(u.to_owned());
        }
        if let Some(t) = line.trim().strip_prefix("sign in with the token ") {
            token = Some(t.to_owned());
            break;
        }
        line.clear();
    }
    let (url, token) = (url.expect("the console's URL"), token.expect("a token"));
    // The console is up: the sign-in page answers, and the token opens a session.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let login = url.replace("/admin/ui", "/admin/ui/login");
        assert_eq!(client.get(&login).send().await.unwrap().status(), 200);
        client
            .post(&login)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 303);
    // Interrupted, it goes on to the offline scan and exits by itself.
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert!(rest.contains("agrees with the gateway on"), "{rest}");
}
