//! The admin API, behind its own bearer token (`DISTILLGUARD_ADMIN_TOKEN`): accounts with
//! their score, verdict, reasons and action; an account's recent exchanges; accounts, keys and
//! limits; manual overrides and the allowlist; the audit trail. Every human action is audited.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use store::{AuditEntry, Override};

use crate::auth::{admin_token_matches, bearer};
use crate::config::ContentPolicy;
use crate::error::{ApiError, JsonBody, QueryArgs};
use crate::AppState;
use recorder::now_ms;
use respond::Action;

/// Refuses admin calls without the admin token.
pub async fn require_admin(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.admin_token.as_deref() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            Some("admin_disabled"),
            "The admin API is disabled: set DISTILLGUARD_ADMIN_TOKEN.",
        )
        .into_response();
    };
    match bearer(req.headers()) {
        Some(t) if admin_token_matches(t, expected) => next.run(req).await,
        _ => ApiError::unauthorized("A valid admin token is required.").into_response(),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> store::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| match e {
            store::StoreError::Invalid(m) => ApiError::invalid_request(m),
            other => ApiError::internal(other.to_string()),
        })
}

fn account_view(
    state: &AppState,
    name: &str,
    account: Option<&store::Account>,
    judged: Option<&recorder::Judged>,
) -> Value {
    let standing = state.shared.table.standing(&state.shared.policy, name);
    let (score, verdict, first_flagged, exchanges, reasons) = match judged {
        Some(j) => (
            j.score,
            j.verdict.as_str(),
            j.first_flagged.clone(),
            j.exchanges,
            serde_json::to_value(&j.reasons).unwrap_or(Value::Null),
        ),
        None => (0.0, "benign", None, Some(0), Value::Null),
    };
    json!({
        "account": name,
        "score": score,
        "verdict": verdict,
        "action": standing.action.as_str(),
        "action_source": standing.source,
        "first_flagged": first_flagged,
        "exchanges": exchanges,
        "reasons": reasons,
        "limits": account.map(|a| serde_json::to_value(a.limits).unwrap_or(Value::Null)),
        "allowlisted": account.is_some_and(|a| a.allowlisted),
    })
}

/// `GET /admin/accounts`: every account known to the store or judged, highest score first.
pub async fn list_accounts(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let out = views(&state).await?;
    Ok(Json(json!({"accounts": out})))
}

/// An account as the console's lists hold it before a page is drawn: what
/// `Verdicts::listing` says (no reasons), and whether it is allowlisted.
pub struct Listed {
    pub judged: recorder::Judged,
    pub allowlisted: bool,
}

impl Listed {
    /// Its row as [`list_accounts`] gives it, without the reasons, with its action now.
    pub fn view(&self, state: &AppState) -> Value {
        let standing = state
            .shared
            .table
            .standing(&state.shared.policy, &self.judged.account);
        json!({
            "account": self.judged.account,
            "score": self.judged.score,
            "verdict": self.judged.verdict.as_str(),
            "action": standing.action.as_str(),
            "action_source": standing.source,
            "first_flagged": self.judged.first_flagged,
            "exchanges": self.judged.exchanges,
            "cluster": self.judged.cluster,
            "allowlisted": self.allowlisted,
        })
    }

    /// Its action now (the policy table: verdict, override, allowlist).
    pub fn action(&self, state: &AppState) -> respond::Action {
        state
            .shared
            .table
            .standing(&state.shared.policy, &self.judged.account)
            .action
    }
}

/// The store's accounts (name, allowlisted) as a listing needs them, read at most every few
/// seconds: at a hundred thousand accounts the read costs more than the rest of a page.
#[derive(Default)]
pub struct StoreNames(parking_lot::Mutex<Option<(std::time::Instant, NameList)>>);

/// Account names with whether each is allowlisted.
type NameList = Arc<Vec<(String, bool)>>;

/// How long the store's account names are taken as read.
const STORE_NAMES_TTL: std::time::Duration = std::time::Duration::from_secs(5);

impl StoreNames {
    fn get(&self, store: &dyn store::Store) -> store::Result<NameList> {
        if let Some((at, names)) = &*self.0.lock() {
            if at.elapsed() < STORE_NAMES_TTL {
                return Ok(names.clone());
            }
        }
        let names: NameList = Arc::new(
            store
                .accounts()?
                .into_iter()
                .map(|a| (a.name, a.allowlisted))
                .collect(),
        );
        *self.0.lock() = Some((std::time::Instant::now(), names.clone()));
        Ok(names)
    }
}

/// Every account known to the store or judged, as the console's lists show it: highest score
/// first (ties by name), without the reasons (`Verdicts::listing`: nothing scored again, no
/// reason written), so a page stays fast at a hundred thousand accounts. Accounts created in
/// the last few seconds and not yet judged may be missing (see [`StoreNames`]).
pub async fn listed_accounts(state: &Arc<AppState>) -> Result<Vec<Listed>, ApiError> {
    let st = state.clone();
    blocking(move || {
        let judged = st.verdicts.listing()?;
        let names = st.store_names.get(st.shared.store.as_ref())?;
        let allowlisted: std::collections::HashSet<&str> = names
            .iter()
            .filter(|(_, a)| *a)
            .map(|(n, _)| n.as_str())
            .collect();
        let seen: std::collections::HashSet<&str> =
            judged.iter().map(|j| j.account.as_str()).collect();
        let unjudged: Vec<Listed> = names
            .iter()
            .filter(|(n, _)| !seen.contains(n.as_str()))
            .map(|(n, a)| Listed {
                judged: recorder::Judged {
                    account: n.clone(),
                    score: 0.0,
                    verdict: detect::Verdict::Benign,
                    first_flagged: None,
                    exchanges: Some(0),
                    cluster: None,
                    reasons: Vec::new(),
                },
                allowlisted: *a,
            })
            .collect();
        let mut out: Vec<Listed> = judged
            .into_iter()
            .map(|j| Listed {
                allowlisted: allowlisted.contains(j.account.as_str()),
                judged: j,
            })
            .collect();
        if !unjudged.is_empty() {
            out.extend(unjudged);
            out.sort_by(|a, b| {
                b.judged
                    .score
                    .total_cmp(&a.judged.score)
                    .then_with(|| a.judged.account.cmp(&b.judged.account))
            });
        }
        Ok(out)
    })
    .await
}

/// Every account known to the store or judged, with its reasons.
async fn views(state: &Arc<AppState>) -> Result<Vec<Value>, ApiError> {
    let store = state.shared.store.clone();
    let verdicts = state.verdicts.clone();
    let (accounts, judged) =
        blocking(move || Ok((store.accounts()?, verdicts.accounts()?))).await?;
    let mut names: BTreeMap<String, (Option<store::Account>, Option<recorder::Judged>)> = accounts
        .into_iter()
        .map(|a| (a.name.clone(), (Some(a), None)))
        .collect();
    for j in judged {
        let name = j.account.clone();
        names.entry(name).or_default().1 = Some(j);
    }
    let mut out: Vec<Value> = names
        .iter()
        .map(|(n, (a, j))| account_view(state, n, a.as_ref(), j.as_ref()))
        .collect();
    sort_by_score(&mut out);
    Ok(out)
}

/// Highest `score` first: how accounts and groups are listed.
fn sort_by_score(views: &mut [Value]) {
    let score = |v: &Value| v["score"].as_f64().unwrap_or(0.0);
    views.sort_by(|a, b| score(b).total_cmp(&score(a)));
}

pub async fn get_account(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    current_view(&state, &name).await.map(Json)
}

/// The account as it stands now (after any change just made), or a 404 when neither the store
/// nor the detector knows it.
async fn current_view(state: &AppState, name: &str) -> Result<Value, ApiError> {
    let (account, judged) = known(state, name).await?;
    let mut view = account_view(state, name, account.as_ref(), judged.as_ref());
    // The human decision standing on this account, with when it lapses.
    let store = state.shared.store.clone();
    let n = name.to_owned();
    let decision =
        blocking(move || Ok(store.overrides()?.into_iter().find(|o| o.account == n))).await?;
    view["override"] = decision.map_or(Value::Null, |o| {
        json!({
            "action": o.action,
            "by": o.by,
            "reason": o.reason,
            "ts": rfc3339(o.ts_ms),
            "expires_at": o.expires_ms.map(rfc3339),
        })
    });
    view["allowlist_expires_at"] = json!(account.and_then(|a| a.allowlist_expires_ms).map(rfc3339));
    Ok(view)
}

fn rfc3339(ms: i64) -> String {
    exchange::Timestamp::from_millis(ms).as_str().to_owned()
}

/// When a decision lapses: at `expires_at` (RFC 3339) or `expires_in_hours` from now; with
/// neither it stands until changed.
#[derive(Deserialize, Default, Clone)]
pub struct Expiry {
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    expires_in_hours: Option<f64>,
}

impl Expiry {
    /// The lapse time in milliseconds, or why the request is wrong.
    fn ms(&self, now: i64) -> Result<Option<i64>, ApiError> {
        match (&self.expires_at, self.expires_in_hours) {
            (Some(_), Some(_)) => Err(ApiError::invalid_request(
                "give expires_at or expires_in_hours, not both",
            )),
            (Some(t), None) => {
                let at = exchange::Timestamp::parse(t)
                    .map_err(|e| {
                        ApiError::invalid_request(format!(
                            "expires_at must be an RFC 3339 time: {e}"
                        ))
                    })?
                    .millis();
                if at <= now {
                    return Err(ApiError::invalid_request("expires_at is in the past"));
                }
                Ok(Some(at))
            }
            (None, Some(h)) if h.is_finite() && h > 0.0 => {
                Ok(Some(now + (h * 3_600_000.0).round() as i64))
            }
            (None, Some(_)) => Err(ApiError::invalid_request(
                "expires_in_hours must be a positive number",
            )),
            (None, None) => Ok(None),
        }
    }
}

/// The account's stored row and its judgement; a 404 when neither the store nor the detector
/// knows the account: a typo must not read as a clean account, and a decision must not be
/// stored for an account that does not exist.
async fn known(
    state: &AppState,
    name: &str,
) -> Result<(Option<store::Account>, Option<recorder::Judged>), ApiError> {
    let store = state.shared.store.clone();
    let verdicts = state.verdicts.clone();
    let n = name.to_owned();
    let (account, judged) =
        blocking(move || Ok((store.account(&n)?, verdicts.account(&n)?))).await?;
    if account.is_none() && judged.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("account_not_found"),
            format!("No account {name}."),
        ));
    }
    Ok((account, judged))
}

#[derive(Deserialize)]
pub struct LimitQuery {
    limit: Option<usize>,
    account: Option<String>,
}

impl LimitQuery {
    /// The query the console sends for a page of an account's (or every account's) rows.
    pub fn new(account: Option<String>, limit: usize) -> Self {
        Self {
            limit: Some(limit),
            account,
        }
    }
}

/// `GET /admin/accounts/{name}/history?limit=N`: the account's score over time, oldest first
/// (a point whenever its score moved by 0.05 or its verdict changed; the newest 500 kept).
pub async fn account_history(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    QueryArgs(q): QueryArgs<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    known(&state, &name).await?;
    let store = state.shared.store.clone();
    let limit = q.limit.unwrap_or(store::SCORE_HISTORY_KEPT);
    let n = name.clone();
    let points = blocking(move || store.score_history(&n, limit)).await?;
    let history: Vec<Value> = points
        .into_iter()
        .map(|p| {
            json!({
                "ts": rfc3339(p.ts_ms),
                "ts_ms": p.ts_ms,
                "score": p.score,
                "verdict": p.verdict,
                "exchange": p.exchange,
            })
        })
        .collect();
    Ok(Json(json!({"account": name, "history": history})))
}

/// `GET /admin/accounts/{name}/exchanges?limit=N`: newest first.
pub async fn account_exchanges(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    QueryArgs(q): QueryArgs<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    let store = state.shared.store.clone();
    let limit = q.limit.unwrap_or(50).min(1000);
    let rows = blocking(move || store.recent_exchanges(&name, limit)).await?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|r| serde_json::from_str(&r.line).unwrap_or(Value::Null))
        .collect();
    Ok(Json(json!({"exchanges": items})))
}

/// A field of a partial update: left out (`None`: keep it), `null` (`Some(None)`: clear it) or
/// a value (`Some(Some(v))`: set it).
type Change<T> = Option<Option<T>>;

/// Reads a present field, `null` included, as `Some`: a field left out stays `None` through
/// `#[serde(default)]`.
fn change<'de, D, T>(d: D) -> Result<Change<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /admin/accounts`: every field but `name` is a `Change` (left out: kept; `null`: cleared).
#[derive(Deserialize)]
pub struct NewAccount {
    name: String,
    #[serde(default, deserialize_with = "change")]
    rpm: Change<u32>,
    #[serde(default, deserialize_with = "change")]
    tpm: Change<u32>,
    #[serde(default, deserialize_with = "change")]
    concurrency: Change<u32>,
    /// EXCHANGE_FORMAT.md `meta` facts (payment fingerprint, sign-up time, …) the gateway
    /// logs with each exchange of the account.
    #[serde(default, deserialize_with = "change")]
    meta: Change<Value>,
    /// What the log keeps of the account's exchanges (`full`, `hashes`, `metadata`); cleared,
    /// the gateway's `content` setting applies.
    #[serde(default, deserialize_with = "change")]
    content: Change<String>,
    /// Days the account's exchanges are kept; cleared, the gateway's `retention_days` applies.
    #[serde(default, deserialize_with = "change")]
    retention_days: Change<f64>,
}

/// `POST /admin/accounts`: creates an account if needed and changes the fields sent: a field
/// left out keeps its value, `null` clears it (a limit: none; `content`, `retention_days`:
/// back to the gateway's setting).
pub async fn upsert_account(
    State(state): State<Arc<AppState>>,
    JsonBody(a): JsonBody<NewAccount>,
) -> Result<Json<Value>, ApiError> {
    if let Some(Some(c)) = a.content.as_ref() {
        if ContentPolicy::parse(c).is_none() {
            return Err(ApiError::invalid_request(format!(
                "content must be one of {}, not {c:?}",
                store::CONTENT_POLICIES.join(", ")
            )));
        }
    }
    let store = state.shared.store.clone();
    let account = blocking(move || {
        let mut account = store.upsert_account(&a.name, None, now_ms())?;
        if a.rpm.is_some() || a.tpm.is_some() || a.concurrency.is_some() {
            let was = account.limits;
            let limits = limits::Limits {
                rpm: a.rpm.unwrap_or(was.rpm),
                tpm: a.tpm.unwrap_or(was.tpm),
                concurrency: a.concurrency.unwrap_or(was.concurrency),
            };
            account = store.upsert_account(&a.name, Some(limits), now_ms())?;
        }
        if let Some(meta) = a.meta {
            store.set_account_meta(&a.name, meta.as_ref())?;
            account.meta = meta;
        }
        if let Some(content) = a.content {
            store.set_account_content(&a.name, content.as_deref())?;
            account.content = content;
        }
        if let Some(days) = a.retention_days {
            store.set_account_retention(&a.name, days)?;
            account.retention_days = days;
        }
        Ok(account)
    })
    .await?;
    state.keys.set_limits(&account.name, account.limits);
    state.keys.set_meta(&account.name, account.meta.clone());
    state.keys.set_content(
        &account.name,
        account.content.as_deref().and_then(ContentPolicy::parse),
    );
    Ok(Json(serde_json::to_value(account).unwrap_or(Value::Null)))
}

/// `POST /admin/accounts/{name}/keys`: a new key, shown once.
pub async fn create_key(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let store = state.shared.store.clone();
    let key = blocking(move || {
        store.upsert_account(&name, None, now_ms())?;
        store.create_key(&name, now_ms())
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": key.id, "account": key.account, "key": key.secret})),
    ))
}

/// `DELETE /admin/keys/{id}`: revokes a key at once.
pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let store = state.shared.store.clone();
    let key_id = id.clone();
    let revoked = blocking(move || store.revoke_key(&key_id, now_ms())).await?;
    state.keys.mark_revoked(&id);
    Ok(Json(json!({"id": id, "revoked": revoked})))
}

/// Applies a human decision to the store and writes its audit line in the same blocking call,
/// so no decision goes unaudited.
async fn record_decision(
    state: &AppState,
    account: &str,
    action: &str,
    by: &str,
    reason: String,
    apply: impl FnOnce(&dyn store::Store, &str) -> store::Result<()> + Send + 'static,
) -> Result<(), ApiError> {
    let entry = AuditEntry {
        ts_ms: now_ms(),
        account: account.to_owned(),
        action: action.to_owned(),
        actor: by.to_owned(),
        reason,
    };
    let store = state.shared.store.clone();
    let name = account.to_owned();
    blocking(move || {
        apply(store.as_ref(), &name)?;
        store.audit(&entry)
    })
    .await
}

#[derive(Deserialize)]
pub struct OverrideBody {
    action: String,
    #[serde(flatten)]
    decision: Decision,
    #[serde(flatten)]
    expiry: Expiry,
}

impl OverrideBody {
    /// A decision as the console's form sends it.
    pub fn new(action: &str, reason: &str, by: &str, expires_in_hours: Option<f64>) -> Self {
        Self {
            action: action.into(),
            decision: Decision::new(reason, by),
            expiry: Expiry {
                expires_at: None,
                expires_in_hours,
            },
        }
    }
}

impl AllowBody {
    /// An allowlist change as the console's form sends it.
    pub fn new(allowlisted: bool, reason: &str, by: &str, expires_in_hours: Option<f64>) -> Self {
        Self {
            allowlisted,
            decision: Decision::new(reason, by),
            expiry: Expiry {
                expires_at: None,
                expires_in_hours,
            },
        }
    }
}

/// What every human decision carries: why (required, audited) and who (default `admin`).
#[derive(Deserialize)]
pub struct Decision {
    reason: String,
    #[serde(default)]
    by: Option<String>,
}

impl Decision {
    pub fn new(reason: &str, by: &str) -> Self {
        Self {
            reason: reason.into(),
            by: Some(by.into()),
        }
    }

    fn by(&self) -> String {
        self.by.clone().unwrap_or_else(|| "admin".into())
    }
}

/// `PUT /admin/accounts/{name}/override`: a human decision that beats the detector.
pub async fn set_override(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<OverrideBody>,
) -> Result<Json<Value>, ApiError> {
    let action = Action::parse(&b.action).ok_or_else(|| {
        ApiError::invalid_request("action must be one of allow, watch, throttle, degrade, block")
    })?;
    if b.decision.reason.trim().is_empty() {
        return Err(ApiError::invalid_request("a reason is required"));
    }
    known(&state, &name).await?;
    let by = b.decision.by();
    let now = now_ms();
    let expires_ms = b.expiry.ms(now)?;
    let o = Override {
        account: name.clone(),
        action: action.as_str().into(),
        by: by.clone(),
        reason: b.decision.reason.clone(),
        ts_ms: now,
        expires_ms,
    };
    let reason = match expires_ms {
        Some(at) => format!("override until {}: {}", rfc3339(at), b.decision.reason),
        None => format!("override: {}", b.decision.reason),
    };
    record_decision(&state, &name, action.as_str(), &by, reason, move |s, n| {
        s.set_override(Some(&o), n)
    })
    .await?;
    state
        .decide(bus::StandingUpdate::Override {
            account: name.clone(),
            action: Some((action.as_str().into(), by)),
        })
        .await;
    current_view(&state, &name).await.map(Json)
}

/// `GET /admin/groups`: accounts linked as one actor, with the evidence, highest score first.
pub async fn list_groups(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let groups = state.verdicts.groups();
    Ok(Json(json!({ "groups": groups })))
}

/// A group by its cluster name, or a 404.
fn group_of(state: &AppState, cluster: &str) -> Result<detect::GroupReport, ApiError> {
    state.verdicts.group(cluster).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("group_not_found"),
            format!("No group {cluster}."),
        )
    })
}

#[derive(Deserialize, Default)]
pub struct StixQuery {
    producer: Option<String>,
}

/// Exchanges read per member at most for a STIX bundle.
const STIX_EXCHANGES_PER_MEMBER: usize = 100_000;

/// `GET /admin/groups/{cluster}/stix?producer=NAME`: the group as a STIX 2.1 bundle for other
/// providers (`docs/sharing.md`), its indicators and sightings from the logged exchanges of its
/// members.
pub async fn group_stix(
    State(state): State<Arc<AppState>>,
    Path(cluster): Path<String>,
    QueryArgs(q): QueryArgs<StixQuery>,
) -> Result<Json<Value>, ApiError> {
    let group = group_of(&state, &cluster)?;
    let members = group.members.clone();
    let store = state.shared.store.clone();
    let who = members.clone();
    let seen = blocking(move || {
        let mut seen = BTreeMap::new();
        for m in &who {
            for (_, row) in store.exchanges(Some(m), 0, STIX_EXCHANGES_PER_MEMBER)? {
                if let Ok(ex) = exchange::parse_line(row.line.as_bytes()) {
                    stix::note(&ex, &mut seen);
                }
            }
        }
        Ok(seen)
    })
    .await?;
    let g = stix::Group {
        cluster: cluster.clone(),
        verdict: group.verdict.as_str().to_owned(),
        score: group.score,
        members: members.len(),
        reasons: group.reasons.into_iter().map(|r| r.detail).collect(),
        seen: seen.into_iter().collect(),
    };
    let producer = q.producer.unwrap_or_else(|| "distillguard".into());
    Ok(Json(stix::bundle(&producer, &[g], now_ms())))
}

/// `PUT /admin/groups/{cluster}/override`: one decision for every member of a group at once,
/// each recorded and audited as its own override.
pub async fn set_group_override(
    State(state): State<Arc<AppState>>,
    Path(cluster): Path<String>,
    JsonBody(b): JsonBody<OverrideBody>,
) -> Result<Json<Value>, ApiError> {
    let members = group_of(&state, &cluster)?.members;
    for m in &members {
        let body = OverrideBody {
            action: b.action.clone(),
            decision: Decision {
                reason: format!("{} (group {cluster})", b.decision.reason),
                by: b.decision.by.clone(),
            },
            expiry: b.expiry.clone(),
        };
        let _member_view =
            set_override(State(state.clone()), Path(m.clone()), JsonBody(body)).await?;
    }
    Ok(Json(
        json!({"cluster": cluster, "members": members, "action": b.action}),
    ))
}

/// `DELETE /admin/accounts/{name}/override`: back to the policy.
pub async fn clear_override(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    JsonBody(decision): JsonBody<Decision>,
) -> Result<Json<Value>, ApiError> {
    known(&state, &name).await?;
    let by = decision.by();
    record_decision(
        &state,
        &name,
        "clear_override",
        &by,
        decision.reason,
        |s, n| s.set_override(None, n),
    )
    .await?;
    state
        .decide(bus::StandingUpdate::Override {
            account: name.clone(),
            action: None,
        })
        .await;
    current_view(&state, &name).await.map(Json)
}

#[derive(Deserialize)]
pub struct AllowBody {
    allowlisted: bool,
    #[serde(flatten)]
    decision: Decision,
    #[serde(flatten)]
    expiry: Expiry,
}

/// `PUT /admin/accounts/{name}/allowlist`: never act on this account automatically.
pub async fn set_allowlist(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<AllowBody>,
) -> Result<Json<Value>, ApiError> {
    known(&state, &name).await?;
    let by = b.decision.by();
    let allow = b.allowlisted;
    let expires_ms = b.expiry.ms(now_ms())?;
    if !allow && expires_ms.is_some() {
        return Err(ApiError::invalid_request(
            "an expiry goes with allowlisted: true",
        ));
    }
    let action = if allow { "allowlist" } else { "unallowlist" };
    let reason = match expires_ms {
        Some(at) => format!("until {}: {}", rfc3339(at), b.decision.reason),
        None => b.decision.reason,
    };
    record_decision(&state, &name, action, &by, reason, move |s, n| {
        s.upsert_account(n, None, now_ms())?;
        s.set_allowlisted(n, allow)?;
        s.set_allowlist_expiry(n, expires_ms)
    })
    .await?;
    state
        .decide(bus::StandingUpdate::Allowlist {
            account: name.clone(),
            allowlisted: allow,
        })
        .await;
    current_view(&state, &name).await.map(Json)
}

/// `GET /admin/audit?account=NAME&limit=N`: newest first.
pub async fn audit(
    State(state): State<Arc<AppState>>,
    QueryArgs(q): QueryArgs<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    let store = state.shared.store.clone();
    let limit = q.limit.unwrap_or(100).min(10_000);
    let rows = blocking(move || store.audit_log(q.account.as_deref(), limit)).await?;
    // Each entry also carries its time as RFC 3339 (`ts`), as the exchange log does; `ts_ms`
    // stays for clients that read it.
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            let ts = exchange::Timestamp::from_millis(r.ts_ms)
                .as_str()
                .to_owned();
            let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
            v["ts"] = Value::String(ts);
            v
        })
        .collect();
    Ok(Json(json!({"audit": rows})))
}
