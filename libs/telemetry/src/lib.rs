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
    #[error("--metrics-addr {addr}: cannot serve metrics there; choose a free address, e.g. 127.0.0.1:0 for any port")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("--log: {value:?} is not a valid log filter; expected a level (error, warn, info, debug, trace) or directives such as info,herd_clients=debug")]
    BadFilter {
        value: String,
        /// tracing's parse error, when herd's own check passed.
        #[source]
        source: Option<tracing_subscriber::filter::ParseError>,
    },
    #[error("the log filter could not be changed")]
    Reload(#[source] tracing_subscriber::reload::Error),
}

pub fn filter(args: &LogArgs, default: &str) -> Result<EnvFilter, TelemetryError> {
    let value = args.filter.as_deref().unwrap_or(default);
    let bad = |source| TelemetryError::BadFilter { value: value.to_owned(), source };
    herd_config::check_log_filter("--log", value).map_err(|_| bad(None))?;
    EnvFilter::try_new(value).map_err(|e| bad(Some(e)))
}

/// Changes the log filter of the running process (live configuration).
pub struct LogHandle(
    Box<dyn Fn(EnvFilter) -> Result<(), tracing_subscriber::reload::Error> + Send + Sync>,
);

impl LogHandle {
    pub fn set(&self, value: &str) -> Result<(), TelemetryError> {
        let filter = filter(&LogArgs { filter: Some(value.to_owned()) }, value)?;
        (self.0)(filter).map_err(TelemetryError::Reload)
    }
}

/// Installs the global subscriber, with `default` as the filter unless the
/// user gave one. Call once, early in `main`. The handle changes the filter later.
pub fn init_logging(args: &LogArgs, default: &str) -> Result<LogHandle, TelemetryError> {
    let filter = filter(args, default)?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for people at a terminal, plain text for log files and collectors.
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter_reloading();
    let handle = builder.reload_handle();
    builder.init();
    Ok(LogHandle(Box::new(move |f| handle.reload(f))))
}

/// Histogram buckets for latencies in seconds: 1 ms to 60 s, closer
/// between 0.2 s and 10 s, where freshness goals lie (a p99 read from
/// buckets is only as exact as the buckets around it).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0,
    4.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0,
];
/// Histogram buckets for sizes (rows, bytes): powers of 4 from 1 to 16 Mi.
const SIZE_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0,
];

/// Serves Prometheus metrics on `addr` (path /metrics). Histograms get
/// buckets: `_seconds` for latencies, the rest for sizes.
///
/// The exporter runs on its own thread with a one-thread runtime whose
/// blocking pool holds one thread (each scrape renders there). On the
/// caller's runtime, scrapes that pile up (a scraper retrying while the
/// process was stopped) would each start a blocking thread, and a scraper
/// polling more often than tokio's 10 s keep-alive would keep them all: the
/// process's thread count would follow its scrapers instead of its work.
pub fn install_metrics(addr: std::net::SocketAddr) -> Result<(), TelemetryError> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let err =
        |e: Box<dyn std::error::Error + Send + Sync>| TelemetryError::Metrics { addr, source: e };
    // Bind first: the exporter would only report a taken port from its task.
    let listener = std::net::TcpListener::bind(addr).map_err(|e| err(Box::new(e)))?;
    let addr = listener.local_addr().unwrap_or(addr);
    drop(listener);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        // The one render thread stays for the life of the process.
        .thread_keep_alive(std::time::Duration::from_secs(24 * 3600))
        .build()
        .map_err(|e| err(Box::new(e)))?;
    let (recorder, exporter) = {
        let _in_runtime = runtime.enter();
        PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .map_err(|e| err(Box::new(e)))?
            .set_buckets(SIZE_BUCKETS)
            .map_err(|e| err(Box::new(e)))?
            .build()
            .map_err(|e| err(Box::new(e)))?
    };
    std::thread::Builder::new()
        .name("herd-metrics".into())
        .spawn(move || {
            if let Err(e) = runtime.block_on(exporter) {
                tracing::error!(%addr, "metrics exporter stopped: {e:?}");
            }
        })
        .map_err(|e| err(Box::new(e)))?;
    metrics::set_global_recorder(recorder).map_err(|e| err(Box::new(e)))?;
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
        // A bare word is a target to tracing; herd wants a level.
        assert!(filter(&LogArgs { filter: Some("loud".into()) }, "info").is_err());
    }
}
