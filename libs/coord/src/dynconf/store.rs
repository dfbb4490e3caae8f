//! Where the configuration document lives in ZooKeeper, and reading,
//! watching and writing it: the only I/O of the live configuration.
//!
//! The document is `{root}/config` (JSON); its version is the znode's. Every
//! accepted version is also kept under `{root}/config-history/` for
//! `history`, `diff` and `rollback`. Writes are compare-and-set on the
//! version, so concurrent edits are detected, never merged.

use serde::{Deserialize, Serialize};

use super::{ConfigDoc, InvalidSetting};

/// Where the document and its history live.
pub fn config_path(root: &str) -> String {
    format!("{root}/config")
}

pub fn history_dir(root: &str) -> String {
    format!("{root}/config-history")
}

/// One accepted version, as kept in `{root}/config-history/{version}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub version: u64,
    /// Milliseconds since the epoch.
    pub at_ms: i64,
    /// Who wrote it (user@host of herdctl).
    pub by: String,
    /// What was done: `set …`, `apply FILE`, `rollback N`.
    pub change: String,
    pub doc: ConfigDoc,
}

/// The stored document as read: its version (0: none written yet) and raw
/// bytes, which may be invalid if someone wrote the znode by hand.
#[derive(Debug, Clone)]
pub struct Stored {
    pub version: u64,
    pub data: Vec<u8>,
}

impl Stored {
    pub fn doc(&self) -> Result<ConfigDoc, InvalidSetting> {
        ConfigDoc::parse(&self.data)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("the configuration changed meanwhile: it is at version {current}, this change was made against version {expected}; read it again (herdctl config get) and redo the change")]
    Conflict { expected: u64, current: u64 },
    #[error("a ZooKeeper request failed; check that a quorum of the ensemble is up")]
    ZooKeeper(#[from] zookeeper_client::Error),
}

impl From<crate::membership::ZkError> for StoreError {
    fn from(e: crate::membership::ZkError) -> Self {
        StoreError::ZooKeeper(e.0)
    }
}

/// The document's version from the znode's: the first write is version 1.
fn version_of(stat: &zookeeper_client::Stat) -> u64 {
    stat.version as u64 + 1
}

/// Reads the stored document, after a sync so that the answer is current.
pub async fn read(client: &zookeeper_client::Client, root: &str) -> Result<Stored, StoreError> {
    let path = config_path(root);
    match client.sync(&path).await {
        Ok(()) | Err(zookeeper_client::Error::NoNode) => {}
        Err(e) => return Err(e.into()),
    }
    match client.get_data(&path).await {
        Ok((data, stat)) => Ok(Stored { version: version_of(&stat), data }),
        Err(zookeeper_client::Error::NoNode) => Ok(Stored { version: 0, data: Vec::new() }),
        Err(e) => Err(e.into()),
    }
}

/// Reads the document and arms a watch that fires on its next change (or creation).
pub async fn watch(
    client: &zookeeper_client::Client,
    root: &str,
) -> Result<(Stored, zookeeper_client::OneshotWatcher), StoreError> {
    let (node, watcher) = crate::membership::watch_data(client, &config_path(root)).await?;
    let stored = match node {
        Some((data, stat)) => Stored { version: version_of(&stat), data },
        None => Stored { version: 0, data: Vec::new() },
    };
    Ok((stored, watcher))
}

/// Writes `doc` as the version after `expected` (compare-and-set), and its
/// history entry, atomically. Returns the new version. The caller validates.
pub async fn write(
    client: &zookeeper_client::Client,
    root: &str,
    doc: &ConfigDoc,
    expected: u64,
    by: &str,
    change: &str,
) -> Result<u64, StoreError> {
    use crate::access::persistent;
    match client.mkdir(&history_dir(root), &persistent(root, &history_dir(root))).await {
        Ok(()) | Err(zookeeper_client::Error::NodeExists) => {}
        Err(e) => return Err(e.into()),
    }
    let version = expected + 1;
    let data = serde_json::to_vec_pretty(doc).expect("serializable");
    let at_ms = herd_config::now_ms();
    let entry = HistoryEntry {
        version,
        at_ms,
        by: by.to_owned(),
        change: change.to_owned(),
        doc: doc.clone(),
    };
    let entry = serde_json::to_vec(&entry).expect("serializable");
    let mut writer = client.new_multi_writer();
    if expected == 0 {
        writer.add_create(&config_path(root), &data, &persistent(root, &config_path(root)))?;
    } else {
        writer.add_set_data(&config_path(root), &data, Some((expected - 1) as i32))?;
    }
    let entry_path = format!("{}/{version:010}", history_dir(root));
    writer.add_create(&entry_path, &entry, &persistent(root, &entry_path))?;
    match writer.commit().await {
        Ok(_) => Ok(version),
        Err(zookeeper_client::MultiWriteError::OperationFailed {
            source: zookeeper_client::Error::BadVersion | zookeeper_client::Error::NodeExists,
            ..
        }) => {
            let current = read(client, root).await?.version;
            Err(StoreError::Conflict { expected, current })
        }
        Err(e) => Err(zookeeper_client::Error::from(e).into()),
    }
}

/// Every accepted version, oldest first.
pub async fn history(
    client: &zookeeper_client::Client,
    root: &str,
) -> Result<Vec<HistoryEntry>, StoreError> {
    Ok(crate::membership::children_json(client, &history_dir(root)).await?)
}

/// The document of an earlier `version`, from the history.
pub async fn version_doc(
    client: &zookeeper_client::Client,
    root: &str,
    version: u64,
) -> Result<Option<ConfigDoc>, StoreError> {
    Ok(history(client, root).await?.into_iter().find(|e| e.version == version).map(|e| e.doc))
}
