//! herd-coordinator processes on the real 3-node ZooKeeper ensemble.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herd_coord::assign::Assignment;
use herd_coord::election::{current_leader, LeaderInfo};
use herd_coord::membership::{self, WorkerInfo};
use herd_testkit::herd::SESSION_TIMEOUT_MS;
use herd_testkit::process::Process;
use herd_testkit::{endpoints, unique_name};
use zookeeper_client::Client;

fn start(name: &str, root: &str) -> Process {
    herd_testkit::herd::coordinator(name, root, &[], &[])
}

async fn observer() -> Client {
    herd_clients::zookeeper::connect(&endpoints(), Duration::from_secs(10))
        .await
        .expect("observer session")
}

/// Waits until `{root}/leader` names `id`; returns it and how long it took.
async fn wait_leader(zk: &Client, root: &str, id: &str, limit: Duration) -> (LeaderInfo, Duration) {
    let started = Instant::now();
    loop {
        if let Some(info) = current_leader(zk, root).await.expect("read leader") {
            if info.id == id {
                return (info, started.elapsed());
            }
        }
        assert!(started.elapsed() < limit, "{id} did not lead within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_leads_after_the_leader_is_killed() {
    let root = format!("/{}", unique_name("elect"));
    let zk = observer().await;
    let mut a = start("coord-a", &root);
    let (first, _) = wait_leader(&zk, &root, "coord-a", Duration::from_secs(30)).await;
    let mut b = start("coord-b", &root);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        current_leader(&zk, &root).await.unwrap().unwrap().id,
        "coord-a",
        "one leader at a time"
    );
    assert!(b.is_running(), "the standby waits\n{}", b.log_tail());

    a.kill9();
    let (second, took) = wait_leader(&zk, &root, "coord-b", Duration::from_secs(60)).await;
    eprintln!(
        "failover after kill -9: {} ms (session timeout {SESSION_TIMEOUT_MS} ms)",
        took.as_millis()
    );
    assert!(
        second.epoch > first.epoch,
        "a new leader has a higher epoch: {} then {}",
        first.epoch,
        second.epoch
    );

    // A clean step-down removes the lock node at once.
    assert!(b.terminate(Duration::from_secs(20)).success(), "{}", b.log_tail());
    zk.sync(&format!("{root}/election")).await.unwrap();
    assert!(
        zk.list_children(&format!("{root}/election")).await.unwrap().is_empty(),
        "no candidate left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_leader_is_deposed_and_stands_again_as_a_standby_when_resumed() {
    let root = format!("/{}", unique_name("pause"));
    let zk = observer().await;
    let mut c = start("coord-c", &root);
    let (first, _) = wait_leader(&zk, &root, "coord-c", Duration::from_secs(30)).await;
    let mut d = start("coord-d", &root);
    tokio::time::sleep(Duration::from_secs(1)).await;

    c.signal(libc::SIGSTOP);
    let (second, took) = wait_leader(&zk, &root, "coord-d", Duration::from_secs(60)).await;
    eprintln!(
        "takeover from a paused leader: {} ms (session timeout {SESSION_TIMEOUT_MS} ms)",
        took.as_millis()
    );
    assert!(second.epoch > first.epoch);

    c.signal(libc::SIGCONT);
    // The resumed ex-leader learns its session expired and stands again as a
    // standby with a new session, without touching its successor's record.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c.log().contains("standing for election again") {
        assert!(
            Instant::now() < deadline,
            "the deposed leader did not stand again\n{}",
            c.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(c.is_running(), "{}", c.log_tail());
    assert_eq!(
        current_leader(&zk, &root).await.unwrap().unwrap(),
        second,
        "the successor's record stands"
    );
    zk.sync(&format!("{root}/election")).await.unwrap();
    assert_eq!(
        zk.list_children(&format!("{root}/election")).await.unwrap().len(),
        2,
        "two candidates again: the leader and the returned standby"
    );
    assert!(c.terminate(Duration::from_secs(20)).success(), "{}", c.log_tail());
    assert!(d.terminate(Duration::from_secs(20)).success(), "{}", d.log_tail());
}

async fn register(root: &str, id: &str) -> Client {
    let session = observer().await;
    let info =
        WorkerInfo { id: id.into(), address: "127.0.0.1:0".into(), capacity: 1, config_version: 0 };
    membership::register(&session, root, &info).await.expect("register");
    session
}

/// Polls the published assignment until `done` holds for it.
async fn wait_assignment(
    zk: &Client,
    root: &str,
    what: &str,
    done: impl Fn(&Assignment) -> bool,
) -> Assignment {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        zk.sync(root).await.unwrap();
        if let Some(doc) = membership::read_assignment(zk, root).await.unwrap() {
            let a = doc.target();
            if done(&a) {
                return a;
            }
        }
        assert!(Instant::now() < deadline, "no assignment where {what} within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn owners(a: &Assignment) -> BTreeMap<&str, usize> {
    let mut c = BTreeMap::new();
    for o in a.values() {
        *c.entry(o.as_str()).or_default() += 1;
    }
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn the_leader_assigns_partitions_to_registered_workers_and_moves_few() {
    let root = format!("/{}", unique_name("assign"));
    let topic = unique_name("assign_topic");
    herd_clients::kafka::ensure_topic(&endpoints(), &topic, 12, 1).await.expect("topic");
    let zk = observer().await;
    let _w1 = register(&root, "w1").await;
    let w2 = register(&root, "w2").await;
    let _w3 = register(&root, "w3").await;
    let args: Vec<String> =
        ["--root", &root, "--id", "coord", "--topics", &topic, "--metrics-addr", "127.0.0.1:0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let mut coordinator =
        Process::start(env!("CARGO_BIN_EXE_herd-coordinator"), "coord-assign", &args, &[]);

    let first = wait_assignment(&zk, &root, "3 workers have 4 shards each", |a| {
        a.len() == 12 && owners(a).values().all(|&n| n == 4) && owners(a).len() == 3
    })
    .await;

    let _w4 = register(&root, "w4").await;
    let second =
        wait_assignment(&zk, &root, "4 workers have 3 shards each", |a| owners(a).len() == 4).await;
    assert!(owners(&second).values().all(|&n| n == 3), "{:?}", owners(&second));
    let moved = second.iter().filter(|(s, o)| first[*s] != **o).count();
    assert_eq!(moved, 3, "only the new worker's share moves");

    herd_clients::zookeeper::close(w2, Duration::from_secs(10)).await;
    let third = wait_assignment(&zk, &root, "w2 is gone", |a| !owners(a).contains_key("w2")).await;
    for (shard, owner) in &second {
        if owner != "w2" {
            assert_eq!(&third[shard], owner, "{shard:?} was not w2's and must not move");
        }
    }
    assert_eq!(third.len(), 12);
    assert!(coordinator.terminate(Duration::from_secs(20)).success(), "{}", coordinator.log_tail());
    if let Ok(admin) = herd_clients::kafka::admin(&endpoints(), "test-cleanup") {
        let _ = admin.delete_topics(&[&topic], &rdkafka::admin::AdminOptions::new()).await;
    }
}
