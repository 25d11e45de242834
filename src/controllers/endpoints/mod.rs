//! The endpoints controllers of kube-controller-manager, on the Raft leader: for every Service with a selector,
//! its `v1` Endpoints (`legacy`) and its EndpointSlices (`slices`) list the pods it selects (`members`), as
//! upstream's endpoints and EndpointSlice controllers write them. A Service without a selector has the Endpoints
//! its user writes, which are mirrored into EndpointSlices (as upstream's mirroring controller does, so that the
//! service proxy, which reads slices only, sees them); slices this controller made for it while it had a
//! selector are taken back. A deleted Service's Endpoints are deleted if this controller made them, its own
//! slices go with it (the Service owns them) and its mirrored slices are deleted.
//!
//! One work queue keyed by Service: a Service's change queues it; a pod's change queues the Services of its
//! namespace that select it now or selected it before (the index keeps each pod's last labels); a change of
//! an Endpoints or of a managed slice queues its Service, so that an edit by hand is put back. A worker plans
//! from the caches (pure) and writes with preconditions (a create needs the name free, a replace the
//! resourceVersion read, a delete the uid read); a slice created (with a generated name) is expected until the
//! cache shows it, and the Service waits for that before planning again, so a slice is never made twice.
//!
//! Architecture invariant: the cost of a change is the cost of the Services it concerns: pods and Services are
//! found through per-namespace indexes and slices through a per-Service index, never by a pass over all.

pub mod legacy;
pub mod members;
pub mod slices;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, DynamicObject, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::Value;

use super::kubernetes_service::SERVICE_NAME_LABEL;
use super::runtime::{informer, run_workers, Change, Informers, Next};
use super::workloads::expectations::{Expectations, Seen};
use super::workloads::{key_of, lock, queue_of, Key};
use crate::limits;
use slices::SliceWrite;

/// The objects of one kind by namespace, with what routing needs of each (a pod's labels).
struct ByNamespace<K: Resource<DynamicType = ()>, V> {
    objects: HashMap<String, HashMap<ObjectRef<K>, V>>,
}

impl<K: Resource<DynamicType = ()>, V> Default for ByNamespace<K, V> {
    fn default() -> Self {
        ByNamespace { objects: HashMap::new() }
    }
}

impl<K: Resource<DynamicType = ()> + kube::runtime::reflector::Lookup<DynamicType = ()>, V> ByNamespace<K, V> {
    /// Follows a change (`value` of the object now); returns the value the object had before.
    fn apply(&mut self, change: Change<'_, K>, value: impl FnOnce(&K) -> V) -> Option<V> {
        let object = change.object();
        let namespace = object.meta().namespace.clone().unwrap_or_default();
        let key = ObjectRef::from_obj(object);
        match change {
            Change::Applied(o) => self.objects.entry(namespace).or_default().insert(key, value(o)),
            Change::Deleted(_) => {
                let in_namespace = self.objects.get_mut(&namespace)?;
                let before = in_namespace.remove(&key);
                if in_namespace.is_empty() {
                    self.objects.remove(&namespace);
                }
                before
            }
        }
    }

    fn in_namespace(&self, namespace: &str) -> impl Iterator<Item = (&ObjectRef<K>, &V)> {
        self.objects.get(namespace).into_iter().flatten()
    }
}

/// The slices of each Service made by this controller or mirrored by it.
#[derive(Default)]
struct SliceIndex {
    of: HashMap<Key, HashSet<ObjectRef<EndpointSlice>>>,
    service: HashMap<ObjectRef<EndpointSlice>, Key>,
}

impl SliceIndex {
    /// Follows a change; returns the Services the slice belonged to before and belongs to now.
    fn apply(&mut self, change: Change<'_, EndpointSlice>) -> Vec<Key> {
        let slice = change.object();
        let reference = ObjectRef::from_obj(slice);
        let mut concerned = Vec::new();
        if let Some(before) = self.service.remove(&reference) {
            if let Some(set) = self.of.get_mut(&before) {
                set.remove(&reference);
                if set.is_empty() {
                    self.of.remove(&before);
                }
            }
            concerned.push(before);
        }
        if let (Change::Applied(_), Some(key)) = (change, service_of(slice)) {
            self.of.entry(key.clone()).or_default().insert(reference.clone());
            self.service.insert(reference, key.clone());
            concerned.push(key);
        }
        concerned
    }
}

/// The Service a slice is this controller's slice of.
fn service_of(slice: &EndpointSlice) -> Option<Key> {
    let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    slices::manager(slice, name).map(|_| (slice.metadata.namespace.clone().unwrap_or_default(), name.clone()))
}

/// What every reconcile shares.
struct Context {
    client: kube::Client,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    pod_index: Arc<Mutex<ByNamespace<Pod, BTreeMap<String, String>>>>,
    slice_index: Arc<Mutex<SliceIndex>>,
    expectations: Arc<Expectations<Key>>,
}

/// Registers the endpoints controllers with the term's informers; the returned future runs them once the
/// informers have listed, until it is dropped.
pub fn prepare(informers: &mut Informers) -> impl std::future::Future<Output = ()> + Send {
    let client = informers.client().clone();
    let services = informers.typed::<Service>();
    let pods = informers.typed::<Pod>();
    let endpoints = informers.typed::<Endpoints>();
    let slices = informers.typed::<EndpointSlice>();
    let nodes = informers.typed::<Node>();
    let queue = queue_of("endpoints", services.store());
    let service_index: Arc<Mutex<ByNamespace<Service, ()>>> = Arc::default();
    let pod_index: Arc<Mutex<ByNamespace<Pod, BTreeMap<String, String>>>> = Arc::default();
    let slice_index: Arc<Mutex<SliceIndex>> = Arc::default();
    let expectations: Arc<Expectations<Key>> = Arc::default();
    {
        let (queue, index, expectations) = (queue.clone(), service_index.clone(), expectations.clone());
        services.on_change(move |change| {
            lock(&index).apply(change, |_| ());
            if let Change::Deleted(service) = change {
                expectations.forget(&key_of(service));
            }
            queue.add(key_of(change.object()));
        });
    }
    {
        let (queue, index, service_index) = (queue.clone(), pod_index.clone(), service_index.clone());
        let services = services.store().clone();
        pods.on_change(move |change| {
            let pod = change.object();
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            let before = lock(&index).apply(change, |_| labels.clone()).unwrap_or_default();
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            for (reference, ()) in lock(&service_index).in_namespace(&namespace) {
                let Some(service) = services.get(reference) else { continue };
                let Some(selector) = members::selects(&service) else { continue };
                if selector.matches_labels(&labels) || selector.matches_labels(&before) {
                    queue.add((namespace.clone(), reference.name.clone()));
                }
            }
        });
    }
    {
        let queue = queue.clone();
        endpoints.on_change(move |change| queue.add(key_of(change.object())));
    }
    {
        let (queue, index, expectations) = (queue.clone(), slice_index.clone(), expectations.clone());
        slices.on_change(move |change| {
            let seen = match change {
                Change::Applied(_) => Seen::Alive,
                Change::Deleted(_) => Seen::Absent,
            };
            let name = change.object().name_any();
            for key in lock(&index).apply(change) {
                expectations.observed(&key, &name, seen);
                queue.add(key);
            }
        });
    }
    let synced = informers.synced();
    let context = Context {
        client,
        services: services.store().clone(),
        pods: pods.store().clone(),
        endpoints: endpoints.store().clone(),
        slices: slices.store().clone(),
        nodes: nodes.store().clone(),
        pod_index,
        slice_index,
        expectations,
    };
    async move {
        synced.wait().await;
        tracing::info!("endpoints controllers started");
        let context = &context;
        run_workers(queue, limits::ENDPOINTS_WORKERS, |key| reconcile(context, key).boxed()).await;
    }
}

async fn reconcile(context: &Context, key: Key) -> Result<Next, kube::Error> {
    let (namespace, name) = (&key.0, &key.1);
    let (own, mirrored): (Vec<Arc<EndpointSlice>>, Vec<Arc<EndpointSlice>>) = {
        let index = lock(&context.slice_index);
        let slices = index.of.get(&key).into_iter().flatten().filter_map(|r| context.slices.get(r));
        slices.partition(|s| slices::manager(s, name) == Some(slices::MANAGED_BY))
    };
    let own: Vec<&EndpointSlice> = own.iter().map(AsRef::as_ref).collect();
    let mirrored: Vec<&EndpointSlice> = mirrored.iter().map(AsRef::as_ref).collect();
    let Some(service) = informer::get(&context.services, Some(namespace), name) else {
        // The Service's own slices go with it (it owns them); the Endpoints this controller made and the
        // mirrored slices (owned by the user's Endpoints) are taken back here.
        let made = informer::get(&context.endpoints, Some(namespace), name).filter(|e| legacy::managed(e));
        if let Some(endpoints) = made {
            delete(&context.client, "endpoints", namespace, name, endpoints.metadata.uid.as_deref()).await?;
        }
        return write_slices(context, &key, slices::deletes(&mirrored)).await;
    };
    if !context.expectations.satisfied(&key, |slice| seen(context, namespace, slice)) {
        return Ok(Next::RequeueAfter(Duration::from_secs(limits::EXPECTATIONS_TIMEOUT_SECS)));
    }
    if members::selects(&service).is_none() {
        // The user's Endpoints are mirrored (unless they ask not to be); slices made while the Service had a
        // selector are taken back.
        let endpoints = informer::get(&context.endpoints, Some(namespace), name).filter(|e| slices::mirrors(e));
        let mut writes = slices::deletes(&own);
        writes.extend(match endpoints {
            Some(endpoints) => {
                slices::plan(&slices::Owner::mirror(&service, &endpoints), slices::of_endpoints(&endpoints), &mirrored)
            }
            None => slices::deletes(&mirrored),
        });
        return write_slices(context, &key, writes).await;
    }
    let pods: Vec<Arc<Pod>> = {
        let index = lock(&context.pod_index);
        index.in_namespace(namespace).filter_map(|(r, _)| context.pods.get(r)).collect()
    };
    let zone_of = |node: &str| {
        let node = informer::get(&context.nodes, None, node)?;
        node.metadata.labels.as_ref()?.get(members::ZONE_LABEL).cloned()
    };
    let members = members::members(&service, pods.iter().map(AsRef::as_ref), zone_of);

    let desired = legacy::desired(&service, &members);
    match informer::get(&context.endpoints, Some(namespace), name) {
        None => create(&context.client, "endpoints", namespace, &desired).await.map(drop)?,
        Some(current) if !legacy::up_to_date(&current, &desired) => {
            replace(&context.client, "endpoints", namespace, &legacy::replacement(&current, &desired)).await?
        }
        Some(_) => {}
    }

    let mut writes = slices::deletes(&mirrored);
    writes.extend(slices::plan(&slices::Owner::service(&service), slices::of_members(&service, &members), &own));
    write_slices(context, &key, writes).await
}

/// Whether the slices cache holds slice `name` of `namespace`.
fn seen(context: &Context, namespace: &str, name: &str) -> Seen {
    match informer::get(&context.slices, Some(namespace), name) {
        Some(_) => Seen::Alive,
        None => Seen::Absent,
    }
}

/// Makes `writes` to the slices of the Service `key`, expecting each slice it creates until the cache has it.
async fn write_slices(context: &Context, key: &Key, writes: Vec<SliceWrite>) -> Result<Next, kube::Error> {
    let namespace = &key.0;
    for write in writes {
        match write {
            SliceWrite::Create(object) => {
                let created = create(&context.client, "endpointslices", namespace, &object).await?;
                let seen = seen(context, namespace, &created);
                context.expectations.created(key, created, seen);
            }
            SliceWrite::Replace(object) => replace(&context.client, "endpointslices", namespace, &object).await?,
            SliceWrite::Delete { name, uid } => {
                delete(&context.client, "endpointslices", namespace, &name, Some(&uid)).await?
            }
        }
    }
    Ok(Next::Done)
}

fn api(client: &kube::Client, plural: &str, namespace: &str) -> kube::Api<DynamicObject> {
    let group = if plural == "endpointslices" { "discovery.k8s.io" } else { "" };
    super::api_for(client, super::resource(group, "v1", plural), Some(namespace))
}

fn decode(object: &Value) -> Result<DynamicObject, kube::Error> {
    serde_json::from_value(object.clone()).map_err(kube::Error::SerdeError)
}

/// Creates `object`; returns the name the API gave it.
async fn create(client: &kube::Client, plural: &str, namespace: &str, object: &Value) -> Result<String, kube::Error> {
    let created = api(client, plural, namespace).create(&PostParams::default(), &decode(object)?).await?;
    tracing::debug!(plural, namespace, name = %created.name_any(), "endpoints: created");
    Ok(created.name_any())
}

async fn replace(client: &kube::Client, plural: &str, namespace: &str, object: &Value) -> Result<(), kube::Error> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    api(client, plural, namespace).replace(name, &PostParams::default(), &decode(object)?).await?;
    tracing::debug!(plural, namespace, name, "endpoints: updated");
    Ok(())
}

async fn delete(
    client: &kube::Client,
    plural: &str,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
) -> Result<(), kube::Error> {
    let preconditions = Some(Preconditions { uid: uid.map(str::to_owned), resource_version: None });
    match api(client, plural, namespace).delete(name, &DeleteParams { preconditions, ..Default::default() }).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
