//! Controllers that run on the Raft leader: the garbage collector, the namespace controller (with each
//! namespace's `kube-root-ca.crt`), the resource quota controller, the creation of the system priority classes,
//! of the default RBAC roles and of the cluster DNS Service (`apis::cluster_dns`), and the one that keeps
//! the `kubernetes` Service and its endpoints; the
//! endpoints of the other Services (`endpoints`), the workload controllers (`workloads`), node lifecycle and
//! the autoscaler have modules of their own.
//!
//! Architecture invariant: controllers are API clients. They read and write through the Kubernetes API with
//! the `kube` client (in-process, over the API router without a socket), never through the store, so they would
//! work unchanged as separate processes.
//!
//! They run on the controller runtime (`runtime`): the term's shared informers feed the ownership graph
//! (`graph`) with the metadata of every stored object, handlers map each change to the keys it concerns on
//! each controller's work queue, and workers reconcile one key at a time with a pure `plan` over the cached
//! objects. Executing is idempotent and every write carries a precondition (uid or resourceVersion), so a
//! cache a moment behind makes a write fail, never do harm; the key comes back after a back-off. The cost of a
//! change is the cost of the keys it concerns, never a pass over everything.
//!
//! The `kubernetes` Service's endpoints also depend on what only the replica knows (the replicas' API
//! addresses and when the leader last heard from each), which the replica hands in as an `Environment`,
//! looked at every `KUBERNETES_SERVICE_CHECK_INTERVAL_MS`; a change there queues that controller too.

pub mod autoscaler;
pub mod endpoints;
pub mod events;
pub mod garbage_collector;
pub mod graph;
pub mod kubernetes_service;
pub mod namespace;
pub mod node_lifecycle;
pub mod pod_gc;
pub mod priority_classes;
pub mod resource_quota;
pub mod runtime;
pub mod workloads;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

use crate::apis::catalog::{self, Resource};
use crate::apis::{admission, cluster_dns, time};
use crate::limits;
use graph::Graph;
use runtime::{run_workers, Informer, Informers, Next, WorkQueue};

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

/// What a controller asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Delete the object (with this propagation policy); when `confirm_owners_gone`, only after reading each
    /// owner and finding it absent.
    Delete {
        object: ObjectRef,
        propagation: Option<&'static str>,
        confirm_owners_gone: bool,
    },
    RemoveFinalizer {
        object: ObjectRef,
        finalizer: &'static str,
    },
    RemoveOwnerRef {
        object: ObjectRef,
        owner_uid: String,
    },
    FinalizeNamespace {
        object: ObjectRef,
    },
    /// Merge these conditions into the namespace's `status.conditions` (upstream's rules of transition).
    SetNamespaceConditions {
        object: ObjectRef,
        conditions: Vec<namespace::Condition>,
    },
    CreateNamespace {
        name: &'static str,
    },
    CreateServiceAccount {
        namespace: String,
    },
    /// Create the namespace's `kube-root-ca.crt` ConfigMap with the cluster authority's certificate (PEM).
    CreateRootCaConfigMap {
        namespace: String,
        root_ca: Arc<str>,
    },
    /// Replace the namespace's `kube-root-ca.crt` with `object` (as read, its data set back; the update is
    /// refused if the ConfigMap changed since).
    ResetRootCaConfigMap {
        namespace: String,
        object: Value,
    },
    CreatePriorityClass {
        name: &'static str,
        value: i64,
    },
    /// Create the cluster DNS Service at this address.
    CreateClusterDnsService(Ipv4Addr),
    /// Create a default ClusterRole or ClusterRoleBinding (`security::rbac::defaults`).
    CreateDefaultRbac {
        plural: &'static str,
        object: Value,
    },
}

/// What the replica running the controllers knows that the API does not hold.
#[derive(Clone)]
pub struct Environment {
    /// The `kubernetes` Service's cluster IP: the first address of the service range.
    pub kubernetes_service_ip: Ipv4Addr,
    /// The cluster DNS Service's: the tenth.
    pub cluster_dns_ip: Ipv4Addr,
    /// The replicas as the leader sees them now.
    pub replicas: Arc<dyn Fn() -> Vec<kubernetes_service::Replica> + Send + Sync>,
    /// The cluster authority's certificate, which every namespace publishes when the cluster signs
    /// ServiceAccount tokens (`ApiSecurity::token_root_ca`).
    pub root_ca: Option<Arc<str>>,
}

fn api_for(client: &Client, r: &Resource, namespace: Option<&str>) -> Api<DynamicObject> {
    let ar = runtime::informer::api_resource(r);
    match namespace {
        Some(ns) if r.namespaced => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
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

async fn execute(client: &Client, action: &Action) -> Result<(), kube::Error> {
    match action {
        Action::Delete { object, propagation, confirm_owners_gone } => {
            let o = object;
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
            let o = object;
            let remaining: Vec<&String> = o.finalizers.iter().filter(|f| f.as_str() != *finalizer).collect();
            let patch = json!({"metadata": {"finalizers": remaining, "resourceVersion": o.resource_version}});
            api_for(client, o.resource, o.namespace.as_deref())
                .patch(&o.name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
        Action::RemoveOwnerRef { object, owner_uid } => {
            let o = object;
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
            let o = object;
            let api = api_for(client, o.resource, None);
            let mut live = api.get(&o.name).await?;
            let remaining: Vec<&String> =
                o.namespace_finalizers.iter().filter(|f| f.as_str() != namespace::KUBERNETES_FINALIZER).collect();
            live.data["spec"]["finalizers"] = json!(remaining);
            api.replace_subresource("finalize", &o.name, &PostParams::default(), &live).await?;
        }
        Action::SetNamespaceConditions { object, conditions } => {
            let o = object;
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
        Action::CreateRootCaConfigMap { namespace, root_ca } => {
            let config_map = serde_json::from_value::<DynamicObject>(admission::root_ca_config_map(root_ca))
                .map_err(kube::Error::SerdeError)?;
            tracing::info!(namespace, "publishing the root CA");
            let api = api_for(client, resource("", "v1", "configmaps"), Some(namespace));
            ignore_exists(api.create(&PostParams::default(), &config_map).await)?;
        }
        Action::ResetRootCaConfigMap { namespace, object } => {
            let config_map =
                serde_json::from_value::<DynamicObject>(object.clone()).map_err(kube::Error::SerdeError)?;
            tracing::info!(namespace, "setting the published root CA back");
            let api = api_for(client, resource("", "v1", "configmaps"), Some(namespace));
            api.replace(admission::ROOT_CA_CONFIG_MAP, &PostParams::default(), &config_map).await?;
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
        Action::CreateDefaultRbac { plural, object } => {
            let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            let created = serde_json::from_value::<DynamicObject>(object.clone()).map_err(kube::Error::SerdeError)?;
            tracing::info!(plural, name, "creating a default RBAC object");
            let api = api_for(client, resource("rbac.authorization.k8s.io", "v1", plural), None);
            ignore_exists(api.create(&PostParams::default(), &created).await)?;
        }
        Action::CreateClusterDnsService(ip) => {
            let service =
                serde_json::from_value::<DynamicObject>(cluster_dns::service(*ip)).map_err(kube::Error::SerdeError)?;
            tracing::info!(namespace = cluster_dns::NAMESPACE, name = cluster_dns::NAME, %ip, "creating the cluster DNS Service");
            let api = api_for(client, resource("", "v1", "services"), Some(cluster_dns::NAMESPACE));
            ignore_exists(api.create(&PostParams::default(), &service).await)?;
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

/// Executes `actions` one after the other; the first failure stops them (the key comes back).
async fn execute_all(client: &Client, actions: &[Action]) -> Result<Next, kube::Error> {
    for action in actions {
        execute(client, action).await?;
    }
    Ok(Next::Done)
}

/// A namespace as the namespace controller decides from it (with `spec.finalizers` and `status.conditions`).
fn namespace_ref(namespaces: &Informer<Namespace>, name: &str) -> Option<ObjectRef> {
    let ns = runtime::informer::get(namespaces.store(), None, name)?;
    let body = serde_json::to_value(ns.as_ref()).ok()?;
    object_ref(resource("", "v1", "namespaces"), &ns.metadata, Some(&body))
}

fn resource(group: &str, version: &str, plural: &str) -> &'static Resource {
    catalog::find(group, version, plural).expect("a kind the controllers use is served")
}

/// The controllers' work queues.
struct Queues {
    garbage: Arc<WorkQueue<String>>,
    namespaces: Arc<WorkQueue<String>>,
    quotas: Arc<WorkQueue<String>>,
    priority_classes: Arc<WorkQueue<&'static str>>,
    kubernetes: Arc<WorkQueue<()>>,
    cluster_dns: Arc<WorkQueue<()>>,
    rbac_defaults: Arc<WorkQueue<()>>,
}

/// The namespace's `kube-root-ca.crt` as the API holds it, when `contents` (the cache) has one.
async fn read_root_ca(client: &Client, namespace: &str, contents: &[ObjectRef]) -> Result<Option<Value>, kube::Error> {
    let name = admission::ROOT_CA_CONFIG_MAP;
    if !contents.iter().any(|o| o.resource.kind == "ConfigMap" && o.name == name) {
        return Ok(None);
    }
    let api = api_for(client, resource("", "v1", "configmaps"), Some(namespace));
    let read = api.get_opt(name).await?;
    read.map(serde_json::to_value).transpose().map_err(kube::Error::SerdeError)
}

/// Which keys of which controller one change concerns. `before` and `after` are the object as the graph held
/// it before the change and holds it now (None once deleted).
fn route(graph: &Graph, queues: &Queues, before: Option<&ObjectRef>, after: Option<&ObjectRef>) {
    const ROOT_CA: &str = admission::ROOT_CA_CONFIG_MAP;
    let Some(o) = after.or(before) else { return };
    let deleted = after.is_none();
    let namespaces = resource("", "v1", "namespaces");
    let quotas = resource("", "v1", "resourcequotas");
    // Garbage collection: the object itself, its owners being deleted, and (once it is gone) its dependents.
    if let Some(now) = after {
        if !now.owners.is_empty() || now.deleting {
            queues.garbage.add(now.uid.clone());
        }
    }
    let owners = before.into_iter().chain(after).flat_map(|x| &x.owners);
    for owner in owners {
        if graph.get(&owner.uid).is_some_and(|x| x.deleting) {
            queues.garbage.add(owner.uid.clone());
        }
    }
    if deleted {
        for d in graph.dependents(&o.uid) {
            queues.garbage.add(d.uid);
        }
    }
    // Namespaces: the namespace itself; what happens inside one that is being emptied; its default account and
    // its root CA.
    if std::ptr::eq(o.resource, namespaces) {
        queues.namespaces.add(o.name.clone());
    } else if let Some(ns) = &o.namespace {
        if graph.find(namespaces, None, ns).is_some_and(|x| x.deleting) {
            queues.namespaces.add_after(ns.clone(), Duration::from_millis(limits::NAMESPACE_RECHECK_DELAY_MS));
        } else if (deleted && (o.resource.kind, o.name.as_str()) == ("ServiceAccount", "default"))
            || (o.resource.kind, o.name.as_str()) == ("ConfigMap", ROOT_CA)
        {
            queues.namespaces.add(ns.clone());
        }
        // Quotas: a quota at once; other objects of a namespace with quotas after a delay that batches them.
        if std::ptr::eq(o.resource, quotas) {
            queues.quotas.add(ns.clone());
        } else if graph.namespace_has(ns, quotas) {
            queues.quotas.add_after(ns.clone(), Duration::from_millis(limits::QUOTA_RECALCULATION_DELAY_MS));
        }
    }
    if deleted && o.resource.plural == "priorityclasses" {
        if let Some((name, _)) = crate::apis::validation::SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _)| *n == o.name) {
            queues.priority_classes.add(name);
        }
    }
    if deleted
        && o.resource.plural == "services"
        && o.namespace.as_deref() == Some(cluster_dns::NAMESPACE)
        && o.name == cluster_dns::NAME
    {
        queues.cluster_dns.add(());
    }
    if deleted && o.resource.group == "rbac.authorization.k8s.io" && o.namespace.is_none() {
        queues.rbac_defaults.add(());
    }
    if o.namespace.as_deref() == Some(kubernetes_service::NAMESPACE)
        && matches!(o.resource.plural, "services" | "endpoints" | "endpointslices")
    {
        queues.kubernetes.add(());
    }
}

/// Registers the controllers with this term's informers; the returned future runs them (once the informers
/// have listed) until it is dropped.
pub fn prepare(informers: &mut Informers, environment: Environment) -> impl std::future::Future<Output = ()> + Send {
    let client = informers.client().clone();
    let graph = Arc::new(Graph::default());
    let namespaces = informers.typed::<Namespace>();
    let capacity = limits::WORK_QUEUE_KEYS_MAX;
    let all_uids = {
        let graph = graph.clone();
        move || graph.uids()
    };
    let all_namespaces = {
        let namespaces = namespaces.clone();
        move || namespaces.store().state().iter().filter_map(|n| n.metadata.name.clone()).collect::<Vec<_>>()
    };
    let queues = Arc::new(Queues {
        garbage: WorkQueue::new("garbage-collector", capacity, all_uids),
        namespaces: WorkQueue::new("namespace", capacity, all_namespaces.clone()),
        quotas: WorkQueue::new("resource-quota", capacity, all_namespaces),
        priority_classes: WorkQueue::new("priority-classes", capacity, || {
            crate::apis::validation::SYSTEM_PRIORITY_CLASSES.iter().map(|(n, _)| *n).collect()
        }),
        kubernetes: WorkQueue::new("kubernetes-service", capacity, || vec![()]),
        cluster_dns: WorkQueue::new("cluster-dns", capacity, || vec![()]),
        rbac_defaults: WorkQueue::new("rbac-defaults", capacity, || vec![()]),
    });
    {
        let (graph, queues) = (graph.clone(), queues.clone());
        informers.on_metadata(move |resource, change| {
            let (before, after) = graph.apply(resource, change);
            route(&graph, &queues, before.as_ref(), after.as_ref());
        });
    }
    let synced = informers.synced();
    async move {
        synced.wait().await;
        tracing::info!("controllers' informers synced");
        for name in namespace::SYSTEM_NAMESPACES {
            queues.namespaces.add(name.to_string());
        }
        for (name, _) in crate::apis::validation::SYSTEM_PRIORITY_CLASSES {
            queues.priority_classes.add(name);
        }
        queues.kubernetes.add(());
        queues.cluster_dns.add(());
        queues.rbac_defaults.add(());
        let garbage = {
            let (client, graph) = (client.clone(), graph.clone());
            move |uid: String| {
                let (client, graph) = (client.clone(), graph.clone());
                async move {
                    let Some(object) = graph.get(&uid) else { return Ok(Next::Done) };
                    let actions = garbage_collector::plan(&object, |u| graph.contains(u), &graph.dependents(&uid));
                    execute_all(&client, &actions).await
                }
            }
        };
        let namespace = {
            let (client, graph, root_ca) = (client.clone(), graph.clone(), environment.root_ca.clone());
            move |name: String| {
                let (client, graph, namespaces) = (client.clone(), graph.clone(), namespaces.clone());
                let root_ca = root_ca.clone();
                async move {
                    let ns = namespace_ref(&namespaces, &name);
                    let contents = graph.in_namespace(&name);
                    let published = match root_ca.is_some() && ns.as_ref().is_some_and(|ns| !ns.deleting) {
                        true => read_root_ca(&client, &name, &contents).await?,
                        false => None,
                    };
                    let actions = namespace::plan(&name, ns.as_ref(), &contents, root_ca.as_ref(), published.as_ref());
                    execute_all(&client, &actions).await
                }
            }
        };
        let quota = {
            let client = client.clone();
            move |ns: String| {
                let client = client.clone();
                async move { resource_quota::reconcile(&client, &ns).await.map(|()| Next::Done) }
            }
        };
        let priority = {
            let (client, graph) = (client.clone(), graph.clone());
            move |name: &'static str| {
                let (client, graph) = (client.clone(), graph.clone());
                async move {
                    let classes = resource("scheduling.k8s.io", "v1", "priorityclasses");
                    let actions = priority_classes::plan(|n| n != name || graph.find(classes, None, n).is_some());
                    execute_all(&client, &actions).await
                }
            }
        };
        let dns = {
            let (client, graph, ip) = (client.clone(), graph.clone(), environment.cluster_dns_ip);
            move |()| {
                let (client, graph) = (client.clone(), graph.clone());
                async move {
                    let services = resource("", "v1", "services");
                    let exists = graph.find(services, Some(cluster_dns::NAMESPACE), cluster_dns::NAME).is_some();
                    let actions = if exists { vec![] } else { vec![Action::CreateClusterDnsService(ip)] };
                    execute_all(&client, &actions).await
                }
            }
        };
        let rbac = {
            let (client, graph) = (client.clone(), graph.clone());
            move |()| {
                let (client, graph) = (client.clone(), graph.clone());
                async move {
                    let missing = |(plural, object): &(&'static str, Value)| {
                        let name = object["metadata"]["name"].as_str().unwrap_or_default();
                        graph.find(resource("rbac.authorization.k8s.io", "v1", plural), None, name).is_none()
                    };
                    let actions: Vec<Action> = crate::security::rbac::defaults()
                        .into_iter()
                        .filter(missing)
                        .map(|(plural, object)| Action::CreateDefaultRbac { plural, object })
                        .collect();
                    execute_all(&client, &actions).await
                }
            }
        };
        let leading_since = Instant::now();
        let desired = {
            let environment = environment.clone();
            move || {
                let replicas = (environment.replicas)();
                kubernetes_service::desired(environment.kubernetes_service_ip, &replicas, leading_since.elapsed())
            }
        };
        let kubernetes = {
            let (client, desired) = (client.clone(), desired.clone());
            move |()| {
                let (client, desired) = (client.clone(), desired());
                async move {
                    let current = kubernetes_service_objects(&client).await?;
                    for w in kubernetes_service::plan(&desired, &current) {
                        write(&client, &w).await?;
                    }
                    Ok::<_, kube::Error>(Next::Done)
                }
            }
        };
        // The replicas' facts are not in the API: look at them now and then, and queue the controller when
        // they change.
        let watch_environment = {
            let queue = queues.kubernetes.clone();
            async move {
                let mut last = desired();
                loop {
                    tokio::time::sleep(Duration::from_millis(limits::KUBERNETES_SERVICE_CHECK_INTERVAL_MS)).await;
                    let now = desired();
                    if now != last {
                        queue.add(());
                        last = now;
                    }
                }
            }
        };
        tokio::join!(
            run_workers(queues.garbage.clone(), limits::GARBAGE_COLLECTOR_WORKERS, garbage),
            run_workers(queues.namespaces.clone(), limits::NAMESPACE_WORKERS, namespace),
            run_workers(queues.quotas.clone(), 1, quota),
            run_workers(queues.priority_classes.clone(), 1, priority),
            run_workers(queues.kubernetes.clone(), 1, kubernetes),
            run_workers(queues.cluster_dns.clone(), 1, dns),
            run_workers(queues.rbac_defaults.clone(), 1, rbac),
            watch_environment,
        );
    }
}
