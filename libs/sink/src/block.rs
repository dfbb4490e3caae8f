//! The block format: the points of one (series, metric), column by column,
//! compressed. Pure, no I/O.
//!
//! ```text
//! block   = magic "HB" version:u8 points:varint
//!           ts:section value:section seq:section producers:dict tags:dict
//! section = len:varint pco-standalone-bytes      (pco, one numeric column)
//! dict    = count:varint entry*count [index:section if count > 1]
//! ```
//!
//! - points are sorted by (ts, producer, seq), so timestamps and sequence
//!   numbers are nearly regular and pco's delta encoding makes them cost
//!   almost nothing; each (producer, seq) appears once;
//! - values are pco-compressed doubles: pco finds a common decimal step (a
//!   gauge with 2 decimals) and small deltas by itself;
//! - producers and tag sets are dictionaries (a series usually has one of
//!   each), with a pco column of indices only when there is more than one.
//!
//! Why pco: it is made for numeric columns (delta, float-multiple and
//! lookup modes picked per column), keeps a stable standalone format, and
//! compresses a 2-decimal random walk to about a byte per value; see
//! `herd-loadgen blocksize` for the comparison with zstd over the same
//! columns.

use std::collections::{BTreeMap, HashMap};

use herd_model::Event;

const MAGIC: &[u8; 2] = b"HB";
const VERSION: u8 = 1;
/// pco's compression level, of 0-12 (its default is 8). On herd's shapes
/// at 100 points per block, level 8 stored the same bytes for 1.5 times the
/// encode time (`herd-loadgen blocksize`).
const LEVEL: usize = 2;

/// A block that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    #[error("block is not in herd's block format (bad magic or version {0}); was it written by a newer herd?")]
    Format(u8),
    #[error("block is truncated or corrupt: {0}")]
    Corrupt(String),
}

/// The points of one (series, metric), column by column, with small
/// dictionaries for producers and tag sets: what a window holds in memory
/// (a tenth of the events it came from) and what a block encodes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Points {
    pub ts: Vec<i64>,
    pub value: Vec<f64>,
    pub seq: Vec<u64>,
    /// Index into `producers`.
    pub producer: Vec<u32>,
    /// Index into `tag_sets`.
    pub tags: Vec<u32>,
    pub producers: Vec<String>,
    pub tag_sets: Vec<BTreeMap<String, String>>,
}

impl Points {
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Adds an event's point (its series and metric are the caller's key).
    /// A series has one or a few producers and tag sets: they are found by
    /// a linear search, without hashing or allocating.
    pub fn push(&mut self, e: Event) {
        let producer = match self.producers.iter().position(|p| *p == e.producer) {
            Some(i) => i,
            None => {
                self.producers.push(e.producer);
                self.producers.len() - 1
            }
        };
        let tags = match self.tag_sets.iter().position(|t| *t == e.tags) {
            Some(i) => i,
            None => {
                self.tag_sets.push(e.tags);
                self.tag_sets.len() - 1
            }
        };
        self.ts.push(e.ts);
        self.value.push(e.value);
        self.seq.push(e.seq);
        self.producer.push(producer as u32);
        self.tags.push(tags as u32);
    }

    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Points {
        let mut p = Points::default();
        for e in events {
            p.push(e.clone());
        }
        p
    }

    /// Point `i` as an event of `series` and `metric`.
    pub fn event(&self, i: usize, series: &str, metric: &str) -> Event {
        Event {
            series: series.to_owned(),
            metric: metric.to_owned(),
            ts: self.ts[i],
            value: self.value[i],
            tags: self.tag_sets[self.tags[i] as usize].clone(),
            producer: self.producers[self.producer[i] as usize].clone(),
            seq: self.seq[i],
        }
    }

    pub fn min_ts(&self) -> Option<i64> {
        self.ts.iter().copied().min()
    }

    pub fn max_ts(&self) -> Option<i64> {
        self.ts.iter().copied().max()
    }
}

/// Sorts the points by (ts, producer, seq), keeps the first of each
/// (producer, seq) in the order given, and encodes them. Returns the bytes
/// and the number of points kept.
pub fn encode(p: &Points) -> (Vec<u8>, usize) {
    let n = p.len();
    let mut order: Vec<usize> = (0..n).collect();
    // Identity first: the first occurrence (in the caller's order) of each
    // (producer, seq) wins, whatever its timestamp.
    let mut seen: HashMap<(u32, u64), ()> = HashMap::with_capacity(n);
    order.retain(|&i| seen.insert((p.producer[i], p.seq[i]), ()).is_none());
    order.sort_by(|&a, &b| {
        (p.ts[a], &p.producers[p.producer[a] as usize], p.seq[a]).cmp(&(
            p.ts[b],
            &p.producers[p.producer[b] as usize],
            p.seq[b],
        ))
    });

    let mut out = Vec::with_capacity(16 + order.len() * 2);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    put_varint(&mut out, order.len() as u64);
    let ts: Vec<i64> = order.iter().map(|&i| p.ts[i]).collect();
    let values: Vec<f64> = order.iter().map(|&i| p.value[i]).collect();
    let seqs: Vec<u64> = order.iter().map(|&i| p.seq[i]).collect();
    // Time and seq grow steadily within a series: plain deltas. Values
    // take any shape, so pco picks their encoding per block.
    put_section_with(&mut out, &ts, pco::DeltaSpec::TryConsecutive(1));
    put_section_with(&mut out, &values, pco::DeltaSpec::Auto);
    put_section_with(&mut out, &seqs, pco::DeltaSpec::TryConsecutive(1));

    // Dictionaries of what this block uses, in first-seen order.
    let mut producers: Dict<u32> = Dict::default();
    let producer_ix: Vec<u32> = order.iter().map(|&i| producers.index(p.producer[i])).collect();
    put_varint(&mut out, producers.entries.len() as u64);
    for &i in &producers.entries {
        put_str(&mut out, &p.producers[i as usize]);
    }
    if producers.entries.len() > 1 {
        put_section(&mut out, &producer_ix);
    }

    let mut tags: Dict<u32> = Dict::default();
    let tag_ix: Vec<u32> = order.iter().map(|&i| tags.index(p.tags[i])).collect();
    put_varint(&mut out, tags.entries.len() as u64);
    for &i in &tags.entries {
        let set = &p.tag_sets[i as usize];
        put_varint(&mut out, set.len() as u64);
        for (k, v) in set.iter() {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
    }
    if tags.entries.len() > 1 {
        put_section(&mut out, &tag_ix);
    }
    (out, order.len())
}

/// The points of a block, as events of `series` and `metric`, in the
/// block's order (ts, producer, seq).
pub fn decode(series: &str, metric: &str, bytes: &[u8]) -> Result<Vec<Event>, BlockError> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(2)? != MAGIC {
        return Err(BlockError::Format(0));
    }
    let version = r.take(1)?[0];
    if version != VERSION {
        return Err(BlockError::Format(version));
    }
    let n = r.varint()? as usize;
    let ts: Vec<i64> = r.section(n)?;
    let values: Vec<f64> = r.section(n)?;
    let seqs: Vec<u64> = r.section(n)?;

    let count = r.varint()? as usize;
    let producers: Vec<String> = (0..count).map(|_| r.string()).collect::<Result<_, _>>()?;
    let producer_ix: Vec<u32> = if count > 1 { r.section(n)? } else { vec![0; n] };

    let count = r.varint()? as usize;
    let mut tag_sets = Vec::with_capacity(count.min(n));
    for _ in 0..count {
        let pairs = r.varint()? as usize;
        let mut set = BTreeMap::new();
        for _ in 0..pairs {
            set.insert(r.string()?, r.string()?);
        }
        tag_sets.push(set);
    }
    let tag_ix: Vec<u32> = if count > 1 { r.section(n)? } else { vec![0; n] };
    if r.at != bytes.len() {
        return Err(BlockError::Corrupt(format!(
            "{} bytes after the last column",
            bytes.len() - r.at
        )));
    }
    let lookup = |list_len: usize, i: u32, what: &str| {
        if (i as usize) < list_len {
            Ok(i as usize)
        } else {
            Err(BlockError::Corrupt(format!("{what} index {i} out of {list_len}")))
        }
    };
    (0..n)
        .map(|i| {
            Ok(Event {
                series: series.to_owned(),
                metric: metric.to_owned(),
                ts: ts[i],
                value: values[i],
                tags: tag_sets[lookup(tag_sets.len(), tag_ix[i], "tag set")?].clone(),
                producer: producers[lookup(producers.len(), producer_ix[i], "producer")?].clone(),
                seq: seqs[i],
            })
        })
        .collect()
}

/// Distinct values in first-seen order, with each value's index.
struct Dict<T> {
    entries: Vec<T>,
    index: HashMap<T, u32>,
}

impl<T> Default for Dict<T> {
    fn default() -> Self {
        Dict { entries: Vec::new(), index: HashMap::new() }
    }
}

impl<T: std::hash::Hash + Eq + Copy> Dict<T> {
    fn index(&mut self, v: T) -> u32 {
        *self.index.entry(v).or_insert_with(|| {
            self.entries.push(v);
            (self.entries.len() - 1) as u32
        })
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_section<T: pco::data_types::Number>(out: &mut Vec<u8>, column: &[T]) {
    put_section_with(out, column, pco::DeltaSpec::Auto)
}

/// `delta`: pco's automatic choice tries lookback deltas too, which cost
/// a third of the encode time of a block on timestamps and sequence
/// numbers and saved nothing there (`herd-loadgen blocksize`, every shape).
fn put_section_with<T: pco::data_types::Number>(
    out: &mut Vec<u8>,
    column: &[T],
    delta: pco::DeltaSpec,
) {
    let config = pco::ChunkConfig::default().with_compression_level(LEVEL).with_delta_spec(delta);
    let bytes = pco::standalone::simple_compress(column, &config)
        .expect("pco compresses any numeric column at a valid level");
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(&bytes);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BlockError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| BlockError::Corrupt(format!("needs {n} bytes at {}", self.at)))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn varint(&mut self) -> Result<u64, BlockError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(BlockError::Corrupt("varint longer than 10 bytes".into()))
    }

    fn string(&mut self) -> Result<String, BlockError> {
        let n = self.varint()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|e| BlockError::Corrupt(e.to_string()))
    }

    fn section<T: pco::data_types::Number>(&mut self, n: usize) -> Result<Vec<T>, BlockError> {
        let len = self.varint()? as usize;
        let column: Vec<T> = pco::standalone::simple_decompress(self.take(len)?)
            .map_err(|e| BlockError::Corrupt(e.to_string()))?;
        if column.len() != n {
            return Err(BlockError::Corrupt(format!(
                "a column has {} values, the block {n} points",
                column.len()
            )));
        }
        Ok(column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: i64, value: f64, producer: &str, seq: u64, tag: &str) -> Event {
        Event {
            series: "s".into(),
            metric: "m".into(),
            ts,
            value,
            tags: BTreeMap::from([("host".to_owned(), tag.to_owned())]),
            producer: producer.into(),
            seq,
        }
    }

    #[test]
    fn round_trips_sorted_and_without_repeated_identities() {
        let events = vec![
            event(30, 1.5, "b", 7, "x"),
            event(10, -2.25, "a", 1, "x"),
            event(20, f64::MAX, "a", 2, "y"),
            // The same identity again, with other content: the first one stays.
            event(5, 9.0, "b", 7, "z"),
            event(10, 0.0, "a", 0, "x"),
        ];
        let got = decode("s", "m", &encode(&Points::from_events(&events)).0).unwrap();
        let want = vec![events[4].clone(), events[1].clone(), events[2].clone(), events[0].clone()];
        assert_eq!(got, want);
    }

    #[test]
    fn one_producer_and_one_tag_set_cost_no_index_column() {
        let many: Vec<Event> =
            (0..1000).map(|i| event(i * 10, (i % 7) as f64, "p", i as u64, "x")).collect();
        let (bytes, points) = encode(&Points::from_events(&many));
        assert_eq!(points, 1000);
        assert_eq!(decode("s", "m", &bytes).unwrap(), many);
        assert!(
            bytes.len() < 1000,
            "regular ts and seq, 7 distinct values: {} bytes for 1000 points",
            bytes.len()
        );
    }

    #[test]
    fn refuses_corrupt_blocks_with_the_reason() {
        let events = [event(1, 1.0, "p", 1, "x"), event(2, 2.0, "q", 2, "y")];
        let (bytes, _) = encode(&Points::from_events(&events));
        assert_eq!(decode("s", "m", b"XX\x01\x00"), Err(BlockError::Format(0)));
        let mut newer = bytes.clone();
        newer[2] = 9;
        assert_eq!(decode("s", "m", &newer), Err(BlockError::Format(9)));
        for cut in [3, 10, bytes.len() - 1] {
            assert!(
                matches!(decode("s", "m", &bytes[..cut]), Err(BlockError::Corrupt(_))),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(
            matches!(decode("s", "m", &longer), Err(BlockError::Corrupt(m)) if m.contains("after the last column"))
        );
    }
}
