//! End-to-end tests of the gRPC server over loopback TCP, with tonic's generated client.

#![allow(clippy::unwrap_used)]

use armorlake_proto::feeder::log_service_client::LogServiceClient;
use armorlake_proto::feeder::{NonceMessage, RequestMessage};

use crate::tests::at;
use crate::*;

/// Starts a simulator on an ephemeral port; returns a client, the shutdown trigger and the server task.
async fn start(
    config: SimConfig,
) -> (
    LogServiceClient<tonic::transport::Channel>,
    Simulator,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sim = Simulator::new(config);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sim.clone().serve(listener, async move {
        let _ = rx.await;
    }));
    let client = LogServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    (client, sim, tx, server)
}

fn filter(f: &str) -> RequestMessage {
    RequestMessage {
        filter: f.to_string(),
    }
}

#[tokio::test]
async fn end_to_end_paced() {
    let config = SimConfig {
        rate: 5_000,
        seed: 11,
        nodes: 3,
        count: Some(200_000),
    };
    let (mut client, _sim, stop, server) = start(config).await;

    let reply = client
        .health_check(NonceMessage { nonce: 4242 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.retval, 4242);

    let mut bogus = client
        .watch_alerts(filter("bogus"))
        .await
        .unwrap()
        .into_inner();
    assert!(
        bogus.message().await.unwrap().is_none(),
        "bogus filter must end the stream with OK"
    );
    let mut bogus = client
        .watch_logs(filter("policy"))
        .await
        .unwrap()
        .into_inner();
    assert!(bogus.message().await.unwrap().is_none());

    let mut logs = client
        .watch_logs(filter("system"))
        .await
        .unwrap()
        .into_inner();
    let mut alerts = client
        .watch_alerts(filter("all"))
        .await
        .unwrap()
        .into_inner();
    let mut messages = client
        .watch_messages(filter("anything"))
        .await
        .unwrap()
        .into_inner();
    let mut last = String::new();
    for _ in 0..300 {
        let log = logs.message().await.unwrap().unwrap();
        assert!(log.updated_time >= last, "logs arrive in time order");
        last = log.updated_time;
    }
    for _ in 0..10 {
        let alert = alerts.message().await.unwrap().unwrap();
        assert!(!alert.policy_name.is_empty() && alert.timestamp > 0);
    }
    let message = messages.message().await.unwrap().unwrap();
    assert!(!message.level.is_empty());

    // Shutdown ends open streams (UNAVAILABLE) and lets serve return.
    stop.send(()).unwrap();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Ok(Some(_)) = logs.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "stream did not end on shutdown");
    let served = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
    assert!(served.expect("serve did not return").unwrap().is_ok());
}

#[tokio::test]
async fn end_to_end_unpaced_count() {
    let (seed, count) = (5, 20_000);
    let config = SimConfig {
        rate: 0,
        seed,
        nodes: 2,
        count: Some(count),
    };
    let (mut client, _sim, stop, server) = start(config).await;
    let src = source(seed, 2);
    // Each subscriber starts at n = 0 and gets every event of its kind below `count`, equal to
    // the pure function's up to the time fields.
    let src = &src;
    let want = |kind: EventKind| {
        (0..count)
            .filter(move |&n| src.kind(n) == kind)
            .map(move |n| src.event(n, at()))
    };
    let mut logs = client.watch_logs(filter("all")).await.unwrap().into_inner();
    let mut alerts = client
        .watch_alerts(filter("policy"))
        .await
        .unwrap()
        .into_inner();
    let mut messages = client
        .watch_messages(filter(""))
        .await
        .unwrap()
        .into_inner();
    for expected in want(EventKind::Log) {
        let mut got = logs.message().await.unwrap().unwrap();
        assert!(got.timestamp > 0 && got.updated_time.len() == 27);
        (got.timestamp, got.updated_time) = (0, String::new());
        let SimEvent::Log(mut expected) = expected else {
            unreachable!()
        };
        (expected.timestamp, expected.updated_time) = (0, String::new());
        assert_eq!(got, expected);
    }
    for expected in want(EventKind::Alert) {
        let mut got = alerts.message().await.unwrap().unwrap();
        (got.timestamp, got.updated_time) = (0, String::new());
        let SimEvent::Alert(mut expected) = expected else {
            unreachable!()
        };
        (expected.timestamp, expected.updated_time) = (0, String::new());
        assert_eq!(got, expected);
    }
    for expected in want(EventKind::Message) {
        let mut got = messages.message().await.unwrap().unwrap();
        (got.timestamp, got.updated_time) = (0, String::new());
        let SimEvent::Message(mut expected) = expected else {
            unreachable!()
        };
        (expected.timestamp, expected.updated_time) = (0, String::new());
        assert_eq!(got, expected);
    }
    // Count reached: the streams stay open and idle.
    let idle = tokio::time::timeout(std::time::Duration::from_millis(300), logs.message()).await;
    assert!(idle.is_err(), "stream must stay open after count");
    drop((logs, alerts, messages));
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn end_to_end_paced_count() {
    let (seed, count) = (8, 20_000);
    let config = SimConfig {
        rate: 20_000,
        seed,
        nodes: 2,
        count: Some(count),
    };
    let (mut client, _sim, stop, server) = start(config).await;
    let total = (0..count)
        .filter(|&n| kind(seed, n) == EventKind::Log)
        .count();
    let mut logs = client.watch_logs(filter("all")).await.unwrap().into_inner();
    let mut got = 0;
    // Events stop after ~1 s (count / rate); the stream then stays open, so the wait times out.
    while let Ok(next) =
        tokio::time::timeout(std::time::Duration::from_millis(1500), logs.message()).await
    {
        next.unwrap().unwrap();
        got += 1;
    }
    assert!(got > 0 && got <= total, "{got} of {total} logs");
    drop(logs);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn full_queue_drops() {
    let config = SimConfig {
        rate: 1_000_000,
        seed: 2,
        nodes: 4,
        count: None,
    };
    let (mut client, sim, stop, server) = start(config).await;
    let mut logs = client.watch_logs(filter("all")).await.unwrap().into_inner();
    // Not reading: the transport windows and the 1000-event queue fill, then events are dropped.
    let _first = logs.message().await.unwrap().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(sim.dropped() > 0);
    drop(logs);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// `cargo test -p armorlake-sim --release -- --ignored --nocapture server_throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, run in release mode"]
async fn server_throughput() {
    let config = SimConfig {
        rate: 0,
        seed: 1,
        nodes: 4,
        count: None,
    };
    let (mut client, _sim, stop, server) = start(config).await;
    let mut logs = client.watch_logs(filter("all")).await.unwrap().into_inner();
    let start = std::time::Instant::now();
    let mut got = 0u64;
    while start.elapsed() < std::time::Duration::from_secs(4) {
        logs.message().await.unwrap().unwrap();
        got += 1;
    }
    println!(
        "gRPC WatchLogs: {:.0} logs/s",
        got as f64 / start.elapsed().as_secs_f64()
    );
    drop(logs);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
