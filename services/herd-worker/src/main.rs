//! herd-worker: consumes the Kafka partitions (shards) the coordinator grants
//! it and writes their events into Cassandra. Nothing is lost (checkpoints
//! only ever cover stored or dead-lettered events) and nothing is duplicated
//! (writes are idempotent, and a stale owner's checkpoints are refused by
//! Cassandra).
//!
//! Thin binary: flags and environment, wiring, signals. The pipeline and the
//! following of the assignment live in `libs/ingest`, the Cassandra side in
//! `libs/sink`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use herd_config::{ConnectArgs, CoordArgs};
use herd_coord::membership::WorkerInfo;
use herd_ingest::ownership::Ownership;
use herd_ingest::{DeadLetterSink, IngestArgs, KafkaSource, Pipeline};
use herd_sink::SinkArgs;
use herd_telemetry::{BadInput, Exit, LogArgs};
use tokio_util::sync::CancellationToken;

// Decoding allocates several strings per event on the reader, and the
// writer tasks free them on other threads: glibc malloc spends a fifth of
// the worker's time there (perf), mimalloc a fraction of it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "herd-worker",
    version,
    about = "Ingest worker: consumes the Kafka partitions the coordinator grants it and writes their events into Cassandra as time series."
)]
struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    coord: CoordArgs,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    sink: SinkArgs,
    #[command(flatten)]
    ingest: IngestArgs,
    /// Address of the Prometheus endpoint (GET /metrics).
    #[arg(long, env = "HERD_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    metrics_addr: SocketAddr,
    /// This worker's name in ZooKeeper, logs, dead letters and checkpoints
    /// [default: host-pid]. Keep it across restarts of the same worker.
    #[arg(long, env = "HERD_WORKER_ID")]
    worker_id: Option<String>,
    /// This worker's share of the shards relative to the others' (0: none).
    #[arg(long, env = "HERD_CAPACITY", default_value_t = 1)]
    capacity: u32,
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
    let log = herd_telemetry::init_logging(&cli.log, "info").bad_input()?;
    let endpoints = cli.connect.validate().bad_input()?;
    let coord = cli.coord.validate().bad_input()?;
    let sink = cli.sink.validate().bad_input()?;
    let ingest = cli.ingest.validate().bad_input()?;
    if !(1..=3600).contains(&cli.shutdown_timeout_secs) {
        return Err(Exit::BadInput(anyhow::anyhow!(
            "shutdown-timeout-secs: {} is out of range; expected 1 to 3600",
            cli.shutdown_timeout_secs
        )));
    }
    if cli.capacity > 1000 {
        return Err(Exit::BadInput(anyhow::anyhow!(
            "capacity: {} is out of range; expected 0 to 1000",
            cli.capacity
        )));
    }
    let worker_id = cli.worker_id.unwrap_or_else(herd_config::default_instance_id);
    if worker_id.is_empty()
        || worker_id.contains('/')
        || worker_id.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Exit::BadInput(anyhow::anyhow!("worker-id: {worker_id:?} is not usable as a ZooKeeper node name; use letters, digits, - _ . :")));
    }
    if cli.check_config {
        println!("configuration ok:\n{endpoints:#?}\n{coord:#?}\n{sink:#?}\n{ingest:#?}\nworker id: {worker_id}\ncapacity: {}", cli.capacity);
        return Ok(ExitCode::SUCCESS);
    }
    herd_telemetry::install_metrics(cli.metrics_addr).bad_input()?;

    let session = herd_clients::cassandra::session(&endpoints)
        .await
        .context("while connecting to Cassandra")?;
    let session = Arc::new(session);
    let applied = migrate(&endpoints, &coord, &session, &sink, &worker_id).await?;
    let fencing = herd_sink::fencing::Fencing::prepare(&session, &sink)
        .await
        .context("while preparing checkpoint statements")?;
    let layout = sink.layout;
    let store =
        herd_sink::store(session.clone(), sink).await.context("while preparing statements")?;
    // -1: the broker's default partitions and replication.
    herd_clients::kafka::ensure_topic(&endpoints, &ingest.dead_letter_topic, -1, -1)
        .await
        .context("while creating the dead-letter topic")?;
    let source =
        KafkaSource::new(&endpoints, &worker_id).context("while creating the Kafka consumer")?;
    let dead_letters = DeadLetterSink {
        producer: herd_clients::kafka::producer(&endpoints, &worker_id)
            .context("while creating the dead-letter producer")?,
        topic: ingest.dead_letter_topic.clone(),
        worker: worker_id.clone(),
    };
    tracing::info!(
        worker = %worker_id, root = %coord.root, migrations_applied = ?applied, %layout,
        metrics = %cli.metrics_addr, security = %endpoints.security.describe(), "worker started"
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(handle_signals(shutdown.clone()));
    let (control_tx, control_rx) = tokio::sync::mpsc::channel(64);
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let (live_tx, live_rx) = tokio::sync::watch::channel(herd_ingest::live::Live::default());
    tokio::spawn(follow_log_level(
        log,
        cli.log.filter.clone().unwrap_or_else(|| "info".into()),
        live_rx.clone(),
    ));
    let ownership = tokio::spawn(
        Ownership {
            endpoints: endpoints.clone(),
            coord: coord.clone(),
            info: WorkerInfo {
                id: worker_id.clone(),
                address: cli.metrics_addr.to_string(),
                capacity: cli.capacity,
                config_version: 0,
            },
            session: session.clone(),
            fencing: fencing.clone(),
            control: control_tx,
            events: events_rx,
            dead_letter_topic: ingest.dead_letter_topic.clone(),
            live: live_tx,
        }
        .run(shutdown.clone()),
    );
    let mut pipeline = tokio::spawn(
        Pipeline {
            settings: ingest,
            source,
            store,
            dead_letters,
            session,
            fencing,
            control: control_rx,
            events: events_tx,
            live: live_rx,
        }
        .run(shutdown.clone()),
    );
    let limit = Duration::from_secs(cli.shutdown_timeout_secs);
    let result = tokio::select! {
        result = &mut pipeline => result,
        _ = shutdown.cancelled() => {
            match tokio::time::timeout(limit, &mut pipeline).await {
                Ok(result) => result,
                Err(_) => {
                    return Err(anyhow::anyhow!(
                        "shutdown did not finish within {} s (is Cassandra or Kafka down?); messages not checkpointed are read again by the shards' next owners",
                        limit.as_secs()
                    ).into());
                }
            }
        }
    };
    // The pipeline has checkpointed what it could: now let go of the shards.
    shutdown.cancel();
    if let Ok(Ok(Some(zk))) = tokio::time::timeout(limit, ownership).await {
        herd_clients::zookeeper::close(zk, Duration::from_secs(5)).await;
    }
    let summary = result.context("the pipeline task failed")??;
    tracing::info!(
        messages = summary.messages,
        events_written = summary.events_written,
        dead_letters = summary.dead_letters,
        chunks_committed = summary.chunks_committed,
        "worker stopped cleanly"
    );
    Ok(ExitCode::SUCCESS)
}

/// Applies the live configuration's `log_level` (or, without one, the
/// command line's filter) whenever it changes.
async fn follow_log_level(
    log: herd_telemetry::LogHandle,
    default: String,
    mut live: tokio::sync::watch::Receiver<herd_ingest::live::Live>,
) {
    let mut applied = default.clone();
    while live.changed().await.is_ok() {
        let wanted = live
            .borrow_and_update()
            .doc
            .global
            .log_level
            .clone()
            .unwrap_or_else(|| default.clone());
        if wanted != applied {
            match log.set(&wanted) {
                Ok(()) => {
                    tracing::info!(filter = %wanted, "log filter changed");
                    applied = wanted;
                }
                Err(e) => {
                    tracing::error!(
                        error = &e as &dyn std::error::Error,
                        "cannot apply the configured log filter; keeping {applied}"
                    )
                }
            }
        }
    }
}

/// First SIGTERM or SIGINT: graceful shutdown. Second: exit at once.
async fn handle_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop this worker with SIGKILL");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("signal received: stopping consumption, then draining, writing and checkpointing (a second signal exits at once)");
    shutdown.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::warn!("second signal: exiting now without checkpointing; what was not checkpointed is read again by the shards' next owners");
    std::process::exit(130);
}

/// Brings the keyspace's schema up to date, one worker at a time (a
/// ZooKeeper lock per keyspace; see herd-coord's `schema`): the others
/// wait, then check the schema and their fixed settings without DDL.
/// Returns the migration versions this worker applied.
async fn migrate(
    endpoints: &herd_config::Endpoints,
    coord: &herd_config::Coord,
    session: &scylla::client::session::Session,
    sink: &herd_sink::SinkSettings,
    worker_id: &str,
) -> Result<Vec<i32>, Exit> {
    use herd_coord::schema::{migrate_once, Migrated};
    use herd_sink::schema;
    let zk = herd_clients::zookeeper::connect(endpoints, coord.session_timeout)
        .await
        .context("while connecting to ZooKeeper to coordinate the schema migration")?;
    let outcome = migrate_once(
        &zk,
        &coord.root,
        &sink.keyspace,
        schema::latest_version(),
        worker_id,
        || schema::up_to_date(session, &sink.keyspace),
        || schema::migrate(session, sink),
    )
    .await;
    // The lock's node goes with the session.
    herd_clients::zookeeper::close(zk, Duration::from_secs(5)).await;
    match outcome.context("while migrating the schema")? {
        Migrated::Ran { applied, waited } => {
            tracing::info!(keyspace = %sink.keyspace, version = schema::latest_version(), ?applied, waited_ms = waited.as_millis() as u64, "schema migrated under the lock; version published");
            Ok(applied)
        }
        Migrated::Reached { published, waited } => {
            schema::check_settings(session, sink).await.context("while checking the schema")?;
            tracing::info!(keyspace = %sink.keyspace, version = published.version, by = %published.by, waited_ms = waited.as_millis() as u64, "schema up to date, migrated by another process");
            Ok(Vec::new())
        }
    }
}
