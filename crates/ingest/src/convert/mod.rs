//! KubeArmor events (`feeder::{Alert, Log, Message}`) to Arrow record batches with exactly the
//! schemas of [`Table::Alerts`], [`Table::Logs`] and [`Table::Messages`].
//!
//! One builder per table accumulates events straight into Arrow column builders (no JSON or serde
//! round trip) and yields a [`RecordBatch`] on [`finish`](AlertBatchBuilder::finish). The
//! mapping:
//!
//! - `timestamp` is [`event_time_micros`]`(Timestamp, UpdatedTime)`, never NULL.
//! - Strings and integers map as they are; an empty proto string stays an empty string.
//! - `severity` (alerts) is `Severity` parsed as an integer, NULL when empty or not a number.
//! - `atags` is `ATags` as a list of text, an empty list when there are none.
//! - `owner_ref`, `owner_name`, `owner_namespace` come from `Owner`, all NULL when it is absent;
//!   `exec_id`, `executable_name` from `ExecEvent`, NULL when it is absent.
//! - `event_data` is `EventData` as a JSON object with sorted keys, NULL when the map is empty.
//! - `operator` and `endpoint` are the builder's constants.

mod columns;
#[cfg(test)]
mod tests;
mod wire;
#[cfg(test)]
mod wire_tests;

use armorlake_common::Table;
use armorlake_proto::feeder::{Alert, Log, Message};
use arrow::array::{
    Int32Builder, ListBuilder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use chrono::DateTime;

use columns::{BatchFrame, EventDataWriter, append_list, columns, parse_severity};
pub use wire::{AlertView, ExecView, LogView, MessageView, OwnerView, WireError};

/// The row's event time in microseconds since the epoch (UTC).
///
/// `updated_time` parsed as RFC 3339 (KubeArmor writes `2023-12-28T17:16:16.571714Z`,
/// microseconds, UTC; an explicit offset is converted to UTC); when it is empty or malformed,
/// `timestamp_secs` (Unix seconds) * 1 000 000, saturating at the limits of `i64`.
pub fn event_time_micros(timestamp_secs: i64, updated_time: &str) -> i64 {
    if !updated_time.is_empty()
        && let Ok(time) = DateTime::parse_from_rfc3339(updated_time)
    {
        return time.timestamp_micros();
    }
    timestamp_secs.saturating_mul(1_000_000)
}

columns! {
    /// The KubeArmor columns of table `alerts`, in schema order.
    AlertColumns {
        timestamp: TimestampMicrosecondBuilder,
        cluster_name: StringBuilder,
        host_name: StringBuilder,
        namespace_name: StringBuilder,
        pod_name: StringBuilder,
        container_id: StringBuilder,
        container_name: StringBuilder,
        host_pid: Int32Builder,
        ppid: Int32Builder,
        pid: Int32Builder,
        uid: Int32Builder,
        policy_name: StringBuilder,
        severity: Int32Builder,
        tags: StringBuilder,
        message: StringBuilder,
        r#type: StringBuilder,
        source: StringBuilder,
        operation: StringBuilder,
        resource: StringBuilder,
        data: StringBuilder,
        action: StringBuilder,
        result: StringBuilder,
        container_image: StringBuilder,
        parent_process_name: StringBuilder,
        process_name: StringBuilder,
        host_ppid: Int32Builder,
        enforcer: StringBuilder,
        labels: StringBuilder,
        atags: ListBuilder<StringBuilder>,
        owner_ref: StringBuilder,
        owner_name: StringBuilder,
        owner_namespace: StringBuilder,
        cwd: StringBuilder,
        tty: StringBuilder,
        max_alerts_per_sec: Int32Builder,
        dropping_alerts_interval: Int32Builder,
        exec_id: StringBuilder,
        executable_name: StringBuilder,
        kubearmor_version: StringBuilder,
        node_id: StringBuilder,
        process_hash: StringBuilder,
        parent_hash: StringBuilder,
        resource_hash: StringBuilder,
        hash_algo: StringBuilder,
        event_data: StringBuilder,
        user_name: StringBuilder,
    }
}

columns! {
    /// The KubeArmor columns of table `logs`, in schema order.
    LogColumns {
        timestamp: TimestampMicrosecondBuilder,
        cluster_name: StringBuilder,
        host_name: StringBuilder,
        namespace_name: StringBuilder,
        pod_name: StringBuilder,
        container_id: StringBuilder,
        container_name: StringBuilder,
        host_pid: Int32Builder,
        ppid: Int32Builder,
        pid: Int32Builder,
        uid: Int32Builder,
        r#type: StringBuilder,
        source: StringBuilder,
        operation: StringBuilder,
        resource: StringBuilder,
        data: StringBuilder,
        result: StringBuilder,
        container_image: StringBuilder,
        parent_process_name: StringBuilder,
        process_name: StringBuilder,
        host_ppid: Int32Builder,
        labels: StringBuilder,
        owner_ref: StringBuilder,
        owner_name: StringBuilder,
        owner_namespace: StringBuilder,
        cwd: StringBuilder,
        tty: StringBuilder,
        exec_id: StringBuilder,
        executable_name: StringBuilder,
        node_id: StringBuilder,
        process_hash: StringBuilder,
        parent_hash: StringBuilder,
        resource_hash: StringBuilder,
        hash_algo: StringBuilder,
        event_data: StringBuilder,
        user_name: StringBuilder,
    }
}

columns! {
    /// The KubeArmor columns of table `messages`, in schema order.
    MessageColumns {
        timestamp: TimestampMicrosecondBuilder,
        cluster_name: StringBuilder,
        host_name: StringBuilder,
        host_ip: StringBuilder,
        r#type: StringBuilder,
        level: StringBuilder,
        message: StringBuilder,
    }
}

/// Accumulates [`Alert`]s and yields [`RecordBatch`]es with the schema of [`Table::Alerts`].
#[derive(Debug)]
pub struct AlertBatchBuilder {
    columns: AlertColumns,
    event_data: EventDataWriter,
    frame: BatchFrame,
}

impl AlertBatchBuilder {
    /// A builder whose rows carry `operator` (the storing node) and `endpoint` (the KubeArmor
    /// address the alerts are pulled from); `capacity` is the number of rows each batch is
    /// preallocated for (more may be appended).
    pub fn new(operator: &str, endpoint: &str, capacity: usize) -> Self {
        AlertBatchBuilder {
            columns: AlertColumns::with_rows(capacity),
            event_data: EventDataWriter::default(),
            frame: BatchFrame::new(Table::Alerts, operator, endpoint, capacity),
        }
    }

    /// Appends one alert as a row.
    pub fn append(&mut self, alert: &Alert) {
        self.append_view(&AlertView::from(alert));
    }

    /// Appends one alert as a row, read from its protobuf encoding (as received from
    /// KubeArmor). Nothing is appended when the bytes are not a valid `Alert`.
    pub fn append_wire(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.append_view(&AlertView::decode(bytes)?);
        Ok(())
    }

    /// Appends one alert, viewed in place, as a row.
    pub fn append_view(&mut self, alert: &AlertView<'_>) {
        let c = &mut self.columns;
        let owner = alert.owner.as_ref();
        let exec = alert.exec_event.as_ref();
        c.timestamp
            .append_value(event_time_micros(alert.timestamp, alert.updated_time));
        c.cluster_name.append_value(alert.cluster_name);
        c.host_name.append_value(alert.host_name);
        c.namespace_name.append_value(alert.namespace_name);
        c.pod_name.append_value(alert.pod_name);
        c.container_id.append_value(alert.container_id);
        c.container_name.append_value(alert.container_name);
        c.host_pid.append_value(alert.host_pid);
        c.ppid.append_value(alert.ppid);
        c.pid.append_value(alert.pid);
        c.uid.append_value(alert.uid);
        c.policy_name.append_value(alert.policy_name);
        c.severity.append_option(parse_severity(alert.severity));
        c.tags.append_value(alert.tags);
        c.message.append_value(alert.message);
        c.r#type.append_value(alert.r#type);
        c.source.append_value(alert.source);
        c.operation.append_value(alert.operation);
        c.resource.append_value(alert.resource);
        c.data.append_value(alert.data);
        c.action.append_value(alert.action);
        c.result.append_value(alert.result);
        c.container_image.append_value(alert.container_image);
        c.parent_process_name
            .append_value(alert.parent_process_name);
        c.process_name.append_value(alert.process_name);
        c.host_ppid.append_value(alert.host_ppid);
        c.enforcer.append_value(alert.enforcer);
        c.labels.append_value(alert.labels);
        append_list(&mut c.atags, &alert.a_tags);
        c.owner_ref.append_option(owner.map(|o| o.r#ref));
        c.owner_name.append_option(owner.map(|o| o.name));
        c.owner_namespace.append_option(owner.map(|o| o.namespace));
        c.cwd.append_value(alert.cwd);
        c.tty.append_value(alert.tty);
        c.max_alerts_per_sec.append_value(alert.max_alerts_per_sec);
        c.dropping_alerts_interval
            .append_value(alert.dropping_alerts_interval);
        c.exec_id.append_option(exec.map(|e| e.exec_id));
        c.executable_name
            .append_option(exec.map(|e| e.executable_name));
        c.kubearmor_version.append_value(alert.kube_armor_version);
        c.node_id.append_value(alert.node_id);
        c.process_hash.append_value(alert.process_hash);
        c.parent_hash.append_value(alert.parent_hash);
        c.resource_hash.append_value(alert.resource_hash);
        c.hash_algo.append_value(alert.hash_algo);
        self.event_data.append(&mut c.event_data, &alert.event_data);
        c.user_name.append_value(alert.user_name);
    }

    /// The number of alerts appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.columns.rows()
    }

    /// Whether no alert was appended since the last [`finish`](Self::finish).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds the batch of everything appended so far and resets the builder.
    pub fn finish(&mut self) -> RecordBatch {
        let rows = self.len();
        let arrays = self.columns.finish(self.frame.capacity);
        self.frame.assemble(arrays, rows)
    }
}

/// Accumulates [`Log`]s and yields [`RecordBatch`]es with the schema of [`Table::Logs`].
#[derive(Debug)]
pub struct LogBatchBuilder {
    columns: LogColumns,
    event_data: EventDataWriter,
    frame: BatchFrame,
}

impl LogBatchBuilder {
    /// A builder whose rows carry `operator` (the storing node) and `endpoint` (the KubeArmor
    /// address the logs are pulled from); `capacity` is the number of rows each batch is
    /// preallocated for (more may be appended).
    pub fn new(operator: &str, endpoint: &str, capacity: usize) -> Self {
        LogBatchBuilder {
            columns: LogColumns::with_rows(capacity),
            event_data: EventDataWriter::default(),
            frame: BatchFrame::new(Table::Logs, operator, endpoint, capacity),
        }
    }

    /// Appends one log as a row.
    pub fn append(&mut self, log: &Log) {
        self.append_view(&LogView::from(log));
    }

    /// Appends one log as a row, read from its protobuf encoding (as received from
    /// KubeArmor). Nothing is appended when the bytes are not a valid `Log`.
    pub fn append_wire(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.append_view(&LogView::decode(bytes)?);
        Ok(())
    }

    /// Appends one log, viewed in place, as a row.
    pub fn append_view(&mut self, log: &LogView<'_>) {
        let c = &mut self.columns;
        let owner = log.owner.as_ref();
        let exec = log.exec_event.as_ref();
        c.timestamp
            .append_value(event_time_micros(log.timestamp, log.updated_time));
        c.cluster_name.append_value(log.cluster_name);
        c.host_name.append_value(log.host_name);
        c.namespace_name.append_value(log.namespace_name);
        c.pod_name.append_value(log.pod_name);
        c.container_id.append_value(log.container_id);
        c.container_name.append_value(log.container_name);
        c.host_pid.append_value(log.host_pid);
        c.ppid.append_value(log.ppid);
        c.pid.append_value(log.pid);
        c.uid.append_value(log.uid);
        c.r#type.append_value(log.r#type);
        c.source.append_value(log.source);
        c.operation.append_value(log.operation);
        c.resource.append_value(log.resource);
        c.data.append_value(log.data);
        c.result.append_value(log.result);
        c.container_image.append_value(log.container_image);
        c.parent_process_name.append_value(log.parent_process_name);
        c.process_name.append_value(log.process_name);
        c.host_ppid.append_value(log.host_ppid);
        c.labels.append_value(log.labels);
        c.owner_ref.append_option(owner.map(|o| o.r#ref));
        c.owner_name.append_option(owner.map(|o| o.name));
        c.owner_namespace.append_option(owner.map(|o| o.namespace));
        c.cwd.append_value(log.cwd);
        c.tty.append_value(log.tty);
        c.exec_id.append_option(exec.map(|e| e.exec_id));
        c.executable_name
            .append_option(exec.map(|e| e.executable_name));
        c.node_id.append_value(log.node_id);
        c.process_hash.append_value(log.process_hash);
        c.parent_hash.append_value(log.parent_hash);
        c.resource_hash.append_value(log.resource_hash);
        c.hash_algo.append_value(log.hash_algo);
        self.event_data.append(&mut c.event_data, &log.event_data);
        c.user_name.append_value(log.user_name);
    }

    /// The number of logs appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.columns.rows()
    }

    /// Whether no log was appended since the last [`finish`](Self::finish).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds the batch of everything appended so far and resets the builder.
    pub fn finish(&mut self) -> RecordBatch {
        let rows = self.len();
        let arrays = self.columns.finish(self.frame.capacity);
        self.frame.assemble(arrays, rows)
    }
}

/// Accumulates [`Message`]s and yields [`RecordBatch`]es with the schema of
/// [`Table::Messages`].
#[derive(Debug)]
pub struct MessageBatchBuilder {
    columns: MessageColumns,
    frame: BatchFrame,
}

impl MessageBatchBuilder {
    /// A builder whose rows carry `operator` (the storing node) and `endpoint` (the KubeArmor
    /// address the messages are pulled from); `capacity` is the number of rows each batch is
    /// preallocated for (more may be appended).
    pub fn new(operator: &str, endpoint: &str, capacity: usize) -> Self {
        MessageBatchBuilder {
            columns: MessageColumns::with_rows(capacity),
            frame: BatchFrame::new(Table::Messages, operator, endpoint, capacity),
        }
    }

    /// Appends one message as a row.
    pub fn append(&mut self, message: &Message) {
        self.append_view(&MessageView::from(message));
    }

    /// Appends one message as a row, read from its protobuf encoding (as received from
    /// KubeArmor). Nothing is appended when the bytes are not a valid `Message`.
    pub fn append_wire(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.append_view(&MessageView::decode(bytes)?);
        Ok(())
    }

    /// Appends one message, viewed in place, as a row.
    pub fn append_view(&mut self, message: &MessageView<'_>) {
        let c = &mut self.columns;
        c.timestamp
            .append_value(event_time_micros(message.timestamp, message.updated_time));
        c.cluster_name.append_value(message.cluster_name);
        c.host_name.append_value(message.host_name);
        c.host_ip.append_value(message.host_ip);
        c.r#type.append_value(message.r#type);
        c.level.append_value(message.level);
        c.message.append_value(message.message);
    }

    /// The number of messages appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.columns.rows()
    }

    /// Whether no message was appended since the last [`finish`](Self::finish).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds the batch of everything appended so far and resets the builder.
    pub fn finish(&mut self) -> RecordBatch {
        let rows = self.len();
        let arrays = self.columns.finish(self.frame.capacity);
        self.frame.assemble(arrays, rows)
    }
}
