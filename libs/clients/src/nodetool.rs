//! Cassandra's `nodetool`, run against one node: how herd's maintenance
//! jobs repair, snapshot and clean up. nodetool speaks JMX, which has no
//! Rust client worth the name, so herd runs the operator's own nodetool
//! through a command template (`--nodetool`): its words split as a shell
//! would (no shell runs), `{host}` replaced by the node's address, the
//! job's arguments appended. E.g. `nodetool -h {host} -p 7199`, or for the
//! local stack `deploy/local/stack nodetool --host {host}`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

/// How much of nodetool's output a failure keeps (its last bytes).
const OUTPUT_TAIL: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum NodetoolError {
    #[error(
        "--nodetool {template:?}: {why}; give a command such as \"nodetool -h {{host}} -p 7199\""
    )]
    BadTemplate { template: String, why: &'static str },
    #[error("nodetool against {host}: cannot start {program:?}; check --nodetool")]
    Spawn {
        host: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nodetool {args} against {host} failed ({status}) after {elapsed:?}: {output}")]
    Failed { host: String, args: String, status: String, elapsed: Duration, output: String },
}

/// The `--nodetool` setting of the processes that run maintenance jobs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NodetoolArgs {
    /// Command that runs Cassandra's nodetool against one node, for
    /// maintenance jobs (repair, snapshot, cleanup): split like a shell
    /// would, `{host}` replaced by the node's address, e.g.
    /// "nodetool -h {host} -p 7199" (`deploy/local/stack env` prints the
    /// local stack's). Without it, no job runs here.
    #[arg(long, env = "HERD_NODETOOL", value_name = "COMMAND")]
    pub nodetool: Option<String>,
}

impl NodetoolArgs {
    pub fn validate(&self) -> Result<Option<Nodetool>, NodetoolError> {
        self.nodetool.as_deref().map(Nodetool::parse).transpose()
    }
}

/// A parsed `--nodetool` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodetool {
    words: Vec<String>,
    template: String,
}

impl Nodetool {
    pub fn parse(template: &str) -> Result<Self, NodetoolError> {
        let bad = |why| NodetoolError::BadTemplate { template: template.to_owned(), why };
        let words = shlex::split(template).ok_or_else(|| bad("unbalanced quotes"))?;
        if words.is_empty() {
            return Err(bad("it is empty"));
        }
        if !words.iter().any(|w| w.contains("{host}")) {
            return Err(bad("it has no {host}, so every job would run against the same node"));
        }
        Ok(Self { words, template: template.to_owned() })
    }

    pub fn template(&self) -> &str {
        &self.template
    }

    /// The command line for `args` against `host`, for logs.
    pub fn describe(&self, host: &str, args: &[&str]) -> String {
        let mut words = self.argv(host);
        words.extend(args.iter().map(|a| (*a).to_owned()));
        shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" "))
    }

    fn argv(&self, host: &str) -> Vec<String> {
        self.words.iter().map(|w| w.replace("{host}", host)).collect()
    }

    /// Runs nodetool `args` against `host` to its end, and returns its
    /// standard output. Dropping the future kills nodetool (a repair that
    /// Cassandra already started goes on on the server).
    pub async fn run(&self, host: &str, args: &[&str]) -> Result<String, NodetoolError> {
        let argv = self.argv(host);
        tracing::info!(command = %self.describe(host, args), "running nodetool");
        let started = Instant::now();
        let mut command = tokio::process::Command::new(&argv[0]);
        // nodetool has no use for herd's passwords.
        for name in herd_config::security::PASSWORD_ENV {
            command.env_remove(name);
        }
        let mut child = command
            .args(&argv[1..])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NodetoolError::Spawn {
                host: host.to_owned(),
                program: argv[0].clone(),
                source,
            })?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let (status, _, _) =
            tokio::join!(child.wait(), stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        let out = String::from_utf8_lossy(&out).into_owned();
        let failed = |status: String| NodetoolError::Failed {
            host: host.to_owned(),
            args: args.join(" "),
            status,
            elapsed: started.elapsed(),
            output: tail(&format!("{out}{}", String::from_utf8_lossy(&err))),
        };
        match status {
            Ok(s) if s.success() => Ok(out),
            Ok(s) => Err(failed(s.to_string())),
            Err(e) => Err(failed(format!("not waited for: {e}"))),
        }
    }
}

/// The last [`OUTPUT_TAIL`] bytes of `s` (on a char boundary), trimmed.
fn tail(s: &str) -> String {
    let s = s.trim();
    let mut start = s.len().saturating_sub(OUTPUT_TAIL);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_splits_like_a_shell_and_places_the_host() {
        let t = Nodetool::parse("'/opt/my cassandra/bin/nodetool' -h {host} -p 7199").unwrap();
        assert_eq!(
            t.argv("127.0.0.2"),
            ["/opt/my cassandra/bin/nodetool", "-h", "127.0.0.2", "-p", "7199"]
        );
        assert_eq!(
            t.describe("10.0.0.1", &["repair", "--full", "herd"]),
            "'/opt/my cassandra/bin/nodetool' -h 10.0.0.1 -p 7199 repair --full herd"
        );
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        for (t, why) in
            [("", "empty"), ("nodetool -h 'x", "quotes"), ("nodetool -h localhost", "{host}")]
        {
            let e = Nodetool::parse(t).unwrap_err().to_string();
            assert!(e.contains(why), "{t:?}: {e}");
        }
    }

    #[test]
    fn output_tail_keeps_the_end() {
        let long = format!("{}é end", "x".repeat(3000));
        let t = tail(&long);
        assert!(t.len() <= OUTPUT_TAIL && t.ends_with("é end"));
    }

    #[tokio::test]
    async fn runs_the_command_and_reports_a_failure_with_its_output() {
        let ok = Nodetool::parse("echo {host}").unwrap();
        assert_eq!(ok.run("127.0.0.9", &["status"]).await.unwrap().trim(), "127.0.0.9 status");
        let failing = Nodetool::parse("sh -c 'echo no such keyspace >&2; exit 3' {host}").unwrap();
        let e = failing.run("127.0.0.9", &["repair"]).await.unwrap_err().to_string();
        assert!(
            e.contains("127.0.0.9") && e.contains("no such keyspace") && e.contains("3"),
            "{e}"
        );
    }
}
