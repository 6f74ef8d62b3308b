//! mailfleet SMTP server: MX (25), submission (587, STARTTLS) and implicit-TLS submission (465),
//! with local delivery.
//!
//! - [`SmtpServer::start`] binds the three listeners and serves until the shutdown token fires.
//! - [`settings`] lists the cluster settings (`smtp.*`) that steer policy live, with
//!   [`settings::validate`] for `mailfleet settings set`.
//! - Recipients are resolved and messages committed by `mailfleet-delivery`, which the
//!   outbound queue uses too (bounces to local senders).
//!
//! Protocol: RFC 5321 with PIPELINING, SIZE, 8BITMIME, ENHANCEDSTATUSCODES, STARTTLS,
//! AUTH PLAIN/LOGIN (only under TLS unless `smtp.auth.allow_cleartext`), SMTPUTF8, CHUNKING
//! (BDAT) and DSN parameters. Parsing is in the sans-IO `mailfleet-smtp-proto` crate.
//!
//! Policy, in the order a connection meets it:
//! 1. the client's address is the PROXY header's source when the peer is in the node's
//!    `trusted_proxies`, else the socket's peer; access rules (`smtp.access.{mx,submission}.*`)
//!    and connection limits apply to it;
//! 2. AUTH goes through the node's `mailfleet-auth` authenticator: attempts count per address
//!    on all nodes together (in the store, reserved before the password is checked); past
//!    `auth.lockout_failures` the address gets `454 4.7.0` for `auth.lockout_seconds`; a good
//!    login is remembered for `auth.cache_seconds` (keys shared with IMAP and POP3);
//! 3. on 587/465, MAIL needs AUTH (`530 5.7.0`); an authenticated sender must be the user's
//!    address or an alias leading to it (`smtp.sender_must_match`);
//! 4. RCPT: `<Postmaster>` and `postmaster@` a local domain are always accepted (to an account
//!    or alias of that name, else to `smtp.postmaster`); a local domain's unknown user gets
//!    `550 5.1.1`; a full mailbox `452 4.2.2`; a domain that is not local `554 5.7.1` unless
//!    authenticated — source routes are dropped before the check, `%`, `!` and quoted local
//!    parts never name a local user, and a trailing dot is a syntax error, so none of them
//!    relays;
//! 5. DATA/BDAT: over `smtp.max_message_size` → `552 5.3.4` (a BDAT chunk before it is sent);
//!    slower than `smtp.data_min_rate` after `smtp.command_deadline_seconds` → `421 4.4.2`;
//!    on submission a `From:` address that is not the user's → `550 5.7.1`
//!    (`smtp.submission.check_from_header`); a bare CR or LF → `550 5.6.0`;
//!    a mailbox the message would overfill → `552 5.2.2` when every mailbox is full, else it is
//!    handed to the queue (which bounces it with 5.2.2 if it is still full) and the others get
//!    the message; then `Return-Path` and `Received` are added and `250` is sent only after
//!    the blob is fsynced and the transaction committed.

mod server;
mod session;
pub mod settings;
pub mod shared_limits;

use std::net::SocketAddr;
use std::sync::Arc;

use mailfleet_store::{BlobStore, Store};

pub use server::SmtpServer;
pub use session::Service;

/// What the SMTP service needs from the node.
#[derive(Clone)]
pub struct SmtpContext {
    pub config: Arc<mailfleet_config::NodeConfig>,
    /// The node's authenticator, shared with its other services.
    pub auth: Arc<mailfleet_auth::Authenticator>,
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub settings: mailfleet_cluster::LiveSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("cannot listen on {addr}: {source}")]
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
