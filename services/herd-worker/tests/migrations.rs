//! Schema migrations, one worker at a time: three workers started at once
//! on a new keyspace. One takes the keyspace's schema lock in ZooKeeper and
//! migrates; the other two wait for it, find the schema up to date and run
//! no DDL. None fails, and the version is published in ZooKeeper.

mod common;

use std::time::{Duration, Instant};

use common::{session, start_worker, Names};
use herd_testkit::endpoints;

#[tokio::test(flavor = "multi_thread")]
async fn workers_started_together_migrate_a_new_keyspace_once() {
    let names = Names::new("migrate");
    let mut workers: Vec<_> =
        (1..=3).map(|i| start_worker(&format!("m{i}"), &names.worker_args(&[]))).collect();

    let deadline = Instant::now() + Duration::from_secs(90);
    while workers.iter().any(|w| !w.log().contains("worker started")) {
        for w in &mut workers {
            assert!(w.is_running(), "a worker exited while migrating:\n{}", w.log_tail());
        }
        assert!(Instant::now() < deadline, "not every worker started within 90 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let latest = herd_sink::schema::latest_version();
    let migrators: Vec<usize> =
        (0..3).filter(|&i| workers[i].log().contains("schema migrated under the lock")).collect();
    assert_eq!(migrators.len(), 1, "exactly one worker migrates; migrated: {migrators:?}");
    let migrator = format!("m{}", migrators[0] + 1);
    // Every migration was applied once, by that worker only.
    let applied: usize =
        workers.iter().map(|w| w.log().matches("applied schema migration").count()).sum();
    assert_eq!(applied, latest as usize, "each migration applied once over the three workers");
    let followers = workers
        .iter()
        .filter(|w| w.log().contains("schema up to date, migrated by another process"))
        .count();
    assert_eq!(followers, 2, "the two others found the schema migrated");

    let zk = herd_clients::zookeeper::connect(&endpoints(), Duration::from_secs(10))
        .await
        .expect("ZooKeeper");
    let published = herd_coord::schema::published(&zk, &names.root, &names.keyspace)
        .await
        .expect("readable")
        .expect("a schema version is published");
    assert_eq!((published.version, published.by.as_str()), (latest, migrator.as_str()));
    drop(zk);

    // And the migration log holds each version.
    let session = session().await;
    let rows = session
        .query_unpaged(format!("SELECT version FROM {}.herd_migrations", names.keyspace), &[])
        .await
        .expect("the migration log")
        .into_rows_result()
        .expect("rows");
    let mut versions: Vec<i32> =
        rows.rows::<(i32,)>().expect("ints").map(|r| r.expect("a version").0).collect();
    versions.sort();
    assert_eq!(versions, (1..=latest).collect::<Vec<_>>());

    for w in &mut workers {
        w.terminate(Duration::from_secs(30));
    }
    names.cleanup().await;
}
