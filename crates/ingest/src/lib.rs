//! Ingest: pulls KubeArmor events over gRPC ([`puller`]) and turns them into Arrow record
//! batches ([`convert`]) for the operator's store.

pub mod convert;
pub mod feed;
pub mod metrics;
pub mod puller;
pub mod status;

pub use puller::{BatchSender, KubeArmorTls, PullerConfig};
pub use status::{SourceSnapshot, SourceStatus, StreamState};
