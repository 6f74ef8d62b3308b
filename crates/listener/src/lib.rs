//! The listeners every mail protocol of a node shares (SMTP, IMAP, POP3): how their ports are
//! opened ([`bind_and_serve`]) and what happens between `accept` and the protocol's first byte.
//!
//! For each accepted connection, in order:
//! 1. **Accept errors** (out of file descriptors, mostly) wait before the next try, 10 ms
//!    doubling to 1 s, back to the start once an accept succeeds; they are logged at most one
//!    line per 5 s, with the count of those not told yet.
//! 2. **The client's address**: from a PROXY v1/v2 header when the peer is one of the node's
//!    `trusted_proxies` (a peer that is not never has its header read), else the peer's.
//! 3. **Access rules** on that address ([`Admission::access`]; deny wins).
//! 4. **Connection limits**, in total and per client address, counted per protocol
//!    ([`limits::Connections`]); addresses in [`Admission::per_ip_exceptions`] have no
//!    per-address limit (the total still counts them). The slot goes to the session, which
//!    gives it back just before its last words (SMTP 221, IMAP BYE, POP3 +OK at QUIT): a
//!    client that reads them and connects again at once finds its slot free. A client that
//!    closes first may be back before its old session has seen the close, so a connection
//!    over its address's limit waits up to [`limits::PER_IP_GRACE`] for a slot to come back.
//! 5. **Implicit TLS** for a TLS-only port (465, 993, 995), with a handshake deadline.
//!
//! An admitted connection is counted against its listening address until its session ends
//! ([`open::open_connections`], which the node's heartbeat reports per service).
//!
//! A refused client gets the protocol's own words ([`Protocol::refusal`]), never on a TLS-only
//! port (the client expects a handshake, not text). Then [`Protocol::serve`] runs the session.

pub mod bind;
pub mod conn;
pub mod deflate;
pub mod limits;
pub mod open;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mailfleet_ip_rules::{AccessList, IpRules};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use bind::{BindError, Port, bind_and_serve, bind_tcp};
pub use conn::Conn;
pub use limits::{ConnectionSlot, Connections, PER_IP_GRACE, Refused};
pub use open::open_connections;

/// How long a trusted proxy has to send its PROXY header, and a client its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who may connect now, read from the live settings for each connection.
#[derive(Debug, Clone)]
pub struct Admission {
    pub access: AccessList,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Client addresses with no per-address limit (Postfix's
    /// `smtpd_client_event_limit_exceptions`).
    pub per_ip_exceptions: IpRules,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The access rules refuse the client's address.
    Access,
    /// The node's or the address's connection limit is reached.
    Limit(Refused),
}

/// One protocol on one port: its policy, its refusals, its sessions.
pub trait Protocol: Send + Sync + 'static {
    /// The service's name in logs (`smtp`, `submission`, `imap`, ...).
    fn name(&self) -> &'static str;
    /// The policy for a connection arriving now.
    fn admission(&self) -> Admission;
    /// The bytes a refused client is sent before the connection closes (none: closed at once).
    fn refusal(&self, why: Refusal) -> Option<Vec<u8>>;
    /// Runs one session to its end. The session holds `slot` until just before it writes its
    /// last words, then drops it (dropping it later only delays the next connection).
    fn serve(
        self: Arc<Self>,
        conn: Conn,
        client_ip: IpAddr,
        slot: ConnectionSlot,
    ) -> impl Future<Output = ()> + Send;
}

/// How a node takes clients. Its listening sockets close when `accepting` is cancelled (a
/// drain, or the start of a stop), while the sessions already open go on: `sessions` tracks
/// every one of them, on every listener that shares it, so the node can wait for them to end.
/// (A session itself ends on its protocol's own shutdown token.)
#[derive(Debug, Clone)]
pub struct Intake {
    pub accepting: CancellationToken,
    pub sessions: TaskTracker,
}

impl Intake {
    /// Accepting until `shutdown` is cancelled, the sessions tracked for nobody else.
    pub fn until(shutdown: &CancellationToken) -> Intake {
        Intake {
            accepting: shutdown.child_token(),
            sessions: TaskTracker::new(),
        }
    }
}

/// One listening socket and what surrounds its sessions.
pub struct Listener<P: Protocol> {
    pub protocol: Arc<P>,
    /// Open connections of this protocol (shared by its ports when they share limits).
    pub connections: Arc<Connections>,
    /// Peers whose PROXY header is read.
    pub trusted_proxies: IpRules,
    /// TLS from the first byte (a TLS-only port).
    pub implicit_tls: Option<TlsAcceptor>,
    /// Where each connection's task is tracked ([`Intake::sessions`]).
    pub sessions: TaskTracker,
}

impl<P: Protocol> Listener<P> {
    /// Accepts on `socket` until `accepting` is cancelled, then closes it; each connection runs
    /// in its own task, tracked in `sessions`, and goes on after that.
    pub async fn run(self, socket: TcpListener, accepting: CancellationToken) {
        let this = Arc::new(self);
        let name = this.protocol.name();
        let registration = socket
            .local_addr()
            .ok()
            .map(|a| Arc::new(open::Registration::new(a)));
        let mut backoff = AcceptBackoff::default();
        loop {
            let accepted = tokio::select! {
                _ = accepting.cancelled() => break,
                a = socket.accept() => a,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    if let Some(AcceptLog::Recovered { failures }) =
                        backoff.succeeded(tokio::time::Instant::now())
                    {
                        tracing::warn!("{name}: accepting again after {failures} failed accepts");
                    }
                    this.sessions
                        .spawn(this.clone().connection(tcp, peer, registration.clone()));
                }
                Err(e) => {
                    let (wait, log) = backoff.failed(tokio::time::Instant::now());
                    match log {
                        Some(AcceptLog::Failed { earlier: 0 }) => {
                            tracing::warn!("{name}: accept failed: {e}")
                        }
                        Some(AcceptLog::Failed { earlier }) => tracing::warn!(
                            "{name}: accept failed: {e} ({earlier} more since the last line)"
                        ),
                        _ => {}
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn connection(
        self: Arc<Self>,
        mut tcp: TcpStream,
        peer: SocketAddr,
        registration: Option<Arc<open::Registration>>,
    ) {
        let name = self.protocol.name();
        let _ = tcp.set_nodelay(true);
        // On a dual-stack socket (`bind = "*"`) an IPv4 client arrives as `::ffff:a.b.c.d`;
        // rules, limits and logs see it as the IPv4 address it is.
        let peer_ip = peer.ip().to_canonical();
        let mut client_ip = peer_ip;
        // A trusted proxy that terminated the client's TLS says so in its PROXY v2 header.
        let mut proxied_tls = None;
        if self.trusted_proxies.matches(peer_ip) {
            match mailfleet_proxy_protocol::read_header(&mut tcp, HANDSHAKE_TIMEOUT).await {
                Ok(Some(h)) => {
                    client_ip = h.source.ip().to_canonical();
                    proxied_tls = h.tls.map(|t| conn::ProxiedTls::from_header(peer, t));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::info!("{name}: from proxy {peer}: {e}");
                    return;
                }
            }
        }
        let admission = self.protocol.admission();
        if !admission.access.permits(client_ip) {
            tracing::info!("{name}: {client_ip} refused by access rules");
            self.refuse(tcp, Refusal::Access).await;
            return;
        }
        let per_ip = if admission.per_ip_exceptions.matches(client_ip) {
            usize::MAX
        } else {
            admission.max_connections_per_ip
        };
        let slot = match self
            .connections
            .acquire_within(
                client_ip,
                admission.max_connections,
                per_ip,
                limits::PER_IP_GRACE,
            )
            .await
        {
            Ok(s) => s,
            Err(why) => {
                tracing::info!("{name}: {client_ip} refused: {why:?} connection limit");
                self.refuse(tcp, Refusal::Limit(why)).await;
                return;
            }
        };
        let open = registration.as_ref().map(|r| r.open());
        // The listener's place in the registry goes when the listener stops, not with us.
        drop(registration);
        let conn = match &self.implicit_tls {
            Some(acceptor) => {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => Conn::Tls(Box::new(s)),
                    Ok(Err(e)) => {
                        tracing::debug!("{name}: TLS handshake with {client_ip} failed: {e}");
                        return;
                    }
                    Err(_) => return,
                }
            }
            None => match proxied_tls {
                Some(tls) => Conn::ProxiedTls(tcp, Box::new(tls)),
                None => Conn::Plain(tcp),
            },
        };
        self.protocol.clone().serve(conn, client_ip, slot).await;
        drop(open);
    }

    async fn refuse(&self, mut tcp: TcpStream, why: Refusal) {
        if self.implicit_tls.is_some() {
            return;
        }
        let Some(words) = self.protocol.refusal(why) else {
            return;
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = tcp.write_all(&words).await;
            let _ = tcp.shutdown().await;
        })
        .await;
    }
}

/// The first wait after a failed accept, and the longest.
const FIRST_DELAY: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_secs(1);
/// At most one line about accept errors this often, per listener.
const REPORT_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, PartialEq, Eq)]
enum AcceptLog {
    /// An accept failed; `earlier` more failures since the last line.
    Failed { earlier: u64 },
    /// Accepts work again after `failures` failures since the last line.
    Recovered { failures: u64 },
}

/// A listener's failed accepts: the wait before the next try (doubling while they fail in a
/// row), and at most one log line per [`REPORT_EVERY`], so a listener hovering at the
/// descriptor limit (an accept succeeding whenever a connection closes, failing between)
/// logs a line per 5 s, not two per connection.
#[derive(Debug)]
struct AcceptBackoff {
    delay: Duration,
    /// Failures not yet told in a line.
    untold: u64,
    last_line: Option<tokio::time::Instant>,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff {
            delay: FIRST_DELAY,
            untold: 0,
            last_line: None,
        }
    }
}

impl AcceptBackoff {
    fn may_log(&self, now: tokio::time::Instant) -> bool {
        self.last_line
            .is_none_or(|t| now.duration_since(t) >= REPORT_EVERY)
    }

    /// An accept failed: how long to wait, and what to log.
    fn failed(&mut self, now: tokio::time::Instant) -> (Duration, Option<AcceptLog>) {
        let wait = self.delay;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        if self.may_log(now) {
            let earlier = std::mem::take(&mut self.untold);
            self.last_line = Some(now);
            (wait, Some(AcceptLog::Failed { earlier }))
        } else {
            self.untold += 1;
            (wait, None)
        }
    }

    /// An accept succeeded: what to log, if failures are still untold and a line is due.
    fn succeeded(&mut self, now: tokio::time::Instant) -> Option<AcceptLog> {
        self.delay = FIRST_DELAY;
        if self.untold == 0 || !self.may_log(now) {
            return None;
        }
        self.last_line = Some(now);
        Some(AcceptLog::Recovered {
            failures: std::mem::take(&mut self.untold),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_back_off_and_are_reported_sparingly() {
        let mut b = AcceptBackoff::default();
        let t0 = tokio::time::Instant::now();
        assert_eq!(
            b.failed(t0),
            (FIRST_DELAY, Some(AcceptLog::Failed { earlier: 0 }))
        );
        let mut waits = Vec::new();
        for i in 1..12 {
            let (wait, log) = b.failed(t0 + Duration::from_millis(100 * i));
            assert_eq!(log, None);
            waits.push(wait);
        }
        assert_eq!(waits[0], FIRST_DELAY * 2);
        assert_eq!(*waits.last().unwrap(), MAX_DELAY);
        // Hovering at the limit: successes between failures say nothing within 5 s.
        assert_eq!(b.succeeded(t0 + Duration::from_secs(2)), None);
        assert_eq!(b.failed(t0 + Duration::from_secs(3)), (FIRST_DELAY, None));
        assert_eq!(
            b.failed(t0 + REPORT_EVERY).1,
            Some(AcceptLog::Failed { earlier: 12 }),
            "one line per 5 s while failing"
        );
        assert_eq!(b.failed(t0 + REPORT_EVERY * 3 / 2).1, None);
        assert_eq!(
            b.succeeded(t0 + REPORT_EVERY * 2),
            Some(AcceptLog::Recovered { failures: 1 })
        );
        assert_eq!(b.succeeded(t0 + REPORT_EVERY * 3), None, "nothing untold");
    }
}
