//! Committing offsets in order: pure, no I/O.
//!
//! Chunks are written concurrently and may finish in any order, but an offset
//! may only be committed once every message before it is stored. So a
//! chunk's offsets are released only when it and every earlier chunk are done.

use std::collections::BTreeMap;

use crate::chunk::CommitOffset;

/// The older of two append times, either possibly unknown.
pub fn oldest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[derive(Default)]
pub struct CommitSequencer {
    /// The oldest chunk not yet done.
    next: u64,
    done: BTreeMap<u64, Vec<CommitOffset>>,
}

impl CommitSequencer {
    /// Records chunk `id` as done; returns the offsets now safe to commit
    /// (one per partition, the highest), empty if an earlier chunk is pending.
    pub fn complete(&mut self, id: u64, offsets: Vec<CommitOffset>) -> Vec<CommitOffset> {
        debug_assert!(
            id >= self.next && !self.done.contains_key(&id),
            "chunk {id} completed twice"
        );
        self.done.insert(id, offsets);
        // Per partition, the highest offset, with the window open there.
        let mut ready: BTreeMap<crate::shards::Shard, CommitOffset> = BTreeMap::new();
        while let Some(offsets) = self.done.remove(&self.next) {
            for o in offsets {
                match ready.get_mut(&o.shard) {
                    Some(at) if o.next > at.next => {
                        let oldest = oldest(at.appended_ms, o.appended_ms);
                        *at = CommitOffset { appended_ms: oldest, ..o };
                    }
                    Some(at) => at.appended_ms = oldest(at.appended_ms, o.appended_ms),
                    None => {
                        ready.insert(o.shard.clone(), o);
                    }
                }
            }
            self.next += 1;
        }
        ready.into_values().collect()
    }

    /// Chunks done but waiting for an earlier one.
    pub fn waiting(&self) -> usize {
        self.done.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::Shard;

    fn off(partition: i32, next: i64) -> CommitOffset {
        CommitOffset {
            shard: Shard::new("t", partition),
            next,
            window_start: None,
            dedup: None,
            appended_ms: None,
        }
    }

    #[test]
    fn the_highest_offset_keeps_its_open_window() {
        let mut s = CommitSequencer::default();
        let open = |next, start| CommitOffset { window_start: Some(start), ..off(0, next) };
        let ready = s.complete(0, vec![open(10, 4), off(0, 12), open(11, 12)]);
        assert_eq!(ready, vec![off(0, 12)], "12 starts a window");
        assert_eq!(s.complete(1, vec![open(15, 12)]), vec![open(15, 12)]);
    }

    #[test]
    fn a_coalesced_offset_keeps_the_oldest_append_time_it_covers() {
        let mut s = CommitSequencer::default();
        let at = |next, ms| CommitOffset { appended_ms: Some(ms), ..off(0, next) };
        assert!(s.complete(1, vec![at(20, 500)]).is_empty());
        assert_eq!(s.complete(0, vec![at(10, 300), off(1, 4)]), vec![at(20, 300), off(1, 4)]);
        assert_eq!(oldest(None, Some(7)), Some(7));
    }

    #[test]
    fn releases_only_a_complete_prefix() {
        let mut s = CommitSequencer::default();
        assert!(s.complete(1, vec![off(0, 20)]).is_empty(), "chunk 0 still pending");
        assert!(s.complete(2, vec![off(1, 5)]).is_empty());
        assert_eq!(s.waiting(), 2);
        let ready = s.complete(0, vec![off(0, 10), off(1, 3)]);
        assert_eq!(ready, vec![off(0, 20), off(1, 5)], "highest per partition of chunks 0..=2");
        assert_eq!(s.waiting(), 0);
        assert_eq!(s.complete(3, vec![off(0, 21)]), vec![off(0, 21)]);
    }

    #[test]
    fn any_completion_order_commits_the_same_final_offsets() {
        // Chunk i covers partition i % 3 up to offset 10 * (i + 1).
        let chunks: Vec<Vec<CommitOffset>> =
            (0..6).map(|i| vec![off(i % 3, 10 * (i as i64 + 1))]).collect();
        for order in [[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0], [2, 0, 4, 1, 5, 3]] {
            let mut s = CommitSequencer::default();
            let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
            let mut done = std::collections::BTreeSet::new();
            for id in order {
                done.insert(id);
                for o in s.complete(id as u64, chunks[id].clone()) {
                    // Never past a chunk that is not done.
                    let first_pending = (0..6).find(|i| !done.contains(i)).unwrap_or(6);
                    let limit = (0..first_pending)
                        .filter(|i| i % 3 == o.shard.partition as usize)
                        .map(|i| 10 * (i as i64 + 1))
                        .max();
                    assert_eq!(Some(o.next), limit, "order {order:?}");
                    let prev = committed.insert(o.shard.partition, o.next);
                    assert!(prev.is_none_or(|p| p < o.next), "offsets only move forward");
                }
            }
            assert_eq!(committed, BTreeMap::from([(0, 40), (1, 50), (2, 60)]), "order {order:?}");
        }
    }
}
