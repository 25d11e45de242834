//! What each replica's build understands, and the cluster version: the lowest among the voters.
//!
//! Every replica advertises its build (`Advertised`): its version, the highest data dir format it reads and the
//! highest format of log entries and peer messages it decodes. Replicas ask each other with the peer `Version`
//! call, whose plain protobuf answer every later build can read; a build from before that call answers
//! UNIMPLEMENTED and counts as `BEFORE_ADVERTISING`. Each replica asks every member every
//! `VERSION_POLL_INTERVAL_MS` (`Store::poll_versions`).
//!
//! The cluster version is, field by field, the lowest the voters advertise, and unknown while some voter's is
//! (etcd's cluster version, Nomad's minimum server version). Architecture invariant (DESIGN.md 9): nothing of a
//! log or storage format above the cluster version's is written (`Store::cluster_allows`), so a change of
//! format switches on by itself once the last voter is upgraded. No build has changed a format yet: the
//! formats below are those of every build so far, and nothing calls the gate until one does.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::types::NodeId;
use super::{Member, Store};
use crate::limits;
use crate::proto::peer::VersionInfo;

/// The highest format of log entries and peer messages this build decodes.
pub const LOG_FORMAT: u32 = 1;
/// The highest data dir format this build reads (`cluster::server`'s `DATA_FORMAT`, which it checks).
pub const STORAGE_FORMAT: u32 = 2;

/// What a build from before versions were advertised counts as: the last such builds were 0.1.0, with the
/// formats above.
pub const BEFORE_ADVERTISING: Advertised = Advertised { binary: Semver(0, 1, 0), storage_format: 2, log_format: 1 };

/// The environment variable that makes a replica advertise another version than its build's (same formats):
/// how the rolling-upgrade test runs this binary as an older build. Not for production.
pub const ADVERTISED_VERSION_ENV: &str = "RAFTSMAN_ADVERTISED_VERSION";

/// A version `MAJOR.MINOR.PATCH`; a pre-release or build suffix is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Semver(pub u64, pub u64, pub u64);

impl std::str::FromStr for Semver {
    type Err = String;

    fn from_str(s: &str) -> Result<Semver, String> {
        let core = s.split(['-', '+']).next().unwrap_or_default();
        let parts: Vec<u64> = core.split('.').map(str::parse).collect::<Result<_, _>>().map_err(|_| bad(s))?;
        match parts[..] {
            [major, minor, patch] => Ok(Semver(major, minor, patch)),
            _ => Err(bad(s)),
        }
    }
}

fn bad(s: &str) -> String {
    format!("{s:?} is not a version MAJOR.MINOR.PATCH")
}

impl fmt::Display for Semver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// What a replica's build understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advertised {
    pub binary: Semver,
    pub storage_format: u32,
    pub log_format: u32,
}

impl Advertised {
    /// This build's.
    pub fn this_build() -> Advertised {
        let binary = env!("CARGO_PKG_VERSION").parse().expect("the package version is MAJOR.MINOR.PATCH");
        Advertised { binary, storage_format: STORAGE_FORMAT, log_format: LOG_FORMAT }
    }

    /// This build's, advertised as `binary` (`ADVERTISED_VERSION_ENV`).
    pub fn this_build_as(binary: &str) -> Result<Advertised, String> {
        Ok(Advertised { binary: binary.parse()?, ..Advertised::this_build() })
    }

    /// Field by field, the lower of the two.
    fn lowest(self, other: Advertised) -> Advertised {
        Advertised {
            binary: self.binary.min(other.binary),
            storage_format: self.storage_format.min(other.storage_format),
            log_format: self.log_format.min(other.log_format),
        }
    }

    pub fn to_proto(self) -> VersionInfo {
        VersionInfo {
            binary: self.binary.to_string(),
            storage_format: self.storage_format,
            log_format: self.log_format,
        }
    }

    pub fn from_proto(info: &VersionInfo) -> Result<Advertised, String> {
        Ok(Advertised {
            binary: info.binary.parse()?,
            storage_format: info.storage_format,
            log_format: info.log_format,
        })
    }
}

impl fmt::Display for Advertised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (storage format {}, log format {})", self.binary, self.storage_format, self.log_format)
    }
}

/// The cluster version: field by field the lowest of the voters' versions; None when there is no voter or
/// one's version is not known.
pub fn cluster_version(voters: impl IntoIterator<Item = Option<Advertised>>) -> Option<Advertised> {
    let mut lowest: Option<Advertised> = None;
    for version in voters {
        let version = version?;
        lowest = Some(lowest.map_or(version, |l| l.lowest(version)));
    }
    lowest
}

/// This replica's advertised version and what it last learned of every member's (its own included): a
/// member that did not answer has why.
pub struct Versions {
    own: Advertised,
    members: BTreeMap<NodeId, Result<Advertised, String>>,
}

impl Default for Versions {
    fn default() -> Versions {
        Versions { own: Advertised::this_build(), members: BTreeMap::new() }
    }
}

impl Store {
    /// Makes this replica advertise `version` instead of its build's (`ADVERTISED_VERSION_ENV`).
    pub fn advertise(&self, version: Advertised) {
        self.inner.versions.lock().expect("versions poisoned").own = version;
    }

    /// What this replica advertises.
    pub fn advertised(&self) -> Advertised {
        self.inner.versions.lock().expect("versions poisoned").own
    }

    /// Every member with what this replica last learned of its version (Err: not yet, or why not).
    pub fn member_versions(&self) -> Vec<(Member, Result<Advertised, String>)> {
        let members = self.members();
        let versions = self.inner.versions.lock().expect("versions poisoned");
        let known = |id| versions.members.get(&id).cloned().unwrap_or_else(|| Err("not asked yet".to_owned()));
        members
            .into_iter()
            .map(|m| {
                let version = known(m.id);
                (m, version)
            })
            .collect()
    }

    /// The cluster version as this replica knows it (`cluster_version` over the voters).
    pub fn cluster_version(&self) -> Option<Advertised> {
        cluster_version(self.member_versions().into_iter().filter(|(m, _)| !m.is_learner).map(|(_, v)| v.ok()))
    }

    /// Whether every voter is known to understand log entries and peer messages of `log_format`: nothing of a
    /// newer format than this allows is written.
    pub fn cluster_allows(&self, log_format: u32) -> bool {
        self.cluster_version().is_some_and(|v| v.log_format >= log_format)
    }

    /// Asks every member its version every `VERSION_POLL_INTERVAL_MS` until `shutdown` fires; logs when the
    /// cluster version changes.
    pub async fn poll_versions(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(limits::VERSION_POLL_INTERVAL_MS));
        let mut cluster = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let members = self.members();
            let (me, own, pool) = (self.member_id(), self.advertised(), &self.inner.pool);
            let asks = members.iter().map(|m| async move {
                let version = match m.id == me {
                    true => Ok(own),
                    false => pool.version(&m.peer_addr).await,
                };
                (m.id, version)
            });
            let learned: BTreeMap<_, _> = futures::future::join_all(asks).await.into_iter().collect();
            self.inner.versions.lock().expect("versions poisoned").members = learned;
            let now = self.cluster_version();
            if let Some(version) = now.filter(|_| now != cluster) {
                tracing::info!(cluster_version = %version, "the cluster version is the lowest the voters advertise");
                cluster = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(binary: &str, log_format: u32) -> Advertised {
        Advertised { binary: binary.parse().unwrap(), storage_format: 2, log_format }
    }

    #[test]
    fn versions_parse_and_order_as_numbers() {
        assert_eq!("0.10.2".parse::<Semver>(), Ok(Semver(0, 10, 2)));
        assert_eq!("1.2.3-rc.1+abc".parse::<Semver>(), Ok(Semver(1, 2, 3)));
        assert!("1.2".parse::<Semver>().is_err());
        assert!("1.x.3".parse::<Semver>().is_err());
        assert!(Semver(0, 10, 0) > Semver(0, 9, 9));
        let this = Advertised::this_build();
        assert!(this.binary > BEFORE_ADVERTISING.binary, "a build that advertises is newer than those that did not");
        assert_eq!(Advertised::from_proto(&this.to_proto()), Ok(this));
        assert_eq!(Advertised::this_build_as("0.1.0").unwrap().binary, Semver(0, 1, 0));
    }

    #[test]
    fn the_cluster_version_is_the_lowest_of_the_voters_and_unknown_while_one_is() {
        assert_eq!(cluster_version([Some(v("0.2.0", 2)), Some(v("0.1.5", 3))]), Some(v("0.1.5", 2)));
        assert_eq!(cluster_version([Some(v("0.2.0", 2)), None]), None);
        assert_eq!(cluster_version([]), None);
    }
}
