//! The engine on the real model file. Skipped, saying so, when the file is absent (run
//! `scripts/fetch-model.sh`); CI fetches it and sets `DISTILLGUARD_REQUIRE_MODEL=1`, which
//! turns the skip into a failure.

use engine::{generate, Model, Params};
use watermark::{detect, Master, Scheme, Watermark};

fn ask(question: &str) -> String {
    engine::chat_prompt(&[("user".into(), question.into())])
}

#[test]
fn the_tokenizer_reads_text_and_the_chat_template_as_the_model_was_trained() {
    let Some(path) = testkit::model_file() else {
        return;
    };
    let t = engine::load_tokenizer(&path).unwrap();
    assert_eq!(t.vocab_size(), 49_152);
    for text in [
        "Hello, world! 1234",
        "naïve café ✓\n\ttabs",
        "  two  spaces",
    ] {
        assert_eq!(t.decode(&t.encode(text)), text);
    }
    // Common words are one token each; special tokens are matched whole.
    assert_eq!(t.encode("Hello").len(), 1);
    assert_eq!(t.encode(" the").len(), 1);
    let ids = t.encode("<|im_start|>user\nHi<|im_end|>");
    assert_eq!(ids[0], t.id("<|im_start|>").unwrap());
    assert_eq!(*ids.last().unwrap(), t.id("<|im_end|>").unwrap());
    // Digits one by one, as the model's pre-tokenizer splits them.
    assert_eq!(t.encode("2024").len(), 4);
}

#[test]
fn the_model_answers_the_same_for_the_same_seed_and_its_mark_is_found_with_its_key_only() {
    let Some(path) = testkit::model_file() else {
        return;
    };
    let mut model = Model::load(&path).unwrap();
    let prompt = model.tokenizer.encode(&ask("What is 2+2?"));
    let greedy = Params {
        max_tokens: 24,
        min_tokens: 0,
        temperature: 0.0,
        top_p: 1.0,
        seed: 1,
        logprobs: Some(2),
    };
    let a = generate(&mut model, &prompt, &greedy, None, |_, _| true).unwrap();
    let b = generate(&mut model, &prompt, &greedy, None, |_, _| true).unwrap();
    assert_eq!(a.text, b.text);
    assert!(a.text.contains('4'), "{}", a.text);
    assert_eq!(a.logprobs.len(), a.tokens.len());
    assert!(a
        .logprobs
        .iter()
        .all(|l| l.logprob <= 0.0 && l.top.len() == 2));

    // A long marked answer: found with the account's key, not with another's.
    let master = Master::new(b"the engine test's master secret").unwrap();
    let scheme = Scheme::Kgw {
        gamma: 0.25,
        delta: 2.0,
    };
    let mark = Watermark::new(master.key_for("acme"), scheme, 1).unwrap();
    let other = Watermark::new(master.key_for("globex"), scheme, 1).unwrap();
    let prompt = model.tokenizer.encode(&ask(
        "Write a long story about a lighthouse keeper and a storm.",
    ));
    let sample = Params {
        max_tokens: 200,
        min_tokens: 0,
        temperature: 1.0,
        top_p: 1.0,
        seed: 7,
        logprobs: None,
    };
    let marked = generate(&mut model, &prompt, &sample, Some(&mark), |_, _| true).unwrap();
    // The detector reads the text, as a stranger would, through the model's tokenizer.
    let tokens = model.tokenizer.encode(&marked.text);
    let found = detect(&mark, &tokens, 50);
    let not = detect(&other, &tokens, 50);
    assert!(found.p_value.unwrap() < 1e-4, "{found:?}\n{}", marked.text);
    assert!(not.p_value.unwrap() > 1e-3, "{not:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_speaks_the_openai_api_and_names_the_key_it_marked_with() {
    let Some(path) = testkit::model_file() else {
        return;
    };
    let model = Model::load(&path).unwrap();
    let mark = engine::MarkConfig {
        master: Master::new(b"the engine test's master secret").unwrap(),
        scheme: Scheme::Kgw {
            gamma: 0.25,
            delta: 2.0,
        },
        context: 1,
        degrade_delta: 4.0,
    };
    let e = std::sync::Arc::new(engine::Engine::new(model, Some(mark.clone())));
    let addr = engine::spawn(e, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("http://{addr}/v1/chat/completions");
    let client = reqwest::Client::new();
    let body = serde_json::json!({
        "model": "smollm2", "max_tokens": 12, "temperature": 0, "seed": 3, "logprobs": true,
        "top_logprobs": 2, "messages": [{"role": "user", "content": "What is 2+2?"}],
    });
    let resp = client
        .post(&url)
        .header("x-distillguard-account", "acme")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let named = resp.headers()["x-distillguard-watermark"]
        .to_str()
        .unwrap()
        .to_owned();
    let id = mark.master.key_for("acme").id().to_string();
    assert!(
        named.starts_with(&id) && named.contains("scheme=kgw"),
        "{named}"
    );
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert!(!v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .is_empty());
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
    assert_eq!(
        v["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Under `degrade` the mark is stronger; without an account the answer is not marked.
    let degraded = client
        .post(&url)
        .header("x-distillguard-account", "acme")
        .header("x-distillguard-action", "degrade")
        .json(&body)
        .send()
        .await
        .unwrap();
    let named = degraded.headers()["x-distillguard-watermark"]
        .to_str()
        .unwrap();
    assert!(named.contains("delta=4"), "{named}");
    let plain = client.post(&url).json(&body).send().await.unwrap();
    assert!(plain.headers().get("x-distillguard-watermark").is_none());

    // Streamed: chunks of text, a last chunk with the finish reason and usage, then [DONE].
    let mut streamed = body.clone();
    streamed["stream"] = serde_json::json!(true);
    streamed["stream_options"] = serde_json::json!({"include_usage": true});
    let text = client
        .post(&url)
        .json(&streamed)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    let last: serde_json::Value = serde_json::from_str(events[events.len() - 2]).unwrap();
    assert!(last["choices"][0]["finish_reason"].is_string());
    assert!(last["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let said: String = events[..events.len() - 1]
        .iter()
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(said.contains('4'), "{said}");

    // A bad request is an OpenAI-shaped error.
    let bad = client
        .post(&url)
        .json(&serde_json::json!({"messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let e: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(e["error"]["type"], "invalid_request_error");

    // The admin endpoint is off without an admin token, whatever is presented.
    let question = serde_json::json!({"text": "some text", "account": "acme"});
    let off = client
        .post(format!("http://{addr}/admin/watermark/detect"))
        .bearer_auth("anything")
        .json(&question)
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 403);
    // With a token but no master secret there is no key to test.
    let unmarked = engine::Engine::new(Model::load(&path).unwrap(), None)
        .with_admin_token(Some("admin".into()));
    let addr = engine::spawn(
        std::sync::Arc::new(unmarked),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let keyless = client
        .post(format!("http://{addr}/admin/watermark/detect"))
        .bearer_auth("admin")
        .json(&question)
        .send()
        .await
        .unwrap();
    assert_eq!(keyless.status(), 409);
    let e: serde_json::Value = keyless.json().await.unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no master secret"),
        "{e}"
    );
}
