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
    /// Show the leading coordinator, the registered workers and the shard
    /// assignment, as recorded in ZooKeeper.
    Status {
        /// ZooKeeper path of the herd deployment.
        #[arg(long, env = "HERD_ZK_ROOT", default_value = "/herd")]
        root: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
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
        Command::Status { root, json } => {
            use herd_coord::{election, membership};
            let root = herd_config::zk_root("root", &root).bad_input()?;
            let zk = herd_clients::zookeeper::connect(&endpoints, std::time::Duration::from_secs(6))
                .await
                .context("while connecting to ZooKeeper")?;
            let leader = election::current_leader(&zk, &root).await.context("while reading the leader")?;
            let workers = membership::workers(&zk, &root).await.context("while reading the workers")?;
            let assignment = membership::read_assignment(&zk, &root).await.context("while reading the assignment")?;
            herd_clients::zookeeper::close(zk, std::time::Duration::from_secs(2)).await;
            if json {
                let out = serde_json::json!({ "root": root, "leader": leader, "workers": workers, "assignment": assignment });
                println!("{}", serde_json::to_string_pretty(&out).context("while encoding JSON")?);
                return Ok(ExitCode::SUCCESS);
            }
            match &leader {
                Some(l) => println!("leader: {} (epoch {})", l.id, l.epoch),
                None => println!("leader: none (no coordinator has led under {root})"),
            }
            println!("workers: {}", workers.len());
            for w in &workers {
                println!("  {:<24} capacity {:<3} config v{:<4} {}", w.id, w.capacity, w.config_version, w.address);
            }
            match &assignment {
                None => println!("assignment: none published"),
                Some(doc) => {
                    println!(
                        "assignment: {} shards, by the leader of epoch {} (workers do not follow it yet: they share partitions through a Kafka consumer group)",
                        doc.shards.len(),
                        doc.leader_epoch
                    );
                    for s in &doc.shards {
                        println!("  {}/{:<5} {}", s.topic, s.partition, s.owner);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
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
