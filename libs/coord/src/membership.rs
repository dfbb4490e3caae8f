//! What lives in ZooKeeper under the herd root:
//!
//! | path                  | kind       | written by      | content                     |
//! |-----------------------|------------|-----------------|-----------------------------|
//! | `{root}/election/…`   | ephemeral  | candidates      | the election recipe's nodes |
//! | `{root}/leader`       | persistent | the leader      | [`crate::election::LeaderInfo`] |
//! | `{root}/workers/{id}` | ephemeral  | each worker     | [`WorkerInfo`]              |
//! | `{root}/assignment`   | persistent | the leader      | [`AssignmentDoc`]           |
//! | `{root}/owned/{t}:{p}`| ephemeral  | the shard's holder | [`Holder`]               |
//! | `{root}/epoch_floor`  | persistent | `herdctl restore` | [`EpochFloor`]         |
//! | `{root}/schema/{ks}`  | persistent | the worker that migrated | [`crate::schema::SchemaVersion`] |
//! | `{root}/locks/…`      | ephemeral  | lock contenders | zookeeper-client's lock recipe (`crate::schema`) |
//!
//! A worker's nodes live as long as its session: when the worker dies or its
//! session expires, they go, and the leader reassigns its shards.

use std::collections::BTreeMap;

use crate::access;
use serde::{Deserialize, Serialize};
use zookeeper_client::Client;

use crate::assign::{Shard, Worker};
use crate::handoff::{AssignmentDoc, Holder};

/// A request on herd's ZooKeeper layout that failed; retrying once a
/// quorum answers again can succeed.
#[derive(Debug, thiserror::Error)]
#[error("a ZooKeeper request failed; check that a quorum of the ensemble is up")]
pub struct ZkError(#[from] pub zookeeper_client::Error);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: String,
    /// Where its metrics are served, for operators.
    pub address: String,
    /// Relative share of shards it should get.
    pub capacity: u32,
    /// The configuration version it runs (issue 5).
    pub config_version: u64,
}

pub fn workers_dir(root: &str) -> String {
    format!("{root}/workers")
}

pub fn assignment_path(root: &str) -> String {
    format!("{root}/assignment")
}

/// Creates `path` and its missing ancestors as empty persistent nodes, with
/// the ACL of `path` under `root`.
pub async fn ensure_path(client: &Client, root: &str, path: &str) -> Result<(), ZkError> {
    match client.mkdir(path, &access::persistent(root, path)).await {
        Ok(()) | Err(zookeeper_client::Error::NodeExists) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub fn epoch_floor_path(root: &str) -> String {
    format!("{root}/epoch_floor")
}

/// Set by a restore into a wiped ZooKeeper: every grant epoch from then on
/// is above `floor` (above every epoch stored in Cassandra before), though
/// the new ensemble's zxids start low again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochFloor {
    pub floor: i64,
    pub set_by: String,
    pub at_ms: i64,
}

/// The epoch floor (0 if none was set) and a watch that fires when it is
/// set or changed. A floor that does not parse reads as 0 and is logged:
/// grants then stay below it, which Cassandra refuses (safe, not live).
pub async fn watch_epoch_floor(
    client: &Client,
    root: &str,
) -> Result<(i64, zookeeper_client::OneshotWatcher), ZkError> {
    let (node, watcher) = watch_data(client, &epoch_floor_path(root)).await?;
    let floor = match node {
        None => 0,
        Some((data, _)) => match serde_json::from_slice::<EpochFloor>(&data) {
            Ok(f) => f.floor,
            Err(e) => {
                tracing::error!(path = %epoch_floor_path(root), error = %e, "the epoch floor does not parse; ignoring it (set it again with herdctl restore)");
                0
            }
        },
    };
    Ok((floor, watcher))
}

/// Registers a worker for the life of `client`'s session.
pub async fn register(client: &Client, root: &str, info: &WorkerInfo) -> Result<(), ZkError> {
    ensure_path(client, root, &workers_dir(root)).await?;
    let data = serde_json::to_vec(info).expect("serializable");
    let path = format!("{}/{}", workers_dir(root), info.id);
    client.create(&path, &data, &access::ephemeral(root, &path)).await?;
    Ok(())
}

/// Rewrites a registered worker's data (e.g. the config version it runs).
pub async fn update_registration(
    client: &Client,
    root: &str,
    info: &WorkerInfo,
) -> Result<(), ZkError> {
    let data = serde_json::to_vec(info).expect("serializable");
    client.set_data(&format!("{}/{}", workers_dir(root), info.id), &data, None).await?;
    Ok(())
}

/// The children of `dir` whose data parses as `T`, sorted by name. Children
/// that do not parse (written by hand) or are gone meanwhile are skipped; a
/// missing `dir` has none.
pub async fn children_json<T: serde::de::DeserializeOwned>(
    client: &Client,
    dir: &str,
) -> Result<Vec<T>, zookeeper_client::Error> {
    let mut names = match client.list_children(dir).await {
        Ok(names) => names,
        Err(zookeeper_client::Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        match client.get_data(&format!("{dir}/{name}")).await {
            Ok((data, _)) => out.extend(serde_json::from_slice::<T>(&data).ok()),
            Err(zookeeper_client::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Registered workers, sorted by id. A node whose data cannot be read as
/// [`WorkerInfo`] (written by hand, or gone meanwhile) is skipped.
pub async fn workers(client: &Client, root: &str) -> Result<Vec<WorkerInfo>, ZkError> {
    Ok(children_json(client, &workers_dir(root)).await?)
}

/// The published assignment, if any, with its epochs resolved. A document
/// that does not parse (written by hand) reads as none, and is logged by the
/// caller's next round.
pub async fn read_assignment(
    client: &Client,
    root: &str,
) -> Result<Option<AssignmentDoc>, ZkError> {
    match client.get_data(&assignment_path(root)).await {
        Ok((data, stat)) => Ok(parse_assignment(&data, stat.mzxid)),
        Err(zookeeper_client::Error::NoNode) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn parse_assignment(data: &[u8], mzxid: i64) -> Option<AssignmentDoc> {
    serde_json::from_slice::<AssignmentDoc>(data).ok().map(|d| d.resolved(mzxid))
}

/// Watches `{root}/assignment`: the current document (None if absent or
/// unreadable) and a watch that fires on its next change or creation.
pub async fn watch_assignment(
    client: &Client,
    root: &str,
) -> Result<(Option<AssignmentDoc>, zookeeper_client::OneshotWatcher), ZkError> {
    let (node, watcher) = watch_data(client, &assignment_path(root)).await?;
    Ok((node.and_then(|(data, stat)| parse_assignment(&data, stat.mzxid)), watcher))
}

/// A node's data and stat (None if it does not exist), and a watch that fires
/// on its next change, deletion or creation.
pub async fn watch_data(
    client: &Client,
    path: &str,
) -> Result<
    (Option<(Vec<u8>, zookeeper_client::Stat)>, zookeeper_client::OneshotWatcher),
    zookeeper_client::Error,
> {
    loop {
        match client.get_and_watch_data(path).await {
            Ok((data, stat, watcher)) => return Ok((Some((data, stat)), watcher)),
            Err(zookeeper_client::Error::NoNode) => {}
            Err(e) => return Err(e),
        }
        match client.check_and_watch_stat(path).await {
            // Created meanwhile: read it.
            Ok((Some(_), _)) => continue,
            Ok((None, watcher)) => return Ok((None, watcher)),
            Err(e) => return Err(e),
        }
    }
}

pub fn owned_dir(root: &str) -> String {
    format!("{root}/owned")
}

pub fn owned_path(root: &str, shard: &Shard) -> String {
    format!("{}/{shard}", owned_dir(root))
}

/// Marks `holder`'s shard as held, for the life of `client`'s session.
/// Ok(false): another worker holds it (it has not released it yet).
pub async fn hold(client: &Client, root: &str, holder: &Holder) -> Result<bool, ZkError> {
    let path = owned_path(root, &holder.shard);
    let data = serde_json::to_vec(holder).expect("serializable");
    let ephemeral = access::ephemeral(root, &path);
    match client.create(&path, &data, &ephemeral).await {
        Ok(_) => Ok(true),
        Err(zookeeper_client::Error::NoNode) => {
            ensure_path(client, root, &owned_dir(root)).await?;
            client.create(&path, &data, &ephemeral).await?;
            Ok(true)
        }
        Err(zookeeper_client::Error::NodeExists) => {
            // Ours already, by this very session (a retried create whose answer was lost)?
            match client.get_data(&path).await {
                Ok((_, stat)) => Ok(stat.ephemeral_owner == client.session_id().0),
                Err(zookeeper_client::Error::NoNode) => Ok(false),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Releases a shard held by this session (no-op if not held).
pub async fn release(client: &Client, root: &str, shard: &Shard) -> Result<(), ZkError> {
    match client.delete(&owned_path(root, shard), None).await {
        Ok(()) | Err(zookeeper_client::Error::NoNode) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Who holds which shard. Reads only: creates nothing.
pub async fn holders(client: &Client, root: &str) -> Result<BTreeMap<Shard, Holder>, ZkError> {
    let held: Vec<Holder> = children_json(client, &owned_dir(root)).await?;
    Ok(held.into_iter().map(|h| (h.shard.clone(), h)).collect())
}

/// Arms a watch on `dir`'s children (creating `dir` if missing): it fires
/// when a child is added or removed. Arm it before reading, so that no
/// change falls between the read and the watch.
pub async fn watch_children(
    client: &Client,
    root: &str,
    dir: &str,
) -> Result<zookeeper_client::OneshotWatcher, ZkError> {
    ensure_path(client, root, dir).await?;
    let (_, _, watcher) = client.get_and_watch_children(dir).await?;
    Ok(watcher)
}

pub fn as_assign_input(workers: &[WorkerInfo]) -> Vec<Worker> {
    workers.iter().map(|w| Worker { id: w.id.clone(), capacity: w.capacity }).collect()
}

/// The id a lock's current holder gave (the lowest sequence node's data
/// under `lock_dir`, a zookeeper-client lock recipe's directory).
pub async fn lock_holder(client: &Client, lock_dir: &str) -> Option<String> {
    let mut children = client.list_children(lock_dir).await.ok()?;
    // Curator-style names: `_c_{uuid}-lock-{sequence}`; order by sequence.
    children.sort_by_key(|c| c.rsplit('-').next().map(str::to_owned));
    let first = children.first()?;
    let (data, _) = client.get_data(&format!("{lock_dir}/{first}")).await.ok()?;
    Some(String::from_utf8_lossy(&data).into_owned())
}
