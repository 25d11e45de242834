//! Leader-only work: the controllers run while this replica leads and has applied an entry of its term, and
//! are stopped (aborted and awaited) as soon as that term's leadership ends.
//!
//! Architecture invariant: every term gets a fresh controllers instance that rebuilds its state from the API;
//! nothing leader-only survives a step-down.

use openraft::async_runtime::WatchReceiver;
use tokio::sync::watch;

use crate::controllers;
use crate::store::Store;

pub async fn run(store: Store, client: kube::Client, mut shutdown: watch::Receiver<bool>) {
    let mut metrics = store.raft.metrics();
    loop {
        let term = loop {
            if *shutdown.borrow() {
                return;
            }
            if let Some(term) = store.leading_term() {
                break term;
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                _ = shutdown.changed() => {}
            }
        };
        tracing::info!(term, "leading: starting the controllers");
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(controllers::run(client.clone(), stop_rx));
        while !*shutdown.borrow() && store.leading_term() == Some(term) {
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { break },
                _ = shutdown.changed() => {}
            }
        }
        let _ = stop_tx.send(true);
        task.abort();
        let _ = task.await;
        tracing::info!(term, "no longer leading: the controllers stopped");
    }
}
