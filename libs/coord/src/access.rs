//! Who may read herd's znodes: the one table of it.
//!
//! Without a ZooKeeper login every znode is open to all (ZooKeeper cannot
//! tell clients apart). With `--zookeeper-user`, herd's user alone may
//! write anything herd creates, the `--zookeeper-readers` may read what
//! `herdctl status` shows, and nobody else may read or write anything
//! (see `herd_clients::zookeeper::acls`).

use herd_clients::zookeeper::{acls, Visibility};
use zookeeper_client::{Acls, CreateMode, CreateOptions};

/// The children of `{root}` that `herdctl status` reads (with the root
/// itself and everything below them). Everything else (the live
/// configuration and its history, election candidates, locks, jobs, the
/// epoch floor) is herd's alone.
const STATUS: [&str; 6] = ["leader", "workers", "assignment", "owned", "schema", "cassandra"];

/// Who may see the znode at `path` of the deployment under `root`.
pub fn visibility(root: &str, path: &str) -> Visibility {
    let below = match path.strip_prefix(root) {
        Some("") => return Visibility::Status,
        Some(rest) if rest.starts_with('/') => &rest[1..],
        // Above or beside the root: directories leading to it.
        _ => return Visibility::Status,
    };
    let first = below.split('/').next().unwrap_or("");
    if STATUS.contains(&first) {
        Visibility::Status
    } else {
        Visibility::Herd
    }
}

/// The ACL of the znode at `path`.
pub fn acls_for(root: &str, path: &str) -> Acls<'static> {
    acls(visibility(root, path))
}

/// Options to create a persistent znode at `path` (and, with `mkdir`, its
/// missing ancestors) with its ACL.
pub fn persistent(root: &str, path: &str) -> CreateOptions<'static> {
    CreateMode::Persistent.with_acls(acls_for(root, path))
}

/// Options to create an ephemeral znode at `path` with its ACL.
pub fn ephemeral(root: &str, path: &str) -> CreateOptions<'static> {
    CreateMode::Ephemeral.with_acls(acls_for(root, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_only_its_parts() {
        let root = "/herd/prod";
        for path in [
            "/herd",
            "/herd/prod",
            "/herd/prod/leader",
            "/herd/prod/workers/w1",
            "/herd/prod/owned/events/0",
            "/herd/prod/schema/herd",
            "/herd/prod/cassandra/health",
        ] {
            assert_eq!(visibility(root, path), Visibility::Status, "{path}");
        }
        for path in [
            "/herd/prod/config",
            "/herd/prod/config-history/v1",
            "/herd/prod/election/latch-1",
            "/herd/prod/locks/job-repair",
            "/herd/prod/jobs/job-1",
            "/herd/prod/epoch_floor",
        ] {
            assert_eq!(visibility(root, path), Visibility::Herd, "{path}");
        }
        // A sibling root that only shares a prefix is not this root.
        assert_eq!(visibility(root, "/herd/production/config"), Visibility::Status);
    }
}
