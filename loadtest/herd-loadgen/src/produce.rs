//! `herd-loadgen produce`: open-loop load into Kafka.
//!
//! Messages are planned up front (which producer, which sequence numbers,
//! when each is due), encoded a few groups ahead on the blocking pool, sent
//! on schedule whatever the broker's latency, and tallied as Kafka
//! acknowledges them. The end summary says how far behind schedule the
//! sends were, so an overloaded generator cannot pass for a slow pipeline.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::ValueEnum;
use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use herd_config::Endpoints;
use herd_model::Format;
use herd_telemetry::{BadInput, Exit};
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;

use crate::gen::{Generator, Shape};
use crate::probe::{self, Prober};
use crate::schedule::Schedule;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Encoding {
    /// One JSON event per message.
    Json,
    /// --batch-events JSON events per message, one per line.
    JsonLines,
    /// --batch-events events per Arrow IPC message.
    Arrow,
}

/// Kafka compression of the producer's batches (librdkafka `compression.type`).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(clap::Args, Debug)]
pub struct ShapeArgs {
    /// Number of distinct series the events are spread over.
    #[arg(long, default_value_t = 1000)]
    pub series: u64,
    /// Tags per event (keys region, host, service, zone, rack, env, team,
    /// build, then tag8, tag9, ...).
    #[arg(long, default_value_t = 1)]
    pub tags: usize,
    /// Distinct values of each tag: its cardinality. A tag's value follows
    /// the series, as tags describe a series.
    #[arg(long, default_value_t = 3)]
    pub tag_values: u64,
    /// Extra bytes per event, carried in pad0, pad1, ... tags of at most 256 bytes.
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
    /// What the values look like, per series: a random walk with 2
    /// decimals, a monotonic counter, a constant gauge, uniform random
    /// doubles, or the old cycle of 1,000 numbers.
    #[arg(long, value_enum, default_value_t = crate::values::ValueShape::Walk)]
    pub values: crate::values::ValueShape,
}

impl ShapeArgs {
    pub fn shape(&self) -> Shape {
        Shape {
            series: self.series,
            tags: self.tags,
            tag_values: self.tag_values,
            payload_bytes: self.payload_bytes,
            values: self.values,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    /// Kafka topic to produce to.
    #[arg(long)]
    topic: String,
    /// How many events, over all producers. Or --duration with --rate.
    #[arg(long, required_unless_present = "duration", conflicts_with = "duration")]
    events: Option<u64>,
    /// Seconds to run at --rate (a --ramp-secs ramp included); the number of
    /// events follows from it.
    #[arg(long)]
    duration: Option<f64>,
    /// Target events per second, open loop: each message leaves when it is
    /// due, whatever the broker's latency. 0: as fast as the broker takes them.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Reach --rate through a linear ramp of this many seconds.
    #[arg(long, default_value_t = 0.0)]
    ramp_secs: f64,
    /// Events per second at the start of the ramp.
    #[arg(long, default_value_t = 0)]
    ramp_from: u64,
    /// Concurrent producers, each with its own Kafka client and producer id
    /// (PRODUCER_ID-0, PRODUCER_ID-1, ...; just PRODUCER_ID when 1). The
    /// events are split evenly, the messages sent in turn.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Producer id written into every event (an event's identity is producer + seq).
    #[arg(long, default_value = "loadgen")]
    producer_id: String,
    #[command(flatten)]
    shape: ShapeArgs,
    /// Event time of the first event, ms since epoch [default: one hour ago,
    /// 10 ms apart per series; with --rate: each event stamped with its
    /// message's due time, so that write time - event time is the latency].
    #[arg(long)]
    base_ts: Option<i64>,
    #[arg(long, value_enum, default_value = "arrow")]
    encoding: Encoding,
    /// Events per message for json-lines and arrow.
    #[arg(long, default_value_t = 1000)]
    batch_events: usize,
    /// Compression of the producer's batches (librdkafka's compression.type).
    #[arg(long, value_enum, default_value = "none")]
    compression: Compression,
    /// Progress and the summary as JSON lines on stdout (one object each:
    /// {"progress": …}, then {"produced": …}), for scripts; text otherwise.
    #[arg(long)]
    json: bool,
    /// Percent of messages sent twice (the same bytes): a replay that must
    /// not duplicate anything in Cassandra. Chosen deterministically.
    #[arg(long, default_value_t = 0.0)]
    duplicate_pct: f64,
    /// Percent of messages followed by a malformed one (invalid JSON): it
    /// must end in the dead-letter topic, nothing else. Deterministic.
    #[arg(long, default_value_t = 0.0)]
    malformed_pct: f64,
    /// Also send the very same records (encoded beforehand) to TOPIC-raw
    /// through the same clients, once before and once after the run: the
    /// ceiling of the producer without generating and encoding events, in
    /// the same process and minute. Needs --rate 0.
    #[arg(long)]
    compare_raw: bool,
    /// Measure end-to-end latency as a reader sees it: for every
    /// --probe-every-th event, read it through herd's read path (either
    /// layout) in this keyspace (the workers' --keyspace) from when it is
    /// sent until it is there. With --json, each progress line also carries
    /// the probes seen since the last one ("visible_ms"). Needs --rate.
    #[arg(long, value_name = "KEYSPACE")]
    probe_keyspace: Option<String>,
    /// Probe one event in this many (per producer, by seq).
    #[arg(long, default_value_t = 1000)]
    probe_every: u64,
    /// A probe gives up after this many seconds and counts its event as not visible.
    #[arg(long, default_value_t = 120)]
    probe_timeout_secs: u64,
    /// Seconds between progress lines (on stderr).
    #[arg(long, default_value_t = 1.0)]
    progress_secs: f64,
    /// Send the content-type header (herd's workers also recognise the
    /// encodings without it).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    content_type_header: bool,
    /// Create the topic with this many partitions if it does not exist yet
    /// (without it, the broker's auto-creation decides).
    #[arg(long)]
    partitions: Option<i32>,
    /// With --partitions: create the topic with Kafka's append time as its
    /// messages' timestamps (message.timestamp.type=LogAppendTime), so that
    /// the workers' herd_append_to_write_seconds counts from the arrival in
    /// Kafka rather than from when this producer created the message.
    #[arg(long, requires = "partitions")]
    log_append_time: bool,
    /// Validate flags and environment, print what would be produced, and
    /// exit without connecting to anything.
    #[arg(long)]
    check_config: bool,
}

/// One message of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Msg {
    /// Its number in the run, over all producers.
    k: u64,
    producer: usize,
    first_seq: u64,
    events: u64,
    /// Events in the run's messages before it: its place in the schedule.
    before: u64,
}

/// The messages of a run: producer `i` sends `counts[i]` events, sequence
/// numbers from 0, `per_message` to a message; producers take turns.
fn plan(counts: Vec<u64>, per_message: u64) -> impl Iterator<Item = Msg> {
    let counts = Arc::new(counts);
    let rounds = counts.iter().map(|c| c.div_ceil(per_message)).max().unwrap_or(0);
    let (mut k, mut before) = (0, 0);
    (0..rounds)
        .flat_map(move |round| {
            let counts = counts.clone();
            (0..counts.len()).filter_map(move |i| {
                let first = round * per_message;
                (first < counts[i]).then(|| (i, first, (counts[i] - first).min(per_message)))
            })
        })
        .map(move |(producer, first_seq, events)| {
            let m = Msg { k, producer, first_seq, events, before };
            k += 1;
            before += events;
            m
        })
}

/// `total` events split over `n` producers, the remainder to the first ones.
fn split(total: u64, n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| total / n as u64 + u64::from(i < total % n as u64)).collect()
}

/// Whether message `m` is among the `pct` percent picked for `purpose`:
/// deterministic, so that a run can be repeated exactly.
fn chosen(m: u64, purpose: u64, pct: f64) -> bool {
    if pct <= 0.0 {
        return false;
    }
    let h = (m ^ purpose.wrapping_mul(0xA24B_AED4_963E_E407)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h >> 11) as f64 / (1u64 << 53) as f64) * 100.0 < pct
}

/// Encoded messages, in one buffer for payloads and one for keys: a
/// group costs a few allocations, not a few per message.
struct Group {
    payloads: Vec<u8>,
    keys: String,
    items: Vec<Item>,
}

struct Item {
    msg: Msg,
    /// When it is due, from the start of the run.
    due: Option<Duration>,
    /// Its events' time (ms since epoch) when it has a due time.
    at: Option<i64>,
    key: std::ops::Range<usize>,
    payload: std::ops::Range<usize>,
}

impl Group {
    fn key(&self, item: &Item) -> &str {
        &self.keys[item.key.clone()]
    }

    fn payload(&self, item: &Item) -> &[u8] {
        &self.payloads[item.payload.clone()]
    }
}

struct Run {
    generators: Vec<Arc<Generator>>,
    counts: Vec<u64>,
    per_message: u64,
    encoding: Encoding,
    schedule: Option<Schedule>,
    /// Wall-clock time (ms since epoch) the schedule starts at: set when
    /// the run's clock starts (after connecting), unless --base-ts fixes it.
    start_ms: std::sync::atomic::AtomicI64,
}

impl Run {
    fn encode(&self, msgs: Vec<Msg>) -> Group {
        // Typical sizes: an Arrow message carries about 1 KiB of schema and
        // framing, then about 80 bytes per event; a JSON event about 130.
        let (per_message, per_event) =
            if matches!(self.encoding, Encoding::Arrow) { (1024, 80) } else { (0, 160) };
        let events: u64 = msgs.iter().map(|m| m.events).sum();
        let mut group = Group {
            payloads: Vec::with_capacity(events as usize * per_event + per_message * msgs.len()),
            keys: String::with_capacity(msgs.len() * 16),
            items: Vec::with_capacity(msgs.len()),
        };
        for msg in msgs {
            let g = &self.generators[msg.producer];
            let due = self.schedule.map(|s| s.due(msg.before));
            let at = due.map(|d| self.start_ms.load(Relaxed) + d.as_millis() as i64);
            let seqs = msg.first_seq..msg.first_seq + msg.events;
            let (key0, payload0) = (group.keys.len(), group.payloads.len());
            match self.encoding {
                Encoding::Json => g.json(msg.first_seq, at, &mut group.payloads),
                Encoding::JsonLines => {
                    for seq in seqs {
                        g.json(seq, at, &mut group.payloads);
                        group.payloads.push(b'\n');
                    }
                }
                Encoding::Arrow => g.arrow(seqs, at, &mut group.payloads),
            }
            // A batch's key is its message number, so batches spread over all
            // partitions (their first events' series would repeat with the batch size).
            if msg.events == 1 {
                g.series_of(msg.first_seq, &mut group.keys);
            } else {
                group.keys.push_str("batch-");
                group.keys.push_str(itoa::Buffer::new().format(msg.k));
            }
            group.items.push(Item {
                msg,
                due,
                at,
                key: key0..group.keys.len(),
                payload: payload0..group.payloads.len(),
            });
        }
        group
    }

    fn content_type(&self) -> &'static str {
        match self.encoding {
            Encoding::Json => Format::Json,
            Encoding::JsonLines => Format::JsonLines,
            Encoding::Arrow => Format::ArrowIpc,
        }
        .content_type()
    }
}

/// Events encoded together (at least one message): few enough to bound
/// memory, enough that handing a group to the blocking pool costs little
/// next to encoding it.
const GROUP_EVENTS: u64 = 16_384;

fn group_messages(per_message: u64) -> usize {
    (GROUP_EVENTS / per_message).max(1) as usize
}

/// Microsecond histogram, 3 significant digits, up to an hour.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> String {
    format!("{:.1}", h.value_at_quantile(q) as f64 / 1000.0)
}

/// Delivery reports of a run, tallied by librdkafka's polling threads:
/// no future and no channel per message.
struct Acks {
    t0: Instant,
    events: AtomicU64,
    /// Reports received, delivered or failed.
    reports: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Send to acknowledgement, µs.
    latency: Mutex<Histogram<u64>>,
}

impl Acks {
    fn new() -> Acks {
        Acks {
            t0: Instant::now(),
            events: AtomicU64::new(0),
            reports: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            latency: Mutex::new(histogram()),
        }
    }

    /// Starts the tally again (nothing may be in flight).
    fn reset(&self) {
        for c in [&self.events, &self.reports, &self.errors] {
            c.store(0, Relaxed);
        }
        self.latency.lock().expect("not poisoned").reset();
        *self.first_error.lock().expect("not poisoned") = None;
    }

    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }
}

/// A message's delivery opaque: its events (0 for a duplicate or malformed
/// extra) and when it was sent, µs after `Acks::t0`.
const SENT_BITS: u32 = 40;
const MAX_EVENTS_PER_MESSAGE: u64 = (1 << (64 - SENT_BITS)) - 1;

fn pack(events: u64, sent_us: u64) -> usize {
    debug_assert!(events <= MAX_EVENTS_PER_MESSAGE);
    ((events << SENT_BITS) | (sent_us & ((1 << SENT_BITS) - 1))) as usize
}

fn unpack(opaque: usize) -> (u64, u64) {
    let v = opaque as u64;
    (v >> SENT_BITS, v & ((1 << SENT_BITS) - 1))
}

struct Reports(Arc<Acks>);

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let (events, sent_us) = unpack(opaque);
        let acks = &self.0;
        match result {
            Ok(_) => {
                acks.events.fetch_add(events, Relaxed);
                let latency = acks.now_us().saturating_sub(sent_us);
                acks.latency.lock().expect("not poisoned").saturating_record(latency);
            }
            Err((e, _)) => {
                acks.errors.fetch_add(1, Relaxed);
                acks.first_error.lock().expect("not poisoned").get_or_insert_with(|| e.to_string());
            }
        }
        acks.reports.fetch_add(1, Relaxed);
    }
}

type Producer = ThreadedProducer<Reports>;

/// Hands one message to librdkafka, waiting while its queue is full.
async fn send(
    producer: &Producer,
    acks: &Acks,
    topic: &str,
    key: &str,
    payload: &[u8],
    events: u64,
    content_type: Option<&str>,
) -> Result<(), Exit> {
    let mut record =
        BaseRecord::with_opaque_to(topic, pack(events, acks.now_us())).key(key).payload(payload);
    if let Some(ct) = content_type {
        record = record.headers(
            OwnedHeaders::new_with_capacity(1)
                .insert(Header { key: herd_model::CONTENT_TYPE_HEADER, value: Some(ct) }),
        );
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err((e, _)) => {
                return Err(anyhow::anyhow!("librdkafka refused a message for {topic}: {e}").into())
            }
        }
    }
}

/// Waits until every message handed to the producers is acknowledged or
/// failed: `sent` reports in all.
async fn drain(producers: &[Producer], acks: &Acks, sent: u64) -> Result<(), Exit> {
    for p in producers {
        tokio::task::block_in_place(|| p.flush(Duration::from_secs(120)))
            .context("while waiting for Kafka to acknowledge the last messages")?;
    }
    // Flushed means reported; the polling thread may still be in the callback.
    let deadline = Instant::now() + Duration::from_secs(10);
    while acks.reports.load(Relaxed) < sent {
        if Instant::now() > deadline {
            return Err(anyhow::anyhow!(
                "{} of {sent} messages were never reported delivered or failed",
                sent - acks.reports.load(Relaxed)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Prints acknowledged events, rate, errors and elapsed time every `every`:
/// a line on stderr, or a JSON object on stdout.
async fn progress_line(
    acks: Arc<Acks>,
    prober: Option<Arc<Prober>>,
    total: u64,
    every: Duration,
    started: Instant,
    json: bool,
) {
    let (mut last, mut last_at) = (0, Instant::now());
    loop {
        tokio::time::sleep(every).await;
        let (now, at) = (acks.events.load(Relaxed), Instant::now());
        let (elapsed, errors) = (started.elapsed().as_secs_f64(), acks.errors.load(Relaxed));
        let rate = (now - last) as f64 / (at - last_at).as_secs_f64();
        if json {
            // Freshness over time: the probes that saw their event since the last line.
            let visible = prober.as_ref().map(|p| p.recent()).filter(|h| !h.is_empty()).map(|h| {
                let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
                serde_json::json!({"n": h.len(), "p50": ms(0.5), "p99": ms(0.99), "max": ms(1.0)})
            });
            let progress = serde_json::json!({"progress": {
                "elapsed_s": elapsed, "acknowledged": now, "total": total,
                "events_per_s": rate, "errors": errors, "visible_ms": visible,
            }});
            println!("{progress}");
        } else {
            eprintln!(
                "[{elapsed:>5.1} s] {now} of {total} events acknowledged, {rate:.0} events/s, {errors} errors"
            );
        }
        (last, last_at) = (now, at);
    }
}

pub async fn run(endpoints: &Endpoints, a: ProduceArgs) -> Result<ExitCode, Exit> {
    for (name, v) in [("duplicate-pct", a.duplicate_pct), ("malformed-pct", a.malformed_pct)] {
        if !(0.0..=100.0).contains(&v) {
            return Err(Exit::BadInput(anyhow::anyhow!(
                "--{name} {v}: expected a percentage from 0 to 100"
            )));
        }
    }
    herd_config::kafka_topic("topic", &a.topic).bad_input()?;
    if a.batch_events == 0 || a.batch_events as u64 > MAX_EVENTS_PER_MESSAGE {
        return Err(Exit::BadInput(anyhow::anyhow!(
            "--batch-events {}: expected 1 to {MAX_EVENTS_PER_MESSAGE}",
            a.batch_events
        )));
    }
    if a.producers == 0 {
        return Err(Exit::BadInput(anyhow::anyhow!("--producers must be at least 1")));
    }
    if !(a.progress_secs.is_finite() && a.progress_secs >= 0.05) {
        return Err(Exit::BadInput(anyhow::anyhow!(
            "--progress-secs {}: expected at least 0.05",
            a.progress_secs
        )));
    }
    let schedule = match a.rate {
        0 if a.duration.is_some() || a.ramp_secs > 0.0 => {
            return Err(Exit::BadInput(anyhow::anyhow!(
                "--duration and --ramp-secs need a target --rate"
            )));
        }
        0 => None,
        rate => Some(
            Schedule::new(rate, a.ramp_from, a.ramp_secs)
                .map_err(|e| Exit::BadInput(anyhow::anyhow!(e)))?,
        ),
    };
    if let Some(ks) = &a.probe_keyspace {
        if !herd_sink::settings::valid_identifier(ks) {
            return Err(Exit::BadInput(anyhow::anyhow!("--probe-keyspace {ks:?} is not a keyspace name herd uses (letters, digits, underscores)")));
        }
        if schedule.is_none() {
            return Err(Exit::BadInput(anyhow::anyhow!("--probe-keyspace needs --rate: event time must be the send time to measure latency")));
        }
        if a.probe_every == 0 || a.probe_timeout_secs == 0 {
            return Err(Exit::BadInput(anyhow::anyhow!(
                "--probe-every and --probe-timeout-secs must be at least 1"
            )));
        }
    }
    if a.compare_raw && schedule.is_some() {
        return Err(Exit::BadInput(anyhow::anyhow!(
            "--compare-raw measures the fastest send rate: use it with --rate 0"
        )));
    }
    let total = match (a.events, a.duration, schedule) {
        (Some(n), _, _) => n,
        (None, Some(d), Some(s)) if d.is_finite() && d > 0.0 => s.events_in(d),
        (None, d, _) => {
            return Err(Exit::BadInput(anyhow::anyhow!(
                "--duration {d:?}: expected seconds above 0"
            )))
        }
    };
    if total == 0 {
        return Err(Exit::BadInput(anyhow::anyhow!(
            "nothing to produce: --events (or --duration × --rate) makes 0 events"
        )));
    }
    let shape = a.shape.shape();
    let now_ms =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let ids: Vec<String> = if a.producers == 1 {
        vec![a.producer_id.clone()]
    } else {
        (0..a.producers).map(|i| format!("{}-{i}", a.producer_id)).collect()
    };
    let generators = ids
        .iter()
        .map(|id| Generator::new(id, &shape, a.base_ts.unwrap_or(now_ms - 3_600_000)).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Exit::BadInput(anyhow::anyhow!(e)))?;
    let per_message = if matches!(a.encoding, Encoding::Json) { 1 } else { a.batch_events as u64 };
    let run = Arc::new(Run {
        generators,
        counts: split(total, a.producers),
        per_message,
        encoding: a.encoding,
        schedule,
        start_ms: a.base_ts.unwrap_or(now_ms).into(),
    });
    let compression =
        a.compression.to_possible_value().expect("every codec is a value").get_name().to_owned();
    let target = match (schedule, a.ramp_secs > 0.0) {
        (None, _) => "as fast as Kafka takes them".to_owned(),
        (Some(_), false) => format!("{} events/s", a.rate),
        (Some(_), true) => format!(
            "{} events/s after a {} s ramp from {} events/s",
            a.rate, a.ramp_secs, a.ramp_from
        ),
    };
    let expect: Vec<String> =
        ids.iter().zip(&run.counts).map(|(id, n)| format!("--expect {id}={n}")).collect();
    if a.check_config {
        println!("configuration ok: {endpoints:?}");
        println!(
            "produce {total} {:?} events to {}, {target}, compression {compression}",
            a.encoding, a.topic
        );
        println!(
            "check afterwards with: herd-loadgen verify --keyspace KEYSPACE {}",
            expect.join(" ")
        );
        return Ok(ExitCode::SUCCESS);
    }

    if let Some(p) = a.partitions {
        if !(1..=10_000).contains(&p) {
            return Err(Exit::BadInput(anyhow::anyhow!("--partitions {p}: expected 1 to 10000")));
        }
        let config: &[(&str, &str)] =
            if a.log_append_time { &[("message.timestamp.type", "LogAppendTime")] } else { &[] };
        herd_clients::kafka::ensure_topic_with(endpoints, &a.topic, p, 1, config)
            .await
            .context("while creating the topic")?;
    }
    let acks = Arc::new(Acks::new());
    let producers = ids
        .iter()
        .map(|id| {
            let mut config =
                herd_clients::kafka::producer_config(endpoints, &format!("herd-loadgen-{id}"))?;
            config.set("compression.type", &compression);
            herd_clients::kafka::threaded_producer(endpoints, &config, Reports(acks.clone()))
        })
        .collect::<Result<Vec<_>, _>>()
        .context("while creating the producers")?;
    let header = a.content_type_header.then(|| run.content_type());
    // Connect and learn the topics' leaders before any clock starts (this
    // also creates the topics where the broker auto-creates them).
    let raw_topic = format!("{}-raw", a.topic);
    for topic in std::iter::once(&a.topic).chain(a.compare_raw.then_some(&raw_topic)) {
        for p in &producers {
            tokio::task::block_in_place(|| {
                p.client().fetch_metadata(Some(topic), endpoints.connect_timeout)
            })
            .with_context(|| format!("while fetching the metadata of topic {topic}"))?;
        }
    }
    let prober = match &a.probe_keyspace {
        Some(ks) => Some(Arc::new(
            Prober::connect(endpoints, ks, Duration::from_secs(a.probe_timeout_secs)).await?,
        )),
        None => None,
    };
    let raw = if a.compare_raw {
        let groups = encode_all(&run);
        let before = send_raw(&groups, &producers, &acks, &raw_topic, header).await?;
        Some((groups, before))
    } else {
        None
    };
    acks.reset();
    let started = Instant::now();
    let progress = tokio::spawn(progress_line(
        acks.clone(),
        prober.clone(),
        total,
        Duration::from_secs_f64(a.progress_secs),
        started,
        a.json,
    ));
    let t0 = tokio::time::Instant::now();
    if a.base_ts.is_none() {
        // Event time = due time on the wall clock: the schedule starts now.
        run.start_ms.store(
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0),
            Relaxed,
        );
    }
    let (mut messages, mut sent, mut bytes, mut duplicates, mut malformed) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut behind: Option<Histogram<u64>> = None;
    // Encoding runs on the blocking pool, several groups of messages ahead,
    // in order; sending is one loop on the runtime.
    let mut groups = stream::iter(plan(run.counts.clone(), per_message))
        .chunks(group_messages(per_message))
        .map(|group| {
            let run = run.clone();
            tokio::task::spawn_blocking(move || run.encode(group))
        })
        .buffered(4);
    while let Some(group) = groups.next().await {
        let group = group.expect("encoding task panicked");
        for item in &group.items {
            // Open loop: a message leaves when it is due.
            if let Some(due) = item.due {
                let at = t0 + due;
                if at > tokio::time::Instant::now() {
                    tokio::time::sleep_until(at).await;
                }
                behind
                    .get_or_insert_with(histogram)
                    .saturating_record(at.elapsed().as_micros() as u64);
            }
            let producer = &producers[item.msg.producer];
            let (key, payload) = (group.key(item), group.payload(item));
            send(producer, &acks, &a.topic, key, payload, item.msg.events, header).await?;
            sent += 1;
            if chosen(item.msg.k, 1, a.duplicate_pct) {
                send(producer, &acks, &a.topic, key, payload, 0, header).await?;
                (sent, duplicates) = (sent + 1, duplicates + 1);
            }
            if chosen(item.msg.k, 2, a.malformed_pct) {
                let json = a.content_type_header.then(|| Format::Json.content_type());
                send(producer, &acks, &a.topic, key, b"{\"series\": \"malformed", 0, json).await?;
                (sent, malformed) = (sent + 1, malformed + 1);
            }
            if let (Some(prober), Some(ts)) = (&prober, item.at) {
                let g = &run.generators[item.msg.producer];
                let first = item.msg.first_seq.next_multiple_of(a.probe_every);
                for seq in
                    (first..item.msg.first_seq + item.msg.events).step_by(a.probe_every as usize)
                {
                    let (series, metric) = g.key(seq);
                    prober.probe(probe::Key {
                        series,
                        metric,
                        ts,
                        producer: g.producer().to_owned(),
                        seq,
                    });
                }
            }
            messages += 1;
            bytes += payload.len() as u64;
        }
    }
    drain(&producers, &acks, sent).await?;
    progress.abort();
    let secs = started.elapsed().as_secs_f64();
    let errors = acks.errors.load(Relaxed);
    if errors > 0 {
        let first = acks.first_error.lock().expect("not poisoned").clone().unwrap_or_default();
        return Err(anyhow::anyhow!(
            "{errors} of {sent} deliveries to {} failed; the first: {first}",
            a.topic
        )
        .into());
    }
    let prober = match &prober {
        Some(p) => Some(p.finish().await),
        None => None,
    };
    if a.json {
        let quantiles = |h: &Histogram<u64>, qs: &[(&str, f64)]| {
            let mut m = serde_json::Map::new();
            for (name, q) in qs {
                m.insert((*name).into(), (h.value_at_quantile(*q) as f64 / 1000.0).into());
            }
            serde_json::Value::Object(m)
        };
        let behind_ms =
            behind.as_ref().map(|b| quantiles(b, &[("p50", 0.5), ("p99", 0.99), ("max", 1.0)]));
        let ack_ms = quantiles(
            &acks.latency.lock().expect("not poisoned"),
            &[("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)],
        );
        let visible = prober.as_ref().map(|p| {
            serde_json::json!({
                "sampled": p.visible.len(),
                "ms": (!p.visible.is_empty()).then(|| quantiles(&p.visible, &[("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)])),
                "unseen": p.unseen, "skipped": p.skipped,
                "read_errors": p.read_errors, "last_error": p.last_error,
                "reads": p.reads,
                "read_wait_ms": (!p.read_wait.is_empty()).then(|| quantiles(&p.read_wait, &[("p50", 0.5), ("p99", 0.99), ("max", 1.0)])),
            })
        });
        let produced = serde_json::json!({"produced": {
            "events": total, "messages": messages, "bytes": bytes, "compression": compression,
            "topic": a.topic, "secs": secs, "events_per_s": total as f64 / secs,
            "target": target.to_string(), "behind_schedule_ms": behind_ms,
            "send_to_ack_ms": ack_ms, "visible_in_cassandra": visible,
            "duplicates": duplicates, "malformed": malformed, "expect": expect,
        }});
        println!("{produced}");
    } else {
        println!(
            "produced {total} events in {messages} messages ({:.1} MB, compression {compression}) to {} in {secs:.2} s: {:.0} events/s",
            bytes as f64 / 1e6,
            a.topic,
            total as f64 / secs
        );
        println!("  target: {target}");
        if let Some(b) = &behind {
            println!(
                "  sends behind schedule: p50 {} ms, p99 {} ms, max {} ms",
                ms(b, 0.5),
                ms(b, 0.99),
                ms(b, 1.0)
            );
        }
        {
            let h = acks.latency.lock().expect("not poisoned");
            println!(
                "  send to acknowledgement: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
                ms(&h, 0.5),
                ms(&h, 0.9),
                ms(&h, 0.99),
                ms(&h, 1.0)
            );
        }
        if let Some(p) = &prober {
            let h = &p.visible;
            if !h.is_empty() {
                println!(
                    "  visible in Cassandra ({} sampled events, read through herd's read path): p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
                    h.len(),
                    ms(h, 0.5),
                    ms(h, 0.9),
                    ms(h, 0.99),
                    ms(h, 1.0)
                );
            }
            if !p.read_wait.is_empty() {
                println!(
                    "  probe lookups: {} ({} at most at once), waited for their turn p50 {} ms, p99 {} ms, max {} ms",
                    p.reads,
                    probe::MAX_READS_IN_FLIGHT,
                    ms(&p.read_wait, 0.5),
                    ms(&p.read_wait, 0.99),
                    ms(&p.read_wait, 1.0)
                );
            }
            if let Some(last) = &p.last_error {
                println!("  probe reads that failed: {} (the last: {last})", p.read_errors);
            }
            if p.unseen + p.skipped > 0 {
                println!(
                    "  not probed or not seen: {} sampled events not visible within {} s, {} not probed ({} probes were already waiting)",
                    p.unseen,
                    a.probe_timeout_secs,
                    p.skipped,
                    probe::MAX_PROBES
                );
            }
        }
        if duplicates + malformed > 0 {
            println!("  also sent: {duplicates} messages a second time (must not duplicate), {malformed} malformed messages (must be dead-lettered)");
        }
        println!("  check with: herd-loadgen verify --keyspace KEYSPACE {}", expect.join(" "));
    }

    if let Some((groups, before)) = raw {
        let after = send_raw(&groups, &producers, &acks, &raw_topic, header).await?;
        let rate = total as f64 / secs;
        let raw_rate = 2.0 * total as f64 / (before + after);
        if a.json {
            let raw = serde_json::json!({"raw": {
                "topic": raw_topic, "messages": messages, "before_s": before, "after_s": after,
                "events_per_s": raw_rate, "ratio": rate / raw_rate,
            }});
            println!("{raw}");
        } else {
            println!(
                "raw librdkafka, the same {messages} records (key, header, payload) pre-encoded, sent to {raw_topic} through the same clients before and after: {before:.2} s and {after:.2} s, {raw_rate:.0} events/s; herd-loadgen reached {:.2} of it",
                rate / raw_rate
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every message of the run, encoded up front.
fn encode_all(run: &Run) -> Vec<Group> {
    plan(run.counts.clone(), run.per_message)
        .collect::<Vec<_>>()
        .chunks(group_messages(run.per_message))
        .map(|msgs| run.encode(msgs.to_vec()))
        .collect()
}

/// Sends already encoded messages as fast as librdkafka takes them, through
/// the same call as the run: the ceiling without generating and encoding
/// events. Returns the seconds until all were acknowledged. Starts the
/// delivery tally again: nothing may be in flight.
async fn send_raw(
    groups: &[Group],
    producers: &[Producer],
    acks: &Acks,
    topic: &str,
    header: Option<&str>,
) -> Result<f64, Exit> {
    let messages: u64 = groups.iter().map(|g| g.items.len() as u64).sum();
    acks.reset();
    let started = Instant::now();
    for group in groups {
        for item in &group.items {
            send(
                &producers[item.msg.producer],
                acks,
                topic,
                group.key(item),
                group.payload(item),
                item.msg.events,
                header,
            )
            .await?;
        }
    }
    drain(producers, acks, messages).await?;
    let secs = started.elapsed().as_secs_f64();
    if acks.errors.load(Relaxed) > 0 {
        return Err(anyhow::anyhow!(
            "{} raw deliveries to {topic} failed",
            acks.errors.load(Relaxed)
        )
        .into());
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_picks_about_the_percentage_independently_per_purpose() {
        let picked = |purpose, pct| (0..100_000u64).filter(|&m| chosen(m, purpose, pct)).count();
        assert!((900..=1100).contains(&picked(1, 1.0)), "{}", picked(1, 1.0));
        assert_eq!(picked(1, 0.0), 0);
        assert_eq!(picked(1, 100.0), 100_000);
        let both = (0..100_000u64).filter(|&m| chosen(m, 1, 10.0) && chosen(m, 2, 10.0)).count();
        assert!((700..=1300).contains(&both), "purposes are independent: {both}");
        assert_eq!(picked(2, 5.0), picked(2, 5.0), "deterministic");
    }

    #[test]
    fn plan_covers_every_producer_seq_once_in_turns() {
        let counts = split(2503, 3);
        assert_eq!(counts, [835, 834, 834]);
        let msgs: Vec<Msg> = plan(counts.clone(), 100).collect();
        assert_eq!(
            msgs.iter().map(|m| m.k).collect::<Vec<_>>(),
            (0..msgs.len() as u64).collect::<Vec<_>>()
        );
        assert_eq!(msgs[..4].iter().map(|m| m.producer).collect::<Vec<_>>(), [0, 1, 2, 0]);
        for (i, &c) in counts.iter().enumerate() {
            let mut seqs: Vec<u64> = msgs
                .iter()
                .filter(|m| m.producer == i)
                .flat_map(|m| m.first_seq..m.first_seq + m.events)
                .collect();
            seqs.sort();
            assert_eq!(seqs, (0..c).collect::<Vec<_>>());
        }
        let mut before = 0;
        for m in &msgs {
            assert_eq!(m.before, before);
            before += m.events;
        }
        assert_eq!(before, 2503);
        assert_eq!(plan(vec![5], 1).count(), 5);
    }

    #[test]
    fn opaque_carries_events_and_send_time() {
        assert_eq!(unpack(pack(1000, 123_456_789)), (1000, 123_456_789));
        assert_eq!(
            unpack(pack(MAX_EVENTS_PER_MESSAGE, (1 << SENT_BITS) - 1)),
            (MAX_EVENTS_PER_MESSAGE, (1 << SENT_BITS) - 1)
        );
        assert_eq!(unpack(pack(0, 5)), (0, 5));
    }
}
