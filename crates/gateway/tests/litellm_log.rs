//! LiteLLM's own logs read as exchanges: the real `litellm` package (SDK mode, the gateway as
//! its upstream) writes its `standard_logging_object` for each call, and every line maps onto
//! the exchange the gateway logged for the same call. Needs `python3` with
//! `pip install litellm==1.110.2`; without it the test says so and passes, unless
//! DISTILLGUARD_REQUIRE_LITELLM_TEST=1 (CI sets it).

mod common;

use std::process::Command;

use common::Harness;
use exchange::{litellm::AccountFields, Format};
use store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_payloads_read_as_the_exchanges_the_gateway_logged() {
    if !testkit::python_module_or_skip(
        "litellm",
        "DISTILLGUARD_REQUIRE_LITELLM_TEST",
        "pip install litellm==1.110.2",
    ) {
        return;
    }
    let h = Harness::start(|_| {}).await;
    let key = h.key("via-litellm", None);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("litellm.jsonl");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/litellm_log.py");
    let (base, path) = (h.url("/v1"), log.clone());
    let out = tokio::task::spawn_blocking(move || {
        testkit::litellm_writer(Command::new("python3").arg(script))
            .env("DG_BASE_URL", base)
            .env("DG_API_KEY", key)
            .env("DG_OUT", path)
            .env("DG_CALLS", "6")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("OK 6"),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let Harness { gw, store, .. } = h;
    gw.shutdown().await;
    let logged = store.exchanges(Some("via-litellm"), 0, 100).unwrap();
    assert_eq!(logged.len(), 6);

    let text = std::fs::read_to_string(&log).unwrap();
    let format = Format::LiteLlm(AccountFields::default());
    let mut read = Vec::new();
    for line in text.lines() {
        assert!(exchange::litellm::looks_like(line.as_bytes()), "{line}");
        format.parse_each(line.as_bytes(), |r| {
            read.push(r.unwrap_or_else(|e| panic!("{e:?}: {line}")));
        });
    }
    assert_eq!(read.len(), 6);
    for ex in &read {
        assert_eq!(ex.account, "team-litellm");
        assert_eq!(ex.key.as_deref(), Some("hashed-virtual-key"));
        assert_eq!(ex.ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(ex.endpoint, "/v1/chat/completions");
        assert_eq!(ex.status, 200);
        assert_eq!(ex.request.max_tokens, Some(256));
        // The prompt LiteLLM recorded is the one the gateway saw, answered alike.
        let prompt = ex.request.messages.as_ref().unwrap()[0]
            .content
            .as_str()
            .to_owned();
        let seen = logged
            .iter()
            .map(|(_, row)| exchange::parse_line(row.line.as_bytes()).unwrap())
            .find(|g| g.request.messages.as_ref().unwrap()[0].content.as_str() == prompt.as_str())
            .unwrap_or_else(|| panic!("the gateway logged no call asking {prompt:?}"));
        let (ours, theirs) = (
            ex.response.as_ref().unwrap(),
            seen.response.as_ref().unwrap(),
        );
        assert_eq!(
            ours.choices[0].message.as_ref().map(|m| m.content.as_str()),
            theirs.choices[0]
                .message
                .as_ref()
                .map(|m| m.content.as_str())
        );
        assert!(ours.usage.as_ref().unwrap().completion_tokens > 0);
    }
}
