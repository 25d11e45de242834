//! How many replicas one metric asks for: upstream's replica calculator, pure over the target's pods and their
//! points.
//!
//! Pods being deleted, failed or pending are ignored; a pod without a point is missing; for CPU, a pod that is
//! not ready, or became ready too recently for its point to cover it (within `CPU_INITIALIZATION_PERIOD` of
//! its start), or was never ready within `INITIAL_READINESS_DELAY` of its start, is unready. Within the
//! tolerance of the target, the count stays. Otherwise missing pods count as using the target (on a scale-down)
//! or nothing (on a scale-up), unready pods as using nothing on a scale-up, and if that changes the direction
//! or brings the ratio within tolerance, the count stays.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use crate::apis::validation::parse_quantity;
use crate::metrics::PodPoint;

/// Upstream's `--horizontal-pod-autoscaler-tolerance`.
pub const TOLERANCE: f64 = 0.1;
/// Upstream's `--horizontal-pod-autoscaler-cpu-initialization-period`.
pub const CPU_INITIALIZATION_PERIOD: SignedDuration = SignedDuration::from_secs(300);
/// Upstream's `--horizontal-pod-autoscaler-initial-readiness-delay`.
pub const INITIAL_READINESS_DELAY: SignedDuration = SignedDuration::from_secs(30);

const UNMEASURED: &str = "did not receive metrics for targeted pods (pods might be unready)";

/// Why a metric gave no count: upstream's event and condition reason, and its message.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub reason: &'static str,
    pub message: String,
}

/// What a metric asks for: the count, what the metric measures now (an entry of `status.currentMetrics`), and
/// how upstream names the metric in its messages.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    pub replicas: i32,
    pub status: Value,
    pub name: String,
}

/// What a metric is measured from: the pods the target's selector selects, and their points.
pub struct Input<'a> {
    pub current: i32,
    pub pods: &'a [Arc<Pod>],
    pub point: &'a dyn Fn(&Pod) -> Option<PodPoint>,
    pub now: Timestamp,
}

/// The pods grouped as upstream's `groupPods` does, with the measured values of the ready ones.
#[derive(Debug, Default)]
struct Groups {
    ready: usize,
    unready: Vec<String>,
    missing: Vec<String>,
    /// The value of each pod counted, by name.
    values: BTreeMap<String, f64>,
}

fn group(input: &Input<'_>, cpu: bool, value_of: &dyn Fn(&PodPoint) -> Option<f64>) -> Groups {
    let mut groups = Groups::default();
    for pod in input.pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
        if pod.metadata.deletion_timestamp.is_some() || phase == "Failed" || phase == "Pending" {
            continue;
        }
        let Some(point) = (input.point)(pod) else {
            groups.missing.push(name);
            continue;
        };
        let Some(value) = value_of(&point) else {
            groups.missing.push(name);
            continue;
        };
        if cpu && unready(pod, &point, input.now) {
            groups.unready.push(name);
            continue;
        }
        groups.ready += 1;
        groups.values.insert(name, value);
    }
    groups
}

/// Whether a pod's CPU does not count yet (upstream's rule for CPU).
fn unready(pod: &Pod, point: &PodPoint, now: Timestamp) -> bool {
    let status = pod.status.as_ref();
    let condition = status.and_then(|s| s.conditions.as_ref()).and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let (Some(condition), Some(started)) = (condition, status.and_then(|s| s.start_time.as_ref()).map(|t| t.0)) else {
        return true;
    };
    let transition = condition.last_transition_time.as_ref().map_or(started, |t| t.0);
    if started + CPU_INITIALIZATION_PERIOD > now {
        let measured = point.timestamp.parse::<Timestamp>().unwrap_or(now);
        let window = SignedDuration::from_millis(i64::try_from(point.window_ms).unwrap_or(i64::MAX));
        condition.status == "False" || measured < transition + window
    } else {
        condition.status == "False" && started + INITIAL_READINESS_DELAY > transition
    }
}

/// The count once the pods are grouped (upstream's shared tail of both calculators). `ratio` is the usage
/// ratio of a set of values; `assumed` what a missing pod counts as on a scale-down.
fn count(
    current: i32,
    groups: Groups,
    ratio: &dyn Fn(&BTreeMap<String, f64>) -> Option<f64>,
    assumed: &dyn Fn(&str) -> f64,
    failure: &dyn Fn(String) -> Failure,
) -> Result<i32, Failure> {
    if groups.values.is_empty() {
        return Err(failure(UNMEASURED.into()));
    }
    let usage = ratio(&groups.values).ok_or_else(|| failure("no metrics returned matched known pods".into()))?;
    let up_with_unready = !groups.unready.is_empty() && usage > 1.0;
    if !up_with_unready && groups.missing.is_empty() {
        if (1.0 - usage).abs() <= TOLERANCE {
            return Ok(current);
        }
        return Ok(ceil(usage * groups.ready as f64));
    }
    let mut values = groups.values;
    for name in &groups.missing {
        if usage < 1.0 {
            values.insert(name.clone(), assumed(name));
        } else if usage > 1.0 {
            values.insert(name.clone(), 0.0);
        }
    }
    if up_with_unready {
        for name in &groups.unready {
            values.insert(name.clone(), 0.0);
        }
    }
    let Some(new) = ratio(&values) else { return Ok(current) };
    if (1.0 - new).abs() <= TOLERANCE || (usage < 1.0 && new > 1.0) || (usage > 1.0 && new < 1.0) {
        return Ok(current);
    }
    let replicas = ceil(new * values.len() as f64);
    if (new < 1.0 && replicas > current) || (new > 1.0 && replicas < current) {
        return Ok(current);
    }
    Ok(replicas)
}

fn ceil(x: f64) -> i32 {
    x.ceil().clamp(0.0, f64::from(i32::MAX)) as i32
}

/// A request or usage in the unit the metric is measured in: millicores for CPU, bytes otherwise.
fn resource_amount(resource: &str, quantity: &str) -> Option<f64> {
    let value = parse_quantity(quantity)?;
    Some(if resource == "cpu" { value * 1000.0 } else { value })
}

/// What a point says a pod uses of `resource` (millicores or bytes), summed over its containers or for one.
fn used(point: &PodPoint, resource: &str, container: Option<&str>) -> Option<f64> {
    let mut containers = point.containers.iter().filter(|c| container.is_none_or(|n| c.name == n)).peekable();
    containers.peek()?;
    let amount = |c: &crate::metrics::ContainerReport| match resource {
        "cpu" => c.usage.cpu_nanocores as f64 / 1e6,
        "memory" => c.usage.memory_bytes as f64,
        _ => f64::NAN,
    };
    let total: f64 = containers.map(amount).sum();
    (!total.is_nan()).then_some(total)
}

/// The pod's request of `resource`, summed over its containers or for one; an error names the first container
/// without one.
fn requested(pod: &Pod, resource: &str, container: Option<&str>) -> Result<f64, String> {
    let mut total = 0.0;
    let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    for c in containers.iter().filter(|c| container.is_none_or(|n| c.name == n)) {
        let request = c.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get(resource));
        match request.and_then(|q| resource_amount(resource, &q.0)) {
            Some(amount) => total += amount,
            None => {
                return Err(format!(
                    "missing request for {resource} in container {} of Pod {}",
                    c.name,
                    pod.metadata.name.as_deref().unwrap_or_default()
                ))
            }
        }
    }
    Ok(total)
}

/// A measured amount as a quantity: millicores for CPU, whole units otherwise (milli-units when not whole).
fn quantity(resource: &str, amount: f64) -> String {
    if resource == "cpu" {
        return format!("{}m", amount.round() as i64);
    }
    match amount.fract() == 0.0 {
        true => format!("{}", amount as i64),
        false => format!("{}m", (amount * 1000.0).round() as i64),
    }
}

/// A `Resource` or `ContainerResource` metric: utilization of the request, or an average value.
pub fn resource_metric(input: &Input<'_>, metric: &Value) -> Result<Proposal, Failure> {
    let kind = metric["type"].as_str().unwrap_or_default();
    let source = if kind == "ContainerResource" { &metric["containerResource"] } else { &metric["resource"] };
    let resource = source["name"].as_str().unwrap_or_default().to_owned();
    let container = source["container"].as_str().filter(|_| kind == "ContainerResource");
    let failure = |message: String| Failure {
        reason: if kind == "ContainerResource" {
            "FailedGetContainerResourceMetric"
        } else {
            "FailedGetResourceMetric"
        },
        message: format!("failed to get {resource} utilization: {message}"),
    };
    if input.pods.is_empty() {
        return Err(failure("no pods returned by selector while calculating replica count".into()));
    }
    let target = &source["target"];
    let cpu = resource == "cpu";
    let groups = group(input, cpu, &|p| used(p, &resource, container));
    let (status_key, status_source) = match kind {
        "ContainerResource" => ("containerResource", json!({"name": resource, "container": container})),
        _ => ("resource", json!({"name": resource})),
    };
    if let Some(utilization) = target["averageUtilization"].as_i64().filter(|_| target["type"] == "Utilization") {
        let mut requests = BTreeMap::new();
        for pod in input.pods {
            let request = requested(pod, &resource, container).map_err(&failure)?;
            requests.insert(pod.metadata.name.clone().unwrap_or_default(), request);
        }
        let target_utilization = utilization.max(1) as f64;
        // Utilization as upstream computes it: a whole percentage of the summed requests.
        let utilization_of = |values: &BTreeMap<String, f64>| -> Option<(f64, f64)> {
            let (mut used, mut requested, mut n) = (0.0, 0.0, 0.0);
            for (name, value) in values {
                if let Some(request) = requests.get(name) {
                    (used, requested, n) = (used + value, requested + request, n + 1.0);
                }
            }
            (requested > 0.0).then(|| ((used * 100.0 / requested).trunc(), used / n))
        };
        if groups.values.is_empty() {
            return Err(failure(UNMEASURED.into()));
        }
        let (current_utilization, average) =
            utilization_of(&groups.values).ok_or_else(|| failure("no metrics returned matched known pods".into()))?;
        let assumed = |name: &str| requests.get(name).copied().unwrap_or(0.0) * target_utilization.max(100.0) / 100.0;
        let ratio = |values: &BTreeMap<String, f64>| utilization_of(values).map(|(u, _)| u / target_utilization);
        let replicas = count(input.current, groups, &ratio, &assumed, &failure)?;
        let mut status = json!({"type": kind});
        status[status_key] = status_source;
        status[status_key]["current"] =
            json!({"averageUtilization": current_utilization as i64, "averageValue": quantity(&resource, average)});
        let name = format!("{resource} resource utilization (percentage of request)");
        return Ok(Proposal { replicas, status, name });
    }
    let Some(target_value) = target["averageValue"].as_str().and_then(|q| resource_amount(&resource, q)) else {
        return Err(Failure {
            reason: "InvalidMetricSourceType",
            message: format!(
                "invalid resource metric source: neither a utilization target nor a value target was set for \
                 {resource}"
            ),
        });
    };
    let (replicas, average) = plain(input.current, groups, target_value, &failure)?;
    let mut status = json!({"type": kind});
    status[status_key] = status_source;
    status[status_key]["current"] = json!({"averageValue": quantity(&resource, average)});
    Ok(Proposal { replicas, status, name: format!("{resource} resource") })
}

/// The count for an average value target (upstream's `calcPlainMetricReplicas`), and the average now.
fn plain(
    current: i32,
    groups: Groups,
    target: f64,
    failure: &dyn Fn(String) -> Failure,
) -> Result<(i32, f64), Failure> {
    let average = |values: &BTreeMap<String, f64>| values.values().sum::<f64>() / values.len().max(1) as f64;
    let now = average(&groups.values);
    let ratio = |values: &BTreeMap<String, f64>| (target > 0.0).then(|| average(values) / target);
    let replicas = count(current, groups, &ratio, &|_| target, failure)?;
    Ok((replicas, now))
}

/// A `Pods` metric: the average of a named metric of the pods against its target.
pub fn pods_metric(input: &Input<'_>, metric: &Value) -> Result<Proposal, Failure> {
    let name = metric["pods"]["metric"]["name"].as_str().unwrap_or_default().to_owned();
    let failure = |message: String| Failure {
        reason: "FailedGetPodsMetric",
        message: format!("unable to get metric {name}: {message}"),
    };
    if input.pods.is_empty() {
        return Err(failure("no pods returned by selector while calculating replica count".into()));
    }
    let target = &metric["pods"]["target"];
    let Some(target_value) = target["averageValue"].as_str().and_then(parse_quantity) else {
        return Err(Failure {
            reason: "InvalidMetricSourceType",
            message: format!("the pods metric {name} needs an averageValue target"),
        });
    };
    let groups = group(input, false, &|p| p.metrics.get(&name).copied());
    let (replicas, average) = plain(input.current, groups, target_value, &failure)?;
    let status =
        json!({"type": "Pods", "pods": {"metric": {"name": name}, "current": {"averageValue": quantity("", average)}}});
    Ok(Proposal { replicas, status, name: format!("pods metric {name}") })
}

/// What one metric of an HPA's spec asks for.
pub fn proposal(input: &Input<'_>, metric: &Value) -> Result<Proposal, Failure> {
    match metric["type"].as_str() {
        Some("Resource" | "ContainerResource") => resource_metric(input, metric),
        Some("Pods") => pods_metric(input, metric),
        other => Err(Failure {
            reason: "InvalidMetricSourceType",
            message: format!("the {} metric source type is not served by this cluster", other.unwrap_or("empty")),
        }),
    }
}

#[cfg(test)]
mod tests;
