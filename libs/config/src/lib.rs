//! Settings shared by every herd binary, in two steps: raw values as the user
//! typed them ([`ConnectArgs`], filled by flags or `HERD_*` env vars), then
//! [`ConnectArgs::validate`], a pure function that yields [`Endpoints`], which
//! cannot hold a malformed address. Reaching the servers is a separate health
//! check (see `herd-clients`), so validation never does I/O.
//!
//! The env var names and defaults match `deploy/local/stack`, so a binary
//! started next to the local stack needs no flags at all, and
//! `eval "$(deploy/local/stack env)"` carries non-default ports over.

mod endpoints;
pub mod security;
mod shard;

pub use endpoints::{ConnectArgs, Endpoints, HostPort, ZkConnect};
pub use security::{Password, Secret, Security, SecurityArgs};
pub use shard::Shard;

/// A setting refused by validation: which one (a flag, or a key of the live
/// configuration such as `topic.events.paused`), the value given, and what
/// would be accepted. The one error of its kind in every crate: bad input,
/// never worth retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {value:?} {problem}")]
pub struct InvalidSetting {
    pub field: std::borrow::Cow<'static, str>,
    pub value: String,
    pub problem: String,
}

impl InvalidSetting {
    pub fn new(
        field: impl Into<std::borrow::Cow<'static, str>>,
        value: impl ToString,
        problem: impl Into<String>,
    ) -> InvalidSetting {
        InvalidSetting { field: field.into(), value: value.to_string(), problem: problem.into() }
    }
}

/// An error and its sources on one line, `what: why: why`: for a dead
/// letter's reason header and other text that must carry the whole story.
/// (Logs take the error itself, `error = &e as &dyn Error`: tracing prints
/// its sources.)
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Checks a log filter: comma-separated `level` or `target=level`
/// directives. Stricter than tracing's own parser, which takes a bare word
/// such as `loud` for a target and silently logs nothing new. The one check
/// of a log filter, for `--log` (herd-telemetry) and the live `log_level`
/// (herd-coord).
pub fn check_log_filter(
    field: impl Into<std::borrow::Cow<'static, str>>,
    filter: &str,
) -> Result<(), InvalidSetting> {
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
        Err(InvalidSetting::new(
            field,
            filter,
            "is not a log filter; allowed trace, debug, info, warn, error, off, or target=level,...",
        ))
    }
}

/// Wall-clock time in milliseconds since the Unix epoch (0 if the clock is
/// before 1970): what herd stamps records and logs decisions with.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The default name of a process in logs, ZooKeeper and Kafka: `host-pid`,
/// unique on a machine and readable.
pub fn default_instance_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "herd".into());
    format!("{host}-{}", std::process::id())
}

/// Where herd keeps its coordination state in ZooKeeper, and how long a
/// session outlives its process: shared by the coordinator and the worker.
#[derive(Debug, Clone, clap::Args)]
pub struct CoordArgs {
    /// ZooKeeper path under which herd keeps its coordination state.
    #[arg(long, env = "HERD_ZK_ROOT", default_value = "/herd")]
    pub root: String,
    /// ZooKeeper session timeout in milliseconds: how long after this process
    /// dies, freezes or is cut off its session ends (a standby coordinator
    /// then leads; a worker's shards then move).
    #[arg(long, env = "HERD_SESSION_TIMEOUT_MS", default_value_t = 6000)]
    pub session_timeout_ms: u64,
}

/// [`CoordArgs`], validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coord {
    pub root: String,
    pub session_timeout: std::time::Duration,
}

impl CoordArgs {
    pub fn validate(&self) -> Result<Coord, InvalidSetting> {
        let root = zk_root("root", &self.root)?;
        // ZooKeeper negotiates within [2, 20] ticks; the stack's floor is 2 s.
        if !(2_000..=60_000).contains(&self.session_timeout_ms) {
            return Err(InvalidSetting::new(
                "session-timeout-ms",
                self.session_timeout_ms,
                "is out of range; expected 2000 to 60000",
            ));
        }
        Ok(Coord {
            root,
            session_timeout: std::time::Duration::from_millis(self.session_timeout_ms),
        })
    }
}

/// Kafka's rule for topic names: 1-249 of [a-zA-Z0-9._-], not "." or "..".
pub fn kafka_topic(field: &'static str, value: &str) -> Result<String, InvalidSetting> {
    let ok = !value.is_empty()
        && value.len() <= 249
        && value != "."
        && value != ".."
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(InvalidSetting::new(
            field,
            value,
            "is not a valid Kafka topic name; use 1 to 249 of a-z A-Z 0-9 . _ -",
        ))
    }
}

/// Validates a ZooKeeper root path for herd's state: absolute, not `/`
/// itself, no trailing slash, no empty segment.
pub fn zk_root(field: &'static str, value: &str) -> Result<String, InvalidSetting> {
    let ok = value.starts_with('/')
        && value.len() > 1
        && !value.ends_with('/')
        && !value.contains("//")
        && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(value.to_owned())
    } else {
        Err(InvalidSetting::new(field, value, "is not a ZooKeeper path; expected an absolute path without a trailing slash, e.g. /herd"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn zk_roots() {
        for ok in ["/herd", "/a/b"] {
            assert_eq!(super::zk_root("root", ok).unwrap(), ok);
        }
        for bad in ["", "/", "herd", "/herd/", "/a//b", "/a b"] {
            let e = super::zk_root("root", bad).unwrap_err().to_string();
            assert!(e.starts_with("root: "), "{bad:?}: {e}");
        }
    }
}
