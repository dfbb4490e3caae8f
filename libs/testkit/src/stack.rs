//! A test's own stack: `deploy/local/stack` in a directory and on ports of
//! its own (a three-node Cassandra, a secure stack), next to the shared one.

use std::path::PathBuf;

/// The stack script of this checkout.
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/local/stack");

/// A stack started by one test: its settings are set in this process's
/// environment (so the stack script, the herd processes and the helpers
/// all use it), and it is taken down when dropped, even if the test fails
/// (its logs are then left for inspection).
pub struct OwnStack {
    pub dir: PathBuf,
}

impl OwnStack {
    /// Starts a stack named `name` with `settings` (HERD_* variables: ports,
    /// hint window) and `up` arguments, then sets the connection variables
    /// it prints (`stack env`) in this process.
    ///
    /// Call it first in a test binary with one test: setting the
    /// environment is only sound before the test starts threads of its own.
    pub fn start(name: &str, settings: &[(&str, &str)], up: &[&str]) -> OwnStack {
        let dir = std::env::temp_dir().join(format!("herd-{name}-{}", std::process::id()));
        // SAFETY: see above; the caller starts no thread before this.
        unsafe { std::env::set_var("HERD_STACK_DIR", &dir) };
        for (k, v) in settings {
            // SAFETY: as above.
            unsafe { std::env::set_var(k, v) };
        }
        let stack = OwnStack { dir };
        let mut args = vec!["up"];
        args.extend(up);
        crate::stack(&args);
        let out = std::process::Command::new("bash")
            .args(["-c", &format!("eval \"$({SCRIPT} env)\" && env")])
            .output()
            .expect("stack env");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((k, v)) = line.split_once('=') {
                if k.starts_with("HERD_") {
                    // SAFETY: as above.
                    unsafe { std::env::set_var(k, v) };
                }
            }
        }
        stack
    }

    /// The pid of one of its servers (zk1, kafka, cassandra2, ...).
    pub fn pid(&self, server: &str) -> i32 {
        std::fs::read_to_string(self.dir.join(server).join("pid"))
            .unwrap_or_else(|e| panic!("{server}'s pid file: {e}"))
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for OwnStack {
    fn drop(&mut self) {
        crate::stack(&["down"]);
        if std::thread::panicking() {
            eprintln!("the stack's logs are left in {} for inspection", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
