//! Shard assignment: `assign(workers, shards, previous) -> assignment`.
//!
//! Pure and deterministic: the same workers, shards and previous assignment
//! give the same result, whatever order they are listed in. Three rules:
//!
//! 1. **Balanced by capacity.** Each worker's quota is its share of the
//!    shards in proportion to its capacity, rounded by largest remainder
//!    (ties to the smaller worker id), so quotas sum to the number of shards
//!    and equal workers differ by at most one shard.
//! 2. **Sticky.** A shard stays with its previous owner if that owner is
//!    still a worker and is within its quota; only the surplus of workers over
//!    quota, and the shards of workers that left, move. That is the minimum
//!    number of moves any balanced assignment needs.
//! 3. **Deterministic placement.** Shards to place, in (topic, partition)
//!    order, go to the worker with the largest remaining quota (ties to the
//!    smaller id).

use std::collections::{BTreeMap, BTreeSet};

pub use herd_config::Shard;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worker {
    pub id: String,
    /// Relative weight; a worker with capacity 2 gets twice the shards of one with 1.
    /// A capacity of 0 gets no shards.
    pub capacity: u32,
}

/// Owner of each shard.
pub type Assignment = BTreeMap<Shard, String>;

pub fn assign(workers: &[Worker], shards: &[Shard], previous: &Assignment) -> Assignment {
    let shards: BTreeSet<&Shard> = shards.iter().collect();
    let mut workers: Vec<&Worker> = workers.iter().filter(|w| w.capacity > 0).collect();
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    workers.dedup_by(|a, b| a.id == b.id);
    if workers.is_empty() || shards.is_empty() {
        return Assignment::new();
    }
    let quota = quotas(&workers, shards.len());

    // Rule 2: keep what may be kept, up to each owner's quota.
    let mut left: BTreeMap<&str, usize> = quota.clone();
    let mut result = Assignment::new();
    let mut unplaced = Vec::new();
    for shard in &shards {
        match previous
            .get(*shard)
            .and_then(|owner| left.get_mut(owner.as_str()).map(|l| (owner, l)))
        {
            Some((owner, l)) if *l > 0 => {
                *l -= 1;
                result.insert((*shard).clone(), owner.clone());
            }
            _ => unplaced.push(*shard),
        }
    }
    // Rule 3: the rest to the largest remaining quota.
    for shard in unplaced {
        let (id, l) = left
            .iter_mut()
            .max_by(|(a_id, a), (b_id, b)| a.cmp(b).then_with(|| b_id.cmp(a_id)))
            .expect("at least one worker");
        debug_assert!(*l > 0, "quotas sum to the number of shards");
        *l -= 1;
        result.insert(shard.clone(), (*id).to_owned());
    }
    result
}

/// Shards per worker, proportional to capacity, summing to `total`.
fn quotas<'a>(workers: &[&'a Worker], total: usize) -> BTreeMap<&'a str, usize> {
    let capacity: u128 = workers.iter().map(|w| u128::from(w.capacity)).sum();
    let mut quota = BTreeMap::new();
    let mut remainders = Vec::new();
    let mut given = 0;
    for w in workers {
        let exact = total as u128 * u128::from(w.capacity);
        let q = (exact / capacity) as usize;
        quota.insert(w.id.as_str(), q);
        given += q;
        remainders.push((exact % capacity, w.id.as_str()));
    }
    // Largest remainder first; ties to the smaller id.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    for (_, id) in remainders.into_iter().take(total - given) {
        *quota.get_mut(id).expect("listed") += 1;
    }
    quota
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(n: i32) -> Vec<Shard> {
        (0..n).map(|p| Shard::new(format!("t{}", p % 3), p)).collect()
    }

    fn workers(n: usize) -> Vec<Worker> {
        (0..n).map(|i| Worker { id: format!("w{i:02}"), capacity: 1 }).collect()
    }

    fn counts(a: &Assignment) -> BTreeMap<&str, usize> {
        let mut c = BTreeMap::new();
        for owner in a.values() {
            *c.entry(owner.as_str()).or_default() += 1;
        }
        c
    }

    fn moved(before: &Assignment, after: &Assignment) -> usize {
        after.iter().filter(|(s, o)| before.get(*s).is_some_and(|b| b != *o)).count()
    }

    #[test]
    fn every_shard_once_and_balanced() {
        let s = shards(100);
        let a = assign(&workers(7), &s, &Assignment::new());
        assert_eq!(a.len(), 100);
        let c = counts(&a);
        assert_eq!(c.len(), 7);
        let (min, max) = (c.values().min().unwrap(), c.values().max().unwrap());
        assert!(max - min <= 1, "{c:?}");
    }

    #[test]
    fn capacity_weights_the_share() {
        let w = vec![
            Worker { id: "big".into(), capacity: 3 },
            Worker { id: "small".into(), capacity: 1 },
            Worker { id: "off".into(), capacity: 0 },
        ];
        let a = assign(&w, &shards(40), &Assignment::new());
        let c = counts(&a).into_iter().collect::<Vec<_>>();
        assert_eq!(c, vec![("big", 30), ("small", 10)]);
    }

    #[test]
    fn nothing_changes_when_nothing_changed() {
        let (w, s) = (workers(5), shards(64));
        let a = assign(&w, &s, &Assignment::new());
        assert_eq!(assign(&w, &s, &a), a);
    }

    #[test]
    fn three_to_four_workers_moves_a_quarter() {
        let s = shards(120);
        let a = assign(&workers(3), &s, &Assignment::new());
        let b = assign(&workers(4), &s, &a);
        assert_eq!(moved(&a, &b), 30, "exactly the new worker's share moves");
        assert_eq!(counts(&b)["w03"], 30);
    }

    #[test]
    fn a_leaving_worker_moves_only_its_shards() {
        let s = shards(90);
        let a = assign(&workers(3), &s, &Assignment::new());
        let b = assign(&workers(2), &s, &a);
        let gone: Vec<_> = a.iter().filter(|(_, o)| *o == "w02").map(|(s, _)| s).collect();
        assert_eq!(moved(&a, &b), gone.len());
        for (shard, owner) in &a {
            if owner != "w02" {
                assert_eq!(&b[shard], owner, "{shard:?} must not move");
            }
        }
    }

    #[test]
    fn new_partitions_are_picked_up_without_moving_others() {
        let a = assign(&workers(4), &shards(40), &Assignment::new());
        let b = assign(&workers(4), &shards(44), &a);
        assert_eq!(b.len(), 44);
        assert_eq!(moved(&a, &b), 0);
        assert!(counts(&b).values().all(|&n| n == 11));
    }

    #[test]
    fn deterministic_whatever_the_input_order() {
        let (mut w, mut s) = (workers(6), shards(50));
        let a = assign(&w, &s, &Assignment::new());
        w.reverse();
        s.reverse();
        assert_eq!(assign(&w, &s, &Assignment::new()), a);
    }

    #[test]
    fn no_workers_or_no_shards() {
        assert!(assign(&[], &shards(3), &Assignment::new()).is_empty());
        assert!(assign(&workers(2), &[], &Assignment::new()).is_empty());
    }

    #[test]
    fn churn_at_scale_stays_minimal_and_balanced() {
        // 1,000 shards on 50 workers; then 5 leave and 3 join, repeatedly.
        let s = shards(1000);
        let mut w = workers(50);
        let mut a = assign(&w, &s, &Assignment::new());
        let mut next = 50;
        for round in 0..20 {
            let before = a.clone();
            let left: Vec<String> = w.drain(..5).map(|w| w.id).collect();
            for _ in 0..3 {
                w.push(Worker { id: format!("w{next:02}"), capacity: 1 });
                next += 1;
            }
            a = assign(&w, &s, &before);
            let c = counts(&a);
            let (min, max) = (c.values().min().unwrap(), c.values().max().unwrap());
            assert!(max - min <= 1, "round {round}: {min}..{max}");
            // Minimal: a staying worker keeps min(before, after) of its
            // shards; exactly the rest moves.
            let before_counts = counts(&before);
            let kept: usize =
                c.iter().map(|(id, &n)| before_counts.get(id).map_or(0, |&b| b.min(n))).sum();
            assert_eq!(
                moved(&before, &a) + (s.len() - before.len()),
                s.len() - kept,
                "round {round}"
            );
            assert!(left.iter().all(|id| !c.contains_key(id.as_str())));
        }
    }
}
