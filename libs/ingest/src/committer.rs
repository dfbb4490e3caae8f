//! The committer stage: checkpoints. In: [`ToCommitter`] messages (the
//! reader's shard changes and the writer's finished chunks, on one channel
//! so that they arrive in causal order). Out: fenced checkpoints in
//! Cassandra, [`ShardEvent::Fenced`] reports, and the answers to stops.
//!
//! A chunk's offsets become a checkpoint only once it and every earlier
//! chunk are done ([`CommitSequencer`]), so a checkpoint never passes an
//! event that is not stored or dead-lettered. Checkpoints are conditioned on
//! the epoch of the shard's grant; a refused one means a newer owner holds
//! the shard.

use std::time::Duration;

use herd_sink::fencing::{FenceError, Fencing};
use scylla::client::session::Session;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::chunk::CommitOffset;
use crate::commit::CommitSequencer;
use crate::control::ShardEvent;
use crate::metrics as m;
use crate::shards::{Book, Shard, Stopped};
use crate::writer::WriteFailed;

/// What the committer hears, in causal order: a shard's start is always
/// seen before its first chunk, and its release after its last one.
#[derive(Debug)]
pub enum ToCommitter {
    /// Chunk `id` is done: its offsets, or why the pipeline must stop.
    Chunk(u64, Result<Vec<CommitOffset>, WriteFailed>),
    /// The shard runs under `epoch` from its checkpoint (None: none yet).
    Start(Shard, i64, Option<i64>),
    /// The shard stopped after reading up to `until`; answer once that is checkpointed.
    Release(Shard, Option<i64>, oneshot::Sender<Stopped>),
}

pub struct Committer<'a> {
    pub session: &'a Session,
    pub fencing: &'a Fencing,
    pub events: mpsc::UnboundedSender<ShardEvent>,
}

impl Committer<'_> {
    /// Runs until every sender of `inbox` is gone, then writes the last
    /// checkpoints (the binary bounds how long). Returns the chunks
    /// committed, or the write failure that stops the pipeline (after
    /// cancelling `failed`).
    pub async fn run(
        self,
        mut inbox: mpsc::UnboundedReceiver<ToCommitter>,
        failed: CancellationToken,
    ) -> Result<u64, WriteFailed> {
        let mut sequencer = CommitSequencer::default();
        let mut book: Book<oneshot::Sender<Stopped>> = Book::default();
        let mut chunks = 0;
        let mut retry_after_failure = false;
        loop {
            // Wait for news; after a failed checkpoint, retry within 500 ms anyway.
            let first = if retry_after_failure {
                match tokio::time::timeout(Duration::from_millis(500), inbox.recv()).await {
                    Ok(m) => m.map(Some),
                    Err(_) => Some(None),
                }
            } else {
                inbox.recv().await.map(Some)
            };
            let Some(first) = first else { break };
            // Take everything already queued, so that checkpoints coalesce.
            let mut batch: Vec<ToCommitter> = first.into_iter().collect();
            while let Ok(m) = inbox.try_recv() {
                batch.push(m);
            }
            for m in batch {
                match m {
                    ToCommitter::Chunk(id, Ok(offsets)) => {
                        book.ready(&sequencer.complete(id, offsets));
                        chunks += 1;
                    }
                    ToCommitter::Chunk(_, Err(reason)) => {
                        failed.cancel();
                        return Err(reason);
                    }
                    ToCommitter::Start(key, epoch, from) => book.start(key, epoch, from),
                    ToCommitter::Release(key, until, done) => book.release(key, until, done),
                }
            }
            retry_after_failure = !self.checkpoint(&mut book).await;
            for (_, done, stopped) in book.take_done() {
                let _ = done.send(stopped);
            }
        }
        // Everything is drained: write the last checkpoints.
        let mut attempt = 0;
        while !self.checkpoint(&mut book).await {
            tokio::time::sleep(backoff::delay(
                attempt,
                Duration::from_millis(100),
                Duration::from_secs(2),
                rand::random(),
            ))
            .await;
            attempt += 1;
        }
        for (_, done, stopped) in book.take_done() {
            let _ = done.send(stopped);
        }
        Ok(chunks)
    }

    /// Writes every pending checkpoint, concurrently. Returns false if some
    /// could not be written (Cassandra unavailable): they stay pending.
    async fn checkpoint(&self, book: &mut Book<oneshot::Sender<Stopped>>) -> bool {
        let pending = book.to_commit();
        if pending.is_empty() {
            return true;
        }
        let results = futures::future::join_all(pending.iter().map(|(shard, epoch, at)| {
            self.fencing.commit(
                self.session,
                shard,
                *epoch,
                at.next,
                at.window_start,
                at.dedup.as_deref(),
            )
        }))
        .await;
        let mut all = true;
        let now = herd_config::now_ms();
        for ((key, epoch, at), result) in pending.into_iter().zip(results) {
            let next = at.next;
            match result {
                Ok(()) => {
                    metrics::counter!(m::CHECKPOINTS).increment(1);
                    if let Some(appended) = at.appended_ms {
                        metrics::histogram!(m::APPEND_TO_CHECKPOINT)
                            .record((now - appended).max(0) as f64 / 1000.0);
                    }
                    book.committed(&key, epoch, next);
                }
                Err(e @ FenceError::Fenced { .. }) => {
                    metrics::counter!(m::CHECKPOINTS_FENCED).increment(1);
                    if book.fenced(&key, epoch) {
                        tracing::warn!(topic = %key.topic, partition = key.partition, epoch, error = &e as &dyn std::error::Error, "checkpoint refused: a newer owner holds the shard; it is no longer checkpointed here");
                        let _ = self.events.send(ShardEvent::Fenced {
                            shard: key.clone(),
                            epoch,
                            reason: herd_config::chain(&e),
                        });
                    }
                }
                Err(e) => {
                    all = false;
                    tracing::warn!(topic = %key.topic, partition = key.partition, error = &e as &dyn std::error::Error, "checkpoint failed; retrying (the shard's offsets stay behind meanwhile)");
                }
            }
        }
        all
    }
}
