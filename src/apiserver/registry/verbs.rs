//! The write verbs of the Kubernetes API (create, update, patch, delete) and get, over `registry::Objects`.
//!
//! Every write reads the object, computes the new one, and writes it with a compare-and-swap on the revision it
//! read. The read is this replica's state, with no read index: the compare refuses a write decided from a
//! stale read. What a write answers without writing (NotFound, a failed precondition, a no-op, a dry run) is
//! decided again from a linearizable read before it is answered. A write with a client precondition (a
//! `resourceVersion` in the body, delete preconditions) fails with 409 when the object moved; one without
//! retries against the new state, as the real API server's `GuaranteedUpdate` does. uid, timestamps and
//! generation are stamped here, before proposing, so the state machine's apply stays deterministic.
//!
//! Order of checks for a body: shape (kind, apiVersion, name, namespace) → defaults → the k8s-openapi type
//! (type errors refused, unknown fields reported by field validation and pruned) → validation (422). A body
//! that fails any check writes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::apis::admission;
use crate::apis::catalog::{self, Deletion, Resource, Subresource};
use crate::apis::defaults;
use crate::apis::managed_fields;
use crate::apis::quantity::Quantity;
use crate::apis::time;
use crate::apis::validation;
use crate::apiserver::errors::ApiError;
use crate::apiserver::registry::allocations::{self, ServiceRange};
use crate::apiserver::registry::objects::{prefix_end, Allocations, Consistency, Guard, Objects, Refused, Stored};
use crate::limits;

/// What a request addresses.
#[derive(Clone, Debug)]
pub struct Target {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<Subresource>,
}

impl Target {
    pub fn key(&self, name: &str) -> String {
        self.resource.key(self.namespace.as_deref(), name)
    }

    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }
}

/// `fieldValidation`: what to do with fields the type does not know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

/// Options every write takes from its query string.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    pub field_manager: Option<String>,
    pub force: bool,
}

/// The result of a write: the object, whether it was created, and warnings for the `Warning` header.
#[derive(Debug)]
pub struct Written {
    pub object: Value,
    pub created: bool,
    pub warnings: Vec<String>,
}

/// A random version-4 UUID.
fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The five random characters `generateName` appends (no vowels, no confusable digits), as upstream.
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

pub fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("metadata was just made an object")
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).and_then(|m| m.get(field)).and_then(Value::as_str)
}

fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// Checks a request body's envelope against the request and fills in what the URL decides.
fn check_envelope(target: &Target, body: &mut Value) -> Result<(), ApiError> {
    let resource = target.resource;
    let Some(obj) = body.as_object_mut() else {
        return Err(ApiError::BadRequest("the request body is not a JSON object".into()));
    };
    if let Some(v) = obj.get("apiVersion").and_then(Value::as_str) {
        if v != resource.api_version() {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                resource.api_version()
            )));
        }
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str) {
        if k != resource.kind {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                resource.kind
            )));
        }
    }
    obj.insert("apiVersion".into(), Value::String(resource.api_version()));
    obj.insert("kind".into(), Value::String(resource.kind.into()));
    let meta = meta_mut(body);
    match (&target.namespace, meta.get("namespace").and_then(Value::as_str)) {
        (Some(path), Some(given)) if !given.is_empty() && given != path => {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ))
        }
        (Some(path), _) => {
            meta.insert("namespace".into(), Value::String(path.clone()));
        }
        (None, _) => {
            meta.remove("namespace");
        }
    }
    Ok(())
}

/// The unknown fields of `input`: present there, absent from its typed round trip.
fn unknown_fields(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match b.get(k) {
                    Some(t) => unknown_fields(v, t, &p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, t)) in a.iter().zip(b).enumerate() {
                unknown_fields(v, t, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Defaults, type check with field validation, and validation of a new version of an object. Pure: it reads
/// the clock for managed fields' timestamps and touches no store.
pub fn admit(
    resource: &'static Resource,
    old: Option<&Value>,
    mut obj: Value,
    opts: &WriteOptions,
    warnings: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let name = meta_str(&obj, "name").unwrap_or_default().to_string();
    match old {
        None => defaults::apply_create_defaults(resource, &mut obj),
        Some(old) => {
            defaults::apply_defaults(resource, &mut obj);
            (resource.prepare_for_update)(old, &mut obj);
        }
    }
    let typed = (resource.typed)(&obj).map_err(|e| ApiError::BadRequest(format!("error decoding the body: {e}")))?;
    // Upstream's types hold quantities parsed, so it cannot decode a body with one that does not parse.
    if validation::unparsable_quantity(&typed.known).is_some() {
        return Err(ApiError::BadRequest(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: quantities must match the regular \
             expression '{}'",
            validation::QUANTITY_FMT,
            kind = resource.kind,
            version = resource.version,
        )));
    }
    let mut unknown = Vec::new();
    unknown_fields(&obj, &typed.known, "", &mut unknown);
    // The metadata the server adds (resourceVersion, managedFields) is known; so are directives already applied.
    unknown.retain(|f| !f.starts_with("metadata.resourceVersion"));
    match opts.field_validation {
        FieldValidation::Strict if !unknown.is_empty() => {
            let list: Vec<String> = unknown.iter().map(|f| format!("unknown field {f:?}")).collect();
            return Err(ApiError::BadRequest(format!("strict decoding error: {}", list.join(", "))));
        }
        FieldValidation::Warn => warnings.extend(unknown.iter().map(|f| format!("unknown field {f:?}"))),
        _ => {}
    }
    let mut obj = typed.stored;
    if let Some(manager) = opts.field_manager.as_deref() {
        let now = time::now();
        let api_version = resource.api_version();
        managed_fields::record_update(resource.group, resource.kind, &api_version, old, &mut obj, manager, &now);
    }
    if let Some(rv) = old.and_then(|o| meta_str(o, "resourceVersion")) {
        meta_mut(&mut obj).insert("resourceVersion".into(), Value::String(rv.into()));
    }
    let causes = match old {
        None => validation::validate_create(resource, &obj),
        Some(old) => validation::validate_update(resource, old, &obj),
    };
    if !causes.is_empty() {
        return Err(ApiError::invalid(resource, &name, causes));
    }
    Ok(obj)
}

/// What the requesting user may store, checked on every object a create or an update is about to store
/// (after defaults and validation): RBAC's escalation check, NodeRestriction's own-objects rule.
pub type WriteCheck = Arc<dyn Fn(&Target, &Value) -> Result<(), ApiError> + Send + Sync>;

#[derive(Clone)]
pub struct Verbs {
    pub objects: Objects,
    pub service_range: ServiceRange,
    pub check: Option<WriteCheck>,
    /// Whether this replica signs ServiceAccount tokens (and namespaces publish the authority that verifies the
    /// API): new pods then mount their account's token.
    pub mounts_tokens: bool,
}

impl Verbs {
    pub fn new(objects: Objects, service_range: ServiceRange, mounts_tokens: bool) -> Verbs {
        Verbs { objects, service_range, check: None, mounts_tokens }
    }

    /// The same verbs with every write fenced to `term` (see `Objects::fenced`).
    pub fn fenced(&self, term: u64) -> Verbs {
        Verbs { objects: self.objects.fenced(term), ..self.clone() }
    }

    /// The same verbs with every object a create or an update stores checked by `check` first.
    pub fn checked(&self, check: WriteCheck) -> Verbs {
        Verbs { check: Some(check), ..self.clone() }
    }

    /// Runs the write check of the request on `object`, about to be stored under `target`.
    pub fn check(&self, target: &Target, object: &Value) -> Result<(), ApiError> {
        self.check.as_ref().map_or(Ok(()), |check| check(target, object))
    }

    /// The IPs and node ports `new` (replacing `old`) needs to claim and may give up; fills in the ones it
    /// asks the server to choose.
    async fn allocate(
        &self,
        resource: &'static Resource,
        old: Option<&Value>,
        new: &mut Value,
    ) -> Result<Allocations, ApiError> {
        if !resource.allocates_addresses {
            return Ok(Allocations::default());
        }
        let before = old.map(allocations::held).unwrap_or_default();
        let mut taken = self.objects.keys(allocations::SERVICE_IPS_PREFIX).await?;
        taken.extend(self.objects.keys(allocations::NODE_PORTS_PREFIX).await?);
        let name = meta_str(new, "name").unwrap_or_default().to_string();
        let invalid = |field: String, message: String| {
            ApiError::invalid(resource, &name, vec![validation::Cause { reason: "FieldValueInvalid", field, message }])
        };
        let requested = allocations::held(new);
        if let Some(k) = requested.iter().find(|k| taken.contains(*k) && !before.contains(*k)) {
            let what = k.rsplit('/').next().unwrap_or_default();
            let field = if k.starts_with(allocations::SERVICE_IPS_PREFIX) { "spec.clusterIPs" } else { "spec.ports" };
            return Err(invalid(
                field.into(),
                format!(
                    "Invalid value: {what:?}: provided {} is already allocated",
                    if field == "spec.ports" { "port" } else { "IP" }
                ),
            ));
        }
        taken.retain(|k| !before.contains(k));
        allocations::assign(new, self.service_range, &taken, |n| rand::random_range(0..n.max(1))).map_err(|e| {
            let text = e.to_string();
            let (field, message) = text.split_once(": ").unwrap_or(("spec", text.as_str()));
            invalid(field.into(), message.into())
        })?;
        let after = allocations::held(new);
        Ok(Allocations {
            claim: after.difference(&before).cloned().collect(),
            release: before.difference(&after).cloned().collect(),
        })
    }

    /// The namespace a new namespaced object goes into, as a guard on its revision: it must exist and not be
    /// terminating when the write commits.
    async fn namespace_guard(&self, target: &Target, name: &str, fresh: bool) -> Result<Option<Guard>, ApiError> {
        let Some(ns) = target.namespace.as_deref().filter(|_| target.resource.namespaced) else {
            return Ok(None);
        };
        let namespaces = catalog::find("", "v1", "namespaces").expect("namespaces are served");
        let key = namespaces.key(None, ns);
        // The guard makes a stale local read safe: if the namespace changed since, the write is refused and
        // retried with a fresh read. An answer that would refuse the write is always confirmed with one.
        let local = if fresh { None } else { self.objects.get(&key, Consistency::Local).await? };
        let usable =
            local.as_ref().is_some_and(|s| !meta(&s.object).is_some_and(|m| m.contains_key("deletionTimestamp")));
        let found = if usable { local } else { self.objects.get(&key, Consistency::Linearizable).await? };
        match found {
            None => Err(ApiError::NotFound { resource: namespaces, name: ns.to_string() }),
            Some(s) if meta(&s.object).is_some_and(|m| m.contains_key("deletionTimestamp")) => {
                Err(ApiError::Forbidden {
                    resource: target.resource,
                    name: name.to_string(),
                    message: format!("unable to create new content in namespace {ns} because it is being terminated"),
                })
            }
            Some(s) => Ok(Some(Guard { key, revision: s.revision, replace: None })),
        }
    }

    /// Every object of `resource` (in `namespace`): the policy objects admission reads, which are few. Read
    /// `Local`ly, as upstream's admission reads its informers' caches, a policy object created a moment ago may
    /// not apply yet.
    async fn list_all(
        &self,
        resource: &'static Resource,
        namespace: Option<&str>,
        consistency: Consistency,
    ) -> Result<Vec<Stored>, ApiError> {
        let prefix = resource.prefix(namespace);
        let end = prefix_end(&prefix);
        self.objects.revision(consistency).await?;
        // The first page at the current revision (read from the index, never from the history, however far the
        // state moved since the sync), the others at the first's.
        let mut revision = 0;
        let mut from = prefix.into_bytes();
        let mut out = Vec::new();
        loop {
            let page = self.objects.page(&from, &end, revision, limits::API_LIST_CHUNK_MAX).await?;
            revision = page.revision;
            for raw in &page.items {
                out.push(presented(resource, raw.decode()?));
            }
            match page.items.last() {
                Some(last) if page.more => {
                    from = last.key.clone().into_bytes();
                    from.push(0);
                }
                _ => return Ok(out),
            }
        }
    }

    /// The admission steps of a new pod: LimitRanger's defaults and bounds from the namespace's LimitRanges,
    /// Priority's from the PriorityClasses, then DefaultTolerationSeconds.
    async fn admit_pod(&self, target: &Target, name: &str, pod: &mut Value) -> Result<(), ApiError> {
        if !target.resource.pod_admission {
            return Ok(());
        }
        // Upstream's admission sees the object after decoding has defaulted it.
        defaults::apply_create_defaults(target.resource, pod);
        let forbidden = |message| ApiError::Forbidden { resource: target.resource, name: name.to_string(), message };
        let limit_ranges = catalog::find("", "v1", "limitranges").expect("limit ranges are served");
        let objects = |stored: Vec<Stored>| stored.into_iter().map(|s| s.object).collect::<Vec<Value>>();
        let ranges = self.list_all(limit_ranges, target.namespace.as_deref(), Consistency::Local).await?;
        admission::apply_limit_ranges(pod, &objects(ranges)).map_err(forbidden)?;
        let priority_classes = catalog::find("scheduling.k8s.io", "v1", "priorityclasses").expect("served");
        let classes = self.list_all(priority_classes, None, Consistency::Local).await?;
        admission::resolve_priority(pod, &objects(classes)).map_err(forbidden)?;
        admission::add_default_tolerations(pod);
        Ok(())
    }

    /// The ResourceQuotas of the namespace that limit what a new object uses, each charged with it: guards
    /// that rewrite each quota's `status.used` in the object's own transaction, so that concurrent creates
    /// can never together exceed a quota. Forbidden when a quota does not allow the object. The quotas are read
    /// from this replica's state unless `fresh`: the guards refuse a write charged to a stale quota, and the
    /// retry reads them fresh; a refusal is always confirmed with a fresh read.
    async fn charge_quotas(
        &self,
        target: &Target,
        name: &str,
        obj: &Value,
        fresh: bool,
    ) -> Result<Vec<Guard>, ApiError> {
        let resource = target.resource;
        let Some(namespace) = target.namespace.as_deref().filter(|_| resource.namespaced) else {
            return Ok(Vec::new());
        };
        let delta = admission::usage(resource.usage, &resource.count_name(), obj);
        let first = if fresh { Consistency::Linearizable } else { Consistency::Local };
        let mut charged = self.charges(resource, namespace, obj, &delta, first).await?;
        if charged.is_err() && first == Consistency::Local {
            charged = self.charges(resource, namespace, obj, &delta, Consistency::Linearizable).await?;
        }
        charged.map_err(|message| ApiError::Forbidden { resource, name: name.to_string(), message })
    }

    /// Each quota of `namespace` charged with `delta`, as of a read with `consistency`; Err is a quota's
    /// refusal.
    async fn charges(
        &self,
        resource: &'static Resource,
        namespace: &str,
        obj: &Value,
        delta: &BTreeMap<String, Quantity>,
        consistency: Consistency,
    ) -> Result<Result<Vec<Guard>, String>, ApiError> {
        let quotas = catalog::find("", "v1", "resourcequotas").expect("resource quotas are served");
        let mut guards = Vec::new();
        for quota in self.list_all(quotas, Some(namespace), consistency).await? {
            if !admission::tracks(&quota.object, resource.usage, obj) {
                continue;
            }
            match admission::charge(&quota.object, resource.usage, obj, delta) {
                Ok(Some(used)) => {
                    let mut replace = quota.object;
                    replace["status"]["used"] = used;
                    guards.push(Guard { key: quota.key, revision: quota.revision, replace: Some(replace) });
                }
                Ok(None) => {}
                Err(message) => return Ok(Err(message)),
            }
        }
        Ok(Ok(guards))
    }

    pub async fn get(&self, target: &Target, consistency: Consistency) -> Result<Stored, ApiError> {
        let key = target.key(target.name());
        let stored = self.objects.get(&key, consistency).await?;
        let stored =
            stored.ok_or_else(|| ApiError::NotFound { resource: target.resource, name: target.name().into() })?;
        Ok(presented(target.resource, stored))
    }

    /// `Objects::put` of an object in `resource`'s form: it is stored in its storage form (with a lease when
    /// that kind is stored with a time to live), and what a refusal reads back comes in `resource`'s form.
    async fn put(
        &self,
        resource: &'static Resource,
        key: &str,
        object: &Value,
        expected: i64,
        guards: &[Guard],
        allocations: &Allocations,
    ) -> Result<Result<i64, Refused>, ApiError> {
        // Every write of a kind stored with a time to live gives the object a full TTL again, as upstream's.
        let expires = resource.storage().expires;
        let result = match resource.conversion {
            None => self.objects.put(key, object, expected, guards, allocations, expires).await?,
            Some(_) => {
                let mut stored = resource.to_stored(object.clone());
                defaults::apply_defaults(resource.storage(), &mut stored);
                self.objects.put(key, &stored, expected, guards, allocations, expires).await?
            }
        };
        Ok(result.map_err(|refused| presented_refusal(resource, refused)))
    }

    /// `Objects::delete`, with what a refusal reads back in `resource`'s form.
    async fn remove(
        &self,
        resource: &'static Resource,
        key: &str,
        expected: i64,
        allocations: &Allocations,
    ) -> Result<Result<i64, Refused>, ApiError> {
        let result = self.objects.delete(key, expected, allocations).await?;
        Ok(result.map_err(|refused| presented_refusal(resource, refused)))
    }

    pub async fn create(&self, target: &Target, mut body: Value, opts: &WriteOptions) -> Result<Written, ApiError> {
        let resource = target.resource;
        check_envelope(target, &mut body)?;
        let meta = meta_mut(&mut body);
        if meta.get("resourceVersion").and_then(Value::as_str).is_some_and(|rv| !rv.is_empty()) {
            return Err(ApiError::BadRequest("resourceVersion should not be set on objects to be created".into()));
        }
        let generate = meta.get("generateName").and_then(Value::as_str).map(String::from);
        let name = match meta.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match &generate {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}{}", name_suffix()),
                _ => {
                    return Err(ApiError::invalid(
                        resource,
                        "",
                        vec![validation::Cause {
                            reason: "FieldValueRequired",
                            field: "metadata.name".into(),
                            message: "Required value: name or generateName is required".into(),
                        }],
                    ))
                }
            },
        };
        meta.insert("name".into(), Value::String(name.clone()));
        meta.insert("uid".into(), Value::String(new_uid()));
        meta.insert("creationTimestamp".into(), Value::String(time::now()));
        for f in ["deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "selfLink"] {
            meta.remove(f);
        }
        if resource.tracks_generation {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        (resource.prepare_for_create)(&mut body);
        self.admit_pod(target, &name, &mut body).await?;
        let mut warnings = Vec::new();
        let mut obj = admit(resource, None, body, opts, &mut warnings)?;
        self.check(target, &obj)?;
        let key = target.key(&name);
        for attempt in 0..limits::API_WRITE_ATTEMPTS_MAX {
            let mut guards: Vec<Guard> = self.namespace_guard(target, &name, attempt > 0).await?.into_iter().collect();
            if attempt == 0 {
                self.admit_service_account(target, &name, &mut obj).await?;
            }
            guards.extend(self.charge_quotas(target, &name, &obj, attempt > 0).await?);
            let mut obj = obj.clone();
            let allocations = self.allocate(resource, None, &mut obj).await?;
            if opts.dry_run {
                return Ok(Written { object: obj, created: true, warnings });
            }
            match self.put(resource, &key, &obj, 0, &guards, &allocations).await? {
                Ok(revision) => {
                    let mut obj = obj;
                    meta_mut(&mut obj).insert("resourceVersion".into(), Value::String(revision.to_string()));
                    self.create_default_service_account(target, &name).await;
                    return Ok(Written { object: obj, created: true, warnings });
                }
                Err(refused) if refused.current.first().is_some_and(Option::is_some) => {
                    return Err(ApiError::AlreadyExists { resource, name });
                }
                // The namespace changed, or another Service claimed an IP or port meanwhile: decide again.
                Err(_) => continue,
            }
        }
        Err(ApiError::conflict(resource, &name))
    }

    /// Reads the object, lets `change` compute its next version, and writes it if it differs, retrying on a
    /// concurrent write unless the new version carries a resourceVersion precondition.
    ///
    /// The first read is this replica's state, without a read index: the write's compare-and-swap on the
    /// revision read refuses one computed from a stale read, and the refusal carries the object as the log has
    /// it, which the next attempt works from. An answer given without writing (any error, a no-op, a dry run)
    /// is only ever given from a linearizable read: one decided from the local read is decided again.
    pub async fn update_with(
        &self,
        target: &Target,
        opts: &WriteOptions,
        mut change: impl FnMut(&Value) -> Result<Value, ApiError>,
    ) -> Result<Written, ApiError> {
        let resource = target.resource;
        let name = target.name().to_string();
        let key = target.key(&name);
        let mut read = self.get(target, Consistency::Local).await;
        let mut fresh = false;
        for _ in 0..limits::API_WRITE_ATTEMPTS_MAX {
            let decided = match read {
                Ok(current) => self.decide_update(target, opts, &mut change, &current).await.map(|d| (current, d)),
                Err(e) => Err(e),
            };
            let (current, change) = match decided {
                Ok((current, Decided::Write(change))) => (current, change),
                _ if !fresh => {
                    fresh = true;
                    read = self.get(target, Consistency::Linearizable).await;
                    continue;
                }
                Ok((_, Decided::Answer(written))) => return Ok(written),
                Err(e) => return Err(e),
            };
            match self.write(resource, &key, current.revision, &change).await? {
                Ok(revision) => {
                    let mut new = change.object;
                    meta_mut(&mut new).insert("resourceVersion".into(), Value::String(revision.to_string()));
                    return Ok(Written { object: new, created: false, warnings: change.warnings });
                }
                Err(_) if change.conditional => return Err(ApiError::conflict(resource, &name)),
                // What the refused transaction read is the object at its place in the log: as fresh as a
                // linearizable read.
                Err(refused) => {
                    fresh = true;
                    read = refused
                        .current
                        .into_iter()
                        .next()
                        .flatten()
                        .ok_or_else(|| ApiError::NotFound { resource, name: name.clone() });
                }
            }
        }
        Err(ApiError::conflict(resource, &name))
    }

    /// What an update makes of `current`: `change`'s proposal, checked against it, merged, admitted.
    async fn decide_update(
        &self,
        target: &Target,
        opts: &WriteOptions,
        change: &mut impl FnMut(&Value) -> Result<Value, ApiError>,
        current: &Stored,
    ) -> Result<Decided<Written>, ApiError> {
        let resource = target.resource;
        let name = target.name();
        let mut proposed = change(&current.object)?;
        check_envelope(target, &mut proposed)?;
        let precondition = meta_str(&proposed, "resourceVersion").filter(|rv| !rv.is_empty());
        if precondition.is_some_and(|rv| rv != current.revision.to_string()) {
            return Err(ApiError::conflict(resource, name));
        }
        let conditional = precondition.is_some();
        let given_name = meta_str(&proposed, "name").unwrap_or_default();
        if !given_name.is_empty() && given_name != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({given_name}) does not match the name on the URL ({name})"
            )));
        }
        let mut merged = self.merge_update(target, &current.object, proposed)?;
        if resource.pod_admission && target.subresource.is_none() {
            admission::add_default_tolerations(&mut merged);
        }
        if resource.allocates_addresses {
            allocations::carry_over(&current.object, &mut merged);
        }
        let mut warnings = Vec::new();
        let mut new = admit(resource, Some(&current.object), merged, opts, &mut warnings)?;
        self.check(target, &new)?;
        if (new == current.object && !current.stale) || opts.dry_run {
            return Ok(Decided::Answer(Written { object: new, created: false, warnings }));
        }
        let deleting = meta(&new).is_some_and(|m| m.contains_key("deletionTimestamp"));
        if deleting && !held(resource, &new) && !graceful_pending(&new) {
            let allocations = Allocations { release: allocations::held(&current.object), ..Allocations::default() };
            return Ok(Decided::Write(Change { object: new, remove: true, allocations, conditional, warnings }));
        }
        let allocations = self.allocate(resource, Some(&current.object), &mut new).await?;
        Ok(Decided::Write(Change { object: new, remove: false, allocations, conditional, warnings }))
    }

    /// Makes `change` with a compare-and-swap on `revision`, the one it was decided from.
    async fn write(
        &self,
        resource: &'static Resource,
        key: &str,
        revision: i64,
        change: &Change,
    ) -> Result<Result<i64, Refused>, ApiError> {
        match change.remove {
            true => self.remove(resource, key, revision, &change.allocations).await,
            false => self.put(resource, key, &change.object, revision, &[], &change.allocations).await,
        }
    }

    /// The object an update stores: the client's proposal with what it may not change taken from `old`.
    fn merge_update(&self, target: &Target, old: &Value, mut new: Value) -> Result<Value, ApiError> {
        let resource = target.resource;
        if let (Some(old_uid), Some(new_uid)) = (meta_str(old, "uid"), meta_str(&new, "uid")) {
            if !new_uid.is_empty() && old_uid != new_uid {
                return Err(ApiError::Conflict {
                    resource,
                    name: target.name().to_string(),
                    message: format!(
                        "Precondition failed: UID in precondition: {new_uid}, UID in object meta: {old_uid}"
                    ),
                });
            }
        }
        let copied = match target.subresource {
            Some(Subresource::Status) => Some(("status", new.get("status").cloned().unwrap_or(Value::Null))),
            Some(Subresource::Finalize) => Some(("spec", json!({"finalizers": new["spec"]["finalizers"].clone()}))),
            _ => None,
        };
        if let Some((field, value)) = copied {
            let mut merged = old.clone();
            if field == "spec" {
                merged["spec"]["finalizers"] = value["finalizers"].clone();
            } else {
                merged[field] = value;
            }
            if let Some(rv) = meta_str(&new, "resourceVersion") {
                meta_mut(&mut merged).insert("resourceVersion".into(), Value::String(rv.into()));
            } else {
                meta_mut(&mut merged).remove("resourceVersion");
            }
            return Ok(merged);
        }
        let old_meta = meta(old).cloned().unwrap_or_default();
        let meta = meta_mut(&mut new);
        for f in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
            match old_meta.get(f) {
                Some(v) => meta.insert(f.into(), v.clone()),
                None => meta.remove(f),
            };
        }
        meta.insert("name".into(), Value::String(target.name().to_string()));
        // A binding sets `spec.nodeName` and the PodScheduled condition in one write.
        if resource.has(Subresource::Status) && target.subresource != Some(Subresource::Binding) {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
        if resource.tracks_generation && new.get("spec") != old.get("spec") {
            let generation = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
            meta_mut(&mut new).insert("generation".into(), json!(generation));
        }
        Ok(new)
    }

    /// Deletes an object: at once when nothing holds it, otherwise by marking it (deletionTimestamp) for the
    /// finalizers, the garbage collector or the kubelet to finish. Reads as `update_with` does: this replica's
    /// state first, and a linearizable read before any answer given without writing.
    pub async fn delete(&self, target: &Target, options: &DeleteOptions) -> Result<Value, ApiError> {
        let resource = target.resource;
        let name = target.name().to_string();
        if resource.undeletable.contains(&name.as_str()) {
            let message = format!("this {} may not be deleted", resource.singular);
            return Err(ApiError::Forbidden { resource, name, message });
        }
        let key = target.key(&name);
        let mut read = self.get(target, Consistency::Local).await;
        let mut fresh = false;
        for _ in 0..limits::API_WRITE_ATTEMPTS_MAX {
            let decided = read.and_then(|current| decide_delete(target, options, &current).map(|d| (current, d)));
            let (current, change) = match decided {
                Ok((current, Decided::Write(change))) => (current, change),
                _ if !fresh => {
                    fresh = true;
                    read = self.get(target, Consistency::Linearizable).await;
                    continue;
                }
                Ok((_, Decided::Answer(object))) => return Ok(object),
                Err(e) => return Err(e),
            };
            match self.write(resource, &key, current.revision, &change).await? {
                Ok(_) if change.remove => return Ok(current.object),
                Ok(revision) => {
                    let mut marked = change.object;
                    meta_mut(&mut marked).insert("resourceVersion".into(), Value::String(revision.to_string()));
                    return Ok(marked);
                }
                Err(_) if change.conditional => return Err(ApiError::conflict(resource, &name)),
                Err(refused) => {
                    fresh = true;
                    read = refused
                        .current
                        .into_iter()
                        .next()
                        .flatten()
                        .ok_or_else(|| ApiError::NotFound { resource, name: name.clone() });
                }
            }
        }
        Err(ApiError::conflict(resource, &name))
    }
}

/// What a write decided from the object as it read it.
enum Decided<A> {
    /// The answer, given without writing: a no-op, a dry run, an object already marked for deletion.
    Answer(A),
    /// A write to make with a compare-and-swap on the revision read.
    Write(Change),
}

/// The write an update or a delete decided on.
struct Change {
    /// The object's next version (for a removal, what the object becomes on its way out).
    object: Value,
    /// Remove the object instead of writing `object`.
    remove: bool,
    allocations: Allocations,
    /// The client gave a resourceVersion: a refused write answers 409 and is not retried.
    conditional: bool,
    warnings: Vec<String>,
}

/// What a delete makes of `current`: removes it, or marks it for what still holds it.
fn decide_delete(target: &Target, options: &DeleteOptions, current: &Stored) -> Result<Decided<Value>, ApiError> {
    let resource = target.resource;
    let name = target.name();
    if let Some(uid) = &options.uid {
        if meta_str(&current.object, "uid") != Some(uid) {
            return Err(ApiError::Conflict {
                resource,
                name: name.to_string(),
                message: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&current.object, "uid").unwrap_or_default()
                ),
            });
        }
    }
    if options.resource_version.as_ref().is_some_and(|rv| *rv != current.revision.to_string()) {
        return Err(ApiError::conflict(resource, name));
    }
    let conditional = options.resource_version.is_some();
    let mut marked = current.object.clone();
    let mut finals = finalizers(&marked);
    let extra = match options.propagation.as_deref() {
        Some("Foreground") => Some("foregroundDeletion"),
        Some("Orphan") => Some("orphan"),
        _ => None,
    };
    if let Some(f) = extra {
        if !finals.iter().any(|x| x == f) {
            finals.push(f.to_string());
        }
    }
    let grace = pod_grace_seconds(resource, &current.object, options.grace_period_seconds);
    let already = meta(&marked).is_some_and(|m| m.contains_key("deletionTimestamp"));
    let namespace_held = resource.deletion == Deletion::Finalized && !namespace_finalizers(&marked).is_empty();
    if finals.is_empty() && grace == 0 && !namespace_held {
        if options.dry_run {
            return Ok(Decided::Answer(marked));
        }
        let allocations = Allocations { release: allocations::held(&current.object), ..Allocations::default() };
        return Ok(Decided::Write(Change { object: marked, remove: true, allocations, conditional, warnings: vec![] }));
    }
    let meta = meta_mut(&mut marked);
    meta.insert("finalizers".into(), json!(finals));
    if !already {
        meta.insert("deletionTimestamp".into(), Value::String(time::from_now(grace)));
    }
    meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
    if resource.deletion == Deletion::Finalized {
        marked["status"]["phase"] = json!("Terminating");
    }
    if marked == current.object || options.dry_run {
        return Ok(Decided::Answer(marked));
    }
    let allocations = Allocations::default();
    Ok(Decided::Write(Change { object: marked, remove: false, allocations, conditional, warnings: vec![] }))
}

/// A stored object in the form of the resource it was read through.
pub fn presented(resource: &Resource, stored: Stored) -> Stored {
    match resource.conversion {
        None => stored,
        Some(_) => Stored { object: resource.from_stored(stored.object), ..stored },
    }
}

fn presented_refusal(resource: &Resource, refused: Refused) -> Refused {
    Refused { current: refused.current.into_iter().map(|c| c.map(|s| presented(resource, s))).collect() }
}

/// `DeleteOptions`, from the body or the query string.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub propagation: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Reads a `DeleteOptions` body (fields the query string already set win). A field of the wrong type is a
    /// bad request, worded as upstream's decoder words it, and nothing is deleted.
    pub fn merge_body(&mut self, body: &Value) -> Result<(), ApiError> {
        if !body.is_object() {
            return Err(ApiError::BadRequest("the DeleteOptions body is not a JSON object".into()));
        }
        check_delete_options_types(body)?;
        if self.propagation.is_none() {
            self.propagation = body["propagationPolicy"].as_str().map(String::from);
        }
        if body.get("orphanDependents").and_then(Value::as_bool) == Some(true) && self.propagation.is_none() {
            self.propagation = Some("Orphan".into());
        }
        if self.grace_period_seconds.is_none() {
            self.grace_period_seconds = body["gracePeriodSeconds"].as_i64();
        }
        self.uid = body["preconditions"]["uid"].as_str().map(String::from);
        self.resource_version = body["preconditions"]["resourceVersion"].as_str().map(String::from);
        if body["dryRun"].as_array().is_some_and(|a| a.iter().any(|d| d == "All")) {
            self.dry_run = true;
        }
        self.check()
    }

    pub fn check(&self) -> Result<(), ApiError> {
        match self.propagation.as_deref() {
            None | Some("Foreground" | "Background" | "Orphan") => Ok(()),
            Some(other) => Err(ApiError::BadRequest(format!(
                "propagationPolicy {other:?} is not supported: use Foreground, Background or Orphan"
            ))),
        }
    }
}

/// The JSON type names Go's decoder uses in its messages.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A field that is set: present and not null.
fn present(value: Option<&Value>) -> Option<&Value> {
    value.filter(|v| !v.is_null())
}

/// Refuses a `DeleteOptions` body whose fields have the wrong JSON types (null is absent).
fn check_delete_options_types(body: &Value) -> Result<(), ApiError> {
    let wrong = |field: &str, value: &Value, go_type: &str| {
        ApiError::BadRequest(format!(
            "json: cannot unmarshal {} into Go struct field DeleteOptions.{field} of type {go_type}",
            json_type(value)
        ))
    };
    if let Some(v) = present(body.get("gracePeriodSeconds")).filter(|v| v.as_i64().is_none()) {
        return Err(wrong("gracePeriodSeconds", v, "int64"));
    }
    if let Some(v) = present(body.get("propagationPolicy")).filter(|v| !v.is_string()) {
        return Err(wrong("propagationPolicy", v, "v1.DeletionPropagation"));
    }
    if let Some(v) = present(body.get("orphanDependents")).filter(|v| !v.is_boolean()) {
        return Err(wrong("orphanDependents", v, "bool"));
    }
    if let Some(v) = present(body.get("dryRun")) {
        match v.as_array() {
            Some(items) => {
                if let Some(item) = items.iter().find(|i| !i.is_string()) {
                    return Err(wrong("dryRun", item, "string"));
                }
            }
            None => return Err(wrong("dryRun", v, "[]string")),
        }
    }
    if let Some(preconditions) = present(body.get("preconditions")) {
        if !preconditions.is_object() {
            return Err(wrong("preconditions", preconditions, "v1.Preconditions"));
        }
        for (field, go_type) in [("uid", "types.UID"), ("resourceVersion", "string")] {
            if let Some(v) = present(preconditions.get(field)).filter(|v| !v.is_string()) {
                return Err(wrong(&format!("preconditions.{field}"), v, go_type));
            }
        }
    }
    Ok(())
}

/// A pod bound to a node is deleted gracefully: its kubelet stops it and then removes it; any other object,
/// or a pod no node runs, goes at once.
fn pod_grace_seconds(resource: &Resource, obj: &Value, requested: Option<i64>) -> i64 {
    if resource.deletion != Deletion::Graceful || obj["spec"]["nodeName"].as_str().is_none_or(str::is_empty) {
        return 0;
    }
    let phase = obj["status"]["phase"].as_str().unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        return 0;
    }
    requested.or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64()).unwrap_or(30).max(0)
}

/// `spec.finalizers` of a kind whose deletion they hold (a Namespace's: the namespace controller's hold).
fn namespace_finalizers(obj: &Value) -> Vec<&str> {
    obj["spec"]["finalizers"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// Whether something still holds an object being deleted: a finalizer (or, for kinds they hold, a
/// `spec.finalizers` entry).
fn held(resource: &Resource, obj: &Value) -> bool {
    !finalizers(obj).is_empty() || (resource.deletion == Deletion::Finalized && !namespace_finalizers(obj).is_empty())
}

fn graceful_pending(obj: &Value) -> bool {
    meta(obj).and_then(|m| m.get("deletionGracePeriodSeconds")).and_then(Value::as_i64).is_some_and(|g| g > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_found_at_their_paths() {
        let input = json!({"metadata": {"name": "a", "bogus": 1}, "spec": {"containers": [{"name": "c", "imagee": "x"}]}, "gone": null});
        let typed = json!({"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c"}]}});
        let mut out = Vec::new();
        unknown_fields(&input, &typed, "", &mut out);
        assert_eq!(out, vec!["metadata.bogus", "spec.containers[0].imagee"]);
    }

    #[test]
    fn delete_options_of_the_wrong_types_are_bad_requests() {
        for body in [
            json!({"gracePeriodSeconds": "x"}),
            json!({"gracePeriodSeconds": 1.5}),
            json!({"propagationPolicy": 3}),
            json!({"orphanDependents": "yes"}),
            json!({"dryRun": "All"}),
            json!({"dryRun": [1]}),
            json!({"preconditions": "x"}),
            json!({"preconditions": {"uid": 7}}),
        ] {
            let e = DeleteOptions::default().merge_body(&body).unwrap_err();
            assert_eq!(e.code(), 400, "{body}");
            assert!(e.to_string().starts_with("json: cannot unmarshal"), "{e}");
        }
        let mut ok = DeleteOptions::default();
        ok.merge_body(&json!({"gracePeriodSeconds": 0, "propagationPolicy": null, "dryRun": ["All"],
            "preconditions": {"uid": "u"}}))
            .unwrap();
        assert_eq!((ok.grace_period_seconds, ok.dry_run, ok.uid.as_deref()), (Some(0), true, Some("u")));
    }

    #[test]
    fn uids_are_version_4() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uid());
    }
}
