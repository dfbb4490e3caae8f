//! The sink against the real Cassandra of the local stack.

use std::collections::BTreeMap;
use std::sync::Arc;

use herd_model::Event;
use herd_sink::schema::migrate;
use herd_sink::fencing::{FenceError, Fencing};
use herd_sink::{SinkArgs, SinkError, Writer};
use herd_testkit::{endpoints, unique_name};
use scylla::client::session::Session;
use scylla::value::CqlTimestamp;

fn args(keyspace: &str, bucket_secs: u64) -> SinkArgs {
    SinkArgs {
        keyspace: keyspace.into(),
        replication: "simple:1".into(),
        bucket_secs,
        ttl_secs: 0,
        write_timestamp: "event-time".into(),
        write_timeout_ms: 10_000,
    }
}

fn event(series: &str, metric: &str, ts: i64, seq: u64) -> Event {
    Event {
        series: series.into(),
        metric: metric.into(),
        ts,
        value: seq as f64,
        tags: BTreeMap::from([("dc".into(), "eu".into())]),
        producer: "test".into(),
        seq,
    }
}

async fn count(session: &Session, ks: &str) -> i64 {
    session
        .query_unpaged(format!("SELECT count(*) FROM {ks}.points"), &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row::<(i64,)>()
        .unwrap()
        .0
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_writes_replays_and_documented_queries() {
    let session = Arc::new(herd_clients::cassandra::session(&endpoints()).await.expect("session"));
    let ks = unique_name("sink");
    let settings = args(&ks, 3600).validate().unwrap();

    assert_eq!(migrate(&session, &settings).await.expect("first migrate"), vec![1, 2]);
    assert_eq!(
        migrate(&session, &settings).await.expect("second migrate"),
        Vec::<i32>::new(),
        "migrations run once"
    );

    // The bucket width decides where rows live: changing it is refused.
    let changed = args(&ks, 60).validate().unwrap();
    match migrate(&session, &changed).await {
        Err(e @ SinkError::SettingChanged { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("bucket-secs = 3600") && msg.contains("configured with 60"), "{msg}");
        }
        other => panic!("a changed bucket width must be refused, got {other:?}"),
    }

    let writer = Writer::prepare(session.clone(), settings).await.expect("prepare");
    let hour = 3_600_000;
    // Two buckets of series a, one of series b; two metrics in a's first bucket.
    let events: Vec<Event> = vec![
        event("a", "cpu", 10, 1),
        event("a", "cpu", 20, 2),
        event("a", "mem", 20, 3),
        event("a", "cpu", hour + 5, 4),
        event("b", "cpu", 30, 5),
    ];
    let groups: [&[usize]; 3] = [&[0, 1, 2], &[3], &[4]];
    for group in groups {
        let refs: Vec<&Event> = group.iter().map(|&i| &events[i]).collect();
        writer.write_partition(&refs).await.expect("write");
    }
    assert_eq!(count(&session, &ks).await, 5);

    // A replay writes the same primary keys: overwrites, no new rows.
    let replay: Vec<&Event> = [0, 1, 2].iter().map(|&i| &events[i]).collect();
    writer.write_partition(&replay).await.expect("replay");
    assert_eq!(count(&session, &ks).await, 5, "a replayed event is not a second row");

    // The range query of libs/sink/README.md.
    let rows: Vec<(CqlTimestamp, f64)> = session
        .query_unpaged(
            format!(
                "SELECT ts, value FROM {ks}.points WHERE series = ? AND bucket = ? AND metric = ? \
                 AND ts >= ? AND ts < ?"
            ),
            ("a", CqlTimestamp(0), "cpu", CqlTimestamp(0), CqlTimestamp(hour)),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .rows::<(CqlTimestamp, f64)>()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows, vec![(CqlTimestamp(20), 2.0), (CqlTimestamp(10), 1.0)], "newest first");

    // The latest-N query: the head of the partition.
    let latest: (CqlTimestamp, f64) = session
        .query_unpaged(
            format!("SELECT ts, value FROM {ks}.points WHERE series = ? AND bucket = ? AND metric = ? LIMIT 1"),
            ("a", CqlTimestamp(hour), "cpu"),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row()
        .unwrap();
    assert_eq!(latest, (CqlTimestamp(hour + 5), 4.0));

    session.query_unpaged(format!("DROP KEYSPACE {ks}"), &[]).await.unwrap();
}

/// A newer epoch fences the older owner at the database: its checkpoint
/// commits are refused, the new owner resumes from the last accepted one.
#[tokio::test(flavor = "multi_thread")]
async fn a_newer_epoch_fences_the_older_owner_at_the_database() {
    let session = Arc::new(herd_clients::cassandra::session(&endpoints()).await.expect("session"));
    let ks = unique_name("fence");
    migrate(&session, &args(&ks, 3600).validate().unwrap()).await.expect("migrate");
    let f = Fencing::prepare(&session, &ks).await.expect("prepare");

    let a = f.claim(&session, "events", 0, 1, "worker-a").await.expect("first claim");
    assert_eq!(a.next_offset, None, "a new shard starts from the beginning");
    f.commit(&session, "events", 0, 1, 100).await.expect("owner commits");

    let b = f.claim(&session, "events", 0, 2, "worker-b").await.expect("newer grant");
    assert_eq!(b.next_offset, Some(100), "the new owner resumes from the last checkpoint");

    // The old owner, not knowing it lost the shard, tries to commit.
    match f.commit(&session, "events", 0, 1, 150).await {
        Err(FenceError::Fenced { current_epoch: 2, current_owner, .. }) => assert_eq!(current_owner, "worker-b"),
        other => panic!("a stale owner's commit must be refused, got {other:?}"),
    }
    let stored = f.read(&session, "events", 0).await.unwrap().unwrap();
    assert_eq!((stored.epoch, stored.next_offset), (2, Some(100)), "the refused commit changed nothing");
    f.commit(&session, "events", 0, 2, 200).await.expect("the owner commits");

    // Old or equal epochs cannot claim back; other shards are independent.
    for epoch in [1, 2] {
        assert!(
            matches!(f.claim(&session, "events", 0, epoch, "worker-a").await, Err(FenceError::Fenced { .. })),
            "a claim at epoch {epoch} must be refused"
        );
    }
    f.claim(&session, "events", 1, 1, "worker-a").await.expect("another shard");
    // The holder of a grant may claim it again (a restarted shard) and resumes from its checkpoint.
    let again = f.claim(&session, "events", 0, 2, "worker-b").await.expect("same grant, same owner");
    assert_eq!(again.next_offset, Some(200));

    // Concurrent claims: whatever the interleaving, the highest epoch ends up owning.
    let claims = (1..=10).map(|epoch| {
        let (f, session) = (f.clone(), session.clone());
        tokio::spawn(async move { f.claim(&session, "events", 7, epoch, &format!("w{epoch}")).await })
    });
    let results = futures::future::join_all(claims).await;
    assert!(results[9].as_ref().unwrap().is_ok(), "the highest epoch's claim succeeds");
    let owner = f.read(&session, "events", 7).await.unwrap().unwrap();
    assert_eq!((owner.epoch, owner.owner.as_str()), (10, "w10"));

    session.query_unpaged(format!("DROP KEYSPACE {ks}"), &[]).await.unwrap();
}
