//! Following the coordinator's assignment: which shards this worker runs.
//!
//! For each ZooKeeper session:
//! 1. register `{root}/workers/{id}` (ephemeral). If a node of that id
//!    exists (the previous run of this worker, whose session has not expired
//!    yet), wait for it to go;
//! 2. watch `{root}/assignment`. For each shard granted to this worker:
//!    *hold* it (ephemeral `{root}/owned/…`; if another worker still holds it,
//!    wait), *claim* it in Cassandra with the grant's epoch (from then on an
//!    older owner's checkpoints are refused), and start it from the claimed
//!    checkpoint;
//! 3. for each running shard no longer granted (revoked, moved, or granted
//!    again under a newer epoch): stop it, wait until what was read is
//!    checkpointed, then release its node, which lets the leader grant it on.
//!    A shard whose checkpoint is refused (fenced) is stopped at once.
//!
//! The live configuration (`{root}/config`) is watched in the same loop: a
//! valid new version goes to the pipeline and into the registration; an
//! invalid one is refused (logged, counted) and the last good one stays.
//!
//! While ZooKeeper is merely unreachable, running shards keep going: a newer
//! owner can only appear after this session expired, and its claim fences
//! this worker's checkpoints at the database. Once the session has expired,
//! every shard stops, and the worker starts over with a new session.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use herd_config::{Coord, Endpoints};
use herd_coord::assign::Shard;
use herd_coord::dynconf;
use herd_coord::membership::{self, WorkerInfo, ZkError};
use herd_coord::Holder;
use herd_sink::fencing::{FenceError, Fencing};
use scylla::client::session::Session;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use zookeeper_client::Client;

use crate::control::{Control, ShardEvent};
use crate::live::Live;
use crate::metrics as m;
use crate::shards::Stopped;
use crate::source::StartAt;
use herd_sink::dedup::Dedup;

pub struct Ownership {
    pub endpoints: Endpoints,
    pub coord: Coord,
    pub info: WorkerInfo,
    pub session: Arc<Session>,
    pub fencing: Fencing,
    pub control: mpsc::Sender<Control>,
    pub events: mpsc::UnboundedReceiver<ShardEvent>,
    /// Never ingested, even if granted: dead letters would loop.
    pub dead_letter_topic: String,
    /// Where accepted configuration documents go (to the pipeline and the binary).
    pub live: tokio::sync::watch::Sender<Live>,
}

/// Why a session's loop ended.
enum End {
    Shutdown(Client),
    SessionLost(String),
}

const RETRY: Duration = Duration::from_secs(1);

impl Ownership {
    /// Follows the assignment until `shutdown` is cancelled. Returns the
    /// ZooKeeper client, still registered and holding the running shards:
    /// close it once the pipeline has drained and checkpointed them.
    pub async fn run(mut self, shutdown: CancellationToken) -> Option<Client> {
        m::describe();
        loop {
            let client = tokio::select! {
                c = herd_clients::zookeeper::connect(&self.endpoints, self.coord.session_timeout) => c,
                _ = shutdown.cancelled() => return None,
            };
            let client = match client {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = &e as &dyn std::error::Error, "cannot open a ZooKeeper session; no shards run until one is open; retrying in 1 s");
                    tokio::select! { _ = tokio::time::sleep(RETRY) => continue, _ = shutdown.cancelled() => return None }
                }
            };
            match self.session(client, &shutdown).await {
                End::Shutdown(client) => return Some(client),
                End::SessionLost(why) => {
                    tracing::warn!(reason = %why, "ZooKeeper session lost; every shard stopped; registering again")
                }
            }
        }
    }

    async fn session(&mut self, client: Client, shutdown: &CancellationToken) -> End {
        let root = self.coord.root.clone();
        let mut states = client.state_watcher();
        // 1. Register, waiting out a previous instance of the same id.
        let mut warned = false;
        loop {
            match membership::register(&client, &root, &self.info).await {
                Ok(()) => break,
                Err(ZkError(zookeeper_client::Error::NodeExists)) => {
                    if !warned {
                        tracing::warn!(
                            worker = %self.info.id,
                            "a worker with this id is registered already (a previous run whose session has not expired yet, or a second worker with the same --worker-id); waiting for it to go"
                        );
                        warned = true;
                    }
                }
                Err(e) => tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "cannot register; retrying in 1 s"
                ),
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                state = states.changed() => if state.is_terminated() { return End::SessionLost(format!("{state:?}")) },
                _ = shutdown.cancelled() => return End::Shutdown(client),
            }
        }
        tracing::info!(worker = %self.info.id, root = %root, session_timeout_ms = self.coord.session_timeout.as_millis() as u64, "registered; following the assignment");

        let mut running: BTreeMap<Shard, i64> = BTreeMap::new();
        // The config version this worker has published in its registration.
        let mut registered_version = self.info.config_version;
        // The last version refused, so that it is reported once.
        let mut rejected: Option<u64> = None;
        // Shards that failed to start or were fenced: not retried before this.
        let mut cooldown: BTreeMap<Shard, tokio::time::Instant> = BTreeMap::new();
        // Stopped shards whose node could not be deleted yet.
        let mut unreleased: BTreeSet<Shard> = BTreeSet::new();
        loop {
            let mut retry_soon = false;
            // 2. Read the assignment and arm a watch on it.
            let (granted, watcher) = match membership::watch_assignment(&client, &root).await {
                Ok((doc, watcher)) => {
                    let mut granted = doc.map(|d| d.granted_to(&self.info.id)).unwrap_or_default();
                    if let Some(s) =
                        granted.keys().find(|s| *s.topic == *self.dead_letter_topic).cloned()
                    {
                        tracing::error!(topic = %s.topic, "granted the dead-letter topic; not ingesting it (remove it from the coordinator's --topics)");
                        granted.retain(|s, _| *s.topic != *self.dead_letter_topic);
                    }
                    (Some(granted), Some(watcher))
                }
                Err(e) => {
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "cannot read the assignment; running shards keep going; retrying in 1 s"
                    );
                    retry_soon = true;
                    (None, None)
                }
            };
            // The live configuration: apply a new valid version, refuse an invalid one.
            let config_watcher = match dynconf::watch(&client, &root).await {
                Ok((stored, watcher)) => {
                    if stored.version != self.live.borrow().version
                        && rejected != Some(stored.version)
                    {
                        match stored.doc() {
                            Ok(doc) => {
                                tracing::info!(
                                    version = stored.version,
                                    "configuration version accepted"
                                );
                                self.live.send_replace(Live {
                                    version: stored.version,
                                    doc: Arc::new(doc),
                                });
                                self.info.config_version = stored.version;
                                rejected = None;
                            }
                            Err(e) => {
                                metrics::counter!(m::CONFIG_REJECTED).increment(1);
                                tracing::error!(
                                    version = stored.version, error = &e as &dyn std::error::Error, running = self.live.borrow().version,
                                    "configuration refused: keeping the last good one (fix it with herdctl config apply or rollback)"
                                );
                                rejected = Some(stored.version);
                            }
                        }
                    }
                    Some(watcher)
                }
                Err(e) => {
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "cannot read the configuration; keeping the current one; retrying in 1 s"
                    );
                    retry_soon = true;
                    None
                }
            };
            if registered_version != self.info.config_version {
                match membership::update_registration(&client, &root, &self.info).await {
                    Ok(()) => registered_version = self.info.config_version,
                    Err(e) => {
                        tracing::warn!(error = &e as &dyn std::error::Error, "cannot publish the configuration version in the registration; retrying");
                        retry_soon = true;
                    }
                }
            }
            if let Some(granted) = &granted {
                // 3. Stop what is no longer ours (or ours under another epoch).
                let to_stop: Vec<Shard> = running
                    .iter()
                    .filter(|(s, e)| granted.get(*s) != Some(*e))
                    .map(|(s, _)| s.clone())
                    .collect();
                self.stop_all(&to_stop).await;
                for s in to_stop {
                    running.remove(&s);
                    unreleased.insert(s);
                }
            }
            retry_soon |= !self.release(&client, &mut unreleased).await;
            if let Some(granted) = &granted {
                // 4. Start what is newly ours.
                let now = tokio::time::Instant::now();
                cooldown.retain(|_, until| *until > now);
                for (shard, &epoch) in granted {
                    if running.contains_key(shard) || unreleased.contains(shard) {
                        continue;
                    }
                    if cooldown.contains_key(shard) {
                        retry_soon = true;
                        continue;
                    }
                    match self.take(&client, shard, epoch).await {
                        Ok(true) => {
                            running.insert(shard.clone(), epoch);
                        }
                        Ok(false) => retry_soon = true,
                        Err(e) => {
                            tracing::warn!(topic = %shard.topic, partition = shard.partition, epoch, error = &e as &dyn std::error::Error, "cannot take the granted shard; retrying in 1 s");
                            cooldown.insert(shard.clone(), now + RETRY);
                            retry_soon = true;
                        }
                    }
                }
            }
            metrics::gauge!(m::SHARDS_RUNNING).set(running.len() as f64);

            // 5. Wait for news.
            let assignment_changed = async {
                match watcher {
                    Some(w) => {
                        w.changed().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let config_changed = async {
                match config_watcher {
                    Some(w) => {
                        w.changed().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = assignment_changed => {}
                _ = config_changed => {}
                _ = tokio::time::sleep(RETRY), if retry_soon || !unreleased.is_empty() => {}
                event = self.events.recv() => match event {
                    Some(ShardEvent::Fenced { shard, epoch, reason } | ShardEvent::StartFailed { shard, epoch, reason }) => {
                        if running.get(&shard) == Some(&epoch) {
                            tracing::warn!(topic = %shard.topic, partition = shard.partition, epoch, %reason, "shard fenced or not startable: stopping it, retrying in 1 s if still granted");
                            self.stop_all(std::slice::from_ref(&shard)).await;
                            running.remove(&shard);
                            cooldown.insert(shard.clone(), tokio::time::Instant::now() + RETRY);
                            unreleased.insert(shard);
                        }
                    }
                    // The pipeline is gone: nothing more to run.
                    None => return End::Shutdown(client),
                },
                state = states.changed() => {
                    if state.is_terminated() {
                        let all: Vec<Shard> = running.keys().cloned().collect();
                        tracing::warn!(?state, shards = all.len(), "ZooKeeper session ended: stopping every shard (a newer owner may hold them already)");
                        self.stop_all(&all).await;
                        metrics::gauge!(m::SHARDS_RUNNING).set(0.0);
                        return End::SessionLost(format!("{state:?}"));
                    }
                    tracing::warn!(?state, "ZooKeeper connection state changed; running shards keep going while the session lives (checkpoints stay fenced at the database)");
                }
                _ = shutdown.cancelled() => return End::Shutdown(client),
            }
        }
    }

    /// Holds, claims and starts a granted shard. Ok(false): another worker
    /// still holds it; try again later.
    async fn take(&self, client: &Client, shard: &Shard, epoch: i64) -> Result<bool, TakeError> {
        let holder = Holder { shard: shard.clone(), worker: self.info.id.clone(), epoch };
        if !membership::hold(client, &self.coord.root, &holder).await.map_err(TakeError::Hold)? {
            tracing::info!(topic = %shard.topic, partition = shard.partition, "granted, but its previous owner has not released it yet; waiting");
            return Ok(false);
        }
        let claimed = self.fencing.claim(&self.session, shard, epoch, &self.info.id).await;
        let checkpoint = match claimed {
            Ok(c) => c,
            Err(e) => {
                // Not ours after all (FenceError::Fenced: this grant is older than
                // the stored one), or Cassandra is unreachable: let go and retry.
                let _ = membership::release(client, &self.coord.root, shard).await;
                if matches!(e, FenceError::Fenced { .. }) {
                    tracing::error!(topic = %shard.topic, partition = shard.partition, epoch, error = &e as &dyn std::error::Error, "claim refused; waiting for a newer grant (if this repeats after ZooKeeper lost its data, restore its backup with herdctl restore: it lifts new grants above the stored epochs)");
                    return Ok(false);
                }
                return Err(TakeError::Claim(e));
            }
        };
        let at = StartAt::from_checkpoint(checkpoint.next_offset, checkpoint.window_start);
        // A memory this herd cannot read (a newer format) is a reason not to
        // run the shard: its rollups would count repeats.
        let memory = match checkpoint.dedup.as_deref().map(Dedup::decode).transpose() {
            Ok(m) => m.unwrap_or_default(),
            Err(e) => {
                let _ = membership::release(client, &self.coord.root, shard).await;
                return Err(TakeError::Memory { shard: shard.clone(), source: e });
            }
        };
        let start = Control::Start { shard: shard.clone(), epoch, at, memory };
        if self.control.send(start).await.is_err() {
            return Err(TakeError::PipelineStopped);
        }
        Ok(true)
    }

    /// Stops shards concurrently; returns when each is checkpointed (or fenced).
    async fn stop_all(&self, shards: &[Shard]) {
        let stops = shards.iter().map(|shard| async move {
            let (done, answer) = oneshot::channel();
            let stop = Control::Stop { shard: shard.clone(), done };
            let stopped = match self.control.send(stop).await {
                Ok(()) => answer.await.ok(),
                Err(_) => None,
            };
            tracing::info!(topic = %shard.topic, partition = shard.partition, outcome = ?stopped.unwrap_or(Stopped::NotRunning), "shard stopped");
        });
        futures::future::join_all(stops).await;
    }

    /// Deletes the nodes of stopped shards. False if some could not be deleted.
    async fn release(&self, client: &Client, unreleased: &mut BTreeSet<Shard>) -> bool {
        let mut all = true;
        for shard in unreleased.clone() {
            match membership::release(client, &self.coord.root, &shard).await {
                Ok(()) => {
                    unreleased.remove(&shard);
                }
                Err(e) => {
                    tracing::warn!(topic = %shard.topic, partition = shard.partition, error = &e as &dyn std::error::Error, "cannot release the shard's node; retrying");
                    all = false;
                }
            }
        }
        all
    }
}

/// Why a granted shard could not be taken; it is tried again in a second.
#[derive(Debug, thiserror::Error)]
enum TakeError {
    #[error("marking the shard as held in ZooKeeper failed")]
    Hold(#[source] ZkError),
    #[error("claiming the shard's checkpoint failed")]
    Claim(#[source] FenceError),
    #[error("the pipeline has stopped")]
    PipelineStopped,
    #[error("the checkpoint of {shard} holds a de-duplication memory this worker cannot read")]
    Memory {
        shard: Shard,
        #[source]
        source: herd_sink::dedup::DedupError,
    },
}
