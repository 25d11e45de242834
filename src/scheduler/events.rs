//! The scheduler's Events and the PodScheduled condition, as kube-scheduler writes them: core v1 Events
//! from `default-scheduler` (`Scheduled` "Successfully assigned NS/POD to NODE", `FailedScheduling` with the
//! placement message), named `POD.<hex nanoseconds>` as client-go's recorder names them; a repeat of the same
//! Event for the same pod bumps its `count` and `lastTimestamp` instead of writing a new one.
//!
//! Pure: time comes in as arguments. Invariant: the aggregation memory is bounded
//! (`SCHEDULER_EVENT_KEYS_MAX`, oldest forgotten first).

use std::collections::{HashMap, VecDeque};

use serde_json::{json, Value};

use super::model::{PodFacts, DEFAULT_SCHEDULER};
use crate::limits;

/// What to write for an Event.
#[derive(Clone, Debug, PartialEq)]
pub enum EventWrite {
    Create {
        namespace: String,
        event: Value,
    },
    /// The same Event again: bump its count.
    Repeat {
        namespace: String,
        name: String,
        count: i64,
        last_timestamp: String,
    },
}

/// One Event the scheduler reports about a pod.
#[derive(Clone, Debug)]
pub struct Report<'a> {
    pub pod: &'a PodFacts,
    pub kind: &'static str,
    pub reason: &'static str,
    pub action: &'static str,
    pub message: String,
}

impl Report<'_> {
    pub fn scheduled<'a>(pod: &'a PodFacts, node: &str) -> Report<'a> {
        Report {
            pod,
            kind: "Normal",
            reason: "Scheduled",
            action: "Binding",
            message: format!("Successfully assigned {}/{} to {node}", pod.namespace, pod.name),
        }
    }

    pub fn failed<'a>(pod: &'a PodFacts, message: &str) -> Report<'a> {
        Report { pod, kind: "Warning", reason: "FailedScheduling", action: "Scheduling", message: message.into() }
    }
}

/// Remembers the Events written, to aggregate repeats.
#[derive(Debug, Default)]
pub struct Recorder {
    written: HashMap<(String, &'static str, String), (String, i64)>,
    order: VecDeque<(String, &'static str, String)>,
}

impl Recorder {
    /// The write for `report` at `now` (RFC 3339) and `nanos` (Unix nanoseconds, for the name).
    pub fn record(&mut self, report: &Report, now: &str, nanos: i128) -> EventWrite {
        let pod = report.pod;
        let key = (pod.uid.clone(), report.reason, report.message.clone());
        if let Some((name, count)) = self.written.get_mut(&key) {
            *count += 1;
            return EventWrite::Repeat {
                namespace: pod.namespace.clone(),
                name: name.clone(),
                count: *count,
                last_timestamp: now.to_string(),
            };
        }
        let name = format!("{}.{:x}", pod.name, nanos);
        while self.order.len() >= limits::SCHEDULER_EVENT_KEYS_MAX {
            if let Some(old) = self.order.pop_front() {
                self.written.remove(&old);
            }
        }
        self.order.push_back(key.clone());
        self.written.insert(key, (name.clone(), 1));
        EventWrite::Create {
            namespace: pod.namespace.clone(),
            event: json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": pod.namespace},
                "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": pod.namespace,
                    "name": pod.name, "uid": pod.uid, "resourceVersion": pod.resource_version},
                "reason": report.reason,
                "message": report.message,
                "type": report.kind,
                "action": report.action,
                "source": {"component": DEFAULT_SCHEDULER},
                "reportingComponent": DEFAULT_SCHEDULER,
                "reportingInstance": "",
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            }),
        }
    }

    /// A repeat could not be written (the Event is gone): the next one is created afresh.
    pub fn forget(&mut self, uid: &str, reason: &'static str, message: &str) {
        self.written.remove(&(uid.to_string(), reason, message.to_string()));
    }
}

/// The pod's `status.conditions` with PodScheduled=False, reason Unschedulable and `message`, as upstream's
/// `UpdatePodCondition` merges it (lastTransitionTime kept when the status does not change); None when the
/// condition already says exactly that, so nothing needs writing.
pub fn unschedulable_conditions(current: &[Value], message: &str, now: &str) -> Option<Vec<Value>> {
    let existing = current.iter().position(|c| c["type"] == "PodScheduled");
    if let Some(i) = existing {
        let c = &current[i];
        if c["status"] == "False" && c["reason"] == "Unschedulable" && c["message"] == message {
            return None;
        }
    }
    let transition = match existing.map(|i| &current[i]) {
        Some(c) if c["status"] == "False" => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let condition = json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastProbeTime": null, "lastTransitionTime": transition});
    let mut next = current.to_vec();
    match existing {
        Some(i) => next[i] = condition,
        None => next.push(condition),
    }
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodFacts {
        PodFacts {
            namespace: "default".into(),
            name: "web".into(),
            uid: "u1".into(),
            resource_version: "7".into(),
            ..PodFacts::default()
        }
    }

    #[test]
    fn events_are_created_once_then_counted() {
        let p = pod();
        let mut r = Recorder::default();
        let EventWrite::Create { event, namespace } = r.record(&Report::scheduled(&p, "n1"), "T1", 255) else {
            panic!("a first event is created")
        };
        assert_eq!(namespace, "default");
        assert_eq!(event["metadata"]["name"], "web.ff");
        assert_eq!(event["message"], "Successfully assigned default/web to n1");
        assert_eq!(event["source"]["component"], "default-scheduler");
        assert_eq!(event["reportingComponent"], "default-scheduler");
        assert_eq!(event["involvedObject"]["uid"], "u1");
        let failed = Report::failed(&p, "0/1 nodes are available: 1 Too many pods.");
        assert!(matches!(r.record(&failed, "T2", 256), EventWrite::Create { .. }));
        let again = r.record(&failed, "T3", 257);
        assert_eq!(
            again,
            EventWrite::Repeat {
                namespace: "default".into(),
                name: "web.100".into(),
                count: 2,
                last_timestamp: "T3".into()
            }
        );
        r.forget("u1", "FailedScheduling", "0/1 nodes are available: 1 Too many pods.");
        assert!(matches!(r.record(&failed, "T4", 258), EventWrite::Create { .. }));
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut r = Recorder::default();
        for i in 0..limits::SCHEDULER_EVENT_KEYS_MAX + 10 {
            let p = PodFacts { uid: format!("u{i}"), ..pod() };
            r.record(&Report::scheduled(&p, "n"), "T", i as i128);
        }
        assert_eq!(r.written.len(), limits::SCHEDULER_EVENT_KEYS_MAX);
        assert_eq!(r.order.len(), limits::SCHEDULER_EVENT_KEYS_MAX);
    }

    #[test]
    fn the_condition_is_written_only_when_it_changes() {
        let ready = json!({"type": "Ready", "status": "False"});
        let first = unschedulable_conditions(std::slice::from_ref(&ready), "m1", "T1").unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(first[1]["lastTransitionTime"], "T1");
        assert_eq!(unschedulable_conditions(&first, "m1", "T2"), None);
        let second = unschedulable_conditions(&first, "m2", "T2").unwrap();
        assert_eq!(second[1]["message"], "m2");
        assert_eq!(second[1]["lastTransitionTime"], "T1", "the status did not change");
    }
}
