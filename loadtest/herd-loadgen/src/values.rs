//! Value shapes that look like real metrics, deterministic and random
//! access: the value of a series' k-th point is a function of (series, k),
//! so encoding threads can make any range of events in any order, and a
//! producer run and a ceiling run agree on every value.
//!
//! A random walk needs the sum of all earlier steps. Here the steps come
//! from one table of 65,536 pseudo-random steps whose second half mirrors
//! the first (so they sum to zero), with its prefix sums; a series walks the
//! table from its own starting point. Within 65,536 points of a series the
//! steps are those of a random walk; after that the walk repeats (1,000
//! series repeat after 65 million events).

/// What `value` of each event looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ValueShape {
    /// A random walk in steps of -0.25 to +0.25 with 2 decimals, around a
    /// level per series (a price, a temperature, a load average).
    #[default]
    Walk,
    /// A monotonic counter: integer increments of 0 to 100 per point
    /// (requests served, bytes sent).
    Counter,
    /// A constant per series (a configured limit, a capacity).
    Gauge,
    /// Uniform random doubles in [0, 1) with all 52 bits of mantissa: the
    /// worst case for any compressor.
    Uniform,
    /// The value cycles through 1,000 multiples of 0.25 by sequence number
    /// (herd-loadgen's values before shapes; flatters compressors).
    Cycle,
}

const TABLE: usize = 1 << 16;

pub struct Values {
    shape: ValueShape,
    series: u64,
    /// Prefix sums of the steps (cents for walk, units for counter); TABLE + 1 entries.
    prefix: Vec<i64>,
}

/// splitmix64: a well-mixed 64-bit hash of a counter.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Values {
    pub fn new(shape: ValueShape, series: u64) -> Values {
        let step = |i: usize| -> i64 {
            let h = mix(i as u64);
            match shape {
                ValueShape::Walk => (h % 51) as i64 - 25,
                _ => (h % 101) as i64,
            }
        };
        let steps: Vec<i64> = match shape {
            // Mirrored halves: the walk returns to its level every TABLE steps.
            ValueShape::Walk => {
                (0..TABLE / 2).map(step).chain((0..TABLE / 2).map(|i| -step(i))).collect()
            }
            ValueShape::Counter => (0..TABLE).map(step).collect(),
            _ => Vec::new(),
        };
        let mut prefix = Vec::with_capacity(steps.len() + 1);
        prefix.push(0);
        for s in steps {
            prefix.push(prefix.last().expect("starts with 0") + s);
        }
        Values { shape, series: series.max(1), prefix }
    }

    /// The value of event `seq` (series `seq % series`, its point `seq / series`).
    pub fn value(&self, seq: u64) -> f64 {
        match self.shape {
            ValueShape::Walk => self.walk_cents(seq) as f64 / 100.0,
            ValueShape::Counter => self.counter(seq) as f64,
            ValueShape::Gauge => ((seq % self.series) % 10 * 10 + 10) as f64,
            ValueShape::Uniform => (mix(seq ^ 0x5eed) >> 11) as f64 / (1u64 << 53) as f64,
            ValueShape::Cycle => (seq % 1000) as f64 * 0.25,
        }
    }

    /// Appends the value of event `seq` as JSON, exactly as [`Values::value`].
    pub fn json(&self, seq: u64, out: &mut Vec<u8>) {
        let mut int = itoa::Buffer::new();
        match self.shape {
            ValueShape::Walk => {
                let c = self.walk_cents(seq);
                if c < 0 {
                    out.push(b'-');
                }
                let c = c.unsigned_abs();
                out.extend_from_slice(int.format(c / 100).as_bytes());
                out.push(b'.');
                out.push(b'0' + (c % 100 / 10) as u8);
                out.push(b'0' + (c % 10) as u8);
            }
            ValueShape::Counter => out.extend_from_slice(int.format(self.counter(seq)).as_bytes()),
            _ => {
                out.extend_from_slice(ryu::Buffer::new().format_finite(self.value(seq)).as_bytes())
            }
        }
    }

    fn start(&self, series: u64) -> usize {
        (mix(series ^ 0xa11) % TABLE as u64) as usize
    }

    fn walk_cents(&self, seq: u64) -> i64 {
        let (s, k) = (seq % self.series, seq / self.series);
        let o = self.start(s);
        let level = 10_000 + (s % 100) as i64 * 1_000;
        // The steps sum to zero (prefix[TABLE] == prefix[0]), so the walk wraps around the table seamlessly.
        level + self.prefix[(o + (k % TABLE as u64) as usize) % TABLE] - self.prefix[o]
    }

    fn counter(&self, seq: u64) -> i64 {
        let (s, k) = (seq % self.series, seq / self.series);
        let o = self.start(s) as u64;
        let idx = o + k;
        let (cycles, at) = ((idx / TABLE as u64) as i64, (idx % TABLE as u64) as usize);
        cycles * self.prefix[TABLE] + self.prefix[at] - self.prefix[o as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series_points(v: &Values, series: u64, s: u64, n: u64) -> Vec<f64> {
        (0..n).map(|k| v.value(k * series + s)).collect()
    }

    #[test]
    fn walk_steps_by_at_most_a_quarter_with_two_decimals() {
        let v = Values::new(ValueShape::Walk, 7);
        for s in 0..7 {
            let points = series_points(&v, 7, s, 200_000);
            for w in points.windows(2) {
                let step = ((w[1] - w[0]) * 100.0).round();
                assert!(step.abs() <= 25.0, "{w:?}");
            }
            assert!(
                points.iter().all(|p| (p * 100.0 - (p * 100.0).round()).abs() < 1e-6),
                "2 decimals"
            );
            let distinct: std::collections::BTreeSet<i64> =
                points.iter().map(|p| (p * 100.0).round() as i64).collect();
            assert!(distinct.len() > 100, "it moves: {} levels", distinct.len());
        }
    }

    #[test]
    fn counter_never_goes_down_and_gauge_stays() {
        let v = Values::new(ValueShape::Counter, 3);
        let points = series_points(&v, 3, 1, 200_000);
        assert!(points.windows(2).all(|w| w[1] >= w[0] && w[1] - w[0] <= 100.0));
        assert!(points.last().unwrap() > &1_000_000.0);
        let g = Values::new(ValueShape::Gauge, 3);
        assert!(series_points(&g, 3, 2, 1000).iter().all(|&p| p == g.value(2)));
        let u = Values::new(ValueShape::Uniform, 3);
        assert!((0..1000).map(|s| u.value(s)).all(|p| (0.0..1.0).contains(&p)));
    }

    #[test]
    fn json_is_the_same_value() {
        for shape in [
            ValueShape::Walk,
            ValueShape::Counter,
            ValueShape::Gauge,
            ValueShape::Uniform,
            ValueShape::Cycle,
        ] {
            let v = Values::new(shape, 13);
            for seq in (0..5_000_000).step_by(997) {
                let mut out = Vec::new();
                v.json(seq, &mut out);
                let parsed: f64 = serde_json::from_slice(&out)
                    .unwrap_or_else(|e| panic!("{shape:?} {}: {e}", String::from_utf8_lossy(&out)));
                assert_eq!(parsed, v.value(seq), "{shape:?} {}", String::from_utf8_lossy(&out));
            }
        }
    }
}
