//! `servers = "cluster"`: services whose real servers are the cluster's nodes, and this
//! balancer's reports to the store.
//!
//! One task on the control thread (never on a relay path) reads the nodes' heartbeats every
//! second: a node that is alive (a beat in the last 3 s) and not drained serves a service
//! whose `cluster_service` names one of its heartbeat's `services`, at that service's
//! `address`; a draining node stays listed but takes no new clients. A change of membership
//! is put in force as a reload is (`Inner::set_cluster_members`), so health checks, slow start
//! and open connections behave as they do for servers in the file. Every few seconds the same
//! task writes this balancer's view of each of its servers to the store
//! (`Store::report_balancer`), for `mailfleet status`. The store is opened at start (a balancer
//! that cannot open it does not start), on a thread of its own that only exchanges messages
//! with the control thread; when it cannot be read later, the membership in force stays.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mailfleet_cluster::membership::is_alive;
use mailfleet_cluster::{NodeReport, NodeState};
use mailfleet_store::{BalancerServerView, NodeInfo, now};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::balancer::{ClusterMember, Inner};
use crate::config::ClusterConfig;
use crate::error::BalancerError;
use crate::server::AdminState;

/// How often the membership is read.
const READ_EVERY: Duration = Duration::from_secs(1);
/// How often this balancer's view is written to the store.
const REPORT_EVERY: Duration = Duration::from_secs(3);

/// The `[cluster]` store, open on a thread of its own (with a runtime of its own: the store's
/// futures are not `Send`, so no task of the balancer's awaits them), and the two ways to it:
/// the membership it reads every second, and the views it writes.
pub(crate) struct StoreLink {
    nodes: mpsc::Receiver<Vec<NodeInfo>>,
    reports: mpsc::Sender<Vec<BalancerServerView>>,
}

/// Opens the `[cluster]` store on its own thread; a balancer whose store cannot be opened
/// does not start. The thread ends when the link is dropped.
pub(crate) async fn open(cfg: &ClusterConfig) -> Result<StoreLink, BalancerError> {
    let (opened_tx, opened_rx) = oneshot::channel::<Result<(), String>>();
    let (nodes_tx, nodes) = mpsc::channel(1);
    let (reports, mut reports_rx) = mpsc::channel::<Vec<BalancerServerView>>(1);
    let (url, name) = (cfg.store.clone(), cfg.name.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("cluster-store".into())
        .spawn(move || {
            runtime.block_on(async move {
                let store = match mailfleet_store::open(&url).await {
                    Ok(s) => {
                        let _ = opened_tx.send(Ok(()));
                        s
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let mut read = tokio::time::interval(READ_EVERY);
                read.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let (mut read_failing, mut report_failing) = (false, false);
                loop {
                    tokio::select! {
                        _ = read.tick() => match store.list_nodes().await {
                            Ok(n) => {
                                if read_failing {
                                    tracing::info!("cluster membership readable again");
                                    read_failing = false;
                                }
                                if nodes_tx.send(n).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                if !read_failing {
                                    tracing::warn!(error = %e, "cannot read the cluster membership; the servers in force stay");
                                    read_failing = true;
                                }
                            }
                        },
                        view = reports_rx.recv() => {
                            let Some(view) = view else { return };
                            match store.report_balancer(&name, &view).await {
                                Ok(()) => report_failing = false,
                                Err(e) => {
                                    if !report_failing {
                                        tracing::warn!(error = %e, "cannot report this balancer's view to the store");
                                        report_failing = true;
                                    }
                                }
                            }
                        }
                    }
                }
            })
        })?;
    match opened_rx.await {
        Ok(Ok(())) => Ok(StoreLink { nodes, reports }),
        Ok(Err(problem)) => Err(BalancerError::Config {
            file: "[cluster]".into(),
            key: "cluster.store".into(),
            problem: format!("cannot open the store: {problem}"),
        }),
        Err(_) => Err(BalancerError::Config {
            file: "[cluster]".into(),
            key: "cluster.store".into(),
            problem: "the store's thread ended before opening it".into(),
        }),
    }
}

/// Puts the membership the store thread reads in force, and hands it this balancer's view
/// every few seconds, until `shutdown`.
pub(crate) fn spawn(
    inner: &Arc<Inner>,
    cfg: ClusterConfig,
    mut link: StoreLink,
    shutdown: CancellationToken,
) {
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        let mut report = tokio::time::interval(REPORT_EVERY);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                nodes = link.nodes.recv() => {
                    let (Some(nodes), Some(inner)) = (nodes, weak.upgrade()) else { return };
                    let members = members_of(&inner.cluster_services(), &nodes, now());
                    inner.set_cluster_members(members);
                }
                _ = report.tick() => {
                    let Some(inner) = weak.upgrade() else { return };
                    // A report still being written: this one is skipped.
                    let _ = link.reports.try_send(view_of(&inner, &cfg.name));
                }
            }
        }
    });
}

/// Each cluster service's members among `nodes` at `now`: alive, not drained, with the node
/// service the balancer service fronts at an address that can be connected to.
pub(crate) fn members_of(
    services: &[(String, String)],
    nodes: &[NodeInfo],
    now: mailfleet_store::Timestamp,
) -> HashMap<String, Vec<ClusterMember>> {
    let mut out: HashMap<String, Vec<ClusterMember>> = HashMap::new();
    for (service, node_service) in services {
        let members = out.entry(service.clone()).or_default();
        for node in nodes {
            let state = NodeState::of(&node.info);
            if !is_alive(node.last_seen, now) || state == NodeState::Drained {
                continue;
            }
            let report = NodeReport::from_info(&node.info);
            let addr = report
                .services
                .iter()
                .filter(|s| &s.service == node_service)
                .filter_map(|s| s.address.parse::<SocketAddr>().ok())
                .find(|a| !a.ip().is_unspecified() && a.port() != 0);
            if let Some(addr) = addr {
                members.push(ClusterMember {
                    name: node.server_id.clone(),
                    addr,
                    draining: state == NodeState::Draining,
                });
            }
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
    }
    out
}

/// This balancer's view of every server of every service: `maint`, `drain` (set through the
/// runtime API, or a draining cluster node), else `up` or `down`; with its open connections.
fn view_of(inner: &Arc<Inner>, name: &str) -> Vec<BalancerServerView> {
    let (_, services) = inner.view();
    let updated = now();
    let mut out = Vec::new();
    for (svc, _, servers, _) in services {
        for s in servers {
            let state = match s.admin() {
                AdminState::Maint => "maint",
                AdminState::Drain => "drain",
                AdminState::Ready if s.cluster_draining() => "drain",
                AdminState::Ready if s.is_up() => "up",
                AdminState::Ready => "down",
            };
            let address = match (s.ip(), s.port) {
                (Some(ip), Some(port)) => SocketAddr::new(ip, port).to_string(),
                (Some(ip), None) => ip.to_string(),
                (None, Some(port)) => format!("{}:{port}", s.host),
                (None, None) => s.host.to_string(),
            };
            out.push(BalancerServerView {
                balancer: name.to_string(),
                service: svc.name.clone(),
                server: s.name.clone(),
                address,
                state: state.into(),
                active: s.active.load(std::sync::atomic::Ordering::Relaxed) as i64,
                updated,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, last_seen: i64, state: &str, imap: &str) -> NodeInfo {
        NodeInfo {
            server_id: id.into(),
            hostname: format!("{id}.test"),
            info: serde_json::json!({
                "state": state,
                "services": [
                    {"service": "smtp", "address": "127.0.0.9:25", "connections": 0},
                    {"service": "imap", "address": imap, "connections": 2},
                ],
            }),
            started: 0,
            last_seen,
        }
    }

    #[test]
    fn members_are_the_live_undrained_nodes_with_the_service() {
        let nodes = [
            node("n1", 100, "running", "127.0.0.2:143"),
            node("n2", 99, "draining", "127.0.0.3:143"),
            // Dead: no beat for 4 s.
            node("n3", 96, "running", "127.0.0.4:143"),
            node("n4", 100, "drained", "127.0.0.5:143"),
            // Listening on every address: nowhere to connect to.
            node("n5", 100, "running", "0.0.0.0:143"),
            node("n6", 100, "running", "not an address"),
        ];
        let services = [
            ("mail-imap".to_string(), "imap".to_string()),
            ("pop".to_string(), "pop3".to_string()),
        ];
        let m = members_of(&services, &nodes, 100);
        assert_eq!(
            m["mail-imap"],
            vec![
                ClusterMember {
                    name: "n1".into(),
                    addr: "127.0.0.2:143".parse().unwrap(),
                    draining: false
                },
                ClusterMember {
                    name: "n2".into(),
                    addr: "127.0.0.3:143".parse().unwrap(),
                    draining: true
                },
            ]
        );
        assert!(m["pop"].is_empty());
    }
}
