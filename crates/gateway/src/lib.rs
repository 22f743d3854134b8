//! The distillguard gateway: an OpenAI-compatible reverse proxy that authenticates, limits,
//! hands every exchange to the recorder and enforces the verdicts in real time. It is the HTTP
//! edge only: recording and judging are the `recorder` crate's, actions the `respond` crate's.
//!
//! ```text
//! client ─► auth ─► parse ─► policy ─► route ─► limits ─► proxy ─► upstream
//!                     (respond::PolicyTable)                │
//!                                                           ▼  off the hot path
//!                            recorder::Tap ─► exchange log + detector ─► verdicts ─► policy table
//! ```
//!
//! Traces sent to `/v1/traces` (OTLP/HTTP, `collect.rs`) take the same tap from the span on, so
//! a provider's own gateway can be judged with no change in its request path. The admin API
//! and the console ask [`recorder::Verdicts`] what was judged, whoever judges (this process or
//! the workers).
//!
//! [`Gateway::start`] binds the listener and starts the background threads; the returned
//! [`Running`] handle tells the bound address and shuts down gracefully (in-flight calls
//! drain, then the log writer commits what is queued).

mod admin;
mod auth;
mod client_ip;
mod collect;
mod config;
mod conn;
mod console;
mod error;
mod limit;
mod otlp;
mod proxy;
mod request;
mod stream;
mod tokens;

use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::routing::{delete, get, post, put};
use axum::Router;
use detect::Detector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

pub use anyhow_like::Error;
pub use config::{ContentPolicy, Durability, GatewayConfig, Upstream};
pub use console::STYLE as CONSOLE_STYLE;
pub use otlp::OtlpConfig;
pub use respond::{Action, Policy};
pub use tokens::count as count_tokens;

/// Everything a request handler can reach.
pub struct AppState {
    pub config: GatewayConfig,
    pub keys: auth::KeyCache,
    pub limiter: limit::Limiter,
    pub shared: Arc<recorder::Shared>,
    pub tap: recorder::Tap,
    /// Present when exchanges go to workers over NATS.
    pub bus: Option<BusState>,
    /// Who judges: this process's detector, or the workers.
    pub verdicts: Arc<dyn recorder::Verdicts>,
    pub client: reqwest::Client,
    pub admin_token: Option<String>,
    pub metrics: PrometheusHandle,
    /// Present when proxied calls are exported as OpenTelemetry spans (`[otlp]`).
    pub otlp: Option<otlp::Exporter>,
    /// The console's signed-in sessions.
    pub console: console::Sessions,
    /// Message content received on `/v1/logs`, waiting for its spans.
    pub log_content: collect::LogContent,
    /// The store's account names for the console's lists, read at most every few seconds.
    pub store_names: admin::StoreNames,
}

/// One Prometheus recorder per process (tests start several gateways in one process).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

pub fn router(state: Arc<AppState>) -> Router {
    let admin = Router::new()
        .route(
            "/admin/accounts",
            get(admin::list_accounts).post(admin::upsert_account),
        )
        .route("/admin/accounts/{name}", get(admin::get_account))
        .route(
            "/admin/accounts/{name}/exchanges",
            get(admin::account_exchanges),
        )
        .route(
            "/admin/accounts/{name}/history",
            get(admin::account_history),
        )
        .route("/admin/accounts/{name}/keys", post(admin::create_key))
        .route(
            "/admin/accounts/{name}/override",
            put(admin::set_override).delete(admin::clear_override),
        )
        .route(
            "/admin/accounts/{name}/allowlist",
            put(admin::set_allowlist),
        )
        .route("/admin/keys/{id}", delete(admin::revoke_key))
        .route("/admin/audit", get(admin::audit))
        .route("/admin/groups", get(admin::list_groups))
        .route(
            "/admin/groups/{cluster}/override",
            put(admin::set_group_override),
        )
        .route("/admin/groups/{cluster}/stix", get(admin::group_stix))
        // OTLP/HTTP traces: what it accepts becomes evidence, so it takes the admin token.
        .route("/v1/traces", post(collect::traces))
        .route("/v1/logs", post(collect::logs))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin::require_admin,
        ));
    // The console signs in with the admin token and keeps a session cookie of its own.
    let console = Router::new()
        .route("/admin/ui", get(console::overview))
        .route(
            "/admin/ui/login",
            get(console::login_page).post(console::login),
        )
        .route("/admin/ui/logout", post(console::logout))
        .route("/admin/ui/queue", get(console::queue))
        .route("/admin/ui/accounts", get(console::accounts_page))
        .route("/admin/ui/accounts/{name}", get(console::account_page))
        .route("/admin/ui/accounts/{name}/decide", post(console::decide))
        .route("/admin/ui/groups", get(console::groups_page))
        .route("/admin/ui/groups/{cluster}", get(console::group_page))
        .route(
            "/admin/ui/groups/{cluster}/decide",
            post(console::decide_group),
        )
        .route("/admin/ui/groups/{cluster}/stix", get(console::group_stix))
        .route("/admin/ui/audit", get(console::audit_page))
        .route("/admin/ui/evidence", get(console::evidence_page))
        .route("/admin/ui/evidence/{file}", get(console::evidence_report));
    Router::new()
        .route("/v1/chat/completions", post(proxy::generate))
        .route("/v1/completions", post(proxy::generate))
        .route("/v1/embeddings", post(proxy::generate))
        .route("/v1/responses", post(proxy::generate))
        .route("/v1/models", get(proxy::models))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(
                |axum::extract::State(s): axum::extract::State<Arc<AppState>>| async move {
                    s.metrics.render()
                },
            ),
        )
        .merge(admin)
        .merge(console)
        .fallback(|| async {
            error::ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "invalid_request_error",
                Some("unknown_url"),
                "Unknown request URL.",
            )
        })
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn(body_too_large_as_openai_error))
        .with_state(state)
}

/// axum answers an oversized body with a plain-text 413; clients expect OpenAI's error shape.
async fn body_too_large_as_openai_error(
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let resp = next.run(req).await;
    if resp.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE
        && resp
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_none_or(|v| v != "application/json")
    {
        return error::ApiError::too_large().into_response();
    }
    resp
}

pub struct Gateway;

/// A replica's side of the bus: where it writes the standing decided on its admin API.
pub struct BusState {
    pub standing: Arc<tokio::sync::RwLock<Option<bus::Standing>>>,
}

impl BusState {
    /// Pushes a human decision to every replica; the store already holds it, so a failure
    /// here is logged and the other replicas pick it up at their next start.
    pub async fn push(&self, update: bus::StandingUpdate) {
        let standing = self.standing.read().await.clone();
        match standing {
            Some(s) => {
                if let Err(e) = s.put(&update).await {
                    tracing::error!(error = %e, "pushing a decision to the other replicas failed");
                }
            }
            None => tracing::error!("NATS is not reachable: the decision is stored but not pushed"),
        }
    }
}

/// Keeps the policy table in step with the standing bucket: the latest value of every key,
/// then each change. Retries while NATS is away.
fn spawn_standing_watch(
    client: bus::async_nats::Client,
    table: Arc<respond::PolicyTable>,
    slot: Arc<tokio::sync::RwLock<Option<bus::Standing>>>,
    groups: Arc<recorder::Workers>,
) -> tokio::task::JoinHandle<()> {
    use futures_util::StreamExt;
    tokio::spawn(async move {
        let js = bus::jetstream(client);
        loop {
            let standing = match bus::Standing::open(&js).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "standing bucket not reachable yet");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            *slot.write().await = Some(standing.clone());
            match standing.watch().await {
                Ok(updates) => {
                    let mut updates = std::pin::pin!(updates);
                    while let Some(u) = updates.next().await {
                        apply_standing(&table, &groups, u);
                    }
                    tracing::warn!("the standing watch ended; watching again");
                }
                Err(e) => tracing::warn!(error = %e, "watching the standing bucket failed"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

fn apply_standing(
    table: &respond::PolicyTable,
    groups: &recorder::Workers,
    u: bus::StandingUpdate,
) {
    match u {
        // A group merged into another is published as null.
        bus::StandingUpdate::Group { cluster, report } if report.is_null() => {
            groups.publish(&cluster, None)
        }
        bus::StandingUpdate::Group { cluster, report } => {
            match serde_json::from_value::<detect::GroupReport>(report) {
                Ok(g) => groups.publish(&cluster, Some(g)),
                Err(e) => tracing::warn!(cluster, error = %e, "a published group did not read"),
            }
        }
        other => apply_to_table(table, &other),
    }
}

/// What a verdict, override or allowlist change means for the policy table: the one mapping
/// for decisions taken here and for those arriving from other replicas.
fn apply_to_table(table: &respond::PolicyTable, u: &bus::StandingUpdate) {
    match u {
        bus::StandingUpdate::Verdict { account, verdict } => {
            if let Some(v) = detect::Verdict::parse(verdict) {
                table.set_verdict(account, v);
            }
        }
        bus::StandingUpdate::Override { account, action } => {
            let action = action
                .as_ref()
                .and_then(|(a, by)| Action::parse(a).map(|a| (a, by.clone())));
            table.set_override(account, action);
        }
        bus::StandingUpdate::Allowlist {
            account,
            allowlisted,
        } => table.set_allowlisted(account, *allowlisted),
        bus::StandingUpdate::Group { .. } => {}
    }
}

impl AppState {
    /// Applies a human decision (already stored and audited) here at once, and pushes it to
    /// every other replica when there are others.
    pub async fn decide(&self, update: bus::StandingUpdate) {
        apply_to_table(&self.shared.table, &update);
        if let Some(b) = &self.bus {
            b.push(update).await;
        }
    }
}

/// A running gateway.
pub struct Running {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    /// Threads following log files (`collect --tail`); they hold the tap until they stop.
    followers: Vec<std::thread::JoinHandle<()>>,
    writer: Option<std::thread::JoinHandle<()>>,
    publisher: Option<tokio::task::JoinHandle<()>>,
    standing_watch: Option<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Opens the detector state from the stored log, binds the listener and starts serving.
    pub async fn start(
        config: GatewayConfig,
        store: Arc<dyn Store>,
        admin_token: Option<String>,
    ) -> anyhow_like::Result<Running> {
        let shared = Arc::new(recorder::Shared {
            store: store.clone(),
            detector: Arc::new(Mutex::new(Detector::new(config.detector.clone()))),
            table: Arc::new(respond::PolicyTable::default()),
            last_scored: Default::default(),
            policy: config.policy.clone(),
        });
        // Restore state: human decisions, then the verdicts. When this process detects, the
        // stored verdicts are enforced at once, the detector restores its snapshot, and its
        // thread catches up with the rest of the log while the gateway serves; when workers
        // detect, the stored verdicts are the state.
        let detects_here = config.bus.is_none();
        let catch_up = {
            let s = shared.clone();
            tokio::task::spawn_blocking(move || -> store::Result<recorder::CatchUp> {
                for o in s.store.overrides()? {
                    if let Some(a) = Action::parse(&o.action) {
                        s.table.set_override(&o.account, Some((a, o.by)));
                    }
                }
                for a in s.store.accounts()? {
                    if a.allowlisted {
                        s.table.set_allowlisted(&a.name, true);
                    }
                }
                if detects_here {
                    return recorder::prepare_catch_up(&s);
                }
                for v in s.store.verdicts()? {
                    if let Some(verdict) = detect::Verdict::parse(&v.verdict) {
                        s.table.set_verdict(&v.account, verdict);
                    }
                }
                Ok(recorder::CatchUp::default())
            })
            .await
            .map_err(anyhow_like::Error::of)??
        };
        let keys = auth::KeyCache::new(store.clone());
        {
            // On a blocking thread: the PostgreSQL client must not block the runtime.
            let k = keys.clone();
            tokio::task::spawn_blocking(move || k.refresh())
                .await
                .map_err(anyhow_like::Error::of)??;
        }
        keys.spawn_refresher(Duration::from_secs(1));
        let (tap, writer, publisher, standing_watch, bus_state) = match &config.bus {
            None => {
                let (tap, writer) = recorder::start_tap(
                    shared.clone(),
                    config.log_durability,
                    config.log_queue,
                    Duration::from_millis(config.log_flush_ms),
                    config.snapshot_every(),
                    catch_up,
                );
                (tap, Some(writer), None, None, None)
            }
            Some(url) => {
                let client = bus::connect(url).await.map_err(anyhow_like::Error::of)?;
                let js = bus::jetstream(client.clone());
                if let Err(e) = bus::ensure_stream(&js).await {
                    tracing::warn!(error = %e, "NATS not reachable yet: exchanges are spooled until it is");
                }
                let (publisher, task) = bus::Publisher::start(
                    client.clone(),
                    &config.data.join("spool").join("exchanges.jsonl"),
                    config.bus_spool_max_bytes,
                    config.log_queue,
                )
                .map_err(anyhow_like::Error::of)?;
                let slot = Arc::new(tokio::sync::RwLock::new(None));
                let workers = Arc::new(recorder::Workers::new(store.clone()));
                let watch = spawn_standing_watch(
                    client,
                    shared.table.clone(),
                    slot.clone(),
                    workers.clone(),
                );
                (
                    recorder::Tap::Bus(publisher),
                    None,
                    Some(task),
                    Some(watch),
                    Some((BusState { standing: slot }, workers)),
                )
            }
        };
        // Hourly, even without a default: accounts may have a retention of their own.
        spawn_retention(store.clone(), config.retention_days);
        let limiter = match &config.limits {
            None => limit::Limiter::Local(limits::Limiter::new()),
            Some(url) => limit::Limiter::Shared(
                limits::RedisLimiter::new(url, config.limits_fallback)
                    .map_err(|e| anyhow_like::Error(format!("limits at {url}: {e}")))?,
            ),
        };
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .build()
            .map_err(anyhow_like::Error::of)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow_like::Error(format!("cannot listen on {}: {e}", config.listen)))?;
        let addr = listener.local_addr().map_err(anyhow_like::Error::of)?;
        let otlp = config
            .otlp
            .as_ref()
            .filter(|c| !c.endpoint.is_empty())
            .map(|c| otlp::Exporter::start(c.clone(), client.clone()));
        let (bus_state, verdicts): (_, Arc<dyn recorder::Verdicts>) = match bus_state {
            Some((b, workers)) => (Some(b), workers),
            None => (None, Arc::new(recorder::Here(shared.detector.clone()))),
        };
        let state = Arc::new(AppState {
            config,
            verdicts,
            otlp,
            console: console::Sessions::default(),
            log_content: collect::LogContent::default(),
            store_names: admin::StoreNames::default(),
            keys,
            limiter,
            shared,
            tap,
            bus: bus_state,
            client,
            admin_token,
            metrics: metrics_handle(),
        });
        spawn_decision_expiry(
            Arc::downgrade(&state),
            Duration::from_secs_f64(state.config.decision_expiry_check_secs.max(0.05)),
        );
        let (shutdown, rx) = watch::channel(false);
        let mut followers = Vec::new();
        for f in &state.config.tail {
            let thread = recorder::spawn_follow(
                f.clone(),
                state.tap.clone(),
                state.config.content,
                rx.clone(),
                tokio::runtime::Handle::current(),
            )
            .map_err(anyhow_like::Error::of)?;
            followers.push(thread);
        }
        let server = tokio::spawn(accept_loop(listener, state.clone(), rx));
        Ok(Running {
            addr,
            state,
            shutdown,
            server,
            followers,
            writer,
            publisher,
            standing_watch,
        })
    }
}

fn spawn_retention(store: Arc<dyn Store>, default_days: Option<f64>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let s = store.clone();
            let now = recorder::now_ms();
            match tokio::task::spawn_blocking(move || s.expire_exchanges(now, default_days)).await {
                Ok(Ok(n)) if n > 0 => {
                    tracing::info!(deleted = n, "expired exchanges past the retention period")
                }
                Ok(Err(e)) => tracing::error!(error = %e, "expiring old exchanges failed"),
                _ => {}
            }
        }
    });
}

/// Lapses the human decisions whose time has come, within `every` of it: an override or an
/// allowlist entry with an expiry is removed, audited (actor `expiry`) and the policy table
/// told, here and on every replica, as a person clearing it would. Holds the gateway weakly,
/// so it ends with it.
fn spawn_decision_expiry(state: std::sync::Weak<AppState>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else {
                return;
            };
            let store = state.shared.store.clone();
            let now = recorder::now_ms();
            let lapsed = tokio::task::spawn_blocking(move || lapse_decisions(&*store, now)).await;
            match lapsed {
                Ok(Ok((overrides, allowlisted))) => {
                    for account in overrides {
                        state
                            .decide(bus::StandingUpdate::Override {
                                account,
                                action: None,
                            })
                            .await;
                    }
                    for account in allowlisted {
                        state
                            .decide(bus::StandingUpdate::Allowlist {
                                account,
                                allowlisted: false,
                            })
                            .await;
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "lapsing expired decisions failed"),
                Err(e) => tracing::error!(error = %e, "lapsing expired decisions failed"),
            }
        }
    });
}

/// Removes and audits the overrides and allowlist entries that lapsed by `now`; returns the
/// accounts of each.
fn lapse_decisions(store: &dyn Store, now: i64) -> store::Result<(Vec<String>, Vec<String>)> {
    let due = |t: Option<i64>| t.is_some_and(|t| t <= now);
    let mut overrides = Vec::new();
    for o in store.overrides()?.into_iter().filter(|o| due(o.expires_ms)) {
        store.set_override(None, &o.account)?;
        store.audit(&store::AuditEntry {
            ts_ms: now,
            account: o.account.clone(),
            action: "override_expired".into(),
            actor: "expiry".into(),
            reason: format!(
                "the override to {} set by {} lapsed ({})",
                o.action, o.by, o.reason
            ),
        })?;
        overrides.push(o.account);
    }
    let mut allowlisted = Vec::new();
    for a in store.accounts()? {
        if !(a.allowlisted && due(a.allowlist_expires_ms)) {
            continue;
        }
        store.set_allowlisted(&a.name, false)?;
        store.set_allowlist_expiry(&a.name, None)?;
        store.audit(&store::AuditEntry {
            ts_ms: now,
            account: a.name.clone(),
            action: "allowlist_expired".into(),
            actor: "expiry".into(),
            reason: "the allowlist entry lapsed".into(),
        })?;
        allowlisted.push(a.name);
    }
    Ok((overrides, allowlisted))
}

/// Accepts connections until shutdown. Each connection is bounded (`conn`): a cap on open
/// connections, a header-read timeout, body timeouts, and an idle timeout; and it is watched
/// for graceful shutdown.
async fn accept_loop(
    listener: TcpListener,
    state: Arc<AppState>,
    mut shutdown: watch::Receiver<bool>,
) {
    use futures_util::FutureExt;
    let app = router(state.clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let body_timeout = state.config.body_timeout();
    let body_total = state.config.body_total_timeout();
    let idle = state.config.idle_timeout();
    let open = Arc::new(tokio::sync::Semaphore::new(state.config.max_connections));
    // Refusals are bounded too: past this many at once, a connection over the cap is just
    // closed.
    let refusing = Arc::new(tokio::sync::Semaphore::new(256));
    loop {
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Ok(slot) = open.clone().try_acquire_owned() else {
            metrics::counter!("distillguard_connections_refused_total").increment(1);
            if let Ok(r) = refusing.clone().try_acquire_owned() {
                tokio::spawn(async move {
                    conn::refuse(stream).await;
                    drop(r);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = conn::Activity::new();
        let io = TokioIo::new(conn::Watched::new(stream, activity.clone()));
        let app = app.clone();
        let calls = activity.clone();
        let service =
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let call = calls.call();
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(remote));
                // A client that stalls or trickles while sending its body is cut off.
                let req = req.map(|b| {
                    axum::body::Body::new(conn::TimeoutBody::new(b, body_timeout, body_total))
                });
                app.clone().oneshot(req).map(move |r| {
                    r.map(|resp| resp.map(|b| axum::body::Body::new(conn::Guarded::new(b, call))))
                })
            });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(state.config.header_timeout());
        let conn = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                _ = conn::idle(activity, idle) => {
                    metrics::counter!("distillguard_connections_idle_closed_total").increment(1);
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    // Let in-flight calls finish (bounded, so a stuck stream cannot hold shutdown forever).
    let _ = tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await;
}

impl Running {
    /// Stops accepting, drains in-flight calls, then waits for the log to be committed.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        for f in std::mem::take(&mut self.followers) {
            let _ = tokio::task::spawn_blocking(move || f.join()).await;
        }
        let writer = self.writer.take();
        if let Some(w) = self.standing_watch.take() {
            w.abort();
        }
        // The tap senders live in the state; dropping it lets the writer (or the publisher)
        // drain and exit.
        drop(self.state);
        if let Some(w) = writer {
            let _ = tokio::task::spawn_blocking(move || w.join()).await;
        }
        if let Some(p) = self.publisher.take() {
            let _ = p.await;
        }
    }
}

/// A small error type for start-up, so this library does not pull in anyhow.
mod anyhow_like {
    #[derive(Debug)]
    pub struct Error(pub String);

    impl std::fmt::Display for Error {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Error {}

    impl Error {
        /// Any error, kept as its message.
        pub fn of(e: impl std::fmt::Display) -> Self {
            Error(e.to_string())
        }
    }

    impl From<store::StoreError> for Error {
        fn from(e: store::StoreError) -> Self {
            Error(e.to_string())
        }
    }

    pub type Result<T> = std::result::Result<T, Error>;
}

#[cfg(test)]
mod tests {
    use recorder::Verdicts;
    use serde_json::json;

    use super::*;

    #[test]
    fn a_group_published_as_null_is_dropped_from_the_replicas_list() {
        let table = respond::PolicyTable::default();
        let dir = tempfile::tempdir().unwrap();
        let store = store::open(&dir.path().join("s.db").to_string_lossy()).unwrap();
        let groups = recorder::Workers::new(store);
        let publish = |cluster: &str, report: serde_json::Value| {
            apply_standing(
                &table,
                &groups,
                bus::StandingUpdate::Group {
                    cluster: cluster.into(),
                    report,
                },
            )
        };
        let group = |cluster: &str, members: &[&str]| {
            json!({"cluster": cluster, "verdict": "suspicious", "score": 0.5,
                   "first_flagged": null, "members": members, "exchanges": 4,
                   "links": {"payment": 1}, "evidence": [], "reasons": []})
        };
        publish("grp-a", group("grp-a", &["a1", "a2"]));
        publish("grp-b", group("grp-b", &["b1", "b2"]));
        publish("grp-c", json!({"not": "a group"}));
        assert_eq!(groups.groups().len(), 2);
        // grp-b merged into grp-a: the worker publishes the bigger group and retires the other.
        publish("grp-a", group("grp-a", &["a1", "a2", "b1", "b2"]));
        publish("grp-b", serde_json::Value::Null);
        let now = groups.groups();
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].members.len(), 4);
    }
}
