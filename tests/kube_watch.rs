//! The official Rust client (`kube`) against a three-replica cluster: a watcher on a follower sees every
//! acknowledged write exactly once across a leader SIGKILL, and re-lists after its resource version is
//! compacted away (410 Gone).

mod harness;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use raftsman::cluster::local::Signal;

use harness::{eventually, TestCluster};

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name}, "data": {"v": value}
    }))
    .unwrap()
}

/// What the watcher saw: every (name, resourceVersion) applied or listed, in order, and how often it listed.
#[derive(Default)]
struct Seen {
    applied: Vec<(String, String)>,
    relists: usize,
}

fn watch_into(api: Api<ConfigMap>, config: watcher::Config, seen: Arc<Mutex<Seen>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // With a backoff, as real controllers run it: a failing watch retries without spinning.
        let mut stream = watcher::watcher(api, config).default_backoff().boxed();
        while let Some(event) = stream.next().await {
            let mut seen = seen.lock().unwrap();
            match event {
                Ok(Event::Apply(cm) | Event::InitApply(cm)) => seen
                    .applied
                    .push((cm.metadata.name.unwrap_or_default(), cm.metadata.resource_version.unwrap_or_default())),
                Ok(Event::Init) => seen.relists += 1,
                Ok(_) => {}
                Err(_) => {}
            }
        }
    })
}

/// Creates or replaces `name` until the API acknowledges it; returns the acknowledged resourceVersion.
async fn write_acknowledged(api: &Api<ConfigMap>, name: &str, value: &str) -> String {
    eventually(Duration::from_secs(20), "an acknowledged write", || async {
        let result = match api.get_opt(name).await {
            Ok(Some(mut cm)) => {
                cm.data = config_map(name, value).data;
                api.replace(name, &PostParams::default(), &cm).await
            }
            Ok(None) => api.create(&PostParams::default(), &config_map(name, value)).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(cm) => cm.metadata.resource_version,
            // An AlreadyExists after an unknown outcome means the create happened: read it next round.
            Err(_) => None,
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_on_a_follower_sees_every_write_once_across_a_leader_kill() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let watched = (leader + 1) % 3;
    let writer = (leader + 2) % 3;
    let watch_api: Api<ConfigMap> = Api::default_namespaced(harness::kube_client(&cluster, watched).await);
    let write_api: Api<ConfigMap> = Api::default_namespaced(harness::kube_client(&cluster, writer).await);

    // Phase 1: the watcher starts; writes go through another follower while the leader is killed midway.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let task = watch_into(watch_api.clone(), watcher::Config::default(), seen.clone());
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for i in 0..40 {
        if i == 15 {
            cluster.local.signal(leader, Signal::Kill);
        }
        let name = format!("cm-{}", i % 10);
        let rv = write_acknowledged(&write_api, &name, &i.to_string()).await;
        acknowledged.push((name, rv));
    }

    // Phase 2: every acknowledged version arrives, exactly once, in resourceVersion order.
    eventually(Duration::from_secs(20), "the watcher to catch up", || async {
        let seen = seen.lock().unwrap();
        acknowledged.iter().all(|a| seen.applied.contains(a)).then_some(())
    })
    .await;
    let seen_now = seen.lock().unwrap();
    let mut counts: BTreeMap<&(String, String), usize> = BTreeMap::new();
    for a in &seen_now.applied {
        *counts.entry(a).or_default() += 1;
    }
    for a in &acknowledged {
        assert_eq!(counts.get(a), Some(&1), "{a:?} seen {:?} times", counts.get(a));
    }
    let revisions: Vec<i64> = seen_now.applied.iter().map(|(_, rv)| rv.parse().unwrap()).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "out of order: {revisions:?}");
    assert_eq!(seen_now.relists, 1, "the watcher never had to re-list");
    drop(seen_now);
    task.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_whose_version_was_compacted_relists_and_goes_on() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let api: Api<ConfigMap> = Api::default_namespaced(harness::kube_client(&cluster, (leader + 1) % 3).await);

    // Phase 1: a watcher that reconnects every second, so it resumes from its last resourceVersion.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let task = watch_into(api.clone(), watcher::Config::default().timeout(1), seen.clone());
    let first = write_acknowledged(&api, "a", "1").await;
    eventually(Duration::from_secs(10), "the first write", || async {
        seen.lock().unwrap().applied.iter().any(|(_, rv)| *rv == first).then_some(())
    })
    .await;

    // Phase 2: other keys move the store on, and the history is compacted past the watcher's version.
    let etcd = &cluster.clients[leader];
    let mut revision = 0;
    for i in 0..5 {
        revision = etcd.put(format!("/elsewhere/{i}"), "x").await.unwrap().header.unwrap().revision;
    }
    let compact = raftsman::proto::etcd::CompactionRequest { revision, physical: false };
    etcd.kv().compact(compact).await.unwrap();

    // Phase 3: reconnecting from its old version, the watcher gets 410 and lists again; then it goes on.
    eventually(Duration::from_secs(20), "a second list after the 410", || async {
        (seen.lock().unwrap().relists >= 2).then_some(())
    })
    .await;
    let second = write_acknowledged(&api, "b", "2").await;
    eventually(Duration::from_secs(20), "the write after the compaction", || async {
        seen.lock().unwrap().applied.iter().any(|(_, rv)| *rv == second).then_some(())
    })
    .await;
    task.abort();
}
