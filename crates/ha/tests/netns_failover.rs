//! Failover of a real pair across network namespaces the test creates: a client namespace
//! with a bridge and two balancer hosts. The VIP moves to the passive when the active's
//! process is killed, the client's ARP entry follows (gratuitous ARP) and a TCP connect to
//! the VIP reaches the new active. Skips (with a message) when not root or without
//! `ip netns`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mailfleet_ha::testing::{HOST_DEV, Lan, LanHost, NsProcess, unavailable};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 100);
const SERVE_PORT: u16 = 8025;
const PAIR_PORT: u16 = 7400;
const SECOND: Duration = Duration::from_secs(1);

/// The example binary, next to this test's binary. `cargo test --test netns_failover`
/// alone does not rebuild examples, so the test asks cargo to bring it up to date first.
/// It builds with the workspace's features (`--workspace`), as `cargo test --workspace`
/// did, so after that run it is a no-op; `-p mailfleet-ha` would resolve other features
/// and rebuild dozens of dependencies (three minutes of the CI run).
fn pair_node() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--quiet", "--workspace", "--example", "pair_node"]);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cargo.arg("--release");
        }
        Some(other) => {
            cargo.args(["--profile", other]);
        }
    }
    match cargo.output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => println!(
            "warning: building pair_node failed, using the existing binary: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => println!("warning: cannot run cargo ({e}), using the existing binary"),
    }
    let bin = profile_dir.join("examples").join("pair_node");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p mailfleet-ha --example pair_node`",
        bin.display()
    );
    bin
}

fn start_node(bin: &Path, host: &LanHost, peer: &LanHost, name: &str, role: &str) -> NsProcess {
    let args: Vec<String> = [
        "--name",
        name,
        "--role",
        role,
        "--listen",
        &format!("{}:{PAIR_PORT}", host.addr),
        "--peer",
        &format!("{}:{PAIR_PORT}", peer.addr),
        "--interval",
        "200ms",
        "--vip",
        &format!("{VIP}/24"),
        "--interface",
        HOST_DEV,
        "--serve",
        &format!("0.0.0.0:{SERVE_PORT}"),
        "--key",
        "netns failover test key",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    host.ns.spawn(bin, &args).unwrap()
}

fn expect_line(p: &NsProcess, from: usize, what: &str, within: Duration) -> usize {
    match p.wait_for_line(from, within, |l| l == what) {
        Some((i, _)) => i,
        None => panic!(
            "no line {what:?} within {within:?}; stdout {:?}\nstderr:\n{}",
            p.lines(),
            p.stderr()
        ),
    }
}

fn poll(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < within,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    t0.elapsed()
}

fn whoami(lan: &Lan) -> std::io::Result<String> {
    let addr = SocketAddr::from((VIP, SERVE_PORT));
    lan.client
        .tcp_request(addr, b"", Duration::from_millis(500))
        .map(|s| s.trim().to_string())
}

#[test]
fn vip_moves_to_the_passive_when_the_active_is_killed() {
    if let Some(why) = unavailable() {
        println!("SKIP vip_moves_to_the_passive_when_the_active_is_killed: {why}");
        return;
    }
    let bin = pair_node();
    let lan = Lan::new(2).unwrap();
    let (ha, hb) = (&lan.hosts[0], &lan.hosts[1]);
    let mac_a = ha.ns.mac(HOST_DEV).unwrap();
    let mac_b = hb.ns.mac(HOST_DEV).unwrap();
    assert_ne!(mac_a, mac_b);

    // B first (passive), then A (active): A decides at start after B's hello reply.
    let b = start_node(&bin, hb, ha, "b", "passive");
    expect_line(&b, 0, "role passive", 5 * SECOND);
    let mut a = start_node(&bin, ha, hb, "a", "active");
    expect_line(&a, 0, "role active", 5 * SECOND);
    expect_line(&b, 0, "applied a-state+a", 5 * SECOND);
    poll("the VIP on A", 3 * SECOND, || {
        ha.ns.has_address(HOST_DEV, VIP).unwrap()
    });
    assert!(
        !hb.ns.has_address(HOST_DEV, VIP).unwrap(),
        "B holds the VIP too"
    );
    // The client reaches A through the VIP and learns A's MAC for it.
    poll("a connection to A via the VIP", 3 * SECOND, || {
        whoami(&lan).ok().as_deref() == Some("a")
    });
    assert_eq!(
        lan.client.neighbour_mac(VIP).unwrap().as_deref(),
        Some(mac_a.as_str())
    );

    // A crashes: no cleanup, its kernel keeps the address, only its heartbeats stop.
    let b_lines = b.lines().len();
    a.kill();
    let killed = Instant::now();
    expect_line(&b, b_lines, "role active", 3 * SECOND);
    let takeover = killed.elapsed();
    poll("the VIP on B", 2 * SECOND, || {
        hb.ns.has_address(HOST_DEV, VIP).unwrap()
    });
    // Gratuitous ARP: the client's entry for the VIP now names B, without the client
    // asking (A still answers for the address, so only B's announcement can do this).
    let arp = poll("the client's ARP entry to follow B", 2 * SECOND, || {
        lan.client.neighbour_mac(VIP).unwrap().as_deref() == Some(mac_b.as_str())
    });
    let reach = poll("a connection to B via the VIP", 2 * SECOND, || {
        whoami(&lan).ok().as_deref() == Some("b")
    });
    println!(
        "takeover {takeover:?} after the kill (3 x 200 ms interval); ARP followed {arp:?} later; VIP answered by B {reach:?} after that"
    );
    assert!(
        takeover >= Duration::from_millis(350),
        "takeover too early: {takeover:?}"
    );

    // A comes back with its configured role active: it hears B active, stays passive,
    // drops the address its crash left behind and receives B's state.
    let a = start_node(&bin, ha, hb, "a", "active");
    expect_line(&a, 0, "role passive", 5 * SECOND);
    expect_line(&a, 0, "applied a-state+a+b", 5 * SECOND);
    poll("the stale VIP gone from A", 2 * SECOND, || {
        !ha.ns.has_address(HOST_DEV, VIP).unwrap()
    });
    std::thread::sleep(SECOND);
    assert!(
        !a.lines().iter().any(|l| l == "role active"),
        "A took the role back: {:?}",
        a.lines()
    );
    assert!(hb.ns.has_address(HOST_DEV, VIP).unwrap(), "B lost the VIP");
    assert_eq!(whoami(&lan).unwrap(), "b");

    // B shuts down gracefully: it releases the VIP and A takes over without waiting for
    // three silent intervals.
    let a_lines = a.lines().len();
    let mut b = b;
    b.signal(libc::SIGTERM);
    let stopped = Instant::now();
    expect_line(&a, a_lines, "role active", 2 * SECOND);
    let handover = stopped.elapsed();
    expect_line(&b, 0, "stopped", 2 * SECOND);
    assert!(b.wait_exit(2 * SECOND), "B did not exit");
    assert!(
        !hb.ns.has_address(HOST_DEV, VIP).unwrap(),
        "B kept the VIP after shutdown"
    );
    poll("the VIP on A", 2 * SECOND, || {
        ha.ns.has_address(HOST_DEV, VIP).unwrap()
    });
    poll("a connection to A via the VIP", 2 * SECOND, || {
        whoami(&lan).ok().as_deref() == Some("a")
    });
    println!("graceful handover to A took {handover:?}");
    // Three silent intervals would be 600 ms; the leave announcement is immediate.
    assert!(
        handover < Duration::from_millis(500),
        "graceful handover took {handover:?}"
    );
}

#[test]
fn partition_heals_to_the_newer_active_which_announces_the_vip_again() {
    if let Some(why) = unavailable() {
        println!("SKIP partition_heals_to_the_newer_active_which_announces_the_vip_again: {why}");
        return;
    }
    let bin = pair_node();
    let lan = Lan::new(2).unwrap();
    let (ha, hb) = (&lan.hosts[0], &lan.hosts[1]);
    let mac_b = hb.ns.mac(HOST_DEV).unwrap();
    let b = start_node(&bin, hb, ha, "b", "passive");
    expect_line(&b, 0, "role passive", 5 * SECOND);
    let a = start_node(&bin, ha, hb, "a", "active");
    expect_line(&a, 0, "role active", 5 * SECOND);
    poll("a connection to A via the VIP", 3 * SECOND, || {
        whoami(&lan).ok().as_deref() == Some("a")
    });

    // Cut B off the LAN: it hears nothing, takes over (epoch 2) and announces into the void.
    lan.client.ip(&["link", "set", "vh1", "down"]).unwrap();
    expect_line(&b, 0, "role active", 3 * SECOND);
    assert_eq!(
        whoami(&lan).unwrap(),
        "a",
        "A still serves the client during the partition"
    );
    // Let B's announcement rounds (3 x 200 ms) run out while it is cut off.
    std::thread::sleep(SECOND);

    // Heal: both active; B became active later (higher epoch) and keeps the role, A yields
    // and B announces the VIP again, so the client's entry moves from A to B.
    let a_lines = a.lines().len();
    lan.client.ip(&["link", "set", "vh1", "up"]).unwrap();
    expect_line(&a, a_lines, "role passive", 3 * SECOND);
    poll("the VIP gone from A", 2 * SECOND, || {
        !ha.ns.has_address(HOST_DEV, VIP).unwrap()
    });
    poll("the client's ARP entry to follow B", 2 * SECOND, || {
        lan.client.neighbour_mac(VIP).unwrap().as_deref() == Some(mac_b.as_str())
    });
    poll("a connection to B via the VIP", 2 * SECOND, || {
        whoami(&lan).ok().as_deref() == Some("b")
    });
    std::thread::sleep(SECOND);
    assert_eq!(
        a.lines().iter().filter(|l| *l == "role active").count(),
        1,
        "A flapped: {:?}",
        a.lines()
    );
    assert_eq!(
        b.lines().iter().filter(|l| *l == "role active").count(),
        1,
        "B flapped: {:?}",
        b.lines()
    );
    assert!(hb.ns.has_address(HOST_DEV, VIP).unwrap());
}
