//! Pod templates as the workload controllers use them: the `pod-template-hash` that names a Deployment's
//! ReplicaSets, template equality that ignores that label, and the pod a controller creates from a template.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde_json::Value;

/// The label that tells a Deployment's ReplicaSets (and their pods) apart.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The characters upstream's names are made of (no vowels, no look-alikes).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-1a, 32 bits.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u32 {
    bytes.into_iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// Drops what upstream's semantic equality does not tell from absence: nulls, empty objects and empty lists
/// (kubectl sends `resources: {}` back in a template it read without one).
fn prune(value: &mut Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => {
            map.retain(|_, v| !prune(v));
            map.is_empty()
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                prune(item);
            }
            items.is_empty()
        }
        _ => false,
    }
}

/// The template as compared and hashed: without empty parts.
fn canonical(template: &PodTemplateSpec) -> Value {
    let mut value = serde_json::to_value(template).unwrap_or_default();
    prune(&mut value);
    value
}

/// Whether two templates are the same, empty parts aside.
pub fn same(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    canonical(a) == canonical(b)
}

/// The hash of a template and a collision count, encoded as upstream encodes it (the decimal digits of a 32-bit
/// hash, each mapped to a safe character): stable for one template, different after a collision.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json = serde_json::to_vec(&canonical(template)).unwrap_or_default();
    let count = collision_count.map(|c| c.to_le_bytes().to_vec()).unwrap_or_default();
    let hash = fnv1a(json.into_iter().chain(count));
    hash.to_string().bytes().map(|b| SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()] as char).collect()
}

/// The template without its `pod-template-hash` label.
fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(meta) = t.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH);
            if labels.is_empty() {
                meta.labels = None;
            }
        }
    }
    t
}

/// Whether two templates are the same but for the `pod-template-hash` label (upstream's EqualIgnoreHash).
pub fn equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    same(&without_hash(a), &without_hash(b))
}

/// The template with `key: value` added to its labels.
pub fn with_label(template: &PodTemplateSpec, key: &str, value: &str) -> PodTemplateSpec {
    let mut t = template.clone();
    t.metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(key.into(), value.into());
    t
}

/// The controller owner reference naming `owner` (blocking its foreground deletion, as upstream's do).
pub fn controller_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The pod a controller creates from `template`: its labels, annotations and spec, owned by `owner`, named
/// `name` or, without one, generated from `generate_name`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    owner: OwnerReference,
    name: Option<String>,
    generate_name: String,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: name.clone(),
            generate_name: name.is_none().then_some(generate_name),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }))
        .unwrap()
    }

    #[test]
    fn the_hash_is_stable_safe_and_changes_with_the_template_and_the_collision_count() {
        let a = template("a:1");
        let h = template_hash(&a, None);
        assert_eq!(h, template_hash(&template("a:1"), None));
        assert!(h.bytes().all(|b| SAFE_ALPHABET.contains(&b)) && !h.is_empty() && h.len() <= 10, "{h}");
        assert_ne!(h, template_hash(&template("a:2"), None));
        assert_ne!(h, template_hash(&a, Some(1)));
    }

    #[test]
    fn templates_differing_only_by_the_hash_label_are_equal() {
        let a = template("a:1");
        let labelled = with_label(&a, POD_TEMPLATE_HASH, "xyz");
        assert!(equal_ignoring_hash(&a, &labelled));
        assert!(!equal_ignoring_hash(&a, &with_label(&a, "tier", "front")));
        assert!(!equal_ignoring_hash(&a, &template("a:2")));
        let mut with_empty_resources = a.clone();
        with_empty_resources.spec.as_mut().unwrap().containers[0].resources = Some(Default::default());
        assert!(equal_ignoring_hash(&a, &with_empty_resources), "an empty part is no part");
        assert_eq!(template_hash(&a, None), template_hash(&with_empty_resources, None));
    }
}
