//! Per-account limits, exact: a limit of N per minute admits at most N in any 60-second
//! window, and exactly N when demand exceeds it. That rules out fixed windows (2N across a
//! boundary) and approximate sliding counters (fewer than N); each account keeps a log of
//! its admissions inside the window instead, which is bounded by the limit itself.
//!
//! Tokens are reserved when a call is admitted (prompt estimate + `max_tokens`) and trued up
//! to the real usage when it ends, so a burst of large requests cannot overshoot the budget.

#[cfg(feature = "redis")]
mod shared;
#[cfg(feature = "redis")]
pub use shared::{Fallback, RedisLimiter, RedisPermit, SharedPermit, DEFAULT_LEASE};

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(60);

/// The limits of one account; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Requests admitted in any 60-second window.
    pub rpm: Option<u32>,
    /// Tokens (input + output) in any 60-second window.
    pub tpm: Option<u32>,
    /// Calls in flight at once.
    pub concurrency: Option<u32>,
}

/// Which limit refused a call, and when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    pub limit: Limit,
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Requests,
    Tokens,
    Concurrency,
    /// The shared limit store is unreachable and the policy is to fail closed.
    Unavailable,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::Requests => "requests per minute",
            Limit::Tokens => "tokens per minute",
            Limit::Concurrency => "concurrent requests",
            Limit::Unavailable => "the limit service (unavailable)",
        }
    }
}

#[derive(Default)]
struct Window {
    requests: VecDeque<Instant>,
    /// (admitted at, tokens) per call still inside the window; reservations are trued up in place.
    tokens: VecDeque<(Instant, u64, u64)>,
    token_sum: u64,
    in_flight: u32,
    next_ticket: u64,
}

impl Window {
    fn expire(&mut self, now: Instant) {
        while self
            .requests
            .front()
            .is_some_and(|&t| now.duration_since(t) >= WINDOW)
        {
            self.requests.pop_front();
        }
        while let Some(&(t, _, n)) = self.tokens.front() {
            if now.duration_since(t) < WINDOW {
                break;
            }
            self.token_sum = self.token_sum.saturating_sub(n);
            self.tokens.pop_front();
        }
    }
}

/// In-memory limiter shared by all requests of one gateway process.
#[derive(Default, Clone)]
pub struct Limiter {
    accounts: Arc<Mutex<HashMap<String, Window>>>,
}

/// An admitted call. Dropping it releases its concurrency slot; [`Permit::settle`] trues up
/// its token reservation to what the call really used.
pub struct Permit {
    limiter: Limiter,
    account: String,
    ticket: u64,
    counted_in_flight: bool,
}

impl Limiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits a call or says which limit refuses it. `reserve_tokens` is the most the call can
    /// use (prompt estimate + requested output).
    pub fn admit(
        &self,
        account: &str,
        limits: Limits,
        reserve_tokens: u64,
        now: Instant,
    ) -> Result<Permit, Denied> {
        let mut accounts = self.accounts.lock();
        let w = accounts.entry(account.to_owned()).or_default();
        w.expire(now);
        if let Some(max) = limits.concurrency {
            if w.in_flight >= max {
                return Err(Denied {
                    limit: Limit::Concurrency,
                    retry_after: Duration::from_secs(1),
                });
            }
        }
        if let Some(max) = limits.rpm {
            if w.requests.len() >= max as usize {
                let oldest = *w.requests.front().expect("non-empty at the limit");
                return Err(Denied {
                    limit: Limit::Requests,
                    retry_after: WINDOW.saturating_sub(now.duration_since(oldest)),
                });
            }
        }
        // A call may not reserve more than the whole budget, or it could never run.
        let reserve = limits
            .tpm
            .map_or(reserve_tokens, |m| reserve_tokens.min(u64::from(m)));
        if let Some(max) = limits.tpm {
            // Saturating everywhere a client's number meets a limit: no sum may wrap.
            if w.token_sum.saturating_add(reserve) > u64::from(max) {
                // Time until enough of the window expires to make room.
                let mut freed: u64 = 0;
                let mut retry = WINDOW;
                for &(t, _, n) in &w.tokens {
                    freed = freed.saturating_add(n);
                    if w.token_sum.saturating_sub(freed).saturating_add(reserve) <= u64::from(max) {
                        retry = WINDOW.saturating_sub(now.duration_since(t));
                        break;
                    }
                }
                return Err(Denied {
                    limit: Limit::Tokens,
                    retry_after: retry,
                });
            }
        }
        w.requests.push_back(now);
        let ticket = w.next_ticket;
        w.next_ticket += 1;
        if limits.tpm.is_some() {
            w.tokens.push_back((now, ticket, reserve));
            w.token_sum = w.token_sum.saturating_add(reserve);
        }
        w.in_flight += 1;
        Ok(Permit {
            limiter: self.clone(),
            account: account.to_owned(),
            ticket,
            counted_in_flight: true,
        })
    }

    /// Calls admitted in the last 60 seconds (for tests and metrics).
    pub fn requests_in_window(&self, account: &str, now: Instant) -> usize {
        let mut accounts = self.accounts.lock();
        accounts.get_mut(account).map_or(0, |w| {
            w.expire(now);
            w.requests.len()
        })
    }

    pub fn tokens_in_window(&self, account: &str, now: Instant) -> u64 {
        let mut accounts = self.accounts.lock();
        accounts.get_mut(account).map_or(0, |w| {
            w.expire(now);
            w.token_sum
        })
    }
}

impl Permit {
    /// Replaces the call's token reservation with what it really used.
    pub fn settle(&self, used_tokens: u64) {
        let mut accounts = self.limiter.accounts.lock();
        if let Some(w) = accounts.get_mut(&self.account) {
            if let Some(entry) = w.tokens.iter_mut().find(|e| e.1 == self.ticket) {
                w.token_sum = w
                    .token_sum
                    .saturating_sub(entry.2)
                    .saturating_add(used_tokens);
                entry.2 = used_tokens;
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.counted_in_flight {
            let mut accounts = self.limiter.accounts.lock();
            if let Some(w) = accounts.get_mut(&self.account) {
                w.in_flight = w.in_flight.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpm(n: u32) -> Limits {
        Limits {
            rpm: Some(n),
            ..Limits::default()
        }
    }

    #[test]
    fn exactly_n_per_sliding_minute_never_more_never_fewer() {
        let l = Limiter::new();
        let t0 = Instant::now();
        let mut admitted = Vec::new();
        // Demand: one call every 100 ms for three minutes against a limit of 50 per minute.
        for i in 0..1800u64 {
            let now = t0 + Duration::from_millis(i * 100);
            if let Ok(p) = l.admit("a", rpm(50), 0, now) {
                admitted.push(now);
                drop(p);
            }
        }
        for (i, &start) in admitted.iter().enumerate() {
            let in_window = admitted[i..]
                .iter()
                .take_while(|&&t| t.duration_since(start) < WINDOW)
                .count();
            assert!(in_window <= 50, "{in_window} in one window");
        }
        // With demand above the limit, every full minute admits exactly the limit.
        assert_eq!(admitted.len(), 150);
    }

    #[test]
    fn retry_after_points_at_the_oldest_call_leaving_the_window() {
        let l = Limiter::new();
        let t0 = Instant::now();
        let _a = l.admit("a", rpm(1), 0, t0).unwrap();
        let denied = l
            .admit("a", rpm(1), 0, t0 + Duration::from_secs(20))
            .err()
            .unwrap();
        assert_eq!(denied.limit, Limit::Requests);
        assert_eq!(denied.retry_after, Duration::from_secs(40));
    }

    #[test]
    fn tokens_are_reserved_then_trued_up() {
        let l = Limiter::new();
        let t0 = Instant::now();
        let lim = Limits {
            tpm: Some(1000),
            ..Limits::default()
        };
        let p = l.admit("a", lim, 800, t0).unwrap();
        assert!(
            l.admit("a", lim, 300, t0).is_err(),
            "800 reserved + 300 > 1000"
        );
        p.settle(100);
        assert_eq!(l.tokens_in_window("a", t0), 100);
        assert!(l.admit("a", lim, 300, t0).is_ok());
    }

    #[test]
    fn huge_reservations_saturate_instead_of_wrapping() {
        let l = Limiter::new();
        let t0 = Instant::now();
        let lim = Limits {
            tpm: Some(3000),
            ..Limits::default()
        };
        // What a proxy computes for `max_tokens = u64::MAX` plus a prompt, saturated.
        let p = l.admit("a", lim, u64::MAX, t0).unwrap();
        assert_eq!(l.tokens_in_window("a", t0), 3000, "clamped to the budget");
        for _ in 0..60 {
            assert_eq!(
                l.admit("a", lim, u64::MAX, t0).err().unwrap().limit,
                Limit::Tokens,
                "the budget is spent: no wrapped sum lets a call through"
            );
        }
        // An upstream that reports absurd usage saturates the window, it does not wrap it.
        p.settle(u64::MAX);
        assert_eq!(l.tokens_in_window("a", t0), u64::MAX);
        assert!(l.admit("a", lim, 1, t0).is_err());
        // And the window still empties after a minute.
        assert_eq!(l.tokens_in_window("a", t0 + Duration::from_secs(61)), 0);
        assert!(l.admit("a", lim, 1, t0 + Duration::from_secs(61)).is_ok());
    }

    #[test]
    fn concurrency_slots_free_when_permits_drop() {
        let l = Limiter::new();
        let t0 = Instant::now();
        let lim = Limits {
            concurrency: Some(2),
            ..Limits::default()
        };
        let a = l.admit("a", lim, 0, t0).unwrap();
        let _b = l.admit("a", lim, 0, t0).unwrap();
        assert_eq!(
            l.admit("a", lim, 0, t0).err().unwrap().limit,
            Limit::Concurrency
        );
        drop(a);
        assert!(l.admit("a", lim, 0, t0).is_ok());
    }

    #[test]
    fn accounts_do_not_share_limits() {
        let l = Limiter::new();
        let t0 = Instant::now();
        let _a = l.admit("a", rpm(1), 0, t0).unwrap();
        assert!(l.admit("b", rpm(1), 0, t0).is_ok());
    }
}
