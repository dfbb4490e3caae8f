//! What lives in ZooKeeper under the herd root:
//!
//! | path                  | kind       | written by      | content                     |
//! |-----------------------|------------|-----------------|-----------------------------|
//! | `{root}/election/…`   | ephemeral  | candidates      | the election recipe's nodes |
//! | `{root}/leader`       | persistent | the leader      | [`crate::election::LeaderInfo`] |
//! | `{root}/workers/{id}` | ephemeral  | each worker     | [`WorkerInfo`]              |
//! | `{root}/assignment`   | persistent | the leader      | [`AssignmentDoc`]           |
//!
//! A worker's node lives as long as its session: when the worker dies or its
//! session expires, the node goes and the leader reassigns its shards.

use serde::{Deserialize, Serialize};
use zookeeper_client::{Acls, Client, CreateMode};

use crate::assign::{Assignment, Shard, Worker};
use crate::election::ElectionError;

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

/// The leader's published assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentDoc {
    /// Epoch of the leader that wrote it.
    pub leader_epoch: i64,
    pub shards: Vec<OwnedShard>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedShard {
    pub topic: String,
    pub partition: i32,
    pub owner: String,
}

impl AssignmentDoc {
    pub fn new(leader_epoch: i64, assignment: &Assignment) -> AssignmentDoc {
        AssignmentDoc {
            leader_epoch,
            shards: assignment
                .iter()
                .map(|(s, owner)| OwnedShard { topic: s.topic.clone(), partition: s.partition, owner: owner.clone() })
                .collect(),
        }
    }

    pub fn assignment(&self) -> Assignment {
        self.shards
            .iter()
            .map(|s| (Shard { topic: s.topic.clone(), partition: s.partition }, s.owner.clone()))
            .collect()
    }
}

pub fn workers_dir(root: &str) -> String {
    format!("{root}/workers")
}

pub fn assignment_path(root: &str) -> String {
    format!("{root}/assignment")
}

/// Creates `path` and its missing ancestors as empty persistent nodes.
pub async fn ensure_path(client: &Client, path: &str) -> Result<(), ElectionError> {
    match client.mkdir(path, &CreateMode::Persistent.with_acls(Acls::anyone_all())).await {
        Ok(()) | Err(zookeeper_client::Error::NodeExists) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Registers a worker for the life of `client`'s session.
pub async fn register(client: &Client, root: &str, info: &WorkerInfo) -> Result<(), ElectionError> {
    ensure_path(client, &workers_dir(root)).await?;
    let data = serde_json::to_vec(info).expect("serializable");
    client
        .create(
            &format!("{}/{}", workers_dir(root), info.id),
            &data,
            &CreateMode::Ephemeral.with_acls(Acls::anyone_all()),
        )
        .await?;
    Ok(())
}

/// Registered workers, sorted by id. A node whose data cannot be read as
/// [`WorkerInfo`] (written by hand, or gone meanwhile) is skipped.
pub async fn workers(client: &Client, root: &str) -> Result<Vec<WorkerInfo>, ElectionError> {
    let dir = workers_dir(root);
    let mut ids = match client.list_children(&dir).await {
        Ok(ids) => ids,
        Err(zookeeper_client::Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    ids.sort();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match client.get_data(&format!("{dir}/{id}")).await {
            Ok((data, _)) => {
                if let Ok(info) = serde_json::from_slice::<WorkerInfo>(&data) {
                    out.push(info);
                }
            }
            Err(zookeeper_client::Error::NoNode) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// The published assignment, if any.
pub async fn read_assignment(client: &Client, root: &str) -> Result<Option<AssignmentDoc>, ElectionError> {
    match client.get_data(&assignment_path(root)).await {
        Ok((data, _)) => Ok(serde_json::from_slice(&data).ok()),
        Err(zookeeper_client::Error::NoNode) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn as_assign_input(workers: &[WorkerInfo]) -> Vec<Worker> {
    workers.iter().map(|w| Worker { id: w.id.clone(), capacity: w.capacity }).collect()
}
