use crate::security::{Security, SecurityArgs};
use crate::InvalidSetting;
use std::fmt;
use std::num::NonZeroU16;
use std::time::Duration;

/// Where the three servers herd depends on are, as given on the command line
/// or in the environment. Validate with [`ConnectArgs::validate`].
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// Kafka bootstrap brokers, comma-separated host:port.
    #[arg(long, global = true, env = "HERD_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,

    /// Cassandra (or ScyllaDB) contact points, comma-separated host:port (CQL port).
    #[arg(long, global = true, env = "HERD_CASSANDRA_NODES", default_value = "127.0.0.1:9042")]
    pub cassandra_nodes: String,

    /// ZooKeeper connect string: comma-separated host:port, optionally
    /// followed by a chroot path such as /herd.
    #[arg(
        long,
        global = true,
        env = "HERD_ZOOKEEPER",
        default_value = "127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183"
    )]
    pub zookeeper: String,

    /// How long to wait for any one server to answer before giving up, in seconds.
    #[arg(long, global = true, env = "HERD_CONNECT_TIMEOUT_SECS", default_value_t = 10)]
    pub connect_timeout_secs: u64,

    #[command(flatten)]
    pub security: SecurityArgs,
}

/// Validated endpoints: every list is non-empty and every port is non-zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub kafka_brokers: Vec<HostPort>,
    pub cassandra_nodes: Vec<HostPort>,
    pub zookeeper: ZkConnect,
    pub connect_timeout: Duration,
    /// TLS and logins; the default is plaintext without authentication.
    pub security: Security,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: NonZeroU16,
}

/// A ZooKeeper connect string split into its servers and optional chroot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkConnect {
    pub servers: Vec<HostPort>,
    /// Absolute path without a trailing slash, e.g. `/herd`.
    pub chroot: Option<String>,
}

/// The longest connect timeout accepted: beyond an hour a typo is likelier than intent.
const MAX_CONNECT_TIMEOUT_SECS: u64 = 3600;

impl ConnectArgs {
    pub fn validate(&self) -> Result<Endpoints, InvalidSetting> {
        if !(1..=MAX_CONNECT_TIMEOUT_SECS).contains(&self.connect_timeout_secs) {
            return Err(InvalidSetting::new(
                "connect-timeout-secs",
                self.connect_timeout_secs,
                "is out of range; expected 1 to 3600 seconds",
            ));
        }
        Ok(Endpoints {
            kafka_brokers: parse_host_ports("kafka-brokers", &self.kafka_brokers)?,
            cassandra_nodes: parse_host_ports("cassandra-nodes", &self.cassandra_nodes)?,
            zookeeper: ZkConnect::parse("zookeeper", &self.zookeeper)?,
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            security: self.security.validate()?,
        })
    }
}

impl Endpoints {
    /// The endpoints named by the `HERD_*` env vars, falling back to the local
    /// stack's defaults. Meant for tests and tools that take no flags.
    pub fn from_env() -> Result<Endpoints, InvalidSetting> {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Env {
            #[command(flatten)]
            connect: ConnectArgs,
        }
        // No argv: only env vars and defaults apply. Parsing cannot fail on
        // syntax, since every argument has a default.
        let env = Env::try_parse_from(["herd"]).expect("every connect arg has a default");
        env.connect.validate()
    }

    /// Kafka's `bootstrap.servers` value.
    pub fn kafka_bootstrap(&self) -> String {
        join(&self.kafka_brokers)
    }
}

impl ZkConnect {
    fn parse(field: &'static str, value: &str) -> Result<ZkConnect, InvalidSetting> {
        let (hosts, chroot) = match value.find('/') {
            Some(i) => (&value[..i], Some(&value[i..])),
            None => (value, None),
        };
        let chroot = match chroot {
            None => None,
            Some(path) => {
                let bad = |reason: &str| {
                    InvalidSetting::new(
                        field,
                        value,
                        format!("has an invalid chroot: {reason}; expected host:port[,host:port...][/path], e.g. 127.0.0.1:2181/herd"),
                    )
                };
                if path == "/" {
                    None
                } else if path.ends_with('/') {
                    return Err(bad("it must not end with '/'"));
                } else if path.contains("//") {
                    return Err(bad("it must not contain an empty path segment"));
                } else if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    return Err(bad("it must not contain white space or control characters"));
                } else {
                    Some(path.to_owned())
                }
            }
        };
        Ok(ZkConnect { servers: parse_host_ports(field, hosts)?, chroot })
    }

    /// The servers part of the connect string, without the chroot.
    pub fn servers_string(&self) -> String {
        join(&self.servers)
    }
}

impl fmt::Display for ZkConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", join(&self.servers), self.chroot.as_deref().unwrap_or(""))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

fn join(list: &[HostPort]) -> String {
    list.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

fn parse_host_ports(field: &'static str, value: &str) -> Result<Vec<HostPort>, InvalidSetting> {
    let bad = |reason: String| {
        InvalidSetting::new(
            field,
            value,
            format!("is not a valid address: {reason}; expected host:port[,host:port...], e.g. 127.0.0.1:9092"),
        )
    };
    if value.trim().is_empty() {
        return Err(bad("it is empty".into()));
    }
    value.split(',').map(|item| parse_host_port(item.trim()).map_err(&bad)).collect()
}

fn parse_host_port(item: &str) -> Result<HostPort, String> {
    if item.is_empty() {
        return Err("an entry between commas is empty".into());
    }
    // [v6]:port, or host:port where host has no colon.
    let (host, port) = if let Some(rest) = item.strip_prefix('[') {
        let (host, rest) =
            rest.split_once(']').ok_or_else(|| format!("{item:?} opens '[' without closing it"))?;
        let port = rest
            .strip_prefix(':')
            .ok_or_else(|| format!("{item:?} has no :port after the IPv6 address"))?;
        (host, port)
    } else {
        item.rsplit_once(':').ok_or_else(|| format!("{item:?} has no :port"))?
    };
    if host.is_empty() {
        return Err(format!("{item:?} has no host"));
    }
    if !item.starts_with('[') && host.contains(':') {
        return Err(format!("{item:?}: write an IPv6 address in brackets, e.g. [::1]:9092"));
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/') {
        return Err(format!("{item:?}: the host contains a character hosts cannot have"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{item:?}: port {port:?} is not a number from 1 to 65535"))?;
    let port = NonZeroU16::new(port).ok_or_else(|| format!("{item:?}: port 0 is not allowed"))?;
    Ok(HostPort { host: host.to_owned(), port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(kafka: &str, cassandra: &str, zk: &str) -> ConnectArgs {
        ConnectArgs {
            kafka_brokers: kafka.into(),
            cassandra_nodes: cassandra.into(),
            zookeeper: zk.into(),
            connect_timeout_secs: 10,
            security: SecurityArgs {
                kafka_sasl_mechanism: "SCRAM-SHA-512".into(),
                ..Default::default()
            },
        }
    }

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort { host: host.into(), port: NonZeroU16::new(port).unwrap() }
    }

    #[test]
    fn defaults_describe_the_local_stack() {
        let e = args(
            "127.0.0.1:9092",
            "127.0.0.1:9042",
            "127.0.0.1:2181,127.0.0.1:2182,127.0.0.1:2183",
        )
        .validate()
        .unwrap();
        assert_eq!(e.kafka_brokers, vec![hp("127.0.0.1", 9092)]);
        assert_eq!(e.cassandra_nodes, vec![hp("127.0.0.1", 9042)]);
        assert_eq!(e.zookeeper.servers.len(), 3);
        assert_eq!(e.zookeeper.chroot, None);
        assert_eq!(e.kafka_bootstrap(), "127.0.0.1:9092");
    }

    #[test]
    fn lists_ipv6_and_spaces() {
        let e = args("a:1, [::1]:2 ,b.example:3", "n:9042", "z:2181").validate().unwrap();
        assert_eq!(e.kafka_brokers, vec![hp("a", 1), hp("::1", 2), hp("b.example", 3)]);
        assert_eq!(e.kafka_bootstrap(), "a:1,[::1]:2,b.example:3");
    }

    #[test]
    fn zookeeper_chroot() {
        let z = ZkConnect::parse("zookeeper", "a:1,b:2/herd/prod").unwrap();
        assert_eq!(z.servers, vec![hp("a", 1), hp("b", 2)]);
        assert_eq!(z.chroot.as_deref(), Some("/herd/prod"));
        assert_eq!(z.to_string(), "a:1,b:2/herd/prod");
        assert_eq!(z.servers_string(), "a:1,b:2");
        assert_eq!(ZkConnect::parse("zookeeper", "a:1/").unwrap().chroot, None);
        for bad in ["a:1/herd/", "a:1/x//y", "a:1/h erd"] {
            let err = ZkConnect::parse("zookeeper", bad).unwrap_err();
            assert!(err.problem.starts_with("has an invalid chroot"), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_addresses_name_field_value_and_reason() {
        let cases = [
            ("", "it is empty"),
            ("localhost", "has no :port"),
            ("a:1,,b:2", "entry between commas is empty"),
            (":9092", "has no host"),
            ("a:0", "port 0 is not allowed"),
            ("a:70000", "not a number from 1 to 65535"),
            ("a:x", "not a number from 1 to 65535"),
            ("::1:9092", "IPv6 address in brackets"),
            ("[::1:9092", "without closing"),
            ("[::1]9092", "no :port after"),
        ];
        for (value, reason) in cases {
            let err = args(value, "n:1", "z:1").validate().unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with("kafka-brokers: "), "{value:?}: {msg}");
            assert!(msg.contains(&format!("{value:?}")), "{value:?}: {msg}");
            assert!(msg.contains(reason), "{value:?}: wanted {reason:?} in {msg}");
        }
        let err = args("a:1", "b", "z:1").validate().unwrap_err();
        assert!(err.to_string().starts_with("cassandra-nodes: "), "{err}");
        let err = args("a:1", "b:1", "z").validate().unwrap_err();
        assert!(err.to_string().starts_with("zookeeper: "), "{err}");
    }

    #[test]
    fn timeout_range() {
        let mut a = args("a:1", "b:1", "c:1");
        a.connect_timeout_secs = 0;
        let err = a.validate().unwrap_err();
        assert_eq!(err.field, "connect-timeout-secs", "{err}");
        assert!(err.problem.starts_with("is out of range"), "{err}");
        a.connect_timeout_secs = 3601;
        assert!(a.validate().is_err());
        a.connect_timeout_secs = 3600;
        assert_eq!(a.validate().unwrap().connect_timeout, Duration::from_secs(3600));
    }
}
