//! Where messages come from, and where their offsets are committed.
//!
//! Today a worker joins a Kafka consumer group ([`KafkaSource::consumer_group`]),
//! so Kafka decides which partitions it owns. The coordinator (issue 4)
//! replaces that with partitions it grants explicitly; the pipeline only uses
//! `recv` and `commit`, so only this module changes.

use herd_config::Endpoints;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::BorrowedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::chunk::CommitOffset;
use crate::metrics as m;

pub struct SourceContext;

impl ClientContext for SourceContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                // -1 is librdkafka's internal UA partition; lag -1 means unknown yet.
                if partition >= 0 && p.consumer_lag >= 0 {
                    metrics::gauge!(m::PARTITION_LAG, "topic" => topic.clone(), "partition" => partition.to_string())
                        .set(p.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for SourceContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => tracing::info!(partitions = %describe(tpl), "partitions assigned"),
            Rebalance::Revoke(tpl) => tracing::info!(
                partitions = %describe(tpl),
                "partitions revoked; their uncommitted messages will be replayed by the next owner (writes are idempotent)"
            ),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed; the consumer will rejoin the group"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(
                error = %e, offsets = %describe(offsets),
                "offset commit failed; the next commit covers these offsets, or they are replayed after a restart"
            );
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

pub struct KafkaSource {
    consumer: StreamConsumer<SourceContext>,
}

impl KafkaSource {
    /// Joins `group_id` and subscribes to `topics`. Offsets are committed only
    /// by [`KafkaSource::commit`], after the writes they cover.
    pub fn consumer_group(
        endpoints: &Endpoints,
        client_id: &str,
        group_id: &str,
        topics: &[String],
    ) -> Result<KafkaSource, KafkaError> {
        let mut config = herd_clients::kafka::base_config(endpoints, client_id);
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // Bounds what librdkafka prefetches while the pipeline is paused
            // (Cassandra down): 16 MiB per consumer instead of 64 MiB.
            .set("queued.max.messages.kbytes", "16384")
            .set("statistics.interval.ms", "5000")
            // A worker that dies (kill -9) keeps its partitions until its
            // session times out: 10 s instead of Kafka's 45 s default (the
            // broker's floor is 6 s).
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "3000");
        let consumer: StreamConsumer<SourceContext> = config.create_with_context(SourceContext)?;
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        Ok(KafkaSource { consumer })
    }

    pub async fn recv(&self) -> Result<BorrowedMessage<'_>, KafkaError> {
        self.consumer.recv().await
    }

    /// Commits `offsets` (the next offset to read, per partition). `sync`
    /// waits for the broker's answer, for the final commit at shutdown.
    pub fn commit(&self, offsets: &[CommitOffset], sync: bool) -> Result<(), KafkaError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for o in offsets {
            tpl.add_partition_offset(&o.topic, o.partition, Offset::Offset(o.next))?;
        }
        metrics::counter!(m::OFFSET_COMMITS).increment(1);
        self.consumer
            .commit(&tpl, if sync { CommitMode::Sync } else { CommitMode::Async })
    }
}
