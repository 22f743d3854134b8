//! `distillguard scan` on bad input: every bad line is counted and reported with its number,
//! the scan goes on, and the exit code says what happened.

use std::io::Write;
use std::process::{Command, Output};

use flate2::write::GzEncoder;

const GOOD: &str = r#"{"id":"r1","ts":"2026-03-01T12:00:00.000Z","account":"a1","endpoint":"/v1/chat/completions","status":200,"request":{"model":"m","messages":[{"role":"user","content":"hi"}]},"response":{"choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}}"#;

fn scan(args: &[&str], input: &[u8]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    std::fs::write(&path, input).unwrap();
    Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .arg("scan")
        .args(args)
        .arg(&path)
        .output()
        .unwrap()
}

fn good(id: &str, account: &str) -> String {
    GOOD.replace("\"r1\"", &format!("\"{id}\""))
        .replace("\"a1\"", &format!("\"{account}\""))
}

#[test]
fn bad_lines_are_counted_by_kind_with_line_numbers_and_the_scan_goes_on() {
    let mut log = Vec::new();
    log.extend_from_slice(format!("{}\n", good("r1", "a1")).as_bytes());
    log.extend_from_slice(b"{\"id\":\"r2\",\"ts\":\"2026-03-01T12:00:01Z\",\"acc\n"); // truncated
    log.extend_from_slice(b"this is not json\n");
    log.extend_from_slice(b"{\"id\":\"r3\",\"ts\":\"2026-03-01T12:00:02Z\",\"account\":\"a2\",\"endpoint\":\"/v1/chat/completions\",\"status\":\"ok\",\"request\":{}}\n"); // wrong type
    log.extend_from_slice(b"{\"id\":\"r4\",\"ts\":\"2026-03-01T12:00:03Z\",\"endpoint\":\"/v1/chat/completions\",\"status\":200,\"request\":{}}\n"); // missing account
    log.extend_from_slice(b"{\"id\":\"r5\",\"ts\":\"yesterday\",\"account\":\"a2\",\"endpoint\":\"/x\",\"status\":200,\"request\":{}}\n"); // bad timestamp
    log.extend_from_slice(b"{\"id\":\"\xff\xfe\"}\n"); // invalid UTF-8
    log.extend_from_slice(format!("{}\n", good("r6", "a3")).as_bytes());
    let out = scan(&["--json"], &log);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad lines: 6"), "{stderr}");
    for expected in [
        "line 2: truncated",
        "line 3: invalid_json",
        "line 4: wrong_type",
        "line 5: missing_field",
        "line 6: wrong_type",
        "line 7: invalid_utf8",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in {stderr}"
        );
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    let accounts: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = accounts
        .iter()
        .map(|a| a["account"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{stdout}");
    assert!(names.contains(&"a1") && names.contains(&"a3"));
}

#[test]
fn strict_mode_stops_at_the_first_bad_line_with_exit_4() {
    let log = format!("{}\nnot json\n{}\n", good("r1", "a1"), good("r2", "a2"));
    let out = scan(&["--strict", "--json"], log.as_bytes());
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped at line 2: invalid_json"));
}

#[test]
fn a_line_over_the_limit_is_skipped_without_loading_it() {
    // A 20 MB line between two good ones, against the default 16 MiB limit.
    let mut log = format!("{}\n", good("r1", "a1")).into_bytes();
    log.extend_from_slice(b"{\"id\":\"");
    log.extend(std::iter::repeat_n(b'x', 20 << 20));
    log.extend_from_slice(b"\"}\n");
    log.extend_from_slice(format!("{}\n", good("r2", "a2")).as_bytes());
    let out = scan(&["--json"], &log);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 2: too_long"), "{stderr}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2);
}

#[test]
fn an_empty_file_scans_to_nothing() {
    let out = scan(&["--json"], b"");
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad lines: 0"));
}

#[test]
fn gzip_is_read_and_a_cut_gzip_reports_exit_3_after_printing_what_it_read() {
    let mut plain = String::new();
    for i in 0..2000 {
        plain.push_str(&good(&format!("r{i}"), &format!("a{}", i % 7)));
        plain.push('\n');
    }
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(plain.as_bytes()).unwrap();
    let gz = enc.finish().unwrap();

    let whole = scan(&["--json"], &gz);
    assert_eq!(whole.status.code(), Some(0));
    assert_eq!(String::from_utf8(whole.stdout).unwrap().lines().count(), 7);

    let cut = scan(&["--json"], &gz[..gz.len() / 2]);
    assert_eq!(
        cut.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&cut.stderr)
    );
    assert!(String::from_utf8_lossy(&cut.stderr).contains("read error"));
    assert!(
        !cut.stdout.is_empty(),
        "verdicts for what was read are still printed"
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_distillguard"))
        .args(["scan", "/nonexistent/log.jsonl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("opening /nonexistent/log.jsonl"));
}

/// What an imported source never records is said once, not invented: a LiteLLM log has no
/// user agent and no account facts; the exchange log here has no address, key or facts.
#[test]
fn fields_a_source_never_records_are_said_once() {
    let ex = exchange::parse_line(good("r1", "a1").as_bytes()).unwrap();
    let litellm = format!("{}\n", exchange::litellm::payload_of(&ex));
    let out = scan(&["--format", "litellm"], litellm.as_bytes());
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let said: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("not in this source"))
        .collect();
    assert_eq!(said.len(), 1, "{err}");
    assert!(said[0].contains("user agent") && said[0].contains("account facts"));
    assert!(!said[0].contains("prompt text") && !said[0].contains("token usage"));
}
