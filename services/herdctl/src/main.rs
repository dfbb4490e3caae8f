//! herdctl: operate a herd deployment from the command line.

mod backup;
mod config;
mod jobs;
mod query;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herd_clients::probe;
use herd_config::{ConnectArgs, Shard};
use herd_telemetry::{BadInput, Exit, LogArgs};

#[derive(Parser)]
#[command(name = "herdctl", version, about = "Operate a herd deployment.")]
struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    log: LogArgs,
    /// ZooKeeper path of the herd deployment.
    #[arg(long, global = true, env = "HERD_ZK_ROOT", default_value = "/herd")]
    root: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read and change the live configuration that workers apply without
    /// restarting: get, set, apply, diff, history, rollback, status, keys.
    Config {
        #[command(subcommand)]
        action: config::Action,
    },
    /// Show the leading coordinator, the keyspace's schema version, the
    /// Cassandra nodes as the leader last probed them, the registered
    /// workers, and every shard
    /// with its owner, grant epoch, checkpoint and lag (end offset in Kafka
    /// minus the checkpoint in Cassandra).
    Status {
        /// Cassandra keyspace holding the shards' checkpoints (for lag).
        #[arg(long, env = "HERD_KEYSPACE", default_value = "herd")]
        keyspace: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Maintenance jobs under ZooKeeper locks (repair, snapshot, cleanup):
    /// list, run, status, cancel.
    Jobs {
        #[command(subcommand)]
        action: jobs::Action,
    },
    /// Print the points of one series and metric: those in a time range
    /// (--from, --to), or the latest --limit. Reads either storage layout;
    /// an event stored twice (sent twice by its producer) is printed once.
    Query(query::QueryArgs),
    /// Write herd's coordination state to FILE (JSON): every persistent
    /// znode under --root (the live configuration with its version and
    /// history, schema versions, the assignment) and the shards' checkpoints
    /// with their epochs.
    Backup {
        file: std::path::PathBuf,
        /// Cassandra keyspace holding the shards' checkpoints.
        #[arg(long, env = "HERD_KEYSPACE", default_value = "herd")]
        keyspace: String,
    },
    /// Bring a backup into a ZooKeeper that lost herd's state (wiped, or a
    /// new ensemble) under --root, and set the epoch floor above every
    /// epoch in the backup and in Cassandra's checkpoints now, so the
    /// workers' claims are accepted again and resume at their checkpoints.
    /// Refuses if a node exists with other data. The leader record, the
    /// assignment and the Cassandra view are left to the running leader.
    Restore {
        file: std::path::PathBuf,
        /// Cassandra keyspace holding the shards' checkpoints.
        #[arg(long, env = "HERD_KEYSPACE", default_value = "herd")]
        keyspace: String,
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

/// One shard in `herdctl status`.
#[derive(serde::Serialize)]
struct ShardStatus {
    topic: String,
    partition: i32,
    owner: String,
    epoch: i64,
    state: &'static str,
    next_owner: Option<String>,
    /// The worker holding it now (its owned node), if any.
    holder: Option<String>,
    /// The next offset to read, as checkpointed in Cassandra.
    checkpoint: Option<i64>,
    end_offset: Option<i64>,
    lag: Option<i64>,
    /// Rollups (blocks layout), as of the checkpoint: events that repeated
    /// a (producer, seq), kept out; events below their producer's
    /// de-duplication horizon, counted unchecked.
    repeats: Option<u64>,
    beyond_horizon: Option<u64>,
}

/// End offsets from Kafka and checkpoints from Cassandra, each best effort:
/// what could not be read is reported in the third value.
async fn lag_inputs(
    endpoints: &herd_config::Endpoints,
    keyspace: &str,
    shards: Vec<Shard>,
) -> (
    std::collections::BTreeMap<Shard, i64>,
    std::collections::BTreeMap<Shard, herd_sink::fencing::Checkpoint>,
    Vec<String>,
) {
    let mut problems = Vec::new();
    let ends = match herd_clients::kafka::end_offsets(endpoints, shards).await {
        Ok(e) => e,
        Err(e) => {
            problems.push(format!("no lag: cannot read end offsets from Kafka: {e}"));
            Default::default()
        }
    };
    let checkpoints = match herd_clients::cassandra::session(endpoints).await {
        Ok(session) => match herd_sink::fencing::all_checkpoints(&session, keyspace).await {
            Ok(rows) => rows.into_iter().collect(),
            Err(e) => {
                problems.push(format!("no checkpoints: cannot read {keyspace}.shard_checkpoints (is --keyspace right?): {e}"));
                Default::default()
            }
        },
        Err(e) => {
            problems.push(format!("no checkpoints: cannot connect to Cassandra: {e}"));
            Default::default()
        }
    };
    (ends, checkpoints, problems)
}

/// The leader's view of the Cassandra nodes, in `herdctl status`.
fn print_cassandra(view: Option<&herd_coord::health::ClusterView>) {
    let Some(v) = view else {
        println!("cassandra: no view published (no leader has watched the nodes yet)");
        return;
    };
    let now = herd_config::now_ms();
    let age = |ms: i64| format!("{:.1} s", (now - ms).max(0) as f64 / 1000.0);
    println!(
        "cassandra: {} of {} nodes answer (seen by {} {} ago; hint window {} s)",
        v.up(),
        v.nodes.len(),
        v.by,
        age(v.at_ms),
        v.max_hint_window_ms / 1000
    );
    for n in &v.nodes {
        let mut line = if n.up {
            format!("  {:<16} up    {} ms", n.address, n.probe_ms.unwrap_or(0))
        } else {
            format!(
                "  {:<16} DOWN  for {}: {}",
                n.address,
                n.down_since_ms.map_or("?".into(), age),
                n.error.as_deref().unwrap_or("no answer")
            )
        };
        if n.hint_files > 0 {
            line += &format!("; {} hint file(s) held for it", n.hint_files);
        }
        if !n.down_according_to.is_empty() {
            line += &format!("; down according to {}", n.down_according_to.join(", "));
        }
        println!("{line}");
    }
    if let Some(w) = &v.waiting_for {
        println!("  waiting for {w}");
    }
}

fn main() -> ExitCode {
    herd_telemetry::report("herdctl", run(Cli::parse()))
}

#[tokio::main]
async fn run(cli: Cli) -> Result<ExitCode, Exit> {
    herd_telemetry::init_logging(&cli.log, "warn").bad_input()?;
    let endpoints = cli.connect.validate().bad_input()?;
    let root = herd_config::zk_root("root", &cli.root).bad_input()?;
    match cli.command {
        Command::Status { keyspace, json } => {
            use herd_coord::{election, membership};
            let zk =
                herd_clients::zookeeper::connect(&endpoints, std::time::Duration::from_secs(6))
                    .await
                    .context("while connecting to ZooKeeper")?;
            let leader =
                election::current_leader(&zk, &root).await.context("while reading the leader")?;
            let workers =
                membership::workers(&zk, &root).await.context("while reading the workers")?;
            zk.sync(&membership::assignment_path(&root)).await.ok();
            let assignment = membership::read_assignment(&zk, &root)
                .await
                .context("while reading the assignment")?;
            let holders = membership::holders(&zk, &root)
                .await
                .context("while reading who holds which shard")?;
            let schema = herd_coord::schema::published(&zk, &root, &keyspace)
                .await
                .context("while reading the schema version")?;
            let cassandra = herd_coord::health::read_view(&zk, &root)
                .await
                .context("while reading the Cassandra nodes' health")?;
            herd_clients::zookeeper::close(zk, std::time::Duration::from_secs(2)).await;
            let grants = assignment.as_ref().map(|d| d.shards.clone()).unwrap_or_default();
            // Lag needs Kafka and Cassandra; without them, status still shows ZooKeeper's view.
            let shard_ids: Vec<Shard> = grants.iter().map(|g| g.shard.clone()).collect();
            let (ends, checkpoints, problems) = lag_inputs(&endpoints, &keyspace, shard_ids).await;
            let rows: Vec<ShardStatus> = grants
                .iter()
                .map(|g| {
                    let checkpoint = checkpoints.get(&g.shard).and_then(|c| c.next_offset);
                    let memory = checkpoints
                        .get(&g.shard)
                        .and_then(|c| c.dedup.as_deref())
                        .and_then(|d| herd_sink::dedup::Dedup::decode(d).ok());
                    let end = ends.get(&g.shard).copied();
                    ShardStatus {
                        topic: g.shard.topic.to_string(),
                        partition: g.shard.partition,
                        owner: g.owner.clone(),
                        epoch: g.epoch,
                        state: if g.revoke { "revoking" } else { "granted" },
                        next_owner: g.next_owner.clone(),
                        holder: holders.get(&g.shard).map(|h| h.worker.clone()),
                        checkpoint,
                        end_offset: end,
                        // No checkpoint yet: everything from the start is lag.
                        lag: end.map(|e| e - checkpoint.unwrap_or(0)),
                        repeats: memory.as_ref().map(|m| m.repeats),
                        beyond_horizon: memory.as_ref().map(|m| m.beyond_horizon),
                    }
                })
                .collect();
            if json {
                let out = serde_json::json!({
                    "root": root, "keyspace": keyspace, "leader": leader, "workers": workers,
                    "schema": schema, "cassandra": cassandra,
                    "leader_epoch_of_assignment": assignment.as_ref().map(|d| d.leader_epoch),
                    "shards": rows, "problems": problems,
                });
                println!("{}", serde_json::to_string_pretty(&out).context("while encoding JSON")?);
                return Ok(ExitCode::SUCCESS);
            }
            match &leader {
                Some(l) => println!("leader: {} (epoch {})", l.id, l.epoch),
                None => println!("leader: none (no coordinator has led under {root})"),
            }
            match &schema {
                Some(v) => {
                    println!("schema of {keyspace}: version {} (migrated by {})", v.version, v.by)
                }
                None => println!("schema of {keyspace}: no version published under {root}"),
            }
            print_cassandra(cassandra.as_ref());
            println!("workers: {}", workers.len());
            for w in &workers {
                println!(
                    "  {:<24} capacity {:<3} config v{:<4} {}",
                    w.id, w.capacity, w.config_version, w.address
                );
            }
            match &assignment {
                None => println!("assignment: none published"),
                Some(doc) => {
                    let total: i64 = rows.iter().filter_map(|r| r.lag).sum();
                    println!(
                        "shards: {} (assigned by the leader of epoch {}), total lag {total}",
                        rows.len(),
                        doc.leader_epoch
                    );
                    println!(
                        "  {:<32} {:<20} {:<12} {:<9} {:>12} {:>12} {:>10}",
                        "SHARD", "OWNER", "EPOCH", "STATE", "CHECKPOINT", "END", "LAG"
                    );
                    let show = |v: Option<i64>| v.map_or("-".to_owned(), |v| v.to_string());
                    for r in &rows {
                        let state = match (&r.next_owner, r.state) {
                            (Some(next), "revoking") => format!("revoking → {next}"),
                            (_, state)
                                if r.holder.as_deref() != Some(&r.owner) && state == "granted" =>
                            {
                                "granted, not taken".to_owned()
                            }
                            (_, state) => state.to_owned(),
                        };
                        println!(
                            "  {:<32} {:<20} {:<12} {:<9} {:>12} {:>12} {:>10}",
                            format!("{}/{}", r.topic, r.partition),
                            r.owner,
                            r.epoch,
                            state,
                            show(r.checkpoint),
                            show(r.end_offset),
                            show(r.lag)
                        );
                    }
                }
            }
            let repeats: u64 = rows.iter().filter_map(|r| r.repeats).sum();
            let unchecked: u64 = rows.iter().filter_map(|r| r.beyond_horizon).sum();
            if rows.iter().any(|r| r.repeats.is_some()) {
                println!("rollups: {repeats} repeated events (same producer and seq) kept out, {unchecked} older than the de-duplication horizon counted unchecked (as of the checkpoints)");
            }
            for p in &problems {
                eprintln!("herdctl: {p}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { action } => config::run(&endpoints, &root, action).await,
        Command::Backup { file, keyspace } => {
            backup::backup(&endpoints, &root, &keyspace, &file).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Restore { file, keyspace } => {
            backup::restore(&endpoints, &root, &keyspace, &file).await.map(|()| ExitCode::SUCCESS)
        }
        Command::Jobs { action } => jobs::run(&endpoints, &root, action).await,
        Command::Query(args) => query::run(&endpoints, args).await,
        Command::Doctor { json } => {
            let probes = probe::all(&endpoints).await;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&probes).context("while encoding JSON")?
                );
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
