//! The system priority classes every cluster has (`system-node-critical`, `system-cluster-critical`), created
//! when missing, as upstream's API server creates them at start.

use super::Action;
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

/// The system classes to create, given which classes exist.
pub fn plan(exists: impl Fn(&str) -> bool) -> Vec<Action> {
    SYSTEM_PRIORITY_CLASSES
        .iter()
        .filter(|(name, _)| !exists(name))
        .map(|&(name, value)| Action::CreatePriorityClass { name, value })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_system_classes_are_created_once_each() {
        let actions = plan(|_| false);
        assert_eq!(actions.len(), 2);
        assert!(actions.contains(&Action::CreatePriorityClass { name: "system-node-critical", value: 2_000_001_000 }));
        assert_eq!(plan(|name| name == "system-node-critical").len(), 1);
    }
}
