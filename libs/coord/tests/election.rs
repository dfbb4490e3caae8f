//! Leader-only writes against the real ZooKeeper ensemble.

use std::time::Duration;

use herd_coord::election::{campaign, current_leader, ElectionError};
use herd_testkit::{endpoints, unique_name};

#[tokio::test(flavor = "multi_thread")]
async fn a_deposed_leadership_cannot_write() {
    let root = format!("/{}", unique_name("deposed"));
    let zk = herd_clients::zookeeper::connect(&endpoints(), Duration::from_secs(10))
        .await
        .expect("session");
    let other = herd_clients::zookeeper::connect(&endpoints(), Duration::from_secs(10))
        .await
        .expect("session");

    let leadership = campaign(&zk, &root, "x").await.expect("leads alone");
    leadership.publish(&zk, &root, "x").await.expect("the leader writes");
    let before = current_leader(&other, &root).await.unwrap().expect("published");

    // The lock node vanishes (as when the session expires): leadership is gone.
    other.delete(&leadership.lock_path, None).await.expect("delete the lock node");
    let result =
        leadership.write(&zk, &format!("{root}/leader"), b"{\"id\":\"x\",\"epoch\":0}").await;
    assert!(matches!(result, Err(ElectionError::Deposed(_))), "got {result:?}");
    assert_eq!(
        current_leader(&other, &root).await.unwrap(),
        Some(before),
        "the refused write changed nothing"
    );
}
