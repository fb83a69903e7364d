//! Generated protobuf and gRPC code.
//!
//! [`feeder`] is KubeArmor's own API (package `feeder`, service `LogService`), wire-compatible
//! with KubeArmor v1.7: armorlake's puller is its client, the built-in simulator its server.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod feeder {
    tonic::include_proto!("feeder");
}
