//! Control-plane invariants of the leader's controllers, from the writes they made:
//! - fencing: only the leader of the current term commits controller writes. Each write carries the term its
//!   controller decided it in; in the order the store applied them, those terms never go back (a deposed
//!   leader's write landing after its successor's is exactly what fencing forbids);
//! - every write a controller saw acknowledged was applied.

/// A controller write as the store applied it: the revision and the term it carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppliedWrite {
    pub revision: i64,
    pub term: u64,
}

/// Checks the applied controller writes (in revision order) against the revisions controllers saw
/// acknowledged. Returns the first broken invariant.
pub fn check(applied: &[AppliedWrite], acknowledged: &[i64]) -> Result<(), String> {
    for pair in applied.windows(2) {
        if pair[1].term < pair[0].term {
            return Err(format!(
                "a controller write of term {} was applied at revision {} after one of term {} at revision {}: \
                 a deposed leader's write got through",
                pair[1].term, pair[1].revision, pair[0].term, pair[0].revision
            ));
        }
    }
    for revision in acknowledged {
        if !applied.iter().any(|w| w.revision == *revision) {
            return Err(format!("a controller write acknowledged at revision {revision} is not in the history"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(revision: i64, term: u64) -> AppliedWrite {
        AppliedWrite { revision, term }
    }

    #[test]
    fn terms_in_order_pass() {
        assert_eq!(check(&[write(3, 2), write(5, 2), write(9, 4)], &[5, 9]), Ok(()));
    }

    #[test]
    fn a_deposed_leaders_write_after_its_successors_fails() {
        let err = check(&[write(3, 2), write(5, 4), write(6, 2)], &[]).unwrap_err();
        assert!(err.contains("term 2 was applied at revision 6 after one of term 4"), "{err}");
    }

    #[test]
    fn a_lost_acknowledged_write_fails() {
        let err = check(&[write(3, 2)], &[3, 8]).unwrap_err();
        assert!(err.contains("revision 8"), "{err}");
    }
}
