//! Schema migrations, one process at a time. Workers started together on
//! a new keyspace would otherwise all run the same `CREATE ... IF NOT
//! EXISTS` at once, which on a multi-node Cassandra can create a table
//! twice under different ids and leave the nodes disagreeing on the schema.
//!
//! | path                          | kind       | content            |
//! |-------------------------------|------------|--------------------|
//! | `{root}/schema/{keyspace}`    | persistent | [`SchemaVersion`]  |
//! | `{root}/locks/schema-{keyspace}/…` | ephemeral sequential | the lock recipe's nodes (data: the holder's id) |
//!
//! A process that finds the keyspace's version published and its schema up
//! to date goes on without DDL. Otherwise it takes the keyspace's lock
//! (zookeeper-client's recipe: the lowest sequence node holds it, the next
//! one watches the one before, so the waiters queue without a herd), looks
//! again, and only then migrates, publishing the version through the lock
//! (a write that fails if the lock was lost). The lock is an ephemeral
//! node: a holder that dies or loses its session passes it on, and the next
//! one migrates again (every step is idempotent).

use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zookeeper_client::{Client, LockOptions, LockPrefix};

use crate::membership::{ensure_path, lock_holder, ZkError};

/// The schema version published for a keyspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaVersion {
    pub version: i32,
    /// The process that migrated it.
    pub by: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

pub fn schema_path(root: &str, keyspace: &str) -> String {
    format!("{root}/schema/{keyspace}")
}

pub fn schema_lock_dir(root: &str, keyspace: &str) -> String {
    format!("{root}/locks/schema-{keyspace}")
}

/// What [`migrate_once`] did.
#[derive(Debug)]
pub enum Migrated {
    /// This process held the lock and migrated: the versions applied now
    /// (none if the schema was complete but not yet published).
    Ran { applied: Vec<i32>, waited: Duration },
    /// Another process had migrated it (or did while this one waited).
    Reached { published: SchemaVersion, waited: Duration },
}

/// Reading or writing the keyspace's schema znodes failed.
#[derive(Debug, thiserror::Error)]
pub enum SchemaZkError {
    #[error(transparent)]
    ZooKeeper(#[from] ZkError),
    #[error("{keyspace}: the schema version published in ZooKeeper at {path} is unreadable ({reason}); delete the node and start again")]
    Unreadable { keyspace: String, path: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError<E: std::error::Error + 'static> {
    #[error("while coordinating the schema migration through ZooKeeper")]
    Coordination(#[from] SchemaZkError),
    /// Checking or migrating the schema itself failed.
    #[error(transparent)]
    Schema(E),
}

impl<E: std::error::Error + 'static> From<ZkError> for MigrateError<E> {
    fn from(e: ZkError) -> Self {
        MigrateError::Coordination(e.into())
    }
}

/// The version published for `keyspace`, if any.
pub async fn published(
    client: &Client,
    root: &str,
    keyspace: &str,
) -> Result<Option<SchemaVersion>, SchemaZkError> {
    let path = schema_path(root, keyspace);
    // Another process's publish must be seen: read through the leader.
    match client.sync(&path).await {
        Ok(()) | Err(zookeeper_client::Error::NoNode) => {}
        Err(e) => return Err(ZkError(e).into()),
    }
    match client.get_data(&path).await {
        Ok((data, _)) => serde_json::from_slice(&data).map(Some).map_err(|e| {
            SchemaZkError::Unreadable { keyspace: keyspace.to_owned(), path, reason: e.to_string() }
        }),
        Err(zookeeper_client::Error::NoNode) => Ok(None),
        Err(e) => Err(ZkError(e).into()),
    }
}

/// Brings `keyspace` to schema version `target` with at most one process
/// migrating at a time. `up_to_date` says (without DDL) whether the
/// keyspace has every migration and the nodes agree on its schema;
/// `migrate` runs the migrations and returns the versions it applied.
/// While it waits for the lock it logs who holds it every 30 s.
pub async fn migrate_once<E, U, UF, M, MF>(
    client: &Client,
    root: &str,
    keyspace: &str,
    target: i32,
    who: &str,
    up_to_date: U,
    migrate: M,
) -> Result<Migrated, MigrateError<E>>
where
    E: std::error::Error + 'static,
    U: Fn() -> UF,
    UF: Future<Output = Result<bool, E>>,
    M: FnOnce() -> MF,
    MF: Future<Output = Result<Vec<i32>, E>>,
{
    let started = Instant::now();
    // The published version, if it is `target` or newer and the schema is
    // there; asked before the lock and again once it is held.
    let reached = || async {
        let p = published(client, root, keyspace).await?;
        match p {
            Some(p)
                if p.version >= target && up_to_date().await.map_err(MigrateError::Schema)? =>
            {
                Ok::<_, MigrateError<E>>(Some(p))
            }
            _ => Ok(None),
        }
    };
    if let Some(published) = reached().await? {
        return Ok(Migrated::Reached { published, waited: started.elapsed() });
    }

    let lock_dir = schema_lock_dir(root, keyspace);
    ensure_path(client, root, &lock_dir).await?;
    let prefix = LockPrefix::new_curator(&lock_dir, "lock-").map_err(ZkError)?;
    let lock = client.lock(
        prefix,
        who.as_bytes(),
        LockOptions::new(crate::access::acls_for(root, &lock_dir)),
    );
    tokio::pin!(lock);
    let lock = loop {
        tokio::select! {
            lock = &mut lock => break lock.map_err(ZkError)?,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {
                let holder = lock_holder(client, &lock_dir).await.unwrap_or_else(|| "unknown".into());
                tracing::info!(%keyspace, %holder, waited_s = started.elapsed().as_secs(), "waiting for the schema lock");
            }
        }
    };
    let waited = started.elapsed();
    if let Some(published) = reached().await? {
        return Ok(Migrated::Reached { published, waited });
    }
    let applied = migrate().await.map_err(MigrateError::Schema)?;
    let version =
        SchemaVersion { version: target, by: who.to_owned(), at_ms: herd_config::now_ms() };
    let data = serde_json::to_vec(&version).expect("serializable");
    let path = schema_path(root, keyspace);
    ensure_path(client, root, &format!("{root}/schema")).await?;
    // Through the lock: refused if the lock was lost meanwhile (a session
    // expiry), so a stale holder never publishes over a newer migrator.
    match lock.create(&path, &data, &crate::access::persistent(root, &path)).await {
        Ok(_) => {}
        Err(zookeeper_client::Error::NodeExists) => {
            lock.set_data(&path, &data, None).await.map_err(ZkError)?;
        }
        Err(e) => return Err(ZkError(e).into()),
    }
    Ok(Migrated::Ran { applied, waited })
}
