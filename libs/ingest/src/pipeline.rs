//! The ingest pipeline: three stages with typed messages between them.
//!
//! ```text
//!   Kafka --> reader --Chunk--> writer --ToCommitter::Chunk--> committer --> checkpoints
//!               |                                                 ^
//!               +--------ToCommitter::{Start, Release}------------+
//! ```
//!
//! - [`crate::reader`]: consumes the running shards, decodes, cuts chunks in
//!   the shape of the storage layout, follows [`Control`] and the live
//!   configuration;
//! - [`crate::writer`]: stores each chunk (retries, dead letters), a bounded
//!   number at once: the backpressure that pauses consumption;
//! - [`crate::committer`]: checkpoints a chunk's offsets once it and every
//!   earlier chunk are done, fenced by the grant's epoch.
//!
//! Which shards run is decided outside, through [`Control`]: `Start` after a
//! grant was claimed, `Stop` to release one (it answers once everything read
//! from the shard is checkpointed; see [`crate::shards`]).
//!
//! Shutdown (the token is cancelled): the reader stops consuming and hands
//! over what it read, the writer drains, the committer writes the last
//! checkpoints.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use herd_sink::fencing::Fencing;
use herd_sink::rows::BatchLimits;
use herd_sink::{Layout, Store};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::chunk::{Chunk, ChunkBuilder, Limits};
use crate::committer::{Committer, ToCommitter};
use crate::control::{Control, ShardEvent};
use crate::dead_letter::DeadLetterSink;
use crate::live::Live;
use crate::metrics as m;
use crate::reader::{Cutter, Reader};
use crate::settings::IngestSettings;
use crate::source::KafkaSource;
use crate::window::{WindowBuilder, WINDOW_LIMITS};
use crate::writer::Writer;

/// Totals of one run, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub messages: u64,
    pub events_written: u64,
    pub dead_letters: u64,
    pub chunks_committed: u64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error("a write failed after the retry budget and --on-write-failure is stop; offsets after the last stored chunk were not committed, so those messages are read again on restart")]
    WriteFailed(#[source] crate::writer::WriteFailed),
}

pub struct Pipeline {
    pub settings: IngestSettings,
    pub source: KafkaSource,
    /// The writer of the keyspace's layout.
    pub store: Store,
    pub dead_letters: DeadLetterSink,
    /// Checkpoints: the session and prepared statements of herd-sink's fencing.
    pub session: Arc<scylla::client::session::Session>,
    pub fencing: Fencing,
    pub control: mpsc::Receiver<Control>,
    pub events: mpsc::UnboundedSender<ShardEvent>,
    /// The live configuration; see [`crate::live`].
    pub live: tokio::sync::watch::Receiver<Live>,
}

impl Pipeline {
    /// Runs until `shutdown` is cancelled (then drains and returns Ok) or a
    /// write fails under the `stop` policy.
    pub async fn run(self, shutdown: CancellationToken) -> Result<Summary, PipelineError> {
        let Pipeline {
            settings,
            source,
            store,
            dead_letters,
            session,
            fencing,
            control,
            events,
            live,
        } = self;
        m::describe();
        let bucket_ms = store.settings().bucket_ms;
        let cutter = match store.layout() {
            Layout::Rows => Cutter::Rows(ChunkBuilder::new(Limits {
                max_rows: settings.batch_max_rows.get(),
                max_bytes: settings.batch_max_bytes.get(),
                linger: settings.linger,
                batches: BatchLimits {
                    max_rows: settings.cql_batch_max_rows.get(),
                    max_bytes: settings.cql_batch_max_bytes.get(),
                    bucket_ms,
                },
            })),
            Layout::Blocks => {
                Cutter::Blocks(WindowBuilder::new(WINDOW_LIMITS, bucket_ms, settings.block_flush))
            }
        };
        let slots = Arc::new(Semaphore::new(settings.max_chunks_in_flight.get()));
        let writer = Arc::new(Writer::new(settings.clone(), store, dead_letters));
        // Stops the reader and the writer when a chunk fails under the stop policy.
        let failed = CancellationToken::new();
        let (chunk_tx, chunk_rx) = mpsc::channel::<Chunk>(1);
        let (done_tx, done_rx) = mpsc::unbounded_channel::<ToCommitter>();
        let messages = AtomicU64::new(0);

        let reader = Reader {
            settings: &settings,
            source: &source,
            cutter,
            writer: writer.clone(),
            control,
            events: events.clone(),
            live,
            messages: &messages,
        };
        let committer = Committer { session: &session, fencing: &fencing, events };
        let ((), (), result) = tokio::join!(
            reader.run(chunk_tx, done_tx.clone(), shutdown, failed.clone()),
            writer.clone().run(chunk_rx, slots, done_tx, failed.clone()),
            committer.run(done_rx, failed),
        );
        let chunks_committed = result.map_err(PipelineError::WriteFailed)?;
        Ok(Summary {
            messages: messages.load(Ordering::Relaxed),
            events_written: writer.written.load(Ordering::Relaxed),
            dead_letters: writer.dead_lettered.load(Ordering::Relaxed),
            chunks_committed,
        })
    }
}
