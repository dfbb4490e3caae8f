use std::time::Duration;

/// Failures to reach or use a server. All are worth retrying once the server
/// is back, except [`ClientError::Config`] and refused logins, which need a
/// settings change. Each says which server and what to check; none carries
/// a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("Kafka at {brokers} failed{}; {}", because(why), kafka_hint(why.as_deref()))]
    Kafka {
        brokers: String,
        #[source]
        source: Box<rdkafka::error::KafkaError>,
        /// librdkafka's last report on its connections (a refused login, a
        /// failed TLS handshake), if any: often the real reason.
        why: Option<String>,
    },
    #[error("Kafka at {brokers}: no broker answered within {timeout:?}{}; {}", because(why), kafka_hint(why.as_deref()))]
    KafkaTimeout { brokers: String, timeout: Duration, why: Option<String> },
    #[error("Kafka at {brokers}: cannot create topic {topic:?}: {code}; check the broker log")]
    KafkaTopic { brokers: String, topic: String, code: rdkafka::types::RDKafkaErrorCode },
    #[error("Cassandra at {nodes}: {detail}; {}", cassandra_hint(detail))]
    Cassandra { nodes: String, detail: String },
    #[error("ZooKeeper at {servers} failed; check that a quorum of the ensemble is up, that --zookeeper is right, and that --zookeeper-tls-ca is set exactly when the servers want TLS")]
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

fn because(why: &Option<String>) -> String {
    why.as_deref().map(|w| format!(": {w}")).unwrap_or_default()
}

/// What to check, from librdkafka's report.
fn kafka_hint(why: Option<&str>) -> &'static str {
    let why = why.unwrap_or("").to_ascii_lowercase();
    if why.contains("authentication") {
        "check --kafka-user, its password (HERD_KAFKA_PASSWORD or --kafka-password-file) and --kafka-sasl-mechanism"
    } else if why.contains("ssl handshake")
        || why.contains("security.protocol")
        || why.contains("certificate")
        // The broker closed the connection at the first request: what a
        // TLS listener does to a plaintext client.
        || why.contains("in state apiversion_query")
    {
        "check that --kafka-tls-ca is set exactly when the broker's listener uses TLS, and that it holds the CA that signed the broker's certificate"
    } else {
        "check that a broker listens there and that --kafka-brokers is right"
    }
}

/// What to check, from the driver's message.
fn cassandra_hint(detail: &str) -> &'static str {
    let d = detail.to_ascii_lowercase();
    if d.contains("authentication") || d.contains("bad credentials") {
        "check --cassandra-user and its password (HERD_CASSANDRA_PASSWORD or --cassandra-password-file)"
    } else if d.contains("certificate") || d.contains("tls") || d.contains("handshake") {
        "check that --cassandra-tls-ca holds the CA that signed the nodes' certificates and that the nodes want TLS"
    } else if d.contains("unauthorized") || d.contains("permission") {
        "check the permissions granted to the role (--cassandra-user)"
    } else {
        "check that a node listens on its CQL port, that --cassandra-nodes is right, and that --cassandra-tls-ca is set exactly when the nodes want TLS (client_encryption_options)"
    }
}

impl ClientError {
    /// Whether trying again later, unchanged, can succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ClientError::Config(_) | ClientError::ZooKeeperAuth { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_follow_the_reason() {
        let e = ClientError::KafkaTimeout {
            brokers: "b:1".into(),
            timeout: Duration::from_secs(5),
            why: Some("SASL authentication error: Authentication failed".into()),
        };
        assert!(e.to_string().contains("check --kafka-user"), "{e}");
        let e = ClientError::KafkaTimeout {
            brokers: "b:1".into(),
            timeout: Duration::from_secs(5),
            why: Some("Disconnected while requesting ApiVersion: might be caused by incorrect security.protocol configuration (connecting to a SSL listener?)".into()),
        };
        assert!(e.to_string().contains("--kafka-tls-ca is set exactly when"), "{e}");
        let e = ClientError::Cassandra {
            nodes: "n:1".into(),
            detail: "Authentication failed - bad credentials".into(),
        };
        assert!(e.to_string().contains("check --cassandra-user"), "{e}");
        let e = ClientError::Cassandra {
            nodes: "n:1".into(),
            detail: "Connection reset by peer".into(),
        };
        assert!(e.to_string().contains("--cassandra-tls-ca is set exactly when"), "{e}");
    }
}
