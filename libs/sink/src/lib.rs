//! herd's Cassandra side (works on ScyllaDB too).
//!
//! - [`settings`]: keyspace, replication, bucket size, TTL and write-timestamp
//!   policy, validated without I/O.
//! - [`schema`]: versioned migrations that create the keyspace and the
//!   time-series table, and guard settings that must never change.
//! - [`fencing`]: per-shard checkpoints that only the current owner (the
//!   highest epoch) can write, enforced by lightweight transactions.
//! - [`layout`]: the storage-layout seam: [`Write`]s in, a [`Store`] per
//!   layout, chosen per keyspace and pinned;
//!   - [`rows`]: one row per event, unlogged batches within one partition;
//!   - [`blocks`]: compressed per-series blocks under deterministic keys,
//!     in the format of [`block`];
//! - [`read`]: points of a series back, in either layout;
//! - writes are idempotent (deterministic keys and write timestamps), and
//!   their errors are classified as transient (retry) or permanent
//!   (dead-letter or stop).
//!
//! The data model and the queries a user runs are in `libs/sink/README.md`.

pub mod block;
pub mod blocks;
pub mod dedup;
mod error;
pub mod fencing;
pub mod layout;
pub mod read;
pub mod rollup;
pub mod rows;
pub mod schema;
pub mod settings;
pub mod write;

pub use error::{CqlError, FenceError, SinkError, WriteError};
pub use layout::{Layout, Store, Write};
pub use rows::RowWriter;
pub use settings::{Replication, SinkArgs, SinkSettings, WriteTimestamp};
pub use write::partition_key;

/// Prepares the writer of the keyspace's layout.
pub async fn store(
    session: std::sync::Arc<scylla::client::session::Session>,
    settings: SinkSettings,
) -> Result<Store, SinkError> {
    Ok(match settings.layout {
        Layout::Rows => Store::Rows(RowWriter::prepare(session, settings).await?),
        Layout::Blocks => Store::Blocks(blocks::BlockWriter::prepare(session, settings).await?),
    })
}
