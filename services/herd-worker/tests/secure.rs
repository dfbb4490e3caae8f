//! herd on a stack started with `--secure`: TLS to ZooKeeper, Kafka and
//! Cassandra, and a login to each (SASL DIGEST-MD5, SASL/SCRAM,
//! PasswordAuthenticator), with herd's znodes under ACLs.
//!
//! - The pipeline's core over it: every event stored exactly once through a
//!   kill -9 and a restart, a malformed message dead-lettered.
//! - Refused: a ZooKeeper client without a login and one logged in as
//!   another user cannot write herd's configuration, assignment or leader
//!   record (NoAuth); workers with a wrong password or without TLS for each
//!   server exit with an error naming that server and why, and store nothing.
//! - No secret in any log, in `/metrics`, in `--check-config` or `--help`.
//!
//! Alone in its test binary: it starts a secure stack of its own (one
//! ZooKeeper, Kafka, one Cassandra on other ports), points this process's
//! HERD_* variables at it, and takes it down at the end.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    assert_exactly, events, identities, messages, session, start_coordinator,
    start_worker_with_metrics, Encoding, Names,
};
use herd_config::security::{Login, Secret};
use herd_testkit::herd::run_with_env;
use herd_testkit::kafka::{produce, read_all, Outgoing};
use herd_testkit::stack::OwnStack;
use herd_testkit::{endpoints, herd};
use rdkafka::message::Message;

const DRAIN: Duration = Duration::from_secs(300);

fn own_stack() -> OwnStack {
    OwnStack::start(
        "secure",
        &[
            ("HERD_ZK_PORT", "22181"),
            ("HERD_ZK_PEER_PORT", "22888"),
            ("HERD_ZK_ELECTION_PORT", "23888"),
            ("HERD_KAFKA_PORT", "29092"),
            ("HERD_KAFKA_CONTROLLER_PORT", "29093"),
            ("HERD_CASSANDRA_PORT", "29042"),
            ("HERD_CASSANDRA_STORAGE_PORT", "27000"),
            ("HERD_CASSANDRA_JMX_PORT", "27199"),
        ],
        &["--secure", "--zk-nodes", "1", "--cassandra-nodes", "1"],
    )
}

/// Every password the stack made: (file name, value).
fn secrets(stack: &OwnStack) -> Vec<(String, String)> {
    let dir = stack.dir.join("secrets");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the stack's secrets") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "password") {
            let value = std::fs::read_to_string(&path).unwrap().trim().to_owned();
            assert!(value.len() >= 16, "{} is too short to be a made secret", path.display());
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), value));
        }
    }
    assert!(out.len() >= 7, "passwords for every login and the keystores: {out:?}");
    out
}

/// Fails naming the text and the secret's file if any secret appears in it.
fn assert_no_secret(what: &str, text: &str, secrets: &[(String, String)]) {
    for (name, value) in secrets {
        assert!(!text.contains(value.as_str()), "{what} holds the secret of {name}");
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// A ZooKeeper session over TLS with `login` (None: without one). Three
/// tries: once, in a CI run on a loaded machine, a session without a login
/// failed at once with NoHosts (not reproduced in 30 tries since).
async fn zk_as(login: Option<Login>) -> zookeeper_client::Client {
    let mut e = endpoints();
    e.security.zookeeper.login = login;
    let mut tries = 0;
    loop {
        tries += 1;
        match herd_clients::zookeeper::connect(&e, Duration::from_secs(6)).await {
            Ok(client) => return client,
            Err(err) if tries < 3 => {
                eprintln!("a TLS session, try {tries}: {err:?}; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => panic!("a TLS session, {tries} tries: {err:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn over_tls_with_logins_everywhere_and_refused_without() {
    let stack = own_stack();
    let secrets = secrets(&stack);
    let mut logs: Vec<(String, String)> = Vec::new();

    // 1. The pipeline's core, over TLS with logins everywhere.
    let names = Names::new("secure");
    herd_clients::kafka::ensure_topic(&endpoints(), &names.topic, 4, 1).await.expect("topic");
    let mut coordinator = start_coordinator(&names, "secure-coord");
    let json = events("json", 30_000, 100);
    let arrow = events("arrow", 30_000, 100);
    let malformed = b"{\"series\": \"h\", \"metric\":".to_vec();
    let mut outgoing = messages(&json, Encoding::JsonLines(50));
    outgoing.push(Outgoing {
        key: b"bad".to_vec(),
        payload: malformed.clone(),
        content_type: None,
    });
    outgoing.extend(messages(&arrow, Encoding::Arrow(500)));
    let producer =
        herd_clients::kafka::producer(&endpoints(), "secure-producer").expect("producer");
    produce(&producer, &names.topic, &outgoing).await;

    let args = names.worker_args(&["--batch-max-rows", "2000"]);
    let (mut first, _) = start_worker_with_metrics("secure-w1", &args);
    let deadline = Instant::now() + DRAIN;
    let (committed, end) = loop {
        let (c, e) = names.checkpointed_and_end().await;
        if c * 5 >= e {
            break (c, e);
        }
        assert!(Instant::now() < deadline, "no progress: {c} of {e}\n{}", first.log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    first.kill9();
    assert!(committed < end, "the kill must land mid-stream: {committed} of {end}");
    let (mut second, port) = start_worker_with_metrics("secure-w2", &args);
    names.wait_all_checkpointed(DRAIN).await;
    let metrics = herd_testkit::metrics::text(port).expect("the worker's /metrics");
    assert!(metrics.contains("herd_"), "a real scrape: {metrics:.200}");
    assert!(second.terminate(Duration::from_secs(60)).success(), "{}", second.log_tail());
    let expected: BTreeSet<_> = identities(&json).into_iter().chain(identities(&arrow)).collect();
    assert_exactly(&session().await, &names.keyspace, &expected).await;
    let letters = tokio::task::spawn_blocking({
        let dlq = names.dead_letters.clone();
        move || read_all(&endpoints(), &dlq, 1, Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert!(!letters.is_empty(), "the malformed message is dead-lettered");
    for letter in &letters {
        // A kill -9 may send a letter again: the same one.
        assert_eq!(letter.payload(), Some(&malformed[..]), "only the malformed message");
    }
    logs.push(("the first worker's log".into(), first.log()));
    logs.push(("the second worker's log".into(), second.log()));
    logs.push(("/metrics".into(), metrics));

    // 2. ZooKeeper: herd's znodes refuse every write but herd's.
    let (code, out, err) = herd::herdctl(&["config", "--root", &names.root, "set", "linger_ms=5"]);
    assert_eq!(code, 0, "herdctl config set as herd: {out}\n{err}");
    logs.push(("herdctl config set".into(), format!("{out}\n{err}")));
    let config = herd_coord::dynconf::store::config_path(&names.root);
    let assignment = herd_coord::membership::assignment_path(&names.root);
    let leader = format!("{}/leader", names.root);
    let reader_login = Login {
        user: "reader".into(),
        password: Secret::File(stack.dir.join("secrets/zookeeper-reader.password")),
    };
    for (who, login, reads_status) in
        [("no login", None, false), ("user reader", Some(reader_login.clone()), true)]
    {
        let zk = zk_as(login).await;
        for path in [&config, &assignment, &leader] {
            match zk.set_data(path, b"{}", None).await {
                Err(zookeeper_client::Error::NoAuth) => {}
                other => panic!("{who}: writing {path} gave {other:?}, not NoAuth"),
            }
        }
        match zk
            .create(
                &format!("{}/intruder", names.root),
                b"",
                &zookeeper_client::CreateMode::Persistent
                    .with_acls(zookeeper_client::Acls::anyone_all()),
            )
            .await
        {
            Err(zookeeper_client::Error::NoAuth) => {}
            other => panic!("{who}: creating under the root gave {other:?}, not NoAuth"),
        }
        // Nobody but herd reads the configuration.
        assert!(
            matches!(zk.get_data(&config).await, Err(zookeeper_client::Error::NoAuth)),
            "{who} read the configuration"
        );
        let leader_read = zk.get_data(&leader).await;
        if reads_status {
            assert!(leader_read.is_ok(), "the reader reads the leader record: {leader_read:?}");
        } else {
            assert!(
                matches!(leader_read, Err(zookeeper_client::Error::NoAuth)),
                "without a login the leader record is not readable: {leader_read:?}"
            );
        }
    }
    // The reader sees what herdctl status shows.
    let (code, out, err) = run_with_env(
        "herdctl",
        &["status", "--root", &names.root, "--keyspace", &names.keyspace],
        &[
            ("HERD_ZOOKEEPER_USER", "reader"),
            (
                "HERD_ZOOKEEPER_PASSWORD_FILE",
                stack.dir.join("secrets/zookeeper-reader.password").to_str().unwrap(),
            ),
            ("HERD_ZOOKEEPER_READERS", ""),
        ],
    );
    assert_eq!(code, 0, "herdctl status as reader: {out}\n{err}");
    assert!(out.contains("leader: secure-coord"), "{out}");
    logs.push(("herdctl status".into(), format!("{out}\n{err}")));

    // 3. Workers refused by a server: each exits naming it and why, and
    // stores nothing.
    let wrong = std::env::temp_dir().join(format!("herd-wrong-{}", std::process::id()));
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let wrong = wrong.to_str().unwrap().to_owned();
    let cases: [(&str, (&str, &str), &[&str]); 6] = [
        (
            "wrong-cassandra",
            ("HERD_CASSANDRA_PASSWORD_FILE", &wrong),
            &["Cassandra at", "password are incorrect", "check --cassandra-user"],
        ),
        (
            "wrong-kafka",
            ("HERD_KAFKA_PASSWORD_FILE", &wrong),
            &["Kafka at", "SASL authentication error", "check --kafka-user"],
        ),
        (
            "wrong-zookeeper",
            ("HERD_ZOOKEEPER_PASSWORD_FILE", &wrong),
            &["ZooKeeper at", "refused the login of user \"herd\"", "SASL authentication failed"],
        ),
        (
            "plain-cassandra",
            ("HERD_CASSANDRA_TLS_CA", ""),
            &["Cassandra at", "--cassandra-tls-ca is set exactly when the nodes want TLS"],
        ),
        (
            "plain-kafka",
            ("HERD_KAFKA_TLS_CA", ""),
            &["Kafka at", "--kafka-tls-ca is set exactly when the broker's listener uses TLS"],
        ),
        (
            "plain-zookeeper",
            ("HERD_ZOOKEEPER_TLS_CA", ""),
            &["ZooKeeper at", "--zookeeper-tls-ca is set"],
        ),
    ];
    for (case, env, wanted) in cases {
        // Under the running coordinator's root, so that a worker let in
        // would be granted the topic's shards and store its events in a
        // keyspace of its own.
        let refused = herd_testkit::unique_name("refused");
        let mut args = names.worker_args(&[]);
        let at = args.iter().position(|a| a == "--keyspace").unwrap() + 1;
        args[at] = refused.clone();
        let (mut worker, _) = herd::worker_with_env(
            &format!("secure-{case}"),
            &args,
            &[env, ("HERD_CONNECT_TIMEOUT_SECS", "5")],
        );
        let status = worker.wait(Duration::from_secs(90));
        let log = worker.log();
        assert!(!status.success(), "{case}: the worker must fail\n{log}");
        for w in wanted {
            assert!(log.contains(w), "{case}: the error lacks {w:?}\n{log}");
        }
        let stored = herd_testkit::cassandra::stored_count(&session().await, &refused).await;
        assert_eq!(stored, 0, "{case}: the refused worker stored {stored} events\n{log}");
        logs.push((format!("the {case} worker's log"), log));
    }
    let _ = std::fs::remove_file(&wrong);
    // Certificates checked against one name instead of each node's address
    // (a compose stack): a name the certificate holds passes, another not.
    for (name, ok) in [("cassandra", true), ("elsewhere", false)] {
        let (code, out, err) =
            run_with_env("herdctl", &["doctor"], &[("HERD_CASSANDRA_TLS_SERVER_NAME", name)]);
        let line = out.lines().find(|l| l.starts_with("cassandra")).unwrap_or_default();
        assert_eq!(line.contains(" ok "), ok, "server name {name}: {line}\n{err}");
        assert_eq!(code == 0, ok, "server name {name}: exit {code}\n{out}\n{err}");
        if !ok {
            assert!(line.contains("not valid for name \"elsewhere\""), "{line}");
        }
        logs.push((format!("herdctl doctor, server name {name}"), format!("{out}\n{err}")));
    }

    // 4. No secret anywhere: the processes' logs and output, /metrics,
    // --check-config and --help, and the servers' own logs.
    let (_, out, err) = run_with_env("herd-worker", &["--check-config"], &[]);
    assert!(out.contains("File("), "--check-config shows where passwords come from: {out}");
    logs.push(("--check-config".into(), format!("{out}\n{err}")));
    for binary in ["herd-worker", "herd-coordinator", "herdctl"] {
        let (_, out, err) =
            run_with_env(binary, &["--help"], &[("HERD_KAFKA_PASSWORD", &secrets[0].1)]);
        logs.push((format!("{binary} --help"), format!("{out}\n{err}")));
    }
    assert!(coordinator.is_running(), "{}", coordinator.log_tail());
    coordinator.terminate(Duration::from_secs(30));
    logs.push(("the coordinator's log".into(), coordinator.log()));
    let mut server_logs = Vec::new();
    files_under(&stack.dir, &mut server_logs);
    for file in server_logs.iter().filter(|f| f.components().any(|c| c.as_os_str() == "log")) {
        logs.push((file.display().to_string(), std::fs::read_to_string(file).unwrap_or_default()));
    }
    assert!(logs.len() >= 15, "every log was read: {}", logs.len());
    for (what, text) in &logs {
        assert_no_secret(what, text, &secrets);
    }
    // Everything else goes with the stack.
}
