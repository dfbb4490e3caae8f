//! The `rows` layout: one row per event in `points`, written in unlogged
//! batches that stay within one Cassandra partition.
//!
//! - [`RowPacker`] (pure) groups events by partition key and cuts them into
//!   CQL batches by rows and bytes;
//! - [`RowWriter`] writes one batch with a deterministic primary key and
//!   write timestamp, so a replay is an overwrite.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use herd_model::Event;
use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::value::CqlTimestamp;

use crate::write::{partition_key, prepare_insert};
use crate::WriteError;
use crate::{SinkError, SinkSettings, WriteTimestamp};

/// Writes rows with one prepared statement, shared by all tasks.
#[derive(Clone)]
pub struct RowWriter {
    session: Arc<Session>,
    insert: PreparedStatement,
    settings: Arc<SinkSettings>,
}

type Row<'a> = (
    &'a str,
    CqlTimestamp,
    &'a str,
    CqlTimestamp,
    &'a str,
    i64,
    f64,
    &'a std::collections::BTreeMap<String, String>,
    i64,
    i32,
);

impl RowWriter {
    pub async fn prepare(
        session: Arc<Session>,
        settings: SinkSettings,
    ) -> Result<RowWriter, SinkError> {
        let insert = prepare_insert(
            &session,
            format!(
                "INSERT INTO {}.points (series, bucket, metric, ts, producer, seq, value, tags) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?",
                settings.keyspace
            ),
            &settings,
        )
        .await?;
        Ok(RowWriter { session, insert, settings: Arc::new(settings) })
    }

    pub fn settings(&self) -> &SinkSettings {
        &self.settings
    }

    fn row<'a>(&self, e: &'a Event, now_micros: i64) -> Row<'a> {
        let (series, bucket) = partition_key(e, self.settings.bucket_ms);
        let write_ts = match self.settings.write_timestamp {
            // Microseconds, as Cassandra's own writes use.
            WriteTimestamp::EventTime => e.ts * 1000,
            WriteTimestamp::IngestTime => now_micros,
        };
        (
            series,
            CqlTimestamp(bucket),
            &e.metric,
            CqlTimestamp(e.ts),
            &e.producer,
            e.seq as i64,
            e.value,
            &e.tags,
            write_ts,
            self.settings.ttl_secs,
        )
    }

    /// Writes events that share one partition key: a single statement for
    /// one event, else one unlogged batch (atomic within the partition and
    /// a single round trip, without a batch log).
    pub async fn write_partition(&self, events: &[&Event]) -> Result<(), WriteError> {
        let now_micros =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
        match events {
            [] => Ok(()),
            [one] => {
                self.session.execute_unpaged(&self.insert, self.row(one, now_micros)).await?;
                Ok(())
            }
            many => {
                debug_assert!(
                    many.iter().all(|e| partition_key(e, self.settings.bucket_ms)
                        == partition_key(many[0], self.settings.bucket_ms)),
                    "a batch must stay within one partition"
                );
                let mut batch = Batch::new(BatchType::Unlogged);
                for _ in many {
                    batch.append_statement(self.insert.clone());
                }
                batch.set_consistency(Consistency::LocalQuorum);
                batch.set_request_timeout(Some(self.settings.write_timeout));
                batch.set_is_idempotent(true);
                let rows: Vec<Row<'_>> = many.iter().map(|e| self.row(e, now_micros)).collect();
                self.session.batch(&batch, rows).await?;
                Ok(())
            }
        }
    }
}

/// How [`RowPacker`] cuts CQL batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Rows per CQL batch, at least 1.
    pub max_rows: usize,
    /// Approximate bytes per CQL batch (a batch holds at least one row).
    pub max_bytes: usize,
    /// The keyspace's bucket width in ms.
    pub bucket_ms: i64,
}

/// Events of one Cassandra partition, written as one CQL batch, each with a
/// tag of the caller's (where it came from, to dead-letter it on failure).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RowBatch {
    pub events: Vec<Event>,
    pub tags: Vec<u32>,
}

/// Groups events by partition key as they come, and cuts the groups into
/// batches on [`RowPacker::take`]. Pure.
pub struct RowPacker {
    limits: BatchLimits,
    /// Series, then bucket: looking up a series by `&str` allocates nothing,
    /// so only a series new to the packer costs a String.
    groups: HashMap<String, HashMap<i64, Vec<(Event, u32)>>>,
}

impl RowPacker {
    pub fn new(limits: BatchLimits) -> RowPacker {
        RowPacker { limits, groups: HashMap::new() }
    }

    pub fn add(&mut self, event: Event, tag: u32) {
        let (series, bucket) = partition_key(&event, self.limits.bucket_ms);
        let group = match self.groups.get_mut(series) {
            Some(buckets) => buckets,
            None => self.groups.entry(series.to_owned()).or_default(),
        };
        group.entry(bucket).or_default().push((event, tag));
    }

    /// The batches of everything added since the last call.
    pub fn take(&mut self) -> Vec<RowBatch> {
        let mut batches = Vec::new();
        for events in self.groups.drain().flat_map(|(_, buckets)| buckets.into_values()) {
            let mut batch = RowBatch::default();
            let mut bytes = 0;
            for (event, tag) in events {
                let size = event.approx_bytes();
                if !batch.events.is_empty()
                    && (batch.events.len() >= self.limits.max_rows
                        || bytes + size > self.limits.max_bytes)
                {
                    batches.push(std::mem::take(&mut batch));
                    bytes = 0;
                }
                bytes += size;
                batch.events.push(event);
                batch.tags.push(tag);
            }
            if !batch.events.is_empty() {
                batches.push(batch);
            }
        }
        batches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(series: &str, ts: i64, seq: u64) -> Event {
        Event {
            series: series.into(),
            metric: "m".into(),
            ts,
            value: 0.0,
            tags: Default::default(),
            producer: "p".into(),
            seq,
        }
    }

    fn limits() -> BatchLimits {
        BatchLimits { max_rows: 3, max_bytes: 1 << 20, bucket_ms: 1000 }
    }

    #[test]
    fn groups_by_partition_key_and_splits_batches_by_rows() {
        let mut p = RowPacker::new(limits());
        // Series a, bucket 0: 5 events; series a, bucket 1000: 1; series b: 1.
        for (i, e) in (0..5)
            .map(|i| event("a", i, i as u64))
            .chain([event("a", 1500, 10), event("b", 3, 11)])
            .enumerate()
        {
            p.add(e, i as u32);
        }
        let batches = p.take();
        let mut sizes: Vec<usize> = batches.iter().map(|b| b.events.len()).collect();
        sizes.sort();
        assert_eq!(sizes, vec![1, 1, 2, 3], "5 events of one partition split 3 + 2");
        for batch in &batches {
            let key = partition_key(&batch.events[0], 1000);
            assert!(
                batch.events.iter().all(|e| partition_key(e, 1000) == key),
                "one partition per batch"
            );
            for (e, &tag) in batch.events.iter().zip(&batch.tags) {
                assert_eq!(
                    tag as u64,
                    if e.seq < 5 { e.seq } else { e.seq - 5 },
                    "each event keeps its tag"
                );
            }
        }
        assert!(p.take().is_empty(), "take empties the packer");
    }

    #[test]
    fn splits_batches_by_bytes() {
        let mut l = limits();
        l.max_rows = 100;
        l.max_bytes = event("a", 0, 0).approx_bytes() * 2;
        let mut p = RowPacker::new(l);
        (0..5).for_each(|i| p.add(event("a", i, i as u64), 0));
        let mut sizes: Vec<usize> = p.take().iter().map(|b| b.events.len()).collect();
        sizes.sort();
        assert_eq!(sizes, vec![1, 2, 2]);
    }
}
