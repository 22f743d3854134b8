//! The harness the gateway's integration tests share: a gateway on a fresh SQLite store in
//! front of the demo upstream (or another), over real sockets.
#![allow(dead_code)] // each test binary uses its own part of it

use std::sync::Arc;
use std::time::Duration;

use gateway::{Gateway, GatewayConfig, Running, Upstream};
use serde_json::{json, Value};
use store::{Limits, SqliteStore, Store};

pub const ADMIN: &str = "test-admin-token";

pub struct Harness {
    pub gw: Running,
    pub store: Arc<SqliteStore>,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start(tweak: impl FnOnce(&mut GatewayConfig)) -> Self {
        let upstream = standin::spawn("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open_dir(dir.path()).unwrap());
        let mut config = GatewayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data: dir.path().to_owned(),
            ..GatewayConfig::default()
        };
        config.upstreams.push(Upstream {
            base_url: format!("http://{upstream}/v1"),
            api_key: Some("upstream-secret".into()),
            models: vec![],
            timeout_secs: 30,
            watermarks: false,
        });
        tweak(&mut config);
        let gw = Gateway::start(config, store.clone(), Some(ADMIN.into()))
            .await
            .unwrap();
        Harness {
            gw,
            store,
            client: reqwest::Client::new(),
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.gw.addr, path)
    }

    pub fn key(&self, account: &str, limits: Option<Limits>) -> String {
        self.store.upsert_account(account, limits, 0).unwrap();
        self.store.create_key(account, 0).unwrap().secret
    }

    pub async fn post(&self, key: &str, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// `POST /admin/accounts` with the admin token.
    pub async fn post_account(&self, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/admin/accounts"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// An admin call (`method` on `path`, with the admin token and, when given, a JSON body).
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> reqwest::Response {
        let req = self
            .client
            .request(method.parse().unwrap(), self.url(path))
            .bearer_auth(ADMIN);
        match body {
            Some(b) => req.json(&b),
            None => req,
        }
        .send()
        .await
        .unwrap()
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until the log holds `n` exchanges of `account` (the tap is asynchronous).
    pub async fn logged(&self, account: &str, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let rows = self.store.exchanges(Some(account), 0, 10_000).unwrap();
            if rows.len() >= n {
                return rows
                    .into_iter()
                    .map(|(_, e)| serde_json::from_str(&e.line).unwrap())
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("exchanges of {account} were not logged");
    }
}

pub fn chat(text: &str) -> Value {
    json!({"model": "demo-model", "messages": [{"role": "user", "content": text}], "max_tokens": 50})
}
