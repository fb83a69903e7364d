//! The Prometheus endpoint every node serves on `--metrics-listen`: `GET /metrics` (the
//! text exposition format) and `GET /health` (200 while the process serves).
//!
//! The metrics themselves live beside what they measure, one `metrics.rs` per crate
//! (ingest, storage, query), in the process's default registry.

use std::net::SocketAddr;
use std::sync::LazyLock;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{
    Encoder, IntGauge, IntGaugeVec, TextEncoder, register_int_gauge, register_int_gauge_vec,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result, VERSION};

/// Always 1; its labels say what runs: the version and the role.
static BUILD_INFO: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "armorlake_build_info",
        "Always 1: the armorlake version and the node's role",
        &["version", "role"]
    )
    .expect("a valid static metric")
});

/// The process's resident memory, read from /proc at each scrape (Linux).
static RESIDENT_MEMORY: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "armorlake_process_resident_memory_bytes",
        "Resident memory of the process (VmRSS), read at each scrape"
    )
    .expect("a valid static metric")
});

/// The resident memory of this process in bytes, where the OS tells it (Linux).
pub fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Every metric of the process, in Prometheus' text format.
pub fn render() -> String {
    if let Some(bytes) = resident_memory_bytes() {
        RESIDENT_MEMORY.set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&prometheus::gather(), &mut out) {
        tracing::warn!(error = %e, "encoding the metrics failed");
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn metrics() -> impl IntoResponse {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            TextEncoder::new().format_type().to_string(),
        )],
        render(),
    )
}

async fn health() -> &'static str {
    "ok\n"
}

/// Binds `listen` and serves `/metrics` and `/health` until `shutdown`, in the background.
/// `role` labels `armorlake_build_info`. Returns the bound address.
pub async fn start(
    listen: SocketAddr,
    role: &str,
    shutdown: CancellationToken,
) -> Result<SocketAddr> {
    BUILD_INFO.with_label_values(&[VERSION, role]).set(1);
    LazyLock::force(&RESIDENT_MEMORY);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Io {
            context: format!("binding the metrics listener {listen}"),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Io {
        context: "reading the metrics listener's address".into(),
        source,
    })?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health));
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "serving metrics failed");
        }
    });
    Ok(addr)
}
