//! The analyst console: `/admin/ui`, server-rendered HTML on the admin API.
//!
//! Trust-and-safety analysts decide on an account within a minute: what it did over time, why
//! it is flagged, what was done and by whom, then act with a record. The pages read what the
//! admin API reads (the same handlers) and act through the same decisions, so a change made
//! here is audited and pushed to every replica exactly as an API call is.
//!
//! Security: sign-in with the admin token (compared in constant time) opens a session kept in
//! memory, carried by an `HttpOnly`, `SameSite=Strict` cookie scoped to `/admin/ui`; every form
//! that changes something carries the session's CSRF token and is refused without it. Pages
//! load nothing from anywhere else (the style is inline; charts are SVG drawn here), and all
//! text is escaped by construction (maud).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use parking_lot::Mutex;
use rand::Rng;
use serde::Deserialize;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::admin;
use crate::error::{JsonBody, QueryArgs};
use crate::AppState;

const COOKIE: &str = "dg_console";
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
const PAGE: usize = 50;

/// Signed-in sessions: id to (CSRF token, expiry). In memory: a restart signs everyone out.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, (String, Instant)>>,
}

fn random_hex() -> String {
    let bytes: [u8; 32] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    fn open(&self) -> (String, String) {
        let (id, csrf) = (random_hex(), random_hex());
        let mut s = self.inner.lock();
        let now = Instant::now();
        s.retain(|_, (_, until)| *until > now);
        s.insert(id.clone(), (csrf.clone(), now + SESSION_TTL));
        (id, csrf)
    }

    /// The session's CSRF token, when the request carries a live session.
    fn csrf(&self, headers: &HeaderMap) -> Option<String> {
        let id = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                c.trim()
                    .strip_prefix(&format!("{COOKIE}="))
                    .map(str::to_owned)
            })?;
        let s = self.inner.lock();
        s.get(&id)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(csrf, _)| csrf.clone())
    }

    /// Ends the session whose CSRF token this is.
    fn close(&self, signed: &Signed) {
        self.inner.lock().retain(|_, (c, _)| *c != signed.0);
    }
}

/// The console's style, inline in every page (and in `scan --html`'s report): nothing is
/// fetched from anywhere else.
pub const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1a1a1a;background:#fafafa}\
nav{background:#1f2937;padding:.6rem 1rem;display:flex;gap:1rem;align-items:center}\
nav a{color:#f9fafb;text-decoration:none;font-weight:600}nav a:focus,nav a:hover{text-decoration:underline}\
nav form{margin-left:auto}main{padding:1rem 1.5rem;max-width:1100px}\
table{border-collapse:collapse;width:100%;background:#fff}th,td{border-bottom:1px solid #d1d5db;padding:.35rem .5rem;text-align:left;vertical-align:top}\
.distilling{color:#991b1b;font-weight:700}.suspicious{color:#92400e;font-weight:700}.benign{color:#065f46}\
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{background:#fff;border:1px solid #d1d5db;padding:.6rem 1rem;min-width:9rem}\
.card b{display:block;font-size:1.6rem}label{display:block;margin:.4rem 0 .1rem}\
input,select,textarea,button{font:inherit}button{background:#1f2937;color:#fff;border:0;padding:.35rem .8rem;cursor:pointer}\
.error{color:#991b1b;font-weight:600}";

fn page(title: &str, csrf: Option<&str>, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " - distillguard" }
                    // No favicon to fetch: the page loads nothing beyond itself.
                    link rel="icon" href="data:,";
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    @if let Some(csrf) = csrf {
                        nav aria-label="Console" {
                            a href="/admin/ui" { "Overview" }
                            a href="/admin/ui/queue" { "Review queue" }
                            a href="/admin/ui/accounts" { "Accounts" }
                            a href="/admin/ui/groups" { "Groups" }
                            a href="/admin/ui/audit" { "Audit log" }
                            a href="/admin/ui/evidence" { "Evidence" }
                            form method="post" action="/admin/ui/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                    main { h1 { (title) } (body) }
                }
            }
        }
        .into_string(),
    )
}

fn sign_in(message: Option<&str>) -> Html<String> {
    page(
        "Sign in",
        None,
        html! {
            @if let Some(m) = message { p.error role="alert" { (m) } }
            form method="post" action="/admin/ui/login" {
                label for="token" { "Admin token" }
                input id="token" name="token" type="password" autocomplete="current-password" required;
                " " button type="submit" { "Sign in" }
            }
        },
    )
}

fn forbidden(why: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        page("Refused", None, html! { p.error role="alert" { (why) } }),
    )
        .into_response()
}

/// Why a request gets no page.
pub enum Refusal {
    /// No admin token is set: no console.
    Off,
    /// No live session: the sign-in page.
    SignedOut,
    /// A form without the session's CSRF token.
    Forged,
    /// An expiry that is not a number.
    NotANumber,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Off => (
                StatusCode::NOT_FOUND,
                "the console is off: DISTILLGUARD_ADMIN_TOKEN is not set",
            )
                .into_response(),
            Refusal::SignedOut => Redirect::to("/admin/ui/login").into_response(),
            Refusal::NotANumber => (
                StatusCode::BAD_REQUEST,
                page(
                    "Refused",
                    None,
                    html! { p.error role="alert" { "Expires in hours must be a number; nothing was changed." } },
                ),
            )
                .into_response(),
            Refusal::Forged => forbidden(
                "This form did not come from your console session (missing or wrong CSRF token); nothing was changed.",
            ),
        }
    }
}

/// A signed-in request, carrying its session's CSRF token: the extractor every page and form
/// takes, so none of them can forget the check. Without a live session the request gets the
/// sign-in page instead.
pub struct Signed(String);

impl axum::extract::FromRequestParts<Arc<AppState>> for Signed {
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Refusal> {
        if state.admin_token.is_none() {
            return Err(Refusal::Off);
        }
        state
            .console
            .csrf(&parts.headers)
            .map(Signed)
            .ok_or(Refusal::SignedOut)
    }
}

impl Signed {
    /// A state-changing form must carry this session's CSRF token.
    fn check(&self, sent: &str) -> Result<(), Refusal> {
        if bool::from(self.0.as_bytes().ct_eq(sent.as_bytes())) {
            Ok(())
        } else {
            Err(Refusal::Forged)
        }
    }
}

/// The form that records a decision ([`DecideForm`]): one of `actions`, a required reason,
/// an optional expiry, and the session's CSRF token.
fn decision_form(action_url: &str, csrf: &str, actions: &[&str], reason_label: &str) -> Markup {
    html! {
        form method="post" action=(action_url) {
            input type="hidden" name="csrf" value=(csrf);
            label for="action" { "Action" }
            select id="action" name="action" {
                @for a in actions { option value=(a) { (a) } }
            }
            label for="reason" { (reason_label) }
            textarea id="reason" name="reason" rows="2" cols="60" required {}
            label for="expires_in_hours" { "Expires in hours (optional)" }
            input id="expires_in_hours" name="expires_in_hours" type="number" min="0" step="any";
            p { button type="submit" { "Record the decision" } }
        }
    }
}

fn verdict_class(v: &str) -> &'static str {
    match v {
        "distilling" => "distilling",
        "suspicious" => "suspicious",
        _ => "benign",
    }
}

async fn accounts(state: &Arc<AppState>) -> Vec<admin::Listed> {
    admin::listed_accounts(state).await.unwrap_or_default()
}

async fn audit_rows(state: &Arc<AppState>, account: Option<String>, limit: usize) -> Vec<Value> {
    match admin::audit(
        State(state.clone()),
        QueryArgs(admin::LimitQuery::new(account, limit)),
    )
    .await
    {
        Ok(axum::Json(v)) => v["audit"].as_array().cloned().unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

fn audit_table(rows: &[Value]) -> Markup {
    html! {
        table {
            thead { tr { th scope="col" { "When" } th scope="col" { "Account" } th scope="col" { "Action" } th scope="col" { "By" } th scope="col" { "Why" } } }
            tbody {
                @for r in rows {
                    tr {
                        td { (r["ts"].as_str().unwrap_or_default()) }
                        td { a href={ "/admin/ui/accounts/" (r["account"].as_str().unwrap_or_default()) } { (r["account"].as_str().unwrap_or_default()) } }
                        td { (r["action"].as_str().unwrap_or_default()) }
                        td { (r["actor"].as_str().unwrap_or_default()) }
                        td { (r["reason"].as_str().unwrap_or_default()) }
                    }
                }
            }
        }
    }
}

fn accounts_table(rows: &[&Value]) -> Markup {
    html! {
        table {
            thead { tr { th scope="col" { "Account" } th scope="col" { "Score" } th scope="col" { "Verdict" } th scope="col" { "Action" } th scope="col" { "Exchanges" } th scope="col" { "First flagged" } } }
            tbody {
                @for a in rows {
                    @let name = a["account"].as_str().unwrap_or_default();
                    @let verdict = a["verdict"].as_str().unwrap_or_default();
                    tr {
                        td { a href={ "/admin/ui/accounts/" (name) } { (name) } }
                        td { (format!("{:.3}", a["score"].as_f64().unwrap_or(0.0))) }
                        td class=(verdict_class(verdict)) { (verdict) }
                        td { (a["action"].as_str().unwrap_or_default()) }
                        td { (a["exchanges"].as_u64().map_or(String::new(), |n| n.to_string())) }
                        td { (a["first_flagged"].as_str().unwrap_or_default()) }
                    }
                }
            }
        }
    }
}

/// `GET /admin/ui`: the overview.
pub async fn overview(State(state): State<Arc<AppState>>, Signed(csrf): Signed) -> Response {
    let all = accounts(&state).await;
    let count = |v: detect::Verdict| all.iter().filter(|a| a.judged.verdict == v).count();
    let acted = all
        .iter()
        .filter(|a| a.action(&state) != respond::Action::Allow)
        .count();
    // Flagged `distilling` within a day of the newest flag's time (the log's clock, not this
    // machine's: an offline replay's flags count as they happened).
    let flagged: Vec<i64> = all
        .iter()
        .filter_map(|a| a.judged.first_flagged.as_deref())
        .filter_map(|t| exchange::Timestamp::parse(t).ok())
        .map(|t| t.millis())
        .collect();
    let newest = flagged.iter().copied().max().unwrap_or(0);
    let last_day = flagged
        .iter()
        .filter(|&&t| newest - t <= 24 * 3_600_000)
        .count();
    let recent = audit_rows(&state, None, 10).await;
    page(
        "Overview",
        Some(&csrf),
        html! {
            section aria-label="Accounts by verdict" .cards {
                div.card { b { (all.len()) } "accounts" }
                div.card { b.distilling { (count(detect::Verdict::Distilling)) } "distilling" }
                div.card { b.suspicious { (count(detect::Verdict::Suspicious)) } "suspicious" }
                div.card { b { (acted) } "with an action other than allow" }
                div.card { b { (last_day) } "flagged in the 24 hours before the latest flag" }
            }
            h2 { "Recent actions" }
            (audit_table(&recent))
        },
    )
    .into_response()
}

#[derive(Deserialize)]
pub struct ListQuery {
    verdict: Option<String>,
    action: Option<String>,
    /// Only accounts scoring at least this.
    min_score: Option<String>,
    /// Only the members of this linked group (its cluster name).
    group: Option<String>,
    /// `score` (default), `exchanges` or `account`.
    sort: Option<String>,
    page: Option<usize>,
}

/// `GET /admin/ui/accounts?verdict=&action=&min_score=&group=&sort=&page=`: every account,
/// highest score first, filtered and paged on the server; only the shown page is drawn.
pub async fn accounts_page(
    State(state): State<Arc<AppState>>,
    Signed(csrf): Signed,
    Query(q): Query<ListQuery>,
) -> Response {
    let all = accounts(&state).await;
    let verdict = q.verdict.filter(|v| !v.is_empty());
    let action = q.action.filter(|v| !v.is_empty());
    let group = q.group.filter(|v| !v.is_empty());
    let min_score = q
        .min_score
        .as_deref()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite());
    let sort = q.sort.unwrap_or_else(|| "score".into());
    let mut rows: Vec<&admin::Listed> = all
        .iter()
        .filter(|a| {
            verdict
                .as_deref()
                .is_none_or(|v| a.judged.verdict.as_str() == v)
        })
        .filter(|a| min_score.is_none_or(|m| a.judged.score >= m))
        .filter(|a| {
            group
                .as_deref()
                .is_none_or(|g| a.judged.cluster.as_deref() == Some(g))
        })
        .filter(|a| {
            action
                .as_deref()
                .is_none_or(|v| a.action(&state).as_str() == v)
        })
        .collect();
    match sort.as_str() {
        "exchanges" => rows.sort_by_key(|a| std::cmp::Reverse(a.judged.exchanges.unwrap_or(0))),
        "account" => rows.sort_by(|a, b| a.judged.account.cmp(&b.judged.account)),
        _ => {} // already highest score first
    }
    let pages = rows.len().div_ceil(PAGE).max(1);
    let n = q.page.unwrap_or(1).clamp(1, pages);
    let shown: Vec<Value> = rows[(n - 1) * PAGE..(n * PAGE).min(rows.len())]
        .iter()
        .map(|a| a.view(&state))
        .collect();
    let shown: Vec<&Value> = shown.iter().collect();
    let link = |p: usize| {
        format!(
            "/admin/ui/accounts?verdict={}&action={}&min_score={}&group={}&sort={sort}&page={p}",
            verdict.as_deref().unwrap_or(""),
            action.as_deref().unwrap_or(""),
            min_score.map_or(String::new(), |m| m.to_string()),
            group.as_deref().unwrap_or("")
        )
    };
    page(
        "Accounts",
        Some(&csrf),
        html! {
            form method="get" action="/admin/ui/accounts" {
                label for="verdict" { "Verdict" }
                select id="verdict" name="verdict" {
                    @for v in ["", "distilling", "suspicious", "benign"] {
                        option value=(v) selected[verdict.as_deref() == Some(v)] { (if v.is_empty() { "any" } else { v }) }
                    }
                }
                label for="action-filter" { "Action" }
                select id="action-filter" name="action" {
                    @for v in ["", "allow", "watch", "throttle", "degrade", "block"] {
                        option value=(v) selected[action.as_deref() == Some(v)] { (if v.is_empty() { "any" } else { v }) }
                    }
                }
                label for="min-score" { "Score at least" }
                input id="min-score" name="min_score" type="number" min="0" max="1" step="0.01" value=(min_score.map_or(String::new(), |m| m.to_string()));
                label for="group" { "Group" }
                input id="group" name="group" type="text" placeholder="grp-…" value=(group.as_deref().unwrap_or(""));
                label for="sort" { "Sort by" }
                select id="sort" name="sort" {
                    @for v in ["score", "exchanges", "account"] {
                        option value=(v) selected[sort == v] { (v) }
                    }
                }
                " " button type="submit" { "Show" }
            }
            p { (rows.len()) " accounts; page " (n) " of " (pages) }
            (accounts_table(&shown))
            nav aria-label="Pages" {
                @if n > 1 { a href=(link(n - 1)) { "Previous" } }
                @if n < pages { " " a href=(link(n + 1)) { "Next" } }
            }
        },
    )
    .into_response()
}

/// `GET /admin/ui/queue`: flagged accounts no person has decided on yet.
pub async fn queue(State(state): State<Arc<AppState>>, Signed(csrf): Signed) -> Response {
    let all = accounts(&state).await;
    let waiting: Vec<Value> = all
        .iter()
        .filter(|a| a.judged.verdict != detect::Verdict::Benign && !a.allowlisted)
        .map(|a| a.view(&state))
        .filter(|a| a["action_source"] != "override")
        .collect();
    let waiting: Vec<&Value> = waiting.iter().collect();
    page(
        "Review queue",
        Some(&csrf),
        html! {
            p { (waiting.len()) " flagged accounts wait for a person: open one to approve the action, override it, allowlist or block, with a reason." }
            (accounts_table(&waiting))
        },
    )
    .into_response()
}

/// `GET /admin/ui/audit`: the audit log, newest first.
pub async fn audit_page(State(state): State<Arc<AppState>>, Signed(csrf): Signed) -> Response {
    let rows = audit_rows(&state, None, 200).await;
    page("Audit log", Some(&csrf), audit_table(&rows)).into_response()
}

async fn groups(state: &Arc<AppState>) -> Vec<Value> {
    match admin::list_groups(State(state.clone())).await {
        Ok(axum::Json(v)) => v["groups"].as_array().cloned().unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

fn links_in_words(g: &Value) -> String {
    g["links"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} x{v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// `GET /admin/ui/groups`: accounts linked as one actor, highest score first.
pub async fn groups_page(State(state): State<Arc<AppState>>, Signed(csrf): Signed) -> Response {
    let all = groups(&state).await;
    page(
        "Groups",
        Some(&csrf),
        html! {
            table {
                thead { tr { th scope="col" { "Group" } th scope="col" { "Score" } th scope="col" { "Verdict" } th scope="col" { "Members" } th scope="col" { "Linked by" } } }
                tbody {
                    @for g in &all {
                        @let cluster = g["cluster"].as_str().unwrap_or_default();
                        @let verdict = g["verdict"].as_str().unwrap_or_default();
                        tr {
                            td { a href={ "/admin/ui/groups/" (cluster) } { (cluster) } }
                            td { (format!("{:.3}", g["score"].as_f64().unwrap_or(0.0))) }
                            td class=(verdict_class(verdict)) { (verdict) }
                            td { (g["members"].as_array().map_or(0, Vec::len)) }
                            td { (links_in_words(g)) }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// The members on a circle and the strongest links between them, wider for more evidence.
fn graph(members: &[&str], evidence: &[Value]) -> Markup {
    let (w, r) = (420.0_f64, 160.0_f64);
    let n = members.len().max(1) as f64;
    let at = |i: usize| {
        let a = i as f64 / n * std::f64::consts::TAU;
        (w / 2.0 + r * a.cos(), w / 2.0 + r * a.sin())
    };
    let index: HashMap<&str, usize> = members.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    html! {
        svg role="img" aria-labelledby="g-title" width=(w) height=(w) viewBox={ "0 0 " (w) " " (w) } xmlns="http://www.w3.org/2000/svg" {
            title id="g-title" { (members.len()) " members and the " (evidence.len()) " strongest links between them" }
            rect x="0" y="0" width=(w) height=(w) fill="#ffffff" stroke="#d1d5db" {}
            @for e in evidence {
                @if let (Some(&a), Some(&b)) = (index.get(e["a"].as_str().unwrap_or_default()), index.get(e["b"].as_str().unwrap_or_default())) {
                    @let ((x1, y1), (x2, y2)) = (at(a), at(b));
                    line x1=(format!("{x1:.1}")) y1=(format!("{y1:.1}")) x2=(format!("{x2:.1}")) y2=(format!("{y2:.1}")) stroke="#6b7280" stroke-width=(format!("{:.1}", (e["total"].as_f64().unwrap_or(1.0)).clamp(0.5, 6.0))) {}
                }
            }
            @for (i, m) in members.iter().enumerate() {
                @let (x, y) = at(i);
                circle cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="6" fill="#1f2937" { title { (m) } }
            }
        }
    }
}

/// `GET /admin/ui/groups/{cluster}`: one group, its members, the evidence on each link, a decision.
pub async fn group_page(
    State(state): State<Arc<AppState>>,
    Signed(csrf): Signed,
    Path(cluster): Path<String>,
) -> Response {
    let all = groups(&state).await;
    let Some(g) = all.iter().find(|g| g["cluster"] == cluster.as_str()) else {
        return (
            StatusCode::NOT_FOUND,
            page(
                "Not found",
                Some(&csrf),
                html! { p { "No group " (cluster) "." } },
            ),
        )
            .into_response();
    };
    let members: Vec<&str> = g["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let evidence = g["evidence"].as_array().cloned().unwrap_or_default();
    let verdict = g["verdict"].as_str().unwrap_or_default();
    page(
        &format!("Group {cluster}"),
        Some(&csrf),
        html! {
            section aria-label="Standing" .cards {
                div.card { b { (format!("{:.3}", g["score"].as_f64().unwrap_or(0.0))) } "score of the combined traffic" }
                div.card { b class=(verdict_class(verdict)) { (verdict) } "verdict" }
                div.card { b { (members.len()) } "members" }
                div.card { b { (g["exchanges"].as_u64().unwrap_or(0)) } "exchanges" }
            }
            p { "Linked by: " (links_in_words(g)) " · " a href={ "/admin/ui/groups/" (cluster) "/stix" } download={ (cluster) ".stix.json" } { "Download as STIX 2.1" } }
            h2 { "Members and links" }
            (graph(&members, &evidence))
            table {
                thead { tr { th scope="col" { "Account" } th scope="col" { "Account" } th scope="col" { "Evidence" } th scope="col" { "By kind" } } }
                tbody {
                    @for e in &evidence {
                        tr {
                            td { a href={ "/admin/ui/accounts/" (e["a"].as_str().unwrap_or_default()) } { (e["a"].as_str().unwrap_or_default()) } }
                            td { a href={ "/admin/ui/accounts/" (e["b"].as_str().unwrap_or_default()) } { (e["b"].as_str().unwrap_or_default()) } }
                            td { (format!("{:.2}", e["total"].as_f64().unwrap_or(0.0))) }
                            td { (e["kinds"].as_object().map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                        }
                    }
                }
            }
            h2 { "Why" }
            ul { @for r in g["reasons"].as_array().into_iter().flatten() { li { (r["signal"].as_str().unwrap_or_default()) ": " (r["detail"].as_str().unwrap_or_default()) } } }
            h2 { "Members" }
            ul { @for m in &members { li { a href={ "/admin/ui/accounts/" (m) } { (m) } } } }
            h2 { "Decide for every member" }
            (decision_form(
                &format!("/admin/ui/groups/{cluster}/decide"),
                &csrf,
                &["allow", "watch", "throttle", "degrade", "block"],
                "Reason (required, audited per member)",
            ))
        },
    )
    .into_response()
}

/// `GET /admin/ui/groups/{cluster}/stix`: the group as a STIX 2.1 bundle, to share.
pub async fn group_stix(
    State(state): State<Arc<AppState>>,
    _: Signed,
    Path(cluster): Path<String>,
) -> Response {
    admin::group_stix(
        State(state.clone()),
        Path(cluster),
        QueryArgs(admin::StixQuery::default()),
    )
    .await
    .into_response()
}

/// `POST /admin/ui/groups/{cluster}/decide`: one override for every member, each audited.
pub async fn decide_group(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(cluster): Path<String>,
    Form(f): Form<DecideForm>,
) -> Response {
    let hours = match f.accepted(&signed) {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    match admin::set_group_override(
        State(state.clone()),
        Path(cluster.clone()),
        JsonBody(admin::OverrideBody::new(
            &f.action, &f.reason, "console", hours,
        )),
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/admin/ui/groups/{cluster}")).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The score over time as an SVG line, with the two thresholds.
fn timeline(points: &[Value]) -> Markup {
    let (w, h, pad) = (640.0, 160.0, 24.0);
    let ts: Vec<f64> = points.iter().filter_map(|p| p["ts_ms"].as_f64()).collect();
    let (t0, t1) = (
        ts.iter().copied().fold(f64::INFINITY, f64::min),
        ts.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let span = (t1 - t0).max(1.0);
    let x = |t: f64| pad + (t - t0) / span * (w - 2.0 * pad);
    let y = |s: f64| h - pad - s.clamp(0.0, 1.0) * (h - 2.0 * pad);
    let line: Vec<String> = points
        .iter()
        .filter_map(|p| {
            Some(format!(
                "{:.1},{:.1}",
                x(p["ts_ms"].as_f64()?),
                y(p["score"].as_f64()?)
            ))
        })
        .collect();
    html! {
        svg role="img" aria-labelledby="tl-title" width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) } xmlns="http://www.w3.org/2000/svg" {
            title id="tl-title" { "Score over time: " (points.len()) " points" }
            rect x="0" y="0" width=(w) height=(h) fill="#ffffff" stroke="#d1d5db" {}
            line x1=(pad) x2=(w - pad) y1=(y(0.85)) y2=(y(0.85)) stroke="#991b1b" stroke-dasharray="4" {}
            line x1=(pad) x2=(w - pad) y1=(y(0.5)) y2=(y(0.5)) stroke="#92400e" stroke-dasharray="4" {}
            text x=(w - pad) y=(y(0.85) - 3.0) text-anchor="end" font-size="11" fill="#991b1b" { "distilling" }
            text x=(w - pad) y=(y(0.5) - 3.0) text-anchor="end" font-size="11" fill="#92400e" { "suspicious" }
            @if line.len() > 1 {
                polyline points=(line.join(" ")) fill="none" stroke="#1f2937" stroke-width="2" {}
            }
            @for p in line.iter() {
                @let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
                circle cx=(px) cy=(py) r="2.5" fill="#1f2937" {}
            }
        }
    }
}

/// How many of an account's latest exchanges its activity chart reads.
const ACTIVITY_WINDOW: usize = 5000;

/// An account's calls and tokens over time, from its latest [`ACTIVITY_WINDOW`] exchanges in
/// the log: `(bucket start in ms, calls, tokens)`, oldest first, in buckets of whole hours
/// (as many hours as it takes to keep to 120 bars), and the bucket's width in hours.
async fn activity(state: &Arc<AppState>, name: &str) -> (Vec<(i64, u64, u64)>, i64) {
    /// What the chart reads of a logged line; the rest is skipped, not kept.
    #[derive(Deserialize)]
    struct Line {
        ts: exchange::Timestamp,
        response: Option<Answer>,
    }
    #[derive(Deserialize)]
    struct Answer {
        usage: Option<exchange::Usage>,
    }
    let store = state.shared.store.clone();
    let name = name.to_owned();
    let rows = tokio::task::spawn_blocking(move || store.recent_exchanges(&name, ACTIVITY_WINDOW))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let points: Vec<(i64, u64)> = rows
        .iter()
        .filter_map(|r| serde_json::from_str::<Line>(&r.line).ok())
        .map(|l| {
            let tokens = l
                .response
                .and_then(|a| a.usage)
                .map_or(0, |u| u.prompt_tokens + u.completion_tokens);
            (l.ts.millis(), tokens)
        })
        .collect();
    let Some(first) = points.iter().map(|p| p.0).min() else {
        return (Vec::new(), 1);
    };
    let last = points.iter().map(|p| p.0).max().unwrap_or(first);
    const HOUR: i64 = 3_600_000;
    let hours = ((last / HOUR - first / HOUR) + 1).max(1);
    let width = (hours + 119) / 120;
    let start = first / HOUR * HOUR;
    let mut buckets = vec![(0u64, 0u64); (hours / width + 1) as usize];
    for (ts, tokens) in points {
        let b = &mut buckets[((ts - start) / HOUR / width) as usize];
        b.0 += 1;
        b.1 += tokens;
    }
    let out = buckets
        .into_iter()
        .enumerate()
        .map(|(i, (calls, tokens))| (start + i as i64 * width * HOUR, calls, tokens))
        .collect();
    (out, width)
}

/// One bar chart of the activity: `value` of each bucket, its largest labelled.
fn bars(
    id: &str,
    what: &str,
    points: &[(i64, u64, u64)],
    value: fn(&(i64, u64, u64)) -> u64,
) -> Markup {
    let (w, h, pad) = (640.0, 110.0, 20.0);
    let max = points.iter().map(value).max().unwrap_or(0).max(1) as f64;
    let step = (w - 2.0 * pad) / points.len().max(1) as f64;
    let total: u64 = points.iter().map(value).sum();
    html! {
        svg role="img" aria-labelledby=(id) width=(w) height=(h) viewBox={ "0 0 " (w) " " (h) } xmlns="http://www.w3.org/2000/svg" {
            title id=(id) { (what) ": " (total) " in all, at most " (max as u64) " in one bar" }
            rect x="0" y="0" width=(w) height=(h) fill="#ffffff" stroke="#d1d5db" {}
            text x=(pad) y="14" font-size="11" fill="#374151" { (what) " (most in one bar: " (max as u64) ")" }
            @for (i, p) in points.iter().enumerate() {
                @let bh = value(p) as f64 / max * (h - 2.0 * pad - 6.0);
                rect x=(format!("{:.1}", pad + i as f64 * step)) y=(format!("{:.1}", h - pad - bh)) width=(format!("{:.1}", (step - 1.0).max(1.0))) height=(format!("{:.1}", bh)) fill="#1f2937" {}
            }
        }
    }
}

/// The last user message of a logged exchange (or its prompt), cut to 200 characters.
fn last_user_message(e: &Value) -> String {
    let text = e["request"]["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .or_else(|| e["request"]["prompt"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let mut cut: String = text.chars().take(200).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

/// `GET /admin/ui/accounts/{name}`: one account, to decide on.
pub async fn account_page(
    State(state): State<Arc<AppState>>,
    Signed(csrf): Signed,
    Path(name): Path<String>,
) -> Response {
    let view = match admin::get_account(State(state.clone()), Path(name.clone())).await {
        Ok(axum::Json(v)) => v,
        Err(_) => {
            return (
                StatusCode::NOT_FOUND,
                page(
                    "Not found",
                    Some(&csrf),
                    html! { p { "No account " (name) "." } },
                ),
            )
                .into_response()
        }
    };
    let history = match admin::account_history(
        State(state.clone()),
        Path(name.clone()),
        QueryArgs(admin::LimitQuery::new(None, store::SCORE_HISTORY_KEPT)),
    )
    .await
    {
        Ok(axum::Json(v)) => v["history"].as_array().cloned().unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let actions = audit_rows(&state, Some(name.clone()), 50).await;
    let (active, width) = activity(&state, &name).await;
    let recent = match admin::account_exchanges(
        State(state.clone()),
        Path(name.clone()),
        QueryArgs(admin::LimitQuery::new(None, 20)),
    )
    .await
    {
        Ok(axum::Json(v)) => v["exchanges"].as_array().cloned().unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let verdict = view["verdict"].as_str().unwrap_or_default().to_owned();
    let reasons = view["reasons"].as_array().cloned().unwrap_or_default();
    let action_url = format!("/admin/ui/accounts/{name}/decide");
    page(
        &format!("Account {name}"),
        Some(&csrf),
        html! {
            section aria-label="Standing" .cards {
                div.card { b { (format!("{:.3}", view["score"].as_f64().unwrap_or(0.0))) } "score" }
                div.card { b class=(verdict_class(&verdict)) { (verdict) } "verdict" }
                div.card { b { (view["action"].as_str().unwrap_or_default()) } "action (" (view["action_source"].as_str().unwrap_or_default()) ")" }
                div.card { b { (if view["allowlisted"] == true { "yes" } else { "no" }) } "allowlisted" }
            }
            @if let Some(o) = view["override"].as_object() {
                p { "Override: " strong { (o["action"].as_str().unwrap_or_default()) } " by " (o["by"].as_str().unwrap_or_default()) ": " (o["reason"].as_str().unwrap_or_default())
                    @if let Some(until) = o["expires_at"].as_str() { " (until " (until) ")" } }
            }
            h2 { "Score over time" }
            @if history.is_empty() { p { "No history yet." } } @else { (timeline(&history)) }
            h2 { "Calls and tokens over time" }
            @if active.is_empty() { p { "No exchange in the log." } } @else {
                p { "Its latest " (ACTIVITY_WINDOW) " exchanges at most, one bar per " (width) " hour(s), from "
                    (exchange::Timestamp::from_millis(active[0].0).as_str()) "." }
                (bars("calls-title", "Calls", &active, |p| p.1))
                (bars("tokens-title", "Tokens (prompt and answer)", &active, |p| p.2))
            }
            h2 { "Why" }
            table {
                thead { tr { th scope="col" { "Signal" } th scope="col" { "Weight" } th scope="col" { "In words" } } }
                tbody {
                    @for r in &reasons {
                        tr { td { (r["signal"].as_str().unwrap_or_default()) } td { (r["value"].to_string()) } td { (r["detail"].as_str().unwrap_or_default()) } }
                    }
                }
            }
            h2 { "Decide" }
            (decision_form(
                &action_url,
                &csrf,
                &["allow", "watch", "throttle", "degrade", "block", "allowlist", "unallowlist", "clear"],
                "Reason (required, audited)",
            ))
            h2 { "Its latest exchanges, as the log keeps them" }
            p { "Text appears as the account's content policy keeps it: whole, as hashes, or not at all." }
            table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Model" } th scope="col" { "Status" } th scope="col" { "Last user message" } th scope="col" { "Answer tokens" } } }
                tbody {
                    @for e in &recent {
                        tr {
                            td { (e["ts"].as_str().unwrap_or_default()) }
                            td { (e["request"]["model"].as_str().unwrap_or_default()) }
                            td { (e["status"].as_u64().unwrap_or(0)) }
                            td { (last_user_message(e)) }
                            td { (e["response"]["usage"]["completion_tokens"].as_u64().map_or(String::new(), |n| n.to_string())) }
                        }
                    }
                }
            }
            h2 { "What was done" }
            (audit_table(&actions))
        },
    )
    .into_response()
}

#[derive(Deserialize)]
pub struct DecideForm {
    csrf: String,
    action: String,
    reason: String,
    #[serde(default)]
    expires_in_hours: String,
}

impl DecideForm {
    /// A decision the session sent (its CSRF token), with its expiry in hours when given.
    fn accepted(&self, signed: &Signed) -> Result<Option<f64>, Refusal> {
        signed.check(&self.csrf)?;
        let text = self.expires_in_hours.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse::<f64>()
            .map(Some)
            .map_err(|_| Refusal::NotANumber)
    }
}

/// `POST /admin/ui/accounts/{name}/decide`: a decision through the admin API's own handlers.
pub async fn decide(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Path(name): Path<String>,
    Form(f): Form<DecideForm>,
) -> Response {
    let hours = match f.accepted(&signed) {
        Ok(h) => h,
        Err(r) => return r.into_response(),
    };
    let by = "console";
    let done = match f.action.as_str() {
        "allowlist" | "unallowlist" => admin::set_allowlist(
            State(state.clone()),
            Path(name.clone()),
            JsonBody(admin::AllowBody::new(
                f.action == "allowlist",
                &f.reason,
                by,
                hours,
            )),
        )
        .await
        .map(|_| ()),
        "clear" => admin::clear_override(
            State(state.clone()),
            Path(name.clone()),
            JsonBody(admin::Decision::new(&f.reason, by)),
        )
        .await
        .map(|_| ()),
        action => admin::set_override(
            State(state.clone()),
            Path(name.clone()),
            JsonBody(admin::OverrideBody::new(action, &f.reason, by, hours)),
        )
        .await
        .map(|_| ()),
    };
    match done {
        Ok(()) => Redirect::to(&format!("/admin/ui/accounts/{name}")).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /admin/ui/login`: the sign-in form.
pub async fn login_page(State(state): State<Arc<AppState>>) -> Response {
    if state.admin_token.is_none() {
        return Refusal::Off.into_response();
    }
    sign_in(None).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /admin/ui/login`: the admin token opens a session.
pub async fn login(State(state): State<Arc<AppState>>, Form(f): Form<LoginForm>) -> Response {
    let Some(token) = state.admin_token.as_deref() else {
        return (StatusCode::NOT_FOUND, "the console is off").into_response();
    };
    if !bool::from(token.as_bytes().ct_eq(f.token.as_bytes())) {
        // The form again, with why: no session, no cookie.
        return sign_in(Some("Wrong token.")).into_response();
    }
    let (id, _) = state.console.open();
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/admin/ui; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to("/admin/ui")).into_response()
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// `POST /admin/ui/logout`.
pub async fn logout(
    State(state): State<Arc<AppState>>,
    signed: Signed,
    Form(f): Form<CsrfForm>,
) -> Response {
    if let Err(r) = signed.check(&f.csrf) {
        return r.into_response();
    }
    state.console.close(&signed);
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/admin/ui; Max-Age=0"),
        )],
        Redirect::to("/admin/ui"),
    )
        .into_response()
}

/// The probe reports in the evidence folder, newest first: `(file name, report)`. Only plain
/// `.json` files directly in the folder that read as a report.
fn evidence_reports(state: &AppState) -> Vec<(String, Value)> {
    let Some(dir) = &state.config.evidence_dir else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, String, Value)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !safe_report_name(&name) || !e.file_type().ok()?.is_file() {
                return None;
            }
            let report: Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            (report["keys"].is_array() && report["verdict"].is_string()).then_some(())?;
            let when = e.metadata().ok()?.modified().ok()?;
            Some((when, name, report))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    found.into_iter().map(|(_, n, r)| (n, r)).collect()
}

/// A report's file name as the page links it: letters, digits, `.`, `-`, `_`, ending in
/// `.json`; never a path.
fn safe_report_name(name: &str) -> bool {
    name.ends_with(".json")
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

/// `GET /admin/ui/evidence`: the evidence reports (`distillguard evidence probe`), newest first.
pub async fn evidence_page(State(state): State<Arc<AppState>>, Signed(csrf): Signed) -> Response {
    let reports = evidence_reports(&state);
    page(
        "Evidence",
        Some(&csrf),
        html! {
            @if state.config.evidence_dir.is_none() {
                p { "No evidence folder is set (" code { "evidence_dir" } " in the gateway's config). Reports are made with " code { "distillguard evidence probe --suspect URL --account A --out DIR/NAME" } " (docs/evidence.md)." }
            } @else if reports.is_empty() {
                p { "No report in the evidence folder yet. Make one with " code { "distillguard evidence probe --suspect URL --account A --out DIR/NAME" } "." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Report" } th scope="col" { "Suspect" } th scope="col" { "Accounts tested" } th scope="col" { "Verdict" } } }
                    tbody {
                        @for (name, r) in &reports {
                            tr {
                                td { a href={ "/admin/ui/evidence/" (name) } { (name) } }
                                td { (r["suspect"].as_str().unwrap_or_default()) }
                                td { (r["keys"].as_array().map_or(String::new(), |k| k.iter().filter_map(|k| k["account"].as_str()).collect::<Vec<_>>().join(", "))) }
                                td { (r["verdict"].as_str().unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// `GET /admin/ui/evidence/{file}`: one report: its verdict, each key's test, the controls.
pub async fn evidence_report(
    State(state): State<Arc<AppState>>,
    Signed(csrf): Signed,
    Path(file): Path<String>,
) -> Response {
    let Some((_, r)) = evidence_reports(&state)
        .into_iter()
        .find(|(name, _)| *name == file)
    else {
        return (
            StatusCode::NOT_FOUND,
            page(
                "Not found",
                Some(&csrf),
                html! { p { "No report " (file) "." } },
            ),
        )
            .into_response();
    };
    let row = |d: &Value, who: String| {
        html! {
            tr {
                td { (who) }
                td { (d["key_id"].as_str().unwrap_or_default()) }
                td { (d["scored"].as_u64().unwrap_or(0)) }
                td { (d["green"].as_u64().map_or(String::new(), |g| g.to_string())) }
                td { (d["p_value"].as_f64().map_or("too short to judge".to_owned(), |p| format!("{p:.3e}"))) }
                td { (d["marked"].as_bool().map_or("control", |m| if m { "marked" } else { "no evidence" })) }
            }
        }
    };
    page(
        &format!("Evidence: {file}"),
        Some(&csrf),
        html! {
            p { strong { (r["verdict"].as_str().unwrap_or_default()) } }
            p { "Suspect " (r["suspect"].as_str().unwrap_or_default()) ", " (r["prompts"]) " questions, " (r["tokens"]) " tokens; each key judged at p < " (format!("{:.1e}", r["level_per_key"].as_f64().unwrap_or(0.0))) "." }
            table {
                thead { tr { th scope="col" { "Key of" } th scope="col" { "Key id" } th scope="col" { "Scored tokens" } th scope="col" { "Green" } th scope="col" { "p-value" } th scope="col" { "Reading" } } }
                tbody {
                    @for d in r["keys"].as_array().into_iter().flatten() {
                        (row(d, d["account"].as_str().unwrap_or_default().to_owned()))
                    }
                    @for (i, d) in r["controls"].as_array().into_iter().flatten().enumerate() {
                        (row(d, format!("control {}", i + 1)))
                    }
                }
            }
            p { (r["method"].as_str().unwrap_or_default()) "." }
        },
    )
    .into_response()
}
