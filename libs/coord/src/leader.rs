//! The coordinator's control loop: stand for election, lead, hand over.
//!
//! Several coordinators run; one leads. The leader watches the registered
//! workers and the shards being held, reads the partitions of its topics,
//! and publishes the assignment ([`crate::assign`], then
//! [`crate::handoff::plan`]) with a leader-only write. It leads while its
//! ZooKeeper session lives; a coordinator that lost its session or its
//! leadership stands again, as a standby, with a new session. The worker's
//! counterpart is herd-ingest's `ownership`.

use std::time::Duration;

use herd_clients::ClientError;
use tokio_util::sync::CancellationToken;

use crate::assign::{assign, Shard};
use crate::election::{self, ElectionError, Leadership};
use crate::handoff::{self, AssignmentDoc};
use crate::membership;

/// What a coordinator needs to stand and lead.
#[derive(Debug, Clone)]
pub struct Coordinator {
    pub endpoints: herd_config::Endpoints,
    pub coord: herd_config::Coord,
    /// Its name in ZooKeeper and logs.
    pub id: String,
    /// The Kafka topics whose partitions it assigns.
    pub topics: Vec<String>,
    /// How often the leader re-reads the topics' partitions.
    pub refresh: Duration,
    /// How the leader runs maintenance jobs; none: it runs none.
    pub nodetool: Option<herd_clients::nodetool::Nodetool>,
    /// How the leader watches the Cassandra nodes; none: it does not.
    pub watch: Option<crate::health::Watch>,
}

/// Why a session's leadership (or standing for it) ended; the coordinator
/// then stands again with a new session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeadershipEnded {
    #[error("standing for election failed")]
    Campaign(#[source] ElectionError),
    #[error("publishing the leadership failed")]
    Publish(#[source] ElectionError),
    #[error("the ZooKeeper session ended ({0:?}) while standing by")]
    SessionEndedStandingBy(zookeeper_client::SessionState),
    #[error("lost leadership: the ZooKeeper session ended ({0:?}), so a standby leads now")]
    SessionEnded(zookeeper_client::SessionState),
    #[error("lost leadership: a leader-only write was refused ({0}); a standby leads now")]
    Deposed(String),
}

impl Coordinator {
    /// Stands, leads and stands again until `shutdown`. Err only when the
    /// first ZooKeeper session cannot be opened (a wrong address should
    /// fail loudly); later, ZooKeeper coming back is waited for.
    pub async fn run(&self, shutdown: &CancellationToken) -> Result<(), ClientError> {
        describe_metrics();
        crate::health::describe_metrics();
        metrics::gauge!(IS_LEADER, "id" => self.id.clone()).set(0.0);
        if self.topics.is_empty() {
            tracing::warn!("no --topics given: when leading, there is nothing to assign");
        }
        let mut first = true;
        loop {
            let connected = tokio::select! {
                c = herd_clients::zookeeper::connect(&self.endpoints, self.coord.session_timeout) => c,
                _ = shutdown.cancelled() => return Ok(()),
            };
            let client = match connected {
                Ok(c) => c,
                Err(e) if first => return Err(e),
                Err(e) => {
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "cannot open a ZooKeeper session; retrying in 1 s"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.cancelled() => return Ok(()),
                    }
                }
            };
            first = false;
            match self.serve(client, shutdown).await {
                Ok(()) => return Ok(()),
                Err(why) => {
                    tracing::warn!(reason = &why as &dyn std::error::Error, "no longer leading or standing; standing for election again with a new session");
                }
            }
        }
    }

    /// One ZooKeeper session: stand, lead, hand over. Ok: stopped by a signal.
    /// Err: the session or the leadership was lost; the caller starts over.
    async fn serve(
        &self,
        client: zookeeper_client::Client,
        shutdown: &CancellationToken,
    ) -> Result<(), LeadershipEnded> {
        let (coord, id) = (&self.coord, self.id.as_str());
        let mut states = client.state_watcher();
        tracing::info!(%id, root = %coord.root, "standing for election");
        let leadership = tokio::select! {
            l = election::campaign(&client, &coord.root, id) => l.map_err(LeadershipEnded::Campaign)?,
            state = wait_terminated(&mut states) => return Err(LeadershipEnded::SessionEndedStandingBy(state)),
            _ = shutdown.cancelled() => {
                herd_clients::zookeeper::close(client, Duration::from_secs(5)).await;
                tracing::info!("stopped while standing by");
                return Ok(());
            }
        };
        leadership.publish(&client, &coord.root, id).await.map_err(LeadershipEnded::Publish)?;
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
        // Maintenance jobs run while this leadership lasts (aborted with it,
        // which kills a running nodetool and gives up its lock).
        // Each starts again after an error (a connection lost for a while):
        // the leadership, not the task, decides when they end.
        let jobs = {
            let (client, root, who) = (client.clone(), coord.root.clone(), id.to_owned());
            let (nodetool, endpoints) = (self.nodetool.clone(), self.endpoints.clone());
            restarting("the job runner", move || {
                crate::jobs::runner(
                    client.clone(),
                    root.clone(),
                    who.clone(),
                    nodetool.clone(),
                    endpoints.clone(),
                )
            })
        };
        let watch = self.watch.clone().map(|watch| {
            let (client, root, who) = (client.clone(), coord.root.clone(), id.to_owned());
            let endpoints = self.endpoints.clone();
            restarting("the Cassandra watch", move || {
                crate::health::monitor(
                    client.clone(),
                    root.clone(),
                    who.clone(),
                    endpoints.clone(),
                    watch.clone(),
                )
            })
        });

        let ctx = Lead {
            client: &client,
            endpoints: &self.endpoints,
            root: &coord.root,
            topics: &self.topics,
            leadership: &leadership,
        };
        loop {
            let watchers = match ctx.round().await {
                Ok(watchers) => Some(watchers),
                Err(ElectionError::Deposed(why)) => return Err(LeadershipEnded::Deposed(why)),
                Err(e) => {
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "assignment round failed; retrying in 1 s"
                    );
                    None
                }
            };
            // Workers joined or left, a shard was taken or released, or a
            // restore set the epoch floor.
            let membership_changed = async {
                match watchers {
                    Some([workers, holders, floor]) => {
                        tokio::select! { _ = workers.changed() => {}, _ = holders.changed() => {}, _ = floor.changed() => {} }
                    }
                    None => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            };
            tokio::select! {
                _ = membership_changed => {}
                _ = tokio::time::sleep(self.refresh.max(Duration::from_secs(1))) => {}
                state = states.changed() => {
                    if state.is_terminated() {
                        return Err(LeadershipEnded::SessionEnded(state));
                    }
                    tracing::warn!(?state, "ZooKeeper connection state changed; still leading while the session lives");
                }
                _ = shutdown.cancelled() => break,
            }
        }
        // Hand over: stop the jobs, drop the lock node, end the session.
        drop(jobs);
        drop(watch);
        drop(leadership);
        herd_clients::zookeeper::close(client, Duration::from_secs(5)).await;
        tracing::info!("stepped down");
        Ok(())
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

/// Runs the task `make` makes until it is dropped, making it again a second
/// after each error (a connection lost for a while): the leadership, not the
/// task, decides when it ends.
fn restarting<F, Fut, E>(what: &'static str, make: F) -> AbortOnDrop
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send,
    E: std::error::Error + 'static,
{
    AbortOnDrop(tokio::spawn(async move {
        loop {
            if let Err(e) = make().await {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "{what} failed; starting it again in 1 s"
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }))
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
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
    async fn round(&self) -> Result<[zookeeper_client::OneshotWatcher; 3], ElectionError> {
        let workers_watch =
            membership::watch_children(self.client, self.root, &membership::workers_dir(self.root))
                .await?;
        let holders_watch =
            membership::watch_children(self.client, self.root, &membership::owned_dir(self.root))
                .await?;
        let workers = membership::workers(self.client, self.root).await?;
        let holders = membership::holders(self.client, self.root).await?;
        let (floor, floor_watch) = membership::watch_epoch_floor(self.client, self.root).await?;
        let previous = membership::read_assignment(self.client, self.root).await?;
        let before = previous.as_ref().map(AssignmentDoc::target).unwrap_or_default();
        let shards: Vec<Shard> =
            match herd_clients::kafka::partitions(self.endpoints, self.topics).await {
                Ok(shards) => shards,
                Err(e) => {
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "cannot read partitions from Kafka; keeping the shards known so far"
                    );
                    before.keys().cloned().collect()
                }
            };
        let target = assign(&membership::as_assign_input(&workers), &shards, &before);
        let grants =
            handoff::plan(&target, previous.as_ref().map_or(&[][..], |d| &d.shards), &holders);
        let doc = AssignmentDoc {
            leader_epoch: self.leadership.epoch,
            epoch_base: previous.as_ref().map_or(0, |d| d.epoch_base),
            shards: grants,
        }
        .above_floor(floor);
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
        Ok([workers_watch, holders_watch, floor_watch])
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
