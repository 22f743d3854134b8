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
}
