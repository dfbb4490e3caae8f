//! Kafka helpers for tests: produce and learn where each message landed,
//! compare a group's committed offsets with the partitions' ends.

use std::time::Duration;

use herd_config::Endpoints;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// One message to produce.
pub struct Outgoing {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub content_type: Option<&'static str>,
}

/// Produces `messages` in order of the slice (up to 1000 in flight) and
/// returns each one's (partition, offset). Panics on a failed delivery.
pub async fn produce(producer: &FutureProducer, topic: &str, messages: &[Outgoing]) -> Vec<(i32, i64)> {
    let mut positions = Vec::with_capacity(messages.len());
    for window in messages.chunks(1000) {
        let sends = window.iter().map(|m| {
            let mut record = FutureRecord::to(topic).key(&m.key).payload(&m.payload);
            if let Some(ct) = m.content_type {
                record = record.headers(OwnedHeaders::new().insert(Header { key: "content-type", value: Some(ct) }));
            }
            producer.send(record, Duration::from_secs(60))
        });
        for result in futures::future::join_all(sends).await {
            let delivery = result.unwrap_or_else(|(e, _)| panic!("delivery to {topic} failed: {e}"));
            positions.push((delivery.partition, delivery.offset));
        }
    }
    positions
}

fn offsets_consumer(endpoints: &Endpoints, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", endpoints.kafka_bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("offsets consumer")
}

/// Sum over the topic's partitions of (committed offset of `group`, end offset).
pub fn committed_and_end(endpoints: &Endpoints, topic: &str, group: &str) -> (i64, i64) {
    let consumer = offsets_consumer(endpoints, group);
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).expect("topic metadata");
    let partitions: Vec<i32> = metadata.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, timeout).expect("committed offsets");
    let mut sum_committed = 0;
    let mut sum_end = 0;
    for &p in &partitions {
        let (_, high) = consumer.fetch_watermarks(topic, p, timeout).expect("watermarks");
        sum_end += high;
        if let Some(Offset::Offset(o)) = committed.find_partition(topic, p).map(|e| e.offset()) {
            sum_committed += o;
        }
    }
    (sum_committed, sum_end)
}

/// Waits until `group` has committed every message of `topic`; panics after
/// `limit` with how far it got.
pub async fn wait_all_committed(endpoints: &Endpoints, topic: &str, group: &str, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let (committed, end) = {
            let (e, t, g) = (endpoints.clone(), topic.to_owned(), group.to_owned());
            tokio::task::spawn_blocking(move || committed_and_end(&e, &t, &g)).await.unwrap()
        };
        if committed == end {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "group {group} committed {committed} of {end} messages of {topic} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every record of `topic` (all partitions, from the start) until `count`
/// have been read or `limit` passes.
pub fn read_all(endpoints: &Endpoints, topic: &str, count: usize, limit: Duration) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", endpoints.kafka_bootstrap())
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
