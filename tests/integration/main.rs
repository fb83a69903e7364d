//! armorlake's integration tests: real processes on 127.0.0.1, driven by the real clients
//! users have (psql first). One binary for the whole workspace; each module is one area.

#![allow(
    clippy::unwrap_used,
    reason = "a failed unwrap fails the test, which is what it should do"
)]

mod support;
mod wire;

mod alerting;
mod cluster;
mod config;
mod deploy;
mod distributed;
mod durability;
mod first_slice;
mod flight;
mod ingest;
mod meta_etcd;
mod node_security;
mod observe;
mod pg_clients;
mod pg_compat;
mod pg_drivers;
mod pg_security;
mod slt;
