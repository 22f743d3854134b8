//! Limits shared through a real Redis: several limiters stand for several gateway replicas.
#![cfg(feature = "redis")]

use std::time::Duration;

use limits::{Fallback, Limit, Limits, RedisLimiter, SharedPermit};

fn account() -> String {
    format!("acct-{:x}", rand::random::<u64>())
}

async fn reachable(l: &RedisLimiter) -> bool {
    let probe = Limits {
        rpm: Some(1_000_000),
        ..Limits::default()
    };
    match l.admit(&account(), probe, 0).await {
        Ok(SharedPermit::Redis(_)) => true,
        _ => {
            testkit::unavailable("Redis", testkit::redis_url());
            false
        }
    }
}

fn replicas(url: &str, fallback: Fallback) -> Vec<RedisLimiter> {
    (0..3)
        .map(|_| RedisLimiter::new(url, fallback).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_admit_exactly_the_limit_between_them() {
    let rs = replicas(&testkit::redis_url(), Fallback::Closed);
    if !reachable(&rs[0]).await {
        return;
    }
    let acct = account();
    let limits = Limits {
        rpm: Some(100),
        ..Limits::default()
    };
    let mut tasks = Vec::new();
    for i in 0..600 {
        let l = rs[i % 3].clone();
        let a = acct.clone();
        tasks.push(tokio::spawn(async move { l.admit(&a, limits, 0).await }));
    }
    let mut admitted = 0;
    let mut retry = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => admitted += 1,
            Err(d) => {
                assert_eq!(d.limit, Limit::Requests);
                retry.push(d.retry_after);
            }
        }
    }
    assert_eq!(admitted, 100);
    assert!(retry
        .iter()
        .all(|r| *r > Duration::from_secs(50) && *r <= Duration::from_secs(60)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_are_reserved_then_trued_up_across_replicas() {
    let rs = replicas(&testkit::redis_url(), Fallback::Closed);
    if !reachable(&rs[0]).await {
        return;
    }
    let acct = account();
    let limits = Limits {
        tpm: Some(10_000),
        ..Limits::default()
    };
    let mut permits = Vec::new();
    for i in 0..150 {
        if let Ok(p) = rs[i % 3].admit(&acct, limits, 100).await {
            permits.push(p);
        }
    }
    assert_eq!(
        permits.len(),
        100,
        "10,000 tokens hold 100 reservations of 100"
    );
    // Each call really used 40: the rest of its reservation returns to the budget.
    for p in &permits {
        p.settle(40);
    }
    drop(permits);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut more = 0;
    for i in 0..100 {
        if let Ok(p) = rs[i % 3].admit(&acct, limits, 100).await {
            p.settle(100);
            more += 1;
        }
    }
    assert_eq!(more, 60, "6,000 tokens freed by the true-up admit 60 more");
    // A call may never reserve more than the whole budget, or it could never run.
    let fresh = account();
    assert!(rs[0].admit(&fresh, limits, 50_000).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_slots_are_shared_and_released_when_calls_end() {
    let rs = replicas(&testkit::redis_url(), Fallback::Closed);
    if !reachable(&rs[0]).await {
        return;
    }
    let acct = account();
    let limits = Limits {
        concurrency: Some(2),
        ..Limits::default()
    };
    let a = rs[0].admit(&acct, limits, 0).await.unwrap();
    let _b = rs[1].admit(&acct, limits, 0).await.unwrap();
    let denied = rs[2].admit(&acct, limits, 0).await.err().unwrap();
    assert_eq!(denied.limit, Limit::Concurrency);
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rs[2].admit(&acct, limits, 0).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_fallback_applies_and_sharing_resumes_when_it_returns() {
    let Some(mut redis) = testkit::Server::redis() else {
        return;
    };
    let url = format!("redis://{}", redis.addr());
    let open = RedisLimiter::new(&url, Fallback::Local).unwrap();
    let closed = RedisLimiter::new(&url, Fallback::Closed).unwrap();
    let limits = Limits {
        rpm: Some(5),
        ..Limits::default()
    };
    let acct = account();
    assert!(matches!(
        open.admit(&acct, limits, 0).await,
        Ok(SharedPermit::Redis(_))
    ));
    redis.stop();
    // Fail open: this replica counts alone, still up to the limit and no further.
    let mut local = 0;
    for _ in 0..10 {
        match open.admit(&acct, limits, 0).await {
            Ok(SharedPermit::Local(_)) => local += 1,
            Ok(SharedPermit::Redis(_)) => panic!("Redis is down"),
            Err(d) => assert_eq!(d.limit, Limit::Requests),
        }
    }
    assert_eq!(local, 5);
    assert!(open.degraded());
    // Fail closed: refused with a reason of its own, not as a rate limit.
    let d = closed.admit(&acct, limits, 0).await.err().unwrap();
    assert_eq!(d.limit, Limit::Unavailable);
    // Accounts without limits never depend on Redis.
    assert!(closed.admit(&acct, Limits::default(), 0).await.is_ok());

    redis.start().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut back = false;
    for _ in 0..20 {
        if let Ok(SharedPermit::Redis(_)) = closed.admit(&account(), limits, 0).await {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(back, "limits are shared again once Redis is back");
}
