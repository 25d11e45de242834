//! From the metrics' recommendation to the count an autoscaler sets: upstream's stabilization and rate limits,
//! pure over the autoscaler's remembered recommendations and scale events.
//!
//! With `spec.behavior`: the recommendation is stabilized (the lowest of the scale-up window's recommendations
//! when going up, the highest of the scale-down window's when going down; an unset scale-down window is 300 s),
//! then bounded by the policies (the rate of change each allows over its period, counting the scale events of
//! that period; `selectPolicy` picks the largest or smallest change, or none) and by min and max. Without it:
//! upstream's older rules, a 300 s scale-down stabilization and a scale-up of at most max(2 x current, 4).
//!
//! What is remembered lives in memory on the leader, as upstream's controller keeps it: a new leader starts
//! with none, so its first decisions are not stabilized by what the old leader saw.

use std::collections::VecDeque;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::limits;

/// Upstream's `--horizontal-pod-autoscaler-downscale-stabilization`.
pub const DOWNSCALE_STABILIZATION: SignedDuration = SignedDuration::from_secs(300);

/// One scaling direction's rules, as `spec.behavior.scaleUp`/`scaleDown` give them after defaulting.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub window: SignedDuration,
    pub select: Select,
    pub policies: Vec<Policy>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    pub percent: bool,
    pub value: i32,
    pub period: SignedDuration,
}

impl Rules {
    /// A direction's rules from the spec (`None` when it gives none: upstream's defaults then apply).
    pub fn from_spec(rules: &Value, scale_up: bool) -> Rules {
        let default_window = if scale_up { SignedDuration::ZERO } else { DOWNSCALE_STABILIZATION };
        let window = rules["stabilizationWindowSeconds"]
            .as_i64()
            .map_or(default_window, |s| SignedDuration::from_secs(s.max(0)));
        let select = match rules["selectPolicy"].as_str() {
            Some("Min") => Select::Min,
            Some("Disabled") => Select::Disabled,
            _ => Select::Max,
        };
        let mut policies: Vec<Policy> = rules["policies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| Policy {
                percent: p["type"] == "Percent",
                value: p["value"].as_i64().unwrap_or(0).clamp(0, i64::from(i32::MAX)) as i32,
                period: SignedDuration::from_secs(p["periodSeconds"].as_i64().unwrap_or(15).max(1)),
            })
            .collect();
        if policies.is_empty() {
            policies = match scale_up {
                true => vec![
                    Policy { percent: false, value: 4, period: SignedDuration::from_secs(15) },
                    Policy { percent: true, value: 100, period: SignedDuration::from_secs(15) },
                ],
                false => vec![Policy { percent: true, value: 100, period: SignedDuration::from_secs(15) }],
            };
        }
        Rules { window, select, policies }
    }
}

/// What an autoscaler remembers between its evaluations.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// Recommendations of the metrics (before stabilization), newest last.
    recommendations: VecDeque<(Timestamp, i32)>,
    /// Changes made, by direction: when, and by how many replicas.
    ups: VecDeque<(Timestamp, i32)>,
    downs: VecDeque<(Timestamp, i32)>,
}

/// The count to set, and why it is what it is: the AbleToScale reason and message of the stabilization and
/// the ScalingLimited reason and message of the bounds (`limited` when they changed the count).
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub replicas: i32,
    pub stabilized: Option<(&'static str, &'static str)>,
    pub limit: (&'static str, &'static str),
    pub limited: bool,
}

const WITHIN_RANGE: (&str, &str) = ("DesiredWithinRange", "the desired count is within the acceptable range");
const TOO_MANY: (&str, &str) = ("TooManyReplicas", "the desired replica count is more than the maximum replica count");
const TOO_FEW: (&str, &str) = ("TooFewReplicas", "the desired replica count is less than the minimum replica count");
const UP_LIMIT: (&str, &str) =
    ("ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate");
const DOWN_LIMIT: (&str, &str) =
    ("ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate");
const UP_STABILIZED: (&str, &str) = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
);
const DOWN_STABILIZED: (&str, &str) = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent recommendation",
);

/// The bounds of one evaluation.
pub struct Bounds {
    pub current: i32,
    pub min: i32,
    pub max: i32,
}

/// Replicas changed by `events` within `period` before `now`.
fn changed_within(events: &VecDeque<(Timestamp, i32)>, period: SignedDuration, now: Timestamp) -> i32 {
    events.iter().filter(|(at, _)| *at > now - period).map(|(_, n)| *n).sum()
}

impl Memory {
    fn remember(list: &mut VecDeque<(Timestamp, i32)>, entry: (Timestamp, i32), keep: SignedDuration) {
        let now = entry.0;
        while list.front().is_some_and(|(at, _)| *at <= now - keep)
            || list.len() >= limits::AUTOSCALER_RECOMMENDATIONS_MAX
        {
            list.pop_front();
        }
        list.push_back(entry);
    }

    /// Records that the count went from `from` to `to` at `now`, for the policies' periods.
    pub fn scaled(&mut self, from: i32, to: i32, now: Timestamp, up: &Rules, down: &Rules) {
        let longest = |r: &Rules| r.policies.iter().map(|p| p.period).max().unwrap_or(SignedDuration::ZERO);
        if to > from {
            Memory::remember(&mut self.ups, (now, to - from), longest(up));
        } else if to < from {
            Memory::remember(&mut self.downs, (now, from - to), longest(down));
        }
    }

    /// With `spec.behavior`: stabilizes `desired` over the windows, then bounds it by the policies and min/max.
    pub fn decide(&mut self, desired: i32, bounds: &Bounds, up: &Rules, down: &Rules, now: Timestamp) -> Decision {
        let (mut up_recommendation, mut down_recommendation) = (desired, desired);
        for (at, recommendation) in &self.recommendations {
            if *at > now - up.window {
                up_recommendation = up_recommendation.min(*recommendation);
            }
            if *at > now - down.window {
                down_recommendation = down_recommendation.max(*recommendation);
            }
        }
        Memory::remember(&mut self.recommendations, (now, desired), up.window.max(down.window));
        let stabilized = bounds.current.max(up_recommendation).min(down_recommendation);
        let stabilized_why = match stabilized.cmp(&desired) {
            std::cmp::Ordering::Less => Some(UP_STABILIZED),
            std::cmp::Ordering::Greater => Some(DOWN_STABILIZED),
            std::cmp::Ordering::Equal => None,
        };
        let (replicas, limit) = if stabilized > bounds.current {
            let rate = self.up_limit(bounds.current, up, now).max(bounds.current);
            let (allowed, why) = if bounds.max > rate { (rate, UP_LIMIT) } else { (bounds.max, TOO_MANY) };
            if stabilized > allowed {
                (allowed, why)
            } else {
                (stabilized, WITHIN_RANGE)
            }
        } else if stabilized < bounds.current {
            let rate = self.down_limit(bounds.current, down, now).min(bounds.current);
            let (allowed, why) = if bounds.min < rate { (rate, DOWN_LIMIT) } else { (bounds.min, TOO_FEW) };
            if stabilized < allowed {
                (allowed, why)
            } else {
                (stabilized, WITHIN_RANGE)
            }
        } else {
            (stabilized, WITHIN_RANGE)
        };
        Decision { replicas, stabilized: stabilized_why, limit, limited: replicas != stabilized }
    }

    /// The most replicas the scale-up policies allow now.
    fn up_limit(&self, current: i32, rules: &Rules, now: Timestamp) -> i32 {
        let proposals = rules.policies.iter().map(|p| {
            let start = current - changed_within(&self.ups, p.period, now) + changed_within(&self.downs, p.period, now);
            match p.percent {
                true => (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32,
                false => start.saturating_add(p.value),
            }
        });
        match rules.select {
            Select::Disabled => current,
            Select::Max => proposals.max().unwrap_or(current),
            Select::Min => proposals.min().unwrap_or(current),
        }
    }

    /// The fewest replicas the scale-down policies allow now.
    fn down_limit(&self, current: i32, rules: &Rules, now: Timestamp) -> i32 {
        let proposals = rules.policies.iter().map(|p| {
            let start = current - changed_within(&self.ups, p.period, now) + changed_within(&self.downs, p.period, now);
            match p.percent {
                true => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
                false => start - p.value,
            }
        });
        // The largest change is the lowest count: Max selects the minimum proposal.
        match rules.select {
            Select::Disabled => current,
            Select::Max => proposals.min().unwrap_or(current),
            Select::Min => proposals.max().unwrap_or(current),
        }
    }

    /// Without `spec.behavior`: upstream's older rules.
    pub fn decide_without_behavior(&mut self, desired: i32, bounds: &Bounds, now: Timestamp) -> Decision {
        let mut stabilized = desired;
        for (at, recommendation) in &self.recommendations {
            if *at > now - DOWNSCALE_STABILIZATION {
                stabilized = stabilized.max(*recommendation);
            }
        }
        Memory::remember(&mut self.recommendations, (now, desired), DOWNSCALE_STABILIZATION);
        let stabilized_why = (stabilized != desired).then_some(DOWN_STABILIZED);
        let rate = (2 * bounds.current).max(4);
        let (allowed, why) = if bounds.max > rate { (rate, UP_LIMIT) } else { (bounds.max, TOO_MANY) };
        let (replicas, limit) = if stabilized < bounds.min {
            (bounds.min, TOO_FEW)
        } else if stabilized > allowed {
            (allowed, why)
        } else {
            (stabilized, WITHIN_RANGE)
        };
        Decision { replicas, stabilized: stabilized_why, limit, limited: replicas != stabilized }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn rules(spec: Value, up: bool) -> Rules {
        Rules::from_spec(&spec, up)
    }

    #[test]
    fn defaults_are_upstreams() {
        let up = rules(json!({}), true);
        assert_eq!(up.window, SignedDuration::ZERO);
        assert_eq!(up.policies.len(), 2);
        let down = rules(json!(null), false);
        assert_eq!((down.window, down.select), (DOWNSCALE_STABILIZATION, Select::Max));
    }

    #[test]
    fn scale_up_is_bounded_by_the_larger_policy_and_counts_the_periods_changes() {
        let (up, down) = (rules(json!({}), true), rules(json!({}), false));
        let mut memory = Memory::default();
        let bounds = Bounds { current: 2, min: 1, max: 100 };
        // 4 pods or 100%: from 2, at most max(6, 4) = 6.
        let d = memory.decide(50, &bounds, &up, &down, at(0));
        assert_eq!((d.replicas, d.limit.0, d.limited), (6, "ScaleUpLimit", true));
        memory.scaled(2, 6, at(0), &up, &down);
        // Within the same 15 s period, the period started at 2: still at most 6.
        let d = memory.decide(50, &Bounds { current: 6, ..bounds }, &up, &down, at(5));
        assert_eq!(d.replicas, 6);
        // Once the period has passed, from 6: at most 12.
        let d = memory.decide(50, &Bounds { current: 6, ..bounds }, &up, &down, at(16));
        assert_eq!(d.replicas, 12);
        // The max bounds before the rate does.
        let d = memory.decide(50, &Bounds { current: 6, min: 1, max: 8 }, &up, &down, at(40));
        assert_eq!((d.replicas, d.limit.0), (8, "TooManyReplicas"));
    }

    #[test]
    fn scale_down_is_stabilized_over_the_window() {
        let up = rules(json!({}), true);
        let down = rules(json!({"stabilizationWindowSeconds": 60}), false);
        let mut memory = Memory::default();
        let bounds = Bounds { current: 10, min: 1, max: 20 };
        assert_eq!(memory.decide(10, &bounds, &up, &down, at(0)).replicas, 10);
        let d = memory.decide(3, &bounds, &up, &down, at(30));
        assert_eq!((d.replicas, d.stabilized.map(|s| s.0)), (10, Some("ScaleDownStabilized")));
        // The recommendation of 10 left the window: the highest since is 3.
        let d = memory.decide(3, &bounds, &up, &down, at(61));
        assert_eq!((d.replicas, d.limited), (3, false));
    }

    #[test]
    fn a_disabled_direction_does_not_move_and_percent_down_rounds_as_upstream() {
        let up = rules(json!({"selectPolicy": "Disabled"}), true);
        let half = json!([{"type": "Percent", "value": 50, "periodSeconds": 60}]);
        let down = rules(json!({"stabilizationWindowSeconds": 0, "policies": half}), false);
        let mut memory = Memory::default();
        let d = memory.decide(9, &Bounds { current: 3, min: 1, max: 10 }, &up, &down, at(0));
        assert_eq!((d.replicas, d.limit.0), (3, "ScaleUpLimit"));
        let d = memory.decide(1, &Bounds { current: 5, min: 1, max: 10 }, &up, &down, at(1));
        assert_eq!((d.replicas, d.limit.0), (2, "ScaleDownLimit"), "5 x 0.5 = 2.5, truncated");
    }

    #[test]
    fn without_behavior_the_old_rules_apply() {
        let mut memory = Memory::default();
        let bounds = Bounds { current: 3, min: 2, max: 50 };
        let d = memory.decide_without_behavior(40, &bounds, at(0));
        assert_eq!((d.replicas, d.limit.0), (6, "ScaleUpLimit"));
        let d = memory.decide_without_behavior(1, &Bounds { current: 6, ..bounds }, at(10));
        assert_eq!((d.replicas, d.stabilized.map(|s| s.0)), (12, Some("ScaleDownStabilized")));
    }
}
