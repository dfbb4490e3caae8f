//! Read-only health checks: does each server answer a real request? Used at
//! start-up and by `herdctl doctor`. ZooKeeper servers are probed one by one,
//! so that a lost quorum member shows even while the ensemble still serves.

use std::time::{Duration, Instant};

use herd_config::Endpoints;

use crate::{cassandra, kafka, zookeeper};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Probe {
    /// "kafka", "cassandra" or "zookeeper".
    pub server: &'static str,
    /// What was asked: the address or addresses.
    pub target: String,
    pub ok: bool,
    /// What the server said, or why it did not answer.
    pub detail: String,
    pub elapsed_ms: u128,
}

impl Probe {
    fn from_result<T>(
        server: &'static str,
        target: String,
        started: Instant,
        result: Result<T, crate::ClientError>,
        describe: impl FnOnce(T) -> String,
    ) -> Probe {
        let (ok, detail) = match result {
            Ok(value) => (true, describe(value)),
            Err(e) => (false, herd_config::chain(&e)),
        };
        Probe { server, target, ok, detail, elapsed_ms: started.elapsed().as_millis() }
    }
}

pub async fn kafka(endpoints: &Endpoints) -> Probe {
    let started = Instant::now();
    let result = kafka::cluster_info(endpoints).await;
    Probe::from_result("kafka", endpoints.kafka_bootstrap(), started, result, |info| {
        format!(
            "cluster {}, brokers [{}], {} topic(s)",
            info.cluster_id.as_deref().unwrap_or("(unknown id)"),
            info.brokers.join(", "),
            info.topics
        )
    })
}

pub async fn cassandra(endpoints: &Endpoints) -> Probe {
    let started = Instant::now();
    let target =
        endpoints.cassandra_nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let result = async {
        let session = cassandra::session(endpoints).await?;
        cassandra::node_info(endpoints, &session).await
    }
    .await;
    Probe::from_result("cassandra", target, started, result, |info| {
        format!("Cassandra {}, cluster {:?}", info.release_version, info.cluster_name)
    })
}

/// One probe per ZooKeeper server: each must accept a session and answer a
/// read of the root node.
pub async fn zookeeper(endpoints: &Endpoints) -> Vec<Probe> {
    let probes = endpoints.zookeeper.servers.iter().map(|server| async move {
        let started = Instant::now();
        let result = async {
            let client = zookeeper::connect_one(endpoints, server).await?;
            let stat = client.check_stat("/").await.map_err(|source| {
                crate::ClientError::ZooKeeper { servers: server.to_string(), source }
            });
            let session = client.session_id();
            zookeeper::close(client, Duration::from_secs(2)).await;
            stat.map(|_| session)
        }
        .await;
        Probe::from_result("zookeeper", server.to_string(), started, result, |session| {
            format!("session {session} opened and closed")
        })
    });
    futures::future::join_all(probes).await
}

/// Runs every probe concurrently.
pub async fn all(endpoints: &Endpoints) -> Vec<Probe> {
    let (k, c, z) = tokio::join!(kafka(endpoints), cassandra(endpoints), zookeeper(endpoints));
    let mut probes = vec![k, c];
    probes.extend(z);
    probes
}
