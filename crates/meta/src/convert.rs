//! Between the Rust types and their protobuf form (`armorlake.meta.v1`), which is both the
//! wire format of the master's gRPC service and the encoding of its stored records; and
//! between [`Error`] and gRPC statuses.

use std::sync::Arc;

use armorlake_common::Table;
use armorlake_proto::meta as pb;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::convert::try_schema_from_ipc_buffer;
use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteOptions, write_message};
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::{Error, NodeInfo, NodeReport, Partition, Result, Role, Source, TableInfo};

/// Metadata key carrying the id of the unknown node of a `NOT_FOUND` status.
const NODE_KEY: &str = "armorlake-node-bin";
/// The binary metadata key naming the rule of an `UnknownRule` or `RuleExists` status.
const RULE_KEY: &str = "armorlake-rule-bin";

/// Encodes `schema` as an encapsulated Arrow IPC Schema message (continuation marker,
/// length, flatbuffer), the form Arrow Flight's `SchemaResult` carries.
pub fn schema_to_ipc(schema: &Schema) -> Result<Vec<u8>> {
    let options = IpcWriteOptions::default();
    let encoded = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
        schema,
        &mut DictionaryTracker::new(false),
        &options,
    );
    let mut out = Vec::new();
    write_message(&mut out, encoded, &options)
        .map_err(|e| Error::Invalid(format!("encoding an Arrow schema: {e}")))?;
    Ok(out)
}

/// Decodes what [`schema_to_ipc`] encodes.
pub fn schema_from_ipc(bytes: &[u8]) -> Result<SchemaRef> {
    try_schema_from_ipc_buffer(bytes)
        .map(Arc::new)
        .map_err(|e| Error::Invalid(format!("decoding an Arrow schema: {e}")))
}

fn table(name: &str) -> Result<Table> {
    Table::from_name(name).ok_or_else(|| Error::Invalid(format!("unknown table {name:?}")))
}

impl From<Role> for pb::Role {
    fn from(role: Role) -> pb::Role {
        match role {
            Role::Master => pb::Role::Master,
            Role::Operator => pb::Role::Operator,
            Role::Query => pb::Role::Query,
        }
    }
}

fn role(value: i32) -> Result<Role> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Master) => Ok(Role::Master),
        Ok(pb::Role::Operator) => Ok(Role::Operator),
        Ok(pb::Role::Query) => Ok(Role::Query),
        Ok(pb::Role::Unspecified) | Err(_) => {
            Err(Error::Invalid(format!("unknown node role {value}")))
        }
    }
}

impl From<NodeInfo> for pb::NodeInfo {
    fn from(n: NodeInfo) -> pb::NodeInfo {
        pb::NodeInfo {
            id: n.id,
            role: pb::Role::from(n.role).into(),
            address: n.address,
            version: n.version,
            registered_micros: n.registered_micros,
            heartbeat_micros: n.heartbeat_micros,
            cluster: n.cluster,
        }
    }
}

impl TryFrom<pb::NodeInfo> for NodeInfo {
    type Error = Error;

    fn try_from(n: pb::NodeInfo) -> Result<NodeInfo> {
        Ok(NodeInfo {
            role: role(n.role)?,
            id: n.id,
            address: n.address,
            version: n.version,
            registered_micros: n.registered_micros,
            heartbeat_micros: n.heartbeat_micros,
            cluster: n.cluster,
        })
    }
}

impl From<Partition> for pb::Partition {
    fn from(p: Partition) -> pb::Partition {
        pb::Partition {
            table: p.table.name().to_string(),
            hour_micros: p.hour_micros,
            operator: p.operator,
            rows: p.rows,
            bytes: p.bytes,
            min_micros: p.min_micros,
            max_micros: p.max_micros,
        }
    }
}

impl TryFrom<pb::Partition> for Partition {
    type Error = Error;

    fn try_from(p: pb::Partition) -> Result<Partition> {
        Ok(Partition {
            table: table(&p.table)?,
            hour_micros: p.hour_micros,
            operator: p.operator,
            rows: p.rows,
            bytes: p.bytes,
            min_micros: p.min_micros,
            max_micros: p.max_micros,
        })
    }
}

impl From<Source> for pb::Source {
    fn from(s: Source) -> pb::Source {
        pb::Source {
            operator: s.operator,
            endpoint: s.endpoint,
            table: s.table.name().to_string(),
            state: s.state,
            events: s.events,
            reconnects: s.reconnects,
            last_event_micros: s.last_event_micros,
            disconnected_micros: s.disconnected_micros,
            last_error: s.last_error,
            bad_messages: s.bad_messages,
        }
    }
}

impl TryFrom<pb::Source> for Source {
    type Error = Error;

    fn try_from(s: pb::Source) -> Result<Source> {
        Ok(Source {
            table: table(&s.table)?,
            operator: s.operator,
            endpoint: s.endpoint,
            state: s.state,
            events: s.events,
            reconnects: s.reconnects,
            last_event_micros: s.last_event_micros,
            disconnected_micros: s.disconnected_micros,
            last_error: s.last_error,
            bad_messages: s.bad_messages,
        })
    }
}

impl From<NodeReport> for pb::NodeReport {
    fn from(r: NodeReport) -> pb::NodeReport {
        pb::NodeReport {
            partitions: r.partitions.into_iter().map(Into::into).collect(),
            sources: r.sources.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<pb::NodeReport> for NodeReport {
    type Error = Error;

    fn try_from(r: pb::NodeReport) -> Result<NodeReport> {
        Ok(NodeReport {
            partitions: decode_all(r.partitions)?,
            sources: decode_all(r.sources)?,
        })
    }
}

impl TryFrom<&TableInfo> for pb::TableInfo {
    type Error = Error;

    fn try_from(t: &TableInfo) -> Result<pb::TableInfo> {
        Ok(pb::TableInfo {
            name: t.name.clone(),
            arrow_schema: schema_to_ipc(&t.schema)?,
        })
    }
}

impl TryFrom<pb::TableInfo> for TableInfo {
    type Error = Error;

    fn try_from(t: pb::TableInfo) -> Result<TableInfo> {
        Ok(TableInfo {
            schema: schema_from_ipc(&t.arrow_schema)?,
            name: t.name,
        })
    }
}

/// Converts every message of `items`, failing on the first that does not convert.
pub(crate) fn decode_all<P, T>(items: Vec<P>) -> Result<Vec<T>>
where
    T: TryFrom<P, Error = Error>,
{
    items.into_iter().map(T::try_from).collect()
}

/// The status a server answers for `error`.
pub(crate) fn to_status(error: Error) -> Status {
    let message = error.to_string();
    match error {
        Error::UnknownNode(id) => {
            let mut status = Status::not_found(message);
            status
                .metadata_mut()
                .insert_bin(NODE_KEY, MetadataValue::from_bytes(id.as_bytes()));
            status
        }
        Error::UnknownRule(name) => {
            let mut status = Status::not_found(message);
            status
                .metadata_mut()
                .insert_bin(RULE_KEY, MetadataValue::from_bytes(name.as_bytes()));
            status
        }
        Error::RuleExists(name) => {
            let mut status = Status::already_exists(message);
            status
                .metadata_mut()
                .insert_bin(RULE_KEY, MetadataValue::from_bytes(name.as_bytes()));
            status
        }
        Error::Unavailable(_) => Status::unavailable(message),
        Error::Unauthenticated(_) => Status::unauthenticated(message),
        Error::Storage(_) | Error::Security(_) => Status::internal(message),
        Error::Invalid(_) => Status::invalid_argument(message),
    }
}

/// The error a client reports for `status`.
pub(crate) fn from_status(status: Status) -> Error {
    let rule = status
        .metadata()
        .get_bin(RULE_KEY)
        .and_then(|v| v.to_bytes().ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    match (status.code(), rule) {
        (Code::NotFound, Some(rule)) => return Error::UnknownRule(rule),
        (Code::AlreadyExists, Some(rule)) => return Error::RuleExists(rule),
        _ => {}
    }
    match status.code() {
        Code::NotFound => {
            let id = status
                .metadata()
                .get_bin(NODE_KEY)
                .and_then(|v| v.to_bytes().ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|| status.message().to_string());
            Error::UnknownNode(id)
        }
        Code::Unauthenticated | Code::PermissionDenied => {
            Error::Unauthenticated(status.message().to_string())
        }
        Code::Internal => Error::Storage(status.message().to_string()),
        Code::InvalidArgument
        | Code::DataLoss
        | Code::Unimplemented
        | Code::FailedPrecondition
        | Code::OutOfRange => Error::Invalid(format!("{:?}: {}", status.code(), status.message())),
        _ => Error::Unavailable(format!("{:?}: {}", status.code(), status.message())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_schema_survives_ipc() {
        for t in TableInfo::builtin() {
            let bytes = schema_to_ipc(&t.schema).expect("encode");
            assert_eq!(schema_from_ipc(&bytes).expect("decode"), t.schema);
        }
        assert!(schema_from_ipc(b"junk").is_err());
    }

    #[test]
    fn unknown_node_survives_a_status() {
        let e = from_status(to_status(Error::UnknownNode("öp 7".into())));
        assert!(
            matches!(&e, Error::UnknownNode(id) if id == "öp 7"),
            "{e:?}"
        );
        let e = from_status(to_status(Error::Invalid("x".into())));
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
        let e = from_status(Status::unavailable("down"));
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
    }

    #[test]
    fn records_round_trip() {
        let report = NodeReport {
            partitions: vec![Partition {
                table: Table::Logs,
                hour_micros: 3_600_000_000,
                operator: "op".into(),
                rows: 1,
                bytes: 2,
                min_micros: 3,
                max_micros: 4,
            }],
            sources: vec![Source {
                operator: "op".into(),
                endpoint: "k:32767".into(),
                table: Table::Messages,
                state: "streaming".into(),
                events: 9,
                reconnects: 1,
                last_event_micros: Some(5),
                disconnected_micros: 6,
                last_error: None,
                bad_messages: 7,
            }],
        };
        let back = NodeReport::try_from(pb::NodeReport::from(report.clone())).expect("decode");
        assert_eq!(back, report);
        let node = NodeInfo::new("op", Role::Operator, "a:1", "v").with_cluster("c");
        assert_eq!(
            NodeInfo::try_from(pb::NodeInfo::from(node.clone())).expect("decode"),
            node
        );
        let mut bad = pb::NodeInfo::from(node);
        bad.role = 0;
        assert!(NodeInfo::try_from(bad).is_err());
    }
}
