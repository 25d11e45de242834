//! Unit tests of the MVCC core against an in-memory history.

use std::collections::BTreeMap;

use super::*;

#[derive(Default)]
struct Harness {
    mvcc: Mvcc,
    history: BTreeMap<Revision, HistoryRecord>,
    leases: BTreeMap<i64, i64>,
    unpersisted: Vec<Write>,
}

impl History for BTreeMap<Revision, HistoryRecord> {
    fn record(&self, rev: Revision) -> Result<Option<HistoryRecord>, ApplyError> {
        Ok(self.get(&rev).cloned())
    }
}

impl Harness {
    /// Applies and persists at once.
    fn apply(&mut self, cmd: Command) -> (Applied, Vec<HistoryRecord>) {
        let out = self.apply_unpersisted(cmd);
        self.persist();
        out
    }

    /// Applies, leaving the writes unpersisted as the storage layer does within one batch of entries.
    fn apply_unpersisted(&mut self, cmd: Command) -> (Applied, Vec<HistoryRecord>) {
        let out = self.mvcc.apply(&cmd, &self.history);
        self.unpersisted.extend(out.writes);
        (out.applied, out.events)
    }

    /// A record as the store sees it: written but unpersisted, or in the history.
    fn record(&self, rev: Revision) -> Option<HistoryRecord> {
        let unpersisted = self.unpersisted.iter().rev().find_map(|w| match w {
            Write::History(r, rec) if *r == rev => Some(Some(rec.clone())),
            Write::ForgetHistory(r) if *r == rev => Some(None),
            _ => None,
        });
        unpersisted.unwrap_or_else(|| self.history.get(&rev).cloned())
    }

    fn persist(&mut self) {
        for w in std::mem::take(&mut self.unpersisted) {
            match w {
                Write::History(rev, rec) => {
                    self.history.insert(rev, rec);
                }
                Write::ForgetHistory(rev) => {
                    self.history.remove(&rev);
                }
                Write::Lease(id, Some(ttl)) => {
                    self.leases.insert(id, ttl);
                }
                Write::Lease(id, None) => {
                    self.leases.remove(&id);
                }
            }
        }
        self.mvcc.persisted();
    }

    /// Runs a compaction's cleanup to its end in steps of `keys_max` keys, persisting each; returns the steps.
    fn prune(&mut self, keys_max: usize) -> usize {
        let mut steps = 0;
        while self.mvcc.pruning() {
            self.unpersisted.extend(self.mvcc.prune(keys_max));
            self.persist();
            steps += 1;
        }
        steps
    }

    fn put(&mut self, k: &str, v: &str) -> Applied {
        self.apply(Command::Put(PutOp { key: k.into(), value: v.into(), ..PutOp::default() })).0
    }

    fn get_at(&self, k: &str, rev: i64) -> Result<Option<KeyValue>, ApplyError> {
        let op = RangeOp { range: key(k), revision: rev, ..RangeOp::default() };
        Ok(self.mvcc.range(&op, &self.history)?.kvs.into_iter().next())
    }

    fn restored(&self) -> Mvcc {
        Mvcc::restore(
            self.mvcc.meta(),
            self.history.iter().map(|(r, h)| (*r, h.clone())),
            self.leases.iter().map(|(i, t)| (*i, *t)),
        )
    }
}

fn key(k: &str) -> KeyRange {
    KeyRange { key: k.into(), end: Vec::new() }
}

fn prefix(p: &str) -> KeyRange {
    let mut end = p.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    KeyRange { key: p.into(), end }
}

#[test]
fn puts_advance_revision_and_version() {
    let mut h = Harness::default();
    assert_eq!(h.put("a", "1").revision, 1);
    assert_eq!(h.put("a", "2").revision, 2);
    assert_eq!(h.put("b", "1").revision, 3);
    let a = h.get_at("a", 0).unwrap().unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version, a.value.as_slice()), (1, 2, 2, &b"2"[..]));
    assert_eq!(h.get_at("a", 1).unwrap().unwrap().value, b"1");
    assert_eq!(h.get_at("b", 2).unwrap(), None);
    assert_eq!(h.get_at("a", 4), Err(ApplyError::FutureRevision));
}

#[test]
fn delete_of_nothing_keeps_revision() {
    let mut h = Harness::default();
    h.put("a", "1");
    let (applied, events) = h.apply(Command::Delete(DeleteOp { range: key("zz"), prev_kv: false }));
    assert_eq!(applied.revision, 1);
    assert!(events.is_empty());
    let (applied, events) = h.apply(Command::Delete(DeleteOp { range: key("a"), prev_kv: true }));
    assert_eq!(applied.revision, 2);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Delete);
    assert_eq!(Mvcc::prev_kv(&h.history, &events[0]).unwrap().unwrap().value, b"1", "the event leads to the old value");
    match applied.outcome.unwrap() {
        Outcome::Response(ResponseOp::Delete { deleted: 1, prev_kvs }) => assert_eq!(prev_kvs[0].value, b"1"),
        other => panic!("unexpected {other:?}"),
    }
    // Recreated keys start a new generation.
    h.put("a", "3");
    let a = h.get_at("a", 0).unwrap().unwrap();
    assert_eq!((a.create_revision, a.version), (3, 1));
}

#[test]
fn prefix_range_limit_count_and_sort() {
    let mut h = Harness::default();
    for (k, v) in [("p/b", "2"), ("p/a", "3"), ("p/c", "1"), ("q", "0")] {
        h.put(k, v);
    }
    let op = RangeOp { range: prefix("p/"), limit: 2, ..RangeOp::default() };
    let r = h.mvcc.range(&op, &h.history).unwrap();
    assert_eq!(r.count, 3);
    assert!(r.more);
    assert_eq!(r.kvs.iter().map(|kv| kv.key.as_slice()).collect::<Vec<_>>(), vec![&b"p/a"[..], b"p/b"]);
    let op = RangeOp {
        range: prefix("p/"),
        sort_order: SortOrder::Descend,
        sort_target: SortTarget::Value,
        ..RangeOp::default()
    };
    let r = h.mvcc.range(&op, &h.history).unwrap();
    assert_eq!(r.kvs.iter().map(|kv| kv.value.as_slice()).collect::<Vec<_>>(), vec![&b"3"[..], b"2", b"1"]);
    let all = RangeOp { range: KeyRange { key: vec![0], end: vec![0] }, count_only: true, ..RangeOp::default() };
    let r = h.mvcc.range(&all, &h.history).unwrap();
    assert_eq!((r.count, r.kvs.len()), (4, 0));
}

/// Counts the records a read loads.
struct Counting<'a>(&'a BTreeMap<Revision, HistoryRecord>, std::cell::Cell<usize>);

impl History for Counting<'_> {
    fn record(&self, rev: Revision) -> Result<Option<HistoryRecord>, ApplyError> {
        self.1.set(self.1.get() + 1);
        self.0.record(rev)
    }
}

#[test]
fn a_page_at_a_past_revision_loads_the_values_of_that_page_alone() {
    let mut h = Harness::default();
    for i in 0..1_000 {
        h.put(&format!("p/{i:04}"), &format!("v{i}"));
    }
    let past = h.put("p/0000", "changed").revision - 1;
    h.apply(Command::Delete(DeleteOp { range: key("p/0001"), prev_kv: false }));
    let history = Counting(&h.history, std::cell::Cell::new(0));
    let page = RangeOp { range: prefix("p/"), revision: past, limit: 10, ..RangeOp::default() };
    let r = h.mvcc.range(&page, &history).unwrap();
    assert_eq!(history.1.get(), 10, "records loaded for a page of 10");
    assert_eq!((r.count, r.more, r.kvs.len()), (1_000, true, 10));
    assert_eq!((r.kvs[0].value.as_slice(), r.kvs[0].version, r.kvs[0].create_revision), (&b"v0"[..], 1, 1));
    assert_eq!(r.kvs[1].key, b"p/0001", "deleted after the revision read");
    // Filters on what only the records hold still see every record, and agree with the lazy read.
    let by_create = RangeOp { max_create_revision: 5, ..page.clone() };
    let r = h.mvcc.range(&by_create, &h.history).unwrap();
    assert_eq!(r.kvs.len(), 5);
    assert_eq!(r.kvs[4].create_revision, 5);
    let keys = RangeOp { keys_only: true, ..page };
    let r = h.mvcc.range(&keys, &h.history).unwrap();
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty() && kv.version == 1));
}

#[test]
fn txn_compares_and_is_atomic() {
    let mut h = Harness::default();
    h.put("k", "v1");
    let cas = |expect: &str, new: &str| {
        Command::Txn(TxnOp {
            compare: vec![Compare {
                range: key("k"),
                result: CompareResult::Equal,
                target: CompareTarget::Value(expect.into()),
            }],
            success: vec![RequestOp::Put(PutOp { key: "k".into(), value: new.into(), ..PutOp::default() })],
            failure: vec![RequestOp::Range(RangeOp { range: key("k"), ..RangeOp::default() })],
        })
    };
    let (applied, _) = h.apply(cas("v1", "v2"));
    assert_eq!(applied.revision, 2);
    let (applied, _) = h.apply(cas("v1", "v3"));
    assert_eq!(applied.revision, 2, "a failed compare with only reads writes nothing");
    match applied.outcome.unwrap() {
        Outcome::Response(ResponseOp::Txn(t)) => {
            assert!(!t.succeeded);
            match &t.responses[0] {
                ResponseOp::Range(r) => assert_eq!(r.kvs[0].value, b"v2"),
                other => panic!("unexpected {other:?}"),
            }
        }
        other => panic!("unexpected {other:?}"),
    }
    // A put with an unknown lease refuses the whole transaction, including the put before it.
    let bad = Command::Txn(TxnOp {
        compare: vec![],
        success: vec![
            RequestOp::Put(PutOp { key: "x".into(), value: "1".into(), ..PutOp::default() }),
            RequestOp::Put(PutOp { key: "y".into(), value: "1".into(), lease: 42, ..PutOp::default() }),
        ],
        failure: vec![],
    });
    let (applied, events) = h.apply(bad);
    assert_eq!(applied.outcome, Err(ApplyError::LeaseNotFound));
    assert_eq!(applied.revision, 2);
    assert!(events.is_empty());
    assert_eq!(h.get_at("x", 0).unwrap(), None);
}

#[test]
fn txn_writes_share_one_revision() {
    let mut h = Harness::default();
    let txn = Command::Txn(TxnOp {
        compare: vec![Compare { range: key("a"), result: CompareResult::Equal, target: CompareTarget::Version(0) }],
        success: vec![
            RequestOp::Put(PutOp { key: "a".into(), value: "1".into(), ..PutOp::default() }),
            RequestOp::Put(PutOp { key: "b".into(), value: "1".into(), ..PutOp::default() }),
        ],
        failure: vec![],
    });
    let (applied, events) = h.apply(txn);
    assert_eq!(applied.revision, 1);
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.kv.mod_revision == 1));
}

#[test]
fn compaction_keeps_latest_and_refuses_old_reads() {
    let mut h = Harness::default();
    h.put("a", "1"); // 1
    h.put("a", "2"); // 2
    h.put("b", "1"); // 3
    h.apply(Command::Delete(DeleteOp { range: key("b"), prev_kv: false })); // 4
    h.put("a", "3"); // 5
    let (applied, _) = h.apply(Command::Compact { revision: 4 });
    assert_eq!(applied.outcome, Ok(Outcome::Compacted));
    assert_eq!(h.get_at("a", 3), Err(ApplyError::Compacted));
    assert_eq!(h.get_at("a", 4).unwrap().unwrap().value, b"2");
    assert_eq!(h.get_at("b", 4).unwrap(), None);
    assert_eq!(h.history.len(), 5, "the history is removed by pruning, not by the compaction");
    h.prune(1_000);
    assert_eq!(h.history.len(), 2, "only a@2 and a@5 remain: {:?}", h.history.keys());
    assert_eq!(h.get_at("a", 4).unwrap().unwrap().value, b"2");
    let (applied, _) = h.apply(Command::Compact { revision: 4 });
    assert_eq!(applied.outcome, Err(ApplyError::Compacted));
    let (applied, _) = h.apply(Command::Compact { revision: 9 });
    assert_eq!(applied.outcome, Err(ApplyError::FutureRevision));
}

/// A compaction frees its history in steps of a bounded number of keys, never in one pass over the store;
/// writes between steps are kept, and a restore resumes the cleanup an interruption left.
#[test]
fn a_compaction_is_pruned_in_bounded_steps() {
    let mut h = Harness::default();
    for round in 0..3 {
        for k in 0..10 {
            h.put(&format!("k{k}"), &format!("v{round}"));
        }
    }
    let compact_to = h.mvcc.revision();
    h.apply(Command::Compact { revision: compact_to });
    let one_step = h.mvcc.prune(4);
    assert_eq!(one_step.len(), 8, "4 keys, each giving up its 2 older revisions: {one_step:?}");
    h.unpersisted.extend(one_step);
    h.persist();
    h.put("k9", "after"); // A write between two steps.
    let restored = h.restored();
    assert!(restored.pruning(), "a restore resumes the cleanup");
    assert_eq!(h.prune(4), 2, "the 6 keys left take two steps of 4");
    assert_eq!(h.history.len(), 11, "one record per key, plus k9's new one");
    assert_eq!(h.get_at("k9", 0).unwrap().unwrap().value, b"after");
    assert_eq!(h.get_at("k9", compact_to).unwrap().unwrap().value, b"v2");
    assert_eq!(h.mvcc.prune(4), Vec::new(), "nothing left to prune");
}

#[test]
fn lease_revoke_deletes_attached_keys() {
    let mut h = Harness::default();
    h.apply(Command::LeaseGrant { id: 7, ttl: 10 });
    let (applied, _) = h.apply(Command::LeaseGrant { id: 7, ttl: 10 });
    assert_eq!(applied.outcome, Err(ApplyError::LeaseExists));
    h.apply(Command::Put(PutOp { key: "a".into(), value: "1".into(), lease: 7, ..PutOp::default() }));
    h.apply(Command::Put(PutOp { key: "b".into(), value: "1".into(), lease: 7, ..PutOp::default() }));
    h.put("c", "1");
    assert_eq!(h.mvcc.leases()[&7].keys.len(), 2);
    let restored = h.restored();
    assert_eq!(restored.leases()[&7].keys.len(), 2, "lease attachments are rebuilt on restore");
    let (applied, events) = h.apply(Command::LeaseRevoke { id: 7 });
    assert_eq!(applied.revision, 4);
    assert_eq!(events.len(), 2);
    assert!(h.mvcc.leases().is_empty());
    assert_eq!(h.get_at("a", 0).unwrap(), None);
    assert!(h.get_at("c", 0).unwrap().is_some());
    let (applied, _) = h.apply(Command::LeaseRevoke { id: 7 });
    assert_eq!(applied.outcome, Err(ApplyError::LeaseNotFound));
}

#[test]
fn restore_reproduces_state() {
    let mut h = Harness::default();
    for i in 0..50 {
        h.put(&format!("k{}", i % 7), &format!("v{i}"));
        if i % 5 == 0 {
            h.apply(Command::Delete(DeleteOp { range: key(&format!("k{}", i % 3)), prev_kv: false }));
        }
    }
    h.apply(Command::Compact { revision: 20 });
    let restored = h.restored();
    let all = RangeOp { range: KeyRange { key: vec![0], end: vec![0] }, ..RangeOp::default() };
    assert_eq!(restored.range(&all, &h.history), h.mvcc.range(&all, &h.history));
    for rev in 20..=h.mvcc.revision() {
        let at = RangeOp { revision: rev, ..all.clone() };
        assert_eq!(restored.range(&at, &h.history), h.mvcc.range(&at, &h.history), "at revision {rev}");
    }
}

#[test]
fn revision_bytes_sort_like_revisions() {
    let a = Revision { main: 1, sub: 300 };
    let b = Revision { main: 2, sub: 0 };
    assert!(a.to_bytes() < b.to_bytes());
    assert_eq!(Revision::from_bytes(&a.to_bytes()), Some(a));
}

mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Step {
        Put(u8, u8),
        Delete(u8),
        DeletePrefix,
        Compact(u8),
        /// One step of a compaction's cleanup (between batches: after a persist).
        Prune,
        /// The storage layer writes what was applied so far (a batch of entries ends).
        Persist,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0u8..6, any::<u8>()).prop_map(|(k, v)| Step::Put(k, v)),
            2 => (0u8..6).prop_map(Step::Delete),
            1 => Just(Step::DeletePrefix),
            1 => any::<u8>().prop_map(Step::Compact),
            1 => Just(Step::Prune),
            2 => Just(Step::Persist),
        ]
    }

    proptest! {
        /// Against a model that keeps the whole key space at every revision: every revision not compacted
        /// reads exactly as the model says, revisions grow by one per change, and a restore from the persisted
        /// history reads the same.
        #[test]
        fn reads_at_every_revision_match_a_model(steps in proptest::collection::vec(step(), 1..60)) {
            let mut h = Harness::default();
            let mut model: Vec<BTreeMap<Vec<u8>, Vec<u8>>> = vec![BTreeMap::new()];
            for s in steps {
                let current = model.last().unwrap().clone();
                let (cmd, next) = match s {
                    Step::Put(k, v) => {
                        let mut next = current.clone();
                        next.insert(vec![b'k', k], vec![v]);
                        (Command::Put(PutOp { key: vec![b'k', k], value: vec![v], ..PutOp::default() }), Some(next))
                    }
                    Step::Delete(k) => {
                        let mut next = current.clone();
                        let changed = next.remove(&vec![b'k', k]).is_some();
                        let cmd = Command::Delete(DeleteOp { range: KeyRange { key: vec![b'k', k], end: vec![] }, prev_kv: false });
                        (cmd, changed.then_some(next))
                    }
                    Step::DeletePrefix => {
                        let cmd = Command::Delete(DeleteOp { range: prefix("k"), prev_kv: false });
                        (cmd, (!current.is_empty()).then(BTreeMap::new))
                    }
                    Step::Compact(r) => {
                        let revision = i64::from(r) % (h.mvcc.revision() + 1);
                        (Command::Compact { revision }, None)
                    }
                    Step::Persist => {
                        h.persist();
                        continue;
                    }
                    Step::Prune => {
                        h.persist();
                        h.unpersisted.extend(h.mvcc.prune(2));
                        h.persist();
                        continue;
                    }
                };
                let before = h.mvcc.revision();
                // Reads inside apply (previous values, ignore_value) must see writes not yet persisted.
                let (applied, events) = h.apply_unpersisted(cmd);
                for e in events.iter().filter(|e| e.kind == EventKind::Delete) {
                    let prev = e.prev.and_then(|rev| h.record(rev)).expect("a delete event leads to the deleted value");
                    prop_assert_eq!(current.get(&prev.kv.key), Some(&prev.kv.value));
                }
                match next {
                    Some(next) => {
                        prop_assert_eq!(applied.revision, before + 1);
                        model.push(next);
                    }
                    None => prop_assert_eq!(applied.revision, before),
                }
            }
            h.persist();
            let restored = h.restored();
            h.prune(3);
            let all = RangeOp { range: KeyRange { key: vec![0], end: vec![0] }, ..RangeOp::default() };
            for (rev, expected) in model.iter().enumerate().skip(h.mvcc.compact_revision().max(1) as usize) {
                let at = RangeOp { revision: rev as i64, ..all.clone() };
                let got: BTreeMap<Vec<u8>, Vec<u8>> =
                    h.mvcc.range(&at, &h.history).unwrap().kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
                prop_assert_eq!(&got, expected, "at revision {}", rev);
                prop_assert_eq!(restored.range(&at, &h.history), h.mvcc.range(&at, &h.history));
            }
        }
    }
}
