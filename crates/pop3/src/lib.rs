//! mailfleet POP3 server (RFC 1939): 110 with STLS (RFC 2595) and 995 with TLS from the first
//! byte, on the shared `mailfleet-listener` (PROXY header from trusted proxies, access rules
//! `pop3.access.*`, connection limits) and the node's authenticator (the same lockout rows as
//! SMTP).
//!
//! Extensions: CAPA, UIDL, TOP, USER, SASL PLAIN (with an initial response), STLS,
//! RESP-CODES, AUTH-RESP-CODE, PIPELINING. A session:
//! 1. **Authorization**: USER/PASS or AUTH PLAIN, refused before TLS unless
//!    `pop3.auth.allow_cleartext`; wrong credentials `-ERR [AUTH]`, a locked-out address
//!    `-ERR [LOGIN-DELAY]`, a store that cannot be reached `-ERR [SYS/TEMP]`.
//! 2. **The maildrop lock**: a lease `pop3:ACCOUNT_ID` in the store, so a second session on
//!    any node gets `-ERR [IN-USE]`. The lease runs for the idle timeout plus a minute and is
//!    renewed as commands come, so the lock of a node that died runs out by itself.
//! 3. **Transaction**: the INBOX as it was at login (STAT, LIST, UIDL, RETR, TOP, DELE, RSET,
//!    NOOP). UIDL is `UIDVALIDITY.UID`: stable for as long as the mailbox is.
//! 4. **Update** at QUIT: the messages marked with DELE are expunged in one transaction, only
//!    while the session still holds the lock; a session that ends without QUIT deletes nothing.

mod session;
pub mod settings;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mailfleet_cluster::LiveSettings;
use mailfleet_ip_rules::IpRules;
use mailfleet_listener::{Admission, Conn, ConnectionSlot, Connections, Intake, Protocol, Refusal};
use mailfleet_store::{BlobStore, Store};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::settings::Policy;

/// What the POP3 service needs from the node.
#[derive(Clone)]
pub struct Pop3Context {
    pub config: Arc<mailfleet_config::NodeConfig>,
    pub auth: Arc<mailfleet_auth::Authenticator>,
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub settings: LiveSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum Pop3Error {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] mailfleet_tls::TlsError),
    #[error("configuration: {0}")]
    Config(String),
}

/// State shared by the sessions of a node.
pub(crate) struct Shared {
    pub ctx: Pop3Context,
    pub tls: TlsAcceptor,
    pub hostname: String,
    pub shutdown: CancellationToken,
    counter: AtomicU64,
}

impl Shared {
    fn policy(&self) -> Policy {
        Policy::from_settings(&self.ctx.settings.current())
    }

    /// A session id, unique in the cluster: server id, start second, counter.
    fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}{:x}p{:05x}",
            self.ctx.config.server_id,
            mailfleet_store::now(),
            n & 0xfffff
        )
    }
}

/// The POP3 listeners of one node.
pub struct Pop3Server;

impl Pop3Server {
    /// Binds 110 and 995 (or `config.ports`, +port_offset) on every address of `config.bind` and serves until `shutdown`; returns
    /// (service name, bound address) pairs.
    pub async fn start(
        ctx: Pop3Context,
        shutdown: CancellationToken,
    ) -> Result<Vec<(&'static str, SocketAddr)>, Pop3Error> {
        Self::start_with(ctx, Intake::until(&shutdown), shutdown).await
    }

    /// [`Self::start`] whose listeners close when `intake.accepting` is cancelled (sessions go
    /// on until `shutdown`), their sessions tracked in `intake.sessions`.
    pub async fn start_with(
        ctx: Pop3Context,
        intake: Intake,
        shutdown: CancellationToken,
    ) -> Result<Vec<(&'static str, SocketAddr)>, Pop3Error> {
        let config = ctx.config.clone();
        let tls = mailfleet_tls::load(&config.tls.pairs(), &config.data_dir, &config.hostname)?;
        let trusted_proxies = IpRules::parse(&config.trusted_proxies)
            .map_err(|e| Pop3Error::Config(format!("trusted_proxies: {e}")))?;
        let shared = Arc::new(Shared {
            tls: TlsAcceptor::from(tls.config.clone()),
            hostname: config.hostname.clone(),
            shutdown: shutdown.clone(),
            counter: AtomicU64::new(0),
            ctx,
        });
        let port = |name, port, implicit_tls: bool| mailfleet_listener::Port {
            addrs: config.listen_addrs(port),
            protocol: Arc::new(Pop3Service {
                shared: shared.clone(),
                name,
            }),
            implicit_tls: implicit_tls.then(|| shared.tls.clone()),
        };
        mailfleet_listener::bind_and_serve(
            vec![
                port("pop3", config.ports.pop3, false),
                port("pop3s", config.ports.pop3s, true),
            ],
            &Arc::new(Connections::default()),
            &trusted_proxies,
            &intake,
        )
        .map_err(|e| Pop3Error::Bind {
            addr: e.addr,
            source: e.source,
        })
    }
}

/// One POP3 port as a [`Protocol`] of the shared listener.
struct Pop3Service {
    shared: Arc<Shared>,
    name: &'static str,
}

impl Protocol for Pop3Service {
    fn name(&self) -> &'static str {
        self.name
    }

    fn admission(&self) -> Admission {
        let policy = self.shared.policy();
        Admission {
            access: policy.access,
            max_connections: policy.max_connections,
            max_connections_per_ip: policy.max_connections_per_ip,
            per_ip_exceptions: policy.limit_exceptions,
        }
    }

    fn refusal(&self, why: Refusal) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        match why {
            Refusal::Access => mailfleet_pop3_proto::err(&mut out, None, "access denied"),
            Refusal::Limit(_) => mailfleet_pop3_proto::err(
                &mut out,
                Some(mailfleet_pop3_proto::RespCode::SysTemp),
                "too many connections, try again later",
            ),
        }
        Some(out)
    }

    async fn serve(self: Arc<Self>, conn: Conn, client_ip: IpAddr, slot: ConnectionSlot) {
        session::Session::new(self.shared.clone(), conn, client_ip)
            .run(slot)
            .await;
    }
}
