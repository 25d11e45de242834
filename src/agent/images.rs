//! Images before containers, as upstream's kubelet handles `imagePullPolicy`: an image on the node is used
//! (with `Always`, it is pulled first); a missing one is pulled, unless the policy is `Never`
//! (`ErrImageNeverPull`). A failed pull shows as `ErrImagePull` with the runtime's words, then, while the
//! pull waits to be tried again (10 s doubling to 5 min, per image), as `ImagePullBackOff`; a container
//! waiting for its image is not started (`pods.rs` takes `waiting` into the plan).
//!
//! `Images` records the outcome of each image's last try; `waiting` (pure) says what a container shows from
//! it at a time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::pods::Waiting;
use super::runtime::{PullPolicy, Runtime};
use crate::limits;

/// How an image's last try ended, when it did not give the image.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// Not on the node, and the policy forbids pulling it.
    NeverPull,
    /// The pull failed at `at` (the `failures`-th time in a row), with the runtime's words.
    Pull { at: jiff::Timestamp, failures: u32, message: String },
}

/// The images whose last try failed.
#[derive(Default)]
pub struct Images {
    failed: Mutex<HashMap<String, Failure>>,
    /// When the images that may not be pulled were last looked for.
    rechecked: Mutex<Option<std::time::Instant>>,
}

/// The pause before an image whose pull failed `failures` times in a row is pulled again.
pub fn pull_backoff(failures: u32) -> Duration {
    let secs = limits::AGENT_IMAGE_BACKOFF_SECS_MIN.saturating_mul(1 << failures.saturating_sub(1).min(16));
    Duration::from_secs(secs.min(limits::AGENT_IMAGE_BACKOFF_SECS_MAX))
}

/// What a container waiting for `image` shows, given its last failure, at `now`; `None` once it may be tried
/// again.
pub fn waiting(image: &str, failure: Option<&Failure>, now: jiff::Timestamp) -> Option<Waiting> {
    match failure? {
        Failure::NeverPull => Some(Waiting {
            reason: "ErrImageNeverPull",
            message: Some(format!("Container image {image:?} is not present with pull policy of Never")),
        }),
        Failure::Pull { at, failures, message } => {
            let since = Duration::try_from(now.duration_since(*at)).unwrap_or(Duration::ZERO);
            if since >= pull_backoff(*failures) {
                return None;
            }
            // The failure itself first, for a sync or two, then the back-off it waits.
            if since < Duration::from_millis(2 * limits::AGENT_SYNC_INTERVAL_MS_MAX) {
                return Some(Waiting { reason: "ErrImagePull", message: Some(message.clone()) });
            }
            Some(Waiting { reason: "ImagePullBackOff", message: Some(format!("Back-off pulling image {image:?}")) })
        }
    }
}

impl Images {
    /// The images whose last try failed.
    pub fn failures(&self) -> HashMap<String, Failure> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Looks again, at most every `AGENT_IMAGE_RECHECK_MS`, for the images that may not be pulled: one that
    /// has appeared on the node (loaded by hand) is no longer waited for.
    pub async fn recheck<R: Runtime>(&self, runtime: &R) {
        {
            let mut rechecked = self.rechecked.lock().unwrap_or_else(|p| p.into_inner());
            let every = Duration::from_millis(limits::AGENT_IMAGE_RECHECK_MS);
            if rechecked.is_some_and(|at| at.elapsed() < every) {
                return;
            }
            *rechecked = Some(std::time::Instant::now());
        }
        let never: Vec<String> =
            self.failures().into_iter().filter(|(_, f)| *f == Failure::NeverPull).map(|(image, _)| image).collect();
        for image in never {
            if runtime.image_present(&image).await.unwrap_or(false) {
                self.failed.lock().unwrap_or_else(|p| p.into_inner()).remove(&image);
            }
        }
    }

    /// Makes sure `image` is on the node as `policy` asks; `false` (and the failure recorded) when it is not.
    pub async fn ensure<R: Runtime>(&self, runtime: &R, image: &str, policy: PullPolicy) -> bool {
        if !runtime.runs_images() {
            return true;
        }
        let present = match runtime.image_present(image).await {
            Ok(present) => present,
            Err(e) => {
                self.fail(image, format!("inspecting image {image:?}: {e}"));
                return false;
            }
        };
        let pull = match policy {
            PullPolicy::Never if !present => {
                self.failed.lock().unwrap_or_else(|p| p.into_inner()).insert(image.to_owned(), Failure::NeverPull);
                return false;
            }
            PullPolicy::Never | PullPolicy::IfNotPresent => !present,
            PullPolicy::Always => true,
        };
        if pull {
            tracing::info!(image, "agent: pulling an image");
            let waited = Duration::from_secs(limits::AGENT_IMAGE_PULL_TIMEOUT_SECS);
            let pulled = tokio::time::timeout(waited, runtime.pull_image(image)).await;
            let error = match pulled {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("the pull did not finish within {waited:?}")),
            };
            if let Some(error) = error {
                tracing::warn!(image, %error, "agent: pulling an image failed");
                self.fail(image, format!("failed to pull image {image:?}: {error}"));
                return false;
            }
        }
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).remove(image);
        true
    }

    fn fail(&self, image: &str, message: String) {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        let failures = match failed.get(image) {
            Some(Failure::Pull { failures, .. }) => failures + 1,
            _ => 1,
        };
        failed.insert(image.to_owned(), Failure::Pull { at: jiff::Timestamp::now(), failures, message });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn a_failed_pull_shows_as_such_then_as_back_off_until_it_may_be_tried_again() {
        let failure = Failure::Pull { at: at(0), failures: 1, message: "failed to pull image \"x\": refused".into() };
        assert_eq!(waiting("x", Some(&failure), at(0)).unwrap().reason, "ErrImagePull");
        let backing_off = waiting("x", Some(&failure), at(5)).unwrap();
        assert_eq!(backing_off.reason, "ImagePullBackOff");
        assert_eq!(backing_off.message.as_deref(), Some("Back-off pulling image \"x\""));
        assert_eq!(waiting("x", Some(&failure), at(10)), None);
        let third = Failure::Pull { at: at(0), failures: 3, message: String::new() };
        assert!(waiting("x", Some(&third), at(39)).is_some());
        assert_eq!(waiting("x", Some(&third), at(40)), None);
        assert_eq!(pull_backoff(20), Duration::from_secs(300));
        assert_eq!(waiting("x", None, at(0)), None);
        let never = waiting("x", Some(&Failure::NeverPull), at(1000)).unwrap();
        assert_eq!(never.reason, "ErrImageNeverPull");
        assert_eq!(never.message.as_deref(), Some("Container image \"x\" is not present with pull policy of Never"));
    }
}
