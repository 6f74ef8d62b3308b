//! Health checks: one probe per protocol (one file each), hysteresis, and the per-server loop.
//!
//! A probe opens its own connection to the server's check address, sends the PROXY preamble when
//! the service sends PROXY headers (a v2 LOCAL header, or v1 `PROXY UNKNOWN`, which receivers
//! treat as "use the connection's own addresses"), then speaks the protocol: a server that accepts
//! TCP and then says nothing fails on the timeout. Replies are parsed by small sans-IO functions
//! over bounded lines. A check the balancer cannot even start because it has no file descriptor
//! left (EMFILE, ENFILE) says nothing about the server: it counts as neither a success nor a
//! failure, and is logged once per run of such checks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::{CheckKind, HealthConfig, ProxyProtocol};
use crate::server::ServerRt;

pub mod http;
pub mod imap;
pub mod pop3;
pub mod smtp;
pub mod tcp;

/// The longest reply line a probe reads.
pub const MAX_LINE: usize = 4096;
/// The most lines of one reply (e.g. an EHLO reply) a probe reads.
pub const MAX_LINES: usize = 64;

/// What a probe sends before speaking the protocol.
pub fn preamble(pp: ProxyProtocol) -> Vec<u8> {
    match pp {
        ProxyProtocol::None => Vec::new(),
        ProxyProtocol::V1 => b"PROXY UNKNOWN\r\n".to_vec(),
        ProxyProtocol::V2 => mailfleet_proxy_protocol::encode_v2_local(),
    }
}

/// The result of one health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered as it should.
    Pass,
    /// The server did not (why).
    Fail(String),
    /// The balancer could not run the check because it is itself out of file descriptors
    /// (EMFILE, ENFILE): this says nothing about the server, whose state stays as it is.
    NotRun(String),
}

/// Whether `e` says that this process (EMFILE) or the whole system (ENFILE) has no file
/// descriptor left, rather than anything about the peer.
pub fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Runs one check of kind `cfg.check` against `addr`, within `cfg.timeout`.
pub async fn check(cfg: &HealthConfig, addr: SocketAddr, preamble: &[u8]) -> Outcome {
    let run = async {
        let mut s = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) if out_of_descriptors(&e) => {
                return Outcome::NotRun(format!("connect {addr}: {e}"));
            }
            Err(e) => return Outcome::Fail(format!("connect {addr}: {e}")),
        };
        let _ = s.set_nodelay(true);
        if !preamble.is_empty()
            && let Err(e) = s.write_all(preamble).await
        {
            return Outcome::Fail(format!("sending PROXY header: {e}"));
        }
        let mut lines = LineReader::default();
        let r = match cfg.check {
            CheckKind::Tcp => tcp::check(&mut s).await,
            CheckKind::Smtp => smtp::check(&mut s, &mut lines).await,
            CheckKind::Imap => imap::check(&mut s, &mut lines).await,
            CheckKind::Pop3 => pop3::check(&mut s, &mut lines).await,
            CheckKind::Http => http::check(&mut s, &mut lines, cfg, addr).await,
        };
        match r {
            Ok(()) => Outcome::Pass,
            Err(e) => Outcome::Fail(e),
        }
    };
    match tokio::time::timeout(cfg.timeout, run).await {
        Ok(o) => o,
        Err(_) => Outcome::Fail(format!("no answer within {:?}", cfg.timeout)),
    }
}

/// [`check`] as a plain result: `Ok` when it passed, else why not (a check that could not run
/// is an error here too).
pub async fn probe(cfg: &HealthConfig, addr: SocketAddr, preamble: &[u8]) -> Result<(), String> {
    match check(cfg, addr, preamble).await {
        Outcome::Pass => Ok(()),
        Outcome::Fail(e) | Outcome::NotRun(e) => Err(e),
    }
}

/// Reads CRLF- (or LF-) terminated lines of at most [`MAX_LINE`] bytes.
#[derive(Default)]
pub struct LineReader {
    buf: Vec<u8>,
}

impl LineReader {
    /// The next line without its line ending.
    pub async fn line(&mut self, s: &mut TcpStream) -> Result<Vec<u8>, String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buf.len() > MAX_LINE {
                return Err(format!("reply line longer than {MAX_LINE} bytes"));
            }
            let mut chunk = [0u8; 1024];
            let n = s
                .read(&mut chunk)
                .await
                .map_err(|e| format!("reading: {e}"))?;
            if n == 0 {
                return Err("connection closed by the server".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Sends a closing command and waits briefly for the server to answer or close, so the server
/// sees an orderly end; whatever happens here does not change the result.
pub async fn goodbye(s: &mut TcpStream, command: &[u8]) {
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        if s.write_all(command).await.is_ok() {
            let mut sink = [0u8; 512];
            while let Ok(n) = s.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
    })
    .await;
}

/// Shows at most 80 bytes of a reply in an error.
pub fn show(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
    format!("{s:?}")
}

/// Consecutive results and the state they lead to.
#[derive(Debug, Default, Clone)]
pub struct Hysteresis {
    pub successes: u32,
    pub failures: u32,
    /// Whether a check has ever passed: until then one failure is enough to mark a server down,
    /// so a server that was dead when the balancer started never takes clients.
    pub confirmed: bool,
}

impl Hysteresis {
    /// Feeds one result; returns the new state if it flips (`Some(true)` = up).
    pub fn feed(&mut self, ok: bool, currently_up: bool, rise: u32, fall: u32) -> Option<bool> {
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            self.confirmed = true;
            (!currently_up && self.successes >= rise).then_some(true)
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            let limit = if self.confirmed { fall } else { 1 };
            (currently_up && self.failures >= limit).then_some(false)
        }
    }

    /// Feeds one check's outcome: a check that could not run counts as neither a success nor
    /// a failure and changes nothing.
    pub fn feed_outcome(
        &mut self,
        outcome: &Outcome,
        currently_up: bool,
        rise: u32,
        fall: u32,
    ) -> Option<bool> {
        match outcome {
            Outcome::Pass => self.feed(true, currently_up, rise, fall),
            Outcome::Fail(_) => self.feed(false, currently_up, rise, fall),
            Outcome::NotRun(_) => None,
        }
    }
}

/// Where and how to check a server: at `port` of the server's current address (a host name's
/// latest resolution).
#[derive(Debug, Clone)]
pub struct CheckPlan {
    pub cfg: HealthConfig,
    pub server: Arc<ServerRt>,
    pub port: u16,
    pub preamble: Vec<u8>,
}

/// Two plans are the same when they check the same server (the same long-lived state, not
/// merely the same name) the same way.
impl PartialEq for CheckPlan {
    fn eq(&self, other: &CheckPlan) -> bool {
        Arc::ptr_eq(&self.server, &other.server)
            && self.cfg == other.cfg
            && self.port == other.port
            && self.preamble == other.preamble
    }
}

/// One check of `plan`'s server at its current address.
async fn check_plan(plan: &CheckPlan) -> Outcome {
    match plan.server.ip() {
        Some(ip) => check(&plan.cfg, SocketAddr::new(ip, plan.port), &plan.preamble).await,
        None => Outcome::Fail(format!("{} has not resolved yet", plan.server.host)),
    }
}

/// Checks one server every `interval` until `token` is cancelled; `on_flip` runs after each
/// change of state (it rebuilds the balancer's snapshot).
pub async fn run_loop(
    plan: CheckPlan,
    token: CancellationToken,
    on_flip: impl Fn() + Send + 'static,
) {
    let server = plan.server.clone();
    let mut h = Hysteresis::default();
    // Checks in a row that could not run (the balancer out of descriptors).
    let mut not_run = 0u64;
    loop {
        let started = Instant::now();
        let outcome = tokio::select! {
            _ = token.cancelled() => return,
            o = check_plan(&plan) => o,
        };
        let flip = h.feed_outcome(&outcome, server.is_up(), plan.cfg.rise, plan.cfg.fall);
        {
            let mut d = server.check.lock().unwrap_or_else(|p| p.into_inner());
            d.last = match &outcome {
                Outcome::Pass => "ok".into(),
                Outcome::Fail(e) => e.clone(),
                Outcome::NotRun(e) => {
                    format!("not counted, the balancer is out of file descriptors: {e}")
                }
            };
            d.at_ms = now_ms();
            d.took_ms = started.elapsed().as_millis() as u64;
            d.successes = h.successes;
            d.failures = h.failures;
        }
        match &outcome {
            Outcome::NotRun(e) => {
                not_run += 1;
                if not_run == 1 {
                    tracing::warn!(service = %server.service, server = %server.name, error = %e,
                        "health check not run: the balancer is out of file descriptors; the server keeps its state");
                }
            }
            _ if not_run > 0 => {
                tracing::info!(service = %server.service, server = %server.name,
                    "health checks run again ({not_run} could not run for want of file descriptors)");
                not_run = 0;
            }
            _ => {}
        }
        if let Some(up) = flip {
            server.set_up(up);
            match &outcome {
                Outcome::Fail(e) => {
                    tracing::warn!(service = %server.service, server = %server.name, error = %e, "server is down")
                }
                _ => {
                    tracing::info!(service = %server.service, server = %server.name, "server is up")
                }
            }
            on_flip();
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(plan.cfg.interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall_need_consecutive_results() {
        let mut h = Hysteresis::default();
        // Confirmed up first.
        assert_eq!(h.feed(true, true, 2, 3), None);
        assert_eq!(h.feed(false, true, 2, 3), None);
        assert_eq!(h.feed(false, true, 2, 3), None);
        assert_eq!(h.feed(true, true, 2, 3), None);
        assert_eq!(h.feed(false, true, 2, 3), None);
        assert_eq!(h.feed(false, true, 2, 3), None);
        assert_eq!(h.feed(false, true, 2, 3), Some(false));
        assert_eq!(h.feed(true, false, 2, 3), None);
        assert_eq!(h.feed(true, false, 2, 3), Some(true));
    }

    #[test]
    fn a_check_the_balancer_could_not_run_changes_nothing() {
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        let enfile = std::io::Error::from_raw_os_error(libc::ENFILE);
        let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert!(out_of_descriptors(&emfile) && out_of_descriptors(&enfile));
        assert!(!out_of_descriptors(&refused));

        // A confirmed-up server with fall = 1: one real failure would take it down.
        let mut h = Hysteresis::default();
        assert_eq!(h.feed_outcome(&Outcome::Pass, true, 1, 1), None);
        let not_run = Outcome::NotRun(format!("connect 127.0.0.1:1: {emfile}"));
        for _ in 0..10 {
            assert_eq!(h.feed_outcome(&not_run, true, 1, 1), None);
        }
        assert_eq!((h.successes, h.failures), (1, 0));
        // Nor does it bring a down server up.
        assert_eq!(h.feed_outcome(&not_run, false, 1, 1), None);
        let fail = Outcome::Fail("connect 127.0.0.1:1: refused".into());
        assert_eq!(h.feed_outcome(&fail, true, 1, 1), Some(false));
    }

    #[tokio::test]
    async fn a_refused_connect_fails_the_check() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let o = check(&script::cfg(CheckKind::Tcp), closed, b"").await;
        assert!(
            matches!(&o, Outcome::Fail(e) if e.contains("connect")),
            "{o:?}"
        );
    }

    #[test]
    fn a_server_never_seen_up_goes_down_at_once() {
        let mut h = Hysteresis::default();
        assert_eq!(h.feed(false, true, 2, 3), Some(false));
    }

    #[test]
    fn preambles() {
        assert!(preamble(ProxyProtocol::None).is_empty());
        assert_eq!(preamble(ProxyProtocol::V1), b"PROXY UNKNOWN\r\n");
        let v2 = preamble(ProxyProtocol::V2);
        assert_eq!(&v2[..12], b"\r\n\r\n\0\r\nQUIT\n");
    }
}

/// Test helpers: a one-shot server that plays a script.
#[cfg(test)]
pub(crate) mod script {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    pub enum Step {
        Send(&'static [u8]),
        /// Reads until this text has arrived.
        Expect(&'static str),
        /// Accepts and says nothing.
        Hang,
    }

    /// Listens on 127.0.0.1:0 and plays `steps` to the first connection; returns the address.
    pub async fn serve(steps: Vec<Step>) -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            for step in steps {
                match step {
                    Step::Send(b) => {
                        if s.write_all(b).await.is_err() {
                            return;
                        }
                    }
                    Step::Expect(t) => {
                        while !String::from_utf8_lossy(&got).contains(t) {
                            let mut c = [0u8; 256];
                            match s.read(&mut c).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got.extend_from_slice(&c[..n]),
                            }
                        }
                    }
                    Step::Hang => {
                        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                    }
                }
            }
        });
        addr
    }

    pub fn cfg(check: crate::config::CheckKind) -> crate::config::HealthConfig {
        crate::config::HealthConfig {
            check,
            interval: std::time::Duration::from_millis(100),
            rise: 1,
            fall: 1,
            timeout: std::time::Duration::from_millis(500),
            port: None,
            path: "/health".into(),
            expect: 200,
            host: None,
        }
    }
}
