//! Typed objects encoded as JSON the way upstream's API server returns them: a struct field holding an empty
//! map or list is left out.
//!
//! Upstream stores built-in objects as protobuf, which cannot tell an empty map or list from an absent one, and
//! its Go types tag those fields `omitempty`: so `labels: {}`, `data: {}` or `finalizers: []` never come back
//! from a write. Empty structs do (`emptyDir: {}`, `securityContext: {}`). k8s-openapi's types keep the
//! difference between `Some(empty)` and `None`, and JSON alone cannot tell an empty map from an empty struct,
//! so the decision is made while serializing, where the two differ: structs are `serialize_struct`, maps
//! `serialize_map`. Only fields of structs are dropped; an empty map or list inside a map or a list stays, and
//! so does whatever a newtype (`RawExtension`, `FieldsV1`) wraps, as upstream keeps their raw bytes.

use serde::ser::{self, Serialize};
use serde_json::{Error, Map, Value};

/// `value` as JSON, with every struct field that holds an empty map or list left out.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, Error> {
    Ok(value.serialize(Encoder)?.value)
}

/// A value and whether it is an empty map or list (which a struct field leaves out).
struct Encoded {
    value: Value,
    empty: bool,
}

impl Encoded {
    fn kept(value: Value) -> Encoded {
        Encoded { value, empty: false }
    }
}

struct Encoder;

/// Scalars encode as serde_json encodes them.
macro_rules! scalars {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(fn $method(self, v: $ty) -> Result<Encoded, Error> {
            serde_json::value::Serializer.$method(v).map(Encoded::kept)
        })*
    };
}

impl ser::Serializer for Encoder {
    type Ok = Encoded;
    type Error = Error;
    type SerializeSeq = Seq;
    type SerializeTuple = Seq;
    type SerializeTupleStruct = Seq;
    type SerializeTupleVariant = Seq;
    type SerializeMap = Object;
    type SerializeStruct = Object;
    type SerializeStructVariant = Object;

    scalars!(
        serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64,
        serialize_u128: u128, serialize_f32: f32, serialize_f64: f64, serialize_char: char, serialize_str: &str,
        serialize_bytes: &[u8],
    );

    fn serialize_none(self) -> Result<Encoded, Error> {
        Ok(Encoded::kept(Value::Null))
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Encoded, Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<Encoded, Error> {
        Ok(Encoded::kept(Value::Null))
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<Encoded, Error> {
        Ok(Encoded::kept(Value::Null))
    }

    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result<Encoded, Error> {
        Ok(Encoded::kept(Value::String(variant.to_owned())))
    }

    /// What a newtype wraps is kept whole, as upstream keeps a `RawExtension`'s bytes.
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> Result<Encoded, Error> {
        serde_json::to_value(value).map(Encoded::kept)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Encoded, Error> {
        let mut map = Map::new();
        map.insert(variant.to_owned(), value.serialize(Encoder)?.value);
        Ok(Encoded::kept(Value::Object(map)))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Seq, Error> {
        Ok(Seq { items: Vec::with_capacity(len.unwrap_or(0)), variant: None })
    }

    fn serialize_tuple(self, len: usize) -> Result<Seq, Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Seq, Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Seq, Error> {
        Ok(Seq { items: Vec::with_capacity(len), variant: Some(variant) })
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Object, Error> {
        Ok(Object { map: Map::new(), next_key: None, is_struct: false, variant: None })
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Object, Error> {
        Ok(Object { map: Map::new(), next_key: None, is_struct: true, variant: None })
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Object, Error> {
        Ok(Object { map: Map::new(), next_key: None, is_struct: true, variant: Some(variant) })
    }
}

/// A list being encoded (a tuple variant's, under its variant name).
struct Seq {
    items: Vec<Value>,
    variant: Option<&'static str>,
}

impl Seq {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.items.push(value.serialize(Encoder)?.value);
        Ok(())
    }

    fn finish(self) -> Result<Encoded, Error> {
        let empty = self.items.is_empty();
        let list = Value::Array(self.items);
        Ok(match self.variant {
            Some(variant) => Encoded::kept(Value::Object(Map::from_iter([(variant.to_owned(), list)]))),
            None => Encoded { value: list, empty },
        })
    }
}

impl ser::SerializeSeq for Seq {
    type Ok = Encoded;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Result<Encoded, Error> {
        self.finish()
    }
}

impl ser::SerializeTuple for Seq {
    type Ok = Encoded;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Result<Encoded, Error> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Seq {
    type Ok = Encoded;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Result<Encoded, Error> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Seq {
    type Ok = Encoded;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Result<Encoded, Error> {
        self.finish()
    }
}

/// A map or a struct being encoded (a struct variant's, under its variant name).
struct Object {
    map: Map<String, Value>,
    next_key: Option<String>,
    /// Struct fields leave out empty maps and lists; map entries keep them.
    is_struct: bool,
    variant: Option<&'static str>,
}

impl Object {
    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        let encoded = value.serialize(Encoder)?;
        if !(self.is_struct && encoded.empty) {
            self.map.insert(key.to_owned(), encoded.value);
        }
        Ok(())
    }

    fn finish(self) -> Result<Encoded, Error> {
        let empty = !self.is_struct && self.map.is_empty();
        let object = Value::Object(self.map);
        Ok(match self.variant {
            Some(variant) => Encoded::kept(Value::Object(Map::from_iter([(variant.to_owned(), object)]))),
            None => Encoded { value: object, empty },
        })
    }
}

/// A map key as JSON writes it: a string, or a number or boolean in its text form.
fn key_text<T: Serialize + ?Sized>(key: &T) -> Result<String, Error> {
    match serde_json::to_value(key)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(ser::Error::custom("a map key must be a string")),
    }
}

impl ser::SerializeMap for Object {
    type Ok = Encoded;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.next_key = Some(key_text(key)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self.next_key.take().ok_or_else(|| ser::Error::custom("a map value came without its key"))?;
        self.field(&key, value)
    }
    fn end(self) -> Result<Encoded, Error> {
        self.finish()
    }
}

impl ser::SerializeStruct for Object {
    type Ok = Encoded;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<Encoded, Error> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Object {
    type Ok = Encoded;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<Encoded, Error> {
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::{apps, core};
    use serde_json::json;

    fn round_trip<T: serde::de::DeserializeOwned + Serialize>(v: Value) -> Value {
        let typed: T = serde_json::from_value(v).unwrap();
        to_value(&typed).unwrap()
    }

    #[test]
    fn empty_maps_and_lists_in_struct_fields_are_left_out() {
        let cm = round_trip::<core::v1::ConfigMap>(json!({
            "metadata": {"name": "c", "labels": {}, "annotations": {}, "finalizers": []},
            "data": {}, "binaryData": {}
        }));
        assert_eq!(cm, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}));
        let kept = round_trip::<core::v1::ConfigMap>(
            json!({"metadata": {"name": "c", "labels": {"a": ""}}, "data": {"k": ""}}),
        );
        assert_eq!(kept["metadata"]["labels"], json!({"a": ""}));
        assert_eq!(kept["data"], json!({"k": ""}));
    }

    #[test]
    fn empty_structs_stay() {
        let pod = round_trip::<core::v1::Pod>(json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "c", "image": "x", "securityContext": {}, "resources": {"limits": {}}}],
                "volumes": [{"name": "scratch", "emptyDir": {}}],
                "securityContext": {},
                "nodeSelector": {}
            }
        }));
        assert_eq!(pod["spec"]["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(pod["spec"]["securityContext"], json!({}));
        assert_eq!(pod["spec"]["containers"][0]["securityContext"], json!({}));
        assert_eq!(pod["spec"]["containers"][0]["resources"], json!({}));
        assert!(pod["spec"].get("nodeSelector").is_none(), "{pod}");
        let secret = round_trip::<core::v1::Secret>(json!({"metadata": {"name": "s"}, "data": {}, "stringData": {}}));
        assert_eq!(secret, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}));
    }

    #[test]
    fn what_a_newtype_wraps_is_kept_whole() {
        let revision = round_trip::<apps::v1::ControllerRevision>(json!({
            "metadata": {"name": "r"}, "revision": 1, "data": {"spec": {"labels": {}, "list": []}}
        }));
        assert_eq!(revision["data"], json!({"spec": {"labels": {}, "list": []}}));
    }

    #[test]
    fn encoding_matches_serde_json_where_nothing_is_empty() {
        let v = json!({"metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "x", "args": ["1"], "ports": [{"containerPort": 80}]}]}});
        let typed: core::v1::Pod = serde_json::from_value(v).unwrap();
        assert_eq!(to_value(&typed).unwrap(), serde_json::to_value(&typed).unwrap());
    }
}
