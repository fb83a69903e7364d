//! Generated protobuf and gRPC code.
//!
//! [`feeder`] is KubeArmor's own API (package `feeder`, service `LogService`), wire-compatible
//! with KubeArmor v1.7: armorlake's puller is its client, the built-in simulator its server.
//!
//! [`meta`] is the master's service (package `armorlake.meta.v1`, service `MetaService`):
//! operators and query nodes in other processes reach the shared metadata through it.
//!
//! [`etcd`] is the part of etcd's v3 KV API (package `etcdserverpb`, service `KV`) the
//! master's etcd store calls.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod feeder {
    tonic::include_proto!("feeder");
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod meta {
    tonic::include_proto!("armorlake.meta.v1");
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}
