//! The Services and EndpointSlices the agent follows: one watch of each through the balancer, into reflector
//! stores that the service proxy, the cluster DNS and pod sync (the pods' Service variables) all read, with a
//! signal on every change. The stores keep what they hold while no replica answers; the watches retry.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::watch;

use crate::limits;

/// The followed stores, and a signal on every change.
#[derive(Clone)]
pub struct Followed {
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
    pub changed: watch::Receiver<()>,
    /// True once both stores have listed. (A store's own readiness wakes one waiter only, so `follow` waits
    /// for it once and tells every consumer through this.)
    listed: watch::Receiver<bool>,
}

impl std::fmt::Debug for Followed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Followed")
            .field("services", &self.services.state().len())
            .field("slices", &self.slices.state().len())
            .finish_non_exhaustive()
    }
}

impl Followed {
    /// Waits until both stores have listed once; false if their watches are gone.
    pub async fn ready(&self) -> bool {
        self.listed.clone().wait_for(|listed| *listed).await.is_ok()
    }

    /// Waits for the next change, then for the changes that come with it (`PROXY_TABLE_SETTLE_MS`); false once
    /// the watches are gone.
    pub async fn next_change(&mut self) -> bool {
        if self.changed.changed().await.is_err() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(limits::PROXY_TABLE_SETTLE_MS)).await;
        self.changed.borrow_and_update();
        true
    }
}

/// Starts following every Service and EndpointSlice through `client`; the returned future runs the two
/// watches (retrying while no replica answers, the stores keeping what they hold) until dropped.
pub fn follow(client: kube::Client) -> (Followed, impl std::future::Future<Output = ()>) {
    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let (changed_tx, changed) = watch::channel(());
    let follow_services = {
        let api = kube::Api::<Service>::all(client.clone());
        let changed = changed_tx.clone();
        watcher(api, watcher::Config::default()).default_backoff().reflect(services_writer).for_each(move |event| {
            match event {
                Ok(_) => drop(changed.send(())),
                Err(e) => tracing::warn!(error = %e, "agent: watching Services failed; retrying"),
            }
            futures::future::ready(())
        })
    };
    let follow_slices = {
        let api = kube::Api::<EndpointSlice>::all(client);
        watcher(api, watcher::Config::default()).default_backoff().reflect(slices_writer).for_each(move |event| {
            match event {
                Ok(_) => drop(changed_tx.send(())),
                Err(e) => tracing::warn!(error = %e, "agent: watching EndpointSlices failed; retrying"),
            }
            futures::future::ready(())
        })
    };
    let (listed_tx, listed) = watch::channel(false);
    let wait_listed = {
        let (services, slices) = (services.clone(), slices.clone());
        async move {
            if services.wait_until_ready().await.is_ok() && slices.wait_until_ready().await.is_ok() {
                let _ = listed_tx.send(true);
            }
            // Kept until the watches end, so that waiters see them gone rather than never listed.
            std::future::pending::<()>().await;
        }
    };
    let run = async move {
        tokio::join!(follow_services, follow_slices, wait_listed);
    };
    (Followed { services, slices, changed, listed }, run)
}
