//! A worker cut off from ZooKeeper for less than its session timeout: it
//! keeps ingesting with its current configuration, and picks up the change
//! made meanwhile once it is back. The worker talks to one ZooKeeper node
//! only, and that node (a follower, so the other two keep a quorum and
//! herdctl can still write) is frozen with SIGSTOP. Alone in its test binary:
//! it freezes a server of the shared stack.

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_exactly, events, herdctl, identities, produce_over, session, start_coordinator,
    start_worker, Names,
};
use herd_testkit::{endpoints, zookeeper_nodes};

/// Resumes the frozen ZooKeeper node when dropped, even if the test fails.
struct Thaw(i32);

impl Drop for Thaw {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid the stack script recorded for this server.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_cut_off_from_zookeeper_keeps_ingesting_and_picks_up_changes_made_meanwhile() {
    let names = Names::new("zkcut");
    herd_clients::kafka::ensure_topic(&endpoints(), &names.topic, 2, 1).await.expect("topic");
    let nodes = zookeeper_nodes();
    let (follower, pid, _, port) = nodes
        .iter()
        .find(|n| n.2 == "follower")
        .cloned()
        .unwrap_or_else(|| panic!("no follower in {nodes:?}"));
    let others: Vec<String> =
        nodes.iter().filter(|n| n.0 != follower).map(|n| format!("127.0.0.1:{}", n.3)).collect();
    let others = others.join(",");
    let ctl = |edit: &str| {
        let (code, out, err) =
            herdctl(&["--zookeeper", &others, "config", "--root", &names.root, "set", edit]);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .next()
            .and_then(|l| l.strip_prefix("version "))
            .and_then(|v| v.parse::<u64>().ok())
            .expect("version")
    };
    let v1 = ctl("batch_max_rows=500");
    let _coordinator = start_coordinator(&names, &format!("{}-coord", names.keyspace));
    // Only the follower, and a session timeout with room for a 3 s freeze.
    let mut args = names.worker_args(&[]);
    let at = args.iter().position(|a| a == "--session-timeout-ms").expect("worker_args sets it");
    args[at + 1] = "8000".into();
    args.extend(["--zookeeper".into(), format!("127.0.0.1:{port}")]);
    let mut worker = start_worker("zkcut-w", &args);

    let all = events("zkcut", 60_000, 300);
    let producing = produce_over(&names, &all, 15, 30);
    let zk =
        herd_clients::zookeeper::connect(&endpoints(), Duration::from_secs(10)).await.expect("zk");
    let version_of = |zk: &zookeeper_client::Client| {
        let (zk, root) = (zk.clone(), names.root.clone());
        async move {
            zk.sync(&format!("{root}/workers")).await.ok();
            herd_coord::membership::workers(&zk, &root)
                .await
                .unwrap_or_default()
                .first()
                .map(|w| w.config_version)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while version_of(&zk).await != Some(v1) || names.checkpointed_and_end().await.0 == 0 {
        assert!(
            Instant::now() < deadline,
            "the worker did not start on version {v1}\n{}",
            worker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Freeze the worker's only ZooKeeper node for 3 s and change the configuration meanwhile.
    // SAFETY: kill(2) on the pid the stack script recorded for this server.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0, "SIGSTOP {follower}");
    let thaw = Thaw(pid);
    let frozen_at = Instant::now();
    let (before, _) = names.checkpointed_and_end().await;
    let v2 = ctl("batch_max_rows=800");
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(frozen_at.elapsed())).await;
    let (during, _) = names.checkpointed_and_end().await;
    assert!(
        during > before,
        "ingestion went on while ZooKeeper was unreachable: {before} -> {during}"
    );
    assert_eq!(
        version_of(&zk).await,
        Some(v1),
        "the cut-off worker could not have heard of version {v2}"
    );
    drop(thaw);

    let back = Instant::now();
    while version_of(&zk).await != Some(v2) {
        assert!(
            back.elapsed() < Duration::from_secs(60),
            "the worker did not pick up version {v2}\n{}",
            worker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "version {v2} applied {} ms after the ZooKeeper node came back",
        back.elapsed().as_millis()
    );
    assert!(
        !worker.log().contains("session ended"),
        "the worker kept its session\n{}",
        worker.log_tail()
    );
    producing.await.unwrap();
    names.wait_all_checkpointed(Duration::from_secs(300)).await;
    assert!(worker.terminate(Duration::from_secs(60)).success(), "{}", worker.log_tail());
    herd_clients::zookeeper::close(zk, Duration::from_secs(2)).await;
    assert_exactly(&session().await, &names.keyspace, &identities(&all)).await;
    names.cleanup().await;
}
