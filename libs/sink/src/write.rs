//! What both layouts' writers share: the partition an event belongs to,
//! and how an insert is prepared.

use herd_model::Event;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use crate::{SinkError, SinkSettings};

/// The Cassandra partition an event belongs to: its series and the start of
/// its time bucket (ms since epoch). Pure, so batching can group by it.
pub fn partition_key(event: &Event, bucket_ms: i64) -> (&str, i64) {
    (event.series.as_str(), event.ts - event.ts.rem_euclid(bucket_ms))
}

/// Prepares an idempotent insert of `settings.keyspace`'s layout, shared
/// by both writers: at `--write-consistency` (by default a quorum of the
/// local data center: with replication 1 the one replica, with 3 it
/// survives one node down) and the write timeout.
pub(crate) async fn prepare_insert(
    session: &Session,
    cql: String,
    settings: &SinkSettings,
) -> Result<PreparedStatement, SinkError> {
    let mut insert = session.prepare(cql).await.map_err(SinkError::Prepare)?;
    insert.set_consistency(settings.write_consistency.cql());
    insert.set_request_timeout(Some(settings.write_timeout));
    insert.set_is_idempotent(true);
    Ok(insert)
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
