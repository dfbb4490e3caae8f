//! The storage-layout seam: how events are laid out in Cassandra. The
//! pipeline hands herd-sink [`Write`]s and does not care what they become.
//!
//! - `rows` ([`crate::rows`]): one row per event in `points`;
//! - `blocks` ([`crate::blocks`]): compressed per-series blocks in `blocks`,
//!   one per (series, metric) and offset window of a shard.
//!
//! A keyspace's layout is chosen at its first migration and pinned in
//! `herd_settings`, like the bucket width.

use std::fmt;
use std::str::FromStr;

use herd_model::Event;

use crate::blocks::{Block, BlockWriter};
use crate::rows::{RowBatch, RowWriter};
use crate::WriteError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Layout {
    /// One row per event. The default: every CQL tool can read it as it is,
    /// and it needs no offset windows (see the README for when to choose blocks).
    #[default]
    Rows,
    /// Compressed blocks per (series, metric) and offset window.
    Blocks,
}

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Rows => "rows",
            Layout::Blocks => "blocks",
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Layout {
    type Err = herd_config::InvalidSetting;
    fn from_str(s: &str) -> Result<Layout, herd_config::InvalidSetting> {
        match s {
            "rows" => Ok(Layout::Rows),
            "blocks" => Ok(Layout::Blocks),
            other => Err(herd_config::InvalidSetting::new(
                "layout",
                other,
                "is not a layout; expected rows or blocks",
            )),
        }
    }
}

/// One request's worth of events, in the shape of a layout. Every event
/// carries a tag of the caller's (where it came from).
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Rows(RowBatch),
    /// Boxed: a block's key and column headers are six times a row
    /// batch's, and writes move through queues.
    Block(Box<Block>),
}

impl Write {
    /// The events written, for dead letters: borrowed from a row batch,
    /// made from a block's columns.
    pub fn events(&self) -> std::borrow::Cow<'_, [Event]> {
        match self {
            Write::Rows(b) => std::borrow::Cow::Borrowed(&b.events),
            Write::Block(b) => std::borrow::Cow::Owned(b.events()),
        }
    }

    /// How many events the write holds.
    pub fn len(&self) -> usize {
        match self {
            Write::Rows(b) => b.events.len(),
            Write::Block(b) => b.points.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The series written (one per write in both layouts).
    pub fn series(&self) -> &str {
        match self {
            Write::Rows(b) => b.events.first().map_or("", |e| e.series.as_str()),
            Write::Block(b) => &b.key.series,
        }
    }

    /// Event time of the oldest event.
    pub fn min_ts(&self) -> Option<i64> {
        match self {
            Write::Rows(b) => b.events.iter().map(|e| e.ts).min(),
            Write::Block(b) => b.points.min_ts(),
        }
    }

    /// Events stored for the first time by this write: a block rewritten
    /// with more events counts only the new ones.
    pub fn fresh(&self) -> usize {
        match self {
            Write::Rows(b) => b.events.len(),
            Write::Block(b) => b.fresh as usize,
        }
    }

    pub fn tags(&self) -> &[u32] {
        match self {
            Write::Rows(b) => &b.tags,
            Write::Block(b) => &b.tags,
        }
    }
}

/// The writer of a keyspace's layout; cheap to clone.
#[derive(Clone)]
pub enum Store {
    Rows(RowWriter),
    Blocks(BlockWriter),
}

impl Store {
    pub fn layout(&self) -> Layout {
        match self {
            Store::Rows(_) => Layout::Rows,
            Store::Blocks(_) => Layout::Blocks,
        }
    }

    pub fn settings(&self) -> &crate::SinkSettings {
        match self {
            Store::Rows(w) => w.settings(),
            Store::Blocks(w) => w.settings(),
        }
    }

    /// Writes one unit; idempotent, so retrying it (or a replay) is safe.
    pub async fn write(&self, write: &Write) -> Result<(), WriteError> {
        match (self, write) {
            (Store::Rows(w), Write::Rows(batch)) => {
                let refs: Vec<&Event> = batch.events.iter().collect();
                w.write_partition(&refs).await
            }
            (Store::Blocks(w), Write::Block(block)) => w.write(block).await,
            (store, write) => Err(WriteError::WrongLayout {
                write: match write {
                    Write::Rows(_) => "rows",
                    Write::Block(_) => "blocks",
                },
                store: store.layout().as_str(),
            }),
        }
    }
}
