//! herd-sink's errors. Each says what failed and, where an operator can act,
//! what to check; the driver's error is its source, not part of its message
//! (log with `error = &e as &dyn Error` and tracing prints the sources;
//! binaries print the chain). Each says whether retrying can help.

use herd_config::Shard;
use scylla::errors::{
    DbError, DeserializationError, ExecutionError, FirstRowError, IntoRowsResultError,
    MaybeFirstRowError, PrepareError, RequestAttemptError, RowsError, SchemaAgreementError,
};

/// A CQL request that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CqlError {
    #[error("the request failed")]
    Execution(#[from] ExecutionError),
    #[error("preparing the statement failed")]
    Prepare(#[from] PrepareError),
    #[error("the nodes did not agree on the schema in time")]
    SchemaAgreement(#[from] SchemaAgreementError),
    #[error("the answer holds no rows")]
    NotRows(#[from] IntoRowsResultError),
    #[error("the rows are not of the expected types")]
    Rows(#[from] RowsError),
    #[error("the first row cannot be read")]
    FirstRow(#[from] FirstRowError),
    #[error("the first row cannot be read")]
    MaybeFirstRow(#[from] MaybeFirstRowError),
    #[error("a row cannot be read")]
    Row(#[from] DeserializationError),
}

impl CqlError {
    /// Whether the same request can succeed later: timeouts, unavailable
    /// replicas, overload, lost connections, a schema still settling. An
    /// invalid request or rows of other types fail again.
    pub fn is_transient(&self) -> bool {
        match self {
            CqlError::Execution(e) => !refused(e),
            CqlError::SchemaAgreement(_) => true,
            _ => false,
        }
    }
}

/// Whether Cassandra refused the request itself (it fails again).
fn refused(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::BadQuery(_) => true,
        ExecutionError::LastAttemptError(attempt) => match attempt {
            RequestAttemptError::SerializationError(_)
            | RequestAttemptError::CqlRequestSerialization(_) => true,
            RequestAttemptError::DbError(db, _) => matches!(
                db,
                DbError::SyntaxError
                    | DbError::Invalid
                    | DbError::AlreadyExists { .. }
                    | DbError::FunctionFailure { .. }
                    | DbError::AuthenticationError
                    | DbError::Unauthorized
                    | DbError::ConfigError
            ),
            _ => false,
        },
        _ => false,
    }
}

/// A failed write, classified for the retry loop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Timeouts, unavailable replicas, overload, lost connections: the same
    /// write can succeed later, so it is retried.
    #[error("Cassandra could not take the write now")]
    Transient(#[source] ExecutionError),
    /// An invalid request or refused values: it fails again, so it counts
    /// against the retry budget.
    #[error("Cassandra refused the write")]
    Refused(#[source] ExecutionError),
    /// A write of one layout handed to the other's store: a bug.
    #[error("a {write} write cannot go to a {store} store")]
    WrongLayout { write: &'static str, store: &'static str },
}

impl WriteError {
    pub fn is_transient(&self) -> bool {
        matches!(self, WriteError::Transient(_))
    }
}

impl From<ExecutionError> for WriteError {
    fn from(e: ExecutionError) -> WriteError {
        if refused(&e) {
            WriteError::Refused(e)
        } else {
            WriteError::Transient(e)
        }
    }
}

/// A claim or checkpoint that did not go through.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FenceError {
    /// Final for this grant: a newer owner holds the shard.
    #[error("shard {shard} is fenced: epoch {current_epoch} of {current_owner:?} supersedes epoch {epoch}; stop the shard and wait for a new grant")]
    Fenced { shard: Shard, epoch: i64, current_epoch: i64, current_owner: String },
    /// Cassandra could not answer: retry, the condition is checked again.
    #[error("the checkpoint of shard {shard} could not be read or written; retry, the condition is checked again")]
    Unavailable {
        shard: Shard,
        /// Boxed: the driver's errors are large, and claims and commits are
        /// on every shard's path.
        #[source]
        source: Box<CqlError>,
    },
}

/// Failures of schema set-up and of statements prepared at start-up: fatal
/// for the process, which reports them and exits.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    #[error("schema migration {version} ({name}) failed; check the Cassandra log and that the keyspace's replication can be met")]
    Migration {
        version: i32,
        name: &'static str,
        #[source]
        source: CqlError,
    },
    #[error("keyspace {keyspace} was created with {name} = {stored}, but this process is configured with {configured}; {name} cannot change once data exists (it decides where rows are stored); use --{flag} {stored} or another keyspace")]
    SettingChanged {
        keyspace: String,
        name: &'static str,
        flag: &'static str,
        stored: String,
        configured: String,
    },
    #[error("keyspace {keyspace}: herd_settings holds {name} = {value:?}, which this version of herd cannot read; was the keyspace made by a newer herd?")]
    UnreadableSetting { keyspace: String, name: String, value: String },
    #[error("preparing a statement failed; check that the schema migrations ran")]
    Prepare(#[source] PrepareError),
}
