//! herd-coordinator: several run, one leads. Elected through ZooKeeper, the
//! leader watches the registered workers and the partitions of --topics, and
//! publishes the shard assignment at {root}/assignment (a leader-only write).
//! It leads while its ZooKeeper session lives and hands over to a standby
//! when it ends; a coordinator that lost its session or its leadership stands
//! again, as a standby, with a new session. A shard moves only once its holder released it (see
//! herd_coord::handoff); every grant carries a fencing epoch that the workers'
//! checkpoints in Cassandra are conditioned on.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use herd_config::{ConnectArgs, CoordArgs};
use herd_coord::assign::{assign, Shard};
use herd_coord::election::{self, ElectionError, Leadership};
use herd_coord::handoff::{self, AssignmentDoc};
use herd_coord::membership;
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
    let id = cli.id.unwrap_or_else(herd_config::default_instance_id);
    if cli.check_config {
        println!("configuration ok: {endpoints:?}\n{coord:?}\ntopics: {:?}\nid: {id}", cli.topics);
        return Ok(ExitCode::SUCCESS);
    }
    herd_telemetry::install_metrics(cli.metrics_addr).bad_input()?;
    describe_metrics();
    metrics::gauge!(IS_LEADER, "id" => id.clone()).set(0.0);
    let shutdown = CancellationToken::new();
    tokio::spawn(handle_signals(shutdown.clone()));
    if cli.topics.is_empty() {
        tracing::warn!("no --topics given: when leading, there is nothing to assign");
    }
    let mut first = true;
    loop {
        let connected = tokio::select! {
            c = herd_clients::zookeeper::connect(&endpoints, coord.session_timeout) => c,
            _ = shutdown.cancelled() => return Ok(ExitCode::SUCCESS),
        };
        let client = match connected {
            Ok(c) => c,
            // At start-up a wrong address should fail loudly; later, ZooKeeper coming back is waited for.
            Err(e) if first => {
                return Err(anyhow::Error::new(e).context("while connecting to ZooKeeper").into())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open a ZooKeeper session; retrying in 1 s");
                tokio::select! { _ = tokio::time::sleep(Duration::from_secs(1)) => continue, _ = shutdown.cancelled() => return Ok(ExitCode::SUCCESS) }
            }
        };
        first = false;
        match serve(client, &endpoints, &coord, &id, &cli.topics, cli.refresh_secs, &shutdown).await
        {
            Ok(()) => return Ok(ExitCode::SUCCESS),
            Err(why) => {
                tracing::warn!(reason = %why, "no longer leading or standing; standing for election again with a new session");
            }
        }
    }
}

/// One ZooKeeper session: stand, lead, hand over. Ok: stopped by a signal.
/// Err: the session or the leadership was lost; the caller starts over.
async fn serve(
    client: zookeeper_client::Client,
    endpoints: &herd_config::Endpoints,
    coord: &herd_config::Coord,
    id: &str,
    topics: &[String],
    refresh_secs: u64,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let mut states = client.state_watcher();
    tracing::info!(%id, root = %coord.root, "standing for election");
    let leadership = tokio::select! {
        l = election::campaign(&client, &coord.root, id) => l.map_err(|e| format!("while standing for election: {e}"))?,
        state = wait_terminated(&mut states) => return Err(format!("the ZooKeeper session ended ({state:?}) while standing by")),
        _ = shutdown.cancelled() => {
            herd_clients::zookeeper::close(client, Duration::from_secs(5)).await;
            tracing::info!("stopped while standing by");
            return Ok(());
        }
    };
    leadership
        .publish(&client, &coord.root, id)
        .await
        .map_err(|e| format!("while publishing leadership: {e}"))?;
    tracing::info!(%id, epoch = leadership.epoch, lock = %leadership.lock_path, "leading");
    metrics::gauge!(IS_LEADER, "id" => id.to_owned()).set(1.0);
    metrics::gauge!(LEADER_EPOCH).set(leadership.epoch as f64);
    // Whatever ends this leadership, the gauge says so.
    struct NotLeading(String);
    impl Drop for NotLeading {
        fn drop(&mut self) {
            metrics::gauge!(IS_LEADER, "id" => self.0.clone()).set(0.0);
        }
    }
    let _not_leading = NotLeading(id.to_owned());

    let ctx =
        Lead { client: &client, endpoints, root: &coord.root, topics, leadership: &leadership };
    loop {
        let watchers = match ctx.round().await {
            Ok(watchers) => Some(watchers),
            Err(ElectionError::Deposed(why)) => {
                return Err(format!(
                    "lost leadership: a leader-only write was refused ({why}); a standby leads now"
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "assignment round failed; retrying in 1 s");
                None
            }
        };
        // Workers joined or left, or a shard was taken or released.
        let membership_changed = async {
            match watchers {
                Some([workers, holders]) => {
                    tokio::select! { _ = workers.changed() => {}, _ = holders.changed() => {} }
                }
                None => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        };
        tokio::select! {
            _ = membership_changed => {}
            _ = tokio::time::sleep(Duration::from_secs(refresh_secs.max(1))) => {}
            state = states.changed() => {
                if state.is_terminated() {
                    return Err(format!("lost leadership: the ZooKeeper session ended ({state:?}), so a standby leads now"));
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
    Ok(())
}

async fn wait_terminated(
    states: &mut zookeeper_client::StateWatcher,
) -> zookeeper_client::SessionState {
    loop {
        let state = states.changed().await;
        if state.is_terminated() {
            return state;
        }
    }
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
    /// One assignment round: read workers and holders (arming watches on
    /// both) and partitions, assign, plan the handoff, publish if anything
    /// changed. Returns the two watches.
    async fn round(&self) -> Result<[zookeeper_client::OneshotWatcher; 2], ElectionError> {
        let workers_watch =
            membership::watch_children(self.client, &membership::workers_dir(self.root)).await?;
        let holders_watch =
            membership::watch_children(self.client, &membership::owned_dir(self.root)).await?;
        let workers = membership::workers(self.client, self.root).await?;
        let holders = membership::holders(self.client, self.root).await?;
        let previous = membership::read_assignment(self.client, self.root).await?;
        let before = previous.as_ref().map(AssignmentDoc::target).unwrap_or_default();
        let shards: Vec<Shard> = match herd_clients::kafka::partitions(self.endpoints, self.topics)
            .await
        {
            Ok(shards) => shards,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read partitions from Kafka; keeping the shards known so far");
                before.keys().cloned().collect()
            }
        };
        let target = assign(&membership::as_assign_input(&workers), &shards, &before);
        let grants =
            handoff::plan(&target, previous.as_ref().map_or(&[][..], |d| &d.shards), &holders);
        let doc = AssignmentDoc { leader_epoch: self.leadership.epoch, shards: grants };
        if previous.as_ref() != Some(&doc) {
            let data = serde_json::to_vec(&doc).expect("serializable");
            self.leadership
                .write(self.client, &membership::assignment_path(self.root), &data)
                .await?;
            let moved =
                target.iter().filter(|(s, o)| before.get(*s).is_some_and(|b| b != *o)).count();
            let revoking = doc.shards.iter().filter(|g| g.revoke).count();
            let new_grants = doc.shards.iter().filter(|g| g.epoch == handoff::NEW_GRANT).count();
            tracing::info!(
                workers = workers.len(),
                shards = target.len(),
                moved,
                revoking,
                new_grants,
                "published assignment"
            );
            metrics::counter!(ASSIGNMENTS_PUBLISHED).increment(1);
        }
        metrics::gauge!(WORKERS).set(workers.len() as f64);
        metrics::gauge!(SHARDS).set(doc.shards.len() as f64);
        metrics::gauge!(SHARDS_REVOKING).set(doc.shards.iter().filter(|g| g.revoke).count() as f64);
        Ok([workers_watch, holders_watch])
    }
}

/// Label `id`: 1 while this coordinator leads, else 0.
const IS_LEADER: &str = "herd_coordinator_is_leader";
const LEADER_EPOCH: &str = "herd_coordinator_leader_epoch";
const ASSIGNMENTS_PUBLISHED: &str = "herd_assignments_published_total";
const WORKERS: &str = "herd_workers_registered";
const SHARDS: &str = "herd_shards_assigned";
const SHARDS_REVOKING: &str = "herd_shards_revoking";

fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, Unit};
    describe_gauge!(IS_LEADER, Unit::Count, "1 while this coordinator leads (label id), else 0");
    describe_gauge!(
        LEADER_EPOCH,
        Unit::Count,
        "Epoch of this coordinator's current or last leadership"
    );
    describe_counter!(
        ASSIGNMENTS_PUBLISHED,
        Unit::Count,
        "Assignment versions published by this coordinator"
    );
    describe_gauge!(WORKERS, Unit::Count, "Registered workers, as the leader last saw them");
    describe_gauge!(SHARDS, Unit::Count, "Shards in the published assignment");
    describe_gauge!(
        SHARDS_REVOKING,
        Unit::Count,
        "Shards being handed over (revoked, not yet released)"
    );
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
