//! Kafka helpers for tests: produce and learn where each message landed,
//! read partitions' ends, read a topic back.

use std::collections::BTreeMap;
use std::time::Duration;

use herd_config::Endpoints;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// One message to produce.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub content_type: Option<&'static str>,
}

/// Produces `messages` in order of the slice (up to 1000 in flight) and
/// returns each one's (partition, offset). Panics on a failed delivery.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    messages: &[Outgoing],
) -> Vec<(i32, i64)> {
    let mut positions = Vec::with_capacity(messages.len());
    for window in messages.chunks(1000) {
        let sends = window.iter().map(|m| {
            let mut record = FutureRecord::to(topic).key(&m.key).payload(&m.payload);
            if let Some(ct) = m.content_type {
                record = record.headers(
                    OwnedHeaders::new().insert(Header { key: "content-type", value: Some(ct) }),
                );
            }
            producer.send(record, Duration::from_secs(60))
        });
        for result in futures::future::join_all(sends).await {
            let delivery =
                result.unwrap_or_else(|(e, _)| panic!("delivery to {topic} failed: {e}"));
            positions.push((delivery.partition, delivery.offset));
        }
    }
    positions
}

/// The end offset (high watermark) of each partition of `topic`.
pub async fn end_offsets(endpoints: &Endpoints, topic: &str) -> BTreeMap<i32, i64> {
    let partitions = herd_clients::kafka::partitions(endpoints, &[topic.to_owned()])
        .await
        .expect("topic metadata");
    herd_clients::kafka::end_offsets(endpoints, partitions)
        .await
        .expect("end offsets")
        .into_iter()
        .map(|(shard, end)| (shard.partition, end))
        .collect()
}

/// Every record of `topic` (all partitions, from the start) until `count`
/// have been read or `limit` passes.
pub fn read_all(
    endpoints: &Endpoints,
    topic: &str,
    count: usize,
    limit: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer: BaseConsumer = herd_clients::kafka::base_config(endpoints, "test-reader")
        .expect("Kafka settings")
        .set("group.id", format!("reader-{topic}-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = std::time::Instant::now() + limit;
    let mut out = Vec::new();
    while out.len() < count && std::time::Instant::now() < deadline {
        if let Some(result) = consumer.poll(Duration::from_millis(200)) {
            out.push(result.expect("read").detach());
        }
    }
    out
}
