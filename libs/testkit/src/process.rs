//! A herd binary run as a real process by a test: killed with real signals,
//! its log printed if the test fails, and never left running.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Sets `env` on `command` on top of this process's environment; an empty
/// value removes a variable (e.g. a TLS setting).
pub fn with_env(command: &mut Command, env: &[(&str, &str)]) {
    for (k, v) in env {
        if v.is_empty() {
            command.env_remove(k);
        } else {
            command.env(k, v);
        }
    }
}

pub struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `binary` with `args` and `env` on top of this process's
    /// environment (an empty value removes a variable); stdout and stderr
    /// go to a log file.
    pub fn start(binary: &str, name: &str, args: &[String], env: &[(&str, &str)]) -> Process {
        let dir = std::env::temp_dir().join("herd-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{name}-{}.log", std::process::id()));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut command = Command::new(binary);
        command
            .args(args)
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        with_env(&mut command, env);
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        Process { child, log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends `signal` (e.g. libc::SIGSTOP) to a process still running.
    pub fn signal(&mut self, signal: i32) {
        assert!(self.is_running(), "signal to a process that has exited\n{}", self.log_tail());
        // SAFETY: kill(2) on the pid of our own, not yet reaped, child.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "did not exit within {limit:?}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM (unless it already exited), then waits up to `limit`.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        // Never signal a pid that is already reaped: it may belong to another process by now.
        if let Some(status) = self.child.try_wait().unwrap() {
            return status;
        }
        self.signal(libc::SIGTERM);
        self.wait(limit)
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            .unwrap_or(0)
    }

    /// The whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {} (last 40 lines) ---\n{}",
            self.log.display(),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // A SIGSTOPped process still dies of SIGKILL.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}
