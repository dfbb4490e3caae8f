//! Live configuration on the real stack: `herdctl config` changes what
//! running workers do, without restarting them; bad input never reaches
//! ZooKeeper; a broken document written by hand is refused by the workers,
//! which keep their last good configuration.

mod common;

use std::time::{Duration, Instant};

use common::{
    assert_exactly, events, herdctl, identities, messages, metric, session, start_coordinator,
    start_worker_with_metrics, Encoding, Names,
};
use herd_coord::dynconf;
use herd_testkit::endpoints;
use herd_testkit::kafka::produce;

const DRAIN: Duration = Duration::from_secs(300);

async fn zk() -> zookeeper_client::Client {
    herd_clients::zookeeper::connect(&endpoints(), Duration::from_secs(10)).await.expect("zk")
}

/// Waits until worker `id` reports running configuration `version`.
async fn wait_worker_version(
    zk: &zookeeper_client::Client,
    names: &Names,
    id: &str,
    version: u64,
) -> Duration {
    let started = Instant::now();
    loop {
        zk.sync(&format!("{}/workers", names.root)).await.ok();
        let workers = herd_coord::membership::workers(zk, &names.root).await.unwrap_or_default();
        if workers.iter().any(|w| w.id == id && w.config_version == version) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{id} did not report config version {version}: {workers:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn set(names: &Names, edits: &[&str]) -> u64 {
    let mut args = vec!["config", "--root", &names.root, "set"];
    args.extend_from_slice(edits);
    let (code, out, err) = herdctl(&args);
    assert_eq!(code, 0, "herdctl config set {edits:?}: {err}");
    out.lines()
        .next()
        .and_then(|l| l.strip_prefix("version "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no version in {out:?}"))
}

/// Events consumed per second over `window`, from the worker's own counter.
async fn consumed_rate(port: u16, window: Duration) -> f64 {
    let before = metric(port, "herd_events_consumed_total");
    tokio::time::sleep(window).await;
    (metric(port, "herd_events_consumed_total") - before) / window.as_secs_f64()
}

/// The chunk-size histogram's sum and count, from one scrape: two scrapes
/// can fall either side of a chunk and skew the mean by a chunk.
fn chunk_rows(port: u16) -> (f64, f64) {
    let s = herd_testkit::metrics::scrape(port).expect("the worker's /metrics answers");
    (s.sum("herd_chunk_rows_sum"), s.sum("herd_chunk_rows_count"))
}

/// Mean events per chunk since the last call, from the worker's histogram.
fn chunk_rows_since(port: u16, last: &mut (f64, f64)) -> f64 {
    let (sum, count) = chunk_rows(port);
    let mean = (sum - last.0) / (count - last.1).max(1.0);
    *last = (sum, count);
    mean
}

/// Batch size and rate limit changed mid-run: chunks and the consumption
/// rate follow, the worker is never restarted, and every event is stored once.
#[tokio::test(flavor = "multi_thread")]
async fn batch_size_and_rate_limit_change_mid_run_without_a_restart() {
    let names = Names::new("livebatch");
    herd_clients::kafka::ensure_topic(&endpoints(), &names.topic, 2, 1).await.expect("topic");
    let zk = zk().await;
    // Before the worker starts: 300 events per chunk, 1,000 events/s per shard (2 shards).
    set(&names, &["batch_max_rows=300", "rate_limit_eps=1000", "linger_ms=1000"]);
    let _coordinator = start_coordinator(&names, &format!("{}-coord", names.keyspace));
    let (mut worker, port) = start_worker_with_metrics("live-batch", &names.worker_args(&[]));
    let pid = worker.pid();
    let all = events("live", 60_000, 300);
    produce(
        &herd_clients::kafka::producer(&endpoints(), "p").unwrap(),
        &names.topic,
        &messages(&all, Encoding::Json { header: true }),
    )
    .await;
    wait_worker_version(&zk, &names, "live-batch", 1).await;

    // Let the 1 s burst pass, then measure.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut rows = (0.0, 0.0);
    chunk_rows_since(port, &mut rows);
    let limited = consumed_rate(port, Duration::from_secs(5)).await;
    let limited_rows = chunk_rows_since(port, &mut rows);
    eprintln!("limited: {limited:.0} events/s, {limited_rows:.0} rows per chunk");
    // 2 shards x 1,000/s, plus at most one message of overdraft per shard per wait.
    assert!(limited <= 2_300.0, "the rate limit holds: {limited:.0} events/s");
    assert!(limited > 0.0, "still consuming");
    assert!(limited_rows <= 300.0, "chunks are cut at 300 rows: {limited_rows:.0}");

    // Lift the limit, bigger chunks: the backlog drains in big chunks.
    let v = set(&names, &["batch_max_rows=2000", "rate_limit_eps="]);
    let applied_in = wait_worker_version(&zk, &names, "live-batch", v).await;
    eprintln!(
        "version {v} reported by the worker {} ms after herdctl returned",
        applied_in.as_millis()
    );
    names.wait_all_checkpointed(DRAIN).await;
    let unlimited_rows = chunk_rows_since(port, &mut rows);
    eprintln!("unlimited: {unlimited_rows:.0} rows per chunk");
    assert!(unlimited_rows > 300.0, "chunks grew past the old cut: {unlimited_rows:.0}");

    assert!(worker.is_running() && worker.pid() == pid, "the same process throughout");
    assert_eq!(worker.log().matches("worker started").count(), 1, "never restarted");
    assert!(worker.terminate(Duration::from_secs(60)).success(), "{}", worker.log_tail());
    herd_clients::zookeeper::close(zk, Duration::from_secs(2)).await;
    assert_exactly(&session().await, &names.keyspace, &identities(&all)).await;
    names.cleanup().await;
}

/// Pause one topic: its shards stop advancing while the other topic's keep
/// going; resume: it catches up.
#[tokio::test(flavor = "multi_thread")]
async fn pausing_a_topic_stops_only_its_shards_and_resuming_catches_up() {
    let names = Names::new("livepause");
    let other = format!("{}_b", names.topic);
    for t in [&names.topic, &other] {
        herd_clients::kafka::ensure_topic(&endpoints(), t, 2, 1).await.expect("topic");
    }
    let zk = zk().await;
    let _coordinator = herd_testkit::herd::coordinator(
        &format!("{}-coord", names.keyspace),
        &names.root,
        &[&names.topic, &other],
        &["--refresh-secs", "2"],
    );
    let (mut worker, _) = start_worker_with_metrics("live-pause", &names.worker_args(&[]));
    let a = events("a", 40_000, 100);
    let b = events("b", 40_000, 100);
    let producer = herd_clients::kafka::producer(&endpoints(), "p").unwrap();
    produce(&producer, &names.topic, &messages(&a[..20_000], Encoding::Arrow(99))).await;
    produce(&producer, &other, &messages(&b[..20_000], Encoding::Arrow(99))).await;
    let s = session().await;
    herd_testkit::cassandra::wait_all_checkpointed(&s, &names.keyspace, &names.topic, DRAIN).await;
    herd_testkit::cassandra::wait_all_checkpointed(&s, &names.keyspace, &other, DRAIN).await;

    let v = set(&names, &[&format!("topic.{}.paused=true", names.topic)]);
    wait_worker_version(&zk, &names, "live-pause", v).await;
    let (paused_at, _) =
        herd_testkit::cassandra::checkpointed_and_end(&s, &names.keyspace, &names.topic).await;
    produce(&producer, &names.topic, &messages(&a[20_000..], Encoding::Arrow(99))).await;
    produce(&producer, &other, &messages(&b[20_000..], Encoding::Arrow(99))).await;
    // The other topic catches up completely while the paused one does not move.
    herd_testkit::cassandra::wait_all_checkpointed(&s, &names.keyspace, &other, DRAIN).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (still, end) =
        herd_testkit::cassandra::checkpointed_and_end(&s, &names.keyspace, &names.topic).await;
    assert_eq!(still, paused_at, "the paused topic's checkpoints did not move (end {end})");
    assert!(still < end, "its new messages wait");

    let v = set(&names, &[&format!("topic.{}.paused=", names.topic)]);
    wait_worker_version(&zk, &names, "live-pause", v).await;
    herd_testkit::cassandra::wait_all_checkpointed(&s, &names.keyspace, &names.topic, DRAIN).await;
    assert!(worker.terminate(Duration::from_secs(60)).success(), "{}", worker.log_tail());
    herd_clients::zookeeper::close(zk, Duration::from_secs(2)).await;
    let expected = identities(&a).into_iter().chain(identities(&b)).collect();
    assert_exactly(&s, &names.keyspace, &expected).await;
    if let Ok(admin) = herd_clients::kafka::admin(&endpoints(), "test-cleanup") {
        let _ = admin.delete_topics(&[&other], &rdkafka::admin::AdminOptions::new()).await;
    }
    names.cleanup().await;
}

/// Bad input is refused by herdctl before anything is written: the field,
/// the value and the allowed range, exit 2, the stored version unchanged. A
/// change made against a stale version is refused too.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_values_and_stale_edits_are_refused_and_change_nothing() {
    let names = Names::new("liveinvalid");
    let zk = zk().await;
    assert_eq!(set(&names, &["batch_max_rows=1000"]), 1);
    for (edit, message) in [
        ("batch_max_rows=0", "batch_max_rows: \"0\" is out of range; allowed 1 to 1000000"),
        ("linger_ms=soon", "linger_ms: \"soon\" is not a whole number"),
        ("topic.events.max_in_flight=3", "max_in_flight is global only"),
        ("no_such_key=1", "is not a key"),
    ] {
        let (code, _, err) = herdctl(&["config", "--root", &names.root, "set", edit]);
        assert_eq!(code, 2, "{edit}: {err}");
        assert!(err.contains(message), "{edit}: {err}");
    }
    let file = std::env::temp_dir().join(format!("{}.json", names.keyspace));
    std::fs::write(&file, br#"{"global": {"max_in_flight": 100000}}"#).unwrap();
    let (code, _, err) =
        herdctl(&["config", "--root", &names.root, "apply", file.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("max_in_flight: \"100000\" is out of range; allowed 1 to 4096"), "{err}");
    let (code, _, err) =
        herdctl(&["config", "--root", &names.root, "set", "--expect-version", "0", "linger_ms=5"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("changed meanwhile: it is at version 1"), "{err}");

    let stored = dynconf::read(&zk, &names.root).await.unwrap();
    assert_eq!(stored.version, 1, "nothing reached ZooKeeper");
    assert_eq!(stored.doc().unwrap().global.batch_max_rows, Some(1000));
    assert_eq!(dynconf::history(&zk, &names.root).await.unwrap().len(), 1);
    std::fs::remove_file(file).ok();
    herd_clients::zookeeper::close(zk, Duration::from_secs(2)).await;
    herd_testkit::delete_zk_tree(&names.root).await;
}

/// A broken document written straight into ZooKeeper: the worker refuses
/// it, keeps running on its last good configuration and keeps ingesting;
/// a fixed version is applied.
#[tokio::test(flavor = "multi_thread")]
async fn a_hand_written_broken_document_is_refused_and_the_last_good_one_stays() {
    let names = Names::new("livebroken");
    herd_clients::kafka::ensure_topic(&endpoints(), &names.topic, 2, 1).await.expect("topic");
    let zk = zk().await;
    let good = set(&names, &["batch_max_rows=700"]);
    let _coordinator = start_coordinator(&names, &format!("{}-coord", names.keyspace));
    let (mut worker, port) = start_worker_with_metrics("live-broken", &names.worker_args(&[]));
    wait_worker_version(&zk, &names, "live-broken", good).await;

    zk.set_data(
        &dynconf::config_path(&names.root),
        br#"{"global": {"batch_max_rows": "lots"}}"#,
        None,
    )
    .await
    .expect("write by hand");
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(port, "herd_config_rejected_total") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the worker did not report the broken document\n{}",
            worker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        worker.log().contains("configuration refused: keeping the last good one"),
        "{}",
        worker.log_tail()
    );
    assert_eq!(metric(port, "herd_config_version"), good as f64, "still on the last good version");
    // Still ingesting, still with the last good chunk size.
    let all = events("broken", 20_000, 100);
    produce(
        &herd_clients::kafka::producer(&endpoints(), "p").unwrap(),
        &names.topic,
        &messages(&all, Encoding::Json { header: true }),
    )
    .await;
    names.wait_all_checkpointed(DRAIN).await;
    let (sum, count) = chunk_rows(port);
    let mean = sum / count;
    assert!(mean <= 700.0, "chunks still cut at 700 rows: {mean:.0}");
    let (code, _, err) = herdctl(&["config", "--root", &names.root, "status"]);
    assert_eq!(code, 0, "{err}");

    // herdctl can fix it (it starts from an empty document and says why).
    let (code, out, err) = herdctl(&["config", "--root", &names.root, "set", "batch_max_rows=900"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("is invalid"), "{err}");
    let fixed: u64 = out.lines().next().unwrap().strip_prefix("version ").unwrap().parse().unwrap();
    wait_worker_version(&zk, &names, "live-broken", fixed).await;
    assert!(worker.terminate(Duration::from_secs(60)).success(), "{}", worker.log_tail());
    herd_clients::zookeeper::close(zk, Duration::from_secs(2)).await;
    assert_exactly(&session().await, &names.keyspace, &identities(&all)).await;
    names.cleanup().await;
}

/// Report, not a check (`cargo test -p herd-worker --test live_config --
/// --ignored --nocapture`): time from invoking `herdctl config set` until
/// both of two running workers report the new version in their
/// registration (they report it after handing it to their pipeline), over
/// 100 changes; p50 and p99.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement; run it explicitly"]
async fn report_config_change_latency_over_100_changes() {
    let names = Names::new("livelatency");
    herd_clients::kafka::ensure_topic(&endpoints(), &names.topic, 2, 1).await.expect("topic");
    let zk = zk().await;
    let _coordinator = start_coordinator(&names, &format!("{}-coord", names.keyspace));
    let (mut w1, _) = start_worker_with_metrics("lat-w1", &names.worker_args(&[]));
    let (mut w2, _) = start_worker_with_metrics("lat-w2", &names.worker_args(&[]));
    // Both registered (still on the command line's settings) before measuring.
    wait_worker_version(&zk, &names, "lat-w1", 0).await;
    wait_worker_version(&zk, &names, "lat-w2", 0).await;
    let mut samples = Vec::with_capacity(100);
    for i in 0..100u64 {
        let started = Instant::now();
        let v = set(&names, &[&format!("linger_ms={}", 10 + i % 2)]);
        let herdctl_took = started.elapsed();
        wait_worker_version(&zk, &names, "lat-w1", v).await;
        wait_worker_version(&zk, &names, "lat-w2", v).await;
        samples.push((started.elapsed(), herdctl_took));
    }
    samples.sort();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    let (p50, p99) = (pct(50), pct(99));
    eprintln!(
        "config change to applied on 2 workers, 100 changes: p50 {} ms, p99 {} ms, max {} ms (herdctl itself: p50 {} ms)",
        p50.0.as_millis(),
        p99.0.as_millis(),
        samples.last().unwrap().0.as_millis(),
        p50.1.as_millis()
    );
    assert!(w1.terminate(Duration::from_secs(60)).success());
    assert!(w2.terminate(Duration::from_secs(60)).success());
    herd_clients::zookeeper::close(zk, Duration::from_secs(2)).await;
    names.cleanup().await;
}
