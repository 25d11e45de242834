//! What the scheduler watches: Pods and Nodes, each a kube-runtime reflector store kept by one watch, and a
//! counter bumped on every change either shows. Built in one place so that shared informers can take its
//! place; everything else takes the stores as arguments.
//!
//! The stores hold what the API holds (one copy of every Pod and Node); the watches are the API's own,
//! bounded there.

use std::future::Future;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio::sync::watch;

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

/// The informers, and the future that keeps them (it runs until dropped).
pub fn informers(client: &Client) -> (Informers, impl Future<Output = ()> + Send + 'static) {
    let (pods, pod_writer) = reflector::store();
    let (nodes, node_writer) = reflector::store();
    let (tx, changed) = watch::channel(0u64);
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pod_writer)
        .map(|_| ());
    let node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(node_writer)
        .map(|_| ());
    let driver = async move {
        let mut events = Box::pin(futures::stream::select(pod_events, node_events));
        while events.next().await.is_some() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    };
    (Informers { pods, nodes, changed }, driver)
}
