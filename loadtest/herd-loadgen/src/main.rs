//! herd-loadgen: drives events into Kafka and measures what herd does with
//! them. Today: `produce` (a backlog as fast as Kafka takes it) and `ceiling`
//! (the same rows written straight to Cassandra, the database's limit).
//! Rate control, scenarios and verification come with issue 6.

mod gen;

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
    /// Event time of the first event, ms since epoch [default: one hour ago].
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
}

fn main() -> ExitCode {
    herd_telemetry::report("herd-loadgen", run(Cli::parse()))
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
    })
}

#[tokio::main]
async fn run(cli: Cli) -> Result<ExitCode, Exit> {
    herd_telemetry::init_logging(&cli.log, "warn").bad_input()?;
    let endpoints = cli.connect.validate().bad_input()?;
    match cli.command {
        Command::Produce { topic, events, encoding, batch_events, check_config } => {
            let g = generator(&events)?;
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
            let results: Vec<Result<(), String>> = stream::iter(0..messages)
                .map(|m| {
                    let first = m * per_message;
                    let batch = g.events(first..(first + per_message).min(events.events));
                    let (payload, content_type) = match encoding {
                        Encoding::Json => (json::encode(&batch[0]), Format::Json),
                        Encoding::JsonLines => (json::encode_lines(&batch), Format::JsonLines),
                        Encoding::Arrow => (arrow_ipc::encode(&batch).expect("valid events encode"), Format::ArrowIpc),
                    };
                    bytes += payload.len() as u64;
                    let key = batch[0].series.clone();
                    let producer = &producer;
                    let topic = &topic;
                    async move {
                        let headers = OwnedHeaders::new().insert(Header { key: "content-type", value: Some(content_type.content_type()) });
                        producer
                            .send(FutureRecord::to(topic).key(&key).payload(&payload).headers(headers), Duration::from_secs(60))
                            .await
                            .map(|_| ())
                            .map_err(|(e, _)| e.to_string())
                    }
                })
                .buffer_unordered(10_000)
                .collect()
                .await;
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
