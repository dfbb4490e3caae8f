//! ZooKeeper sessions with a bounded connect and a close that waits for the
//! server to end the session.
//!
//! Reading another client's write: ZooKeeper keeps each client's own view
//! in order, but a session on a follower may lag the leader, so call
//! `Client::sync` on the path before a read that must see what another
//! client just wrote.

use std::sync::OnceLock;
use std::time::Duration;

use herd_config::security::ServerSecurity;
use herd_config::{Endpoints, HostPort};
use zookeeper_client::{Acl, Acls, AuthId, Client, Permission};

use crate::ClientError;

/// Connects to the ensemble (with its chroot, if any) and negotiates
/// `session_timeout`. Fails instead of retrying forever when no server
/// answers within the connect timeout. With `--zookeeper-user` the session
/// authenticates (SASL DIGEST-MD5) and the znodes this process creates get
/// [`acls`] that only that user may write.
pub async fn connect(
    endpoints: &Endpoints,
    session_timeout: Duration,
) -> Result<Client, ClientError> {
    let security = &endpoints.security;
    set_acl_policy(
        security.zookeeper.login.as_ref().map(|l| l.user.as_str()),
        &security.zookeeper_readers,
    );
    connect_to(
        &endpoints.zookeeper.to_string(),
        &security.zookeeper,
        endpoints.connect_timeout,
        session_timeout,
    )
    .await
}

async fn connect_to(
    connect_string: &str,
    security: &ServerSecurity,
    connect_timeout: Duration,
    session_timeout: Duration,
) -> Result<Client, ClientError> {
    let servers = || connect_string.to_owned();
    let mut connector =
        Client::connector().with_session_timeout(session_timeout).with_fail_eagerly();
    if let Some(ca) = &security.tls_ca {
        let pem = std::fs::read_to_string(ca).map_err(|e| {
            ClientError::Config(format!(
                "ZooKeeper: cannot read the CA file {} (--zookeeper-tls-ca): {e}",
                ca.display()
            ))
        })?;
        let tls = zookeeper_client::TlsOptions::new().with_pem_ca(&pem).map_err(|e| {
            ClientError::Config(format!(
                "ZooKeeper: {} (--zookeeper-tls-ca) holds no usable CA certificate: {e}",
                ca.display()
            ))
        })?;
        connector = connector.with_tls(tls);
    }
    if let Some(login) = &security.login {
        let password = login
            .password
            .read()
            .map_err(|e| ClientError::Config(format!("ZooKeeper user {}: {e}", login.user)))?;
        connector = connector.with_sasl(zookeeper_client::SaslOptions::digest_md5(
            login.user.clone(),
            password.expose().to_owned(),
        ));
    }
    let connecting = if security.tls_ca.is_some() {
        futures::future::Either::Left(connector.secure_connect(connect_string))
    } else {
        futures::future::Either::Right(connector.connect(connect_string))
    };
    match tokio::time::timeout(connect_timeout, connecting).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(zookeeper_client::Error::AuthFailed)) => Err(ClientError::ZooKeeperAuth {
            servers: servers(),
            user: security.login.as_ref().map_or_else(|| "(none)".into(), |l| l.user.clone()),
        }),
        Ok(Err(source)) => Err(ClientError::ZooKeeper { servers: servers(), source }),
        Err(_) => Err(ClientError::ZooKeeperTimeout {
            servers: servers(),
            timeout: connect_timeout,
            tls: security.tls_ca.is_some(),
        }),
    }
}

/// Connects to one server of the ensemble only (no chroot), for probing
/// servers one by one.
pub async fn connect_one(endpoints: &Endpoints, server: &HostPort) -> Result<Client, ClientError> {
    connect_to(
        &server.to_string(),
        &endpoints.security.zookeeper,
        endpoints.connect_timeout,
        Duration::from_secs(4),
    )
    .await
}

/// Who may see a znode herd creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// herd's own user only: configuration, its history, locks, jobs,
    /// election candidates, the epoch floor.
    Herd,
    /// herd's user writes, and the `--zookeeper-readers` may read: what
    /// `herdctl status` shows (leader, workers, assignment, holders,
    /// schema versions, the Cassandra view) and the directories above it.
    Status,
}

struct AclPolicy {
    herd: &'static [Acl],
    status: &'static [Acl],
}

static ACL_POLICY: OnceLock<AclPolicy> = OnceLock::new();

/// Fixed by the first [`connect`] of the process (every connect of a
/// process uses the same settings).
fn set_acl_policy(user: Option<&str>, readers: &[String]) {
    ACL_POLICY.get_or_init(|| {
        let Some(user) = user else {
            // No login: ZooKeeper cannot tell anyone apart, so nothing can
            // be restricted (the plaintext quick start).
            let open: &'static [Acl] =
                Box::leak(Box::new([Acl::new(Permission::ALL, AuthId::anyone())]));
            return AclPolicy { herd: open, status: open };
        };
        let owner = Acl::new(Permission::ALL, AuthId::new("sasl", user));
        let herd: &'static [Acl] = Box::leak(vec![owner.clone()].into_boxed_slice());
        let status = std::iter::once(owner)
            .chain(readers.iter().map(|r| Acl::new(Permission::READ, AuthId::new("sasl", r))))
            .collect::<Vec<_>>();
        AclPolicy { herd, status: Box::leak(status.into_boxed_slice()) }
    });
}

/// The ACL for a znode herd creates: open to all without a ZooKeeper login,
/// else writable by herd's user only and readable by the readers if
/// `visibility` is [`Visibility::Status`]. The one place herd's ACLs are decided.
pub fn acls(visibility: Visibility) -> Acls<'static> {
    match (ACL_POLICY.get(), visibility) {
        (None, _) => Acls::anyone_all(),
        (Some(p), Visibility::Herd) => Acls::new(p.herd),
        (Some(p), Visibility::Status) => Acls::new(p.status),
    }
}

/// Ends the session and waits until it is closed, so the ephemeral nodes it
/// owns are gone when this returns. The session closes only once the last
/// clone of `client` is dropped, so the caller must not hold other clones.
/// Returns false if the close was not confirmed within `timeout` (the
/// ephemerals then go when the session times out on the server).
pub async fn close(client: Client, timeout: Duration) -> bool {
    let mut states = client.state_watcher();
    drop(client);
    tokio::time::timeout(timeout, async {
        loop {
            if states.changed().await.is_terminated() {
                return;
            }
        }
    })
    .await
    .is_ok()
}
