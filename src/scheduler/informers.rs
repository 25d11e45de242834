//! What the scheduler watches: the term's shared Pod and Node informers (kube-runtime reflector stores). Their
//! change handlers turn each change into facts at once and keep the latest per object until the scheduler
//! takes them, so a round costs what changed since the last one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::Store;
use kube::ResourceExt;
use tokio::sync::watch;

use super::model::{NodeFacts, PodFacts};
use crate::controllers::runtime::{self, Change};

/// What changed since the scheduler last looked: the latest facts of each pod (by uid) and node (by name),
/// None for one that is gone. Bounded by the number of objects the informers hold.
#[derive(Debug, Default)]
pub struct Changes {
    pub pods: HashMap<String, Option<Arc<PodFacts>>>,
    pub nodes: HashMap<String, Option<NodeFacts>>,
}

/// The scheduler's view of the cluster.
#[derive(Clone)]
pub struct Informers {
    pub pods: Store<Pod>,
    pub nodes: Store<Node>,
    changes: Arc<Mutex<Changes>>,
    /// Bumped on every change either store takes.
    pub changed: watch::Receiver<u64>,
}

impl Informers {
    /// Waits until both stores hold a first full list; false if their watches ended first.
    pub async fn ready(&self) -> bool {
        self.pods.wait_until_ready().await.is_ok() && self.nodes.wait_until_ready().await.is_ok()
    }

    /// The changes since the last call.
    pub fn take(&self) -> Changes {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Where the change handlers put what they saw, waking the scheduler.
#[derive(Clone)]
struct Inbox {
    changes: Arc<Mutex<Changes>>,
    tx: Arc<watch::Sender<u64>>,
}

impl Inbox {
    fn put(&self, edit: impl FnOnce(&mut Changes)) {
        edit(&mut self.changes.lock().unwrap_or_else(|p| p.into_inner()));
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The scheduler's view, from the term's shared Pod and Node informers.
pub fn informers(shared: &mut runtime::Informers) -> Informers {
    let pods = shared.typed::<Pod>();
    let nodes = shared.typed::<Node>();
    let (tx, changed) = watch::channel(0u64);
    let inbox = Inbox { changes: Arc::default(), tx: Arc::new(tx) };
    {
        let inbox = inbox.clone();
        pods.on_change(move |change| {
            let (pod, facts) = match change {
                Change::Applied(pod) => (pod, Some(Arc::new(PodFacts::from_pod(pod)))),
                Change::Deleted(pod) => (pod, None),
            };
            if let Some(uid) = pod.uid() {
                inbox.put(|c| {
                    c.pods.insert(uid, facts);
                });
            }
        });
    }
    let changes = inbox.changes.clone();
    nodes.on_change(move |change| {
        let (node, facts) = match change {
            Change::Applied(node) => (node, Some(NodeFacts::from_node(node))),
            Change::Deleted(node) => (node, None),
        };
        inbox.put(|c| {
            c.nodes.insert(node.name_any(), facts);
        });
    });
    Informers { pods: pods.store().clone(), nodes: nodes.store().clone(), changes, changed }
}
