//! Helpers for herd's integration tests, which run against the real servers
//! started by `deploy/local/stack up` (never stand-ins). Tests share one
//! stack, so each one takes its own topics, consumer groups, keyspaces and
//! znode roots from [`unique_name`].

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use herd_config::Endpoints;

pub mod cassandra;
pub mod herd;
pub mod kafka;
pub mod metrics;
pub mod process;
pub mod stack;

/// Deletes `root` and everything under it (a test's znode tree), ignoring
/// nodes that are gone meanwhile.
pub async fn delete_zk_tree(root: &str) {
    let Ok(zk) =
        herd_clients::zookeeper::connect(&endpoints(), std::time::Duration::from_secs(4)).await
    else {
        return;
    };
    let mut stack = vec![(root.to_owned(), false)];
    while let Some((path, expanded)) = stack.pop() {
        if expanded {
            let _ = zk.delete(&path, None).await;
            continue;
        }
        stack.push((path.clone(), true));
        if let Ok(children) = zk.list_children(&path).await {
            for c in children {
                stack.push((format!("{path}/{c}"), false));
            }
        }
    }
    herd_clients::zookeeper::close(zk, std::time::Duration::from_secs(2)).await;
}

/// Runs `deploy/local/stack` with `args` (e.g. `["stop", "cassandra"]`),
/// for fault tests that stop and restart a real server. Panics if it fails.
pub fn stack(args: &[&str]) {
    let script = stack::SCRIPT;
    let status = std::process::Command::new(script)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(status.success(), "deploy/local/stack {} failed: {status}", args.join(" "));
}

/// The ZooKeeper nodes of the stack as (name, pid, mode, client port), from
/// `stack status` (mode "leader" or "follower"; empty when it does not answer).
pub fn zookeeper_nodes() -> Vec<(String, i32, String, u16)> {
    let out =
        std::process::Command::new(stack::SCRIPT).arg("status").output().expect("stack status");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("zk"))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?.to_owned();
            let pid = f.next()?.parse().ok()?;
            let port = f.next()?.split(',').next()?.parse().ok()?;
            let mode = l.split("Mode: ").nth(1).unwrap_or("").trim().to_owned();
            Some((name, pid, mode, port))
        })
        .collect()
}

/// The stack's endpoints, from the `HERD_*` env vars or the stack defaults.
/// Panics with the reason on a malformed variable: a test cannot go on.
pub fn endpoints() -> Endpoints {
    Endpoints::from_env().unwrap_or_else(|e| panic!("bad HERD_* connection variable: {e}"))
}

/// A name no other test run uses: valid as a Kafka topic, a consumer group, a
/// Cassandra keyspace (letters, digits, underscore, at most 48 characters,
/// starting with a letter) and a znode name.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    assert!(
        prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && prefix.len() <= 16,
        "prefix {prefix:?}: use at most 16 of [a-z0-9_], starting with a letter"
    );
    let micros =
        SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_micros();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // 16 + 1 + 8 + 1 + 12 + 1 + up to 4 digits stays under 48.
    format!("{prefix}_{:x}_{:x}_{n}", std::process::id(), micros & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_fit_a_keyspace() {
        let a = unique_name("smoke_kafka_test");
        let b = unique_name("smoke_kafka_test");
        assert_ne!(a, b);
        for name in [&a, &b] {
            assert!(name.len() <= 48, "{name} is longer than a keyspace name may be");
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{name}");
        }
    }

    #[test]
    #[should_panic(expected = "use at most 16")]
    fn rejects_prefixes_that_would_not_fit() {
        unique_name("Bad-Prefix");
    }
}
