//! Listeners: bind 25, 587 and 465 (+ port_offset), take the client's real address from a
//! PROXY header when the peer is a trusted proxy, apply access rules and connection limits, and
//! run a session per connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mailfleet_ip_rules::IpRules;
use mailfleet_smtp_proto::Reply;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::conn::Conn;
use crate::limits::Connections;
use crate::session::{Service, Session};
use crate::settings::LivePolicy;
use crate::shared_limits::SenderRates;
use crate::{SmtpContext, SmtpError};

/// How long a trusted proxy has to send its PROXY header, and a client its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// State shared by every session of a node.
pub(crate) struct Shared {
    pub ctx: SmtpContext,
    pub policy: LivePolicy,
    pub tls: Option<TlsAcceptor>,
    pub hostname: String,
    pub connections: Arc<Connections>,
    pub rates: Arc<SenderRates>,
    pub trusted_proxies: IpRules,
    pub shutdown: CancellationToken,
    /// Where messages past the spool threshold wait for their end (the node's temp dir).
    pub spool: mailfleet_store::Spool,
    counter: AtomicU64,
}

impl Shared {
    /// A short unique id for a session or message: server id, start second, counter.
    pub fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}{:x}{:05x}",
            self.ctx.config.server_id,
            mailfleet_store::now(),
            n & 0xfffff
        )
    }
}

/// The SMTP listeners of one node.
pub struct SmtpServer;

impl SmtpServer {
    /// Binds 25/587/465 (+port_offset) on `config.bind` and serves until `shutdown`; returns
    /// (service name, bound address) pairs once all three are listening.
    pub async fn start(
        ctx: SmtpContext,
        shutdown: CancellationToken,
    ) -> Result<Vec<(&'static str, SocketAddr)>, SmtpError> {
        let config = ctx.config.clone();
        let pairs: Vec<_> = config
            .tls
            .certificates
            .iter()
            .map(|c| (c.cert.clone(), c.key.clone()))
            .collect();
        let tls = mailfleet_tls::load(&pairs, &config.data_dir, &config.hostname)?;
        for c in &tls.certificates {
            if c.self_signed {
                tracing::info!(
                    "TLS: self-signed certificate {} for {} (SHA-256 {})",
                    c.path.display(),
                    c.names.join(", "),
                    c.fingerprint
                );
            } else {
                tracing::info!(
                    "TLS: certificate {} for {}",
                    c.path.display(),
                    c.names.join(", ")
                );
            }
        }
        let trusted_proxies = IpRules::parse(&config.trusted_proxies)
            .map_err(|e| SmtpError::Config(format!("trusted_proxies: {e}")))?;
        let spool = mailfleet_store::Spool::new(
            config.temp_dir(),
            &config.server_id,
            mailfleet_store::spool::DEFAULT_THRESHOLD,
        );
        match spool.prepare() {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "removed {n} spool files of messages never acknowledged from {}",
                spool.dir().display()
            ),
            Err(source) => {
                return Err(SmtpError::Spool {
                    path: spool.dir().display().to_string(),
                    source,
                });
            }
        }
        let shared = Arc::new(Shared {
            spool,
            policy: LivePolicy::new(ctx.settings.clone()),
            tls: Some(TlsAcceptor::from(tls.config.clone())),
            hostname: config.hostname.clone(),
            connections: Arc::new(Connections::default()),
            rates: Arc::new(SenderRates::new(ctx.store.clone())),
            trusted_proxies,
            shutdown: shutdown.clone(),
            counter: AtomicU64::new(0),
            ctx,
        });
        let mut bound = Vec::new();
        let mut listeners = Vec::new();
        for (service, port) in [
            (Service::Mx, 25),
            (Service::Submission, 587),
            (Service::SubmissionTls, 465),
        ] {
            let addr = SocketAddr::new(config.bind, config.port(port));
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| SmtpError::Bind { addr, source })?;
            let local = listener.local_addr().unwrap_or(addr);
            tracing::info!("{} listening on {local}", service.name());
            bound.push((service.name(), local));
            listeners.push((service, listener));
        }
        for (service, listener) in listeners {
            tokio::spawn(accept_loop(shared.clone(), service, listener));
        }
        tokio::spawn(shared.rates.clone().run(shutdown));
        Ok(bound)
    }
}

/// Accepts until shutdown. A failing accept (out of file descriptors, mostly) waits before
/// the next try, 10 ms doubling to 1 s, back to the start once one succeeds; a burst of
/// failures is logged as its first error and, when accepts work again or every 5 s while they
/// do not, one line with how many there were.
async fn accept_loop(shared: Arc<Shared>, service: Service, listener: TcpListener) {
    const FIRST_DELAY: Duration = Duration::from_millis(10);
    const MAX_DELAY: Duration = Duration::from_secs(1);
    const REPORT_EVERY: Duration = Duration::from_secs(5);
    let mut delay = FIRST_DELAY;
    let mut failures: u64 = 0;
    let mut reported = tokio::time::Instant::now();
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, peer)) => {
                if failures > 1 {
                    tracing::warn!(
                        "{}: accepting again after {failures} failed accepts",
                        service.name()
                    );
                }
                failures = 0;
                delay = FIRST_DELAY;
                tokio::spawn(connection(shared.clone(), service, tcp, peer));
            }
            Err(e) => {
                failures += 1;
                let now = tokio::time::Instant::now();
                if failures == 1 {
                    tracing::warn!("{}: accept failed: {e}", service.name());
                    reported = now;
                } else if now.duration_since(reported) >= REPORT_EVERY {
                    tracing::warn!(
                        "{}: accept still failing ({failures} failures so far): {e}",
                        service.name()
                    );
                    reported = now;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_DELAY);
            }
        }
    }
}

async fn refuse(mut tcp: TcpStream, reply: Reply) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = tcp.write_all(&reply.to_bytes()).await;
        let _ = tcp.shutdown().await;
    })
    .await;
}

async fn connection(shared: Arc<Shared>, service: Service, mut tcp: TcpStream, peer: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let mut client_ip: IpAddr = peer.ip();
    if shared.trusted_proxies.matches(peer.ip()) {
        match mailfleet_proxy_protocol::read_header(&mut tcp, HANDSHAKE_TIMEOUT).await {
            Ok(Some(h)) => client_ip = h.source.ip(),
            Ok(None) => {}
            Err(e) => {
                tracing::info!("{}: from proxy {peer}: {e}", service.name());
                return;
            }
        }
    }
    let policy = shared.policy.current();
    let access = match service {
        Service::Mx => &policy.access_mx,
        Service::Submission | Service::SubmissionTls => &policy.access_submission,
    };
    if !access.permits(client_ip) {
        tracing::info!("{}: {client_ip} refused by access rules", service.name());
        if service == Service::SubmissionTls {
            return;
        }
        refuse(tcp, Reply::new(554, "5.7.1", "access denied")).await;
        return;
    }
    let slot = match shared.connections.acquire(
        client_ip,
        policy.max_connections,
        policy.max_connections_per_ip,
    ) {
        Ok(s) => s,
        Err(why) => {
            tracing::info!(
                "{}: {client_ip} refused: {why:?} connection limit",
                service.name()
            );
            if service != Service::SubmissionTls {
                refuse(
                    tcp,
                    Reply::new(421, "4.7.0", "too many connections, try again later"),
                )
                .await;
            }
            return;
        }
    };
    let conn = if service == Service::SubmissionTls {
        let Some(acceptor) = shared.tls.clone() else {
            return;
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => Conn::Tls(Box::new(s)),
            Ok(Err(e)) => {
                tracing::debug!(
                    "{}: TLS handshake with {client_ip} failed: {e}",
                    service.name()
                );
                return;
            }
            Err(_) => return,
        }
    } else {
        Conn::Plain(tcp)
    };
    Session::new(shared, service, conn, client_ip).run().await;
    drop(slot);
}
