//! ZooKeeper sessions with a bounded connect and a close that waits for the
//! server to end the session.
//!
//! Reading another client's write: ZooKeeper keeps each client's own view
//! in order, but a session on a follower may lag the leader, so call
//! `Client::sync` on the path before a read that must see what another
//! client just wrote.

use std::time::Duration;

use herd_config::{Endpoints, HostPort};
use zookeeper_client::Client;

use crate::ClientError;

/// Connects to the ensemble (with its chroot, if any) and negotiates
/// `session_timeout`. Fails instead of retrying forever when no server
/// answers within the connect timeout.
pub async fn connect(
    endpoints: &Endpoints,
    session_timeout: Duration,
) -> Result<Client, ClientError> {
    connect_to(&endpoints.zookeeper.to_string(), endpoints.connect_timeout, session_timeout).await
}

async fn connect_to(
    connect_string: &str,
    connect_timeout: Duration,
    session_timeout: Duration,
) -> Result<Client, ClientError> {
    let connector = Client::connector().with_session_timeout(session_timeout).with_fail_eagerly();
    match tokio::time::timeout(connect_timeout, connector.connect(connect_string)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(source)) => {
            Err(ClientError::ZooKeeper { servers: connect_string.to_owned(), source })
        }
        Err(_) => Err(ClientError::ZooKeeperTimeout {
            servers: connect_string.to_owned(),
            timeout: connect_timeout,
        }),
    }
}

/// Connects to one server of the ensemble only (no chroot), for probing
/// servers one by one.
pub async fn connect_one(
    server: &HostPort,
    connect_timeout: Duration,
) -> Result<Client, ClientError> {
    connect_to(&server.to_string(), connect_timeout, Duration::from_secs(4)).await
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
