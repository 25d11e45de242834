//! The documents against what kubectl reads from them, and the protobuf encoding read back by a wire-format
//! reader written from `OpenAPIv2.proto`, checking kube-openapi's parse rules on what it decodes.

use std::collections::HashSet;

use serde_json::{json, Value};

use super::gnostic::encode_document;
use super::*;
use crate::apis::catalog::RESOURCES;

/// One field on the wire.
#[derive(Clone, Copy, Debug)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
}

/// A decoded message: its fields in wire order.
#[derive(Debug)]
struct Msg<'a>(Vec<(u32, Wire<'a>)>);

fn read_varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = bytes[*at];
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return value;
        }
    }
    panic!("a varint longer than ten bytes");
}

fn decode(bytes: &[u8]) -> Msg<'_> {
    let mut fields = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let key = read_varint(bytes, &mut at);
        let number = u32::try_from(key >> 3).unwrap();
        assert!(number > 0, "field number 0");
        let wire = match key & 7 {
            0 => Wire::Varint(read_varint(bytes, &mut at)),
            1 => {
                let value = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
                at += 8;
                Wire::Fixed64(value)
            }
            2 => {
                let len = usize::try_from(read_varint(bytes, &mut at)).unwrap();
                let value = &bytes[at..at + len];
                at += len;
                Wire::Bytes(value)
            }
            other => panic!("wire type {other}"),
        };
        fields.push((number, wire));
    }
    Msg(fields)
}

impl<'a> Msg<'a> {
    fn bytes(&self, number: u32) -> Vec<&'a [u8]> {
        self.0
            .iter()
            .filter(|(n, _)| *n == number)
            .map(|(_, wire)| match wire {
                Wire::Bytes(b) => *b,
                other => panic!("field {number} is {other:?}, expected length-delimited"),
            })
            .collect()
    }

    fn strings(&self, number: u32) -> Vec<&'a str> {
        self.bytes(number).into_iter().map(|b| std::str::from_utf8(b).expect("UTF-8")).collect()
    }

    /// A singular string: proto3's last-one-wins, empty when absent.
    fn string(&self, number: u32) -> &'a str {
        self.strings(number).pop().unwrap_or_default()
    }

    fn messages(&self, number: u32) -> Vec<Msg<'a>> {
        self.bytes(number).into_iter().map(decode).collect()
    }

    fn message(&self, number: u32) -> Option<Msg<'a>> {
        self.messages(number).pop()
    }

    fn varint(&self, number: u32) -> Option<u64> {
        self.0.iter().rev().find(|(n, _)| *n == number).map(|(_, wire)| match wire {
            Wire::Varint(v) => *v,
            other => panic!("field {number} is {other:?}, expected a varint"),
        })
    }

    fn double(&self, number: u32) -> Option<f64> {
        self.0.iter().rev().find(|(n, _)| *n == number).map(|(_, wire)| match wire {
            Wire::Fixed64(v) => f64::from_bits(*v),
            other => panic!("field {number} is {other:?}, expected a double"),
        })
    }

    /// `Named...` entries in field `number` as (name, value message).
    fn named(&self, number: u32) -> Vec<(&'a str, Msg<'a>)> {
        self.messages(number).into_iter().map(|m| (m.string(1), m.message(2).unwrap_or(Msg(vec![])))).collect()
    }

    /// The value of vendor extension `name` (`NamedAny`s in field `number`, `Any.yaml`), read as JSON.
    fn extension(&self, number: u32, name: &str) -> Option<Value> {
        let (_, any) = self.named(number).into_iter().find(|(n, _)| *n == name)?;
        Some(serde_json::from_str(any.string(2)).expect("Any.yaml holds JSON"))
    }
}

/// kubectl's `supportsQueryParam`: the first PATCH operation of `gvk` says whether it declares `param` as a
/// query parameter; None if no PATCH operation has the kind.
fn patch_declares(document: &Msg, gvk: &Value, param: &str) -> Option<bool> {
    for (_, path_item) in document.message(8).expect("paths").named(2) {
        let Some(patch) = path_item.message(8) else { continue };
        if patch.extension(13, "x-kubernetes-group-version-kind").as_ref() != Some(gvk) {
            continue;
        }
        return Some(patch.messages(8).iter().any(|item| {
            let query = item.message(1).and_then(|p| p.message(2)).and_then(|n| n.message(3));
            query.is_some_and(|q| q.string(4) == param)
        }));
    }
    None
}

/// kube-openapi's `ParseSchema` rules (pkg/util/proto/document.go), which kubectl runs on every definition.
fn kube_openapi_parses(schema: &Msg, models: &HashSet<&str>, path: &str) -> Result<(), String> {
    for any in schema.messages(5) {
        serde_json::from_str::<Value>(any.string(2)).map_err(|e| format!("{path}: default {e}"))?;
    }
    let types: Vec<&str> = schema.message(22).map(|t| t.strings(1)).unwrap_or_default();
    let properties = schema.message(25);
    let reference = schema.string(1);
    if !reference.is_empty() {
        if properties.as_ref().is_some_and(|p| !p.messages(1).is_empty()) {
            return Err(format!("{path}: unallowed embedded type definition"));
        }
        if !types.is_empty() {
            return Err(format!("{path}: definition reference can't have a type"));
        }
        let name = reference.strip_prefix("#/definitions/").ok_or(format!("{path}: reference {reference}"))?;
        return match models.contains(name) {
            true => Ok(()),
            false => Err(format!("{path}: unknown model in reference: {name:?}")),
        };
    }
    let kind = |properties: Msg| -> Result<(), String> {
        for (name, value) in properties.named(1) {
            kube_openapi_parses(&value, models, &format!("{path}.{name}"))?;
        }
        Ok(())
    };
    match types.as_slice() {
        [] | ["object"] if properties.is_some() => kind(properties.unwrap()),
        [] => Ok(()),
        ["object"] => match schema.message(21).and_then(|a| a.message(1)) {
            Some(values) => kube_openapi_parses(&values, models, path),
            None => Ok(()),
        },
        ["array"] => match schema.message(23).map(|i| i.messages(1)).unwrap_or_default().as_slice() {
            [items] => kube_openapi_parses(items, models, path),
            _ => Err(format!("{path}: array should have exactly one sub-item")),
        },
        ["string" | "number" | "integer" | "boolean"] => Ok(()),
        [other] => Err(format!("{path}: Unknown primitive type: {other:?}")),
        _ => Err(format!("{path}: definitions with multiple types aren't supported")),
    }
}

fn collect_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get("$ref") {
                out.push(reference.clone());
            }
            object.values().for_each(|v| collect_references(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_references(v, out)),
        _ => {}
    }
}

#[test]
fn each_field_is_written_with_its_number_and_wire_type() {
    let document = json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": {
            "/api/v1/namespaces/{name}": {
                "parameters": [{"name": "name", "in": "path", "required": true, "type": "string", "uniqueItems": true}],
                "patch": {
                    "operationId": "patchCoreV1Namespace",
                    "consumes": ["application/merge-patch+json"],
                    "parameters": [
                        {"name": "body", "in": "body", "required": true,
                            "schema": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}},
                        {"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": true},
                        {"$ref": "#/parameters/shared"},
                    ],
                    "responses": {
                        "200": {"description": "OK", "schema": {"$ref": "#/definitions/Namespace"}},
                        "401": {"$ref": "#/responses/unauthorized"},
                    },
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Namespace"},
                },
            },
        },
        "definitions": {
            "Namespace": {
                "type": "object",
                "required": ["metadata", "spec"],
                "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "free": {"type": "object", "additionalProperties": true},
                    "replicas": {"type": "integer", "format": "int32", "minimum": -1.5, "maximum": 10, "maxLength": 7,
                        "default": 1, "enum": [1, 2]},
                    "finalizers": {"type": "array", "items": {"type": "string"},
                        "x-kubernetes-patch-strategy": "merge"},
                },
                "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Namespace"}],
            },
        },
    });
    let bytes = encode_document(&document).expect("encodes");
    let doc = decode(&bytes);

    assert_eq!(doc.string(1), "2.0");
    let info = doc.message(2).unwrap();
    assert_eq!((info.string(1), info.string(2)), ("Kubernetes", "v1.33.0"));

    // Paths: NamedPathItem in field 2, the PATCH operation in PathItem field 8.
    let paths = doc.message(8).unwrap().named(2);
    assert_eq!(paths.len(), 1);
    let (name, item) = &paths[0];
    assert_eq!(*name, "/api/v1/namespaces/{name}");
    let path_param = item.messages(9)[0].message(1).unwrap().message(2).unwrap().message(4).unwrap();
    assert_eq!((path_param.string(4), path_param.string(2), path_param.varint(1)), ("name", "path", Some(1)));
    assert_eq!(path_param.varint(19), Some(1), "uniqueItems");
    let patch = item.message(8).unwrap();
    assert!(item.message(2).is_none(), "no GET");
    assert_eq!(patch.string(5), "patchCoreV1Namespace");
    assert_eq!(patch.strings(7), ["application/merge-patch+json"]);
    let params = patch.messages(8);
    let body = params[0].message(1).unwrap().message(1).unwrap();
    assert_eq!((body.string(2), body.string(3), body.varint(4)), ("body", "body", Some(1)));
    assert_eq!(body.message(5).unwrap().string(1), "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch");
    let query = params[1].message(1).unwrap().message(2).unwrap().message(3).unwrap();
    assert_eq!((query.string(4), query.string(2), query.string(6)), ("fieldValidation", "query", "string"));
    assert_eq!(params[2].message(2).unwrap().string(1), "#/parameters/shared");
    let responses = patch.message(9).unwrap().named(1);
    assert_eq!(responses[0].0, "200");
    let ok = responses[0].1.message(1).unwrap();
    assert_eq!(ok.string(1), "OK");
    assert_eq!(ok.message(2).unwrap().message(1).unwrap().string(1), "#/definitions/Namespace");
    assert_eq!(responses[1].1.message(2).unwrap().string(1), "#/responses/unauthorized");
    assert_eq!(patch.extension(13, "x-kubernetes-action"), Some(json!("patch")));
    let gvk = json!({"group": "", "version": "v1", "kind": "Namespace"});
    assert_eq!(patch.extension(13, "x-kubernetes-group-version-kind"), Some(gvk.clone()));
    assert_eq!(patch_declares(&doc, &gvk, "fieldValidation"), Some(true));
    assert_eq!(patch_declares(&doc, &gvk, "force"), Some(false));

    // Definitions: NamedSchema in field 1; Schema's properties (25), type (22), items (23), ...
    let definitions = doc.message(9).unwrap().named(1);
    let (name, namespace) = &definitions[0];
    assert_eq!(*name, "Namespace");
    assert_eq!(namespace.message(22).unwrap().strings(1), ["object"]);
    assert_eq!(namespace.strings(19), ["metadata", "spec"]);
    assert_eq!(namespace.extension(31, "x-kubernetes-group-version-kind"), Some(json!([gvk])));
    let properties = namespace.message(25).unwrap().named(1);
    let property = |name: &str| properties.iter().find(|(n, _)| *n == name).map(|(_, m)| m).unwrap();
    let labels = property("labels").message(21).unwrap().message(1).unwrap();
    assert_eq!(labels.message(22).unwrap().strings(1), ["string"]);
    assert_eq!(property("free").message(21).unwrap().varint(2), Some(1));
    let replicas = property("replicas");
    assert_eq!(replicas.string(2), "int32");
    assert_eq!((replicas.double(9), replicas.double(7)), (Some(-1.5), Some(10.0)));
    assert_eq!(replicas.varint(11), Some(7));
    assert_eq!(replicas.message(5).unwrap().string(2), "1");
    let choices: Vec<String> = replicas.messages(20).iter().map(|a| a.string(2).to_owned()).collect();
    assert_eq!(choices, ["1", "2"]);
    let finalizers = property("finalizers");
    assert_eq!(finalizers.message(23).unwrap().messages(1)[0].message(22).unwrap().strings(1), ["string"]);
    assert_eq!(finalizers.extension(31, "x-kubernetes-patch-strategy"), Some(json!("merge")));
}

#[test]
fn negative_integers_take_ten_bytes_as_int64_does() {
    let bytes = encode_document(&json!({"definitions": {"a": {"minLength": -1}}})).unwrap();
    let definition = decode(&bytes).message(9).unwrap().named(1).remove(0).1;
    assert_eq!(definition.varint(12), Some(u64::MAX));
}

#[test]
fn what_openapi_v2_cannot_say_is_an_error_that_names_where_it_is() {
    for (document, path) in [
        (json!({"swagger": "2.0", "definitions": {"A": {"oneOf": []}}}), "definitions.A.oneOf"),
        (json!({"swagger": 2}), "swagger"),
        (
            json!({"paths": {"/a": {"get": {"parameters": [{"name": "x", "in": "cookie"}]}}}}),
            "paths./a.get.parameters[0].in",
        ),
        (
            json!({"definitions": {"A": {"properties": {"b": {"maxLength": 1.5}}}}}),
            "definitions.A.properties.b.maxLength",
        ),
        (json!({"definitions": {"A": {"required": ["a", 1]}}}), "definitions.A.required[1]"),
        (json!({"info": {"x-y": 1, "z": 2}}), "info.z"),
        (json!([]), "the document"),
    ] {
        let error = encode_document(&document).expect_err("refused");
        assert_eq!(error.path, path, "{document}");
    }
}

#[test]
fn swagger_schemas_keep_to_what_swagger_and_kube_openapi_accept() {
    let converted = swagger_schema(json!({
        "type": ["string", "null"],
        "nullable": true,
        "oneOf": [{"type": "string"}],
        "const": "x",
        "exclusiveMinimum": 0,
        "properties": {
            "a": true,
            "b": {"$ref": "#/definitions/B", "type": "object", "description": "b", "x-kubernetes-patch-strategy": "merge"},
            "c": {"type": "array"},
            "d": {"type": "array", "items": [{"type": "integer"}]},
            "e": {"type": ["string", "integer"]},
            "f": {"additionalProperties": false},
        },
    }));
    assert_eq!(
        converted,
        json!({
            "type": "string",
            "enum": ["x"],
            "minimum": 0,
            "exclusiveMinimum": true,
            "properties": {
                "a": {},
                "b": {"$ref": "#/definitions/B", "description": "b", "x-kubernetes-patch-strategy": "merge"},
                "c": {"type": "array", "items": {}},
                "d": {"type": "array", "items": {"type": "integer"}},
                "e": {},
                "f": {"additionalProperties": false},
            },
        })
    );
}

#[test]
fn the_v2_document_serves_every_resource_with_its_kind_and_field_validation() {
    let document = v2_document();
    let definitions = document["definitions"].as_object().unwrap();
    for r in RESOURCES {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let marked: Vec<&String> = definitions
            .iter()
            .filter(|(_, d)| d["x-kubernetes-group-version-kind"].as_array().is_some_and(|m| m.contains(&gvk)))
            .map(|(name, _)| name)
            .collect();
        assert_eq!(marked.len(), 1, "{} has one definition: {marked:?}", r.kind);
        let name = marked[0];
        let list = format!("{name}List");
        assert_eq!(definitions[&list]["properties"]["items"]["items"]["$ref"], format!("#/definitions/{name}"));

        let collection = format!("/{}", collection_path(r));
        let object = format!("{collection}/{{name}}");
        let paths = &document["paths"];
        // Kinds that are never stored offer only their verbs: create for bindings, reads for componentstatuses.
        let only = match r.backing {
            Backing::PodBinding | Backing::Review => Some(vec![(&collection, "post", "post")]),
            Backing::ComponentStatuses | Backing::Metrics => {
                Some(vec![(&collection, "get", "list"), (&object, "get", "get")])
            }
            Backing::Stored => None,
        };
        if let Some(only) = only {
            for (path, method, action) in only {
                assert_eq!(paths[path][method]["x-kubernetes-action"], action, "{method} {path}");
            }
            assert!(paths[&object]["patch"].is_null() && paths[&collection]["delete"].is_null(), "{}", r.kind);
            continue;
        }
        for (path, method, action) in [
            (&collection, "get", "list"),
            (&collection, "post", "post"),
            (&object, "get", "get"),
            (&object, "put", "put"),
            (&object, "patch", "patch"),
            (&object, "delete", "delete"),
        ] {
            let operation = &paths[path][method];
            assert_eq!(operation["x-kubernetes-action"], action, "{method} {path}");
            assert_eq!(operation["x-kubernetes-group-version-kind"], gvk, "{method} {path}");
        }
        assert_eq!(paths[&collection]["delete"].is_object(), r.delete_collection, "{collection}");
        assert_eq!(paths[&object]["get"]["responses"]["200"]["schema"]["$ref"], format!("#/definitions/{name}"));
        assert_eq!(paths[&collection]["get"]["responses"]["200"]["schema"]["$ref"], format!("#/definitions/{list}"));
        let patch_params = paths[&object]["patch"]["parameters"].as_array().unwrap();
        assert!(patch_params.iter().any(|p| p["name"] == "fieldValidation" && p["in"] == "query"), "{object}");
    }
    // Every reference, in paths and definitions, names a definition.
    let mut references = Vec::new();
    collect_references(&document, &mut references);
    assert!(references.len() > RESOURCES.len() * 10);
    for reference in references {
        let name = reference.strip_prefix("#/definitions/").unwrap_or_else(|| panic!("{reference}"));
        assert!(definitions.contains_key(name), "{reference}");
    }
    let pod = &definitions["io.k8s.api.core.v1.Pod"];
    assert_eq!(pod["x-kubernetes-group-version-kind"], json!([{"group": "", "version": "v1", "kind": "Pod"}]));
    assert_eq!(pod["properties"]["spec"]["$ref"], "#/definitions/io.k8s.api.core.v1.PodSpec");
    assert_eq!(document["paths"]["/api/v1/pods"]["get"]["operationId"], "listCoreV1PodForAllNamespaces");
    assert_eq!(
        document["paths"]["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"]["patch"]["operationId"],
        "patchCoordinationV1NamespacedLease"
    );
}

#[test]
fn v2_definitions_carry_the_patch_metadata_kubectl_computes_apply_patches_from() {
    let document = v2_document();
    let definitions = &document["definitions"];
    let property = |definition: &str, field: &str| definitions[definition]["properties"][field].clone();
    let containers = property("io.k8s.api.core.v1.PodSpec", "containers");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    let volumes = property("io.k8s.api.core.v1.PodSpec", "volumes");
    assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
    assert_eq!(volumes["x-kubernetes-patch-merge-key"], "name");
    let ports = property("io.k8s.api.core.v1.Container", "ports");
    assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
    let strategy = property("io.k8s.api.apps.v1.DeploymentSpec", "strategy");
    assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
    assert_eq!(strategy["$ref"], "#/definitions/io.k8s.api.apps.v1.DeploymentStrategy");
    let finalizers = property("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers");
    assert_eq!(finalizers["x-kubernetes-patch-strategy"], "merge");
    assert!(finalizers.get("x-kubernetes-patch-merge-key").is_none());
    // Atomic lists and plain objects say nothing.
    let image_pull_secrets = property("io.k8s.api.core.v1.ServiceAccount", "imagePullSecrets");
    assert!(image_pull_secrets.get("x-kubernetes-patch-strategy").is_none(), "{image_pull_secrets}");
    assert!(property("io.k8s.api.core.v1.Pod", "spec").get("x-kubernetes-patch-strategy").is_none());
}

#[test]
fn the_served_protobuf_decodes_to_what_kubectl_looks_for_and_kube_openapi_parses() {
    let bytes = v2_protobuf().expect("the catalog's document encodes");
    let doc = decode(bytes);
    assert_eq!(doc.string(1), "2.0");
    let json: Value = serde_json::from_slice(v2_json()).unwrap();
    assert_eq!(json, v2_document());

    // Every served kind: a PATCH operation declaring fieldValidation, and one definition marked with it.
    let definitions = doc.message(9).expect("definitions").named(1);
    let models: HashSet<&str> = definitions.iter().map(|(name, _)| *name).collect();
    assert_eq!(models.len(), json["definitions"].as_object().unwrap().len());
    for r in RESOURCES {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let patched = r.is_stored().then_some(true);
        assert_eq!(patch_declares(&doc, &gvk, "fieldValidation"), patched, "{}", r.kind);
        let marked = definitions.iter().filter(|(_, schema)| {
            let marks = schema.extension(31, "x-kubernetes-group-version-kind");
            marks.and_then(|m| m.as_array().cloned()).is_some_and(|m| m.contains(&gvk))
        });
        assert_eq!(marked.count(), 1, "{}", r.kind);
    }
    // A kind nobody serves: kubectl then asks about Namespace's PATCH, which declares it.
    let widget = json!({"group": "example.com", "version": "v1", "kind": "Widget"});
    assert_eq!(patch_declares(&doc, &widget, "fieldValidation"), None);
    let namespace = json!({"group": "", "version": "v1", "kind": "Namespace"});
    assert_eq!(patch_declares(&doc, &namespace, "fieldValidation"), Some(true));

    // kubectl parses every definition before it looks any up.
    for (name, schema) in &definitions {
        kube_openapi_parses(schema, &models, name).unwrap_or_else(|e| panic!("SchemaError({e})"));
    }
}

#[test]
fn v3_documents_mark_each_kind_of_their_group_version() {
    let root = v3_root();
    for (group, version, resources) in catalog::group_versions() {
        let path = gv_path(group, version);
        assert!(root["paths"][&path]["serverRelativeURL"]
            .as_str()
            .unwrap()
            .starts_with(&format!("/openapi/v3/{path}?")));
        let document = v3_document(&path).expect("a document");
        let schemas = document["components"]["schemas"].as_object().unwrap();
        for r in resources {
            let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
            assert!(
                schemas
                    .values()
                    .any(|s| s["x-kubernetes-group-version-kind"].as_array().is_some_and(|m| m.contains(&gvk))),
                "{}",
                r.kind
            );
            let patch = &document["paths"][format!("/{}/{{name}}", collection_path(r))]["patch"];
            if !r.is_stored() {
                assert!(patch.is_null(), "{}", r.kind);
                continue;
            }
            assert_eq!(patch["x-kubernetes-group-version-kind"], gvk);
            assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
        }
    }
    assert!(v3_document("apis/nowhere.example.com/v1").is_none());
    assert!(v3_document("api").is_none());
}
