//! herd-coordinator processes on the real 3-node ZooKeeper ensemble.

use std::time::{Duration, Instant};

use herd_coord::election::{current_leader, LeaderInfo};
use herd_testkit::process::Process;
use herd_testkit::{endpoints, unique_name};
use zookeeper_client::Client;

const SESSION_MS: u64 = 4000;

fn start(name: &str, root: &str) -> Process {
    let args: Vec<String> = ["--root", root, "--id", name, "--session-timeout-ms", &SESSION_MS.to_string()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    Process::start(env!("CARGO_BIN_EXE_herd-coordinator"), name, &args, &[("HERD_LOG", "info")])
}

async fn observer() -> Client {
    herd_clients::zookeeper::connect(&endpoints(), Duration::from_secs(10)).await.expect("observer session")
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
    assert_eq!(current_leader(&zk, &root).await.unwrap().unwrap().id, "coord-a", "one leader at a time");
    assert!(b.is_running(), "the standby waits\n{}", b.log_tail());

    a.kill9();
    let (second, took) = wait_leader(&zk, &root, "coord-b", Duration::from_secs(60)).await;
    eprintln!("failover after kill -9: {} ms (session timeout {SESSION_MS} ms)", took.as_millis());
    assert!(second.epoch > first.epoch, "a new leader has a higher epoch: {} then {}", first.epoch, second.epoch);

    // A clean step-down removes the lock node at once.
    assert!(b.terminate(Duration::from_secs(20)).success(), "{}", b.log_tail());
    zk.sync(&format!("{root}/election")).await.unwrap();
    assert!(zk.list_children(&format!("{root}/election")).await.unwrap().is_empty(), "no candidate left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_leader_is_deposed_and_exits_when_resumed() {
    let root = format!("/{}", unique_name("pause"));
    let zk = observer().await;
    let mut c = start("coord-c", &root);
    let (first, _) = wait_leader(&zk, &root, "coord-c", Duration::from_secs(30)).await;
    let mut d = start("coord-d", &root);
    tokio::time::sleep(Duration::from_secs(1)).await;

    c.signal(libc::SIGSTOP);
    let (second, took) = wait_leader(&zk, &root, "coord-d", Duration::from_secs(60)).await;
    eprintln!("takeover from a paused leader: {} ms (session timeout {SESSION_MS} ms)", took.as_millis());
    assert!(second.epoch > first.epoch);

    c.signal(libc::SIGCONT);
    let status = c.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "the deposed leader exits with an error\n{}", c.log_tail());
    assert_eq!(current_leader(&zk, &root).await.unwrap().unwrap(), second, "the successor's record stands");
    assert!(d.terminate(Duration::from_secs(20)).success(), "{}", d.log_tail());
}
