//! `herd-loadgen produce` against the real Kafka: what lands in the topic is
//! exactly the planned events (per producer, every seq once, duplicates and
//! malformed messages as reported), stamped with the ramp's schedule; Arrow
//! with zstd and padded, multi-tag events reads back whole; bad flags are
//! refused before anything is sent.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use herd_testkit::{endpoints, kafka, unique_name};
use rdkafka::message::{Headers, Message};

fn loadgen(args: &[&str]) -> (i32, String, String) {
    herd_testkit::herd::run("herd-loadgen", args)
}

/// Every message of `topic`, decoded as herd-worker decodes it: (events, rejects).
async fn read_back(topic: &str, messages: usize) -> (Vec<herd_model::Event>, usize) {
    let ends = kafka::end_offsets(&endpoints(), topic).await;
    assert_eq!(ends.values().sum::<i64>() as usize, messages, "messages in {topic}: {ends:?}");
    let records = kafka::read_all(&endpoints(), topic, messages, Duration::from_secs(60));
    assert_eq!(records.len(), messages, "read back from {topic}");
    let (mut events, mut rejects) = (Vec::new(), 0);
    for r in &records {
        let content_type = r.headers().and_then(|h| {
            h.iter().find(|h| h.key == herd_model::CONTENT_TYPE_HEADER).and_then(|h| h.value)
        });
        let decoded = herd_model::decode(r.payload(), content_type);
        events.extend(decoded.events);
        rejects += decoded.rejects.len();
    }
    (events, rejects)
}

/// "also sent: D messages a second time (...), M malformed messages (...)".
fn extras(out: &str) -> (usize, usize) {
    let line = out
        .lines()
        .find(|l| l.contains("also sent:"))
        .unwrap_or("also sent: 0 messages a second time, 0 malformed");
    let numbers: Vec<usize> =
        line.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    (numbers[0], numbers[1])
}

#[tokio::test(flavor = "multi_thread")]
async fn ramped_multi_producer_run_sends_exactly_the_planned_events() {
    let topic = unique_name("lgproduce");
    let base = 1_700_000_000_000i64;
    let started = Instant::now();
    let (code, out, err) = loadgen(&[
        "produce",
        "--topic",
        &topic,
        "--events",
        "1000",
        "--producers",
        "3",
        "--producer-id",
        "tp",
        "--encoding",
        "json-lines",
        "--batch-events",
        "10",
        "--rate",
        "2000",
        "--ramp-secs",
        "0.5",
        "--duplicate-pct",
        "10",
        "--malformed-pct",
        "5",
        "--base-ts",
        &base.to_string(),
    ]);
    let elapsed = started.elapsed();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("--expect tp-0=334 --expect tp-1=333 --expect tp-2=333"), "{out}");
    let (dups, bad) = extras(&out);
    assert!(dups > 0 && bad > 0, "10% duplicates and 5% malformed of 102 messages: {out}");

    // 34 messages per producer: 33 of 10 events and a last one of 4 or 3.
    let (events, rejects) = read_back(&topic, 102 + dups + bad).await;
    assert_eq!(rejects, bad, "each malformed message is one reject");
    let mut per_event: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for e in &events {
        *per_event.entry((e.producer.clone(), e.seq)).or_default() += 1;
    }
    for (producer, count) in [("tp-0", 334), ("tp-1", 333), ("tp-2", 333)] {
        let seqs: Vec<u64> =
            per_event.keys().filter(|(p, _)| p == producer).map(|(_, s)| *s).collect();
        assert_eq!(seqs, (0..count).collect::<Vec<_>>(), "{producer}: every seq, nothing else");
    }
    let twice = per_event.values().filter(|&&n| n == 2).count();
    assert_eq!(events.len(), 1000 + twice, "a duplicated message repeats its events once");
    assert!(
        (dups * 3..=dups * 10).contains(&twice),
        "{dups} messages of 3 to 10 events sent twice: {twice}"
    );
    assert!(per_event.values().all(|&n| n <= 2));

    // Event time is the message's due time: a linear ramp 0 -> 2000/s over
    // 0.5 s (500 events), then 2000/s. The last message (tp-2's last 3
    // events, after 997 others) is due at 0.5 + 497 / 2000 = 0.7485 s; by
    // 0.25 s, 4000 * 0.25^2 / 2 = 125 events are due, so the messages after
    // 0, 10, ..., 120 others (13 of 10).
    let offsets: Vec<i64> = events.iter().map(|e| e.ts - base).collect();
    assert_eq!(offsets.iter().min(), Some(&0));
    assert_eq!(offsets.iter().max(), Some(&748));
    let distinct_early: BTreeSet<(String, u64)> =
        events.iter().filter(|e| e.ts - base < 250).map(|e| (e.producer.clone(), e.seq)).collect();
    assert_eq!(distinct_early.len(), 130, "events due in the first 250 ms of the ramp");
    // Open loop: the last message cannot leave before it is due.
    assert!(
        elapsed >= Duration::from_millis(748),
        "the run took {elapsed:?}: sends did not wait for their due time"
    );
    assert!(out.contains("sends behind schedule: p50"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn arrow_with_zstd_and_wide_events_reads_back_whole() {
    let topic = unique_name("lgzstd");
    let (code, out, err) = loadgen(&[
        "produce",
        "--topic",
        &topic,
        "--events",
        "5000",
        "--encoding",
        "arrow",
        "--batch-events",
        "1000",
        "--compression",
        "zstd",
        "--tags",
        "3",
        "--tag-values",
        "5",
        "--payload-bytes",
        "300",
        "--series",
        "50",
        "--producer-id",
        "tz",
        "--content-type-header",
        "false",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("compression zstd"), "{out}");
    let (events, rejects) = read_back(&topic, 5).await;
    assert_eq!(rejects, 0);
    let seqs: BTreeSet<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!((events.len(), seqs.len(), seqs.last()), (5000, 5000, Some(&4999)));
    let hosts: BTreeSet<&str> = events.iter().map(|e| e.tags["host"].as_str()).collect();
    let series: BTreeSet<&str> = events.iter().map(|e| e.series.as_str()).collect();
    assert_eq!((hosts.len(), series.len()), (5, 50));
    for e in &events {
        assert_eq!(e.tags.len(), 5, "3 tags and 2 padding tags: {:?}", e.tags);
        assert_eq!(e.tags["pad0"].len() + e.tags["pad1"].len(), 300);
        e.validate().unwrap();
    }
}

#[test]
fn bad_flags_are_refused_before_connecting() {
    for (args, expected) in [
        (vec!["--duration", "5"], "need a target --rate"),
        (
            vec!["--events", "10", "--rate", "100", "--ramp-from", "500", "--ramp-secs", "2"],
            "above --rate",
        ),
        (vec!["--events", "10", "--rate", "100", "--compare-raw"], "use it with --rate 0"),
        (vec!["--events", "10", "--tags", "60", "--payload-bytes", "2000"], "68 tags per event"),
        (vec!["--events", "10", "--producers", "0"], "--producers must be at least 1"),
        (vec!["--events", "10", "--duplicate-pct", "150"], "percentage from 0 to 100"),
        (vec!["--events", "10", "--compression", "brotli"], "invalid value 'brotli'"),
    ] {
        let mut all = vec![
            "produce",
            "--topic",
            "never_used",
            "--check-config",
            "--kafka-brokers",
            "127.0.0.1:1",
        ];
        all.extend(args.iter().copied());
        let (code, out, err) = loadgen(&all);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let (code, out, err) = loadgen(&[
        "produce",
        "--topic",
        "t",
        "--duration",
        "3",
        "--rate",
        "1000",
        "--ramp-secs",
        "2",
        "--check-config",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("produce 2000 Arrow events"),
        "a 2 s ramp to 1000/s (1,000 events), then 1 s at 1000/s: {out}"
    );
}

/// Probes look rows up by key until they are there: with this test as the
/// worker, writing every event 800 ms after its event time and one sampled
/// event never, the probes report at least 800 ms and one event not seen.
#[tokio::test(flavor = "multi_thread")]
async fn probes_measure_when_rows_become_visible() {
    use clap::Parser;
    #[derive(Parser)]
    struct Sink {
        #[command(flatten)]
        args: herd_sink::SinkArgs,
    }
    let topic = unique_name("lgprobe");
    let ks = topic.clone();
    let settings = Sink::parse_from(["sink", "--keyspace", &ks, "--bucket-secs", "3600"])
        .args
        .validate()
        .unwrap();
    let session =
        std::sync::Arc::new(herd_clients::cassandra::session(&endpoints()).await.expect("session"));
    herd_sink::schema::migrate(&session, &settings).await.expect("schema");
    let writer = herd_sink::RowWriter::prepare(session, settings).await.expect("writer");
    // The reader below subscribes before herd-loadgen's first message.
    herd_clients::kafka::ensure_topic(&endpoints(), &topic, 4, 1).await.expect("topic");

    // 400 events in 40 messages at 2,000/s; seqs 0, 100, 200 and 300 probed.
    let child = Command::new(env!("CARGO_BIN_EXE_herd-loadgen"))
        .args([
            "produce",
            "--topic",
            &topic,
            "--events",
            "400",
            "--rate",
            "2000",
            "--encoding",
            "json-lines",
            "--batch-events",
            "10",
            "--producer-id",
            "pp",
            "--probe-keyspace",
            &ks,
            "--probe-every",
            "100",
            "--probe-timeout-secs",
            "5",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run herd-loadgen");
    let t = topic.clone();
    let records = tokio::task::spawn_blocking(move || {
        kafka::read_all(&endpoints(), &t, 40, Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert_eq!(records.len(), 40);
    for r in &records {
        for e in herd_model::decode(r.payload(), None).events {
            if e.seq == 300 {
                continue;
            }
            let due = std::time::UNIX_EPOCH + Duration::from_millis((e.ts + 800) as u64);
            if let Ok(wait) = due.duration_since(std::time::SystemTime::now()) {
                tokio::time::sleep(wait).await;
            }
            writer.write_partition(&[&e]).await.expect("write");
        }
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("herd-loadgen"))
        .await
        .unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    let visible = stdout
        .lines()
        .find(|l| l.contains("visible in Cassandra (3 sampled events"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let p50: f64 = visible
        .split("p50 ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(p50 >= 800.0, "rows were written 800 ms after their event time; the probes saw them after {p50} ms: {visible}");
    assert!(stdout.contains("1 sampled events not visible within 5 s"), "{stdout}");
}
