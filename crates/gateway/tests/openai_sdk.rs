//! The official `openai` Python SDK works through the gateway unmodified (chat streamed and
//! not, completions, embeddings, models, the Responses API plain and streamed, errors). Needs
//! `python3` with `pip install openai`; without it the test says so and passes, unless
//! DISTILLGUARD_REQUIRE_SDK_TEST=1 (CI sets it).

mod common;

use std::process::Command;

use common::Harness;
use store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_sdk_works_through_the_gateway() {
    if !testkit::python_module_or_skip(
        "openai",
        "DISTILLGUARD_REQUIRE_SDK_TEST",
        "pip install openai",
    ) {
        return;
    }
    let h = Harness::start(|_| {}).await;
    let key = h.key("sdk-user", None);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_sdk_check.py");
    let base = h.url("/v1");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .env("DG_BASE_URL", base)
            .env("DG_API_KEY", key)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    // Every generation call was logged (model listing is not an exchange; the bad key was
    // refused before anything else).
    let Harness { gw, store, .. } = h;
    gw.shutdown().await;
    assert_eq!(store.exchanges(Some("sdk-user"), 0, 100).unwrap().len(), 7);
}
