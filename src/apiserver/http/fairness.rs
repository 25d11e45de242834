//! Per-user fairness, so that one tenant cannot starve the others: each user's requests are rate-limited by a
//! token bucket (`API_USER_REQUESTS_PER_SEC`, bursts up to `API_USER_REQUEST_BURST`) and each user holds at
//! most `API_USER_WATCHES_MAX` watches open on a replica; beyond either, 429 with `Retry-After`, nothing done.
//! Members of `system:masters` (the admin, the replicas, the leader's own components) are exempt, as
//! upstream's priority and fairness exempts them. It runs after authentication, so the user is the one whose
//! credentials were shown (a request impersonating another still spends its own requester's budget).
//!
//! The buckets are per replica; a user's budget across the cluster is the replicas' sum.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use futures::StreamExt;

use super::instrument;
use super::rest::{error_response, KubeApi};
use crate::apiserver::errors::ApiError;
use crate::limits;
use crate::security::authn::{User, MASTERS_GROUP};
use crate::security::rbac::Attributes;

/// A token bucket: `tokens` of a most `burst`, refilled at `rate` a second since `at`.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes one token at `now`; when none is left, how long until one is, in whole seconds (at least 1).
    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> Result<(), u64> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(((1.0 - self.tokens) / rate).ceil().max(1.0) as u64)
    }

    fn full(&self, now: Instant, rate: f64, burst: f64) -> bool {
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate >= burst
    }
}

/// The users' buckets and open watches on this replica.
#[derive(Debug, Default)]
pub struct Fairness {
    buckets: Mutex<HashMap<String, Bucket>>,
    watches: Arc<Mutex<HashMap<String, usize>>>,
}

impl Fairness {
    /// Spends one of `user`'s requests at `now`, or says in how many seconds to try again.
    fn admit(&self, user: &str, now: Instant) -> Result<(), u64> {
        let (rate, burst) = (limits::API_USER_REQUESTS_PER_SEC as f64, limits::API_USER_REQUEST_BURST as f64);
        let mut buckets = self.buckets.lock().expect("fairness buckets poisoned");
        if buckets.len() >= limits::API_USER_BUCKETS_MAX && !buckets.contains_key(user) {
            // A full bucket is the same as none: forget those.
            buckets.retain(|_, b| !b.full(now, rate, burst));
        }
        let bucket = buckets.entry(user.to_owned()).or_insert(Bucket { tokens: burst, at: now });
        bucket.take(now, rate, burst)
    }

    /// Holds one of `user`'s watches until the returned slot is dropped; None when it holds the most already.
    fn watch(&self, user: &str) -> Option<WatchSlot> {
        let mut watches = self.watches.lock().expect("fairness watches poisoned");
        let open = watches.entry(user.to_owned()).or_insert(0);
        if *open >= limits::API_USER_WATCHES_MAX {
            return None;
        }
        *open += 1;
        Some(WatchSlot { user: user.to_owned(), watches: self.watches.clone() })
    }
}

/// One open watch of a user.
struct WatchSlot {
    user: String,
    watches: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut watches = self.watches.lock().expect("fairness watches poisoned");
        if let Some(open) = watches.get_mut(&self.user) {
            *open -= 1;
            if *open == 0 {
                watches.remove(&self.user);
            }
        }
    }
}

/// The middleware: 429 for a user over its rate or its watches; a watch's slot is held by its response body.
pub(super) async fn limit(
    State(api): State<Arc<KubeApi>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(user) = request.extensions().get::<User>().filter(|u| !u.in_group(MASTERS_GROUP)).cloned() else {
        return next.run(request).await;
    };
    let fairness = api.fairness();
    if let Err(seconds) = fairness.admit(&user.name, Instant::now()) {
        let message = format!("too many requests from user {:?}; try again in {seconds} s", user.name);
        return error_response(&ApiError::TooManyRequests(message));
    }
    let watching = matches!(&*instrument::asked(&request), Attributes::Resource(r) if r.verb == "watch");
    if !watching {
        return next.run(request).await;
    }
    let Some(slot) = fairness.watch(&user.name) else {
        let message =
            format!("user {:?} already holds {} watches on this replica", user.name, limits::API_USER_WATCHES_MAX);
        return error_response(&ApiError::TooManyRequests(message));
    };
    let response = next.run(request).await;
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &slot;
            chunk
        }))
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = Bucket { tokens: 3.0, at: start };
        for _ in 0..3 {
            assert_eq!(bucket.take(start, 2.0, 3.0), Ok(()));
        }
        assert_eq!(bucket.take(start, 2.0, 3.0), Err(1));
        // Half a second at 2 a second is one more.
        assert_eq!(bucket.take(start + Duration::from_millis(500), 2.0, 3.0), Ok(()));
        assert!(bucket.take(start + Duration::from_millis(500), 2.0, 3.0).is_err());
        assert!(bucket.full(start + Duration::from_secs(10), 2.0, 3.0));
    }

    #[test]
    fn users_have_budgets_of_their_own() {
        let fairness = Fairness::default();
        let now = Instant::now();
        for _ in 0..limits::API_USER_REQUEST_BURST {
            assert!(fairness.admit("greedy", now).is_ok());
        }
        assert!(fairness.admit("greedy", now).is_err());
        assert!(fairness.admit("patient", now).is_ok());
    }

    #[test]
    fn watch_slots_are_given_back_when_dropped() {
        let fairness = Fairness::default();
        let held: Vec<WatchSlot> = (0..limits::API_USER_WATCHES_MAX).map(|_| fairness.watch("w").unwrap()).collect();
        assert!(fairness.watch("w").is_none());
        assert!(fairness.watch("other").is_some());
        drop(held);
        assert!(fairness.watch("w").is_some());
    }
}
