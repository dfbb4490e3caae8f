//! herd's Cassandra side (works on ScyllaDB too).
//!
//! - [`settings`]: keyspace, replication, bucket size, TTL and write-timestamp
//!   policy, validated without I/O.
//! - [`schema`]: versioned migrations that create the keyspace and the
//!   time-series table, and guard settings that must never change.
//! - [`fencing`]: per-shard checkpoints that only the current owner (the
//!   highest epoch) can write, enforced by lightweight transactions.
//! - [`writer`]: idempotent writes: deterministic primary key and write
//!   timestamp, unlogged batches only within one partition, and errors
//!   classified as transient (retry) or permanent (dead-letter or stop).
//!
//! The data model and the queries a user runs are in `libs/sink/README.md`.

pub mod fencing;
pub mod schema;
pub mod settings;
pub mod writer;

pub use settings::{Replication, SinkArgs, SinkSettings, WriteTimestamp};
pub use writer::{partition_key, WriteError, Writer};

/// Failures of schema set-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    #[error("schema migration {version} ({name}) failed: {detail}; check the Cassandra log and that the keyspace's replication can be met")]
    Migration {
        version: i32,
        name: &'static str,
        detail: String,
    },
    #[error("keyspace {keyspace} was created with {name} = {stored}, but this process is configured with {configured}; {name} cannot change once data exists (it decides where rows are stored); use --{flag} {stored} or another keyspace")]
    SettingChanged {
        keyspace: String,
        name: &'static str,
        flag: &'static str,
        stored: String,
        configured: String,
    },
    #[error("preparing the insert statement failed: {0}; check that the schema migrations ran")]
    Prepare(String),
}
