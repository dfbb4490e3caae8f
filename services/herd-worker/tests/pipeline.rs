//! herd-worker end to end on the real stack: Kafka in, Cassandra out.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    assert_exactly, events, identities, messages, session, start_coordinator, start_worker,
    Encoding, Names,
};
use herd_model::{arrow_ipc, Event};
use herd_testkit::endpoints;
use herd_testkit::kafka::{produce, read_all, Outgoing};
use rdkafka::message::{Headers, Message};

const DRAIN: Duration = Duration::from_secs(300);

async fn topic(names: &Names) {
    herd_clients::kafka::ensure_topic(&endpoints(), &names.topic, 4, 1)
        .await
        .expect("create topic");
}

fn producer() -> rdkafka::producer::FutureProducer {
    herd_clients::kafka::producer(&endpoints(), "test-producer").expect("producer")
}

/// 200,000 events, half JSON (single and newline-delimited), half Arrow:
/// exactly 200,000 rows, each event once.
#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_thousand_events_in_both_encodings_are_stored_exactly_once() {
    let names = Names::new("ingest");
    topic(&names).await;
    let _coordinator = start_coordinator(&names, "coord");
    let single = events("json-single", 50_000, 500);
    let lines = events("json-lines", 50_000, 500);
    let arrow = events("arrow", 100_000, 500);
    let producer = producer();
    let mut outgoing = messages(&single[..25_000], Encoding::Json { header: true });
    outgoing.extend(messages(&single[25_000..], Encoding::Json { header: false }));
    outgoing.extend(messages(&lines, Encoding::JsonLines(100)));
    outgoing.extend(messages(&arrow, Encoding::Arrow(1000)));
    produce(&producer, &names.topic, &outgoing).await;

    let mut worker = start_worker("ingest", &names.worker_args(&[]));
    names.wait_all_checkpointed(DRAIN).await;
    let status = worker.terminate(Duration::from_secs(60));
    assert!(status.success(), "SIGTERM: clean exit, got {status}\n{}", worker.log_tail());

    let expected: BTreeSet<_> = identities(&single)
        .into_iter()
        .chain(identities(&lines))
        .chain(identities(&arrow))
        .collect();
    assert_eq!(expected.len(), 200_000);
    assert_exactly(&session().await, &names.keyspace, &expected).await;
    names.cleanup().await;
}

in_both_layouts!(kill_nine:
    kill_dash_nine_mid_stream_then_restart_loses_and_duplicates_nothing,
    kill_dash_nine_mid_stream_then_restart_loses_and_duplicates_nothing_in_blocks_layout);
/// kill -9 mid-stream, restart: still exactly the produced set.
async fn kill_nine(layout: &'static str) {
    let names = Names::with_layout("kill9", layout);
    topic(&names).await;
    let _coordinator = start_coordinator(&names, "coord");
    let json = events("json", 40_000, 200);
    let arrow = events("arrow", 120_000, 200);
    let mut outgoing = messages(&json, Encoding::JsonLines(50));
    outgoing.extend(messages(&arrow, Encoding::Arrow(500)));
    produce(&producer(), &names.topic, &outgoing).await;

    // Small chunks, so that there are many commits to interrupt.
    let args = names.worker_args(&["--batch-max-rows", "2000"]);
    let mut worker = start_worker("kill9-first", &args);
    let deadline = tokio::time::Instant::now() + DRAIN;
    let (committed, end) = loop {
        let (c, e) = names.checkpointed_and_end().await;
        if c * 5 >= e {
            break (c, e);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress to kill: {c} of {e}\n{}",
            worker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    worker.kill9();
    assert!(committed < end, "the kill must land mid-stream: {committed} of {end} committed");

    let mut worker = start_worker("kill9-second", &args);
    names.wait_all_checkpointed(DRAIN).await;
    assert!(worker.terminate(Duration::from_secs(60)).success(), "{}", worker.log_tail());

    let expected: BTreeSet<_> = identities(&json).into_iter().chain(identities(&arrow)).collect();
    assert_exactly(&session().await, &names.keyspace, &expected).await;
    common::assert_verified(&names, &[("json", 40_000), ("arrow", 120_000)]);
    names.cleanup().await;
}

in_both_layouts!(duplicate_sends:
    messages_sent_twice_are_stored_once,
    messages_sent_twice_are_stored_once_in_blocks_layout);
/// Producer retries: 10 % of the messages sent a second time, right after
/// the first (as a retry does), with a kill -9 in between. Every event is
/// stored once as a reader sees it: in the rows layout the second send
/// overwrites the row; in the blocks layout a copy that lands in the same
/// window is dropped in the block, one across a window boundary is dropped
/// on read (counted by verify as a redundant copy).
async fn duplicate_sends(layout: &'static str) {
    let names = Names::with_layout("dup", layout);
    topic(&names).await;
    let _coordinator = start_coordinator(&names, "coord");
    // Enough that the first worker cannot store it all between two polls (a
    // CI run once saw 60,000 events all checkpointed before the kill).
    let all = events("dup", 200_000, 100);
    let mut outgoing = Vec::new();
    for (i, m) in messages(&all, Encoding::Arrow(100)).into_iter().enumerate() {
        if i % 10 == 3 {
            outgoing.push(Outgoing {
                key: m.key.clone(),
                payload: m.payload.clone(),
                content_type: m.content_type,
            });
        }
        outgoing.push(m);
    }
    produce(&producer(), &names.topic, &outgoing).await;
    let args = names.worker_args(&["--batch-max-rows", "1000"]);
    let mut worker = start_worker("dup-first", &args);
    let deadline = tokio::time::Instant::now() + DRAIN;
    loop {
        let (c, e) = names.checkpointed_and_end().await;
        if c * 3 >= e {
            assert!(c < e, "the kill must land mid-stream: {c} of {e} committed");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress to kill: {c} of {e}\n{}",
            worker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.kill9();
    let mut worker = start_worker("dup-second", &args);
    names.wait_all_checkpointed(DRAIN).await;
    assert!(worker.terminate(Duration::from_secs(60)).success(), "{}", worker.log_tail());
    let report = common::assert_verified_allowing_copies(&names, &[("dup", 200_000)]);
    eprintln!(
        "{layout}: redundant copies in storage (dropped on read): {}",
        report["producers"][0]["redundant_copies"]
    );
    // A reader of one series gets each of its events once, in time order.
    let session = session().await;
    let pinned = herd_sink::schema::pinned(&session, &names.keyspace).await.unwrap().unwrap();
    let reader =
        herd_sink::read::PointReader::prepare(&session, &names.keyspace, pinned).await.unwrap();
    let from = all.iter().map(|e| e.ts).min().unwrap();
    let to = all.iter().map(|e| e.ts).max().unwrap() + 1;
    let read = reader.range(&session, "host-7", "mem", from, to).await.unwrap();
    let want: Vec<&Event> =
        all.iter().filter(|e| e.series == "host-7" && e.metric == "mem").collect();
    assert_eq!(read.iter().collect::<Vec<_>>(), want);
    names.cleanup().await;
}

/// What a malformed item is expected to become: a dead letter for this
/// source message and position, with these bytes.
struct ExpectedLetter {
    message: usize,
    position: String,
    payload: Vec<u8>,
    reason_contains: &'static str,
}

in_both_layouts!(malformed:
    malformed_events_go_to_the_dead_letter_topic_and_good_ones_are_stored,
    malformed_events_go_to_the_dead_letter_topic_and_good_ones_are_stored_in_blocks_layout);
/// 1 % malformed events: each is in the dead-letter topic with its source
/// position and reason; every good event is stored.
async fn malformed(layout: &'static str) {
    let names = Names::with_layout("dlq", layout);
    topic(&names).await;
    let _coordinator = start_coordinator(&names, "coord");
    let good = events("good", 19_800, 100);
    let mut outgoing: Vec<Outgoing> = Vec::new();
    let mut expected: Vec<ExpectedLetter> = Vec::new();
    fn whole(
        outgoing: &mut Vec<Outgoing>,
        expected: &mut Vec<ExpectedLetter>,
        payload: Vec<u8>,
        content_type: Option<&'static str>,
        reason: &'static str,
    ) {
        expected.push(ExpectedLetter {
            message: outgoing.len(),
            position: "message".into(),
            payload: payload.clone(),
            reason_contains: reason,
        });
        outgoing.push(Outgoing { key: b"bad".to_vec(), payload, content_type });
    }
    // 9,800 good single JSON events, with 60 bad single messages among them.
    for (i, e) in good[..9_800].iter().enumerate() {
        outgoing.extend(messages(std::slice::from_ref(e), Encoding::Json { header: i % 2 == 0 }));
        match i % 490 {
            0 => whole(
                &mut outgoing,
                &mut expected,
                b"{\"series\": \"h\", \"metric\":".to_vec(),
                None,
                "EOF while parsing",
            ),
            1 => whole(
                &mut outgoing,
                &mut expected,
                br#"{"series":"h","ts":1,"value":1,"producer":"p","seq":1}"#.to_vec(),
                None,
                "missing field `metric`",
            ),
            2 => whole(
                &mut outgoing,
                &mut expected,
                br#"{"series":"h","metric":"m","ts":"x","value":1,"producer":"p","seq":1}"#
                    .to_vec(),
                Some("application/json"),
                "field ts",
            ),
            _ => {}
        }
    }
    // 5,000 good events in 100 JSON-lines messages; 60 carry a bad line 3.
    for (i, chunk) in good[9_800..14_800].chunks(50).enumerate() {
        let mut payload = herd_model::json::encode_lines(&chunk[..2]);
        if i < 60 {
            let bad = format!("{{\"series\":\"h\",\"metric\":\"m\",\"ts\":{i},\"value\":\"NaN\",\"producer\":\"p\",\"seq\":1}}");
            expected.push(ExpectedLetter {
                message: outgoing.len(),
                position: "line 3".into(),
                payload: bad.clone().into_bytes(),
                reason_contains: "field value",
            });
            payload.extend_from_slice(bad.as_bytes());
            payload.push(b'\n');
        }
        payload.extend(herd_model::json::encode_lines(&chunk[2..]));
        outgoing.push(Outgoing {
            key: b"lines".to_vec(),
            payload,
            content_type: Some("application/x-ndjson"),
        });
    }
    // 5,000 good events in 10 Arrow messages; 40 invalid rows among them.
    for (i, chunk) in good[14_800..].chunks(500).enumerate() {
        let mut rows: Vec<Event> = chunk.to_vec();
        for j in 0..4 {
            let mut bad = chunk[0].clone();
            bad.series.clear();
            rows.insert(100 * j + 7, bad);
        }
        let payload = arrow_ipc::encode(&rows).unwrap();
        for j in 0..4 {
            expected.push(ExpectedLetter {
                message: outgoing.len(),
                position: format!("row {}", 100 * j + 7),
                payload: payload.clone(),
                reason_contains: "series: is empty",
            });
        }
        outgoing.push(Outgoing {
            key: format!("arrow{i}").into_bytes(),
            payload,
            content_type: Some("application/vnd.apache.arrow.stream"),
        });
    }
    // 20 corrupt Arrow streams and 20 messages of an unknown content type.
    for i in 0..20u8 {
        whole(
            &mut outgoing,
            &mut expected,
            vec![0xff, 0xff, 0xff, 0xff, 9, 9, i],
            None,
            "malformed Arrow IPC stream",
        );
        whole(
            &mut outgoing,
            &mut expected,
            b"a,b,c".to_vec(),
            Some("text/csv"),
            "unsupported content-type",
        );
    }
    assert_eq!(expected.len(), 200, "1 % of 20,000");
    let positions = produce(&producer(), &names.topic, &outgoing).await;

    let mut worker = start_worker("dlq", &names.worker_args(&[]));
    names.wait_all_checkpointed(DRAIN).await;
    assert!(worker.terminate(Duration::from_secs(60)).success(), "{}", worker.log_tail());
    assert_exactly(&session().await, &names.keyspace, &identities(&good)).await;
    common::assert_verified(&names, &[("good", 19_800)]);

    let letters = tokio::task::spawn_blocking({
        let dlq = names.dead_letters.clone();
        move || read_all(&endpoints(), &dlq, 201, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(letters.len(), 200, "one dead letter per malformed event, no more");
    let header = |m: &rdkafka::message::OwnedMessage, name: &str| -> String {
        let headers = m.headers().unwrap_or_else(|| panic!("dead letter without headers"));
        let h =
            headers.iter().find(|h| h.key == name).unwrap_or_else(|| panic!("no header {name}"));
        String::from_utf8(h.value.unwrap().to_vec()).unwrap()
    };
    let mut seen = BTreeSet::new();
    for m in &letters {
        assert_eq!(header(m, "herd.source.topic"), names.topic);
        assert_eq!(header(m, "herd.error.stage"), "decode");
        let at = (
            header(m, "herd.source.partition").parse::<i32>().unwrap(),
            header(m, "herd.source.offset").parse::<i64>().unwrap(),
        );
        let position = header(m, "herd.error.position");
        let e = expected
            .iter()
            .find(|e| positions[e.message] == at && e.position == position)
            .unwrap_or_else(|| panic!("unexpected dead letter for {at:?} {position}"));
        let reason = header(m, "herd.error.reason");
        assert!(
            reason.contains(e.reason_contains),
            "{position} at {at:?}: reason {reason:?} lacks {:?}",
            e.reason_contains
        );
        assert_eq!(
            m.payload(),
            Some(&e.payload[..]),
            "{position} at {at:?} carries the original bytes"
        );
        assert!(seen.insert((at, position)), "dead letter twice");
    }
    names.cleanup().await;
}

/// Drops the points table under a running worker, so that Cassandra refuses
/// every further write (a permanent error, not an outage).
async fn drop_points_table(keyspace: &str) {
    session()
        .await
        .query_unpaged(format!("DROP TABLE {keyspace}.points"), &[])
        .await
        .expect("drop table");
}

/// Writes Cassandra refuses: with --on-write-failure dead-letter the events
/// go to the dead-letter topic (as JSON, stage "write") and the offsets move
/// on; with stop the worker exits with an error and commits none of them.
#[tokio::test(flavor = "multi_thread")]
async fn refused_writes_are_dead_lettered_or_stop_the_worker() {
    let fast_retry =
        ["--retry-initial-ms", "10", "--retry-max-ms", "50", "--retry-max-attempts", "2"];
    for policy in ["dead-letter", "stop"] {
        let names = Names::new(if policy == "stop" { "refused_stop" } else { "refused_dlq" });
        topic(&names).await;
        let _coordinator = start_coordinator(&names, "coord");
        let producer = producer();
        let first = events("first", 1_000, 10);
        produce(&producer, &names.topic, &messages(&first, Encoding::Arrow(100))).await;
        let mut args = names.worker_args(&fast_retry);
        args.extend(["--on-write-failure".to_owned(), policy.to_owned()]);
        let mut worker = start_worker(&format!("refused-{policy}"), &args);
        names.wait_all_checkpointed(DRAIN).await;

        drop_points_table(&names.keyspace).await;
        let refused = events("refused", 300, 10);
        produce(&producer, &names.topic, &messages(&refused, Encoding::JsonLines(30))).await;

        if policy == "dead-letter" {
            names.wait_all_checkpointed(DRAIN).await;
            assert!(worker.terminate(Duration::from_secs(60)).success(), "{}", worker.log_tail());
            let letters = tokio::task::spawn_blocking({
                let dlq = names.dead_letters.clone();
                move || read_all(&endpoints(), &dlq, 301, Duration::from_secs(20))
            })
            .await
            .unwrap();
            let mut ids = BTreeSet::new();
            for m in &letters {
                let stage = m.headers().and_then(|h| {
                    h.iter().find(|h| h.key == "herd.error.stage").and_then(|h| h.value)
                });
                assert_eq!(stage, Some(&b"write"[..]));
                let event: Event =
                    serde_json::from_slice(m.payload().unwrap()).expect("the event as JSON");
                ids.insert((event.producer, event.seq as i64));
            }
            assert_eq!(
                ids,
                identities(&refused),
                "every refused event, once, in the dead-letter topic"
            );
        } else {
            let deadline = std::time::Instant::now() + DRAIN;
            while worker.is_running() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the stop policy must end the worker\n{}",
                    worker.log_tail()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let status = worker.terminate(Duration::from_secs(1));
            assert_eq!(status.code(), Some(1), "stopped with an error\n{}", worker.log_tail());
            let (committed, end) = names.checkpointed_and_end().await;
            assert!(
                committed < end,
                "the refused events' offsets are not committed ({committed} of {end})"
            );
        }
        names.cleanup().await;
    }
}
