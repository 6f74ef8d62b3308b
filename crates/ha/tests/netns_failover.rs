//! Failover of a real pair across network namespaces the test creates: a client namespace
//! with a bridge and two balancer hosts. The VIP moves to the passive when the active's
//! process is killed, the client's ARP entry follows (gratuitous ARP) and a TCP connect to
//! the VIP reaches the new active. Run with the small `pair_node` example program; the same
//! with the real `mailfleet balancer` is `crates/mailfleet/tests/balancer_pair_netns.rs`.
//! Skipped (with a message) when not root; as root (CI) a failure to make the namespaces
//! fails the test.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use mailfleet_ha::testing::{HOST_DEV, Lan, LanHost, NsProcess, skip_without_namespaces};
use mailfleet_test_support::example_binary;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x100);
const SERVE_PORT: u16 = 8025;
const PAIR_PORT: u16 = 7400;
const SECOND: Duration = Duration::from_secs(1);
/// Generous: only a broken pair takes this long; a busy machine does not.
const LONG: Duration = Duration::from_secs(30);

fn start_node(bin: &Path, host: &LanHost, peer: &LanHost, name: &str, role: &str) -> NsProcess {
    start_node_with(bin, host, peer, name, role, &[])
}

/// As [`start_node`], with more arguments (more `--vip`, `--serve`).
fn start_node_with(
    bin: &Path,
    host: &LanHost,
    peer: &LanHost,
    name: &str,
    role: &str,
    more: &[&str],
) -> NsProcess {
    let mut args: Vec<String> = [
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
    args.extend(more.iter().map(|s| s.to_string()));
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
    if skip_without_namespaces("vip_moves_to_the_passive_when_the_active_is_killed") {
        return;
    }
    let bin = example_binary("pair_node");
    let lan = Lan::new(2).unwrap();
    let (ha, hb) = (&lan.hosts[0], &lan.hosts[1]);
    let mac_a = ha.ns.mac(HOST_DEV).unwrap();
    let mac_b = hb.ns.mac(HOST_DEV).unwrap();
    assert_ne!(mac_a, mac_b);

    // B first (passive), then A (active): A decides at start after B's hello reply.
    let b = start_node(&bin, hb, ha, "b", "passive");
    expect_line(&b, 0, "role passive", LONG);
    let mut a = start_node(&bin, ha, hb, "a", "active");
    expect_line(&a, 0, "role active", LONG);
    expect_line(&b, 0, "applied a-state+a", LONG);
    poll("the VIP on A", LONG, || {
        ha.ns.has_address(HOST_DEV, VIP).unwrap()
    });
    assert!(
        !hb.ns.has_address(HOST_DEV, VIP).unwrap(),
        "B holds the VIP too"
    );
    // The client reaches A through the VIP and learns A's MAC for it.
    poll("a connection to A via the VIP", LONG, || {
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
    expect_line(&b, b_lines, "role active", LONG);
    let takeover = killed.elapsed();
    poll("the VIP on B", LONG, || {
        hb.ns.has_address(HOST_DEV, VIP).unwrap()
    });
    // Gratuitous ARP: the client's entry for the VIP now names B, without the client
    // asking (A still answers for the address, so only B's announcement can do this).
    let arp = poll("the client's ARP entry to follow B", LONG, || {
        lan.client.neighbour_mac(VIP).unwrap().as_deref() == Some(mac_b.as_str())
    });
    let reach = poll("a connection to B via the VIP", LONG, || {
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
    expect_line(&a, 0, "role passive", LONG);
    expect_line(&a, 0, "applied a-state+a+b", LONG);
    poll("the stale VIP gone from A", LONG, || {
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
    expect_line(&a, a_lines, "role active", LONG);
    let handover = stopped.elapsed();
    expect_line(&b, 0, "stopped", LONG);
    assert!(b.wait_exit(LONG), "B did not exit");
    assert!(
        !hb.ns.has_address(HOST_DEV, VIP).unwrap(),
        "B kept the VIP after shutdown"
    );
    poll("the VIP on A", LONG, || {
        ha.ns.has_address(HOST_DEV, VIP).unwrap()
    });
    poll("a connection to A via the VIP", LONG, || {
        whoami(&lan).ok().as_deref() == Some("a")
    });
    println!("graceful handover to A took {handover:?}");
    // By the leave announcement, not by three silent intervals (600 ms).
    assert!(
        a.stderr().contains("peer announced it is leaving"),
        "A's log:\n{}",
        a.stderr()
    );
    assert!(
        handover < Duration::from_millis(600),
        "graceful handover took {handover:?}"
    );
}

#[test]
fn partition_heals_to_the_newer_active_which_announces_the_vip_again() {
    if skip_without_namespaces("partition_heals_to_the_newer_active_which_announces_the_vip_again")
    {
        return;
    }
    let bin = example_binary("pair_node");
    let lan = Lan::new(2).unwrap();
    let (ha, hb) = (&lan.hosts[0], &lan.hosts[1]);
    let mac_b = hb.ns.mac(HOST_DEV).unwrap();
    let b = start_node(&bin, hb, ha, "b", "passive");
    expect_line(&b, 0, "role passive", LONG);
    let a = start_node(&bin, ha, hb, "a", "active");
    expect_line(&a, 0, "role active", LONG);
    poll("a connection to A via the VIP", LONG, || {
        whoami(&lan).ok().as_deref() == Some("a")
    });

    // Cut B off the LAN: it hears nothing, takes over (epoch 2) and announces into the void.
    lan.client.ip(&["link", "set", "vh1", "down"]).unwrap();
    expect_line(&b, 0, "role active", LONG);
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
    expect_line(&a, a_lines, "role passive", LONG);
    poll("the VIP gone from A", LONG, || {
        !ha.ns.has_address(HOST_DEV, VIP).unwrap()
    });
    poll("the client's ARP entry to follow B", LONG, || {
        lan.client.neighbour_mac(VIP).unwrap().as_deref() == Some(mac_b.as_str())
    });
    poll("a connection to B via the VIP", LONG, || {
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

#[test]
fn an_ipv6_vip_moves_with_the_ipv4_one_and_is_announced() {
    if skip_without_namespaces("an_ipv6_vip_moves_with_the_ipv4_one_and_is_announced") {
        return;
    }
    let bin = example_binary("pair_node");
    let lan = Lan::new(2).unwrap();
    let (ha, hb) = (&lan.hosts[0], &lan.hosts[1]);
    let mac_a = ha.ns.mac(HOST_DEV).unwrap();
    let mac_b = hb.ns.mac(HOST_DEV).unwrap();
    // Two VIPs, one of each family; [::] also serves IPv4 (v4-mapped).
    let more = [
        "--vip",
        &format!("{VIP6}/64"),
        "--serve",
        &format!("[::]:{}", SERVE_PORT + 1),
    ];
    let b = start_node_with(&bin, hb, ha, "b", "passive", &more);
    expect_line(&b, 0, "role passive", LONG);
    let mut a = start_node_with(&bin, ha, hb, "a", "active", &more);
    expect_line(&a, 0, "role active", LONG);
    poll("both VIPs on A", LONG, || {
        ha.ns.has_address(HOST_DEV, VIP).unwrap() && ha.ns.has_address(HOST_DEV, VIP6).unwrap()
    });
    assert!(
        !hb.ns.has_address(HOST_DEV, VIP6).unwrap(),
        "B holds the IPv6 VIP too"
    );
    let whoami6 = |lan: &Lan| {
        let addr = SocketAddr::from((VIP6, SERVE_PORT + 1));
        lan.client
            .tcp_request(addr, b"", Duration::from_millis(500))
            .map(|s| s.trim().to_string())
    };
    poll("a connection to A via the IPv6 VIP", LONG, || {
        whoami6(&lan).ok().as_deref() == Some("a")
    });
    assert_eq!(
        lan.client.neighbour_mac(VIP6).unwrap().as_deref(),
        Some(mac_a.as_str())
    );

    // A crashes, keeping both addresses: only B's announcements can move the client's entries.
    let b_lines = b.lines().len();
    a.kill();
    expect_line(&b, b_lines, "role active", LONG);
    poll("both VIPs on B", LONG, || {
        hb.ns.has_address(HOST_DEV, VIP).unwrap() && hb.ns.has_address(HOST_DEV, VIP6).unwrap()
    });
    // The unsolicited neighbour advertisement (override flag) replaces A's link-layer address.
    let na = poll(
        "the client's IPv6 neighbour entry to follow B",
        LONG,
        || lan.client.neighbour_mac(VIP6).unwrap().as_deref() == Some(mac_b.as_str()),
    );
    poll("a connection to B via the IPv6 VIP", LONG, || {
        whoami6(&lan).ok().as_deref() == Some("b")
    });
    poll("a connection to B via the IPv4 VIP", LONG, || {
        whoami(&lan).ok().as_deref() == Some("b")
    });
    println!("IPv6 neighbour entry followed B {na:?} after B held the address");

    // A graceful stop releases both.
    let mut b = b;
    b.signal(libc::SIGTERM);
    assert!(b.wait_exit(LONG), "B did not exit");
    assert!(
        !hb.ns.has_address(HOST_DEV, VIP).unwrap(),
        "B kept the IPv4 VIP"
    );
    assert!(
        !hb.ns.has_address(HOST_DEV, VIP6).unwrap(),
        "B kept the IPv6 VIP"
    );
}
