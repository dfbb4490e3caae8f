//! Disaster recovery of the coordination state: the whole ZooKeeper
//! ensemble is stopped and its data deleted mid-stream, started again
//! empty, and `herdctl restore` brings back the backup taken before. The
//! new ensemble's zxids start low, below the grant epochs Cassandra holds,
//! so without the restore's epoch floor every claim would be refused for
//! ever; with it, the workers resume at their checkpoints and every event
//! is stored exactly once. The live configuration comes back at its
//! version. Alone in its test binary: it wipes the shared ensemble.

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_exactly, events, herdctl, identities, produce_over, session, start_coordinator,
    start_worker, Names,
};
use herd_testkit::{endpoints, stack};

/// Starts the ensemble again if the test fails between wipe and restart.
struct Restart;

impl Drop for Restart {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = std::panic::catch_unwind(|| stack(&["up"]));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wiped_zookeeper_restored_from_a_backup_resumes_at_the_checkpoints_exactly_once() {
    let names = Names::with_layout("zkrestore", "blocks");
    herd_clients::kafka::ensure_topic(&endpoints(), &names.topic, 2, 1).await.expect("topic");
    let mut coordinator = start_coordinator(&names, "c1");
    let mut worker = start_worker("w1", &names.worker_args(&[]));
    let (code, out, err) =
        herdctl(&["config", "--root", &names.root, "set", "block_flush_max_ms=700"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) =
        herdctl(&["config", "--root", &names.root, "set", "block_flush_max_ms=800"]);
    assert_eq!(code, 0, "{out}{err}");

    let events = events("zkrestore", 40_000, 50);
    let expected = identities(&events);
    let producer = produce_over(&names, &events, 30, 15);
    // Some of it stored and checkpointed before the disaster.
    let deadline = Instant::now() + Duration::from_secs(60);
    while names.checkpointed_and_end().await.0 == 0 {
        assert!(Instant::now() < deadline, "nothing checkpointed within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let file = std::env::temp_dir().join(format!("{}.backup.json", names.keyspace));
    // herdctl backup|restore FILE for this test's root and keyspace.
    let state = |command: &str| {
        herdctl(&[
            command,
            file.to_str().unwrap(),
            "--root",
            &names.root,
            "--keyspace",
            &names.keyspace,
        ])
    };
    let (code, out, err) = state("backup");
    assert_eq!(code, 0, "backup: {out}{err}");

    // The disaster: every ZooKeeper node stopped, its data deleted, started empty.
    let restart = Restart;
    stack(&["wipe", "zk1", "zk2", "zk3"]);
    stack(&["up"]);
    drop(restart);
    let (code, out, _) = herdctl(&["config", "--root", &names.root, "get"]);
    assert!(code != 0 || out.contains("version 0"), "the ensemble is empty: {out}");
    // Meanwhile the coordinator and the worker lose their sessions, open new
    // ones and a leader publishes grants at the new ensemble's low zxids.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let (code, out, err) = state("restore");
    assert_eq!(code, 0, "restore: {out}{err}");
    assert!(out.contains("epoch floor"), "{out}");
    // A second restore finds the nodes there and refuses nothing it wrote.
    let (code, out, err) = state("restore");
    assert_eq!(code, 0, "restore again: {out}{err}");

    producer.await.expect("producer");
    names.wait_all_checkpointed(Duration::from_secs(120)).await;
    assert_exactly(&session().await, &names.keyspace, &expected).await;
    assert!(worker.is_running(), "{}", worker.log_tail());
    assert!(coordinator.is_running(), "{}", coordinator.log_tail());

    // The configuration is back at its version, with its history.
    let (code, out, err) = herdctl(&["config", "--root", &names.root, "get"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("version 2"), "{out}");
    assert!(out.contains("block_flush_max_ms=800"), "{out}");
    let (code, out, err) =
        herdctl(&["config", "--root", &names.root, "set", "block_flush_max_ms=900"]);
    assert_eq!(code, 0, "a change after the restore: {out}{err}");
    assert!(out.contains("version 3"), "{out}");

    worker.terminate(Duration::from_secs(30));
    coordinator.terminate(Duration::from_secs(30));
    let _ = std::fs::remove_file(&file);
    names.cleanup().await;
}
