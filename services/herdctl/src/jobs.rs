//! `herdctl jobs`: request maintenance jobs, run one here, follow and
//! cancel them. The jobs and their locks are herd_coord::jobs.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use herd_clients::nodetool::NodetoolArgs;
use herd_coord::jobs::{self, Job, JobError, JobKind, JobSpec, JobState, LockWait, Outcome, Ran};
use herd_telemetry::{BadInput, Exit};

#[derive(clap::Subcommand)]
pub enum Action {
    /// Every job kept in ZooKeeper (the last 200 finished and all others),
    /// oldest first: who asked, who ran it, when, how long, the result.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Request a job. The leading coordinator runs it (it needs --nodetool),
    /// under the job's lock: repair, snapshot and cleanup each one at a time.
    /// With --here this herdctl runs it itself, under the same lock.
    Run {
        /// What to run (or --job for a job already requested).
        #[arg(required_unless_present = "job")]
        kind: Option<JobKind>,
        /// Run a job already requested (queued, or left by a runner that
        /// died) instead of requesting a new one; with --here.
        #[arg(long, conflicts_with_all = ["kind", "node", "reason"], requires = "here")]
        job: Option<String>,
        /// The Cassandra node to repair or clean up (its address).
        #[arg(long)]
        node: Option<String>,
        /// The keyspace to repair, snapshot or clean up.
        #[arg(long, env = "HERD_KEYSPACE", default_value = "herd")]
        keyspace: String,
        /// Why, for the history.
        #[arg(long, default_value = "manual")]
        reason: String,
        /// Run it here (needs --nodetool). If another runner holds the
        /// lock, refuse and name it with exit code 3 (the job stays queued
        /// for the leader), unless --wait.
        #[arg(long)]
        here: bool,
        /// Wait until the job ends (and, with --here, for the lock); exit 1
        /// if it failed or was cancelled.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        nodetool: NodetoolArgs,
    },
    /// One job: its request, each attempt and its result.
    Status {
        /// The job's id (job-0000000007, or just 7).
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job: a queued one will not run; a running one has its
    /// nodetool stopped (a repair Cassandra already started finishes on the
    /// server; `nodetool repair_admin` shows it).
    Cancel { id: String },
}

/// `7` or `job-7` → `job-0000000007`.
fn job_id(id: &str) -> Result<String, JobError> {
    let digits = id.strip_prefix("job-").unwrap_or(id);
    let n: u32 = digits.parse().map_err(|_| {
        JobError::Spec(format!("{id:?} is not a job id; expected e.g. job-0000000007 or 7"))
    })?;
    Ok(format!("job-{n:010}"))
}

pub async fn run(
    endpoints: &herd_config::Endpoints,
    root: &str,
    action: Action,
) -> Result<ExitCode, Exit> {
    let zk = herd_clients::zookeeper::connect(endpoints, Duration::from_secs(6))
        .await
        .context("while connecting to ZooKeeper")?;
    let who = format!("herdctl@{}", herd_config::default_instance_id());
    let code = match action {
        Action::List { json } => {
            let jobs = jobs::list(&zk, root).await.context("while reading the jobs")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs).context("while encoding JSON")?);
            } else if jobs.is_empty() {
                println!("no jobs under {root}/jobs");
            } else {
                println!(
                    "{:<15} {:<10} {:<44} {:<24} {:<20} {:>8}  RESULT",
                    "JOB", "STATE", "WHAT", "REQUESTED BY", "RAN BY", "SECONDS"
                );
                for job in &jobs {
                    print_row(job);
                }
            }
            ExitCode::SUCCESS
        }
        Action::Status { id, json } => {
            let id = job_id(&id).bad_input()?;
            let (job, _) = jobs::read(&zk, root, &id).await.bad_input()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&job).context("while encoding JSON")?);
            } else {
                print_job(&job);
            }
            ExitCode::SUCCESS
        }
        Action::Cancel { id } => {
            let id = job_id(&id).bad_input()?;
            if jobs::cancel(&zk, root, &id).await.bad_input()? {
                println!("{id}: cancel requested");
            } else {
                println!("{id}: already ended; nothing to cancel");
            }
            ExitCode::SUCCESS
        }
        Action::Run { kind, job, node, keyspace, reason, here, wait, nodetool } => {
            if !herd_sink::settings::valid_identifier(&keyspace) {
                return Err(JobError::Spec(format!("--keyspace {keyspace:?} is not a keyspace name: letters, digits and _, starting with a letter, at most 48"))).bad_input();
            }
            let nodetool = match (here, nodetool.validate().bad_input()?) {
                (true, None) => {
                    return Err(JobError::Spec(
                        "--here needs --nodetool (or HERD_NODETOOL): the command that runs nodetool against a node".into(),
                    ))
                    .bad_input()
                }
                (_, n) => n,
            };
            let id = match (job, kind) {
                (Some(id), _) => {
                    let id = job_id(&id).bad_input()?;
                    jobs::read(&zk, root, &id).await.bad_input()?;
                    id
                }
                (None, Some(kind)) => {
                    let spec = JobSpec::new(kind, node, keyspace).bad_input()?;
                    jobs::submit(&zk, root, spec, &who, &reason)
                        .await
                        .context("while requesting the job")?
                }
                (None, None) => unreachable!("clap requires a kind or --job"),
            };
            let job = if let Some(nodetool) = nodetool {
                let lock_wait = if wait {
                    LockWait::Wait
                } else {
                    LockWait::RefuseAfter(Duration::from_secs(2))
                };
                let exec = |spec: JobSpec, id: String| {
                    let nodetool = &nodetool;
                    async move { jobs::execute(nodetool, endpoints, &spec, &id).await }
                };
                match jobs::run_job(&zk, root, &id, &who, lock_wait, exec).await {
                    Ok(Ran::Ran(job)) => job,
                    Ok(Ran::AlreadyDone(job)) => {
                        println!("{id}: run by another runner meanwhile");
                        job
                    }
                    Err(e @ JobError::Busy { .. }) => {
                        eprintln!("herdctl: {id} not run here: {e}; it stays queued for the leading coordinator");
                        herd_clients::zookeeper::close(zk, Duration::from_secs(2)).await;
                        return Ok(ExitCode::from(3));
                    }
                    Err(e) => return Err(e).context(format!("while running {id}"))?,
                }
            } else {
                println!(
                    "{id}: queued; the leading coordinator runs it (herdctl jobs status {id})"
                );
                if !wait {
                    herd_clients::zookeeper::close(zk, Duration::from_secs(2)).await;
                    return Ok(ExitCode::SUCCESS);
                }
                loop {
                    let (job, _) =
                        jobs::read(&zk, root, &id).await.context("while following the job")?;
                    if job.state.is_final() {
                        break job;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            };
            print_job(&job);
            if job.state == JobState::Succeeded || (!wait && !job.state.is_final()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    };
    herd_clients::zookeeper::close(zk, Duration::from_secs(2)).await;
    Ok(code)
}

fn outcome_text(outcome: &Option<Outcome>) -> String {
    match outcome {
        None => "running".into(),
        Some(Outcome::Succeeded { detail }) => format!("succeeded: {detail}"),
        Some(Outcome::Failed { error }) => format!("failed: {error}"),
        Some(Outcome::Cancelled) => "cancelled".into(),
        Some(Outcome::Abandoned { why }) => format!("abandoned: {why}"),
    }
}

fn seconds(started: i64, ended: Option<i64>) -> String {
    let end = ended.unwrap_or_else(herd_config::now_ms);
    format!("{:.1}", (end - started) as f64 / 1000.0)
}

fn print_row(job: &Job) {
    let r = &job.record;
    let (by, secs, result) = match r.attempts.last() {
        Some(a) => (a.by.as_str(), seconds(a.started_ms, a.ended_ms), outcome_text(&a.outcome)),
        None => ("-", "-".into(), if r.cancel_requested { "cancelled".into() } else { "-".into() }),
    };
    // Earlier attempts, in short: what happened to them and whose they were.
    let earlier: Vec<String> = r.attempts[..r.attempts.len().saturating_sub(1)]
        .iter()
        .map(|a| {
            let what = match &a.outcome {
                Some(Outcome::Abandoned { .. }) => "abandoned",
                Some(Outcome::Failed { .. }) => "failed",
                Some(Outcome::Cancelled) => "cancelled",
                Some(Outcome::Succeeded { .. }) => "succeeded",
                None => "running",
            };
            format!("{what} by {}", a.by)
        })
        .collect();
    let tries = if earlier.is_empty() {
        String::new()
    } else {
        format!(" ({} attempts; before: {})", r.attempts.len(), earlier.join(", "))
    };
    println!(
        "{:<15} {:<10} {:<44} {:<24} {:<20} {:>8}  {result}{tries}",
        job.id,
        job.state.to_string(),
        r.spec.to_string(),
        r.requested_by,
        by,
        secs
    );
}

fn print_job(job: &Job) {
    let r = &job.record;
    println!("{}: {} ({})", job.id, r.spec, job.state);
    println!(
        "  requested by {} at {} ms: {}{}",
        r.requested_by,
        r.requested_ms,
        r.reason,
        if r.cancel_requested { "; cancel requested" } else { "" }
    );
    for (i, a) in r.attempts.iter().enumerate() {
        println!(
            "  attempt {} by {}, started at {} ms, {} s: {}",
            i + 1,
            a.by,
            a.started_ms,
            seconds(a.started_ms, a.ended_ms),
            outcome_text(&a.outcome)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_take_the_short_form() {
        assert_eq!(job_id("7").unwrap(), "job-0000000007");
        assert_eq!(job_id("job-0000000012").unwrap(), "job-0000000012");
        assert!(job_id("job-x").unwrap_err().to_string().contains("not a job id"));
    }
}
