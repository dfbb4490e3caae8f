//! Dynamic configuration: a versioned document in ZooKeeper that workers
//! watch and apply live, without restarts.
//!
//! - [`keys`]: the table of live keys (scope, unit, default, range,
//!   meaning), which everything else reads.
//! - the document itself ([`ConfigDoc`]), pure: global defaults plus
//!   per-topic and per-shard overrides, parsing, validation, `key=value`
//!   edits, diffs and the effective settings of a shard.
//! - [`store`]: the document in ZooKeeper, its history, compare-and-set
//!   writes and watches; the only I/O here.

mod doc;
pub mod keys;
pub mod store;

pub use doc::{diff, parse_shard_key, ConfigDoc, EffectiveShard, GlobalParams, ShardParams};
pub use herd_config::InvalidSetting;
pub use keys::{LiveKey, OnWriteFailure, LIVE_KEYS};
pub use store::{
    config_path, history, history_dir, read, version_doc, watch, write, HistoryEntry, StoreError,
    Stored,
};
