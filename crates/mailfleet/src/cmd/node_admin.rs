//! `mailfleet node drain SERVER_ID`: asks a running node, through the store, to drain (take no
//! new clients, let its open sessions end until a deadline, give back its queue leases, exit),
//! then waits until it has left. The node's side is `node_drain`.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use mailfleet_cluster::NodeState;
use mailfleet_cluster::membership::is_alive;
use mailfleet_store::{DrainRequest, Store, now};

use super::{StoreOpt, format_time, store_err};

/// The longest `--deadline`.
const MAX_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long past its deadline the command waits for a node to leave before it gives up.
const LEAVE_GRACE: Duration = Duration::from_secs(60);

#[derive(Subcommand)]
pub enum NodeSub {
    /// Drain a running node and wait until it has left.
    ///
    /// The node takes no new clients (a balancer with `servers = "cluster"` sends it none), its
    /// open sessions may go on until the deadline, its queue leases go back to the other
    /// nodes, then it exits.
    Drain(DrainArgs),
}

#[derive(Args)]
pub struct DrainArgs {
    /// The node's server ID.
    server_id: String,
    /// How long its open sessions may go on before they are closed, e.g. 90s, 10m, 1h.
    #[arg(long, default_value = "10m", value_parser = parse_deadline)]
    deadline: Duration,
    /// Record the request and return without waiting for the node to leave.
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    store: StoreOpt,
}

fn parse_deadline(v: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(v.trim())
        .map_err(|e| format!("{v:?} is not a duration like 90s, 10m or 1h ({e})"))?;
    if d > MAX_DEADLINE {
        return Err(format!(
            "{v:?} is longer than {}",
            humantime::format_duration(MAX_DEADLINE)
        ));
    }
    Ok(d)
}

pub async fn run(cmd: NodeSub) -> anyhow::Result<()> {
    match cmd {
        NodeSub::Drain(args) => drain(args).await,
    }
}

/// The node's heartbeat row: its state and whether it is alive now.
async fn node_state(
    store: &dyn Store,
    server_id: &str,
) -> anyhow::Result<Option<(NodeState, bool)>> {
    let nodes = store.list_nodes().await.map_err(store_err)?;
    Ok(nodes
        .into_iter()
        .find(|n| n.server_id == server_id)
        .map(|n| (NodeState::of(&n.info), is_alive(n.last_seen, now()))))
}

async fn drain(args: DrainArgs) -> anyhow::Result<()> {
    let store = args.store.open().await?;
    let id = args.server_id.as_str();
    match node_state(store.as_ref(), id).await? {
        None => anyhow::bail!("no node {id:?} has ever sent a heartbeat to this store"),
        Some((_, false)) => anyhow::bail!("node {id} is not running (no heartbeat for over 3 s)"),
        Some((NodeState::Drained, _)) => anyhow::bail!("node {id} has drained already"),
        // The node keeps the deadline it was given first: a second request changes nothing.
        Some((NodeState::Draining, _)) => {
            let pending = store.drain_request(id).await.map_err(store_err)?;
            match pending {
                Some(r) => println!(
                    "node {id}: draining already, until {} UTC at the latest",
                    format_time(r.deadline)
                ),
                None => println!("node {id}: draining already"),
            }
        }
        Some(_) => {
            let requested = now();
            let deadline = requested + args.deadline.as_secs() as i64;
            store
                .request_drain(&DrainRequest {
                    server_id: id.to_string(),
                    requested,
                    deadline,
                })
                .await
                .map_err(store_err)
                .context("cannot record the drain request")?;
            println!(
                "node {id}: drain requested; its open sessions may go on until {} UTC ({})",
                format_time(deadline),
                humantime::format_duration(args.deadline)
            );
        }
    }
    if args.no_wait {
        return Ok(());
    }
    let started = Instant::now();
    let give_up = started + args.deadline + LEAVE_GRACE;
    let mut told_draining = false;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let state = node_state(store.as_ref(), id).await?;
        let pending = store.drain_request(id).await.map_err(store_err)?;
        match state {
            Some((NodeState::Drained, _)) if pending.is_none() => {
                println!(
                    "node {id}: drained and left after {}",
                    humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()))
                );
                return Ok(());
            }
            Some((NodeState::Draining, true)) if !told_draining => {
                println!("node {id}: draining, taking no new clients");
                told_draining = true;
            }
            Some((_, false)) | None => anyhow::bail!(
                "node {id} stopped sending heartbeats before it finished draining \
                 (killed, or it lost the store); its request is dropped when it starts again"
            ),
            _ => {}
        }
        if Instant::now() > give_up {
            anyhow::bail!(
                "node {id} has not left {} after its deadline",
                humantime::format_duration(LEAVE_GRACE)
            );
        }
    }
}
