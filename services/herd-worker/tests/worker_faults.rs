//! Workers following the coordinator on the real stack, with real faults:
//! kill -9, SIGSTOP past the session timeout, a worker joining, the leading
//! coordinator killed. Each ends with Cassandra holding exactly the produced
//! events.

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{
    assert_exactly, events, identities, messages, produce_over, session, start_coordinator,
    start_worker, Encoding, Names, SESSION_TIMEOUT_MS,
};
use herd_model::Event;
use herd_sink::fencing::{all_checkpoints, Checkpoint};
use herd_testkit::endpoints;
use herd_testkit::kafka::produce;

const DRAIN: Duration = Duration::from_secs(300);

/// At most four of these tests at once, as before they ran in both layouts:
/// eight workers' worth of load on two cores starved the paused-worker
/// test's heartbeats, and its session expired earlier than its bound allows
/// (3.33 s after SIGSTOP, bound 3.4 s, in a CI run).
async fn slot() -> tokio::sync::SemaphorePermit<'static> {
    static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);
    SLOTS.acquire().await.expect("never closed")
}

async fn setup(prefix: &str, partitions: i32, layout: &'static str) -> Names {
    let names = Names::with_layout(prefix, layout);
    herd_clients::kafka::ensure_topic(&endpoints(), &names.topic, partitions, 1)
        .await
        .expect("create topic");
    names
}

/// Ends a test: everything checkpointed, the workers stop cleanly, and
/// Cassandra holds exactly `all`.
async fn finish(names: &Names, workers: &mut [&mut common::Worker], all: &[Event]) {
    names.wait_all_checkpointed(DRAIN).await;
    for w in workers.iter_mut() {
        assert!(w.terminate(Duration::from_secs(60)).success(), "{}", w.log_tail());
    }
    assert_exactly(&session().await, &names.keyspace, &identities(all)).await;
    common::assert_verified(names, &[(&all[0].producer, all.len() as u64)]);
    names.cleanup().await;
}

/// (topic partition) -> checkpoint row, for the test's topic.
async fn checkpoints(names: &Names) -> BTreeMap<i32, Checkpoint> {
    all_checkpoints(&session().await, &names.keyspace)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|(shard, _)| *shard.topic == *names.topic)
        .map(|(shard, c)| (shard.partition, c))
        .collect()
}

/// Polls the checkpoint rows until `done` holds; returns them and the wait.
async fn wait_checkpoints(
    names: &Names,
    what: &str,
    done: impl Fn(&BTreeMap<i32, Checkpoint>) -> bool,
) -> (BTreeMap<i32, Checkpoint>, Duration) {
    let started = Instant::now();
    loop {
        let c = checkpoints(names).await;
        if done(&c) {
            return (c, started.elapsed());
        }
        assert!(started.elapsed() < DRAIN, "no checkpoints where {what} within {DRAIN:?}: {c:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `worker` has checkpointed at least one of its shards.
fn checkpointed_by(c: &BTreeMap<i32, Checkpoint>, worker: &str) -> bool {
    c.values().any(|c| c.owner == worker && c.next_offset.is_some())
}

fn owned_by(c: &BTreeMap<i32, Checkpoint>, worker: &str) -> BTreeSet<i32> {
    c.iter().filter(|(_, c)| c.owner == worker).map(|(p, _)| *p).collect()
}

in_both_layouts!(killed_worker:
    a_killed_worker_s_shards_resume_on_the_other_and_nothing_is_lost_or_duplicated,
    a_killed_worker_s_shards_resume_on_the_other_and_nothing_is_lost_or_duplicated_in_blocks_layout);
/// kill -9 of one of two workers mid-stream: the survivor claims its shards
/// (with higher epochs) and resumes them from their checkpoints; nothing is
/// lost or stored twice. Prints how long the shards were without an owner.
async fn killed_worker(layout: &'static str) {
    let _slot = slot().await;
    let names = setup("faultkill", 6, layout).await;
    let _coordinator = start_coordinator(&names, &format!("{}-coord", names.keyspace));
    let args = names.worker_args(&["--batch-max-rows", "2000"]);
    let mut w1 = start_worker("kill-w1", &args);
    let mut w2 = start_worker("kill-w2", &args);
    let all = events("kill", 120_000, 300);
    let producing = produce_over(&names, &all, 20, 20);

    let (before, _) = wait_checkpoints(&names, "both workers checkpoint", |c| {
        c.len() == 6
            && owned_by(c, "kill-w1").len() == 3
            && owned_by(c, "kill-w2").len() == 3
            && checkpointed_by(c, "kill-w1")
            && checkpointed_by(c, "kill-w2")
    })
    .await;
    let victims = owned_by(&before, "kill-w1");
    let checkpointed: i64 = before.values().filter_map(|c| c.next_offset).sum();
    w1.kill9();
    assert!(
        checkpointed < all.len().div_ceil(199) as i64,
        "the kill must land mid-stream: {checkpointed} messages checkpointed"
    );
    let (after, took) = wait_checkpoints(&names, "kill-w2 claimed every shard of kill-w1", |c| {
        owned_by(c, "kill-w2").len() == 6
    })
    .await;
    eprintln!(
        "dead-worker shard resume: {} ms from kill -9 to the survivor's claim of all {} shards (session timeout {SESSION_TIMEOUT_MS} ms)",
        took.as_millis(),
        victims.len()
    );
    for p in &victims {
        assert!(
            after[p].epoch > before[p].epoch,
            "partition {p}: the new grant's epoch must be higher: {:?} then {:?}",
            before[p],
            after[p]
        );
    }
    producing.await.unwrap();
    finish(&names, &mut [&mut w2], &all).await;
}

in_both_layouts!(paused_worker:
    a_worker_paused_past_its_session_timeout_is_fenced_and_rejoins_cleanly,
    a_worker_paused_past_its_session_timeout_is_fenced_and_rejoins_cleanly_in_blocks_layout);
/// A worker frozen (SIGSTOP) past its session timeout while it has writes
/// in flight: its shards move to the other worker; once resumed it stops
/// every shard, no checkpoint ever goes backwards (a stale one would be its
/// older offset, and Cassandra refuses it), it rejoins under newer epochs,
/// and nothing is lost or stored twice.
async fn paused_worker(layout: &'static str) {
    let _slot = slot().await;
    let names = setup("faultpause", 4, layout).await;
    let _coordinator = start_coordinator(&names, &format!("{}-coord", names.keyspace));
    let args = names.worker_args(&["--batch-max-rows", "1000"]);
    let mut w1 = start_worker("pause-w1", &args);
    let mut w2 = start_worker("pause-w2", &args);
    // Everything produced up front, so that the workers are busy throughout:
    // the frozen worker then has chunks in flight, and checkpoints to attempt
    // when it wakes up.
    let all = events("pause", 200_000, 300);
    produce(
        &herd_clients::kafka::producer(&endpoints(), "pause-producer").unwrap(),
        &names.topic,
        &messages(&all, Encoding::Arrow(199)),
    )
    .await;

    let (before, _) = wait_checkpoints(&names, "both workers checkpoint", |c| {
        c.len() == 4
            && owned_by(c, "pause-w1").len() == 2
            && owned_by(c, "pause-w2").len() == 2
            && checkpointed_by(c, "pause-w1")
            && checkpointed_by(c, "pause-w2")
    })
    .await;
    w1.signal(libc::SIGSTOP);
    let (checkpointed, end) = names.checkpointed_and_end().await;
    assert!(
        checkpointed < end,
        "the pause must land mid-stream: {checkpointed} of {end} checkpointed"
    );
    let paused_at = Instant::now();
    let (moved, took) = wait_checkpoints(&names, "pause-w2 claimed every shard", |c| {
        owned_by(c, "pause-w2").len() == 4
    })
    .await;
    eprintln!("paused worker's shards resumed elsewhere after {} ms (session timeout {SESSION_TIMEOUT_MS} ms)", took.as_millis());
    // The server counts the session timeout from the worker's last contact,
    // not from SIGSTOP: zookeeper-client pings after 3/20 of the session
    // timeout without sending, so that contact can be up to 600 ms earlier.
    let earliest_expiry = Duration::from_millis(SESSION_TIMEOUT_MS * 17 / 20);
    assert!(
        paused_at.elapsed() >= earliest_expiry,
        "the shards moved before the session could expire: {took:?} after SIGSTOP"
    );

    // Resume the frozen worker and watch every checkpoint while it wakes up.
    w1.signal(libc::SIGCONT);
    let mut last = moved.clone();
    let watch_until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < watch_until {
        let now = checkpoints(&names).await;
        for (p, c) in &now {
            let prev = &last[p];
            assert!(
                c.epoch >= prev.epoch,
                "partition {p}: epoch went back from {} to {}",
                prev.epoch,
                c.epoch
            );
            if c.epoch == prev.epoch {
                assert!(
                    c.next_offset >= prev.next_offset,
                    "partition {p}: checkpoint went back from {:?} to {:?} under epoch {} (a stale owner's write got through)",
                    prev.next_offset, c.next_offset, c.epoch
                );
            }
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(w1.is_running(), "the resumed worker keeps running\n{}", w1.log_tail());
    assert!(
        w1.log().contains("ZooKeeper session ended: stopping every shard"),
        "the resumed worker noticed its session had expired and stopped its shards\n{}",
        w1.log_tail()
    );
    // It woke up with chunks in flight and tried to checkpoint them under its
    // old epoch: Cassandra refused (with the commit's condition weakened to
    // `epoch >= ?`, this fails).
    assert!(
        w1.log().contains("checkpoint refused: a newer owner holds the shard"),
        "the resumed worker's stale checkpoints were refused by Cassandra\n{}",
        w1.log_tail()
    );
    // Rejoined: it owns shards again, under grants newer than the ones it lost.
    let (rejoined, _) = wait_checkpoints(&names, "pause-w1 owns shards again", |c| {
        !owned_by(c, "pause-w1").is_empty()
    })
    .await;
    for p in owned_by(&rejoined, "pause-w1") {
        assert!(
            rejoined[&p].epoch > before[&p].epoch,
            "partition {p}: rejoined under a newer grant"
        );
    }
    finish(&names, &mut [&mut w1, &mut w2], &all).await;
}

/// Blocks layout: a worker frozen while its window is open (written in part,
/// not checkpointed), so that its successor rewrites that window with more,
/// and woken only after the successor is done: its overdue flush writes the
/// smaller block of the same window, and must lose: every event is there,
/// once as a reader sees it. (With blocks stamped by write time instead of
/// their content, the frozen worker's late write wins and verify finds
/// events missing.)
///
/// Then the woken worker finds its window idle, checkpoints inside it
/// (refused: fenced) and reads on until it learns it lost the shard. It
/// carries on the same chain of windows as its successor, which started
/// from the open window's start, so what it writes meanwhile lands in the
/// successor's blocks, under their keys: no event is stored twice. (When
/// an idle window was closed and the woken worker started a new chain
/// there, its reads landed in blocks nobody else wrote: redundant copies.)
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_worker_s_late_partial_blocks_lose_to_its_successor_s() {
    let _slot = slot().await;
    let names = setup("faultlate", 2, "blocks").await;
    let _coordinator = start_coordinator(&names, &format!("{}-coord", names.keyspace));
    let args = names.worker_args(&[]);
    let mut w1 = start_worker("late-w1", &args);
    let mut w2 = start_worker("late-w2", &args);
    // 20,000 events 1 ms apart in event time: each partition's stream is one
    // window that stays open (and is flushed in part) for the whole run.
    let mut all = events("late", 20_000, 50);
    let base = all[0].ts;
    for e in &mut all {
        e.ts = base + e.seq as i64 / 20;
    }
    wait_checkpoints(&names, "both workers hold a shard", |c| {
        c.len() == 2 && owned_by(c, "late-w1").len() == 1 && owned_by(c, "late-w2").len() == 1
    })
    .await;
    let producing = produce_over(&names, &all, 8, 16);
    tokio::time::sleep(Duration::from_secs(5)).await;
    w1.signal(libc::SIGSTOP);
    // Its shard moves; the successor reads it from the start of the open
    // window, writes it, and closes it once production ends.
    wait_checkpoints(&names, "late-w2 claimed every shard", |c| owned_by(c, "late-w2").len() == 2)
        .await;
    producing.await.unwrap();
    names.wait_all_checkpointed(DRAIN).await;
    w1.signal(libc::SIGCONT);
    // Let the woken worker flush what it held, then stop both.
    tokio::time::sleep(Duration::from_secs(3)).await;
    names.wait_all_checkpointed(DRAIN).await;
    for w in [&mut w1, &mut w2] {
        assert!(w.terminate(Duration::from_secs(60)).success(), "{}", w.log_tail());
    }
    common::assert_verified(&names, &[("late", 20_000)]);
    names.cleanup().await;
}

in_both_layouts!(joining_worker:
    a_joining_worker_pauses_only_the_shards_that_move,
    a_joining_worker_pauses_only_the_shards_that_move_in_blocks_layout);
/// A second worker joins a running one: only the shards that move are
/// stopped and handed over (revoke, checkpoint, release, new grant); the
/// others keep their grant and keep advancing meanwhile.
async fn joining_worker(layout: &'static str) {
    let _slot = slot().await;
    let names = setup("faultjoin", 6, layout).await;
    let _coordinator = start_coordinator(&names, &format!("{}-coord", names.keyspace));
    let args = names.worker_args(&["--batch-max-rows", "1000"]);
    let mut w1 = start_worker("join-w1", &args);
    let all = events("join", 120_000, 300);
    let producing = produce_over(&names, &all, 25, 20);
    let (before, _) = wait_checkpoints(&names, "join-w1 checkpoints every shard", |c| {
        c.len() == 6 && owned_by(c, "join-w1").len() == 6 && checkpointed_by(c, "join-w1")
    })
    .await;

    let mut w2 = start_worker("join-w2", &args);
    let (after, took) = wait_checkpoints(&names, "join-w2 claimed its share", |c| {
        owned_by(c, "join-w2").len() == 3
    })
    .await;
    eprintln!(
        "handoff to a joining worker: {} ms from its start to its claim of 3 shards",
        took.as_millis()
    );
    let stayed = owned_by(&after, "join-w1");
    assert_eq!(stayed.len(), 3, "{after:?}");
    for p in &stayed {
        assert_eq!(
            after[p].epoch, before[p].epoch,
            "partition {p} did not move and keeps its grant"
        );
    }
    for p in owned_by(&after, "join-w2") {
        assert!(after[&p].epoch > before[&p].epoch, "partition {p}: moved under a newer grant");
    }
    // Only the moved shards were stopped by join-w1.
    let log = w1.log();
    let stopped: BTreeSet<i32> = log
        .lines()
        .filter(|l| l.contains("shard stopping"))
        .filter_map(|l| l.split(" partition=").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    let moved: BTreeSet<i32> = owned_by(&after, "join-w2");
    assert_eq!(stopped, moved, "join-w1 stopped exactly the moved shards\n{log}");

    producing.await.unwrap();
    finish(&names, &mut [&mut w1, &mut w2], &all).await;
}

/// The leading coordinator is killed: the standby leads, and a worker
/// started afterwards receives every shard and ingests everything.
#[tokio::test(flavor = "multi_thread")]
async fn after_the_leader_is_killed_the_standby_grants_shards_to_a_new_worker() {
    let _slot = slot().await;
    let names = setup("faultlead", 4, "rows").await;
    let mut leader = start_coordinator(&names, "lead-a");
    let zk =
        herd_clients::zookeeper::connect(&endpoints(), Duration::from_secs(10)).await.expect("zk");
    let deadline = Instant::now() + Duration::from_secs(60);
    while herd_coord::election::current_leader(&zk, &names.root)
        .await
        .unwrap()
        .is_none_or(|l| l.id != "lead-a")
    {
        assert!(Instant::now() < deadline, "lead-a did not lead\n{}", leader.log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut standby = start_coordinator(&names, "lead-b");
    tokio::time::sleep(Duration::from_secs(1)).await;
    leader.kill9();
    let all = events("lead", 20_000, 100);
    produce(
        &herd_clients::kafka::producer(&endpoints(), "p").unwrap(),
        &names.topic,
        &messages(&all, Encoding::Arrow(200)),
    )
    .await;
    let mut worker = start_worker("lead-w", &names.worker_args(&[]));
    names.wait_all_checkpointed(DRAIN).await;
    assert_eq!(
        herd_coord::election::current_leader(&zk, &names.root).await.unwrap().unwrap().id,
        "lead-b"
    );
    assert!(checkpoints(&names).await.values().all(|c| c.owner == "lead-w"));

    // herdctl status shows the same: the standby leads, every shard is lead-w's, nothing lags.
    let (code, stdout, stderr) = common::herdctl(&[
        "status",
        "--json",
        "--root",
        &names.root,
        "--keyspace",
        &names.keyspace,
    ]);
    assert!(code == 0, "herdctl status: {stderr}");
    let status: serde_json::Value =
        serde_json::from_str(&stdout).expect("herdctl status --json is JSON");
    assert_eq!(status["leader"]["id"], "lead-b", "{status}");
    let shards = status["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 4, "{status}");
    for s in shards {
        assert_eq!(
            (s["owner"].as_str(), s["holder"].as_str(), s["state"].as_str()),
            (Some("lead-w"), Some("lead-w"), Some("granted")),
            "{s}"
        );
        assert_eq!(s["lag"], 0, "{s}");
        // An empty partition has no checkpoint yet.
        assert!(
            s["checkpoint"] == s["end_offset"]
                || (s["checkpoint"].is_null() && s["end_offset"] == 0),
            "{s}"
        );
    }
    assert!(worker.terminate(Duration::from_secs(60)).success(), "{}", worker.log_tail());
    assert!(standby.terminate(Duration::from_secs(20)).success(), "{}", standby.log_tail());
    herd_clients::zookeeper::close(zk, Duration::from_secs(2)).await;
    assert_exactly(&session().await, &names.keyspace, &identities(&all)).await;
    names.cleanup().await;
}
