//! The workload controllers of kube-controller-manager, on the Raft leader: ReplicaSets (`replica_set`),
//! Deployments (`deployment`), Jobs (`job`), CronJobs (`cron_job`, schedules in `cron`), StatefulSets
//! (`stateful_set`) and DaemonSets (`daemon_set`), the last two keeping their templates as ControllerRevisions
//! (`revisions`), and the disruption controller (`disruption`) that keeps PodDisruptionBudgets' status.
//!
//! They run on the controller runtime: the term's shared informers (their kinds, Pods, ControllerRevisions and
//! Nodes) feed indexes of each kind's children by controller uid and of the orphans of each namespace; a
//! child's change queues its controller (an orphan's, every controller of its namespace whose selector matches
//! it), and a worker reconciles one object at a time with a pure plan over the caches, then writes. A
//! controller that creates pods with generated names waits for its cache to show the pods it created or
//! deleted (`expectations`) before it creates or deletes again; a Deployment names its ReplicaSets after their
//! template, a StatefulSet its pods after their ordinal and a CronJob its Jobs after their minute, so creating
//! one twice is refused by the API.
//!
//! Architecture invariant: the cost of a change is the cost of the controller it concerns: its children come
//! from the index, never from a pass over every pod.

pub mod cron;
pub mod cron_job;
pub mod daemon_set;
pub mod deployment;
pub mod disruption;
pub mod expectations;
pub mod job;
pub mod pods;
pub mod replica_set;
pub mod revisions;
pub mod stateful_set;
pub mod template;
pub mod writes;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::runtime::reflector::{Lookup, ObjectRef, Store};
use kube::{Resource, ResourceExt};

use super::events::Recorder;
use super::runtime::{controller_of, informer, run_workers, Change, Informers, Next, WorkQueue};
use crate::apis::selectors::LabelSelector;
use crate::limits;
use expectations::{Expectations, Seen};

/// A namespaced object's key: namespace and name.
pub type Key = (String, String);

/// An int-or-percent (maxSurge, maxUnavailable, minAvailable) of `total`, percentages rounded up or down.
pub fn scaled(value: &IntOrString, total: i32, round_up: bool) -> i32 {
    match value {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let product = s.trim_end_matches('%').parse::<i64>().unwrap_or(0) * i64::from(total);
            (if round_up { (product + 99) / 100 } else { product / 100 }) as i32
        }
    }
}

/// A typed `spec.selector` as a selector to match with; an invalid or missing one selects nothing.
pub fn label_selector(
    selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> LabelSelector {
    let value = selector.and_then(|s| serde_json::to_value(s).ok());
    LabelSelector::from_label_selector(value.as_ref()).unwrap_or_else(|_| LabelSelector::nothing())
}

/// The key of the controller of `meta` when it is a `kind` of `api_version` (in the object's namespace).
pub fn controller_key(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    api_version: &str,
    kind: &str,
) -> Option<Key> {
    let owner = controller_of(meta)?;
    (owner.kind == kind && owner.api_version == api_version)
        .then(|| (meta.namespace.clone().unwrap_or_default(), owner.name.clone()))
}

pub(super) fn key_of<K: Resource>(o: &K) -> Key {
    (o.meta().namespace.clone().unwrap_or_default(), o.meta().name.clone().unwrap_or_default())
}

/// One kind's objects by the uid of their controller, and those without one by namespace.
struct OwnerIndex<K: Lookup<DynamicType = ()>> {
    /// Each object's controller (uid, kind and name), if any.
    owner: HashMap<ObjectRef<K>, Option<(String, String, String)>>,
    by_owner: HashMap<String, HashSet<ObjectRef<K>>>,
    orphans: HashMap<String, HashSet<ObjectRef<K>>>,
    /// Every object by namespace.
    by_namespace: HashMap<String, HashSet<ObjectRef<K>>>,
}

impl<K: Lookup<DynamicType = ()> + Resource> Default for OwnerIndex<K> {
    fn default() -> Self {
        OwnerIndex {
            owner: HashMap::new(),
            by_owner: HashMap::new(),
            orphans: HashMap::new(),
            by_namespace: HashMap::new(),
        }
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
        match &now {
            Some(_) => {
                self.by_namespace.entry(namespace.clone()).or_default().insert(key.clone());
            }
            None => {
                if let Some(set) = self.by_namespace.get_mut(&namespace) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.by_namespace.remove(&namespace);
                    }
                }
            }
        }
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

    fn in_namespace(&self, namespace: &str, store: &Store<K>) -> Vec<Arc<K>>
    where
        K: Clone,
    {
        self.by_namespace.get(namespace).into_iter().flatten().filter_map(|r| store.get(r)).collect()
    }

    fn orphans(&self, namespace: &str, store: &Store<K>) -> Vec<Arc<K>>
    where
        K: Clone,
    {
        self.orphans.get(namespace).into_iter().flatten().filter_map(|r| store.get(r)).collect()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
    stateful_sets: Expectations<Key>,
    daemon_sets: Expectations<Key>,
}

/// What every reconcile of the term shares.
struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    replica_sets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    jobs: Store<Job>,
    stateful_sets: Store<StatefulSet>,
    daemon_sets: Store<DaemonSet>,
    cron_jobs: Store<CronJob>,
    budgets: Store<PodDisruptionBudget>,
    revisions: Store<ControllerRevision>,
    nodes: Store<Node>,
    pod_index: Arc<Mutex<OwnerIndex<Pod>>>,
    set_index: Arc<Mutex<OwnerIndex<ReplicaSet>>>,
    revision_index: Arc<Mutex<OwnerIndex<ControllerRevision>>>,
    job_index: Arc<Mutex<OwnerIndex<Job>>>,
    expectations: Arc<AllExpectations>,
    replica_set_events: Recorder,
    deployment_events: Recorder,
    job_events: Recorder,
    stateful_set_events: Recorder,
    daemon_set_events: Recorder,
    cron_job_events: Recorder,
}

/// The controllers' work queues.
#[derive(Clone)]
struct Queues {
    replica_sets: Arc<WorkQueue<Key>>,
    deployments: Arc<WorkQueue<Key>>,
    jobs: Arc<WorkQueue<Key>>,
    stateful_sets: Arc<WorkQueue<Key>>,
    daemon_sets: Arc<WorkQueue<Key>>,
    cron_jobs: Arc<WorkQueue<Key>>,
    budgets: Arc<WorkQueue<Key>>,
}

pub(super) fn queue_of<K: Resource + Clone + Lookup<DynamicType = ()> + Send + Sync + 'static>(
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
        Some(("StatefulSet", name)) => queues.stateful_sets.add((namespace.clone(), name.clone())),
        Some(("DaemonSet", name)) => queues.daemon_sets.add((namespace.clone(), name.clone())),
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
    } else if let Some(key) = stateful_set::owner_key(pod) {
        expectations.stateful_sets.observed(&key, &pod.name_any(), state);
        queues.stateful_sets.add(key);
    } else if let Some(key) = daemon_set::owner_key(pod) {
        expectations.daemon_sets.observed(&key, &pod.name_any(), state);
        queues.daemon_sets.add(key);
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
    let stateful_sets = informers.typed::<StatefulSet>();
    let daemon_sets = informers.typed::<DaemonSet>();
    let cron_jobs = informers.typed::<CronJob>();
    let budgets = informers.typed::<PodDisruptionBudget>();
    let revisions = informers.typed::<ControllerRevision>();
    let nodes = informers.typed::<Node>();
    let pod_index: Arc<Mutex<OwnerIndex<Pod>>> = Arc::default();
    let set_index: Arc<Mutex<OwnerIndex<ReplicaSet>>> = Arc::default();
    let revision_index: Arc<Mutex<OwnerIndex<ControllerRevision>>> = Arc::default();
    let job_index: Arc<Mutex<OwnerIndex<Job>>> = Arc::default();
    let expectations: Arc<AllExpectations> = Arc::default();
    let queues = Queues {
        replica_sets: queue_of("replicaset", replica_sets.store()),
        deployments: queue_of("deployment", deployments.store()),
        jobs: queue_of("job", jobs.store()),
        stateful_sets: queue_of("statefulset", stateful_sets.store()),
        daemon_sets: queue_of("daemonset", daemon_sets.store()),
        cron_jobs: queue_of("cronjob", cron_jobs.store()),
        budgets: queue_of("disruption", budgets.store()),
    };
    {
        let (index, expectations, queues) = (pod_index.clone(), expectations.clone(), queues.clone());
        let (sets, budgets) = (replica_sets.store().clone(), budgets.store().clone());
        pods.on_change(move |change| {
            let before = lock(&index).apply(change);
            route_pod(change, before, &queues, &expectations, &sets);
            let pod = change.object();
            let covering = budgets.state().into_iter().filter(|b| b.metadata.namespace == pod.metadata.namespace);
            for budget in covering {
                if disruption::selector(&budget).matches_labels(pod.labels()) {
                    queues.budgets.add(key_of(budget.as_ref()));
                }
            }
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
        let (index, queues, expectations) = (job_index.clone(), queues.clone(), expectations.clone());
        jobs.on_change(move |change| {
            let job = change.object();
            let key = key_of(job);
            if let Change::Deleted(_) = change {
                expectations.jobs.forget(&key);
            }
            if let Some((_, name)) = lock(&index).apply(change) {
                queues.cron_jobs.add((key.0.clone(), name));
            }
            if let Some(owner) = cron_job::owner_key(job) {
                queues.cron_jobs.add(owner);
            }
            queues.jobs.add(key);
        });
    }
    {
        let queue = queues.cron_jobs.clone();
        cron_jobs.on_change(move |change| queue.add(key_of(change.object())));
    }
    {
        let queue = queues.budgets.clone();
        budgets.on_change(move |change| queue.add(key_of(change.object())));
    }
    {
        let (queue, expectations) = (queues.stateful_sets.clone(), expectations.clone());
        stateful_sets.on_change(move |change| {
            let key = key_of(change.object());
            if let Change::Deleted(_) = change {
                expectations.stateful_sets.forget(&key);
            }
            queue.add(key);
        });
    }
    {
        let (queue, expectations) = (queues.daemon_sets.clone(), expectations.clone());
        daemon_sets.on_change(move |change| {
            let key = key_of(change.object());
            if let Change::Deleted(_) = change {
                expectations.daemon_sets.forget(&key);
            }
            queue.add(key);
        });
    }
    {
        let (index, queues) = (revision_index.clone(), queues.clone());
        revisions.on_change(move |change| {
            let revision = change.object();
            let namespace = revision.metadata.namespace.clone().unwrap_or_default();
            let before = lock(&index).apply(change);
            let owner = controller_of(&revision.metadata).map(|r| (r.kind.clone(), r.name.clone()));
            for (kind, name) in before.into_iter().chain(owner) {
                match kind.as_str() {
                    "StatefulSet" => queues.stateful_sets.add((namespace.clone(), name)),
                    "DaemonSet" => queues.daemon_sets.add((namespace.clone(), name)),
                    _ => {}
                }
            }
        });
    }
    {
        // A node's change may change where every DaemonSet runs.
        let (queue, sets) = (queues.daemon_sets.clone(), daemon_sets.store().clone());
        nodes.on_change(move |_| {
            for set in sets.state() {
                queue.add(key_of(set.as_ref()));
            }
        });
    }
    let synced = informers.synced();
    let (replica_set_events, rs_writer) = Recorder::new(client.clone(), replica_set::COMPONENT);
    let (deployment_events, d_writer) = Recorder::new(client.clone(), deployment::COMPONENT);
    let (job_events, job_writer) = Recorder::new(client.clone(), job::COMPONENT);
    let (stateful_set_events, sts_writer) = Recorder::new(client.clone(), stateful_set::COMPONENT);
    let (daemon_set_events, ds_writer) = Recorder::new(client.clone(), daemon_set::COMPONENT);
    let (cron_job_events, cj_writer) = Recorder::new(client.clone(), cron_job::COMPONENT);
    let context = Context {
        client,
        pods: pods.store().clone(),
        replica_sets: replica_sets.store().clone(),
        deployments: deployments.store().clone(),
        jobs: jobs.store().clone(),
        stateful_sets: stateful_sets.store().clone(),
        daemon_sets: daemon_sets.store().clone(),
        cron_jobs: cron_jobs.store().clone(),
        budgets: budgets.store().clone(),
        revisions: revisions.store().clone(),
        nodes: nodes.store().clone(),
        pod_index,
        set_index,
        revision_index,
        job_index,
        expectations,
        replica_set_events,
        deployment_events,
        job_events,
        stateful_set_events,
        daemon_set_events,
        cron_job_events,
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
            run_workers(queues.stateful_sets, limits::STATEFUL_SET_WORKERS, |key| reconcile_stateful_set(context, key)
                .boxed()),
            run_workers(queues.daemon_sets, limits::DAEMON_SET_WORKERS, |key| reconcile_daemon_set(context, key)
                .boxed()),
            rs_writer,
            d_writer,
            job_writer,
            run_workers(queues.cron_jobs, limits::CRON_JOB_WORKERS, |key| reconcile_cron_job(context, key).boxed()),
            run_workers(queues.budgets, limits::DISRUPTION_WORKERS, |key| reconcile_budget(context, key).boxed()),
            sts_writer,
            ds_writer,
            cj_writer,
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
    let writer = pod_writer(context, &context.replica_set_events, &context.expectations.replica_sets, &seen);
    replica_set::execute(&writer, &key, &rs, &plan).await?;
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
    let writer = pod_writer(context, &context.job_events, &context.expectations.jobs, &seen);
    job::execute(&writer, &key, &job, &plan).await?;
    Ok(next(plan.requeue))
}

/// The pod writer of one reconcile of `key`, with its kind's recorder and expectations.
fn pod_writer<'a>(
    context: &'a Context,
    recorder: &'a Recorder,
    expectations: &'a Expectations<Key>,
    seen: &'a (dyn Fn(&str) -> Seen + Sync),
) -> writes::PodWriter<'a> {
    writes::PodWriter { client: &context.client, recorder, expectations, seen }
}

async fn reconcile_stateful_set(context: &Context, key: Key) -> Result<Next, kube::Error> {
    let expectations = &context.expectations.stateful_sets;
    let Some(set) = informer::get(&context.stateful_sets, Some(&key.0), &key.1) else {
        expectations.forget(&key);
        return Ok(Next::Done);
    };
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let pods = lock(&context.pod_index).owned(&uid, &context.pods);
    let revisions = lock(&context.revision_index).owned(&uid, &context.revisions);
    let named = |name: &str| informer::get(&context.revisions, Some(&key.0), name);
    let seen = |name: &str| seen(&context.pods, &key.0, name);
    let mut plan = stateful_set::plan(&stateful_set::Input {
        set: &set,
        pods: &pods,
        revisions: &revisions,
        named: &named,
        now: Timestamp::now(),
    });
    if !expectations.satisfied(&key, seen) {
        // Its cache has not shown its last creations or deletions yet: status only.
        plan.create.clear();
        plan.claims.clear();
        plan.delete.clear();
    }
    let writer = pod_writer(context, &context.stateful_set_events, expectations, &seen);
    stateful_set::execute(&writer, &key, &set, &plan).await?;
    Ok(next(plan.requeue))
}

async fn reconcile_daemon_set(context: &Context, key: Key) -> Result<Next, kube::Error> {
    let expectations = &context.expectations.daemon_sets;
    let Some(set) = informer::get(&context.daemon_sets, Some(&key.0), &key.1) else {
        expectations.forget(&key);
        return Ok(Next::Done);
    };
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let pods = lock(&context.pod_index).owned(&uid, &context.pods);
    let revisions = lock(&context.revision_index).owned(&uid, &context.revisions);
    let nodes = context.nodes.state();
    let named = |name: &str| informer::get(&context.revisions, Some(&key.0), name);
    let seen = |name: &str| seen(&context.pods, &key.0, name);
    let satisfied = expectations.satisfied(&key, seen);
    let plan = daemon_set::plan(&daemon_set::Input {
        set: &set,
        nodes: &nodes,
        pods: &pods,
        revisions: &revisions,
        named: &named,
        expectations_satisfied: satisfied,
        now: Timestamp::now(),
    });
    let writer = pod_writer(context, &context.daemon_set_events, expectations, &seen);
    daemon_set::execute(&writer, &key, &set, &plan).await?;
    Ok(next(plan.requeue))
}

async fn reconcile_cron_job(context: &Context, key: Key) -> Result<Next, kube::Error> {
    let Some(cj) = informer::get(&context.cron_jobs, Some(&key.0), &key.1) else { return Ok(Next::Done) };
    let jobs = lock(&context.job_index).owned(cj.metadata.uid.as_deref().unwrap_or_default(), &context.jobs);
    let plan = cron_job::plan(&cron_job::Input { cron_job: &cj, jobs: &jobs, now: Timestamp::now() });
    cron_job::execute(&context.client, &context.cron_job_events, &key, &cj, &plan).await?;
    Ok(next(plan.requeue))
}

async fn reconcile_budget(context: &Context, key: Key) -> Result<Next, kube::Error> {
    let Some(budget) = informer::get(&context.budgets, Some(&key.0), &key.1) else { return Ok(Next::Done) };
    let pods = lock(&context.pod_index).in_namespace(&key.0, &context.pods);
    let replicas_of = |kind: &str, name: &str| match kind {
        "ReplicaSet" => informer::get(&context.replica_sets, Some(&key.0), name).map(|rs| replica_set::replicas(&rs)),
        "StatefulSet" => informer::get(&context.stateful_sets, Some(&key.0), name)
            .map(|s| s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)),
        _ => None,
    };
    let plan = disruption::plan(&disruption::Input {
        budget: &budget,
        pods: &pods,
        replicas_of: &replicas_of,
        now: Timestamp::now(),
    });
    disruption::execute(&context.client, &key, &budget, &plan).await?;
    Ok(next(plan.requeue))
}
