//! Server-side apply and the `metadata.managedFields` bookkeeping of every write, with the semantics Kubernetes'
//! structured merge gives built-in types, on objects in their JSON form.
//!
//! What a manager owns is a field set: a tree of path elements (`f:<field>`, `k:<list-map key>`, `v:<set item>`,
//! `i:<index>`) in which a node may be a member, meaning "this value is owned". `fieldsV1` stores the tree, with
//! `"."` marking a member that also has children. Which nodes a value yields follows `schema`: struct fields,
//! map entries, list-map items (by their keys, `protocol` defaulting to `TCP`), set items (by value). Atomic
//! lists, atomic maps, atomic structs and primitives are single leaves. Objects the table does not know are
//! structs; lists it does not know are atomic.
//!
//! `apply` merges the applied configuration into the live object, gives the applier exactly the fields of its
//! configuration, removes what it applied before and applies no more unless another manager owns it, and refuses
//! to change what another manager owns (a conflict) unless forced, in which case the ownership moves.
//! `record_update` gives the writer of a create, update or patch the fields it changed, taking them from
//! every other manager.
//!
//! Invariants:
//! - Pure: inputs are only read, except `record_update`'s `new`, whose `metadata.managedFields` it rewrites.
//!   Time comes in as `now` (RFC 3339, UTC).
//! - Managers are told apart as upstream tells them apart: an applier by (manager, subresource), an updater by
//!   (manager, apiVersion, subresource). There is one entry per manager and no entry with an empty field set.
//! - No field set holds `apiVersion`, `kind`, `metadata` itself, the metadata the server owns (name, namespace,
//!   uid, resourceVersion, generation, creationTimestamp, managedFields, ...) or, for kinds with a status
//!   subresource, anything under `status`; applying to such a kind leaves `status` as it is.
//! - Entries are sorted as upstream sorts them: appliers first, then updaters, each oldest first.
//! - Nothing panics on input: a bad configuration is `ApplyError::Invalid`; managedFields that cannot be read
//!   count as none.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::{self, Write as _};

use serde_json::{Map, Value};

use super::schema::{self, FieldSchema, ListType, ObjectType, Shape};

/// The annotation in which client-side `kubectl apply` keeps what it applied last.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The manager whose server-side applies take over from client-side apply (`kubectl apply --server-side`).
const KUBECTL: &str = "kubectl";
/// How many update entries an object keeps before the oldest are merged into `ancient-changes`.
const MAX_UPDATE_MANAGERS: usize = 10;
const ANCIENT_CHANGES: &str = "ancient-changes";
/// Struct types upstream marks `+structType=atomic`, among those the schema table names.
const ATOMIC_STRUCTS: &[&str] =
    &["LabelSelector", "NodeSelector", "NodeSelectorTerm", "ObjectReference", "LocalObjectReference", "OwnerReference"];
/// The metadata the server owns, never part of a manager's fields.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// A field another manager owns that an apply would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The manager as upstream names it in messages: its quoted name, then `with subresource "…"` if it wrote
    /// through one, and `using <apiVersion>` if it is an updater, e.g. `"kubectl-client-side-apply" using apps/v1`.
    pub manager: String,
    /// The field's path, e.g. `.spec.replicas` or `.spec.template.spec.containers[name="nginx"].image`.
    pub field: String,
}

impl Conflict {
    /// The message of this conflict's `FieldManagerConflict` cause in a 409 status.
    pub fn message(&self) -> String {
        format!("conflict with {}", self.manager)
    }
}

/// Why an apply was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Fields other managers own would change; the message is upstream's.
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration cannot be applied to this kind.
    #[error("{0}")]
    Invalid(String),
}

/// Applies `config` (the applied configuration of `manager`) to `live` (None: the object does not exist yet).
/// Returns the new object with managedFields updated: the manager owns exactly the fields in `config`
/// (operation "Apply", apiVersion, time `now`, fieldsType "FieldsV1", fieldsV1). Fields this manager owned
/// by a previous apply and no longer applies are removed from the object unless another manager also owns
/// them. A field another manager owns with a different value is a conflict unless `force`, in which case
/// ownership moves to `manager`. Applying the same value as another manager shares ownership.
///
/// As upstream, `kubectl` taking over from client-side apply is not stopped by conflicts on fields whose live
/// values are still those of the last-applied annotation, and keeps that annotation in step with what it applies.
/// The entry's time only moves when the object changes.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    group: &str,
    kind: &str,
    api_version: &str,
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    check_config(kind, api_version, config)?;
    let types = KindTypes::of(group, kind);
    let mut applied = config.clone();
    if types.has_status {
        remove_field(&mut applied, "status");
    }
    check_lists(types.root, &applied, &mut Vec::new()).map_err(ApplyError::Invalid)?;

    let live_body = live.map_or_else(|| Value::Object(Map::new()), without_managed_fields);
    let managers = live.and_then(|live| decode_managers(managed_fields_of(live)?).ok()).unwrap_or_default();
    let write = ApplyWrite { types: &types, live: &live_body, applied: &applied, api_version, manager, now };

    let outcome = match write.run(managers.clone(), force) {
        Err(clashes) if !force && manager == KUBECTL => match last_applied_fields(&types, &live_body, api_version) {
            Some(allowed) => {
                let remaining: Vec<Clash> = clashes.into_iter().filter(|clash| !allowed.has(&clash.path)).collect();
                if remaining.is_empty() {
                    write.run(managers, true)
                } else {
                    Err(remaining)
                }
            }
            None => Err(clashes),
        },
        outcome => outcome,
    };
    let (mut object, managers) = outcome.map_err(|clashes| ApplyError::Conflicts(conflicts_of(clashes)))?;
    if manager == KUBECTL {
        sync_last_applied(&mut object, config);
    }
    set_managed_fields(&mut object, &managers);
    Ok(object)
}

/// Records a non-apply write (create, update, patch) by `manager` (operation "Update"): the fields whose
/// values `new` changed or added relative to `old` become owned by `manager` and are removed from other
/// managers' sets; for a create (old None) the manager owns every field it set. Returns nothing; edits
/// `new["metadata"]["managedFields"]`.
///
/// As upstream, managedFields that `new` carries are taken as the starting point (so clients may edit them);
/// `[]` or `[{}]` clears them; absent or unreadable ones fall back to `old`'s. A write that changes nothing of
/// its own leaves the writer's entry, and its time, as they were.
pub fn record_update(
    group: &str,
    kind: &str,
    api_version: &str,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    now: &str,
) {
    let types = KindTypes::of(group, kind);
    let mut managers = managers_for_update(old, new);
    let new_body = without_managed_fields(new);
    let mut changes = match old {
        Some(old) => compare(types.root, &without_managed_fields(old), &new_body, false),
        None => compare(types.root, &Value::Object(Map::new()), &new_body, true),
    };
    if types.has_status {
        changes.ignore_top_level("status");
    }
    let mut taken = changes.modified;
    taken.union_with(&changes.added);
    release(&mut managers, &taken, &changes.removed);

    let mut fields = taken;
    strip_server_fields(&mut fields);
    if !fields.is_empty() {
        let entry = managers.entry(ManagerId::updater(manager, api_version)).or_insert_with(|| Managed {
            api_version: api_version.to_string(),
            time: None,
            fields: FieldSet::default(),
        });
        entry.fields.union_with(&fields);
        entry.api_version = api_version.to_string();
        entry.time = Some(now.to_string());
    }
    cap_update_managers(&mut managers);
    set_managed_fields(new, &managers);
}

// What the schema says about a kind and its values.

/// The schema facts apply and update need about one kind.
struct KindTypes {
    /// `None` for kinds the table does not know: every object is then a struct and every list atomic.
    root: Option<FieldSchema>,
    /// Every served kind whose type has `status` serves it through a status subresource.
    has_status: bool,
}

impl KindTypes {
    fn of(group: &str, kind: &str) -> KindTypes {
        let root = schema::root(group, kind);
        KindTypes {
            root: root.map(FieldSchema::object),
            has_status: root.is_some_and(|object_type| object_type.field("status").is_some()),
        }
    }
}

/// How a value takes part in field ownership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    /// Owned as a whole: primitives, null, atomic lists, maps and structs, values of the wrong shape.
    Leaf,
    /// An object whose keys are fields.
    Struct,
    /// An object whose keys are free-form (labels, data); each entry is owned as a whole.
    Map,
    /// A list of primitives whose items are told apart by value.
    Set,
    /// A list of objects told apart by these keys.
    ListMap(&'static [&'static str]),
}

impl Node {
    fn of(schema: Option<FieldSchema>, value: &Value) -> Node {
        match value {
            Value::Object(_) => match schema.map(|schema| schema.shape) {
                None => Node::Struct,
                Some(Shape::Object(object_type)) if !is_atomic_struct(object_type) => Node::Struct,
                Some(Shape::Map { atomic: false, .. }) => Node::Map,
                Some(_) => Node::Leaf,
            },
            Value::Array(_) => match schema.and_then(|schema| schema.list_type()) {
                Some(ListType::Set) => Node::Set,
                Some(ListType::Map(keys)) if !keys.is_empty() => Node::ListMap(keys),
                _ => Node::Leaf,
            },
            _ => Node::Leaf,
        }
    }

    fn is_container(self) -> bool {
        self != Node::Leaf
    }

    fn is_list(self) -> bool {
        matches!(self, Node::Set | Node::ListMap(_))
    }

    /// The path element of a list item, if it has one.
    fn item_element(self, item: &Value) -> Option<PathElement> {
        match self {
            Node::Set => set_element(item),
            Node::ListMap(keys) => map_element(keys, item),
            _ => None,
        }
    }
}

fn is_atomic_struct(object_type: &ObjectType) -> bool {
    ATOMIC_STRUCTS.contains(&object_type.name)
}

fn child_schema(schema: Option<FieldSchema>, name: &str) -> Option<FieldSchema> {
    schema.and_then(|schema| schema.child(name))
}

fn item_schema(schema: Option<FieldSchema>) -> Option<FieldSchema> {
    schema.and_then(|schema| schema.item())
}

/// A set item is its value; objects, lists and null cannot be set items.
fn set_element(item: &Value) -> Option<PathElement> {
    match item {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Some(PathElement::Value(Scalar(item.clone()))),
        _ => None,
    }
}

/// A list-map item is the values of its keys, sorted by key name. A missing key with a default counts as the
/// default; a missing key without one is left out; an item with none of its keys has no element.
fn map_element(keys: &[&str], item: &Value) -> Option<PathElement> {
    let Value::Object(fields) = item else { return None };
    let mut key: Vec<(String, Scalar)> = keys
        .iter()
        .filter_map(|name| {
            let value = fields.get(*name).cloned().or_else(|| key_default(name))?;
            Some((name.to_string(), Scalar(value)))
        })
        .collect();
    if key.is_empty() {
        return None;
    }
    key.sort_by(|a, b| a.0.cmp(&b.0));
    Some(PathElement::Key(key))
}

/// The defaults of list-map keys: container and service ports default their protocol to TCP.
fn key_default(name: &str) -> Option<Value> {
    (name == "protocol").then(|| Value::String("TCP".to_string()))
}

/// The children of a container value: each with its path element (None for list items that have none), its
/// schema and its value.
fn children_of(
    node: Node,
    schema: Option<FieldSchema>,
    value: &Value,
) -> Vec<(Option<PathElement>, Option<FieldSchema>, &Value)> {
    match (node, value) {
        (Node::Struct | Node::Map, Value::Object(fields)) => fields
            .iter()
            .map(|(name, child)| (Some(PathElement::Field(name.clone())), child_schema(schema, name), child))
            .collect(),
        (Node::Set | Node::ListMap(_), Value::Array(items)) => {
            let schema = item_schema(schema);
            items.iter().map(|item| (node.item_element(item), schema, item)).collect()
        }
        _ => Vec::new(),
    }
}

fn is_empty_container(value: &Value) -> bool {
    match value {
        Value::Object(fields) => fields.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

// Path elements, field sets and their wire form.

/// One step of a path, ordered as upstream orders them: fields, then keys, then values, then indices.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PathElement {
    Field(String),
    Key(Vec<(String, Scalar)>),
    Value(Scalar),
    Index(u64),
}

impl PathElement {
    /// The element's key in `fieldsV1`.
    fn to_fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let mut key = String::from("k:{");
                for (index, (name, value)) in fields.iter().enumerate() {
                    if index > 0 {
                        key.push(',');
                    }
                    write_go_string(name, &mut key);
                    key.push(':');
                    write_go_json(&value.0, &mut key);
                }
                key.push('}');
                key
            }
            PathElement::Value(value) => format!("v:{}", go_json(&value.0)),
            PathElement::Index(index) => format!("i:{index}"),
        }
    }

    /// Reads a `fieldsV1` key; `Ok(None)` for kinds of element this version does not know, which are skipped.
    fn from_fields_v1_key(key: &str) -> Result<Option<PathElement>, String> {
        let Some((prefix, body)) = key.split_at_checked(2) else {
            return Err(format!("fieldsV1 key {key:?} is too short"));
        };
        let element = match prefix {
            "f:" => PathElement::Field(body.to_string()),
            "k:" => match serde_json::from_str(body) {
                Ok(Value::Object(fields)) => {
                    let mut fields: Vec<(String, Scalar)> =
                        fields.into_iter().map(|(name, value)| (name, Scalar(value))).collect();
                    fields.sort_by(|a, b| a.0.cmp(&b.0));
                    PathElement::Key(fields)
                }
                _ => return Err(format!("fieldsV1 key {key:?} does not hold a json object")),
            },
            "v:" => match serde_json::from_str(body) {
                Ok(value) => PathElement::Value(Scalar(value)),
                Err(_) => return Err(format!("fieldsV1 key {key:?} does not hold a json value")),
            },
            "i:" => match body.parse() {
                Ok(index) => PathElement::Index(index),
                Err(_) => return Err(format!("fieldsV1 key {key:?} does not hold an index")),
            },
            _ if key.as_bytes().get(1) == Some(&b':') => return Ok(None),
            _ => return Err(format!("fieldsV1 key {key:?} has no type prefix")),
        };
        Ok(Some(element))
    }
}

/// As upstream prints paths: `.field`, `[key=value,...]`, `[=value]`, `[index]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                f.write_str("[")?;
                for (index, (name, value)) in fields.iter().enumerate() {
                    if index > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{name}={value}")?;
                }
                f.write_str("]")
            }
            PathElement::Value(value) => write!(f, "[={value}]"),
            PathElement::Index(index) => write!(f, "[{index}]"),
        }
    }
}

fn path_string(path: &[PathElement]) -> String {
    path.iter().map(PathElement::to_string).collect()
}

/// A JSON value inside a path element, with upstream's total order: numbers (compared numerically), strings,
/// booleans, lists, objects, null.
#[derive(Clone, Debug)]
struct Scalar(Value);

impl Ord for Scalar {
    fn cmp(&self, other: &Scalar) -> Ordering {
        compare_values(&self.0, &other.0)
    }
}

impl PartialOrd for Scalar {
    fn partial_cmp(&self, other: &Scalar) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Scalar {
    fn eq(&self, other: &Scalar) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scalar {}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Value::String(text) => f.write_str(&go_json(&Value::String(text.clone()))),
            Value::Array(items) => {
                f.write_str("[")?;
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}", Scalar(item.clone()))?;
                }
                f.write_str("]")
            }
            Value::Object(fields) => {
                for (name, value) in fields {
                    write!(f, "{name}={}", Scalar(value.clone()))?;
                }
                Ok(())
            }
            other => write!(f, "{other}"),
        }
    }
}

fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(value: &Value) -> u8 {
        match value {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b),
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Array(a), Value::Array(b)) => {
            a.iter().zip(b).map(|(a, b)| compare_values(a, b)).find(|o| o.is_ne()).unwrap_or(a.len().cmp(&b.len()))
        }
        (Value::Object(a), Value::Object(b)) => {
            let a: BTreeMap<&String, &Value> = a.iter().collect();
            let b: BTreeMap<&String, &Value> = b.iter().collect();
            a.iter()
                .zip(&b)
                .map(|((ka, va), (kb, vb))| ka.cmp(kb).then_with(|| compare_values(va, vb)))
                .find(|o| o.is_ne())
                .unwrap_or(a.len().cmp(&b.len()))
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

fn compare_numbers(a: &serde_json::Number, b: &serde_json::Number) -> Ordering {
    let integer = |n: &serde_json::Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    match (integer(a), integer(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => {
            let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            a.partial_cmp(&b).unwrap_or(Ordering::Equal)
        }
    }
}

fn values_equal(a: &Value, b: &Value) -> bool {
    compare_values(a, b) == Ordering::Equal
}

/// The fields a manager owns. `members` are owned values at this level; `children` lead to owned values
/// further down. A child set is never empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// True if the value at `path` is a member.
    fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|child| child.has(rest)),
        }
    }

    /// True if `element` is a member here or, when it is a struct field (`named`), leads to one: upstream
    /// counts a named field that holds owned fields as owned itself when it prunes.
    fn claims(&self, element: &PathElement, named: bool) -> bool {
        self.members.contains(element) || (named && self.children.contains_key(element))
    }

    fn union_with(&mut self, other: &FieldSet) {
        self.members.extend(other.members.iter().cloned());
        for (element, child) in &other.children {
            self.children.entry(element.clone()).or_default().union_with(child);
        }
    }

    /// The members of `self` that are not members of `other`, level by level.
    fn difference(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(element, child)| {
                let rest = match other.children.get(element) {
                    Some(other_child) => child.difference(other_child),
                    None => child.clone(),
                };
                (!rest.is_empty()).then(|| (element.clone(), rest))
            })
            .collect();
        FieldSet { members, children }
    }

    fn intersection(&self, other: &FieldSet) -> FieldSet {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(element, child)| {
                let common = child.intersection(other.children.get(element)?);
                (!common.is_empty()).then(|| (element.clone(), common))
            })
            .collect();
        FieldSet { members, children }
    }

    /// Drops the top-level field `name` and everything under it.
    fn remove_top_level(&mut self, name: &str) {
        let element = PathElement::Field(name.to_string());
        self.members.remove(&element);
        self.children.remove(&element);
    }

    /// Every member's path, in upstream's order: a level's members, then its children's paths.
    fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut paths = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut paths);
        paths
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, paths: &mut Vec<Vec<PathElement>>) {
        for member in &self.members {
            let mut path = prefix.clone();
            path.push(member.clone());
            paths.push(path);
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect_paths(prefix, paths);
            prefix.pop();
        }
    }

    fn to_fields_v1(&self) -> Value {
        let mut object = Map::new();
        self.write_fields_v1(&mut object);
        Value::Object(object)
    }

    fn write_fields_v1(&self, object: &mut Map<String, Value>) {
        let elements: BTreeSet<&PathElement> = self.members.iter().chain(self.children.keys()).collect();
        for element in elements {
            let mut node = Map::new();
            if let Some(child) = self.children.get(element) {
                if self.members.contains(element) {
                    node.insert(".".to_string(), Value::Object(Map::new()));
                }
                child.write_fields_v1(&mut node);
            }
            object.insert(element.to_fields_v1_key(), Value::Object(node));
        }
    }

    fn from_fields_v1(value: &Value) -> Result<FieldSet, String> {
        Ok(FieldSet::read_fields_v1(value)?.0)
    }

    /// Reads one node: its children, and whether the node itself is a member (it says `"."`, or it is empty).
    fn read_fields_v1(value: &Value) -> Result<(FieldSet, bool), String> {
        let Value::Object(entries) = value else {
            return Err("fieldsV1 holds a value that is not an object".to_string());
        };
        let mut set = FieldSet::default();
        let mut member = false;
        for (key, child) in entries {
            if key == "." {
                member = true;
                continue;
            }
            let Some(element) = PathElement::from_fields_v1_key(key)? else { continue };
            let (grandchildren, child_member) = FieldSet::read_fields_v1(child)?;
            if child_member {
                set.members.insert(element.clone());
            }
            if !grandchildren.is_empty() {
                set.children.entry(element).or_default().union_with(&grandchildren);
            }
        }
        let member = member || set.is_empty();
        Ok((set, member))
    }
}

/// Removes `apiVersion`, `kind`, `metadata` itself and the metadata the server owns.
fn strip_server_fields(fields: &mut FieldSet) {
    for name in ["apiVersion", "kind", "metadata"] {
        fields.members.remove(&PathElement::Field(name.to_string()));
    }
    let metadata = PathElement::Field("metadata".to_string());
    if let Some(owned) = fields.children.get_mut(&metadata) {
        for name in SERVER_METADATA {
            owned.members.remove(&PathElement::Field(name.to_string()));
        }
        if owned.is_empty() {
            fields.children.remove(&metadata);
        }
    }
}

/// Go's JSON encoding of a value: compact, object keys sorted, `<`, `>` and `&` escaped.
fn go_json(value: &Value) -> String {
    let mut text = String::new();
    write_go_json(value, &mut text);
    text
}

fn write_go_json(value: &Value, text: &mut String) {
    match value {
        Value::String(string) => write_go_string(string, text),
        Value::Array(items) => {
            text.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    text.push(',');
                }
                write_go_json(item, text);
            }
            text.push(']');
        }
        Value::Object(fields) => {
            let sorted: BTreeMap<&String, &Value> = fields.iter().collect();
            text.push('{');
            for (index, (name, field)) in sorted.into_iter().enumerate() {
                if index > 0 {
                    text.push(',');
                }
                write_go_string(name, text);
                text.push(':');
                write_go_json(field, text);
            }
            text.push('}');
        }
        other => text.push_str(&other.to_string()),
    }
}

fn write_go_string(string: &str, text: &mut String) {
    text.push('"');
    for c in string.chars() {
        match c {
            '"' => text.push_str("\\\""),
            '\\' => text.push_str("\\\\"),
            '\n' => text.push_str("\\n"),
            '\r' => text.push_str("\\r"),
            '\t' => text.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(text, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(text, "\\u{:04x}", c as u32);
            }
            c => text.push(c),
        }
    }
    text.push('"');
}

// Managers and the managedFields entries that store them.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who a managedFields entry belongs to. Appliers are one manager whatever apiVersion they apply with, so
/// their `api_version` here is empty.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ManagerId {
    manager: String,
    operation: Operation,
    api_version: String,
    subresource: String,
}

impl ManagerId {
    fn applier(manager: &str) -> ManagerId {
        ManagerId {
            manager: manager.to_string(),
            operation: Operation::Apply,
            api_version: String::new(),
            subresource: String::new(),
        }
    }

    fn updater(manager: &str, api_version: &str) -> ManagerId {
        ManagerId {
            manager: manager.to_string(),
            operation: Operation::Update,
            api_version: api_version.to_string(),
            subresource: String::new(),
        }
    }

    /// Upstream's identifier of the manager (the JSON of its entry without time and fields), by which it
    /// orders managers in messages and when capping.
    fn identifier(&self) -> String {
        let mut text = String::from("{");
        let fields = [
            ("manager", self.manager.as_str()),
            ("operation", self.operation.as_str()),
            ("apiVersion", self.api_version.as_str()),
            ("subresource", self.subresource.as_str()),
        ];
        for (name, value) in fields.into_iter().filter(|(_, value)| !value.is_empty()) {
            if text.len() > 1 {
                text.push(',');
            }
            write_go_string(name, &mut text);
            text.push(':');
            write_go_string(value, &mut text);
        }
        text.push('}');
        text
    }

    /// The manager as conflict messages name it.
    fn describe(&self) -> String {
        let mut text = go_json(&Value::String(self.manager.clone()));
        if !self.subresource.is_empty() {
            let _ = write!(text, " with subresource {}", go_json(&Value::String(self.subresource.clone())));
        }
        if self.operation == Operation::Update {
            let _ = write!(text, " using {}", self.api_version);
        }
        text
    }
}

/// One manager's entry: the apiVersion its fields are in, when it last changed the object, what it owns.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Managed {
    api_version: String,
    time: Option<String>,
    fields: FieldSet,
}

type Managers = BTreeMap<ManagerId, Managed>;

fn managed_fields_of(object: &Value) -> Option<&Value> {
    object.get("metadata")?.get("managedFields")
}

/// Reads managedFields entries; any entry upstream would refuse makes the whole list unreadable.
fn decode_managers(entries: &Value) -> Result<Managers, String> {
    let Value::Array(entries) = entries else {
        return Err("managedFields is not a list".to_string());
    };
    let mut managers = Managers::new();
    for (index, entry) in entries.iter().enumerate() {
        let text = |name: &str| entry.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
        let operation = match entry.get("operation").and_then(Value::as_str) {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            _ => return Err(format!("managed fields entry {index}: operation must be Apply or Update")),
        };
        let api_version = text("apiVersion");
        if api_version.is_empty() {
            return Err(format!("managed fields entry {index}: apiVersion must not be empty"));
        }
        if entry.get("fieldsType").and_then(Value::as_str) != Some("FieldsV1") {
            return Err(format!("managed fields entry {index}: fieldsType must be FieldsV1"));
        }
        let fields = match entry.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::default(),
            Some(fields) => {
                FieldSet::from_fields_v1(fields).map_err(|e| format!("managed fields entry {index}: {e}"))?
            }
        };
        let id = ManagerId {
            manager: text("manager"),
            operation,
            api_version: if operation == Operation::Apply { String::new() } else { api_version.clone() },
            subresource: text("subresource"),
        };
        let time = entry.get("time").and_then(Value::as_str).map(str::to_string);
        managers.insert(id, Managed { api_version, time, fields });
    }
    Ok(managers)
}

/// The entries, in upstream's order: operation (Apply before Update), time, manager, apiVersion, subresource.
fn encode_managers(managers: &Managers) -> Vec<Value> {
    let mut entries: Vec<(&ManagerId, &Managed)> = managers.iter().collect();
    entries.sort_by(|(a_id, a), (b_id, b)| {
        a_id.operation
            .cmp(&b_id.operation)
            .then_with(|| a.time.as_deref().unwrap_or_default().cmp(b.time.as_deref().unwrap_or_default()))
            .then_with(|| a_id.manager.cmp(&b_id.manager))
            .then_with(|| a.api_version.cmp(&b.api_version))
            .then_with(|| a_id.subresource.cmp(&b_id.subresource))
    });
    entries
        .into_iter()
        .map(|(id, managed)| {
            let mut entry = Map::new();
            entry.insert("manager".to_string(), Value::String(id.manager.clone()));
            entry.insert("operation".to_string(), Value::String(id.operation.as_str().to_string()));
            entry.insert("apiVersion".to_string(), Value::String(managed.api_version.clone()));
            if let Some(time) = &managed.time {
                entry.insert("time".to_string(), Value::String(time.clone()));
            }
            entry.insert("fieldsType".to_string(), Value::String("FieldsV1".to_string()));
            entry.insert("fieldsV1".to_string(), managed.fields.to_fields_v1());
            if !id.subresource.is_empty() {
                entry.insert("subresource".to_string(), Value::String(id.subresource.clone()));
            }
            Value::Object(entry)
        })
        .collect()
}

/// Writes the entries into `object.metadata.managedFields`, or removes it when there are none.
fn set_managed_fields(object: &mut Value, managers: &Managers) {
    let Value::Object(fields) = object else { return };
    if managers.is_empty() {
        if let Some(Value::Object(metadata)) = fields.get_mut("metadata") {
            metadata.remove("managedFields");
        }
        return;
    }
    let metadata = fields.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(metadata) = metadata {
        metadata.remove("managedFields");
        metadata.insert("managedFields".to_string(), Value::Array(encode_managers(managers)));
    }
}

/// The managers a non-apply write starts from: those `new` carries, unless it carries none or cannot be read
/// (then `old`'s), or asks for a reset with `[]` or `[{}]` (then none).
fn managers_for_update(old: Option<&Value>, new: &Value) -> Managers {
    if let Some(Value::Array(entries)) = managed_fields_of(new) {
        let reset = match entries.as_slice() {
            [] => true,
            [only] => only.as_object().is_some_and(Map::is_empty),
            _ => false,
        };
        if reset {
            return Managers::new();
        }
        if let Ok(managers) = decode_managers(&Value::Array(entries.clone())) {
            if !managers.is_empty() {
                return managers;
            }
        }
    }
    old.and_then(managed_fields_of).and_then(|entries| decode_managers(entries).ok()).unwrap_or_default()
}

/// Takes `taken` and `removed` away from every manager and drops those left with nothing.
fn release(managers: &mut Managers, taken: &FieldSet, removed: &FieldSet) {
    for managed in managers.values_mut() {
        managed.fields = managed.fields.difference(taken).difference(removed);
    }
    managers.retain(|_, managed| !managed.fields.is_empty());
}

/// Keeps at most `MAX_UPDATE_MANAGERS` update entries by merging the oldest ones, per apiVersion, into an
/// `ancient-changes` entry, as upstream does.
fn cap_update_managers(managers: &mut Managers) {
    let mut updaters: Vec<(String, String, ManagerId)> = managers
        .iter()
        .filter(|(id, _)| id.operation == Operation::Update)
        .map(|(id, managed)| (managed.time.clone().unwrap_or_default(), id.identifier(), id.clone()))
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort();
    let mut remaining = updaters.len();
    let mut first_of_version: BTreeMap<String, ManagerId> = BTreeMap::new();
    for (_, _, id) in updaters {
        if remaining <= MAX_UPDATE_MANAGERS {
            break;
        }
        let Some(managed) = managers.get(&id).cloned() else { continue };
        let bucket = ManagerId::updater(ANCIENT_CHANGES, &managed.api_version);
        let Some(first) = first_of_version.get(&managed.api_version).cloned() else {
            first_of_version.insert(managed.api_version.clone(), id);
            continue;
        };
        if id == bucket {
            continue;
        }
        if !managers.contains_key(&bucket) {
            if let Some(first_managed) = managers.remove(&first) {
                managers.insert(bucket.clone(), first_managed);
            }
        }
        if let Some(merged) = managers.get_mut(&bucket) {
            merged.fields.union_with(&managed.fields);
            merged.time = managed.time.clone();
        }
        managers.remove(&id);
        remaining -= 1;
    }
}

// Apply.

/// A field of another manager that an apply would change.
struct Clash {
    manager: ManagerId,
    path: Vec<PathElement>,
}

/// The inputs of one apply, run once, or twice when taking over from client-side apply.
struct ApplyWrite<'a> {
    types: &'a KindTypes,
    /// The live object without managedFields (an empty object for a create).
    live: &'a Value,
    /// The applied configuration without what apply ignores (status).
    applied: &'a Value,
    api_version: &'a str,
    manager: &'a str,
    now: &'a str,
}

impl ApplyWrite<'_> {
    fn run(&self, mut managers: Managers, force: bool) -> Result<(Value, Managers), Vec<Clash>> {
        let root = self.types.root;
        let id = ManagerId::applier(self.manager);
        let mut object = merge(root, self.live, self.applied);
        let applied_fields = fields_of(root, self.applied);

        let previous = managers.remove(&id);
        if let Some(previous) = previous.as_ref().filter(|previous| !previous.fields.is_empty()) {
            let mut owned = applied_fields.clone();
            for managed in managers.values() {
                owned.union_with(&managed.fields);
            }
            prune(root, &mut object, &previous.fields, &owned);
        }

        let mut changes = compare(root, self.live, &object, false);
        if self.types.has_status {
            changes.ignore_top_level("status");
        }
        let mut taken = changes.modified;
        taken.union_with(&changes.added);
        let clashes: Vec<Clash> = managers
            .iter()
            .flat_map(|(other, managed)| {
                let paths = managed.fields.intersection(&taken).paths();
                paths.into_iter().map(|path| Clash { manager: other.clone(), path })
            })
            .collect();
        if !force && !clashes.is_empty() {
            return Err(clashes);
        }
        release(&mut managers, &taken, &changes.removed);

        let mut fields = applied_fields;
        strip_server_fields(&mut fields);
        if !fields.is_empty() {
            let time = if object != *self.live {
                Some(self.now.to_string())
            } else {
                previous.and_then(|previous| previous.time)
            };
            managers.insert(id, Managed { api_version: self.api_version.to_string(), time, fields });
        }
        Ok((object, managers))
    }
}

fn check_config(kind: &str, api_version: &str, config: &Value) -> Result<(), ApplyError> {
    let Value::Object(object) = config else {
        return Err(ApplyError::Invalid("the applied configuration is not a json object".to_string()));
    };
    let text = |name: &str| object.get(name).and_then(Value::as_str).unwrap_or_default();
    if text("apiVersion") != api_version {
        return Err(ApplyError::Invalid(format!(
            "incorrect version specified in apply patch: specified patch version: {}, expected: {api_version}",
            text("apiVersion")
        )));
    }
    if text("kind") != kind {
        let group_version = if api_version.contains('/') { api_version.to_string() } else { format!("/{api_version}") };
        return Err(ApplyError::Invalid(format!("invalid object type: {group_version}, Kind={}", text("kind"))));
    }
    match object.get("metadata") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(metadata)) if metadata.get("managedFields").is_none_or(Value::is_null) => Ok(()),
        Some(Value::Object(_)) => Err(ApplyError::Invalid("metadata.managedFields must be nil".to_string())),
        Some(_) => Err(ApplyError::Invalid("metadata is not a json object".to_string())),
    }
}

/// Refuses lists whose items cannot be told apart: list-map items without keys or sets holding non-primitives,
/// and two items with the same key.
fn check_lists(schema: Option<FieldSchema>, value: &Value, path: &mut Vec<PathElement>) -> Result<(), String> {
    let node = Node::of(schema, value);
    if node.is_list() {
        let mut seen = BTreeSet::new();
        let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
        for (index, item) in items.iter().enumerate() {
            let Some(element) = node.item_element(item) else {
                let why = match node {
                    Node::ListMap(keys) => format!("has none of the list's keys {keys:?}"),
                    _ => "is not a string, number or boolean, as the items of a set must be".to_string(),
                };
                return Err(format!("{}: item {index} {why}", path_string(path)));
            };
            if !seen.insert(element.clone()) {
                return Err(format!("{}: duplicate entries for key {element}", path_string(path)));
            }
        }
    }
    for (element, child_schema, child) in children_of(node, schema, value) {
        let Some(element) = element else { continue };
        path.push(element);
        let checked = check_lists(child_schema, child, path);
        path.pop();
        checked?;
    }
    Ok(())
}

/// The fields `kubectl` may take from client-side apply without a conflict: those of the last-applied
/// annotation whose live values are still the ones it records.
fn last_applied_fields(types: &KindTypes, live: &Value, api_version: &str) -> Option<FieldSet> {
    let text = live.get("metadata")?.get("annotations")?.get(LAST_APPLIED)?.as_str()?;
    let last_applied: Value = serde_json::from_str(text).ok()?;
    if last_applied.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    check_lists(types.root, &last_applied, &mut Vec::new()).ok()?;
    let changes = compare(types.root, &last_applied, live, false);
    let fields = fields_of(types.root, &last_applied);
    Some(fields.difference(&changes.modified).difference(&changes.added).difference(&changes.removed))
}

/// Rewrites an existing last-applied annotation to the configuration `kubectl` just applied.
fn sync_last_applied(object: &mut Value, config: &Value) {
    let annotations =
        object.get_mut("metadata").and_then(|metadata| metadata.get_mut("annotations")).and_then(Value::as_object_mut);
    let Some(annotations) = annotations else { return };
    if annotations.get(LAST_APPLIED).and_then(Value::as_str).is_none_or(str::is_empty) {
        return;
    }
    let mut recorded = config.clone();
    if let Some(Value::Object(config_annotations)) =
        recorded.get_mut("metadata").and_then(|metadata| metadata.get_mut("annotations"))
    {
        config_annotations.remove(LAST_APPLIED);
    }
    annotations.insert(LAST_APPLIED.to_string(), Value::String(go_json(&recorded) + "\n"));
}

fn conflicts_of(mut clashes: Vec<Clash>) -> Vec<Conflict> {
    clashes.sort_by_cached_key(|clash| clash.manager.identifier());
    clashes
        .into_iter()
        .map(|clash| Conflict { manager: clash.manager.describe(), field: path_string(&clash.path) })
        .collect()
}

/// Upstream's message: one conflict on one line; several grouped by manager, one line per field.
fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [conflict] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with {}: {}", conflict.manager, conflict.field);
    }
    let mut lines: Vec<String> = Vec::new();
    let mut current: Option<&str> = None;
    for conflict in conflicts {
        if current != Some(conflict.manager.as_str()) {
            lines.push(format!("conflicts with {}:", conflict.manager));
            current = Some(conflict.manager.as_str());
        }
        lines.push(format!("- {}", conflict.field));
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

fn without_managed_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
        metadata.remove("managedFields");
    }
    object
}

fn remove_field(object: &mut Value, name: &str) {
    if let Value::Object(fields) = object {
        fields.remove(name);
    }
}

// The structured merge: field sets of values, merging, pruning and comparing.

/// The fields a value sets: its leaves, every list item and map entry, and empty or null struct fields.
/// Empty granular lists set nothing.
fn fields_of(schema: Option<FieldSchema>, value: &Value) -> FieldSet {
    let mut fields = FieldSet::default();
    collect_fields(Node::of(schema, value), schema, value, &mut fields);
    fields
}

fn collect_fields(node: Node, schema: Option<FieldSchema>, value: &Value, fields: &mut FieldSet) {
    let children = children_of(node, schema, value);
    let mut counts: BTreeMap<&PathElement, usize> = BTreeMap::new();
    for element in children.iter().filter_map(|(element, _, _)| element.as_ref()) {
        *counts.entry(element).or_default() += 1;
    }
    for (element, child_schema, child) in &children {
        let Some(element) = element else { continue };
        if counts.get(element).is_some_and(|count| *count > 1) {
            fields.members.insert(element.clone());
            continue;
        }
        let child_node = Node::of(*child_schema, child);
        let mut below = FieldSet::default();
        collect_fields(child_node, *child_schema, child, &mut below);
        let member = match node {
            Node::Struct => child_node == Node::Leaf || child.as_object().is_some_and(Map::is_empty),
            _ => true,
        };
        if member {
            fields.members.insert(element.clone());
        }
        if !below.is_empty() {
            fields.children.insert(element.clone(), below);
        }
    }
}

/// The live object with the configuration merged in: the configuration's values win; structs and maps merge
/// key by key; list maps and sets merge item by item in upstream's order; everything else is replaced.
fn merge(schema: Option<FieldSchema>, live: &Value, config: &Value) -> Value {
    let live_node = Node::of(schema, live);
    if config.is_null() {
        return if live_node.is_container() && !is_empty_container(live) { live.clone() } else { Value::Null };
    }
    let node = Node::of(schema, config);
    if node != live_node {
        return config.clone();
    }
    match (node, live, config) {
        (Node::Struct | Node::Map, Value::Object(live_fields), Value::Object(config_fields)) => {
            let mut merged = live_fields.clone();
            for (name, value) in config_fields {
                let value = match live_fields.get(name) {
                    Some(live_value) => merge(child_schema(schema, name), live_value, value),
                    None => value.clone(),
                };
                merged.insert(name.clone(), value);
            }
            Value::Object(merged)
        }
        (Node::Set | Node::ListMap(_), Value::Array(live_items), Value::Array(config_items)) => {
            Value::Array(merge_items(node, item_schema(schema), live_items, config_items))
        }
        _ => config.clone(),
    }
}

/// Merges list items as upstream orders them: live items the configuration does not name stay where they
/// are; the configuration's items come in its own order, each as soon as the live list reaches the next of
/// them it already holds; new items after the last live one are appended.
fn merge_items(node: Node, schema: Option<FieldSchema>, live: &[Value], config: &[Value]) -> Vec<Value> {
    let live_elements: Vec<Option<PathElement>> = live.iter().map(|item| node.item_element(item)).collect();
    let config_elements: Vec<Option<PathElement>> = config.iter().map(|item| node.item_element(item)).collect();
    let mut live_positions: BTreeMap<&PathElement, Vec<usize>> = BTreeMap::new();
    for (index, element) in live_elements.iter().enumerate() {
        if let Some(element) = element {
            live_positions.entry(element).or_default().push(index);
        }
    }
    let in_config: BTreeSet<&PathElement> = config_elements.iter().flatten().collect();
    let mut shared: VecDeque<&PathElement> =
        config_elements.iter().flatten().filter(|element| live_positions.contains_key(element)).collect();
    let mut emitted: BTreeSet<&PathElement> = BTreeSet::new();

    let mut merged = Vec::with_capacity(live.len().max(config.len()));
    let (mut l, mut c) = (0, 0);
    while l < live.len() || c < config.len() {
        if let Some(live_item) = live.get(l) {
            match live_elements.get(l).and_then(Option::as_ref) {
                Some(element) if in_config.contains(element) => {
                    if emitted.contains(element) || shared.front() != Some(&element) {
                        l += 1;
                        continue;
                    }
                }
                _ => {
                    merged.push(live_item.clone());
                    l += 1;
                    continue;
                }
            }
        }
        let Some(config_item) = config.get(c) else {
            l += 1;
            continue;
        };
        let element = config_elements.get(c).and_then(Option::as_ref);
        let live_item = match element.and_then(|element| live_positions.get(element)).map(Vec::as_slice) {
            Some([only]) => live.get(*only),
            _ => None,
        };
        merged.push(match live_item {
            Some(live_item) => merge(schema, live_item, config_item),
            None => config_item.clone(),
        });
        if let Some(element) = element {
            emitted.insert(element);
            if shared.front() == Some(&element) {
                shared.pop_front();
            }
        }
        c += 1;
    }
    merged
}

/// Removes from `object` what the applier owned before (`last`) unless it is still owned (`owned`: every
/// manager's fields, the applier's new ones included). As upstream, a value goes with everything under it when
/// it, or a struct field, map entry or list item on the way to it, is owned by nobody; containers emptied this
/// way go too.
fn prune(schema: Option<FieldSchema>, object: &mut Value, last: &FieldSet, owned: &FieldSet) {
    prune_node(Node::Struct, schema, object, last, Some(owned), true);
}

/// Prunes the children of one container; returns true if that left it empty.
fn prune_node(
    node: Node,
    schema: Option<FieldSchema>,
    value: &mut Value,
    last: &FieldSet,
    owned: Option<&FieldSet>,
    path_owned: bool,
) -> bool {
    let named = node == Node::Struct;
    let prune_child = |element: &PathElement, child_schema: Option<FieldSchema>, child: &mut Value| -> bool {
        let last_below = last.children.get(element);
        let was_applied = last.claims(element, named);
        if !was_applied && last_below.is_none() {
            return false;
        }
        let is_owned = path_owned && owned.is_some_and(|owned| owned.claims(element, named));
        if was_applied && !is_owned {
            return true;
        }
        let Some(last_below) = last_below else { return false };
        let child_node = Node::of(child_schema, child);
        let owned_below = owned.and_then(|owned| owned.children.get(element));
        child_node.is_container() && prune_node(child_node, child_schema, child, last_below, owned_below, is_owned)
    };
    match value {
        Value::Object(fields) if matches!(node, Node::Struct | Node::Map) => {
            let before = fields.len();
            let doomed: Vec<String> = fields
                .iter_mut()
                .filter_map(|(name, child)| {
                    let element = PathElement::Field(name.clone());
                    prune_child(&element, child_schema(schema, name), child).then(|| name.clone())
                })
                .collect();
            for name in doomed {
                fields.remove(&name);
            }
            before > 0 && fields.is_empty()
        }
        Value::Array(items) if node.is_list() => {
            let before = items.len();
            let item_schema = item_schema(schema);
            let keep: Vec<bool> = items
                .iter_mut()
                .map(|item| match node.item_element(item) {
                    Some(element) => !prune_child(&element, item_schema, item),
                    None => true,
                })
                .collect();
            let mut keep = keep.into_iter();
            items.retain(|_| keep.next().unwrap_or(true));
            before > 0 && items.is_empty()
        }
        _ => false,
    }
}

/// What changed from one version of an object to the next, as field sets. Added and removed containers are
/// members along with what they hold; a modified container is not, only its changed leaves.
#[derive(Debug, Default)]
struct Comparison {
    added: FieldSet,
    modified: FieldSet,
    removed: FieldSet,
}

impl Comparison {
    fn ignore_top_level(&mut self, name: &str) {
        self.added.remove_top_level(name);
        self.modified.remove_top_level(name);
        self.removed.remove_top_level(name);
    }
}

/// Compares `old` with `new`. With `creating`, structs that appear are not members themselves (only what
/// they hold), since in upstream's empty object they already exist.
fn compare(schema: Option<FieldSchema>, old: &Value, new: &Value, creating: bool) -> Comparison {
    let mut comparison = Comparison::default();
    let mut walk = CompareWalk { creating, path: Vec::new(), comparison: &mut comparison };
    walk.node(schema, Some(old), Some(new), false);
    comparison
}

struct CompareWalk<'a> {
    creating: bool,
    path: Vec<PathElement>,
    comparison: &'a mut Comparison,
}

impl CompareWalk<'_> {
    /// Compares the values at the current path; `named` says the value is a struct field.
    fn node(&mut self, schema: Option<FieldSchema>, old: Option<&Value>, new: Option<&Value>, named: bool) {
        let node = match (old, new) {
            (Some(old), Some(new)) => {
                let (old_node, new_node) = (Node::of(schema, old), Node::of(schema, new));
                if old_node == new_node {
                    new_node
                } else {
                    Node::Leaf
                }
            }
            (Some(value), None) | (None, Some(value)) => Node::of(schema, value),
            (None, None) => return,
        };
        let both_empty = old.is_none_or(is_empty_container) && new.is_none_or(is_empty_container);
        if node == Node::Leaf || both_empty {
            match (old, new) {
                (None, Some(_)) => self.comparison.added.insert(&self.path),
                (Some(_), None) => self.comparison.removed.insert(&self.path),
                (Some(old), Some(new)) if !values_equal(old, new) => self.comparison.modified.insert(&self.path),
                _ => {}
            }
            return;
        }
        if node.is_list() {
            self.items(node, schema, old, new);
        } else {
            self.fields(node, schema, old, new);
        }
        if old.is_none() && !(self.creating && named && node == Node::Struct) {
            self.comparison.added.insert(&self.path);
        }
        if new.is_none() {
            self.comparison.removed.insert(&self.path);
        }
    }

    fn fields(&mut self, node: Node, schema: Option<FieldSchema>, old: Option<&Value>, new: Option<&Value>) {
        let old_fields = old.and_then(Value::as_object);
        let new_fields = new.and_then(Value::as_object);
        let names: BTreeSet<&String> = old_fields.into_iter().chain(new_fields).flat_map(Map::keys).collect();
        for name in names {
            self.path.push(PathElement::Field(name.clone()));
            let old_child = old_fields.and_then(|fields| fields.get(name));
            let new_child = new_fields.and_then(|fields| fields.get(name));
            self.node(child_schema(schema, name), old_child, new_child, node == Node::Struct);
            self.path.pop();
        }
    }

    /// Pairs items by their path elements. Items that are duplicated on either side are compared as one
    /// leaf, as upstream does.
    fn items(&mut self, node: Node, schema: Option<FieldSchema>, old: Option<&Value>, new: Option<&Value>) {
        type Sides<'v> = (Vec<&'v Value>, Vec<&'v Value>);
        let mut pairs: BTreeMap<PathElement, Sides<'_>> = BTreeMap::new();
        for item in old.and_then(Value::as_array).into_iter().flatten() {
            if let Some(element) = node.item_element(item) {
                pairs.entry(element).or_default().0.push(item);
            }
        }
        for item in new.and_then(Value::as_array).into_iter().flatten() {
            if let Some(element) = node.item_element(item) {
                pairs.entry(element).or_default().1.push(item);
            }
        }
        let schema = item_schema(schema);
        for (element, (old_items, new_items)) in pairs {
            self.path.push(element);
            match (old_items.as_slice(), new_items.as_slice()) {
                ([] | [_], [] | [_]) => {
                    self.node(schema, old_items.first().copied(), new_items.first().copied(), false)
                }
                ([_, _, ..], [_, _, ..]) => {
                    let same = old_items.len() == new_items.len()
                        && old_items.iter().zip(&new_items).all(|(old, new)| values_equal(old, new));
                    if !same {
                        self.comparison.modified.insert(&self.path);
                    }
                }
                ([_, _, ..], _) => {
                    if let Some(new_item) = new_items.first() {
                        self.node(schema, None, Some(new_item), false);
                    }
                    self.comparison.removed.insert(&self.path);
                }
                (_, _) => {
                    if let Some(old_item) = old_items.first() {
                        self.node(schema, Some(old_item), None, false);
                    }
                    self.comparison.added.insert(&self.path);
                }
            }
            self.path.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const T0: &str = "2025-01-01T00:00:00Z";
    const T1: &str = "2025-01-01T00:01:00Z";
    const T2: &str = "2025-01-01T00:02:00Z";
    const T3: &str = "2025-01-01T00:03:00Z";

    fn deployment(replicas: u64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "nginx", "namespace": "default", "labels": {"app": "nginx"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]}
                }
            }
        })
    }

    fn apply_deployment(live: Option<&Value>, config: &Value, manager: &str, force: bool, now: &str) -> Value {
        match apply("apps", "Deployment", "apps/v1", live, config, manager, force, now) {
            Ok(object) => object,
            Err(e) => panic!("apply by {manager} failed: {e}"),
        }
    }

    fn entries(object: &Value) -> Vec<Value> {
        object["metadata"]["managedFields"].as_array().cloned().unwrap_or_default()
    }

    fn entry<'a>(object: &'a Value, manager: &str, operation: &str) -> &'a Value {
        object["metadata"]["managedFields"]
            .as_array()
            .and_then(|entries| entries.iter().find(|e| e["manager"] == manager && e["operation"] == operation))
            .unwrap_or_else(|| panic!("no {operation} entry for {manager} in {object:#}"))
    }

    fn fields(object: &Value, manager: &str, operation: &str) -> FieldSet {
        FieldSet::from_fields_v1(&entry(object, manager, operation)["fieldsV1"]).unwrap()
    }

    fn path(text: &[&str]) -> Vec<PathElement> {
        text.iter().map(|key| PathElement::from_fields_v1_key(key).unwrap().unwrap()).collect()
    }

    fn container_names(object: &Value) -> Vec<&str> {
        object["spec"]["template"]["spec"]["containers"]
            .as_array()
            .map(|containers| containers.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn create_by_apply_records_what_upstream_records() {
        let object = apply_deployment(None, &deployment(2, "nginx:1.25"), "kubectl", false, T0);

        let entries = entries(&object);
        assert_eq!(entries.len(), 1);
        let expected = json!({
            "manager": "kubectl",
            "operation": "Apply",
            "apiVersion": "apps/v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                            ".": {},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                        }}}
                    }
                }
            }
        });
        assert_eq!(entries[0], expected);

        let mut body = object.clone();
        body["metadata"].as_object_mut().unwrap().remove("managedFields");
        assert_eq!(body, deployment(2, "nginx:1.25"), "the object is the configuration");
    }

    #[test]
    fn reapplying_without_a_field_removes_it() {
        let mut first = deployment(2, "nginx:1.25");
        first["metadata"]["labels"]["tier"] = json!("web");
        let object = apply_deployment(None, &first, "kubectl", false, T0);

        let second = deployment(2, "nginx:1.25");
        let mut without_replicas = second.clone();
        without_replicas["spec"].as_object_mut().unwrap().remove("replicas");
        let object = apply_deployment(Some(&object), &without_replicas, "kubectl", false, T1);

        assert_eq!(object["metadata"]["labels"], json!({"app": "nginx"}), "the label no longer applied is gone");
        assert!(object["spec"].get("replicas").is_none(), "replicas is gone: {object:#}");
        let owned = fields(&object, "kubectl", "Apply");
        assert!(!owned.has(&path(&["f:spec", "f:replicas"])));
        assert!(!owned.has(&path(&["f:metadata", "f:labels", "f:tier"])));
        assert_eq!(entry(&object, "kubectl", "Apply")["time"], T1);

        // Dropping every label removes the labels map, which no one owns any more.
        let mut no_labels = without_replicas.clone();
        no_labels["metadata"].as_object_mut().unwrap().remove("labels");
        let object = apply_deployment(Some(&object), &no_labels, "kubectl", false, T2);
        assert!(object["metadata"].get("labels").is_none(), "{object:#}");
        assert_eq!(object["metadata"]["name"], "nginx");
    }

    #[test]
    fn reapplying_the_same_configuration_changes_nothing() {
        let config = deployment(2, "nginx:1.25");
        let object = apply_deployment(None, &config, "kubectl", false, T0);
        let again = apply_deployment(Some(&object), &config, "kubectl", false, T1);
        assert_eq!(again, object, "same object, same entry, same time");
    }

    #[test]
    fn two_managers_own_different_containers_of_one_list() {
        let object = apply_deployment(None, &deployment(2, "nginx:1.25"), "team-a", false, T0);
        let sidecar = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "nginx", "namespace": "default"},
            "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy:1"}]}}}
        });
        let object = apply_deployment(Some(&object), &sidecar, "team-b", false, T1);

        assert_eq!(container_names(&object), ["nginx", "proxy"], "the new container is appended");
        assert_eq!(object["spec"]["template"]["spec"]["containers"][0]["ports"], json!([{"containerPort": 80}]));
        let containers = ["f:spec", "f:template", "f:spec", "f:containers"];
        let item = |name: &str| {
            let mut p = path(&containers);
            p.push(PathElement::Key(vec![("name".to_string(), Scalar(json!(name)))]));
            p
        };
        assert!(fields(&object, "team-a", "Apply").has(&item("nginx")));
        assert!(!fields(&object, "team-a", "Apply").has(&item("proxy")));
        assert!(fields(&object, "team-b", "Apply").has(&item("proxy")));
        assert!(!fields(&object, "team-b", "Apply").has(&item("nginx")));

        // team-b stops applying its container: it goes, team-a's stays.
        let mut nothing = sidecar.clone();
        nothing["spec"] = json!({"template": {"spec": {"containers": []}}});
        nothing["metadata"]["labels"] = json!({"sidecar": "none"});
        let object = apply_deployment(Some(&object), &nothing, "team-b", false, T2);
        assert_eq!(container_names(&object), ["nginx"]);
        assert_eq!(object["metadata"]["labels"], json!({"app": "nginx", "sidecar": "none"}));
    }

    #[test]
    fn what_an_updater_added_stays_unless_its_parent_goes() {
        let mut config = deployment(2, "nginx:1.25");
        config["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "nginx", "image": "nginx:1.25"}, {"name": "proxy", "image": "envoy:1"}]);
        let object = apply_deployment(None, &config, "kubectl", false, T0);

        // A controller adds a label and a port to the proxy container.
        let mut touched = object.clone();
        touched["metadata"]["labels"]["injected"] = json!("yes");
        touched["spec"]["template"]["spec"]["containers"][1]["ports"] = json!([{"containerPort": 9901}]);
        record_update("apps", "Deployment", "apps/v1", Some(&object), &mut touched, "controller", T1);

        // The applier drops its labels and the proxy container.
        let mut smaller = deployment(2, "nginx:1.25");
        smaller["metadata"].as_object_mut().unwrap().remove("labels");
        smaller["spec"]["template"]["spec"]["containers"] = json!([{"name": "nginx", "image": "nginx:1.25"}]);
        let object = apply_deployment(Some(&touched), &smaller, "kubectl", false, T2);

        assert_eq!(object["metadata"]["labels"], json!({"injected": "yes"}), "the controller's label stays");
        assert_eq!(container_names(&object), ["nginx"], "the container goes, with the port added to it");
        let controller = fields(&object, "controller", "Update");
        assert_eq!(controller.to_fields_v1(), json!({"f:metadata": {"f:labels": {"f:injected": {}}}}));
    }

    #[test]
    fn replicas_scaled_by_another_writer_conflict_until_forced() {
        let object = apply_deployment(None, &deployment(2, "nginx:1.25"), "kubectl", false, T0);

        // kubectl scale: an update by the same manager name is another manager.
        let mut scaled = object.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update("apps", "Deployment", "apps/v1", Some(&object), &mut scaled, "kubectl", T1);
        assert!(fields(&scaled, "kubectl", "Update").has(&path(&["f:spec", "f:replicas"])));
        assert!(!fields(&scaled, "kubectl", "Apply").has(&path(&["f:spec", "f:replicas"])));

        let result =
            apply("apps", "Deployment", "apps/v1", Some(&scaled), &deployment(3, "nginx:1.25"), "kubectl", false, T2);
        let Err(ApplyError::Conflicts(conflicts)) = result else { panic!("expected a conflict, got {result:?}") };
        assert_eq!(
            conflicts,
            [Conflict { manager: "\"kubectl\" using apps/v1".to_string(), field: ".spec.replicas".to_string() }]
        );
        assert_eq!(conflicts[0].message(), "conflict with \"kubectl\" using apps/v1");
        assert_eq!(
            ApplyError::Conflicts(conflicts).to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1: .spec.replicas"
        );

        // Applying the scaled value shares it instead.
        let shared = apply_deployment(Some(&scaled), &deployment(5, "nginx:1.25"), "kubectl", false, T2);
        assert!(fields(&shared, "kubectl", "Apply").has(&path(&["f:spec", "f:replicas"])));
        assert!(fields(&shared, "kubectl", "Update").has(&path(&["f:spec", "f:replicas"])));

        // Forcing moves the field; the updater, left with nothing, is dropped.
        let forced = apply_deployment(Some(&scaled), &deployment(3, "nginx:1.25"), "kubectl", true, T3);
        assert_eq!(forced["spec"]["replicas"], 3);
        assert!(fields(&forced, "kubectl", "Apply").has(&path(&["f:spec", "f:replicas"])));
        assert_eq!(entries(&forced).len(), 1, "{forced:#}");
        assert_eq!(entry(&forced, "kubectl", "Apply")["time"], T3);
    }

    #[test]
    fn a_shared_field_stays_when_one_applier_lets_go() {
        let object = apply_deployment(None, &deployment(2, "nginx:1.25"), "alice", false, T0);
        let object = apply_deployment(Some(&object), &deployment(2, "nginx:1.25"), "bob", false, T1);
        for manager in ["alice", "bob"] {
            assert!(fields(&object, manager, "Apply").has(&path(&["f:spec", "f:replicas"])), "{manager}");
        }

        let mut without_replicas = deployment(2, "nginx:1.25");
        without_replicas["spec"].as_object_mut().unwrap().remove("replicas");
        let object = apply_deployment(Some(&object), &without_replicas, "alice", false, T2);
        assert_eq!(object["spec"]["replicas"], 2, "bob still owns it");

        // Changing a shared value conflicts with the other owner.
        let result =
            apply("apps", "Deployment", "apps/v1", Some(&object), &deployment(4, "nginx:1.26"), "alice", false, T3);
        let Err(error) = result else { panic!("expected conflicts") };
        assert_eq!(
            error.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"bob\":\n- .spec.replicas\n\
             - .spec.template.spec.containers[name=\"nginx\"].image"
        );
    }

    #[test]
    fn apply_to_a_kind_with_a_status_subresource_ignores_status() {
        let mut config = deployment(2, "nginx:1.25");
        config["status"] = json!({"replicas": 7});
        let created = apply_deployment(None, &config, "kubectl", false, T0);
        assert!(created.get("status").is_none(), "{created:#}");
        assert!(!fields(&created, "kubectl", "Apply").children.contains_key(&PathElement::Field("status".to_string())));

        let mut live = created.clone();
        live["status"] = json!({"replicas": 2, "readyReplicas": 2});
        let updated = apply_deployment(Some(&live), &config, "kubectl", false, T1);
        assert_eq!(updated["status"], json!({"replicas": 2, "readyReplicas": 2}));

        // A kind without one (ConfigMap) has no status to ignore; an unknown top-level field is owned.
        let config_map =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        let object = apply("", "ConfigMap", "v1", None, &config_map, "kubectl", false, T0).unwrap();
        assert_eq!(entry(&object, "kubectl", "Apply")["fieldsV1"], json!({"f:data": {"f:a": {}}}));
    }

    #[test]
    fn bad_configurations_are_invalid() {
        let invalid = |config: &Value| match apply("apps", "Deployment", "apps/v1", None, config, "kubectl", false, T0)
        {
            Err(ApplyError::Invalid(message)) => message,
            other => panic!("expected invalid, got {other:?}"),
        };
        let mut service = deployment(1, "nginx");
        service["kind"] = json!("Service");
        assert_eq!(invalid(&service), "invalid object type: apps/v1, Kind=Service");

        let mut old_version = deployment(1, "nginx");
        old_version["apiVersion"] = json!("apps/v1beta1");
        assert_eq!(
            invalid(&old_version),
            "incorrect version specified in apply patch: specified patch version: apps/v1beta1, expected: apps/v1"
        );

        let mut with_managed_fields = deployment(1, "nginx");
        with_managed_fields["metadata"]["managedFields"] = json!([]);
        assert_eq!(invalid(&with_managed_fields), "metadata.managedFields must be nil");

        let mut twins = deployment(1, "nginx");
        twins["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "a"}]);
        assert_eq!(invalid(&twins), ".spec.template.spec.containers: duplicate entries for key [name=\"a\"]");

        let mut nameless = deployment(1, "nginx");
        nameless["spec"]["template"]["spec"]["containers"] = json!([{"image": "a"}]);
        assert_eq!(invalid(&nameless), ".spec.template.spec.containers: item 0 has none of the list's keys [\"name\"]");

        assert!(matches!(
            apply("apps", "Deployment", "apps/v1", None, &json!([1]), "kubectl", false, T0),
            Err(ApplyError::Invalid(_))
        ));
    }

    #[test]
    fn a_create_owns_every_field_it_sets() {
        let mut created = deployment(2, "nginx:1.25");
        created["metadata"]["uid"] = json!("0b6c");
        created["metadata"]["resourceVersion"] = json!("7");
        created["status"] = json!({});
        record_update("apps", "Deployment", "apps/v1", None, &mut created, "kubectl-create", T0);

        let entries = entries(&created);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["operation"], "Update");
        assert_eq!(entries[0]["time"], T0);
        assert_eq!(
            entries[0]["fieldsV1"],
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                        "f:spec": {"f:containers": {
                            ".": {},
                            "k:{\"name\":\"nginx\"}": {
                                ".": {},
                                "f:image": {},
                                "f:name": {},
                                "f:ports": {
                                    ".": {},
                                    "k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}
                                }
                            }
                        }}
                    }
                }
            })
        );
    }

    #[test]
    fn an_update_takes_what_it_changes() {
        let object = apply_deployment(None, &deployment(2, "nginx:1.25"), "kubectl", false, T0);

        let mut set_image = object.clone();
        set_image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.26");
        record_update("apps", "Deployment", "apps/v1", Some(&object), &mut set_image, "kubectl-set", T1);
        let image = ["f:spec", "f:template", "f:spec", "f:containers", "k:{\"name\":\"nginx\"}", "f:image"];
        assert_eq!(
            entry(&set_image, "kubectl-set", "Update")["fieldsV1"],
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {"f:image": {}}}}}}})
        );
        assert!(!fields(&set_image, "kubectl", "Apply").has(&path(&image)));

        // A write that changes nothing of its own (only server metadata) adds no entry and moves no time.
        let mut touched = set_image.clone();
        touched["metadata"]["resourceVersion"] = json!("9");
        record_update("apps", "Deployment", "apps/v1", Some(&set_image), &mut touched, "other", T2);
        assert_eq!(entries(&touched), entries(&set_image));

        // Removing a field takes it from its owner.
        let mut unlabelled = set_image.clone();
        unlabelled["metadata"].as_object_mut().unwrap().remove("labels");
        record_update("apps", "Deployment", "apps/v1", Some(&set_image), &mut unlabelled, "editor", T3);
        assert!(!fields(&unlabelled, "kubectl", "Apply").has(&path(&["f:metadata", "f:labels", "f:app"])));
        assert!(entries(&unlabelled).iter().all(|e| e["manager"] != "editor"), "a removal owns nothing");

        // Status written through the main resource is not owned.
        let mut with_status = set_image.clone();
        with_status["status"] = json!({"replicas": 2});
        record_update("apps", "Deployment", "apps/v1", Some(&set_image), &mut with_status, "controller", T3);
        assert!(entries(&with_status).iter().all(|e| e["manager"] != "controller"));
    }

    #[test]
    fn managed_fields_sent_with_an_update_are_used_or_reset() {
        let object = apply_deployment(None, &deployment(2, "nginx:1.25"), "kubectl", false, T0);

        let mut reset = object.clone();
        reset["metadata"]["managedFields"] = json!([{}]);
        reset["spec"]["replicas"] = json!(3);
        record_update("apps", "Deployment", "apps/v1", Some(&object), &mut reset, "editor", T1);
        let entries = entries(&reset);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["manager"], "editor");
        assert_eq!(entries[0]["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));

        let mut unreadable = object.clone();
        unreadable["metadata"]["managedFields"] = json!([{"manager": "x", "operation": "Delete"}]);
        record_update("apps", "Deployment", "apps/v1", Some(&object), &mut unreadable, "editor", T1);
        assert_eq!(super::tests::entries(&unreadable), super::tests::entries(&object), "old's are kept");
    }

    #[test]
    fn kubectl_takes_over_from_client_side_apply() {
        // Created by client-side apply: the annotation records the configuration.
        let mut recorded = deployment(3, "nginx:1.26");
        recorded["metadata"].as_object_mut().unwrap().remove("namespace");
        let mut created = deployment(3, "nginx:1.26");
        created["metadata"]["annotations"] = json!({LAST_APPLIED: go_json(&recorded) + "\n"});
        record_update("apps", "Deployment", "apps/v1", None, &mut created, "kubectl-client-side-apply", T0);

        // Another applier conflicts with client-side apply's fields.
        let result =
            apply("apps", "Deployment", "apps/v1", Some(&created), &deployment(2, "nginx:1.25"), "me", false, T1);
        let Err(error) = result else { panic!("expected conflicts") };
        assert!(
            error.to_string().starts_with(
                "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .spec.replicas"
            ),
            "{error}"
        );

        // kubectl itself takes the fields whose values are still those it applied, and updates the annotation.
        let object = apply_deployment(Some(&created), &deployment(2, "nginx:1.25"), "kubectl", false, T1);
        assert_eq!(object["spec"]["replicas"], 2);
        assert!(fields(&object, "kubectl", "Apply").has(&path(&["f:spec", "f:replicas"])));
        let annotation = object["metadata"]["annotations"][LAST_APPLIED].as_str().unwrap();
        let annotation: Value = serde_json::from_str(annotation).unwrap();
        assert_eq!(annotation["spec"]["replicas"], 2);

        // Not once someone else changed a field since.
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(6);
        record_update("apps", "Deployment", "apps/v1", Some(&created), &mut scaled, "kubectl-scale", T1);
        let result =
            apply("apps", "Deployment", "apps/v1", Some(&scaled), &deployment(2, "nginx:1.25"), "kubectl", false, T2);
        let Err(ApplyError::Conflicts(conflicts)) = result else { panic!("expected a conflict") };
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].manager, "\"kubectl-scale\" using apps/v1");
    }

    #[test]
    fn entries_are_sorted_appliers_first_then_by_time() {
        let object = apply_deployment(None, &deployment(2, "nginx:1.25"), "zed", false, T1);
        let mut updated = object.clone();
        updated["metadata"]["labels"]["a"] = json!("1");
        record_update("apps", "Deployment", "apps/v1", Some(&object), &mut updated, "b-updater", T2);
        let mut again = updated.clone();
        again["metadata"]["labels"]["c"] = json!("1");
        record_update("apps", "Deployment", "apps/v1", Some(&updated), &mut again, "a-updater", T3);
        let mut label = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"}});
        label["metadata"]["labels"] = json!({"d": "1"});
        let object = apply_deployment(Some(&again), &label, "alpha", false, T3);

        let order: Vec<(String, String)> = entries(&object)
            .iter()
            .map(|e| (e["manager"].as_str().unwrap().to_string(), e["operation"].as_str().unwrap().to_string()))
            .collect();
        let expected = [("zed", "Apply"), ("alpha", "Apply"), ("b-updater", "Update"), ("a-updater", "Update")];
        assert_eq!(order, expected.map(|(m, o)| (m.to_string(), o.to_string())));
    }

    #[test]
    fn update_entries_are_capped() {
        let mut object = apply_deployment(None, &deployment(2, "nginx:1.25"), "kubectl", false, T0);
        for n in 0..12 {
            let mut next = object.clone();
            next["metadata"]["labels"][format!("l{n}")] = json!("x");
            record_update(
                "apps",
                "Deployment",
                "apps/v1",
                Some(&object),
                &mut next,
                &format!("w{n:02}"),
                &format!("2025-01-01T01:00:{n:02}Z"),
            );
            object = next;
        }
        let entries = entries(&object);
        let updaters: Vec<&str> =
            entries.iter().filter(|e| e["operation"] == "Update").filter_map(|e| e["manager"].as_str()).collect();
        assert_eq!(updaters.len(), MAX_UPDATE_MANAGERS);
        assert_eq!(updaters[0], ANCIENT_CHANGES);
        let ancient = fields(&object, ANCIENT_CHANGES, "Update");
        for n in 0..3 {
            assert!(ancient.has(&path(&["f:metadata", "f:labels", &format!("f:l{n}")])), "l{n}");
        }
        assert_eq!(updaters[1], "w03");
    }

    #[test]
    fn lists_merge_by_their_type() {
        // A list map keeps live items in place and takes the configuration's order for the rest.
        let live = json!({"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b"}]}});
        let config = json!({"spec": {"containers": [{"name": "c"}, {"name": "a", "image": "a:2"}]}});
        let root = KindTypes::of("", "Pod").root;
        let merged = merge(root, &live, &config);
        assert_eq!(merged["spec"]["containers"], json!([{"name": "c"}, {"name": "a", "image": "a:2"}, {"name": "b"}]));

        // A set unions; an atomic list is replaced.
        let live = json!({"metadata": {"finalizers": ["x", "y"]}, "spec": {"tolerations": [{"key": "k"}]}});
        let config = json!({"metadata": {"finalizers": ["z", "x"]}, "spec": {"tolerations": [{"key": "j"}]}});
        let merged = merge(root, &live, &config);
        assert_eq!(merged["metadata"]["finalizers"], json!(["z", "x", "y"]));
        assert_eq!(merged["spec"]["tolerations"], json!([{"key": "j"}]));
        let owned = fields_of(root, &config);
        assert_eq!(
            owned.to_fields_v1(),
            json!({"f:metadata": {"f:finalizers": {"v:\"x\"": {}, "v:\"z\"": {}}}, "f:spec": {"f:tolerations": {}}})
        );

        // An atomic map (nodeSelector) is one leaf; a granular one (labels) is owned key by key.
        let pod = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"nodeSelector": {"disk": "ssd"}}});
        assert_eq!(
            fields_of(root, &pod).to_fields_v1(),
            json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {"f:nodeSelector": {}}})
        );
    }

    #[test]
    fn service_ports_are_keyed_by_port_and_defaulted_protocol() {
        let service = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 53, "protocol": "UDP"}]}
        });
        let object = apply("", "Service", "v1", None, &service, "kubectl", false, T0).unwrap();
        assert_eq!(
            entry(&object, "kubectl", "Apply")["fieldsV1"]["f:spec"]["f:ports"],
            json!({
                "k:{\"port\":53,\"protocol\":\"UDP\"}": {".": {}, "f:port": {}, "f:protocol": {}},
                "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}}
            })
        );
    }

    #[test]
    fn fields_v1_round_trips_and_orders_like_upstream() {
        let text = json!({
            "f:metadata": {"f:ownerReferences": {".": {}, "k:{\"uid\":\"u1\"}": {}}},
            "f:spec": {"f:podCIDRs": {".": {}, "v:\"10.0.0.0/24\"": {}}, "f:x": {"i:0": {}}},
            "f:status": {".": {}, "f:phase": {}}
        });
        let set = FieldSet::from_fields_v1(&text).unwrap();
        assert_eq!(set.to_fields_v1(), text);
        let paths: Vec<String> = set.paths().iter().map(|p| path_string(p)).collect();
        assert_eq!(
            paths,
            [
                ".status",
                ".metadata.ownerReferences",
                ".metadata.ownerReferences[uid=\"u1\"]",
                ".spec.podCIDRs",
                ".spec.podCIDRs[=\"10.0.0.0/24\"]",
                ".spec.x[0]",
                ".status.phase"
            ]
        );
        // Keys sort by value, numbers numerically; unknown element kinds are skipped.
        let set = FieldSet::from_fields_v1(&json!({"k:{\"port\":10}": {}, "k:{\"port\":9}": {}, "z:1": {}})).unwrap();
        let keys: Vec<String> = set.members.iter().map(PathElement::to_fields_v1_key).collect();
        assert_eq!(keys, ["k:{\"port\":9}", "k:{\"port\":10}"]);
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
        assert_eq!(go_json(&json!({"b": "<&>", "a": 1})), "{\"a\":1,\"b\":\"\\u003c\\u0026\\u003e\"}");
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let names = prop::sample::select(vec![
            "metadata",
            "spec",
            "status",
            "labels",
            "name",
            "containers",
            "ports",
            "finalizers",
            "template",
            "selector",
            "protocol",
            "containerPort",
            "image",
            "replicas",
            "managedFields",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-3i64..100).prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(names.clone(), inner, 0..5)
                    .prop_map(|fields| Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
            ]
        })
    }

    fn labelled(labels: &BTreeMap<String, String>, replicas: Option<u64>, containers: &BTreeSet<String>) -> Value {
        let mut config = deployment(1, "x");
        config["metadata"]["labels"] = json!(labels);
        match replicas {
            Some(replicas) => config["spec"]["replicas"] = json!(replicas),
            None => {
                config["spec"].as_object_mut().unwrap().remove("replicas");
            }
        }
        let containers: Vec<Value> = containers.iter().map(|name| json!({"name": name, "image": name})).collect();
        config["spec"]["template"]["spec"]["containers"] = json!(containers);
        config
    }

    proptest! {
        #[test]
        fn applying_twice_is_idempotent_and_keeps_what_was_applied(
            labels in prop::collection::btree_map("[a-d]", "[x-z]", 0..4),
            replicas in prop::option::of(0u64..5),
            containers in prop::collection::btree_set("[a-d]", 0..3),
            next_labels in prop::collection::btree_map("[a-d]", "[x-z]", 0..4),
            next_containers in prop::collection::btree_set("[a-d]", 0..3),
        ) {
            let first = labelled(&labels, replicas, &containers);
            let object = apply_deployment(None, &first, "kubectl", false, T0);
            prop_assert_eq!(&apply_deployment(Some(&object), &first, "kubectl", false, T1), &object);

            // A sole applier's object is always its latest configuration.
            let second = labelled(&next_labels, replicas, &next_containers);
            let object = apply_deployment(Some(&object), &second, "kubectl", false, T2);
            let mut body = object.clone();
            body["metadata"].as_object_mut().unwrap().remove("managedFields");
            if next_labels.is_empty() {
                body["metadata"]["labels"] = json!({});
            }
            if next_containers.is_empty() {
                body["spec"]["template"]["spec"]["containers"] = json!([]);
            }
            prop_assert_eq!(&body, &second);
            let owned = fields(&object, "kubectl", "Apply");
            prop_assert_eq!(FieldSet::from_fields_v1(&owned.to_fields_v1()).unwrap(), owned);
        }

        #[test]
        fn arbitrary_input_never_panics(config in json_value(), live in json_value(), new in json_value()) {
            let mut config = config;
            if let Value::Object(fields) = &mut config {
                fields.insert("apiVersion".to_string(), json!("apps/v1"));
                fields.insert("kind".to_string(), json!("Deployment"));
            }
            for live in [None, Some(&live)] {
                let _ = apply("apps", "Deployment", "apps/v1", live, &config, "m", false, T0);
                let _ = apply("apps", "Deployment", "apps/v1", live, &config, "kubectl", true, T0);
                let mut new = new.clone();
                record_update("apps", "Deployment", "apps/v1", live, &mut new, "m", T0);
                let mut new = config.clone();
                record_update("", "Pod", "v1", live, &mut new, "m", T0);
            }
        }
    }
}
