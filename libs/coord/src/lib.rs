//! herd's coordination:
//! - [`assign`]: the pure function that decides which worker owns which
//!   shard (Kafka topic-partition);
//! - [`election`]: one leader among the coordinators, through ZooKeeper, with
//!   an epoch that grows with every new leader and leader-only writes;
//! - [`membership`]: the ZooKeeper layout, worker registration and the
//!   published assignment.
//!
//! Membership, handoff and fencing build on these (issue 4).

pub mod assign;
pub mod election;
pub mod membership;

pub use assign::{assign, Assignment, Shard, Worker};
