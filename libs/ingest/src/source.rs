//! Where messages come from: the Kafka partitions this worker was granted.

use std::ffi::CString;

use crate::shards::Shard;
use herd_config::Endpoints;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::metrics as m;

/// Where a message came from, and when Kafka appended it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePosition {
    pub shard: Shard,
    pub offset: i64,
    /// The message's Kafka timestamp (ms; the append time where the topic
    /// keeps LogAppendTime, else the producer's create time), if any.
    pub appended_ms: Option<i64>,
}

pub struct SourceContext;

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                // -1 is librdkafka's internal UA partition; offsets -1 mean
                // unknown yet. Lag: messages in Kafka not yet handed to herd.
                if partition >= 0 && p.app_offset >= 0 && p.hi_offset >= 0 {
                    metrics::gauge!(m::PARTITION_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                        .set((p.hi_offset - p.app_offset).max(0) as f64);
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {}

/// The position a granted shard starts reading from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The shard's checkpoint: the next offset to read.
    Offset(i64),
    /// A checkpoint at `next` inside an offset window that starts at
    /// `window` (blocks layout): reading starts at `window` again, so the
    /// windows are cut as before; what it re-reads is stored already and
    /// is written again under the same keys.
    InWindow { window: i64, next: i64 },
    /// No checkpoint yet: the earliest offset Kafka still holds.
    Beginning,
}

impl StartAt {
    /// Where a stored checkpoint says to start.
    pub fn from_checkpoint(next: Option<i64>, window_start: Option<i64>) -> StartAt {
        match (next, window_start) {
            (Some(next), Some(window)) if window < next => StartAt::InWindow { window, next },
            (Some(next), _) => StartAt::Offset(next),
            (None, _) => StartAt::Beginning,
        }
    }

    /// The offset reading starts at (None: Kafka's beginning), which is
    /// also where the shard's first window starts.
    pub fn read_from(self) -> Option<i64> {
        match self {
            StartAt::Offset(o) | StartAt::InWindow { window: o, .. } => Some(o),
            StartAt::Beginning => None,
        }
    }

    /// The checkpoint the shard starts from (None: none yet).
    pub fn checkpoint(self) -> Option<i64> {
        match self {
            StartAt::Offset(o) | StartAt::InWindow { next: o, .. } => Some(o),
            StartAt::Beginning => None,
        }
    }
}

/// A Kafka consumer that reads exactly the partitions it is given (manual
/// assignment, no consumer group): the coordinator decides who reads what,
/// and offsets are checkpointed in Cassandra, not committed to Kafka.
pub struct KafkaSource {
    consumer: StreamConsumer<SourceContext>,
}

impl KafkaSource {
    pub fn new(
        endpoints: &Endpoints,
        client_id: &str,
    ) -> Result<KafkaSource, herd_clients::ClientError> {
        let mut config = herd_clients::kafka::base_config(endpoints, client_id)?;
        config
            // Never joined (no subscribe) and never committed to: librdkafka
            // only needs a group for incremental (per-shard) assignment.
            .set("group.id", format!("herd-worker-{client_id}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A checkpoint older than the topic's retention: start from the
            // oldest message still there (what was deleted is gone anyway).
            .set("auto.offset.reset", "earliest")
            // Bounds what librdkafka prefetches: 4 MiB per consumer instead
            // of 64 MiB. Whenever the worker reads behind the partitions'
            // ends (catching up, or paused while Cassandra is down) the
            // queue stays full: at 16 MiB, librdkafka's heap in the worker
            // went from 2 MB at the head to 34 MB catching up; at 4 MiB,
            // 17-25 MB. Catching up after a Cassandra outage, the workers
            // had all their chunks in flight either way: the writes, not
            // the prefetch, set the pace.
            .set("queued.max.messages.kbytes", "4096")
            // Once that prefetch is full, librdkafka waits this long before it
            // fetches again (default 1 s): the worker then drained its 16 MiB
            // in a fraction of a second and sat idle for the rest (measured:
            // 45 % of a core busy, 300,000 events/s in the blocks layout).
            .set("fetch.queue.backoff.ms", "5")
            .set("statistics.interval.ms", "5000");
        let consumer: StreamConsumer<SourceContext> = config
            .create_with_context(SourceContext)
            .map_err(|source| herd_clients::ClientError::Kafka {
                brokers: endpoints.kafka_bootstrap(),
                source: source.into(),
                why: None,
            })?;
        Ok(KafkaSource { consumer })
    }

    /// Starts reading the shard at `at`.
    pub fn start(&self, shard: &Shard, at: StartAt) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::with_capacity(1);
        let offset = at.read_from().map_or(Offset::Beginning, Offset::Offset);
        tpl.add_partition_offset(&shard.topic, shard.partition, offset)?;
        self.consumer.incremental_assign(&tpl)
    }

    /// Stops reading the shard; librdkafka drops what it prefetched.
    pub fn stop(&self, shard: &Shard) -> Result<(), KafkaError> {
        self.consumer.incremental_unassign(&one(shard))
    }

    /// Stops fetching the shard until [`KafkaSource::resume`]; what was
    /// prefetched is dropped, and reading resumes after the last message
    /// handed to herd.
    pub fn pause(&self, shard: &Shard) -> Result<(), KafkaError> {
        self.consumer.pause(&one(shard))
    }

    pub fn resume(&self, shard: &Shard) -> Result<(), KafkaError> {
        self.consumer.resume(&one(shard))
    }

    /// The partition's end (the offset its next message will get) as of the
    /// last fetch: no request, librdkafka's cached high watermark. None
    /// before the first fetch.
    pub fn known_end(&self, shard: &Shard) -> Option<i64> {
        let topic = CString::new(&*shard.topic).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer lives as long as self.consumer; topic is
        // a valid C string for the call; low and high are valid out-pointers.
        // librdkafka only reads its cache under its own lock.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                shard.partition,
                &mut low,
                &mut high,
            )
        };
        (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
            .then_some(high)
    }

    pub async fn recv(&self) -> Result<BorrowedMessage<'_>, KafkaError> {
        self.consumer.recv().await
    }
}

fn one(shard: &Shard) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(1);
    tpl.add_partition(&shard.topic, shard.partition);
    tpl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_inside_a_window_reads_from_the_window() {
        let at = StartAt::from_checkpoint(Some(150), Some(100));
        assert_eq!(at, StartAt::InWindow { window: 100, next: 150 });
        assert_eq!((at.read_from(), at.checkpoint()), (Some(100), Some(150)));
        let at = StartAt::from_checkpoint(Some(150), None);
        assert_eq!(
            (at, at.read_from(), at.checkpoint()),
            (StartAt::Offset(150), Some(150), Some(150))
        );
        assert_eq!(
            StartAt::from_checkpoint(Some(150), Some(150)),
            StartAt::Offset(150),
            "an empty window"
        );
        let at = StartAt::from_checkpoint(None, None);
        assert_eq!((at, at.read_from(), at.checkpoint()), (StartAt::Beginning, None, None));
    }
}
