//! `herd-loadgen verify`: what Cassandra holds against what was produced,
//! event by event. A producer's events are its seq 0..count; each must be
//! stored exactly once: one row per (producer, seq) in the rows layout; in
//! the blocks layout, one event as a reader returns it (a reader drops an
//! event found again in another block with the same series, metric and
//! time). Such repeats are counted apart as redundant copies: they cost
//! space, not correctness, and appear only when a producer sent a message
//! twice across a window boundary.

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Per producer: what was expected and what is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProducerReport {
    pub producer: String,
    pub expected: u64,
    pub stored_distinct: u64,
    pub missing: u64,
    pub duplicated: u64,
    /// seq at or above `expected`: stored but never produced.
    pub unexpected: u64,
    /// The first missing seqs, as ranges `a-b`.
    pub missing_examples: Vec<String>,
    /// The first duplicated seqs, with their row counts.
    pub duplicated_examples: Vec<(u64, u64)>,
    /// Blocks layout: copies of events beyond the one a reader returns.
    pub redundant_copies: u64,
}

impl ProducerReport {
    pub fn ok(&self) -> bool {
        self.missing == 0 && self.duplicated == 0 && self.unexpected == 0
    }
}

/// Row counts of one producer's seqs: a byte per expected seq (so that
/// verifying a hundred million events takes a hundred megabytes), and a map
/// for seqs that were never produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    counts: Vec<u8>,
    unexpected: BTreeMap<u64, u64>,
    redundant: u64,
}

impl Rows {
    pub fn new(expected: u64) -> Rows {
        Rows { counts: vec![0; expected as usize], unexpected: BTreeMap::new(), redundant: 0 }
    }

    /// One more row for `seq` (counts saturate at 255).
    pub fn add(&mut self, seq: u64) {
        match self.counts.get_mut(seq as usize) {
            Some(n) => *n = n.saturating_add(1),
            None => *self.unexpected.entry(seq).or_default() += 1,
        }
    }

    /// Expected seqs stored more than once.
    pub fn repeated(&self) -> impl Iterator<Item = u64> + '_ {
        self.counts.iter().enumerate().filter(|(_, &n)| n > 1).map(|(seq, _)| seq as u64)
    }

    /// Counts `seq` as `distinct` events, the rest of its copies as redundant.
    pub fn collapse(&mut self, seq: u64, distinct: u8) {
        if let Some(n) = self.counts.get_mut(seq as usize) {
            self.redundant += u64::from(n.saturating_sub(distinct));
            *n = distinct;
        }
    }
}

/// Rows per producer: what a scan of the points table gives.
pub type Stored = HashMap<String, Rows>;

/// Compares `stored` with `expected` (producer -> count). Producers stored
/// but not expected are not judged (other runs may share the keyspace); they
/// are listed by the caller.
pub fn compare(expected: &BTreeMap<String, u64>, stored: &Stored) -> Vec<ProducerReport> {
    expected
        .iter()
        .map(|(producer, &count)| {
            let none = Rows::default();
            let rows = stored.get(producer).unwrap_or(&none);
            let count_of = |seq: u64| rows.counts.get(seq as usize).copied().unwrap_or(0);
            let mut missing = 0;
            let mut missing_examples = Vec::new();
            let mut run: Option<(u64, u64)> = None;
            let (mut duplicated, mut duplicated_examples, mut stored_distinct) = (0, Vec::new(), 0);
            for seq in 0..count {
                match count_of(seq) {
                    0 => {}
                    1 => {
                        stored_distinct += 1;
                        continue;
                    }
                    n => {
                        stored_distinct += 1;
                        duplicated += 1;
                        if duplicated_examples.len() < 10 {
                            duplicated_examples.push((seq, u64::from(n)));
                        }
                        continue;
                    }
                }
                missing += 1;
                run = match run {
                    Some((a, b)) if b + 1 == seq => Some((a, seq)),
                    Some((a, b)) => {
                        if missing_examples.len() < 10 {
                            missing_examples.push(if a == b {
                                a.to_string()
                            } else {
                                format!("{a}-{b}")
                            });
                        }
                        Some((seq, seq))
                    }
                    None => Some((seq, seq)),
                };
            }
            if let Some((a, b)) = run {
                if missing_examples.len() < 10 {
                    missing_examples.push(if a == b { a.to_string() } else { format!("{a}-{b}") });
                }
            }
            ProducerReport {
                producer: producer.clone(),
                expected: count,
                stored_distinct,
                missing,
                duplicated,
                unexpected: rows.unexpected.len() as u64,
                missing_examples,
                duplicated_examples,
                redundant_copies: rows.redundant,
            }
        })
        .collect()
}

/// The most events one producer may be expected to have (a byte each).
pub const MAX_EXPECTED: u64 = 16_000_000_000;

/// Parses `--expect PRODUCER=COUNT`.
pub fn parse_expect(s: &str) -> Result<(String, u64), String> {
    let (p, n) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("--expect {s:?}: expected PRODUCER=COUNT, e.g. loadgen=100000"))?;
    let n = n.parse::<u64>().map_err(|_| format!("--expect {s:?}: {n:?} is not a count"))?;
    if n > MAX_EXPECTED {
        return Err(format!("--expect {s:?}: verify keeps a byte per expected event, so at most {MAX_EXPECTED} per producer"));
    }
    if p.is_empty() {
        return Err(format!("--expect {s:?}: the producer is empty"));
    }
    Ok((p.to_owned(), n))
}

/// End-to-end latency of the checked rows: event time to the write's
/// timestamp (taken by the worker when it sends the write), in an HDR
/// histogram of microseconds (3 significant digits).
pub struct Latency {
    hist: Histogram<u64>,
    /// Rows whose write timestamp is before their event time (clock skew).
    pub before_event_time: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatencySummary {
    pub rows: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            hist: Histogram::new_with_bounds(1, 24 * 3_600_000_000, 3).expect("valid bounds"),
            before_event_time: 0,
        }
    }
}

impl Latency {
    pub fn record(&mut self, micros: i64) {
        if micros < 0 {
            self.before_event_time += 1;
        }
        self.hist.saturating_record(micros.max(0) as u64);
    }

    pub fn summary(&self) -> Option<LatencySummary> {
        if self.hist.is_empty() {
            return None;
        }
        let ms = |q: f64| self.hist.value_at_quantile(q) as f64 / 1000.0;
        Some(LatencySummary {
            rows: self.hist.len(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: ms(1.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_missing_ranges_duplicates_and_unexpected_seqs() {
        let mut rows = Rows::new(100);
        for seq in (0..100).filter(|s| ![3, 4, 5, 50].contains(s)) {
            rows.add(seq);
        }
        rows.add(7);
        rows.add(120);
        let stored: Stored = HashMap::from([("p".to_owned(), rows)]);
        let r = &compare(&BTreeMap::from([("p".to_owned(), 100), ("q".to_owned(), 2)]), &stored);
        assert_eq!(r[0].missing, 4);
        assert_eq!(r[0].missing_examples, vec!["3-5", "50"]);
        assert_eq!((r[0].duplicated, r[0].duplicated_examples.clone()), (1, vec![(7, 2)]));
        assert_eq!((r[0].unexpected, r[0].stored_distinct), (1, 96));
        assert!(!r[0].ok());
        assert_eq!(
            (r[1].missing, r[1].missing_examples.clone()),
            (2, vec!["0-1".to_owned()]),
            "a producer with nothing stored"
        );
        let mut all = Rows::new(10);
        (0..10).for_each(|s| all.add(s));
        let all: Stored = HashMap::from([("p".to_owned(), all)]);
        assert!(compare(&BTreeMap::from([("p".to_owned(), 10)]), &all)[0].ok());
        // Blocks: two copies of one event are one event and a redundant copy.
        let mut copies = Rows::new(3);
        [0, 1, 1, 2, 2, 2].into_iter().for_each(|s| copies.add(s));
        assert_eq!(copies.repeated().collect::<Vec<_>>(), vec![1, 2]);
        copies.collapse(1, 1);
        copies.collapse(2, 2);
        let r = &compare(
            &BTreeMap::from([("p".to_owned(), 3)]),
            &HashMap::from([("p".to_owned(), copies)]),
        )[0];
        assert_eq!(
            (r.duplicated, r.redundant_copies, r.duplicated_examples.clone()),
            (1, 2, vec![(2, 2)])
        );
        let mut many = Rows::new(1);
        (0..300).for_each(|_| many.add(0));
        assert_eq!(
            compare(
                &BTreeMap::from([("p".to_owned(), 1)]),
                &HashMap::from([("p".to_owned(), many)])
            )[0]
            .duplicated_examples,
            vec![(0, 255)]
        );
    }

    #[test]
    fn parses_expectations_and_percentiles() {
        assert_eq!(parse_expect("a=b=5").unwrap(), ("a=b".to_owned(), 5));
        assert!(
            parse_expect("p").is_err()
                && parse_expect("p=x").is_err()
                && parse_expect("=3").is_err()
        );
        assert!(parse_expect("p=1000000000000").unwrap_err().contains("at most 16000000000"));
        let mut l = Latency::default();
        assert_eq!(l.summary(), None);
        for ms in (1..=1000).rev() {
            l.record(ms * 1000);
        }
        l.record(-5);
        let s = l.summary().unwrap();
        assert_eq!((s.rows, l.before_event_time), (1001, 1));
        // HDR precision: 3 significant digits.
        for (got, want) in [
            (s.p50_ms, 500.0),
            (s.p90_ms, 900.0),
            (s.p99_ms, 990.0),
            (s.p999_ms, 999.0),
            (s.max_ms, 1000.0),
        ] {
            assert!((got - want).abs() <= want / 1000.0 + 0.001, "{got} vs {want}");
        }
    }
}
