//! herd-loadgen: drives events into Kafka and checks what herd made of them:
//! `produce` (open-loop load), `verify` (event by event, with latency),
//! `ceiling` (the same rows written straight to Cassandra, the database's
//! limit), `consume` (a bare Kafka consumer, the broker's limit),
//! `blocksize` (block codecs compared, no server) and `cleanup`.

mod blocksize;
mod consume;
mod gen;
mod probe;
mod produce;
mod schedule;
mod values;
mod verify;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures::stream::{self, StreamExt};
use herd_config::ConnectArgs;
use herd_sink::rows::{BatchLimits, RowPacker};
use herd_telemetry::{BadInput, Exit, LogArgs};

use gen::Generator;

// Encoding threads allocate what the sending thread frees: glibc malloc
// serialises that on its arena locks, mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

#[derive(clap::Args)]
struct Events {
    /// How many events.
    #[arg(long)]
    events: u64,
    /// Producer id written into every event (its identity is producer + seq).
    #[arg(long, default_value = "loadgen")]
    producer_id: String,
    #[command(flatten)]
    shape: produce::ShapeArgs,
    /// Event time of the first event, ms since epoch [default: one hour ago,
    /// 10 ms apart per series].
    #[arg(long)]
    base_ts: Option<i64>,
}

#[derive(Subcommand)]
enum Command {
    /// Produce events into a Kafka topic, open loop at a target rate (with
    /// an optional ramp) or as fast as the broker takes them; a progress line
    /// while it runs and a summary at the end.
    Produce(produce::ProduceArgs),
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
    /// Read a whole topic with a bare librdkafka consumer (no decoding, no
    /// writes): the rate any Kafka reader could reach here, herd's ceiling.
    Consume(consume::ConsumeArgs),
    /// Compare block codecs on generated events, without a server: bytes per
    /// point and encode/decode time, per value shape (`--values`).
    Blocksize {
        #[command(flatten)]
        events: Events,
        /// Points per block (a (series, metric) in one offset window).
        #[arg(long, default_value_t = 100)]
        points_per_block: usize,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Time herd's read path on a keyspace (either layout): one series'
    /// points over an hour, and its latest 100, each --reps times; prints
    /// p50/p99/max and the points returned.
    Readbench {
        /// Cassandra keyspace the workers wrote to.
        #[arg(long)]
        keyspace: String,
        #[arg(long, default_value = "series-1")]
        series: String,
        #[arg(long, default_value = "mem")]
        metric: String,
        /// The hour's end, ms since the epoch [default: now].
        #[arg(long)]
        to: Option<i64>,
        #[arg(long, default_value_t = 100)]
        reps: u32,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
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

/// Row counts per (producer, seq) for the expected producers, in the
/// keyspace's layout; ingest latencies (write time - event time) where rows
/// carry ingest-time timestamps; the other producers seen.
async fn scan(
    session: &scylla::client::session::Session,
    keyspace: &str,
    expected: &std::collections::BTreeMap<String, u64>,
) -> Result<(herd_sink::Layout, verify::Stored, verify::Latency, Vec<String>), Exit> {
    let pinned = herd_sink::schema::pinned(session, keyspace)
        .await
        .with_context(|| format!("while reading {keyspace}.herd_settings (is --keyspace right?)"))?
        .ok_or_else(|| {
            anyhow::anyhow!("{keyspace} has no herd settings: no worker has written to it")
        })?;
    let mut stored: verify::Stored = Default::default();
    let mut latency = verify::Latency::default();
    let mut others = std::collections::BTreeSet::new();
    match pinned.layout {
        herd_sink::Layout::Rows => {
            let mut statement = scylla::statement::Statement::new(format!(
                "SELECT producer, seq, ts, writetime(value) FROM {keyspace}.points"
            ));
            statement.set_page_size(5000);
            let mut rows = session
                .query_iter(statement, &[])
                .await
                .with_context(|| format!("while reading {keyspace}.points (is --keyspace right?)"))?
                .rows_stream::<(String, i64, scylla::value::CqlTimestamp, Option<i64>)>()
                .context("while reading rows")?;
            while let Some(row) = rows.next().await {
                let (producer, seq, scylla::value::CqlTimestamp(ts), written_us) =
                    row.context("while reading rows")?;
                if !expected.contains_key(&producer) {
                    others.insert(producer);
                    continue;
                }
                if let Some(w) = written_us {
                    // Event-time write timestamps make this exactly 0: not a latency.
                    if w != ts * 1000 {
                        latency.record(w - ts * 1000);
                    }
                }
                let expected_count = expected[&producer];
                stored
                    .entry(producer)
                    .or_insert_with(|| verify::Rows::new(expected_count))
                    .add(seq as u64);
            }
        }
        herd_sink::Layout::Blocks => {
            // Pass 1: copies per (producer, seq).
            scan_blocks(session, keyspace, |e| match expected.get(&e.producer) {
                Some(&n) => stored
                    .entry(e.producer.clone())
                    .or_insert_with(|| verify::Rows::new(n))
                    .add(e.seq),
                None => {
                    others.insert(e.producer.clone());
                }
            })
            .await?;
            // Pass 2, only if some event was found twice: is it the same
            // event (series, metric, time), which a reader returns once?
            // (producer, seq) -> the (series, metric, time) it was found under.
            type Found = std::collections::HashMap<
                (String, u64),
                std::collections::HashSet<(String, String, i64)>,
            >;
            let repeated: Found = stored
                .iter()
                .flat_map(|(p, rows)| {
                    rows.repeated().map(|seq| ((p.clone(), seq), Default::default()))
                })
                .collect();
            if !repeated.is_empty() {
                let mut repeated = repeated;
                scan_blocks(session, keyspace, |e| {
                    if let Some(seen) = repeated.get_mut(&(e.producer.clone(), e.seq)) {
                        seen.insert((e.series.clone(), e.metric.clone(), e.ts));
                    }
                })
                .await?;
                for ((producer, seq), distinct) in repeated {
                    if let Some(rows) = stored.get_mut(&producer) {
                        rows.collapse(seq, distinct.len().min(255) as u8);
                    }
                }
            }
        }
    }
    Ok((pinned.layout, stored, latency, others.into_iter().collect()))
}

/// Every event of every block of the keyspace, block by block.
async fn scan_blocks(
    session: &scylla::client::session::Session,
    keyspace: &str,
    mut each: impl FnMut(&herd_model::Event),
) -> Result<(), Exit> {
    let mut statement = scylla::statement::Statement::new(format!(
        "SELECT series, metric, topic, partition, window_start, data FROM {keyspace}.blocks"
    ));
    statement.set_page_size(500);
    let mut rows = session
        .query_iter(statement, &[])
        .await
        .with_context(|| format!("while reading {keyspace}.blocks"))?
        .rows_stream::<(String, String, String, i32, i64, Vec<u8>)>()
        .context("while reading blocks")?;
    while let Some(row) = rows.next().await {
        let (series, metric, topic, partition, window, data) =
            row.context("while reading blocks")?;
        let events = herd_sink::block::decode(&series, &metric, &data).with_context(|| {
            format!(
                "while decoding the block of {series}/{metric} from {topic}/{partition}@{window}"
            )
        })?;
        events.iter().for_each(&mut each);
    }
    Ok(())
}

fn generator(e: &Events) -> Result<Generator, Exit> {
    if e.events == 0 {
        return Err(Exit::BadInput(anyhow::anyhow!("--events must be at least 1")));
    }
    let now =
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    Generator::new(&e.producer_id, &e.shape.shape(), e.base_ts.unwrap_or(now - 3_600_000))
        .map_err(|e| Exit::BadInput(anyhow::anyhow!(e)))
}

#[tokio::main]
async fn run(cli: Cli) -> Result<ExitCode, Exit> {
    herd_telemetry::init_logging(&cli.log, "warn").bad_input()?;
    let endpoints = cli.connect.validate().bad_input()?;
    match cli.command {
        Command::Produce(args) => produce::run(&endpoints, args).await,
        Command::Consume(args) => consume::run(&endpoints, args).await,
        Command::Readbench { keyspace, series, metric, to, reps, json } => {
            if !herd_sink::settings::valid_identifier(&keyspace) {
                return Err(Exit::BadInput(anyhow::anyhow!(
                    "--keyspace {keyspace:?} is not a keyspace name herd uses"
                )));
            }
            let session = herd_clients::cassandra::session(&endpoints)
                .await
                .context("while connecting to Cassandra")?;
            let pinned = herd_sink::schema::pinned(&session, &keyspace)
                .await
                .context("while reading herd_settings")?
                .ok_or_else(|| anyhow::anyhow!("{keyspace} has no herd settings"))?;
            let reader = herd_sink::read::PointReader::prepare(&session, &keyspace, pinned)
                .await
                .context("while preparing")?;
            let to = to.unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0)
            });
            let mut report = serde_json::Map::new();
            for (what, hour) in [("hour", true), ("latest_100", false)] {
                let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)
                    .expect("valid bounds");
                let mut points = 0;
                for _ in 0..reps.max(1) {
                    let t = Instant::now();
                    let got = if hour {
                        reader.range(&session, &series, &metric, to - 3_600_000, to).await
                    } else {
                        reader.latest(&session, &series, &metric, 100, to).await
                    }
                    .context("while reading")?;
                    hist.saturating_record(t.elapsed().as_micros() as u64);
                    points = got.len();
                }
                let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
                if !json {
                    println!("{what:<11} {points:>8} points  p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  ({} reads, layout {})", ms(0.5), ms(0.99), ms(1.0), hist.len(), pinned.layout);
                }
                report.insert(what.into(), serde_json::json!({"points": points, "p50_ms": ms(0.5), "p99_ms": ms(0.99), "max_ms": ms(1.0), "reads": hist.len()}));
            }
            if json {
                report.insert("layout".into(), pinned.layout.as_str().into());
                println!("{}", serde_json::Value::Object(report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Blocksize { events, points_per_block, json } => {
            if points_per_block == 0 {
                return Err(Exit::BadInput(anyhow::anyhow!(
                    "--points-per-block must be at least 1"
                )));
            }
            let g = generator(&events)?;
            let blocks = blocksize::blocks(&g, events.events, points_per_block);
            let results = [blocksize::pco(&blocks), blocksize::arrow_zstd(&blocks)];
            if json {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({"values": format!("{:?}", events.shape.values).to_lowercase(), "points_per_block": points_per_block, "codecs": results})).context("while encoding JSON")?);
            } else {
                println!(
                    "{:<12} {:>10} {:>8} {:>12} {:>14} {:>16} {:>16}",
                    "CODEC",
                    "POINTS",
                    "BLOCKS",
                    "BYTES",
                    "BYTES/POINT",
                    "ENCODE ms/M",
                    "DECODE ms/M"
                );
                for r in &results {
                    println!(
                        "{:<12} {:>10} {:>8} {:>12} {:>14.2} {:>16.0} {:>16.0}",
                        r.codec,
                        r.points,
                        r.blocks,
                        r.bytes,
                        r.bytes_per_point,
                        r.encode_ms_per_million,
                        r.decode_ms_per_million
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ceiling { sink, events, concurrency, cql_batch_max_rows, cql_batch_max_bytes } => {
            let g = generator(&events)?;
            let sink = sink.validate().bad_input()?;
            let session = herd_clients::cassandra::session(&endpoints)
                .await
                .context("while connecting to Cassandra")?;
            herd_sink::schema::migrate(&session, &sink).await.context("while migrating")?;
            let bucket_ms = sink.bucket_ms;
            let writer = herd_sink::RowWriter::prepare(Arc::new(session), sink)
                .await
                .context("while preparing")?;
            // The same grouping as herd-worker: chunks of 5,000 events cut into
            // single-partition batches.
            let mut packer = RowPacker::new(BatchLimits {
                max_rows: cql_batch_max_rows,
                max_bytes: cql_batch_max_bytes,
                bucket_ms,
            });
            let mut batches = Vec::new();
            for first in (0..events.events).step_by(5000) {
                g.events(first..(first + 5000).min(events.events), None)
                    .into_iter()
                    .for_each(|e| packer.add(e, 0));
                batches.extend(packer.take());
            }
            let started = Instant::now();
            let written: Vec<Result<usize, herd_sink::WriteError>> = stream::iter(batches.iter())
                .map(|b| {
                    let writer = &writer;
                    async move {
                        let refs: Vec<_> = b.events.iter().collect();
                        writer.write_partition(&refs).await.map(|()| refs.len())
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
            if !herd_sink::settings::valid_identifier(&keyspace) {
                return Err(Exit::BadInput(anyhow::anyhow!("--keyspace {keyspace:?} is not a keyspace name herd uses (letters, digits, underscores)")));
            }
            let expected: std::collections::BTreeMap<String, u64> = expect.into_iter().collect();
            let session = herd_clients::cassandra::session(&endpoints)
                .await
                .context("while connecting to Cassandra")?;
            let (layout, stored, latency_hist, others) =
                scan(&session, &keyspace, &expected).await?;
            let reports = verify::compare(&expected, &stored);
            let latency = latency_hist.summary();
            let ok = reports.iter().all(verify::ProducerReport::ok);
            if json {
                let out = serde_json::json!({
                    "keyspace": keyspace, "layout": layout.as_str(), "ok": ok, "producers": reports, "other_producers": others,
                    "latency": latency,
                    "rows_written_before_event_time": latency_hist.before_event_time,
                });
                println!("{}", serde_json::to_string_pretty(&out).context("while encoding JSON")?);
            } else {
                println!(
                    "{:<24} {:>12} {:>12} {:>10} {:>10} {:>10}",
                    "PRODUCER", "EXPECTED", "STORED", "MISSING", "DUPLICATED", "UNEXPECTED"
                );
                for r in &reports {
                    println!(
                        "{:<24} {:>12} {:>12} {:>10} {:>10} {:>10}",
                        r.producer,
                        r.expected,
                        r.stored_distinct,
                        r.missing,
                        r.duplicated,
                        r.unexpected
                    );
                    if !r.missing_examples.is_empty() {
                        println!("  missing seq: {}", r.missing_examples.join(", "));
                    }
                    for (seq, rows) in &r.duplicated_examples {
                        println!(
                            "  seq {seq} stored {rows}{} times",
                            if *rows == 255 { " or more" } else { "" }
                        );
                    }
                    if r.redundant_copies > 0 {
                        println!("  {} events also stored in a second block (dropped on read; a message sent twice across a window boundary)", r.redundant_copies);
                    }
                }
                if !others.is_empty() {
                    println!("not checked (not in --expect): {}", others.join(", "));
                }
                match latency {
                    Some(l) => {
                        println!(
                            "end-to-end latency, event time to the worker's write ({} rows, HDR histogram): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
                            l.rows, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
                        );
                        if latency_hist.before_event_time > 0 {
                            println!("  {} rows were written before their event time (clocks apart?); counted as 0 ms", latency_hist.before_event_time);
                        }
                    }
                    None if layout == herd_sink::Layout::Blocks => {
                        println!("end-to-end latency: not stored in the blocks layout (use produce --probe-keyspace)")
                    }
                    None => println!("end-to-end latency: not measurable here (rows carry event-time write timestamps; run the workers with --write-timestamp ingest-time to measure it)"),
                }
                println!(
                    "{}",
                    if ok {
                        "verdict: OK, every event stored exactly once"
                    } else {
                        "verdict: FAILED"
                    }
                );
            }
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Cleanup { prefix } => {
            if prefix.len() < 3 || prefix.starts_with("system") {
                return Err(Exit::BadInput(anyhow::anyhow!(
                    "--prefix {prefix:?}: use at least 3 characters, and not a system keyspace prefix"
                )));
            }
            let session = herd_clients::cassandra::session(&endpoints)
                .await
                .context("while connecting to Cassandra")?;
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
                session
                    .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), &[])
                    .await
                    .context("while dropping")?;
                dropped += 1;
            }
            let admin = herd_clients::kafka::admin(&endpoints, "herd-loadgen")
                .context("while creating the admin client")?;
            let info = herd_clients::kafka::topic_names(&endpoints).await?;
            let topics: Vec<&str> =
                info.iter().map(String::as_str).filter(|t| t.starts_with(&prefix)).collect();
            if !topics.is_empty() {
                admin
                    .delete_topics(&topics, &rdkafka::admin::AdminOptions::new())
                    .await
                    .context("while deleting topics")?;
            }
            println!(
                "dropped {dropped} keyspaces and deleted {} topics starting with {prefix:?}",
                topics.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
