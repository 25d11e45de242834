//! What the scheduler watches: the term's shared Pod and Node informers (kube-runtime reflector stores), and a
//! counter bumped on every change either shows; everything else takes the stores as arguments.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::Store;
use tokio::sync::watch;

use crate::controllers::runtime;

/// The scheduler's view of the cluster.
#[derive(Clone)]
pub struct Informers {
    pub pods: Store<Pod>,
    pub nodes: Store<Node>,
    /// Bumped on every change either store takes.
    pub changed: watch::Receiver<u64>,
}

impl Informers {
    /// Waits until both stores hold a first full list; false if their watches ended first.
    pub async fn ready(&self) -> bool {
        self.pods.wait_until_ready().await.is_ok() && self.nodes.wait_until_ready().await.is_ok()
    }
}

/// The scheduler's view, from the term's shared Pod and Node informers: a counter bumped on every change.
pub fn informers(shared: &mut runtime::Informers) -> Informers {
    let pods = shared.typed::<Pod>();
    let nodes = shared.typed::<Node>();
    let (tx, changed) = watch::channel(0u64);
    let tx = std::sync::Arc::new(tx);
    {
        let tx = tx.clone();
        pods.on_change(move |_| tx.send_modify(|n| *n = n.wrapping_add(1)));
    }
    nodes.on_change(move |_| tx.send_modify(|n| *n = n.wrapping_add(1)));
    Informers { pods: pods.store().clone(), nodes: nodes.store().clone(), changed }
}
