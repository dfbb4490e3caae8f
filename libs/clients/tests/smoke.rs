//! Smoke tests against the real local stack (deploy/local/stack up): each
//! client talks to its real server. With a server down, its test fails with
//! the client's error rather than skipping.

use std::collections::BTreeSet;
use std::time::Duration;

use herd_clients::{cassandra, kafka, zookeeper};
use herd_testkit::{endpoints, unique_name};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureRecord;
use rdkafka::Offset;
use zookeeper_client::{Acls, CreateMode, EventType};

/// Bound for each step that waits on a server, generous for a loaded 2-core box.
const STEP: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn kafka_produce_then_consume_through_a_consumer_group() {
    const MESSAGES: usize = 300;
    let endpoints = endpoints();
    let topic = unique_name("smoke_kafka");
    kafka::ensure_topic(&endpoints, &topic, 3, 1).await.expect("create topic");

    let producer = kafka::producer(&endpoints, "smoke-producer").expect("producer");
    let sent: BTreeSet<String> = (0..MESSAGES).map(|i| format!("event-{i}")).collect();
    let deliveries = sent.iter().map(|payload| {
        let producer = &producer;
        let topic = &topic;
        async move {
            producer
                .send(FutureRecord::to(topic).key(payload.as_str()).payload(payload.as_str()), STEP)
                .await
                .map_err(|(e, _)| e)
        }
    });
    for delivery in futures::future::join_all(deliveries).await {
        delivery.expect("message acknowledged by the broker");
    }

    let group = unique_name("smoke_group");
    let consumer = kafka::consumer(&endpoints, "smoke-consumer", &group).expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + STEP;
    while received.len() < MESSAGES {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("only {} of {MESSAGES} messages within {STEP:?}", received.len())
            })
            .expect("consume");
        let payload = message.payload_view::<str>().expect("payload").expect("utf-8");
        assert_eq!(message.key(), Some(payload.as_bytes()), "key travels with its message");
        received.push(payload.to_owned());
    }
    let unique: BTreeSet<String> = received.iter().cloned().collect();
    assert_eq!(unique.len(), received.len(), "no message is delivered twice");
    assert_eq!(unique, sent, "every produced message is consumed");

    // The group's progress is stored by the broker: what a restarted member resumes from.
    consumer.commit_consumer_state(CommitMode::Sync).expect("commit");
    let committed = consumer.committed(STEP).expect("read committed offsets");
    let total: i64 = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => n,
            other => panic!("partition {} has no committed offset: {other:?}", e.partition()),
        })
        .sum();
    assert_eq!(total, MESSAGES as i64, "committed offsets cover every message");

    let admin = kafka::admin(&endpoints, "smoke-admin").expect("admin");
    let _ = admin.delete_topics(&[&topic], &rdkafka::admin::AdminOptions::new()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cassandra_create_keyspace_and_table_then_write_and_read() {
    let endpoints = endpoints();
    // Default session settings: full schema metadata and schema agreement.
    let session = cassandra::session(&endpoints).await.expect("session");
    let keyspace = unique_name("smoke_cql");
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE {keyspace} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
            ),
            &[],
        )
        .await
        .expect("create keyspace");
    session
        .query_unpaged(
            format!(
                "CREATE TABLE {keyspace}.points (series text, ts timestamp, value double, \
                 PRIMARY KEY (series, ts))"
            ),
            &[],
        )
        .await
        .expect("create table");
    session.await_schema_agreement().await.expect("schema agreement");

    let insert = session
        .prepare(format!("INSERT INTO {keyspace}.points (series, ts, value) VALUES (?, ?, ?)"))
        .await
        .expect("prepare insert");
    let points = [(1_000i64, 1.5f64), (2_000, 2.5), (3_000, -4.0)];
    for (ms, value) in points {
        session
            .execute_unpaged(&insert, ("cpu", scylla::value::CqlTimestamp(ms), value))
            .await
            .expect("insert");
    }
    let rows: Vec<(scylla::value::CqlTimestamp, f64)> = session
        .query_unpaged(
            format!("SELECT ts, value FROM {keyspace}.points WHERE series = ?"),
            ("cpu",),
        )
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows")
        .rows::<(scylla::value::CqlTimestamp, f64)>()
        .expect("row types")
        .collect::<Result<_, _>>()
        .expect("decode rows");
    let rows: Vec<(i64, f64)> = rows.into_iter().map(|(ts, v)| (ts.0, v)).collect();
    assert_eq!(rows, points, "rows come back clustered by timestamp");

    // The driver's schema metadata sees the new table (metadata is on).
    session.refresh_metadata().await.expect("refresh metadata");
    let state = session.get_cluster_state();
    let ks = state.get_keyspace(&keyspace).expect("keyspace in driver metadata");
    assert!(ks.tables.contains_key("points"), "table in driver metadata");

    session.query_unpaged(format!("DROP KEYSPACE {keyspace}"), &[]).await.expect("drop keyspace");
}

#[tokio::test(flavor = "multi_thread")]
async fn zookeeper_ephemeral_sequential_node_goes_with_its_session() {
    let endpoints = endpoints();
    let session_timeout = Duration::from_secs(6);
    let observer = zookeeper::connect(&endpoints, session_timeout).await.expect("observer session");
    let owner = zookeeper::connect(&endpoints, session_timeout).await.expect("owner session");

    let root = format!("/{}", unique_name("smoke_zk"));
    observer
        .create(&root, b"", &CreateMode::Persistent.with_acls(Acls::anyone_all()))
        .await
        .expect("create root");
    let (_, sequence) = owner
        .create(
            &format!("{root}/member-"),
            b"owner",
            &CreateMode::EphemeralSequential.with_acls(Acls::anyone_all()),
        )
        .await
        .expect("create ephemeral sequential node");
    let path = format!("{root}/member-{sequence}");

    // The two sessions may sit on different servers, and ZooKeeper does not
    // promise one client sees another's write at once: a follower may lag
    // the leader. sync() brings the observer's server up to date first.
    observer.sync(&root).await.expect("sync");
    let (stat, deleted) = observer.check_and_watch_stat(&path).await.expect("stat");
    let stat = stat.expect("the observer sees the node");
    assert_eq!(stat.ephemeral_owner, owner.session_id().0, "owned by the owner's session");
    assert_eq!(
        observer.list_children(&root).await.expect("list"),
        vec![format!("member-{sequence}")]
    );

    assert!(zookeeper::close(owner, STEP).await, "owner session closed");
    let event = tokio::time::timeout(STEP, deleted.changed()).await.expect("deletion seen in time");
    assert_eq!(event.event_type, EventType::NodeDeleted);
    assert_eq!(observer.check_stat(&path).await.expect("stat"), None, "node gone");

    observer.delete(&root, None).await.expect("delete root");
    zookeeper::close(observer, STEP).await;
}
