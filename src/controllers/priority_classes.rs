//! The system priority classes every cluster has (`system-node-critical`, `system-cluster-critical`), created
//! when missing, as upstream's API server creates them at start.

use super::{Action, Snapshot};
use crate::apis::catalog;
use crate::apis::validation::SYSTEM_PRIORITY_CLASSES;

/// A system class's description, as upstream words it.
pub fn description(name: &str) -> &'static str {
    match name {
        "system-node-critical" => "Used for system critical pods that must not be moved from their current node.",
        _ => {
            "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."
        }
    }
}

pub fn plan(snapshot: &Snapshot) -> Vec<Action> {
    let classes = catalog::find("scheduling.k8s.io", "v1", "priorityclasses").expect("priority classes are served");
    SYSTEM_PRIORITY_CLASSES
        .iter()
        .filter(|(name, _)| !snapshot.objects.iter().any(|o| o.resource == classes && o.name == *name))
        .map(|&(name, value)| Action::CreatePriorityClass { name, value })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_system_classes_are_created_once_each() {
        let actions = plan(&Snapshot::default());
        assert_eq!(actions.len(), 2);
        assert!(actions.contains(&Action::CreatePriorityClass { name: "system-node-critical", value: 2_000_001_000 }));
    }
}
