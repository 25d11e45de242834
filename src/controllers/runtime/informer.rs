//! The leader's shared informers: one watch per kind per term, each feeding a kube-runtime reflector store
//! that every leader component reads, and the change handlers components register.
//!
//! Components register what they need before the informers start: the kinds they read whole (`typed`, a
//! k8s-openapi type) and, for the garbage collector and the namespace controller, the metadata of every
//! stored kind (`on_metadata`). Each stored kind gets one watch: whole objects when some component reads the
//! kind whole, metadata alone otherwise, and no watch at all when nobody needs it.
//!
//! The caches leave out `managedFields`, which no leader component reads.
//!
//! A change reaches the handlers after the store holds it. A re-list (after a 410 or a broken watch) replaces
//! the store whole once it is complete; only then does it report every object it no longer holds as deleted
//! (so a handler sees each deletion even when the watch missed the event) and every listed object as applied.
//! Reporting a listed object earlier would tell a handler of an object its store does not show yet: a
//! controller whose expectations that satisfied would then act on a store without it (and create twice).
//!
//! Architecture invariant: handlers run on the informer's task and must not block or await: they map a change
//! to keys and put them on work queues.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{store::Writer, Lookup, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::apis::catalog::{self, Resource};

/// A change an informer reports, after its store holds it.
#[derive(Debug)]
pub enum Change<'a, K> {
    Applied(&'a K),
    Deleted(&'a K),
}

impl<K> Clone for Change<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Change<'_, K> {}

impl<'a, K> Change<'a, K> {
    pub fn object(&self) -> &'a K {
        match self {
            Change::Applied(o) | Change::Deleted(o) => o,
        }
    }

    fn map<T>(self, f: impl FnOnce(&'a K) -> &'a T) -> Change<'a, T> {
        match self {
            Change::Applied(o) => Change::Applied(f(o)),
            Change::Deleted(o) => Change::Deleted(f(o)),
        }
    }
}

type Handler<K> = Box<dyn Fn(Change<'_, K>) + Send + Sync>;
type MetaHandler = Arc<dyn Fn(&'static Resource, Change<'_, ObjectMeta>) + Send + Sync>;

/// One kind's cache and the handlers of its changes.
pub struct Informer<K: Lookup + Clone + 'static>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store: Store<K>,
    handlers: Arc<Mutex<Vec<Handler<K>>>>,
}

impl<K: Lookup + Clone + 'static> Clone for Informer<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    fn clone(&self) -> Self {
        Informer { store: self.store.clone(), handlers: self.handlers.clone() }
    }
}

impl<K: Lookup + Clone + 'static> Informer<K>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    /// The cache: every object of the kind as of the last event.
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Calls `handler` with every change from now on (register before the informers start).
    pub fn on_change(&self, handler: impl Fn(Change<'_, K>) + Send + Sync + 'static) {
        self.handlers.lock().unwrap_or_else(|p| p.into_inner()).push(Box::new(handler));
    }
}

type Starter = Box<dyn FnOnce(&mut JoinSet<()>, Client, Arc<[MetaHandler]>, watch::Sender<usize>) + Send>;

/// The informers of one term, while components register.
pub struct Informers {
    client: Client,
    /// Typed informers by resource key (`group/version/plural`), as `Informer<K>`.
    typed: HashMap<String, Box<dyn Any + Send + Sync>>,
    starters: HashMap<String, Starter>,
    metadata: Vec<MetaHandler>,
    synced_tx: watch::Sender<usize>,
    synced_rx: watch::Receiver<usize>,
}

/// Resolves once every informer of the term has listed its kind once.
#[derive(Clone)]
pub struct Synced(watch::Receiver<usize>);

impl Synced {
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|pending| *pending == 0).await;
    }
}

/// The running informers of a term: `stop` ends them (dropping it aborts them without waiting).
pub struct Running {
    tasks: JoinSet<()>,
}

impl Running {
    /// Aborts every informer and waits until each has ended.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
}

fn key(r: &Resource) -> String {
    format!("{}/{}/{}", r.group, r.version, r.plural)
}

impl Informers {
    pub fn new(client: Client) -> Informers {
        // Unknown until `start` counts the informers.
        let (synced_tx, synced_rx) = watch::channel(usize::MAX);
        Informers {
            client,
            typed: HashMap::new(),
            starters: HashMap::new(),
            metadata: Vec::new(),
            synced_tx,
            synced_rx,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The informer of kind `K`, whole objects (one per kind: a second call returns the same informer).
    pub fn typed<K>(&mut self) -> Informer<K>
    where
        K: k8s_openapi::Resource
            + kube::Resource<DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug
            + Send
            + Sync
            + 'static,
    {
        let resource =
            catalog::find(K::GROUP, K::VERSION, K::URL_PATH_SEGMENT).expect("a typed informer is for a served kind");
        let key = key(resource);
        if let Some(existing) = self.typed.get(&key) {
            return existing.downcast_ref::<Informer<K>>().expect("one type per kind").clone();
        }
        let writer: Writer<K> = Writer::default();
        let informer = Informer { store: writer.as_reader(), handlers: Arc::new(Mutex::new(Vec::new())) };
        let handlers = informer.handlers.clone();
        self.typed.insert(key.clone(), Box::new(informer.clone()));
        let starter: Starter = Box::new(move |tasks, client, metadata, synced| {
            let stream = watcher::watcher(Api::<K>::all(client), watcher::Config::default())
                .default_backoff()
                .modify(|o: &mut K| o.managed_fields_mut().clear());
            tasks.spawn(pump(resource, stream, writer, (), handlers, metadata, synced));
        });
        self.starters.insert(key, starter);
        informer
    }

    /// Calls `handler` with the metadata of every change of every stored kind.
    pub fn on_metadata(&mut self, handler: impl Fn(&'static Resource, Change<'_, ObjectMeta>) + Send + Sync + 'static) {
        self.metadata.push(Arc::new(handler));
    }

    /// Resolves once every informer has listed once.
    pub fn synced(&self) -> Synced {
        Synced(self.synced_rx.clone())
    }

    /// Starts one watch per kind someone needs.
    pub fn start(mut self) -> Running {
        let metadata: Arc<[MetaHandler]> = self.metadata.into();
        let mut starts: Vec<Starter> = Vec::new();
        for resource in catalog::stored() {
            if let Some(start) = self.starters.remove(&key(resource)) {
                starts.push(start);
            } else if !metadata.is_empty() {
                starts.push(Box::new(move |tasks, client, metadata, synced| {
                    let ar = api_resource(resource);
                    // An `Api` of `PartialObjectMeta` asks for metadata alone.
                    let api = Api::<PartialObjectMeta<DynamicObject>>::all_with(client, &ar);
                    let stream = watcher::watcher(api, watcher::Config::default())
                        .default_backoff()
                        .modify(|o: &mut PartialObjectMeta<DynamicObject>| o.managed_fields_mut().clear());
                    let writer = Writer::<PartialObjectMeta<DynamicObject>>::new(ar.clone());
                    let handlers = Arc::new(Mutex::new(Vec::new()));
                    tasks.spawn(pump(resource, stream, writer, ar, handlers, metadata, synced));
                }));
            }
        }
        // Counted before any starts, so that no informer reports before the count is set.
        self.synced_tx.send_replace(starts.len());
        let mut tasks = JoinSet::new();
        for start in starts {
            start(&mut tasks, self.client.clone(), metadata.clone(), self.synced_tx.clone());
        }
        Running { tasks }
    }
}

pub fn api_resource(r: &Resource) -> ApiResource {
    ApiResource {
        group: r.group.to_string(),
        version: r.version.to_string(),
        api_version: r.api_version(),
        kind: r.kind.to_string(),
        plural: r.plural.to_string(),
    }
}

/// Feeds one kind's watch into its store and handlers, for as long as the term lasts.
async fn pump<K, S>(
    resource: &'static Resource,
    stream: S,
    mut writer: Writer<K>,
    dyntype: <K as Lookup>::DynamicType,
    handlers: Arc<Mutex<Vec<Handler<K>>>>,
    metadata: Arc<[MetaHandler]>,
    synced: watch::Sender<usize>,
) where
    K: Lookup + kube::Resource + Clone + Send + Sync + 'static,
    <K as Lookup>::DynamicType: Eq + std::hash::Hash + Clone,
    S: futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send,
{
    let reader = writer.as_reader();
    let notify = |change: Change<'_, K>| {
        for h in handlers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            h(change);
        }
        for h in metadata.iter() {
            h(resource, change.map(|o| o.meta()));
        }
    };
    let mut listed_before: Vec<Arc<K>> = Vec::new();
    let mut first_list = true;
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::debug!(kind = resource.kind, error = %e, "informer watch failed; retrying");
                continue;
            }
        };
        if let Event::Init = event {
            listed_before = reader.state();
        }
        writer.apply_watcher_event(&event);
        match &event {
            Event::Apply(o) => notify(Change::Applied(o)),
            Event::Delete(o) => notify(Change::Deleted(o)),
            // The store takes a re-list's objects at its end.
            Event::Init | Event::InitApply(_) => {}
            Event::InitDone => {
                let listed = reader.state();
                let now: HashSet<ObjectRef<K>> =
                    listed.iter().map(|o| ObjectRef::from_obj_with(o.as_ref(), dyntype.clone())).collect();
                for gone in std::mem::take(&mut listed_before) {
                    if !now.contains(&ObjectRef::from_obj_with(gone.as_ref(), dyntype.clone())) {
                        notify(Change::Deleted(gone.as_ref()));
                    }
                }
                for object in &listed {
                    notify(Change::Applied(object.as_ref()));
                }
                if first_list {
                    first_list = false;
                    synced.send_modify(|pending| *pending = pending.saturating_sub(1));
                }
            }
        }
    }
}

/// A store lookup by namespace and name.
pub fn get<K>(store: &Store<K>, namespace: Option<&str>, name: &str) -> Option<Arc<K>>
where
    K: Lookup<DynamicType = ()> + Clone + 'static,
{
    let mut key = ObjectRef::<K>::new_with(name, ());
    if let Some(ns) = namespace {
        key = key.within(ns);
    }
    store.get(&key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn config_map(name: &str) -> ConfigMap {
        ConfigMap { metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() }, ..ConfigMap::default() }
    }

    #[tokio::test]
    async fn a_relisted_object_is_reported_once_the_store_holds_it_and_one_gone_once_it_does_not() {
        let writer: Writer<ConfigMap> = Writer::default();
        let reader = writer.as_reader();
        let heard: Arc<Mutex<Vec<String>>> = Arc::default();
        let handlers: Arc<Mutex<Vec<Handler<ConfigMap>>>> = Arc::default();
        {
            let (heard, reader) = (heard.clone(), reader.clone());
            let handler: Handler<ConfigMap> = Box::new(move |change| {
                let (what, o) = match change {
                    Change::Applied(o) => ("applied", o),
                    Change::Deleted(o) => ("deleted", o),
                };
                let name = o.name_any();
                let held = get(&reader, None, &name).is_some();
                heard.lock().unwrap().push(format!("{what} {name} {}", if held { "held" } else { "not held" }));
            });
            handlers.lock().unwrap().push(handler);
        }
        let events = [
            Event::Init,
            Event::InitApply(config_map("a")),
            Event::InitApply(config_map("b")),
            Event::InitDone,
            Event::Apply(config_map("c")),
            // A re-list that no longer has a and c: they are reported gone, b applied, only once it is done.
            Event::Init,
            Event::InitApply(config_map("b")),
            Event::InitDone,
        ];
        let (synced, _) = watch::channel(1);
        let resource = catalog::find("", "v1", "configmaps").unwrap();
        let stream = futures::stream::iter(events.into_iter().map(Ok));
        pump(resource, stream, writer, (), handlers, Arc::from(Vec::new()), synced).await;
        let mut heard = heard.lock().unwrap().clone();
        // Within one re-list's end, deletions come first, then the listed objects in the store's order.
        heard[..2].sort();
        heard[3..5].sort();
        assert_eq!(
            heard,
            [
                "applied a held",
                "applied b held",
                "applied c held",
                "deleted a not held",
                "deleted c not held",
                "applied b held",
            ]
        );
    }
}
