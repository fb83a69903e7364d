//! KubeArmor's messages read in place from the bytes gRPC received.
//!
//! Decoding a `feeder::Log` with prost allocates a `String` for each of its ~30 text fields
//! and a `HashMap` for `EventData`, only for the batch builder to copy every value again into
//! its Arrow buffers and drop the struct. A view instead borrows each field from the received
//! message ([`LogView::decode`]), so an event costs one pass over its bytes and one copy into
//! the builders. The same views are made from prost structs (`From<&Log>`), so both paths
//! share one mapping to columns.
//!
//! Decoding follows protobuf's rules as prost applies them to proto3 messages: fields in any
//! order; the last value of a scalar field wins; a repeated message field (`Owner`,
//! `ExecEvent`) merges its occurrences; repeated `ATags` and map `EventData` entries
//! accumulate (in a map, the last value of a key wins); unknown fields of any wire type are
//! skipped. A known field with the wrong wire type, a truncated field, a varint over 10 bytes
//! or text that is not UTF-8 make the message invalid: [`WireError`].

use armorlake_proto::feeder::{Alert, ExecEvent, Log, Message, Podowner};

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid protobuf message: {0}")]
pub struct WireError(&'static str);

type Result<T> = std::result::Result<T, WireError>;

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// Deepest nesting of (deprecated) groups skipped inside an unknown field (prost's limit).
const MAX_GROUP_DEPTH: u32 = 100;

/// A cursor over one message's bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for (i, &byte) in self.buf.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                // The tenth byte may only carry the top bit of a u64.
                if i == 9 && byte > 1 {
                    break;
                }
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(WireError("invalid varint"))
    }

    /// The next field's number and wire type.
    fn key(&mut self) -> Result<(u32, u8)> {
        let key = u32::try_from(self.varint()?).map_err(|_| WireError("invalid key"))?;
        let field = key >> 3;
        if field == 0 {
            return Err(WireError("invalid field number 0"));
        }
        Ok((field, (key & 7) as u8))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if len > self.buf.len() {
            return Err(WireError("field runs past the end of the message"));
        }
        let (head, tail) = self.buf.split_at(len);
        self.buf = tail;
        Ok(head)
    }

    /// A length-delimited field's bytes.
    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.varint()?;
        self.take(usize::try_from(len).map_err(|_| WireError("invalid length"))?)
    }

    /// Skips the value of an unknown `field` of `wire` type.
    fn skip(&mut self, field: u32, wire: u8, depth: u32) -> Result<()> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.take(4).map(drop),
            START_GROUP if depth < MAX_GROUP_DEPTH => loop {
                let (inner, inner_wire) = self.key()?;
                if inner_wire == END_GROUP {
                    if inner == field {
                        return Ok(());
                    }
                    return Err(WireError("unexpected end group"));
                }
                self.skip(inner, inner_wire, depth + 1)?;
            },
            START_GROUP => Err(WireError("groups nested too deep")),
            END_GROUP => Err(WireError("unexpected end group")),
            _ => Err(WireError("invalid wire type")),
        }
    }
}

/// `wire` must be `expected` for a known field.
fn expect(wire: u8, expected: u8) -> Result<()> {
    if wire == expected {
        Ok(())
    } else {
        Err(WireError("a known field has the wrong wire type"))
    }
}

fn text<'a>(wire: u8, r: &mut Reader<'a>) -> Result<&'a str> {
    expect(wire, LEN)?;
    simdutf8::basic::from_utf8(r.bytes()?).map_err(|_| WireError("text is not UTF-8"))
}

/// How one kind of protobuf field is read in place and viewed from its prost value.
pub trait Kind {
    /// The borrowed value; `Default` is the value of an absent field.
    type View<'a>: Default;
    /// The field's type in prost's structs.
    type Prost;
    /// Reads one occurrence of the field into `view`.
    fn read<'a>(view: &mut Self::View<'a>, wire: u8, r: &mut Reader<'a>) -> Result<()>;
    /// The view of a prost value.
    fn view(value: &Self::Prost) -> Self::View<'_>;
}

// The kinds of field in KubeArmor's messages. Public only so that the views' field types,
// which name them, may be; the module itself is private.
/// `int32`.
pub struct Int32;
/// `int64`.
pub struct Int64;
/// `string`.
pub struct Text;
/// `repeated string`.
pub struct TextList;
/// `map<string, string>`.
pub struct TextMap;
/// `Podowner`.
pub struct Owner;
/// `ExecEvent`.
pub struct Exec;

/// A varint scalar field: `int32` is sent sign-extended to 64 bits and, as prost does, keeps
/// the low 32.
macro_rules! varint_kind {
    ($kind:ident, $ty:ty) => {
        impl Kind for $kind {
            type View<'a> = $ty;
            type Prost = $ty;
            fn read<'a>(view: &mut $ty, wire: u8, r: &mut Reader<'a>) -> Result<()> {
                expect(wire, VARINT)?;
                *view = r.varint()? as $ty;
                Ok(())
            }
            fn view(value: &$ty) -> $ty {
                *value
            }
        }
    };
}
varint_kind!(Int32, i32);
varint_kind!(Int64, i64);

impl Kind for Text {
    type View<'a> = &'a str;
    type Prost = String;
    fn read<'a>(view: &mut &'a str, wire: u8, r: &mut Reader<'a>) -> Result<()> {
        *view = text(wire, r)?;
        Ok(())
    }
    fn view(value: &String) -> &str {
        value
    }
}

impl Kind for TextList {
    type View<'a> = Vec<&'a str>;
    type Prost = Vec<String>;
    fn read<'a>(view: &mut Vec<&'a str>, wire: u8, r: &mut Reader<'a>) -> Result<()> {
        view.push(text(wire, r)?);
        Ok(())
    }
    fn view(value: &Vec<String>) -> Vec<&str> {
        value.iter().map(String::as_str).collect()
    }
}

impl Kind for TextMap {
    /// Entries in the order received; a later entry for a key replaces an earlier one.
    type View<'a> = Vec<(&'a str, &'a str)>;
    type Prost = std::collections::HashMap<String, String>;
    fn read<'a>(view: &mut Self::View<'a>, wire: u8, r: &mut Reader<'a>) -> Result<()> {
        expect(wire, LEN)?;
        let mut entry = Reader::new(r.bytes()?);
        let (mut key, mut value) = ("", "");
        while !entry.is_empty() {
            match entry.key()? {
                (1, wire) => key = text(wire, &mut entry)?,
                (2, wire) => value = text(wire, &mut entry)?,
                (field, wire) => entry.skip(field, wire, 0)?,
            }
        }
        view.push((key, value));
        Ok(())
    }
    fn view(value: &Self::Prost) -> Self::View<'_> {
        value
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// Declares a borrowed view of a prost message: a struct with the prost struct's field names,
/// `decode` reading it from protobuf bytes and `From` the prost struct.
macro_rules! view {
    (
        $(#[$attr:meta])*
        $name:ident of $prost:ty { $($number:literal => $field:ident: $kind:ty,)* }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Default, Clone, PartialEq)]
        #[allow(missing_docs)]
        pub struct $name<'a> {
            $(pub $field: <$kind as Kind>::View<'a>,)*
        }

        impl<'a> $name<'a> {
            /// Reads a message from its protobuf encoding, borrowing its text.
            pub fn decode(bytes: &'a [u8]) -> Result<Self> {
                let mut view = Self::default();
                view.merge(&mut Reader::new(bytes))?;
                Ok(view)
            }

            /// Reads fields from `r` into `self` until its end.
            fn merge(&mut self, r: &mut Reader<'a>) -> Result<()> {
                while !r.is_empty() {
                    match r.key()? {
                        $(($number, wire) => <$kind as Kind>::read(&mut self.$field, wire, r)?,)*
                        (field, wire) => r.skip(field, wire, 0)?,
                    }
                }
                Ok(())
            }
        }

        impl<'a> From<&'a $prost> for $name<'a> {
            fn from(message: &'a $prost) -> Self {
                $name { $($field: <$kind as Kind>::view(&message.$field),)* }
            }
        }
    };
}

/// A message field: present (even when empty) or absent; occurrences merge.
macro_rules! message_kind {
    ($kind:ident, $view:ident, $prost:ty) => {
        impl Kind for $kind {
            type View<'a> = Option<$view<'a>>;
            type Prost = Option<$prost>;
            fn read<'a>(view: &mut Option<$view<'a>>, wire: u8, r: &mut Reader<'a>) -> Result<()> {
                expect(wire, LEN)?;
                let mut inner = Reader::new(r.bytes()?);
                view.get_or_insert_default().merge(&mut inner)
            }
            fn view(value: &Option<$prost>) -> Option<$view<'_>> {
                value.as_ref().map($view::from)
            }
        }
    };
}
message_kind!(Owner, OwnerView, Podowner);
message_kind!(Exec, ExecView, ExecEvent);

view! {
    /// `feeder.Podowner`.
    OwnerView of Podowner {
        1 => r#ref: Text,
        2 => name: Text,
        3 => namespace: Text,
    }
}

view! {
    /// `feeder.ExecEvent`.
    ExecView of ExecEvent {
        1 => exec_id: Text,
        2 => executable_name: Text,
    }
}

view! {
    /// `feeder.Message`: a KubeArmor daemon message.
    MessageView of Message {
        1 => timestamp: Int64,
        2 => updated_time: Text,
        3 => cluster_name: Text,
        4 => host_name: Text,
        5 => host_ip: Text,
        6 => r#type: Text,
        7 => level: Text,
        8 => message: Text,
    }
}

view! {
    /// `feeder.Alert`: a policy match.
    AlertView of Alert {
        1 => timestamp: Int64,
        2 => updated_time: Text,
        3 => cluster_name: Text,
        4 => host_name: Text,
        5 => namespace_name: Text,
        6 => pod_name: Text,
        7 => container_id: Text,
        8 => container_name: Text,
        9 => host_pid: Int32,
        10 => ppid: Int32,
        11 => pid: Int32,
        12 => uid: Int32,
        13 => policy_name: Text,
        14 => severity: Text,
        15 => tags: Text,
        16 => message: Text,
        17 => r#type: Text,
        18 => source: Text,
        19 => operation: Text,
        20 => resource: Text,
        21 => data: Text,
        22 => action: Text,
        23 => result: Text,
        24 => container_image: Text,
        25 => parent_process_name: Text,
        26 => process_name: Text,
        27 => host_ppid: Int32,
        28 => enforcer: Text,
        29 => labels: Text,
        30 => a_tags: TextList,
        31 => owner: Owner,
        32 => cwd: Text,
        33 => tty: Text,
        34 => max_alerts_per_sec: Int32,
        35 => dropping_alerts_interval: Int32,
        36 => exec_event: Exec,
        37 => kube_armor_version: Text,
        38 => node_id: Text,
        39 => process_hash: Text,
        40 => parent_hash: Text,
        41 => resource_hash: Text,
        42 => hash_algo: Text,
        43 => event_data: TextMap,
        44 => user_name: Text,
    }
}

view! {
    /// `feeder.Log`: a system event.
    LogView of Log {
        1 => timestamp: Int64,
        2 => updated_time: Text,
        3 => cluster_name: Text,
        4 => host_name: Text,
        5 => namespace_name: Text,
        6 => pod_name: Text,
        7 => container_id: Text,
        8 => container_name: Text,
        9 => host_pid: Int32,
        10 => ppid: Int32,
        11 => pid: Int32,
        12 => uid: Int32,
        13 => r#type: Text,
        14 => source: Text,
        15 => operation: Text,
        16 => resource: Text,
        17 => data: Text,
        18 => result: Text,
        19 => container_image: Text,
        20 => parent_process_name: Text,
        21 => process_name: Text,
        22 => host_ppid: Int32,
        23 => labels: Text,
        24 => owner: Owner,
        25 => cwd: Text,
        26 => tty: Text,
        27 => exec_event: Exec,
        28 => node_id: Text,
        29 => process_hash: Text,
        30 => parent_hash: Text,
        31 => resource_hash: Text,
        32 => hash_algo: Text,
        33 => event_data: TextMap,
        34 => user_name: Text,
    }
}
