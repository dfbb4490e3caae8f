//! Which (producer, seq) a shard has already seen, so that a producer's
//! retry is not counted twice in the rollups. Pure: no I/O.
//!
//! Bounded: per producer, only the seqs within `horizon` of the highest one
//! seen are remembered (as ranges: a producer's seqs mostly come in order,
//! so this is one or a few ranges), and at most [`MAX_PRODUCERS`] producers
//! (the one seen longest ago is forgotten first). An event whose seq is
//! below its producer's horizon cannot be checked: it is counted, and
//! counted in [`Dedup::beyond_horizon`], never dropped silently.
//!
//! Deterministic: what it remembers depends only on the events fed to it,
//! in order, never on time. A shard's memory is checkpointed with its
//! offsets, as it was at the offset the next reader starts from (the start
//! of an open window, or the end of a closed one), so whoever reads the
//! shard next (a restart, a successor, a paused former owner waking up)
//! marks exactly the same events as repeats, and rewrites the same rollups.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Producers remembered per shard at most.
pub const MAX_PRODUCERS: usize = 10_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dedup {
    producers: BTreeMap<String, Seen>,
    /// Events fed so far (the clock that orders producers by last use).
    events: u64,
    /// Repeats found (not counted), since the shard's first checkpoint.
    pub repeats: u64,
    /// Events below their producer's horizon, counted unchecked.
    pub beyond_horizon: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Seen {
    /// Disjoint, ascending, half-open ranges of seen seqs.
    ranges: Vec<(u64, u64)>,
    last_used: u64,
}

/// What [`Dedup::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// First time seen: count it.
    New,
    /// Seen before: do not count it.
    Repeat,
    /// Too old to tell: counted, and reported.
    BeyondHorizon,
}

impl Dedup {
    /// Looks `seq` of `producer` up and remembers it; `horizon` is how many
    /// seqs below the producer's highest are remembered.
    pub fn check(&mut self, producer: &str, seq: u64, horizon: u64) -> Verdict {
        self.events += 1;
        let clock = self.events;
        let seen = match self.producers.get_mut(producer) {
            Some(s) => s,
            None => {
                if self.producers.len() >= MAX_PRODUCERS {
                    self.forget_oldest();
                }
                self.producers.entry(producer.to_owned()).or_default()
            }
        };
        seen.last_used = clock;
        let verdict = seen.check(seq, horizon);
        match verdict {
            Verdict::Repeat => self.repeats += 1,
            Verdict::BeyondHorizon => self.beyond_horizon += 1,
            Verdict::New => {}
        }
        verdict
    }

    fn forget_oldest(&mut self) {
        if let Some(oldest) =
            self.producers.iter().min_by_key(|(_, s)| s.last_used).map(|(p, _)| p.clone())
        {
            self.producers.remove(&oldest);
        }
    }

    /// The memory as checkpointed.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![FORMAT];
        out.extend(postcard::to_stdvec(self).expect("a dedup memory always serializes"));
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Dedup, DedupError> {
        match bytes.split_first() {
            None => Ok(Dedup::default()),
            Some((&FORMAT, rest)) => postcard::from_bytes(rest).map_err(DedupError::Corrupt),
            Some((&other, _)) => Err(DedupError::Format(other)),
        }
    }
}

const FORMAT: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[error("the checkpoint's de-duplication memory has format {0}, this herd reads format {FORMAT}; upgrade herd")]
    Format(u8),
    #[error("the checkpoint's de-duplication memory cannot be decoded")]
    Corrupt(#[source] postcard::Error),
}

impl Seen {
    fn check(&mut self, seq: u64, horizon: u64) -> Verdict {
        let high = self.ranges.last().map_or(0, |r| r.1);
        let low = high.saturating_sub(horizon);
        if seq < low {
            return Verdict::BeyondHorizon;
        }
        // The first range ending after seq.
        let i = self.ranges.partition_point(|r| r.1 <= seq);
        if i < self.ranges.len() && self.ranges[i].0 <= seq {
            return Verdict::Repeat;
        }
        // Insert [seq, seq + 1), joining neighbours.
        let joins_prev = i > 0 && self.ranges[i - 1].1 == seq;
        let joins_next = i < self.ranges.len() && self.ranges[i].0 == seq + 1;
        match (joins_prev, joins_next) {
            (true, true) => {
                self.ranges[i - 1].1 = self.ranges[i].1;
                self.ranges.remove(i);
            }
            (true, false) => self.ranges[i - 1].1 = seq + 1,
            (false, true) => self.ranges[i].0 = seq,
            (false, false) => self.ranges.insert(i, (seq, seq + 1)),
        }
        // Forget what fell below the horizon.
        let low = self.ranges.last().map_or(0, |r| r.1).saturating_sub(horizon);
        let gone = self.ranges.partition_point(|r| r.1 <= low);
        self.ranges.drain(..gone);
        if let Some(first) = self.ranges.first_mut() {
            first.0 = first.0.max(low);
        }
        Verdict::New
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_found_in_and_out_of_order() {
        let mut d = Dedup::default();
        for seq in [0, 1, 2, 5, 4, 3, 7] {
            assert_eq!(d.check("p", seq, 100), Verdict::New, "seq {seq}");
        }
        for seq in [0, 3, 5, 7] {
            assert_eq!(d.check("p", seq, 100), Verdict::Repeat, "seq {seq}");
        }
        assert_eq!(d.check("p", 6, 100), Verdict::New);
        assert_eq!(d.check("q", 0, 100), Verdict::New, "producers are apart");
        assert_eq!(d.producers["p"].ranges, vec![(0, 8)]);
        assert_eq!((d.repeats, d.beyond_horizon), (4, 0));
    }

    #[test]
    fn the_horizon_bounds_the_memory_and_is_reported() {
        let mut d = Dedup::default();
        for seq in 0..1000 {
            d.check("p", seq * 2, 10); // every other seq: many ranges
        }
        assert!(d.producers["p"].ranges.len() <= 6, "{:?}", d.producers["p"].ranges);
        assert_eq!(d.check("p", 1980, 10), Verdict::BeyondHorizon);
        assert_eq!(d.check("p", 1997, 10), Verdict::New);
        assert_eq!(d.check("p", 1998, 10), Verdict::Repeat);
        assert_eq!(d.beyond_horizon, 1);
    }

    #[test]
    fn the_oldest_producer_is_forgotten_first() {
        let mut d = Dedup::default();
        for p in 0..MAX_PRODUCERS {
            d.check(&format!("p{p}"), 0, 10);
        }
        d.check("p0", 1, 10); // p0 used again: p1 is now the oldest
        d.check("new", 0, 10);
        assert!(d.producers.contains_key("p0") && !d.producers.contains_key("p1"));
        assert_eq!(d.producers.len(), MAX_PRODUCERS);
    }

    #[test]
    fn a_checkpointed_memory_decides_as_the_original() {
        let mut a = Dedup::default();
        for seq in [0, 1, 2, 9] {
            a.check("p", seq, 100);
        }
        let mut b = Dedup::decode(&a.encode()).unwrap();
        assert_eq!(a, b);
        for seq in [2, 3, 9, 10] {
            assert_eq!(a.check("p", seq, 100), b.check("p", seq, 100));
        }
        assert_eq!(Dedup::decode(&[]).unwrap(), Dedup::default());
        assert!(matches!(Dedup::decode(&[7]), Err(DedupError::Format(7))));
    }
}
