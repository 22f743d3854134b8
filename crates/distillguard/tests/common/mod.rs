//! What several of this crate's integration tests do with the binary. (Each test file is a
//! crate of its own and uses part of this, so the rest is dead code there.)
#![allow(dead_code)]

use std::process::Command;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_distillguard");

/// Runs `command`, which must succeed (its error output is the failure message); its
/// standard output.
pub fn run_ok(command: &mut Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a `keys create` command; the new key, printed on its output's last line.
pub fn new_key(command: &mut Command) -> String {
    run_ok(command).lines().last().unwrap().trim().to_owned()
}
