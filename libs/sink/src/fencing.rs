//! Fencing at the database: per-shard checkpoints that only the current
//! owner can write.
//!
//! Every grant of a shard carries an epoch that strictly increases (the
//! coordinator derives it from ZooKeeper). A new owner first *claims* the
//! shard's checkpoint row with its epoch (a lightweight transaction that only
//! succeeds for a higher epoch) and resumes from the stored offset. From then
//! on, every checkpoint *commit* is conditional on `epoch = mine`: an older
//! owner (paused, partitioned, or simply late) has its commit refused by
//! Cassandra and must stop the shard. Its in-flight rows cannot double-count,
//! because data writes are idempotent.

use herd_config::Shard;
use scylla::client::session::Session;
use scylla::response::query_result::QueryRowsResult;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::value::CqlTimestamp;

/// The checkpoint of one shard as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub epoch: i64,
    pub owner: String,
    /// The next offset to read; None before the first commit.
    pub next_offset: Option<i64>,
    /// Blocks layout: the first offset of the offset window still open at
    /// `next_offset` (None: `next_offset` starts a window). The next reader
    /// reads from here, so that it cuts the windows its predecessor cut.
    pub window_start: Option<i64>,
    /// Blocks layout: the shard's de-duplication memory as it was at the
    /// offset the next reader starts from ([`crate::dedup`] encoding).
    pub dedup: Option<Vec<u8>>,
}

pub use crate::error::FenceError;
use crate::CqlError;

/// Prepared statements for claims and commits; cheap to clone.
#[derive(Clone)]
pub struct Fencing {
    insert_claim: PreparedStatement,
    update_claim: PreparedStatement,
    commit: PreparedStatement,
    read: PreparedStatement,
}

fn now() -> CqlTimestamp {
    CqlTimestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    )
}

impl Fencing {
    /// Prepares the statements of `settings.keyspace`: the Paxos phase at
    /// `--serial-consistency` (by default among a quorum of all replicas, so
    /// a claim seen by one data center is seen by all), the commit phase at
    /// `--write-consistency`.
    pub async fn prepare(
        session: &Session,
        settings: &crate::SinkSettings,
    ) -> Result<Fencing, crate::SinkError> {
        let keyspace = &settings.keyspace;
        let (paxos, commit) = (settings.serial_consistency, settings.write_consistency);
        let prepare = |cql: String| async move {
            let mut s = session.prepare(cql).await.map_err(crate::SinkError::Prepare)?;
            s.set_serial_consistency(Some(paxos.paxos()));
            s.set_consistency(commit.cql());
            Ok::<_, crate::SinkError>(s)
        };
        let t = format!("{keyspace}.shard_checkpoints");
        Ok(Fencing {
            insert_claim: prepare(format!(
                "INSERT INTO {t} (topic, partition, epoch, owner, updated_at) VALUES (?, ?, ?, ?, ?) IF NOT EXISTS"
            ))
            .await?,
            update_claim: prepare(format!(
                "UPDATE {t} SET epoch = ?, owner = ?, updated_at = ? WHERE topic = ? AND partition = ? IF epoch < ?"
            ))
            .await?,
            commit: prepare(format!(
                "UPDATE {t} SET next_offset = ?, window_start = ?, dedup = ?, updated_at = ? WHERE topic = ? AND partition = ? IF epoch = ?"
            ))
            .await?,
            read: {
                let mut read = prepare(format!("SELECT epoch, owner, next_offset, window_start, dedup FROM {t} WHERE topic = ? AND partition = ?")).await?;
                // See the latest committed Paxos state, not a replica behind it.
                read.set_consistency(paxos.read());
                read
            },
        })
    }

    /// Claims the shard for `owner` at `epoch`. Ok: the checkpoint to resume
    /// from. Fenced: an equal or higher epoch holds it already.
    pub async fn claim(
        &self,
        session: &Session,
        shard: &Shard,
        epoch: i64,
        owner: &str,
    ) -> Result<Checkpoint, FenceError> {
        let (topic, partition) = (&*shard.topic, shard.partition);
        let unavailable = |source: CqlError| FenceError::Unavailable {
            shard: shard.clone(),
            source: Box::new(source),
        };
        let inserted = lwt(session, &self.insert_claim, (topic, partition, epoch, owner, now()))
            .await
            .map_err(unavailable)?;
        if applied(&inserted) {
            return Ok(Checkpoint {
                epoch,
                owner: owner.to_owned(),
                next_offset: None,
                window_start: None,
                dedup: None,
            });
        }
        let updated =
            lwt(session, &self.update_claim, (epoch, owner, now(), topic, partition, epoch))
                .await
                .map_err(unavailable)?;
        if applied(&updated) {
            // The offset is the previous owner's last commit, untouched by the claim.
            let stored = self.read(session, shard).await?;
            let (next_offset, window_start, dedup) =
                stored.map_or((None, None, None), |c| (c.next_offset, c.window_start, c.dedup));
            return Ok(Checkpoint {
                epoch,
                owner: owner.to_owned(),
                next_offset,
                window_start,
                dedup,
            });
        }
        let current = self.read(session, shard).await?.unwrap_or(Checkpoint {
            epoch: i64::MAX,
            owner: String::new(),
            next_offset: None,
            window_start: None,
            dedup: None,
        });
        // Claimed before under this very grant (the owner restarted the
        // shard, or a retried claim whose answer was lost): an epoch is
        // granted to one owner only, so this is still ours.
        if current.epoch == epoch && current.owner == owner {
            return Ok(current);
        }
        Err(FenceError::Fenced {
            shard: shard.clone(),
            epoch,
            current_epoch: current.epoch,
            current_owner: current.owner,
        })
    }

    /// Records `next_offset` (and the start of the window open there, if
    /// any, and the de-duplication memory there) for the shard, if `epoch`
    /// still owns it.
    pub async fn commit(
        &self,
        session: &Session,
        shard: &Shard,
        epoch: i64,
        next_offset: i64,
        window_start: Option<i64>,
        dedup: Option<&[u8]>,
    ) -> Result<(), FenceError> {
        let values =
            (next_offset, window_start, dedup, now(), &*shard.topic, shard.partition, epoch);
        let result = lwt(session, &self.commit, values).await.map_err(|source| {
            FenceError::Unavailable { shard: shard.clone(), source: Box::new(source) }
        })?;
        if applied(&result) {
            return Ok(());
        }
        let current = self.read(session, shard).await?;
        let (current_epoch, current_owner) =
            current.map_or((-1, String::new()), |c| (c.epoch, c.owner));
        Err(FenceError::Fenced { shard: shard.clone(), epoch, current_epoch, current_owner })
    }

    pub async fn read(
        &self,
        session: &Session,
        shard: &Shard,
    ) -> Result<Option<Checkpoint>, FenceError> {
        let row = async {
            let rows = session
                .execute_unpaged(&self.read, (&*shard.topic, shard.partition))
                .await?
                .into_rows_result()?;
            Ok::<_, CqlError>(
                rows.maybe_first_row::<(i64, String, Option<i64>, Option<i64>, Option<Vec<u8>>)>()?,
            )
        };
        let row = row.await.map_err(|source| FenceError::Unavailable {
            shard: shard.clone(),
            source: Box::new(source),
        })?;
        Ok(row.map(|(epoch, owner, next_offset, window_start, dedup)| Checkpoint {
            epoch,
            owner,
            next_offset,
            window_start,
            dedup,
        }))
    }
}

/// Every shard's checkpoint in `keyspace`, sorted by (topic, partition), for
/// operators (herdctl status) and tests. A full scan of a small table.
pub async fn all_checkpoints(
    session: &Session,
    keyspace: &str,
) -> Result<Vec<(Shard, Checkpoint)>, CqlError> {
    let mut statement = scylla::statement::Statement::new(format!(
        "SELECT topic, partition, epoch, owner, next_offset, window_start, dedup FROM {keyspace}.shard_checkpoints"
    ));
    statement.set_consistency(Consistency::Quorum);
    let rows = session.query_unpaged(statement, &[]).await?.into_rows_result()?;
    let mut out = rows
        .rows::<(String, i32, i64, String, Option<i64>, Option<i64>, Option<Vec<u8>>)>()?
        .map(|r| {
            r.map(|(t, p, epoch, owner, next_offset, window_start, dedup)| {
                (Shard::new(t, p), Checkpoint { epoch, owner, next_offset, window_start, dedup })
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

async fn lwt(
    session: &Session,
    statement: &PreparedStatement,
    values: impl scylla::serialize::row::SerializeRow,
) -> Result<QueryRowsResult, CqlError> {
    Ok(session.execute_unpaged(statement, values).await?.into_rows_result()?)
}

/// The `[applied]` column of an LWT result. An applied LWT returns only that
/// column, a refused one the current row too, so the row is read untyped.
fn applied(rows: &QueryRowsResult) -> bool {
    rows.first_row::<scylla::value::Row>()
        .ok()
        .and_then(|row| row.columns.into_iter().next().flatten())
        .and_then(|value| value.as_boolean())
        .unwrap_or(false)
}
