//! Dynamic configuration: a versioned document in ZooKeeper that workers
//! watch and apply live, without restarts.
//!
//! The document (`{root}/config`, JSON) has global defaults plus per-topic and
//! per-shard overrides. Its version is the znode's version; every accepted
//! version is also kept under `{root}/config-history/` for `history`, `diff`
//! and `rollback`. Writes are compare-and-set on the version, so concurrent
//! edits are detected, never merged.
//!
//! Everything here is pure except [`Store`]: parsing, validation, `key=value`
//! edits and the effective settings of a shard.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Settings that can be given globally, per topic or per shard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardParams {
    /// Stop consuming (true) or resume (false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Most events per second consumed from one shard; 0 = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_eps: Option<u64>,
}

/// The global section: worker-wide settings, and the defaults of every shard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Globals {
    /// A chunk is cut at this many events...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_max_rows: Option<u64>,
    /// ...or this many bytes of Kafka payload...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_max_bytes: Option<u64>,
    /// ...or this many milliseconds after its first message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linger_ms: Option<u64>,
    /// Cassandra write requests in flight per worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u64>,
    /// `dead-letter` or `stop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_write_failure: Option<String>,
    /// A tracing filter, e.g. `info` or `info,herd_ingest=debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Default of every shard's `paused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Default of every shard's `rate_limit_eps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_eps: Option<u64>,
}

/// The whole document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigDoc {
    #[serde(default)]
    pub global: Globals,
    /// Overrides by topic name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub topics: BTreeMap<String, ShardParams>,
    /// Overrides by shard, `topic:partition`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shards: BTreeMap<String, ShardParams>,
}

/// One documented key: its name, unit, default, range, and whether a change
/// applies live. `herdctl config keys` prints this table; the README copies it.
pub struct KeyDoc {
    pub key: &'static str,
    pub scope: &'static str,
    pub unit: &'static str,
    pub default: &'static str,
    pub range: &'static str,
    pub live: &'static str,
    pub meaning: &'static str,
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "batch_max_rows",
        scope: "global",
        unit: "events",
        default: "--batch-max-rows (5000)",
        range: "1 to 1000000",
        live: "yes, from the next chunk",
        meaning: "a chunk of work is cut at this many events",
    },
    KeyDoc {
        key: "batch_max_bytes",
        scope: "global",
        unit: "bytes",
        default: "--batch-max-bytes (4194304)",
        range: "1 to 1073741824",
        live: "yes, from the next chunk",
        meaning: "...or at this many bytes of Kafka payload",
    },
    KeyDoc {
        key: "linger_ms",
        scope: "global",
        unit: "ms",
        default: "--linger-ms (50)",
        range: "0 to 60000",
        live: "yes, from the next chunk",
        meaning: "...or this long after its first message",
    },
    KeyDoc {
        key: "max_in_flight",
        scope: "global",
        unit: "requests",
        default: "--max-in-flight (64)",
        range: "1 to 4096",
        live: "yes; a decrease waits for requests in flight to finish",
        meaning: "Cassandra write requests in flight per worker",
    },
    KeyDoc {
        key: "on_write_failure",
        scope: "global",
        unit: "-",
        default: "--on-write-failure (dead-letter)",
        range: "dead-letter, stop",
        live: "yes, for writes that fail from then on",
        meaning: "what happens to events whose write fails after the retry budget",
    },
    KeyDoc {
        key: "log_level",
        scope: "global",
        unit: "-",
        default: "--log (info)",
        range: "a tracing filter: trace, debug, info, warn, error, or target=level,...",
        live: "yes",
        meaning: "what the worker logs",
    },
    KeyDoc {
        key: "paused",
        scope: "global, topic, shard",
        unit: "-",
        default: "false",
        range: "true, false",
        live: "yes, within a second",
        meaning: "stop consuming (nothing is lost: the shard resumes from where it stopped)",
    },
    KeyDoc {
        key: "rate_limit_eps",
        scope: "global, topic, shard",
        unit: "events/s per shard",
        default: "0 (unlimited)",
        range: "0 to 100000000",
        live: "yes",
        meaning: "most events per second consumed from each shard",
    },
];

/// A document or edit that is refused: where, the value, what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {value:?} {problem}")]
pub struct Invalid {
    pub key: String,
    pub value: String,
    pub problem: String,
}

fn invalid(
    key: impl Into<String>,
    value: impl fmt::Display,
    problem: impl Into<String>,
) -> Invalid {
    Invalid { key: key.into(), value: value.to_string(), problem: problem.into() }
}

fn range(key: &str, v: Option<u64>, min: u64, max: u64) -> Result<(), Invalid> {
    match v {
        Some(v) if v < min || v > max => {
            Err(invalid(key, v, format!("is out of range; allowed {min} to {max}")))
        }
        _ => Ok(()),
    }
}

fn shard_params(prefix: &str, p: &ShardParams) -> Result<(), Invalid> {
    range(&format!("{prefix}rate_limit_eps"), p.rate_limit_eps, 0, 100_000_000)
}

fn valid_topic(t: &str) -> bool {
    herd_config::kafka_topic("topic", t).is_ok()
}

/// Parses a shard key `topic:partition`.
pub fn parse_shard_key(key: &str) -> Option<(&str, i32)> {
    let (topic, partition) = key.rsplit_once(':')?;
    let partition: i32 = partition.parse().ok()?;
    (valid_topic(topic) && partition >= 0).then_some((topic, partition))
}

impl ConfigDoc {
    /// Checks every value; the first problem is returned.
    pub fn validate(&self) -> Result<(), Invalid> {
        let g = &self.global;
        range("batch_max_rows", g.batch_max_rows, 1, 1_000_000)?;
        range("batch_max_bytes", g.batch_max_bytes, 1, 1 << 30)?;
        range("linger_ms", g.linger_ms, 0, 60_000)?;
        range("max_in_flight", g.max_in_flight, 1, 4096)?;
        if let Some(p) = &g.on_write_failure {
            if p != "dead-letter" && p != "stop" {
                return Err(invalid(
                    "on_write_failure",
                    p,
                    "is not a policy; allowed dead-letter or stop",
                ));
            }
        }
        if let Some(l) = &g.log_level {
            validate_log_level(l)?;
        }
        range("rate_limit_eps", g.rate_limit_eps, 0, 100_000_000)?;
        for (topic, p) in &self.topics {
            if !valid_topic(topic) {
                return Err(invalid("topics", topic, "is not a Kafka topic name"));
            }
            shard_params(&format!("topic.{topic}."), p)?;
        }
        for (shard, p) in &self.shards {
            if parse_shard_key(shard).is_none() {
                return Err(invalid(
                    "shards",
                    shard,
                    "is not a shard; expected topic:partition, e.g. events:3",
                ));
            }
            shard_params(&format!("shard.{shard}."), p)?;
        }
        Ok(())
    }

    /// Parses and validates a document (from ZooKeeper or a file).
    pub fn parse(data: &[u8]) -> Result<ConfigDoc, Invalid> {
        if data.is_empty() {
            return Ok(ConfigDoc::default());
        }
        let doc: ConfigDoc = serde_json::from_slice(data).map_err(|e| {
            invalid(
                "document",
                String::from_utf8_lossy(&data[..data.len().min(60)]),
                format!("is not a valid config document: {e}"),
            )
        })?;
        doc.validate()?;
        Ok(doc)
    }

    /// What one shard runs with: shard over topic over global.
    pub fn effective(&self, topic: &str, partition: i32) -> EffectiveShard {
        let mut paused = self.global.paused;
        let mut rate = self.global.rate_limit_eps;
        for p in [self.topics.get(topic), self.shards.get(&format!("{topic}:{partition}"))]
            .into_iter()
            .flatten()
        {
            paused = p.paused.or(paused);
            rate = p.rate_limit_eps.or(rate);
        }
        EffectiveShard { paused: paused.unwrap_or(false), rate_limit_eps: rate.filter(|&r| r > 0) }
    }

    /// Applies `key=value` edits (see [`KEYS`]): `batch_max_rows=10000`,
    /// `topic.events.paused=true`, `shard.events:3.rate_limit_eps=500`. An
    /// empty value removes the key. The result is validated.
    pub fn with_edits(&self, edits: &[String]) -> Result<ConfigDoc, Invalid> {
        let mut doc = self.clone();
        for edit in edits {
            let (path, value) = edit.split_once('=').ok_or_else(|| {
                invalid("edit", edit, "is not key=value, e.g. batch_max_rows=10000")
            })?;
            doc.set(path.trim(), value.trim())?;
        }
        doc.validate()?;
        Ok(doc)
    }

    fn set(&mut self, path: &str, value: &str) -> Result<(), Invalid> {
        let (scope, key): (Option<(&str, String)>, &str) =
            if let Some(rest) = path.strip_prefix("topic.") {
                let (name, key) = rest
                    .rsplit_once('.')
                    .ok_or_else(|| invalid(path, value, "expected topic.NAME.KEY"))?;
                (Some(("topic", name.to_owned())), key)
            } else if let Some(rest) = path.strip_prefix("shard.") {
                let (name, key) = rest
                    .rsplit_once('.')
                    .ok_or_else(|| invalid(path, value, "expected shard.TOPIC:PARTITION.KEY"))?;
                (Some(("shard", name.to_owned())), key)
            } else {
                (None, path)
            };
        let unset = value.is_empty();
        let num = |v: &str| v.parse::<u64>().map_err(|_| invalid(path, v, "is not a whole number"));
        let flag =
            |v: &str| v.parse::<bool>().map_err(|_| invalid(path, v, "is not true or false"));
        let shard_key = |p: &mut ShardParams, key: &str| -> Result<bool, Invalid> {
            match key {
                "paused" => p.paused = if unset { None } else { Some(flag(value)?) },
                "rate_limit_eps" => p.rate_limit_eps = if unset { None } else { Some(num(value)?) },
                _ => return Ok(false),
            }
            Ok(true)
        };
        match scope {
            Some((kind, name)) => {
                let map = if kind == "topic" { &mut self.topics } else { &mut self.shards };
                let entry = map.entry(name.clone()).or_default();
                if !shard_key(entry, key)? {
                    let global_only = KEYS.iter().any(|k| k.key == key);
                    return Err(invalid(
                        path,
                        value,
                        if global_only {
                            format!("{key} is global only; set it without the {kind} prefix")
                        } else {
                            format!("is not a key; {kind} keys are paused, rate_limit_eps")
                        },
                    ));
                }
                if *entry == ShardParams::default() {
                    map.remove(&name);
                }
            }
            None => {
                let g = &mut self.global;
                let mut shard = ShardParams { paused: g.paused, rate_limit_eps: g.rate_limit_eps };
                let was_shard_key = shard_key(&mut shard, key)?;
                (g.paused, g.rate_limit_eps) = (shard.paused, shard.rate_limit_eps);
                if !was_shard_key {
                    match key {
                        "batch_max_rows" => {
                            g.batch_max_rows = if unset { None } else { Some(num(value)?) }
                        }
                        "batch_max_bytes" => {
                            g.batch_max_bytes = if unset { None } else { Some(num(value)?) }
                        }
                        "linger_ms" => g.linger_ms = if unset { None } else { Some(num(value)?) },
                        "max_in_flight" => {
                            g.max_in_flight = if unset { None } else { Some(num(value)?) }
                        }
                        "on_write_failure" => {
                            g.on_write_failure = (!unset).then(|| value.to_owned())
                        }
                        "log_level" => g.log_level = (!unset).then(|| value.to_owned()),
                        _ => {
                            let known: Vec<&str> = KEYS.iter().map(|k| k.key).collect();
                            return Err(invalid(
                                path,
                                value,
                                format!("is not a key; known keys: {}", known.join(", ")),
                            ));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The document as `key=value` lines, sorted, for `diff` and `get`.
    pub fn flatten(&self) -> BTreeMap<String, String> {
        let v = serde_json::to_value(self).expect("serializable");
        let mut out = BTreeMap::new();
        if let Some(g) = v.get("global").and_then(|g| g.as_object()) {
            for (k, v) in g {
                out.insert(k.clone(), scalar(v));
            }
        }
        for (kind, field) in [("topic", "topics"), ("shard", "shards")] {
            if let Some(m) = v.get(field).and_then(|m| m.as_object()) {
                for (name, params) in m {
                    for (k, v) in params.as_object().into_iter().flatten() {
                        out.insert(format!("{kind}.{name}.{k}"), scalar(v));
                    }
                }
            }
        }
        out
    }
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Differences between two documents, as `-key=old` / `+key=new` lines.
pub fn diff(old: &ConfigDoc, new: &ConfigDoc) -> Vec<String> {
    let (a, b) = (old.flatten(), new.flatten());
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => {
                if let Some(x) = x {
                    out.push(format!("-{k}={x}"));
                }
                if let Some(y) = y {
                    out.push(format!("+{k}={y}"));
                }
            }
        }
    }
    out
}

/// A log filter as tracing accepts it: comma-separated `level` or
/// `target=level` directives.
fn validate_log_level(filter: &str) -> Result<(), Invalid> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let ok = !filter.trim().is_empty()
        && filter.split(',').all(|d| {
            let level = d.rsplit_once('=').map_or(d, |(target, level)| {
                if target.is_empty()
                    || !target.chars().all(|c| c.is_ascii_alphanumeric() || "_:-".contains(c))
                {
                    return "";
                }
                level
            });
            LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
        });
    if ok {
        Ok(())
    } else {
        Err(invalid("log_level", filter, "is not a log filter; allowed trace, debug, info, warn, error, off, or target=level,..."))
    }
}

/// What a shard runs with after overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveShard {
    pub paused: bool,
    /// None: unlimited.
    pub rate_limit_eps: Option<u64>,
}

/// Where the document and its history live.
pub fn config_path(root: &str) -> String {
    format!("{root}/config")
}

pub fn history_dir(root: &str) -> String {
    format!("{root}/config-history")
}

/// One accepted version, as kept in `{root}/config-history/{version}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub version: u64,
    /// Milliseconds since the epoch.
    pub at_ms: i64,
    /// Who wrote it (user@host of herdctl).
    pub by: String,
    /// What was done: `set …`, `apply FILE`, `rollback N`.
    pub change: String,
    pub doc: ConfigDoc,
}

/// The stored document as read: its version (0: none written yet) and raw
/// bytes, which may be invalid if someone wrote the znode by hand.
#[derive(Debug, Clone)]
pub struct Stored {
    pub version: u64,
    pub data: Vec<u8>,
}

impl Stored {
    pub fn doc(&self) -> Result<ConfigDoc, Invalid> {
        ConfigDoc::parse(&self.data)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("the configuration changed meanwhile: it is at version {current}, this change was made against version {expected}; read it again (herdctl config get) and redo the change")]
    Conflict { expected: u64, current: u64 },
    #[error("ZooKeeper: {0}; check that a quorum of the ensemble is up")]
    ZooKeeper(#[from] zookeeper_client::Error),
}

/// The document's version from the znode's: the first write is version 1.
fn version_of(stat: &zookeeper_client::Stat) -> u64 {
    stat.version as u64 + 1
}

/// Reads the stored document, after a sync so that the answer is current.
pub async fn read(client: &zookeeper_client::Client, root: &str) -> Result<Stored, StoreError> {
    let path = config_path(root);
    match client.sync(&path).await {
        Ok(()) | Err(zookeeper_client::Error::NoNode) => {}
        Err(e) => return Err(e.into()),
    }
    match client.get_data(&path).await {
        Ok((data, stat)) => Ok(Stored { version: version_of(&stat), data }),
        Err(zookeeper_client::Error::NoNode) => Ok(Stored { version: 0, data: Vec::new() }),
        Err(e) => Err(e.into()),
    }
}

/// Reads the document and arms a watch that fires on its next change (or creation).
pub async fn watch(
    client: &zookeeper_client::Client,
    root: &str,
) -> Result<(Stored, zookeeper_client::OneshotWatcher), StoreError> {
    let (node, watcher) = crate::membership::watch_data(client, &config_path(root)).await?;
    let stored = match node {
        Some((data, stat)) => Stored { version: version_of(&stat), data },
        None => Stored { version: 0, data: Vec::new() },
    };
    Ok((stored, watcher))
}

/// Writes `doc` as the version after `expected` (compare-and-set), and its
/// history entry, atomically. Returns the new version. The caller validates.
pub async fn write(
    client: &zookeeper_client::Client,
    root: &str,
    doc: &ConfigDoc,
    expected: u64,
    by: &str,
    change: &str,
) -> Result<u64, StoreError> {
    use zookeeper_client::{Acls, CreateMode};
    match client
        .mkdir(&history_dir(root), &CreateMode::Persistent.with_acls(Acls::anyone_all()))
        .await
    {
        Ok(()) | Err(zookeeper_client::Error::NodeExists) => {}
        Err(e) => return Err(e.into()),
    }
    let version = expected + 1;
    let data = serde_json::to_vec_pretty(doc).expect("serializable");
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let entry = HistoryEntry {
        version,
        at_ms,
        by: by.to_owned(),
        change: change.to_owned(),
        doc: doc.clone(),
    };
    let entry = serde_json::to_vec(&entry).expect("serializable");
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let mut writer = client.new_multi_writer();
    if expected == 0 {
        writer.add_create(&config_path(root), &data, &persistent)?;
    } else {
        writer.add_set_data(&config_path(root), &data, Some((expected - 1) as i32))?;
    }
    writer.add_create(&format!("{}/{version:010}", history_dir(root)), &entry, &persistent)?;
    match writer.commit().await {
        Ok(_) => Ok(version),
        Err(zookeeper_client::MultiWriteError::OperationFailed {
            source: zookeeper_client::Error::BadVersion | zookeeper_client::Error::NodeExists,
            ..
        }) => {
            let current = read(client, root).await?.version;
            Err(StoreError::Conflict { expected, current })
        }
        Err(e) => Err(zookeeper_client::Error::from(e).into()),
    }
}

/// Every accepted version, oldest first.
pub async fn history(
    client: &zookeeper_client::Client,
    root: &str,
) -> Result<Vec<HistoryEntry>, StoreError> {
    Ok(crate::membership::children_json(client, &history_dir(root)).await?)
}

/// The document of an earlier `version`, from the history.
pub async fn version_doc(
    client: &zookeeper_client::Client,
    root: &str,
    version: u64,
) -> Result<Option<ConfigDoc>, StoreError> {
    Ok(history(client, root).await?.into_iter().find(|e| e.version == version).map(|e| e.doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edits(e: &[&str]) -> Vec<String> {
        e.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn edits_build_a_document_and_overrides_resolve_shard_over_topic_over_global() {
        let doc = ConfigDoc::default()
            .with_edits(&edits(&[
                "batch_max_rows=10000",
                "rate_limit_eps=1000",
                "topic.events.paused=true",
                "shard.events:3.paused=false",
                "shard.events:4.rate_limit_eps=0",
            ]))
            .unwrap();
        assert_eq!(doc.global.batch_max_rows, Some(10_000));
        assert_eq!(
            doc.effective("events", 1),
            EffectiveShard { paused: true, rate_limit_eps: Some(1000) }
        );
        assert_eq!(
            doc.effective("events", 3),
            EffectiveShard { paused: false, rate_limit_eps: Some(1000) }
        );
        assert_eq!(
            doc.effective("events", 4),
            EffectiveShard { paused: true, rate_limit_eps: None },
            "0 means unlimited"
        );
        assert_eq!(
            doc.effective("other", 0),
            EffectiveShard { paused: false, rate_limit_eps: Some(1000) }
        );
        // Round trip through JSON, and removal with an empty value.
        let back = ConfigDoc::parse(&serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_eq!(back, doc);
        let removed = doc.with_edits(&edits(&["topic.events.paused=", "rate_limit_eps="])).unwrap();
        assert!(removed.topics.is_empty());
        assert_eq!(
            removed.effective("events", 1),
            EffectiveShard { paused: false, rate_limit_eps: None }
        );
    }

    #[test]
    fn invalid_values_name_the_key_the_value_and_what_is_allowed() {
        for (edit, expected) in [
            ("batch_max_rows=0", "batch_max_rows: \"0\" is out of range; allowed 1 to 1000000"),
            ("linger_ms=99999999", "linger_ms: \"99999999\" is out of range; allowed 0 to 60000"),
            ("max_in_flight=lots", "max_in_flight: \"lots\" is not a whole number"),
            ("on_write_failure=ignore", "on_write_failure: \"ignore\" is not a policy"),
            ("log_level=loud", "log_level: \"loud\" is not a log filter"),
            ("topic.events.paused=maybe", "topic.events.paused: \"maybe\" is not true or false"),
            (
                "topic.events.batch_max_rows=5",
                "topic.events.batch_max_rows: \"5\" batch_max_rows is global only",
            ),
            ("shard.events.paused=true", "shards: \"events\" is not a shard"),
            ("batch_size=5", "batch_size: \"5\" is not a key; known keys: batch_max_rows"),
            ("novalue", "edit: \"novalue\" is not key=value"),
        ] {
            let e = ConfigDoc::default().with_edits(&edits(&[edit])).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{edit}: wanted {expected:?}, got {e:?}");
        }
    }

    #[test]
    fn documents_from_outside_are_validated_and_unknown_fields_refused() {
        assert!(ConfigDoc::parse(br#"{"global": {"batch_max_rows": 0}}"#).is_err());
        assert!(ConfigDoc::parse(br#"{"global": {"batch_rows": 10}}"#)
            .unwrap_err()
            .problem
            .contains("unknown field"));
        assert!(ConfigDoc::parse(b"{not json").is_err());
        assert_eq!(ConfigDoc::parse(b"").unwrap(), ConfigDoc::default());
        let ok = ConfigDoc::parse(br#"{"global": {"linger_ms": 5, "paused": false}, "topics": {"a": {"rate_limit_eps": 10}}}"#).unwrap();
        assert_eq!(ok.effective("a", 0).rate_limit_eps, Some(10));
        assert!(ConfigDoc::parse(br#"{"global": {"log_level": "info,herd_ingest=debug"}}"#).is_ok());
    }

    #[test]
    fn diff_lists_changed_keys() {
        let a = ConfigDoc::default()
            .with_edits(&edits(&["linger_ms=5", "topic.t.paused=true"]))
            .unwrap();
        let b =
            a.with_edits(&edits(&["linger_ms=10", "topic.t.paused=", "batch_max_rows=7"])).unwrap();
        assert_eq!(
            diff(&a, &b),
            vec!["+batch_max_rows=7", "-linger_ms=5", "+linger_ms=10", "-topic.t.paused=true"]
        );
        assert!(diff(&b, &b).is_empty());
    }
}
