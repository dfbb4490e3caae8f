//! Cassandra helpers for tests.

use futures::TryStreamExt;
use scylla::client::session::Session;

/// The identity (producer, seq) of every row of `keyspace.points`, by a
/// paged full scan. A duplicate would show as an identity listed twice
/// (stored under two primary keys).
pub async fn stored_identities(session: &Session, keyspace: &str) -> Vec<(String, i64)> {
    let mut statement = scylla::statement::Statement::new(format!("SELECT producer, seq FROM {keyspace}.points"));
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
