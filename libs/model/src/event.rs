use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One data point: `value` of `metric` for `series` at time `ts`.
///
/// `(producer, seq)` identifies the event uniquely: a producer numbers its
/// events and never reuses a number. Sending the same event twice (a retry, a
/// replay after a crash) therefore writes the same row twice, never two rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// The series or source the point belongs to, e.g. a host or sensor id.
    pub series: String,
    /// What is measured, e.g. `cpu.load`.
    pub metric: String,
    /// Event time in milliseconds since the Unix epoch (UTC).
    pub ts: i64,
    /// The measured value; finite.
    pub value: f64,
    /// Free-form dimensions, e.g. `{"dc": "eu-1"}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Who produced the event: a stable id per producer instance.
    pub producer: String,
    /// The producer's sequence number for this event, unique per producer.
    pub seq: u64,
}

/// Bounds an event must respect. They keep a Cassandra partition and a batch
/// within sane sizes and reject obviously broken input early.
pub struct Limits {
    pub max_series_bytes: usize,
    pub max_metric_bytes: usize,
    pub max_producer_bytes: usize,
    pub max_tags: usize,
    pub max_tag_key_bytes: usize,
    pub max_tag_value_bytes: usize,
    /// Latest accepted event time: 9999-12-31T23:59:59.999Z, the end of
    /// CQL's timestamp range as most tools print it.
    pub max_ts: i64,
    /// Sequence numbers are stored as CQL bigint (signed 64-bit).
    pub max_seq: u64,
}

pub const LIMITS: Limits = Limits {
    max_series_bytes: 256,
    max_metric_bytes: 256,
    max_producer_bytes: 128,
    max_tags: 64,
    max_tag_key_bytes: 128,
    max_tag_value_bytes: 256,
    max_ts: 253_402_300_799_999,
    max_seq: i64::MAX as u64,
};

/// Why a well-formed record is still not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidEvent {
    pub field: String,
    pub problem: String,
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> InvalidEvent {
    InvalidEvent { field: field.into(), problem: problem.into() }
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), InvalidEvent> {
    if value.is_empty() {
        return Err(invalid(field, "is empty"));
    }
    if value.len() > max {
        return Err(invalid(field, format!("is {} bytes long; the limit is {max}", value.len())));
    }
    Ok(())
}

impl Event {
    pub fn validate(&self) -> Result<(), InvalidEvent> {
        check_text("series", &self.series, LIMITS.max_series_bytes)?;
        check_text("metric", &self.metric, LIMITS.max_metric_bytes)?;
        check_text("producer", &self.producer, LIMITS.max_producer_bytes)?;
        if !(0..=LIMITS.max_ts).contains(&self.ts) {
            return Err(invalid(
                "ts",
                format!(
                    "{} is outside 0..={} (milliseconds since 1970-01-01 UTC up to year 9999)",
                    self.ts, LIMITS.max_ts
                ),
            ));
        }
        if !self.value.is_finite() {
            return Err(invalid("value", format!("{} is not a finite number", self.value)));
        }
        if self.seq > LIMITS.max_seq {
            return Err(invalid("seq", format!("{} is larger than {}", self.seq, LIMITS.max_seq)));
        }
        if self.tags.len() > LIMITS.max_tags {
            return Err(invalid(
                "tags",
                format!("has {} entries; the limit is {}", self.tags.len(), LIMITS.max_tags),
            ));
        }
        for (key, value) in &self.tags {
            check_text("tags key", key, LIMITS.max_tag_key_bytes)?;
            if value.len() > LIMITS.max_tag_value_bytes {
                return Err(invalid(
                    format!("tags.{key}"),
                    format!(
                        "is {} bytes long; the limit is {}",
                        value.len(),
                        LIMITS.max_tag_value_bytes
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A rough size in bytes, for cutting batches by bytes.
    pub fn approx_bytes(&self) -> usize {
        // Fixed part: ts, value, seq, bucket and per-row overhead.
        const FIXED: usize = 40;
        FIXED
            + self.series.len()
            + self.metric.len()
            + self.producer.len()
            + self.tags.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample(seq: u64) -> Event {
        Event {
            series: format!("host-{}", seq % 7),
            metric: "cpu.load".into(),
            ts: 1_700_000_000_000 + seq as i64,
            value: seq as f64 * 0.5,
            tags: BTreeMap::from([("dc".to_owned(), "eu-1".to_owned())]),
            producer: "p1".into(),
            seq,
        }
    }

    #[test]
    fn valid_sample() {
        sample(1).validate().unwrap();
    }

    #[test]
    fn each_limit_names_its_field() {
        /// A change that breaks one limit, and the field it names.
        type Case = (Box<dyn Fn(&mut Event)>, &'static str);
        let cases: Vec<Case> = vec![
            (Box::new(|e| e.series.clear()), "series: is empty"),
            (Box::new(|e| e.metric = "m".repeat(257)), "metric: is 257 bytes long"),
            (Box::new(|e| e.producer.clear()), "producer: is empty"),
            (Box::new(|e| e.ts = -1), "ts: -1 is outside"),
            (Box::new(|e| e.ts = LIMITS.max_ts + 1), "ts: 253402300800000 is outside"),
            (Box::new(|e| e.value = f64::NAN), "value: NaN is not a finite number"),
            (Box::new(|e| e.value = f64::INFINITY), "value: inf is not a finite number"),
            (Box::new(|e| e.seq = u64::MAX), "seq: 18446744073709551615 is larger"),
            (
                Box::new(|e| {
                    e.tags.insert(String::new(), "x".into());
                }),
                "tags key: is empty",
            ),
            (
                Box::new(|e| {
                    e.tags.insert("k".into(), "v".repeat(300));
                }),
                "tags.k: is 300 bytes long",
            ),
            (
                Box::new(|e| e.tags = (0..65).map(|i| (format!("k{i}"), String::new())).collect()),
                "tags: has 65 entries",
            ),
        ];
        for (mutate, expected) in cases {
            let mut e = sample(1);
            mutate(&mut e);
            let err = e.validate().unwrap_err().to_string();
            assert!(err.starts_with(expected), "wanted {expected:?}, got {err:?}");
        }
    }
}
