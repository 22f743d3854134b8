//! `evidence detect` refuses what it cannot stand behind before it reads any text: no master
//! secret, a secret too short to key anything, a logged watermark name it cannot read. These
//! run without the model and without the `engine` feature.

mod common;

use std::process::Command;

fn detect(args: &[&str], secret: Option<&str>) -> (bool, String) {
    let mut c = Command::new(common::BIN);
    c.args(["evidence", "detect"]).args(args).arg("-");
    c.env_remove("DISTILLGUARD_WATERMARK_SECRET");
    if let Some(s) = secret {
        c.env("DISTILLGUARD_WATERMARK_SECRET", s);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn detect_without_a_usable_key_or_mark_says_why() {
    let (ok, err) = detect(&["--account", "acme"], None);
    assert!(
        !ok && err.contains("DISTILLGUARD_WATERMARK_SECRET"),
        "{err}"
    );
    let (ok, err) = detect(&["--account", "acme"], Some("short"));
    assert!(!ok && err.contains("at least 16 bytes"), "{err}");
    let secret = Some("a master secret long enough");
    let (ok, err) = detect(&["--watermark", "wm1-00; scheme=rot13; context=1"], secret);
    assert!(!ok && err.contains("unknown scheme"), "{err}");
    let (ok, err) = detect(&["--watermark", "acme; scheme=kgw"], secret);
    assert!(!ok && err.contains("key id"), "{err}");
}
