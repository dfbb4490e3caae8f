//! herd's coordination. Today: [`assign`], the pure function that decides
//! which worker owns which shard (Kafka topic-partition). Leader election,
//! membership, handoff and fencing build on it (issue 4).

pub mod assign;

pub use assign::{assign, Assignment, Shard, Worker};
