//! Deterministic events: the same arguments give the same events, so a
//! producer run and a verification (or a ceiling run) agree on every row.
//!
//! Two ways to the same events: [`Generator::events`] builds [`Event`]
//! values (for the Cassandra ceiling and tests), while [`Generator::arrow`]
//! and [`Generator::json`] write the encoded message straight from the
//! sequence numbers, with the strings made once up front. The load generator
//! must cost little next to sending, or it measures itself instead of Kafka;
//! the tests below hold the fast encoders to the `Event` form.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, MapBuilder, RecordBatch, StringBuilder, TimestampMillisecondArray,
    UInt64Array,
};
use arrow::ipc::writer::StreamWriter;
use herd_model::{arrow_ipc, Event, LIMITS};

use crate::values::{ValueShape, Values};

const METRICS: [&str; 4] = ["cpu", "mem", "disk", "net"];
const TAG_KEYS: [&str; 8] = ["region", "host", "service", "zone", "rack", "env", "team", "build"];
/// Names made up front per list; beyond, they are formatted per event.
const CACHED_NAMES: u64 = 1 << 20;

/// What the events look like, from the command line.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Distinct series.
    pub series: u64,
    /// Tags per event.
    pub tags: usize,
    /// Distinct values per tag.
    pub tag_values: u64,
    /// Extra bytes per event, carried in `pad*` tags of up to 256 bytes.
    pub payload_bytes: usize,
    /// What the values look like.
    pub values: ValueShape,
}

impl Default for Shape {
    fn default() -> Self {
        Shape { series: 1000, tags: 1, tag_values: 3, payload_bytes: 0, values: ValueShape::Walk }
    }
}

impl Shape {
    pub fn validate(&self) -> Result<(), String> {
        if self.series == 0 {
            return Err("--series must be at least 1".into());
        }
        if self.tags > 0 && self.tag_values == 0 {
            return Err("--tag-values must be at least 1 when events have tags".into());
        }
        let pad_tags = self.payload_bytes.div_ceil(LIMITS.max_tag_value_bytes);
        if self.tags + pad_tags > LIMITS.max_tags {
            return Err(format!(
                "--tags {} with --payload-bytes {} make {} tags per event (padding goes in tags of at most {} bytes); an event may have {}",
                self.tags,
                self.payload_bytes,
                self.tags + pad_tags,
                LIMITS.max_tag_value_bytes,
                LIMITS.max_tags
            ));
        }
        Ok(())
    }
}

/// `prefix` followed by a number, the first ones made once.
struct Names {
    prefix: String,
    cached: Vec<String>,
}

impl Names {
    fn new(prefix: &str, count: u64) -> Names {
        Names {
            prefix: prefix.to_owned(),
            cached: (0..count.min(CACHED_NAMES)).map(|n| format!("{prefix}{n}")).collect(),
        }
    }

    fn get<'a>(&'a self, n: u64, scratch: &'a mut String) -> &'a str {
        match self.cached.get(n as usize) {
            Some(name) => name,
            None => {
                scratch.clear();
                scratch.push_str(&self.prefix);
                scratch.push_str(itoa::Buffer::new().format(n));
                scratch
            }
        }
    }
}

pub struct Generator {
    producer: String,
    /// The producer id as a JSON string, quotes and escapes included.
    producer_json: String,
    series: u64,
    series_names: Names,
    /// Per tag key, its values.
    tags: Vec<(String, Names)>,
    tag_values: u64,
    /// Fixed padding tags.
    pads: Vec<(String, String)>,
    values: Values,
    /// Event time of sequence number 0 when no send time is given, ms since epoch.
    pub base_ts: i64,
}

impl Generator {
    pub fn new(producer: &str, shape: &Shape, base_ts: i64) -> Result<Generator, String> {
        shape.validate()?;
        let key = |i: usize| TAG_KEYS.get(i).map_or_else(|| format!("tag{i}"), |k| (*k).to_owned());
        let mut pads = Vec::new();
        let mut left = shape.payload_bytes;
        while left > 0 {
            let n = left.min(LIMITS.max_tag_value_bytes);
            pads.push((format!("pad{}", pads.len()), "x".repeat(n)));
            left -= n;
        }
        Ok(Generator {
            producer: producer.to_owned(),
            producer_json: serde_json::to_string(producer).expect("a string serializes"),
            series: shape.series,
            series_names: Names::new("series-", shape.series),
            tags: (0..shape.tags)
                .map(|i| {
                    (key(i), Names::new(&format!("{}-", key(i)), shape.tag_values.min(1 << 16)))
                })
                .collect(),
            tag_values: shape.tag_values,
            pads,
            values: Values::new(shape.values, shape.series),
            base_ts,
        })
    }

    pub fn producer(&self) -> &str {
        &self.producer
    }

    /// Event time: `at` (a send time, ms since epoch) if given, else 10 ms
    /// apart per series from `base_ts`, which keeps them distinct and recent.
    fn ts(&self, seq: u64, at: Option<i64>) -> i64 {
        at.unwrap_or(self.base_ts + (seq / self.series) as i64 * 10)
    }

    /// Tag `t`'s value index: a function of the series, as tags describe a series.
    fn tag_value(&self, t: usize, seq: u64) -> u64 {
        (seq % self.series + t as u64) % self.tag_values
    }

    pub fn event(&self, seq: u64, at: Option<i64>) -> Event {
        let mut scratch = String::new();
        let mut tags = BTreeMap::new();
        for (t, (key, names)) in self.tags.iter().enumerate() {
            tags.insert(key.clone(), names.get(self.tag_value(t, seq), &mut scratch).to_owned());
        }
        for (key, pad) in &self.pads {
            tags.insert(key.clone(), pad.clone());
        }
        Event {
            series: self.series_names.get(seq % self.series, &mut scratch).to_owned(),
            metric: METRICS[(seq % 4) as usize].into(),
            ts: self.ts(seq, at),
            value: self.values.value(seq),
            tags,
            producer: self.producer.clone(),
            seq,
        }
    }

    pub fn events(&self, seqs: std::ops::Range<u64>, at: Option<i64>) -> Vec<Event> {
        seqs.map(|s| self.event(s, at)).collect()
    }

    /// Appends the events `seqs` as one Arrow IPC stream, built column by column.
    pub fn arrow(&self, seqs: std::ops::Range<u64>, at: Option<i64>, out: &mut Vec<u8>) {
        let n = (seqs.end - seqs.start) as usize;
        let mut scratch = String::new();
        let mut series = StringBuilder::with_capacity(n, n * 12);
        let mut metric = StringBuilder::with_capacity(n, n * 4);
        let mut producer = StringBuilder::with_capacity(n, n * self.producer.len());
        let entries = self.tags.len() + self.pads.len();
        let mut tags = MapBuilder::new(
            None,
            StringBuilder::with_capacity(n * entries, n * entries * 8),
            StringBuilder::with_capacity(n * entries, n * entries * 8),
        );
        for seq in seqs.clone() {
            series.append_value(self.series_names.get(seq % self.series, &mut scratch));
            metric.append_value(METRICS[(seq % 4) as usize]);
            producer.append_value(&self.producer);
            for (t, (key, names)) in self.tags.iter().enumerate() {
                tags.keys().append_value(key);
                tags.values().append_value(names.get(self.tag_value(t, seq), &mut scratch));
            }
            for (key, pad) in &self.pads {
                tags.keys().append_value(key);
                tags.values().append_value(pad);
            }
            tags.append(true).expect("keys and values are appended in pairs");
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(series.finish()),
            Arc::new(metric.finish()),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(seqs.clone().map(|s| self.ts(s, at)))
                    .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from_iter_values(seqs.clone().map(|s| self.values.value(s)))),
            Arc::new(producer.finish()),
            Arc::new(UInt64Array::from_iter_values(seqs)),
            Arc::new(tags.finish()),
        ];
        let batch = RecordBatch::try_new(arrow_ipc::schema(), columns)
            .expect("the columns follow herd's schema");
        out.reserve(batch.get_array_memory_size() + 1024);
        let mut writer = StreamWriter::try_new(out, &batch.schema()).expect("writing to memory");
        writer.write(&batch).expect("writing to memory");
        writer.finish().expect("writing to memory");
    }

    /// Appends event `seq` as one JSON object (no newline) to `out`.
    pub fn json(&self, seq: u64, at: Option<i64>, out: &mut Vec<u8>) {
        let mut scratch = String::new();
        let mut numbers = itoa::Buffer::new();
        out.extend_from_slice(b"{\"series\":\"");
        out.extend_from_slice(self.series_names.get(seq % self.series, &mut scratch).as_bytes());
        out.extend_from_slice(b"\",\"metric\":\"");
        out.extend_from_slice(METRICS[(seq % 4) as usize].as_bytes());
        out.extend_from_slice(b"\",\"ts\":");
        out.extend_from_slice(numbers.format(self.ts(seq, at)).as_bytes());
        out.extend_from_slice(b",\"value\":");
        self.values.json(seq, out);
        if !self.tags.is_empty() || !self.pads.is_empty() {
            out.extend_from_slice(b",\"tags\":{");
            let mut first = true;
            let mut entry = |out: &mut Vec<u8>, key: &str, value: &str| {
                if !first {
                    out.push(b',');
                }
                first = false;
                // Generated keys and values are letters, digits and '-': nothing to escape.
                out.push(b'"');
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(b"\":\"");
                out.extend_from_slice(value.as_bytes());
                out.push(b'"');
            };
            for (t, (key, names)) in self.tags.iter().enumerate() {
                entry(out, key, names.get(self.tag_value(t, seq), &mut scratch));
            }
            for (key, pad) in &self.pads {
                entry(out, key, pad);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b",\"producer\":");
        out.extend_from_slice(self.producer_json.as_bytes());
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(numbers.format(seq).as_bytes());
        out.push(b'}');
    }

    /// Event `seq`'s series and metric: with its time, producer and seq,
    /// the row's primary key.
    pub fn key(&self, seq: u64) -> (String, &'static str) {
        (
            self.series_names.get(seq % self.series, &mut String::new()).to_owned(),
            METRICS[(seq % 4) as usize],
        )
    }

    /// Appends the series name of event `seq` (the key of a one-event message).
    pub fn series_of(&self, seq: u64, out: &mut String) {
        let mut scratch = String::new();
        out.push_str(self.series_names.get(seq % self.series, &mut scratch));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(payload: &[u8]) -> Vec<Event> {
        let d = herd_model::decode(Some(payload), None);
        assert!(d.rejects.is_empty(), "{:?}", d.rejects);
        d.events
    }

    #[test]
    fn deterministic_and_valid() {
        let g = Generator::new("p", &Shape { series: 7, ..Shape::default() }, 1_700_000_000_000)
            .unwrap();
        assert_eq!(g.event(12, None), g.event(12, None));
        for e in g.events(0..100, None) {
            e.validate().unwrap();
        }
        assert_eq!(g.event(8, None).series, "series-1");
        assert_eq!(g.event(8, Some(42)).ts, 42);
        let e = g.event(13, None);
        assert_eq!(
            g.key(13),
            (e.series, METRICS.iter().find(|m| **m == e.metric).copied().unwrap())
        );
    }

    #[test]
    fn fast_encoders_match_the_event_form() {
        let shapes = [
            Shape::default(),
            Shape {
                series: 3,
                tags: 0,
                tag_values: 0,
                payload_bytes: 0,
                values: ValueShape::Counter,
            },
            Shape {
                series: CACHED_NAMES + 5,
                tags: 9,
                tag_values: (1 << 16) + 3,
                payload_bytes: 300,
                values: ValueShape::Uniform,
            },
        ];
        for shape in shapes {
            // A producer id that needs escaping in JSON.
            let g = Generator::new("p \"1\"\\", &shape, 1_700_000_000_000).unwrap();
            for at in [None, Some(1_700_000_123_456)] {
                let seqs = CACHED_NAMES..CACHED_NAMES + 20;
                let expected = g.events(seqs.clone(), at);
                let mut arrow = b"left alone".to_vec();
                g.arrow(seqs.clone(), at, &mut arrow);
                assert_eq!(arrow[..10], *b"left alone");
                assert_eq!(decoded(&arrow[10..]), expected, "{shape:?}");
                let mut lines = Vec::new();
                for seq in seqs.clone() {
                    let mut one = Vec::new();
                    g.json(seq, at, &mut one);
                    assert_eq!(
                        decoded(&one),
                        vec![g.event(seq, at)],
                        "{}",
                        String::from_utf8_lossy(&one)
                    );
                    lines.extend_from_slice(&one);
                    lines.push(b'\n');
                }
                assert_eq!(decoded(&lines), expected);
            }
        }
    }

    #[test]
    fn shape_knobs() {
        let g = Generator::new(
            "p",
            &Shape { series: 10, tags: 3, tag_values: 4, payload_bytes: 600, ..Shape::default() },
            0,
        )
        .unwrap();
        let e = g.event(13, None);
        assert_eq!(
            e.tags.keys().collect::<Vec<_>>(),
            ["host", "pad0", "pad1", "pad2", "region", "service"]
        );
        assert_eq!(e.tags["pad0"].len() + e.tags["pad1"].len() + e.tags["pad2"].len(), 600);
        let hosts: std::collections::BTreeSet<_> =
            g.events(0..1000, None).into_iter().map(|e| e.tags["host"].clone()).collect();
        assert_eq!(hosts.len(), 4, "{hosts:?}");
        let err = Generator::new(
            "p",
            &Shape { series: 1, tags: 60, tag_values: 2, payload_bytes: 2000, ..Shape::default() },
            0,
        )
        .err()
        .unwrap();
        assert!(err.contains("68 tags per event"), "{err}");
        assert!(Generator::new("p", &Shape { series: 0, ..Shape::default() }, 0).is_err());
    }
}
