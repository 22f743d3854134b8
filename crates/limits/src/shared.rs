//! Limits shared by every gateway replica through Redis.
//!
//! Each account keeps the same sliding-window log as the in-memory limiter, as Redis sorted
//! sets, and one Lua script checks and records a call atomically: one round trip admits a
//! call, whichever replica it reaches, so a limit of N per minute admits at most N summed over
//! all replicas, and exactly N when demand exceeds it. Time is Redis's own clock (`TIME`), so
//! replicas with skewed clocks still agree on the window.
//!
//! Tokens are reserved at admission and trued up when the call ends; that second script and
//! the release of the concurrency slot run after the answer is sent, off the request path.
//! Concurrency slots are leases: a replica that dies holding one frees it when the lease ends.
//!
//! When Redis cannot be reached the configured [`Fallback`] applies, and Redis is tried
//! again a second later, so limits return to shared counting as soon as it is back.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::Script;

use crate::{Denied, Limit, Limiter, Limits, Permit};

/// What happens to a call while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    /// Serve, enforcing the limits in this replica's memory only (each replica admits up to
    /// the full limit, so the total may reach replicas × limit while Redis is down).
    #[default]
    Local,
    /// Refuse calls from accounts that have limits (503) until Redis is back.
    Closed,
}

const ADMIT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm, tpm, conc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local reserve, lease = tonumber(ARGV[4]), tonumber(ARGV[5])
local win = 60000
if conc >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  if redis.call('ZCARD', KEYS[4]) >= conc then return {0, 3, 1000} end
end
if rpm >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - win)
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {0, 1, tonumber(oldest[2]) + win - now}
  end
end
local sum = 0
if tpm >= 0 then
  sum = tonumber(redis.call('HGET', KEYS[3], 'sum') or '0')
  local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - win)
  for _, id in ipairs(old) do
    sum = sum - tonumber(redis.call('HGET', KEYS[3], id) or '0')
    redis.call('HDEL', KEYS[3], id)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - win)
  if reserve > tpm then reserve = tpm end
  if sum + reserve > tpm then
    redis.call('HSET', KEYS[3], 'sum', sum)
    local all = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
    local freed, retry = 0, win
    for i = 1, #all, 2 do
      freed = freed + tonumber(redis.call('HGET', KEYS[3], all[i]) or '0')
      if sum - freed + reserve <= tpm then
        retry = tonumber(all[i + 1]) + win - now
        break
      end
    end
    return {0, 2, retry}
  end
end
local ticket = redis.call('INCR', KEYS[5])
redis.call('PEXPIRE', KEYS[5], win + lease)
if rpm >= 0 then
  redis.call('ZADD', KEYS[1], now, ticket)
  redis.call('PEXPIRE', KEYS[1], win)
end
if tpm >= 0 then
  redis.call('ZADD', KEYS[2], now, ticket)
  redis.call('HSET', KEYS[3], ticket, reserve, 'sum', sum + reserve)
  redis.call('PEXPIRE', KEYS[2], win + lease)
  redis.call('PEXPIRE', KEYS[3], win + lease)
end
if conc >= 0 then
  redis.call('ZADD', KEYS[4], now + lease, ticket)
  redis.call('PEXPIRE', KEYS[4], lease)
end
return {1, ticket, 0}
"#;

const FINISH: &str = r#"
local used = tonumber(ARGV[2])
if used >= 0 then
  local r = redis.call('HGET', KEYS[1], ARGV[1])
  if r then
    local sum = tonumber(redis.call('HGET', KEYS[1], 'sum') or '0') - tonumber(r) + used
    redis.call('HSET', KEYS[1], ARGV[1], used, 'sum', sum)
  end
end
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"#;

/// How long a call may hold a concurrency slot before Redis frees it on its own; longer than
/// any upstream timeout.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15 * 60);

struct Inner {
    conn: ConnectionManager,
    admit: Script,
    finish: Script,
    fallback: Fallback,
    local: Limiter,
    lease: Duration,
    timeout: Duration,
    started: Instant,
    /// Until when (ms since `started`) Redis is skipped after a failure.
    down_until_ms: AtomicI64,
    warned_down: AtomicBool,
}

/// The limiter every replica shares. Cheap to clone.
#[derive(Clone)]
pub struct RedisLimiter {
    inner: Arc<Inner>,
}

/// An admitted call, wherever it was counted.
pub enum SharedPermit {
    Redis(RedisPermit),
    Local(Permit),
}

pub struct RedisPermit {
    inner: Arc<Inner>,
    ticket: i64,
    /// The token and in-flight keys to settle when the call ends; `None` when there is
    /// nothing to settle (a requests-only limit costs one round trip in all).
    settle_keys: Option<[String; 2]>,
    /// Tokens really used, once known (`u64::MAX` until then).
    used: AtomicU64,
}

impl RedisLimiter {
    /// A limiter on the Redis at `url`; connects lazily, so a replica starts while Redis is
    /// down and uses the fallback until it is up.
    pub fn new(url: &str, fallback: Fallback) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let timeout = Duration::from_millis(250);
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                admit: Script::new(ADMIT),
                finish: Script::new(FINISH),
                fallback,
                local: Limiter::new(),
                lease: DEFAULT_LEASE,
                timeout,
                started: Instant::now(),
                down_until_ms: AtomicI64::new(0),
                warned_down: AtomicBool::new(false),
            }),
        })
    }

    /// True while Redis is being skipped after a failure.
    pub fn degraded(&self) -> bool {
        self.inner.elapsed_ms() < self.inner.down_until_ms.load(Ordering::Relaxed)
    }

    /// Admits a call or says which limit refuses it; see [`Limiter::admit`].
    pub async fn admit(
        &self,
        account: &str,
        limits: Limits,
        reserve_tokens: u64,
    ) -> Result<SharedPermit, Denied> {
        let inner = &self.inner;
        if limits == Limits::default() {
            // Nothing to count: no round trip.
            return inner
                .local
                .admit(account, limits, reserve_tokens, Instant::now())
                .map(SharedPermit::Local);
        }
        if !self.degraded() {
            match inner.try_admit(account, limits, reserve_tokens).await {
                Ok(outcome) => {
                    if inner.warned_down.swap(false, Ordering::Relaxed) {
                        tracing::info!("Redis is back: limits are shared again");
                    }
                    return outcome;
                }
                Err(e) => {
                    inner
                        .down_until_ms
                        .store(inner.elapsed_ms() + 1000, Ordering::Relaxed);
                    if !inner.warned_down.swap(true, Ordering::Relaxed) {
                        tracing::error!(error = %e, fallback = ?inner.fallback, "Redis unreachable: limits fall back");
                    }
                }
            }
        }
        metrics::counter!("distillguard_limits_fallback_total").increment(1);
        match inner.fallback {
            Fallback::Local => inner
                .local
                .admit(account, limits, reserve_tokens, Instant::now())
                .map(SharedPermit::Local),
            Fallback::Closed => Err(Denied {
                limit: Limit::Unavailable,
                retry_after: Duration::from_secs(1),
            }),
        }
    }
}

fn keys(account: &str) -> [String; 5] {
    // Hex keeps any account name a valid key; the braces keep one account's keys on one
    // Redis Cluster slot, as a script needs.
    let hex: String = account.bytes().map(|b| format!("{b:02x}")).collect();
    ["req", "tok", "toka", "inf", "seq"].map(|k| format!("dg:lim:{{{hex}}}:{k}"))
}

impl Inner {
    fn elapsed_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    async fn try_admit(
        self: &Arc<Self>,
        account: &str,
        limits: Limits,
        reserve: u64,
    ) -> Result<Result<SharedPermit, Denied>, String> {
        let [req, tok, toka, inf, seq] = keys(account);
        let opt = |l: Option<u32>| l.map_or(-1, i64::from);
        let mut conn = self.conn.clone();
        let mut call = self.admit.prepare_invoke();
        for k in [&req, &tok, &toka, &inf, &seq] {
            call.key(k);
        }
        call.arg(opt(limits.rpm))
            .arg(opt(limits.tpm))
            .arg(opt(limits.concurrency))
            .arg(reserve)
            .arg(self.lease.as_millis() as u64);
        let reply: (i64, i64, i64) =
            match tokio::time::timeout(self.timeout, call.invoke_async(&mut conn)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("Redis did not answer in time".into()),
            };
        Ok(match reply {
            (1, ticket, _) => Ok(SharedPermit::Redis(RedisPermit {
                inner: self.clone(),
                ticket,
                settle_keys: (limits.tpm.is_some() || limits.concurrency.is_some())
                    .then_some([toka, inf]),
                used: AtomicU64::new(u64::MAX),
            })),
            (_, which, retry_ms) => Err(Denied {
                limit: match which {
                    1 => Limit::Requests,
                    2 => Limit::Tokens,
                    _ => Limit::Concurrency,
                },
                retry_after: Duration::from_millis(retry_ms.max(0) as u64),
            }),
        })
    }
}

impl SharedPermit {
    /// Replaces the call's token reservation with what it really used.
    pub fn settle(&self, used_tokens: u64) {
        match self {
            SharedPermit::Local(p) => p.settle(used_tokens),
            SharedPermit::Redis(p) => p.used.store(used_tokens, Ordering::Relaxed),
        }
    }
}

impl Drop for RedisPermit {
    fn drop(&mut self) {
        // One script trues up the tokens and frees the slot, after the call, off its path.
        let Some([toka, inf]) = self.settle_keys.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return; // no runtime: the lease frees the slot
        };
        let inner = self.inner.clone();
        let ticket = self.ticket;
        let used = self.used.load(Ordering::Relaxed);
        rt.spawn(async move {
            let mut conn = inner.conn.clone();
            let used = if used == u64::MAX { -1 } else { used as i64 };
            let r: redis::RedisResult<i64> = inner
                .finish
                .key(toka)
                .key(inf)
                .arg(ticket)
                .arg(used)
                .invoke_async(&mut conn)
                .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, "settling a call in Redis failed; its lease will free it");
            }
        });
    }
}
