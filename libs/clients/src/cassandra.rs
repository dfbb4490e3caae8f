//! The CQL session. herd keeps one per process: the driver multiplexes
//! requests over per-shard connections and routes each to its token owner.

use herd_config::Endpoints;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::ClientError;

fn nodes(endpoints: &Endpoints) -> String {
    endpoints.cassandra_nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// Connects with the driver's default session settings (schema metadata and
/// schema agreement on), bounded by the connect timeout.
pub async fn session(endpoints: &Endpoints) -> Result<Session, ClientError> {
    let builder = SessionBuilder::new()
        .known_nodes(endpoints.cassandra_nodes.iter().map(ToString::to_string))
        .connection_timeout(endpoints.connect_timeout);
    match tokio::time::timeout(endpoints.connect_timeout, builder.build()).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => {
            Err(ClientError::Cassandra { nodes: nodes(endpoints), detail: e.to_string() })
        }
        Err(_) => Err(ClientError::Cassandra {
            nodes: nodes(endpoints),
            detail: format!("no session within {:?}", endpoints.connect_timeout),
        }),
    }
}

/// Version and cluster name of the node that answered: proof that CQL
/// queries are served, not only that the port is open.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeInfo {
    pub release_version: String,
    pub cluster_name: String,
}

pub async fn node_info(endpoints: &Endpoints, session: &Session) -> Result<NodeInfo, ClientError> {
    let err = |detail: String| ClientError::Cassandra { nodes: nodes(endpoints), detail };
    let result = session
        .query_unpaged("SELECT release_version, cluster_name FROM system.local", &[])
        .await
        .map_err(|e| err(format!("query on system.local failed: {e}")))?;
    let (release_version, cluster_name) = result
        .into_rows_result()
        .map_err(|e| err(format!("query on system.local returned no rows: {e}")))?
        .single_row::<(String, String)>()
        .map_err(|e| err(format!("unexpected system.local row: {e}")))?;
    Ok(NodeInfo { release_version, cluster_name })
}
