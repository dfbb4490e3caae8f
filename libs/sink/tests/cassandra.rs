//! The sink against the real Cassandra of the local stack.

use herd_config::Shard;
use std::collections::BTreeMap;
use std::sync::Arc;

use herd_model::Event;
use herd_sink::blocks::{Block, BlockKey, BlockWriter};
use herd_sink::fencing::{FenceError, Fencing};
use herd_sink::read::PointReader;
use herd_sink::schema::migrate;
use herd_sink::Layout;
use herd_sink::{RowWriter as Writer, SinkArgs, SinkError};
use herd_testkit::{endpoints, unique_name};
use scylla::client::session::Session;
use scylla::value::CqlTimestamp;

fn args(keyspace: &str, bucket_secs: u64) -> SinkArgs {
    layout_args(keyspace, bucket_secs, "rows")
}

fn layout_args(keyspace: &str, bucket_secs: u64, layout: &str) -> SinkArgs {
    SinkArgs {
        keyspace: keyspace.into(),
        replication: "simple:1".into(),
        bucket_secs,
        ttl_secs: 0,
        write_timestamp: herd_sink::WriteTimestamp::EventTime,
        write_timeout_ms: 10_000,
        layout: layout.parse().expect("rows or blocks"),
        write_consistency: herd_sink::settings::WriteConsistency::LocalQuorum,
        serial_consistency: herd_sink::settings::SerialLevel::Serial,
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
    count_in(session, ks, "points").await
}

async fn count_in(session: &Session, ks: &str, table: &str) -> i64 {
    session
        .query_unpaged(format!("SELECT count(*) FROM {ks}.{table}"), &[])
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

    assert_eq!(migrate(&session, &settings).await.expect("first migrate"), vec![1, 2, 3, 4, 5]);
    assert_eq!(
        migrate(&session, &settings).await.expect("second migrate"),
        Vec::<i32>::new(),
        "migrations run once"
    );
    // Interrupted after adding its column but before being recorded: run
    // again, the added column is found and not added twice.
    session
        .query_unpaged(format!("DELETE FROM {ks}.herd_migrations WHERE version = 4"), ())
        .await
        .unwrap();
    assert_eq!(migrate(&session, &settings).await.expect("migrate again"), vec![4]);

    // The bucket width decides where rows live: changing it is refused.
    let changed = args(&ks, 60).validate().unwrap();
    match migrate(&session, &changed).await {
        Err(e @ SinkError::SettingChanged { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("bucket-secs = 3600") && msg.contains("configured with 60"),
                "{msg}"
            );
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

    // herd's own reader gives the same, oldest first in a range, newest first for the latest.
    let pinned = herd_sink::schema::pinned(&session, &ks).await.unwrap().expect("pinned settings");
    assert_eq!(pinned, herd_sink::schema::Pinned { bucket_ms: hour, layout: Layout::Rows });
    let reader = PointReader::prepare(&session, &ks, pinned).await.expect("reader");
    let range = reader.range(&session, "a", "cpu", 0, 2 * hour).await.unwrap();
    assert_eq!(range.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 4]);
    assert_eq!(range[0], events[0]);
    let latest = reader.latest(&session, "a", "cpu", 2, 2 * hour).await.unwrap();
    assert_eq!(latest.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 2]);

    session.query_unpaged(format!("DROP KEYSPACE {ks}"), &[]).await.unwrap();
}

/// A newer epoch fences the older owner at the database: its checkpoint
/// commits are refused, the new owner resumes from the last accepted one.
#[tokio::test(flavor = "multi_thread")]
async fn a_newer_epoch_fences_the_older_owner_at_the_database() {
    let session = Arc::new(herd_clients::cassandra::session(&endpoints()).await.expect("session"));
    let ks = unique_name("fence");
    let settings = args(&ks, 3600).validate().unwrap();
    migrate(&session, &settings).await.expect("migrate");
    let f = Fencing::prepare(&session, &settings).await.expect("prepare");

    let a = f.claim(&session, &Shard::new("events", 0), 1, "worker-a").await.expect("first claim");
    assert_eq!(a.next_offset, None, "a new shard starts from the beginning");
    f.commit(&session, &Shard::new("events", 0), 1, 100, Some(80), Some(&[1, 2, 3]))
        .await
        .expect("owner commits");

    let b = f.claim(&session, &Shard::new("events", 0), 2, "worker-b").await.expect("newer grant");
    assert_eq!(
        (b.next_offset, b.window_start, b.dedup.as_deref()),
        (Some(100), Some(80), Some(&[1u8, 2, 3][..])),
        "the new owner resumes from the last checkpoint, with the window open there and its memory"
    );

    // The old owner, not knowing it lost the shard, tries to commit.
    match f.commit(&session, &Shard::new("events", 0), 1, 150, None, None).await {
        Err(FenceError::Fenced { current_epoch: 2, current_owner, .. }) => {
            assert_eq!(current_owner, "worker-b")
        }
        other => panic!("a stale owner's commit must be refused, got {other:?}"),
    }
    let stored = f.read(&session, &Shard::new("events", 0)).await.unwrap().unwrap();
    assert_eq!(
        (stored.epoch, stored.next_offset),
        (2, Some(100)),
        "the refused commit changed nothing"
    );
    f.commit(&session, &Shard::new("events", 0), 2, 200, None, None)
        .await
        .expect("the owner commits");

    // Old or equal epochs cannot claim back; other shards are independent.
    for epoch in [1, 2] {
        assert!(
            matches!(
                f.claim(&session, &Shard::new("events", 0), epoch, "worker-a").await,
                Err(FenceError::Fenced { .. })
            ),
            "a claim at epoch {epoch} must be refused"
        );
    }
    f.claim(&session, &Shard::new("events", 1), 1, "worker-a").await.expect("another shard");
    // The holder of a grant may claim it again (a restarted shard) and resumes from its checkpoint.
    let again = f
        .claim(&session, &Shard::new("events", 0), 2, "worker-b")
        .await
        .expect("same grant, same owner");
    assert_eq!(
        (again.next_offset, again.window_start),
        (Some(200), None),
        "a window boundary clears the window start"
    );

    // Concurrent claims: whatever the interleaving, the highest epoch ends up owning.
    let claims = (1..=10).map(|epoch| {
        let (f, session) = (f.clone(), session.clone());
        tokio::spawn(async move {
            f.claim(&session, &Shard::new("events", 7), epoch, &format!("w{epoch}")).await
        })
    });
    let results = futures::future::join_all(claims).await;
    assert!(results[9].as_ref().unwrap().is_ok(), "the highest epoch's claim succeeds");
    let owner = f.read(&session, &Shard::new("events", 7)).await.unwrap().unwrap();
    assert_eq!((owner.epoch, owner.owner.as_str()), (10, "w10"));

    session.query_unpaged(format!("DROP KEYSPACE {ks}"), &[]).await.unwrap();
}

/// The blocks layout: pinned per keyspace; a window written again (a later
/// flush with more messages, a replay, a paused former owner's late write)
/// stays one block holding the largest content; readers drop an event found
/// in two blocks.
#[tokio::test(flavor = "multi_thread")]
async fn blocks_are_pinned_rewritten_in_place_and_read_back_once() {
    let session = Arc::new(herd_clients::cassandra::session(&endpoints()).await.expect("session"));
    let ks = unique_name("blocks");
    let settings = layout_args(&ks, 3600, "blocks").validate().unwrap();
    migrate(&session, &settings).await.expect("migrate");
    match migrate(&session, &args(&ks, 3600).validate().unwrap()).await {
        Err(e @ SinkError::SettingChanged { .. }) => {
            assert!(e.to_string().contains("layout = blocks"), "{e}")
        }
        other => panic!("a rows process on a blocks keyspace must be refused, got {other:?}"),
    }
    let writer = BlockWriter::prepare(session.clone(), settings).await.expect("prepare");
    let hour = 3_600_000;
    let block = |window_start: i64, seqs: &[u64], messages: u32| Block {
        key: BlockKey {
            series: "a".into(),
            bucket: 0,
            metric: "cpu".into(),
            topic: "t".into(),
            partition: 0,
            window_start,
        },
        points: herd_sink::block::Points::from_events(
            &seqs.iter().map(|&s| event("a", "cpu", 10 * s as i64, s)).collect::<Vec<_>>(),
        ),
        tags: vec![0; seqs.len()],
        messages,
        fresh: seqs.len() as u32,
        counted: Vec::new(),
        resolutions: std::sync::Arc::new([60]),
    };
    let partial = block(100, &[1, 2], 1);
    let whole = block(100, &[1, 2, 3, 4], 3);
    writer.write(&partial).await.unwrap();
    writer.write(&whole).await.unwrap();
    // A replay of the whole window, then a former owner's late write of its partial one.
    writer.write(&whole).await.unwrap();
    writer.write(&partial).await.unwrap();
    assert_eq!(count_in(&session, &ks, "blocks").await, 1, "one window, one block");
    let pinned = herd_sink::schema::pinned(&session, &ks).await.unwrap().unwrap();
    assert_eq!(pinned.layout, Layout::Blocks);
    let reader = PointReader::prepare(&session, &ks, pinned).await.expect("reader");
    let seqs = |v: Vec<Event>| v.into_iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(reader.range(&session, "a", "cpu", 0, hour).await.unwrap()),
        vec![1, 2, 3, 4],
        "the larger block won"
    );
    // Its rollups rode with it: the larger block's partials won too.
    let rollups = herd_sink::read::RollupReader::prepare(&session, &ks, pinned).await.unwrap();
    let minute = rollups.range(&session, "a", "cpu", 60, 0, hour).await.unwrap();
    assert_eq!(minute.blocks_without, 0);
    assert_eq!(
        minute.buckets.iter().map(|p| (p.bucket, p.count)).collect::<Vec<_>>(),
        vec![(0, 4)],
        "the whole window's partial, once"
    );

    // Event 4 sent twice by its producer, the copy in the next window (not
    // counted there); a point in the next bucket.
    let mut copy = block(103, &[4, 5], 2);
    copy.counted = vec![false, true];
    writer.write(&copy).await.unwrap();
    let minute = rollups.range(&session, "a", "cpu", 60, 0, hour).await.unwrap();
    assert_eq!(
        minute.buckets.iter().map(|p| (p.count, p.sum)).collect::<Vec<_>>(),
        vec![(5, 15.0)],
        "merged over both windows, the copy left out"
    );
    let mut next_bucket = block(105, &[], 1);
    next_bucket.key.bucket = hour;
    next_bucket.points = herd_sink::block::Points::from_events(&[event("a", "cpu", hour + 1, 6)]);
    next_bucket.tags = vec![0];
    writer.write(&next_bucket).await.unwrap();
    assert_eq!(
        seqs(reader.range(&session, "a", "cpu", 0, 2 * hour).await.unwrap()),
        vec![1, 2, 3, 4, 5, 6],
        "4 once"
    );
    assert_eq!(
        seqs(reader.range(&session, "a", "cpu", 15, 45).await.unwrap()),
        vec![2, 3, 4],
        "ts 20 to 40"
    );
    assert_eq!(
        seqs(reader.latest(&session, "a", "cpu", 3, 2 * hour).await.unwrap()),
        vec![6, 5, 4]
    );
    let back = reader.range(&session, "a", "cpu", 0, 11).await.unwrap();
    assert_eq!(back, vec![event("a", "cpu", 10, 1)], "every field back as written");

    session.query_unpaged(format!("DROP KEYSPACE {ks}"), &[]).await.unwrap();
}
