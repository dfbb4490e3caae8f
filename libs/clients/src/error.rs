use std::time::Duration;

/// Failures to reach or use a server. All are worth retrying once the server
/// is back, except [`ClientError::Config`], which needs a settings change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("Kafka at {brokers} failed; check that a broker listens there and that --kafka-brokers is right")]
    Kafka {
        brokers: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("Kafka at {brokers}: no broker answered within {timeout:?}; check that a broker listens there and that --kafka-brokers is right")]
    KafkaTimeout { brokers: String, timeout: Duration },
    #[error("Kafka at {brokers}: cannot create topic {topic:?}: {code}; check the broker log")]
    KafkaTopic { brokers: String, topic: String, code: rdkafka::types::RDKafkaErrorCode },
    #[error("Cassandra at {nodes}: {detail}; check that a node listens on its CQL port and that --cassandra-nodes is right")]
    Cassandra { nodes: String, detail: String },
    #[error("ZooKeeper at {servers} failed; check that a quorum of the ensemble is up and that --zookeeper is right")]
    ZooKeeper {
        servers: String,
        #[source]
        source: zookeeper_client::Error,
    },
    #[error("ZooKeeper at {servers}: no session within {timeout:?}; check that a quorum of the ensemble is up, that --zookeeper is right{}", if *tls { " and that its servers speak TLS on these ports" } else { " and, if the servers want TLS, that --zookeeper-tls-ca is set" })]
    ZooKeeperTimeout { servers: String, timeout: Duration, tls: bool },
    #[error("ZooKeeper at {servers} refused the login of user {user:?}: SASL authentication failed; check --zookeeper-user and its password (HERD_ZOOKEEPER_PASSWORD or --zookeeper-password-file)")]
    ZooKeeperAuth { servers: String, user: String },
    #[error("invalid client setting: {0}")]
    Config(String),
}

impl ClientError {
    /// Whether trying again later, unchanged, can succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ClientError::Config(_) | ClientError::ZooKeeperAuth { .. })
    }
}
