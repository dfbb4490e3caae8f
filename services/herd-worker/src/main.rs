//! herd-worker: consumes Kafka partitions and writes their events into
//! Cassandra. Nothing is lost (offsets are committed only behind stored or
//! dead-lettered events) and nothing is duplicated (writes are idempotent).
//!
//! Thin binary: flags and environment, wiring, signals. The pipeline lives in
//! `libs/ingest`, the Cassandra side in `libs/sink`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use herd_config::ConnectArgs;
use herd_ingest::{DeadLetterSink, IngestArgs, KafkaSource, Pipeline};
use herd_sink::SinkArgs;
use herd_telemetry::{BadInput, Exit, LogArgs};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "herd-worker",
    version,
    about = "Ingest worker: consumes Kafka topics and writes their events into Cassandra as time series."
)]
struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    sink: SinkArgs,
    #[command(flatten)]
    ingest: IngestArgs,
    /// Address of the Prometheus endpoint (GET /metrics).
    #[arg(long, env = "HERD_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    metrics_addr: SocketAddr,
    /// This worker's name in logs, dead letters and Kafka [default: host-pid].
    #[arg(long, env = "HERD_WORKER_ID")]
    worker_id: Option<String>,
    /// After SIGTERM or SIGINT: how long to drain, write and commit before
    /// giving up with exit code 1, in seconds. A second signal exits at once.
    #[arg(long, env = "HERD_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    shutdown_timeout_secs: u64,
    /// Validate flags and environment, print the effective settings, and exit
    /// without connecting to anything.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    herd_telemetry::report("herd-worker", run(Cli::parse()))
}

#[tokio::main]
async fn run(cli: Cli) -> Result<ExitCode, Exit> {
    herd_telemetry::init_logging(&cli.log, "info").bad_input()?;
    let endpoints = cli.connect.validate().bad_input()?;
    let sink = cli.sink.validate().bad_input()?;
    let ingest = cli.ingest.validate().bad_input()?;
    if !(1..=3600).contains(&cli.shutdown_timeout_secs) {
        return Err(Exit::BadInput(anyhow::anyhow!(
            "shutdown-timeout-secs: {} is out of range; expected 1 to 3600",
            cli.shutdown_timeout_secs
        )));
    }
    let worker_id = cli.worker_id.unwrap_or_else(herd_config::default_instance_id);
    if cli.check_config {
        println!("configuration ok:\n{endpoints:#?}\n{sink:#?}\n{ingest:#?}\nworker id: {worker_id}");
        return Ok(ExitCode::SUCCESS);
    }
    herd_telemetry::install_metrics(cli.metrics_addr).bad_input()?;

    let session = herd_clients::cassandra::session(&endpoints)
        .await
        .context("while connecting to Cassandra")?;
    let applied = herd_sink::schema::migrate(&session, &sink)
        .await
        .context("while migrating the schema")?;
    let writer = herd_sink::Writer::prepare(Arc::new(session), sink)
        .await
        .context("while preparing statements")?;
    // -1: the broker's default partitions and replication.
    herd_clients::kafka::ensure_topic(&endpoints, &ingest.dead_letter_topic, -1, -1)
        .await
        .context("while creating the dead-letter topic")?;
    let source = KafkaSource::consumer_group(&endpoints, &worker_id, &ingest.group_id, &ingest.topics)
        .map_err(|e| anyhow::anyhow!("while joining consumer group {}: {e}", ingest.group_id))?;
    let dead_letters = DeadLetterSink {
        producer: herd_clients::kafka::producer(&endpoints, &worker_id).context("while creating the dead-letter producer")?,
        topic: ingest.dead_letter_topic.clone(),
        worker: worker_id.clone(),
    };
    tracing::info!(
        worker = %worker_id, topics = ?ingest.topics, group = %ingest.group_id, migrations_applied = ?applied,
        metrics = %cli.metrics_addr, "worker started"
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(handle_signals(shutdown.clone()));
    let mut pipeline = tokio::spawn(
        Pipeline {
            settings: ingest,
            source,
            writer,
            dead_letters,
        }
        .run(shutdown.clone()),
    );
    let result = tokio::select! {
        result = &mut pipeline => result,
        _ = shutdown.cancelled() => {
            let limit = Duration::from_secs(cli.shutdown_timeout_secs);
            match tokio::time::timeout(limit, &mut pipeline).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(anyhow::anyhow!(
                        "shutdown did not finish within {} s (is Cassandra or Kafka down?); uncommitted messages are read again on restart",
                        limit.as_secs()
                    ).into());
                }
            }
        }
    };
    let summary = result.context("the pipeline task failed")??;
    tracing::info!(
        messages = summary.messages, events_written = summary.events_written,
        dead_letters = summary.dead_letters, chunks_committed = summary.chunks_committed,
        "worker stopped cleanly"
    );
    Ok(ExitCode::SUCCESS)
}

/// First SIGTERM or SIGINT: graceful shutdown. Second: exit at once.
async fn handle_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop this worker with SIGKILL");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("signal received: stopping consumption, then draining, writing and committing (a second signal exits at once)");
    shutdown.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::warn!("second signal: exiting now without committing; uncommitted messages are read again on restart");
    std::process::exit(130);
}
