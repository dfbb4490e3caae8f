//! Rollups: count, sum, min, max, first, last and a quantile sketch of a
//! (series, metric) per time bucket of a resolution (1 minute, 1 hour, ...),
//! computed by the workers at ingestion. Pure: no I/O.
//!
//! A rollup is stored as *partials*, never as a running total: each block
//! (one shard's offset window of one series and metric, see
//! [`crate::blocks`]) carries the partials of the points it holds, in its
//! own row, written in the same single-row insert. A replay rewrites the
//! same block with the same partials, a rewrite with more messages replaces
//! both, so a partial is exactly as idempotent as its block: there are no
//! counters and no read-modify-write. Readers merge the partials of a
//! bucket: counts and sums add, minima and maxima combine, first and last
//! are the earliest and latest by (event time, producer, seq), sketches
//! merge.
//!
//! Only the points a block marks as counted enter its partials: the worker
//! marks an event that repeats a (producer, seq) it has already seen (a
//! producer's retry) as not counted, see [`crate::dedup`].
//!
//! Quantiles come from DDSketch (the `sketches-ddsketch` crate, which the
//! metrics crates herd already uses depend on): a quantile read from a
//! rollup is within [`SKETCH_ALPHA`] (1 %) relative error of the value at
//! that rank in the data, merged or not.

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};

use crate::block::Points;

/// The relative accuracy of every rollup's quantiles.
pub const SKETCH_ALPHA: f64 = 0.01;

/// Bins a sketch grows to at most (DDSketch's default). With 1 % accuracy
/// that covers values over about 17 orders of magnitude on each side of
/// zero before the lowest bins collapse.
const SKETCH_MAX_BINS: u32 = 2048;

/// Values closer to zero than this count as zero in the sketch.
const SKETCH_MIN_VALUE: f64 = 1.0e-9;

fn sketch() -> DDSketch {
    DDSketch::new(Config::new(SKETCH_ALPHA, SKETCH_MAX_BINS, SKETCH_MIN_VALUE))
}

/// The earliest or latest point of a partial, with what orders ties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    pub ts: i64,
    pub producer: String,
    pub seq: u64,
    pub value: f64,
}

impl Edge {
    fn key(&self) -> (i64, &str, u64) {
        (self.ts, &self.producer, self.seq)
    }
}

/// The aggregate of some points of one (series, metric) in one bucket of
/// one resolution.
#[derive(Clone, Serialize, Deserialize)]
pub struct Partial {
    /// The resolution, in seconds.
    pub resolution_s: u32,
    /// Start of the bucket, ms since the epoch.
    pub bucket: i64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first: Edge,
    pub last: Edge,
    sketch: DDSketch,
}

impl std::fmt::Debug for Partial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partial")
            .field("resolution_s", &self.resolution_s)
            .field("bucket", &self.bucket)
            .field("count", &self.count)
            .field("sum", &self.sum)
            .field("min", &self.min)
            .field("max", &self.max)
            .field("first", &self.first)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Partial {
    fn new(resolution_s: u32, bucket: i64, first: Edge) -> Partial {
        Partial {
            resolution_s,
            bucket,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            last: first.clone(),
            first,
            sketch: sketch(),
        }
    }

    fn add(&mut self, edge: Edge) {
        let v = edge.value;
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sketch.add(v);
        if edge.key() < self.first.key() {
            self.first = edge;
        } else if edge.key() > self.last.key() {
            self.last = edge;
        }
    }

    /// Adds another partial of the same resolution and bucket.
    pub fn merge(&mut self, other: &Partial) {
        debug_assert_eq!((self.resolution_s, self.bucket), (other.resolution_s, other.bucket));
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if other.first.key() < self.first.key() {
            self.first = other.first.clone();
        }
        if other.last.key() > self.last.key() {
            self.last = other.last.clone();
        }
        // Same configuration on both sides: merging cannot fail.
        self.sketch.merge(&other.sketch).expect("rollup sketches share one configuration");
    }

    pub fn avg(&self) -> f64 {
        self.sum / self.count as f64
    }

    /// The q-quantile (0 to 1), within [`SKETCH_ALPHA`] relative error.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.sketch.quantile(q).ok().flatten()
    }
}

/// The bucket of a resolution that `ts` falls in.
pub fn bucket_of(ts: i64, resolution_s: u32) -> i64 {
    let width = i64::from(resolution_s) * 1000;
    ts - ts.rem_euclid(width)
}

/// The partials of the counted points, one per (resolution, bucket),
/// ordered by resolution then bucket.
pub fn partials(points: &Points, counted: &[bool], resolutions: &[u32]) -> Vec<Partial> {
    let mut out: Vec<Partial> = Vec::new();
    for &resolution_s in resolutions {
        let from = out.len();
        for i in (0..points.len()).filter(|&i| counted.get(i).copied().unwrap_or(true)) {
            let edge = Edge {
                ts: points.ts[i],
                producer: points.producers[points.producer[i] as usize].clone(),
                seq: points.seq[i],
                value: points.value[i],
            };
            let bucket = bucket_of(edge.ts, resolution_s);
            // A block spans seconds to minutes: few buckets, a short search.
            let p = match out[from..].iter().position(|p| p.bucket == bucket) {
                Some(j) => &mut out[from + j],
                None => {
                    out.push(Partial::new(resolution_s, bucket, edge.clone()));
                    out.last_mut().expect("just pushed")
                }
            };
            p.add(edge);
        }
        out[from..].sort_by_key(|p| p.bucket);
    }
    out
}

/// The resolutions whose partials are stored: a resolution that a finer
/// configured one divides is not (1h when 1m is there): its buckets are the
/// merge of the finer ones, exactly, since every aggregate here merges.
/// Halves what a block carries with the default `1m,1h`.
pub fn stored(resolutions: &[u32]) -> Vec<u32> {
    resolutions
        .iter()
        .copied()
        .filter(|&r| !resolutions.iter().any(|&f| f < r && r % f == 0))
        .collect()
}

/// The partials of `resolution_s` from a block's: those of the coarsest
/// stored resolution that divides it, merged into its buckets. None: the
/// block was not rolled up at that resolution.
pub fn at(resolutions: &[u32], partials: Vec<Partial>, resolution_s: u32) -> Option<Vec<Partial>> {
    if !resolutions.contains(&resolution_s) {
        return None;
    }
    let source = stored(resolutions).into_iter().filter(|f| resolution_s % f == 0).max()?;
    Some(merge(partials.into_iter().filter(|p| p.resolution_s == source).map(|mut p| {
        p.resolution_s = resolution_s;
        p.bucket = bucket_of(p.bucket, resolution_s);
        p
    })))
}

/// Merges partials into one per (resolution, bucket), ordered.
pub fn merge(partials: impl IntoIterator<Item = Partial>) -> Vec<Partial> {
    let mut merged: std::collections::BTreeMap<(u32, i64), Partial> = Default::default();
    for p in partials {
        match merged.entry((p.resolution_s, p.bucket)) {
            std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(&p),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(p);
            }
        }
    }
    merged.into_values().collect()
}

/// A block's rollups as stored in its `rollups` column: the resolutions it
/// was rolled up at (so that a block whose points were all repeats still
/// says it has rollups, of nothing) and the partials.
pub fn encode(resolutions: &[u32], partials: &[Partial]) -> Vec<u8> {
    let mut out = vec![FORMAT];
    out.extend(postcard::to_stdvec(&(resolutions, partials)).expect("partials always serialize"));
    out
}

/// The first byte of an encoded set of partials.
const FORMAT: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum RollupError {
    #[error("the rollups column is empty")]
    Empty,
    #[error("the rollups column has format {0}, this herd reads format {FORMAT}; upgrade herd")]
    Format(u8),
    #[error("the rollups column cannot be decoded")]
    Corrupt(#[source] postcard::Error),
}

/// The resolutions and partials of a block's `rollups` column.
pub fn decode(bytes: &[u8]) -> Result<(Vec<u32>, Vec<Partial>), RollupError> {
    match bytes.split_first() {
        None => Err(RollupError::Empty),
        Some((&FORMAT, rest)) => postcard::from_bytes(rest).map_err(RollupError::Corrupt),
        Some((&other, _)) => Err(RollupError::Format(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_model::Event;

    fn ev(ts: i64, value: f64, producer: &str, seq: u64) -> Event {
        Event {
            series: "s".into(),
            metric: "m".into(),
            ts,
            value,
            tags: Default::default(),
            producer: producer.into(),
            seq,
        }
    }

    #[test]
    fn partials_aggregate_the_counted_points_per_bucket() {
        let events = [
            ev(61_000, 5.0, "a", 2),
            ev(1_000, 2.0, "a", 0),
            ev(59_999, -1.0, "b", 7),
            ev(1_000, 9.0, "a", 1), // not counted
            ev(1_000, 3.0, "b", 0), // same time as a/0: b sorts after a
        ];
        let points = Points::from_events(&events);
        let counted = [true, true, true, false, true];
        let p = partials(&points, &counted, &[60, 3600]);
        let minute: Vec<_> = p.iter().filter(|p| p.resolution_s == 60).collect();
        assert_eq!(minute.len(), 2);
        let m0 = minute[0];
        assert_eq!((m0.bucket, m0.count, m0.sum, m0.min, m0.max), (0, 3, 4.0, -1.0, 3.0));
        assert_eq!((m0.first.producer.as_str(), m0.first.value), ("a", 2.0));
        assert_eq!((m0.last.ts, m0.last.value), (59_999, -1.0));
        assert_eq!((minute[1].bucket, minute[1].count), (60_000, 1));
        let hour: Vec<_> = p.iter().filter(|p| p.resolution_s == 3600).collect();
        assert_eq!((hour.len(), hour[0].count, hour[0].sum), (1, 4, 9.0));
        assert_eq!((hour[0].first.value, hour[0].last.value), (2.0, 5.0));
    }

    #[test]
    fn merged_partials_equal_one_partial_of_everything() {
        let events: Vec<Event> = (0..1000)
            .map(|i| ev(i * 37 % 60_000, ((i * 7919) % 1000) as f64 - 300.0, "p", i as u64))
            .collect();
        let all = partials(&Points::from_events(&events), &[], &[60]);
        let halves: Vec<Partial> = events
            .chunks(333)
            .flat_map(|c| partials(&Points::from_events(c), &[], &[60]))
            .collect();
        let merged = merge(halves);
        assert_eq!(merged.len(), 1);
        let (a, b) = (&all[0], &merged[0]);
        assert_eq!(
            (a.count, a.min, a.max, &a.first, &a.last),
            (b.count, b.min, b.max, &b.first, &b.last)
        );
        assert!((a.sum - b.sum).abs() < 1e-6);
        let mut sorted: Vec<f64> = events.iter().map(|e| e.value).collect();
        sorted.sort_by(f64::total_cmp);
        for q in [0.5, 0.9, 0.99] {
            let exact = sorted[(q * (sorted.len() - 1) as f64).round() as usize];
            let got = b.quantile(q).unwrap();
            assert!(
                (got - exact).abs() <= SKETCH_ALPHA * exact.abs() + 1.0,
                "p{q}: sketch {got}, data {exact}"
            );
        }
    }

    #[test]
    fn encoding_round_trips_and_refuses_other_formats() {
        let events = [ev(1, 1.5, "a", 0), ev(2, 2.5, "a", 1)];
        let p = partials(&Points::from_events(&events), &[], &[60, 3600]);
        let bytes = encode(&[60, 3600], &p);
        assert_eq!(stored(&[60, 3600]), vec![60]);
        assert_eq!(stored(&[45 * 60, 3600]), vec![45 * 60, 3600], "45m does not divide 1h");
        let hour = at(&[60, 3600], p.clone(), 3600).unwrap();
        assert_eq!((hour.len(), hour[0].count, hour[0].resolution_s), (1, 2, 3600));
        assert!(at(&[60], p.clone(), 3600).is_none(), "not rolled up at 1h");
        let (resolutions, back) = decode(&bytes).unwrap();
        assert_eq!(resolutions, vec![60, 3600]);
        assert_eq!(back.len(), 2);
        assert_eq!((back[0].count, back[0].sum, back[1].resolution_s), (2, 4.0, 3600));
        assert_eq!(back[0].quantile(1.0), p[0].quantile(1.0));
        assert!(matches!(decode(&[9, 1, 2]), Err(RollupError::Format(9))));
        assert!(matches!(decode(&[]), Err(RollupError::Empty)));
        assert!(matches!(decode(&[FORMAT, 200]), Err(RollupError::Corrupt(_))));
    }
}
