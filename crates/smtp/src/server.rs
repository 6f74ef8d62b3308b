//! Listeners: bind 25, 587 and 465 (or the node file's `[ports]`, + port_offset) and hand each to the shared
//! `mailfleet-listener` (PROXY header from trusted proxies, access rules, connection limits
//! counted over the three ports together, implicit TLS on 465, accept back-off), which runs a
//! session per connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::session::{Service, Session};
use crate::settings::LivePolicy;
use crate::shared_limits::SenderRates;
use crate::{SmtpContext, SmtpError};
use mailfleet_ip_rules::IpRules;
use mailfleet_listener::{Admission, Conn, ConnectionSlot, Connections, Intake, Protocol, Refusal};
use mailfleet_smtp_proto::Reply;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

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
    /// Binds the ports of `config.ports` that are on (25/587/465 by default, +port_offset) on
    /// every address of `config.bind` and serves until `shutdown`; returns (service name,
    /// bound address) pairs once all are listening.
    pub async fn start(
        ctx: SmtpContext,
        shutdown: CancellationToken,
    ) -> Result<Vec<(&'static str, SocketAddr)>, SmtpError> {
        Self::start_with(ctx, Intake::until(&shutdown), shutdown).await
    }

    /// [`Self::start`] whose listeners close when `intake.accepting` is cancelled (sessions go
    /// on until `shutdown`), their sessions tracked in `intake.sessions`.
    pub async fn start_with(
        ctx: SmtpContext,
        intake: Intake,
        shutdown: CancellationToken,
    ) -> Result<Vec<(&'static str, SocketAddr)>, SmtpError> {
        let config = ctx.config.clone();
        let tls = mailfleet_tls::load(&config.tls.pairs(), &config.data_dir, &config.hostname)?;
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
        let port = |service: Service, port| mailfleet_listener::Port {
            addrs: config.listen_addrs(port),
            protocol: Arc::new(SmtpService {
                shared: shared.clone(),
                service,
            }),
            implicit_tls: if service == Service::SubmissionTls {
                shared.tls.clone()
            } else {
                None
            },
        };
        let bound = mailfleet_listener::bind_and_serve(
            vec![
                port(Service::Mx, config.ports.smtp),
                port(Service::Submission, config.ports.submission),
                port(Service::SubmissionTls, config.ports.submissions),
            ],
            &shared.connections,
            &shared.trusted_proxies,
            &intake,
        )
        .map_err(|e| SmtpError::Bind {
            addr: e.addr,
            source: e.source,
        })?;
        tokio::spawn(shared.rates.clone().run(shutdown));
        Ok(bound)
    }
}

/// One SMTP port as a [`Protocol`] of the shared listener.
struct SmtpService {
    shared: Arc<Shared>,
    service: Service,
}

impl Protocol for SmtpService {
    fn name(&self) -> &'static str {
        self.service.name()
    }

    fn admission(&self) -> Admission {
        let policy = self.shared.policy.current();
        let access = match self.service {
            Service::Mx => &policy.access_mx,
            Service::Submission | Service::SubmissionTls => &policy.access_submission,
        };
        Admission {
            access: access.clone(),
            max_connections: policy.max_connections,
            max_connections_per_ip: policy.max_connections_per_ip,
            per_ip_exceptions: policy.limit_exceptions.clone(),
        }
    }

    fn refusal(&self, why: Refusal) -> Option<Vec<u8>> {
        let reply = match why {
            Refusal::Access => Reply::new(554, "5.7.1", "access denied"),
            Refusal::Limit(_) => Reply::new(421, "4.7.0", "too many connections, try again later"),
        };
        Some(reply.to_bytes())
    }

    async fn serve(self: Arc<Self>, conn: Conn, client_ip: IpAddr, slot: ConnectionSlot) {
        Session::new(self.shared.clone(), self.service, conn, client_ip)
            .run(slot)
            .await;
    }
}
