//! Three Cassandra nodes, replication 3, under load: one node killed (kill
//! -9) for longer than the hint window, then restarted. Ingestion goes on
//! while it is down; the leading coordinator's view shows it down, then up;
//! a repair of it runs by itself under the repair lock; every event is
//! stored exactly once (read at QUORUM); and the restarted node alone holds
//! every event (read at ONE with the two others stopped), which without the
//! repair it would not: the writes after the hint window reached only the
//! two others.
//!
//! Alone in its test binary: it starts a stack of its own (one ZooKeeper,
//! Kafka, three Cassandra nodes on 127.0.0.1-3) on other ports, points this
//! process's HERD_* variables at it, and takes it down at the end.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{
    assert_exactly, events, identities, messages, session, start_worker, Encoding, Names,
};
use herd_coord::health::{read_view, ClusterView};
use herd_coord::jobs::{self, JobKind, JobState};
use herd_testkit::kafka::produce;
use herd_testkit::stack::OwnStack;
use herd_testkit::{endpoints, stack};

/// The cluster's max_hint_window in this test.
const HINT_WINDOW: Duration = Duration::from_secs(20);

fn own_stack() -> OwnStack {
    OwnStack::start(
        "cluster",
        &[
            ("HERD_ZK_PORT", "12181"),
            ("HERD_ZK_PEER_PORT", "12888"),
            ("HERD_ZK_ELECTION_PORT", "13888"),
            ("HERD_KAFKA_PORT", "19092"),
            ("HERD_KAFKA_CONTROLLER_PORT", "19093"),
            ("HERD_CASSANDRA_PORT", "19042"),
            ("HERD_CASSANDRA_STORAGE_PORT", "17000"),
            ("HERD_CASSANDRA_JMX_PORT", "17199"),
            ("HERD_CASSANDRA_MAX_HINT_WINDOW", "20s"),
        ],
        &["--zk-nodes", "1", "--cassandra-nodes", "3"],
    )
}

/// Waits until the published view satisfies `ok`; returns it and the time.
async fn wait_view(
    zk: &zookeeper_client::Client,
    root: &str,
    limit: Duration,
    what: &str,
    ok: impl Fn(&ClusterView) -> bool,
) -> (ClusterView, Duration) {
    let started = Instant::now();
    loop {
        if let Some(view) = read_view(zk, root).await.unwrap() {
            if ok(&view) {
                return (view, started.elapsed());
            }
            assert!(started.elapsed() < limit, "{what} not within {limit:?}: {view:#?}");
        }
        assert!(started.elapsed() < limit, "{what}: no view within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn node_up(view: &ClusterView, address: &str) -> Option<bool> {
    view.nodes.iter().find(|n| n.address == address).map(|n| n.up)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_down_past_the_hint_window_is_repaired_and_nothing_is_lost() {
    let own = own_stack();
    let names = Names::new("cluster");
    herd_clients::kafka::ensure_topic(&endpoints(), &names.topic, 4, 1).await.expect("topic");
    let producer =
        herd_clients::kafka::producer(&endpoints(), "cluster-producer").expect("producer");
    let zk = herd_clients::zookeeper::connect(&endpoints(), Duration::from_secs(10)).await.unwrap();

    let nodetool = std::env::var("HERD_NODETOOL").expect("the stack prints HERD_NODETOOL");
    // The hint window is read from the cluster itself.
    let _coordinator = herd_testkit::herd::coordinator(
        "cluster-coord",
        &names.root,
        &[&names.topic],
        &["--refresh-secs", "2", "--nodetool", &nodetool, "--cassandra-probe-ms", "500"],
    );
    let mut worker = start_worker("cluster-w", &names.worker_args(&["--replication", "simple:3"]));
    let (view, _) =
        wait_view(&zk, &names.root, Duration::from_secs(60), "three nodes up", |v| v.up() == 3)
            .await;
    assert_eq!(view.max_hint_window_ms, HINT_WINDOW.as_millis() as i64, "read from the cluster");

    let before = events("before", 20_000, 200);
    produce(&producer, &names.topic, &messages(&before, Encoding::JsonLines(100))).await;
    names.wait_all_checkpointed(Duration::from_secs(120)).await;

    // kill -9 the third node.
    let node3 = "127.0.0.3";
    // SAFETY: kill(2) on the pid of a server this test's stack started.
    unsafe { libc::kill(own.pid("cassandra3"), libc::SIGKILL) };
    let killed = Instant::now();
    let (_, detected) =
        wait_view(&zk, &names.root, Duration::from_secs(30), "node 3 seen down", |v| {
            node_up(v, node3) == Some(false)
        })
        .await;
    eprintln!("node 3 seen down {} ms after kill -9", detected.as_millis());

    // Ingestion goes on with one of three down: inside the hint window...
    let hinted = events("hinted", 20_000, 200);
    let started = Instant::now();
    produce(&producer, &names.topic, &messages(&hinted, Encoding::JsonLines(100))).await;
    names.wait_all_checkpointed(Duration::from_secs(120)).await;
    eprintln!(
        "with one of three nodes down: 20,000 events produced and checkpointed in {} ms",
        started.elapsed().as_millis()
    );
    // ...and past it, where no hints are kept for node 3.
    let since_kill = killed.elapsed();
    if since_kill < HINT_WINDOW + Duration::from_secs(5) {
        tokio::time::sleep(HINT_WINDOW + Duration::from_secs(5) - since_kill).await;
    }
    let unhinted = events("unhinted", 20_000, 200);
    produce(&producer, &names.topic, &messages(&unhinted, Encoding::JsonLines(100))).await;
    names.wait_all_checkpointed(Duration::from_secs(120)).await;
    assert!(worker.is_running(), "{}", worker.log_tail());
    // Every event exactly once, read at LOCAL_QUORUM (the session's
    // default) from the two nodes up; before node 3 is back, so that no
    // read repair can bring it what only the repair job should.
    let expected: BTreeSet<_> =
        [&before, &hinted, &unhinted].into_iter().flat_map(|e| identities(e)).collect();
    assert_exactly(&session().await, &names.keyspace, &expected).await;

    // Back: the view shows it up, and a repair of it runs by itself.
    stack(&["up"]);
    wait_view(&zk, &names.root, Duration::from_secs(120), "node 3 seen up again", |v| {
        node_up(v, node3) == Some(true)
    })
    .await;
    let started = Instant::now();
    let repair = loop {
        let all = jobs::list(&zk, &names.root).await.unwrap();
        let repair = all.into_iter().find(|j| {
            j.record.spec.kind == JobKind::Repair && j.record.spec.node.as_deref() == Some(node3)
        });
        if let Some(job) = repair.filter(|j| j.state.is_final()) {
            break job;
        }
        assert!(started.elapsed() < Duration::from_secs(180), "no repair of node 3 ended in time");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(repair.state, JobState::Succeeded, "{repair:#?}");
    assert_eq!(repair.record.spec.keyspace, names.keyspace);
    assert!(repair.record.reason.contains("longer than the hint window"), "{repair:#?}");
    assert_eq!(repair.record.attempts.len(), 1);
    assert_eq!(repair.record.attempts[0].by, "cluster-coord");
    eprintln!("repair: {:?}", repair.record.attempts[0].outcome);

    assert!(worker.is_running(), "{}", worker.log_tail());
    worker.terminate(Duration::from_secs(30));

    // Node 3 alone holds everything: the repair brought it what hints did not.
    stack(&["stop", "cassandra", "cassandra2"]);
    let alone = herd_clients::cassandra::session(&herd_config::Endpoints {
        cassandra_nodes: vec![herd_config::HostPort {
            host: "127.0.0.3".into(),
            port: std::num::NonZeroU16::new(19042).unwrap(),
        }],
        ..endpoints()
    })
    .await
    .expect("a session to node 3");
    let mut scan = scylla::statement::Statement::new(format!(
        "SELECT producer, seq FROM {}.points",
        names.keyspace
    ));
    scan.set_consistency(scylla::statement::Consistency::One);
    scan.set_page_size(5000);
    let mut on_node3 = BTreeSet::new();
    let mut pager =
        alone.query_iter(scan, &[]).await.unwrap().rows_stream::<(String, i64)>().unwrap();
    use futures::TryStreamExt;
    while let Some(row) = pager.try_next().await.unwrap() {
        on_node3.insert(row);
    }
    assert_eq!(on_node3.len(), expected.len(), "node 3 alone, at ONE, after the repair");
    assert!(on_node3 == expected, "node 3 holds other events than those produced");
    drop(own);
}
