//! The leading coordinator's watch over the Cassandra nodes, published in
//! ZooKeeper for `herdctl status`, and the repair it asks for when a node
//! comes back after being down for longer than hints cover.
//!
//! | path                        | kind       | content         |
//! |-----------------------------|------------|-----------------|
//! | `{root}/cassandra/health`   | persistent | [`ClusterView`] |
//!
//! A node is up when a query pinned to it answers within the probe timeout.
//! While it is down, the other replicas keep hints of the writes it misses
//! for `max_hint_window` (the cluster's own setting); a node down for longer
//! has lost writes that only a repair brings back, so when it answers again
//! the leader requests a repair of it ([`crate::jobs`]) for every keyspace
//! herd migrated (`{root}/schema/*`). The time a node went down is kept in
//! the published view, so a new leader does not start the clock again.
//!
//! Workers need no part of this to keep writing: with writes at
//! LOCAL_QUORUM (the default) and replication 3, one node down changes
//! nothing for them; with a quorum of a partition's replicas down, writes
//! are refused, workers retry without checkpointing past what was written,
//! and the view says the cluster waits for a quorum.

use std::collections::BTreeMap;
use std::time::Duration;

use herd_clients::cassandra::{NodeProbe, PendingHints};
use serde::{Deserialize, Serialize};
use zookeeper_client::Client;

use crate::membership::{ensure_path, ZkError};

pub fn health_path(root: &str) -> String {
    format!("{root}/cassandra/health")
}

/// One node in the view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,
    pub up: bool,
    /// The driver holds connections to it.
    pub connected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was first seen down, while it is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_since_ms: Option<i64>,
    /// Hint files the other nodes hold for it.
    #[serde(default)]
    pub hint_files: i32,
    /// The nodes whose failure detector says it is DOWN.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub down_according_to: Vec<String>,
}

/// The leader's view of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// The coordinator that probed.
    pub by: String,
    pub at_ms: i64,
    pub nodes: Vec<NodeView>,
    pub max_hint_window_ms: i64,
    /// What writes wait for, if anything (a quorum lost, no session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}

impl ClusterView {
    pub fn up(&self) -> usize {
        self.nodes.iter().filter(|n| n.up).count()
    }
}

/// A node that answers again after being down past the hint window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameBack {
    pub address: String,
    pub down_for: Duration,
}

/// Turns probes into views, remembering when each node went down.
#[derive(Debug, Clone)]
pub struct Tracker {
    pub max_hint_window: Duration,
    down_since: BTreeMap<String, i64>,
}

impl Tracker {
    /// Carries the down times of `previous` (a former leader's view) over.
    pub fn new(max_hint_window: Duration, previous: Option<&ClusterView>) -> Self {
        let down_since = previous
            .map(|v| {
                v.nodes.iter().filter_map(|n| Some((n.address.clone(), n.down_since_ms?))).collect()
            })
            .unwrap_or_default();
        Self { max_hint_window, down_since }
    }

    pub fn update(
        &mut self,
        by: &str,
        probes: &[NodeProbe],
        hints: &[PendingHints],
        now_ms: i64,
    ) -> (ClusterView, Vec<CameBack>) {
        let mut came_back = Vec::new();
        let nodes: Vec<NodeView> = probes
            .iter()
            .map(|p| {
                let up = p.probe.is_ok();
                let down_since_ms = if up {
                    if let Some(since) = self.down_since.remove(&p.address) {
                        let down_for = Duration::from_millis((now_ms - since).max(0) as u64);
                        if down_for > self.max_hint_window {
                            came_back.push(CameBack { address: p.address.clone(), down_for });
                        }
                    }
                    None
                } else {
                    Some(*self.down_since.entry(p.address.clone()).or_insert(now_ms))
                };
                let for_it = hints.iter().filter(|h| h.target == p.address);
                NodeView {
                    address: p.address.clone(),
                    datacenter: p.datacenter.clone(),
                    up,
                    connected: p.connected,
                    probe_ms: p.probe.as_ref().ok().copied(),
                    error: p.probe.as_ref().err().cloned(),
                    down_since_ms,
                    hint_files: for_it.clone().map(|h| h.files).sum(),
                    down_according_to: for_it
                        .filter(|h| h.status == "DOWN")
                        .map(|h| h.held_by.clone())
                        .collect(),
                }
            })
            .collect();
        let up = nodes.iter().filter(|n| n.up).count();
        let waiting_for = if nodes.is_empty() {
            Some("no Cassandra node known".to_owned())
        } else if up * 2 <= nodes.len() {
            Some(format!(
                "a quorum of replicas: {up} of {} nodes answer, so writes at QUORUM are refused and workers retry them",
                nodes.len()
            ))
        } else {
            None
        };
        let view = ClusterView {
            by: by.to_owned(),
            at_ms: now_ms,
            nodes,
            max_hint_window_ms: self.max_hint_window.as_millis() as i64,
            waiting_for,
        };
        (view, came_back)
    }
}

/// Cassandra's duration settings as `system_views.settings` shows them:
/// `3h`, `10800000ms`, `30s`, `1d`, or a bare number of milliseconds (the
/// old `max_hint_window_in_ms`).
pub fn parse_cassandra_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milliseconds" => n,
        "s" | "seconds" => n * 1000,
        "m" | "minutes" => n * 60_000,
        "h" | "hours" => n * 3_600_000,
        "d" | "days" => n * 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// The published view, if any.
pub async fn read_view(client: &Client, root: &str) -> Result<Option<ClusterView>, ZkError> {
    match client.get_data(&health_path(root)).await {
        Ok((data, _)) => Ok(serde_json::from_slice(&data).ok()),
        Err(zookeeper_client::Error::NoNode) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn publish(client: &Client, root: &str, view: &ClusterView) -> Result<(), ZkError> {
    let data = serde_json::to_vec(view).expect("serializable");
    let path = health_path(root);
    match client.set_data(&path, &data, None).await {
        Ok(_) => Ok(()),
        Err(zookeeper_client::Error::NoNode) => {
            ensure_path(client, root, &format!("{root}/cassandra")).await?;
            match client.create(&path, &data, &crate::access::persistent(root, &path)).await {
                Ok(_) | Err(zookeeper_client::Error::NodeExists) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The cluster's `max_hint_window`, read from a node's settings table.
async fn cluster_hint_window(session: &scylla::client::session::Session) -> Option<Duration> {
    let rows = session
        .query_unpaged(
            "SELECT value FROM system_views.settings WHERE name = 'max_hint_window'",
            &[],
        )
        .await
        .ok()?
        .into_rows_result()
        .ok()?;
    let (value,) = rows.maybe_first_row::<(Option<String>,)>().ok()??;
    parse_cassandra_duration(&value?)
}

/// How the leader watches.
#[derive(Debug, Clone)]
pub struct Watch {
    pub interval: Duration,
    pub probe_timeout: Duration,
    /// None: the cluster's own setting (3 h if unreadable).
    pub max_hint_window: Option<Duration>,
}

/// The leader's watch: probes every `interval`, publishes the view when a
/// node changes state (and every 10 s, so its age shows it is live), and
/// requests repairs. Runs until aborted with the leadership.
pub async fn monitor(
    client: Client,
    root: String,
    who: String,
    endpoints: herd_config::Endpoints,
    watch: Watch,
) -> Result<(), ZkError> {
    let mut session = None;
    let mut tracker: Option<Tracker> = None;
    let mut last: Option<(ClusterView, i64)> = None;
    loop {
        if session.is_none() {
            match herd_clients::cassandra::session(&endpoints).await {
                Ok(s) => session = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "Cassandra watch: no session; retrying");
                    let view = ClusterView {
                        by: who.clone(),
                        at_ms: herd_config::now_ms(),
                        nodes: Vec::new(),
                        max_hint_window_ms: 0,
                        waiting_for: Some(format!("a Cassandra session: {e}")),
                    };
                    publish(&client, &root, &view).await?;
                    tokio::time::sleep(watch.interval).await;
                    continue;
                }
            }
        }
        let s = session.as_ref().expect("set above");
        if tracker.is_none() {
            let window = match watch.max_hint_window {
                Some(w) => w,
                None => cluster_hint_window(s).await.unwrap_or_else(|| {
                    tracing::warn!("cannot read max_hint_window from system_views.settings; assuming Cassandra's default of 3 h (set --max-hint-window-secs)");
                    Duration::from_secs(3 * 3600)
                }),
            };
            let previous = read_view(&client, &root).await?;
            tracing::info!(max_hint_window_s = window.as_secs(), "watching the Cassandra nodes");
            tracker = Some(Tracker::new(window, previous.as_ref()));
        }
        let tracker = tracker.as_mut().expect("set above");
        let (probes, hints) = herd_clients::cassandra::probe_nodes(s, watch.probe_timeout).await;
        let now = herd_config::now_ms();
        let (view, came_back) = tracker.update(&who, &probes, &hints, now);
        for n in &view.nodes {
            metrics::gauge!(NODE_UP, "node" => n.address.clone()).set(if n.up { 1.0 } else { 0.0 });
            if let Some(ms) = n.probe_ms {
                metrics::gauge!(NODE_PROBE, "node" => n.address.clone()).set(ms as f64 / 1000.0);
            }
        }
        metrics::gauge!(NODES_UP).set(view.up() as f64);
        let changed = last.as_ref().is_none_or(|(v, at)| {
            now - at >= 10_000
                || v.waiting_for != view.waiting_for
                || v.nodes
                    .iter()
                    .map(|n| (&n.address, n.up))
                    .ne(view.nodes.iter().map(|n| (&n.address, n.up)))
        });
        if changed {
            if let Some((before, _)) = &last {
                for n in &view.nodes {
                    let was = before.nodes.iter().find(|b| b.address == n.address).map(|b| b.up);
                    if was != Some(n.up) {
                        if n.up {
                            tracing::info!(node = %n.address, "Cassandra node answers again");
                        } else {
                            tracing::warn!(node = %n.address, error = n.error.as_deref().unwrap_or(""), "Cassandra node down");
                        }
                    }
                }
            }
            if let Some(w) = &view.waiting_for {
                tracing::warn!("Cassandra: waiting for {w}");
            }
            publish(&client, &root, &view).await?;
            last = Some((view, now));
        }
        for back in came_back {
            request_repairs(&client, &root, &who, &back, tracker.max_hint_window).await;
        }
        tokio::time::sleep(watch.interval).await;
    }
}

/// Requests a repair of `back` for every keyspace herd migrated.
async fn request_repairs(
    client: &Client,
    root: &str,
    who: &str,
    back: &CameBack,
    window: Duration,
) {
    let keyspaces = match client.list_children(&format!("{root}/schema")).await {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(node = %back.address, error = %e, "a node needs a repair, but the keyspaces to repair cannot be read");
            return;
        }
    };
    for keyspace in keyspaces {
        let reason = format!(
            "{} was down {} s, longer than the hint window ({} s): writes it missed are only on the other replicas",
            back.address,
            back.down_for.as_secs(),
            window.as_secs()
        );
        let spec = crate::jobs::JobSpec {
            kind: crate::jobs::JobKind::Repair,
            node: Some(back.address.clone()),
            keyspace: keyspace.clone(),
        };
        match crate::jobs::submit(client, root, spec, who, &reason).await {
            Ok(id) => {
                tracing::warn!(job = %id, node = %back.address, %keyspace, %reason, "repair requested")
            }
            Err(e) => {
                tracing::error!(node = %back.address, %keyspace, error = %e, "cannot request the repair")
            }
        }
    }
}

/// Label `node`: 1 while a query pinned to it answers.
const NODE_UP: &str = "herd_cassandra_node_up";
const NODE_PROBE: &str = "herd_cassandra_node_probe_seconds";
const NODES_UP: &str = "herd_cassandra_nodes_up";

pub fn describe_metrics() {
    use metrics::{describe_gauge, Unit};
    describe_gauge!(NODE_UP, Unit::Count, "1 while a query pinned to the Cassandra node (label node) answers, as the leading coordinator probes it");
    describe_gauge!(
        NODE_PROBE,
        Unit::Seconds,
        "Time the last probe of the Cassandra node (label node) took"
    );
    describe_gauge!(
        NODES_UP,
        Unit::Count,
        "Cassandra nodes that answer the leading coordinator's probe"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(address: &str, up: bool) -> NodeProbe {
        NodeProbe {
            address: address.into(),
            datacenter: Some("dc1".into()),
            connected: up,
            probe: if up { Ok(3) } else { Err("connection refused".into()) },
        }
    }

    #[test]
    fn a_node_back_after_the_hint_window_is_repaired_once() {
        let mut t = Tracker::new(Duration::from_secs(30), None);
        let all_up = [probe("127.0.0.1", true), probe("127.0.0.2", true), probe("127.0.0.3", true)];
        let two_down =
            [probe("127.0.0.1", true), probe("127.0.0.2", false), probe("127.0.0.3", true)];
        assert!(t.update("c", &all_up, &[], 0).1.is_empty());
        let hints = [PendingHints {
            held_by: "127.0.0.1".into(),
            target: "127.0.0.2".into(),
            status: "DOWN".into(),
            files: 2,
        }];
        let (view, back) = t.update("c", &two_down, &hints, 1_000);
        assert!(back.is_empty());
        let n2 = &view.nodes[1];
        assert!(!n2.up && n2.down_since_ms == Some(1_000) && n2.hint_files == 2);
        assert_eq!(n2.down_according_to, ["127.0.0.1"]);
        assert_eq!(view.waiting_for, None, "2 of 3 is a quorum");
        // Still down later: the clock is not restarted.
        assert_eq!(t.update("c", &two_down, &[], 20_000).0.nodes[1].down_since_ms, Some(1_000));
        // Back after 40 s > 30 s: one repair, then none.
        let (view, back) = t.update("c", &all_up, &[], 41_000);
        assert_eq!(
            back,
            [CameBack { address: "127.0.0.2".into(), down_for: Duration::from_secs(40) }]
        );
        assert!(view.nodes[1].up && view.nodes[1].down_since_ms.is_none());
        assert!(t.update("c", &all_up, &[], 42_000).1.is_empty());
    }

    #[test]
    fn a_short_outage_is_left_to_hints_and_a_new_leader_keeps_the_clock() {
        let mut t = Tracker::new(Duration::from_secs(30), None);
        let down = [probe("127.0.0.1", true), probe("127.0.0.2", false)];
        let up = [probe("127.0.0.1", true), probe("127.0.0.2", true)];
        t.update("c1", &down, &[], 0);
        assert!(t.update("c1", &up, &[], 10_000).1.is_empty(), "hints cover 10 s");
        // Down again; the leader changes while it is down.
        let (view, _) = t.update("c1", &down, &[], 20_000);
        let mut next = Tracker::new(Duration::from_secs(30), Some(&view));
        let (_, back) = next.update("c2", &up, &[], 60_000);
        assert_eq!(back.len(), 1, "down since 20 s by the first leader's view");
        assert_eq!(back[0].down_for, Duration::from_secs(40));
    }

    #[test]
    fn a_lost_quorum_is_said() {
        let mut t = Tracker::new(Duration::from_secs(30), None);
        let (view, _) =
            t.update("c", &[probe("a", true), probe("b", false), probe("c", false)], &[], 0);
        assert!(view.waiting_for.unwrap().contains("1 of 3"));
    }

    #[test]
    fn cassandra_durations() {
        assert_eq!(parse_cassandra_duration("3h"), Some(Duration::from_secs(10_800)));
        assert_eq!(parse_cassandra_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_cassandra_duration("10800000ms"), Some(Duration::from_secs(10_800)));
        assert_eq!(parse_cassandra_duration("10800000"), Some(Duration::from_secs(10_800)));
        assert_eq!(parse_cassandra_duration("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_cassandra_duration("3 fortnights"), None);
        assert_eq!(parse_cassandra_duration(""), None);
    }
}
