//! Leader election through ZooKeeper, with zookeeper-client's
//! Curator-compatible recipe: every candidate creates an ephemeral sequential
//! node under `{root}/election` and watches its predecessor; the lowest leads.
//! A leader's node goes with its session, so when a leader dies (or is cut
//! off long enough for its session to expire) the next candidate leads.
//!
//! The leader's *epoch* is its lock node's creation zxid, which ZooKeeper
//! makes strictly increasing: every later leader has a higher one.
//!
//! Leader-only writes go through [`Leadership::write`]: a multi-op that also
//! checks that the lock node still exists, so a deposed leader (its node
//! gone) cannot overwrite its successor's state.

use crate::access;
use serde::{Deserialize, Serialize};
use zookeeper_client::{CheckWriteError, Client, LockOptions, LockPrefix, OwnedLockClient};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElectionError {
    #[error("a ZooKeeper request failed; check that a quorum of the ensemble is up")]
    ZooKeeper(#[from] zookeeper_client::Error),
    #[error("not the leader any more ({0}); a leader-only write was refused")]
    Deposed(String),
}

impl From<crate::membership::ZkError> for ElectionError {
    fn from(e: crate::membership::ZkError) -> Self {
        ElectionError::ZooKeeper(e.0)
    }
}

impl From<CheckWriteError> for ElectionError {
    fn from(e: CheckWriteError) -> Self {
        match e {
            CheckWriteError::CheckFailed { source } => ElectionError::Deposed(source.to_string()),
            CheckWriteError::RequestFailed { source } => ElectionError::ZooKeeper(source),
            other => ElectionError::Deposed(other.to_string()),
        }
    }
}

/// What `{root}/leader` says: who leads, at which epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    pub id: String,
    pub epoch: i64,
}

pub struct Leadership {
    lock: OwnedLockClient,
    pub epoch: i64,
    /// The lock node; it exists exactly as long as this leadership.
    pub lock_path: String,
    /// The deployment's root: what the ACLs of written znodes depend on.
    root: String,
}

/// Waits until this candidate leads (cancel the future to stop waiting).
pub async fn campaign(client: &Client, root: &str, id: &str) -> Result<Leadership, ElectionError> {
    let dir = format!("{root}/election");
    let prefix = LockPrefix::new_curator(&dir, "latch-")?;
    let options = LockOptions::new(access::acls_for(root, &dir))
        .with_ancestor_options(access::persistent(root, &dir))?;
    let lock = client.lock(prefix, id.as_bytes(), options).await?;
    let lock_path = lock.lock_path().to_owned();
    let (_, stat) = client.get_data(&lock_path).await?;
    Ok(Leadership { lock: lock.into_owned(), epoch: stat.czxid, lock_path, root: root.to_owned() })
}

impl Leadership {
    /// Creates or replaces `path` with `data`, only if this is still the leadership.
    pub async fn write(
        &self,
        client: &Client,
        path: &str,
        data: &[u8],
    ) -> Result<(), ElectionError> {
        let exists = client.check_stat(path).await?.is_some();
        let mut writer = self.lock.new_check_writer();
        if exists {
            writer.add_set_data(path, data, None)?;
        } else {
            writer.add_create(path, data, &access::persistent(&self.root, path))?;
        }
        writer.commit().await?;
        Ok(())
    }

    /// Publishes `{root}/leader`.
    pub async fn publish(
        &self,
        client: &Client,
        root: &str,
        id: &str,
    ) -> Result<(), ElectionError> {
        let info = LeaderInfo { id: id.to_owned(), epoch: self.epoch };
        self.write(
            client,
            &format!("{root}/leader"),
            &serde_json::to_vec(&info).expect("serializable"),
        )
        .await
    }
}

/// Who leads according to `{root}/leader`, after a sync so that the answer
/// is not older than the last completed write.
pub async fn current_leader(
    client: &Client,
    root: &str,
) -> Result<Option<LeaderInfo>, ElectionError> {
    let path = format!("{root}/leader");
    match client.sync(&path).await {
        Ok(()) | Err(zookeeper_client::Error::NoNode) => {}
        Err(e) => return Err(e.into()),
    }
    match client.get_data(&path).await {
        Ok((data, _)) => Ok(serde_json::from_slice(&data).ok()),
        Err(zookeeper_client::Error::NoNode) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
