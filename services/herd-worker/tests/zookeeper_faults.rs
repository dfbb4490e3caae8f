//! ZooKeeper nodes killed (kill -9) under a running deployment: the
//! ensemble's leader, then a follower (two nodes keep a quorum: ingestion
//! goes on), then all three for 10 s (workers stop their shards once their
//! sessions count as expired, and resume when ZooKeeper is back). Exactly
//! once throughout. Alone in its test binary, since it kills servers of the shared stack
//! (cargo runs test binaries one at a time); the stack is restored even when
//! the test fails.

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_exactly, events, identities, messages, produce_over, session, start_coordinator,
    start_worker, Encoding, Names,
};
use herd_testkit::{endpoints, stack, zookeeper_nodes};

/// Restarts whatever the test killed when dropped.
struct RestoreStack;

impl Drop for RestoreStack {
    fn drop(&mut self) {
        stack(&["up"]);
    }
}

/// Kills the ZooKeeper node in `mode` with SIGKILL; returns its name.
fn kill_zookeeper(mode: &str) -> String {
    let nodes = zookeeper_nodes();
    let (name, pid, _, _) = nodes
        .iter()
        .find(|(_, _, m, _)| m == mode)
        .unwrap_or_else(|| panic!("no ZooKeeper {mode} in {nodes:?}; is the 3-node stack up?"))
        .clone();
    // SAFETY: kill(2) on the pid the stack script recorded for this server.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill -9 {name} ({pid})");
    name
}

/// Waits until the topic's checkpoints cover `at_least` more messages than `from`.
async fn wait_progress(names: &Names, from: i64, at_least: i64, what: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (checkpointed, _) = names.checkpointed_and_end().await;
        if checkpointed >= from + at_least {
            return checkpointed;
        }
        assert!(
            Instant::now() < deadline,
            "ingestion stalled {what}: {checkpointed} checkpointed, was {from}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ingestion_continues_when_a_zookeeper_node_is_killed_leader_or_follower() {
    let names = Names::new("zkfault");
    herd_clients::kafka::ensure_topic(&endpoints(), &names.topic, 4, 1).await.expect("topic");
    let mut coordinator = start_coordinator(&names, &format!("{}-coord", names.keyspace));
    let args = names.worker_args(&["--batch-max-rows", "1000"]);
    let mut w1 = start_worker("zk-w1", &args);
    let mut w2 = start_worker("zk-w2", &args);
    let all = events("zk", 150_000, 300);
    let outgoing_total = messages(&all, Encoding::Arrow(199)).len() as i64;
    // About 60 s of steady traffic, longer than the faults below take.
    let producing = produce_over(&names, &all, 60, 60);
    let mut checkpointed = wait_progress(&names, 0, 20, "before any fault").await;

    let _restore = RestoreStack;
    for mode in ["leader", "follower"] {
        let killed = kill_zookeeper(mode);
        eprintln!("killed ZooKeeper {mode} {killed}");
        // Ingestion goes on with two of three nodes.
        checkpointed = wait_progress(
            &names,
            checkpointed,
            40,
            &format!("after the ZooKeeper {mode} {killed} was killed"),
        )
        .await;
        assert!(
            w1.is_running() && w2.is_running(),
            "workers keep running\n{}\n{}",
            w1.log_tail(),
            w2.log_tail()
        );
        stack(&["up"]);
    }
    // The whole ensemble down for 10 s, longer than the session timeout:
    // once a client has had no server for its session timeout it counts its
    // session as expired, so the workers stop every shard (nothing runs
    // unowned), the coordinator steps down, and all of them start over with
    // new sessions when ZooKeeper is back; ingestion then resumes from the
    // checkpoints.
    let nodes = zookeeper_nodes();
    for (name, pid, _, _) in &nodes {
        // SAFETY: kill(2) on the pids the stack script recorded for its servers.
        assert_eq!(unsafe { libc::kill(*pid, libc::SIGKILL) }, 0, "kill -9 {name} ({pid})");
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    for w in [&w1, &w2] {
        assert!(
            w.log().contains("ZooKeeper session ended: stopping every shard"),
            "{}",
            w.log_tail()
        );
    }
    stack(&["up"]);
    let back_at = Instant::now();
    let (checkpointed, _) = names.checkpointed_and_end().await;
    let remaining = outgoing_total - checkpointed;
    assert!(remaining > 0, "production ended before the ensemble came back; lengthen it");
    wait_progress(
        &names,
        checkpointed,
        remaining.min(40),
        "after the ZooKeeper ensemble came back",
    )
    .await;
    eprintln!(
        "ZooKeeper ensemble back: ingestion progressed again within {} ms",
        back_at.elapsed().as_millis()
    );
    producing.await.unwrap();
    names.wait_all_checkpointed(Duration::from_secs(300)).await;
    assert!(w1.terminate(Duration::from_secs(60)).success(), "{}", w1.log_tail());
    assert!(w2.terminate(Duration::from_secs(60)).success(), "{}", w2.log_tail());
    // The coordinator lost its session with the ensemble and stood again.
    assert!(coordinator.terminate(Duration::from_secs(20)).success(), "{}", coordinator.log_tail());
    assert_exactly(&session().await, &names.keyspace, &identities(&all)).await;
    names.cleanup().await;
}
