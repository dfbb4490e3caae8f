//! Handoff without overlap: from the assignment the leader wants to the one
//! it may publish now.
//!
//! A worker *holds* a shard while its ephemeral `{root}/owned/{topic}:{partition}`
//! node exists: it creates the node before claiming the shard and deletes it
//! only after it stopped the shard, flushed it and checkpointed it. The node
//! also goes when the worker's session ends (death, expiry).
//!
//! [`plan`] is pure. For each shard, with `target` the owner [`crate::assign`]
//! chose and `holder` the worker holding it now:
//! - held by someone other than the target: published as *revoking* from the
//!   holder (with the holder's epoch). The target gets nothing yet;
//! - otherwise granted to the target. The grant keeps its epoch if the
//!   target already had it (held, or granted before and not revoked since);
//!   else it is a new grant with epoch [`NEW_GRANT`], which readers resolve to
//!   the zxid of the published version ([`AssignmentDoc::resolved`]). ZooKeeper
//!   zxids only grow, so every new grant of a shard has a higher epoch than
//!   all before it;
//! - held by a worker but no longer assigned at all (topic dropped): revoking
//!   from the holder, with no next owner.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::assign::{Assignment, Shard};

/// The epoch of a grant made by the document version that carries it.
pub const NEW_GRANT: i64 = 0;

/// One shard in the published assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardGrant {
    #[serde(flatten)]
    pub shard: Shard,
    /// The worker that may run the shard; if `revoke`, the one that must release it.
    pub owner: String,
    /// The grant's fencing epoch ([`NEW_GRANT`] in a stored document: this version's zxid).
    pub epoch: i64,
    /// The owner must stop, flush, checkpoint and release the shard.
    #[serde(default)]
    pub revoke: bool,
    /// Who gets the shard once it is released (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_owner: Option<String>,
}

/// The leader's published assignment, `{root}/assignment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentDoc {
    /// Epoch of the leader that wrote it.
    pub leader_epoch: i64,
    /// Added to the version's zxid to make a new grant's epoch: 0 until a
    /// restore into a wiped ZooKeeper (whose zxids start low again) sets
    /// the epoch floor above every epoch stored before (see
    /// [`crate::membership::epoch_floor_path`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch_base: i64,
    pub shards: Vec<ShardGrant>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl AssignmentDoc {
    /// With every [`NEW_GRANT`] replaced by `epoch_base` + `mzxid`, the zxid
    /// of the version that was read (its `Stat::mzxid`).
    pub fn resolved(mut self, mzxid: i64) -> AssignmentDoc {
        for s in &mut self.shards {
            if s.epoch == NEW_GRANT {
                s.epoch = self.epoch_base + mzxid;
            }
        }
        self
    }

    /// Grants made before the epoch floor `floor` was set (a ZooKeeper wiped
    /// and restored) are made again: their epochs may be below ones stored
    /// since, which Cassandra would refuse forever. Revocations keep theirs
    /// (the holder's).
    pub fn above_floor(mut self, floor: i64) -> AssignmentDoc {
        self.epoch_base = self.epoch_base.max(floor);
        for s in &mut self.shards {
            if !s.revoke && s.epoch != NEW_GRANT && s.epoch < floor {
                s.epoch = NEW_GRANT;
            }
        }
        self
    }

    /// The owners the leader aims for: the next owner of a shard being revoked.
    pub fn target(&self) -> Assignment {
        self.shards
            .iter()
            .filter_map(|s| {
                let owner = if s.revoke { s.next_owner.clone()? } else { s.owner.clone() };
                Some((s.shard.clone(), owner))
            })
            .collect()
    }

    /// The shards `worker` may run, with their epochs.
    pub fn granted_to(&self, worker: &str) -> BTreeMap<Shard, i64> {
        self.shards
            .iter()
            .filter(|s| s.owner == worker && !s.revoke)
            .map(|s| (s.shard.clone(), s.epoch))
            .collect()
    }
}

/// Who holds a shard now, from its `{root}/owned/…` node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    #[serde(flatten)]
    pub shard: Shard,
    pub worker: String,
    pub epoch: i64,
}

/// The grants to publish. `previous` must be resolved (no [`NEW_GRANT`]).
pub fn plan(
    target: &Assignment,
    previous: &[ShardGrant],
    holders: &BTreeMap<Shard, Holder>,
) -> Vec<ShardGrant> {
    let previous: BTreeMap<Shard, &ShardGrant> =
        previous.iter().map(|g| (g.shard.clone(), g)).collect();
    let mut out = Vec::with_capacity(target.len());
    for (shard, owner) in target {
        let grant = |owner: &str, epoch: i64, revoke: bool, next_owner: Option<String>| {
            ShardGrant { shard: shard.clone(), owner: owner.to_owned(), epoch, revoke, next_owner }
        };
        let g = match holders.get(shard) {
            Some(h) if h.worker != *owner => grant(&h.worker, h.epoch, true, Some(owner.clone())),
            Some(h) => grant(owner, h.epoch, false, None),
            None => match previous.get(shard) {
                Some(p) if p.owner == *owner && !p.revoke => grant(owner, p.epoch, false, None),
                _ => grant(owner, NEW_GRANT, false, None),
            },
        };
        out.push(g);
    }
    for (shard, h) in holders {
        if !target.contains_key(shard) {
            out.push(ShardGrant {
                shard: shard.clone(),
                owner: h.worker.clone(),
                epoch: h.epoch,
                revoke: true,
                next_owner: None,
            });
        }
    }
    out.sort_by(|a, b| a.shard.cmp(&b.shard));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(p: i32) -> Shard {
        Shard { topic: "t".into(), partition: p }
    }

    fn target(owners: &[&str]) -> Assignment {
        owners.iter().enumerate().map(|(p, o)| (shard(p as i32), o.to_string())).collect()
    }

    fn holders(h: &[(i32, &str, i64)]) -> BTreeMap<Shard, Holder> {
        h.iter()
            .map(|&(p, w, e)| (shard(p), Holder { shard: shard(p), worker: w.into(), epoch: e }))
            .collect()
    }

    fn publish(grants: Vec<ShardGrant>, zxid: i64) -> Vec<ShardGrant> {
        AssignmentDoc { leader_epoch: 1, epoch_base: 0, shards: grants }.resolved(zxid).shards
    }

    #[test]
    fn grants_and_holders_keep_topic_and_partition_as_fields_in_json() {
        let g = ShardGrant {
            shard: shard(3),
            owner: "a".into(),
            epoch: 7,
            revoke: false,
            next_owner: None,
        };
        let json = serde_json::to_value(&g).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"topic": "t", "partition": 3, "owner": "a", "epoch": 7, "revoke": false})
        );
        assert_eq!(serde_json::from_value::<ShardGrant>(json).unwrap(), g);
        let h = Holder { shard: shard(3), worker: "a".into(), epoch: 7 };
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"topic": "t", "partition": 3, "worker": "a", "epoch": 7})
        );
    }

    #[test]
    fn first_grants_are_new_and_resolve_to_the_version_zxid() {
        let g = plan(&target(&["a", "b"]), &[], &BTreeMap::new());
        assert!(g.iter().all(|g| g.epoch == NEW_GRANT && !g.revoke));
        let doc = AssignmentDoc { leader_epoch: 1, epoch_base: 0, shards: g }.resolved(100);
        assert_eq!(doc.granted_to("a"), BTreeMap::from([(shard(0), 100)]));
        assert_eq!(doc.granted_to("b"), BTreeMap::from([(shard(1), 100)]));
    }

    #[test]
    fn a_held_shard_moves_only_after_its_holder_releases_it_and_with_a_higher_epoch() {
        let v1 = publish(plan(&target(&["a", "a"]), &[], &BTreeMap::new()), 100);
        let held = holders(&[(0, "a", 100), (1, "a", 100)]);
        // b joins: shard 1 should move to b, but a still holds it.
        let v2 = plan(&target(&["a", "b"]), &v1, &held);
        assert_eq!(
            v2[0],
            ShardGrant {
                shard: shard(0),
                owner: "a".into(),
                epoch: 100,
                revoke: false,
                next_owner: None
            }
        );
        assert_eq!(
            v2[1],
            ShardGrant {
                shard: shard(1),
                owner: "a".into(),
                epoch: 100,
                revoke: true,
                next_owner: Some("b".into())
            }
        );
        let v2 = publish(v2, 200);
        assert!(
            AssignmentDoc { leader_epoch: 1, epoch_base: 0, shards: v2.clone() }
                .granted_to("b")
                .is_empty(),
            "no overlap"
        );
        assert_eq!(
            AssignmentDoc { leader_epoch: 1, epoch_base: 0, shards: v2.clone() }.target(),
            target(&["a", "b"])
        );
        // a released shard 1: now b gets it, with an epoch above a's.
        let v3 = publish(plan(&target(&["a", "b"]), &v2, &holders(&[(0, "a", 100)])), 300);
        assert_eq!((v3[1].owner.as_str(), v3[1].epoch, v3[1].revoke), ("b", 300, false));
        // The unmoved shard kept its epoch through every version.
        assert_eq!(v3[0].epoch, 100);
        // b takes it up; later versions keep b's epoch.
        let v4 = publish(
            plan(&target(&["a", "b"]), &v3, &holders(&[(0, "a", 100), (1, "b", 300)])),
            400,
        );
        assert_eq!(v4, v3);
    }

    #[test]
    fn a_dead_holder_s_shards_go_straight_to_the_new_owner() {
        let v1 = publish(plan(&target(&["a", "b"]), &[], &BTreeMap::new()), 100);
        // b's session ended: its node is gone, the target moved shard 1 to a.
        let v2 = publish(plan(&target(&["a", "a"]), &v1, &holders(&[(0, "a", 100)])), 200);
        assert_eq!((v2[1].owner.as_str(), v2[1].epoch, v2[1].revoke), ("a", 200, false));
    }

    #[test]
    fn above_an_epoch_floor_grants_are_made_again_and_resolve_above_it() {
        let g = |p: i32, epoch: i64, revoke: bool| ShardGrant {
            shard: shard(p),
            owner: "a".into(),
            epoch,
            revoke,
            next_owner: None,
        };
        let doc = AssignmentDoc {
            leader_epoch: 1,
            epoch_base: 0,
            shards: vec![g(0, 500, false), g(1, 2000, false), g(2, 500, true)],
        };
        let after = doc.above_floor(1000);
        assert_eq!(after.epoch_base, 1000);
        let epochs: Vec<i64> = after.shards.iter().map(|s| s.epoch).collect();
        assert_eq!(epochs, vec![NEW_GRANT, 2000, 500], "below the floor: granted again");
        // A wiped ZooKeeper's zxids start low: the new grant still lands above.
        let resolved = after.resolved(7);
        assert_eq!(resolved.shards[0].epoch, 1007);
        // Stored and read back, the base survives.
        let json = serde_json::to_string(&resolved).unwrap();
        assert_eq!(serde_json::from_str::<AssignmentDoc>(&json).unwrap().epoch_base, 1000);
    }

    #[test]
    fn a_regrant_to_the_same_worker_after_a_revocation_gets_a_new_epoch() {
        let v1 = publish(plan(&target(&["a"]), &[], &BTreeMap::new()), 100);
        let v2 = publish(plan(&target(&["b"]), &v1, &holders(&[(0, "a", 100)])), 200);
        assert!(v2[0].revoke);
        // a released it, and meanwhile b left, so the target is a again.
        let v3 = publish(plan(&target(&["a"]), &v2, &BTreeMap::new()), 300);
        assert_eq!((v3[0].owner.as_str(), v3[0].epoch, v3[0].revoke), ("a", 300, false));
    }

    #[test]
    fn a_held_shard_that_is_no_longer_assigned_is_revoked() {
        let v1 = publish(plan(&target(&["a", "a"]), &[], &BTreeMap::new()), 100);
        let v2 = plan(&target(&["a"]), &v1, &holders(&[(0, "a", 100), (1, "a", 100)]));
        assert_eq!(v2.len(), 2);
        assert_eq!((v2[1].revoke, v2[1].next_owner.clone()), (true, None));
        assert_eq!(
            AssignmentDoc { leader_epoch: 1, epoch_base: 0, shards: v2 }.target(),
            target(&["a"])
        );
    }
}
