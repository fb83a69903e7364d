//! A real gRPC round trip: the master's service on 127.0.0.1:0, [`GrpcMeta`] as its client.

use std::sync::Arc;
use std::time::Duration;

use armorlake_common::Table;
use armorlake_meta::{
    ClusterSecurity, Error, GrpcMeta, MemoryMeta, MetaServer, MetaService, NodeInfo, NodeReport,
    Partition, Role, Source, StoredMeta, TableInfo, serve,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;

/// Bounds every network step, so a broken client fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(20);

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f).await.expect("no hang")
}

fn report(operator: &str) -> NodeReport {
    NodeReport {
        partitions: vec![Partition {
            table: Table::Logs,
            hour_micros: 7_200_000_000,
            operator: operator.into(),
            rows: 12,
            bytes: 3400,
            min_micros: 7_200_000_001,
            max_micros: 7_200_000_999,
        }],
        sources: vec![Source {
            operator: operator.into(),
            endpoint: "127.0.0.1:32767".into(),
            table: Table::Logs,
            state: "streaming".into(),
            events: 12,
            reconnects: 1,
            last_event_micros: None,
            disconnected_micros: 5,
            last_error: Some("connection reset".into()),
            bad_messages: 2,
        }],
    }
}

#[tokio::test]
async fn a_remote_master_looks_like_the_local_one() {
    let local = Arc::new(MemoryMeta::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MetaServer::new(local.clone()))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );

    let remote = bounded(GrpcMeta::connect(
        &addr.to_string(),
        &ClusterSecurity::none(),
    ))
    .await
    .expect("connect");
    let op = NodeInfo::new("op1", Role::Operator, "127.0.0.1:50061", "0.1.0").with_cluster("east");
    bounded(remote.register(op.clone()))
        .await
        .expect("register");
    bounded(remote.register(NodeInfo::new("q1", Role::Query, "", "0.1.0")))
        .await
        .expect("register");

    let nodes = bounded(remote.nodes()).await.expect("nodes");
    assert_eq!(nodes, local.nodes().await.expect("nodes"));
    assert_eq!(nodes[0], op);
    let clusters = bounded(remote.clusters()).await.expect("clusters");
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0].members, vec!["op1".to_string()]);

    // An unknown node comes back as the same error, with its id.
    let unknown = bounded(remote.heartbeat("ghost", NodeReport::default())).await;
    assert!(
        matches!(&unknown, Err(Error::UnknownNode(id)) if id == "ghost"),
        "{unknown:?}"
    );

    // A long poll wakes on a heartbeat from another client.
    let version = bounded(remote.version()).await.expect("version");
    assert_eq!(version, local.version().await.expect("version"));
    let waiter = {
        let remote = remote.clone();
        tokio::spawn(async move { remote.wait_version(version, Duration::from_secs(30)).await })
    };
    let other = GrpcMeta::connect_lazy(&format!("http://{addr}"), &ClusterSecurity::none())
        .expect("client");
    bounded(other.heartbeat("op1", report("op1")))
        .await
        .expect("heartbeat");
    let woke = bounded(waiter).await.expect("join").expect("wait");
    assert!(woke > version, "{woke} > {version}");
    // Nothing changes: the poll answers at its timeout with the same version.
    let same = bounded(remote.wait_version(woke, Duration::from_millis(50)))
        .await
        .expect("wait");
    assert_eq!(same, woke);

    assert_eq!(
        bounded(remote.partitions()).await.expect("partitions"),
        report("op1").partitions
    );
    assert_eq!(
        bounded(remote.sources()).await.expect("sources"),
        report("op1").sources
    );
    assert_eq!(
        bounded(remote.tables()).await.expect("tables"),
        TableInfo::builtin()
    );
    let beat = &bounded(remote.nodes()).await.expect("nodes")[0];
    assert!(beat.heartbeat_micros >= op.heartbeat_micros);

    stop.send(()).expect("stop");
    bounded(server).await.expect("join").expect("serve");
}

#[tokio::test]
async fn a_master_that_is_down_is_unavailable() {
    // Nothing listens on a port that was just freed.
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr")
    };
    let refused = bounded(GrpcMeta::connect(
        &addr.to_string(),
        &ClusterSecurity::none(),
    ))
    .await;
    assert!(matches!(refused, Err(Error::Unavailable(_))), "{refused:?}");
    let lazy = GrpcMeta::connect_lazy(&addr.to_string(), &ClusterSecurity::none()).expect("client");
    let refused = bounded(lazy.nodes()).await;
    assert!(matches!(refused, Err(Error::Unavailable(_))), "{refused:?}");
    let bad = GrpcMeta::connect_lazy("http://not a url", &ClusterSecurity::none());
    assert!(matches!(bad, Err(Error::Invalid(_))), "{bad:?}");
}

#[tokio::test]
async fn a_persistent_master_serves_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let start = |listener: TcpListener| {
        let dir = dir.path().to_path_buf();
        async move {
            let meta = StoredMeta::open_dir(&dir).await.expect("open");
            let (stop, stopped) = oneshot::channel::<()>();
            let server = tokio::spawn(serve(
                Arc::new(meta),
                listener,
                ClusterSecurity::none(),
                async {
                    let _ = stopped.await;
                },
            ));
            (stop, server)
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, server) = start(listener).await;
    let remote = bounded(GrpcMeta::connect(
        &addr.to_string(),
        &ClusterSecurity::none(),
    ))
    .await
    .expect("connect");
    bounded(remote.register(NodeInfo::new("op1", Role::Operator, "a:1", "0")))
        .await
        .expect("register");
    bounded(remote.heartbeat("op1", report("op1")))
        .await
        .expect("heartbeat");
    let version = bounded(remote.version()).await.expect("version");

    // A pending long poll answers when the master shuts down, and the shutdown completes.
    let waiter = {
        let remote = remote.clone();
        tokio::spawn(async move {
            remote
                .wait_version(version, Duration::from_secs(3600))
                .await
        })
    };
    tokio::task::yield_now().await;
    stop.send(()).expect("stop");
    bounded(server).await.expect("join").expect("serve");
    let after_stop = bounded(waiter).await.expect("join");
    assert!(
        matches!(after_stop, Ok(v) if v == version)
            || matches!(after_stop, Err(Error::Unavailable(_))),
        "{after_stop:?}"
    );
    let down = bounded(remote.version()).await;
    assert!(matches!(down, Err(Error::Unavailable(_))), "{down:?}");

    // Same address, same file: the same client finds everything again.
    let listener = TcpListener::bind(addr).await.expect("rebind");
    let (stop, server) = start(listener).await;
    assert_eq!(
        bounded(remote.partitions()).await.expect("partitions"),
        report("op1").partitions
    );
    assert_eq!(bounded(remote.version()).await.expect("version"), version);
    stop.send(()).expect("stop");
    bounded(server).await.expect("join").expect("serve");
}
