//! `mailfleet status [--json]`: the cluster at a glance, from the store: every node alive or
//! dead (no heartbeat for three beats), the master and since when, each node's uptime, pid,
//! services with their open connections, the queue items it holds and the settings version it
//! has applied against the store's, whether it is draining, the queue's size and oldest item,
//! and each balancer's view of its servers where a balancer reports to the store.

use clap::Args;
use mailfleet_cluster::membership::{FORGET_DEAD_AFTER_SECS, MASTER_LEASE, is_alive};
use mailfleet_cluster::{NodeReport, NodeState, ServiceReport};
use mailfleet_store::{BalancerServerView, NodeInfo, Timestamp};
use serde::Serialize;

use super::output::{print_json_object, print_line, print_table};
use super::{StoreOpt, format_time, store_err};

#[derive(Args)]
pub struct StatusCmd {
    #[command(flatten)]
    store: StoreOpt,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// The whole view, as `--json` prints it.
#[derive(Serialize)]
struct ClusterStatus {
    /// When the view was taken (Unix seconds).
    now: Timestamp,
    /// The shared settings' version in the store.
    settings_version: i64,
    master: Option<MasterStatus>,
    queue: QueueStatus,
    nodes: Vec<NodeStatus>,
    /// Every balancer's latest report of its servers (`[cluster]` in its file), by balancer,
    /// service and server; `updated` says when it was written.
    balancers: Vec<BalancerServerView>,
}

#[derive(Serialize)]
struct MasterStatus {
    server_id: String,
    /// When it took the lease (0: before the store recorded it).
    since: Timestamp,
    token: i64,
    expires: Timestamp,
}

#[derive(Serialize)]
struct QueueStatus {
    items: i64,
    /// When the oldest item was queued.
    oldest: Option<Timestamp>,
}

#[derive(Serialize)]
struct NodeStatus {
    server_id: String,
    hostname: String,
    alive: bool,
    /// `running`, `draining` (`mailfleet node drain`: no new clients) or `drained` (left).
    state: &'static str,
    master: bool,
    started: Timestamp,
    last_seen: Timestamp,
    /// Seconds since the node started (while it is alive).
    uptime: Option<i64>,
    pid: u32,
    version: String,
    addresses: Vec<String>,
    services: Vec<ServiceReport>,
    queue_held: i64,
    load: Option<[f64; 3]>,
    /// The settings version the node has applied.
    settings_version: i64,
    /// Whether that is the store's current version.
    settings_current: bool,
    /// For a node with a `backup_store`: `primary` or `backup`, the store it uses now.
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<String>,
    /// How far the node's clock is behind the database server's, in milliseconds (PostgreSQL).
    #[serde(skip_serializing_if = "Option::is_none")]
    clock_skew_ms: Option<i64>,
}

fn node_status(
    node: &NodeInfo,
    now: Timestamp,
    master: Option<&str>,
    settings_version: i64,
) -> NodeStatus {
    let report = NodeReport::from_info(&node.info);
    let alive = is_alive(node.last_seen, now);
    NodeStatus {
        server_id: node.server_id.clone(),
        hostname: node.hostname.clone(),
        alive,
        state: NodeState::of(&node.info).as_str(),
        master: alive && master == Some(node.server_id.as_str()),
        started: node.started,
        last_seen: node.last_seen,
        uptime: alive.then(|| (now - node.started).max(0)),
        pid: report.pid,
        version: report.version,
        addresses: report.addresses,
        services: report.services,
        queue_held: report.queue_held,
        load: report.load,
        settings_version: report.settings_version,
        settings_current: report.settings_version == settings_version,
        store: report.store,
        clock_skew_ms: report.clock_skew_ms,
    }
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`.
fn format_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m, s) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

pub async fn run(cmd: StatusCmd) -> anyhow::Result<()> {
    let store = cmd.store.open().await?;
    let now = mailfleet_store::now();
    let nodes = store.list_nodes().await.map_err(store_err)?;
    let lease = store.get_lease(MASTER_LEASE).await.map_err(store_err)?;
    let settings_version = store.settings_version().await.map_err(store_err)?;
    let queue = store.queue_summary(now).await.map_err(store_err)?;
    let balancers = store.list_balancer_servers().await.map_err(store_err)?;
    let master = lease.filter(|l| l.expires >= now).map(|l| MasterStatus {
        server_id: l.holder,
        since: l.acquired,
        token: l.token,
        expires: l.expires,
    });
    let status = ClusterStatus {
        now,
        settings_version,
        queue: QueueStatus {
            items: queue.items,
            oldest: queue.oldest,
        },
        nodes: nodes
            .iter()
            .filter(|n| now - n.last_seen <= FORGET_DEAD_AFTER_SECS)
            .map(|n| {
                node_status(
                    n,
                    now,
                    master.as_ref().map(|m| m.server_id.as_str()),
                    settings_version,
                )
            })
            .collect(),
        master,
        balancers: balancers
            .into_iter()
            .filter(|b| now - b.updated <= FORGET_DEAD_AFTER_SECS)
            .collect(),
    };
    if cmd.json {
        return print_json_object(&status);
    }
    print_human(&status)
}

fn print_human(status: &ClusterStatus) -> anyhow::Result<()> {
    let now = status.now;
    let alive = status.nodes.iter().filter(|n| n.alive).count();
    let dead = status.nodes.len() - alive;
    let master = match &status.master {
        Some(m) if m.since > 0 => format!(
            "{} since {} ({})",
            m.server_id,
            format_time(m.since),
            format_duration(now - m.since)
        ),
        Some(m) => m.server_id.clone(),
        None => "none".into(),
    };
    let queue = match status.queue.oldest {
        Some(oldest) => format!(
            "{} queued, oldest {} ({} ago)",
            status.queue.items,
            format_time(oldest),
            format_duration(now - oldest)
        ),
        None => "empty".into(),
    };
    print_line(&format!(
        "nodes: {alive} alive, {dead} dead; master: {master}; queue: {queue}; settings version {}",
        status.settings_version
    ))?;
    let rows: Vec<Vec<String>> = status
        .nodes
        .iter()
        .map(|n| {
            let state = match (n.alive, n.state) {
                (true, "running") => "alive".to_string(),
                (true, state) => format!("alive, {state}"),
                (false, "drained") => {
                    format!("drained ({} ago)", format_duration(now - n.last_seen))
                }
                (false, _) => format!("dead ({} ago)", format_duration(now - n.last_seen)),
            };
            let state = if n.store.as_deref() == Some("backup") {
                format!("{state}, on backup_store")
            } else {
                state
            };
            let state = match n.clock_skew_ms {
                Some(ms) if ms.abs() > mailfleet_cluster::membership::MAX_CLOCK_SKEW_MS => {
                    format!("{state}, clock {:+.1} s off", -(ms as f64) / 1000.0)
                }
                _ => state,
            };
            let settings = if n.settings_current {
                n.settings_version.to_string()
            } else {
                format!("{} (behind)", n.settings_version)
            };
            let services = n
                .services
                .iter()
                .map(|s| format!("{} {}", s.service, s.connections))
                .collect::<Vec<_>>()
                .join(", ");
            vec![
                n.server_id.clone(),
                n.hostname.clone(),
                state,
                if n.master { "master" } else { "-" }.into(),
                n.uptime.map_or("-".into(), format_duration),
                n.pid.to_string(),
                n.addresses.join(" "),
                settings,
                n.queue_held.to_string(),
                n.load.map_or("-".into(), |l| format!("{:.2}", l[0])),
                services,
            ]
        })
        .collect();
    print_table(
        &[
            "SERVER",
            "HOSTNAME",
            "STATE",
            "ROLE",
            "UPTIME",
            "PID",
            "ADDRESSES",
            "SETTINGS",
            "QUEUE HELD",
            "LOAD",
            "CONNECTIONS",
        ],
        &rows,
    )?;
    if status.balancers.is_empty() {
        return Ok(());
    }
    print_line("")?;
    let rows: Vec<Vec<String>> = status
        .balancers
        .iter()
        .map(|b| {
            vec![
                b.balancer.clone(),
                b.service.clone(),
                b.server.clone(),
                b.address.clone(),
                b.state.clone(),
                b.active.to_string(),
                format!("{} ago", format_duration(now - b.updated)),
            ]
        })
        .collect();
    print_table(
        &[
            "BALANCER", "SERVICE", "SERVER", "ADDRESS", "STATE", "ACTIVE", "REPORTED",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(format_duration(12), "12s");
        assert_eq!(format_duration(250), "4m 10s");
        assert_eq!(format_duration(7500), "2h 5m");
        assert_eq!(format_duration(3 * 86400 + 4 * 3600 + 59), "3d 4h");
        assert_eq!(format_duration(-5), "0s");
    }

    #[test]
    fn a_dead_holder_is_not_shown_as_master() {
        let node = NodeInfo {
            server_id: "n1".into(),
            hostname: "mx1.test".into(),
            info: serde_json::json!({"pid": 7, "settings_version": 3,
                "services": [{"service": "imap", "address": "127.0.0.2:143", "connections": 2}]}),
            started: 100,
            last_seen: 200,
        };
        let live = node_status(&node, 203, Some("n1"), 3);
        assert!(live.alive && live.master && live.settings_current);
        assert_eq!(
            (live.uptime, live.pid, live.services[0].connections),
            (Some(103), 7, 2)
        );
        let dead = node_status(&node, 204, Some("n1"), 4);
        assert!(!dead.alive && !dead.master && !dead.settings_current);
        assert_eq!(dead.uptime, None);
    }

    #[test]
    fn a_draining_node_says_so() {
        let mut node = NodeInfo {
            server_id: "n2".into(),
            hostname: "mx2.test".into(),
            info: serde_json::json!({"pid": 8, "state": "draining"}),
            started: 100,
            last_seen: 200,
        };
        assert_eq!(node_status(&node, 201, None, 0).state, "draining");
        node.info = serde_json::json!({"pid": 8});
        assert_eq!(node_status(&node, 201, None, 0).state, "running");
    }
}
