//! `herdctl backup FILE` and `herdctl restore FILE`: herd's coordination
//! state, to bring back a ZooKeeper that lost it (an ensemble wiped, or a
//! new one).
//!
//! A backup holds every persistent znode under the root (the live
//! configuration with its version and history, schema versions, the
//! assignment, the leader record, the epoch floor) and the shards'
//! checkpoints with their epochs, as JSON. Ephemeral nodes (workers,
//! holders, election and lock contenders) belong to sessions and are left
//! out.
//!
//! Restoring must keep grant epochs strictly increasing: a wiped ensemble's
//! zxids start low again, and Cassandra refuses every claim below an epoch
//! it stored. So the restore sets the *epoch floor* to one above every
//! epoch it knows of (the backup's checkpoints and grants, and the
//! checkpoints in Cassandra now, which may be newer than the backup), and
//! the leader makes every grant from then on above it.

use std::path::Path;

use anyhow::Context;
use herd_config::Endpoints;
use herd_coord::membership::{self, EpochFloor};
use herd_telemetry::Exit;
use serde::{Deserialize, Serialize};
use zookeeper_client::Client;

const FORMAT: &str = "herd-backup/1";

/// Nodes a restore leaves to the running leader: it rebuilds them from the
/// live workers (an old assignment's grants would be made again anyway) and
/// from its probes of the Cassandra nodes (rewritten every few seconds).
const NOT_RESTORED: &[&str] = &["leader", "assignment", "cassandra/health"];

#[derive(Debug, Serialize, Deserialize)]
pub struct Backup {
    pub format: String,
    /// The root it was taken from (a restore writes under --root).
    pub root: String,
    pub keyspace: String,
    pub taken_at_ms: i64,
    pub znodes: Vec<Znode>,
    pub checkpoints: Vec<CheckpointEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Znode {
    /// Relative to the root ("" is the root itself).
    pub path: String,
    /// The data, as text; `data_hex` if it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_hex: Option<String>,
    /// ZooKeeper's data version: herd's configuration version is this + 1,
    /// so a restore writes the node until it has the same version.
    pub version: i32,
}

impl Znode {
    fn new(path: String, data: Vec<u8>, version: i32) -> Znode {
        match String::from_utf8(data) {
            Ok(text) => Znode { path, data: Some(text), data_hex: None, version },
            Err(e) => {
                Znode { path, data: None, data_hex: Some(hex::encode(e.as_bytes())), version }
            }
        }
    }

    fn bytes(&self) -> anyhow::Result<Vec<u8>> {
        match (&self.data, &self.data_hex) {
            (Some(text), _) => Ok(text.as_bytes().to_vec()),
            (None, Some(text)) => hex::decode(text)
                .map_err(|e| anyhow::anyhow!("{}: data_hex is not hex ({e})", self.path)),
            (None, None) => Ok(Vec::new()),
        }
    }
}

/// A shard's checkpoint as the file holds it: herd-sink's `Checkpoint`
/// with its shard, without the de-duplication memory (a restore needs the
/// epochs; the offsets are there for whoever reads the file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointEntry {
    pub topic: String,
    pub partition: i32,
    pub epoch: i64,
    pub owner: String,
    pub next_offset: Option<i64>,
    pub window_start: Option<i64>,
}

async fn zookeeper(endpoints: &Endpoints) -> Result<Client, Exit> {
    Ok(herd_clients::zookeeper::connect(endpoints, std::time::Duration::from_secs(10))
        .await
        .context("while connecting to ZooKeeper")?)
}

async fn checkpoints(endpoints: &Endpoints, keyspace: &str) -> Result<Vec<CheckpointEntry>, Exit> {
    let session = herd_clients::cassandra::session(endpoints)
        .await
        .context("while connecting to Cassandra for the shards' checkpoints")?;
    let all = herd_sink::fencing::all_checkpoints(&session, keyspace).await.with_context(|| {
        format!("while reading {keyspace}.shard_checkpoints (is --keyspace the workers' keyspace?)")
    })?;
    Ok(all
        .into_iter()
        .map(|(shard, c)| CheckpointEntry {
            topic: shard.topic.to_string(),
            partition: shard.partition,
            epoch: c.epoch,
            owner: c.owner,
            next_offset: c.next_offset,
            window_start: c.window_start,
        })
        .collect())
}

/// Every persistent node under `root`, parents first.
async fn persistent_tree(client: &Client, root: &str) -> Result<Vec<Znode>, Exit> {
    let mut out = Vec::new();
    let mut pending = vec![String::new()];
    while let Some(rel) = pending.pop() {
        let path = if rel.is_empty() { root.to_owned() } else { format!("{root}/{rel}") };
        let (data, stat) = match client.get_data(&path).await {
            Ok(found) => found,
            // Gone meanwhile (an ephemeral's session ended).
            Err(zookeeper_client::Error::NoNode) => continue,
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("while reading {path}")).into())
            }
        };
        if stat.ephemeral_owner != 0 {
            continue;
        }
        let children = match client.list_children(&path).await {
            Ok(c) => c,
            Err(zookeeper_client::Error::NoNode) => continue,
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("while listing {path}")).into())
            }
        };
        out.push(Znode::new(rel.clone(), data, stat.version));
        for c in children {
            pending.push(if rel.is_empty() { c } else { format!("{rel}/{c}") });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

pub async fn backup(
    endpoints: &Endpoints,
    root: &str,
    keyspace: &str,
    file: &Path,
) -> Result<(), Exit> {
    let zk = zookeeper(endpoints).await?;
    zk.sync(root).await.ok();
    let znodes = persistent_tree(&zk, root).await?;
    herd_clients::zookeeper::close(zk, std::time::Duration::from_secs(2)).await;
    if znodes.is_empty() {
        return Err(anyhow::anyhow!(
            "{root} does not exist in ZooKeeper: nothing to back up (is --root right?)"
        )
        .into());
    }
    let checkpoints = checkpoints(endpoints, keyspace).await?;
    let backup = Backup {
        format: FORMAT.to_owned(),
        root: root.to_owned(),
        keyspace: keyspace.to_owned(),
        taken_at_ms: herd_config::now_ms(),
        znodes,
        checkpoints,
    };
    let json = serde_json::to_vec_pretty(&backup).context("while encoding the backup")?;
    // Whole or not at all: a crash mid-write leaves the previous file.
    let partial = file.with_extension("partial");
    std::fs::write(&partial, json)
        .with_context(|| format!("while writing {}", partial.display()))?;
    std::fs::rename(&partial, file).with_context(|| format!("while writing {}", file.display()))?;
    let top = backup.checkpoints.iter().map(|c| c.epoch).max();
    println!(
        "backed up {} znodes under {root} and {} checkpoints of {keyspace} (highest epoch {}) to {}",
        backup.znodes.len(),
        backup.checkpoints.len(),
        top.map_or("-".to_owned(), |e| e.to_string()),
        file.display()
    );
    Ok(())
}

/// The epoch floor a restore sets: one above every epoch the backup and
/// Cassandra know of. Pure.
pub fn floor_for(backup: &Backup, live: &[CheckpointEntry]) -> i64 {
    let grants = backup
        .znodes
        .iter()
        .filter(|z| z.path == "assignment")
        .filter_map(|z| z.bytes().ok())
        .filter_map(|b| serde_json::from_slice::<herd_coord::AssignmentDoc>(&b).ok())
        .flat_map(|d| {
            let base = d.epoch_base;
            d.shards.into_iter().map(move |s| s.epoch.max(base))
        });
    let floors = backup
        .znodes
        .iter()
        .filter(|z| z.path == "epoch_floor")
        .filter_map(|z| z.bytes().ok())
        .filter_map(|b| serde_json::from_slice::<EpochFloor>(&b).ok())
        .map(|f| f.floor);
    let stored = backup.checkpoints.iter().chain(live).map(|c| c.epoch);
    grants.chain(floors).chain(stored).max().unwrap_or(0) + 1
}

pub async fn restore(
    endpoints: &Endpoints,
    root: &str,
    keyspace: &str,
    file: &Path,
) -> Result<(), Exit> {
    let text = std::fs::read(file).with_context(|| format!("while reading {}", file.display()))?;
    let backup: Backup = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a herd backup", file.display()))?;
    if backup.format != FORMAT {
        return Err(Exit::BadInput(anyhow::anyhow!(
            "{}: format {:?}, this herdctl reads {FORMAT:?}",
            file.display(),
            backup.format
        )));
    }
    let live = checkpoints(endpoints, keyspace).await?;
    let floor = floor_for(&backup, &live);
    let zk = zookeeper(endpoints).await?;
    zk.sync(root).await.ok();
    let restored: Vec<&Znode> = backup
        .znodes
        .iter()
        .filter(|z| !NOT_RESTORED.contains(&z.path.as_str()) && z.path != "epoch_floor")
        .collect();
    // Check everything before writing anything: only into an empty root
    // (nodes a running coordinator or worker made since, empty or its own,
    // are fine).
    let mut to_write = Vec::new();
    for z in &restored {
        let path = if z.path.is_empty() { root.to_owned() } else { format!("{root}/{}", z.path) };
        let data = z.bytes()?;
        match zk.get_data(&path).await {
            Err(zookeeper_client::Error::NoNode) => to_write.push((path, data, z.version, true)),
            Ok((now, stat)) if now == data && stat.version >= z.version => {}
            Ok((now, _)) if now.is_empty() && data.is_empty() => {}
            Ok((_, stat)) => {
                return Err(anyhow::anyhow!(
                    "{path} exists already (version {}) with other data than the backup's: restore only into a ZooKeeper that lost herd's state; delete {root} first to replace it",
                    stat.version
                )
                .into())
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("while reading {path}")).into()),
        }
    }
    let persistent = |path: &str| herd_coord::access::persistent(root, path);
    for (path, data, version, create) in &to_write {
        if *create {
            match zk.create(path, data, &persistent(path)).await {
                Ok(_) => {}
                // A parent made by a running process meanwhile: fine if empty.
                Err(zookeeper_client::Error::NodeExists) if data.is_empty() => continue,
                Err(zookeeper_client::Error::NoNode) => {
                    membership::ensure_path(&zk, root, path.rsplit_once('/').map_or("/", |p| p.0))
                        .await
                        .with_context(|| format!("while creating the parents of {path}"))?;
                    zk.create(path, data, &persistent(path))
                        .await
                        .with_context(|| format!("while creating {path}"))?;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("while creating {path}"))
                        .into())
                }
            }
        }
        // The configuration's version is the node's: write it up to the same.
        for _ in 0..*version {
            zk.set_data(path, data, None).await.with_context(|| format!("while writing {path}"))?;
        }
    }
    // Last: the leader's next round makes every grant above it.
    let previous = match zk.get_data(&membership::epoch_floor_path(root)).await {
        Ok((data, stat)) => {
            Some((serde_json::from_slice::<EpochFloor>(&data).map_or(0, |f| f.floor), stat.version))
        }
        Err(zookeeper_client::Error::NoNode) => None,
        Err(e) => {
            return Err(anyhow::Error::new(e).context("while reading the epoch floor").into())
        }
    };
    let floor = floor.max(previous.map_or(0, |p| p.0));
    let record = EpochFloor {
        floor,
        set_by: format!("herdctl restore {}", file.display()),
        at_ms: herd_config::now_ms(),
    };
    let data = serde_json::to_vec(&record).expect("serializable");
    match previous {
        None => {
            let path = membership::epoch_floor_path(root);
            zk.create(&path, &data, &persistent(&path)).await.map(|_| ())
        }
        Some((_, version)) => {
            zk.set_data(&membership::epoch_floor_path(root), &data, Some(version)).await.map(|_| ())
        }
    }
    .context("while writing the epoch floor")?;
    herd_clients::zookeeper::close(zk, std::time::Duration::from_secs(2)).await;
    println!(
        "restored {} znodes under {root} ({} there already; {} left to the leader), epoch floor {floor}: every grant from now on is above the {} checkpoints' epochs",
        to_write.len(),
        restored.len() - to_write.len(),
        NOT_RESTORED.join(", "),
        backup.checkpoints.len().max(live.len())
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(epoch: i64) -> CheckpointEntry {
        CheckpointEntry {
            topic: "t".into(),
            partition: 0,
            epoch,
            owner: "w".into(),
            next_offset: Some(1),
            window_start: None,
        }
    }

    #[test]
    fn the_floor_is_above_every_epoch_known() {
        let mut b = Backup {
            format: FORMAT.into(),
            root: "/herd".into(),
            keyspace: "herd".into(),
            taken_at_ms: 0,
            znodes: vec![Znode::new(
                "assignment".into(),
                br#"{"leader_epoch":1,"epoch_base":40,"shards":[{"topic":"t","partition":0,"owner":"w","epoch":30}]}"#.to_vec(),
                3,
            )],
            checkpoints: vec![checkpoint(20)],
        };
        assert_eq!(floor_for(&b, &[]), 41, "the assignment's base");
        assert_eq!(floor_for(&b, &[checkpoint(99)]), 100, "a checkpoint newer than the backup");
        b.checkpoints.push(checkpoint(120));
        assert_eq!(floor_for(&b, &[checkpoint(99)]), 121);
    }

    #[test]
    fn data_that_is_not_text_survives_the_round_trip() {
        let z = Znode::new("x".into(), vec![0xff, 0x00, 0x7b], 0);
        assert_eq!(z.data_hex.as_deref(), Some("ff007b"));
        assert_eq!(z.bytes().unwrap(), vec![0xff, 0x00, 0x7b]);
        let z = Znode::new("y".into(), b"{}".to_vec(), 2);
        assert_eq!(z.bytes().unwrap(), b"{}".to_vec());
    }
}
