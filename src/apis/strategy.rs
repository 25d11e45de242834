//! What upstream's registry strategies change in an object beyond defaulting, before it is validated: on
//! create, a Job's generated selector and a Node's dropped fields (`PrepareForCreate`); on update, a Service's
//! fields that its new type no longer uses (`PrepareForUpdate`).
//!
//! Objects are `serde_json::Value`s in Kubernetes JSON form; catalog entries name these functions. Like the
//! defaults they never panic and leave fields of the wrong JSON type for validation to report.

use serde_json::{json, Map, Value};

/// The label upstream's Job registry selects a Job's pods by, valued with the Job's uid.
pub const JOB_CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The same label without the prefix, which upstream still adds for older clients.
pub const JOB_LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// The label naming a Job's pods' Job.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
pub const JOB_LEGACY_NAME_LABEL: &str = "job-name";

/// An update of a kind whose strategy changes nothing beyond what every update keeps.
pub(crate) fn no_update_changes(_old: &Value, _new: &mut Value) {}

/// The Job registry's create: unless `spec.manualSelector` is true, the pod template gets the job-name and
/// controller-uid labels (where the client did not set them) and `spec.selector` selects the controller uid,
/// so a Job's pods are its own. A Job whose labels are unset takes its template's labels, as its defaulting
/// does when the object is read back. Needs `metadata.uid`, which is set before defaulting.
pub(crate) fn generate_job_selector(job: &mut Value) {
    if job.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let name = job.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let uid = job.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_owned();
    let Some(spec) = object_at(job, "spec") else { return };
    let Some(template_labels) = object_at(spec, "template")
        .and_then(|t| object_at(t, "metadata"))
        .and_then(|m| object_at(m, "labels"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (label, value) in [
        (JOB_LEGACY_NAME_LABEL, &name),
        (JOB_NAME_LABEL, &name),
        (JOB_LEGACY_CONTROLLER_UID_LABEL, &uid),
        (JOB_CONTROLLER_UID_LABEL, &uid),
    ] {
        template_labels.entry(label).or_insert_with(|| json!(value));
    }
    let template_labels = template_labels.clone();
    if let Some(match_labels) =
        object_at(spec, "selector").and_then(|s| object_at(s, "matchLabels")).and_then(Value::as_object_mut)
    {
        match_labels.entry(JOB_CONTROLLER_UID_LABEL).or_insert_with(|| json!(uid));
    }
    if let Some(metadata) = job.get_mut("metadata").and_then(Value::as_object_mut) {
        if metadata.get("labels").is_none_or(|l| l.is_null() || l.as_object().is_some_and(Map::is_empty)) {
            metadata.insert("labels".to_owned(), Value::Object(template_labels));
        }
    }
}

/// The object at `value[key]`, created empty when missing or null; `None` when either is not an object.
fn object_at<'a>(value: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let map = value.as_object_mut()?;
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_owned(), Value::Object(Map::new()));
    }
    map.get_mut(key).filter(|child| child.is_object())
}

/// The Node registry's create: a node registers with its status (a kubelet sends its capacity and addresses),
/// so the status is kept, but not the dynamic kubelet configuration upstream no longer serves.
pub(crate) fn prepare_node_for_create(node: &mut Value) {
    for (parent, field) in [("spec", "configSource"), ("status", "config")] {
        if let Some(map) = node.get_mut(parent).and_then(Value::as_object_mut) {
            map.remove(field);
        }
    }
}

fn service_type(service: &Value) -> &str {
    service.pointer("/spec/type").and_then(Value::as_str).unwrap_or_default()
}

fn spec_field<'a>(service: &'a Value, field: &str) -> Option<&'a Value> {
    service.get("spec").and_then(|s| s.get(field)).filter(|v| !v.is_null())
}

/// The node ports a Service's ports name.
fn node_ports(service: &Value) -> Vec<i64> {
    let ports = spec_field(service, "ports").and_then(Value::as_array);
    ports.into_iter().flatten().filter_map(|p| p.get("nodePort").and_then(Value::as_i64)).filter(|p| *p != 0).collect()
}

fn externally_accessible(service: &Value) -> bool {
    match service_type(service) {
        "NodePort" | "LoadBalancer" => true,
        "ClusterIP" => spec_field(service, "externalIPs").and_then(Value::as_array).is_some_and(|ips| !ips.is_empty()),
        _ => false,
    }
}

/// The Service registry's update (upstream's `dropTypeDependentFields`): a Service whose new type no longer
/// uses its cluster IPs, node ports, health check node port, load balancer fields or external traffic policy
/// loses them, where the client left them as they were (a value the client changed is kept, for validation to
/// judge). The registry then releases what was dropped.
pub(crate) fn drop_type_dependent_fields(old: &Value, new: &mut Value) {
    let drop = type_dependent_fields_to_drop(old, new);
    let clear_node_ports = drop.contains(&"nodePort");
    if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
        for field in drop.iter().filter(|f| **f != "nodePort") {
            spec.remove(*field);
        }
        if clear_node_ports {
            for port in spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                if let Some(port) = port.as_object_mut() {
                    port.remove("nodePort");
                }
            }
        }
    }
    if service_type(new) != "LoadBalancer" {
        if let Some(status) = new.get_mut("status").and_then(Value::as_object_mut) {
            status.remove("loadBalancer");
        }
    }
}

/// The spec fields [`drop_type_dependent_fields`] clears (`nodePort` standing for every port's).
fn type_dependent_fields_to_drop(old: &Value, new: &Value) -> Vec<&'static str> {
    let unchanged = |field: &str| spec_field(old, field) == spec_field(new, field);
    let mut drop = Vec::new();
    let needs_cluster_ip = |s: &Value| service_type(s) != "ExternalName";
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        if unchanged("clusterIP") && unchanged("clusterIPs") {
            drop.extend(["clusterIP", "clusterIPs"]);
        }
        drop.extend(["ipFamilies", "ipFamilyPolicy"].into_iter().filter(|f| unchanged(f)));
    }
    let needs_node_port = |s: &Value| matches!(service_type(s), "NodePort" | "LoadBalancer");
    let old_ports = node_ports(old);
    if needs_node_port(old) && !needs_node_port(new) && node_ports(new).iter().all(|p| old_ports.contains(p)) {
        drop.push("nodePort");
    }
    let needs_health_check_port = |s: &Value| {
        service_type(s) == "LoadBalancer"
            && spec_field(s, "externalTrafficPolicy").and_then(Value::as_str) == Some("Local")
    };
    if needs_health_check_port(old) && !needs_health_check_port(new) && unchanged("healthCheckNodePort") {
        drop.push("healthCheckNodePort");
    }
    if service_type(old) == "LoadBalancer" && service_type(new) != "LoadBalancer" {
        let allocate = "allocateLoadBalancerNodePorts";
        if spec_field(old, allocate).is_some() && spec_field(new, allocate).is_some() && unchanged(allocate) {
            drop.push(allocate);
        }
        if unchanged("loadBalancerClass") {
            drop.push("loadBalancerClass");
        }
    }
    if externally_accessible(old) && !externally_accessible(new) && unchanged("externalTrafficPolicy") {
        drop.push("externalTrafficPolicy");
    }
    drop
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_gets_a_selector_of_its_uid_and_labels_naming_it() {
        let mut job = json!({"metadata": {"name": "j", "uid": "u-1"},
            "spec": {"manualSelector": false, "template": {"spec": {"restartPolicy": "Never"}}}});
        generate_job_selector(&mut job);
        let labels = json!({"job-name": "j", "batch.kubernetes.io/job-name": "j", "controller-uid": "u-1",
            "batch.kubernetes.io/controller-uid": "u-1"});
        assert_eq!(job["spec"]["template"]["metadata"]["labels"], labels);
        assert_eq!(job["spec"]["selector"], json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}));
        assert_eq!(job["metadata"]["labels"], labels);
        assert_eq!(job["spec"]["manualSelector"], false);
        let again = job.clone();
        generate_job_selector(&mut job);
        assert_eq!(job, again, "idempotent");
    }

    #[test]
    fn a_job_keeps_the_labels_and_selector_its_client_set() {
        let mut job = json!({"metadata": {"name": "j", "uid": "u-1", "labels": {"team": "a"}},
            "spec": {"selector": {"matchLabels": {"app": "x"}},
                "template": {"metadata": {"labels": {"app": "x", "job-name": "other"}}}}});
        generate_job_selector(&mut job);
        assert_eq!(job["metadata"]["labels"], json!({"team": "a"}));
        assert_eq!(job["spec"]["template"]["metadata"]["labels"]["job-name"], "other");
        assert_eq!(job["spec"]["template"]["metadata"]["labels"]["app"], "x");
        assert_eq!(
            job["spec"]["selector"]["matchLabels"],
            json!({"app": "x", "batch.kubernetes.io/controller-uid": "u-1"})
        );
    }

    #[test]
    fn a_manual_selector_is_left_alone() {
        let mut job = json!({"metadata": {"name": "j", "uid": "u"}, "spec": {"manualSelector": true,
            "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}}}});
        let before = job.clone();
        generate_job_selector(&mut job);
        assert_eq!(job, before);
        let mut wrong = json!({"metadata": {"name": "j"}, "spec": {"template": {"metadata": {"labels": "x"}}}});
        generate_job_selector(&mut wrong);
        assert_eq!(wrong["spec"]["template"]["metadata"]["labels"], "x");
    }

    #[test]
    fn a_node_keeps_its_status_on_create() {
        let mut node = json!({"metadata": {"name": "n"}, "spec": {"configSource": {}},
            "status": {"capacity": {"cpu": "4"}, "config": {}}});
        prepare_node_for_create(&mut node);
        assert_eq!(node["status"], json!({"capacity": {"cpu": "4"}}));
        assert_eq!(node["spec"], json!({}));
    }

    fn node_port_service() -> Value {
        json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "externalTrafficPolicy": "Cluster",
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}})
    }

    #[test]
    fn a_service_leaving_node_port_drops_its_node_ports() {
        let old = node_port_service();
        let mut new = old.clone();
        new["spec"]["type"] = json!("ClusterIP");
        drop_type_dependent_fields(&old, &mut new);
        assert!(new["spec"]["ports"][0].get("nodePort").is_none(), "{new}");
        assert!(new["spec"].get("externalTrafficPolicy").is_none(), "{new}");
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.7");
        assert_eq!(new["spec"]["ipFamilies"], json!(["IPv4"]));
    }

    #[test]
    fn a_node_port_the_client_adds_while_leaving_node_port_is_kept_for_validation() {
        let old = node_port_service();
        let mut new = old.clone();
        new["spec"]["type"] = json!("ClusterIP");
        new["spec"]["ports"][0]["nodePort"] = json!(30081);
        drop_type_dependent_fields(&old, &mut new);
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30081);
    }

    #[test]
    fn a_service_becoming_external_name_drops_its_cluster_ips() {
        let mut old = node_port_service();
        old["spec"]["type"] = json!("ClusterIP");
        old["spec"]["ports"][0].as_object_mut().unwrap().remove("nodePort");
        old["spec"].as_object_mut().unwrap().remove("externalTrafficPolicy");
        old["status"] = json!({"loadBalancer": {}});
        let mut new = old.clone();
        new["spec"]["type"] = json!("ExternalName");
        new["spec"]["externalName"] = json!("db.example.com");
        drop_type_dependent_fields(&old, &mut new);
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            assert!(new["spec"].get(field).is_none(), "{field}: {new}");
        }
        assert_eq!(new["spec"]["externalName"], "db.example.com");
        assert_eq!(new["status"], json!({}));
        let mut changed = old.clone();
        changed["spec"]["type"] = json!("ExternalName");
        changed["spec"]["clusterIP"] = json!("10.96.0.8");
        drop_type_dependent_fields(&old, &mut changed);
        assert_eq!(changed["spec"]["clusterIP"], "10.96.0.8", "a changed IP is left for validation");
    }

    #[test]
    fn a_load_balancer_becoming_cluster_ip_drops_its_load_balancer_fields() {
        let old = json!({"spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "healthCheckNodePort": 31000, "allocateLoadBalancerNodePorts": true, "loadBalancerClass": "x",
            "ports": [{"port": 80, "nodePort": 30080}]}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}});
        let mut new = old.clone();
        new["spec"]["type"] = json!("ClusterIP");
        drop_type_dependent_fields(&old, &mut new);
        assert_eq!(new["spec"], json!({"type": "ClusterIP", "ports": [{"port": 80}]}));
        assert_eq!(new["status"], json!({}));
    }

    #[test]
    fn the_same_type_keeps_everything() {
        let old = node_port_service();
        let mut new = old.clone();
        drop_type_dependent_fields(&old, &mut new);
        assert_eq!(new, old);
        let mut wrong = json!({"spec": "x"});
        drop_type_dependent_fields(&old, &mut wrong);
        assert_eq!(wrong, json!({"spec": "x"}));
    }
}
