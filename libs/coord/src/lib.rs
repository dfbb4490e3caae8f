//! herd's coordination:
//! - [`assign`]: the pure function that decides which worker owns which
//!   shard (Kafka topic-partition);
//! - [`election`]: one leader among the coordinators, through ZooKeeper, with
//!   an epoch that grows with every new leader and leader-only writes;
//! - [`membership`]: the ZooKeeper layout, worker registration, the
//!   published assignment and the nodes of shards being held;
//! - [`handoff`]: the pure step from the wanted assignment to the published
//!   one, so that a shard is granted only once its holder released it.
//!
//! - [`leader`]: the coordinator's control loop (stand, lead, publish the
//!   assignment, hand over), run by herd-coordinator;
//! - [`dynconf`]: the live configuration document, its validation and edits;
//! - [`schema`]: schema migrations one process at a time, under a lock;
//! - [`jobs`]: maintenance jobs (repair, snapshot, cleanup) under locks,
//!   and their history;
//! - [`health`]: the leader's watch over the Cassandra nodes, and the
//!   repair of a node back after the hint window.
//!
//! Fencing at the database lives in `herd-sink` (`fencing`).

pub mod access;
pub mod assign;
pub mod dynconf;
pub mod election;
pub mod handoff;
pub mod health;
pub mod jobs;
pub mod leader;
pub mod membership;
pub mod schema;

pub use handoff::{AssignmentDoc, Holder, ShardGrant};

pub use assign::{assign, Assignment, Shard, Worker};
