//! Controllers that run on the Raft leader: the garbage collector, the namespace controller, the resource
//! quota controller, the creation of the system priority classes, and the one that keeps the `kubernetes`
//! Service and its endpoints.
//!
//! Architecture invariant: controllers are API clients. They read and write through the Kubernetes API with
//! the `kube` client (in-process, over the API router without a socket), never through the store, so they would
//! work unchanged as separate processes.
//!
//! Each pass lists every served resource into a `Snapshot` of ownership facts, lets each controller's pure
//! `plan` decide `Action`s, and executes them. Executing is idempotent and every write carries a precondition
//! (uid or resourceVersion), so a stale snapshot makes a write fail, never do harm; the next pass sees the new
//! state. Passes run when the store has moved, and leave idle at least four times as long as they took, which
//! bounds the controllers' share of the leader's time.
//!
//! The `kubernetes` Service's endpoints also depend on what only the replica knows (the replicas' API
//! addresses and when the leader last heard from each), which the replica hands in as an `Environment`; a
//! change there starts a pass too.

pub mod garbage_collector;
pub mod kubernetes_service;
pub mod namespace;
pub mod node_lifecycle;
pub mod pod_gc;
pub mod priority_classes;
pub mod resource_quota;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

use crate::apis::catalog::{self, Deletion, Resource};
use crate::apis::time;
use crate::limits;

/// One object's facts the controllers decide from.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectRef {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub deleting: bool,
    pub finalizers: Vec<String>,
    /// A Namespace's `spec.finalizers`.
    pub namespace_finalizers: Vec<String>,
    /// A Namespace's `status.conditions`.
    pub conditions: Vec<namespace::Condition>,
    pub owners: Vec<OwnerRef>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OwnerRef {
    pub uid: String,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub block_owner_deletion: bool,
}

/// Every object the API serves, as of one pass.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub objects: Vec<ObjectRef>,
}

/// What a controller asks for; `object` indexes the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Delete the object (with this propagation policy); when `confirm_owners_gone`, only after reading each
    /// owner and finding it absent.
    Delete {
        object: usize,
        propagation: Option<&'static str>,
        confirm_owners_gone: bool,
    },
    RemoveFinalizer {
        object: usize,
        finalizer: &'static str,
    },
    RemoveOwnerRef {
        object: usize,
        owner_uid: String,
    },
    FinalizeNamespace {
        object: usize,
    },
    /// Merge these conditions into the namespace's `status.conditions` (upstream's rules of transition).
    SetNamespaceConditions {
        object: usize,
        conditions: Vec<namespace::Condition>,
    },
    CreateNamespace {
        name: &'static str,
    },
    CreateServiceAccount {
        namespace: String,
    },
    CreatePriorityClass {
        name: &'static str,
        value: i64,
    },
}

/// What the replica running the controllers knows that the API does not hold.
#[derive(Clone)]
pub struct Environment {
    /// The `kubernetes` Service's cluster IP: the first address of the service range.
    pub kubernetes_service_ip: Ipv4Addr,
    /// The replicas as the leader sees them now.
    pub replicas: Arc<dyn Fn() -> Vec<kubernetes_service::Replica> + Send + Sync>,
}

fn api_resource(r: &Resource) -> ApiResource {
    ApiResource {
        group: r.group.to_string(),
        version: r.version.to_string(),
        api_version: r.api_version(),
        kind: r.kind.to_string(),
        plural: r.plural.to_string(),
    }
}

fn api_for(client: &Client, r: &Resource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) if r.namespaced => Api::namespaced_with(client.clone(), ns, &api_resource(r)),
        _ => Api::all_with(client.clone(), &api_resource(r)),
    }
}

/// The facts of one object; its body (`spec.finalizers`, `status.conditions`) matters only for kinds whose
/// `spec.finalizers` hold their deletion (Namespaces).
fn object_ref(resource: &'static Resource, m: &ObjectMeta, body: Option<&Value>) -> Option<ObjectRef> {
    Some(ObjectRef {
        resource,
        namespace: m.namespace.clone(),
        name: m.name.clone()?,
        uid: m.uid.clone()?,
        resource_version: m.resource_version.clone().unwrap_or_default(),
        deleting: m.deletion_timestamp.is_some(),
        finalizers: m.finalizers.clone().unwrap_or_default(),
        namespace_finalizers: body
            .and_then(|b| b["spec"]["finalizers"].as_array())
            .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
            .unwrap_or_default(),
        conditions: body
            .and_then(|b| b["status"]["conditions"].as_array())
            .map(|a| a.iter().map(namespace::Condition::from_status).collect())
            .unwrap_or_default(),
        owners: m
            .owner_references
            .iter()
            .flatten()
            .map(|r| OwnerRef {
                uid: r.uid.clone(),
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
                name: r.name.clone(),
                block_owner_deletion: r.block_owner_deletion.unwrap_or(false),
            })
            .collect(),
    })
}

async fn snapshot(client: &Client) -> Result<Snapshot, kube::Error> {
    let mut objects = Vec::new();
    for r in catalog::stored() {
        let api = api_for(client, r, None);
        if r.deletion == Deletion::Finalized {
            let list = api.list(&ListParams::default()).await?;
            objects.extend(list.items.iter().filter_map(|o| object_ref(r, &o.metadata, Some(&o.data))));
        } else {
            // Only the metadata is decoded: the rest of each object is skipped, not built.
            let list = api.list_metadata(&ListParams::default()).await?;
            objects.extend(list.items.iter().filter_map(|o| object_ref(r, &o.metadata, None)));
        }
    }
    Ok(Snapshot { objects })
}

/// The store revision the API reports, as the cheapest sign that something changed.
async fn revision(client: &Client) -> Result<String, kube::Error> {
    let namespaces = catalog::find("", "v1", "namespaces").expect("namespaces are served");
    let list = api_for(client, namespaces, None).list_metadata(&ListParams::default().limit(1)).await?;
    Ok(list.metadata.resource_version.unwrap_or_default())
}

/// Whether the owner a dependent names still exists (with the same uid).
async fn owner_exists(client: &Client, dependent: &ObjectRef, owner: &OwnerRef) -> Result<bool, kube::Error> {
    let (group, version) = match owner.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", owner.api_version.as_str()),
    };
    let Some(r) = catalog::RESOURCES.iter().find(|r| r.group == group && r.version == version && r.kind == owner.kind)
    else {
        // An owner of a kind this server does not serve cannot be checked: keep the dependent.
        return Ok(true);
    };
    match api_for(client, r, dependent.namespace.as_deref()).get_opt(&owner.name).await? {
        Some(o) => Ok(o.metadata.uid.as_deref() == Some(owner.uid.as_str())),
        None => Ok(false),
    }
}

async fn execute(client: &Client, snapshot: &Snapshot, action: &Action) -> Result<(), kube::Error> {
    let target = |i: usize| &snapshot.objects[i];
    match action {
        Action::Delete { object, propagation, confirm_owners_gone } => {
            let o = target(*object);
            if *confirm_owners_gone {
                for owner in &o.owners {
                    if owner_exists(client, o, owner).await? {
                        return Ok(());
                    }
                }
            }
            let propagation_policy = match *propagation {
                Some(garbage_collector::FOREGROUND) => Some(kube::api::PropagationPolicy::Foreground),
                Some("Orphan") => Some(kube::api::PropagationPolicy::Orphan),
                Some(_) => Some(kube::api::PropagationPolicy::Background),
                None => None,
            };
            let preconditions = Some(kube::api::Preconditions { uid: Some(o.uid.clone()), resource_version: None });
            let params = DeleteParams { preconditions, propagation_policy, ..DeleteParams::default() };
            tracing::info!(kind = o.resource.kind, namespace = ?o.namespace, name = %o.name, "deleting");
            api_for(client, o.resource, o.namespace.as_deref()).delete(&o.name, &params).await?;
        }
        Action::RemoveFinalizer { object, finalizer } => {
            let o = target(*object);
            let remaining: Vec<&String> = o.finalizers.iter().filter(|f| f.as_str() != *finalizer).collect();
            let patch = json!({"metadata": {"finalizers": remaining, "resourceVersion": o.resource_version}});
            api_for(client, o.resource, o.namespace.as_deref())
                .patch(&o.name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
        Action::RemoveOwnerRef { object, owner_uid } => {
            let o = target(*object);
            let api = api_for(client, o.resource, o.namespace.as_deref());
            let live = api.get(&o.name).await?;
            let refs: Vec<Value> = live
                .metadata
                .owner_references
                .iter()
                .flatten()
                .filter(|r| r.uid != *owner_uid)
                .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
                .collect();
            let rv = live.metadata.resource_version.unwrap_or_default();
            let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": rv}});
            api.patch(&o.name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        }
        Action::FinalizeNamespace { object } => {
            let o = target(*object);
            let api = api_for(client, o.resource, None);
            let mut live = api.get(&o.name).await?;
            let remaining: Vec<&String> =
                o.namespace_finalizers.iter().filter(|f| f.as_str() != namespace::KUBERNETES_FINALIZER).collect();
            live.data["spec"]["finalizers"] = json!(remaining);
            api.replace_subresource("finalize", &o.name, &PostParams::default(), &live).await?;
        }
        Action::SetNamespaceConditions { object, conditions } => {
            let o = target(*object);
            let api = api_for(client, o.resource, None);
            let mut live = api.get(&o.name).await?;
            if live.metadata.uid.as_deref() != Some(o.uid.as_str()) {
                return Ok(());
            }
            let current = live.data["status"]["conditions"].as_array().cloned().unwrap_or_default();
            if let Some(merged) = namespace::merge_conditions(&current, conditions, &time::now()) {
                live.data["status"]["conditions"] = Value::Array(merged);
                // The live object's resourceVersion is the precondition.
                api.replace_subresource("status", &o.name, &PostParams::default(), &live).await?;
            }
        }
        Action::CreateNamespace { name } => {
            let namespaces = catalog::find("", "v1", "namespaces").expect("namespaces are served");
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            let ns: DynamicObject = serde_json::from_value(ns).map_err(kube::Error::SerdeError)?;
            tracing::info!(name, "creating a system namespace");
            ignore_exists(api_for(client, namespaces, None).create(&PostParams::default(), &ns).await)?;
        }
        Action::CreateServiceAccount { namespace } => {
            let accounts = catalog::find("", "v1", "serviceaccounts").expect("service accounts are served");
            let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
            let sa: DynamicObject = serde_json::from_value(sa).map_err(kube::Error::SerdeError)?;
            ignore_exists(api_for(client, accounts, Some(namespace)).create(&PostParams::default(), &sa).await)?;
        }
        Action::CreatePriorityClass { name, value } => {
            let classes = catalog::find("scheduling.k8s.io", "v1", "priorityclasses").expect("served");
            let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value,
                "description": priority_classes::description(name)});
            let class: DynamicObject = serde_json::from_value(class).map_err(kube::Error::SerdeError)?;
            tracing::info!(name, "creating a system priority class");
            ignore_exists(api_for(client, classes, None).create(&PostParams::default(), &class).await)?;
        }
    }
    Ok(())
}

/// A create that found the object already there did what it was for.
fn ignore_exists<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The `kubernetes` Service, its Endpoints and its EndpointSlices as the API serves them now.
async fn kubernetes_service_objects(client: &Client) -> Result<kubernetes_service::Current, kube::Error> {
    use kubernetes_service::{endpoint_slices, NAME, NAMESPACE, SERVICE_NAME_LABEL};
    let get = |plural| async move {
        let r = catalog::find("", "v1", plural).expect("served");
        let found = api_for(client, r, Some(NAMESPACE)).get_opt(NAME).await?;
        found.map(|o| serde_json::to_value(o).map_err(kube::Error::SerdeError)).transpose()
    };
    let selector = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={NAME}"));
    let slices = api_for(client, endpoint_slices(), Some(NAMESPACE)).list(&selector).await?;
    Ok(kubernetes_service::Current {
        service: get("services").await?,
        endpoints: get("endpoints").await?,
        slices: slices
            .items
            .into_iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()
            .map_err(kube::Error::SerdeError)?,
    })
}

/// Makes one of the `kubernetes` Service controller's writes, with its precondition.
async fn write(client: &Client, write: &kubernetes_service::Write) -> Result<(), kube::Error> {
    use kubernetes_service::{Write, NAMESPACE};
    let decode = |v: &Value| serde_json::from_value::<DynamicObject>(v.clone()).map_err(kube::Error::SerdeError);
    match write {
        Write::Create { resource, object } => {
            tracing::info!(kind = resource.kind, name = ?object["metadata"]["name"], "creating");
            api_for(client, resource, Some(NAMESPACE)).create(&PostParams::default(), &decode(object)?).await?;
        }
        Write::Replace { resource, object } => {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            tracing::info!(kind = resource.kind, name, "updating");
            api_for(client, resource, Some(NAMESPACE)).replace(name, &PostParams::default(), &decode(object)?).await?;
        }
        Write::Delete { resource, name, uid } => {
            let preconditions = Some(kube::api::Preconditions { uid: Some(uid.clone()), resource_version: None });
            tracing::info!(kind = resource.kind, name, "deleting");
            let params = DeleteParams { preconditions, ..DeleteParams::default() };
            api_for(client, resource, Some(NAMESPACE)).delete(name, &params).await?;
        }
    }
    Ok(())
}

/// One pass: snapshot, plan, execute. Failed actions are logged and retried by a later pass; a failed write
/// to the `kubernetes` Service's objects fails the pass, so that the next one comes soon.
async fn pass(client: &Client, kubernetes: &kubernetes_service::Desired) -> Result<(), kube::Error> {
    let snapshot = snapshot(client).await?;
    let mut actions = garbage_collector::plan(&snapshot);
    actions.extend(namespace::plan(&snapshot));
    actions.extend(priority_classes::plan(&snapshot));
    for action in actions.iter().take(limits::CONTROLLER_ACTIONS_PER_PASS_MAX) {
        if let Err(e) = execute(client, &snapshot, action).await {
            tracing::debug!(error = %e, ?action, "controller action failed; a later pass retries");
        }
    }
    if let Err(e) = resource_quota::reconcile(client).await {
        tracing::debug!(error = %e, "resource quota pass failed; a later pass retries");
    }
    let current = kubernetes_service_objects(client).await?;
    for w in kubernetes_service::plan(kubernetes, &current) {
        write(client, &w).await?;
    }
    Ok(())
}

/// Runs the controllers until `stop` fires.
pub async fn run(client: Client, environment: Environment, mut stop: tokio::sync::watch::Receiver<bool>) {
    let leading_since = Instant::now();
    let mut last_revision = String::new();
    let mut last_kubernetes = None;
    let mut idle = Duration::from_millis(limits::CONTROLLER_PASS_INTERVAL_MS_MIN);
    loop {
        tokio::select! {
            () = tokio::time::sleep(idle) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let started = Instant::now();
        let replicas = (environment.replicas)();
        let kubernetes =
            kubernetes_service::desired(environment.kubernetes_service_ip, &replicas, leading_since.elapsed());
        match revision(&client).await {
            Ok(rv) if rv == last_revision && last_kubernetes.as_ref() == Some(&kubernetes) => continue,
            Ok(rv) => last_revision = rv,
            Err(e) => {
                tracing::debug!(error = %e, "controllers cannot read the api");
                continue;
            }
        }
        last_kubernetes = Some(kubernetes.clone());
        if let Err(e) = pass(&client, &kubernetes).await {
            tracing::debug!(error = %e, "controller pass failed");
            last_revision.clear();
        }
        let min = Duration::from_millis(limits::CONTROLLER_PASS_INTERVAL_MS_MIN);
        idle = (started.elapsed() * 4).max(min);
    }
}
