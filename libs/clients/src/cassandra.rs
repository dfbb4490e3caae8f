//! The CQL session. herd keeps one per process: the driver multiplexes
//! requests over per-shard connections and routes each to its token owner.

use herd_config::Endpoints;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::ClientError;

fn nodes(endpoints: &Endpoints) -> String {
    endpoints.cassandra_nodes.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// Connects with the driver's default session settings (schema metadata and
/// schema agreement on), bounded by the connect timeout; over TLS and as a
/// role when `--cassandra-tls-ca` and `--cassandra-user` say so.
pub async fn session(endpoints: &Endpoints) -> Result<Session, ClientError> {
    let mut builder = SessionBuilder::new()
        .known_nodes(endpoints.cassandra_nodes.iter().map(ToString::to_string))
        .connection_timeout(endpoints.connect_timeout);
    let security = &endpoints.security.cassandra;
    if let Some(ca) = &security.tls_ca {
        let name = endpoints.security.cassandra_tls_server_name.as_deref();
        builder = builder.tls_context(Some(tls_config(ca, name)?));
    }
    if let Some(login) = &security.login {
        let password = login
            .password
            .read()
            .map_err(|e| ClientError::Config(format!("Cassandra role {}: {e}", login.user)))?;
        builder = builder.user(login.user.clone(), password.expose());
    }
    match tokio::time::timeout(endpoints.connect_timeout, builder.build()).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => {
            Err(ClientError::Cassandra { nodes: nodes(endpoints), detail: e.to_string() })
        }
        Err(_) => Err(ClientError::Cassandra {
            nodes: nodes(endpoints),
            detail: format!("no session within {:?}", endpoints.connect_timeout),
        }),
    }
}

/// A TLS client configuration that trusts the CA certificates in `ca` (PEM)
/// and checks each node's certificate against the address it is reached on,
/// or against `server_name` if given.
fn tls_config(
    ca: &std::path::Path,
    server_name: Option<&str>,
) -> Result<std::sync::Arc<rustls::ClientConfig>, ClientError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bad = |why: String| {
        ClientError::Config(format!("Cassandra: --cassandra-tls-ca {}: {why}", ca.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).map_err(|e| bad(format!("cannot read it: {e}")))?
    {
        let cert = cert.map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
        roots.add(cert).map_err(|e| bad(format!("a certificate in it is not usable: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("it holds no certificate".into()));
    }
    let Some(name) = server_name else {
        return Ok(std::sync::Arc::new(
            rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth(),
        ));
    };
    let name = rustls::pki_types::ServerName::try_from(name.to_owned())
        .map_err(|e| ClientError::Config(format!("--cassandra-tls-server-name {name:?}: {e}")))?;
    let inner = rustls::client::WebPkiServerVerifier::builder(std::sync::Arc::new(roots))
        .build()
        .map_err(|e| bad(format!("cannot build a verifier from it: {e}")))?;
    Ok(std::sync::Arc::new(
        rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(FixedName { inner, name }))
            .with_no_client_auth(),
    ))
}

/// Checks a server's certificate as rustls does, but for one fixed name
/// instead of the address the connection went to: the chain, the validity
/// and the handshake signatures are all still checked.
#[derive(Debug)]
struct FixedName {
    inner: std::sync::Arc<rustls::client::WebPkiServerVerifier>,
    name: rustls::pki_types::ServerName<'static>,
}

impl rustls::client::danger::ServerCertVerifier for FixedName {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _reached_as: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Version and cluster name of the node that answered: proof that CQL
/// queries are served, not only that the port is open.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeInfo {
    pub release_version: String,
    pub cluster_name: String,
}

pub async fn node_info(endpoints: &Endpoints, session: &Session) -> Result<NodeInfo, ClientError> {
    let err = |detail: String| ClientError::Cassandra { nodes: nodes(endpoints), detail };
    let result = session
        .query_unpaged("SELECT release_version, cluster_name FROM system.local", &[])
        .await
        .map_err(|e| err(format!("query on system.local failed: {e}")))?;
    let (release_version, cluster_name) = result
        .into_rows_result()
        .map_err(|e| err(format!("query on system.local returned no rows: {e}")))?
        .single_row::<(String, String)>()
        .map_err(|e| err(format!("unexpected system.local row: {e}")))?;
    Ok(NodeInfo { release_version, cluster_name })
}

/// One node as the session sees it and as a query pinned to it answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeProbe {
    /// The node's address (without the port).
    pub address: String,
    pub datacenter: Option<String>,
    /// The driver holds open connections to it.
    pub connected: bool,
    /// A query on its `system.local`, pinned to it: Ok(milliseconds) or why not.
    pub probe: Result<u64, String>,
}

/// What a node holds for the others: hint files per target node and that
/// node's liveness as this node's failure detector sees it
/// (`system_views.pending_hints`, Cassandra 4.0 and newer).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingHints {
    pub held_by: String,
    pub target: String,
    /// UP, DOWN or UNKNOWN.
    pub status: String,
    pub files: i32,
}

fn pinned(
    cql: &str,
    node: &std::sync::Arc<scylla::cluster::Node>,
    timeout: std::time::Duration,
) -> scylla::statement::unprepared::Statement {
    use scylla::policies::load_balancing::{NodeIdentifier, SingleTargetLoadBalancingPolicy};
    let mut statement = scylla::statement::unprepared::Statement::new(cql);
    statement.set_load_balancing_policy(Some(SingleTargetLoadBalancingPolicy::new(
        NodeIdentifier::Node(node.clone()),
        None,
    )));
    statement.set_request_timeout(Some(timeout));
    statement
}

/// Probes every node the session knows, one query pinned to each (at most
/// `timeout` each), and reads the hints each node that answered holds.
/// Nodes in address order.
pub async fn probe_nodes(
    session: &Session,
    timeout: std::time::Duration,
) -> (Vec<NodeProbe>, Vec<PendingHints>) {
    let state = session.get_cluster_state();
    let mut nodes: Vec<_> = state.get_nodes_info().to_vec();
    nodes.sort_by_key(|n| n.address.ip());
    let probes = futures::future::join_all(nodes.iter().map(|node| async move {
        let started = std::time::Instant::now();
        let probe = match tokio::time::timeout(
            timeout,
            session.query_unpaged(
                pinned("SELECT release_version FROM system.local", node, timeout),
                &[],
            ),
        )
        .await
        {
            Ok(Ok(_)) => Ok(started.elapsed().as_millis() as u64),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        let hints =
            if probe.is_ok() { pending_hints(session, node, timeout).await } else { Vec::new() };
        let probe = NodeProbe {
            address: node.address.ip().to_string(),
            datacenter: node.datacenter.clone(),
            connected: node.is_connected(),
            probe,
        };
        (probe, hints)
    }))
    .await;
    let mut all_hints = Vec::new();
    let probes = probes
        .into_iter()
        .map(|(probe, hints)| {
            all_hints.extend(hints);
            probe
        })
        .collect();
    (probes, all_hints)
}

/// The hints `node` holds; none if the table is missing (Cassandra before
/// 4.0, ScyllaDB) or unreadable.
async fn pending_hints(
    session: &Session,
    node: &std::sync::Arc<scylla::cluster::Node>,
    timeout: std::time::Duration,
) -> Vec<PendingHints> {
    let cql = "SELECT address, status, files FROM system_views.pending_hints";
    let Ok(Ok(result)) =
        tokio::time::timeout(timeout, session.query_unpaged(pinned(cql, node, timeout), &[])).await
    else {
        return Vec::new();
    };
    let Ok(rows) = result.into_rows_result() else { return Vec::new() };
    let Ok(rows) = rows.rows::<(Option<std::net::IpAddr>, Option<String>, Option<i32>)>() else {
        return Vec::new();
    };
    rows.filter_map(Result::ok)
        .filter_map(|(address, status, files)| {
            Some(PendingHints {
                held_by: node.address.ip().to_string(),
                target: address?.to_string(),
                status: status.unwrap_or_else(|| "UNKNOWN".into()),
                files: files.unwrap_or(0),
            })
        })
        .collect()
}
