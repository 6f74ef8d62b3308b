//! mailfleet IMAP server: 143 with STARTTLS and 993 with TLS from the first byte, on the shared
//! `mailfleet-listener` (PROXY header from trusted proxies, access rules `imap.access.*`,
//! connection limits) and the node's authenticator (the same lockout rows as SMTP and POP3).
//!
//! IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) over the sans-IO `mailfleet-imap-proto`;
//! every piece of state is in the store, so a session on any node sees the same mailboxes.
//!
//! # Files
//! - `session.rs`: the read/decode/answer loop, the connection states, literals, the untagged
//!   updates a command may carry (RFC 9051 §7.5.1: no EXPUNGE during FETCH, STORE or SEARCH).
//! - `selected.rs`: the selected mailbox as the session knows it (sequence numbers, flags,
//!   MODSEQ) and how it catches up with the store.
//! - `notify.rs`: one change poller per node, never one per session.
//! - `auth.rs`: CAPABILITY, STARTTLS, LOGIN, AUTHENTICATE, ENABLE, ID, UNAUTHENTICATE.
//! - `compress.rs`: COMPRESS=DEFLATE (RFC 4978).
//! - `mailboxes.rs`: CREATE, DELETE, RENAME, SUBSCRIBE, LIST, LSUB, NAMESPACE, STATUS, quota.
//! - `select.rs`: SELECT, EXAMINE, CLOSE, UNSELECT, EXPUNGE, CHECK, NOOP, IDLE.
//! - `fetch.rs` and `sections.rs`: FETCH from stored metadata and blob reads.
//! - `flags.rs`: STORE. `copy.rs`: COPY and MOVE. `append.rs`: APPEND. `search.rs`: SEARCH,
//!   SORT, THREAD over `mailfleet-imap-search`.
//! - `convert.rs`: `mailfleet-message` metadata into the protocol crate's ENVELOPE and
//!   BODYSTRUCTURE.

mod append;
mod auth;
mod compress;
mod convert;
mod copy;
mod fetch;
mod flags;
mod mailboxes;
mod metacache;
mod msglist;
pub mod notify;
mod search;
mod sections;
mod select;
mod selected;
mod session;
pub mod settings;
mod snapshots;
mod threadcache;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mailfleet_cluster::LiveSettings;
use mailfleet_imap_proto::{Code, Data, Response, Status};
use mailfleet_ip_rules::IpRules;
use mailfleet_listener::{Admission, Conn, ConnectionSlot, Connections, Intake, Protocol, Refusal};
use mailfleet_store::{BlobStore, Spool, Store};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::notify::Watcher;
use crate::settings::Policy;

/// What the IMAP service needs from the node.
#[derive(Clone)]
pub struct ImapContext {
    pub config: Arc<mailfleet_config::NodeConfig>,
    pub auth: Arc<mailfleet_auth::Authenticator>,
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub settings: LiveSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
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
    #[error("cannot prepare the spool directory {path}")]
    Spool {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// State shared by the sessions of a node.
pub(crate) struct Shared {
    pub ctx: ImapContext,
    pub tls: TlsAcceptor,
    pub hostname: String,
    pub shutdown: CancellationToken,
    pub watcher: Arc<Watcher>,
    pub spool: Spool,
    pub meta_cache: Arc<metacache::MetaCache>,
    pub thread_cache: threadcache::ThreadCache,
    pub snapshots: Arc<snapshots::Snapshots>,
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
            "{}{:x}i{:05x}",
            self.ctx.config.server_id,
            mailfleet_store::now(),
            n & 0xfffff
        )
    }
}

/// The IMAP listeners of one node.
pub struct ImapServer;

impl ImapServer {
    /// Binds 143 and 993 (or `config.ports`, +port_offset) on every address of `config.bind`, starts the node's change poller and
    /// serves until `shutdown`; returns (service name, bound address) pairs.
    pub async fn start(
        ctx: ImapContext,
        shutdown: CancellationToken,
    ) -> Result<Vec<(&'static str, SocketAddr)>, ImapError> {
        Self::start_with(ctx, Intake::until(&shutdown), shutdown).await
    }

    /// [`Self::start`] whose listeners close when `intake.accepting` is cancelled (sessions go
    /// on until `shutdown`), their sessions tracked in `intake.sessions`.
    pub async fn start_with(
        ctx: ImapContext,
        intake: Intake,
        shutdown: CancellationToken,
    ) -> Result<Vec<(&'static str, SocketAddr)>, ImapError> {
        let config = ctx.config.clone();
        let tls = mailfleet_tls::load(&config.tls.pairs(), &config.data_dir, &config.hostname)?;
        let trusted_proxies = IpRules::parse(&config.trusted_proxies)
            .map_err(|e| ImapError::Config(format!("trusted_proxies: {e}")))?;
        let spool = Spool::new(
            config.temp_dir(),
            &format!("{}-imap", config.server_id),
            mailfleet_store::spool::DEFAULT_THRESHOLD,
        );
        spool.prepare().map_err(|source| ImapError::Spool {
            path: spool.dir().display().to_string(),
            source,
        })?;
        let watcher = Watcher::spawn(ctx.store.clone(), shutdown.clone());
        let shared = Arc::new(Shared {
            tls: TlsAcceptor::from(tls.config.clone()),
            hostname: config.hostname.clone(),
            shutdown: shutdown.clone(),
            counter: AtomicU64::new(0),
            watcher,
            spool,
            meta_cache: Arc::new(metacache::MetaCache::default()),
            thread_cache: threadcache::ThreadCache::default(),
            snapshots: Arc::new(snapshots::Snapshots::default()),
            ctx,
        });
        let port = |name, port, implicit_tls: bool| mailfleet_listener::Port {
            addrs: config.listen_addrs(port),
            protocol: Arc::new(ImapService {
                shared: shared.clone(),
                name,
            }),
            implicit_tls: implicit_tls.then(|| shared.tls.clone()),
        };
        mailfleet_listener::bind_and_serve(
            vec![
                port("imap", config.ports.imap, false),
                port("imaps", config.ports.imaps, true),
            ],
            &Arc::new(Connections::default()),
            &trusted_proxies,
            &intake,
        )
        .map_err(|e| ImapError::Bind {
            addr: e.addr,
            source: e.source,
        })
    }
}

/// One IMAP port as a [`Protocol`] of the shared listener.
struct ImapService {
    shared: Arc<Shared>,
    name: &'static str,
}

impl Protocol for ImapService {
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
        let (code, text) = match why {
            Refusal::Access => (None, "access denied"),
            Refusal::Limit(_) => (Some(Code::Unavailable), "too many connections, try later"),
        };
        Some(
            Response::Untagged(Data::Condition {
                status: Status::Bye,
                code,
                text: text.into(),
            })
            .to_bytes(),
        )
    }

    async fn serve(self: Arc<Self>, conn: Conn, client_ip: IpAddr, slot: ConnectionSlot) {
        session::Session::new(self.shared.clone(), conn, client_ip)
            .run(slot)
            .await;
    }
}
