//! Shared by the worker's integration tests: the real herd-worker binary,
//! started and killed as a process, against the real local stack.
#![allow(dead_code, unused_imports)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use herd_model::{arrow_ipc, json, Event, Format};
use herd_testkit::kafka::Outgoing;
use scylla::client::session::Session;

/// A herd-worker process (see herd_testkit::process): dropping it kills it;
/// if the test is failing, its log is printed.
pub type Worker = herd_testkit::process::Process;

pub use herd_testkit::herd::{free_port, herdctl, SESSION_TIMEOUT_MS};
pub use herd_testkit::metrics::metric;

/// Starts a worker named `name` (its id in ZooKeeper and the checkpoints).
pub fn start_worker(name: &str, args: &[String]) -> Worker {
    herd_testkit::herd::worker(name, args).0
}

/// Starts a worker; also returns the port of its /metrics.
pub fn start_worker_with_metrics(name: &str, args: &[String]) -> (Worker, u16) {
    herd_testkit::herd::worker(name, args)
}

/// Starts a coordinator for the test's topic and root.
pub fn start_coordinator(names: &Names, name: &str) -> herd_testkit::process::Process {
    herd_testkit::herd::coordinator(name, &names.root, &[&names.topic], &["--refresh-secs", "2"])
}

/// Names of one test's resources on the shared stack.
pub struct Names {
    pub topic: String,
    pub keyspace: String,
    /// The test's ZooKeeper root.
    pub root: String,
    pub dead_letters: String,
    /// The workers' --layout.
    pub layout: &'static str,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names::with_layout(prefix, "rows")
    }

    pub fn with_layout(prefix: &str, layout: &'static str) -> Names {
        let base = herd_testkit::unique_name(prefix);
        Names {
            topic: format!("{base}_in"),
            keyspace: base.clone(),
            root: format!("/herd_tests/{base}"),
            dead_letters: format!("{base}_dlq"),
            layout,
        }
    }

    /// Drops the keyspace, deletes the topics and the znodes, so that the shared stack
    /// does not grow with every run. Called at the end of a passing test; a
    /// failing one leaves them for inspection.
    pub async fn cleanup(&self) {
        let session = session().await;
        let _ =
            session.query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", self.keyspace), &[]).await;
        if let Ok(admin) = herd_clients::kafka::admin(&herd_testkit::endpoints(), "test-cleanup") {
            let _ = admin
                .delete_topics(
                    &[&self.topic, &self.dead_letters],
                    &rdkafka::admin::AdminOptions::new(),
                )
                .await;
        }
        herd_testkit::delete_zk_tree(&self.root).await;
    }

    /// Sum over the topic's partitions of (checkpointed offset, end offset).
    pub async fn checkpointed_and_end(&self) -> (i64, i64) {
        herd_testkit::cassandra::checkpointed_and_end(&session().await, &self.keyspace, &self.topic)
            .await
    }

    /// Waits until every message of the topic is checkpointed.
    pub async fn wait_all_checkpointed(&self, limit: std::time::Duration) {
        herd_testkit::cassandra::wait_all_checkpointed(
            &session().await,
            &self.keyspace,
            &self.topic,
            limit,
        )
        .await
    }

    pub fn worker_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "--root",
            &self.root,
            "--keyspace",
            &self.keyspace,
            "--session-timeout-ms",
            &SESSION_TIMEOUT_MS.to_string(),
            "--dead-letter-topic",
            &self.dead_letters,
            "--bucket-secs",
            "3600",
            "--layout",
            self.layout,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `n` valid events of `producer`, over `series` series, in the last hours.
pub fn events(producer: &str, n: u64, series: u64) -> Vec<Event> {
    let base = now_ms() - 3 * 3_600_000;
    (0..n)
        .map(|seq| Event {
            series: format!("host-{}", seq % series),
            metric: if seq % 3 == 0 { "cpu".into() } else { "mem".into() },
            ts: base + (seq as i64) * 7,
            value: seq as f64 / 4.0,
            tags: BTreeMap::from([("dc".into(), format!("dc{}", seq % 2))]),
            producer: producer.into(),
            seq,
        })
        .collect()
}

pub enum Encoding {
    /// One event per message, with or without the content-type header.
    Json { header: bool },
    /// n events per newline-delimited JSON message.
    JsonLines(usize),
    /// n events per Arrow IPC message.
    Arrow(usize),
}

pub fn messages(events: &[Event], encoding: Encoding) -> Vec<Outgoing> {
    let key = |e: &Event| e.series.clone().into_bytes();
    match encoding {
        Encoding::Json { header } => events
            .iter()
            .map(|e| Outgoing {
                key: key(e),
                payload: json::encode(e),
                content_type: header.then_some(Format::Json.content_type()),
            })
            .collect(),
        Encoding::JsonLines(n) => events
            .chunks(n)
            .map(|c| Outgoing {
                key: key(&c[0]),
                payload: json::encode_lines(c),
                content_type: Some(Format::JsonLines.content_type()),
            })
            .collect(),
        Encoding::Arrow(n) => events
            .chunks(n)
            .map(|c| Outgoing {
                key: key(&c[0]),
                payload: arrow_ipc::encode(c).unwrap(),
                content_type: None,
            })
            .collect(),
    }
}

pub fn identities(events: &[Event]) -> BTreeSet<(String, i64)> {
    events.iter().map(|e| (e.producer.clone(), e.seq as i64)).collect()
}

/// Cassandra holds exactly `expected`: nothing missing, nothing extra, no
/// identity stored twice.
pub async fn assert_exactly(session: &Session, keyspace: &str, expected: &BTreeSet<(String, i64)>) {
    let stored = herd_testkit::cassandra::stored_identities(session, keyspace).await;
    let mut counts: BTreeMap<&(String, i64), usize> = BTreeMap::new();
    for id in &stored {
        *counts.entry(id).or_default() += 1;
    }
    let duplicated: Vec<_> = counts.iter().filter(|(_, &n)| n > 1).take(5).collect();
    let missing: Vec<_> = expected.iter().filter(|id| !counts.contains_key(id)).take(5).collect();
    let extra: Vec<_> = counts.keys().filter(|id| !expected.contains(*id)).take(5).collect();
    let missing_count = expected.iter().filter(|id| !counts.contains_key(id)).count();
    assert!(
        duplicated.is_empty() && missing.is_empty() && extra.is_empty() && stored.len() == expected.len(),
        "Cassandra holds {} rows for {} expected events: {missing_count} missing (e.g. {missing:?}), duplicated e.g. {duplicated:?}, unexpected e.g. {extra:?}",
        stored.len(),
        expected.len()
    );
}

/// Runs `herd-loadgen verify --json` on the test's keyspace, expecting
/// each producer's seqs 0..count; returns its report.
pub fn verify(names: &Names, expect: &[(&str, u64)]) -> serde_json::Value {
    let mut args = vec![
        "verify".to_owned(),
        "--keyspace".to_owned(),
        names.keyspace.clone(),
        "--json".to_owned(),
    ];
    for (producer, count) in expect {
        args.extend(["--expect".to_owned(), format!("{producer}={count}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, stdout, stderr) = herd_testkit::herd::run("herd-loadgen", &args);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("verify printed no JSON ({e}): {stdout}{stderr}"))
}

/// verify finds every event of `expect` exactly once (as a reader sees them).
/// Every event stored exactly once as a reader sees it, and no event in two
/// blocks either: whoever replays a shard (after a kill, a handoff, a
/// pause) cuts the windows its predecessor cut.
pub fn assert_verified(names: &Names, expect: &[(&str, u64)]) -> serde_json::Value {
    let report = assert_verified_allowing_copies(names, expect);
    for p in report["producers"].as_array().expect("producers") {
        assert_eq!(
            p["redundant_copies"], 0,
            "events stored in a second block (a replay cut other windows): {report:#}"
        );
    }
    report
}

/// Every event stored exactly once as a reader sees it; copies in a second
/// block, which readers drop, are allowed: a producer that sends a message
/// twice across a window boundary makes them.
pub fn assert_verified_allowing_copies(names: &Names, expect: &[(&str, u64)]) -> serde_json::Value {
    let report = verify(names, expect);
    assert_eq!(report["layout"], names.layout, "{report:#}");
    assert_eq!(
        report["ok"], true,
        "verify found missing, duplicated or unexpected events: {report:#}"
    );
    report
}

pub async fn session() -> Session {
    herd_clients::cassandra::session(&herd_testkit::endpoints()).await.expect("Cassandra session")
}

/// Produces `events` as Arrow messages of 199 events in the background, in
/// `slices` parts spread evenly over `secs` seconds, so that faults land
/// mid-stream. (199, not 200: a message's key is its first event's series,
/// and 199 cycles through every series, so every partition gets messages.)
pub fn produce_over(
    names: &Names,
    events: &[Event],
    secs: u64,
    slices: usize,
) -> tokio::task::JoinHandle<()> {
    let producer = herd_clients::kafka::producer(
        &herd_testkit::endpoints(),
        &format!("{}-producer", names.topic),
    )
    .expect("producer");
    let outgoing = messages(events, Encoding::Arrow(199));
    let topic = names.topic.clone();
    tokio::spawn(async move {
        for part in outgoing.chunks(outgoing.len().div_ceil(slices)) {
            herd_testkit::kafka::produce(&producer, &topic, part).await;
            tokio::time::sleep(std::time::Duration::from_millis(secs * 1000 / slices as u64)).await;
        }
    })
}

/// Runs an `async fn(layout)` test body as two tests, one per storage layout.
#[macro_export]
macro_rules! in_both_layouts {
    ($body:ident: $rows:ident, $blocks:ident) => {
        #[tokio::test(flavor = "multi_thread")]
        async fn $rows() {
            $body("rows").await
        }
        #[tokio::test(flavor = "multi_thread")]
        async fn $blocks() {
            $body("blocks").await
        }
    };
}
