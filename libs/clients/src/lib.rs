//! Clients for the three servers herd depends on, built from validated
//! [`herd_config::Endpoints`], and health probes over them.
//!
//! - [`kafka`]: producer, consumer and admin clients (rdkafka).
//! - [`cassandra`]: one CQL session (scylla driver, default session settings,
//!   so full schema metadata and schema agreement stay on).
//! - [`zookeeper`]: a session with a bounded connect, and a close that waits
//!   until the server has really ended the session (so ephemeral nodes go).
//! - [`nodetool`]: Cassandra's nodetool against one node, for maintenance jobs.
//! - [`probe`]: read-only checks that each server answers, for start-up health
//!   checks and `herdctl doctor`.
//!
//! Every connect has a deadline; every error says what to check.

pub mod cassandra;
pub mod kafka;
pub mod nodetool;
pub mod probe;
pub mod zookeeper;

mod error;

pub use error::ClientError;
