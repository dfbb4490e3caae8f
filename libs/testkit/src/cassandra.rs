//! Cassandra helpers for tests.

use futures::TryStreamExt;
use scylla::client::session::Session;

/// The identity (producer, seq) of every stored event, by a paged full scan
/// in the keyspace's layout: every row of `points`, or every event of every
/// block of `blocks`. A duplicate shows as an identity listed twice (stored
/// under two primary keys, or in two blocks).
pub async fn stored_identities(session: &Session, keyspace: &str) -> Vec<(String, i64)> {
    let pinned = herd_sink::schema::pinned(session, keyspace)
        .await
        .expect("read herd_settings")
        .expect("the keyspace has herd settings");
    if pinned.layout == herd_sink::Layout::Blocks {
        let mut statement = scylla::statement::Statement::new(format!(
            "SELECT series, metric, data FROM {keyspace}.blocks"
        ));
        statement.set_page_size(500);
        let blocks: Vec<(String, String, Vec<u8>)> = session
            .query_iter(statement, &[])
            .await
            .expect("scan blocks")
            .rows_stream::<(String, String, Vec<u8>)>()
            .expect("row types")
            .try_collect()
            .await
            .expect("read blocks");
        return blocks
            .iter()
            .flat_map(|(series, metric, data)| {
                herd_sink::block::decode(series, metric, data).expect("a block herd can decode")
            })
            .map(|e| (e.producer, e.seq as i64))
            .collect();
    }
    let mut statement =
        scylla::statement::Statement::new(format!("SELECT producer, seq FROM {keyspace}.points"));
    statement.set_page_size(5000);
    session
        .query_iter(statement, &[])
        .await
        .expect("scan points")
        .rows_stream::<(String, i64)>()
        .expect("row types")
        .try_collect()
        .await
        .expect("read points")
}

/// How many events `keyspace` holds in either layout: 0 if the keyspace or
/// its settings do not exist (a worker refused before it migrated).
pub async fn stored_count(session: &Session, keyspace: &str) -> usize {
    let exists = session
        .query_unpaged(
            "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .expect("read system_schema.keyspaces")
        .into_rows_result()
        .expect("rows")
        .rows_num()
        > 0;
    if !exists {
        return 0;
    }
    match herd_sink::schema::pinned(session, keyspace).await {
        Ok(Some(_)) => stored_identities(session, keyspace).await.len(),
        _ => 0,
    }
}

/// Sum over the partitions of `topic` of (checkpointed next offset in
/// `keyspace`, end offset in Kafka).
pub async fn checkpointed_and_end(session: &Session, keyspace: &str, topic: &str) -> (i64, i64) {
    let checkpoints =
        herd_sink::fencing::all_checkpoints(session, keyspace).await.unwrap_or_default();
    let checkpointed = checkpoints
        .iter()
        .filter(|(shard, _)| &*shard.topic == topic)
        .filter_map(|(_, c)| c.next_offset)
        .sum();
    let end = crate::kafka::end_offsets(&crate::endpoints(), topic).await.values().sum();
    (checkpointed, end)
}

/// Waits until every message of `topic` is checkpointed in `keyspace`;
/// panics after `limit` with how far it got.
pub async fn wait_all_checkpointed(
    session: &Session,
    keyspace: &str,
    topic: &str,
    limit: std::time::Duration,
) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let (checkpointed, end) = checkpointed_and_end(session, keyspace, topic).await;
        if checkpointed == end {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{checkpointed} of {end} messages of {topic} checkpointed in {keyspace} within {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
