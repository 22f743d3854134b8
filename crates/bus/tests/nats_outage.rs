//! A replica's publisher against a real NATS server that goes away and comes back.

use std::collections::HashSet;
use std::time::Duration;

use bus::{Envelope, Publisher};
use futures_util::StreamExt;

fn envelope(i: usize) -> Envelope {
    let account = format!("acct-{}", i % 7);
    Envelope {
        id: format!("ex-{i}"),
        account: account.clone(),
        content: "full".into(),
        ts_ms: Some(i as i64),
        payer: None,
        line: format!("{{\"id\":\"ex-{i}\",\"account\":\"{account}\"}}").into(),
    }
}

async fn ids_in_stream(js: &async_nats::jetstream::Context) -> Vec<String> {
    let stream = bus::ensure_stream(js).await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            ..Default::default()
        })
        .await
        .unwrap();
    let mut ids = Vec::new();
    let mut batch = consumer
        .fetch()
        .max_messages(10_000)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    while let Some(Ok(m)) = batch.next().await {
        let e = Envelope::from_message(&m).unwrap();
        // The time travels with the exchange, through the spool too.
        assert_eq!(e.ts_ms, e.id[3..].parse().ok(), "{}", e.id);
        ids.push(e.id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_published_while_nats_is_down_are_spooled_and_replayed_none_lost() {
    let Some(mut nats) = testkit::Server::nats() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("nats://{}", nats.addr());
    let client = bus::connect(&url).await.unwrap();
    let js = bus::jetstream(client.clone());
    bus::ensure_stream(&js).await.unwrap();
    let (publisher, task) =
        Publisher::start(client.clone(), &dir.path().join("spool"), 0, 64).unwrap();

    for i in 0..300 {
        publisher.send(envelope(i)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.stop();
    for i in 300..700 {
        publisher.send(envelope(i)).await;
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let spool = bus::Spool::open(&dir.path().join("spool"), 0).unwrap();
    assert!(
        spool.backlog() > 0,
        "exchanges wait on disk while NATS is away"
    );
    nats.start().unwrap();
    for i in 700..800 {
        publisher.send(envelope(i)).await;
    }
    // The spool empties once NATS is back.
    let mut drained = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if bus::Spool::open(&dir.path().join("spool"), 0)
            .unwrap()
            .backlog()
            == 0
        {
            drained = true;
            break;
        }
    }
    assert!(drained, "the spool was replayed");
    drop(publisher);
    task.await.unwrap();

    let ids = ids_in_stream(&js).await;
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 800, "every exchange reached the stream");
    assert_eq!(ids.len(), 800, "duplicates were dropped by their id");
    // Each account's exchanges arrive in the order they finished.
    for a in 0..7 {
        let order: Vec<usize> = ids
            .iter()
            .map(|id| id[3..].parse::<usize>().unwrap())
            .filter(|i| i % 7 == a)
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "account {a} out of order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_while_nats_is_down_spools_then_publishes() {
    let Some(mut nats) = testkit::Server::nats() else {
        return;
    };
    nats.stop();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("nats://{}", nats.addr());
    let client = bus::connect(&url).await.unwrap();
    let (publisher, task) =
        Publisher::start(client.clone(), &dir.path().join("spool"), 0, 64).unwrap();
    for i in 0..50 {
        publisher.send(envelope(i)).await;
    }
    nats.start().unwrap();
    let js = bus::jetstream(client);
    for _ in 0..50 {
        if bus::ensure_stream(&js).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if bus::Spool::open(&dir.path().join("spool"), 0)
            .unwrap()
            .backlog()
            == 0
        {
            break;
        }
    }
    drop(publisher);
    task.await.unwrap();
    assert_eq!(ids_in_stream(&js).await.len(), 50);
}
