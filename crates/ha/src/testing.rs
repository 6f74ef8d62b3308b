//! Network-namespace harness for failover tests (feature `testing`).
//!
//! Builds a small LAN out of namespaces the test owns: a *client* namespace holding a
//! bridge (`br0`, 10.99.0.1/24 and fd00:99::1/64) and N *host* namespaces, each joined to the
//! bridge by a veth pair whose host end is `eth0` (10.99.0.11/24 and fd00:99::11/64,
//! 10.99.0.12/24 and fd00:99::12/64, ...; IPv6 addresses without duplicate address
//! detection, so they work at once). Nothing is
//! created in the caller's own namespace. Every namespace is deleted, and every process
//! left in it killed, when its guard drops, also when the test panics.
//!
//! Typical use: return early when [`skip_without_namespaces`] says so, build a [`Lan`], start processes
//! with [`Netns::spawn`], watch their stdout with [`NsProcess::wait_for_line`], and
//! connect from the client side with [`Netns::tcp_request`].

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Address of the client namespace's bridge.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// Prefix length of the LAN.
pub const LAN_PREFIX: u8 = 24;
/// IPv6 address of the client namespace's bridge.
pub const CLIENT_ADDR6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 1);
/// IPv6 prefix length of the LAN.
pub const LAN_PREFIX6: u8 = 64;
/// Name of each host's LAN interface.
pub const HOST_DEV: &str = "eth0";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Why namespace tests cannot run here (not root, no `ip`, namespaces refused), or
/// `None` when they can.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => {}
        _ => return Some("`ip` (iproute2) is not installed".into()),
    }
    match Netns::new("probe") {
        Ok(_) => None,
        Err(e) => Some(format!("cannot create a network namespace: {e}")),
    }
}

/// For a test that needs namespaces: whether to skip it, after saying why. Only when not
/// running as root: as root (CI runs the tests as root) namespaces must work, and a test that
/// cannot make them fails, so a broken environment cannot pass for a skipped test.
pub fn skip_without_namespaces(test: &str) -> bool {
    let Some(why) = unavailable() else {
        return false;
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        panic!("{test}: running as root, so it must run, but {why}");
    }
    println!("SKIP {test}: {why}");
    true
}

fn run(cmd: &mut Command) -> io::Result<String> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace owned by the test; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `mfha-<pid>-<n>-<tag>` with its loopback up.
    pub fn new(tag: &str) -> io::Result<Netns> {
        let name = format!(
            "mfha-{}-{}-{tag}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS...` and returns its stdout.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Runs a program inside the namespace to completion and returns its stdout.
    pub fn exec(&self, program: impl AsRef<Path>, args: &[&str]) -> io::Result<String> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(program.as_ref())
            .args(args))
    }

    /// Starts a program inside the namespace; its stdout and stderr are collected.
    pub fn spawn(&self, program: impl AsRef<Path>, args: &[String]) -> io::Result<NsProcess> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(program.as_ref())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let out = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let err = Arc::new(Mutex::new(String::new()));
        if let Some(stdout) = child.stdout.take() {
            let out = out.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let (lines, cv) = &*out;
                    lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                    cv.notify_all();
                }
            });
        }
        if let Some(mut stderr) = child.stderr.take() {
            let err = err.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut e = err.lock().unwrap_or_else(|e| e.into_inner());
                    // Keep the last 64 KiB for diagnostics.
                    e.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if e.len() > 64 * 1024 {
                        let cut = e.len() - 64 * 1024;
                        let cut = (cut..e.len()).find(|&i| e.is_char_boundary(i)).unwrap_or(0);
                        e.drain(..cut);
                    }
                }
            });
        }
        Ok(NsProcess { child, out, err })
    }

    /// Runs `f` on a thread that entered this namespace: sockets it opens live here.
    pub fn run_in<R: Send>(&self, f: impl FnOnce() -> R + Send) -> io::Result<R> {
        let handle = File::open(format!("/run/netns/{}", self.name))?;
        std::thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: a valid namespace fd; setns only changes this thread's namespace.
                if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(f())
            })
            .join()
            .map_err(|_| io::Error::other("namespace thread panicked"))?
        })
    }

    /// From inside this namespace: connects to `addr`, optionally writes `send`, and
    /// reads until the server closes, everything bounded by `timeout`.
    pub fn tcp_request(
        &self,
        addr: SocketAddr,
        send: &[u8],
        timeout: Duration,
    ) -> io::Result<String> {
        self.run_in(|| {
            let mut s = TcpStream::connect_timeout(&addr, timeout)?;
            s.set_read_timeout(Some(timeout))?;
            s.set_write_timeout(Some(timeout))?;
            if !send.is_empty() {
                s.write_all(send)?;
            }
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        })?
    }

    /// Whether `dev` carries `addr` (any prefix), IPv4 or IPv6.
    pub fn has_address(&self, dev: &str, addr: impl Into<IpAddr>) -> io::Result<bool> {
        let addr = addr.into();
        let family = if addr.is_ipv4() { "-4" } else { "-6" };
        let out = self.ip(&[family, "-o", "addr", "show", "dev", dev])?;
        let needle = format!(" {addr}/");
        Ok(out.lines().any(|l| l.contains(&needle)))
    }

    /// The hardware address of `dev`, lowercase "aa:bb:...".
    pub fn mac(&self, dev: &str) -> io::Result<String> {
        let out = self.ip(&["-o", "link", "show", "dev", dev])?;
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .map(str::to_lowercase)
            .ok_or_else(|| io::Error::other(format!("no link/ether in {out:?}")))
    }

    /// The hardware address this namespace's neighbour table holds for `addr` (IPv4: ARP;
    /// IPv6: neighbour discovery), if any.
    pub fn neighbour_mac(&self, addr: impl Into<IpAddr>) -> io::Result<Option<String>> {
        let out = self.ip(&["neigh", "show", &addr.into().to_string()])?;
        Ok(out
            .split_whitespace()
            .skip_while(|w| *w != "lladdr")
            .nth(1)
            .map(str::to_lowercase))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(pids) = run(Command::new("ip").args(["netns", "pids", &self.name])) {
            for pid in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                // SAFETY: kill(2) on a pid that lives in our own test namespace.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!(
                "warning: could not delete network namespace {}: {e}",
                self.name
            );
        }
    }
}

/// A process started in a namespace; killed on drop.
#[derive(Debug)]
pub struct NsProcess {
    child: Child,
    out: Arc<(Mutex<Vec<String>>, Condvar)>,
    err: Arc<Mutex<String>>,
}

impl NsProcess {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stdout line so far.
    pub fn lines(&self) -> Vec<String> {
        self.out.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The last 64 KiB of its stderr (logs), for failure messages.
    pub fn stderr(&self) -> String {
        self.err.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits up to `timeout` for a stdout line at index `from` or later matching `pred`;
    /// returns its index and text.
    pub fn wait_for_line(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<(usize, String)> {
        let end = Instant::now() + timeout;
        let (lines, cv) = &*self.out;
        let mut guard = lines.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = from;
        loop {
            while next < guard.len() {
                if pred(&guard[next]) {
                    return Some((next, guard[next].clone()));
                }
                next += 1;
            }
            let now = Instant::now();
            if now >= end {
                return None;
            }
            guard = cv
                .wait_timeout(guard, end - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Sends a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// Waits up to `timeout` for the process to exit; true if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Kills it with SIGKILL (no cleanup: a crash) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NsProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One host of a [`Lan`].
#[derive(Debug)]
pub struct LanHost {
    /// Its namespace.
    pub ns: Netns,
    /// Its address on [`HOST_DEV`].
    pub addr: Ipv4Addr,
    /// Its IPv6 address on [`HOST_DEV`].
    pub addr6: Ipv6Addr,
}

/// A client namespace with a bridge and `n` host namespaces on it.
#[derive(Debug)]
pub struct Lan {
    /// Hosts 10.99.0.11, 10.99.0.12, ... (dropped before the client).
    pub hosts: Vec<LanHost>,
    /// The client, 10.99.0.1 and fd00:99::1 on `br0`.
    pub client: Netns,
}

impl Lan {
    /// Builds the LAN; everything is torn down when it drops.
    pub fn new(hosts: usize) -> io::Result<Lan> {
        let client = Netns::new("client")?;
        // No multicast snooping: neighbour discovery's multicast reaches every port without
        // the MLD reports a snooping bridge would wait for.
        client.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        client.ip(&["link", "set", "br0", "up"])?;
        client.ip(&[
            "addr",
            "add",
            &format!("{CLIENT_ADDR}/{LAN_PREFIX}"),
            "dev",
            "br0",
        ])?;
        client.ip(&[
            "addr",
            "add",
            &format!("{CLIENT_ADDR6}/{LAN_PREFIX6}"),
            "dev",
            "br0",
            "nodad",
        ])?;
        let mut lan = Lan {
            hosts: Vec::new(),
            client,
        };
        for i in 0..hosts {
            let ns = Netns::new(&format!("h{i}"))?;
            let addr = Ipv4Addr::new(10, 99, 0, 11 + i as u8);
            let addr6 = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 0x11 + i as u16);
            let port = format!("vh{i}");
            lan.client.ip(&[
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                HOST_DEV,
                "netns",
                ns.name(),
            ])?;
            lan.client.ip(&["link", "set", &port, "master", "br0"])?;
            lan.client.ip(&["link", "set", &port, "up"])?;
            ns.ip(&[
                "addr",
                "add",
                &format!("{addr}/{LAN_PREFIX}"),
                "dev",
                HOST_DEV,
            ])?;
            ns.ip(&[
                "addr",
                "add",
                &format!("{addr6}/{LAN_PREFIX6}"),
                "dev",
                HOST_DEV,
                "nodad",
            ])?;
            ns.ip(&["link", "set", HOST_DEV, "up"])?;
            lan.hosts.push(LanHost { ns, addr, addr6 });
        }
        Ok(lan)
    }
}
