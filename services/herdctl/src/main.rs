//! herdctl: operate a herd deployment from the command line.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herd_clients::probe;
use herd_config::ConnectArgs;
use herd_telemetry::{BadInput, Exit, LogArgs};

#[derive(Parser)]
#[command(name = "herdctl", version, about = "Operate a herd deployment.")]
struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    log: LogArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check that Kafka, Cassandra and every ZooKeeper server answer a real
    /// request (a metadata request, a query on system.local, a session per
    /// ZooKeeper server). Exits 1 if any does not.
    Doctor {
        /// Print the results as JSON, one object per probe.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    herd_telemetry::report("herdctl", run(Cli::parse()))
}

#[tokio::main]
async fn run(cli: Cli) -> Result<ExitCode, Exit> {
    herd_telemetry::init_logging(&cli.log, "warn").bad_input()?;
    let endpoints = cli.connect.validate().bad_input()?;
    match cli.command {
        Command::Doctor { json } => {
            let probes = probe::all(&endpoints).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&probes).context("while encoding JSON")?);
            } else {
                for p in &probes {
                    println!(
                        "{:<10} {:<22} {:<4} {} ({} ms)",
                        p.server,
                        p.target,
                        if p.ok { "ok" } else { "FAIL" },
                        p.detail,
                        p.elapsed_ms
                    );
                }
            }
            let failed = probes.iter().filter(|p| !p.ok).count();
            if failed > 0 {
                eprintln!("herdctl: {failed} of {} probes failed", probes.len());
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
