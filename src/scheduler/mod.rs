//! The scheduler (kube-scheduler's job), run on the Raft leader: it places every pod that has no node and
//! asks for the default scheduler, binding it through the API's `binding` subresource.
//!
//! - `model`: the plain facts of pods and nodes, taken out of the API objects.
//! - `snapshot`: nodes with what counts against them (bound and assumed pods).
//! - `filter` and `score`: upstream's filter and score plugins as pure functions; `placement`: one decision
//!   and the FailedScheduling message, worded as kube-scheduler words it.
//! - `queue`: pending pods, the assume cache and back-off, as a pure state machine.
//! - `events`: the Events and the PodScheduled condition.
//! - `informers` and `run`: the scheduler's view from the term's shared informers, and the future that carries
//!   the decisions out.
//!
//! Architecture invariant: the scheduler is an API client (the fenced in-process `kube::Client`): it reads
//! through watches and writes through the API only; decisions are pure functions of the informers' state.
//! Architecture invariant: a pod counts against its node from the moment it is assumed, so concurrent
//! bindings never overcommit a node; and the binding subresource refuses a pod already bound, so no pod is
//! ever bound twice, whatever the scheduler believes.

pub mod events;
pub mod filter;
pub mod informers;
pub mod model;
pub mod placement;
pub mod queue;
pub mod run;
pub mod score;
pub mod snapshot;

pub use run::prepare;
