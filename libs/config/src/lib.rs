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

pub use endpoints::{ConfigError, ConnectArgs, Endpoints, HostPort, ZkConnect};

/// A setting refused by validation: which one, the value given, and what
/// would be accepted. Shared by every crate's settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {value:?} {problem}")]
pub struct InvalidSetting {
    pub field: &'static str,
    pub value: String,
    pub problem: String,
}

impl InvalidSetting {
    pub fn new(field: &'static str, value: impl ToString, problem: impl Into<String>) -> InvalidSetting {
        InvalidSetting { field, value: value.to_string(), problem: problem.into() }
    }
}
