//! Idempotent writes of events into the points table.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use herd_model::Event;
use scylla::client::session::Session;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::value::CqlTimestamp;

use crate::{SinkError, SinkSettings, WriteTimestamp};

/// The Cassandra partition an event belongs to: its series and the start of
/// its time bucket (ms since epoch). Pure, so batching can group by it.
pub fn partition_key(event: &Event, bucket_ms: i64) -> (&str, i64) {
    (event.series.as_str(), event.ts - event.ts.rem_euclid(bucket_ms))
}

/// A failed write, classified for the retry loop.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct WriteError {
    /// Timeouts, unavailable replicas, overload, lost connections: the same
    /// write can succeed later, so it is retried. Everything else (invalid
    /// request, refused values) will fail again and counts against the
    /// retry budget.
    pub transient: bool,
    pub message: String,
}

impl From<ExecutionError> for WriteError {
    fn from(e: ExecutionError) -> WriteError {
        let permanent = match &e {
            ExecutionError::BadQuery(_) => true,
            ExecutionError::LastAttemptError(attempt) => match attempt {
                RequestAttemptError::SerializationError(_) | RequestAttemptError::CqlRequestSerialization(_) => true,
                RequestAttemptError::DbError(db, _) => matches!(
                    db,
                    DbError::SyntaxError
                        | DbError::Invalid
                        | DbError::AlreadyExists { .. }
                        | DbError::FunctionFailure { .. }
                        | DbError::AuthenticationError
                        | DbError::Unauthorized
                        | DbError::ConfigError
                ),
                _ => false,
            },
            _ => false,
        };
        WriteError {
            transient: !permanent,
            message: e.to_string(),
        }
    }
}

/// Writes rows with one prepared statement, shared by all tasks.
#[derive(Clone)]
pub struct Writer {
    session: Arc<Session>,
    insert: PreparedStatement,
    settings: Arc<SinkSettings>,
}

type Row<'a> = (
    &'a str,
    CqlTimestamp,
    &'a str,
    CqlTimestamp,
    &'a str,
    i64,
    f64,
    &'a std::collections::BTreeMap<String, String>,
    i64,
    i32,
);

impl Writer {
    pub async fn prepare(session: Arc<Session>, settings: SinkSettings) -> Result<Writer, SinkError> {
        let mut insert = session
            .prepare(format!(
                "INSERT INTO {}.points (series, bucket, metric, ts, producer, seq, value, tags) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ? AND TTL ?",
                settings.keyspace
            ))
            .await
            .map_err(|e| SinkError::Prepare(e.to_string()))?;
        // A quorum of the local data center: with replication 1 that is the
        // one replica, with 3 it survives one node down.
        insert.set_consistency(Consistency::LocalQuorum);
        insert.set_request_timeout(Some(settings.write_timeout));
        insert.set_is_idempotent(true);
        Ok(Writer {
            session,
            insert,
            settings: Arc::new(settings),
        })
    }

    pub fn settings(&self) -> &SinkSettings {
        &self.settings
    }

    fn row<'a>(&self, e: &'a Event, now_micros: i64) -> Row<'a> {
        let (series, bucket) = partition_key(e, self.settings.bucket_ms);
        let write_ts = match self.settings.write_timestamp {
            // Microseconds, as Cassandra's own writes use.
            WriteTimestamp::EventTime => e.ts * 1000,
            WriteTimestamp::IngestTime => now_micros,
        };
        (
            series,
            CqlTimestamp(bucket),
            &e.metric,
            CqlTimestamp(e.ts),
            &e.producer,
            e.seq as i64,
            e.value,
            &e.tags,
            write_ts,
            self.settings.ttl_secs,
        )
    }

    /// Writes events that share one partition key: a single statement for
    /// one event, else one unlogged batch (atomic within the partition and
    /// a single round trip, without a batch log).
    pub async fn write_partition(&self, events: &[&Event]) -> Result<(), WriteError> {
        let now_micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        match events {
            [] => Ok(()),
            [one] => {
                self.session.execute_unpaged(&self.insert, self.row(one, now_micros)).await?;
                Ok(())
            }
            many => {
                debug_assert!(
                    many.iter().all(|e| partition_key(e, self.settings.bucket_ms) == partition_key(many[0], self.settings.bucket_ms)),
                    "a batch must stay within one partition"
                );
                let mut batch = Batch::new(BatchType::Unlogged);
                for _ in many {
                    batch.append_statement(self.insert.clone());
                }
                batch.set_consistency(Consistency::LocalQuorum);
                batch.set_request_timeout(Some(self.settings.write_timeout));
                batch.set_is_idempotent(true);
                let rows: Vec<Row<'_>> = many.iter().map(|e| self.row(e, now_micros)).collect();
                self.session.batch(&batch, rows).await?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ts: i64) -> Event {
        Event {
            series: "s".into(),
            metric: "m".into(),
            ts,
            value: 1.0,
            tags: Default::default(),
            producer: "p".into(),
            seq: 1,
        }
    }

    #[test]
    fn buckets_start_at_multiples_of_the_width() {
        let hour = 3_600_000;
        assert_eq!(partition_key(&at(0), hour).1, 0);
        assert_eq!(partition_key(&at(hour - 1), hour).1, 0);
        assert_eq!(partition_key(&at(hour), hour).1, hour);
        assert_eq!(partition_key(&at(5 * hour + 17), hour).1, 5 * hour);
    }
}
