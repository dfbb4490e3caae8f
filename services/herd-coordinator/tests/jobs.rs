//! Maintenance jobs under ZooKeeper locks, with real coordinators, real
//! herdctl processes and the real nodetool of the local stack.

use std::time::{Duration, Instant};

use herd_coord::election::current_leader;
use herd_coord::jobs::{self, Job, JobKind, JobSpec, JobState, Outcome};
use herd_testkit::herd::{coordinator, herdctl, nodetool};
use herd_testkit::process::Process;
use herd_testkit::{endpoints, unique_name};
use zookeeper_client::Client;

async fn wait_leader(zk: &Client, root: &str, id: &str) {
    let started = Instant::now();
    while current_leader(zk, root).await.unwrap().is_none_or(|l| l.id != id) {
        assert!(started.elapsed() < Duration::from_secs(60), "{id} did not lead");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `ids` have all ended; returns them.
async fn wait_final(
    zk: &Client,
    root: &str,
    ids: &[String],
    limit: Duration,
    logs: &[&Process],
) -> Vec<Job> {
    let started = Instant::now();
    loop {
        let mut jobs = Vec::new();
        for id in ids {
            jobs.push(jobs::read(zk, root, id).await.unwrap().0);
        }
        if jobs.iter().all(|j| j.state.is_final()) {
            return jobs;
        }
        if started.elapsed() > limit {
            let logs: Vec<String> = logs.iter().map(|p| p.log_tail()).collect();
            panic!("jobs not ended within {limit:?}: {jobs:#?}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_once_under_its_lock_and_a_frozen_holder_passes_it_on() {
    let root = format!("/{}", unique_name("jobs"));
    let keyspace = unique_name("jobs").replace('-', "_");
    let session = herd_clients::cassandra::session(&endpoints()).await.unwrap();
    session
        .query_unpaged(
            format!("CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"),
            (),
        )
        .await
        .unwrap();
    let zk = herd_clients::zookeeper::connect(&endpoints(), Duration::from_secs(10)).await.unwrap();
    let nodetool = nodetool();
    let with_nodetool = ["--nodetool", nodetool.as_str()];
    let mut c1 = coordinator("jobs-c1", &root, &[], &with_nodetool);
    wait_leader(&zk, &root, "jobs-c1").await;
    let mut c2 = coordinator("jobs-c2", &root, &[], &with_nodetool);
    let repair =
        || JobSpec::new(JobKind::Repair, Some("127.0.0.1".into()), keyspace.clone()).unwrap();

    // 1. Two coordinators (one leads, one stands by) and two herdctl runs
    // --here race for the same job; then two herdctl jobs of their own
    // race with one more for the leader.
    let raced = jobs::submit(&zk, &root, repair(), "the test", "raced for").await.unwrap();
    let manual = |args: Vec<String>| {
        let (root, nodetool) = (root.clone(), nodetool.clone());
        std::thread::spawn(move || {
            let mut all: Vec<&str> = vec!["--root", &root, "jobs", "run"];
            all.extend(args.iter().map(String::as_str));
            all.extend(["--here", "--wait", "--nodetool", &nodetool]);
            herdctl(&all)
        })
    };
    let same = (0..2).map(|_| manual(vec!["--job".into(), raced.clone()])).collect::<Vec<_>>();
    for h in same {
        let (code, out, err) = h.join().unwrap();
        assert_eq!(code, 0, "herdctl jobs run --job --here --wait:\n{out}\n{err}");
    }
    let own = |n: usize| {
        manual(vec![
            "repair".into(),
            "--node".into(),
            "127.0.0.1".into(),
            "--keyspace".into(),
            keyspace.clone(),
            "--reason".into(),
            format!("manual run {n}"),
        ])
    };
    let (h1, h2) = (own(1), own(2));
    let queued = jobs::submit(&zk, &root, repair(), "the test", "for the leader").await.unwrap();
    for h in [h1, h2] {
        let (code, out, err) = h.join().unwrap();
        assert_eq!(code, 0, "herdctl jobs run --here --wait:\n{out}\n{err}");
    }
    let all: Vec<String> =
        jobs::list(&zk, &root).await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(all.len(), 4, "one raced for, two manual jobs and one queued: {all:?}");
    assert!(all.contains(&queued) && all.contains(&raced));
    let done = wait_final(&zk, &root, &all, Duration::from_secs(120), &[&c1, &c2]).await;
    let mut attempts = Vec::new();
    for job in &done {
        assert_eq!(job.state, JobState::Succeeded, "{job:#?}");
        assert_eq!(job.record.attempts.len(), 1, "a job raced for runs once: {job:#?}");
        attempts.extend(job.record.attempts.iter().cloned());
    }
    // The repair lock let one runner in at a time.
    attempts.sort_by_key(|a| a.started_ms);
    for pair in attempts.windows(2) {
        assert!(
            pair[1].started_ms >= pair[0].ended_ms.unwrap(),
            "two repairs overlapped: {pair:#?}"
        );
    }
    assert!(
        attempts.iter().all(|a| a.by != "jobs-c2"),
        "the standby coordinator runs no jobs: {attempts:#?}"
    );
    eprintln!("raced: {:?}", attempts.iter().map(|a| &a.by).collect::<Vec<_>>());

    // 2. The leader is frozen past its session timeout while it runs a
    // job: the lock passes on to the new leader, which records what
    // happened to the first attempt and runs the job again.
    let frozen = jobs::submit(&zk, &root, repair(), "the test", "to be frozen").await.unwrap();
    let started = Instant::now();
    loop {
        let (job, _) = jobs::read(&zk, &root, &frozen).await.unwrap();
        if job.state == JobState::Running {
            assert_eq!(job.record.attempts[0].by, "jobs-c1");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not run: {job:#?}\n{}",
            c1.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c1.signal(libc::SIGSTOP);
    let job =
        wait_final(&zk, &root, std::slice::from_ref(&frozen), Duration::from_secs(90), &[&c2])
            .await
            .remove(0);
    c1.signal(libc::SIGCONT);
    assert_eq!(job.state, JobState::Succeeded, "{job:#?}");
    let [first, second] = &job.record.attempts[..] else { panic!("two attempts: {job:#?}") };
    assert_eq!(first.by, "jobs-c1");
    match &first.outcome {
        Some(Outcome::Abandoned { why }) => {
            assert!(why.contains("jobs-c1 lost the lock") && why.contains("jobs-c2 took"), "{why}")
        }
        other => panic!("the frozen run is recorded as abandoned: {other:?}"),
    }
    assert_eq!(second.by, "jobs-c2");
    assert!(second.started_ms >= first.ended_ms.unwrap());

    // The thawed coordinator finds its session gone: it does not write the
    // job again, and stands by under the new leader.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (after, _) = jobs::read(&zk, &root, &frozen).await.unwrap();
    assert_eq!(after.record, job.record, "the thawed runner wrote over the history");
    assert!(c1.is_running(), "{}", c1.log_tail());
    assert_eq!(current_leader(&zk, &root).await.unwrap().unwrap().id, "jobs-c2");

    // What an operator sees.
    let (code, out, err) = herdctl(&["--root", &root, "jobs", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("abandoned") && out.contains("2 attempts"), "{out}");
    let (code, out, _) = herdctl(&["--root", &root, "jobs", "status", &frozen]);
    assert_eq!(code, 0);
    assert!(out.contains("attempt 1 by jobs-c1") && out.contains("attempt 2 by jobs-c2"), "{out}");

    // Cancelling a queued job: nobody runs it. The leader may take it
    // first; either way it ends once and says how.
    let cancelled =
        jobs::submit(&zk, &root, repair(), "the test", "to be cancelled").await.unwrap();
    let (code, out, err) = herdctl(&["--root", &root, "jobs", "cancel", &cancelled]);
    assert_eq!(code, 0, "{out}{err}");
    let job = wait_final(&zk, &root, &[cancelled], Duration::from_secs(60), &[&c2]).await.remove(0);
    if out.contains("cancel requested") {
        assert_eq!(job.state, JobState::Cancelled, "{job:#?}");
        assert!(job.record.attempts.len() <= 1, "{job:#?}");
    } else {
        eprintln!("the leader finished the job before the cancel: {out}");
    }

    for c in [&mut c1, &mut c2] {
        c.terminate(Duration::from_secs(20));
    }
    herd_clients::zookeeper::close(zk, Duration::from_secs(2)).await;
    herd_testkit::delete_zk_tree(&root).await;
    session.query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), ()).await.unwrap();
}
