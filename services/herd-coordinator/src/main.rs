//! herd-coordinator: several run, one leads. Elected through ZooKeeper, the
//! leader watches the registered workers and the partitions of --topics, and
//! publishes the shard assignment at {root}/assignment (a leader-only write).
//! A shard moves only once its holder released it; every grant carries a
//! fencing epoch that the workers' checkpoints in Cassandra are conditioned
//! on. The leader also watches the Cassandra nodes (herd_coord::health) and
//! runs maintenance jobs under ZooKeeper locks (herd_coord::jobs). The
//! control loop is herd_coord::leader; this binary parses flags, serves
//! metrics and handles signals.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use herd_config::{ConnectArgs, CoordArgs};
use herd_coord::leader::Coordinator;
use herd_telemetry::{BadInput, Exit, LogArgs};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "herd-coordinator",
    version,
    about = "Coordinator: elected through ZooKeeper; one of several instances leads, the others stand by."
)]
struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    coord: CoordArgs,
    /// This coordinator's name in ZooKeeper and logs [default: host-pid].
    #[arg(long, env = "HERD_COORDINATOR_ID")]
    id: Option<String>,
    /// Kafka topics whose partitions the leader assigns, comma-separated.
    #[arg(long, env = "HERD_TOPICS", value_delimiter = ',')]
    topics: Vec<String>,
    /// How often the leader re-reads the topics' partitions (new partitions
    /// are picked up), in seconds. Membership changes act at once.
    #[arg(long, env = "HERD_REFRESH_SECS", default_value_t = 10)]
    refresh_secs: u64,
    #[command(flatten)]
    nodetool: herd_clients::nodetool::NodetoolArgs,
    /// How often the leader probes every Cassandra node (a query pinned to
    /// each), in milliseconds; it publishes what it sees at
    /// {root}/cassandra/health. 0: no watch.
    #[arg(long, env = "HERD_CASSANDRA_PROBE_MS", default_value_t = 2000)]
    cassandra_probe_ms: u64,
    /// How long Cassandra keeps hints for a down node (its
    /// max_hint_window): a node down longer gets a repair when it is back.
    /// [default: read from the cluster's system_views.settings]
    #[arg(long, env = "HERD_MAX_HINT_WINDOW_SECS")]
    max_hint_window_secs: Option<u64>,
    /// Address of the Prometheus endpoint (GET /metrics).
    #[arg(long, env = "HERD_METRICS_ADDR", default_value = "127.0.0.1:9470")]
    metrics_addr: std::net::SocketAddr,
    /// Validate flags and environment, print the effective settings, and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    herd_telemetry::report("herd-coordinator", run(Cli::parse()))
}

#[tokio::main]
async fn run(cli: Cli) -> Result<ExitCode, Exit> {
    herd_telemetry::init_logging(&cli.log, "info").bad_input()?;
    let endpoints = cli.connect.validate().bad_input()?;
    let coord = cli.coord.validate().bad_input()?;
    for topic in &cli.topics {
        herd_config::kafka_topic("topics", topic).bad_input()?;
    }
    let nodetool = cli.nodetool.validate().bad_input()?;
    let id = cli.id.unwrap_or_else(herd_config::default_instance_id);
    if cli.check_config {
        println!(
            "configuration ok: {endpoints:?}\n{coord:?}\ntopics: {:?}\nid: {id}\nnodetool: {:?}",
            cli.topics,
            nodetool.as_ref().map(|n| n.template())
        );
        return Ok(ExitCode::SUCCESS);
    }
    herd_telemetry::install_metrics(cli.metrics_addr).bad_input()?;
    tracing::info!(security = %endpoints.security.describe(), "connecting");
    let shutdown = CancellationToken::new();
    tokio::spawn(handle_signals(shutdown.clone()));
    let coordinator = Coordinator {
        endpoints,
        coord,
        id,
        topics: cli.topics,
        refresh: Duration::from_secs(cli.refresh_secs.max(1)),
        nodetool,
        watch: (cli.cassandra_probe_ms > 0).then(|| herd_coord::health::Watch {
            interval: Duration::from_millis(cli.cassandra_probe_ms),
            probe_timeout: Duration::from_millis(cli.cassandra_probe_ms.clamp(200, 1000)),
            max_hint_window: cli.max_hint_window_secs.map(Duration::from_secs),
        }),
    };
    coordinator.run(&shutdown).await.context("while connecting to ZooKeeper")?;
    Ok(ExitCode::SUCCESS)
}

/// First SIGTERM or SIGINT: step down cleanly. Second: exit at once.
async fn handle_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers; stop this coordinator with SIGKILL");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    shutdown.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    std::process::exit(130);
}
