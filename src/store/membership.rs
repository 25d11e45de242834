//! Membership changes, as etcd's Cluster API makes them (`MemberAdd`, `MemberPromote`, `MemberRemove`) and as
//! `raftsman server --join` asks for them: a member joins as a learner, becomes a voter once its log has caught
//! up with the leader's, and leaves. Only the leader changes the membership; other replicas forward.
//!
//! Invariants:
//! - A new member's id is random, and never an id the membership holds; a member keeps its id whatever its
//!   address becomes. A join retried (the same peer address) gets the same id back.
//! - A learner is promoted only once its log matches the leader's within `PROMOTE_LAG_ENTRIES_MAX`: a voter
//!   far behind would count toward quorums it cannot help make.
//! - A voter is removed only if the voters left still form a quorum among the replicas the leader hears from
//!   (etcd's strict reconfiguration check): a remove never stops the cluster from committing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, Precondition, RaftMetrics, ServerState};
use tokio::time::Instant;

use super::network::{LeaderRequest, LeaderResponse};
use super::types::*;
use super::{unexpected, LeaderAt, Store, StoreError};
use crate::limits;

impl Store {
    /// Adds a member at `peer_addr` named `name` (empty: it says its name when it joins, as after etcdctl's
    /// `member add`), as a learner unless `learner` is false; or returns the member already at that address.
    pub async fn add_member(&self, name: String, peer_addr: String, learner: bool) -> Result<NodeId, StoreError> {
        match self.change_membership(LeaderRequest::AddMember { name, peer_addr, learner }).await? {
            LeaderResponse::MemberAdded(id) => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    /// Makes the learner `id` a voter, if its log has caught up with the leader's.
    pub async fn promote_member(&self, id: NodeId) -> Result<(), StoreError> {
        self.change_membership(LeaderRequest::PromoteMember(id)).await.map(drop)
    }

    /// Takes the member `id` out of the cluster, if the voters left can still commit.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), StoreError> {
        self.change_membership(LeaderRequest::RemoveMember(id)).await.map(drop)
    }

    /// Sends a membership request to the leader (this replica, or forwarded), waiting for one up to
    /// `LEADER_WAIT_MS`.
    async fn change_membership(&self, req: LeaderRequest) -> Result<LeaderResponse, StoreError> {
        let deadline = Self::leader_deadline();
        loop {
            match self.leader(deadline).await? {
                LeaderAt::Local => match self.change_membership_as_leader(&req).await? {
                    Some(answer) => return Ok(answer),
                    None => self.wait_a_little(deadline).await?,
                },
                LeaderAt::Remote(addr) => match self.forward(&addr, req.clone()).await? {
                    LeaderResponse::NotLeader(_) => self.wait_a_little(deadline).await?,
                    answer => return Ok(answer),
                },
            }
        }
    }

    /// A membership request, answered while this replica leads (None otherwise). Changes are made one at a
    /// time: each is decided on the effective membership and proposed only while that is still the effective
    /// one; a request that meets another change in progress waits for it, within `WRITE_TIMEOUT_MS`.
    pub(super) async fn change_membership_as_leader(
        &self,
        req: &LeaderRequest,
    ) -> Result<Option<LeaderResponse>, StoreError> {
        let deadline = Instant::now() + Duration::from_millis(limits::WRITE_TIMEOUT_MS);
        loop {
            if self.leading_term().is_none() {
                return Ok(None);
            }
            let m = self.raft().metrics().borrow_watched().clone();
            let (change, answer) = match self.decide(req, &m)? {
                Decision::Answer(answer) => return Ok(Some(answer)),
                Decision::NotMembership => return Ok(None),
                Decision::Change(change, answer) => (change, answer),
            };
            let based_on = Precondition::LastMembershipLogId { last_membership_log_id: *m.membership_config.log_id() };
            let change = self.raft().change_membership_if(change, false, [based_on]);
            match tokio::time::timeout_at(deadline, change).await {
                Err(_) => return Err(StoreError::Unavailable("etcdserver: request timed out".into())),
                Ok(Ok(_)) => return Ok(Some(answer)),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => return Ok(None),
                Ok(Err(RaftError::APIError(e))) if another_change_first(&e) => {
                    tracing::debug!(error = %e, "a membership change waits for the one before it");
                    if Instant::now() + Duration::from_millis(limits::HEARTBEAT_INTERVAL_MS) >= deadline {
                        return Err(StoreError::Unavailable(
                            "etcdserver: request timed out, another membership change is in progress".into(),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(limits::HEARTBEAT_INTERVAL_MS)).await;
                }
                Ok(Err(RaftError::APIError(e))) => return Err(StoreError::Invalid(format!("etcdserver: {e}"))),
                Ok(Err(RaftError::Fatal(e))) => return Err(StoreError::Stopped(e.to_string())),
            }
        }
    }

    /// What a membership request asks of the membership `m` holds: nothing more (it is answered already), a
    /// change, or nothing this module handles; an error if the request is refused.
    fn decide(&self, req: &LeaderRequest, m: &RaftMetrics<TypeConfig>) -> Result<Decision, StoreError> {
        let membership = m.membership_config.membership();
        let decision = match req {
            LeaderRequest::AddMember { name, peer_addr, learner } => {
                let node = RaftNode { name: name.clone(), peer_addr: peer_addr.clone() };
                let at_address = membership.nodes().find(|(_, n)| n.peer_addr == *peer_addr);
                if let Some((id, existing)) = at_address {
                    let answer = LeaderResponse::MemberAdded(*id);
                    return match (existing.name.as_str(), name.as_str()) {
                        (had, asked) if had == asked || asked.is_empty() => Ok(Decision::Answer(answer)),
                        // Added by address alone: the member names itself when it joins.
                        ("", _) => Ok(Decision::Change(ChangeMembers::SetNodes(BTreeMap::from([(*id, node)])), answer)),
                        (had, _) => Err(StoreError::Invalid(format!(
                            "etcdserver: member {id:x} ({had}) has the peer address {peer_addr} already"
                        ))),
                    };
                }
                if !name.is_empty() && membership.nodes().any(|(_, n)| n.name == *name) {
                    return Err(StoreError::Invalid(format!("etcdserver: a member named {name:?} exists already")));
                }
                let id = new_member_id(|id| membership.get_node(&id).is_some());
                tracing::info!(member = format!("{id:x}"), %name, %peer_addr, learner, "adding a member");
                let change = match learner {
                    true => ChangeMembers::AddNodes(BTreeMap::from([(id, node)])),
                    false => ChangeMembers::AddVoters(BTreeMap::from([(id, node)])),
                };
                Decision::Change(change, LeaderResponse::MemberAdded(id))
            }
            LeaderRequest::PromoteMember(id) => {
                if membership.voter_ids().any(|v| v == *id) {
                    return Err(StoreError::Invalid("etcdserver: can only promote a learner member".into()));
                }
                if membership.get_node(id).is_none() {
                    return Err(StoreError::Invalid("etcdserver: member not found".into()));
                }
                let matched = m.replication.as_ref().and_then(|r| r.get(id).cloned().flatten()).map_or(0, |l| l.index);
                let last = m.last_log_index.unwrap_or(0);
                if last.saturating_sub(matched) > limits::PROMOTE_LAG_ENTRIES_MAX {
                    return Err(StoreError::Invalid(format!(
                        "etcdserver: can only promote a learner member which is in sync with leader (it has {matched} \
                         of {last} entries)"
                    )));
                }
                tracing::info!(member = format!("{id:x}"), "promoting a learner to voter");
                Decision::Change(ChangeMembers::AddVoterIds(BTreeSet::from([*id])), LeaderResponse::MembershipChanged)
            }
            LeaderRequest::RemoveMember(id) => {
                if membership.get_node(id).is_none() {
                    return Err(StoreError::Invalid("etcdserver: member not found".into()));
                }
                let change = match membership.voter_ids().any(|v| v == *id) {
                    true => {
                        let heard = self.followers_heard();
                        let alive = |v: &NodeId| {
                            *v == self.inner.id
                                || heard
                                    .get(v)
                                    .is_some_and(|ago| *ago < Duration::from_millis(limits::ELECTION_TIMEOUT_MS_MAX))
                        };
                        let left: Vec<NodeId> = membership.voter_ids().filter(|v| v != id).collect();
                        if left.is_empty() || left.iter().filter(|v| alive(v)).count() < left.len() / 2 + 1 {
                            return Err(StoreError::Invalid(
                                "etcdserver: re-configuration failed due to not enough started members".into(),
                            ));
                        }
                        ChangeMembers::RemoveVoters(BTreeSet::from([*id]))
                    }
                    false => ChangeMembers::RemoveNodes(BTreeSet::from([*id])),
                };
                tracing::info!(member = format!("{id:x}"), "removing a member");
                Decision::Change(change, LeaderResponse::MembershipChanged)
            }
            _ => Decision::NotMembership,
        };
        Ok(decision)
    }

    /// Whether this replica is a voter of the membership it has applied.
    pub fn is_voter(&self) -> bool {
        let m = self.raft().metrics().borrow_watched().clone();
        let voter = m.membership_config.membership().voter_ids().any(|id| id == self.inner.id);
        voter
    }

    /// On a replica that joined as a learner: asks the leader to promote it once its log has caught up, until
    /// it is a voter or `shutdown` fires.
    pub async fn promote_when_caught_up(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if self.is_voter() {
                return;
            }
            // The leader judges whether the log has caught up. A learner that has applied nothing has not, nor
            // has one whose log does not list it yet (the entry that added it is still to come); a replica the
            // membership no longer lists (removed) never asks.
            let ready = {
                let m = self.raft().metrics().borrow_watched().clone();
                let listed = m.membership_config.membership().get_node(&self.inner.id).is_some();
                m.state == ServerState::Learner && m.last_applied.is_some() && listed
            };
            if ready {
                match self.promote_member(self.inner.id).await {
                    Ok(()) => tracing::info!("this replica is a voter now"),
                    Err(e) => tracing::debug!(error = %e, "not promoted yet"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(limits::PROMOTE_RETRY_MS)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// What the leader does for a membership request.
enum Decision {
    /// Nothing to change: the answer holds already.
    Answer(LeaderResponse),
    /// Commit this change (both steps of a joint change), then answer.
    Change(ChangeMembers<NodeId, RaftNode>, LeaderResponse),
    /// Not a membership request.
    NotMembership,
}

/// Whether a change was refused only because another came first: one still to commit, one committed between
/// the decision and the proposal, or a new leader's first entry still to commit. Decided again, it may go.
fn another_change_first(e: &ClientWriteError<TypeConfig>) -> bool {
    matches!(
        e,
        ClientWriteError::PreconditionFailed(_)
            | ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_) | ChangeMembershipError::UncommittedLeaderLog(_)
            )
    )
}

/// A random member id that is not zero ("no member" in etcd's API) and that `taken` says is free.
fn new_member_id(taken: impl Fn(NodeId) -> bool) -> NodeId {
    loop {
        let id: NodeId = rand::random();
        if id != 0 && !taken(id) {
            return id;
        }
    }
}
