use std::time::Duration;

/// Where and how events are stored, as given on the command line or in the
/// environment. Validate with [`SinkArgs::validate`].
#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    /// Cassandra keyspace for herd's tables; created if missing.
    #[arg(long, env = "HERD_KEYSPACE", default_value = "herd")]
    pub keyspace: String,

    /// Replication of a keyspace herd creates: `simple:N` (SimpleStrategy,
    /// N replicas) or `dc1:N,dc2:M` (NetworkTopologyStrategy). An existing
    /// keyspace is left as it is.
    #[arg(long, env = "HERD_REPLICATION", default_value = "simple:1")]
    pub replication: String,

    /// Time span of one Cassandra partition per series, in seconds. Fixed
    /// once a keyspace holds data.
    #[arg(long, env = "HERD_BUCKET_SECS", default_value_t = 86_400)]
    pub bucket_secs: u64,

    /// Time to live of every written point, in seconds; 0 keeps points forever.
    #[arg(long, env = "HERD_TTL_SECS", default_value_t = 0)]
    pub ttl_secs: u64,

    /// Write timestamp of each row: `event-time` (the event's own time:
    /// deterministic, so replays are exact overwrites) or `ingest-time`
    /// (when the worker writes it: a later replay wins over an earlier write).
    #[arg(long, env = "HERD_WRITE_TIMESTAMP", value_enum, default_value_t = WriteTimestamp::EventTime)]
    pub write_timestamp: WriteTimestamp,

    /// Timeout of one write request to Cassandra, in milliseconds.
    #[arg(long, env = "HERD_WRITE_TIMEOUT_MS", default_value_t = 5_000)]
    pub write_timeout_ms: u64,

    /// How events are stored: `rows` (one row per event in `points`) or
    /// `blocks` (compressed per-series blocks in `blocks`: far fewer bytes
    /// and writes per event). Chosen when the keyspace is first migrated and
    /// fixed from then on.
    #[arg(long, env = "HERD_LAYOUT", value_enum, default_value_t = Layout::Rows)]
    pub layout: Layout,

    /// How many replicas acknowledge every data write and checkpoint
    /// commit. `local-quorum`: a majority of the local data center's
    /// replicas (with replication 3, one node may be down). `one` /
    /// `local-one`: one replica (faster; a write acknowledged by a replica
    /// that then dies before the others have it is lost until repair, and a
    /// quorum read may miss it). `quorum` / `each-quorum`: a majority over
    /// all data centers / in each (slower across data centers). `all`:
    /// every replica (one node down stops ingestion).
    #[arg(long, env = "HERD_WRITE_CONSISTENCY", value_enum, default_value_t = WriteConsistency::LocalQuorum)]
    pub write_consistency: WriteConsistency,

    /// Paxos consistency of the checkpoints' lightweight transactions
    /// (claims and commits). `serial`: a quorum of all replicas, so a claim
    /// is seen in every data center. `local-serial`: the local data
    /// center's replicas only (faster with several data centers, but two
    /// workers in different data centers could both claim a shard after a
    /// partition between them). The same with one data center.
    #[arg(long, env = "HERD_SERIAL_CONSISTENCY", value_enum, default_value_t = SerialLevel::Serial)]
    pub serial_consistency: SerialLevel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WriteConsistency {
    One,
    LocalOne,
    Quorum,
    LocalQuorum,
    EachQuorum,
    All,
}

impl WriteConsistency {
    pub fn cql(self) -> scylla::statement::Consistency {
        use scylla::statement::Consistency as C;
        match self {
            WriteConsistency::One => C::One,
            WriteConsistency::LocalOne => C::LocalOne,
            WriteConsistency::Quorum => C::Quorum,
            WriteConsistency::LocalQuorum => C::LocalQuorum,
            WriteConsistency::EachQuorum => C::EachQuorum,
            WriteConsistency::All => C::All,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SerialLevel {
    Serial,
    LocalSerial,
}

impl SerialLevel {
    /// For the Paxos phase of a lightweight transaction.
    pub fn paxos(self) -> scylla::statement::SerialConsistency {
        match self {
            SerialLevel::Serial => scylla::statement::SerialConsistency::Serial,
            SerialLevel::LocalSerial => scylla::statement::SerialConsistency::LocalSerial,
        }
    }

    /// For a read that must see the latest lightweight transaction.
    pub fn read(self) -> scylla::statement::Consistency {
        match self {
            SerialLevel::Serial => scylla::statement::Consistency::Serial,
            SerialLevel::LocalSerial => scylla::statement::Consistency::LocalSerial,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    Simple(u32),
    NetworkTopology(Vec<(String, u32)>),
}

impl Replication {
    /// The CQL map literal of `CREATE KEYSPACE ... WITH replication = ...`.
    pub fn cql(&self) -> String {
        match self {
            Replication::Simple(n) => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {n}}}")
            }
            Replication::NetworkTopology(dcs) => {
                let dcs: Vec<String> = dcs.iter().map(|(dc, n)| format!("'{dc}': {n}")).collect();
                format!("{{'class': 'NetworkTopologyStrategy', {}}}", dcs.join(", "))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WriteTimestamp {
    EventTime,
    IngestTime,
}

impl std::fmt::Display for WriteTimestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteTimestamp::EventTime => "event-time",
            WriteTimestamp::IngestTime => "ingest-time",
        })
    }
}

/// Validated sink settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkSettings {
    pub keyspace: String,
    pub replication: Replication,
    /// Bucket width in milliseconds, > 0.
    pub bucket_ms: i64,
    /// 0: no TTL.
    pub ttl_secs: i32,
    pub write_timestamp: WriteTimestamp,
    pub write_timeout: Duration,
    pub layout: Layout,
    pub write_consistency: WriteConsistency,
    pub serial_consistency: SerialLevel,
}

pub use herd_config::InvalidSetting as SettingsError;

use crate::Layout;

fn err(field: &'static str, value: impl ToString, problem: impl Into<String>) -> SettingsError {
    SettingsError::new(field, value, problem)
}

/// CQL identifiers herd creates unquoted: start with a letter, then letters,
/// digits or underscores, at most 48 characters (Cassandra's keyspace limit).
/// Whether `s` is a keyspace (or table) name herd can use unquoted in CQL.
pub fn valid_identifier(s: &str) -> bool {
    s.len() <= 48
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A day in seconds times 366: a bucket wider than a year makes partitions
/// grow without bound for any series that reports regularly.
const MAX_BUCKET_SECS: u64 = 366 * 86_400;
/// Cassandra's own limit on TTLs (20 years).
const MAX_TTL_SECS: u64 = 630_720_000;

impl SinkArgs {
    pub fn validate(&self) -> Result<SinkSettings, SettingsError> {
        if !valid_identifier(&self.keyspace) {
            return Err(err(
                "keyspace",
                &self.keyspace,
                "is not a keyspace name herd can create; use at most 48 letters, digits and underscores, starting with a letter",
            ));
        }
        let replication = parse_replication(&self.replication)?;
        if !(1..=MAX_BUCKET_SECS).contains(&self.bucket_secs) {
            return Err(err(
                "bucket-secs",
                self.bucket_secs,
                format!("is out of range; expected 1 to {MAX_BUCKET_SECS}"),
            ));
        }
        if self.ttl_secs > MAX_TTL_SECS {
            return Err(err(
                "ttl-secs",
                self.ttl_secs,
                format!("is out of range; expected 0 (no TTL) to {MAX_TTL_SECS}"),
            ));
        }
        let (write_timestamp, layout) = (self.write_timestamp, self.layout);
        if layout == Layout::Blocks && write_timestamp == WriteTimestamp::IngestTime {
            return Err(err(
                "write-timestamp",
                self.write_timestamp,
                "cannot be used with --layout blocks: a block rewritten late (by a paused former owner) would win over the newer owner's larger block; blocks take their timestamp from their content, so use event-time",
            ));
        }
        if !(1..=600_000).contains(&self.write_timeout_ms) {
            return Err(err(
                "write-timeout-ms",
                self.write_timeout_ms,
                "is out of range; expected 1 to 600000",
            ));
        }
        Ok(SinkSettings {
            keyspace: self.keyspace.clone(),
            replication,
            bucket_ms: (self.bucket_secs * 1000) as i64,
            ttl_secs: self.ttl_secs as i32,
            write_timestamp,
            write_timeout: Duration::from_millis(self.write_timeout_ms),
            layout,
            write_consistency: self.write_consistency,
            serial_consistency: self.serial_consistency,
        })
    }
}

fn parse_replication(value: &str) -> Result<Replication, SettingsError> {
    let bad = |problem: &str| {
        err("replication", value, format!("{problem}; expected simple:N or dc1:N[,dc2:M...]"))
    };
    let factor = |n: &str| -> Result<u32, SettingsError> {
        match n.trim().parse::<u32>() {
            Ok(n) if (1..=32).contains(&n) => Ok(n),
            _ => Err(bad(&format!("replication factor {n:?} is not a number from 1 to 32"))),
        }
    };
    if let Some(n) = value.strip_prefix("simple:") {
        return Ok(Replication::Simple(factor(n)?));
    }
    let mut dcs = Vec::new();
    for part in value.split(',') {
        let (dc, n) = part.split_once(':').ok_or_else(|| bad(&format!("{part:?} has no :N")))?;
        let dc = dc.trim();
        if dc.is_empty() || !dc.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
            return Err(bad(&format!("data center name {dc:?} is not valid")));
        }
        dcs.push((dc.to_owned(), factor(n)?));
    }
    Ok(Replication::NetworkTopology(dcs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SinkArgs {
        SinkArgs {
            keyspace: "herd".into(),
            replication: "simple:1".into(),
            bucket_secs: 3600,
            ttl_secs: 0,
            write_timestamp: WriteTimestamp::EventTime,
            write_timeout_ms: 5000,
            layout: Layout::Rows,
            write_consistency: WriteConsistency::LocalQuorum,
            serial_consistency: SerialLevel::Serial,
        }
    }

    #[test]
    fn consistency_defaults_are_local_quorum_and_serial() {
        use scylla::statement::{Consistency, SerialConsistency};
        let s = args().validate().unwrap();
        assert_eq!(s.write_consistency.cql(), Consistency::LocalQuorum);
        assert_eq!(s.serial_consistency.paxos(), SerialConsistency::Serial);
        assert_eq!(s.serial_consistency.read(), Consistency::Serial);
        assert_eq!(SerialLevel::LocalSerial.read(), Consistency::LocalSerial);
        assert_eq!(WriteConsistency::EachQuorum.cql(), Consistency::EachQuorum);
    }

    #[test]
    fn defaults_validate() {
        let s = args().validate().unwrap();
        assert_eq!(s.bucket_ms, 3_600_000);
        assert_eq!(s.replication.cql(), "{'class': 'SimpleStrategy', 'replication_factor': 1}");
    }

    #[test]
    fn network_topology() {
        let mut a = args();
        a.replication = "eu-1:3, us_2:2".into();
        assert_eq!(
            a.validate().unwrap().replication.cql(),
            "{'class': 'NetworkTopologyStrategy', 'eu-1': 3, 'us_2': 2}"
        );
    }

    #[test]
    fn policies_are_enums_whose_flags_refuse_other_values() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            sink: SinkArgs,
        }
        let parsed = Cli::try_parse_from(["t", "--layout", "blocks"]).unwrap().sink;
        assert_eq!(
            (parsed.layout, parsed.write_timestamp),
            (Layout::Blocks, WriteTimestamp::EventTime)
        );
        for (flag, value, accepted) in [
            ("--write-timestamp", "now", "event-time, ingest-time"),
            ("--layout", "columns", "rows, blocks"),
        ] {
            let e = Cli::try_parse_from(["t", flag, value]).err().expect("refused").to_string();
            assert!(
                e.contains(&format!("'{value}'")) && e.contains(flag) && e.contains(accepted),
                "{e}"
            );
        }
    }

    #[test]
    fn errors_name_field_and_value() {
        /// A change that makes the arguments invalid, and the field it names.
        type Case = (Box<dyn Fn(&mut SinkArgs)>, &'static str);
        let cases: Vec<Case> = vec![
            (Box::new(|a| a.keyspace = "1herd".into()), "keyspace: \"1herd\""),
            (Box::new(|a| a.keyspace = "herd; DROP".into()), "keyspace: \"herd; DROP\""),
            (Box::new(|a| a.replication = "simple:0".into()), "replication: \"simple:0\""),
            (Box::new(|a| a.replication = "dc1".into()), "replication: \"dc1\" \"dc1\" has no :N"),
            (Box::new(|a| a.replication = "d'c:1".into()), "data center name"),
            (Box::new(|a| a.bucket_secs = 0), "bucket-secs: \"0\" is out of range"),
            (Box::new(|a| a.ttl_secs = MAX_TTL_SECS + 1), "ttl-secs"),
            (Box::new(|a| a.write_timeout_ms = 0), "write-timeout-ms"),
            (
                Box::new(|a| {
                    a.layout = Layout::Blocks;
                    a.write_timestamp = WriteTimestamp::IngestTime;
                }),
                "cannot be used with --layout blocks",
            ),
        ];
        for (mutate, expected) in cases {
            let mut a = args();
            mutate(&mut a);
            let e = a.validate().unwrap_err().to_string();
            assert!(e.contains(expected), "wanted {expected:?} in {e:?}");
        }
    }
}
