//! herd-coordinator: several run, one leads. Elected through ZooKeeper; the
//! leader will assign shards to workers and fence stale owners (issue 4:
//! assignment and fencing exist in libs/coord and libs/sink, their wiring
//! here comes next). Today a coordinator stands for election, leads while
//! its ZooKeeper session lives, and hands over to a standby when it ends.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use herd_config::ConnectArgs;
use herd_coord::election;
use herd_telemetry::{BadInput, Exit, LogArgs};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "herd-coordinator",
    version,
    about = "Coordinator: elected through ZooKeeper; one of several instances leads, the others stand by."
)]
struct Cli {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    log: LogArgs,
    /// ZooKeeper path under which herd keeps its coordination state.
    #[arg(long, env = "HERD_ZK_ROOT", default_value = "/herd")]
    root: String,
    /// This coordinator's name in ZooKeeper and logs [default: host-pid].
    #[arg(long, env = "HERD_COORDINATOR_ID")]
    id: Option<String>,
    /// ZooKeeper session timeout in milliseconds: how long after this
    /// coordinator dies or is cut off a standby takes over.
    #[arg(long, env = "HERD_SESSION_TIMEOUT_MS", default_value_t = 6000)]
    session_timeout_ms: u64,
    /// Validate flags and environment, print the effective settings, and exit.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    herd_telemetry::report("herd-coordinator", run(Cli::parse()))
}

fn valid_root(root: &str) -> bool {
    root.starts_with('/') && root.len() > 1 && !root.ends_with('/') && !root.contains("//")
}

#[tokio::main]
async fn run(cli: Cli) -> Result<ExitCode, Exit> {
    herd_telemetry::init_logging(&cli.log, "info").bad_input()?;
    let endpoints = cli.connect.validate().bad_input()?;
    if !valid_root(&cli.root) {
        return Err(Exit::BadInput(anyhow::anyhow!(
            "root: {:?} is not a ZooKeeper path; expected an absolute path without a trailing slash, e.g. /herd",
            cli.root
        )));
    }
    // ZooKeeper negotiates within [2, 20] ticks; the stack's floor is 2 s.
    if !(2_000..=60_000).contains(&cli.session_timeout_ms) {
        return Err(Exit::BadInput(anyhow::anyhow!(
            "session-timeout-ms: {} is out of range; expected 2000 to 60000",
            cli.session_timeout_ms
        )));
    }
    let id = cli.id.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
        format!("{host}-{}", std::process::id())
    });
    if cli.check_config {
        println!("configuration ok: {endpoints:?}\nroot: {}\nid: {id}\nsession timeout: {} ms", cli.root, cli.session_timeout_ms);
        return Ok(ExitCode::SUCCESS);
    }
    let client = herd_clients::zookeeper::connect(&endpoints, Duration::from_millis(cli.session_timeout_ms))
        .await
        .context("while connecting to ZooKeeper")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(handle_signals(shutdown.clone()));

    tracing::info!(%id, root = %cli.root, "standing for election");
    let leadership = tokio::select! {
        l = election::campaign(&client, &cli.root, &id) => l.context("while standing for election")?,
        _ = shutdown.cancelled() => {
            herd_clients::zookeeper::close(client, Duration::from_secs(5)).await;
            tracing::info!("stopped while standing by");
            return Ok(ExitCode::SUCCESS);
        }
    };
    leadership.publish(&client, &cli.root, &id).await.context("while publishing leadership")?;
    tracing::info!(%id, epoch = leadership.epoch, lock = %leadership.lock_path, "leading");

    let mut states = client.state_watcher();
    loop {
        tokio::select! {
            state = states.changed() => {
                if state.is_terminated() {
                    return Err(anyhow::anyhow!(
                        "lost leadership: the ZooKeeper session ended ({state:?}), so a standby leads now; restart this coordinator to stand again"
                    ).into());
                }
                tracing::warn!(?state, "ZooKeeper connection state changed; still leading while the session lives");
            }
            _ = shutdown.cancelled() => break,
        }
    }
    // Hand over: drop the lock node, then end the session.
    drop(leadership);
    herd_clients::zookeeper::close(client, Duration::from_secs(5)).await;
    tracing::info!("stepped down");
    Ok(ExitCode::SUCCESS)
}

/// First SIGTERM or SIGINT: step down cleanly. Second: exit at once.
async fn handle_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop this coordinator with SIGKILL");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    shutdown.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    std::process::exit(130);
}
