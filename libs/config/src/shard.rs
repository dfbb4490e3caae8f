//! The shard: one Kafka topic-partition, the unit herd assigns, reads,
//! checkpoints and fences. One type for it everywhere (the coordinator's
//! assignment, the worker's pipeline, herdctl), written `topic:partition`.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::InvalidSetting;

/// One Kafka topic-partition. The topic is shared (`Arc<str>`): a worker
/// tags every message and block with its shard, and cloning one costs a
/// reference count, not a string. Ordered by topic, then partition.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Shard {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl Shard {
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Shard {
        Shard { topic: topic.into(), partition }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.topic, self.partition)
    }
}

impl FromStr for Shard {
    type Err = InvalidSetting;

    /// `topic:partition`, e.g. `events:3`: a valid Kafka topic name and a
    /// partition of 0 or more.
    fn from_str(s: &str) -> Result<Shard, InvalidSetting> {
        let bad = || {
            InvalidSetting::new(
                "shard",
                s,
                "is not a shard; expected topic:partition, e.g. events:3",
            )
        };
        let (topic, partition) = s.rsplit_once(':').ok_or_else(bad)?;
        let partition: i32 = partition.parse().map_err(|_| bad())?;
        if partition < 0 || crate::kafka_topic("shard", topic).is_err() {
            return Err(bad());
        }
        Ok(Shard::new(topic, partition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_read_and_write_topic_colon_partition() {
        let s: Shard = "events:3".parse().unwrap();
        assert_eq!(s, Shard::new("events", 3));
        assert_eq!(s.to_string(), "events:3");
        // Kafka topic names hold no colon: the last one splits.
        for bad in ["events", "events:", "events:-1", "events:x", ":3", "bad topic:1"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert!(Shard::new("a", 9) < Shard::new("b", 0), "by topic first");
        assert!(Shard::new("a", 2) < Shard::new("a", 10), "then by partition number");
    }
}
