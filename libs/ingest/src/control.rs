//! The protocol between the control plane ([`crate::ownership`], which
//! follows the coordinator) and the data plane ([`crate::pipeline`]): which
//! shards to read, and what the pipeline reports about them on its own.
//! Neither side sees the other's internals; the data plane does not know
//! ZooKeeper exists.

use tokio::sync::oneshot;

use crate::shards::{Shard, Stopped};
use crate::source::StartAt;
use herd_sink::dedup::Dedup;

/// What the pipeline is told about shards.
#[derive(Debug)]
pub enum Control {
    /// Read the shard from `at`, checkpointing under `epoch` (already
    /// claimed), with the de-duplication memory checkpointed there.
    Start { shard: Shard, epoch: i64, at: StartAt, memory: Dedup },
    /// Stop reading the shard; `done` answers once what was read is checkpointed.
    Stop { shard: Shard, done: oneshot::Sender<Stopped> },
}

/// What the pipeline reports about shards on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardEvent {
    /// Cassandra refused a checkpoint: a newer grant holds the shard. The
    /// pipeline no longer checkpoints it; the owner should stop it.
    Fenced { shard: Shard, epoch: i64, reason: String },
    /// Kafka refused to start reading the shard; it is not running.
    StartFailed { shard: Shard, epoch: i64, reason: String },
}
