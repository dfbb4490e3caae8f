//! Maintenance jobs (repair, snapshot, cleanup of herd's keyspace), each
//! run under a ZooKeeper lock named for what it must not overlap with, and
//! their history.
//!
//! | path                        | kind                  | content         |
//! |-----------------------------|-----------------------|-----------------|
//! | `{root}/jobs/job-{n}`       | persistent (n: one above the highest) | [`JobRecord`] |
//! | `{root}/locks/job-{lock}/…` | the lock recipe's ephemeral sequential nodes | the holder's id and job |
//!
//! A job is requested by writing its record ([`submit`]); the leading
//! coordinator's runner, or `herdctl jobs run --here`, runs it
//! ([`run_job`]): take the kind's lock (zookeeper-client's recipe), read the
//! record again, and run it only if it is still to be done. A run that
//! finds the job done by someone else while it waited does nothing, so two
//! runners racing for one job run it once. Every write of a running job
//! goes through the lock (refused once the lock is lost). A runner that
//! takes the lock and finds an attempt with no outcome knows its runner lost
//! the lock (its ZooKeeper session ended: it died, froze or was cut off),
//! records that in the attempt, and runs the job again.
//!
//! What the lock cannot do: a runner frozen mid-job (SIGSTOP, a long GC)
//! leaves its nodetool running; once its session ends the next runner
//! starts its own. The frozen one kills its nodetool when it wakes and
//! finds the lock gone, but a repair Cassandra already started finishes on
//! the server. Repairs of the same ranges at once are safe, only wasteful.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zookeeper_client::{Client, LockOptions, LockPrefix};

use herd_clients::nodetool::Nodetool;

use crate::membership::{ensure_path, lock_holder, ZkError};

/// Attempts after which a job that keeps losing its runner counts as failed.
pub const MAX_ATTEMPTS: usize = 3;
/// Finished jobs kept in the history; older ones are deleted by the runner.
pub const HISTORY_KEPT: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// `nodetool repair --full KEYSPACE` on one node: the ranges it
    /// replicates made consistent with the other replicas (after it missed
    /// writes for longer than hints cover).
    Repair,
    /// `nodetool snapshot -t herd-job-{seq} KEYSPACE` on every node, one
    /// after another.
    Snapshot,
    /// `nodetool cleanup KEYSPACE` on one node: drops data of ranges it no
    /// longer owns (after nodes joined).
    Cleanup,
}

impl JobKind {
    /// The kind's name, which also names the lock its jobs hold while they
    /// run (see [`lock_dir`]).
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Repair => "repair",
            JobKind::Snapshot => "snapshot",
            JobKind::Cleanup => "cleanup",
        }
    }

    pub fn needs_node(self) -> bool {
        !matches!(self, JobKind::Snapshot)
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub kind: JobKind,
    /// The node's address (as Cassandra knows it); none for a snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub keyspace: String,
}

impl JobSpec {
    pub fn new(kind: JobKind, node: Option<String>, keyspace: String) -> Result<Self, JobError> {
        match (kind.needs_node(), &node) {
            (true, None) => Err(JobError::Spec(format!(
                "{} needs --node: the address of the Cassandra node to {}",
                kind.name(),
                kind.name()
            ))),
            (false, Some(_)) => {
                Err(JobError::Spec(format!("{} runs on every node; leave out --node", kind.name())))
            }
            _ => Ok(Self { kind, node, keyspace }),
        }
    }
}

impl std::fmt::Display for JobSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {}", self.kind.name(), self.keyspace)?;
        match &self.node {
            Some(node) => write!(f, " on {node}"),
            None => write!(f, " on every node"),
        }
    }
}

/// A job's record: the request, a cancel request, and every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub spec: JobSpec,
    pub requested_by: String,
    pub requested_ms: i64,
    /// Why it was requested ("manual", or what the coordinator saw).
    pub reason: String,
    #[serde(default)]
    pub cancel_requested: bool,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The runner: a coordinator's id, or herdctl's.
    pub by: String,
    pub started_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<i64>,
    /// None while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Outcome {
    Succeeded {
        detail: String,
    },
    Failed {
        error: String,
    },
    Cancelled,
    /// The runner lost the lock before it recorded an outcome.
    Abandoned {
        why: String,
    },
}

/// Where a job stands, derived from its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        })
    }
}

impl JobRecord {
    pub fn state(&self) -> JobState {
        match self.attempts.last() {
            None if self.cancel_requested => JobState::Cancelled,
            None => JobState::Queued,
            Some(Attempt { outcome: None, .. }) => JobState::Running,
            Some(Attempt { outcome: Some(outcome), .. }) => match outcome {
                Outcome::Succeeded { .. } => JobState::Succeeded,
                Outcome::Failed { .. } => JobState::Failed,
                Outcome::Cancelled => JobState::Cancelled,
                Outcome::Abandoned { .. } if self.cancel_requested => JobState::Cancelled,
                Outcome::Abandoned { .. } if self.attempts.len() >= MAX_ATTEMPTS => {
                    JobState::Failed
                }
                Outcome::Abandoned { .. } => JobState::Queued,
            },
        }
    }

    /// Under the lock, before a new attempt: an attempt still without an
    /// outcome lost its lock (whoever holds it now knows), so it is
    /// recorded as abandoned, by `now_holder`.
    fn close_abandoned(&mut self, now_holder: &str, now_ms: i64) -> Option<String> {
        let last = self.attempts.last_mut()?;
        if last.outcome.is_some() {
            return None;
        }
        let why = format!(
            "{} lost the lock before it finished (its ZooKeeper session ended: it died, froze or was cut off); {now_holder} took the lock over",
            last.by
        );
        last.ended_ms = Some(now_ms);
        last.outcome = Some(Outcome::Abandoned { why: why.clone() });
        Some(last.by.clone())
    }
}

/// A job as read from ZooKeeper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    /// Its znode name, `job-{seq}`.
    pub id: String,
    #[serde(flatten)]
    pub record: JobRecord,
    pub state: JobState,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    ZooKeeper(#[from] ZkError),
    #[error("{0}")]
    Spec(String),
    #[error("no job {id} under {root}/jobs; herdctl jobs list shows the jobs")]
    NoSuchJob { root: String, id: String },
    #[error("job {id}: its record at {path} does not parse ({reason}); delete the node")]
    Unreadable { id: String, path: String, reason: String },
    #[error("the {lock} lock is held by {holder}; try again when it is done, or pass --wait")]
    Busy { lock: String, holder: String },
}

impl From<zookeeper_client::Error> for JobError {
    fn from(e: zookeeper_client::Error) -> Self {
        JobError::ZooKeeper(ZkError(e))
    }
}

pub fn jobs_dir(root: &str) -> String {
    format!("{root}/jobs")
}

pub fn job_path(root: &str, id: &str) -> String {
    format!("{root}/jobs/{id}")
}

/// The lock of a kind of job: repairs run one at a time in the whole
/// cluster (a node's repair streams from all its replicas); so do
/// snapshots, and cleanups.
pub fn lock_dir(root: &str, kind: JobKind) -> String {
    format!("{root}/locks/job-{}", kind.name())
}

/// Requests a job; returns its id.
pub async fn submit(
    client: &Client,
    root: &str,
    spec: JobSpec,
    by: &str,
    reason: &str,
) -> Result<String, JobError> {
    let record = JobRecord {
        spec,
        requested_by: by.to_owned(),
        requested_ms: herd_config::now_ms(),
        reason: reason.to_owned(),
        cancel_requested: false,
        attempts: Vec::new(),
    };
    ensure_path(client, root, &jobs_dir(root)).await?;
    let data = serde_json::to_vec(&record).expect("serializable");
    // One above the highest id, not a sequential node: after a restore into
    // a new ensemble the parent's sequence restarts low while the restored
    // job ids do not.
    loop {
        let next = client
            .list_children(&jobs_dir(root))
            .await?
            .iter()
            .filter_map(|name| name.strip_prefix("job-")?.parse::<u64>().ok())
            .max()
            .map_or(0, |max| max + 1);
        let id = format!("job-{next:010}");
        let mode = crate::access::persistent(root, &job_path(root, &id));
        match client.create(&job_path(root, &id), &data, &mode).await {
            Ok(_) => return Ok(id),
            // Another request took the id meanwhile.
            Err(zookeeper_client::Error::NodeExists) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// One job and its znode version.
pub async fn read(client: &Client, root: &str, id: &str) -> Result<(Job, i32), JobError> {
    let path = job_path(root, id);
    let (data, stat) = client.get_data(&path).await.map_err(|e| match e {
        zookeeper_client::Error::NoNode => {
            JobError::NoSuchJob { root: root.to_owned(), id: id.to_owned() }
        }
        e => e.into(),
    })?;
    let record: JobRecord = serde_json::from_slice(&data).map_err(|e| JobError::Unreadable {
        id: id.to_owned(),
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let state = record.state();
    Ok((Job { id: id.to_owned(), record, state }, stat.version))
}

/// Every job, oldest first. Unreadable records are skipped with a warning.
pub async fn list(client: &Client, root: &str) -> Result<Vec<Job>, JobError> {
    let mut ids = match client.list_children(&jobs_dir(root)).await {
        Ok(ids) => ids,
        Err(zookeeper_client::Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    // Sequence numbers are zero-padded: names sort in request order.
    ids.sort();
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        match read(client, root, &id).await {
            Ok((job, _)) => jobs.push(job),
            Err(JobError::NoSuchJob { .. }) => {}
            Err(e @ JobError::Unreadable { .. }) => {
                tracing::warn!(error = %e, "skipping a job record")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(jobs)
}

/// Asks for a job to be cancelled: a queued job will not run; a running
/// one has its nodetool stopped by its runner. False if already finished.
pub async fn cancel(client: &Client, root: &str, id: &str) -> Result<bool, JobError> {
    loop {
        let (job, version) = read(client, root, id).await?;
        if job.state.is_final() {
            return Ok(false);
        }
        let mut record = job.record;
        record.cancel_requested = true;
        let data = serde_json::to_vec(&record).expect("serializable");
        match client.set_data(&job_path(root, id), &data, Some(version)).await {
            Ok(_) => return Ok(true),
            // The runner wrote meanwhile: read again.
            Err(zookeeper_client::Error::BadVersion) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// How a runner waits for a job's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// Until it is free (logging the holder every 30 s).
    Wait,
    /// Refuse with [`JobError::Busy`] if it is not free within this time.
    RefuseAfter(Duration),
}

/// What [`run_job`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    /// This runner ran it: the job as it ended.
    Ran(Job),
    /// It was done (or cancelled) by the time this runner held the lock.
    AlreadyDone(Job),
}

/// Runs job `id` under its kind's lock, if it is still to be done when the
/// lock is held. `exec` runs the job's commands and returns a one-line
/// detail; it is dropped (its nodetool killed) when a cancel is requested
/// or this process's ZooKeeper session ends.
pub async fn run_job<F, Fut>(
    client: &Client,
    root: &str,
    id: &str,
    who: &str,
    wait: LockWait,
    exec: F,
) -> Result<Ran, JobError>
where
    F: FnOnce(JobSpec, String) -> Fut,
    Fut: Future<Output = Result<String, String>>,
{
    let (job, _) = read(client, root, id).await?;
    if job.state.is_final() {
        return Ok(Ran::AlreadyDone(job));
    }
    let kind = job.record.spec.kind;
    let dir = lock_dir(root, kind);
    ensure_path(client, root, &dir).await?;
    let prefix = LockPrefix::new_curator(&dir, "lock-").map_err(ZkError)?;
    let holder_data = format!("{who} (job {id})");
    let lock = client.lock(
        prefix,
        holder_data.as_bytes(),
        LockOptions::new(crate::access::acls_for(root, &dir)),
    );
    tokio::pin!(lock);
    let started = Instant::now();
    let lock = loop {
        let patience = match wait {
            LockWait::Wait => Duration::from_secs(30),
            LockWait::RefuseAfter(d) => d,
        };
        tokio::select! {
            lock = &mut lock => break lock.map_err(ZkError)?,
            _ = tokio::time::sleep(patience) => {
                let holder = lock_holder(client, &dir).await.unwrap_or_else(|| "unknown".into());
                if let LockWait::RefuseAfter(_) = wait {
                    // Dropping the lock future deletes its node.
                    return Err(JobError::Busy { lock: kind.name().to_owned(), holder });
                }
                tracing::info!(job = %id, lock = kind.name(), %holder, waited_s = started.elapsed().as_secs(), "waiting for the job lock");
            }
        }
    };
    let path = job_path(root, id);
    let (job, version) = read(client, root, id).await?;
    if job.state.is_final() {
        return Ok(Ran::AlreadyDone(job));
    }
    let mut record = job.record;
    let now = herd_config::now_ms();
    if let Some(previous) = record.close_abandoned(who, now) {
        tracing::warn!(job = %id, %previous, "the job's previous runner lost the lock while running it; running it again");
    }
    let state = record.state();
    if state.is_final() || record.cancel_requested {
        // Cancelled while queued, or out of attempts.
        let data = serde_json::to_vec(&record).expect("serializable");
        lock.set_data(&path, &data, Some(version)).await.map_err(ZkError)?;
        let state = record.state();
        return Ok(Ran::AlreadyDone(Job { id: id.to_owned(), record, state }));
    }
    record.attempts.push(Attempt {
        by: who.to_owned(),
        started_ms: now,
        ended_ms: None,
        outcome: None,
    });
    let data = serde_json::to_vec(&record).expect("serializable");
    // The record's version: from this write, then from each read below.
    let mut version = lock.set_data(&path, &data, Some(version)).await.map_err(ZkError)?.version;
    tracing::info!(job = %id, spec = %record.spec, "running job");

    // Run it; stop it on a cancel request or when the session ends. A
    // connection lost for a while (the session lives on) only pauses the
    // watch for a cancel: the job goes on.
    let exec = exec(record.spec.clone(), id.to_owned());
    tokio::pin!(exec);
    let mut states = client.state_watcher();
    let mut cancel_watch: Option<std::pin::Pin<Box<dyn Future<Output = _> + Send>>> = None;
    enum Woke {
        Ended(Result<String, String>),
        RecordChanged,
        Session(zookeeper_client::SessionState),
    }
    let outcome = loop {
        if cancel_watch.is_none() {
            match client.get_and_watch_data(&path).await {
                Ok((data, stat, watch)) => {
                    version = stat.version;
                    if serde_json::from_slice::<JobRecord>(&data).is_ok_and(|r| r.cancel_requested)
                    {
                        record.cancel_requested = true;
                        break Outcome::Cancelled;
                    }
                    cancel_watch = Some(Box::pin(watch.changed()));
                }
                Err(e) if is_transient(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let woke = tokio::select! {
            result = &mut exec => Woke::Ended(result),
            _ = async {
                match cancel_watch.as_mut() {
                    Some(watch) => { watch.await; }
                    // No watch armed (connection lost): look again soon.
                    None => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            } => Woke::RecordChanged,
            state = states.changed() => Woke::Session(state),
        };
        match woke {
            Woke::Ended(Ok(detail)) => break Outcome::Succeeded { detail },
            Woke::Ended(Err(error)) => break Outcome::Failed { error },
            Woke::RecordChanged => cancel_watch = None,
            Woke::Session(state) if state.is_terminated() => {
                tracing::error!(job = %id, ?state, "ZooKeeper session ended while running the job: the lock is lost, stopping it");
                return Err(ZkError(zookeeper_client::Error::SessionExpired).into());
            }
            Woke::Session(state) => {
                tracing::warn!(job = %id, ?state, "ZooKeeper connection state changed while running the job; it goes on while the session lives");
            }
        }
    };
    let last = record.attempts.last_mut().expect("pushed above");
    last.ended_ms = Some(herd_config::now_ms());
    last.outcome = Some(outcome);
    // Through the lock; a cancel written meanwhile (the only other writer)
    // is read and kept.
    loop {
        let data = serde_json::to_vec(&record).expect("serializable");
        match lock.set_data(&path, &data, Some(version)).await {
            Ok(_) => break,
            // The session lives on (an expiry is not transient): try again.
            Err(e) if is_transient(&e) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(zookeeper_client::Error::BadVersion) => {
                let (now, v) = read(client, root, id).await?;
                record.cancel_requested |= now.record.cancel_requested;
                version = v;
            }
            Err(e) => return Err(ZkError(e).into()),
        }
    }
    let state = record.state();
    tracing::info!(job = %id, %state, "job ended");
    Ok(Ran::Ran(Job { id: id.to_owned(), record, state }))
}

/// An error after which the same request can succeed once the client is
/// connected again (its session still alive).
fn is_transient(e: &zookeeper_client::Error) -> bool {
    matches!(e, zookeeper_client::Error::ConnectionLoss | zookeeper_client::Error::Timeout)
}

/// Runs a job's nodetool commands: `Ok` with a one-line detail, `Err`
/// with the failure (nodetool's own words). A snapshot runs on every node
/// the cluster knows (asked through a session to `endpoints`), one after
/// another, tagged `herd-{id}`.
pub async fn execute(
    nodetool: &Nodetool,
    endpoints: &herd_config::Endpoints,
    spec: &JobSpec,
    id: &str,
) -> Result<String, String> {
    let ks = spec.keyspace.as_str();
    let last_line = |out: String| {
        let line = out.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        line.chars().take(200).collect::<String>()
    };
    match (spec.kind, spec.node.as_deref()) {
        (JobKind::Repair, Some(node)) => {
            let out =
                nodetool.run(node, &["repair", "--full", ks]).await.map_err(|e| e.to_string())?;
            Ok(format!("repair --full {ks} on {node}: {}", last_line(out)))
        }
        (JobKind::Cleanup, Some(node)) => {
            nodetool.run(node, &["cleanup", ks]).await.map_err(|e| e.to_string())?;
            Ok(format!("cleanup {ks} on {node}"))
        }
        (JobKind::Snapshot, _) => {
            let session = herd_clients::cassandra::session(endpoints).await.map_err(|e| {
                format!("a snapshot lists the nodes through a Cassandra session: {e}")
            })?;
            let mut nodes: Vec<String> = session
                .get_cluster_state()
                .get_nodes_info()
                .iter()
                .map(|n| n.address.ip().to_string())
                .collect();
            nodes.sort();
            let tag = format!("herd-{id}");
            for node in &nodes {
                nodetool
                    .run(node, &["snapshot", "-t", &tag, ks])
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(format!("snapshot {tag} of {ks} on {} node(s): {}", nodes.len(), nodes.join(", ")))
        }
        (kind, None) => Err(format!("{} needs a node", kind.name())),
    }
}

/// The leading coordinator's job runner: runs every job still to be done,
/// oldest first, one at a time, and then waits for new requests. Returns
/// only on a ZooKeeper error (the leader then drops it with its session);
/// the caller aborts it when leadership ends. Without `nodetool` it runs
/// nothing and says so once per job.
pub async fn runner(
    client: Client,
    root: String,
    who: String,
    nodetool: Option<Nodetool>,
    endpoints: herd_config::Endpoints,
) -> Result<(), JobError> {
    let mut told = std::collections::HashSet::new();
    // Jobs known to have ended: not read again (their records do not change).
    let mut finished = std::collections::BTreeSet::new();
    loop {
        let watch = crate::membership::watch_children(&client, &root, &jobs_dir(&root)).await?;
        let mut ids = client.list_children(&jobs_dir(&root)).await.map_err(ZkError)?;
        ids.sort();
        finished.retain(|id: &String| ids.contains(id));
        let pending: Vec<String> = ids.into_iter().filter(|id| !finished.contains(id)).collect();
        for id in &pending {
            let job = match read(&client, &root, id).await {
                Ok((job, _)) => job,
                Err(JobError::NoSuchJob { .. }) => continue,
                Err(e @ JobError::Unreadable { .. }) => {
                    if told.insert(id.clone()) {
                        tracing::warn!(error = %e, "skipping a job record");
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            if job.state.is_final() {
                finished.insert(job.id);
                continue;
            }
            let Some(nodetool) = &nodetool else {
                if told.insert(job.id.clone()) {
                    tracing::warn!(job = %job.id, spec = %job.record.spec, "a job waits, but this coordinator was started without --nodetool, so it cannot run jobs");
                }
                continue;
            };
            let exec = |spec: JobSpec, id: String| {
                let endpoints = &endpoints;
                async move { execute(nodetool, endpoints, &spec, &id).await }
            };
            match run_job(&client, &root, &job.id, &who, LockWait::Wait, exec).await {
                Ok(Ran::Ran(job) | Ran::AlreadyDone(job)) if job.state.is_final() => {
                    finished.insert(job.id);
                }
                Ok(_) => {}
                Err(JobError::ZooKeeper(e)) => return Err(e.into()),
                Err(e) => tracing::warn!(job = %job.id, error = %e, "job not run"),
            }
        }
        // The history: the oldest ended jobs beyond HISTORY_KEPT go.
        let excess = finished.len().saturating_sub(HISTORY_KEPT);
        let oldest: Vec<String> = finished.iter().take(excess).cloned().collect();
        for id in oldest {
            match client.delete(&job_path(&root, &id), None).await {
                Ok(()) | Err(zookeeper_client::Error::NoNode) => {
                    finished.remove(&id);
                }
                Err(e) => return Err(ZkError(e).into()),
            }
        }
        if excess > 0 {
            tracing::info!(deleted = excess, kept = HISTORY_KEPT, "pruned the job history");
        }
        tokio::select! {
            _ = watch.changed() => {}
            // A job whose runner died is run again without a new request.
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(attempts: Vec<Attempt>) -> JobRecord {
        JobRecord {
            spec: JobSpec::new(JobKind::Repair, Some("127.0.0.2".into()), "herd".into()).unwrap(),
            requested_by: "herdctl".into(),
            requested_ms: 1,
            reason: "manual".into(),
            cancel_requested: false,
            attempts,
        }
    }

    fn attempt(by: &str, outcome: Option<Outcome>) -> Attempt {
        Attempt { by: by.into(), started_ms: 2, ended_ms: outcome.as_ref().map(|_| 3), outcome }
    }

    #[test]
    fn state_follows_the_last_attempt() {
        assert_eq!(record(vec![]).state(), JobState::Queued);
        assert_eq!(record(vec![attempt("c1", None)]).state(), JobState::Running);
        let ok = Outcome::Succeeded { detail: "done".into() };
        assert_eq!(record(vec![attempt("c1", Some(ok))]).state(), JobState::Succeeded);
        let lost = || Some(Outcome::Abandoned { why: "lost".into() });
        // Abandoned: to be run again, until MAX_ATTEMPTS.
        assert_eq!(record(vec![attempt("c1", lost())]).state(), JobState::Queued);
        let all_lost = (0..MAX_ATTEMPTS).map(|_| attempt("c1", lost())).collect();
        assert_eq!(record(all_lost).state(), JobState::Failed);
        let mut cancelled = record(vec![]);
        cancelled.cancel_requested = true;
        assert_eq!(cancelled.state(), JobState::Cancelled);
    }

    #[test]
    fn an_unfinished_attempt_found_under_the_lock_is_abandoned_by_name() {
        let mut r = record(vec![attempt("c1", None)]);
        assert_eq!(r.close_abandoned("c2", 9).as_deref(), Some("c1"));
        let last = r.attempts.last().unwrap();
        assert_eq!(last.ended_ms, Some(9));
        let Some(Outcome::Abandoned { why }) = &last.outcome else { panic!("{last:?}") };
        assert!(why.contains("c1 lost the lock") && why.contains("c2 took"), "{why}");
        // A finished attempt is left as it is.
        assert_eq!(r.close_abandoned("c3", 10), None);
    }

    #[test]
    fn specs_say_what_is_missing() {
        assert!(JobSpec::new(JobKind::Repair, None, "herd".into()).is_err());
        assert!(JobSpec::new(JobKind::Snapshot, Some("x".into()), "herd".into()).is_err());
        let s = JobSpec::new(JobKind::Snapshot, None, "herd".into()).unwrap();
        assert_eq!(s.to_string(), "snapshot of herd on every node");
        // The record's JSON is the history's format: keep it stable.
        let json =
            serde_json::to_value(record(vec![attempt("c1", Some(Outcome::Cancelled))])).unwrap();
        assert_eq!(json["spec"]["kind"], "repair");
        assert_eq!(json["attempts"][0]["outcome"]["result"], "cancelled");
    }
}
