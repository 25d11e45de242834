//! The leases of objects stored with a time to live (Events, `--event-ttl`), as upstream's API server writes
//! every Event with an etcd lease: when the lease expires, the leader revokes it and the store deletes the keys
//! attached to it.
//!
//! Granting one lease per write would put a grant in the log for every Event. Instead, as upstream's lease
//! manager does, the writes of a short window share one lease, granted with the TTL plus the window, so that no
//! object lives shorter than its TTL and none more than a window longer. The window is 5% of the TTL, at most
//! `EVENT_LEASE_REUSE_MS_MAX` (a minute for the default hour); one lease takes at most `EVENT_LEASE_WRITES_MAX`
//! writes, so that its expiry deletes a bounded number of keys in one revision.
//!
//! A lease is granted through the log (`Command::LeaseGrant`, its id chosen here, before proposing) and attached
//! to the object's put in the write's own compare-and-swap transaction (`Objects::put`). A lease can vanish
//! between its grant and a write (revoked through the etcd API, expired while the write waited): the
//! transaction then fails on the lease, changing nothing, and the write is made again with a fresh lease; it
//! neither fails for it nor goes without a lease. The decisions are `LeaseReuse`'s, a pure core over the time
//! it is given.

use std::time::Duration;

use tokio::time::Instant;

use crate::apiserver::errors::ApiError;
use crate::limits;
use crate::store::command::{ApplyError, Command, Outcome};
use crate::store::Store;

/// How long objects stored with a time to live live, and the leases that hold them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeToLive {
    /// How long an object lives, at least, after its last write.
    pub ttl: Duration,
    /// How long one lease is given to new writes after its grant was asked for.
    pub window: Duration,
    /// What the lease is granted with, in whole seconds: `ttl + window` rounded up, and no less than the
    /// shortest lease the store grants (a shorter TTL is raised to it, as etcd raises a lease's).
    pub lease_ttl_secs: i64,
}

impl TimeToLive {
    pub fn new(ttl: Duration) -> TimeToLive {
        let share = ttl / 100 * limits::EVENT_LEASE_REUSE_PERCENT;
        let window = share.min(Duration::from_millis(limits::EVENT_LEASE_REUSE_MS_MAX));
        let secs = ttl.saturating_add(window).as_millis().div_ceil(1000);
        let lease_ttl_secs =
            i64::try_from(secs).unwrap_or(i64::MAX).clamp(limits::LEASE_TTL_SECS_MIN, limits::LEASE_TTL_SECS_MAX);
        TimeToLive { ttl, window, lease_ttl_secs }
    }
}

/// The lease writes take now.
#[derive(Debug)]
struct Current {
    id: i64,
    /// When its grant was asked for: its lessor starts counting its TTL no earlier than that.
    asked: Instant,
    writes: usize,
}

/// Which lease a write with a time to live takes: the current one while it is within its window and has taken
/// fewer than `EVENT_LEASE_WRITES_MAX` writes, a fresh one otherwise. Pure: the caller gives the time.
#[derive(Debug)]
pub struct LeaseReuse {
    window: Duration,
    current: Option<Current>,
}

impl LeaseReuse {
    pub fn new(window: Duration) -> LeaseReuse {
        LeaseReuse { window, current: None }
    }

    /// The lease a write at `now` takes, counted against it; None when a fresh one must be granted. A lease
    /// taken within its window outlives the write by at least the TTL, since it was granted for the TTL plus the
    /// window from no later than `asked`.
    pub fn take(&mut self, now: Instant) -> Option<i64> {
        let current = self.current.as_mut()?;
        let within = current.asked.checked_add(self.window).is_some_and(|end| now < end);
        if !within || current.writes >= limits::EVENT_LEASE_WRITES_MAX {
            return None;
        }
        current.writes += 1;
        Some(current.id)
    }

    /// `id`, whose grant was asked for at `asked`, is the current lease, taken by the write it was granted for.
    pub fn granted(&mut self, id: i64, asked: Instant) {
        self.current = Some(Current { id, asked, writes: 1 });
    }

    /// A write found `id` gone: the next write takes a fresh lease (unless another already replaced it).
    pub fn vanished(&mut self, id: i64) {
        if self.current.as_ref().is_some_and(|c| c.id == id) {
            self.current = None;
        }
    }
}

/// The leases of one replica's writes with a time to live, shared by all its verbs (fenced or not).
#[derive(Debug)]
pub struct TtlLeases {
    lifetime: TimeToLive,
    /// A tokio Mutex: it is held across a grant's proposal, so that the writes that find no usable lease wait
    /// for one grant instead of each granting its own.
    reuse: tokio::sync::Mutex<LeaseReuse>,
}

impl TtlLeases {
    pub fn new(ttl: Duration) -> TtlLeases {
        let lifetime = TimeToLive::new(ttl);
        TtlLeases { lifetime, reuse: tokio::sync::Mutex::new(LeaseReuse::new(lifetime.window)) }
    }

    /// The lease a write takes now: the current one, or a fresh one granted through `store`.
    pub async fn lease(&self, store: &Store) -> Result<i64, ApiError> {
        let mut reuse = self.reuse.lock().await;
        let asked = Instant::now();
        if let Some(id) = reuse.take(asked) {
            return Ok(id);
        }
        let ttl = self.lifetime.lease_ttl_secs;
        for _ in 0..limits::TTL_LEASE_ATTEMPTS_MAX {
            let id = rand::random::<i64>().checked_abs().unwrap_or(1).max(1);
            let applied = store.propose(Command::LeaseGrant { id, ttl }).await?;
            match applied.outcome {
                Ok(Outcome::LeaseGranted { id, .. }) => {
                    reuse.granted(id, asked);
                    return Ok(id);
                }
                // Another lease holds this id: draw again.
                Err(ApplyError::LeaseExists) => continue,
                Err(e) => return Err(ApiError::Unavailable(format!("granting the lease of a write: {e}"))),
                Ok(other) => return Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
            }
        }
        Err(ApiError::Internal(format!("no free lease id in {} draws", limits::TTL_LEASE_ATTEMPTS_MAX)))
    }

    /// A write found `id` gone.
    pub async fn vanished(&self, id: i64) {
        self.reuse.lock().await.vanished(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_a_twentieth_of_the_ttl_up_to_a_minute_and_the_lease_covers_both() {
        let hour = TimeToLive::new(Duration::from_secs(3600));
        assert_eq!((hour.window, hour.lease_ttl_secs), (Duration::from_secs(60), 3660));
        let short = TimeToLive::new(Duration::from_secs(5));
        assert_eq!((short.window, short.lease_ttl_secs), (Duration::from_millis(250), 6), "rounded up");
        let minute = TimeToLive::new(Duration::from_secs(60));
        assert_eq!((minute.window, minute.lease_ttl_secs), (Duration::from_secs(3), 63));
        let tiny = TimeToLive::new(Duration::from_millis(500));
        assert_eq!(tiny.lease_ttl_secs, limits::LEASE_TTL_SECS_MIN, "raised to the shortest lease");
        let huge = TimeToLive::new(Duration::MAX);
        assert_eq!(huge.lease_ttl_secs, limits::LEASE_TTL_SECS_MAX, "no overflow");
    }

    #[test]
    fn writes_within_the_window_share_a_lease_and_a_later_one_takes_a_fresh_lease() {
        let start = Instant::now();
        let window = Duration::from_secs(60);
        let mut reuse = LeaseReuse::new(window);
        assert_eq!(reuse.take(start), None, "no lease yet");
        reuse.granted(7, start);
        assert_eq!(reuse.take(start + Duration::from_secs(1)), Some(7));
        assert_eq!(reuse.take(start + window - Duration::from_millis(1)), Some(7));
        assert_eq!(reuse.take(start + window), None, "the window is over");
        reuse.granted(8, start + window);
        assert_eq!(reuse.take(start + window + Duration::from_secs(1)), Some(8));
    }

    #[test]
    fn a_lease_takes_a_bounded_number_of_writes() {
        let start = Instant::now();
        let mut reuse = LeaseReuse::new(Duration::from_secs(60));
        reuse.granted(7, start);
        let shared = (1..limits::EVENT_LEASE_WRITES_MAX).filter(|_| reuse.take(start) == Some(7)).count();
        assert_eq!(shared + 1, limits::EVENT_LEASE_WRITES_MAX);
        assert_eq!(reuse.take(start), None, "full");
    }

    #[test]
    fn a_vanished_lease_is_replaced_and_a_stale_report_changes_nothing() {
        let start = Instant::now();
        let mut reuse = LeaseReuse::new(Duration::from_secs(60));
        reuse.granted(7, start);
        reuse.vanished(7);
        assert_eq!(reuse.take(start), None, "a fresh lease after one vanished, within its window too");
        reuse.granted(8, start);
        reuse.vanished(7);
        assert_eq!(reuse.take(start), Some(8), "a write that found an older lease gone keeps the new one");
    }

    #[test]
    fn a_window_of_zero_shares_nothing() {
        let start = Instant::now();
        let mut reuse = LeaseReuse::new(Duration::ZERO);
        reuse.granted(7, start);
        assert_eq!(reuse.take(start), None);
    }
}
