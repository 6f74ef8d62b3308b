//! mailfleet outbound queue: delivery to remote MX hosts and smart hosts, retries, DSN.
//!
//! Queue items live in the store, so any node can deliver any item (DESIGN.md §3). A
//! [`QueueWorker`] claims due items with an expiring lease (`claim_queue`; `SKIP LOCKED` on
//! PostgreSQL): while the lease runs no other node gets the item. While an attempt runs, the
//! worker renews the lease every third of `queue.lease` (to now + `queue.lease`), so an attempt
//! may outlast the lease (a large message to a slow server); `queue.attempt_timeout` bounds it
//! instead, after which its open recipients are deferred. If a renewal finds the lease passed
//! on (or the item gone), or renewals fail until the lease runs out, the attempt stops at once
//! and records nothing: the item may be in another node's hands. A node that dies
//! mid-delivery stops renewing; once its lease expires another node claims and retries the
//! item. The result is written back with the lease holder's name, and refused if the lease
//! passed on. Leases are whole seconds of wall-clock time, so nodes' clocks must agree to well
//! within `queue.lease`.
//!
//! Items past `queue.lifetime` that no worker holds are given up by the master's lifetime
//! sweep ([`sweep`]), as an attempt past the lifetime would give them up.
//!
//! # An attempt
//!
//! The pending recipients of an item are grouped by route, one SMTP session per route:
//! - a recipient in a local domain goes to its mailbox through the SMTP crate's local delivery
//!   (bounces to local senders end up here);
//! - otherwise `queue.transport.<domain>` (or `queue.transport.*`) picks a fixed host, another
//!   domain's MX, or the smart host; without an entry the smart host (`queue.smarthost`) if set,
//!   else the domain's MX hosts.
//!
//! MX lookup uses hickory-resolver with `queue.dns_servers` (else the system resolver): MX hosts
//! by preference, equal ones in random order; no MX records → the domain's own A/AAAA
//! (RFC 5321 §5.1); a null MX (RFC 7505) or a domain that does not exist → permanent failure.
//! A host that cannot be reached or refuses the session before RCPT is skipped for the next.
//!
//! STARTTLS (`queue.tls`): `opportunistic` uses it when offered and **accepts any certificate**:
//! MX hosts found through plain DNS cannot be authenticated anyway, and refusing would only send
//! mail in clear text; it still protects against passive eavesdropping. If the handshake fails,
//! the host is retried without TLS. `required` demands STARTTLS and a certificate valid for the
//! host name under the webpki roots, else the attempt is deferred. `none` never uses it.
//! AUTH (PLAIN, or LOGIN when PLAIN is not offered) is only sent to the smart host, and only
//! under TLS unless `queue.smarthost.allow_cleartext` is true.
//!
//! Per recipient: 2xx delivered; 5xx failed (a DSN to the sender if NOTIFY allows); 4xx, a lost
//! connection or a DNS failure deferred. Deferred recipients are retried after the next wait
//! of `queue.retry_schedule` (the last one repeats). After `queue.delay_warning` the sender gets
//! one delay notice; after `queue.lifetime` the remaining recipients fail with `5.4.7` and are
//! bounced. Notifications are RFC 3464 `multipart/report` messages with the original message
//! (RET=FULL, or by default when at most 1 MiB) or its header (RET=HDRS, delay notices); they
//! are queued with an empty reverse path and never bounced themselves. DSN parameters (NOTIFY,
//! ORCPT, RET, ENVID) are passed on to next hops that announce DSN; `NOTIFY=SUCCESS` to one
//! that does not gets a `relayed` notice.
//!
//! # Settings (cluster-wide, live)
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `queue.dns_servers` | system | comma-separated `ip`, `ip:port` or `[v6]:port` |
//! | `queue.retry_schedule` | `5m,15m,30m,1h,2h,4h` | waits between attempts; the last repeats |
//! | `queue.lifetime` | `5d` | retry this long, then bounce |
//! | `queue.delay_warning` | `4h` | one delay notice after this long; empty = none |
//! | `queue.lease` | `300s` | how long a claim lasts unless renewed (every third of it, while delivering) |
//! | `queue.attempt_timeout` | `30m` | longest one attempt may run; then its open recipients are deferred |
//! | `queue.concurrency` | `16` | items delivered at once per node |
//! | `queue.poll_interval` | `5s` | how often an idle node looks for due items |
//! | `queue.connect_timeout` | `30s` | TCP connect timeout per address |
//! | `queue.command_timeout` | `5m` | wait for one SMTP reply |
//! | `queue.port` | `25` | port for MX hosts and transports without one |
//! | `queue.tls` | `opportunistic` | `opportunistic`, `required` or `none` (see above) |
//! | `queue.smarthost` | none | `host[:port]` to relay all remote mail through |
//! | `queue.smarthost.username` / `.password` | none | AUTH credentials |
//! | `queue.smarthost.allow_cleartext` | `false` | allow AUTH without TLS |
//! | `queue.transport.<domain>` | none | `host[:port]`, `mx:<domain>` or `smarthost`; `*` = any |
//!
//! Durations are written like `30s`, `5m`, `4h`, `5d`. [`settings::validate`] checks a value
//! for `mailfleet settings set`; [`settings::KEYS`] lists the fixed keys.

mod attempt;
pub mod client;
pub mod deliver;
pub mod dns;
pub mod dsn;
mod lease;
mod local;
pub mod outcome;
pub mod settings;
pub mod sweep;
pub mod tls;
mod worker;

use std::sync::Arc;

use mailfleet_store::{BlobStore, Store};

pub use worker::QueueWorker;

/// What the queue needs from the node.
#[derive(Clone)]
pub struct QueueContext {
    pub config: Arc<mailfleet_config::NodeConfig>,
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub settings: mailfleet_cluster::LiveSettings,
    /// How many items the node's worker holds now (claimed and being delivered), kept by the
    /// worker for the node's heartbeat, so that no store query is needed to tell.
    pub held: Arc<std::sync::atomic::AtomicUsize>,
}
