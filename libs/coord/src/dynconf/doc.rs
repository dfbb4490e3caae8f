//! The configuration document, pure: its shape, validation against the
//! table of live keys, `key=value` edits, diffs and the effective settings
//! of a shard.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::keys::{self, Kind, LiveKey, OnWriteFailure, Scope};
use herd_config::InvalidSetting;

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
pub struct GlobalParams {
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_write_failure: Option<OnWriteFailure>,
    /// A tracing filter, e.g. `info` or `info,herd_ingest=debug`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Blocks layout: the longest an event waits in an open window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_flush_max_ms: Option<u64>,
    /// Rollup resolutions, e.g. `1m,1h`; `none`: no rollups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollup_resolutions: Option<String>,
    /// Seqs per producer within which a repeat is kept out of rollups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_horizon: Option<u64>,
    /// Default of every shard's `paused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Default of every shard's `rate_limit_eps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_eps: Option<u64>,
}

/// A value given for a live key, parsed by its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Count(u64),
    Flag(bool),
    Policy(OnWriteFailure),
    Text(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Count(n) => write!(f, "{n}"),
            Value::Flag(b) => write!(f, "{b}"),
            Value::Policy(p) => write!(f, "{p}"),
            Value::Text(t) => f.write_str(t),
        }
    }
}

fn parse(path: String, key: &LiveKey, value: &str) -> Result<Value, InvalidSetting> {
    Ok(match key.kind {
        Kind::Count { .. } => {
            Value::Count(value.parse().map_err(|_| invalid(path, value, "is not a whole number"))?)
        }
        Kind::Flag => {
            Value::Flag(value.parse().map_err(|_| invalid(path, value, "is not true or false"))?)
        }
        Kind::WriteFailurePolicy => {
            Value::Policy(OnWriteFailure::parse(value).ok_or_else(|| {
                invalid(path, value, "is not a policy; allowed dead-letter or stop")
            })?)
        }
        Kind::LogFilter | Kind::Resolutions => Value::Text(value.to_owned()),
    })
}

impl ShardParams {
    /// Sets (Some) or removes (None) a key of [`Scope::Shard`].
    fn set(&mut self, key: &LiveKey, value: Option<Value>) {
        match (key.name, value) {
            ("paused", Some(Value::Flag(b))) => self.paused = Some(b),
            ("paused", None) => self.paused = None,
            ("rate_limit_eps", Some(Value::Count(n))) => self.rate_limit_eps = Some(n),
            ("rate_limit_eps", None) => self.rate_limit_eps = None,
            (name, value) => unreachable!("{name} = {value:?} is not a shard key of this kind"),
        }
    }
}

impl GlobalParams {
    /// Sets (Some) or removes (None) any key.
    fn set(&mut self, key: &LiveKey, value: Option<Value>) {
        let count = |v: &Option<Value>| match v {
            Some(Value::Count(n)) => Some(*n),
            _ => None,
        };
        match key.name {
            "batch_max_rows" => self.batch_max_rows = count(&value),
            "batch_max_bytes" => self.batch_max_bytes = count(&value),
            "linger_ms" => self.linger_ms = count(&value),
            "max_in_flight" => self.max_in_flight = count(&value),
            "on_write_failure" => {
                self.on_write_failure = match value {
                    Some(Value::Policy(p)) => Some(p),
                    _ => None,
                }
            }
            "log_level" => {
                self.log_level = match value {
                    Some(Value::Text(t)) => Some(t),
                    _ => None,
                }
            }
            "rollup_resolutions" => {
                self.rollup_resolutions = match value {
                    Some(Value::Text(t)) => Some(t),
                    _ => None,
                }
            }
            "dedup_horizon" => self.dedup_horizon = count(&value),
            "block_flush_max_ms" => self.block_flush_max_ms = count(&value),
            _ => {
                let mut shard =
                    ShardParams { paused: self.paused, rate_limit_eps: self.rate_limit_eps };
                shard.set(key, value);
                (self.paused, self.rate_limit_eps) = (shard.paused, shard.rate_limit_eps);
            }
        }
    }
}

/// The whole document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigDoc {
    #[serde(default)]
    pub global: GlobalParams,
    /// Overrides by topic name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub topics: BTreeMap<String, ShardParams>,
    /// Overrides by shard, `topic:partition`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shards: BTreeMap<String, ShardParams>,
}

fn invalid(
    key: impl Into<std::borrow::Cow<'static, str>>,
    value: impl std::fmt::Display,
    problem: impl Into<String>,
) -> InvalidSetting {
    InvalidSetting::new(key, value, problem)
}

/// Checks a count of `key`, given at `path` in the document.
fn count(path: String, key: &LiveKey, v: Option<u64>) -> Result<(), InvalidSetting> {
    if let Some(v) = v {
        key.check_count(path, v, "allowed")?;
    }
    Ok(())
}

fn shard_params(prefix: &str, p: &ShardParams) -> Result<(), InvalidSetting> {
    count(format!("{prefix}{}", keys::RATE_LIMIT_EPS.name), &keys::RATE_LIMIT_EPS, p.rate_limit_eps)
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
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let g = &self.global;
        for (key, v) in [
            (keys::BATCH_MAX_ROWS, g.batch_max_rows),
            (keys::BATCH_MAX_BYTES, g.batch_max_bytes),
            (keys::LINGER_MS, g.linger_ms),
            (keys::MAX_IN_FLIGHT, g.max_in_flight),
            (keys::DEDUP_HORIZON, g.dedup_horizon),
            (keys::BLOCK_FLUSH_MAX_MS, g.block_flush_max_ms),
        ] {
            count(key.name.to_owned(), &key, v)?;
        }
        if let Some(l) = &g.log_level {
            herd_config::check_log_filter(keys::LOG_LEVEL.name, l)?;
        }
        if let Some(r) = &g.rollup_resolutions {
            keys::parse_resolutions(keys::ROLLUP_RESOLUTIONS.name, r)?;
        }
        shard_params("", &ShardParams { paused: g.paused, rate_limit_eps: g.rate_limit_eps })?;
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
    pub fn parse(data: &[u8]) -> Result<ConfigDoc, InvalidSetting> {
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

    /// Applies `key=value` edits (see [`keys::LIVE_KEYS`]): `batch_max_rows=10000`,
    /// `topic.events.paused=true`, `shard.events:3.rate_limit_eps=500`. An
    /// empty value removes the key. The result is validated.
    pub fn with_edits(&self, edits: &[String]) -> Result<ConfigDoc, InvalidSetting> {
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

    fn set(&mut self, path: &str, value: &str) -> Result<(), InvalidSetting> {
        let owned = || path.to_owned();
        let (scope, name): (Option<(&str, String)>, &str) =
            if let Some(rest) = path.strip_prefix("topic.") {
                let (name, key) = rest
                    .rsplit_once('.')
                    .ok_or_else(|| invalid(owned(), value, "expected topic.NAME.KEY"))?;
                (Some(("topic", name.to_owned())), key)
            } else if let Some(rest) = path.strip_prefix("shard.") {
                let (name, key) = rest
                    .rsplit_once('.')
                    .ok_or_else(|| invalid(owned(), value, "expected shard.TOPIC:PARTITION.KEY"))?;
                (Some(("shard", name.to_owned())), key)
            } else {
                (None, path)
            };
        let Some(key) = keys::live_key(name) else {
            let problem = match scope {
                Some((kind, _)) => {
                    format!(
                        "is not a key; {kind} keys are {}",
                        keys::names(Scope::Shard).join(", ")
                    )
                }
                None => {
                    let known: Vec<&str> = keys::LIVE_KEYS.iter().map(|k| k.name).collect();
                    format!("is not a key; known keys: {}", known.join(", "))
                }
            };
            return Err(invalid(owned(), value, problem));
        };
        let value = (!value.is_empty()).then(|| parse(owned(), key, value)).transpose()?;
        match scope {
            Some((kind, shard_name)) => {
                if key.scope == Scope::Global {
                    return Err(invalid(
                        owned(),
                        value.map_or(String::new(), |v| v.to_string()),
                        format!("{} is global only; set it without the {kind} prefix", key.name),
                    ));
                }
                let map = if kind == "topic" { &mut self.topics } else { &mut self.shards };
                let entry = map.entry(shard_name.clone()).or_default();
                entry.set(key, value);
                if *entry == ShardParams::default() {
                    map.remove(&shard_name);
                }
            }
            None => self.global.set(key, value),
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

/// What a shard runs with after overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveShard {
    pub paused: bool,
    /// None: unlimited.
    pub rate_limit_eps: Option<u64>,
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
