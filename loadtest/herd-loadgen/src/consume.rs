//! `herd-loadgen consume`: the consumer ceiling. A bare librdkafka consumer
//! reads every partition of a topic from its beginning to the end offsets
//! it found at start, decoding nothing and writing nothing: the most any
//! Kafka reader could take from this broker on this machine, to set herd's
//! end-to-end rate against in the same run. With `--decode`, it also decodes
//! every message into events as herd-worker does (herd_model::decode), on
//! one thread, and counts the events: the ceiling of a reader that looks at
//! what it reads, still writing nothing.

use std::time::{Duration, Instant};

use anyhow::Context;
use herd_config::Endpoints;
use herd_telemetry::Exit;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    /// The topic to read, all partitions, from the beginning.
    #[arg(long)]
    topic: String,
    /// Events the topic holds (what produce sent), to report events/s.
    #[arg(long)]
    events: Option<u64>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Decode every message into events, as herd-worker does, and count
    /// them (events/s is then measured, not taken from --events).
    #[arg(long)]
    decode: bool,
}

#[derive(Debug, Serialize)]
pub struct ConsumeSummary {
    pub topic: String,
    pub messages: u64,
    pub bytes: u64,
    /// From the first message received to the last.
    pub secs: f64,
    pub messages_per_sec: f64,
    pub mb_per_sec: f64,
    pub events_per_sec: Option<f64>,
    /// With --decode: the events and rejects decoded.
    pub decoded_events: Option<u64>,
    pub decoded_rejects: Option<u64>,
}

pub async fn run(endpoints: &Endpoints, a: ConsumeArgs) -> Result<std::process::ExitCode, Exit> {
    let endpoints = endpoints.clone();
    let summary = tokio::task::spawn_blocking(move || consume(&endpoints, &a).map(|s| (s, a.json)))
        .await
        .context("the consumer thread panicked")??;
    let (s, json) = summary;
    if json {
        println!("{}", serde_json::to_string_pretty(&s).context("while encoding JSON")?);
    } else {
        println!(
            "consume: {} messages, {:.1} MB of {} in {:.2} s: {:.0} messages/s, {:.1} MB/s{}",
            s.messages,
            s.bytes as f64 / 1e6,
            s.topic,
            s.secs,
            s.messages_per_sec,
            s.mb_per_sec,
            s.events_per_sec.map(|e| format!(", {e:.0} events/s")).unwrap_or_default()
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn consume(endpoints: &Endpoints, a: &ConsumeArgs) -> Result<ConsumeSummary, Exit> {
    let mut config = herd_clients::kafka::base_config(endpoints, "herd-loadgen-consume")
        .context("while configuring the consumer")?;
    // Never joined, never committed: the group id only satisfies librdkafka.
    config
        .set("group.id", "herd-loadgen-consume")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = config.create().context("while creating the consumer")?;
    let timeout = Duration::from_secs(a.timeout_secs);
    let metadata = consumer
        .fetch_metadata(Some(&a.topic), endpoints.connect_timeout)
        .context("while reading the topic's metadata")?;
    let partitions: Vec<i32> =
        metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    if partitions.is_empty() {
        return Err(Exit::BadInput(anyhow::anyhow!(
            "topic {:?} has no partitions (does it exist?)",
            a.topic
        )));
    }
    let mut ends = std::collections::HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(&a.topic, p, endpoints.connect_timeout)
            .context("while reading end offsets")?;
        if high > low {
            ends.insert(p, high);
            tpl.add_partition_offset(&a.topic, p, Offset::Beginning).context("while assigning")?;
        }
    }
    consumer.assign(&tpl).context("while assigning the partitions")?;
    let (mut messages, mut bytes, mut events, mut rejects) = (0u64, 0u64, 0u64, 0u64);
    let started = Instant::now();
    let mut first: Option<Instant> = None;
    let mut last = started;
    while !ends.is_empty() {
        if started.elapsed() > timeout {
            return Err(anyhow::anyhow!(
                "{} partitions not read to their end within {timeout:?}",
                ends.len()
            )
            .into());
        }
        let Some(result) = consumer.poll(Duration::from_millis(100)) else { continue };
        let m = result.context("while consuming")?;
        let now = Instant::now();
        first.get_or_insert(now);
        last = now;
        messages += 1;
        bytes += m.payload_len() as u64;
        if a.decode {
            use rdkafka::message::Headers;
            let content_type = m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key.eq_ignore_ascii_case(herd_model::CONTENT_TYPE_HEADER))
                    .and_then(|h| h.value)
            });
            let d = herd_model::decode(m.payload(), content_type);
            events += d.events.len() as u64;
            rejects += d.rejects.len() as u64;
        }
        if ends.get(&m.partition()).is_some_and(|&end| m.offset() + 1 >= end) {
            ends.remove(&m.partition());
        }
    }
    let secs = last.duration_since(first.unwrap_or(last)).as_secs_f64().max(1e-6);
    Ok(ConsumeSummary {
        topic: a.topic.clone(),
        messages,
        bytes,
        secs,
        messages_per_sec: messages as f64 / secs,
        mb_per_sec: bytes as f64 / 1e6 / secs,
        events_per_sec: if a.decode {
            Some(events as f64 / secs)
        } else {
            a.events.map(|e| e as f64 / secs)
        },
        decoded_events: a.decode.then_some(events),
        decoded_rejects: a.decode.then_some(rejects),
    })
}
