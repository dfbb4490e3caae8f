//! herd's own binaries started by tests, the same way everywhere: ports,
//! the log filter, the session timeout and where the binaries are.

use crate::process::Process;

/// The log filter of herd processes started by tests.
pub const LOG: (&str, &str) = ("HERD_LOG", "info,scylla=warn,zookeeper_client=warn");

/// The ZooKeeper session timeout of the tests' workers and coordinators.
pub const SESSION_TIMEOUT_MS: u64 = 4000;

/// A free TCP port on 127.0.0.1, e.g. for a process's --metrics-addr.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A binary of the workspace (herd-worker, herd-coordinator, herdctl,
/// herd-loadgen), from the target directory the running test was built in.
pub fn binary(name: &str) -> String {
    let test = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test>: the binaries are in target/<profile>.
    let dir = test.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run the tests with `cargo test --workspace` (deploy/local/test does)",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// Starts a herd-coordinator named `name` under `root` for `topics`, with
/// the tests' session timeout; `extra` flags go last.
pub fn coordinator(name: &str, root: &str, topics: &[&str], extra: &[&str]) -> Process {
    let mut args: Vec<String> = [
        "--root",
        root,
        "--id",
        name,
        "--session-timeout-ms",
        &SESSION_TIMEOUT_MS.to_string(),
        "--metrics-addr",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !topics.is_empty() {
        args.extend(["--topics".to_owned(), topics.join(",")]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    Process::start(&binary("herd-coordinator"), name, &args, &[LOG])
}

/// Starts a herd-worker named `name` (its id in ZooKeeper and the
/// checkpoints) with `args`; returns it and the port of its /metrics.
pub fn worker(name: &str, args: &[String]) -> (Process, u16) {
    worker_with_env(name, args, &[])
}

/// [`worker`] with `env` on top of this process's environment (an empty
/// value removes a variable): a wrong password, TLS left off.
pub fn worker_with_env(name: &str, args: &[String], env: &[(&str, &str)]) -> (Process, u16) {
    let port = free_port();
    let mut args = args.to_vec();
    args.extend([
        "--metrics-addr".to_owned(),
        format!("127.0.0.1:{port}"),
        "--worker-id".to_owned(),
        name.to_owned(),
    ]);
    let mut all = vec![LOG];
    all.extend_from_slice(env);
    (Process::start(&binary("herd-worker"), name, &args, &all), port)
}

/// The command that runs nodetool against a node of the local stack
/// (`--nodetool`): HERD_NODETOOL if set, else the stack script's own.
pub fn nodetool() -> String {
    std::env::var("HERD_NODETOOL").unwrap_or_else(|_| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/local/stack");
        format!("{script} nodetool --host {{host}}")
    })
}

/// Runs herdctl with `args`; returns (exit code, stdout, stderr).
pub fn herdctl(args: &[&str]) -> (i32, String, String) {
    run("herdctl", args)
}

/// Runs the workspace binary `name` with `args` to its end; returns (exit
/// code, stdout, stderr).
pub fn run(name: &str, args: &[&str]) -> (i32, String, String) {
    run_with_env(name, args, &[])
}

/// [`run`] with `env` on top of this process's environment (an empty value
/// removes a variable).
pub fn run_with_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = std::process::Command::new(binary(name));
    command.args(args);
    crate::process::with_env(&mut command, env);
    let out = command.output().unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
