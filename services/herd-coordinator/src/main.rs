//! herd-coordinator: several run, one leads. Elected through ZooKeeper, the
//! leader watches the registered workers and the partitions of --topics, and
//! publishes the shard assignment at {root}/assignment (a leader-only write).
//! It leads while its ZooKeeper session lives and hands over to a standby
//! when it ends. Workers following the assignment, with fenced checkpoints,
//! is the next step of issue 4.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use herd_config::ConnectArgs;
use herd_coord::assign::{assign, Assignment, Shard};
use herd_coord::election::{self, ElectionError, Leadership};
use herd_coord::membership::{self, AssignmentDoc};
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
    /// ZooKeeper path under which herd keeps its coordination state.
    #[arg(long, env = "HERD_ZK_ROOT", default_value = "/herd")]
    root: String,
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
    /// ZooKeeper session timeout in milliseconds: how long after this
    /// coordinator dies or is cut off a standby takes over.
    #[arg(long, env = "HERD_SESSION_TIMEOUT_MS", default_value_t = 6000)]
    session_timeout_ms: u64,
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
    herd_config::zk_root("root", &cli.root).bad_input()?;
    // ZooKeeper negotiates within [2, 20] ticks; the stack's floor is 2 s.
    if !(2_000..=60_000).contains(&cli.session_timeout_ms) {
        return Err(Exit::BadInput(anyhow::anyhow!(
            "session-timeout-ms: {} is out of range; expected 2000 to 60000",
            cli.session_timeout_ms
        )));
    }
    let id = cli.id.unwrap_or_else(herd_config::default_instance_id);
    if cli.check_config {
        println!("configuration ok: {endpoints:?}\nroot: {}\nid: {id}\nsession timeout: {} ms", cli.root, cli.session_timeout_ms);
        return Ok(ExitCode::SUCCESS);
    }
    let client = herd_clients::zookeeper::connect(&endpoints, Duration::from_millis(cli.session_timeout_ms))
        .await
        .context("while connecting to ZooKeeper")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(handle_signals(shutdown.clone()));

    tracing::info!(%id, root = %cli.root, "standing for election");
    let leadership = tokio::select! {
        l = election::campaign(&client, &cli.root, &id) => l.context("while standing for election")?,
        _ = shutdown.cancelled() => {
            herd_clients::zookeeper::close(client, Duration::from_secs(5)).await;
            tracing::info!("stopped while standing by");
            return Ok(ExitCode::SUCCESS);
        }
    };
    leadership.publish(&client, &cli.root, &id).await.context("while publishing leadership")?;
    tracing::info!(%id, epoch = leadership.epoch, lock = %leadership.lock_path, "leading");

    if cli.topics.is_empty() {
        tracing::warn!("no --topics given: leading, but there is nothing to assign");
    }
    let ctx = Lead { client: &client, endpoints: &endpoints, root: &cli.root, topics: &cli.topics, leadership: &leadership };
    let mut previous: Option<Assignment> = None;
    let mut states = client.state_watcher();
    loop {
        let watcher = match ctx.round(&mut previous).await {
            Ok(watcher) => Some(watcher),
            Err(ElectionError::Deposed(why)) => {
                return Err(anyhow::anyhow!("lost leadership: a leader-only write was refused ({why}); a standby leads now").into());
            }
            Err(e) => {
                tracing::warn!(error = %e, "assignment round failed; retrying in 1 s");
                None
            }
        };
        let membership_changed = async {
            match watcher {
                Some(w) => { w.changed().await; }
                None => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        };
        tokio::select! {
            _ = membership_changed => {}
            _ = tokio::time::sleep(Duration::from_secs(cli.refresh_secs.max(1))) => {}
            state = states.changed() => {
                if state.is_terminated() {
                    return Err(anyhow::anyhow!(
                        "lost leadership: the ZooKeeper session ended ({state:?}), so a standby leads now; restart this coordinator to stand again"
                    ).into());
                }
                tracing::warn!(?state, "ZooKeeper connection state changed; still leading while the session lives");
            }
            _ = shutdown.cancelled() => break,
        }
    }
    // Hand over: drop the lock node, then end the session.
    drop(leadership);
    herd_clients::zookeeper::close(client, Duration::from_secs(5)).await;
    tracing::info!("stepped down");
    Ok(ExitCode::SUCCESS)
}

/// What the leader works with.
struct Lead<'a> {
    client: &'a zookeeper_client::Client,
    endpoints: &'a herd_config::Endpoints,
    root: &'a str,
    topics: &'a [String],
    leadership: &'a Leadership,
}

impl Lead<'_> {
    /// One assignment round: read workers (arming a watch on them) and
    /// partitions, assign, publish if anything changed. Returns the watch.
    async fn round(&self, previous: &mut Option<Assignment>) -> Result<zookeeper_client::OneshotWatcher, ElectionError> {
        let dir = membership::workers_dir(self.root);
        membership::ensure_path(self.client, &dir).await?;
        let (_, _, watcher) = self.client.get_and_watch_children(&dir).await?;
        let workers = membership::workers(self.client, self.root).await?;
        let before = match previous {
            Some(p) => p.clone(),
            None => membership::read_assignment(self.client, self.root).await?.map(|d| d.assignment()).unwrap_or_default(),
        };
        let shards: Vec<Shard> = match herd_clients::kafka::partitions(self.endpoints, self.topics).await {
            Ok(p) => p.into_iter().map(|(topic, partition)| Shard { topic, partition }).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read partitions from Kafka; keeping the shards known so far");
                before.keys().cloned().collect()
            }
        };
        let next = assign(&membership::as_assign_input(&workers), &shards, &before);
        if previous.as_ref() != Some(&next) {
            let doc = AssignmentDoc::new(self.leadership.epoch, &next);
            let data = serde_json::to_vec(&doc).expect("serializable");
            self.leadership.write(self.client, &membership::assignment_path(self.root), &data).await?;
            let moved = next.iter().filter(|(s, o)| before.get(*s).is_some_and(|b| b != *o)).count();
            tracing::info!(workers = workers.len(), shards = next.len(), moved, "published assignment");
            *previous = Some(next);
        }
        Ok(watcher)
    }
}

/// First SIGTERM or SIGINT: step down cleanly. Second: exit at once.
async fn handle_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop this coordinator with SIGKILL");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    shutdown.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    std::process::exit(130);
}
