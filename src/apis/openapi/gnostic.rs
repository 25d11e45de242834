//! A Swagger 2.0 document in the protobuf encoding client-go decodes from `/openapi/v2` whatever the Content-Type
//! says: gnostic's `openapi.v2.Document` (github.com/google/gnostic-models, `openapiv2/OpenAPIv2.proto`).
//!
//! The encoder walks the JSON document with one table per message: for each JSON key, the field number and type
//! its message gives it. Maps (`paths`, `definitions`, `properties`, `responses`) become repeated `Named...`
//! pairs in the JSON's order; vendor extensions (`x-...`) become `NamedAny`s whose `Any.yaml` holds the value as
//! JSON text, which is YAML to the readers. Messages that are a choice (`ParametersItem`, `NonBodyParameter`,
//! `AdditionalPropertiesItem`, ...) pick their member from the JSON as gnostic's own compiler does.
//!
//! Invariant: what is encoded says what the JSON says. A key its message does not have, or a value of the wrong
//! JSON type, is an error naming where it is, never dropped.

use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the openapi v2 document cannot be encoded as protobuf at {path}: {problem}")]
pub struct EncodeError {
    pub path: String,
    pub problem: String,
}

type Result<T> = std::result::Result<T, EncodeError>;

/// Encodes one message from its JSON value; the `&str` is where the value is, for errors.
type Encode = fn(&Value, &str) -> Result<Vec<u8>>;

/// How a JSON value becomes a protobuf field.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bool,
    Int64,
    Double,
    /// `repeated string` from an array.
    Strings,
    /// `Any` holding the value as YAML.
    Any,
    /// `repeated Any` from an array.
    Anys,
    Message(Encode),
    /// `repeated` messages from an array.
    Messages(Encode),
}

/// A message's fields by JSON name, and the number of its `repeated NamedAny vendor_extension` field.
struct Fields {
    fields: &'static [(&'static str, u32, Kind)],
    extensions: Option<u32>,
}

/// The encoding of `document`, a Swagger 2.0 document.
pub fn encode_document(document: &Value) -> Result<Vec<u8>> {
    document_message(document, "")
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint((u64::from(field) << 3) | u64::from(wire_type));
    }

    /// A length-delimited field: a string, or an encoded message.
    fn bytes(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn varint_field(&mut self, field: u32, value: u64) {
        self.key(field, 0);
        self.varint(value);
    }

    fn double(&mut self, field: u32, value: f64) {
        self.key(field, 1);
        self.0.extend_from_slice(&value.to_le_bytes());
    }
}

fn error(path: &str, problem: impl Into<String>) -> EncodeError {
    EncodeError { path: if path.is_empty() { "the document".into() } else { path.into() }, problem: problem.into() }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

fn object<'v>(value: &'v Value, path: &str) -> Result<&'v Map<String, Value>> {
    value.as_object().ok_or_else(|| error(path, "expected an object"))
}

fn array<'v>(value: &'v Value, path: &str) -> Result<&'v Vec<Value>> {
    value.as_array().ok_or_else(|| error(path, "expected an array"))
}

fn string<'v>(value: &'v Value, path: &str) -> Result<&'v str> {
    value.as_str().ok_or_else(|| error(path, "expected a string"))
}

/// `Any { string yaml = 2; }`.
fn any(value: &Value) -> Vec<u8> {
    let mut w = Writer::default();
    w.bytes(2, value.to_string().as_bytes());
    w.0
}

/// A `Named...` pair: `string name = 1;` and the encoded value as field 2.
fn named(name: &str, value: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.bytes(1, name.as_bytes());
    w.bytes(2, value);
    w.0
}

fn field(w: &mut Writer, number: u32, kind: Kind, value: &Value, path: &str) -> Result<()> {
    match kind {
        Kind::Str => w.bytes(number, string(value, path)?.as_bytes()),
        Kind::Bool => {
            w.varint_field(number, u64::from(value.as_bool().ok_or_else(|| error(path, "expected a boolean"))?))
        }
        Kind::Int64 => {
            let n = value.as_i64().ok_or_else(|| error(path, "expected an integer of at most 64 bits"))?;
            // Negative int64s are encoded as their two's complement, in ten bytes.
            w.varint_field(number, n as u64)
        }
        Kind::Double => w.double(number, value.as_f64().ok_or_else(|| error(path, "expected a number"))?),
        Kind::Strings => {
            for (i, s) in array(value, path)?.iter().enumerate() {
                w.bytes(number, string(s, &index(path, i))?.as_bytes());
            }
        }
        Kind::Any => w.bytes(number, &any(value)),
        Kind::Anys => {
            for item in array(value, path)? {
                w.bytes(number, &any(item));
            }
        }
        Kind::Message(encode) => w.bytes(number, &encode(value, path)?),
        Kind::Messages(encode) => {
            for (i, item) in array(value, path)?.iter().enumerate() {
                w.bytes(number, &encode(item, &index(path, i))?);
            }
        }
    }
    Ok(())
}

/// A message with fixed fields, from a JSON object.
fn message(value: &Value, path: &str, fields: &Fields) -> Result<Vec<u8>> {
    let mut w = Writer::default();
    for (key, value) in object(value, path)? {
        let here = child(path, key);
        match (key.starts_with("x-"), fields.extensions) {
            (true, Some(number)) => w.bytes(number, &named(key, &any(value))),
            _ => {
                let (_, number, kind) = fields
                    .fields
                    .iter()
                    .find(|(name, _, _)| name == key)
                    .ok_or_else(|| error(&here, "not a field of this object in openapi v2"))?;
                field(&mut w, *number, *kind, value, &here)?;
            }
        }
    }
    Ok(w.0)
}

/// A map message: each entry a `Named...` pair in field `entries` (encoded by `encode`), and vendor extensions
/// in field `extensions` if the message has them.
fn named_entries(value: &Value, path: &str, entries: u32, extensions: Option<u32>, encode: Encode) -> Result<Vec<u8>> {
    let mut w = Writer::default();
    for (key, value) in object(value, path)? {
        match (key.starts_with("x-"), extensions) {
            (true, Some(number)) => w.bytes(number, &named(key, &any(value))),
            _ => w.bytes(entries, &named(key, &encode(value, &child(path, key))?)),
        }
    }
    Ok(w.0)
}

fn document_message(value: &Value, path: &str) -> Result<Vec<u8>> {
    use Kind::*;
    static FIELDS: Fields = Fields {
        fields: &[
            ("swagger", 1, Str),
            ("info", 2, Message(info)),
            ("host", 3, Str),
            ("basePath", 4, Str),
            ("schemes", 5, Strings),
            ("consumes", 6, Strings),
            ("produces", 7, Strings),
            ("paths", 8, Message(paths)),
            ("definitions", 9, Message(definitions)),
            ("parameters", 10, Message(parameter_definitions)),
            ("responses", 11, Message(response_definitions)),
            ("tags", 14, Messages(tag)),
            ("externalDocs", 15, Message(external_docs)),
        ],
        extensions: Some(16),
    };
    message(value, path, &FIELDS)
}

fn info(value: &Value, path: &str) -> Result<Vec<u8>> {
    use Kind::*;
    static FIELDS: Fields = Fields {
        fields: &[
            ("title", 1, Str),
            ("version", 2, Str),
            ("description", 3, Str),
            ("termsOfService", 4, Str),
            ("contact", 5, Message(contact)),
            ("license", 6, Message(license)),
        ],
        extensions: Some(7),
    };
    message(value, path, &FIELDS)
}

fn contact(value: &Value, path: &str) -> Result<Vec<u8>> {
    use Kind::*;
    static FIELDS: Fields =
        Fields { fields: &[("name", 1, Str), ("url", 2, Str), ("email", 3, Str)], extensions: Some(4) };
    message(value, path, &FIELDS)
}

fn license(value: &Value, path: &str) -> Result<Vec<u8>> {
    use Kind::*;
    static FIELDS: Fields = Fields { fields: &[("name", 1, Str), ("url", 2, Str)], extensions: Some(3) };
    message(value, path, &FIELDS)
}

fn external_docs(value: &Value, path: &str) -> Result<Vec<u8>> {
    use Kind::*;
    static FIELDS: Fields = Fields { fields: &[("description", 1, Str), ("url", 2, Str)], extensions: Some(3) };
    message(value, path, &FIELDS)
}

fn tag(value: &Value, path: &str) -> Result<Vec<u8>> {
    use Kind::*;
    static FIELDS: Fields = Fields {
        fields: &[("name", 1, Str), ("description", 2, Str), ("externalDocs", 3, Message(external_docs))],
        extensions: Some(4),
    };
    message(value, path, &FIELDS)
}

/// `Paths`: `repeated NamedAny vendor_extension = 1; repeated NamedPathItem path = 2;`.
fn paths(value: &Value, path: &str) -> Result<Vec<u8>> {
    named_entries(value, path, 2, Some(1), path_item)
}

fn path_item(value: &Value, path: &str) -> Result<Vec<u8>> {
    use Kind::*;
    static FIELDS: Fields = Fields {
        fields: &[
            ("$ref", 1, Str),
            ("get", 2, Message(operation)),
            ("put", 3, Message(operation)),
            ("post", 4, Message(operation)),
            ("delete", 5, Message(operation)),
            ("options", 6, Message(operation)),
            ("head", 7, Message(operation)),
            ("patch", 8, Message(operation)),
            ("parameters", 9, Messages(parameters_item)),
        ],
        extensions: Some(10),
    };
    message(value, path, &FIELDS)
}

fn operation(value: &Value, path: &str) -> Result<Vec<u8>> {
    use Kind::*;
    static FIELDS: Fields = Fields {
        fields: &[
            ("tags", 1, Strings),
            ("summary", 2, Str),
            ("description", 3, Str),
            ("externalDocs", 4, Message(external_docs)),
            ("operationId", 5, Str),
            ("produces", 6, Strings),
            ("consumes", 7, Strings),
            ("parameters", 8, Messages(parameters_item)),
            ("responses", 9, Message(responses)),
            ("schemes", 10, Strings),
            ("deprecated", 11, Bool),
        ],
        extensions: Some(13),
    };
    message(value, path, &FIELDS)
}

/// `ParametersItem`: `oneof { Parameter parameter = 1; JsonReference json_reference = 2; }`.
fn parameters_item(value: &Value, path: &str) -> Result<Vec<u8>> {
    let mut w = Writer::default();
    if object(value, path)?.contains_key("$ref") {
        w.bytes(2, &json_reference(value, path)?);
    } else {
        w.bytes(1, &parameter(value, path)?);
    }
    Ok(w.0)
}

fn json_reference(value: &Value, path: &str) -> Result<Vec<u8>> {
    use Kind::*;
    static FIELDS: Fields = Fields { fields: &[("$ref", 1, Str), ("description", 2, Str)], extensions: None };
    message(value, path, &FIELDS)
}

/// `Parameter`: `oneof { BodyParameter body_parameter = 1; NonBodyParameter non_body_parameter = 2; }`, and
/// `NonBodyParameter`: `oneof` header 1, formData 2, query 3, path 4, chosen by `in`.
fn parameter(value: &Value, path: &str) -> Result<Vec<u8>> {
    let location = object(value, path)?.get("in").map(|v| string(v, &child(path, "in"))).transpose()?;
    let mut w = Writer::default();
    let (member, encoded) = match location {
        Some("body") => {
            w.bytes(1, &body_parameter(value, path)?);
            return Ok(w.0);
        }
        Some("header") => (1, path_or_header_parameter(value, path)?),
        Some("formData") => (2, query_or_form_parameter(value, path)?),
        Some("query") => (3, query_or_form_parameter(value, path)?),
        Some("path") => (4, path_or_header_parameter(value, path)?),
        _ => return Err(error(&child(path, "in"), "expected body, header, formData, query or path")),
    };
    let mut non_body = Writer::default();
    non_body.bytes(member, &encoded);
    w.bytes(2, &non_body.0);
    Ok(w.0)
}

fn body_parameter(value: &Value, path: &str) -> Result<Vec<u8>> {
    use Kind::*;
    static FIELDS: Fields = Fields {
        fields: &[
            ("description", 1, Str),
            ("name", 2, Str),
            ("in", 3, Str),
            ("required", 4, Bool),
            ("schema", 5, Message(schema)),
        ],
        extensions: Some(6),
    };
    message(value, path, &FIELDS)
}

/// `QueryParameterSubSchema` and `FormDataParameterSubSchema`, which number their fields alike.
fn query_or_form_parameter(value: &Value, path: &str) -> Result<Vec<u8>> {
    use Kind::*;
    static FIELDS: Fields = Fields {
        fields: &[
            ("required", 1, Bool),
            ("in", 2, Str),
            ("description", 3, Str),
            ("name", 4, Str),
            ("allowEmptyValue", 5, Bool),
            ("type", 6, Str),
            ("format", 7, Str),
            ("items", 8, Message(primitives_items)),
            ("collectionFormat", 9, Str),
            ("default", 10, Any),
            ("maximum", 11, Double),
            ("exclusiveMaximum", 12, Bool),
            ("minimum", 13, Double),
            ("exclusiveMinimum", 14, Bool),
            ("maxLength", 15, Int64),
            ("minLength", 16, Int64),
            ("pattern", 17, Str),
            ("maxItems", 18, Int64),
            ("minItems", 19, Int64),
            ("uniqueItems", 20, Bool),
            ("enum", 21, Anys),
            ("multipleOf", 22, Double),
        ],
        extensions: Some(23),
    };
    message(value, path, &FIELDS)
}

/// `PathParameterSubSchema` and `HeaderParameterSubSchema`, which number their fields alike.
fn path_or_header_parameter(value: &Value, path: &str) -> Result<Vec<u8>> {
    use Kind::*;
    static FIELDS: Fields = Fields {
        fields: &[
            ("required", 1, Bool),
            ("in", 2, Str),
            ("description", 3, Str),
            ("name", 4, Str),
            ("type", 5, Str),
            ("format", 6, Str),
            ("items", 7, Message(primitives_items)),
            ("collectionFormat", 8, Str),
            ("default", 9, Any),
            ("maximum", 10, Double),
            ("exclusiveMaximum", 11, Bool),
            ("minimum", 12, Double),
            ("exclusiveMinimum", 13, Bool),
            ("maxLength", 14, Int64),
            ("minLength", 15, Int64),
            ("pattern", 16, Str),
            ("maxItems", 17, Int64),
            ("minItems", 18, Int64),
            ("uniqueItems", 19, Bool),
            ("enum", 20, Anys),
            ("multipleOf", 21, Double),
        ],
        extensions: Some(22),
    };
    message(value, path, &FIELDS)
}

fn primitives_items(value: &Value, path: &str) -> Result<Vec<u8>> {
    use Kind::*;
    static FIELDS: Fields = Fields {
        fields: &[
            ("type", 1, Str),
            ("format", 2, Str),
            ("items", 3, Message(primitives_items)),
            ("collectionFormat", 4, Str),
            ("default", 5, Any),
            ("maximum", 6, Double),
            ("exclusiveMaximum", 7, Bool),
            ("minimum", 8, Double),
            ("exclusiveMinimum", 9, Bool),
            ("maxLength", 10, Int64),
            ("minLength", 11, Int64),
            ("pattern", 12, Str),
            ("maxItems", 13, Int64),
            ("minItems", 14, Int64),
            ("uniqueItems", 15, Bool),
            ("enum", 16, Anys),
            ("multipleOf", 17, Double),
        ],
        extensions: Some(18),
    };
    message(value, path, &FIELDS)
}

/// `Responses`: `repeated NamedResponseValue response_code = 1; repeated NamedAny vendor_extension = 2;`.
fn responses(value: &Value, path: &str) -> Result<Vec<u8>> {
    named_entries(value, path, 1, Some(2), response_value)
}

/// `ResponseValue`: `oneof { Response response = 1; JsonReference json_reference = 2; }`.
fn response_value(value: &Value, path: &str) -> Result<Vec<u8>> {
    let mut w = Writer::default();
    if object(value, path)?.contains_key("$ref") {
        w.bytes(2, &json_reference(value, path)?);
    } else {
        w.bytes(1, &response(value, path)?);
    }
    Ok(w.0)
}

fn response(value: &Value, path: &str) -> Result<Vec<u8>> {
    use Kind::*;
    static FIELDS: Fields = Fields {
        fields: &[
            ("description", 1, Str),
            ("schema", 2, Message(schema_item)),
            ("headers", 3, Message(headers)),
            ("examples", 4, Message(examples)),
        ],
        extensions: Some(5),
    };
    message(value, path, &FIELDS)
}

/// `SchemaItem`: `oneof { Schema schema = 1; FileSchema file_schema = 2; }`; only schemas are written here.
fn schema_item(value: &Value, path: &str) -> Result<Vec<u8>> {
    if value.get("type").and_then(Value::as_str) == Some("file") {
        return Err(error(path, "file schemas are not supported"));
    }
    let mut w = Writer::default();
    w.bytes(1, &schema(value, path)?);
    Ok(w.0)
}

/// `Headers`: `repeated NamedHeader additional_properties = 1;`.
fn headers(value: &Value, path: &str) -> Result<Vec<u8>> {
    named_entries(value, path, 1, None, header)
}

fn header(value: &Value, path: &str) -> Result<Vec<u8>> {
    use Kind::*;
    static FIELDS: Fields = Fields {
        fields: &[
            ("type", 1, Str),
            ("format", 2, Str),
            ("items", 3, Message(primitives_items)),
            ("collectionFormat", 4, Str),
            ("default", 5, Any),
            ("maximum", 6, Double),
            ("exclusiveMaximum", 7, Bool),
            ("minimum", 8, Double),
            ("exclusiveMinimum", 9, Bool),
            ("maxLength", 10, Int64),
            ("minLength", 11, Int64),
            ("pattern", 12, Str),
            ("maxItems", 13, Int64),
            ("minItems", 14, Int64),
            ("uniqueItems", 15, Bool),
            ("enum", 16, Anys),
            ("multipleOf", 17, Double),
            ("description", 18, Str),
        ],
        extensions: Some(19),
    };
    message(value, path, &FIELDS)
}

/// `Examples`: `repeated NamedAny additional_properties = 1;`.
fn examples(value: &Value, path: &str) -> Result<Vec<u8>> {
    named_entries(value, path, 1, None, |value, _| Ok(any(value)))
}

/// `Definitions`: `repeated NamedSchema additional_properties = 1;`.
fn definitions(value: &Value, path: &str) -> Result<Vec<u8>> {
    named_entries(value, path, 1, None, schema)
}

/// `ParameterDefinitions`: `repeated NamedParameter additional_properties = 1;`.
fn parameter_definitions(value: &Value, path: &str) -> Result<Vec<u8>> {
    named_entries(value, path, 1, None, parameter)
}

/// `ResponseDefinitions`: `repeated NamedResponse additional_properties = 1;`.
fn response_definitions(value: &Value, path: &str) -> Result<Vec<u8>> {
    named_entries(value, path, 1, None, response)
}

fn schema(value: &Value, path: &str) -> Result<Vec<u8>> {
    use Kind::*;
    static FIELDS: Fields = Fields {
        fields: &[
            ("$ref", 1, Str),
            ("format", 2, Str),
            ("title", 3, Str),
            ("description", 4, Str),
            ("default", 5, Any),
            ("multipleOf", 6, Double),
            ("maximum", 7, Double),
            ("exclusiveMaximum", 8, Bool),
            ("minimum", 9, Double),
            ("exclusiveMinimum", 10, Bool),
            ("maxLength", 11, Int64),
            ("minLength", 12, Int64),
            ("pattern", 13, Str),
            ("maxItems", 14, Int64),
            ("minItems", 15, Int64),
            ("uniqueItems", 16, Bool),
            ("maxProperties", 17, Int64),
            ("minProperties", 18, Int64),
            ("required", 19, Strings),
            ("enum", 20, Anys),
            ("additionalProperties", 21, Message(additional_properties_item)),
            ("type", 22, Message(type_item)),
            ("items", 23, Message(items_item)),
            ("allOf", 24, Messages(schema)),
            ("properties", 25, Message(properties)),
            ("discriminator", 26, Str),
            ("readOnly", 27, Bool),
            ("xml", 28, Message(xml)),
            ("externalDocs", 29, Message(external_docs)),
            ("example", 30, Any),
        ],
        extensions: Some(31),
    };
    message(value, path, &FIELDS)
}

/// `AdditionalPropertiesItem`: `oneof { Schema schema = 1; bool boolean = 2; }`.
fn additional_properties_item(value: &Value, path: &str) -> Result<Vec<u8>> {
    let mut w = Writer::default();
    match value {
        Value::Bool(b) => w.varint_field(2, u64::from(*b)),
        _ => w.bytes(1, &schema(value, path)?),
    }
    Ok(w.0)
}

/// `TypeItem`: `repeated string value = 1;`, from one type name or several.
fn type_item(value: &Value, path: &str) -> Result<Vec<u8>> {
    let mut w = Writer::default();
    match value {
        Value::String(name) => w.bytes(1, name.as_bytes()),
        _ => field(&mut w, 1, Kind::Strings, value, path)?,
    }
    Ok(w.0)
}

/// `ItemsItem`: `repeated Schema schema = 1;`, from one schema or several.
fn items_item(value: &Value, path: &str) -> Result<Vec<u8>> {
    let mut w = Writer::default();
    match value {
        Value::Array(_) => field(&mut w, 1, Kind::Messages(schema), value, path)?,
        _ => w.bytes(1, &schema(value, path)?),
    }
    Ok(w.0)
}

/// `Properties`: `repeated NamedSchema additional_properties = 1;`.
fn properties(value: &Value, path: &str) -> Result<Vec<u8>> {
    named_entries(value, path, 1, None, schema)
}

fn xml(value: &Value, path: &str) -> Result<Vec<u8>> {
    use Kind::*;
    static FIELDS: Fields = Fields {
        fields: &[
            ("name", 1, Str),
            ("namespace", 2, Str),
            ("prefix", 3, Str),
            ("attribute", 4, Bool),
            ("wrapped", 5, Bool),
        ],
        extensions: Some(6),
    };
    message(value, path, &FIELDS)
}
