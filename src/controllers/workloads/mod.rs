//! The workload controllers of kube-controller-manager, on the Raft leader: ReplicaSets (`replica_set`),
//! Deployments (`deployment`) and Jobs (`job`).
//!
//! They run on the controller runtime: the term's shared informers (Pods, ReplicaSets, Deployments, Jobs) feed
//! indexes of each kind's children by controller uid and of the orphans of each namespace; a child's change
//! queues its controller (an orphan's, every controller of its namespace whose selector matches it), and a
//! worker reconciles one object at a time with a pure plan over the caches, then writes. A ReplicaSet waits for
//! its cache to show the pods it created or deleted (`expectations`) before it creates or deletes again; a
//! Deployment names its ReplicaSets after their template, so creating one twice is refused by the API.
//!
//! Architecture invariant: the cost of a change is the cost of the controller it concerns: its children come
//! from the index, never from a pass over every pod.

pub mod deployment;
pub mod expectations;
pub mod job;
pub mod pods;
pub mod replica_set;
pub mod template;
pub mod writes;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{Lookup, ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::events::Recorder;
use super::runtime::{controller_of, informer, run_workers, Change, Informers, Next, WorkQueue};
use crate::limits;
use expectations::{Expectations, Seen};

/// A namespaced object's key: namespace and name.
pub type Key = (String, String);

fn key_of<K: Resource>(o: &K) -> Key {
    (o.meta().namespace.clone().unwrap_or_default(), o.meta().name.clone().unwrap_or_default())
}

/// One kind's objects by the uid of their controller, and those without one by namespace.
struct OwnerIndex<K: Lookup<DynamicType = ()>> {
    /// Each object's controller (uid, kind and name), if any.
    owner: HashMap<ObjectRef<K>, Option<(String, String, String)>>,
    by_owner: HashMap<String, HashSet<ObjectRef<K>>>,
    orphans: HashMap<String, HashSet<ObjectRef<K>>>,
}

impl<K: Lookup<DynamicType = ()> + Resource> Default for OwnerIndex<K> {
    fn default() -> Self {
        OwnerIndex { owner: HashMap::new(), by_owner: HashMap::new(), orphans: HashMap::new() }
    }
}

impl<K: Lookup<DynamicType = ()> + Resource> OwnerIndex<K> {
    /// Follows a change; returns the kind and name of the controller the object had before, if it changed.
    fn apply(&mut self, change: Change<'_, K>) -> Option<(String, String)> {
        let object = change.object();
        let key = ObjectRef::from_obj(object);
        let namespace = object.meta().namespace.clone().unwrap_or_default();
        let now = match change {
            Change::Applied(o) => {
                Some(controller_of(o.meta()).map(|r| (r.uid.clone(), r.kind.clone(), r.name.clone())))
            }
            Change::Deleted(_) => None,
        };
        let before = self.owner.remove(&key);
        if let Some(before) = &before {
            let set = match before {
                Some((uid, ..)) => self.by_owner.get_mut(uid),
                None => self.orphans.get_mut(&namespace),
            };
            if let Some(set) = set {
                set.remove(&key);
            }
            match before {
                Some((uid, ..)) if self.by_owner.get(uid).is_some_and(HashSet::is_empty) => {
                    self.by_owner.remove(uid);
                }
                None if self.orphans.get(&namespace).is_some_and(HashSet::is_empty) => {
                    self.orphans.remove(&namespace);
                }
                _ => {}
            }
        }
        if let Some(now) = &now {
            match now {
                Some((uid, ..)) => self.by_owner.entry(uid.clone()).or_default().insert(key.clone()),
                None => self.orphans.entry(namespace).or_default().insert(key.clone()),
            };
            self.owner.insert(key, now.clone());
        }
        let before = before.flatten().map(|(_, kind, name)| (kind, name));
        let now = now.flatten().map(|(_, kind, name)| (kind, name));
        (before != now).then_some(before).flatten()
    }

    fn owned(&self, uid: &str, store: &Store<K>) -> Vec<Arc<K>>
    where
        K: Clone,
    {
        self.by_owner.get(uid).into_iter().flatten().filter_map(|r| store.get(r)).collect()
    }

    fn orphans(&self, namespace: &str, store: &Store<K>) -> Vec<Arc<K>>
    where
        K: Clone,
    {
        self.orphans.get(namespace).into_iter().flatten().filter_map(|r| store.get(r)).collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the cache holds of a pod.
fn seen(pods: &Store<Pod>, namespace: &str, name: &str) -> Seen {
    match informer::get(pods, Some(namespace), name) {
        None => Seen::Absent,
        Some(p) if pods::is_active(&p) => Seen::Alive,
        Some(_) => Seen::Leaving,
    }
}

/// The controllers' expectations, one set per kind (a ReplicaSet and a Job may share a name).
#[derive(Default)]
struct AllExpectations {
    replica_sets: Expectations<Key>,
    jobs: Expectations<Key>,
}

/// What every reconcile of the term shares.
struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    replica_sets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    jobs: Store<Job>,
    pod_index: Arc<Mutex<OwnerIndex<Pod>>>,
    set_index: Arc<Mutex<OwnerIndex<ReplicaSet>>>,
    expectations: Arc<AllExpectations>,
    replica_set_events: Recorder,
    deployment_events: Recorder,
    job_events: Recorder,
}

/// The controllers' work queues.
#[derive(Clone)]
struct Queues {
    replica_sets: Arc<WorkQueue<Key>>,
    deployments: Arc<WorkQueue<Key>>,
    jobs: Arc<WorkQueue<Key>>,
}

fn queue_of<K: Resource + Clone + Lookup<DynamicType = ()> + Send + Sync + 'static>(
    name: &'static str,
    store: &Store<K>,
) -> Arc<WorkQueue<Key>> {
    let store = store.clone();
    WorkQueue::new(name, limits::WORK_QUEUE_KEYS_MAX, move || {
        store.state().iter().map(|o| key_of(o.as_ref())).collect()
    })
}

/// Which controllers a pod's change concerns: its controller (now and before), an orphan's matching
/// ReplicaSets, and the Deployment of its ReplicaSet once it leaves (Recreate waits for that).
fn route_pod(
    change: Change<'_, Pod>,
    before: Option<(String, String)>,
    queues: &Queues,
    expectations: &AllExpectations,
    sets: &Store<ReplicaSet>,
) {
    let pod = change.object();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    match before.as_ref().map(|(kind, name)| (kind.as_str(), name)) {
        Some(("ReplicaSet", name)) => queues.replica_sets.add((namespace.clone(), name.clone())),
        Some(("Job", name)) => queues.jobs.add((namespace.clone(), name.clone())),
        _ => {}
    }
    let state = match change {
        Change::Deleted(_) => Seen::Absent,
        Change::Applied(p) if pods::is_active(p) => Seen::Alive,
        Change::Applied(_) => Seen::Leaving,
    };
    if let Some(key) = replica_set::owner_key(pod) {
        expectations.replica_sets.observed(&key, &pod.name_any(), state);
        if state != Seen::Alive {
            let rs = informer::get(sets, Some(&key.0), &key.1);
            if let Some(d) = rs.as_deref().and_then(deployment::owner_key) {
                queues.deployments.add(d);
            }
        }
        queues.replica_sets.add(key);
    } else if let Some(key) = job::owner_key(pod) {
        expectations.jobs.observed(&key, &pod.name_any(), state);
        queues.jobs.add(key);
    } else if controller_of(&pod.metadata).is_none() {
        let in_namespace =
            sets.state().into_iter().filter(|rs| rs.metadata.namespace.as_deref() == Some(namespace.as_str()));
        for rs in in_namespace {
            if replica_set::selector(&rs).matches_labels(pod.labels()) {
                queues.replica_sets.add(key_of(rs.as_ref()));
            }
        }
    }
}

/// Which controllers a ReplicaSet's change concerns: itself, its Deployment (now and before), an orphan's
/// matching Deployments.
fn route_replica_set(
    change: Change<'_, ReplicaSet>,
    before: Option<(String, String)>,
    queues: &Queues,
    deployments: &Store<Deployment>,
) {
    let rs = change.object();
    let key = key_of(rs);
    if let Some((_, name)) = before {
        queues.deployments.add((key.0.clone(), name));
    }
    match deployment::owner_key(rs) {
        Some(d) => queues.deployments.add(d),
        None if controller_of(&rs.metadata).is_none() => {
            let in_namespace =
                deployments.state().into_iter().filter(|d| d.metadata.namespace == rs.metadata.namespace);
            for d in in_namespace {
                if deployment::selector(&d).matches_labels(rs.labels()) {
                    queues.deployments.add(key_of(d.as_ref()));
                }
            }
        }
        None => {}
    }
    queues.replica_sets.add(key);
}

/// Registers the workload controllers with the term's informers; the returned future runs them once the
/// informers have listed, until it is dropped.
pub fn prepare(informers: &mut Informers) -> impl std::future::Future<Output = ()> + Send {
    let client = informers.client().clone();
    let pods = informers.typed::<Pod>();
    let replica_sets = informers.typed::<ReplicaSet>();
    let deployments = informers.typed::<Deployment>();
    let jobs = informers.typed::<Job>();
    let pod_index: Arc<Mutex<OwnerIndex<Pod>>> = Arc::default();
    let set_index: Arc<Mutex<OwnerIndex<ReplicaSet>>> = Arc::default();
    let expectations: Arc<AllExpectations> = Arc::default();
    let queues = Queues {
        replica_sets: queue_of("replicaset", replica_sets.store()),
        deployments: queue_of("deployment", deployments.store()),
        jobs: queue_of("job", jobs.store()),
    };
    {
        let (index, expectations, queues) = (pod_index.clone(), expectations.clone(), queues.clone());
        let sets = replica_sets.store().clone();
        pods.on_change(move |change| {
            let before = lock(&index).apply(change);
            route_pod(change, before, &queues, &expectations, &sets);
        });
    }
    {
        let (index, expectations, queues) = (set_index.clone(), expectations.clone(), queues.clone());
        let deployments = deployments.store().clone();
        replica_sets.on_change(move |change| {
            let before = lock(&index).apply(change);
            if let Change::Deleted(rs) = change {
                expectations.replica_sets.forget(&key_of(rs));
            }
            route_replica_set(change, before, &queues, &deployments);
        });
    }
    {
        let queue = queues.deployments.clone();
        deployments.on_change(move |change| queue.add(key_of(change.object())));
    }
    {
        let (queue, expectations) = (queues.jobs.clone(), expectations.clone());
        jobs.on_change(move |change| {
            let key = key_of(change.object());
            if let Change::Deleted(_) = change {
                expectations.jobs.forget(&key);
            }
            queue.add(key);
        });
    }
    let synced = informers.synced();
    let (replica_set_events, rs_writer) = Recorder::new(client.clone(), replica_set::COMPONENT);
    let (deployment_events, d_writer) = Recorder::new(client.clone(), deployment::COMPONENT);
    let (job_events, job_writer) = Recorder::new(client.clone(), job::COMPONENT);
    let context = Context {
        client,
        pods: pods.store().clone(),
        replica_sets: replica_sets.store().clone(),
        deployments: deployments.store().clone(),
        jobs: jobs.store().clone(),
        pod_index,
        set_index,
        expectations,
        replica_set_events,
        deployment_events,
        job_events,
    };
    async move {
        synced.wait().await;
        tracing::info!("workload controllers started");
        let context = &context;
        tokio::join!(
            // Boxed: the compiler cannot prove these futures Send through the workers' closures otherwise.
            run_workers(queues.replica_sets, limits::REPLICA_SET_WORKERS, |key| reconcile_replica_set(context, key)
                .boxed()),
            run_workers(queues.deployments, limits::DEPLOYMENT_WORKERS, |key| reconcile_deployment(context, key)
                .boxed()),
            run_workers(queues.jobs, limits::JOB_WORKERS, |key| reconcile_job(context, key).boxed()),
            rs_writer,
            d_writer,
            job_writer,
        );
    }
}

fn next(requeue: Option<Duration>) -> Next {
    requeue.map_or(Next::Done, Next::RequeueAfter)
}

async fn reconcile_replica_set(context: &Context, key: Key) -> Result<Next, kube::Error> {
    let Some(rs) = informer::get(&context.replica_sets, Some(&key.0), &key.1) else {
        context.expectations.replica_sets.forget(&key);
        return Ok(Next::Done);
    };
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let (owned, orphans) = {
        let index = lock(&context.pod_index);
        (index.owned(&uid, &context.pods), index.orphans(&key.0, &context.pods))
    };
    let seen = |name: &str| seen(&context.pods, &key.0, name);
    let satisfied = context.expectations.replica_sets.satisfied(&key, seen);
    let input = replica_set::Input {
        replica_set: &rs,
        owned: &owned,
        orphans: &orphans,
        expectations_satisfied: satisfied,
        now: Timestamp::now(),
    };
    let plan = replica_set::plan(&input);
    let exec = writes::PodWriter {
        client: &context.client,
        recorder: &context.replica_set_events,
        expectations: &context.expectations.replica_sets,
        seen: &seen,
    };
    replica_set::execute(&exec, &key, &rs, &plan).await?;
    Ok(next(plan.requeue))
}

async fn reconcile_deployment(context: &Context, key: Key) -> Result<Next, kube::Error> {
    let Some(d) = informer::get(&context.deployments, Some(&key.0), &key.1) else { return Ok(Next::Done) };
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let (owned, orphans) = {
        let index = lock(&context.set_index);
        (index.owned(&uid, &context.replica_sets), index.orphans(&key.0, &context.replica_sets))
    };
    let named = |name: &str| informer::get(&context.replica_sets, Some(&key.0), name);
    let pods_of = |rs: &ReplicaSet| {
        let pods = lock(&context.pod_index).owned(rs.metadata.uid.as_deref().unwrap_or_default(), &context.pods);
        deployment::Pods {
            active: pods.iter().filter(|p| pods::is_active(p)).count() as i32,
            existing: pods.iter().filter(|p| !matches!(pods::phase(p), "Succeeded" | "Failed")).count() as i32,
        }
    };
    let plan = deployment::plan(&deployment::Input {
        deployment: &d,
        owned: &owned,
        orphans: &orphans,
        named: &named,
        pods: &pods_of,
        now: Timestamp::now(),
    });
    for write in &plan.writes {
        deployment::execute(&context.client, &context.deployment_events, &d, write).await?;
    }
    Ok(next(plan.requeue))
}

async fn reconcile_job(context: &Context, key: Key) -> Result<Next, kube::Error> {
    let Some(job) = informer::get(&context.jobs, Some(&key.0), &key.1) else {
        context.expectations.jobs.forget(&key);
        return Ok(Next::Done);
    };
    let pods = lock(&context.pod_index).owned(job.metadata.uid.as_deref().unwrap_or_default(), &context.pods);
    let seen = |name: &str| seen(&context.pods, &key.0, name);
    let satisfied = context.expectations.jobs.satisfied(&key, seen);
    let plan =
        job::plan(&job::Input { job: &job, pods: &pods, expectations_satisfied: satisfied, now: Timestamp::now() });
    let writer = writes::PodWriter {
        client: &context.client,
        recorder: &context.job_events,
        expectations: &context.expectations.jobs,
        seen: &seen,
    };
    job::execute(&writer, &key, &job, &plan).await?;
    Ok(next(plan.requeue))
}
