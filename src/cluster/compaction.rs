//! Automatic compaction, as the Kubernetes API server runs it against etcd: while this replica leads, every
//! `--compaction-interval` it compacts the store's history to the revision it saw one interval earlier,
//! through Raft like any write. Reads and watches from up to one interval back keep working; a watch that
//! falls further behind gets the compaction answer (410 Gone, or etcd's compacted cancel) and lists again;
//! and the history, with the memory and disk it holds, stops growing with the writes.
//!
//! `target` is the pure decision; `run` is the leader's task, started afresh with every term, so a new leader
//! compacts one interval after it took over at the earliest.

use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use crate::store::command::{ApplyError, Command};
use crate::store::Store;

/// The revision to compact to at a tick: the one seen an interval earlier, unless the history is already
/// compacted that far (by an earlier tick or an `etcdctl compact`).
pub fn target(seen_earlier: i64, compacted: i64) -> Option<i64> {
    (seen_earlier > compacted).then_some(seen_earlier)
}

/// Compacts every `interval` (zero: never) until dropped.
pub async fn run(store: Store, interval: Duration) {
    if interval.is_zero() {
        return std::future::pending().await;
    }
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut seen = store.revision();
    loop {
        ticks.tick().await;
        if let Some(revision) = target(seen, store.compact_revision()) {
            match store.propose(Command::Compact { revision }).await.map(|applied| applied.outcome) {
                Ok(Ok(_)) => tracing::debug!(revision, "history compacted"),
                // Compacted further meanwhile: nothing to do.
                Ok(Err(ApplyError::Compacted)) => {}
                Ok(Err(e)) => tracing::warn!(revision, error = %e, "automatic compaction refused"),
                Err(e) => tracing::warn!(revision, error = %e, "automatic compaction failed; the next tick retries"),
            }
        }
        seen = store.revision();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_compacts_to_what_the_previous_one_saw_unless_already_there() {
        assert_eq!(target(120, 100), Some(120));
        assert_eq!(target(100, 100), None);
        assert_eq!(target(90, 100), None, "an etcdctl compact went further");
    }
}
