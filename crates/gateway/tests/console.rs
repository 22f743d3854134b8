//! The analyst console over real sockets: sign-in with the admin token opens an HttpOnly,
//! SameSite=Strict session; the pages show a flagged account's reasons, score history and
//! actions; a decision recorded from the account page is audited and applied; a form without
//! the session's CSRF token is refused and changes nothing; signing out ends the session.

mod common;

use common::{chat, Harness, ADMIN};
use serde_json::json;
use store::Store;

fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

struct Browser<'a> {
    h: &'a Harness,
    client: reqwest::Client,
    cookie: Option<String>,
}

impl<'a> Browser<'a> {
    /// Signed out, following no redirect (the tests read where they lead).
    fn new(h: &'a Harness) -> Self {
        Browser {
            h,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let mut r = self.client.get(self.h.url(path));
        if let Some(c) = &self.cookie {
            r = r.header("cookie", c);
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str, body: String) -> reqwest::Response {
        let mut r = self
            .client
            .post(self.h.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(c) = &self.cookie {
            r = r.header("cookie", c);
        }
        r.send().await.unwrap()
    }
}

/// A logit-bias sweep (Carlini et al.) from `key` until the gateway refuses it, at most 60
/// calls: the account the detector flags at once.
async fn sweep(h: &Harness, key: &str) {
    for i in 0..60 {
        let body = json!({"model": "demo-model", "messages": [{"role": "user", "content": "The capital of France is"}], "max_tokens": 1, "logit_bias": {(1000 + i * 7).to_string(): 100}});
        if h.post(key, "/v1/chat/completions", body).await.status() != 200 {
            break;
        }
        if i % 10 == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    html[at..at + 64].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_signs_in_reads_a_flagged_account_and_decides_with_a_record() {
    let h = Harness::start(|_| {}).await;
    let harvester = h.key("harvester", None);
    sweep(&h, &harvester).await;
    let customer = h.key("customer", None);
    assert_eq!(
        h.post(&customer, "/v1/chat/completions", chat("hello"))
            .await
            .status(),
        200
    );
    let mut b = Browser::new(&h);

    // Signed out: to the sign-in page, nothing else; a wrong token opens nothing.
    let (status, html) = b.get("/admin/ui/accounts/harvester").await;
    assert_eq!(status, 303);
    assert!(!html.contains("logit_bias"));
    let (status, html) = b.get("/admin/ui/login").await;
    assert_eq!(status, 200);
    assert!(html.contains("Admin token"));
    let r = b.post("/admin/ui/login", form(&[("token", "guess")])).await;
    assert!(r.headers().get("set-cookie").is_none());
    assert!(r.text().await.unwrap().contains("Wrong token"));

    // Signed in: an HttpOnly, SameSite=Strict session cookie.
    let r = b.post("/admin/ui/login", form(&[("token", ADMIN)])).await;
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    b.cookie = Some(set.split(';').next().unwrap().to_owned());

    let (status, overview) = b.get("/admin/ui").await;
    assert_eq!(status, 200);
    assert!(overview.contains("distilling"));
    // Nothing is loaded from anywhere else.
    assert!(!overview.contains("http://") && !overview.contains("https://"));
    let (_, queue) = b.get("/admin/ui/queue").await;
    assert!(queue.contains("/admin/ui/accounts/harvester"));
    assert!(!queue.contains("/admin/ui/accounts/customer"));
    let (_, list) = b.get("/admin/ui/accounts?verdict=distilling").await;
    assert!(list.contains("harvester") && !list.contains(">customer<"));
    let (_, list) = b
        .get("/admin/ui/accounts?action=degrade&sort=account")
        .await;
    assert!(list.contains(">harvester<") && !list.contains(">customer<"));
    let (_, list) = b.get("/admin/ui/accounts?sort=exchanges").await;
    assert!(
        list.find(">harvester<") < list.find(">customer<"),
        "more exchanges first"
    );
    let (_, list) = b.get("/admin/ui/accounts?min_score=0.5").await;
    assert!(list.contains(">harvester<") && !list.contains(">customer<"));
    let (_, list) = b.get("/admin/ui/accounts?min_score=&group=grp-none").await;
    assert!(list.contains("0 accounts") && !list.contains(">harvester<"));
    let (status, account) = b.get("/admin/ui/accounts/harvester").await;
    assert_eq!(status, 200);
    assert!(account.contains("logit_bias_sweep"), "the reasons");
    assert!(
        account.contains("<svg") && account.contains("polyline"),
        "the timeline"
    );
    assert!(
        account.contains("Calls and tokens over time")
            && account.contains("Calls: ")
            && !account.contains("Calls: 0 in all")
            && account.contains("Tokens (prompt and answer): "),
        "calls and tokens over time"
    );
    assert!(
        account.contains("detector"),
        "the detector's action in the history"
    );
    assert!(
        account.contains("The capital of France is"),
        "its latest exchanges, as the log keeps them"
    );
    let csrf = csrf_of(&account);

    // A forged form (no token, or another) is refused and changes nothing.
    for bad in ["", "0000"] {
        let r = b
            .post(
                "/admin/ui/accounts/harvester/decide",
                form(&[("csrf", bad), ("action", "allow"), ("reason", "forged")]),
            )
            .await;
        assert_eq!(r.status(), 403);
    }
    assert!(h.store.overrides().unwrap().is_empty());

    // A decision with the session's token: applied, audited, shown.
    let r = b
        .post(
            "/admin/ui/accounts/harvester/decide",
            form(&[
                ("csrf", &csrf),
                ("action", "block"),
                ("reason", "confirmed logit sweep <script>"),
                ("expires_in_hours", "48"),
            ]),
        )
        .await;
    assert_eq!(r.status(), 303);
    let o = &h.store.overrides().unwrap()[0];
    assert_eq!((o.action.as_str(), o.by.as_str()), ("block", "console"));
    assert!(o.expires_ms.is_some());
    assert_eq!(
        h.post(&harvester, "/v1/chat/completions", chat("hi"))
            .await
            .status(),
        403
    );
    let (_, audit) = b.get("/admin/ui/audit").await;
    assert!(
        audit.contains("confirmed logit sweep &lt;script&gt;"),
        "escaped"
    );
    assert!(!audit.contains("<script>"));
    let (_, account) = b.get("/admin/ui/accounts/harvester").await;
    assert!(account.contains("Override: <strong>block</strong>"));

    // A group: three accounts paying with one card, linked as one actor.
    for m in ["fleet-1", "fleet-2", "fleet-3"] {
        let key = h.key(m, None);
        let r = h
            .admin(
                "POST",
                "/admin/accounts",
                Some(json!({"name": m, "meta": {"payment_fingerprint": "pf_shared_card"}})),
            )
            .await;
        assert!(r.status().is_success());
        for i in 0..3 {
            let r = h
                .post(&key, "/v1/chat/completions", chat(&format!("{m} asks {i}")))
                .await;
            assert_eq!(r.status(), 200);
        }
    }
    let mut groups = String::new();
    for _ in 0..100 {
        groups = b.get("/admin/ui/groups").await.1;
        if groups.contains("/admin/ui/groups/") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let at = groups.find("/admin/ui/groups/").expect("a group listed");
    let cluster: String = groups[at + 17..]
        .chars()
        .take_while(|c| *c != '"')
        .collect();
    let (status, group) = b.get(&format!("/admin/ui/groups/{cluster}")).await;
    assert_eq!(status, 200);
    for m in ["fleet-1", "fleet-2", "fleet-3"] {
        assert!(group.contains(m), "{m} on the group page");
    }
    assert!(group.contains("payment") && group.contains("<svg"));
    // The group as STIX, from the console and from the admin API: a report, the card as an
    // indicator, hashed.
    let (status, bundle) = b.get(&format!("/admin/ui/groups/{cluster}/stix")).await;
    assert_eq!(status, 200);
    let api = h
        .admin(
            "GET",
            &format!("/admin/groups/{cluster}/stix?producer=Example"),
            None,
        )
        .await;
    assert_eq!(api.status(), 200);
    let api: serde_json::Value = api.json().await.unwrap();
    for text in [bundle.clone(), api.to_string()] {
        assert!(
            text.contains("\"report\"") && text.contains("x-distillguard-payment"),
            "{text}"
        );
        assert!(!text.contains("pf_shared_card") && !text.contains("fleet-1"));
    }
    let r = h.admin("GET", "/admin/groups/no-such/stix", None).await;
    assert_eq!(r.status(), 404);
    let csrf = csrf_of(&group);
    let r = b
        .post(
            &format!("/admin/ui/groups/{cluster}/decide"),
            form(&[
                ("csrf", &csrf),
                ("action", "watch"),
                ("reason", "one card, three accounts"),
            ]),
        )
        .await;
    assert_eq!(r.status(), 303);
    let watched: Vec<String> = h
        .store
        .overrides()
        .unwrap()
        .into_iter()
        .filter(|o| o.action == "watch")
        .map(|o| o.account)
        .collect();
    assert_eq!(watched.len(), 3, "{watched:?}");

    // Signed out: the session is gone.
    let r = b.post("/admin/ui/logout", form(&[("csrf", &csrf)])).await;
    assert_eq!(r.status(), 303);
    let (status, _) = b.get("/admin/ui").await;
    assert_eq!(status, 303);
    h.gw.shutdown().await;
}

/// The same console in a real browser (Playwright driving Debian's Chromium), screenshots of
/// every page kept under `out/console/`. Needs `pip install playwright` and `apt-get install
/// chromium`; without them the test says so and passes, unless
/// DISTILLGUARD_REQUIRE_BROWSER_TEST=1 (CI sets it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_real_browser() {
    let chromium = std::env::var("DG_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let have_browser = std::path::Path::new(&chromium).exists();
    if !have_browser
        || !testkit::python_module_or_skip(
            "playwright",
            "DISTILLGUARD_REQUIRE_BROWSER_TEST",
            "pip install playwright; apt-get install chromium",
        )
    {
        assert!(
            std::env::var_os("DISTILLGUARD_REQUIRE_BROWSER_TEST").is_none(),
            "no browser at {chromium}: apt-get install chromium"
        );
        eprintln!("SKIPPED: no browser at {chromium} (apt-get install chromium)");
        return;
    }
    let h = Harness::start(|_| {}).await;
    let harvester = h.key("harvester", None);
    sweep(&h, &harvester).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/console_browser.py");
    let out_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../out/console");
    let url = h.url("");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .env("DG_URL", url)
            .env("DG_TOKEN", ADMIN)
            .env("DG_FLAGGED", "harvester")
            .env("DG_OUT", out_dir)
            .env("DG_CHROMIUM", chromium)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("OK"),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let throttle = h.store.overrides().unwrap();
    assert_eq!(throttle.len(), 1);
    assert_eq!(throttle[0].action, "throttle");
    for shot in [
        "overview", "queue", "accounts", "account", "groups", "audit",
    ] {
        let path = format!(
            "{}/{shot}.png",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../out/console")
        );
        assert!(
            std::fs::metadata(&path).is_ok_and(|m| m.len() > 1000),
            "{path}"
        );
    }
    h.gw.shutdown().await;
}

/// The evidence page lists the probe reports of the evidence folder and shows one; a name
/// that is not a report of that folder is a 404, never a path read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_reports_are_listed_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    let report = json!({
        "suspect": "https://api.suspect.example/v1", "prompts": 5, "tokens": 748,
        "level_per_key": 5e-4, "method": "radioactivity",
        "verdict": "the suspect's text carries the mark of acme",
        "keys": [
            {"account": "acme", "key_id": "wm1-0123456789abcdef", "scored": 679, "green": 381, "p_value": 1.6e-66, "marked": true},
            {"account": "globex", "key_id": "wm1-fedcba9876543210", "scored": 679, "green": 175, "p_value": 0.33, "marked": false},
        ],
        "controls": [{"key_id": "wm1-00000000000000aa", "scored": 679, "green": 170, "p_value": 0.5}],
    });
    std::fs::write(dir.path().join("reseller.json"), report.to_string()).unwrap();
    std::fs::write(dir.path().join("notes.json"), "{\"not\": \"a report\"}").unwrap();
    let evidence_dir = dir.path().to_owned();
    let h = Harness::start(|c| c.evidence_dir = Some(evidence_dir)).await;
    let mut b = Browser::new(&h);
    let (status, _) = b.get("/admin/ui/evidence").await;
    assert_eq!(status, 303, "signed out: no evidence");
    let r = b.post("/admin/ui/login", form(&[("token", ADMIN)])).await;
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    b.cookie = Some(set.split(';').next().unwrap().to_owned());

    let (status, list) = b.get("/admin/ui/evidence").await;
    assert_eq!(status, 200);
    assert!(list.contains("/admin/ui/evidence/reseller.json") && list.contains("acme, globex"));
    assert!(!list.contains("notes.json"));
    let (status, one) = b.get("/admin/ui/evidence/reseller.json").await;
    assert_eq!(status, 200);
    assert!(one.contains("1.600e-66") && one.contains("control 1") && one.contains("marked"));
    for bad in ["notes.json", "..%2Fsecret.json", "missing.json"] {
        let (status, _) = b.get(&format!("/admin/ui/evidence/{bad}")).await;
        assert_eq!(status, 404, "{bad}");
    }
    let (_, overview) = b.get("/admin/ui").await;
    assert!(overview.contains("flagged in the 24 hours before the latest flag"));
    h.gw.shutdown().await;
}
