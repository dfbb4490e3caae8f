//! herd-loadgen: drives events into Kafka and measures what herd does with
//! them. Today: `produce` (a backlog as fast as Kafka takes it) and `ceiling`
//! (the same rows written straight to Cassandra, the database's limit).
//! Rate control, scenarios and verification come with issue 6.

mod gen;
mod verify;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use futures::stream::{self, StreamExt};
use herd_config::ConnectArgs;
use herd_ingest::chunk::{ChunkBuilder, Limits, SourcePosition};
use herd_model::{arrow_ipc, json, Decoded, Format};
use herd_telemetry::{BadInput, Exit, LogArgs};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use gen::Generator;

#[derive(Parser)]
#[command(
    name = "herd-loadgen",
    version,
    about = "Load generator for herd: produce events into Kafka, or write the same rows straight to Cassandra to measure its ceiling."
)]
struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Encoding {
    /// One JSON event per message.
    Json,
    /// --batch-events JSON events per message, one per line.
    JsonLines,
    /// --batch-events events per Arrow IPC message.
    Arrow,
}

#[derive(clap::Args)]
struct Events {
    /// How many events.
    #[arg(long)]
    events: u64,
    /// Number of distinct series the events are spread over.
    #[arg(long, default_value_t = 1000)]
    series: u64,
    /// Producer id written into every event (its identity is producer + seq).
    #[arg(long, default_value = "loadgen")]
    producer_id: String,
    /// Event time of the first event, ms since epoch [default: one hour ago;
    /// with produce --rate: now, each event stamped with its scheduled send time].
    #[arg(long)]
    base_ts: Option<i64>,
}

#[derive(Subcommand)]
enum Command {
    /// Produce events into a Kafka topic as fast as the broker takes them.
    Produce {
        #[arg(long)]
        topic: String,
        #[command(flatten)]
        events: Events,
        #[arg(long, value_enum, default_value = "arrow")]
        encoding: Encoding,
        /// Events per message for json-lines and arrow.
        #[arg(long, default_value_t = 1000)]
        batch_events: usize,
        /// Target events per second, open loop (messages are sent on schedule,
        /// whatever the broker's latency); 0 sends as fast as the broker takes
        /// them. The run lasts --events / --rate seconds.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Percent of messages sent twice (the same bytes): a replay that must
        /// not duplicate anything in Cassandra. Chosen deterministically.
        #[arg(long, default_value_t = 0.0)]
        duplicate_pct: f64,
        /// Percent of messages followed by a malformed one (invalid JSON):
        /// it must end in the dead-letter topic, nothing else. Deterministic.
        #[arg(long, default_value_t = 0.0)]
        malformed_pct: f64,
        /// Afterwards, send the very same message bytes again (encoded
        /// beforehand) to TOPIC-raw with a plain librdkafka producer: the
        /// ceiling of the producer without event encoding, in the same run.
        #[arg(long)]
        compare_raw: bool,
        /// Validate flags and environment, print what would be produced, and
        /// exit without connecting to anything.
        #[arg(long)]
        check_config: bool,
    },
    /// Write the same events straight to Cassandra with the scylla driver,
    /// batched per partition as herd-worker does, with --concurrency requests
    /// in flight: the database's ceiling for the pipeline.
    Ceiling {
        #[command(flatten)]
        sink: herd_sink::SinkArgs,
        #[command(flatten)]
        events: Events,
        /// Write requests in flight (herd-worker's --max-in-flight).
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Rows per CQL batch (herd-worker's --cql-batch-max-rows).
        #[arg(long, default_value_t = 50)]
        cql_batch_max_rows: usize,
        /// Bytes per CQL batch (herd-worker's --cql-batch-max-bytes).
        #[arg(long, default_value_t = 4096)]
        cql_batch_max_bytes: usize,
    },
    /// Drop the Cassandra keyspaces and delete the Kafka topics whose names
    /// start with a prefix: what earlier load runs left behind.
    Cleanup {
        /// Name prefix, at least 3 characters (so that it cannot match everything).
        #[arg(long)]
        prefix: String,
    },
    /// Read back what Cassandra holds and check it against what was produced,
    /// event by event: per producer, missing, duplicated and unexpected events
    /// (by producer and seq), and end-to-end latency when the workers wrote
    /// ingest-time timestamps. Exits 1 if anything is missing, duplicated or
    /// unexpected.
    Verify {
        /// Cassandra keyspace the workers write to.
        #[arg(long, env = "HERD_KEYSPACE", default_value = "herd")]
        keyspace: String,
        /// PRODUCER=COUNT: that producer's events are seq 0 to COUNT-1 (as
        /// `produce --producer-id PRODUCER --events COUNT` makes them). Repeatable.
        #[arg(long = "expect", required = true, value_parser = verify::parse_expect, value_name = "PRODUCER=COUNT")]
        expect: Vec<(String, u64)>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    herd_telemetry::report("herd-loadgen", run(Cli::parse()))
}

async fn send_one(producer: &rdkafka::producer::FutureProducer, topic: &str, key: &str, payload: &[u8], content_type: &str) -> Result<(), String> {
    let headers = OwnedHeaders::new().insert(Header { key: "content-type", value: Some(content_type) });
    producer
        .send(FutureRecord::to(topic).key(key).payload(payload).headers(headers), Duration::from_secs(60))
        .await
        .map(|_| ())
        .map_err(|(e, _)| e.to_string())
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

/// Message `m` of a run: (m, key, payload, content type, events in it).
fn encode_message(g: &Generator, m: u64, per_message: u64, total: u64, encoding: Encoding) -> (u64, String, Vec<u8>, Format, u64) {
    let first = m * per_message;
    let batch = g.events(first..(first + per_message).min(total));
    let (payload, content_type) = match encoding {
        Encoding::Json => (json::encode(&batch[0]), Format::Json),
        Encoding::JsonLines => (json::encode_lines(&batch), Format::JsonLines),
        Encoding::Arrow => (arrow_ipc::encode(&batch).expect("valid events encode"), Format::ArrowIpc),
    };
    // A batch's key is its message number, so batches spread over all
    // partitions (their first events' series would repeat with the batch size).
    let key = if batch.len() == 1 { batch[0].series.clone() } else { format!("batch-{m}") };
    (m, key, payload, content_type, batch.len() as u64)
}

/// Prints achieved rate, errors and elapsed time to stderr every second.
async fn progress_line(sent: Arc<std::sync::atomic::AtomicU64>, errors: Arc<std::sync::atomic::AtomicU64>, started: Instant, total: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = sent.load(Relaxed);
        eprintln!(
            "[{:>5.1} s] {now} of {total} events sent, {} events/s, {} errors",
            started.elapsed().as_secs_f64(),
            now - last,
            errors.load(Relaxed)
        );
        last = now;
    }
}

/// Row counts per (producer, seq) of `keyspace.points` for the expected
/// producers; ingest latencies (write time - event time, ms) where the rows
/// carry ingest-time timestamps; the other producers seen.
async fn scan(
    session: &scylla::client::session::Session,
    keyspace: &str,
    expected: &std::collections::BTreeMap<String, u64>,
) -> Result<(verify::Stored, Vec<i64>, Vec<String>), Exit> {
    let mut statement = scylla::statement::Statement::new(format!("SELECT producer, seq, ts, writetime(value) FROM {keyspace}.points"));
    statement.set_page_size(5000);
    let mut rows = session
        .query_iter(statement, &[])
        .await
        .with_context(|| format!("while reading {keyspace}.points (is --keyspace right?)"))?
        .rows_stream::<(String, i64, scylla::value::CqlTimestamp, Option<i64>)>()
        .context("while reading rows")?;
    let mut stored: verify::Stored = Default::default();
    let mut latencies = Vec::new();
    let mut others = std::collections::BTreeSet::new();
    while let Some(row) = rows.next().await {
        let (producer, seq, scylla::value::CqlTimestamp(ts), written_us) = row.context("while reading rows")?;
        if !expected.contains_key(&producer) {
            others.insert(producer);
            continue;
        }
        if let Some(w) = written_us {
            // Event-time timestamps make this 0: not a latency.
            let latency = w / 1000 - ts;
            if latency != 0 {
                latencies.push(latency);
            }
        }
        *stored.entry(producer).or_default().entry(seq as u64).or_default() += 1;
    }
    Ok((stored, latencies, others.into_iter().collect()))
}

fn generator(e: &Events) -> Result<Generator, Exit> {
    if e.events == 0 || e.series == 0 {
        return Err(Exit::BadInput(anyhow::anyhow!("--events and --series must be at least 1")));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    Ok(Generator {
        producer: e.producer_id.clone(),
        series: e.series,
        base_ts: e.base_ts.unwrap_or(now - 3_600_000),
        rate: None,
    })
}

#[tokio::main]
async fn run(cli: Cli) -> Result<ExitCode, Exit> {
    herd_telemetry::init_logging(&cli.log, "warn").bad_input()?;
    let endpoints = cli.connect.validate().bad_input()?;
    match cli.command {
        Command::Produce { topic, events, encoding, batch_events, rate, duplicate_pct, malformed_pct, compare_raw, check_config } => {
            for (name, v) in [("duplicate-pct", duplicate_pct), ("malformed-pct", malformed_pct)] {
                if !(0.0..=100.0).contains(&v) {
                    return Err(Exit::BadInput(anyhow::anyhow!("--{name} {v}: expected a percentage from 0 to 100")));
                }
            }
            let mut g = generator(&events)?;
            if rate > 0 {
                // Event time = the message's scheduled send time (from now, unless --base-ts says otherwise).
                g.rate = Some((rate, if matches!(encoding, Encoding::Json) { 1 } else { batch_events as u64 }));
                if events.base_ts.is_none() {
                    g.base_ts = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
                }
            }
            herd_config::kafka_topic("topic", &topic).bad_input()?;
            if batch_events == 0 {
                return Err(Exit::BadInput(anyhow::anyhow!("--batch-events must be at least 1")));
            }
            if check_config {
                println!("configuration ok: {endpoints:?}\nproduce {} events to {topic}", events.events);
                return Ok(ExitCode::SUCCESS);
            }
            let per_message = match encoding {
                Encoding::Json => 1,
                _ => batch_events as u64,
            };
            let producer = herd_clients::kafka::producer(&endpoints, "herd-loadgen").context("while creating the producer")?;
            let started = Instant::now();
            let mut bytes = 0u64;
            let messages = events.events.div_ceil(per_message);
            let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let progress = tokio::spawn(progress_line(sent.clone(), errors.clone(), started, events.events));
            let t0 = tokio::time::Instant::now();
            // Duplicate and malformed messages sent.
            let extra = [std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0)];
            // Encoding runs on the blocking pool, several groups of messages
            // ahead, in order; sending stays on the runtime.
            let g = Arc::new(g);
            let total = events.events;
            const GROUP: u64 = 64;
            let results: Vec<Result<(), String>> = stream::iter((0..messages).step_by(GROUP as usize))
                .map(|m0| {
                    let g = g.clone();
                    tokio::task::spawn_blocking(move || {
                        (m0..(m0 + GROUP).min(messages)).map(|m| encode_message(&g, m, per_message, total, encoding)).collect::<Vec<_>>()
                    })
                })
                .buffered(4)
                .flat_map(|encoded| stream::iter(encoded.expect("encoding task panicked")))
                .then(|message| async move {
                    // Open loop: message m goes out at its scheduled time.
                    if rate > 0 {
                        tokio::time::sleep_until(t0 + Duration::from_secs_f64((message.0 * per_message) as f64 / rate as f64)).await;
                    }
                    message
                })
                .map(|(m, key, payload, content_type, n)| {
                    bytes += payload.len() as u64;
                    let producer = &producer;
                    let topic = &topic;
                    let (sent, errors, extra) = (&sent, &errors, &extra);
                    async move {
                        let ct = content_type.content_type();
                        let mut r = send_one(producer, topic, &key, &payload, ct).await;
                        if r.is_ok() && chosen(m, 1, duplicate_pct) {
                            r = send_one(producer, topic, &key, &payload, ct).await;
                            extra[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        if r.is_ok() && chosen(m, 2, malformed_pct) {
                            r = send_one(producer, topic, &key, b"{\"series\": \"malformed", "application/json").await;
                            extra[1].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        match &r {
                            Ok(()) => sent.fetch_add(n, std::sync::atomic::Ordering::Relaxed),
                            Err(_) => errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                        };
                        r
                    }
                })
                .buffer_unordered(10_000)
                .collect()
                .await;
            progress.abort();
            if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
                return Err(anyhow::anyhow!("delivery to {topic} failed: {e}").into());
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "produced {} events in {messages} messages ({:.1} MB) to {topic} in {secs:.2} s: {:.0} events/s",
                events.events,
                bytes as f64 / 1e6,
                events.events as f64 / secs
            );
            let (dups, bad) = (extra[0].load(std::sync::atomic::Ordering::Relaxed), extra[1].load(std::sync::atomic::Ordering::Relaxed));
            if dups + bad > 0 {
                println!("also sent: {dups} messages a second time (must not duplicate), {bad} malformed messages (must be dead-lettered)");
            }
            if compare_raw {
                // The same messages, encoded before the clock starts.
                let payloads: Vec<(String, Vec<u8>, u64)> = (0..messages)
                    .map(|m| {
                        let (_, key, payload, _, n) = encode_message(&g, m, per_message, total, encoding);
                        (key, payload, n)
                    })
                    .collect();
                let raw_topic = format!("{topic}-raw");
                let started = Instant::now();
                let failures = stream::iter(payloads.iter())
                    .map(|(key, payload, _)| {
                        let (producer, raw_topic) = (&producer, &raw_topic);
                        async move { producer.send(FutureRecord::to(raw_topic).key(key).payload(payload), Duration::from_secs(60)).await.is_err() }
                    })
                    .buffer_unordered(10_000)
                    .filter(|failed| std::future::ready(*failed))
                    .count()
                    .await;
                if failures > 0 {
                    return Err(anyhow::anyhow!("{failures} raw deliveries to {raw_topic} failed").into());
                }
                let raw_secs = started.elapsed().as_secs_f64();
                let raw_rate = events.events as f64 / raw_secs;
                let rate = events.events as f64 / secs;
                println!(
                    "raw librdkafka, the same {messages} messages pre-encoded, to {raw_topic} in {raw_secs:.2} s: {raw_rate:.0} events/s; herd-loadgen reached {:.2} of it",
                    rate / raw_rate
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ceiling { sink, events, concurrency, cql_batch_max_rows, cql_batch_max_bytes } => {
            let g = generator(&events)?;
            let sink = sink.validate().bad_input()?;
            let session = herd_clients::cassandra::session(&endpoints).await.context("while connecting to Cassandra")?;
            herd_sink::schema::migrate(&session, &sink).await.context("while migrating")?;
            let bucket_ms = sink.bucket_ms;
            let writer = herd_sink::Writer::prepare(Arc::new(session), sink).await.context("while preparing")?;
            // The same grouping as herd-worker: chunks of 5,000 events cut into
            // single-partition batches.
            let mut builder = ChunkBuilder::new(Limits {
                max_rows: usize::MAX,
                max_bytes: usize::MAX,
                linger: Duration::ZERO,
                cql_batch_max_rows,
                cql_batch_max_bytes,
                bucket_ms,
            });
            let mut batches = Vec::new();
            for first in (0..events.events).step_by(5000) {
                let chunk = g.events(first..(first + 5000).min(events.events));
                let at = SourcePosition { topic: "ceiling".into(), partition: 0, offset: first as i64 };
                builder.add(at, None, None, None, Decoded { events: chunk, rejects: vec![] }, Instant::now());
                batches.extend(builder.take().expect("non-empty").batches);
            }
            let started = Instant::now();
            let written: Vec<Result<usize, String>> = stream::iter(batches.iter())
                .map(|b| {
                    let writer = &writer;
                    async move {
                        let refs: Vec<_> = b.events.iter().collect();
                        writer.write_partition(&refs).await.map(|()| refs.len()).map_err(|e| e.message)
                    }
                })
                .buffer_unordered(concurrency.max(1))
                .collect()
                .await;
            let secs = started.elapsed().as_secs_f64();
            let rows: usize = written.iter().filter_map(|r| r.as_ref().ok()).sum();
            let failed = written.iter().filter(|r| r.is_err()).count();
            println!(
                "ceiling: wrote {rows} rows in {} batches in {secs:.2} s: {:.0} rows/s ({failed} failed batches)",
                batches.len(),
                rows as f64 / secs
            );
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Verify { keyspace, expect, json } => {
            let expected: std::collections::BTreeMap<String, u64> = expect.into_iter().collect();
            let session = herd_clients::cassandra::session(&endpoints).await.context("while connecting to Cassandra")?;
            let (stored, mut latencies_ms, others) = scan(&session, &keyspace, &expected).await?;
            let reports = verify::compare(&expected, &stored);
            let latency = verify::percentiles(&mut latencies_ms);
            let ok = reports.iter().all(verify::ProducerReport::ok);
            if json {
                let out = serde_json::json!({
                    "keyspace": keyspace, "ok": ok, "producers": reports, "other_producers": others,
                    "latency_ms": latency.map(|[p50, p90, p99, max]| serde_json::json!({"p50": p50, "p90": p90, "p99": p99, "max": max})),
                });
                println!("{}", serde_json::to_string_pretty(&out).context("while encoding JSON")?);
            } else {
                println!("{:<24} {:>12} {:>12} {:>10} {:>10} {:>10}", "PRODUCER", "EXPECTED", "STORED", "MISSING", "DUPLICATED", "UNEXPECTED");
                for r in &reports {
                    println!("{:<24} {:>12} {:>12} {:>10} {:>10} {:>10}", r.producer, r.expected, r.stored_distinct, r.missing, r.duplicated, r.unexpected);
                    if !r.missing_examples.is_empty() {
                        println!("  missing seq: {}", r.missing_examples.join(", "));
                    }
                    for (seq, rows) in &r.duplicated_examples {
                        println!("  seq {seq} stored {rows} times");
                    }
                }
                if !others.is_empty() {
                    println!("not checked (not in --expect): {}", others.join(", "));
                }
                match latency {
                    Some([p50, p90, p99, max]) => println!("end-to-end latency (event time to write, all checked rows): p50 {p50} ms, p90 {p90} ms, p99 {p99} ms, max {max} ms"),
                    None => println!("end-to-end latency: not measurable here (rows carry event-time write timestamps; run the workers with --write-timestamp ingest-time to measure it)"),
                }
                println!("{}", if ok { "verdict: OK, every event stored exactly once" } else { "verdict: FAILED" });
            }
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Cleanup { prefix } => {
            if prefix.len() < 3 || prefix.starts_with("system") {
                return Err(Exit::BadInput(anyhow::anyhow!(
                    "--prefix {prefix:?}: use at least 3 characters, and not a system keyspace prefix"
                )));
            }
            let session = herd_clients::cassandra::session(&endpoints).await.context("while connecting to Cassandra")?;
            let keyspaces: Vec<(String,)> = session
                .query_unpaged("SELECT keyspace_name FROM system_schema.keyspaces", &[])
                .await
                .context("while listing keyspaces")?
                .into_rows_result()
                .context("while listing keyspaces")?
                .rows::<(String,)>()
                .context("while listing keyspaces")?
                .collect::<Result<_, _>>()
                .context("while listing keyspaces")?;
            let mut dropped = 0;
            for (ks,) in keyspaces.iter().filter(|(k,)| k.starts_with(&prefix)) {
                session.query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), &[]).await.context("while dropping")?;
                dropped += 1;
            }
            let admin = herd_clients::kafka::admin(&endpoints, "herd-loadgen").context("while creating the admin client")?;
            let info = herd_clients::kafka::topic_names(&endpoints).await?;
            let topics: Vec<&str> = info.iter().map(String::as_str).filter(|t| t.starts_with(&prefix)).collect();
            if !topics.is_empty() {
                admin
                    .delete_topics(&topics, &rdkafka::admin::AdminOptions::new())
                    .await
                    .context("while deleting topics")?;
            }
            println!("dropped {dropped} keyspaces and deleted {} topics starting with {prefix:?}", topics.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}
#[cfg(test)]
mod tests {
    #[test]
    fn chosen_picks_about_the_percentage_independently_per_purpose() {
        let picked = |purpose, pct| (0..100_000u64).filter(|&m| super::chosen(m, purpose, pct)).count();
        assert!((900..=1100).contains(&picked(1, 1.0)), "{}", picked(1, 1.0));
        assert_eq!(picked(1, 0.0), 0);
        assert_eq!(picked(1, 100.0), 100_000);
        let both = (0..100_000u64).filter(|&m| super::chosen(m, 1, 10.0) && super::chosen(m, 2, 10.0)).count();
        assert!((700..=1300).contains(&both), "purposes are independent: {both}");
        assert_eq!(picked(2, 5.0), picked(2, 5.0), "deterministic");
    }
}
