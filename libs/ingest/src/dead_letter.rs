//! Dead letters: events herd could not decode or store. Each goes to the
//! dead-letter topic before its source offset is committed, so none is lost.
//!
//! The record's payload is the original bytes (the rejected JSON line, or the
//! whole message) for decode failures, and the event as JSON for write
//! failures. Headers say where it came from and why:
//!
//! | header                | value                                  |
//! |-----------------------|----------------------------------------|
//! | herd.source.topic     | topic of the original message          |
//! | herd.source.partition | its partition                          |
//! | herd.source.offset    | its offset                             |
//! | herd.error.stage      | `decode` or `write`                    |
//! | herd.error.position   | `message`, `line N`, `row N` or `event` |
//! | herd.error.reason     | what was wrong                         |
//! | herd.worker           | the worker that rejected it            |
//! | content-type          | the original content type, if any      |

use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::backoff;
use crate::metrics as m;
use crate::settings::RetrySettings;
use crate::source::SourcePosition;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Decode,
    Write,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Write => "write",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub source: SourcePosition,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub content_type: Option<String>,
    pub stage: Stage,
    pub position: String,
    pub reason: String,
}

impl DeadLetter {
    pub fn headers(&self, worker: &str) -> Vec<(&'static str, String)> {
        let mut h = vec![
            ("herd.source.topic", self.source.shard.topic.to_string()),
            ("herd.source.partition", self.source.shard.partition.to_string()),
            ("herd.source.offset", self.source.offset.to_string()),
            ("herd.error.stage", self.stage.as_str().to_owned()),
            ("herd.error.position", self.position.clone()),
            ("herd.error.reason", self.reason.clone()),
            ("herd.worker", worker.to_owned()),
        ];
        if let Some(ct) = &self.content_type {
            h.push((herd_model::CONTENT_TYPE_HEADER, ct.clone()));
        }
        h
    }
}

/// Sends dead letters; retries until Kafka acknowledges, since a dead letter
/// that is not stored must not let its offset be committed.
pub struct DeadLetterSink {
    pub producer: FutureProducer,
    pub topic: String,
    pub worker: String,
}

impl DeadLetterSink {
    /// Returns once Kafka acknowledged the letter.
    pub async fn send(&self, letter: &DeadLetter, retry: &RetrySettings) {
        let headers = letter.headers(&self.worker);
        let mut attempt = 0;
        loop {
            let mut kafka_headers =
                rdkafka::message::OwnedHeaders::new_with_capacity(headers.len());
            for (k, v) in &headers {
                kafka_headers = kafka_headers
                    .insert(rdkafka::message::Header { key: k, value: Some(v.as_str()) });
            }
            let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic)
                .payload(&letter.payload)
                .headers(kafka_headers);
            if let Some(key) = &letter.key {
                record = record.key(key);
            }
            match self.producer.send(record, Duration::from_secs(30)).await {
                Ok(_) => {
                    metrics::counter!(m::EVENTS_DEAD_LETTERED, "stage" => letter.stage.as_str())
                        .increment(1);
                    return;
                }
                Err((e, _)) => {
                    let wait = backoff::delay(attempt, retry.initial, retry.max, rand::random());
                    tracing::warn!(
                        topic = %self.topic, error = &e as &dyn std::error::Error, source_topic = %letter.source.shard.topic,
                        partition = letter.source.shard.partition, offset = letter.source.offset,
                        "sending a dead letter failed; retrying in {} ms (its offset is not committed meanwhile)",
                        wait.as_millis()
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }
}
