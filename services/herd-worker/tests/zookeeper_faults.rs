//! A ZooKeeper node killed (kill -9) under a running deployment, first the
//! ensemble's leader, then a follower: the two remaining nodes keep a quorum,
//! workers and the coordinator reconnect, and ingestion goes on, exactly
//! once. Alone in its test binary, since it kills servers of the shared stack
//! (cargo runs test binaries one at a time); the stack is restored even when
//! the test fails.

mod common;

use std::time::{Duration, Instant};

use common::{assert_exactly, events, identities, messages, session, start_coordinator, start_worker, Encoding, Names};
use herd_testkit::kafka::produce;
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
    let (name, pid, _) = nodes
        .iter()
        .find(|(_, _, m)| m == mode)
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
        assert!(Instant::now() < deadline, "ingestion stalled {what}: {checkpointed} checkpointed, was {from}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ingestion_continues_when_a_zookeeper_node_is_killed_leader_or_follower() {
    let names = Names::new("zkfault");
    herd_clients::kafka::ensure_topic(&endpoints(), &names.topic, 4, 1).await.expect("topic");
    let _coordinator = start_coordinator(&names, &format!("{}-coord", names.keyspace));
    let args = names.worker_args(&["--batch-max-rows", "1000"]);
    let mut w1 = start_worker("zk-w1", &args);
    let mut w2 = start_worker("zk-w2", &args);
    let all = events("zk", 150_000, 300);
    let outgoing = messages(&all, Encoding::Arrow(199));
    let producing = {
        let producer = herd_clients::kafka::producer(&endpoints(), "zk-producer").expect("producer");
        let topic = names.topic.clone();
        tokio::spawn(async move {
            // About 40 s of steady traffic.
            for part in outgoing.chunks(outgoing.len().div_ceil(40)) {
                produce(&producer, &topic, part).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let mut checkpointed = wait_progress(&names, 0, 20, "before any fault").await;

    let _restore = RestoreStack;
    for mode in ["leader", "follower"] {
        let killed = kill_zookeeper(mode);
        eprintln!("killed ZooKeeper {mode} {killed}");
        // Ingestion goes on with two of three nodes.
        checkpointed = wait_progress(&names, checkpointed, 40, &format!("after the ZooKeeper {mode} {killed} was killed")).await;
        assert!(w1.is_running() && w2.is_running(), "workers keep running\n{}\n{}", w1.log_tail(), w2.log_tail());
        stack(&["up"]);
    }
    producing.await.unwrap();
    names.wait_all_checkpointed(Duration::from_secs(300)).await;
    assert!(w1.terminate(Duration::from_secs(60)).success(), "{}", w1.log_tail());
    assert!(w2.terminate(Duration::from_secs(60)).success(), "{}", w2.log_tail());
    assert_exactly(&session().await, &names.keyspace, &identities(&all)).await;
    names.cleanup().await;
}
