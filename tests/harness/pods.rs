//! What the workload tests share: a record of every pod event of a selector, watched through whichever replica
//! answers, and waiting for the agents' nodes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};

use super::eventually;
use super::kubectl::Kubectl;

/// Every pod event of a label selector, as the watch delivered them, and what they add up to.
#[derive(Default)]
pub struct PodHistory {
    /// Each pod by name: uid, alive (not leaving, not finished), ready.
    pub pods: BTreeMap<String, (String, bool, bool)>,
    /// The uid each name last had, gone or not: a name seen again with another uid was created twice.
    uids: HashMap<String, String>,
    pub reused: Vec<String>,
    /// Names seen with a second uid while the first was still there: two pods of one name at once.
    pub overlapping: Vec<String>,
    /// Names in the order they first appeared, and in the order they were first seen leaving.
    pub created: Vec<String>,
    pub leaving: Vec<String>,
    /// When each name was first seen alive and Ready.
    pub ready_at: HashMap<String, Instant>,
    /// (alive, alive and ready) after each event.
    pub samples: Vec<(usize, usize)>,
    /// Names listed by the re-list under way.
    listing: Option<HashSet<String>>,
}

impl PodHistory {
    fn apply(&mut self, event: Event<Pod>) {
        match event {
            Event::Init => self.listing = Some(HashSet::new()),
            Event::InitApply(pod) => {
                if let Some(listing) = self.listing.as_mut() {
                    listing.insert(pod.metadata.name.clone().unwrap_or_default());
                }
                self.applied(&pod);
            }
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                self.pods.retain(|name, _| listed.contains(name));
                self.sample();
            }
            Event::Apply(pod) => self.applied(&pod),
            Event::Delete(pod) => {
                self.pods.remove(pod.metadata.name.as_deref().unwrap_or_default());
                self.sample();
            }
        }
    }

    fn applied(&mut self, pod: &Pod) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if self.uids.get(&name).is_some_and(|u| *u != uid) {
            self.reused.push(name.clone());
            if self.listing.is_none() && self.pods.get(&name).is_some_and(|p| p.0 != uid) {
                self.overlapping.push(name.clone());
            }
        }
        if !self.uids.contains_key(&name) {
            self.created.push(name.clone());
        }
        self.uids.insert(name.clone(), uid.clone());
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        let alive = pod.metadata.deletion_timestamp.is_none() && !matches!(phase, "Succeeded" | "Failed");
        let conditions = status.and_then(|s| s.conditions.as_ref());
        let ready = conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        if alive && ready {
            self.ready_at.entry(name.clone()).or_insert_with(Instant::now);
        }
        let was_alive = self.pods.get(&name).is_some_and(|p| p.0 == uid && p.1);
        if was_alive && !alive {
            self.leaving.push(name.clone());
        }
        self.pods.insert(name, (uid, alive, ready));
        if self.listing.is_none() {
            self.sample();
        }
    }

    fn sample(&mut self) {
        let alive = self.pods.values().filter(|p| p.1).count();
        let ready = self.pods.values().filter(|p| p.1 && p.2).count();
        self.samples.push((alive, ready));
    }

    /// The most pods alive, and the fewest alive and ready, from sample `from` on.
    pub fn bounds(&self, from: usize) -> (usize, usize) {
        let since = &self.samples[from.min(self.samples.len())..];
        (since.iter().map(|s| s.0).max().unwrap_or(0), since.iter().map(|s| s.1).min().unwrap_or(0))
    }
}

/// Watches the pods of `selector` in `default` through whichever of `clients` answers, moving to the next when
/// one fails, until the returned task is aborted.
pub fn watch_pods(clients: Vec<kube::Client>, selector: &str) -> (Arc<Mutex<PodHistory>>, tokio::task::JoinHandle<()>) {
    let history = Arc::new(Mutex::new(PodHistory::default()));
    let config = watcher::Config::default().labels(selector);
    let task = {
        let history = history.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let api: kube::Api<Pod> = kube::Api::namespaced(clients[i % clients.len()].clone(), "default");
                let mut stream = watcher::watcher(api, config.clone()).boxed();
                while let Some(Ok(event)) = stream.next().await {
                    history.lock().unwrap().apply(event);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    (history, task)
}

pub fn lock(history: &Arc<Mutex<PodHistory>>) -> std::sync::MutexGuard<'_, PodHistory> {
    history.lock().unwrap()
}

pub async fn wait_nodes(k: &Kubectl, count: usize) {
    eventually(Duration::from_secs(30), "the agents' nodes to be Ready", || async {
        let nodes = k.json(&["get", "nodes"]);
        let ready = nodes["items"].as_array().unwrap().iter().filter(|n| {
            let conditions = n["status"]["conditions"].as_array().cloned().unwrap_or_default();
            conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        (ready.count() >= count).then_some(())
    })
    .await;
}

/// The images of the pods of `selector` that are alive, with how many run each.
pub fn images(k: &Kubectl, selector: &str) -> BTreeMap<String, usize> {
    let pods = k.json(&["get", "pods", "-l", selector]);
    let mut images = BTreeMap::new();
    for p in pods["items"].as_array().unwrap() {
        if p["metadata"]["deletionTimestamp"].is_null() {
            *images.entry(p["spec"]["containers"][0]["image"].as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    images
}
