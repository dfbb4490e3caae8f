//! Cassandra stopped for 30 s while events keep arriving: the worker neither
//! crashes nor loses anything, checkpoints nothing while Cassandra is down, keeps
//! its memory bounded, can still be stopped (a second signal exits at once),
//! and exactly the produced set is stored once Cassandra is back, in both
//! layouts. Alone in its test binary: it stops the stack's shared Cassandra
//! (cargo runs test binaries one at a time; the two layouts' runs take turns).

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{
    assert_exactly, events, identities, messages, session, start_coordinator, start_worker,
    Encoding, Names,
};
use herd_testkit::kafka::produce;
use herd_testkit::{endpoints, stack};

const OUTAGE: Duration = Duration::from_secs(30);
/// How much the worker's resident memory may grow while it waits. Unbounded
/// buffering of the 300,000 events produced meanwhile (about 60 MB as Kafka
/// payload, several times that decoded) would exceed it; the bounded queues
/// (librdkafka's 16 MiB prefetch, a few chunks) stay well below.
const MAX_GROWTH_KIB: u64 = 96 * 1024;

/// Restarts Cassandra when dropped, so a failing assertion does not leave
/// the shared stack without it.
struct BringBackCassandra;

impl Drop for BringBackCassandra {
    fn drop(&mut self) {
        stack(&["up"]);
    }
}

in_both_layouts!(outage:
    cassandra_down_for_thirty_seconds_loses_nothing_and_memory_stays_bounded,
    cassandra_down_for_thirty_seconds_loses_nothing_and_memory_stays_bounded_in_blocks_layout);
async fn outage(layout: &'static str) {
    // Both layouts' runs stop the shared Cassandra: one at a time.
    static ONE_OUTAGE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = ONE_OUTAGE_AT_A_TIME.lock().await;
    let names = Names::with_layout("outage", layout);
    herd_clients::kafka::ensure_topic(&endpoints(), &names.topic, 4, 1).await.expect("topic");
    let producer =
        herd_clients::kafka::producer(&endpoints(), "outage-producer").expect("producer");
    let before = events("before", 20_000, 100);
    produce(&producer, &names.topic, &messages(&before, Encoding::JsonLines(100))).await;

    let _coordinator = start_coordinator(&names, "coord");
    let mut worker = start_worker("outage", &names.worker_args(&[]));
    names.wait_all_checkpointed(Duration::from_secs(300)).await;
    let (checkpointed_before, _) = names.checkpointed_and_end().await;
    let baseline = worker.rss_kib();

    let guard = BringBackCassandra;
    stack(&["stop", "cassandra"]);
    let down_at = Instant::now();
    let during = events("during", 300_000, 1000);
    let producing = {
        let (producer, topic) = (producer.clone(), names.topic.clone());
        let outgoing = messages(&during, Encoding::Arrow(1000));
        tokio::spawn(async move { produce(&producer, &topic, &outgoing).await })
    };
    // Let chunks that were in flight at the stop settle, then watch.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut peak = baseline;
    while down_at.elapsed() < OUTAGE {
        assert!(
            worker.is_running(),
            "the worker must not crash while Cassandra is down\n{}",
            worker.log_tail()
        );
        peak = peak.max(worker.rss_kib());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    producing.await.unwrap();
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "worker RSS: {baseline} KiB before the outage, peak {peak} KiB during it (+{growth} KiB)"
    );
    assert!(
        growth < MAX_GROWTH_KIB,
        "memory must stay bounded while Cassandra is down: grew {growth} KiB (limit {MAX_GROWTH_KIB})"
    );

    // SIGTERM while Cassandra is down: the worker cannot drain, so it keeps
    // waiting (its shutdown timeout is 30 s); a second signal ends it at once.
    worker.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        worker.is_running(),
        "one SIGTERM with writes pending: still draining\n{}",
        worker.log_tail()
    );
    let status = worker.terminate(Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(130),
        "a second signal exits at once, with 130\n{}",
        worker.log_tail()
    );

    drop(guard); // Cassandra back.
                 // Nothing was checkpointed during the outage (the worker could not, and
                 // was forced out before Cassandra returned): the new events are not covered.
    let (checkpointed_after, end) = names.checkpointed_and_end().await;
    assert_eq!(
        checkpointed_after, checkpointed_before,
        "no checkpoint may move while Cassandra is down"
    );
    assert!(
        checkpointed_after < end,
        "the events produced meanwhile are not checkpointed ({checkpointed_after} of {end})"
    );
    // A new worker replays what the forced exit left uncommitted.
    let mut worker = start_worker("outage-after", &names.worker_args(&[]));
    names.wait_all_checkpointed(Duration::from_secs(600)).await;
    assert!(worker.is_running(), "{}", worker.log_tail());
    let status = worker.terminate(Duration::from_secs(60));
    assert!(status.success(), "{status}\n{}", worker.log_tail());
    let expected: BTreeSet<_> =
        identities(&before).into_iter().chain(identities(&during)).collect();
    assert_exactly(&session().await, &names.keyspace, &expected).await;
    common::assert_verified(&names, &[("before", 20_000), ("during", 300_000)]);
    names.cleanup().await;
}
