//! A linearizability checker for key-value histories (Wing & Gong's search with Lowe's memoization, as
//! Porcupine does it), partitioned by key: each key is an independent register.
//!
//! Operations with an unknown outcome may take effect at any point after their invocation, or never. The
//! search is bounded: when it gives up it says `Unknown`, never `Ok`.

use std::collections::{BTreeMap, HashSet};

use super::history::{Op, Operation, Outcome};

/// The verdict for a whole history.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// No linearization exists; the key and its operations, in invocation order, are the counterexample.
    Violation {
        key: String,
        ops: Vec<Operation>,
    },
    /// The search budget ran out for this key.
    Unknown {
        key: String,
    },
}

/// Steps the search may take per key before giving up.
pub const SEARCH_STEPS_MAX: u64 = 5_000_000;

pub fn check(history: &[Operation]) -> Verdict {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    for (key, mut ops) in by_key {
        if !resolve_unknowns(&mut ops) {
            ops.sort_by_key(|o| o.invoke);
            return Verdict::Violation { key: key.to_string(), ops };
        }
        match check_register(&ops) {
            Some(true) => {}
            Some(false) => {
                ops.sort_by_key(|o| o.invoke);
                return Verdict::Violation { key: key.to_string(), ops };
            }
            None => return Verdict::Unknown { key: key.to_string() },
        }
    }
    Verdict::Ok
}

/// Shrinks the search without changing the verdict (writes are blind and values unique):
/// - reads with unknown outcomes constrain nothing and are dropped;
/// - an unknown write whose value nobody read may as well never have happened, and is dropped;
/// - an unknown write whose value was read took effect before the first such read completed, so it becomes
///   an acknowledged write completing then.
///
/// Returns false when a read saw a value before the write of it was even invoked.
fn resolve_unknowns(ops: &mut Vec<Operation>) -> bool {
    let mut first_seen: BTreeMap<String, u64> = BTreeMap::new();
    for o in ops.iter() {
        if let (Op::Read(Some(v)), Outcome::Ok) = (&o.op, o.outcome) {
            let t = first_seen.entry(v.clone()).or_insert(o.complete);
            *t = (*t).min(o.complete);
        }
    }
    let mut consistent = true;
    ops.retain_mut(|o| match (&o.op, o.outcome) {
        (Op::Read(_), Outcome::Unknown) => false,
        (Op::Write(v), Outcome::Unknown) => match first_seen.get(v) {
            None => false,
            Some(&seen) => {
                consistent &= seen >= o.invoke;
                o.outcome = Outcome::Ok;
                o.complete = seen.max(o.invoke);
                true
            }
        },
        _ => true,
    });
    consistent
}

#[derive(Clone, Copy, Debug)]
struct Event {
    op: usize,
    is_call: bool,
    time: u64,
}

/// Some(true) if linearizable, Some(false) if not, None if the budget ran out.
fn check_register(ops: &[Operation]) -> Option<bool> {
    if ops.is_empty() {
        return Some(true);
    }
    let mut events: Vec<Event> = Vec::with_capacity(ops.len() * 2);
    for (i, o) in ops.iter().enumerate() {
        events.push(Event { op: i, is_call: true, time: o.invoke });
        let complete = if o.outcome == Outcome::Unknown { u64::MAX } else { o.complete };
        events.push(Event { op: i, is_call: false, time: complete });
    }
    // Calls sort before returns at equal times: operations that touch at an instant count as concurrent.
    events.sort_by_key(|e| (e.time, !e.is_call));

    // A doubly linked list over the events, so linearized operations can be lifted out and put back.
    let n = events.len();
    let mut next: Vec<usize> = (1..=n).collect();
    let mut prev: Vec<usize> = (0..n).map(|i| if i == 0 { usize::MAX } else { i - 1 }).collect();
    let head_sentinel = n; // `head` is next[n]
    next.push(0);
    prev.push(usize::MAX);
    if n > 0 {
        prev[0] = head_sentinel;
    }
    let mut return_of = vec![0usize; ops.len()];
    for (i, e) in events.iter().enumerate() {
        if !e.is_call {
            return_of[e.op] = i;
        }
    }

    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = nx;
        if nx < n {
            prev[nx] = p;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, nx) = (prev[i], next[i]);
        next[p] = i;
        if nx < n {
            prev[nx] = i;
        }
    };

    let mut state: Option<String> = None;
    let mut linearized = vec![false; ops.len()];
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut steps = 0u64;
    let mut cursor = next[head_sentinel];
    while next[head_sentinel] < n {
        steps += 1;
        if steps > SEARCH_STEPS_MAX {
            return None;
        }
        if cursor >= n {
            // Walked past the end without meeting a return: cannot happen with a non-empty list.
            return Some(false);
        }
        let e = events[cursor];
        let o = &ops[e.op];
        if e.is_call {
            let (ok, new_state) = match &o.op {
                Op::Write(v) => (true, Some(v.clone())),
                Op::Read(seen_value) => (*seen_value == state, state.clone()),
            };
            if ok {
                linearized[e.op] = true;
                let key = (bits(&linearized), new_state.clone());
                if seen.insert(key) {
                    stack.push((cursor, state));
                    state = new_state;
                    unlink(&mut next, &mut prev, cursor);
                    unlink(&mut next, &mut prev, return_of[e.op]);
                    cursor = next[head_sentinel];
                    continue;
                }
                linearized[e.op] = false;
            }
            cursor = next[cursor];
        } else {
            if o.outcome == Outcome::Unknown {
                // Only unknown operations remain unlinearized: they may never have happened.
                return Some(true);
            }
            // This operation had to be linearized before its return: backtrack.
            let Some((call, prev_state)) = stack.pop() else { return Some(false) };
            let op = events[call].op;
            linearized[op] = false;
            state = prev_state;
            relink(&mut next, &mut prev, return_of[op]);
            relink(&mut next, &mut prev, call);
            cursor = next[call];
        }
    }
    Some(true)
}

fn bits(v: &[bool]) -> Vec<u64> {
    let mut out = vec![0u64; v.len().div_ceil(64)];
    for (i, b) in v.iter().enumerate() {
        if *b {
            out[i / 64] |= 1 << (i % 64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: usize, op: Op, invoke: u64, complete: u64, outcome: Outcome) -> Operation {
        Operation { client, key: "k".into(), op, invoke, complete, outcome }
    }
    fn w(v: &str) -> Op {
        Op::Write(v.into())
    }
    fn r(v: Option<&str>) -> Op {
        Op::Read(v.map(String::from))
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            op(0, w("a"), 0, 10, Outcome::Ok),
            op(0, r(Some("a")), 20, 30, Outcome::Ok),
            op(1, w("b"), 40, 50, Outcome::Ok),
            op(1, r(Some("b")), 60, 70, Outcome::Ok),
        ];
        assert_eq!(check(&h), Verdict::Ok);
    }

    #[test]
    fn stale_read_after_a_completed_write_is_caught() {
        let h = vec![
            op(0, w("a"), 0, 10, Outcome::Ok),
            op(0, w("b"), 20, 30, Outcome::Ok),
            op(1, r(Some("a")), 40, 50, Outcome::Ok),
        ];
        assert!(matches!(check(&h), Verdict::Violation { .. }));
    }

    #[test]
    fn concurrent_operations_may_order_either_way() {
        let h = vec![
            op(0, w("a"), 0, 100, Outcome::Ok),
            op(1, r(None), 10, 20, Outcome::Ok),
            op(2, r(Some("a")), 30, 40, Outcome::Ok),
        ];
        assert_eq!(check(&h), Verdict::Ok);
        // But a read cannot go back once a newer value was seen.
        let h = vec![
            op(0, w("a"), 0, 100, Outcome::Ok),
            op(1, r(Some("a")), 10, 20, Outcome::Ok),
            op(2, r(None), 30, 40, Outcome::Ok),
        ];
        assert!(matches!(check(&h), Verdict::Violation { .. }));
    }

    #[test]
    fn unknown_writes_may_or_may_not_happen() {
        let took_effect = vec![op(0, w("a"), 0, 10, Outcome::Unknown), op(1, r(Some("a")), 500, 510, Outcome::Ok)];
        assert_eq!(check(&took_effect), Verdict::Ok);
        let never = vec![op(0, w("a"), 0, 10, Outcome::Unknown), op(1, r(None), 500, 510, Outcome::Ok)];
        assert_eq!(check(&never), Verdict::Ok);
        // A value nobody wrote is never explained.
        let phantom = vec![op(0, w("a"), 0, 10, Outcome::Unknown), op(1, r(Some("z")), 500, 510, Outcome::Ok)];
        assert!(matches!(check(&phantom), Verdict::Violation { .. }));
        // An unknown write cannot take effect before it was invoked.
        let early = vec![op(1, r(Some("a")), 0, 10, Outcome::Ok), op(0, w("a"), 20, 30, Outcome::Unknown)];
        assert!(matches!(check(&early), Verdict::Violation { .. }));
    }

    #[test]
    fn an_unknown_write_that_was_read_must_precede_the_read() {
        // The write's value was seen, so it happened before that read completed; a later read of the older
        // value is then stale.
        let h = vec![
            op(0, w("a"), 0, 10, Outcome::Ok),
            op(1, w("b"), 20, 30, Outcome::Unknown),
            op(2, r(Some("b")), 40, 50, Outcome::Ok),
            op(2, r(Some("a")), 60, 70, Outcome::Ok),
        ];
        assert!(matches!(check(&h), Verdict::Violation { .. }));
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let h = vec![
            op(0, w("a"), 0, 10, Outcome::Ok),
            op(0, w("b"), 20, 30, Outcome::Ok),
            op(1, r(Some("b")), 40, 50, Outcome::Ok),
            // After a crash the store forgot "b".
            op(1, r(Some("a")), 60, 70, Outcome::Ok),
        ];
        assert!(matches!(check(&h), Verdict::Violation { .. }));
    }
}
