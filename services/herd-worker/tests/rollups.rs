//! Rollups on the real stack, through real faults: events with known
//! aggregates, producer retries (the same messages sent again), late events
//! (two hours behind), one worker killed with SIGKILL and another frozen
//! (SIGSTOP) past its session timeout mid-stream. Afterwards every 1-minute
//! and 1-hour rollup equals the aggregate of the produced set, each (producer,
//! seq) once: count, sum, min, max, first and last exactly, quantiles within
//! the sketch's relative error.

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{messages, session, start_coordinator, start_worker, Encoding, Names};
use herd_model::Event;
use herd_sink::fencing::all_checkpoints;
use herd_sink::read::RollupReader;
use herd_sink::rollup::{bucket_of, SKETCH_ALPHA};
use herd_testkit::endpoints;
use herd_testkit::kafka::{produce, Outgoing};

const DRAIN: Duration = Duration::from_secs(300);

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// `n` events of `producer` from seq `first`, over 40 series and 2 metrics,
/// 5 ms apart from `base`. Values are multiples of 1/4 between -200 and 800:
/// exact in binary, so sums are exact whatever order they are added in.
fn events(producer: &str, first: u64, n: u64, base: i64) -> Vec<Event> {
    (first..first + n)
        .map(|seq| Event {
            series: format!("host-{}", seq % 40),
            metric: if seq % 2 == 0 { "cpu".into() } else { "mem".into() },
            ts: base + seq as i64 * 5,
            value: ((seq * 7919) % 4000) as f64 / 4.0 - 200.0,
            tags: Default::default(),
            producer: producer.into(),
            seq,
        })
        .collect()
}

/// The expected aggregate of one bucket.
#[derive(Debug, Default)]
struct Expected {
    values: Vec<f64>,
    first: Option<(i64, String, u64, f64)>,
    last: Option<(i64, String, u64, f64)>,
}

/// Per (series, metric, resolution, bucket): the aggregate of `events`,
/// each (producer, seq) once.
fn expected(
    events: &[Event],
    resolutions: &[u32],
) -> BTreeMap<(String, String, u32, i64), Expected> {
    let mut seen = BTreeSet::new();
    let mut out: BTreeMap<_, Expected> = BTreeMap::new();
    for e in events {
        if !seen.insert((e.producer.clone(), e.seq)) {
            continue;
        }
        for &r in resolutions {
            let x =
                out.entry((e.series.clone(), e.metric.clone(), r, bucket_of(e.ts, r))).or_default();
            x.values.push(e.value);
            let key = (e.ts, e.producer.clone(), e.seq, e.value);
            if x.first.as_ref().is_none_or(|f| (key.0, &key.1, key.2) < (f.0, &f.1, f.2)) {
                x.first = Some(key.clone());
            }
            if x.last.as_ref().is_none_or(|l| (key.0, &key.1, key.2) > (l.0, &l.1, l.2)) {
                x.last = Some(key);
            }
        }
    }
    for x in out.values_mut() {
        x.values.sort_by(f64::total_cmp);
    }
    out
}

/// Partition -> the worker that claimed it last, for claimed partitions;
/// with `checkpointed`, only those it has checkpointed since.
async fn owners(names: &Names, checkpointed: bool) -> BTreeMap<i32, String> {
    all_checkpoints(&session().await, &names.keyspace)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|(s, c)| *s.topic == *names.topic && (!checkpointed || c.next_offset.is_some()))
        .map(|(s, c)| (s.partition, c.owner))
        .collect()
}

async fn wait_owners(
    names: &Names,
    checkpointed: bool,
    what: &str,
    done: impl Fn(&BTreeMap<i32, String>) -> bool,
) {
    let started = Instant::now();
    loop {
        let o = owners(names, checkpointed).await;
        if done(&o) {
            return;
        }
        assert!(started.elapsed() < DRAIN, "{what}: not within {DRAIN:?}; checkpoint owners {o:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rollups_equal_the_produced_aggregates_through_retries_late_events_a_kill_and_a_freeze() {
    let names = Names::with_layout("rollups", "blocks");
    herd_clients::kafka::ensure_topic(&endpoints(), &names.topic, 4, 1)
        .await
        .expect("create topic");
    let _coordinator = start_coordinator(&names, &format!("{}-coord", names.keyspace));
    let args = names.worker_args(&["--block-flush-ms", "200"]);
    let mut w1 = start_worker("roll-w1", &args);
    let mut w2 = start_worker("roll-w2", &args);
    let mut w3 = start_worker("roll-w3", &args);
    let producer = herd_clients::kafka::producer(&endpoints(), "rollup-producer").unwrap();

    // 90,000 events over 7.5 minutes, in messages of 97 (so that their keys, the first series of each, spread over the partitions); a late producer
    // two hours behind; retries: every 15th message sent again a while later.
    let base = bucket_of(now_ms(), 60) - 10 * 60_000;
    let on_time = events("roll", 0, 90_000, base);
    let late = events("late", 0, 3_000, base - 2 * 3_600_000);
    let on_time_msgs = messages(&on_time, Encoding::Arrow(97));
    let late_msgs = messages(&late, Encoding::Arrow(97));
    let third = on_time_msgs.len() / 3;
    // Every 15th message of a part, sent again one part later: across the
    // kill, and across the freeze.
    let retries = |part: std::ops::Range<usize>| -> Vec<Outgoing> {
        on_time_msgs[part].iter().step_by(15).cloned().collect()
    };
    let mut sent_twice = 0;

    produce(&producer, &names.topic, &on_time_msgs[..third]).await;
    wait_owners(&names, true, "every worker checkpoints", |o| {
        ["roll-w1", "roll-w2", "roll-w3"].iter().all(|w| o.values().any(|v| v == w))
    })
    .await;
    w1.kill9();
    produce(&producer, &names.topic, &on_time_msgs[third..2 * third]).await;
    produce(&producer, &names.topic, &late_msgs).await;
    let again = retries(0..third);
    sent_twice += again.len();
    produce(&producer, &names.topic, &again).await;
    wait_owners(&names, false, "roll-w1's shards resumed elsewhere", |o| {
        o.len() == 4 && o.values().all(|v| v != "roll-w1")
    })
    .await;
    w2.signal(libc::SIGSTOP);
    produce(&producer, &names.topic, &on_time_msgs[2 * third..]).await;
    let again = retries(third..2 * third);
    sent_twice += again.len();
    produce(&producer, &names.topic, &again).await;
    wait_owners(&names, false, "roll-w2's shards resumed on roll-w3", |o| {
        o.len() == 4 && o.values().all(|v| v == "roll-w3")
    })
    .await;
    w2.signal(libc::SIGCONT);
    let again = retries(2 * third..on_time_msgs.len());
    sent_twice += again.len();
    produce(&producer, &names.topic, &again).await;

    names.wait_all_checkpointed(DRAIN).await;
    for w in [&mut w2, &mut w3] {
        assert!(w.terminate(Duration::from_secs(60)).success(), "{}", w.log_tail());
    }
    drop(w1);

    // Every rollup against the produced set.
    let resolutions = [60, 3600];
    let all: Vec<Event> = on_time.iter().chain(&late).cloned().collect();
    let want = expected(&all, &resolutions);
    let session = session().await;
    let pinned = herd_sink::schema::pinned(&session, &names.keyspace).await.unwrap().unwrap();
    let reader = RollupReader::prepare(&session, &names.keyspace, pinned).await.unwrap();
    let (from, to) = (base - 3 * 3_600_000, now_ms() + 3_600_000);
    let pairs: BTreeSet<(String, String)> =
        want.keys().map(|(s, m, _, _)| (s.clone(), m.clone())).collect();
    let mut checked = 0;
    for (series, metric) in &pairs {
        for &r in &resolutions {
            let got = reader.range(&session, series, metric, r, from, to).await.unwrap();
            assert_eq!(got.blocks_without, 0, "{series}/{metric}: blocks without {r}s rollups");
            let expect: Vec<_> = want
                .iter()
                .filter(|((s, m, res, _), _)| s == series && m == metric && *res == r)
                .collect();
            let buckets: Vec<i64> = got.buckets.iter().map(|p| p.bucket).collect();
            let expected_buckets: Vec<i64> = expect.iter().map(|((_, _, _, b), _)| *b).collect();
            assert_eq!(buckets, expected_buckets, "{series}/{metric} at {r}s: buckets");
            for (p, (_, x)) in got.buckets.iter().zip(&expect) {
                let at = format!("{series}/{metric} at {r}s, bucket {}", p.bucket);
                assert_eq!(p.count, x.values.len() as u64, "{at}: count");
                assert_eq!(p.sum, x.values.iter().sum::<f64>(), "{at}: sum");
                assert_eq!(p.min, x.values[0], "{at}: min");
                assert_eq!(p.max, *x.values.last().unwrap(), "{at}: max");
                let (f, l) = (x.first.as_ref().unwrap(), x.last.as_ref().unwrap());
                assert_eq!(
                    (p.first.ts, &p.first.producer, p.first.seq, p.first.value),
                    (f.0, &f.1, f.2, f.3),
                    "{at}: first"
                );
                assert_eq!(
                    (p.last.ts, &p.last.producer, p.last.seq, p.last.value),
                    (l.0, &l.1, l.2, l.3),
                    "{at}: last"
                );
                for q in [0.5, 0.9, 0.99] {
                    let exact = x.values[(q * (x.values.len() - 1) as f64) as usize];
                    let got = p.quantile(q).unwrap();
                    assert!(
                        (got - exact).abs() <= SKETCH_ALPHA * exact.abs() + 1e-9,
                        "{at}: p{} = {got}, the data's value at that rank is {exact}",
                        q * 100.0
                    );
                }
                checked += 1;
            }
        }
    }
    let late_buckets = want.keys().filter(|(_, _, r, b)| *r == 60 && *b < base - 3_600_000).count();
    assert!(late_buckets > 0, "late events have buckets of their own");
    eprintln!("{checked} rollup buckets equal the produced set's aggregates ({late_buckets} one-minute rollups of late events); {sent_twice} messages sent twice");
    names.cleanup().await;
}
