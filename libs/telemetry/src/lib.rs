//! Logging set-up shared by herd's binaries: one `--log` flag (or `HERD_LOG`)
//! taking a level or a directive list, validated before anything runs, and
//! logs on stderr so that stdout stays for a command's own output.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log filter: a level (error, warn, info, debug, trace) or directives
    /// such as `info,herd_clients=debug,rdkafka=warn` [default: info for
    /// services, warn for herdctl].
    #[arg(long = "log", global = true, env = "HERD_LOG", value_name = "FILTER")]
    pub filter: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    #[error("--log: {value:?} is not a valid log filter ({reason}); expected a level (error, warn, info, debug, trace) or directives such as info,herd_clients=debug")]
    BadFilter { value: String, reason: String },
}

pub fn filter(args: &LogArgs, default: &str) -> Result<EnvFilter, TelemetryError> {
    let value = args.filter.as_deref().unwrap_or(default);
    EnvFilter::try_new(value).map_err(|e| TelemetryError::BadFilter {
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

/// Installs the global subscriber, with `default` as the filter unless the
/// user gave one. Call once, early in `main`.
pub fn init_logging(args: &LogArgs, default: &str) -> Result<(), TelemetryError> {
    let filter = filter(args, default)?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

/// How a binary ends: bad input (flags, settings) exits 2 like a clap usage
/// error; any other failure exits 1. Either way one line per cause, no
/// backtrace: the message is for an operator, not a debugger.
#[derive(Debug)]
pub enum Exit {
    BadInput(anyhow::Error),
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Exit {
    fn from(e: E) -> Exit {
        Exit::Failed(e.into())
    }
}

/// Prints `name: error: ...` with the chain of causes and returns the exit code.
pub fn report(name: &str, result: Result<std::process::ExitCode, Exit>) -> std::process::ExitCode {
    let (code, error) = match result {
        Ok(code) => return code,
        Err(Exit::BadInput(e)) => (2, e),
        Err(Exit::Failed(e)) => (1, e),
    };
    eprintln!("{name}: error: {error:#}");
    std::process::ExitCode::from(code)
}

/// Marks an error as bad input (exit 2).
pub trait BadInput<T> {
    fn bad_input(self) -> Result<T, Exit>;
}

impl<T, E: Into<anyhow::Error>> BadInput<T> for Result<T, E> {
    fn bad_input(self) -> Result<T, Exit> {
        self.map_err(|e| Exit::BadInput(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_levels_and_directives_rejects_garbage() {
        for ok in ["info", "warn,herd_clients=debug", "trace"] {
            assert!(filter(&LogArgs { filter: Some(ok.into()) }, "info").is_ok(), "{ok}");
        }
        assert!(filter(&LogArgs { filter: None }, "warn").is_ok());
        let err = filter(&LogArgs { filter: Some("herd=[".into()) }, "info").unwrap_err();
        assert!(err.to_string().starts_with("--log: \"herd=[\""), "{err}");
    }
}
