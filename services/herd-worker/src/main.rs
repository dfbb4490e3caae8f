//! herd-worker: Ingest worker: consumes the Kafka partitions it is granted and writes them into Cassandra.
//!
//! Thin binary: flags and environment, start-up health check, then the
//! components from `libs/`.

use anyhow::Context;
use clap::Parser;
use herd_config::ConnectArgs;
use herd_telemetry::{BadInput, Exit, LogArgs};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "herd-worker", version, about = "Ingest worker: consumes the Kafka partitions it is granted and writes them into Cassandra.")]
struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    log: LogArgs,
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
    if cli.check_config {
        println!("configuration ok: {endpoints:?}");
        return Ok(ExitCode::SUCCESS);
    }
    let probes = herd_clients::probe::startup_check(&endpoints)
        .await
        .context("while checking the servers herd-worker needs")?;
    for p in probes {
        tracing::info!(server = p.server, target = %p.target, "{}", p.detail);
    }
    Err(anyhow::anyhow!(
        "the ingest pipeline is not built yet (issue 3); this build only validates its configuration and checks that the servers answer"
    )
    .into())
}
