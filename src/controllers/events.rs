//! The leader components' event recorder, as client-go's: Events say what a controller did (SuccessfulCreate,
//! ScalingReplicaSet, ...) without slowing it down. `record` never waits: it hands the event to one writer task
//! through a bounded queue, and an event that does not fit is dropped (events are informative, upstream drops
//! them too). A spam filter per involved object (upstream's: a burst of `EVENT_BURST_PER_OBJECT`, then one
//! more every `EVENT_REFILL_SECS`) keeps a controller that creates ten thousand pods from writing ten thousand
//! events.
//!
//! Events are written with the term's fenced client like every other controller write: a deposed leader
//! records nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, PostParams};
use kube::{Client, Resource};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::limits;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// The object an event is about, as `involvedObject` names it.
pub fn reference<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    let meta = object.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

/// A core v1 Event as upstream's recorder writes one: named after the object and the time, in the object's
/// namespace (`default` for a cluster-scoped object).
pub fn event(involved: ObjectReference, type_: &str, reason: &str, message: &str, component: &str) -> Event {
    let now = Timestamp::now();
    let name = involved.name.clone().unwrap_or_default();
    let namespace = involved.namespace.clone().unwrap_or_else(|| "default".into());
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        involved_object: involved,
        reason: Some(reason.into()),
        message: Some(message.into()),
        source: Some(EventSource { component: Some(component.into()), host: None }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        type_: Some(type_.into()),
        reporting_component: Some(component.into()),
        reporting_instance: Some(String::new()),
        ..Event::default()
    }
}

/// Writes one event now; a failure is logged and otherwise ignored.
pub async fn write(client: &Client, event: &Event) {
    let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
    if let Err(e) = Api::<Event>::namespaced(client.clone(), namespace).create(&PostParams::default(), event).await {
        tracing::debug!(error = %e, reason = ?event.reason, "event not recorded");
    }
}

/// Tokens of one involved object's spam filter.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Hands events to the writer task (cheap to clone).
#[derive(Clone)]
pub struct Recorder {
    component: &'static str,
    queue: mpsc::Sender<Event>,
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

impl Recorder {
    /// A recorder for `component` and the future that writes its events with `client` until it is dropped.
    pub fn new(client: Client, component: &'static str) -> (Recorder, impl std::future::Future<Output = ()> + Send) {
        let (queue, mut events) = mpsc::channel::<Event>(limits::EVENT_QUEUE_MAX);
        let writer = async move {
            while let Some(event) = events.recv().await {
                write(&client, &event).await;
            }
        };
        (Recorder { component, queue, buckets: Arc::default() }, writer)
    }

    /// Records an event about `object`, unless its spam filter or a full queue drops it.
    pub fn record<K: Resource<DynamicType = ()>>(&self, object: &K, type_: &str, reason: &str, message: String) {
        let involved = reference(object);
        if !self.allow(involved.uid.as_deref().unwrap_or_default()) {
            return;
        }
        if self.queue.try_send(event(involved, type_, reason, &message, self.component)).is_err() {
            tracing::debug!(component = self.component, reason, "event queue full: event dropped");
        }
    }

    fn allow(&self, uid: &str) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= limits::EVENT_SPAM_OBJECTS_MAX {
            // Forget the full buckets: only objects that have spent tokens need remembering.
            buckets.retain(|_, b| refill(b, now) < limits::EVENT_BURST_PER_OBJECT as f64);
        }
        let bucket =
            buckets.entry(uid.to_owned()).or_insert(Bucket { tokens: limits::EVENT_BURST_PER_OBJECT as f64, at: now });
        if refill(bucket, now) < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }
}

/// Adds the tokens earned since the bucket was last looked at; returns how many it holds.
fn refill(bucket: &mut Bucket, now: Instant) -> f64 {
    let earned =
        now.duration_since(bucket.at).as_secs_f64() / Duration::from_secs(limits::EVENT_REFILL_SECS).as_secs_f64();
    bucket.tokens = (bucket.tokens + earned).min(limits::EVENT_BURST_PER_OBJECT as f64);
    bucket.at = now;
    bucket.tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_object_gets_a_burst_of_events_then_one_per_refill() {
        let (queue, _events) = mpsc::channel(1);
        let recorder = Recorder { component: "test", queue, buckets: Arc::default() };
        let allowed = (0..100).filter(|_| recorder.allow("uid-1")).count();
        assert_eq!(allowed, limits::EVENT_BURST_PER_OBJECT);
        assert!(recorder.allow("uid-2"), "another object has its own burst");
        tokio::time::advance(Duration::from_secs(limits::EVENT_REFILL_SECS)).await;
        assert!(recorder.allow("uid-1"));
        assert!(!recorder.allow("uid-1"));
    }
}
