//! A checker of watch guarantees, as etcd's robustness tests define them, for one watcher that may have
//! reconnected to other replicas (resuming from the revision after the last one it received):
//! - ordered: revisions never go back;
//! - no duplicates: no (revision, key) is delivered twice;
//! - atomic: all events of one revision arrive in one response;
//! - no gaps: every acknowledged write up to the last delivered revision was delivered, with its value;
//! - no phantoms: every delivered value was written by some client (acknowledged or not);
//! - bookmarks never ahead: after a progress bookmark at revision R, no event at R or below arrives, and every
//!   acknowledged write at R or below was delivered before it.

use std::collections::{BTreeMap, HashSet};

/// One delivered event: which response carried it, its revision, key and value (None for a delete).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub response: usize,
    pub revision: i64,
    pub key: String,
    pub value: Option<String>,
}

/// A progress bookmark: the stream said it had delivered everything up to `revision`, after `after` events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bookmark {
    pub after: usize,
    pub revision: i64,
}

/// A write as its client saw it acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    pub revision: i64,
    pub key: String,
    pub value: String,
}

/// Checks `delivered` (the watcher started at `start`) against the acknowledged writes and every value any
/// client tried to write. Returns the first broken guarantee.
pub fn check(
    delivered: &[Delivered],
    bookmarks: &[Bookmark],
    start: i64,
    acked: &[Acked],
    written: &HashSet<String>,
) -> Result<(), String> {
    let mut seen: HashSet<(i64, &str)> = HashSet::new();
    let mut response_of: BTreeMap<i64, usize> = BTreeMap::new();
    let mut last = start - 1;
    for d in delivered {
        if d.revision < last {
            return Err(format!("revision went back from {last} to {} ({d:?})", d.revision));
        }
        last = d.revision;
        if !seen.insert((d.revision, &d.key)) {
            return Err(format!("delivered twice: {d:?}"));
        }
        if *response_of.entry(d.revision).or_insert(d.response) != d.response {
            return Err(format!("revision {} split across responses", d.revision));
        }
        if let Some(v) = &d.value {
            if !written.contains(v) {
                return Err(format!("phantom value: {d:?}"));
            }
        }
    }
    let by_revision: BTreeMap<(i64, &str), Option<&str>> =
        delivered.iter().map(|d| ((d.revision, d.key.as_str()), d.value.as_deref())).collect();
    for a in acked.iter().filter(|a| a.revision >= start && a.revision <= last) {
        match by_revision.get(&(a.revision, a.key.as_str())) {
            Some(Some(v)) if *v == a.value => {}
            other => return Err(format!("acknowledged write {a:?} was delivered as {other:?}")),
        }
    }
    for b in bookmarks {
        if let Some(d) = delivered[b.after.min(delivered.len())..].iter().find(|d| d.revision <= b.revision) {
            return Err(format!("bookmark {b:?} was ahead: {d:?} came after it"));
        }
        let before: HashSet<(i64, &str)> =
            delivered[..b.after.min(delivered.len())].iter().map(|d| (d.revision, d.key.as_str())).collect();
        if let Some(a) = acked.iter().find(|a| {
            a.revision >= start && a.revision <= b.revision && !before.contains(&(a.revision, a.key.as_str()))
        }) {
            return Err(format!("bookmark {b:?} was ahead: acknowledged write {a:?} had not been delivered"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(response: usize, revision: i64, key: &str, value: &str) -> Delivered {
        Delivered { response, revision, key: key.into(), value: Some(value.into()) }
    }
    fn a(revision: i64, key: &str, value: &str) -> Acked {
        Acked { revision, key: key.into(), value: value.into() }
    }
    fn written(values: &[&str]) -> HashSet<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn a_complete_ordered_stream_passes() {
        let delivered = [d(0, 2, "a", "1"), d(0, 3, "b", "2"), d(1, 4, "a", "3")];
        let acked = [a(2, "a", "1"), a(3, "b", "2"), a(4, "a", "3"), a(5, "c", "4")];
        let bookmarks = [Bookmark { after: 2, revision: 3 }, Bookmark { after: 3, revision: 4 }];
        assert_eq!(check(&delivered, &bookmarks, 2, &acked, &written(&["1", "2", "3", "4"])), Ok(()));
    }

    #[test]
    fn each_broken_guarantee_is_caught() {
        let w = written(&["1", "2", "3"]);
        let acked = [a(2, "a", "1"), a(3, "b", "2"), a(4, "a", "3")];
        let gap = [d(0, 2, "a", "1"), d(1, 4, "a", "3")];
        assert!(check(&gap, &[], 2, &acked, &w).unwrap_err().contains("acknowledged write"));
        let duplicate = [d(0, 2, "a", "1"), d(1, 2, "a", "1"), d(1, 3, "b", "2"), d(1, 4, "a", "3")];
        assert!(check(&duplicate, &[], 2, &acked, &w).is_err());
        let backwards = [d(0, 3, "b", "2"), d(1, 2, "a", "1")];
        assert!(check(&backwards, &[], 2, &acked, &w).unwrap_err().contains("went back"));
        let split = [d(0, 5, "x", "1"), d(1, 5, "y", "2")];
        assert!(check(&split, &[], 5, &[], &w).unwrap_err().contains("split"));
        let phantom = [d(0, 2, "a", "zzz")];
        assert!(check(&phantom, &[], 2, &[], &w).unwrap_err().contains("phantom"));
        let stream = [d(0, 2, "a", "1"), d(1, 3, "b", "2"), d(2, 4, "a", "3")];
        let early = [Bookmark { after: 1, revision: 3 }];
        assert!(
            check(&stream, &early, 2, &acked, &w).unwrap_err().contains("ahead"),
            "an event at the bookmark came after it"
        );
        let unacked_gap = [Bookmark { after: 1, revision: 2 }, Bookmark { after: 1, revision: 3 }];
        assert!(check(&stream[..1], &unacked_gap, 2, &acked, &w).unwrap_err().contains("had not been delivered"));
    }
}
