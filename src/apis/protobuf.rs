//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`): the `k8s\0` prefix, the
//! `runtime.Unknown` envelope, and the objects kubectl's generator commands send (`create secret`,
//! `create deployment`, `create token`, `autoscale`, ...), decoded into the JSON form the API layer stores.
//!
//! The decoder is a protobuf wire-format reader driven by a schema table written from the upstream
//! `generated.proto` files and the Go types' `json` tags. The JSON it builds is what the API server's own
//! JSON encoding of the same Go object shows:
//! - a scalar of a non-pointer `omitempty` Go field that carries its zero value (`""`, `false`, `0`) is left
//!   out, since Go's protobuf encoding writes such fields even when they are empty; pointer fields and fields
//!   without `omitempty` are kept whatever their value;
//! - a message field on the wire is always an object (`"resources": {}`), a Go embedded struct is inlined
//!   into its parent object, `bytes` become base64 strings, `Time` an RFC 3339 string (`null` when zero),
//!   `IntOrString` a number or a string, `Quantity` its string;
//! - a field absent from the wire is absent from the JSON.
//!
//! Invariants: no input makes it panic; nesting is bounded by `MAX_DEPTH` and the JSON it builds is linear
//! in the size of the body; every field on the wire is either decoded or refused with an error that names
//! it (an unknown field number, or a field whose message is not modelled here), never silently dropped.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::time;

/// The media type of Kubernetes protobuf bodies.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// What every Kubernetes protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";

/// The deepest nesting of messages accepted, well above the deepest path in the schema table
/// (`CronJob.spec.jobTemplate.spec.template.spec.volumes.projected.sources.downwardAPI.items.fieldRef`).
const MAX_DEPTH: usize = 32;

/// The largest field number protobuf allows.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    #[error("the body does not start with the kubernetes protobuf prefix")]
    MissingPrefix,
    #[error("the protobuf message ends inside a field")]
    Truncated,
    #[error("malformed protobuf: {0}")]
    Malformed(&'static str),
    #[error("content encoding {0:?} is not supported in protobuf bodies")]
    ContentEncoding(String),
    #[error("content type {0:?} is not supported inside a protobuf envelope")]
    ContentType(String),
    #[error("protobuf bodies of kind {kind:?} in {api_version:?} are not supported")]
    UnsupportedKind { api_version: String, kind: String },
    #[error("unknown field number {number} in {message} at {path}")]
    UnknownField { message: &'static str, number: u32, path: String },
    #[error("field {path} ({type_name}) is not supported in protobuf bodies")]
    UnsupportedField { path: String, type_name: &'static str },
    #[error("field {path} has wire type {found}, expected {expected}")]
    WireType { path: String, found: &'static str, expected: &'static str },
    #[error("invalid value at {path}: {problem}")]
    InvalidValue { path: String, problem: &'static str },
    #[error("protobuf messages nested deeper than {0} levels")]
    TooDeep(usize),
}

/// Decodes a `k8s\0`+`runtime.Unknown` body into the object's JSON, with `apiVersion` and `kind` taken from
/// the envelope.
pub fn decode_object(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(ProtobufError::MissingPrefix)?;
    let unknown = Unknown::decode(envelope)?;
    if !unknown.content_encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(unknown.content_encoding.to_owned()));
    }
    if !unknown.content_type.is_empty() && unknown.content_type != PROTOBUF_CONTENT_TYPE {
        return Err(ProtobufError::ContentType(unknown.content_type.to_owned()));
    }
    let message = kind_message(unknown.api_version, unknown.kind).ok_or_else(|| ProtobufError::UnsupportedKind {
        api_version: unknown.api_version.to_owned(),
        kind: unknown.kind.to_owned(),
    })?;
    let mut object = Map::new();
    object.insert("apiVersion".to_owned(), Value::String(unknown.api_version.to_owned()));
    object.insert("kind".to_owned(), Value::String(unknown.kind.to_owned()));
    decode_message(message, unknown.raw, &mut object, &Path::root(message.name), 0)?;
    Ok(Value::Object(object))
}

/// The message that encodes `kind` in `api_version`, for the kinds kubectl's generators send.
fn kind_message(api_version: &str, kind: &str) -> Option<&'static Message> {
    KINDS.iter().find(|(v, k, _)| *v == api_version && *k == kind).map(|(_, _, message)| *message)
}

static KINDS: &[(&str, &str, &Message)] = &[
    ("v1", "Namespace", &NAMESPACE),
    ("v1", "Secret", &SECRET),
    ("v1", "ConfigMap", &CONFIG_MAP),
    ("v1", "ServiceAccount", &SERVICE_ACCOUNT),
    ("v1", "Pod", &POD),
    ("v1", "Service", &SERVICE),
    ("v1", "ResourceQuota", &RESOURCE_QUOTA),
    ("apps/v1", "Deployment", &DEPLOYMENT),
    ("batch/v1", "Job", &JOB),
    ("batch/v1", "CronJob", &CRON_JOB),
    ("autoscaling/v1", "HorizontalPodAutoscaler", &HORIZONTAL_POD_AUTOSCALER),
    ("scheduling.k8s.io/v1", "PriorityClass", &PRIORITY_CLASS),
    ("networking.k8s.io/v1", "Ingress", &INGRESS),
    ("authentication.k8s.io/v1", "TokenRequest", &TOKEN_REQUEST),
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview", &SELF_SUBJECT_ACCESS_REVIEW),
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview", &SELF_SUBJECT_RULES_REVIEW),
    ("authentication.k8s.io/v1", "SelfSubjectReview", &SELF_SUBJECT_REVIEW),
    ("rbac.authorization.k8s.io/v1", "Role", &ROLE),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", &CLUSTER_ROLE),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", &ROLE_BINDING),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", &ROLE_BINDING),
];

// ---------------------------------------------------------------------------------------------------------
// The wire format

/// One field's value as it is on the wire. No modelled field holds a fixed-width number, so those are only
/// read past, to report them as the wrong wire type.
#[derive(Clone, Copy, Debug)]
enum WireValue<'a> {
    Varint(u64),
    Fixed64,
    LengthDelimited(&'a [u8]),
    Fixed32,
}

impl WireValue<'_> {
    fn wire_type(&self) -> &'static str {
        match self {
            WireValue::Varint(_) => "varint",
            WireValue::Fixed64 => "64-bit",
            WireValue::LengthDelimited(_) => "length-delimited",
            WireValue::Fixed32 => "32-bit",
        }
    }
}

/// Reads the fields of one message in order. Every read checks the remaining length first.
struct WireReader<'a> {
    rest: &'a [u8],
}

impl<'a> WireReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        WireReader { rest: bytes }
    }

    /// The next field's number and value, or `None` at the end of the message.
    fn next_field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, ProtobufError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(ProtobufError::Malformed("field number out of range"));
        }
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                WireValue::Fixed64
            }
            2 => {
                let length = usize::try_from(self.varint()?).map_err(|_| ProtobufError::Truncated)?;
                WireValue::LengthDelimited(self.take(length)?)
            }
            5 => {
                self.take(4)?;
                WireValue::Fixed32
            }
            3 | 4 => return Err(ProtobufError::Malformed("groups are not supported")),
            _ => return Err(ProtobufError::Malformed("unknown wire type")),
        };
        // The range check above keeps the number within 29 bits.
        Ok(Some((number as u32, value)))
    }

    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for (index, &byte) in self.rest.iter().take(10).enumerate() {
            if index == 9 && byte > 1 {
                return Err(ProtobufError::Malformed("varint overflows 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                self.rest = &self.rest[index + 1..];
                return Ok(value);
            }
        }
        Err(if self.rest.len() < 10 { ProtobufError::Truncated } else { ProtobufError::Malformed("varint too long") })
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], ProtobufError> {
        if length > self.rest.len() {
            return Err(ProtobufError::Truncated);
        }
        let (taken, rest) = self.rest.split_at(length);
        self.rest = rest;
        Ok(taken)
    }
}

/// Reads a small fixed message whose fields are numbered `1..=N`, keeping the last value of each (as
/// protobuf does for a singular field seen twice). Any other number is an unknown field.
fn read_fields<'a, const N: usize>(
    message: &'static str,
    bytes: &'a [u8],
    path: &Path<'_>,
) -> Result<[Option<WireValue<'a>>; N], ProtobufError> {
    let mut fields = [None; N];
    let mut reader = WireReader::new(bytes);
    while let Some((number, value)) = reader.next_field()? {
        let slot = (number as usize).checked_sub(1).and_then(|index| fields.get_mut(index));
        let slot = slot.ok_or_else(|| ProtobufError::UnknownField { message, number, path: path.render() })?;
        *slot = Some(value);
    }
    Ok(fields)
}

fn expect_varint(value: WireValue<'_>, path: &Path<'_>) -> Result<u64, ProtobufError> {
    match value {
        WireValue::Varint(v) => Ok(v),
        other => Err(wire_type_error(other, "varint", path)),
    }
}

fn expect_bytes<'a>(value: WireValue<'a>, path: &Path<'_>) -> Result<&'a [u8], ProtobufError> {
    match value {
        WireValue::LengthDelimited(bytes) => Ok(bytes),
        other => Err(wire_type_error(other, "length-delimited", path)),
    }
}

fn expect_str<'a>(value: WireValue<'a>, path: &Path<'_>) -> Result<&'a str, ProtobufError> {
    std::str::from_utf8(expect_bytes(value, path)?).map_err(|_| invalid(path, "string is not valid utf-8"))
}

fn wire_type_error(value: WireValue<'_>, expected: &'static str, path: &Path<'_>) -> ProtobufError {
    ProtobufError::WireType { path: path.render(), found: value.wire_type(), expected }
}

fn invalid(path: &Path<'_>, problem: &'static str) -> ProtobufError {
    ProtobufError::InvalidValue { path: path.render(), problem }
}

/// The `runtime.Unknown` envelope: `typeMeta` (1), `raw` (2), `contentEncoding` (3), `contentType` (4).
struct Unknown<'a> {
    api_version: &'a str,
    kind: &'a str,
    raw: &'a [u8],
    content_encoding: &'a str,
    content_type: &'a str,
}

impl<'a> Unknown<'a> {
    fn decode(bytes: &'a [u8]) -> Result<Self, ProtobufError> {
        let path = Path::root("Unknown");
        let [type_meta, raw, content_encoding, content_type] = read_fields::<4>("Unknown", bytes, &path)?;
        let (mut api_version, mut kind) = ("", "");
        if let Some(type_meta) = type_meta {
            let path = path.child("typeMeta");
            let [version, name] = read_fields::<2>("TypeMeta", expect_bytes(type_meta, &path)?, &path)?;
            api_version = version.map(|v| expect_str(v, &path.child("apiVersion"))).transpose()?.unwrap_or_default();
            kind = name.map(|v| expect_str(v, &path.child("kind"))).transpose()?.unwrap_or_default();
        }
        Ok(Unknown {
            api_version,
            kind,
            raw: raw.map(|v| expect_bytes(v, &path.child("raw"))).transpose()?.unwrap_or_default(),
            content_encoding: content_encoding
                .map(|v| expect_str(v, &path.child("contentEncoding")))
                .transpose()?
                .unwrap_or_default(),
            content_type: content_type
                .map(|v| expect_str(v, &path.child("contentType")))
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

/// Where a field is, as JSON field names from the kind down (`Deployment.spec.template.spec.containers`).
#[derive(Clone, Copy)]
struct Path<'a> {
    name: &'static str,
    parent: Option<&'a Path<'a>>,
}

impl<'a> Path<'a> {
    fn root(name: &'static str) -> Self {
        Path { name, parent: None }
    }

    fn child(&'a self, name: &'static str) -> Path<'a> {
        Path { name, parent: Some(self) }
    }

    fn render(&self) -> String {
        let mut names = vec![self.name];
        let mut parent = self.parent;
        while let Some(path) = parent {
            names.push(path.name);
            parent = path.parent;
        }
        names.reverse();
        names.join(".")
    }
}

// ---------------------------------------------------------------------------------------------------------
// Decoding against the schema

fn decode_message(
    message: &'static Message,
    bytes: &[u8],
    object: &mut Map<String, Value>,
    path: &Path<'_>,
    depth: usize,
) -> Result<(), ProtobufError> {
    if depth >= MAX_DEPTH {
        return Err(ProtobufError::TooDeep(MAX_DEPTH));
    }
    let mut reader = WireReader::new(bytes);
    while let Some((number, value)) = reader.next_field()? {
        let field = message.field(number).ok_or_else(|| ProtobufError::UnknownField {
            message: message.name,
            number,
            path: path.render(),
        })?;
        // An inlined message's fields sit in this object, so its path stays this one.
        let child = path.child(field.json);
        let here = if matches!(field.kind, Kind::Inline(_)) { path } else { &child };
        decode_field(field, value, object, here, depth)?;
    }
    Ok(())
}

fn decode_field(
    field: &Field,
    value: WireValue<'_>,
    object: &mut Map<String, Value>,
    path: &Path<'_>,
    depth: usize,
) -> Result<(), ProtobufError> {
    match field.kind {
        Kind::Unsupported(type_name) => Err(ProtobufError::UnsupportedField { path: path.render(), type_name }),
        Kind::Inline(inner) => decode_message(inner, expect_bytes(value, path)?, object, path, depth + 1),
        Kind::Message(inner) if field.repeated => {
            let mut element = Map::new();
            decode_message(inner, expect_bytes(value, path)?, &mut element, path, depth + 1)?;
            push(object, field.json, Value::Object(element));
            Ok(())
        }
        Kind::Message(inner) => {
            // A singular message seen twice is merged, as protobuf does.
            let slot = object.entry(field.json).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            match slot {
                Value::Object(inner_object) => {
                    decode_message(inner, expect_bytes(value, path)?, inner_object, path, depth + 1)
                }
                _ => Ok(()),
            }
        }
        Kind::Map(scalar) => {
            let (key, entry) = map_entry(scalar, expect_bytes(value, path)?, path)?;
            let slot = object.entry(field.json).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(entries) = slot {
                entries.insert(key, entry);
            }
            Ok(())
        }
        Kind::Scalar(scalar) if field.repeated => {
            match value {
                WireValue::LengthDelimited(packed) if scalar.is_varint() => {
                    let mut reader = WireReader::new(packed);
                    while !reader.rest.is_empty() {
                        push(object, field.json, scalar_json(scalar, WireValue::Varint(reader.varint()?), path)?);
                    }
                }
                _ => push(object, field.json, scalar_json(scalar, value, path)?),
            }
            Ok(())
        }
        Kind::Scalar(scalar) => {
            let json = scalar_json(scalar, value, path)?;
            if field.omit_zero && scalar.omittable() && is_zero(&json) {
                object.remove(field.json);
            } else {
                object.insert(field.json.to_owned(), json);
            }
            Ok(())
        }
    }
}

fn push(object: &mut Map<String, Value>, name: &str, element: Value) {
    let slot = object.entry(name).or_insert_with(|| Value::Array(Vec::new()));
    match slot {
        Value::Array(elements) => elements.push(element),
        other => *other = Value::Array(vec![element]),
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        _ => false,
    }
}

/// A protobuf map entry: key (1, always a string here) and value (2). A missing part is its zero value.
fn map_entry(scalar: Scalar, bytes: &[u8], path: &Path<'_>) -> Result<(String, Value), ProtobufError> {
    let [key, value] = read_fields::<2>("map entry", bytes, path)?;
    let key = key.map(|k| expect_str(k, path)).transpose()?.unwrap_or_default().to_owned();
    let value = match value {
        Some(value) => scalar_json(scalar, value, path)?,
        None => scalar.zero(),
    };
    Ok((key, value))
}

fn scalar_json(scalar: Scalar, value: WireValue<'_>, path: &Path<'_>) -> Result<Value, ProtobufError> {
    Ok(match scalar {
        Scalar::String => Value::String(expect_str(value, path)?.to_owned()),
        Scalar::Bytes => Value::String(base64(expect_bytes(value, path)?)),
        Scalar::Bool => Value::Bool(expect_varint(value, path)? != 0),
        // Go truncates a varint to the field's width; so does `as`.
        Scalar::Int32 => Value::from(expect_varint(value, path)? as i32),
        Scalar::Int64 => Value::from(expect_varint(value, path)? as i64),
        Scalar::Time => time_json(expect_bytes(value, path)?, path)?,
        Scalar::IntOrString => int_or_string_json(expect_bytes(value, path)?, path)?,
        Scalar::Quantity => quantity_json(expect_bytes(value, path)?, path)?,
        Scalar::FieldsV1 => fields_v1_json(expect_bytes(value, path)?, path)?,
    })
}

/// `meta.v1.Time` {seconds (1), nanos (2)}: RFC 3339 in UTC to the second, as its JSON form drops the
/// nanoseconds; an empty message or Go's zero time is `null`.
fn time_json(bytes: &[u8], path: &Path<'_>) -> Result<Value, ProtobufError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    let [seconds, nanos] = read_fields::<2>("Time", bytes, path)?;
    let seconds = seconds.map(|s| expect_varint(s, path)).transpose()?.unwrap_or(0) as i64;
    let nanos = nanos.map(|n| expect_varint(n, path)).transpose()?.unwrap_or(0) as i32;
    let seconds = seconds.checked_add(i64::from(nanos).div_euclid(1_000_000_000));
    let seconds = seconds.ok_or_else(|| invalid(path, "time out of range"))?;
    if seconds == time::ZERO_TIME_SECONDS && i64::from(nanos).rem_euclid(1_000_000_000) == 0 {
        return Ok(Value::Null);
    }
    time::format(seconds).map(Value::String).ok_or_else(|| invalid(path, "time out of range"))
}

/// `util.intstr.IntOrString` {type (1), intVal (2), strVal (3)}: type 0 is the number, 1 the string.
fn int_or_string_json(bytes: &[u8], path: &Path<'_>) -> Result<Value, ProtobufError> {
    let [kind, int_val, str_val] = read_fields::<3>("IntOrString", bytes, path)?;
    match kind.map(|k| expect_varint(k, path)).transpose()?.unwrap_or(0) {
        0 => Ok(Value::from(int_val.map(|v| expect_varint(v, path)).transpose()?.unwrap_or(0) as i32)),
        1 => Ok(Value::String(str_val.map(|v| expect_str(v, path)).transpose()?.unwrap_or_default().to_owned())),
        _ => Err(invalid(path, "unknown IntOrString type")),
    }
}

/// `api.resource.Quantity` {string (1)}: its canonical string, kept as written. Missing, it is zero.
fn quantity_json(bytes: &[u8], path: &Path<'_>) -> Result<Value, ProtobufError> {
    let [string] = read_fields::<1>("Quantity", bytes, path)?;
    Ok(match string {
        Some(string) => Value::String(expect_str(string, path)?.to_owned()),
        None => Scalar::Quantity.zero(),
    })
}

/// `meta.v1.FieldsV1` {Raw (1)}: the raw bytes are the JSON document itself.
fn fields_v1_json(bytes: &[u8], path: &Path<'_>) -> Result<Value, ProtobufError> {
    let [raw] = read_fields::<1>("FieldsV1", bytes, path)?;
    match raw {
        Some(raw) => {
            serde_json::from_slice(expect_bytes(raw, path)?).map_err(|_| invalid(path, "fieldsV1 is not json"))
        }
        None => Ok(Value::Null),
    }
}

/// Standard base64 with padding, the JSON form of Go's `[]byte`.
fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---------------------------------------------------------------------------------------------------------
// The schema table

/// A protobuf message: its Go type's name and its fields.
struct Message {
    name: &'static str,
    fields: &'static [Field],
}

impl Message {
    fn field(&self, number: u32) -> Option<&Field> {
        self.fields.iter().find(|field| field.number == number)
    }
}

/// One field: its number on the wire, its JSON name, what it holds, and how its zero value shows in JSON.
#[derive(Clone, Copy)]
struct Field {
    number: u32,
    json: &'static str,
    kind: Kind,
    repeated: bool,
    /// A non-pointer `omitempty` Go field: its zero value is left out of the JSON.
    omit_zero: bool,
}

#[derive(Clone, Copy)]
enum Kind {
    Scalar(Scalar),
    Message(&'static Message),
    /// A Go embedded struct: a nested message on the wire whose fields are inlined in the parent's JSON.
    Inline(&'static Message),
    /// `map<string, V>`, on the wire a repeated entry message {key (1), value (2)}.
    Map(Scalar),
    /// A message not modelled here, by its Go type name; finding it on the wire is an error.
    Unsupported(&'static str),
}

/// What becomes one JSON scalar, including the well-known messages that have a scalar JSON form.
#[derive(Clone, Copy)]
enum Scalar {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Time,
    IntOrString,
    Quantity,
    FieldsV1,
}

impl Scalar {
    fn is_varint(self) -> bool {
        matches!(self, Scalar::Bool | Scalar::Int32 | Scalar::Int64)
    }

    /// Whether Go's `omitempty` can leave it out: the well-known messages are structs, which it never omits.
    fn omittable(self) -> bool {
        matches!(self, Scalar::String | Scalar::Bytes | Scalar::Bool | Scalar::Int32 | Scalar::Int64)
    }

    fn zero(self) -> Value {
        match self {
            Scalar::String | Scalar::Bytes => Value::String(String::new()),
            Scalar::Bool => Value::Bool(false),
            Scalar::Int32 | Scalar::Int64 | Scalar::IntOrString => Value::from(0),
            Scalar::Quantity => Value::String("0".to_owned()),
            Scalar::Time | Scalar::FieldsV1 => Value::Null,
        }
    }
}

const STRING: Kind = Kind::Scalar(Scalar::String);
const BOOL: Kind = Kind::Scalar(Scalar::Bool);
const INT32: Kind = Kind::Scalar(Scalar::Int32);
const INT64: Kind = Kind::Scalar(Scalar::Int64);
const TIME: Kind = Kind::Scalar(Scalar::Time);
const INT_OR_STRING: Kind = Kind::Scalar(Scalar::IntOrString);
const QUANTITY: Kind = Kind::Scalar(Scalar::Quantity);
const FIELDS_V1: Kind = Kind::Scalar(Scalar::FieldsV1);

/// A non-pointer Go field tagged `omitempty`.
const fn omitempty(number: u32, json: &'static str, kind: Kind) -> Field {
    Field { number, json, kind, repeated: false, omit_zero: true }
}

/// A Go pointer field, or one without `omitempty`: present on the wire, present in JSON.
const fn kept(number: u32, json: &'static str, kind: Kind) -> Field {
    Field { number, json, kind, repeated: false, omit_zero: false }
}

const fn repeated(number: u32, json: &'static str, kind: Kind) -> Field {
    Field { number, json, kind, repeated: true, omit_zero: false }
}

const fn message(number: u32, json: &'static str, message: &'static Message) -> Field {
    kept(number, json, Kind::Message(message))
}

const fn messages(number: u32, json: &'static str, message: &'static Message) -> Field {
    repeated(number, json, Kind::Message(message))
}

const fn map(number: u32, json: &'static str, value: Scalar) -> Field {
    kept(number, json, Kind::Map(value))
}

const fn inline(number: u32, message: &'static Message) -> Field {
    kept(number, message.name, Kind::Inline(message))
}

const fn unsupported(number: u32, json: &'static str, type_name: &'static str) -> Field {
    kept(number, json, Kind::Unsupported(type_name))
}

// meta/v1

static OBJECT_META: Message = Message {
    name: "ObjectMeta",
    fields: &[
        omitempty(1, "name", STRING),
        omitempty(2, "generateName", STRING),
        omitempty(3, "namespace", STRING),
        omitempty(4, "selfLink", STRING),
        omitempty(5, "uid", STRING),
        omitempty(6, "resourceVersion", STRING),
        omitempty(7, "generation", INT64),
        kept(8, "creationTimestamp", TIME),
        kept(9, "deletionTimestamp", TIME),
        kept(10, "deletionGracePeriodSeconds", INT64),
        map(11, "labels", Scalar::String),
        map(12, "annotations", Scalar::String),
        messages(13, "ownerReferences", &OWNER_REFERENCE),
        repeated(14, "finalizers", STRING),
        messages(17, "managedFields", &MANAGED_FIELDS_ENTRY),
    ],
};

static OWNER_REFERENCE: Message = Message {
    name: "OwnerReference",
    fields: &[
        kept(1, "kind", STRING),
        kept(3, "name", STRING),
        kept(4, "uid", STRING),
        kept(5, "apiVersion", STRING),
        kept(6, "controller", BOOL),
        kept(7, "blockOwnerDeletion", BOOL),
    ],
};

static MANAGED_FIELDS_ENTRY: Message = Message {
    name: "ManagedFieldsEntry",
    fields: &[
        omitempty(1, "manager", STRING),
        omitempty(2, "operation", STRING),
        omitempty(3, "apiVersion", STRING),
        kept(4, "time", TIME),
        omitempty(6, "fieldsType", STRING),
        kept(7, "fieldsV1", FIELDS_V1),
        omitempty(8, "subresource", STRING),
    ],
};

static LABEL_SELECTOR: Message = Message {
    name: "LabelSelector",
    fields: &[map(1, "matchLabels", Scalar::String), messages(2, "matchExpressions", &LABEL_SELECTOR_REQUIREMENT)],
};

static LABEL_SELECTOR_REQUIREMENT: Message = Message {
    name: "LabelSelectorRequirement",
    fields: &[kept(1, "key", STRING), kept(2, "operator", STRING), repeated(3, "values", STRING)],
};

static CONDITION: Message = Message {
    name: "Condition",
    fields: &[
        kept(1, "type", STRING),
        kept(2, "status", STRING),
        omitempty(3, "observedGeneration", INT64),
        kept(4, "lastTransitionTime", TIME),
        kept(5, "reason", STRING),
        kept(6, "message", STRING),
    ],
};

// core/v1: Namespace, Secret, ConfigMap, ServiceAccount

static NAMESPACE: Message = Message {
    name: "Namespace",
    fields: &[
        message(1, "metadata", &OBJECT_META),
        message(2, "spec", &NAMESPACE_SPEC),
        message(3, "status", &NAMESPACE_STATUS),
    ],
};

static NAMESPACE_SPEC: Message = Message { name: "NamespaceSpec", fields: &[repeated(1, "finalizers", STRING)] };

static NAMESPACE_STATUS: Message = Message {
    name: "NamespaceStatus",
    fields: &[omitempty(1, "phase", STRING), messages(2, "conditions", &NAMESPACE_CONDITION)],
};

static NAMESPACE_CONDITION: Message = Message {
    name: "NamespaceCondition",
    fields: &[
        kept(1, "type", STRING),
        kept(2, "status", STRING),
        kept(4, "lastTransitionTime", TIME),
        omitempty(5, "reason", STRING),
        omitempty(6, "message", STRING),
    ],
};

static SECRET: Message = Message {
    name: "Secret",
    fields: &[
        message(1, "metadata", &OBJECT_META),
        map(2, "data", Scalar::Bytes),
        omitempty(3, "type", STRING),
        map(4, "stringData", Scalar::String),
        kept(5, "immutable", BOOL),
    ],
};

static CONFIG_MAP: Message = Message {
    name: "ConfigMap",
    fields: &[
        message(1, "metadata", &OBJECT_META),
        map(2, "data", Scalar::String),
        map(3, "binaryData", Scalar::Bytes),
        kept(4, "immutable", BOOL),
    ],
};

static SERVICE_ACCOUNT: Message = Message {
    name: "ServiceAccount",
    fields: &[
        message(1, "metadata", &OBJECT_META),
        messages(2, "secrets", &OBJECT_REFERENCE),
        messages(3, "imagePullSecrets", &LOCAL_OBJECT_REFERENCE),
        kept(4, "automountServiceAccountToken", BOOL),
    ],
};

static OBJECT_REFERENCE: Message = Message {
    name: "ObjectReference",
    fields: &[
        omitempty(1, "kind", STRING),
        omitempty(2, "namespace", STRING),
        omitempty(3, "name", STRING),
        omitempty(4, "uid", STRING),
        omitempty(5, "apiVersion", STRING),
        omitempty(6, "resourceVersion", STRING),
        omitempty(7, "fieldPath", STRING),
    ],
};

static LOCAL_OBJECT_REFERENCE: Message =
    Message { name: "LocalObjectReference", fields: &[omitempty(1, "name", STRING)] };

static TYPED_LOCAL_OBJECT_REFERENCE: Message = Message {
    name: "TypedLocalObjectReference",
    fields: &[kept(1, "apiGroup", STRING), kept(2, "kind", STRING), kept(3, "name", STRING)],
};

// core/v1: Pod

static POD: Message = Message {
    name: "Pod",
    fields: &[message(1, "metadata", &OBJECT_META), message(2, "spec", &POD_SPEC), message(3, "status", &POD_STATUS)],
};

static POD_TEMPLATE_SPEC: Message =
    Message { name: "PodTemplateSpec", fields: &[message(1, "metadata", &OBJECT_META), message(2, "spec", &POD_SPEC)] };

static POD_SPEC: Message = Message {
    name: "PodSpec",
    fields: &[
        messages(1, "volumes", &VOLUME),
        messages(2, "containers", &CONTAINER),
        omitempty(3, "restartPolicy", STRING),
        kept(4, "terminationGracePeriodSeconds", INT64),
        kept(5, "activeDeadlineSeconds", INT64),
        omitempty(6, "dnsPolicy", STRING),
        map(7, "nodeSelector", Scalar::String),
        omitempty(8, "serviceAccountName", STRING),
        omitempty(9, "serviceAccount", STRING),
        omitempty(10, "nodeName", STRING),
        omitempty(11, "hostNetwork", BOOL),
        omitempty(12, "hostPID", BOOL),
        omitempty(13, "hostIPC", BOOL),
        message(14, "securityContext", &POD_SECURITY_CONTEXT),
        messages(15, "imagePullSecrets", &LOCAL_OBJECT_REFERENCE),
        omitempty(16, "hostname", STRING),
        omitempty(17, "subdomain", STRING),
        unsupported(18, "affinity", "Affinity"),
        omitempty(19, "schedulerName", STRING),
        messages(20, "initContainers", &CONTAINER),
        kept(21, "automountServiceAccountToken", BOOL),
        messages(22, "tolerations", &TOLERATION),
        messages(23, "hostAliases", &HOST_ALIAS),
        omitempty(24, "priorityClassName", STRING),
        kept(25, "priority", INT32),
        message(26, "dnsConfig", &POD_DNS_CONFIG),
        kept(27, "shareProcessNamespace", BOOL),
        messages(28, "readinessGates", &POD_READINESS_GATE),
        kept(29, "runtimeClassName", STRING),
        kept(30, "enableServiceLinks", BOOL),
        kept(31, "preemptionPolicy", STRING),
        map(32, "overhead", Scalar::Quantity),
        messages(33, "topologySpreadConstraints", &TOPOLOGY_SPREAD_CONSTRAINT),
        unsupported(34, "ephemeralContainers", "EphemeralContainer"),
        kept(35, "setHostnameAsFQDN", BOOL),
        message(36, "os", &POD_OS),
        kept(37, "hostUsers", BOOL),
        messages(38, "schedulingGates", &POD_SCHEDULING_GATE),
        unsupported(39, "resourceClaims", "PodResourceClaim"),
        message(40, "resources", &RESOURCE_REQUIREMENTS),
        kept(41, "hostnameOverride", STRING),
        unsupported(43, "schedulingGroup", "PodSchedulingGroup"),
        unsupported(44, "evictionResponders", "EvictionResponder"),
    ],
};

static POD_STATUS: Message = Message {
    name: "PodStatus",
    fields: &[
        omitempty(1, "phase", STRING),
        unsupported(2, "conditions", "PodCondition"),
        omitempty(3, "message", STRING),
        omitempty(4, "reason", STRING),
        omitempty(5, "hostIP", STRING),
        omitempty(6, "podIP", STRING),
        kept(7, "startTime", TIME),
        unsupported(8, "containerStatuses", "ContainerStatus"),
        omitempty(9, "qosClass", STRING),
        unsupported(10, "initContainerStatuses", "ContainerStatus"),
        omitempty(11, "nominatedNodeName", STRING),
        messages(12, "podIPs", &POD_IP),
        unsupported(13, "ephemeralContainerStatuses", "ContainerStatus"),
        omitempty(14, "resize", STRING),
        unsupported(15, "resourceClaimStatuses", "PodResourceClaimStatus"),
        messages(16, "hostIPs", &HOST_IP),
        omitempty(17, "observedGeneration", INT64),
        unsupported(18, "extendedResourceClaimStatus", "PodExtendedResourceClaimStatus"),
        map(19, "allocatedResources", Scalar::Quantity),
        message(20, "resources", &RESOURCE_REQUIREMENTS),
        unsupported(21, "nodeAllocatableResourceClaimStatuses", "NodeAllocatableResourceClaimStatus"),
        unsupported(22, "volumeHealth", "PodVolumeHealth"),
    ],
};

static POD_IP: Message = Message { name: "PodIP", fields: &[kept(1, "ip", STRING)] };

static HOST_IP: Message = Message { name: "HostIP", fields: &[kept(1, "ip", STRING)] };

static CONTAINER: Message = Message {
    name: "Container",
    fields: &[
        kept(1, "name", STRING),
        omitempty(2, "image", STRING),
        repeated(3, "command", STRING),
        repeated(4, "args", STRING),
        omitempty(5, "workingDir", STRING),
        messages(6, "ports", &CONTAINER_PORT),
        messages(7, "env", &ENV_VAR),
        message(8, "resources", &RESOURCE_REQUIREMENTS),
        messages(9, "volumeMounts", &VOLUME_MOUNT),
        message(10, "livenessProbe", &PROBE),
        message(11, "readinessProbe", &PROBE),
        message(12, "lifecycle", &LIFECYCLE),
        omitempty(13, "terminationMessagePath", STRING),
        omitempty(14, "imagePullPolicy", STRING),
        message(15, "securityContext", &SECURITY_CONTEXT),
        omitempty(16, "stdin", BOOL),
        omitempty(17, "stdinOnce", BOOL),
        omitempty(18, "tty", BOOL),
        messages(19, "envFrom", &ENV_FROM_SOURCE),
        omitempty(20, "terminationMessagePolicy", STRING),
        messages(21, "volumeDevices", &VOLUME_DEVICE),
        message(22, "startupProbe", &PROBE),
        messages(23, "resizePolicy", &CONTAINER_RESIZE_POLICY),
        kept(24, "restartPolicy", STRING),
        unsupported(25, "restartPolicyRules", "ContainerRestartRule"),
    ],
};

static CONTAINER_PORT: Message = Message {
    name: "ContainerPort",
    fields: &[
        omitempty(1, "name", STRING),
        omitempty(2, "hostPort", INT32),
        kept(3, "containerPort", INT32),
        omitempty(4, "protocol", STRING),
        omitempty(5, "hostIP", STRING),
    ],
};

static ENV_VAR: Message = Message {
    name: "EnvVar",
    fields: &[kept(1, "name", STRING), omitempty(2, "value", STRING), message(3, "valueFrom", &ENV_VAR_SOURCE)],
};

static ENV_VAR_SOURCE: Message = Message {
    name: "EnvVarSource",
    fields: &[
        message(1, "fieldRef", &OBJECT_FIELD_SELECTOR),
        message(2, "resourceFieldRef", &RESOURCE_FIELD_SELECTOR),
        message(3, "configMapKeyRef", &CONFIG_MAP_KEY_SELECTOR),
        message(4, "secretKeyRef", &SECRET_KEY_SELECTOR),
        message(5, "fileKeyRef", &FILE_KEY_SELECTOR),
    ],
};

static OBJECT_FIELD_SELECTOR: Message = Message {
    name: "ObjectFieldSelector",
    fields: &[omitempty(1, "apiVersion", STRING), kept(2, "fieldPath", STRING)],
};

static RESOURCE_FIELD_SELECTOR: Message = Message {
    name: "ResourceFieldSelector",
    fields: &[omitempty(1, "containerName", STRING), kept(2, "resource", STRING), kept(3, "divisor", QUANTITY)],
};

static CONFIG_MAP_KEY_SELECTOR: Message = Message {
    name: "ConfigMapKeySelector",
    fields: &[inline(1, &LOCAL_OBJECT_REFERENCE), kept(2, "key", STRING), kept(3, "optional", BOOL)],
};

static SECRET_KEY_SELECTOR: Message = Message {
    name: "SecretKeySelector",
    fields: &[inline(1, &LOCAL_OBJECT_REFERENCE), kept(2, "key", STRING), kept(3, "optional", BOOL)],
};

static FILE_KEY_SELECTOR: Message = Message {
    name: "FileKeySelector",
    fields: &[
        kept(1, "volumeName", STRING),
        kept(2, "path", STRING),
        kept(3, "key", STRING),
        kept(4, "optional", BOOL),
    ],
};

static ENV_FROM_SOURCE: Message = Message {
    name: "EnvFromSource",
    fields: &[
        omitempty(1, "prefix", STRING),
        message(2, "configMapRef", &CONFIG_MAP_ENV_SOURCE),
        message(3, "secretRef", &SECRET_ENV_SOURCE),
    ],
};

static CONFIG_MAP_ENV_SOURCE: Message =
    Message { name: "ConfigMapEnvSource", fields: &[inline(1, &LOCAL_OBJECT_REFERENCE), kept(2, "optional", BOOL)] };

static SECRET_ENV_SOURCE: Message =
    Message { name: "SecretEnvSource", fields: &[inline(1, &LOCAL_OBJECT_REFERENCE), kept(2, "optional", BOOL)] };

static RESOURCE_REQUIREMENTS: Message = Message {
    name: "ResourceRequirements",
    fields: &[
        map(1, "limits", Scalar::Quantity),
        map(2, "requests", Scalar::Quantity),
        messages(3, "claims", &RESOURCE_CLAIM),
    ],
};

static RESOURCE_CLAIM: Message =
    Message { name: "ResourceClaim", fields: &[kept(1, "name", STRING), omitempty(2, "request", STRING)] };

static CONTAINER_RESIZE_POLICY: Message = Message {
    name: "ContainerResizePolicy",
    fields: &[kept(1, "resourceName", STRING), kept(2, "restartPolicy", STRING)],
};

static VOLUME_MOUNT: Message = Message {
    name: "VolumeMount",
    fields: &[
        kept(1, "name", STRING),
        omitempty(2, "readOnly", BOOL),
        kept(3, "mountPath", STRING),
        omitempty(4, "subPath", STRING),
        kept(5, "mountPropagation", STRING),
        omitempty(6, "subPathExpr", STRING),
        kept(7, "recursiveReadOnly", STRING),
        repeated(8, "bindMountOptions", STRING),
    ],
};

static VOLUME_DEVICE: Message =
    Message { name: "VolumeDevice", fields: &[kept(1, "name", STRING), kept(2, "devicePath", STRING)] };

static PROBE: Message = Message {
    name: "Probe",
    fields: &[
        inline(1, &PROBE_HANDLER),
        omitempty(2, "initialDelaySeconds", INT32),
        omitempty(3, "timeoutSeconds", INT32),
        omitempty(4, "periodSeconds", INT32),
        omitempty(5, "successThreshold", INT32),
        omitempty(6, "failureThreshold", INT32),
        kept(7, "terminationGracePeriodSeconds", INT64),
    ],
};

static PROBE_HANDLER: Message = Message {
    name: "ProbeHandler",
    fields: &[
        message(1, "exec", &EXEC_ACTION),
        message(2, "httpGet", &HTTP_GET_ACTION),
        message(3, "tcpSocket", &TCP_SOCKET_ACTION),
        message(4, "grpc", &GRPC_ACTION),
    ],
};

static EXEC_ACTION: Message = Message { name: "ExecAction", fields: &[repeated(1, "command", STRING)] };

static HTTP_GET_ACTION: Message = Message {
    name: "HTTPGetAction",
    fields: &[
        omitempty(1, "path", STRING),
        kept(2, "port", INT_OR_STRING),
        omitempty(3, "host", STRING),
        omitempty(4, "scheme", STRING),
        messages(5, "httpHeaders", &HTTP_HEADER),
        kept(6, "protocol", STRING),
    ],
};

static HTTP_HEADER: Message =
    Message { name: "HTTPHeader", fields: &[kept(1, "name", STRING), kept(2, "value", STRING)] };

static TCP_SOCKET_ACTION: Message =
    Message { name: "TCPSocketAction", fields: &[kept(1, "port", INT_OR_STRING), omitempty(2, "host", STRING)] };

static GRPC_ACTION: Message = Message {
    name: "GRPCAction",
    fields: &[kept(1, "port", INT32), kept(2, "service", STRING), kept(3, "mode", STRING)],
};

static LIFECYCLE: Message = Message {
    name: "Lifecycle",
    fields: &[
        message(1, "postStart", &LIFECYCLE_HANDLER),
        message(2, "preStop", &LIFECYCLE_HANDLER),
        kept(3, "stopSignal", STRING),
    ],
};

static LIFECYCLE_HANDLER: Message = Message {
    name: "LifecycleHandler",
    fields: &[
        message(1, "exec", &EXEC_ACTION),
        message(2, "httpGet", &HTTP_GET_ACTION),
        message(3, "tcpSocket", &TCP_SOCKET_ACTION),
        message(4, "sleep", &SLEEP_ACTION),
    ],
};

static SLEEP_ACTION: Message = Message { name: "SleepAction", fields: &[kept(1, "seconds", INT64)] };

static SECURITY_CONTEXT: Message = Message {
    name: "SecurityContext",
    fields: &[
        message(1, "capabilities", &CAPABILITIES),
        kept(2, "privileged", BOOL),
        message(3, "seLinuxOptions", &SE_LINUX_OPTIONS),
        kept(4, "runAsUser", INT64),
        kept(5, "runAsNonRoot", BOOL),
        kept(6, "readOnlyRootFilesystem", BOOL),
        kept(7, "allowPrivilegeEscalation", BOOL),
        kept(8, "runAsGroup", INT64),
        kept(9, "procMount", STRING),
        message(10, "windowsOptions", &WINDOWS_SECURITY_CONTEXT_OPTIONS),
        message(11, "seccompProfile", &SECCOMP_PROFILE),
        message(12, "appArmorProfile", &APP_ARMOR_PROFILE),
    ],
};

static POD_SECURITY_CONTEXT: Message = Message {
    name: "PodSecurityContext",
    fields: &[
        message(1, "seLinuxOptions", &SE_LINUX_OPTIONS),
        kept(2, "runAsUser", INT64),
        kept(3, "runAsNonRoot", BOOL),
        repeated(4, "supplementalGroups", INT64),
        kept(5, "fsGroup", INT64),
        kept(6, "runAsGroup", INT64),
        messages(7, "sysctls", &SYSCTL),
        message(8, "windowsOptions", &WINDOWS_SECURITY_CONTEXT_OPTIONS),
        kept(9, "fsGroupChangePolicy", STRING),
        message(10, "seccompProfile", &SECCOMP_PROFILE),
        message(11, "appArmorProfile", &APP_ARMOR_PROFILE),
        kept(12, "supplementalGroupsPolicy", STRING),
        kept(13, "seLinuxChangePolicy", STRING),
    ],
};

static CAPABILITIES: Message =
    Message { name: "Capabilities", fields: &[repeated(1, "add", STRING), repeated(2, "drop", STRING)] };

static SE_LINUX_OPTIONS: Message = Message {
    name: "SELinuxOptions",
    fields: &[
        omitempty(1, "user", STRING),
        omitempty(2, "role", STRING),
        omitempty(3, "type", STRING),
        omitempty(4, "level", STRING),
    ],
};

static WINDOWS_SECURITY_CONTEXT_OPTIONS: Message = Message {
    name: "WindowsSecurityContextOptions",
    fields: &[
        kept(1, "gmsaCredentialSpecName", STRING),
        kept(2, "gmsaCredentialSpec", STRING),
        kept(3, "runAsUserName", STRING),
        kept(4, "hostProcess", BOOL),
    ],
};

static SECCOMP_PROFILE: Message =
    Message { name: "SeccompProfile", fields: &[kept(1, "type", STRING), kept(2, "localhostProfile", STRING)] };

static APP_ARMOR_PROFILE: Message =
    Message { name: "AppArmorProfile", fields: &[kept(1, "type", STRING), kept(2, "localhostProfile", STRING)] };

static SYSCTL: Message = Message { name: "Sysctl", fields: &[kept(1, "name", STRING), kept(2, "value", STRING)] };

static TOLERATION: Message = Message {
    name: "Toleration",
    fields: &[
        omitempty(1, "key", STRING),
        omitempty(2, "operator", STRING),
        omitempty(3, "value", STRING),
        omitempty(4, "effect", STRING),
        kept(5, "tolerationSeconds", INT64),
    ],
};

static HOST_ALIAS: Message =
    Message { name: "HostAlias", fields: &[kept(1, "ip", STRING), repeated(2, "hostnames", STRING)] };

static POD_DNS_CONFIG: Message = Message {
    name: "PodDNSConfig",
    fields: &[
        repeated(1, "nameservers", STRING),
        repeated(2, "searches", STRING),
        messages(3, "options", &POD_DNS_CONFIG_OPTION),
    ],
};

static POD_DNS_CONFIG_OPTION: Message =
    Message { name: "PodDNSConfigOption", fields: &[omitempty(1, "name", STRING), kept(2, "value", STRING)] };

static POD_READINESS_GATE: Message = Message { name: "PodReadinessGate", fields: &[kept(1, "conditionType", STRING)] };

static POD_OS: Message = Message { name: "PodOS", fields: &[kept(1, "name", STRING)] };

static POD_SCHEDULING_GATE: Message = Message { name: "PodSchedulingGate", fields: &[kept(1, "name", STRING)] };

static TOPOLOGY_SPREAD_CONSTRAINT: Message = Message {
    name: "TopologySpreadConstraint",
    fields: &[
        kept(1, "maxSkew", INT32),
        kept(2, "topologyKey", STRING),
        kept(3, "whenUnsatisfiable", STRING),
        message(4, "labelSelector", &LABEL_SELECTOR),
        kept(5, "minDomains", INT32),
        kept(6, "nodeAffinityPolicy", STRING),
        kept(7, "nodeTaintsPolicy", STRING),
        repeated(8, "matchLabelKeys", STRING),
    ],
};

// core/v1: volumes

static VOLUME: Message = Message { name: "Volume", fields: &[kept(1, "name", STRING), inline(2, &VOLUME_SOURCE)] };

static VOLUME_SOURCE: Message = Message {
    name: "VolumeSource",
    fields: &[
        message(1, "hostPath", &HOST_PATH_VOLUME_SOURCE),
        message(2, "emptyDir", &EMPTY_DIR_VOLUME_SOURCE),
        unsupported(3, "gcePersistentDisk", "GCEPersistentDiskVolumeSource"),
        unsupported(4, "awsElasticBlockStore", "AWSElasticBlockStoreVolumeSource"),
        unsupported(5, "gitRepo", "GitRepoVolumeSource"),
        message(6, "secret", &SECRET_VOLUME_SOURCE),
        message(7, "nfs", &NFS_VOLUME_SOURCE),
        unsupported(8, "iscsi", "ISCSIVolumeSource"),
        unsupported(9, "glusterfs", "GlusterfsVolumeSource"),
        message(10, "persistentVolumeClaim", &PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE),
        unsupported(11, "rbd", "RBDVolumeSource"),
        unsupported(12, "flexVolume", "FlexVolumeSource"),
        unsupported(13, "cinder", "CinderVolumeSource"),
        unsupported(14, "cephfs", "CephFSVolumeSource"),
        unsupported(15, "flocker", "FlockerVolumeSource"),
        message(16, "downwardAPI", &DOWNWARD_API_VOLUME_SOURCE),
        unsupported(17, "fc", "FCVolumeSource"),
        unsupported(18, "azureFile", "AzureFileVolumeSource"),
        message(19, "configMap", &CONFIG_MAP_VOLUME_SOURCE),
        unsupported(20, "vsphereVolume", "VsphereVirtualDiskVolumeSource"),
        unsupported(21, "quobyte", "QuobyteVolumeSource"),
        unsupported(22, "azureDisk", "AzureDiskVolumeSource"),
        unsupported(23, "photonPersistentDisk", "PhotonPersistentDiskVolumeSource"),
        unsupported(24, "portworxVolume", "PortworxVolumeSource"),
        unsupported(25, "scaleIO", "ScaleIOVolumeSource"),
        message(26, "projected", &PROJECTED_VOLUME_SOURCE),
        unsupported(27, "storageos", "StorageOSVolumeSource"),
        unsupported(28, "csi", "CSIVolumeSource"),
        unsupported(29, "ephemeral", "EphemeralVolumeSource"),
        message(30, "image", &IMAGE_VOLUME_SOURCE),
    ],
};

static HOST_PATH_VOLUME_SOURCE: Message =
    Message { name: "HostPathVolumeSource", fields: &[kept(1, "path", STRING), kept(2, "type", STRING)] };

static EMPTY_DIR_VOLUME_SOURCE: Message = Message {
    name: "EmptyDirVolumeSource",
    fields: &[omitempty(1, "medium", STRING), kept(2, "sizeLimit", QUANTITY), kept(3, "mode", INT32)],
};

static SECRET_VOLUME_SOURCE: Message = Message {
    name: "SecretVolumeSource",
    fields: &[
        omitempty(1, "secretName", STRING),
        messages(2, "items", &KEY_TO_PATH),
        kept(3, "defaultMode", INT32),
        kept(4, "optional", BOOL),
        kept(5, "defaultUser", INT64),
    ],
};

static CONFIG_MAP_VOLUME_SOURCE: Message = Message {
    name: "ConfigMapVolumeSource",
    fields: &[
        inline(1, &LOCAL_OBJECT_REFERENCE),
        messages(2, "items", &KEY_TO_PATH),
        kept(3, "defaultMode", INT32),
        kept(4, "optional", BOOL),
        kept(5, "defaultUser", INT64),
    ],
};

static KEY_TO_PATH: Message = Message {
    name: "KeyToPath",
    fields: &[kept(1, "key", STRING), kept(2, "path", STRING), kept(3, "mode", INT32), kept(4, "user", INT64)],
};

static NFS_VOLUME_SOURCE: Message = Message {
    name: "NFSVolumeSource",
    fields: &[kept(1, "server", STRING), kept(2, "path", STRING), omitempty(3, "readOnly", BOOL)],
};

static PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE: Message = Message {
    name: "PersistentVolumeClaimVolumeSource",
    fields: &[kept(1, "claimName", STRING), omitempty(2, "readOnly", BOOL)],
};

static DOWNWARD_API_VOLUME_SOURCE: Message = Message {
    name: "DownwardAPIVolumeSource",
    fields: &[
        messages(1, "items", &DOWNWARD_API_VOLUME_FILE),
        kept(2, "defaultMode", INT32),
        kept(3, "defaultUser", INT64),
    ],
};

static DOWNWARD_API_VOLUME_FILE: Message = Message {
    name: "DownwardAPIVolumeFile",
    fields: &[
        kept(1, "path", STRING),
        message(2, "fieldRef", &OBJECT_FIELD_SELECTOR),
        message(3, "resourceFieldRef", &RESOURCE_FIELD_SELECTOR),
        kept(4, "mode", INT32),
        kept(5, "user", INT64),
    ],
};

static PROJECTED_VOLUME_SOURCE: Message = Message {
    name: "ProjectedVolumeSource",
    fields: &[messages(1, "sources", &VOLUME_PROJECTION), kept(2, "defaultMode", INT32), kept(3, "defaultUser", INT64)],
};

static VOLUME_PROJECTION: Message = Message {
    name: "VolumeProjection",
    fields: &[
        message(1, "secret", &SECRET_PROJECTION),
        message(2, "downwardAPI", &DOWNWARD_API_PROJECTION),
        message(3, "configMap", &CONFIG_MAP_PROJECTION),
        message(4, "serviceAccountToken", &SERVICE_ACCOUNT_TOKEN_PROJECTION),
        unsupported(5, "clusterTrustBundle", "ClusterTrustBundleProjection"),
        unsupported(6, "podCertificate", "PodCertificateProjection"),
    ],
};

static SECRET_PROJECTION: Message = Message {
    name: "SecretProjection",
    fields: &[inline(1, &LOCAL_OBJECT_REFERENCE), messages(2, "items", &KEY_TO_PATH), kept(4, "optional", BOOL)],
};

static CONFIG_MAP_PROJECTION: Message = Message {
    name: "ConfigMapProjection",
    fields: &[inline(1, &LOCAL_OBJECT_REFERENCE), messages(2, "items", &KEY_TO_PATH), kept(4, "optional", BOOL)],
};

static DOWNWARD_API_PROJECTION: Message =
    Message { name: "DownwardAPIProjection", fields: &[messages(1, "items", &DOWNWARD_API_VOLUME_FILE)] };

static SERVICE_ACCOUNT_TOKEN_PROJECTION: Message = Message {
    name: "ServiceAccountTokenProjection",
    fields: &[
        omitempty(1, "audience", STRING),
        kept(2, "expirationSeconds", INT64),
        kept(3, "path", STRING),
        kept(4, "user", INT64),
    ],
};

static IMAGE_VOLUME_SOURCE: Message = Message {
    name: "ImageVolumeSource",
    fields: &[omitempty(1, "reference", STRING), omitempty(2, "pullPolicy", STRING)],
};

// core/v1: Service

static SERVICE: Message = Message {
    name: "Service",
    fields: &[
        message(1, "metadata", &OBJECT_META),
        message(2, "spec", &SERVICE_SPEC),
        message(3, "status", &SERVICE_STATUS),
    ],
};

static SERVICE_SPEC: Message = Message {
    name: "ServiceSpec",
    fields: &[
        messages(1, "ports", &SERVICE_PORT),
        map(2, "selector", Scalar::String),
        omitempty(3, "clusterIP", STRING),
        omitempty(4, "type", STRING),
        repeated(5, "externalIPs", STRING),
        omitempty(7, "sessionAffinity", STRING),
        omitempty(8, "loadBalancerIP", STRING),
        repeated(9, "loadBalancerSourceRanges", STRING),
        omitempty(10, "externalName", STRING),
        omitempty(11, "externalTrafficPolicy", STRING),
        omitempty(12, "healthCheckNodePort", INT32),
        omitempty(13, "publishNotReadyAddresses", BOOL),
        message(14, "sessionAffinityConfig", &SESSION_AFFINITY_CONFIG),
        kept(17, "ipFamilyPolicy", STRING),
        repeated(18, "clusterIPs", STRING),
        repeated(19, "ipFamilies", STRING),
        kept(20, "allocateLoadBalancerNodePorts", BOOL),
        kept(21, "loadBalancerClass", STRING),
        kept(22, "internalTrafficPolicy", STRING),
        kept(23, "trafficDistribution", STRING),
    ],
};

static SERVICE_PORT: Message = Message {
    name: "ServicePort",
    fields: &[
        omitempty(1, "name", STRING),
        omitempty(2, "protocol", STRING),
        kept(3, "port", INT32),
        kept(4, "targetPort", INT_OR_STRING),
        omitempty(5, "nodePort", INT32),
        kept(6, "appProtocol", STRING),
    ],
};

static SESSION_AFFINITY_CONFIG: Message =
    Message { name: "SessionAffinityConfig", fields: &[message(1, "clientIP", &CLIENT_IP_CONFIG)] };

static CLIENT_IP_CONFIG: Message = Message { name: "ClientIPConfig", fields: &[kept(1, "timeoutSeconds", INT32)] };

static SERVICE_STATUS: Message = Message {
    name: "ServiceStatus",
    fields: &[message(1, "loadBalancer", &LOAD_BALANCER_STATUS), messages(2, "conditions", &CONDITION)],
};

static LOAD_BALANCER_STATUS: Message =
    Message { name: "LoadBalancerStatus", fields: &[messages(1, "ingress", &LOAD_BALANCER_INGRESS)] };

static LOAD_BALANCER_INGRESS: Message = Message {
    name: "LoadBalancerIngress",
    fields: &[
        omitempty(1, "ip", STRING),
        omitempty(2, "hostname", STRING),
        kept(3, "ipMode", STRING),
        messages(4, "ports", &PORT_STATUS),
    ],
};

static PORT_STATUS: Message = Message {
    name: "PortStatus",
    fields: &[kept(1, "port", INT32), kept(2, "protocol", STRING), kept(3, "error", STRING)],
};

// core/v1: ResourceQuota

static RESOURCE_QUOTA: Message = Message {
    name: "ResourceQuota",
    fields: &[
        message(1, "metadata", &OBJECT_META),
        message(2, "spec", &RESOURCE_QUOTA_SPEC),
        message(3, "status", &RESOURCE_QUOTA_STATUS),
    ],
};

static RESOURCE_QUOTA_SPEC: Message = Message {
    name: "ResourceQuotaSpec",
    fields: &[
        map(1, "hard", Scalar::Quantity),
        repeated(2, "scopes", STRING),
        message(3, "scopeSelector", &SCOPE_SELECTOR),
    ],
};

static SCOPE_SELECTOR: Message = Message {
    name: "ScopeSelector",
    fields: &[messages(1, "matchExpressions", &SCOPED_RESOURCE_SELECTOR_REQUIREMENT)],
};

static SCOPED_RESOURCE_SELECTOR_REQUIREMENT: Message = Message {
    name: "ScopedResourceSelectorRequirement",
    fields: &[kept(1, "scopeName", STRING), kept(2, "operator", STRING), repeated(3, "values", STRING)],
};

static RESOURCE_QUOTA_STATUS: Message = Message {
    name: "ResourceQuotaStatus",
    fields: &[map(1, "hard", Scalar::Quantity), map(2, "used", Scalar::Quantity)],
};

// apps/v1

static DEPLOYMENT: Message = Message {
    name: "Deployment",
    fields: &[
        message(1, "metadata", &OBJECT_META),
        message(2, "spec", &DEPLOYMENT_SPEC),
        message(3, "status", &DEPLOYMENT_STATUS),
    ],
};

static DEPLOYMENT_SPEC: Message = Message {
    name: "DeploymentSpec",
    fields: &[
        kept(1, "replicas", INT32),
        message(2, "selector", &LABEL_SELECTOR),
        message(3, "template", &POD_TEMPLATE_SPEC),
        message(4, "strategy", &DEPLOYMENT_STRATEGY),
        omitempty(5, "minReadySeconds", INT32),
        kept(6, "revisionHistoryLimit", INT32),
        omitempty(7, "paused", BOOL),
        kept(9, "progressDeadlineSeconds", INT32),
    ],
};

static DEPLOYMENT_STRATEGY: Message = Message {
    name: "DeploymentStrategy",
    fields: &[omitempty(1, "type", STRING), message(2, "rollingUpdate", &ROLLING_UPDATE_DEPLOYMENT)],
};

static ROLLING_UPDATE_DEPLOYMENT: Message = Message {
    name: "RollingUpdateDeployment",
    fields: &[kept(1, "maxUnavailable", INT_OR_STRING), kept(2, "maxSurge", INT_OR_STRING)],
};

static DEPLOYMENT_STATUS: Message = Message {
    name: "DeploymentStatus",
    fields: &[
        omitempty(1, "observedGeneration", INT64),
        omitempty(2, "replicas", INT32),
        omitempty(3, "updatedReplicas", INT32),
        omitempty(4, "availableReplicas", INT32),
        omitempty(5, "unavailableReplicas", INT32),
        messages(6, "conditions", &DEPLOYMENT_CONDITION),
        omitempty(7, "readyReplicas", INT32),
        kept(8, "collisionCount", INT32),
        kept(9, "terminatingReplicas", INT32),
    ],
};

static DEPLOYMENT_CONDITION: Message = Message {
    name: "DeploymentCondition",
    fields: &[
        kept(1, "type", STRING),
        kept(2, "status", STRING),
        omitempty(4, "reason", STRING),
        omitempty(5, "message", STRING),
        kept(6, "lastUpdateTime", TIME),
        kept(7, "lastTransitionTime", TIME),
    ],
};

// batch/v1

static JOB: Message = Message {
    name: "Job",
    fields: &[message(1, "metadata", &OBJECT_META), message(2, "spec", &JOB_SPEC), message(3, "status", &JOB_STATUS)],
};

static JOB_SPEC: Message = Message {
    name: "JobSpec",
    fields: &[
        kept(1, "parallelism", INT32),
        kept(2, "completions", INT32),
        kept(3, "activeDeadlineSeconds", INT64),
        message(4, "selector", &LABEL_SELECTOR),
        kept(5, "manualSelector", BOOL),
        message(6, "template", &POD_TEMPLATE_SPEC),
        kept(7, "backoffLimit", INT32),
        kept(8, "ttlSecondsAfterFinished", INT32),
        kept(9, "completionMode", STRING),
        kept(10, "suspend", BOOL),
        unsupported(11, "podFailurePolicy", "PodFailurePolicy"),
        kept(12, "backoffLimitPerIndex", INT32),
        kept(13, "maxFailedIndexes", INT32),
        kept(14, "podReplacementPolicy", STRING),
        kept(15, "managedBy", STRING),
        unsupported(16, "successPolicy", "SuccessPolicy"),
        unsupported(17, "scheduling", "JobSchedulingConfiguration"),
    ],
};

static JOB_STATUS: Message = Message {
    name: "JobStatus",
    fields: &[
        messages(1, "conditions", &JOB_CONDITION),
        kept(2, "startTime", TIME),
        kept(3, "completionTime", TIME),
        omitempty(4, "active", INT32),
        omitempty(5, "succeeded", INT32),
        omitempty(6, "failed", INT32),
        omitempty(7, "completedIndexes", STRING),
        message(8, "uncountedTerminatedPods", &UNCOUNTED_TERMINATED_PODS),
        kept(9, "ready", INT32),
        kept(10, "failedIndexes", STRING),
        kept(11, "terminating", INT32),
    ],
};

static JOB_CONDITION: Message = Message {
    name: "JobCondition",
    fields: &[
        kept(1, "type", STRING),
        kept(2, "status", STRING),
        kept(3, "lastProbeTime", TIME),
        kept(4, "lastTransitionTime", TIME),
        omitempty(5, "reason", STRING),
        omitempty(6, "message", STRING),
    ],
};

static UNCOUNTED_TERMINATED_PODS: Message = Message {
    name: "UncountedTerminatedPods",
    fields: &[repeated(1, "succeeded", STRING), repeated(2, "failed", STRING)],
};

static CRON_JOB: Message = Message {
    name: "CronJob",
    fields: &[
        message(1, "metadata", &OBJECT_META),
        message(2, "spec", &CRON_JOB_SPEC),
        message(3, "status", &CRON_JOB_STATUS),
    ],
};

static CRON_JOB_SPEC: Message = Message {
    name: "CronJobSpec",
    fields: &[
        kept(1, "schedule", STRING),
        kept(2, "startingDeadlineSeconds", INT64),
        omitempty(3, "concurrencyPolicy", STRING),
        kept(4, "suspend", BOOL),
        message(5, "jobTemplate", &JOB_TEMPLATE_SPEC),
        kept(6, "successfulJobsHistoryLimit", INT32),
        kept(7, "failedJobsHistoryLimit", INT32),
        kept(8, "timeZone", STRING),
    ],
};

static JOB_TEMPLATE_SPEC: Message =
    Message { name: "JobTemplateSpec", fields: &[message(1, "metadata", &OBJECT_META), message(2, "spec", &JOB_SPEC)] };

static CRON_JOB_STATUS: Message = Message {
    name: "CronJobStatus",
    fields: &[
        messages(1, "active", &OBJECT_REFERENCE),
        kept(4, "lastScheduleTime", TIME),
        kept(5, "lastSuccessfulTime", TIME),
    ],
};

// autoscaling/v1

static HORIZONTAL_POD_AUTOSCALER: Message = Message {
    name: "HorizontalPodAutoscaler",
    fields: &[
        message(1, "metadata", &OBJECT_META),
        message(2, "spec", &HORIZONTAL_POD_AUTOSCALER_SPEC),
        message(3, "status", &HORIZONTAL_POD_AUTOSCALER_STATUS),
    ],
};

static HORIZONTAL_POD_AUTOSCALER_SPEC: Message = Message {
    name: "HorizontalPodAutoscalerSpec",
    fields: &[
        message(1, "scaleTargetRef", &CROSS_VERSION_OBJECT_REFERENCE),
        kept(2, "minReplicas", INT32),
        kept(3, "maxReplicas", INT32),
        kept(4, "targetCPUUtilizationPercentage", INT32),
    ],
};

static CROSS_VERSION_OBJECT_REFERENCE: Message = Message {
    name: "CrossVersionObjectReference",
    fields: &[kept(1, "kind", STRING), kept(2, "name", STRING), omitempty(3, "apiVersion", STRING)],
};

static HORIZONTAL_POD_AUTOSCALER_STATUS: Message = Message {
    name: "HorizontalPodAutoscalerStatus",
    fields: &[
        kept(1, "observedGeneration", INT64),
        kept(2, "lastScaleTime", TIME),
        kept(3, "currentReplicas", INT32),
        kept(4, "desiredReplicas", INT32),
        kept(5, "currentCPUUtilizationPercentage", INT32),
    ],
};

// scheduling.k8s.io/v1

static PRIORITY_CLASS: Message = Message {
    name: "PriorityClass",
    fields: &[
        message(1, "metadata", &OBJECT_META),
        kept(2, "value", INT32),
        omitempty(3, "globalDefault", BOOL),
        omitempty(4, "description", STRING),
        kept(5, "preemptionPolicy", STRING),
    ],
};

// networking.k8s.io/v1

static INGRESS: Message = Message {
    name: "Ingress",
    fields: &[
        message(1, "metadata", &OBJECT_META),
        message(2, "spec", &INGRESS_SPEC),
        message(3, "status", &INGRESS_STATUS),
    ],
};

static INGRESS_SPEC: Message = Message {
    name: "IngressSpec",
    fields: &[
        message(1, "defaultBackend", &INGRESS_BACKEND),
        messages(2, "tls", &INGRESS_TLS),
        messages(3, "rules", &INGRESS_RULE),
        kept(4, "ingressClassName", STRING),
    ],
};

static INGRESS_BACKEND: Message = Message {
    name: "IngressBackend",
    fields: &[message(3, "resource", &TYPED_LOCAL_OBJECT_REFERENCE), message(4, "service", &INGRESS_SERVICE_BACKEND)],
};

static INGRESS_SERVICE_BACKEND: Message = Message {
    name: "IngressServiceBackend",
    fields: &[kept(1, "name", STRING), message(2, "port", &SERVICE_BACKEND_PORT)],
};

static SERVICE_BACKEND_PORT: Message =
    Message { name: "ServiceBackendPort", fields: &[omitempty(1, "name", STRING), omitempty(2, "number", INT32)] };

static INGRESS_TLS: Message =
    Message { name: "IngressTLS", fields: &[repeated(1, "hosts", STRING), omitempty(2, "secretName", STRING)] };

static INGRESS_RULE: Message =
    Message { name: "IngressRule", fields: &[omitempty(1, "host", STRING), inline(2, &INGRESS_RULE_VALUE)] };

static INGRESS_RULE_VALUE: Message =
    Message { name: "IngressRuleValue", fields: &[message(1, "http", &HTTP_INGRESS_RULE_VALUE)] };

static HTTP_INGRESS_RULE_VALUE: Message =
    Message { name: "HTTPIngressRuleValue", fields: &[messages(1, "paths", &HTTP_INGRESS_PATH)] };

static HTTP_INGRESS_PATH: Message = Message {
    name: "HTTPIngressPath",
    fields: &[omitempty(1, "path", STRING), message(2, "backend", &INGRESS_BACKEND), kept(3, "pathType", STRING)],
};

static INGRESS_STATUS: Message =
    Message { name: "IngressStatus", fields: &[message(1, "loadBalancer", &INGRESS_LOAD_BALANCER_STATUS)] };

static INGRESS_LOAD_BALANCER_STATUS: Message =
    Message { name: "IngressLoadBalancerStatus", fields: &[messages(1, "ingress", &INGRESS_LOAD_BALANCER_INGRESS)] };

static INGRESS_LOAD_BALANCER_INGRESS: Message = Message {
    name: "IngressLoadBalancerIngress",
    fields: &[omitempty(1, "ip", STRING), omitempty(2, "hostname", STRING), messages(4, "ports", &INGRESS_PORT_STATUS)],
};

static INGRESS_PORT_STATUS: Message = Message {
    name: "IngressPortStatus",
    fields: &[kept(1, "port", INT32), kept(2, "protocol", STRING), kept(3, "error", STRING)],
};

// authentication.k8s.io/v1

static TOKEN_REQUEST: Message = Message {
    name: "TokenRequest",
    fields: &[
        message(1, "metadata", &OBJECT_META),
        message(2, "spec", &TOKEN_REQUEST_SPEC),
        message(3, "status", &TOKEN_REQUEST_STATUS),
    ],
};

static TOKEN_REQUEST_SPEC: Message = Message {
    name: "TokenRequestSpec",
    fields: &[
        repeated(1, "audiences", STRING),
        message(3, "boundObjectRef", &BOUND_OBJECT_REFERENCE),
        kept(4, "expirationSeconds", INT64),
        unsupported(5, "attestations", "AttestationValue"),
    ],
};

static TOKEN_REQUEST_STATUS: Message =
    Message { name: "TokenRequestStatus", fields: &[kept(1, "token", STRING), kept(2, "expirationTimestamp", TIME)] };

static BOUND_OBJECT_REFERENCE: Message = Message {
    name: "BoundObjectReference",
    fields: &[
        omitempty(1, "kind", STRING),
        omitempty(2, "apiVersion", STRING),
        omitempty(3, "name", STRING),
        omitempty(4, "uid", STRING),
    ],
};

static SELF_SUBJECT_REVIEW: Message = Message {
    name: "SelfSubjectReview",
    fields: &[message(1, "metadata", &OBJECT_META), message(2, "status", &SELF_SUBJECT_REVIEW_STATUS)],
};

static SELF_SUBJECT_REVIEW_STATUS: Message =
    Message { name: "SelfSubjectReviewStatus", fields: &[message(1, "userInfo", &USER_INFO)] };

static USER_INFO: Message = Message {
    name: "UserInfo",
    fields: &[
        omitempty(1, "username", STRING),
        omitempty(2, "uid", STRING),
        repeated(3, "groups", STRING),
        unsupported(4, "extra", "ExtraValue"),
    ],
};

static ROLE: Message =
    Message { name: "Role", fields: &[message(1, "metadata", &OBJECT_META), messages(2, "rules", &POLICY_RULE)] };

static CLUSTER_ROLE: Message = Message {
    name: "ClusterRole",
    fields: &[
        message(1, "metadata", &OBJECT_META),
        messages(2, "rules", &POLICY_RULE),
        message(3, "aggregationRule", &AGGREGATION_RULE),
    ],
};

static AGGREGATION_RULE: Message =
    Message { name: "AggregationRule", fields: &[messages(1, "clusterRoleSelectors", &LABEL_SELECTOR)] };

static POLICY_RULE: Message = Message {
    name: "PolicyRule",
    fields: &[
        repeated(1, "verbs", STRING),
        repeated(2, "apiGroups", STRING),
        repeated(3, "resources", STRING),
        repeated(4, "resourceNames", STRING),
        repeated(5, "nonResourceURLs", STRING),
    ],
};

/// `RoleBinding` and `ClusterRoleBinding`, which have the same fields.
static ROLE_BINDING: Message = Message {
    name: "RoleBinding",
    fields: &[
        message(1, "metadata", &OBJECT_META),
        messages(2, "subjects", &SUBJECT),
        message(3, "roleRef", &ROLE_REF),
    ],
};

static SUBJECT: Message = Message {
    name: "Subject",
    fields: &[
        kept(1, "kind", STRING),
        omitempty(2, "apiGroup", STRING),
        kept(3, "name", STRING),
        omitempty(4, "namespace", STRING),
    ],
};

static ROLE_REF: Message = Message {
    name: "RoleRef",
    fields: &[kept(1, "apiGroup", STRING), kept(2, "kind", STRING), kept(3, "name", STRING)],
};

static SELF_SUBJECT_RULES_REVIEW: Message = Message {
    name: "SelfSubjectRulesReview",
    fields: &[
        message(1, "metadata", &OBJECT_META),
        message(2, "spec", &SELF_SUBJECT_RULES_REVIEW_SPEC),
        message(3, "status", &SUBJECT_RULES_REVIEW_STATUS),
    ],
};

static SELF_SUBJECT_RULES_REVIEW_SPEC: Message =
    Message { name: "SelfSubjectRulesReviewSpec", fields: &[omitempty(1, "namespace", STRING)] };

static SUBJECT_RULES_REVIEW_STATUS: Message = Message {
    name: "SubjectRulesReviewStatus",
    fields: &[
        messages(1, "resourceRules", &RESOURCE_RULE),
        messages(2, "nonResourceRules", &NON_RESOURCE_RULE),
        kept(3, "incomplete", BOOL),
        omitempty(4, "evaluationError", STRING),
    ],
};

static RESOURCE_RULE: Message = Message {
    name: "ResourceRule",
    fields: &[
        repeated(1, "verbs", STRING),
        repeated(2, "apiGroups", STRING),
        repeated(3, "resources", STRING),
        repeated(4, "resourceNames", STRING),
    ],
};

static NON_RESOURCE_RULE: Message = Message {
    name: "NonResourceRule",
    fields: &[repeated(1, "verbs", STRING), repeated(2, "nonResourceURLs", STRING)],
};

static SELF_SUBJECT_ACCESS_REVIEW: Message = Message {
    name: "SelfSubjectAccessReview",
    fields: &[
        message(1, "metadata", &OBJECT_META),
        message(2, "spec", &SELF_SUBJECT_ACCESS_REVIEW_SPEC),
        message(3, "status", &SUBJECT_ACCESS_REVIEW_STATUS),
    ],
};

static SELF_SUBJECT_ACCESS_REVIEW_SPEC: Message = Message {
    name: "SelfSubjectAccessReviewSpec",
    fields: &[
        message(1, "resourceAttributes", &RESOURCE_ATTRIBUTES),
        message(2, "nonResourceAttributes", &NON_RESOURCE_ATTRIBUTES),
    ],
};

static RESOURCE_ATTRIBUTES: Message = Message {
    name: "ResourceAttributes",
    fields: &[
        omitempty(1, "namespace", STRING),
        omitempty(2, "verb", STRING),
        omitempty(3, "group", STRING),
        omitempty(4, "version", STRING),
        omitempty(5, "resource", STRING),
        omitempty(6, "subresource", STRING),
        omitempty(7, "name", STRING),
        message(8, "fieldSelector", &SELECTOR_ATTRIBUTES),
        message(9, "labelSelector", &SELECTOR_ATTRIBUTES),
    ],
};

/// `FieldSelectorAttributes` and `LabelSelectorAttributes`, which have the same fields.
static SELECTOR_ATTRIBUTES: Message = Message {
    name: "SelectorAttributes",
    fields: &[omitempty(1, "rawSelector", STRING), messages(2, "requirements", &LABEL_SELECTOR_REQUIREMENT)],
};

static NON_RESOURCE_ATTRIBUTES: Message =
    Message { name: "NonResourceAttributes", fields: &[omitempty(1, "path", STRING), omitempty(2, "verb", STRING)] };

static SUBJECT_ACCESS_REVIEW_STATUS: Message = Message {
    name: "SubjectAccessReviewStatus",
    fields: &[
        kept(1, "allowed", BOOL),
        omitempty(2, "reason", STRING),
        omitempty(3, "evaluationError", STRING),
        omitempty(4, "denied", BOOL),
    ],
};

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;

    /// A tiny protobuf writer for building bodies by hand, writing fields in the order given.
    #[derive(Clone, Default)]
    struct Encoder(Vec<u8>);

    impl Encoder {
        fn new() -> Self {
            Encoder::default()
        }

        fn key(mut self, number: u32, wire_type: u8) -> Self {
            write_varint(&mut self.0, u64::from(number) << 3 | u64::from(wire_type));
            self
        }

        fn varint(self, number: u32, value: u64) -> Self {
            let mut encoder = self.key(number, 0);
            write_varint(&mut encoder.0, value);
            encoder
        }

        fn bytes(self, number: u32, bytes: &[u8]) -> Self {
            let mut encoder = self.key(number, 2);
            write_varint(&mut encoder.0, bytes.len() as u64);
            encoder.0.extend_from_slice(bytes);
            encoder
        }

        fn string(self, number: u32, value: &str) -> Self {
            self.bytes(number, value.as_bytes())
        }

        fn message(self, number: u32, message: Encoder) -> Self {
            self.bytes(number, &message.0)
        }

        /// A `map<string, string|bytes>` entry.
        fn entry(self, number: u32, key: &str, value: &[u8]) -> Self {
            self.message(number, Encoder::new().string(1, key).bytes(2, value))
        }
    }

    fn write_varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push(value as u8 | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    /// `k8s\0` and a `runtime.Unknown` around `raw`, with the empty content encoding and type Go writes.
    fn body(api_version: &str, kind: &str, raw: Encoder) -> Vec<u8> {
        let type_meta = Encoder::new().string(1, api_version).string(2, kind);
        let unknown = Encoder::new().message(1, type_meta).message(2, raw).string(3, "").string(4, "");
        [MAGIC, &unknown.0].concat()
    }

    /// ObjectMeta as Go writes a new object's: every non-pointer field, empty or not.
    fn go_object_meta(name: &str, labels: &[(&str, &str)]) -> Encoder {
        let mut meta = Encoder::new().string(1, name);
        for number in 2..=6 {
            meta = meta.string(number, "");
        }
        meta = meta.varint(7, 0).message(8, Encoder::new());
        for (key, value) in labels {
            meta = meta.entry(11, key, value.as_bytes());
        }
        meta
    }

    /// A Container as Go writes kubectl's: name, image and the empty non-pointer fields.
    fn go_container(name: &str, image: &str, command: &[&str]) -> Encoder {
        let mut container = Encoder::new().string(1, name).string(2, image);
        for word in command {
            container = container.string(3, word);
        }
        container
            .string(5, "")
            .message(8, Encoder::new())
            .string(13, "")
            .string(14, "")
            .varint(16, 0)
            .varint(17, 0)
            .varint(18, 0)
            .string(20, "")
    }

    /// A PodSpec as Go writes kubectl's, with these containers and restart policy.
    fn go_pod_spec(containers: Vec<Encoder>, restart_policy: &str) -> Encoder {
        let mut spec = Encoder::new();
        for container in containers {
            spec = spec.message(2, container);
        }
        spec = spec.string(3, restart_policy).string(6, "").string(8, "").string(9, "").string(10, "");
        spec = spec.varint(11, 0).varint(12, 0).varint(13, 0);
        spec.string(16, "").string(17, "").string(19, "").string(24, "")
    }

    fn go_pod_template(labels: &[(&str, &str)], spec: Encoder) -> Encoder {
        Encoder::new().message(1, go_object_meta("", labels)).message(2, spec)
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    fn decoded(body: &[u8]) -> Value {
        decode_object(body).unwrap_or_else(|e| panic!("decode failed: {e}"))
    }

    // Bodies kubectl 1.33.1 sent for `kubectl create ...` (captured on loopback), and what
    // `kubectl create ... --dry-run=client -o json` printed for the same command.
    const SECRET_S1: &str = concat!(
        "6b3873000a0c0a0276311206536563726574121e0a120a02733112001a0022002a0032003800420012060a0161120162",
        "1a001a002200",
    );
    const SECRET_REG: &str = concat!(
        "6b3873000a0c0a02763112065365637265741292010a140a047265673112001a0022002a00320038004200125a0a112e",
        "646f636b6572636f6e6669676a736f6e12457b226175746873223a7b22722e6578616d706c65223a7b22757365726e61",
        "6d65223a2275222c2270617373776f7264223a2270222c2261757468223a2264547077227d7d7d1a1e6b756265726e65",
        "7465732e696f2f646f636b6572636f6e6669676a736f6e1a002200",
    );
    const CONFIGMAP_C2: &str = concat!(
        "6b3873000a0f0a0276311209436f6e6669674d617012330a120a02633212001a0022002a0032003800420012060a016b",
        "1201761a150a0762696e2e646174120a00fffe2062696e6172791a002200",
    );
    const NAMESPACE: &str = concat!(
        "6b3873000a0f0a02763112094e616d657370616365121e0a160a067465616d2d6112001a0022002a0032003800420012",
        "001a020a001a002200",
    );
    const SERVICEACCOUNT: &str = concat!(
        "6b3873000a140a027631120e536572766963654163636f756e7412150a130a0373613112001a0022002a003200380042",
        "001a002200",
    );
    const DEPLOYMENT_D1: &str = concat!(
        "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412ab010a1d0a02643112001a0022002a0032003800",
        "42005a090a0361707012026431127c0802120b0a090a03617070120264311a630a1b0a0012001a0022002a0032003800",
        "42005a090a0361707012026431124412260a0762757379626f78120762757379626f782a0042006a0072008001008801",
        "00900100a201001a00320042004a0052005800600068008201008a01009a0100c2010022020a00280038001a0c080010",
        "0018002000280038001a002200",
    );
    const DEPLOYMENT_D2: &str = concat!(
        "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412c5010a210a02643212001a046170707322002a00",
        "3200380042005a090a03617070120264321291010801120b0a090a03617070120264321a780a1b0a0012001a0022002a",
        "003200380042005a090a03617070120264321259123b0a056e67696e7812056e67696e781a05736c6565701a04333630",
        "302a00320a0a001000185022002a0042006a007200800100880100900100a201001a00320042004a0052005800600068",
        "008201008a01009a0100c2010022020a00280038001a0c0800100018002000280038001a002200",
    );
    const JOB_J2: &str = concat!(
        "6b3873000a0f0a0862617463682f763112034a6f621284010a120a026a3212001a0022002a0032003800420012643262",
        "0a100a0012001a0022002a00320038004200124e122b0a026a32120762757379626f781a046563686f1a0268692a0042",
        "006a007200800100880100900100a201001a054e65766572320042004a0052005800600068008201008a01009a0100c2",
        "01001a082000280030003a001a002200",
    );
    const CRONJOB_CJ1: &str = concat!(
        "6b3873000a130a0862617463682f7631120743726f6e4a6f6212a7010a130a03636a3112001a0022002a003200380042",
        "00128d010a0b2a2f35202a202a202a202a1a002a7c0a130a03636a3112001a0022002a00320038004200126532630a10",
        "0a0012001a0022002a00320038004200124f12280a03636a31120762757379626f781a04646174652a0042006a007200",
        "800100880100900100a201001a094f6e4661696c757265320042004a0052005800600068008201008a01009a0100c201",
        "001a001a002200",
    );
    const SERVICE_NODEPORT: &str = concat!(
        "6b3873000a0d0a02763112075365727669636512700a1f0a036e703112001a0022002a003200380042005a0a0a036170",
        "7012036e703112490a230a09353637382d68747470120354435018ae2c220a080110001a04687474702880eb01120a0a",
        "0361707012036e70311a0022084e6f6465506f72743a00420052005a00600068001a020a001a002200",
    );
    const TOKEN_DEFAULT: &str = concat!(
        "6b3873000a280a1861757468656e7469636174696f6e2e6b38732e696f2f7631120c546f6b656e52657175657374121a",
        "0a100a0012001a0022002a0032003800420012001a040a0012001a002200",
    );
    const TOKEN_BOUND: &str = concat!(
        "6b3873000a280a1861757468656e7469636174696f6e2e6b38732e696f2f7631120c546f6b656e526571756573741234",
        "0a100a0012001a0022002a00320038004200121a0a01781a120a03506f64120276311a0270312203752d3120d8041a04",
        "0a0012001a002200",
    );

    // Bodies kubectl 1.32.4 sent for these commands (captured on loopback), and what the same command printed
    // with `--dry-run=client -o json`.
    const HPA_WEB: &str = concat!(
        "6b3873000a290a0e6175746f7363616c696e672f76311217486f72697a6f6e74616c506f644175746f7363616c657212",
        "3f0a130a0377656212001a0022002a0032003800420012220a1a0a0a4465706c6f796d656e7412037765621a07617070",
        "732f76311002180520501a04180020001a002200",
    );
    const HPA_WEB_HPA: &str = concat!(
        "6b3873000a290a0e6175746f7363616c696e672f76311217486f72697a6f6e74616c506f644175746f7363616c657212",
        "3f0a170a077765622d68706112001a0022002a00320038004200121e0a1a0a0a4465706c6f796d656e7412037765621a",
        "07617070732f763118031a04180020001a002200",
    );
    const QUOTA_Q: &str = concat!(
        "6b3873000a130a027631120d5265736f7572636551756f746112660a110a017112001a0022002a00320038004200124f",
        "0a0a0a0363707512030a01310a0b0a04706f647312030a01320a180a0f72657175657374732e6d656d6f727912050a03",
        "314769120a426573744566666f7274120e4e6f745465726d696e6174696e671a001a002200",
    );
    const QUOTA_Q2: &str = concat!(
        "6b3873000a130a027631120d5265736f7572636551756f746112370a120a02713212001a0022002a0032003800420012",
        "1f0a0c0a04706f647312040a0231300a0f0a08736572766963657312030a01331a001a002200",
    );
    const QUOTA_Q3: &str = concat!(
        "6b3873000a130a027631120d5265736f7572636551756f746112460a120a02713312001a0022002a0032003800420012",
        "2e0a1d0a16636f756e742f6465706c6f796d656e74732e6170707312030a0131120d5072696f72697479436c6173731a",
        "001a002200",
    );
    const PRIORITY_CLASS_HIGH: &str = concat!(
        "6b3873000a250a147363686564756c696e672e6b38732e696f2f7631120d5072696f72697479436c61737312310a140a",
        "046869676812001a0022002a0032003800420010e8071800220d68696768207072696f726974792a054e657665721a00",
        "2200",
    );
    const PRIORITY_CLASS_DEFAULT: &str = concat!(
        "6b3873000a250a147363686564756c696e672e6b38732e696f2f7631120d5072696f72697479436c61737312380a1a0a",
        "0a64656661756c742d706312001a0022002a003200380042001000180122002a14507265656d70744c6f776572507269",
        "6f726974791a002200",
    );
    const INGRESS_SIMPLE: &str = concat!(
        "6b3873000a1f0a146e6574776f726b696e672e6b38732e696f2f76311207496e67726573731282010a160a0673696d70",
        "6c6512001a0022002a0032003800420012640a1822160a0a64656661756c7473766312080a0468747470100012120a07",
        "666f6f2e636f6d12076d792d636572741a2d0a07666f6f2e636f6d12220a200a1e0a042f626172120f220d0a04737663",
        "3112050a0010903f1a05457861637422056e67696e781a020a001a002200",
    );
    const INGRESS_MULTI: &str = concat!(
        "6b3873000a1f0a146e6574776f726b696e672e6b38732e696f2f76311207496e677265737312bf010a1d0a056d756c74",
        "6912001a0022002a0032003800420062060a0161120162129901120b0a07666f6f2e636f6d12001a2d0a07666f6f2e63",
        "6f6d12220a200a1e0a012f121222100a0373766312090a05687474707310001a0545786163741a320a092a2e6261722e",
        "636f6d12250a230a210a062f61646d696e120f220d0a0561646d696e12040a0010501a065072656669781a270a001223",
        "0a210a1f0a052f70617468120f220d0a047376633212050a0010903f1a0545786163741a020a001a002200",
    );
    const INGRESS_BACKEND_ONLY: &str = concat!(
        "6b3873000a1f0a146e6574776f726b696e672e6b38732e696f2f76311207496e677265737312320a1b0a0b6261636b65",
        "6e646f6e6c7912001a0022002a00320038004200120f0a0d220b0a0373766312040a0010501a020a001a002200",
    );
    const SERVICE_CLUSTERIP: &str = concat!(
        "6b3873000a0d0a02763112075365727669636512690a1f0a0377656212001a0022002a003200380042005a0a0a036170",
        "70120377656212420a1b0a0738302d38303830120354435018502207080010903f1a002800120a0a0361707012037765",
        "621a002209436c757374657249503a00420052005a00600068001a020a001a002200",
    );
    const SERVICE_HEADLESS: &str = concat!(
        "6b3873000a0d0a027631120753657276696365124d0a1d0a02686c12001a0022002a003200380042005a090a03617070",
        "1202686c122812090a036170701202686c1a044e6f6e652209436c757374657249503a00420052005a00600068001a02",
        "0a001a002200",
    );
    const SERVICE_EXTERNALNAME: &str = concat!(
        "6b3873000a0d0a027631120753657276696365125a0a1f0a0365787412001a0022002a003200380042005a0a0a036170",
        "7012036578741233120a0a0361707012036578741a00220c45787465726e616c4e616d653a004200520b6578616d706c",
        "652e636f6d5a00600068001a020a001a002200",
    );
    const SERVICE_LOADBALANCER: &str = concat!(
        "6b3873000a0d0a027631120753657276696365126b0a1d0a026c6212001a0022002a003200380042005a090a03617070",
        "12026c6212460a1d0a083434332d38343433120354435018bb032207080010fb411a00280012090a0361707012026c62",
        "1a00220c4c6f616442616c616e6365723a00420052005a00600068001a020a001a002200",
    );
    const CRONJOB_CJ: &str = concat!(
        "6b3873000a130a0862617463682f7631120743726f6e4a6f6212a8010a120a02636a12001a0022002a00320038004200",
        "128f010a0b2a2f31202a202a202a202a1a002a7e0a120a02636a12001a0022002a00320038004200126832660a100a00",
        "12001a0022002a003200380042001252122b0a02636a120762757379626f781a046563686f1a0268692a0042006a0072",
        "00800100880100900100a201001a094f6e4661696c757265320042004a0052005800600068008201008a01009a0100c2",
        "01001a001a002200",
    );

    fn captured_cases() -> Vec<(&'static str, &'static str, Value)> {
        vec![
            (
                "create secret generic s1 --from-literal=a=b",
                SECRET_S1,
                json!({"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s1", "creationTimestamp": null},
                    "data": {"a": "Yg=="}}),
            ),
            (
                "create secret docker-registry reg1",
                SECRET_REG,
                json!({"kind": "Secret", "apiVersion": "v1",
                    "metadata": {"name": "reg1", "creationTimestamp": null},
                    "data": {".dockerconfigjson": concat!(
                        "eyJhdXRocyI6eyJyLmV4YW1wbGUiOnsidXNlcm5hbWUiOiJ1Iiwi",
                        "cGFzc3dvcmQiOiJwIiwiYXV0aCI6ImRUcHcifX19")},
                    "type": "kubernetes.io/dockerconfigjson"}),
            ),
            (
                "create configmap c2 --from-literal=k=v --from-file=bin.dat",
                CONFIGMAP_C2,
                json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c2", "creationTimestamp": null},
                    "data": {"k": "v"}, "binaryData": {"bin.dat": "AP/+IGJpbmFyeQ=="}}),
            ),
            (
                "create namespace team-a",
                NAMESPACE,
                json!({"kind": "Namespace", "apiVersion": "v1",
                    "metadata": {"name": "team-a", "creationTimestamp": null}, "spec": {}, "status": {}}),
            ),
            (
                "create serviceaccount sa1",
                SERVICEACCOUNT,
                json!({"kind": "ServiceAccount", "apiVersion": "v1",
                    "metadata": {"name": "sa1", "creationTimestamp": null}}),
            ),
            (
                "create deployment d1 --image=busybox --replicas=2",
                DEPLOYMENT_D1,
                json!({"kind": "Deployment", "apiVersion": "apps/v1",
                    "metadata": {"name": "d1", "creationTimestamp": null, "labels": {"app": "d1"}},
                    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d1"}},
                        "template": {"metadata": {"creationTimestamp": null, "labels": {"app": "d1"}},
                            "spec": {"containers": [{"name": "busybox", "image": "busybox", "resources": {}}]}},
                        "strategy": {}},
                    "status": {}}),
            ),
            (
                "create deployment d2 --image=nginx --port=80 -n apps -- sleep 3600",
                DEPLOYMENT_D2,
                json!({"kind": "Deployment", "apiVersion": "apps/v1",
                    "metadata": {"name": "d2", "namespace": "apps", "creationTimestamp": null, "labels": {"app": "d2"}},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d2"}},
                        "template": {"metadata": {"creationTimestamp": null, "labels": {"app": "d2"}},
                            "spec": {"containers": [{"name": "nginx", "image": "nginx", "command": ["sleep", "3600"],
                                "ports": [{"containerPort": 80}], "resources": {}}]}},
                        "strategy": {}},
                    "status": {}}),
            ),
            (
                "create job j2 --image=busybox -- echo hi",
                JOB_J2,
                json!({"kind": "Job", "apiVersion": "batch/v1", "metadata": {"name": "j2", "creationTimestamp": null},
                    "spec": {"template": {"metadata": {"creationTimestamp": null},
                        "spec": {"containers": [{"name": "j2", "image": "busybox", "command": ["echo", "hi"],
                            "resources": {}}], "restartPolicy": "Never"}}},
                    "status": {}}),
            ),
            (
                "create cronjob cj1 --image=busybox --schedule='*/5 * * * *' --restart=OnFailure -- date",
                CRONJOB_CJ1,
                json!({"kind": "CronJob", "apiVersion": "batch/v1",
                    "metadata": {"name": "cj1", "creationTimestamp": null},
                    "spec": {"schedule": "*/5 * * * *",
                        "jobTemplate": {"metadata": {"name": "cj1", "creationTimestamp": null},
                            "spec": {"template": {"metadata": {"creationTimestamp": null},
                                "spec": {"containers": [{"name": "cj1", "image": "busybox", "command": ["date"],
                                    "resources": {}}], "restartPolicy": "OnFailure"}}}}},
                    "status": {}}),
            ),
            (
                "create service nodeport np1 --tcp=5678:http --node-port=30080",
                SERVICE_NODEPORT,
                json!({"kind": "Service", "apiVersion": "v1",
                    "metadata": {"name": "np1", "creationTimestamp": null, "labels": {"app": "np1"}},
                    "spec": {"ports": [{"name": "5678-http", "protocol": "TCP", "port": 5678, "targetPort": "http",
                        "nodePort": 30080}], "selector": {"app": "np1"}, "type": "NodePort"},
                    "status": {"loadBalancer": {}}}),
            ),
            (
                "create token default",
                TOKEN_DEFAULT,
                json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                    "metadata": {"creationTimestamp": null}, "spec": {},
                    "status": {"token": "", "expirationTimestamp": null}}),
            ),
            (
                "create token default --audience=x --duration=10m --bound-object-kind=Pod ...",
                TOKEN_BOUND,
                json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                    "metadata": {"creationTimestamp": null},
                    "spec": {"audiences": ["x"], "expirationSeconds": 600,
                        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p1", "uid": "u-1"}},
                    "status": {"token": "", "expirationTimestamp": null}}),
            ),
            (
                "autoscale deployment web --min=2 --max=5 --cpu-percent=80",
                HPA_WEB,
                json!({"kind": "HorizontalPodAutoscaler", "apiVersion": "autoscaling/v1",
                    "metadata": {"name": "web", "creationTimestamp": null},
                    "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                        "minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 80},
                    "status": {"currentReplicas": 0, "desiredReplicas": 0}}),
            ),
            (
                "autoscale deployment web --max=3 --name=web-hpa",
                HPA_WEB_HPA,
                json!({"kind": "HorizontalPodAutoscaler", "apiVersion": "autoscaling/v1",
                    "metadata": {"name": "web-hpa", "creationTimestamp": null},
                    "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                        "maxReplicas": 3},
                    "status": {"currentReplicas": 0, "desiredReplicas": 0}}),
            ),
            (
                "create quota q --hard=pods=2,cpu=1,requests.memory=1Gi --scopes=BestEffort,NotTerminating",
                QUOTA_Q,
                json!({"kind": "ResourceQuota", "apiVersion": "v1", "metadata": {"name": "q", "creationTimestamp": null},
                    "spec": {"hard": {"cpu": "1", "pods": "2", "requests.memory": "1Gi"},
                        "scopes": ["BestEffort", "NotTerminating"]},
                    "status": {}}),
            ),
            (
                "create quota q2 --hard=pods=10,services=3",
                QUOTA_Q2,
                json!({"kind": "ResourceQuota", "apiVersion": "v1",
                    "metadata": {"name": "q2", "creationTimestamp": null},
                    "spec": {"hard": {"pods": "10", "services": "3"}}, "status": {}}),
            ),
            (
                "create quota q3 --hard=count/deployments.apps=1 --scopes=PriorityClass",
                QUOTA_Q3,
                json!({"kind": "ResourceQuota", "apiVersion": "v1",
                    "metadata": {"name": "q3", "creationTimestamp": null},
                    "spec": {"hard": {"count/deployments.apps": "1"}, "scopes": ["PriorityClass"]}, "status": {}}),
            ),
            (
                "create priorityclass high --value=1000 --description='high priority' --preemption-policy=Never ...",
                PRIORITY_CLASS_HIGH,
                json!({"kind": "PriorityClass", "apiVersion": "scheduling.k8s.io/v1",
                    "metadata": {"name": "high", "creationTimestamp": null},
                    "value": 1000, "description": "high priority", "preemptionPolicy": "Never"}),
            ),
            (
                "create priorityclass default-pc --value=0 --global-default=true",
                PRIORITY_CLASS_DEFAULT,
                json!({"kind": "PriorityClass", "apiVersion": "scheduling.k8s.io/v1",
                    "metadata": {"name": "default-pc", "creationTimestamp": null},
                    "value": 0, "globalDefault": true, "preemptionPolicy": "PreemptLowerPriority"}),
            ),
            (
                "create ingress simple --rule='foo.com/bar=svc1:8080,tls=my-cert' --class=nginx ...",
                INGRESS_SIMPLE,
                json!({"kind": "Ingress", "apiVersion": "networking.k8s.io/v1",
                    "metadata": {"name": "simple", "creationTimestamp": null},
                    "spec": {"ingressClassName": "nginx",
                        "defaultBackend": {"service": {"name": "defaultsvc", "port": {"name": "http"}}},
                        "tls": [{"hosts": ["foo.com"], "secretName": "my-cert"}],
                        "rules": [{"host": "foo.com", "http": {"paths": [{"path": "/bar", "pathType": "Exact",
                            "backend": {"service": {"name": "svc1", "port": {"number": 8080}}}}]}}]},
                    "status": {"loadBalancer": {}}}),
            ),
            (
                "create ingress multi --rule='foo.com/=svc:https,tls' --rule='*.bar.com/admin*=admin:80' ...",
                INGRESS_MULTI,
                json!({"kind": "Ingress", "apiVersion": "networking.k8s.io/v1",
                    "metadata": {"name": "multi", "creationTimestamp": null, "annotations": {"a": "b"}},
                    "spec": {"tls": [{"hosts": ["foo.com"]}],
                        "rules": [
                            {"host": "foo.com", "http": {"paths": [{"path": "/", "pathType": "Exact",
                                "backend": {"service": {"name": "svc", "port": {"name": "https"}}}}]}},
                            {"host": "*.bar.com", "http": {"paths": [{"path": "/admin", "pathType": "Prefix",
                                "backend": {"service": {"name": "admin", "port": {"number": 80}}}}]}},
                            {"http": {"paths": [{"path": "/path", "pathType": "Exact",
                                "backend": {"service": {"name": "svc2", "port": {"number": 8080}}}}]}},
                        ]},
                    "status": {"loadBalancer": {}}}),
            ),
            (
                "create ingress backendonly --default-backend=svc:80",
                INGRESS_BACKEND_ONLY,
                json!({"kind": "Ingress", "apiVersion": "networking.k8s.io/v1",
                    "metadata": {"name": "backendonly", "creationTimestamp": null},
                    "spec": {"defaultBackend": {"service": {"name": "svc", "port": {"number": 80}}}},
                    "status": {"loadBalancer": {}}}),
            ),
            (
                "create service clusterip web --tcp=80:8080",
                SERVICE_CLUSTERIP,
                json!({"kind": "Service", "apiVersion": "v1",
                    "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
                    "spec": {"ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                        "selector": {"app": "web"}, "type": "ClusterIP"},
                    "status": {"loadBalancer": {}}}),
            ),
            (
                "create service clusterip hl --clusterip=None",
                SERVICE_HEADLESS,
                json!({"kind": "Service", "apiVersion": "v1",
                    "metadata": {"name": "hl", "creationTimestamp": null, "labels": {"app": "hl"}},
                    "spec": {"selector": {"app": "hl"}, "clusterIP": "None", "type": "ClusterIP"},
                    "status": {"loadBalancer": {}}}),
            ),
            (
                "create service externalname ext --external-name=example.com",
                SERVICE_EXTERNALNAME,
                json!({"kind": "Service", "apiVersion": "v1",
                    "metadata": {"name": "ext", "creationTimestamp": null, "labels": {"app": "ext"}},
                    "spec": {"selector": {"app": "ext"}, "type": "ExternalName", "externalName": "example.com"},
                    "status": {"loadBalancer": {}}}),
            ),
            (
                "create service loadbalancer lb --tcp=443:8443",
                SERVICE_LOADBALANCER,
                json!({"kind": "Service", "apiVersion": "v1",
                    "metadata": {"name": "lb", "creationTimestamp": null, "labels": {"app": "lb"}},
                    "spec": {"ports": [{"name": "443-8443", "protocol": "TCP", "port": 443, "targetPort": 8443}],
                        "selector": {"app": "lb"}, "type": "LoadBalancer"},
                    "status": {"loadBalancer": {}}}),
            ),
            (
                "create cronjob cj --image=busybox --schedule='*/1 * * * *' -- echo hi",
                CRONJOB_CJ,
                json!({"kind": "CronJob", "apiVersion": "batch/v1",
                    "metadata": {"name": "cj", "creationTimestamp": null},
                    "spec": {"schedule": "*/1 * * * *",
                        "jobTemplate": {"metadata": {"name": "cj", "creationTimestamp": null},
                            "spec": {"template": {"metadata": {"creationTimestamp": null},
                                "spec": {"containers": [{"name": "cj", "image": "busybox", "command": ["echo", "hi"],
                                    "resources": {}}], "restartPolicy": "OnFailure"}}}}},
                    "status": {}}),
            ),
        ]
    }

    #[test]
    fn captured_kubectl_bodies_decode_to_what_kubectl_prints() {
        for (command, body, expected) in captured_cases() {
            assert_eq!(decoded(&hex(body)), expected, "kubectl {command}");
        }
    }

    #[test]
    fn secret_data_becomes_base64() {
        let raw = Encoder::new()
            .message(1, go_object_meta("s1", &[]))
            .entry(2, "a", b"b")
            .entry(2, "bin", &[0, 0xff, 0xfe, 0x20])
            .entry(2, "empty", b"")
            .string(3, "Opaque")
            .entry(4, "plain", b"text")
            .varint(5, 1);
        let object = decoded(&body("v1", "Secret", raw));
        assert_eq!(
            object,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1", "creationTimestamp": null},
                "data": {"a": "Yg==", "bin": "AP/+IA==", "empty": ""}, "type": "Opaque",
                "stringData": {"plain": "text"}, "immutable": true})
        );
    }

    #[test]
    fn configmap_keeps_data_and_encodes_binary_data() {
        let raw = Encoder::new()
            .message(1, go_object_meta("c1", &[]))
            .entry(2, "k", b"v")
            .entry(2, "multi", b"line one\nline two")
            .entry(3, "blob", b"ab")
            .varint(4, 0);
        let object = decoded(&body("v1", "ConfigMap", raw));
        assert_eq!(
            object,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1", "creationTimestamp": null},
                "data": {"k": "v", "multi": "line one\nline two"}, "binaryData": {"blob": "YWI="},
                "immutable": false})
        );
    }

    #[test]
    fn namespace_with_labels_annotations_and_finalizers() {
        let meta = go_object_meta("team-a", &[("env", "prod"), ("tier", "")])
            .entry(12, "note", b"owned by a")
            .string(14, "example.com/cleanup");
        let raw = Encoder::new()
            .message(1, meta)
            .message(2, Encoder::new().string(1, "kubernetes"))
            .message(3, Encoder::new().string(1, ""));
        let object = decoded(&body("v1", "Namespace", raw));
        assert_eq!(
            object,
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "team-a", "creationTimestamp": null, "labels": {"env": "prod", "tier": ""},
                    "annotations": {"note": "owned by a"}, "finalizers": ["example.com/cleanup"]},
                "spec": {"finalizers": ["kubernetes"]}, "status": {}})
        );
    }

    /// `kubectl create deployment d1 --image=busybox --replicas=2`, field by field as Go writes it.
    fn deployment_d1() -> Encoder {
        let labels = [("app", "d1")];
        let selector = Encoder::new().entry(1, "app", b"d1");
        let template = go_pod_template(&labels, go_pod_spec(vec![go_container("busybox", "busybox", &[])], ""));
        let spec = Encoder::new()
            .varint(1, 2)
            .message(2, selector)
            .message(3, template)
            .message(4, Encoder::new().string(1, ""))
            .varint(5, 0)
            .varint(7, 0);
        let status = (1..=5).chain([7]).fold(Encoder::new(), |status, number| status.varint(number, 0));
        Encoder::new().message(1, go_object_meta("d1", &labels)).message(2, spec).message(3, status)
    }

    #[test]
    fn deployment_as_kubectl_creates_it() {
        let body = body("apps/v1", "Deployment", deployment_d1());
        assert_eq!(body, hex(DEPLOYMENT_D1), "the hand-built body is byte for byte kubectl's");
        assert_eq!(
            decoded(&body),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "d1", "creationTimestamp": null, "labels": {"app": "d1"}},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "d1"}},
                    "template": {"metadata": {"creationTimestamp": null, "labels": {"app": "d1"}},
                        "spec": {"containers": [{"name": "busybox", "image": "busybox", "resources": {}}]}},
                    "strategy": {}},
                "status": {}})
        );
    }

    #[test]
    fn deployment_strategy_selector_and_int_or_string() {
        let rolling_update = Encoder::new()
            .message(1, Encoder::new().varint(1, 0).varint(2, 1).string(3, ""))
            .message(2, Encoder::new().varint(1, 1).varint(2, 0).string(3, "25%"));
        let expression = Encoder::new().string(1, "tier").string(2, "In").string(3, "web").string(3, "api");
        let spec = Encoder::new()
            .varint(1, 0)
            .message(2, Encoder::new().message(2, expression))
            .message(4, Encoder::new().string(1, "RollingUpdate").message(2, rolling_update))
            .varint(5, 5)
            .varint(6, 10)
            .varint(7, 1)
            .varint(9, 600);
        let object = decoded(&body("apps/v1", "Deployment", Encoder::new().message(2, spec)));
        assert_eq!(
            object["spec"],
            json!({"replicas": 0,
                "selector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}},
                "minReadySeconds": 5, "revisionHistoryLimit": 10, "paused": true, "progressDeadlineSeconds": 600})
        );
    }

    #[test]
    fn job_as_kubectl_creates_it_and_with_every_spec_field() {
        let template = go_pod_template(&[], go_pod_spec(vec![go_container("j2", "busybox", &["echo", "hi"])], "Never"));
        let raw = Encoder::new()
            .message(1, go_object_meta("j2", &[]))
            .message(2, Encoder::new().message(6, template.clone()))
            .message(3, Encoder::new().varint(4, 0).varint(5, 0).varint(6, 0).string(7, ""));
        assert_eq!(body("batch/v1", "Job", raw), hex(JOB_J2), "the hand-built body is byte for byte kubectl's");

        let spec = Encoder::new()
            .varint(1, 2)
            .varint(2, 4)
            .varint(3, 120)
            .message(4, Encoder::new().entry(1, "job", b"j3"))
            .varint(5, 1)
            .message(6, template)
            .varint(7, 0)
            .varint(8, 100)
            .string(9, "Indexed")
            .varint(10, 0);
        let object = decoded(&body("batch/v1", "Job", Encoder::new().message(2, spec)));
        let spec = &object["spec"];
        assert_eq!(spec["parallelism"], 2);
        assert_eq!(spec["completions"], 4);
        assert_eq!(spec["activeDeadlineSeconds"], 120);
        assert_eq!(spec["selector"], json!({"matchLabels": {"job": "j3"}}));
        assert_eq!(spec["manualSelector"], true);
        assert_eq!(spec["backoffLimit"], 0, "a pointer field keeps its zero");
        assert_eq!(spec["ttlSecondsAfterFinished"], 100);
        assert_eq!(spec["completionMode"], "Indexed");
        assert_eq!(spec["suspend"], false, "a pointer field keeps its zero");
        assert_eq!(spec["template"]["spec"]["containers"][0]["command"], json!(["echo", "hi"]));
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    }

    #[test]
    fn cronjob_with_schedule_and_job_template() {
        let template = go_pod_template(&[], go_pod_spec(vec![go_container("cj1", "busybox", &["date"])], "OnFailure"));
        let job_template = Encoder::new()
            .message(1, go_object_meta("cj1", &[]))
            .message(2, Encoder::new().varint(7, 3).message(6, template));
        let spec = Encoder::new()
            .string(1, "*/5 * * * *")
            .varint(2, 30)
            .string(3, "Forbid")
            .varint(4, 0)
            .message(5, job_template)
            .varint(6, 3)
            .varint(7, 1)
            .string(8, "Europe/Paris");
        let status = Encoder::new().message(4, Encoder::new().varint(1, 1_700_000_000).varint(2, 500));
        let raw = Encoder::new().message(1, go_object_meta("cj1", &[])).message(2, spec).message(3, status);
        let object = decoded(&body("batch/v1", "CronJob", raw));
        assert_eq!(
            object,
            json!({"apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": {"name": "cj1", "creationTimestamp": null},
                "spec": {"schedule": "*/5 * * * *", "startingDeadlineSeconds": 30, "concurrencyPolicy": "Forbid",
                    "suspend": false, "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
                    "timeZone": "Europe/Paris",
                    "jobTemplate": {"metadata": {"name": "cj1", "creationTimestamp": null},
                        "spec": {"backoffLimit": 3, "template": {"metadata": {"creationTimestamp": null},
                            "spec": {"containers": [{"name": "cj1", "image": "busybox", "command": ["date"],
                                "resources": {}}], "restartPolicy": "OnFailure"}}}}},
                "status": {"lastScheduleTime": "2023-11-14T22:13:20Z"}})
        );
    }

    #[test]
    fn pod_containers_env_volumes_probes_and_security() {
        let quantity = |value: &str| Encoder::new().string(1, value).0;
        let resources = Encoder::new().entry(1, "memory", &quantity("128Mi")).entry(2, "cpu", &quantity("250m")).entry(
            2,
            "gpu",
            &[],
        );
        let secret_key_ref =
            Encoder::new().message(1, Encoder::new().string(1, "creds")).string(2, "password").varint(3, 1);
        let field_ref = Encoder::new().string(1, "").string(2, "metadata.name");
        let named_port = Encoder::new().varint(1, 1).varint(2, 0).string(3, "http");
        let http_get = Encoder::new().string(1, "/healthz").message(2, named_port);
        let probe =
            Encoder::new().message(1, Encoder::new().message(2, http_get)).varint(2, 0).varint(3, 1).varint(4, 10);
        let capabilities = Encoder::new().string(2, "ALL");
        let container = Encoder::new()
            .string(1, "app")
            .string(2, "nginx:1.27")
            .string(4, "--verbose")
            .message(6, Encoder::new().string(1, "http").varint(2, 0).varint(3, 80).string(4, "TCP").string(5, ""))
            .message(7, Encoder::new().string(1, "MODE").string(2, "fast"))
            .message(
                7,
                Encoder::new()
                    .string(1, "PASSWORD")
                    .string(2, "")
                    .message(3, Encoder::new().message(4, secret_key_ref)),
            )
            .message(7, Encoder::new().string(1, "POD").message(3, Encoder::new().message(1, field_ref)))
            .message(8, resources)
            .message(9, Encoder::new().string(1, "config").varint(2, 1).string(3, "/etc/app"))
            .message(10, probe)
            .string(14, "IfNotPresent")
            .message(15, Encoder::new().message(1, capabilities).varint(4, 1000).varint(7, 0));
        let config_map_source = Encoder::new().message(1, Encoder::new().string(1, "app-config")).varint(3, 0o644);
        let config_volume =
            Encoder::new().string(1, "config").message(2, Encoder::new().message(19, config_map_source));
        let empty_dir_source = Encoder::new().string(1, "Memory").message(2, Encoder::new().string(1, "1Gi"));
        let scratch_volume =
            Encoder::new().string(1, "scratch").message(2, Encoder::new().message(2, empty_dir_source));
        // supplementalGroups both packed (1, 2, 10000) and as a lone varint (3).
        let pod_security = Encoder::new().bytes(4, &[1, 2, 0x90, 0x4e]).varint(4, 3).varint(5, 2000);
        let toleration =
            Encoder::new().string(1, "dedicated").string(2, "Equal").string(3, "gpu").string(4, "NoSchedule");
        let spec = Encoder::new()
            .message(1, config_volume)
            .message(1, scratch_volume)
            .message(2, container)
            .varint(4, 30)
            .entry(7, "disk", b"ssd")
            .message(14, pod_security)
            .message(22, toleration);
        let object =
            decoded(&body("v1", "Pod", Encoder::new().message(1, go_object_meta("web-0", &[])).message(2, spec)));
        assert_eq!(
            object["spec"],
            json!({
                "volumes": [
                    {"name": "config", "configMap": {"name": "app-config", "defaultMode": 420}},
                    {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                ],
                "containers": [{
                    "name": "app", "image": "nginx:1.27", "args": ["--verbose"],
                    "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                    "env": [
                        {"name": "MODE", "value": "fast"},
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password",
                            "optional": true}}},
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    ],
                    "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "250m", "gpu": "0"}},
                    "volumeMounts": [{"name": "config", "readOnly": true, "mountPath": "/etc/app"}],
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "timeoutSeconds": 1,
                        "periodSeconds": 10},
                    "imagePullPolicy": "IfNotPresent",
                    "securityContext": {"capabilities": {"drop": ["ALL"]}, "runAsUser": 1000,
                        "allowPrivilegeEscalation": false},
                }],
                "terminationGracePeriodSeconds": 30,
                "nodeSelector": {"disk": "ssd"},
                "securityContext": {"supplementalGroups": [1, 2, 10000, 3], "fsGroup": 2000},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
            })
        );
    }

    #[test]
    fn service_ports_with_numeric_and_named_target_ports() {
        let port = |name: &str, port: u64, target: Encoder| {
            Encoder::new().string(1, name).string(2, "TCP").varint(3, port).message(4, target).varint(5, 0)
        };
        let spec = Encoder::new()
            .message(1, port("web", 80, Encoder::new().varint(1, 0).varint(2, 8080).string(3, "")))
            .message(1, port("admin", 9000, Encoder::new().varint(1, 1).varint(2, 0).string(3, "admin")))
            .entry(2, "app", b"web")
            .string(3, "")
            .string(4, "ClusterIP")
            .string(7, "")
            .varint(12, 0)
            .varint(13, 0);
        let raw = Encoder::new()
            .message(1, go_object_meta("web", &[]))
            .message(2, spec)
            .message(3, Encoder::new().message(1, Encoder::new()));
        let object = decoded(&body("v1", "Service", raw));
        assert_eq!(
            object["spec"],
            json!({"ports": [{"name": "web", "protocol": "TCP", "port": 80, "targetPort": 8080},
                    {"name": "admin", "protocol": "TCP", "port": 9000, "targetPort": "admin"}],
                "selector": {"app": "web"}, "type": "ClusterIP"})
        );
        assert_eq!(object["status"], json!({"loadBalancer": {}}));
    }

    #[test]
    fn resource_quota_scope_selector_and_status() {
        let quantity = |value: &str| Encoder::new().string(1, value).0;
        let requirement = Encoder::new().string(1, "PriorityClass").string(2, "In").string(3, "high").string(3, "low");
        let spec = Encoder::new()
            .entry(1, "pods", &quantity("4"))
            .message(3, Encoder::new().message(1, requirement))
            .message(3, Encoder::new().message(1, Encoder::new().string(1, "BestEffort").string(2, "Exists")));
        let status =
            Encoder::new().entry(1, "pods", &quantity("4")).entry(2, "pods", &quantity("1")).entry(2, "cpu", &[]);
        let raw = Encoder::new().message(1, go_object_meta("q", &[])).message(2, spec).message(3, status);
        let object = decoded(&body("v1", "ResourceQuota", raw));
        assert_eq!(
            object,
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q", "creationTimestamp": null},
                "spec": {"hard": {"pods": "4"},
                    "scopeSelector": {"matchExpressions": [
                        {"scopeName": "PriorityClass", "operator": "In", "values": ["high", "low"]},
                        {"scopeName": "BestEffort", "operator": "Exists"}]}},
                "status": {"hard": {"pods": "4"}, "used": {"pods": "1", "cpu": "0"}}})
        );
    }

    #[test]
    fn horizontal_pod_autoscaler_keeps_pointer_zeros_and_reads_its_status() {
        let target = Encoder::new().string(1, "StatefulSet").string(2, "db").string(3, "");
        let spec = Encoder::new().message(1, target).varint(2, 0).varint(3, 4).varint(4, 0);
        let status = Encoder::new()
            .varint(1, 7)
            .message(2, Encoder::new().varint(1, 1_700_000_000))
            .varint(3, 2)
            .varint(4, 3)
            .varint(5, 95);
        let raw = Encoder::new().message(1, go_object_meta("db", &[])).message(2, spec).message(3, status);
        let object = decoded(&body("autoscaling/v1", "HorizontalPodAutoscaler", raw));
        assert_eq!(
            object,
            json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "db", "creationTimestamp": null},
                "spec": {"scaleTargetRef": {"kind": "StatefulSet", "name": "db"}, "minReplicas": 0, "maxReplicas": 4,
                    "targetCPUUtilizationPercentage": 0},
                "status": {"observedGeneration": 7, "lastScaleTime": "2023-11-14T22:13:20Z", "currentReplicas": 2,
                    "desiredReplicas": 3, "currentCPUUtilizationPercentage": 95}})
        );
    }

    #[test]
    fn ingress_resource_backends_and_load_balancer_status() {
        let bucket =
            |name: &str| Encoder::new().string(1, "k8s.example.com").string(2, "StorageBucket").string(3, name);
        let path = Encoder::new()
            .string(1, "/static")
            .message(2, Encoder::new().message(3, bucket("assets")))
            .string(3, "ImplementationSpecific");
        let rule = Encoder::new().string(1, "").message(2, Encoder::new().message(1, Encoder::new().message(1, path)));
        let spec =
            Encoder::new().message(1, Encoder::new().message(3, bucket("fallback"))).message(3, rule).string(4, "");
        let port = Encoder::new().varint(1, 443).string(2, "TCP").string(3, "");
        let load_balancer = Encoder::new()
            .message(1, Encoder::new().string(1, "192.0.2.10").string(2, "").message(4, port))
            .message(1, Encoder::new().string(1, "").string(2, "lb.example.com"));
        let raw = Encoder::new()
            .message(1, go_object_meta("assets", &[]))
            .message(2, spec)
            .message(3, Encoder::new().message(1, load_balancer));
        let object = decoded(&body("networking.k8s.io/v1", "Ingress", raw));
        assert_eq!(
            object,
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "assets", "creationTimestamp": null},
                "spec": {
                    "defaultBackend": {"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket",
                        "name": "fallback"}},
                    "rules": [{"http": {"paths": [{"path": "/static", "pathType": "ImplementationSpecific",
                        "backend": {"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket",
                            "name": "assets"}}}]}}],
                    "ingressClassName": ""},
                "status": {"loadBalancer": {"ingress": [
                    {"ip": "192.0.2.10", "ports": [{"port": 443, "protocol": "TCP", "error": ""}]},
                    {"hostname": "lb.example.com"}]}}})
        );

        let rule = Encoder::new().string(1, "foo.com").message(2, Encoder::new().string(2, "grpc"));
        let error = decode_object(&body(
            "networking.k8s.io/v1",
            "Ingress",
            Encoder::new().message(2, Encoder::new().message(3, rule)),
        ));
        assert_eq!(
            error,
            Err(ProtobufError::UnknownField {
                message: "IngressRuleValue",
                number: 2,
                path: "Ingress.spec.rules".into()
            })
        );
    }

    #[test]
    fn object_meta_times_owner_references_and_managed_fields() {
        let owner = Encoder::new()
            .string(1, "ReplicaSet")
            .string(3, "web-6d4")
            .string(4, "uid-1")
            .string(5, "apps/v1")
            .varint(6, 1)
            .varint(7, 0);
        let managed = Encoder::new()
            .string(1, "kubectl")
            .string(2, "Update")
            .message(4, Encoder::new().varint(1, 951_782_400))
            .string(6, "FieldsV1")
            .message(7, Encoder::new().bytes(1, br#"{"f:metadata":{}}"#));
        let meta = Encoder::new()
            .string(1, "web")
            .string(5, "uid-2")
            .varint(7, 3)
            .message(8, Encoder::new().varint(1, 1_709_164_800).varint(2, 999_999_999))
            .message(9, Encoder::new().varint(1, u64::MAX)) // -1: a second before the epoch
            .varint(10, 0)
            .message(13, owner)
            .message(17, managed);
        let object = decoded(&body("v1", "ConfigMap", Encoder::new().message(1, meta)));
        assert_eq!(
            object["metadata"],
            json!({"name": "web", "uid": "uid-2", "generation": 3,
                "creationTimestamp": "2024-02-29T00:00:00Z", "deletionTimestamp": "1969-12-31T23:59:59Z",
                "deletionGracePeriodSeconds": 0,
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-6d4", "uid": "uid-1",
                    "apiVersion": "apps/v1", "controller": true, "blockOwnerDeletion": false}],
                "managedFields": [{"manager": "kubectl", "operation": "Update", "time": "2000-02-29T00:00:00Z",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]})
        );
    }

    #[test]
    fn go_zero_time_is_null_and_far_times_are_refused() {
        let zero = Encoder::new().message(8, Encoder::new().varint(1, time::ZERO_TIME_SECONDS as u64));
        let object = decoded(&body("v1", "ConfigMap", Encoder::new().message(1, zero)));
        assert_eq!(object["metadata"], json!({"creationTimestamp": null}));

        let far = Encoder::new().message(8, Encoder::new().varint(1, i64::MAX as u64).varint(2, 2_000_000_000));
        let error = decode_object(&body("v1", "ConfigMap", Encoder::new().message(1, far))).unwrap_err();
        assert_eq!(
            error,
            ProtobufError::InvalidValue {
                path: "ConfigMap.metadata.creationTimestamp".into(),
                problem: "time out of range"
            }
        );
    }

    #[test]
    fn repeated_singular_fields_merge_messages_and_keep_the_last_scalar() {
        let raw = Encoder::new()
            .message(1, Encoder::new().string(1, "first").entry(11, "a", b"1"))
            .message(1, Encoder::new().string(1, "second").entry(11, "b", b"2").entry(11, "a", b"3"))
            .string(3, "Opaque")
            .string(3, "");
        let object = decoded(&body("v1", "Secret", raw));
        assert_eq!(
            object,
            json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "second", "labels": {"a": "3", "b": "2"}}})
        );
    }

    #[test]
    fn missing_map_parts_are_their_zero_values() {
        let raw = Encoder::new().message(2, Encoder::new().string(1, "only-key")).message(2, Encoder::new());
        let object = decoded(&body("v1", "ConfigMap", raw));
        assert_eq!(object["data"], json!({"only-key": "", "": ""}));
    }

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn envelope_problems_are_refused() {
        assert_eq!(decode_object(b""), Err(ProtobufError::MissingPrefix));
        assert_eq!(decode_object(br#"{"kind":"Secret"}"#), Err(ProtobufError::MissingPrefix));
        let mut wrong_magic = hex(SECRET_S1);
        wrong_magic[3] = 1;
        assert_eq!(decode_object(&wrong_magic), Err(ProtobufError::MissingPrefix));

        let unknown_kind = body("apps/v1", "StatefulSet", Encoder::new());
        assert_eq!(
            decode_object(&unknown_kind).unwrap_err().to_string(),
            r#"protobuf bodies of kind "StatefulSet" in "apps/v1" are not supported"#
        );
        let wrong_group = body("v1", "Deployment", Encoder::new());
        assert!(matches!(decode_object(&wrong_group), Err(ProtobufError::UnsupportedKind { .. })));
        assert!(matches!(decode_object(MAGIC), Err(ProtobufError::UnsupportedKind { .. })));

        let gzip = Encoder::new()
            .message(1, Encoder::new().string(1, "v1").string(2, "Secret"))
            .bytes(2, b"\x1f\x8b")
            .string(3, "gzip");
        let gzip = [MAGIC, &gzip.0].concat();
        assert_eq!(decode_object(&gzip), Err(ProtobufError::ContentEncoding("gzip".into())));

        let json_inside =
            Encoder::new().message(1, Encoder::new().string(1, "v1").string(2, "Secret")).string(4, "application/json");
        let json_inside = [MAGIC, &json_inside.0].concat();
        assert_eq!(decode_object(&json_inside), Err(ProtobufError::ContentType("application/json".into())));

        let extra_envelope_field = [MAGIC, &Encoder::new().string(5, "x").0].concat();
        assert!(matches!(
            decode_object(&extra_envelope_field),
            Err(ProtobufError::UnknownField { message: "Unknown", number: 5, .. })
        ));
    }

    #[test]
    fn truncated_bodies_are_refused() {
        let full = hex(DEPLOYMENT_D1);
        // The envelope's raw field: its key at 27, its length (171, two bytes) at 28, its bytes from 30 to 201.
        assert_eq!((full[27], full[28], full[29]), (0x12, 0xab, 0x01));
        for length in 0..full.len() {
            let result = decode_object(&full[..length]);
            if (28..201).contains(&length) {
                assert_eq!(result, Err(ProtobufError::Truncated), "cut at {length}");
            }
        }
        let mut lying_length = full.clone();
        lying_length[28] = 0xff;
        lying_length[29] = 0x7f;
        assert_eq!(decode_object(&lying_length), Err(ProtobufError::Truncated));
    }

    #[test]
    fn unknown_field_numbers_are_named() {
        let container = go_container("busybox", "busybox", &[]).string(99, "surprise");
        let spec = Encoder::new().message(3, go_pod_template(&[], go_pod_spec(vec![container], "")));
        let error = decode_object(&body("apps/v1", "Deployment", Encoder::new().message(2, spec))).unwrap_err();
        assert_eq!(
            error,
            ProtobufError::UnknownField {
                message: "Container",
                number: 99,
                path: "Deployment.spec.template.spec.containers".into()
            }
        );
        assert_eq!(
            error.to_string(),
            "unknown field number 99 in Container at Deployment.spec.template.spec.containers"
        );

        let removed_cluster_name = Encoder::new().message(1, Encoder::new().string(15, "old"));
        let error = decode_object(&body("v1", "Namespace", removed_cluster_name)).unwrap_err();
        assert!(matches!(error, ProtobufError::UnknownField { message: "ObjectMeta", number: 15, .. }));
    }

    #[test]
    fn unmodelled_messages_are_named_as_unsupported() {
        let pod_spec = go_pod_spec(vec![go_container("c", "busybox", &[])], "").message(18, Encoder::new());
        let spec = Encoder::new().message(3, go_pod_template(&[], pod_spec));
        let error = decode_object(&body("apps/v1", "Deployment", Encoder::new().message(2, spec))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "field Deployment.spec.template.spec.affinity (Affinity) is not supported in protobuf bodies"
        );

        let volume = Encoder::new().string(1, "data").message(2, Encoder::new().message(28, Encoder::new()));
        let error = decode_object(&body("v1", "Pod", Encoder::new().message(2, Encoder::new().message(1, volume))));
        assert_eq!(
            error,
            Err(ProtobufError::UnsupportedField { path: "Pod.spec.volumes.csi".into(), type_name: "CSIVolumeSource" })
        );
    }

    #[test]
    fn malformed_wire_data_is_refused() {
        let secret = |raw: Vec<u8>| {
            let envelope = Encoder::new().message(1, Encoder::new().string(1, "v1").string(2, "Secret")).bytes(2, &raw);
            [MAGIC, &envelope.0].concat()
        };
        assert!(matches!(decode_object(&secret(vec![0x08, 0xff])), Err(ProtobufError::Truncated)));
        assert!(matches!(
            decode_object(&secret(vec![0x08; 1].into_iter().chain([0xff; 11]).collect())),
            Err(ProtobufError::Malformed(_))
        ));
        let overflowing = [&[0x18][..], &[0xff; 9], &[0x02]].concat();
        assert_eq!(decode_object(&secret(overflowing)), Err(ProtobufError::Malformed("varint overflows 64 bits")));
        assert_eq!(
            decode_object(&secret(vec![0x00, 0x00])),
            Err(ProtobufError::Malformed("field number out of range"))
        );
        assert_eq!(decode_object(&secret(vec![0x0b])), Err(ProtobufError::Malformed("groups are not supported")));
        assert_eq!(decode_object(&secret(vec![0x0f])), Err(ProtobufError::Malformed("unknown wire type")));

        let metadata_as_varint = Encoder::new().varint(1, 7).0;
        assert_eq!(
            decode_object(&secret(metadata_as_varint)),
            Err(ProtobufError::WireType {
                path: "Secret.metadata".into(),
                found: "varint",
                expected: "length-delimited"
            })
        );
        let immutable_as_fixed32 = Encoder::new().key(5, 5).0.into_iter().chain([1, 0, 0, 0]).collect();
        assert!(matches!(
            decode_object(&secret(immutable_as_fixed32)),
            Err(ProtobufError::WireType { found: "32-bit", .. })
        ));

        let not_utf8 = Encoder::new().message(1, Encoder::new().bytes(1, &[0xc3, 0x28])).0;
        assert_eq!(
            decode_object(&secret(not_utf8)),
            Err(ProtobufError::InvalidValue {
                path: "Secret.metadata.name".into(),
                problem: "string is not valid utf-8"
            })
        );
        let port = Encoder::new().message(1, Encoder::new().varint(3, 80).message(4, Encoder::new().varint(1, 2)));
        let error = decode_object(&body("v1", "Service", Encoder::new().message(2, port))).unwrap_err();
        assert_eq!(error.to_string(), "invalid value at Service.spec.ports.targetPort: unknown IntOrString type");
    }

    #[test]
    fn deeply_nested_garbage_is_refused_without_recursing_far() {
        let mut nested = Encoder::new().string(1, "bottom");
        for _ in 0..2_000 {
            nested = Encoder::new().message(3, nested);
        }
        let error = decode_object(&body("apps/v1", "Deployment", nested)).unwrap_err();
        assert!(matches!(error, ProtobufError::WireType { .. }), "{error}");

        static NESTED: Message = Message { name: "Nested", fields: &[message(1, "child", &NESTED)] };
        let mut nested = Encoder::new();
        for _ in 0..2_000 {
            nested = Encoder::new().message(1, nested);
        }
        let result = decode_message(&NESTED, &nested.0, &mut Map::new(), &Path::root("Nested"), 0);
        assert_eq!(result, Err(ProtobufError::TooDeep(MAX_DEPTH)));
        let mut shallow = Encoder::new();
        for _ in 0..MAX_DEPTH - 1 {
            shallow = Encoder::new().message(1, shallow);
        }
        assert_eq!(decode_message(&NESTED, &shallow.0, &mut Map::new(), &Path::root("Nested"), 0), Ok(()));
    }

    /// Within each message, with embedded structs inlined, field numbers and JSON names are unique; every
    /// message reachable from a kind is checked once.
    #[test]
    fn schema_table_is_consistent() {
        fn json_names(message: &'static Message, names: &mut Vec<&'static str>) {
            for field in message.fields {
                match field.kind {
                    Kind::Inline(inner) => json_names(inner, names),
                    _ => names.push(field.json),
                }
            }
        }
        let mut pending: Vec<&'static Message> = KINDS.iter().map(|(_, _, message)| *message).collect();
        let mut seen: Vec<&'static str> = Vec::new();
        while let Some(message) = pending.pop() {
            if seen.contains(&message.name) {
                continue;
            }
            seen.push(message.name);
            let mut numbers: Vec<u32> = message.fields.iter().map(|field| field.number).collect();
            numbers.sort_unstable();
            numbers.dedup();
            assert_eq!(numbers.len(), message.fields.len(), "duplicate field number in {}", message.name);
            let mut names = Vec::new();
            json_names(message, &mut names);
            let count = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), count, "duplicate json name in {}", message.name);
            for field in message.fields {
                if let Kind::Message(inner) | Kind::Inline(inner) = field.kind {
                    pending.push(inner);
                }
            }
        }
        assert!(seen.len() > 80, "{} messages", seen.len());
    }

    proptest! {
        #[test]
        fn random_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_object(&[MAGIC, &bytes].concat());
            let _ = decode_object(&bytes);
        }

        #[test]
        fn mutated_kubectl_bodies_never_panic(
            case in 0usize..captured_cases().len(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut body = hex(captured_cases()[case].1);
            for (index, byte) in edits {
                let at = index.index(body.len());
                body[at] = byte;
            }
            let _ = decode_object(&body);
        }

        #[test]
        fn bodies_cut_anywhere_never_panic(case in 0usize..captured_cases().len(), cut in any::<prop::sample::Index>()) {
            let body = hex(captured_cases()[case].1);
            let _ = decode_object(&body[..cut.index(body.len() + 1)]);
        }
    }
}
