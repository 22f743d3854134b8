//! The limits step: counted in this process, or shared with every replica through Redis.

use limits::{Denied, Limits, RedisLimiter, SharedPermit};

pub enum Limiter {
    Local(limits::Limiter),
    Shared(RedisLimiter),
}

/// An admitted call; dropping it frees its concurrency slot.
pub enum Permit {
    Local(limits::Permit),
    Shared(SharedPermit),
}

impl Limiter {
    pub async fn admit(
        &self,
        account: &str,
        limits: Limits,
        reserve_tokens: u64,
    ) -> Result<Permit, Denied> {
        match self {
            Limiter::Local(l) => l
                .admit(account, limits, reserve_tokens, std::time::Instant::now())
                .map(Permit::Local),
            Limiter::Shared(l) => l
                .admit(account, limits, reserve_tokens)
                .await
                .map(Permit::Shared),
        }
    }
}

impl Permit {
    /// Trues up the call's token reservation to what it used.
    pub fn settle(&self, used_tokens: u64) {
        match self {
            Permit::Local(p) => p.settle(used_tokens),
            Permit::Shared(p) => p.settle(used_tokens),
        }
    }
}
