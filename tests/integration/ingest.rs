//! Ingest: every KubeArmor field reaches SQL, streams reconnect by themselves, rows are
//! queryable within a second of being sent, oversized and invalid messages are counted and
//! skipped.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use armorlake_proto::feeder::log_service_server::{LogService, LogServiceServer};
use armorlake_proto::feeder::{
    Alert, ExecEvent, Log, Message, NonceMessage, Podowner, ReplyMessage, RequestMessage,
};
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::support::{eventually, query, query_i64, start_sim, start_sim_on, start_up};

type Events<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A KubeArmor that sends one fixed event on each stream, then keeps the streams open.
struct OneOfEach {
    alert: Alert,
    log: Log,
    message: Message,
}

fn once_then_idle<T: Send + 'static>(event: T) -> Events<T> {
    Box::pin(futures::StreamExt::chain(
        futures::stream::iter([Ok(event)]),
        futures::stream::pending(),
    ))
}

#[tonic::async_trait]
impl LogService for OneOfEach {
    async fn health_check(
        &self,
        request: Request<NonceMessage>,
    ) -> Result<Response<ReplyMessage>, Status> {
        Ok(Response::new(ReplyMessage {
            retval: request.into_inner().nonce,
        }))
    }

    type WatchMessagesStream = Events<Message>;
    async fn watch_messages(
        &self,
        _: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchMessagesStream>, Status> {
        Ok(Response::new(once_then_idle(self.message.clone())))
    }

    type WatchAlertsStream = Events<Alert>;
    async fn watch_alerts(
        &self,
        _: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        Ok(Response::new(once_then_idle(self.alert.clone())))
    }

    type WatchLogsStream = Events<Log>;
    async fn watch_logs(
        &self,
        _: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchLogsStream>, Status> {
        Ok(Response::new(once_then_idle(self.log.clone())))
    }
}

/// A KubeArmor whose first WatchLogs sends a log and then a message far over the size an
/// operator accepts; every later WatchLogs sends another log. Alerts and messages stay idle.
struct OversizedOnce {
    log: Log,
    subscriptions: AtomicU32,
}

/// Over the operator's 4 MiB limit.
const OVERSIZED_BYTES: usize = 5 * 1024 * 1024;

#[tonic::async_trait]
impl LogService for OversizedOnce {
    async fn health_check(
        &self,
        request: Request<NonceMessage>,
    ) -> Result<Response<ReplyMessage>, Status> {
        Ok(Response::new(ReplyMessage {
            retval: request.into_inner().nonce,
        }))
    }

    type WatchMessagesStream = Events<Message>;
    async fn watch_messages(
        &self,
        _: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchMessagesStream>, Status> {
        Ok(Response::new(Box::pin(futures::stream::pending())))
    }

    type WatchAlertsStream = Events<Alert>;
    async fn watch_alerts(
        &self,
        _: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchAlertsStream>, Status> {
        Ok(Response::new(Box::pin(futures::stream::pending())))
    }

    type WatchLogsStream = Events<Log>;
    async fn watch_logs(
        &self,
        _: Request<RequestMessage>,
    ) -> Result<Response<Self::WatchLogsStream>, Status> {
        let n = self.subscriptions.fetch_add(1, Ordering::SeqCst);
        let mut log = self.log.clone();
        log.resource = format!("/subscription/{n}");
        if n > 0 {
            return Ok(Response::new(once_then_idle(log)));
        }
        let oversized = Log {
            data: "x".repeat(OVERSIZED_BYTES),
            ..log.clone()
        };
        Ok(Response::new(Box::pin(futures::StreamExt::chain(
            futures::stream::iter([Ok(log), Ok(oversized)]),
            futures::stream::pending(),
        ))))
    }
}

/// A KubeArmor whose WatchLogs sends `logs` as they are, each the bytes of one gRPC message
/// (valid `Log`s or not), then keeps the stream open; the other streams stay idle. Written
/// against tonic's server machinery because the generated server can only send valid
/// messages.
#[derive(Clone)]
struct RawLogs {
    logs: Vec<Vec<u8>>,
}

/// Sends each message's bytes as they are; reads the `RequestMessage`.
#[derive(Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = RequestMessage;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = RequestMessage;
    type Error = Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<RequestMessage>, Status> {
        prost::Message::decode(src)
            .map(Some)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

impl tonic::server::ServerStreamingService<RequestMessage> for RawLogs {
    type Response = Vec<u8>;
    type ResponseStream = Events<Vec<u8>>;
    type Future = std::future::Ready<Result<Response<Events<Vec<u8>>>, Status>>;
    fn call(&mut self, _: Request<RequestMessage>) -> Self::Future {
        let logs = self.logs.clone().into_iter().map(Ok);
        std::future::ready(Ok(Response::new(Box::pin(futures::StreamExt::chain(
            futures::stream::iter(logs),
            futures::stream::pending(),
        )))))
    }
}

impl tonic::server::NamedService for RawLogs {
    const NAME: &'static str = "feeder.LogService";
}

impl<B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for RawLogs
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let mut service = self.clone();
        if req.uri().path() != "/feeder.LogService/WatchLogs" {
            service.logs.clear();
        }
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec);
            Ok(grpc.server_streaming(service, req).await)
        })
    }
}

/// Serves `service` on a free loopback port from a background runtime; returns the address.
pub(crate) fn serve_kubearmor<S: LogService>(service: S) -> String {
    serve_feeder(LogServiceServer::new(service))
}

/// Serves a `feeder.LogService` implementation on a free loopback port from a background
/// runtime; returns the address.
fn serve_feeder<S>(service: S) -> String
where
    S: tonic::codegen::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().to_string()).unwrap();
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
    });
    rx.recv().unwrap()
}

fn every_field_alert() -> Alert {
    Alert {
        timestamp: 1_795_341_600,
        updated_time: "2026-11-22T10:00:00.123456Z".into(),
        cluster_name: "prod-eu".into(),
        host_name: "node-07".into(),
        namespace_name: "payments".into(),
        pod_name: "checkout-7d9f8b6c5d-x2k4q".into(),
        container_id: "a".repeat(64),
        container_name: "checkout".into(),
        host_pid: 4101,
        ppid: 4102,
        pid: 4103,
        uid: 1000,
        policy_name: "ksp-block-shell-in-payments".into(),
        severity: "7".into(),
        tags: "NIST,NIST_800-53_CM-7".into(),
        message: "shell blocked".into(),
        r#type: "MatchedPolicy".into(),
        source: "/usr/bin/bash".into(),
        operation: "Process".into(),
        resource: "/bin/sh -c id".into(),
        data: "syscall=SYS_EXECVE".into(),
        action: "Block".into(),
        result: "Permission denied".into(),
        container_image: "registry.local/checkout:1.4@sha256:abc".into(),
        parent_process_name: "/usr/bin/bash".into(),
        process_name: "/bin/sh".into(),
        host_ppid: 4104,
        enforcer: "BPFLSM".into(),
        labels: "app=checkout,tier=backend".into(),
        a_tags: vec!["NIST".into(), "NIST_800-53_CM-7".into()],
        owner: Some(Podowner {
            r#ref: "Deployment".into(),
            name: "checkout".into(),
            namespace: "payments".into(),
        }),
        cwd: "/app".into(),
        tty: "pts0".into(),
        max_alerts_per_sec: 10,
        dropping_alerts_interval: 30,
        exec_event: Some(ExecEvent {
            exec_id: "123456789".into(),
            executable_name: "sh".into(),
        }),
        kube_armor_version: "v1.7.4".into(),
        node_id: "b".repeat(64),
        process_hash: "c".repeat(64),
        parent_hash: "d".repeat(64),
        resource_hash: "e".repeat(64),
        hash_algo: "SHA256".into(),
        event_data: HashMap::from([("Syscall".into(), "SYS_EXECVE".into())]),
        user_name: "app".into(),
    }
}

fn every_field_log() -> Log {
    let a = every_field_alert();
    Log {
        timestamp: a.timestamp,
        updated_time: "2026-11-22T10:00:01.000001Z".into(),
        cluster_name: a.cluster_name,
        host_name: a.host_name,
        namespace_name: a.namespace_name,
        pod_name: a.pod_name,
        container_id: a.container_id,
        container_name: a.container_name,
        host_pid: 11,
        ppid: 12,
        pid: 13,
        uid: 14,
        r#type: "ContainerLog".into(),
        source: "/usr/bin/cat".into(),
        operation: "File".into(),
        resource: "/etc/passwd".into(),
        data: "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY".into(),
        result: "Passed".into(),
        container_image: a.container_image,
        parent_process_name: "/usr/bin/bash".into(),
        process_name: "/usr/bin/cat".into(),
        host_ppid: 15,
        labels: a.labels,
        owner: a.owner,
        cwd: "/".into(),
        tty: "pts1".into(),
        exec_event: Some(ExecEvent {
            exec_id: "42".into(),
            executable_name: "cat".into(),
        }),
        node_id: a.node_id,
        process_hash: "f".repeat(64),
        parent_hash: "0".repeat(64),
        resource_hash: "1".repeat(64),
        hash_algo: "SHA256".into(),
        event_data: HashMap::from([
            ("Syscall".into(), "SYS_OPENAT".into()),
            ("Fd".into(), "-100".into()),
            ("Flags".into(), "O_RDONLY".into()),
        ]),
        user_name: "root".into(),
    }
}

fn every_field_message() -> Message {
    Message {
        timestamp: 1_795_341_602,    // 2026-11-22T10:00:02Z
        updated_time: String::new(), // falls back to Timestamp
        cluster_name: "prod-eu".into(),
        host_name: "node-07".into(),
        host_ip: "10.0.0.7".into(),
        r#type: "Message".into(),
        level: "WARN".into(),
        message: "Failed to attach kprobe".into(),
    }
}

/// One row of `sql`, fields split on psql's unaligned separator.
fn row(port: u16, sql: &str) -> Vec<String> {
    let rows = query(port, sql);
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0].split('|').map(str::to_string).collect()
}

#[test]
fn every_kubearmor_field_lands_in_its_column() {
    let addr = serve_kubearmor(OneOfEach {
        alert: every_field_alert(),
        log: every_field_log(),
        message: every_field_message(),
    });
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[&addr], &[]);
    let port = up.pg_port;
    for table in ["alerts", "logs", "messages"] {
        eventually(Duration::from_secs(30), &format!("the {table} row"), || {
            (query_i64(port, &format!("SELECT count(*) FROM {table}")) == 1).then_some(())
        });
    }

    let (a64, b64, c64, d64, e64) = (
        "a".repeat(64),
        "b".repeat(64),
        "c".repeat(64),
        "d".repeat(64),
        "e".repeat(64),
    );
    let expected_alert: Vec<&str> = vec![
        "2026-11-22 10:00:00.123456+00",
        "prod-eu",
        "node-07",
        "payments",
        "checkout-7d9f8b6c5d-x2k4q",
        &a64,
        "checkout",
        "4101",
        "4102",
        "4103",
        "1000",
        "ksp-block-shell-in-payments",
        "7",
        "NIST,NIST_800-53_CM-7",
        "shell blocked",
        "MatchedPolicy",
        "/usr/bin/bash",
        "Process",
        "/bin/sh -c id",
        "syscall=SYS_EXECVE",
        "Block",
        "Permission denied",
        "registry.local/checkout:1.4@sha256:abc",
        "/usr/bin/bash",
        "/bin/sh",
        "4104",
        "BPFLSM",
        "app=checkout,tier=backend",
        "{NIST,NIST_800-53_CM-7}",
        "Deployment",
        "checkout",
        "payments",
        "/app",
        "pts0",
        "10",
        "30",
        "123456789",
        "sh",
        "v1.7.4",
        &b64,
        &c64,
        &d64,
        &e64,
        "SHA256",
        r#"{"Syscall":"SYS_EXECVE"}"#,
        "app",
        "operator",
        &addr,
    ];
    let got = row(port, "SELECT * FROM alerts");
    assert_eq!(got, expected_alert);

    let (f64_, z64, o64) = ("f".repeat(64), "0".repeat(64), "1".repeat(64));
    let expected_log: Vec<&str> = vec![
        "2026-11-22 10:00:01.000001+00",
        "prod-eu",
        "node-07",
        "payments",
        "checkout-7d9f8b6c5d-x2k4q",
        &a64,
        "checkout",
        "11",
        "12",
        "13",
        "14",
        "ContainerLog",
        "/usr/bin/cat",
        "File",
        "/etc/passwd",
        "syscall=SYS_OPENAT fd=-100 flags=O_RDONLY",
        "Passed",
        "registry.local/checkout:1.4@sha256:abc",
        "/usr/bin/bash",
        "/usr/bin/cat",
        "15",
        "app=checkout,tier=backend",
        "Deployment",
        "checkout",
        "payments",
        "/",
        "pts1",
        "42",
        "cat",
        &b64,
        &f64_,
        &z64,
        &o64,
        "SHA256",
        r#"{"Fd":"-100","Flags":"O_RDONLY","Syscall":"SYS_OPENAT"}"#,
        "root",
        "operator",
        &addr,
    ];
    assert_eq!(row(port, "SELECT * FROM logs"), expected_log);

    let expected_message = vec![
        "t",
        "prod-eu",
        "node-07",
        "10.0.0.7",
        "Message",
        "WARN",
        "Failed to attach kprobe",
        "operator",
        &addr,
    ];
    let got = row(
        port,
        "SELECT timestamp = '2026-11-22 10:00:02+00', cluster_name, host_name, host_ip, type, \
         level, message, operator, endpoint FROM messages",
    );
    assert_eq!(got, expected_message);
}

#[test]
fn streams_reconnect_after_kubearmor_restarts_and_the_gap_is_recorded() {
    let sim = start_sim(1000, 11, &[]);
    let addr = sim.addr.clone();
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[&addr], &[]);
    let port = up.pg_port;
    eventually(Duration::from_secs(30), "first logs", || {
        (query_i64(port, "SELECT count(*) FROM logs") > 0).then_some(())
    });

    drop(sim);
    eventually(
        Duration::from_secs(30),
        "the stream to be seen down",
        || {
            let state = query(
                port,
                "SELECT state FROM armorlake.sources WHERE stream = 'logs'",
            );
            (state == ["reconnecting"]).then_some(())
        },
    );
    let at_restart = query_i64(port, "SELECT count(*) FROM logs");

    let _sim = start_sim_on(&addr, 1000, 12, &[]);
    eventually(Duration::from_secs(30), "logs after the restart", || {
        (query_i64(port, "SELECT count(*) FROM logs") > at_restart).then_some(())
    });
    // Operators report stream status with their heartbeat: wait for the next one.
    let status = eventually(Duration::from_secs(30), "the stream to be seen up", || {
        let status = row(
            port,
            "SELECT state, reconnects, seconds_disconnected > 0, events > 0 \
             FROM armorlake.sources WHERE stream = 'logs'",
        );
        (status[0] == "streaming").then_some(status)
    });
    assert!(status[1].parse::<i64>().unwrap() >= 1, "{status:?}");
    assert_eq!(&status[2..], ["t", "t"]);
}

#[test]
fn an_event_is_queryable_within_a_second_of_being_sent() {
    let sim = start_sim(200, 5, &[]);
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[&sim.addr], &[]);
    let port = up.pg_port;
    eventually(Duration::from_secs(30), "first logs", || {
        (query_i64(port, "SELECT count(*) FROM logs") > 0).then_some(())
    });
    // The simulator stamps events when it sends them; the newest row a query sees is at
    // most a batching interval old. Asserted generously: machines are noisy.
    let lag: f64 = query(
        port,
        "SELECT extract(epoch FROM now()) - extract(epoch FROM max(timestamp)) FROM logs",
    )[0]
    .trim()
    .parse()
    .unwrap();
    assert!(lag < 5.0, "newest row is {lag:.3} s old");
}

#[test]
fn a_filter_kubearmor_rejects_is_reported_as_a_configuration_error() {
    let sim = start_sim(500, 3, &[]);
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[&sim.addr], &["--alert-filter", "bogus"]);
    let port = up.pg_port;
    let error = eventually(Duration::from_secs(30), "the filter error", || {
        let rows = query(
            port,
            "SELECT last_error FROM armorlake.sources WHERE stream = 'alerts'",
        );
        rows.first().filter(|e| !e.is_empty()).cloned()
    });
    assert!(error.contains("filter 'bogus'"), "{error}");
    // The other streams are unaffected.
    eventually(Duration::from_secs(30), "logs", || {
        (query_i64(port, "SELECT count(*) FROM logs") > 0).then_some(())
    });
    assert_eq!(query_i64(port, "SELECT count(*) FROM alerts"), 0);
}

#[test]
fn an_oversized_message_is_counted_and_skipped_and_the_stream_goes_on() {
    let addr = serve_kubearmor(OversizedOnce {
        log: every_field_log(),
        subscriptions: AtomicU32::new(0),
    });
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[&addr], &[]);
    let port = up.pg_port;
    // The log before the oversized message and the one on the re-opened stream are kept.
    eventually(Duration::from_secs(30), "both logs", || {
        (query_i64(port, "SELECT count(*) FROM logs") == 2).then_some(())
    });
    let resources = query(port, "SELECT resource FROM logs ORDER BY resource");
    assert_eq!(resources, ["/subscription/0", "/subscription/1"]);
    // Stream status arrives with the operator's next heartbeat.
    let status = eventually(Duration::from_secs(30), "the bad message counted", || {
        let status = row(
            port,
            "SELECT bad_messages, reconnects, state, last_error \
             FROM armorlake.sources WHERE stream = 'logs'",
        );
        (status[0] != "0" && status[2] == "streaming").then_some(status)
    });
    assert_eq!(status[0], "1", "{status:?}");
    assert_eq!(status[1], "1", "{status:?}");
    assert!(status[3].contains("too large"), "{status:?}");
    let others = query(
        port,
        "SELECT bad_messages FROM armorlake.sources WHERE stream <> 'logs'",
    );
    assert_eq!(others, ["0", "0"]);
}

#[test]
fn an_invalid_message_is_counted_and_skipped_without_ending_the_stream() {
    let log = |resource: &str| {
        prost::Message::encode_to_vec(&Log {
            resource: resource.into(),
            ..every_field_log()
        })
    };
    // Sound gRPC framing around content that is not a `Log`: a varint where NamespaceName
    // (field 5) is text, then text that is not UTF-8.
    let wrong_type = [log("/wrong-type"), vec![0x28, 0x01]].concat();
    let not_utf8 = [log("/not-utf8"), vec![0x2a, 0x02, 0xc3, 0x28]].concat();
    let addr = serve_feeder(RawLogs {
        logs: vec![log("/before"), wrong_type, not_utf8, log("/after")],
    });
    let dir = tempfile::tempdir().unwrap();
    let up = start_up(dir.path(), &[&addr], &[]);
    let port = up.pg_port;
    eventually(Duration::from_secs(30), "both valid logs", || {
        (query_i64(port, "SELECT count(*) FROM logs") == 2).then_some(())
    });
    let resources = query(port, "SELECT resource FROM logs ORDER BY resource");
    assert_eq!(resources, ["/after", "/before"]);
    let status = eventually(Duration::from_secs(30), "the bad messages counted", || {
        let status = row(
            port,
            "SELECT bad_messages, reconnects, state, last_error \
             FROM armorlake.sources WHERE stream = 'logs'",
        );
        (status[0] == "2").then_some(status)
    });
    // One subscription throughout: the stream was never re-opened.
    assert_eq!(status[1], "0", "{status:?}");
    assert_eq!(status[2], "streaming", "{status:?}");
    assert!(status[3].contains("not UTF-8"), "{status:?}");
}
