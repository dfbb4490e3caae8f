//! The shards a worker runs, and their checkpoints: pure, no I/O.
//!
//! A shard runs under the epoch of its grant. Offsets released by the
//! [`crate::commit::CommitSequencer`] become *pending* checkpoints, written
//! to Cassandra conditioned on that epoch (herd-sink's fencing). Stopping a
//! shard is a *release*: it completes once every message read from the shard
//! before the stop is checkpointed, or at once if the shard was fenced (a
//! newer owner claimed it: nothing more may be written for it).

use std::collections::HashMap;

use crate::chunk::CommitOffset;

pub use herd_config::Shard;

/// How a stop ended, reported to whoever asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// Everything read was checkpointed; the next offset to read (None: the
    /// shard had no checkpoint and nothing was read).
    Checkpointed(Option<i64>),
    /// A newer owner holds the shard; the rest was not checkpointed (the new
    /// owner reads it again, and writes are idempotent).
    Fenced,
    /// The shard was not running.
    NotRunning,
}

struct State {
    epoch: i64,
    /// The last checkpoint accepted by Cassandra (or claimed from it).
    committed: Option<i64>,
    /// The highest offset ready to checkpoint, above `committed`, with the
    /// start of the window open there and the de-duplication memory.
    pending: Option<CommitOffset>,
    /// Set once the shard is being stopped: checkpointing `until` completes the stop.
    release: Option<Option<i64>>,
}

/// Generic over `T`, what is handed back when a release completes (a reply channel).
pub struct Book<T> {
    shards: HashMap<Shard, State>,
    waiting: HashMap<Shard, T>,
    done: Vec<(Shard, T, Stopped)>,
}

impl<T> Default for Book<T> {
    fn default() -> Self {
        Book { shards: HashMap::new(), waiting: HashMap::new(), done: Vec::new() }
    }
}

impl<T> Book<T> {
    /// The shard runs from `from` (its checkpoint) under `epoch`.
    pub fn start(&mut self, shard: Shard, epoch: i64, from: Option<i64>) {
        self.shards.insert(shard, State { epoch, committed: from, pending: None, release: None });
    }

    /// Offsets whose messages are all stored or dead-lettered.
    pub fn ready(&mut self, offsets: &[CommitOffset]) {
        for o in offsets {
            if let Some(s) = self.shards.get_mut(&o.shard) {
                if s.committed.is_none_or(|c| o.next > c)
                    && s.pending.as_ref().is_none_or(|p| o.next > p.next)
                {
                    let appended_ms = crate::commit::oldest(
                        s.pending.as_ref().and_then(|p| p.appended_ms),
                        o.appended_ms,
                    );
                    s.pending = Some(CommitOffset { appended_ms, ..o.clone() });
                }
            }
        }
    }

    /// The checkpoints to write now: the shard, its epoch, and the offset
    /// to commit (with the window open there and the memory).
    pub fn to_commit(&self) -> Vec<(Shard, i64, CommitOffset)> {
        let mut out: Vec<_> = self
            .shards
            .iter()
            .filter_map(|(k, s)| s.pending.clone().map(|p| (k.clone(), s.epoch, p)))
            .collect();
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out
    }

    /// Cassandra accepted `next` for `shard` under `epoch`.
    pub fn committed(&mut self, shard: &Shard, epoch: i64, next: i64) {
        let Some(s) = self.shards.get_mut(shard) else { return };
        if s.epoch != epoch {
            return;
        }
        if s.committed.is_none_or(|c| next > c) {
            s.committed = Some(next);
        }
        if s.pending.as_ref().is_some_and(|p| p.next <= next) {
            s.pending = None;
        }
        self.settle(shard);
    }

    /// Cassandra refused a checkpoint of `shard` under `epoch`: a newer owner
    /// claimed it. Returns true if that fenced a running shard.
    pub fn fenced(&mut self, shard: &Shard, epoch: i64) -> bool {
        if self.shards.get(shard).is_none_or(|s| s.epoch != epoch) {
            return false;
        }
        self.shards.remove(shard);
        if let Some(token) = self.waiting.remove(shard) {
            self.done.push((shard.clone(), token, Stopped::Fenced));
        }
        true
    }

    /// Stops `shard` once everything up to `until` (the offset after the
    /// last message read from it; None: nothing read) is checkpointed.
    pub fn release(&mut self, shard: Shard, until: Option<i64>, token: T) {
        match self.shards.get_mut(&shard) {
            Some(s) => {
                s.release = Some(until);
                self.waiting.insert(shard.clone(), token);
                self.settle(&shard);
            }
            None => self.done.push((shard, token, Stopped::NotRunning)),
        }
    }

    fn settle(&mut self, shard: &Shard) {
        let Some(s) = self.shards.get(shard) else { return };
        let Some(until) = s.release else { return };
        let covered = match until {
            None => true,
            Some(u) => s.committed.is_some_and(|c| c >= u),
        };
        if covered {
            let committed = s.committed;
            self.shards.remove(shard);
            if let Some(token) = self.waiting.remove(shard) {
                self.done.push((shard.clone(), token, Stopped::Checkpointed(committed)));
            }
        }
    }

    /// Releases completed since the last call.
    pub fn take_done(&mut self) -> Vec<(Shard, T, Stopped)> {
        std::mem::take(&mut self.done)
    }

    pub fn is_settled(&self) -> bool {
        self.shards.values().all(|s| s.pending.is_none())
    }

    /// Shards still being stopped, with what they wait for.
    pub fn releasing(&self) -> usize {
        self.waiting.len()
    }

    pub fn epoch(&self, shard: &Shard) -> Option<i64> {
        self.shards.get(shard).map(|s| s.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: i32) -> Shard {
        Shard::new("t", p)
    }

    fn off(p: i32, next: i64) -> CommitOffset {
        CommitOffset {
            shard: Shard::new("t", p),
            next,
            window_start: None,
            dedup: None,
            appended_ms: None,
        }
    }

    #[test]
    fn a_pending_checkpoint_keeps_the_oldest_append_time_until_written() {
        let mut b = Book::<()>::default();
        b.start(key(0), 7, None);
        let at = |next, ms| CommitOffset { appended_ms: Some(ms), ..off(0, next) };
        b.ready(&[at(10, 300)]);
        b.ready(&[at(20, 500)]);
        assert_eq!(b.to_commit(), vec![(key(0), 7, at(20, 300))]);
        b.committed(&key(0), 7, 20);
        b.ready(&[at(30, 900)]);
        assert_eq!(b.to_commit(), vec![(key(0), 7, at(30, 900))], "written: starts over");
    }

    #[test]
    fn checkpoints_only_move_forward_and_coalesce() {
        let mut b = Book::<()>::default();
        b.start(key(0), 7, Some(100));
        b.ready(&[off(0, 90)]);
        assert!(b.to_commit().is_empty(), "behind the claimed checkpoint");
        b.ready(&[off(0, 120), off(0, 150), off(1, 5)]);
        assert_eq!(
            b.to_commit(),
            vec![(key(0), 7, off(0, 150))],
            "the highest, only for running shards"
        );
        b.committed(&key(0), 7, 120);
        assert_eq!(
            b.to_commit(),
            vec![(key(0), 7, off(0, 150))],
            "an older answer does not clear a newer pending one"
        );
        b.committed(&key(0), 7, 150);
        assert!(b.to_commit().is_empty() && b.is_settled());
    }

    #[test]
    fn a_release_completes_once_everything_read_is_checkpointed() {
        let mut b = Book::default();
        b.start(key(0), 7, None);
        b.ready(&[off(0, 10)]);
        b.release(key(0), Some(25), "reply");
        assert!(b.take_done().is_empty(), "offsets up to 25 were read but not checkpointed");
        b.committed(&key(0), 7, 10);
        assert!(b.take_done().is_empty());
        b.ready(&[off(0, 25)]);
        b.committed(&key(0), 7, 25);
        assert_eq!(b.take_done(), vec![(key(0), "reply", Stopped::Checkpointed(Some(25)))]);
        assert_eq!(b.epoch(&key(0)), None, "stopped");
        b.ready(&[off(0, 30)]);
        assert!(b.to_commit().is_empty(), "a stopped shard checkpoints nothing more");
    }

    #[test]
    fn a_release_with_nothing_read_is_immediate_and_an_unknown_shard_is_not_running() {
        let mut b = Book::default();
        b.start(key(0), 7, Some(3));
        b.release(key(0), None, 1);
        b.release(key(9), None, 2);
        assert_eq!(
            b.take_done(),
            vec![(key(0), 1, Stopped::Checkpointed(Some(3))), (key(9), 2, Stopped::NotRunning)]
        );
    }

    #[test]
    fn fencing_stops_the_shard_and_completes_its_release() {
        let mut b = Book::default();
        b.start(key(0), 7, None);
        b.ready(&[off(0, 10)]);
        assert!(!b.fenced(&key(0), 6), "a refusal for an older epoch of this shard is stale news");
        b.release(key(0), Some(10), "reply");
        assert!(b.fenced(&key(0), 7));
        assert_eq!(b.take_done(), vec![(key(0), "reply", Stopped::Fenced)]);
        assert!(b.to_commit().is_empty());
        // Restarted under a newer grant: an answer for the old epoch changes nothing.
        b.start(key(0), 9, Some(10));
        b.committed(&key(0), 7, 50);
        b.ready(&[off(0, 20)]);
        assert_eq!(b.to_commit(), vec![(key(0), 9, off(0, 20))]);
    }
}
