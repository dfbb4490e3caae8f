//! Kafka clients with herd's defaults. Callers add their own settings on top
//! of [`base_config`] before creating a client.

use herd_config::{Endpoints, Shard};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::{FutureProducer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::ClientError;

/// Settings every herd Kafka client shares, TLS and SASL included. Fails
/// only if the password cannot be read. The result holds the password
/// (`ClientConfig`'s `Debug` leaves it out; `get` does not).
pub fn base_config(endpoints: &Endpoints, client_id: &str) -> Result<ClientConfig, ClientError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", endpoints.kafka_bootstrap())
        .set("client.id", client_id)
        // Fail a metadata request within the connect timeout instead of
        // librdkafka's default of 60 s, so an absent broker is reported promptly.
        .set(
            "socket.connection.setup.timeout.ms",
            endpoints.connect_timeout.as_millis().to_string(),
        );
    // Down to librdkafka's info level (rdkafka would take the level from
    // the `log` crate, which herd does not use): a broker that closes the
    // connection during the handshake (a TLS mismatch) is only reported there.
    config.set_log_level(rdkafka::config::RDKafkaLogLevel::Info);
    let security = &endpoints.security;
    let tls = security.kafka.tls_ca.is_some();
    let protocol = match (tls, security.kafka.login.is_some()) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    config.set("security.protocol", protocol);
    if let Some(ca) = &security.kafka.tls_ca {
        // librdkafka reads the file itself; checked here so that a missing
        // file is named as such instead of as a failed client creation.
        std::fs::metadata(ca).map_err(|e| {
            ClientError::Config(format!(
                "Kafka: cannot read the CA file {} (--kafka-tls-ca): {e}",
                ca.display()
            ))
        })?;
        config.set("ssl.ca.location", ca.display().to_string());
    }
    if let Some(login) = &security.kafka.login {
        let password = login
            .password
            .read()
            .map_err(|e| ClientError::Config(format!("Kafka user {}: {e}", login.user)))?;
        config
            .set("sasl.mechanisms", security.kafka_sasl_mechanism.name())
            .set("sasl.username", &login.user)
            .set("sasl.password", password.expose());
    }
    Ok(config)
}

fn create<T: rdkafka::config::FromClientConfig>(
    endpoints: &Endpoints,
    config: &ClientConfig,
) -> Result<T, ClientError> {
    config.create().map_err(|source| ClientError::Kafka {
        brokers: endpoints.kafka_bootstrap(),
        source: source.into(),
        why: None,
    })
}

/// A client context that keeps librdkafka's last error report about its
/// connections (a refused login, a failed TLS handshake, a broker that
/// closed the connection), so that a request that then fails or times out
/// can say why. The reports are logged too.
#[derive(Clone, Default)]
pub struct Diagnosis(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl ClientContext for Diagnosis {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, reason, "Kafka client error");
        self.keep(reason);
    }

    // librdkafka queues its logs for the client's poll (rdkafka sets
    // log.queue); with_metadata polls once a request failed, which hands
    // them here: where a refused SASL login or a TLS mismatch shows.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::warn!(target: "librdkafka", fac, "{message}");
                self.keep(message);
            }
            L::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            L::Notice | L::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}");
                // A connection that failed: closed by the broker, refused.
                if fac == "FAIL" {
                    self.keep(message);
                }
            }
            L::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }
}

// Only so that a BaseProducer can carry it: with_metadata polls a
// producer's main queue, where librdkafka puts its logs and errors.
impl rdkafka::producer::ProducerContext for Diagnosis {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: ()) {}
}

impl Diagnosis {
    fn keep(&self, report: &str) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.to_owned());
    }

    /// The last report, if any.
    pub fn last(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A producer that waits for all in-sync replicas and is idempotent, so a
/// retried send never writes a message twice.
pub fn producer(endpoints: &Endpoints, client_id: &str) -> Result<FutureProducer, ClientError> {
    create(endpoints, &producer_config(endpoints, client_id)?)
}

/// The settings of [`producer`]; callers may add their own on top.
pub fn producer_config(
    endpoints: &Endpoints,
    client_id: &str,
) -> Result<ClientConfig, ClientError> {
    let mut config = base_config(endpoints, client_id)?;
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", (endpoints.connect_timeout.as_millis() * 3).to_string());
    Ok(config)
}

/// A producer with `config` whose deliveries are reported to `context`
/// (no future per message: for senders of hundreds of thousands of
/// messages per second).
pub fn threaded_producer<C: ProducerContext + 'static>(
    endpoints: &Endpoints,
    config: &ClientConfig,
    context: C,
) -> Result<ThreadedProducer<C>, ClientError> {
    config.create_with_context(context).map_err(|source| ClientError::Kafka {
        brokers: endpoints.kafka_bootstrap(),
        source: source.into(),
        why: None,
    })
}

/// A consumer in `group` that starts from the earliest offset and commits
/// only what the caller stores or commits explicitly.
pub fn consumer(
    endpoints: &Endpoints,
    client_id: &str,
    group: &str,
) -> Result<StreamConsumer, ClientError> {
    let mut config = base_config(endpoints, client_id)?;
    config
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    create(endpoints, &config)
}

pub fn admin(
    endpoints: &Endpoints,
    client_id: &str,
) -> Result<AdminClient<rdkafka::client::DefaultClientContext>, ClientError> {
    create(endpoints, &base_config(endpoints, client_id)?)
}

/// Creates `topic` with `partitions` partitions, or leaves it as it is if it
/// already exists. Waits until the broker reports the topic created.
pub async fn ensure_topic(
    endpoints: &Endpoints,
    topic: &str,
    partitions: i32,
    replication: i32,
) -> Result<(), ClientError> {
    ensure_topic_with(endpoints, topic, partitions, replication, &[]).await
}

/// [`ensure_topic`] with topic configuration (`name`, `value`) for a new
/// topic; an existing topic is left as it is.
pub async fn ensure_topic_with(
    endpoints: &Endpoints,
    topic: &str,
    partitions: i32,
    replication: i32,
    config: &[(&str, &str)],
) -> Result<(), ClientError> {
    let admin = admin(endpoints, "herd-admin")?;
    let options = AdminOptions::new()
        .request_timeout(Some(endpoints.connect_timeout))
        .operation_timeout(Some(endpoints.connect_timeout));
    let new = config.iter().fold(
        NewTopic::new(topic, partitions, TopicReplication::Fixed(replication)),
        |t, (name, value)| t.set(name, value),
    );
    let results = match admin.create_topics([&new], &options).await {
        Ok(results) => results,
        Err(source) => {
            // An admin client cannot be polled for librdkafka's reports: a
            // metadata request says why the brokers could not be reached.
            with_metadata(endpoints, |_, _| ()).await?;
            return Err(ClientError::Kafka {
                brokers: endpoints.kafka_bootstrap(),
                source: source.into(),
                why: None,
            });
        }
    };
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(ClientError::KafkaTopic {
                    brokers: endpoints.kafka_bootstrap(),
                    topic: name,
                    code,
                });
            }
        }
    }
    Ok(())
}

/// Broker ids and cluster id, from a metadata request: proof that a broker
/// answers, not only that its port is open.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterInfo {
    pub cluster_id: Option<String>,
    pub brokers: Vec<String>,
    pub topics: usize,
}

pub async fn cluster_info(endpoints: &Endpoints) -> Result<ClusterInfo, ClientError> {
    let timeout = endpoints.connect_timeout;
    with_metadata(endpoints, move |client, metadata| ClusterInfo {
        cluster_id: client.fetch_cluster_id(timeout),
        brokers: metadata
            .brokers()
            .iter()
            .map(|b| format!("{}@{}:{}", b.id(), b.host(), b.port()))
            .collect(),
        topics: metadata.topics().len(),
    })
    .await
}

/// One metadata request for the whole cluster, answered to `f`. The request
/// blocks, so it runs on the blocking pool; a timeout is reported as such.
async fn with_metadata<T: Send + 'static>(
    endpoints: &Endpoints,
    f: impl FnOnce(&rdkafka::client::Client<Diagnosis>, &rdkafka::metadata::Metadata) -> T
        + Send
        + 'static,
) -> Result<T, ClientError> {
    // A producer that sends nothing: unlike an admin client it can be
    // polled, which hands librdkafka's queued reports to its context.
    let producer: rdkafka::producer::BaseProducer<Diagnosis> =
        base_config(endpoints, "herd-admin")?.create_with_context(Diagnosis::default()).map_err(
            |source| ClientError::Kafka {
                brokers: endpoints.kafka_bootstrap(),
                source: source.into(),
                why: None,
            },
        )?;
    let timeout = endpoints.connect_timeout;
    let brokers = endpoints.kafka_bootstrap();
    tokio::task::spawn_blocking(move || {
        let client = rdkafka::producer::Producer::client(&producer);
        let metadata = client.fetch_metadata(None, timeout).map_err(|source| {
            producer.poll(std::time::Duration::from_millis(100));
            let why = client.context().last();
            match source {
                rdkafka::error::KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut) => {
                    ClientError::KafkaTimeout { brokers: brokers.clone(), timeout, why }
                }
                source => {
                    ClientError::Kafka { brokers: brokers.clone(), source: source.into(), why }
                }
            }
        })?;
        Ok(f(client, &metadata))
    })
    .await
    .map_err(|e| ClientError::Config(format!("metadata task failed: {e}")))?
}

/// The names of all topics in the cluster.
pub async fn topic_names(endpoints: &Endpoints) -> Result<Vec<String>, ClientError> {
    with_metadata(endpoints, |_, m| m.topics().iter().map(|t| t.name().to_owned()).collect()).await
}

/// The partitions of each topic that exists, from a metadata request.
/// Topics that do not exist (yet) are left out.
pub async fn partitions(
    endpoints: &Endpoints,
    topics: &[String],
) -> Result<Vec<Shard>, ClientError> {
    let topics = topics.to_vec();
    with_metadata(endpoints, move |_, m| {
        m.topics()
            .iter()
            .filter(|t| topics.iter().any(|name| name == t.name()) && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(move |p| Shard::new(t.name(), p.id())))
            .collect()
    })
    .await
}

/// The end offset (high watermark) of each of `shards`; shards whose
/// offsets cannot be read are left out.
pub async fn end_offsets(
    endpoints: &Endpoints,
    shards: Vec<Shard>,
) -> Result<std::collections::BTreeMap<Shard, i64>, ClientError> {
    let timeout = endpoints.connect_timeout;
    with_metadata(endpoints, move |client, _| {
        shards
            .into_iter()
            .filter_map(|shard| {
                let (_, high) =
                    client.fetch_watermarks(&shard.topic, shard.partition, timeout).ok()?;
                Some((shard, high))
            })
            .collect()
    })
    .await
}
