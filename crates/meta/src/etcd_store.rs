//! [`EtcdStore`]: the master's [`KvStore`] in etcd, for a master whose metadata must outlive
//! its machine. etcd replicates every write to a quorum of its members before answering, so
//! a new master started anywhere reads the same state.
//!
//! Keys live under a prefix (`/armorlake/` by default), so several armorlake deployments
//! can share one etcd. A [`WriteBatch`] becomes one etcd transaction (all or nothing).

use std::collections::HashMap;
use std::time::Duration;

use armorlake_proto::etcd as pb;
use armorlake_proto::etcd::kv_client::KvClient;
use async_trait::async_trait;
use tonic::transport::{Channel, Endpoint};

use crate::kv::{Entry, KvStore, WriteBatch, WriteOp};
use crate::{Error, Result};

/// How long opening a connection to an etcd member may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one etcd call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer accepted (a big partition map is many megabytes).
const MAX_MESSAGE: usize = 64 << 20;

/// A [`KvStore`] in etcd (v3 API, etcd 3.4 or later).
#[derive(Clone)]
pub struct EtcdStore {
    client: KvClient<Channel>,
    prefix: Vec<u8>,
    endpoints: String,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to the etcd members at `endpoints` (`host:port` or `http://host:port`) and
    /// checks that etcd answers. Every key is stored under `prefix`.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdStore> {
        if endpoints.is_empty() {
            return Err(Error::Invalid("etcd: no endpoint given".into()));
        }
        let mut list = Vec::with_capacity(endpoints.len());
        for address in endpoints {
            let url = match address.contains("://") {
                true => address.clone(),
                false => format!("http://{address}"),
            };
            let endpoint = Endpoint::from_shared(url)
                .map_err(|e| Error::Invalid(format!("etcd endpoint {address:?}: {e}")))?
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(REQUEST_TIMEOUT)
                .tcp_nodelay(true);
            list.push(endpoint);
        }
        // One member: a plain channel, whose failures show at once; several: spread the
        // calls over those that answer.
        let channel = match list.len() {
            1 => list.remove(0).connect_lazy(),
            _ => Channel::balance_list(list.into_iter()),
        };
        let client = KvClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let store = EtcdStore {
            client,
            prefix: prefix.as_bytes().to_vec(),
            endpoints: endpoints.join(","),
        };
        // Fail at start, with a clear message, when etcd is not there.
        store.get(b"\0probe").await?;
        Ok(store)
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut full = self.prefix.clone();
        full.extend_from_slice(key);
        full
    }

    fn error(&self, what: &str, status: tonic::Status) -> Error {
        Error::Storage(format!(
            "etcd {} {what}: {:?}: {}",
            self.endpoints,
            status.code(),
            status.message()
        ))
    }

    async fn range(&self, request: pb::RangeRequest, what: &str) -> Result<pb::RangeResponse> {
        let mut client = self.client.clone();
        match tokio::time::timeout(REQUEST_TIMEOUT, client.range(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(self.error(what, status)),
            Err(_) => Err(Error::Storage(format!(
                "etcd {} {what}: no answer within {REQUEST_TIMEOUT:?}",
                self.endpoints
            ))),
        }
    }
}

/// The end of the key range of every key starting with `prefix`: `prefix` with its last
/// byte below 0xff incremented (etcd's convention; `[0]` means "to the end").
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The last change of each key, in the order those last changes were made: etcd refuses a
/// transaction that touches one key twice.
fn last_per_key(ops: Vec<WriteOp>) -> Vec<WriteOp> {
    let mut last: HashMap<Vec<u8>, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        let key = match op {
            WriteOp::Put(k, _) | WriteOp::Delete(k) => k.clone(),
        };
        last.insert(key, i);
    }
    ops.into_iter()
        .enumerate()
        .filter(|(i, op)| {
            let key = match op {
                WriteOp::Put(k, _) | WriteOp::Delete(k) => k,
            };
            last.get(key) == Some(i)
        })
        .map(|(_, op)| op)
        .collect()
}

#[async_trait]
impl KvStore for EtcdStore {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let request = pb::RangeRequest {
            key: self.key(key),
            ..Default::default()
        };
        let response = self.range(request, "get").await?;
        Ok(response.kvs.into_iter().next().map(|kv| kv.value))
    }

    async fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<Entry>> {
        let start = self.key(prefix);
        let request = pb::RangeRequest {
            range_end: prefix_end(&start),
            key: start,
            sort_order: pb::range_request::SortOrder::Ascend as i32,
            sort_target: pb::range_request::SortTarget::Key as i32,
            ..Default::default()
        };
        let response = self.range(request, "scan").await?;
        let strip = self.prefix.len();
        Ok(response
            .kvs
            .into_iter()
            .filter_map(|kv| Some((kv.key.get(strip..)?.to_vec(), kv.value)))
            .collect())
    }

    async fn write(&self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let success = last_per_key(batch.into_ops())
            .into_iter()
            .map(|op| pb::RequestOp {
                request: Some(match op {
                    WriteOp::Put(k, v) => pb::request_op::Request::RequestPut(pb::PutRequest {
                        key: self.key(&k),
                        value: v,
                        ..Default::default()
                    }),
                    WriteOp::Delete(k) => {
                        pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
                            key: self.key(&k),
                            ..Default::default()
                        })
                    }
                }),
            })
            .collect();
        let request = pb::TxnRequest {
            success,
            failure: Vec::new(),
        };
        let mut client = self.client.clone();
        let response = match tokio::time::timeout(REQUEST_TIMEOUT, client.txn(request)).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) => return Err(self.error("write", status)),
            Err(_) => {
                return Err(Error::Storage(format!(
                    "etcd {} write: no answer within {REQUEST_TIMEOUT:?} (it may or may not \
                     have been applied)",
                    self.endpoints
                )));
            }
        };
        match response.succeeded {
            true => Ok(()),
            false => Err(Error::Storage(format!(
                "etcd {} write: the transaction did not apply",
                self.endpoints
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_cover_exactly_the_prefix() {
        assert_eq!(
            prefix_end(b"/armorlake/node/"),
            b"/armorlake/node0".to_vec()
        );
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn a_batch_keeps_the_last_change_of_each_key() {
        let ops = vec![
            WriteOp::Put(b"a".to_vec(), b"1".to_vec()),
            WriteOp::Put(b"b".to_vec(), b"1".to_vec()),
            WriteOp::Delete(b"a".to_vec()),
            WriteOp::Put(b"b".to_vec(), b"2".to_vec()),
        ];
        assert_eq!(
            last_per_key(ops),
            vec![
                WriteOp::Delete(b"a".to_vec()),
                WriteOp::Put(b"b".to_vec(), b"2".to_vec()),
            ]
        );
    }
}
