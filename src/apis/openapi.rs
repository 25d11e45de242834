//! The OpenAPI documents of the served API, built from the catalog: OpenAPI v3 (`/openapi/v3`, a root naming one
//! document per group-version) and Swagger 2.0 (`/openapi/v2`, one document for everything, also in gnostic's
//! protobuf encoding, `gnostic`).
//!
//! kubectl reads them before it sends a manifest (`create -f`, `apply`, `replace`). When the v3 document of the
//! manifest's group-version has a PATCH operation of its kind that declares `fieldValidation`, kubectl leaves field
//! validation to the server. Otherwise (a kind the server does not serve, a `List`) it falls back to the v2
//! document: it looks for the same there (for an unknown kind, on Namespace's PATCH), validates `List` items
//! against the v2 definitions, and computes client-side apply patches from the definitions' patch metadata. Both
//! versions carry each kind's schema from k8s-openapi, so `kubectl explain` works, each root kind's definition
//! marked with its `x-kubernetes-group-version-kind`.
//!
//! Invariants:
//! - Every served resource appears in both versions, and nothing here names a kind: the documents follow
//!   `catalog::RESOURCES`.
//! - The v2 definitions are Swagger 2.0 schemas that kube-openapi's parser, which kubectl runs on all of them,
//!   accepts: references are `#/definitions/...` with nothing beside them but a description and extensions,
//!   a schema has at most one type, an array has one item schema. Their patch metadata
//!   (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`) is `schema.rs`'s, so patches kubectl computes
//!   from them are the ones it computes from its compiled-in types.
//! - The v2 document is static per binary: it is built and encoded once per process.

mod gnostic;

use std::collections::HashSet;
use std::sync::LazyLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use serde_json::{json, Map, Value};

use super::catalog::{self, Backing, Resource};
use super::schema::{Element, FieldSchema, ObjectType, PatchStrategy, Shape};
use super::KUBERNETES_MINOR;

pub use self::gnostic::EncodeError;

/// The media type of the v2 document's protobuf encoding (gnostic's `openapi_v2.Document`), which its answers
/// carry.
pub const V2_PROTOBUF_CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The older spelling of [`V2_PROTOBUF_CONTENT_TYPE`], which client-go still asks for. Upstream answers it with
/// the newer one: Go's MIME parser, which client-go runs on a response's Content-Type, refuses the `@`.
pub const V2_PROTOBUF_CONTENT_TYPE_DEPRECATED: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// Where v2 references point.
const DEFINITIONS: &str = "#/definitions/";

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn gvk(r: &Resource) -> Value {
    json!({"group": r.group, "version": r.version, "kind": r.kind})
}

fn info() -> Value {
    json!({"title": "Kubernetes", "version": format!("v1.{KUBERNETES_MINOR}.0")})
}

/// `GET /openapi/v3`: where each group-version's document is.
pub fn v3_root() -> Value {
    let mut paths = Map::new();
    for (g, v, _) in catalog::group_versions() {
        let p = gv_path(g, v);
        let url = format!("/openapi/v3/{p}?hash={}", env!("CARGO_PKG_VERSION"));
        paths.insert(p, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// The OpenAPI v3 document of one group-version (`api/v1`, `apis/apps/v1`).
pub fn v3_document(gv: &str) -> Option<Value> {
    let (group, version) = match gv.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    let gv = catalog::group_versions().into_iter().find(|(g, v, _)| *g == group && *v == version)?;
    let mut paths = Map::new();
    let params = json!([
        {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
        {"name": "force", "in": "query", "schema": {"type": "boolean"}},
    ]);
    for r in &gv.2 {
        let collection = format!("/{}", collection_path(r));
        let gvk = gvk(r);
        let op = |action: &str| {
            json!({"operationId": format!("{action}{}", r.kind), "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk, "parameters": params,
                "responses": {"200": {"description": "OK"}}})
        };
        let (path, operations) = match r.backing {
            Backing::Stored => (
                format!("{collection}/{{name}}"),
                json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}),
            ),
            Backing::ComponentStatuses | Backing::Metrics => {
                (format!("{collection}/{{name}}"), json!({"get": op("get")}))
            }
            Backing::PodBinding | Backing::Review => (collection, json!({"post": op("post")})),
        };
        paths.insert(path, operations);
    }
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let roots = kind_roots(&mut generator, &gv.2, "#/components/schemas/");
    let mut schemas = generator.take_definitions(true);
    mark_kinds(&mut schemas, &roots);
    Some(json!({"openapi": "3.0.0", "info": info(), "paths": paths, "components": {"schemas": schemas}}))
}

/// `<group path>/namespaces/{namespace}/<plural>` or `<group path>/<plural>`, without the leading slash.
fn collection_path(r: &Resource) -> String {
    let base = gv_path(r.group, r.version);
    if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    }
}

/// Registers the schema of each resource's kind and returns the name of its definition. A kind without a named
/// schema (an untyped entry) gets a definition of its own: an object of any fields.
fn kind_roots<'r>(
    generator: &mut schemars::SchemaGenerator,
    resources: &[&'r Resource],
    prefix: &str,
) -> Vec<(String, &'r Resource, Option<Value>)> {
    resources
        .iter()
        .map(|r| {
            let reference = (r.schema)(generator);
            match reference.get("$ref").and_then(Value::as_str).and_then(|s| s.strip_prefix(prefix)) {
                Some(name) => (name.to_owned(), *r, None),
                None => {
                    let untyped = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
                    (untyped_name(r), *r, Some(untyped))
                }
            }
        })
        .collect()
}

/// The definition name of an untyped kind, as upstream names those of custom resources: the group's DNS labels
/// reversed (`example.com` → `com.example`), then version and kind.
fn untyped_name(r: &Resource) -> String {
    let group: Vec<&str> = if r.group.is_empty() { vec!["core"] } else { r.group.split('.').rev().collect() };
    format!("{}.{}.{}", group.join("."), r.version, r.kind)
}

/// Adds the definitions of untyped kinds and marks each kind's definition with its group, version and kind, as
/// kubectl looks them up.
fn mark_kinds(definitions: &mut Map<String, Value>, roots: &[(String, &Resource, Option<Value>)]) {
    for (name, r, untyped) in roots {
        if let Some(schema) = untyped {
            definitions.entry(name.clone()).or_insert_with(|| schema.clone());
        }
        if let Some(Value::Object(schema)) = definitions.get_mut(name) {
            let marks = schema.entry("x-kubernetes-group-version-kind").or_insert_with(|| json!([]));
            if let Value::Array(marks) = marks {
                if !marks.contains(&gvk(r)) {
                    marks.push(gvk(r));
                }
            }
        }
    }
}

/// The v2 document, built and encoded once.
struct V2 {
    json: Vec<u8>,
    protobuf: Result<Vec<u8>, EncodeError>,
}

static V2_DOCUMENT: LazyLock<V2> = LazyLock::new(|| {
    let document = v2_document();
    V2 { json: serde_json::to_vec(&document).unwrap_or_default(), protobuf: gnostic::encode_document(&document) }
});

/// `GET /openapi/v2` as JSON.
pub fn v2_json() -> &'static [u8] {
    &V2_DOCUMENT.json
}

/// `GET /openapi/v2` in gnostic's protobuf encoding ([`V2_PROTOBUF_CONTENT_TYPE`]).
pub fn v2_protobuf() -> Result<&'static [u8], &'static EncodeError> {
    V2_DOCUMENT.protobuf.as_deref()
}

/// The Swagger 2.0 document of every served resource: collection and object paths with their operations, and
/// the definitions of every kind, its list, and what they refer to.
pub fn v2_document() -> Value {
    let mut generator = schemars::generate::SchemaSettings::draft07()
        .with(|s| {
            s.definitions_path = "/definitions".into();
            s.meta_schema = None;
            // References keep their descriptions beside them, as upstream's v2 document has them.
            s.transforms.clear();
        })
        .into_generator();
    let resources: Vec<&Resource> = catalog::RESOURCES.iter().collect();
    let roots = kind_roots(&mut generator, &resources, DEFINITIONS);
    let shared = SharedTypes {
        list_meta: definition_name(generator.subschema_for::<meta::ListMeta>()),
        status: definition_name(generator.subschema_for::<meta::Status>()),
        delete_options: definition_name(generator.subschema_for::<meta::DeleteOptions>()),
        patch: definition_name(generator.subschema_for::<meta::Patch>()),
    };
    let mut definitions = generator.take_definitions(true);
    mark_kinds(&mut definitions, &roots);
    let mut annotated = HashSet::new();
    for (name, r, _) in &roots {
        if let Some(object_type) = super::schema::root(r.group, r.kind) {
            add_patch_metadata(&mut definitions, name, object_type, &mut annotated);
        }
    }
    let mut paths = Map::new();
    for (name, r, _) in &roots {
        let list = add_list_definition(&mut definitions, name, r, &shared.list_meta);
        resource_paths(&mut paths, r, name, &list, &shared);
    }
    let definitions: Map<String, Value> = definitions.into_iter().map(|(k, v)| (k, swagger_schema(v))).collect();
    json!({"swagger": "2.0", "info": info(), "paths": paths, "definitions": definitions})
}

/// The definitions the operations of every resource refer to.
struct SharedTypes {
    list_meta: String,
    status: String,
    delete_options: String,
    patch: String,
}

fn definition_name(reference: schemars::Schema) -> String {
    let reference = reference.get("$ref").and_then(Value::as_str).unwrap_or_default();
    reference.strip_prefix(DEFINITIONS).unwrap_or(reference).to_owned()
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("{DEFINITIONS}{name}")})
}

/// Adds `<Kind>List`'s definition (`items` of the kind, `metadata` a ListMeta) unless one exists; returns its name.
fn add_list_definition(definitions: &mut Map<String, Value>, name: &str, r: &Resource, list_meta: &str) -> String {
    let list = format!("{name}List");
    let kind = format!("{}List", r.kind);
    definitions.entry(list.clone()).or_insert_with(|| {
        json!({
            "description": format!("{kind} is a list of {}.", r.kind),
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"description": "APIVersion defines the versioned schema of this representation of an object.", "type": "string"},
                "items": {"description": format!("List of {}.", r.plural), "type": "array", "items": reference(name)},
                "kind": {"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"},
                "metadata": reference(list_meta),
            },
            "x-kubernetes-group-version-kind": [{"group": r.group, "version": r.version, "kind": kind}],
        })
    });
    list
}

/// Marks the fields of definition `name`, the root of `object_type` in `schema.rs`, with their patch strategy and
/// merge key, and follows their references to the definitions of the types `schema.rs` knows below them.
fn add_patch_metadata(
    definitions: &mut Map<String, Value>,
    name: &str,
    object_type: &'static ObjectType,
    done: &mut HashSet<(String, *const ObjectType)>,
) {
    if !done.insert((name.to_owned(), object_type as *const ObjectType)) {
        return;
    }
    for (field, field_schema) in object_type.fields {
        let property = definitions
            .get_mut(name)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(*field))
            .and_then(Value::as_object_mut);
        let Some(property) = property else { continue };
        if let Some(strategy) = patch_strategy(field_schema) {
            property.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
            if let Some(key) = field_schema.merge_key {
                property.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            }
        }
        let (child_type, child) = match field_schema.shape {
            Shape::Object(t) => (t, property.get("$ref")),
            Shape::List { element: Element::Object(t), .. } => (t, property.get("items").and_then(|i| i.get("$ref"))),
            Shape::Map { value: Element::Object(t), .. } => {
                (t, property.get("additionalProperties").and_then(|i| i.get("$ref")))
            }
            _ => continue,
        };
        let child = child.and_then(Value::as_str).and_then(|r| r.strip_prefix(DEFINITIONS)).map(str::to_owned);
        if let Some(child) = child {
            add_patch_metadata(definitions, &child, child_type, done);
        }
    }
}

/// `x-kubernetes-patch-strategy` as upstream's Go tags spell it; objects and maps merge without saying so.
fn patch_strategy(field: &FieldSchema) -> Option<&'static str> {
    match (field.shape, field.strategy) {
        (_, PatchStrategy::MergeRetainKeys) => Some("merge,retainKeys"),
        (_, PatchStrategy::RetainKeys) => Some("retainKeys"),
        (Shape::List { .. }, PatchStrategy::Merge) => Some("merge"),
        _ => None,
    }
}

/// Upstream's name for a group in operation ids: `Core`, `Apps`, `Coordination` (`coordination.k8s.io`),
/// `RbacAuthorization` (`rbac.authorization.k8s.io`).
fn group_identifier(group: &str) -> String {
    if group.is_empty() {
        return "Core".to_owned();
    }
    let group = group.strip_suffix(".k8s.io").unwrap_or(group);
    group.split(['.', '-']).map(capitalized).collect()
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn lowercased_first(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

/// The collection, object and (for namespaced resources) all-namespaces paths of a resource.
fn resource_paths(paths: &mut Map<String, Value>, r: &Resource, name: &str, list: &str, shared: &SharedTypes) {
    let group = group_identifier(r.group);
    let version = capitalized(r.version);
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let tag = format!("{}_{}", lowercased_first(&group), r.version);
    let op = |verb: &str, action: &str, parameters: Vec<Value>, responses: Value| {
        let consumes: &[&str] = match action {
            "patch" => &[
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/apply-patch+yaml",
            ],
            _ => &["*/*"],
        };
        json!({
            "operationId": format!("{verb}{group}{version}{scope}{}", r.kind),
            "tags": [tag],
            "consumes": consumes,
            "produces": ["application/json"],
            "parameters": parameters,
            "responses": responses,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk(r),
        })
    };
    let ok = |schema: &str| json!({"200": {"description": "OK", "schema": reference(schema)}});
    let written = |codes: &[(&str, &str)]| {
        let mut responses = Map::new();
        for (code, description) in codes {
            responses.insert((*code).to_owned(), json!({"description": description, "schema": reference(name)}));
        }
        Value::Object(responses)
    };
    let body = |schema: &str| json!({"name": "body", "in": "body", "required": true, "schema": reference(schema)});
    let write_params =
        || vec![query("dryRun", "string"), query("fieldManager", "string"), query("fieldValidation", "string")];

    let scope_params = if r.namespaced { vec![path_param("namespace")] } else { vec![] };
    let collection = format!("/{}", collection_path(r));
    let mut collection_item = Map::new();
    let mut create = vec![body(name)];
    create.extend(write_params());
    let created = written(&[("200", "OK"), ("201", "Created"), ("202", "Accepted")]);
    match r.backing {
        Backing::PodBinding | Backing::Review => {
            collection_item.insert("post".into(), op("create", "post", create, created));
            collection_item.insert("parameters".into(), json!(scope_params));
            paths.insert(collection, Value::Object(collection_item));
            return;
        }
        Backing::ComponentStatuses | Backing::Metrics => {
            collection_item.insert("get".into(), op("list", "list", list_params(), ok(list)));
            paths.insert(collection.clone(), Value::Object(collection_item));
            let get = op("read", "get", vec![], ok(name));
            paths.insert(format!("{collection}/{{name}}"), json!({"get": get, "parameters": [path_param("name")]}));
            return;
        }
        Backing::Stored => {}
    }
    collection_item.insert("get".into(), op("list", "list", list_params(), ok(list)));
    collection_item.insert("post".into(), op("create", "post", create, created));
    if r.delete_collection {
        let mut params = vec![json!({"name": "body", "in": "body", "schema": reference(&shared.delete_options)})];
        params.extend(delete_params());
        params.extend(list_params().into_iter().filter(|p| p["name"] != "watch" && p["name"] != "allowWatchBookmarks"));
        collection_item.insert("delete".into(), op("deleteCollection", "deletecollection", params, ok(&shared.status)));
    }
    collection_item.insert("parameters".into(), json!(scope_params));

    let mut object_item = Map::new();
    object_item.insert("get".into(), op("read", "get", vec![], ok(name)));
    let mut replace = vec![body(name)];
    replace.extend(write_params());
    object_item.insert("put".into(), op("replace", "put", replace, written(&[("200", "OK"), ("201", "Created")])));
    let mut patch = vec![body(&shared.patch)];
    patch.extend(write_params());
    patch.push(query("force", "boolean"));
    object_item.insert("patch".into(), op("patch", "patch", patch, written(&[("200", "OK"), ("201", "Created")])));
    let mut delete = vec![json!({"name": "body", "in": "body", "schema": reference(&shared.delete_options)})];
    delete.extend(delete_params());
    let deleted = json!({"200": {"description": "OK", "schema": reference(&shared.status)},
        "202": {"description": "Accepted", "schema": reference(&shared.status)}});
    object_item.insert("delete".into(), op("delete", "delete", delete, deleted));
    let mut object_params = vec![path_param("name")];
    object_params.extend(scope_params);
    object_item.insert("parameters".into(), json!(object_params));

    paths.insert(format!("{collection}/{{name}}"), Value::Object(object_item));
    paths.insert(collection, Value::Object(collection_item));
    if r.namespaced {
        let all = format!("/{}/{}", gv_path(r.group, r.version), r.plural);
        let mut list_all = op("list", "list", list_params(), ok(list));
        list_all["operationId"] = json!(format!("list{group}{version}{}ForAllNamespaces", r.kind));
        paths.insert(all, json!({"get": list_all}));
    }
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "type": "string", "uniqueItems": true})
}

fn query(name: &str, type_name: &str) -> Value {
    json!({"name": name, "in": "query", "type": type_name, "uniqueItems": true})
}

fn list_params() -> Vec<Value> {
    vec![
        query("allowWatchBookmarks", "boolean"),
        query("continue", "string"),
        query("fieldSelector", "string"),
        query("labelSelector", "string"),
        query("limit", "integer"),
        query("resourceVersion", "string"),
        query("resourceVersionMatch", "string"),
        query("sendInitialEvents", "boolean"),
        query("timeoutSeconds", "integer"),
        query("watch", "boolean"),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![query("dryRun", "string"), query("gracePeriodSeconds", "integer"), query("propagationPolicy", "string")]
}

/// The keywords a Swagger 2.0 schema has that JSON Schema's drafts share and keep as they are.
const SWAGGER_KEYWORDS: &[&str] = &[
    "$ref",
    "format",
    "title",
    "description",
    "default",
    "multipleOf",
    "maximum",
    "minimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "enum",
    "readOnly",
    "xml",
    "externalDocs",
    "example",
];

/// A JSON Schema as a Swagger 2.0 schema that kube-openapi parses: boolean schemas become empty ones, `null`
/// leaves the types (none or several left: no type), `const` becomes a one-value `enum`, numeric
/// `exclusiveMaximum`/`exclusiveMinimum` become a bound and a flag, an array gets an item schema, a reference
/// keeps only its description and extensions, and keywords Swagger 2.0 lacks (`oneOf`, `anyOf`, `not`,
/// `nullable`, ...) are dropped, as upstream's v2 document drops them.
fn swagger_schema(schema: Value) -> Value {
    let Value::Object(object) = schema else { return json!({}) };
    let mut out = Map::new();
    let is_reference = object.contains_key("$ref");
    for (key, value) in object {
        if key.starts_with("x-") {
            out.insert(key, value);
            continue;
        }
        if is_reference && key != "$ref" && key != "description" {
            continue;
        }
        match key.as_str() {
            "type" => {
                let types: Vec<&str> = match &value {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                let types: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
                if let [single] = types.as_slice() {
                    out.insert(key, json!(single));
                }
            }
            "exclusiveMaximum" | "exclusiveMinimum" => match value {
                Value::Bool(_) => {
                    out.insert(key, value);
                }
                Value::Number(bound) => {
                    out.insert(if key == "exclusiveMaximum" { "maximum" } else { "minimum" }.into(), json!(bound));
                    out.insert(key, json!(true));
                }
                _ => {}
            },
            "const" => {
                out.insert("enum".into(), json!([value]));
            }
            "discriminator" if value.is_string() => {
                out.insert(key, value);
            }
            "additionalProperties" => {
                let value = if value.is_boolean() { value } else { swagger_schema(value) };
                out.insert(key, value);
            }
            "properties" => {
                if let Value::Object(properties) = value {
                    let properties: Map<String, Value> =
                        properties.into_iter().map(|(k, v)| (k, swagger_schema(v))).collect();
                    out.insert(key, Value::Object(properties));
                }
            }
            "items" => match value {
                Value::Array(mut items) if items.len() == 1 => {
                    out.insert(key, swagger_schema(items.remove(0)));
                }
                Value::Array(_) => {}
                item => {
                    out.insert(key, swagger_schema(item));
                }
            },
            "allOf" => {
                if let Value::Array(all) = value {
                    out.insert(key, Value::Array(all.into_iter().map(swagger_schema).collect()));
                }
            }
            _ if SWAGGER_KEYWORDS.contains(&key.as_str()) => {
                out.insert(key, value);
            }
            _ => {}
        }
    }
    if out.get("type").and_then(Value::as_str) == Some("array") && !out.contains_key("items") {
        out.insert("items".into(), json!({}));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests;
