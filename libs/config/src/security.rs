//! TLS and authentication to the three servers, as given by flags or
//! `HERD_*` env vars.
//!
//! Secrets are never flags (a command line is visible to every local user
//! in `ps`): a password comes from an env var or from a file named by a
//! flag. Validation only checks that each login has exactly one source; the
//! secret is read when a client connects ([`Secret::read`]), so a rotated
//! password file is picked up by the next connection. [`Password`] prints
//! as `<redacted>` in `Debug` and has no `Display`, so it cannot end up in a
//! log line, an error or `--check-config` output by accident.

use std::fmt;
use std::path::PathBuf;

use crate::InvalidSetting;

/// The env vars a password may come from: kept out of the environment of
/// the commands herd runs (nodetool).
pub const PASSWORD_ENV: [&str; 3] =
    ["HERD_ZOOKEEPER_PASSWORD", "HERD_KAFKA_PASSWORD", "HERD_CASSANDRA_PASSWORD"];

/// The flags and env vars. Every one is optional: without them herd speaks
/// plaintext without authentication (the local stack's default).
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "TLS and logins (secrets only from files or HERD_*_PASSWORD)")]
pub struct SecurityArgs {
    /// PEM file with the CA certificate(s) that signed the ZooKeeper
    /// servers' certificates. Turns on TLS to ZooKeeper (its secure client
    /// port).
    #[arg(long, global = true, env = "HERD_ZOOKEEPER_TLS_CA", value_name = "FILE")]
    pub zookeeper_tls_ca: Option<PathBuf>,
    /// SASL (DIGEST-MD5) user to ZooKeeper. Its password comes from
    /// HERD_ZOOKEEPER_PASSWORD or --zookeeper-password-file. With a user,
    /// herd's znodes are created writable by this user only.
    #[arg(long, global = true, env = "HERD_ZOOKEEPER_USER", value_name = "USER")]
    pub zookeeper_user: Option<String>,
    /// File holding the ZooKeeper user's password (one line).
    #[arg(long, global = true, env = "HERD_ZOOKEEPER_PASSWORD_FILE", value_name = "FILE")]
    pub zookeeper_password_file: Option<PathBuf>,
    /// Other ZooKeeper users (comma-separated) that may read what
    /// `herdctl status` shows: leader, workers, assignment, holders, schema
    /// versions, Cassandra view. Nobody else may read or write herd's znodes.
    #[arg(long, global = true, env = "HERD_ZOOKEEPER_READERS", value_name = "USERS")]
    pub zookeeper_readers: Option<String>,

    /// PEM file with the CA certificate(s) that signed the Kafka brokers'
    /// certificates. Turns on TLS to Kafka.
    #[arg(long, global = true, env = "HERD_KAFKA_TLS_CA", value_name = "FILE")]
    pub kafka_tls_ca: Option<PathBuf>,
    /// SASL user to Kafka. Its password comes from HERD_KAFKA_PASSWORD or
    /// --kafka-password-file.
    #[arg(long, global = true, env = "HERD_KAFKA_USER", value_name = "USER")]
    pub kafka_user: Option<String>,
    /// File holding the Kafka user's password (one line).
    #[arg(long, global = true, env = "HERD_KAFKA_PASSWORD_FILE", value_name = "FILE")]
    pub kafka_password_file: Option<PathBuf>,
    /// SASL mechanism to Kafka: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN
    /// (PLAIN sends the password itself, so only with TLS).
    #[arg(long, global = true, env = "HERD_KAFKA_SASL_MECHANISM", default_value = "SCRAM-SHA-512")]
    pub kafka_sasl_mechanism: String,

    /// PEM file with the CA certificate(s) that signed the Cassandra nodes'
    /// certificates. Turns on TLS to Cassandra (client_encryption_options).
    #[arg(long, global = true, env = "HERD_CASSANDRA_TLS_CA", value_name = "FILE")]
    pub cassandra_tls_ca: Option<PathBuf>,
    /// The name every Cassandra node's certificate must be valid for. By
    /// default each certificate must be valid for the address the node is
    /// reached on: the driver reaches the nodes it finds in the cluster's
    /// metadata by IP, so nodes whose certificates name a host (a container,
    /// a cluster-wide certificate) need this.
    #[arg(long, global = true, env = "HERD_CASSANDRA_TLS_SERVER_NAME", value_name = "NAME")]
    pub cassandra_tls_server_name: Option<String>,
    /// Cassandra role to log in as (PasswordAuthenticator). Its password
    /// comes from HERD_CASSANDRA_PASSWORD or --cassandra-password-file.
    #[arg(long, global = true, env = "HERD_CASSANDRA_USER", value_name = "ROLE")]
    pub cassandra_user: Option<String>,
    /// File holding the Cassandra role's password (one line).
    #[arg(long, global = true, env = "HERD_CASSANDRA_PASSWORD_FILE", value_name = "FILE")]
    pub cassandra_password_file: Option<PathBuf>,
}

/// Validated security settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    pub zookeeper: ServerSecurity,
    /// Users given read access to the znodes `herdctl status` reads.
    pub zookeeper_readers: Vec<String>,
    pub kafka: ServerSecurity,
    pub kafka_sasl_mechanism: SaslMechanism,
    pub cassandra: ServerSecurity,
    /// The name the nodes' certificates are checked against, if not each
    /// node's address.
    pub cassandra_tls_server_name: Option<String>,
}

/// How to reach one server: TLS (with the CA to trust) and a login.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerSecurity {
    pub tls_ca: Option<PathBuf>,
    pub login: Option<Login>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub password: Secret,
}

/// Kafka's SASL mechanisms herd speaks (librdkafka's built-in ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SaslMechanism {
    #[default]
    ScramSha512,
    ScramSha256,
    Plain,
}

impl SaslMechanism {
    /// The name Kafka and librdkafka use.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::Plain => "PLAIN",
        }
    }
}

/// Where a password is kept. Its `Debug` names the place, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// An env var of this process.
    Env(&'static str),
    /// A file; its first line is the secret.
    File(PathBuf),
}

/// A secret's value. Not `Display`; `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Password {
    /// The value, for handing to a client library. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Secret {
    /// Reads the secret now. The error names the place (env var or file)
    /// and what is wrong, never any of the content.
    pub fn read(&self) -> Result<Password, String> {
        let value = match self {
            Secret::Env(name) => {
                std::env::var(name).map_err(|e| format!("cannot read the env var {name}: {e}"))?
            }
            Secret::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the password file {}: {e}", path.display()))?,
        };
        // The first line, without its line ending: `echo pw > file` works.
        let value = value.lines().next().unwrap_or("").to_owned();
        if value.is_empty() {
            return Err(format!("{self} is empty"));
        }
        Ok(Password(value))
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Env(name) => write!(f, "the env var {name}"),
            Secret::File(path) => write!(f, "the password file {}", path.display()),
        }
    }
}

/// One server's flags, for [`login`].
struct LoginSource<'a> {
    server: &'static str,
    user: &'a Option<String>,
    file: &'a Option<PathBuf>,
    env: &'static str,
}

fn login(s: LoginSource<'_>) -> Result<Option<Login>, InvalidSetting> {
    let user_field = format!("{}-user", s.server);
    let file_field = format!("{}-password-file", s.server);
    let env_set = std::env::var_os(s.env).is_some();
    let user = match s.user.as_deref().map(str::trim) {
        None | Some("") => {
            if s.file.is_some() || env_set {
                let given =
                    if s.file.is_some() { format!("--{file_field}") } else { s.env.to_owned() };
                return Err(InvalidSetting::new(
                    user_field,
                    "",
                    format!("is missing: {given} gives a password but no user is set; set --{}-user (HERD_{}_USER) too", s.server, s.server.to_ascii_uppercase()),
                ));
            }
            return Ok(None);
        }
        Some(user) => user,
    };
    if user.chars().any(|c| c.is_control() || c == ',') {
        return Err(InvalidSetting::new(
            user_field,
            user,
            "contains a comma or a control character",
        ));
    }
    let password = match (s.file, env_set) {
        (Some(_), true) => {
            return Err(InvalidSetting::new(
                file_field,
                s.file.as_ref().unwrap().display(),
                format!("and {} are both set; give the password one way only", s.env),
            ))
        }
        (Some(path), false) => Secret::File(path.clone()),
        (None, true) => Secret::Env(s.env),
        (None, false) => {
            return Err(InvalidSetting::new(
                user_field,
                user,
                format!("has no password: set {} or --{file_field}", s.env),
            ))
        }
    };
    Ok(Some(Login { user: user.to_owned(), password }))
}

impl SecurityArgs {
    pub fn validate(&self) -> Result<Security, InvalidSetting> {
        let zookeeper_login = login(LoginSource {
            server: "zookeeper",
            user: &self.zookeeper_user,
            file: &self.zookeeper_password_file,
            env: PASSWORD_ENV[0],
        })?;
        let readers: Vec<String> = self
            .zookeeper_readers
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
        if !readers.is_empty() && zookeeper_login.is_none() {
            return Err(InvalidSetting::new(
                "zookeeper-readers",
                readers.join(","),
                "needs --zookeeper-user: without a login herd's znodes are open to everyone",
            ));
        }
        let kafka_sasl_mechanism =
            match self.kafka_sasl_mechanism.trim().to_ascii_uppercase().as_str() {
                "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
                "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
                "PLAIN" => SaslMechanism::Plain,
                _ => {
                    return Err(InvalidSetting::new(
                        "kafka-sasl-mechanism",
                        &self.kafka_sasl_mechanism,
                        "is not supported; expected SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN",
                    ))
                }
            };
        let kafka_login = login(LoginSource {
            server: "kafka",
            user: &self.kafka_user,
            file: &self.kafka_password_file,
            env: PASSWORD_ENV[1],
        })?;
        if kafka_sasl_mechanism == SaslMechanism::Plain
            && kafka_login.is_some()
            && self.kafka_tls_ca.is_none()
        {
            return Err(InvalidSetting::new(
                "kafka-sasl-mechanism",
                "PLAIN",
                "would send the password in clear text; set --kafka-tls-ca too, or use SCRAM-SHA-512",
            ));
        }
        let cassandra_login = login(LoginSource {
            server: "cassandra",
            user: &self.cassandra_user,
            file: &self.cassandra_password_file,
            env: PASSWORD_ENV[2],
        })?;
        let ca = |field: &'static str, path: &Option<PathBuf>| match path {
            Some(p) if p.as_os_str().is_empty() => {
                Err(InvalidSetting::new(field, "", "is empty; name a PEM file or leave it unset"))
            }
            other => Ok(other.clone()),
        };
        Ok(Security {
            zookeeper: ServerSecurity {
                tls_ca: ca("zookeeper-tls-ca", &self.zookeeper_tls_ca)?,
                login: zookeeper_login,
            },
            zookeeper_readers: readers,
            kafka: ServerSecurity {
                tls_ca: ca("kafka-tls-ca", &self.kafka_tls_ca)?,
                login: kafka_login,
            },
            kafka_sasl_mechanism,
            cassandra: ServerSecurity {
                tls_ca: ca("cassandra-tls-ca", &self.cassandra_tls_ca)?,
                login: cassandra_login,
            },
            cassandra_tls_server_name: match self
                .cassandra_tls_server_name
                .as_deref()
                .map(str::trim)
            {
                None | Some("") => None,
                Some(name) if self.cassandra_tls_ca.is_none() => {
                    return Err(InvalidSetting::new(
                        "cassandra-tls-server-name",
                        name,
                        "needs --cassandra-tls-ca: without TLS there is no certificate to check",
                    ))
                }
                Some(name)
                    if name.chars().all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c)) =>
                {
                    Some(name.to_owned())
                }
                Some(name) => {
                    return Err(InvalidSetting::new(
                        "cassandra-tls-server-name",
                        name,
                        "is not a host name or an IP address",
                    ))
                }
            },
        })
    }
}

impl Security {
    /// One line for a process's start-up log: what is on for each server,
    /// never a secret.
    pub fn describe(&self) -> String {
        format!(
            "zookeeper: {}; kafka: {}; cassandra: {}",
            self.zookeeper.describe(),
            self.kafka.describe(),
            self.cassandra.describe()
        )
    }
}

impl ServerSecurity {
    /// What is on for one server, never a secret.
    pub fn describe(&self) -> String {
        let tls = match &self.tls_ca {
            Some(ca) => format!("TLS (CA {})", ca.display()),
            None => "plaintext".to_owned(),
        };
        match &self.login {
            Some(l) => format!("{tls}, user {} (password from {})", l.user, l.password),
            None => format!("{tls}, no login"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_set_means_plaintext() {
        let s = SecurityArgs { kafka_sasl_mechanism: "SCRAM-SHA-512".into(), ..Default::default() }
            .validate()
            .unwrap();
        assert_eq!(s, Security::default());
        assert_eq!(s.kafka.describe(), "plaintext, no login");
    }

    #[test]
    fn logins_need_one_password_source() {
        let dir = std::env::temp_dir().join(format!("herd-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret\nignored\n").unwrap();
        let mut args = SecurityArgs {
            kafka_sasl_mechanism: "scram-sha-256".into(),
            kafka_user: Some("herd".into()),
            ..Default::default()
        };
        let err = args.validate().unwrap_err();
        assert!(err.to_string().contains("has no password: set HERD_KAFKA_PASSWORD"), "{err}");
        args.kafka_password_file = Some(file.clone());
        let s = args.validate().unwrap();
        let login = s.kafka.login.as_ref().unwrap();
        assert_eq!(s.kafka_sasl_mechanism, SaslMechanism::ScramSha256);
        assert_eq!(login.password.read().unwrap().expose(), "s3cret");
        // Neither Debug nor the description carries the secret.
        assert!(!format!("{s:?}").contains("s3cret"));
        assert!(!format!("{:?}", login.password.read().unwrap()).contains("s3cret"));
        assert!(
            s.kafka.describe().contains("password from the password file"),
            "{}",
            s.kafka.describe()
        );
        // A file without a user is refused, naming the missing flag.
        args.kafka_user = None;
        let err = args.validate().unwrap_err();
        assert_eq!(err.field, "kafka-user", "{err}");
        // PLAIN without TLS would send the password in clear.
        args.kafka_user = Some("herd".into());
        args.kafka_sasl_mechanism = "PLAIN".into();
        let err = args.validate().unwrap_err();
        assert!(err.problem.contains("clear text"), "{err}");
        args.kafka_sasl_mechanism = "GSSAPI".into();
        assert_eq!(args.validate().unwrap_err().field, "kafka-sasl-mechanism");
        std::fs::write(&file, "\n").unwrap();
        let empty = Secret::File(file.clone()).read().unwrap_err();
        assert!(empty.ends_with("is empty"), "{empty}");
        let missing = Secret::File(dir.join("nope")).read().unwrap_err();
        assert!(missing.contains("cannot read the password file"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn readers_need_a_zookeeper_login() {
        let args = SecurityArgs {
            kafka_sasl_mechanism: "SCRAM-SHA-512".into(),
            zookeeper_readers: Some("ops, audit".into()),
            ..Default::default()
        };
        assert_eq!(args.validate().unwrap_err().field, "zookeeper-readers");
    }
}
