//! The real `mailfleet balancer` as an active/passive pair on two hosts of a LAN made of
//! network namespaces (mailfleet-ha's harness): the active holds the virtual IP and serves
//! through it; killed with SIGKILL, its peer takes the VIP over and the client's ARP entry
//! follows; restarted, it stays passive and drops the address its crash left behind; a
//! graceful stop of the new active hands the VIP back at once. A server put in maintenance on
//! the active stays in maintenance on the peer after a failover, and a pair with an IPv4 and an
//! IPv6 VIP moves both.
//!
//! Needs root and `ip` (iproute2). Skipped otherwise, except as root: CI runs as root, and
//! there a failure to make the namespaces fails the test instead of hiding it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use mailfleet_ha::testing::{HOST_DEV, Lan, LanHost, NsProcess, skip_without_namespaces};

const BIN: &str = env!("CARGO_BIN_EXE_mailfleet");
const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 100);
const VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x100);
const SERVE_PORT: u16 = 8025;
const BACKEND_PORT: u16 = 9000;
const PAIR_PORT: u16 = 7400;
/// Generous: only a broken pair takes this long; a busy machine does not.
const LONG: Duration = Duration::from_secs(30);

/// A backend in a host's namespace: answers every connection with the host's name.
fn backend(host: &LanHost, name: &str) -> NsProcess {
    backend_on(host, name, BACKEND_PORT)
}

/// A backend answering `name` on `port` of the host's loopback.
fn backend_on(host: &LanHost, name: &str, port: u16) -> NsProcess {
    let script = format!(
        "import socket, sys\n\
         s = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', {port}))\n\
         s.listen(64)\n\
         print('ready', flush=True)\n\
         while True:\n\
         \x20   c, _ = s.accept()\n\
         \x20   c.sendall(b'{name}\\n')\n\
         \x20   c.close()\n"
    );
    let p = host
        .ns
        .spawn("python3", &["-c".to_string(), script])
        .unwrap();
    if p.wait_for_line(0, LONG, |l| l == "ready").is_none() {
        panic!("backend {name} did not start: {}", p.stderr());
    }
    p
}

/// The balancer's file for `host`, paired with `peer`.
fn config(dir: &Path, host: &LanHost, peer: &LanHost, name: &str, role: &str) -> String {
    config_with(dir, host, peer, name, role, "", "")
}

/// As [`config`], with `top` before the first table and `more` after the service's server.
fn config_with(
    dir: &Path,
    host: &LanHost,
    peer: &LanHost,
    name: &str,
    role: &str,
    top: &str,
    more: &str,
) -> String {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "{top}[pair]\nrole = \"{role}\"\nlisten = \"{}:{PAIR_PORT}\"\npeer = \"{}:{PAIR_PORT}\"\n\
         interval = \"200ms\"\nvip = \"{VIP}/24\"\ninterface = \"{HOST_DEV}\"\n\
         key = \"netns balancer pair test key\"\n\n\
         [[service]]\nname = \"who\"\nlisten = [\"0.0.0.0:{SERVE_PORT}\"]\n\n\
         [[service.server]]\nname = \"local\"\naddress = \"127.0.0.1:{BACKEND_PORT}\"\n{more}",
        host.addr, peer.addr
    );
    std::fs::write(&path, text).unwrap();
    let check = std::process::Command::new(BIN)
        .args(["balancer", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    path.display().to_string()
}

fn balancer(host: &LanHost, file: &str) -> NsProcess {
    host.ns
        .spawn(
            BIN,
            &[
                "balancer".to_string(),
                "--config".to_string(),
                file.to_string(),
            ],
        )
        .unwrap()
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

/// How often `needle` appears in a process's log (stderr) so far.
fn logged(p: &NsProcess, needle: &str) -> usize {
    p.stderr().matches(needle).count()
}

/// Which host answers through the VIP.
fn whoami(lan: &Lan) -> std::io::Result<String> {
    let addr = SocketAddr::from((VIP, SERVE_PORT));
    lan.client
        .tcp_request(addr, b"", Duration::from_millis(500))
        .map(|s| s.trim().to_string())
}

#[test]
fn the_vip_moves_between_two_mailfleet_balancers() {
    if skip_without_namespaces("the_vip_moves_between_two_mailfleet_balancers") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lan = Lan::new(2).unwrap();
    let (ha, hb) = (&lan.hosts[0], &lan.hosts[1]);
    let mac_a = ha.ns.mac(HOST_DEV).unwrap();
    let mac_b = hb.ns.mac(HOST_DEV).unwrap();
    let _backends = (backend(ha, "a"), backend(hb, "b"));
    let file_a = config(dir.path(), ha, hb, "a", "active");
    let file_b = config(dir.path(), hb, ha, "b", "passive");

    // B first (passive), then A (active).
    let b = balancer(hb, &file_b);
    let mut a = balancer(ha, &file_a);
    poll("the VIP on A", LONG, || {
        ha.ns.has_address(HOST_DEV, VIP).unwrap()
    });
    poll("a connection to A via the VIP", LONG, || {
        whoami(&lan).ok().as_deref() == Some("a")
    });
    assert!(
        !hb.ns.has_address(HOST_DEV, VIP).unwrap(),
        "B holds the VIP too; B's log:\n{}",
        b.stderr()
    );
    assert_eq!(
        lan.client.neighbour_mac(VIP).unwrap().as_deref(),
        Some(mac_a.as_str())
    );

    // A crashes: no cleanup, its kernel keeps the address, only its heartbeats stop.
    let b_active = logged(&b, "became active");
    a.kill();
    let killed = Instant::now();
    poll("B to become active", LONG, || {
        logged(&b, "became active") > b_active
    });
    let takeover = killed.elapsed();
    poll("the VIP on B", LONG, || {
        hb.ns.has_address(HOST_DEV, VIP).unwrap()
    });
    // Gratuitous ARP: the client's entry for the VIP now names B, without the client asking
    // (A's kernel still answers for the address, so only B's announcement can do this).
    poll("the client's ARP entry to follow B", LONG, || {
        lan.client.neighbour_mac(VIP).unwrap().as_deref() == Some(mac_b.as_str())
    });
    poll("a connection to B via the VIP", LONG, || {
        whoami(&lan).ok().as_deref() == Some("b")
    });
    // Three silent intervals of 200 ms: not before (a stall only makes it later).
    assert!(
        takeover >= Duration::from_millis(350),
        "takeover too early: {takeover:?}"
    );

    // A comes back with its configured role active: it hears B active, stays passive and
    // drops the address its crash left behind.
    let a = balancer(ha, &file_a);
    poll("the stale VIP gone from A", LONG, || {
        !ha.ns.has_address(HOST_DEV, VIP).unwrap()
    });
    // A while of heartbeats (5 intervals): A stays passive.
    std::thread::sleep(Duration::from_secs(1));
    assert!(hb.ns.has_address(HOST_DEV, VIP).unwrap(), "B lost the VIP");
    assert_eq!(whoami(&lan).unwrap(), "b");
    assert_eq!(logged(&a, "became active"), 0, "A took the role back");

    // B stops gracefully (SIGTERM): it releases the VIP and tells A, which takes over at once.
    let mut b = b;
    b.signal(libc::SIGTERM);
    let stopped = Instant::now();
    poll("A to become active", LONG, || {
        logged(&a, "became active") > 0
    });
    let handover = stopped.elapsed();
    assert!(b.wait_exit(LONG), "B did not exit");
    assert!(
        !hb.ns.has_address(HOST_DEV, VIP).unwrap(),
        "B kept the VIP after shutdown; B's log:\n{}",
        b.stderr()
    );
    poll("the VIP on A", LONG, || {
        ha.ns.has_address(HOST_DEV, VIP).unwrap()
    });
    poll("a connection to A via the VIP", LONG, || {
        whoami(&lan).ok().as_deref() == Some("a")
    });
    // By the leave announcement, not by three silent intervals (600 ms).
    assert!(
        logged(&a, "peer announced it is leaving") > 0,
        "A's log:\n{}",
        a.stderr()
    );
    assert!(
        handover < Duration::from_millis(600),
        "graceful handover took {handover:?}"
    );
    println!(
        "mailfleet balancer pair: takeover {takeover:?} after kill -9, graceful handover {handover:?}"
    );
}

/// An HTTP request to a balancer's runtime API from inside its host's namespace; the status.
fn api(host: &LanHost, method: &str, path: &str) -> u16 {
    host.ns
        .run_in(|| {
            let mut s =
                std::net::TcpStream::connect_timeout(&ADMIN.parse().unwrap(), LONG).ok()?;
            s.set_read_timeout(Some(LONG)).ok()?;
            write!(
                s,
                "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            )
            .ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).ok()?;
            out.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap()
        .unwrap_or(0)
}

const ADMIN: &str = "127.0.0.1:9900";
const SPARE_PORT: u16 = 9001;

#[test]
fn a_server_halted_before_a_failover_stays_halted_after_it() {
    if skip_without_namespaces("a_server_halted_before_a_failover_stays_halted_after_it") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lan = Lan::new(2).unwrap();
    let (ha, hb) = (&lan.hosts[0], &lan.hosts[1]);
    let _backends = (
        backend(ha, "a"),
        backend(hb, "b"),
        backend_on(ha, "spare-a", SPARE_PORT),
        backend_on(hb, "spare-b", SPARE_PORT),
    );
    let top = format!("[admin]\nlisten = \"{ADMIN}\"\n\n");
    let more =
        format!("\n[[service.server]]\nname = \"spare\"\naddress = \"127.0.0.1:{SPARE_PORT}\"\n");
    let file_a = config_with(dir.path(), ha, hb, "a", "active", &top, &more);
    let file_b = config_with(dir.path(), hb, ha, "b", "passive", &top, &more);
    // Two virtual IPs, one of each family, moving together.
    for file in [&file_a, &file_b] {
        let text = std::fs::read_to_string(file).unwrap().replace(
            &format!("vip = \"{VIP}/24\""),
            &format!("vip = [\"{VIP}/24\", \"{VIP6}/64\"]"),
        );
        assert!(text.contains(&VIP6.to_string()));
        std::fs::write(file, text).unwrap();
    }
    let b = balancer(hb, &file_b);
    let mut a = balancer(ha, &file_a);
    poll("a connection to A via the VIP", LONG, || {
        whoami(&lan).ok().as_deref() == Some("a")
    });
    assert!(
        ha.ns.has_address(HOST_DEV, VIP6).unwrap(),
        "A lacks the IPv6 VIP"
    );
    // Round robin: the spare server gets clients too, until it is halted on the active.
    poll("a connection to A's spare via the VIP", LONG, || {
        whoami(&lan).ok().as_deref() == Some("spare-a")
    });
    assert_eq!(api(ha, "POST", "/service/who/server/spare/maint"), 200);
    let b_state = dir.path().join("b.state");
    poll("the maint state in B's state file", LONG, || {
        std::fs::read_to_string(&b_state).is_ok_and(|s| s.contains("\"maint\""))
    });

    let b_active = logged(&b, "became active");
    a.kill();
    poll("B to become active", LONG, || {
        logged(&b, "became active") > b_active
    });
    poll("a connection to B via the VIP", LONG, || {
        whoami(&lan).ok().as_deref() == Some("b")
    });
    poll("the IPv6 VIP on B", LONG, || {
        hb.ns.has_address(HOST_DEV, VIP6).unwrap()
    });
    // Round robin over two servers would give the spare every other client.
    for _ in 0..6 {
        assert_eq!(
            whoami(&lan).unwrap(),
            "b",
            "the halted server got traffic back; B's log:\n{}",
            b.stderr()
        );
    }
}
