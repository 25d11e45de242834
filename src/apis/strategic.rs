//! Strategic merge patch (`application/strategic-merge-patch+json`) on JSON values, as Kubernetes applies it to
//! the kinds it knows, driven by the patch metadata of `schema`.
//!
//! A patch is an object merged into the original key by key. `null` deletes a field. Lists whose schema says
//! `merge` are merged item by item: by merge key (containers by `name`, ports by `containerPort`, conditions by
//! `type`), or as a set of primitives (finalizers); every other list is replaced whole. Directives steer the
//! merge: `$patch: replace|delete|merge` on an object or a list item, `$retainKeys` (clear the members of a
//! union that the patch does not name), `$setElementOrder/<list>` (the order of a merged list) and
//! `$deleteFromPrimitiveList/<list>`.
//!
//! Merged lists are ordered as Kubernetes orders them: items named by `$setElementOrder` (or, without it, by the
//! patch) in that order, interleaved with the original's other items in their original places; so a new item
//! patched in without `$setElementOrder` goes first.
//!
//! Invariants:
//! - Pure: the inputs are not changed; the result is a new value.
//! - No directive reaches the result, and no field the patch sets to `null`: every object taken from the patch
//!   is itself merged into an empty object, which drops both.
//! - A malformed patch returns a `StrategicError`; nothing here panics on input.

use serde_json::{Map, Value};

use super::schema::{self, FieldSchema};

type Object = Map<String, Value>;

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Why a strategic merge patch could not be applied. `at` is the dotted path of the field in the patch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StrategicError {
    #[error("the patch is not a json object")]
    PatchNotObject,
    #[error("the object to patch is not a json object")]
    OriginalNotObject,
    #[error("{at}: $patch must be \"replace\", \"delete\" or \"merge\", got {value}")]
    UnknownPatch { at: String, value: String },
    #[error("{at}: unknown directive {key:?}")]
    UnknownDirective { at: String, key: String },
    #[error("{at}: {directive} must be a list")]
    DirectiveNotList { at: String, directive: String },
    #[error("{at}: $retainKeys must be a list of field names")]
    RetainKeysNotNames { at: String },
    #[error("{at}: field {field:?} is set by the patch but not named in $retainKeys")]
    NotRetained { at: String, field: String },
    #[error("{at}: list item has no merge key {key:?}")]
    MissingMergeKey { at: String, key: &'static str },
    #[error("{at}: list item is not an object")]
    ItemNotObject { at: String },
    #[error("{at}: a merged list of primitives cannot hold objects or lists")]
    ItemNotPrimitive { at: String },
    #[error("{at}: the items of the patch are not in the order of $setElementOrder")]
    OrderMismatch { at: String },
    #[error("{at}: must be a list since $setElementOrder gives its order")]
    OrderedNotList { at: String },
}

/// Applies `patch` to `original`, an object of the given kind (group `""` for core). Kinds and fields the
/// schema does not know are merged as JSON merge patch (RFC 7386) does: objects merged, lists replaced.
pub fn strategic_merge(group: &str, kind: &str, original: &Value, patch: &Value) -> Result<Value, StrategicError> {
    let Value::Object(patch) = patch else {
        return Err(StrategicError::PatchNotObject);
    };
    let Value::Object(original) = original else {
        return Err(StrategicError::OriginalNotObject);
    };
    let schema = schema::root(group, kind).map(FieldSchema::object);
    match merge_object(original.clone(), patch, schema, &Location::ROOT)? {
        Merged::Object(merged) => Ok(Value::Object(merged)),
        Merged::Deleted => Ok(Value::Object(Object::new())),
    }
}

/// What merging a patch object yields: an object, or nothing when the patch said `$patch: delete`.
enum Merged {
    Object(Object),
    Deleted,
}

/// Where in the patch we are, for error messages; built on the stack as the merge descends.
struct Location<'a> {
    parent: Option<&'a Location<'a>>,
    field: &'a str,
}

impl<'a> Location<'a> {
    const ROOT: Location<'static> = Location { parent: None, field: "" };

    fn child(&'a self, field: &'a str) -> Location<'a> {
        Location { parent: Some(self), field }
    }

    fn render(&self) -> String {
        let mut fields = Vec::new();
        let mut location = Some(self);
        while let Some(here) = location {
            if !here.field.is_empty() {
                fields.push(here.field);
            }
            location = here.parent;
        }
        if fields.is_empty() {
            return "the patch".to_owned();
        }
        fields.reverse();
        fields.join(".")
    }
}

/// The directives of one patch object, read and checked before anything is merged.
struct Directives<'p> {
    retain_keys: Option<Vec<&'p str>>,
    /// `$setElementOrder/<list>`: (list, order).
    orders: Vec<(&'p str, &'p [Value])>,
    /// `$deleteFromPrimitiveList/<list>`: (list, values to delete).
    deletions: Vec<(&'p str, &'p [Value])>,
}

impl<'p> Directives<'p> {
    fn read(patch: &'p Object, at: &Location) -> Result<Directives<'p>, StrategicError> {
        let mut directives = Directives { retain_keys: None, orders: Vec::new(), deletions: Vec::new() };
        for (key, value) in patch {
            if !key.starts_with('$') || key == PATCH {
                continue;
            }
            if key == RETAIN_KEYS {
                directives.retain_keys = Some(retained_names(value, at)?);
            } else if let Some(list) = key.strip_prefix(SET_ELEMENT_ORDER).filter(|list| !list.is_empty()) {
                directives.orders.push((list, directive_list(key, value, at)?));
            } else if let Some(list) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST).filter(|list| !list.is_empty()) {
                directives.deletions.push((list, directive_list(key, value, at)?));
            } else {
                return Err(StrategicError::UnknownDirective { at: at.render(), key: key.clone() });
            }
        }
        Ok(directives)
    }

    fn order_of(&self, list: &str) -> Option<&'p [Value]> {
        self.orders.iter().find(|(name, _)| *name == list).map(|(_, order)| *order)
    }
}

fn directive_list<'p>(key: &str, value: &'p Value, at: &Location) -> Result<&'p [Value], StrategicError> {
    match value {
        Value::Array(items) => Ok(items),
        _ => Err(StrategicError::DirectiveNotList { at: at.render(), directive: key.to_owned() }),
    }
}

fn retained_names<'p>(value: &'p Value, at: &Location) -> Result<Vec<&'p str>, StrategicError> {
    let names = directive_list(RETAIN_KEYS, value, at)?;
    names
        .iter()
        .map(|name| name.as_str().ok_or_else(|| StrategicError::RetainKeysNotNames { at: at.render() }))
        .collect()
}

/// Merges `patch` into `original`, an object whose schema is `schema` (`None`: unknown).
fn merge_object(
    mut original: Object,
    patch: &Object,
    schema: Option<FieldSchema>,
    at: &Location,
) -> Result<Merged, StrategicError> {
    if let Some(directive) = patch.get(PATCH) {
        match directive.as_str() {
            Some("delete") => return Ok(Merged::Deleted),
            Some("replace") => original.clear(),
            Some("merge") => {}
            _ => return Err(StrategicError::UnknownPatch { at: at.render(), value: directive.to_string() }),
        }
    }
    let directives = Directives::read(patch, at)?;
    if let Some(retained) = &directives.retain_keys {
        retain_keys(&mut original, patch, retained, at)?;
    }

    for (key, value) in patch.iter().filter(|(key, _)| !key.starts_with('$')) {
        let field = schema.and_then(|schema| schema.child(key));
        let here = at.child(key);
        let order = directives.order_of(key);
        if order.is_some() && !value.is_array() {
            return Err(StrategicError::OrderedNotList { at: here.render() });
        }
        let current = original.get_mut(key).map(std::mem::take);
        let merged = match value {
            Value::Null => None,
            Value::Object(patch_object) => {
                let base = match current {
                    Some(Value::Object(current)) if field.is_none_or(|field| field.strategy.merges()) => current,
                    _ => Object::new(),
                };
                match merge_object(base, patch_object, field, &here)? {
                    Merged::Object(merged) => Some(Value::Object(merged)),
                    Merged::Deleted => None,
                }
            }
            Value::Array(patch_items) => {
                let base = match current {
                    Some(Value::Array(current)) => Some(current),
                    _ => None,
                };
                Some(Value::Array(merge_list(base, Some(patch_items), order, field, &here)?))
            }
            primitive => Some(primitive.clone()),
        };
        match merged {
            Some(merged) => original.insert(key.clone(), merged),
            None => original.remove(key),
        };
    }

    for (list, order) in &directives.orders {
        if patch.contains_key(*list) {
            continue;
        }
        if let Some(Value::Array(current)) = original.get_mut(*list) {
            let field = schema.and_then(|schema| schema.child(list));
            *current = merge_list(Some(std::mem::take(current)), None, Some(order), field, &at.child(list))?;
        }
    }

    for (list, doomed) in &directives.deletions {
        if let Some(Value::Array(items)) = original.get_mut(*list) {
            items.retain(|item| !doomed.iter().any(|value| same_value(item, value)));
        }
    }
    Ok(Merged::Object(original))
}

/// `$retainKeys`: every field the patch sets must be named, and the original keeps only the named fields.
fn retain_keys(original: &mut Object, patch: &Object, retained: &[&str], at: &Location) -> Result<(), StrategicError> {
    let unnamed = patch
        .iter()
        .find(|(key, value)| !value.is_null() && !key.starts_with('$') && !retained.contains(&key.as_str()));
    if let Some((key, _)) = unnamed {
        return Err(StrategicError::NotRetained { at: at.render(), field: key.clone() });
    }
    original.retain(|key, _| retained.contains(&key.as_str()));
    Ok(())
}

/// Merges the patch's items (if any) into the original list (if any), ordered by `order` if given.
fn merge_list(
    original: Option<Vec<Value>>,
    patch: Option<&[Value]>,
    order: Option<&[Value]>,
    field: Option<FieldSchema>,
    at: &Location,
) -> Result<Vec<Value>, StrategicError> {
    let item = field.and_then(|field| field.item());
    match field.filter(|field| field.is_list() && field.strategy.merges()) {
        None => match patch {
            Some(patch) => literal_list(patch, item, at),
            None => Ok(original.unwrap_or_default()),
        },
        Some(FieldSchema { merge_key: Some(key), .. }) => {
            merge_keyed_list(original.unwrap_or_default(), patch.unwrap_or_default(), order, key, item, at)
        }
        Some(_) => merge_primitive_set(original.unwrap_or_default(), patch.unwrap_or_default(), order, at),
    }
}

/// A list the patch replaces whole: its items are taken as they are, less directives and `null` fields.
fn literal_list(patch: &[Value], item: Option<FieldSchema>, at: &Location) -> Result<Vec<Value>, StrategicError> {
    let mut items = Vec::with_capacity(patch.len());
    for value in patch {
        match value {
            Value::Object(object) if is_list_marker(object) => {}
            Value::Object(object) => {
                if let Merged::Object(merged) = merge_object(Object::new(), object, item, at)? {
                    items.push(Value::Object(merged));
                }
            }
            Value::Array(inner) => items.push(Value::Array(literal_list(inner, None, at)?)),
            primitive => items.push(primitive.clone()),
        }
    }
    Ok(items)
}

/// `{"$patch": "replace"}` or `{"$patch": "merge"}` alone: a directive about the list, not an item.
fn is_list_marker(object: &Object) -> bool {
    object.len() == 1 && matches!(object.get(PATCH).and_then(Value::as_str), Some("replace" | "merge"))
}

/// A list of objects merged by `key`: `$patch: delete` items remove every original item with their key,
/// a `$patch: replace` item makes the patch's items the whole list, other items merge into the original item
/// with the same key or are added.
fn merge_keyed_list(
    mut list: Vec<Value>,
    patch: &[Value],
    order: Option<&[Value]>,
    key: &'static str,
    item: Option<FieldSchema>,
    at: &Location,
) -> Result<Vec<Value>, StrategicError> {
    let missing_key = || StrategicError::MissingMergeKey { at: at.render(), key };
    let mut replace = false;
    let mut patch_items = Vec::with_capacity(patch.len());
    for value in patch {
        let Value::Object(object) = value else {
            return Err(StrategicError::ItemNotObject { at: at.render() });
        };
        let directive = object.get(PATCH);
        match directive.map(Value::as_str) {
            None => patch_items.push(object),
            Some(Some("delete")) => {
                let doomed = object.get(key).ok_or_else(missing_key)?;
                list.retain(|current| !has_key_value(current, key, doomed));
            }
            Some(Some("replace")) => replace = true,
            Some(Some("merge")) if !object.contains_key(key) => {}
            Some(Some("merge")) => patch_items.push(object),
            Some(_) => {
                let value = directive.map(Value::to_string).unwrap_or_default();
                return Err(StrategicError::UnknownPatch { at: at.render(), value });
            }
        }
    }
    let patch_ids =
        patch_items.iter().map(|object| object.get(key).ok_or_else(missing_key)).collect::<Result<Vec<_>, _>>()?;
    let order_ids = match order {
        Some(order) => {
            let order_ids =
                order.iter().map(|entry| entry.get(key).ok_or_else(missing_key)).collect::<Result<Vec<_>, _>>()?;
            if !follows_order(&patch_ids, &order_ids) {
                return Err(StrategicError::OrderMismatch { at: at.render() });
            }
            order_ids
        }
        None => patch_ids.clone(),
    };

    if replace {
        list.clear();
    }
    let original_ids: Vec<Value> =
        list.iter().map(|current| current.get(key).cloned().unwrap_or(Value::Null)).collect();
    for (object, id) in patch_items.into_iter().zip(&patch_ids) {
        match list.iter().position(|current| has_key_value(current, key, id)) {
            Some(index) => {
                let base = match std::mem::take(&mut list[index]) {
                    Value::Object(current) => current,
                    _ => Object::new(),
                };
                match merge_object(base, object, item, at)? {
                    Merged::Object(merged) => list[index] = Value::Object(merged),
                    Merged::Deleted => {
                        list.remove(index);
                    }
                }
            }
            None => {
                if let Merged::Object(merged) = merge_object(Object::new(), object, item, at)? {
                    list.push(Value::Object(merged));
                }
            }
        }
    }

    let ids = list
        .iter()
        .map(|current| match current {
            Value::Object(object) => object.get(key).cloned().ok_or_else(missing_key),
            _ => Err(StrategicError::ItemNotObject { at: at.render() }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(arrange(list, &ids, &order_ids, &original_ids))
}

/// A list of primitives merged as a set: the union of the original and the patch, without duplicates.
fn merge_primitive_set(
    original: Vec<Value>,
    patch: &[Value],
    order: Option<&[Value]>,
    at: &Location,
) -> Result<Vec<Value>, StrategicError> {
    if original.iter().chain(patch).any(|value| value.is_object() || value.is_array()) {
        return Err(StrategicError::ItemNotPrimitive { at: at.render() });
    }
    let patch_ids: Vec<&Value> = patch.iter().collect();
    let order_ids = match order {
        Some(order) => {
            let order_ids: Vec<&Value> = order.iter().collect();
            if !follows_order(&patch_ids, &order_ids) {
                return Err(StrategicError::OrderMismatch { at: at.render() });
            }
            order_ids
        }
        None => patch_ids,
    };
    let mut set: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    for value in original {
        if !set.iter().any(|present| same_value(present, &value)) {
            set.push(value);
        }
    }
    let original_ids = set.clone();
    for value in patch {
        if !set.iter().any(|present| same_value(present, value)) {
            set.push(value.clone());
        }
    }
    let ids = set.clone();
    Ok(arrange(set, &ids, &order_ids, &original_ids))
}

/// True if the patch's items appear in `order` in the same relative order (`order` may name more).
fn follows_order(patch_ids: &[&Value], order_ids: &[&Value]) -> bool {
    let mut next = 0;
    for id in order_ids {
        if next < patch_ids.len() && same_value(patch_ids[next], id) {
            next += 1;
        }
    }
    patch_ids.is_empty() || order_ids.is_empty() || next == patch_ids.len()
}

/// Orders merged items as Kubernetes does. The items named in `order` come in that order; the others keep
/// their order in the original. The two runs are interleaved: an unnamed item goes before a named one when
/// both were in the original and it came first there. `ids[i]` identifies `items[i]`; `original_ids` are the
/// identities of the original list, in its order.
fn arrange(items: Vec<Value>, ids: &[Value], order: &[&Value], original_ids: &[Value]) -> Vec<Value> {
    let original_index = |id: &Value| original_ids.iter().position(|original| same_value(original, id));
    let mut named = Vec::new();
    let mut unnamed = Vec::new();
    for (item, id) in items.into_iter().zip(ids) {
        match order.iter().position(|ordered| same_value(ordered, id)) {
            Some(rank) => named.push((rank, original_index(id), item)),
            None => unnamed.push((original_index(id).unwrap_or(usize::MAX), item)),
        }
    }
    named.sort_by_key(|(rank, _, _)| *rank);
    unnamed.sort_by_key(|(index, _)| *index);

    let mut arranged = Vec::with_capacity(named.len() + unnamed.len());
    let mut named = named.into_iter().peekable();
    let mut unnamed = unnamed.into_iter().peekable();
    loop {
        let unnamed_first = match (unnamed.peek(), named.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((left, _)), Some((_, right, _))) => right.is_some_and(|right| *left < right),
        };
        let next =
            if unnamed_first { unnamed.next().map(|(_, item)| item) } else { named.next().map(|(_, _, item)| item) };
        arranged.extend(next);
    }
    arranged
}

fn has_key_value(item: &Value, key: &str, id: &Value) -> bool {
    item.get(key).is_some_and(|value| same_value(value, id))
}

/// JSON equality, except that numbers compare by value (`80` equals `80.0`), as Kubernetes decodes both alike.
fn same_value(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => left == right || left.as_f64() == right.as_f64(),
        _ => left == right,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn merge(group: &str, kind: &str, original: Value, patch: Value) -> Value {
        let merged = strategic_merge(group, kind, &original, &patch).expect("patch applies");
        assert_no_directives(&merged);
        merged
    }

    fn assert_no_directives(value: &Value) {
        match value {
            Value::Object(object) => {
                for (key, value) in object {
                    assert!(!key.starts_with('$'), "directive {key} in the result");
                    assert_no_directives(value);
                }
            }
            Value::Array(items) => items.iter().for_each(assert_no_directives),
            _ => {}
        }
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "nginx", "namespace": "default", "labels": {"app": "nginx", "tier": "web"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "nginx"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": "nginx:1.25",
                            "args": ["-g", "daemon off;"],
                            "ports": [
                                {"containerPort": 80, "protocol": "TCP"},
                                {"containerPort": 443, "protocol": "TCP"}
                            ],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
                        }],
                        "volumes": [{"name": "data", "emptyDir": {}}],
                        "tolerations": [{"key": "a", "operator": "Exists"}]
                    }
                }
            }
        })
    }

    fn container(deployment: &Value) -> &Value {
        &deployment["spec"]["template"]["spec"]["containers"][0]
    }

    // Phase: the patches real clients send.

    #[test]
    fn kubectl_apply_image_change_keeps_the_ports() {
        let patch = json!({"spec": {"replicas": 3, "template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{"image": "nginx:1.26", "name": "nginx"}]
        }}}});
        let merged = merge("apps", "Deployment", deployment(), patch);
        assert_eq!(merged["spec"]["replicas"], 3);
        assert_eq!(container(&merged)["image"], "nginx:1.26");
        assert_eq!(container(&merged)["ports"], deployment()["spec"]["template"]["spec"]["containers"][0]["ports"]);
        assert_eq!(container(&merged)["env"][1]["name"], "B");
    }

    #[test]
    fn kubectl_apply_removes_a_port_with_a_delete_directive() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{
                "$setElementOrder/ports": [{"containerPort": 443}],
                "name": "nginx",
                "ports": [{"$patch": "delete", "containerPort": 80}]
            }]
        }}}});
        let merged = merge("apps", "Deployment", deployment(), patch);
        assert_eq!(container(&merged)["ports"], json!([{"containerPort": 443, "protocol": "TCP"}]));
    }

    #[test]
    fn kubectl_set_image() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{"image": "nginx:1.27", "name": "nginx"}]
        }}}});
        let merged = merge("apps", "Deployment", deployment(), patch);
        assert_eq!(container(&merged)["image"], "nginx:1.27");
        assert_eq!(container(&merged)["args"], json!(["-g", "daemon off;"]));
    }

    #[test]
    fn kubectl_rollout_restart_adds_an_annotation() {
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"
        }}}}});
        let merged = merge("apps", "Deployment", deployment(), patch);
        let metadata = &merged["spec"]["template"]["metadata"];
        assert_eq!(metadata["annotations"]["kubectl.kubernetes.io/restartedAt"], "2025-01-01T00:00:00Z");
        assert_eq!(metadata["labels"], json!({"app": "nginx"}));
        assert_eq!(merged["spec"]["template"]["spec"], deployment()["spec"]["template"]["spec"]);
    }

    #[test]
    fn kubectl_cordon() {
        let node = json!({"metadata": {"name": "node-1"}, "spec": {"podCIDR": "10.0.0.0/24"}});
        let merged = merge("", "Node", node, json!({"spec": {"unschedulable": true}}));
        assert_eq!(merged["spec"], json!({"podCIDR": "10.0.0.0/24", "unschedulable": true}));
    }

    // Phase: lists merged by key.

    #[test]
    fn env_merges_by_name() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{
            "name": "nginx",
            "$setElementOrder/env": [{"name": "A"}, {"name": "B"}, {"name": "C"}],
            "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}]
        }]}}}});
        let merged = merge("apps", "Deployment", deployment(), patch);
        assert_eq!(
            container(&merged)["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "two"}, {"name": "C", "value": "3"}])
        );
    }

    #[test]
    fn an_item_added_without_an_order_goes_first() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox"}]}}}});
        let merged = merge("apps", "Deployment", deployment(), patch);
        let names: Vec<&Value> = merged["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|container| &container["name"])
            .collect();
        assert_eq!(names, [&json!("sidecar"), &json!("nginx")]);
    }

    #[test]
    fn set_element_order_alone_reorders() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}});
        let merged = merge("", "Pod", pod, patch);
        assert_eq!(merged["spec"]["containers"], json!([{"name": "c"}, {"name": "a"}, {"name": "b"}]));
    }

    #[test]
    fn unnamed_original_items_keep_their_places() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "image": "x"}, {"name": "c"}]}});
        let patch = json!({"spec": {"containers": [{"name": "b", "image": "y"}]}});
        let merged = merge("", "Pod", pod, patch);
        assert_eq!(merged["spec"]["containers"], json!([{"name": "a"}, {"name": "b", "image": "y"}, {"name": "c"}]));
    }

    #[test]
    fn conditions_merge_by_type() {
        let node = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "reason": "Starting"},
            {"type": "DiskPressure", "status": "False"}
        ]}});
        let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": null}]}});
        let merged = merge("", "Node", node, patch);
        assert_eq!(
            merged["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}])
        );

        let job = json!({"status": {"conditions": [{"type": "Complete", "status": "False"}]}});
        let patch = json!({"status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        let merged = merge("batch", "Job", job, patch);
        assert_eq!(merged["status"]["conditions"].as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn service_ports_merge_by_port_and_owner_references_by_uid() {
        let service = json!({
            "metadata": {"ownerReferences": [{"uid": "1", "kind": "A"}]},
            "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}
        });
        let patch = json!({
            "metadata": {"ownerReferences": [{"uid": "2", "kind": "B"}]},
            "spec": {"ports": [{"port": 80.0, "targetPort": 9090}]}
        });
        let merged = merge("", "Service", service, patch);
        assert_eq!(merged["spec"]["ports"], json!([{"port": 80.0, "targetPort": 9090}, {"port": 443}]));
        assert_eq!(
            merged["metadata"]["ownerReferences"],
            json!([{"uid": "2", "kind": "B"}, {"uid": "1", "kind": "A"}])
        );
    }

    #[test]
    fn deleting_a_list_item_by_key() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{
            "name": "nginx",
            "env": [{"name": "A", "$patch": "delete"}]
        }]}}}});
        let merged = merge("apps", "Deployment", deployment(), patch);
        assert_eq!(container(&merged)["env"], json!([{"name": "B", "value": "2"}]));
    }

    // Phase: atomic lists, nulls and replace.

    #[test]
    fn atomic_lists_are_replaced() {
        let patch = json!({"spec": {"template": {"spec": {
            "tolerations": [{"key": "b", "operator": "Equal", "value": "x"}],
            "containers": [{"name": "nginx", "args": ["-v"]}]
        }}}});
        let merged = merge("apps", "Deployment", deployment(), patch);
        assert_eq!(
            merged["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "b", "operator": "Equal", "value": "x"}])
        );
        assert_eq!(container(&merged)["args"], json!(["-v"]));
    }

    #[test]
    fn null_deletes_a_field() {
        let patch = json!({
            "metadata": {"labels": {"tier": null, "absent": null}},
            "spec": {"strategy": {"rollingUpdate": null}}
        });
        let merged = merge("apps", "Deployment", deployment(), patch);
        assert_eq!(merged["metadata"]["labels"], json!({"app": "nginx"}));
        assert_eq!(merged["spec"]["strategy"], json!({"type": "RollingUpdate"}));
    }

    #[test]
    fn patch_replace_on_a_map_and_on_a_list() {
        let patch = json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}});
        let merged = merge("apps", "Deployment", deployment(), patch);
        assert_eq!(merged["metadata"]["labels"], json!({"only": "this"}));

        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "solo", "image": "busybox"},
            {"$patch": "replace"}
        ]}}}});
        let merged = merge("apps", "Deployment", deployment(), patch);
        assert_eq!(merged["spec"]["template"]["spec"]["containers"], json!([{"name": "solo", "image": "busybox"}]));
    }

    #[test]
    fn patch_delete_and_merge_on_a_map() {
        let patch = json!({"spec": {
            "strategy": {"rollingUpdate": {"$patch": "delete"}},
            "selector": {"$patch": "merge", "matchLabels": {"x": "y"}}
        }});
        let merged = merge("apps", "Deployment", deployment(), patch);
        assert_eq!(merged["spec"]["strategy"], json!({"type": "RollingUpdate"}));
        assert_eq!(merged["spec"]["selector"]["matchLabels"], json!({"app": "nginx", "x": "y"}));
    }

    // Phase: retainKeys and primitive sets.

    #[test]
    fn retain_keys_switches_a_deployment_to_recreate() {
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let merged = merge("apps", "Deployment", deployment(), patch);
        assert_eq!(merged["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn retain_keys_switches_a_volume_source() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/volumes": [{"name": "data"}],
            "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "settings"}, "name": "data"}]
        }}}});
        let merged = merge("apps", "Deployment", deployment(), patch);
        assert_eq!(
            merged["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "data", "configMap": {"name": "settings"}}])
        );
    }

    #[test]
    fn finalizers_merge_as_a_set() {
        let namespace = json!({"metadata": {"name": "team", "finalizers": ["a", "b"]}});
        let merged = merge("", "Namespace", namespace.clone(), json!({"metadata": {"finalizers": ["b", "c"]}}));
        assert_eq!(merged["metadata"]["finalizers"], json!(["a", "b", "c"]));

        let merged = merge("", "Namespace", namespace.clone(), json!({"metadata": {"finalizers": ["c"]}}));
        assert_eq!(merged["metadata"]["finalizers"], json!(["c", "a", "b"]), "a new value without an order goes first");

        let patch = json!({"metadata": {"$setElementOrder/finalizers": ["a", "b", "c"], "finalizers": ["c"]}});
        let merged = merge("", "Namespace", namespace.clone(), patch);
        assert_eq!(merged["metadata"]["finalizers"], json!(["a", "b", "c"]));

        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a", "z"]}});
        let merged = merge("", "Namespace", namespace, patch);
        assert_eq!(merged["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn unknown_kinds_merge_like_json_merge_patch() {
        let original = json!({"spec": {"items": [1, 2], "keep": true}});
        let merged = merge("example.com", "Widget", original, json!({"spec": {"items": [3], "keep": null}}));
        assert_eq!(merged, json!({"spec": {"items": [3]}}));
    }

    // Phase: malformed patches.

    #[test]
    fn bad_patches_are_errors() {
        let bad = |patch: Value| strategic_merge("apps", "Deployment", &deployment(), &patch).unwrap_err();
        assert_eq!(bad(json!([1])), StrategicError::PatchNotObject);
        assert!(matches!(bad(json!({"spec": {"$patch": "explode"}})), StrategicError::UnknownPatch { .. }));
        assert!(matches!(bad(json!({"spec": {"$patch": 1}})), StrategicError::UnknownPatch { .. }));
        assert!(matches!(bad(json!({"spec": {"$unheardOf": 1}})), StrategicError::UnknownDirective { .. }));
        let missing_key = bad(json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}));
        assert_eq!(
            missing_key,
            StrategicError::MissingMergeKey { at: "spec.template.spec.containers".into(), key: "name" }
        );
        assert_eq!(missing_key.to_string(), "spec.template.spec.containers: list item has no merge key \"name\"");
        let delete_without_key = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "delete"}]}}}});
        assert!(matches!(bad(delete_without_key), StrategicError::MissingMergeKey { .. }));
        let not_a_list = json!({"spec": {"template": {"spec": {"$setElementOrder/containers": {"name": "nginx"}}}}});
        assert!(matches!(bad(not_a_list), StrategicError::DirectiveNotList { .. }));
        let out_of_order = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{"name": "other"}]
        }}}});
        assert!(matches!(bad(out_of_order), StrategicError::OrderMismatch { .. }));
        let ordered_null =
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [], "containers": null}}}});
        assert!(matches!(bad(ordered_null), StrategicError::OrderedNotList { .. }));
        assert!(matches!(
            bad(json!({"spec": {"strategy": {"$retainKeys": "type"}}})),
            StrategicError::DirectiveNotList { .. }
        ));
        assert!(matches!(
            bad(json!({"spec": {"strategy": {"$retainKeys": [1]}}})),
            StrategicError::RetainKeysNotNames { .. }
        ));
        let unnamed = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}}});
        assert!(matches!(bad(unnamed), StrategicError::NotRetained { .. }));
        let object_finalizer = json!({"metadata": {"finalizers": [{"a": 1}]}});
        assert!(matches!(bad(object_finalizer), StrategicError::ItemNotPrimitive { .. }));
        let string_container = json!({"spec": {"template": {"spec": {"containers": ["nginx"]}}}});
        assert!(matches!(bad(string_container), StrategicError::ItemNotObject { .. }));
        assert_eq!(
            strategic_merge("", "Pod", &json!("pod"), &json!({})).unwrap_err(),
            StrategicError::OriginalNotObject
        );
    }

    // Phase: properties.

    fn json_merge_patch(target: &Value, patch: &Value) -> Value {
        let Value::Object(patch) = patch else {
            return patch.clone();
        };
        let mut merged = match target {
            Value::Object(target) => target.clone(),
            _ => Object::new(),
        };
        for (key, value) in patch {
            if value.is_null() {
                merged.remove(key);
            } else {
                let current = merged.remove(key).unwrap_or(Value::Null);
                merged.insert(key.clone(), json_merge_patch(&current, value));
            }
        }
        Value::Object(merged)
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (0u32..5).prop_map(Value::from),
            "[a-c]".prop_map(Value::from)
        ]
    }

    /// Values whose lists hold no `null` fields: a replaced list is taken less its `null` fields.
    fn document(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
        let leaf = scalar();
        leaf.prop_recursive(4, 32, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone().prop_filter("no nulls in lists", |v| !contains_null(v)), 0..3)
                    .prop_map(Value::Array),
                prop::collection::btree_map(prop::sample::select(keys), inner, 0..4).prop_map(|fields| {
                    Value::Object(fields.into_iter().map(|(key, value)| (key.to_owned(), value)).collect())
                }),
            ]
        })
    }

    fn contains_null(value: &Value) -> bool {
        match value {
            Value::Null => true,
            Value::Array(items) => items.iter().any(contains_null),
            Value::Object(object) => object.values().any(contains_null),
            _ => false,
        }
    }

    const PLAIN_KEYS: &[&str] = &["a", "b", "c", "spec", "items"];
    const TRICKY_KEYS: &[&str] = &[
        "spec",
        "template",
        "containers",
        "name",
        "ports",
        "containerPort",
        "finalizers",
        "metadata",
        "strategy",
        "$patch",
        "$retainKeys",
        "$setElementOrder/containers",
        "$setElementOrder/finalizers",
        "$deleteFromPrimitiveList/finalizers",
        "$setElementOrder/",
    ];

    proptest! {
        #[test]
        fn without_directives_or_merged_lists_it_is_json_merge_patch(
            original in document(PLAIN_KEYS).prop_map(|v| json!({"spec": v})),
            patch in document(PLAIN_KEYS).prop_map(|v| json!({"spec": v})),
        ) {
            let merged = strategic_merge("example.com", "Widget", &original, &patch).unwrap();
            prop_assert_eq!(merged, json_merge_patch(&original, &patch));
        }

        #[test]
        fn arbitrary_patches_never_panic_and_never_leak_directives(
            patch in document(TRICKY_KEYS),
            value in prop_oneof![Just("delete"), Just("replace"), Just("merge"), Just("nginx")],
        ) {
            let patch = match patch {
                Value::Object(mut object) => {
                    let containers = json!([{"name": "nginx", "$patch": value}]);
                    object.insert("spec".into(), json!({"template": {"spec": {"containers": containers}}}));
                    Value::Object(object)
                }
                other => other,
            };
            if let Ok(merged) = strategic_merge("apps", "Deployment", &deployment(), &patch) {
                assert_no_directives(&merged);
            }
        }

        #[test]
        fn merging_env_twice_is_merging_once(
            names in prop::collection::vec("[A-E]", 0..6),
            values in prop::collection::vec("[0-9]", 6),
        ) {
            let env: Vec<Value> =
                names.iter().zip(&values).map(|(name, value)| json!({"name": name, "value": value})).collect();
            let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "env": env}]}}}});
            let once = strategic_merge("apps", "Deployment", &deployment(), &patch).unwrap();
            let twice = strategic_merge("apps", "Deployment", &once, &patch).unwrap();
            prop_assert_eq!(once, twice);
        }
    }
}
