//! The SMTP service over real sockets, driven by Python's smtplib and raw-socket scenarios
//! (`tests/client.py`) and by swaks. Each test starts its own server on 127.0.0.1; the
//! scenarios that touch the store run on SQLite and on PostgreSQL.

mod common;

use std::time::Duration;

use common::{Backend, Options, PASSWORD, Server, start};
use mailfleet_store::NewAccount;

fn text(m: &[u8]) -> String {
    String::from_utf8_lossy(m).into_owned()
}

fn opts(settings: &[(&'static str, &str)]) -> Options {
    Options {
        settings: settings.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        ..Options::default()
    }
}

/// `o` on `backend`.
fn on(backend: Backend, o: Options) -> Options {
    Options { backend, ..o }
}

/// One test per backend for each `async fn name(backend: Backend)`: `on_sqlite::name` and
/// `on_postgres::name` (a throwaway PostgreSQL server each), so a failure on one backend does
/// not hide the other.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Backend::Sqlite).await
            })*
        }
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Backend::Postgres).await
            })*
        }
    };
}

// The scenarios that write to or read from the store run on both backends.
both_backends!(
    basic_codes_and_trace_headers,
    open_relay_tricks_are_all_refused,
    relay_networks_relay_without_auth_only_when_listed,
    pipelining_batches,
    bdat_chunks,
    split_writes_are_acknowledged_at_once,
    utf8_addresses_and_8bit_bodies,
    submission_starttls_then_auth,
    submission_adds_missing_date_and_message_id,
    implicit_tls_and_starttls_on_mx,
    long_lines,
    access_rules_in_every_syntax_apply_live,
    recipient_and_rate_limits,
    auth_lockout_after_failures,
    lockout_and_sender_rate_hold_across_nodes,
    quota_at_rcpt_and_at_end_of_data,
    small_messages_inline_with_a_blob_directory,
    delivery_with_blobs_in_the_database,
    aliases_catch_all_and_remote_targets,
    dsn_parameters_reach_the_queue,
    deliver_to_addresses_for_bounces,
);

fn subjects(msgs: &[Vec<u8>]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| {
            text(m)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
        })
        .collect()
}

async fn with_sales_alias(s: &Server) {
    s.store
        .add_alias(
            "sales@example.test",
            &[
                "alice@example.test".into(),
                "bob@example.test".into(),
                "partner@remote.test".into(),
            ],
        )
        .await
        .unwrap();
}

/// The aliases the `aliases` client scenario needs: sales, a catch-all to alice, and a loop.
async fn with_alias_scenario(s: &Server) {
    with_sales_alias(s).await;
    s.store
        .add_alias("@example.test", &["alice@example.test".into()])
        .await
        .unwrap();
    for (from, to) in [("loop1", "loop2"), ("loop2", "loop1")] {
        s.store
            .add_alias(
                &format!("{from}@example.test"),
                &[format!("{to}@example.test")],
            )
            .await
            .unwrap();
    }
}

async fn basic_codes_and_trace_headers(backend: Backend) {
    let s = start(on(backend, Options::default())).await;
    s.store
        .add_alias("postmaster@example.test", &["bob@example.test".into()])
        .await
        .unwrap();
    // mx.example.test is not a local domain; Postmaster falls back to example.test.
    s.client("basic", &[]).await;
    let alice = s.inbox("alice@example.test").await;
    assert_eq!(subjects(&alice), ["basic one"]);
    let m = text(&alice[0]);
    assert!(
        m.starts_with(
            "Return-Path: <sender@remote.test>\r\nReceived: from client.test ([127.0.0.1])"
        ),
        "{m}"
    );
    assert!(
        m.contains("by mx.example.test (mailfleet) with ESMTP"),
        "{m}"
    );
    assert!(m.contains("for <alice@example.test>;"), "{m}");
    let bob = s.inbox("bob@example.test").await;
    assert_eq!(subjects(&bob), ["basic two", "to postmaster"]);
    assert!(text(&bob[1]).contains("Return-Path: <>") && text(&bob[1]).contains(" with SMTP"));
    assert!(s.store.list_queue().await.unwrap().is_empty());
}

async fn open_relay_tricks_are_all_refused(backend: Backend) {
    let s = start(on(backend, opts(&[("smtp.max_errors", "1000")]))).await;
    let out = s.client("relay", &[]).await;
    assert!(out.contains("relay tricks refused"), "{out}");
    assert!(
        s.store.list_queue().await.unwrap().is_empty(),
        "something was queued"
    );
    assert!(s.inbox("alice@example.test").await.is_empty());
}

async fn relay_networks_relay_without_auth_only_when_listed(backend: Backend) {
    let s = start(on(backend, Options::default())).await;
    s.client("relay_networks", &["closed"]).await;
    // Another network listed: still closed for 127.0.0.1.
    s.set("smtp.relay_networks", "10.0.0.0/8, 192.168.*.*")
        .await;
    s.client("relay_networks", &["closed"]).await;
    assert!(s.store.list_queue().await.unwrap().is_empty());
    s.set("smtp.relay_networks", "10.0.0.0/8, 127.0.0.1").await;
    s.client("relay_networks", &["open"]).await;
    let queue = s.store.list_queue().await.unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].sender, "app@example.test");
    assert_eq!(queue[0].recipients[0].address, "customer@remote.test");
}

async fn pipelining_batches(backend: Backend) {
    let s = start(on(backend, Options::default())).await;
    s.client("pipelining", &[]).await;
    assert_eq!(
        subjects(&s.inbox("alice@example.test").await),
        ["pipelined"]
    );
    assert_eq!(
        subjects(&s.inbox("bob@example.test").await),
        ["pipelined", "pipelined two"]
    );
}

async fn bdat_chunks(backend: Backend) {
    let s = start(on(backend, Options::default())).await;
    s.client("bdat", &[]).await;
    let inbox = s.inbox("alice@example.test").await;
    assert_eq!(subjects(&inbox), ["chunked", "chunked"]);
    assert!(text(&inbox[0]).ends_with("\r\n\r\nline one\r\nline two\r\n"));
}

/// A body and its final dot (or a BDAT command and its chunk) written apart with Nagle's
/// algorithm on: each message takes well under the kernel's delayed ACK.
async fn split_writes_are_acknowledged_at_once(backend: Backend) {
    let s = start(on(backend, Options::default())).await;
    s.client("split_writes", &[]).await;
    assert_eq!(s.inbox("alice@example.test").await.len(), 18);
}

async fn utf8_addresses_and_8bit_bodies(backend: Backend) {
    let s = start(on(backend, Options::default())).await;
    s.store
        .create_account(&NewAccount {
            address: "zoë@example.test".into(),
            password_hash: mailfleet_store::password::hash_password("x").unwrap(),
            quota_bytes: 0,
            shard: "default".into(),
        })
        .await
        .unwrap();
    s.client("utf8", &[]).await;
    let zoe = s.inbox("zoë@example.test").await;
    assert_eq!(zoe.len(), 1);
    let m = text(&zoe[0]);
    assert!(
        m.contains("Return-Path: <jörg@bücher.test>") && m.contains("with UTF8SMTP"),
        "{m}"
    );
    assert!(m.contains("Äpfel und Bären"));
    let alice = s.inbox("alice@example.test").await;
    assert!(
        alice[0].ends_with(b"\xe9t\xe9 \xff\r\n"),
        "8-bit bytes kept"
    );
}

async fn submission_starttls_then_auth(backend: Backend) {
    let s = start(on(backend, Options::default())).await;
    with_sales_alias(&s).await;
    s.client("starttls_auth", &[]).await;
    let bob = s.inbox("bob@example.test").await;
    assert_eq!(subjects(&bob), ["submitted"]);
    assert!(
        text(&bob[0]).contains("with ESMTPSA (TLSv1_3"),
        "{}",
        text(&bob[0])
    );
    let queue = s.store.list_queue().await.unwrap();
    let rcpts: Vec<_> = queue
        .iter()
        .flat_map(|q| q.recipients.iter().map(|r| r.address.clone()))
        .collect();
    assert_eq!(rcpts, ["friend@remote.test", "other@remote.test"]);
    assert_eq!(queue[0].sender, "alice@example.test");
    assert_eq!(queue[1].sender, "sales@example.test");
}

async fn submission_adds_missing_date_and_message_id(backend: Backend) {
    let s = start(on(backend, Options::default())).await;
    s.client("missing_headers", &[]).await;
    let alice = s.inbox("alice@example.test").await;
    assert_eq!(subjects(&alice), ["bare", "complete", "bare via mx"]);
    let count = |m: &[u8], name: &str| {
        text(m)
            .lines()
            .take_while(|l| !l.is_empty())
            .filter(|l| l.to_ascii_lowercase().starts_with(name))
            .count()
    };
    let bare = text(&alice[0]);
    assert_eq!(count(&alice[0], "date:"), 1, "{bare}");
    assert_eq!(count(&alice[0], "message-id:"), 1, "{bare}");
    assert!(bare.contains("@mx.example.test>\r\n"), "{bare}");
    let complete = text(&alice[1]);
    assert_eq!(count(&alice[1], "message-id:"), 1, "{complete}");
    assert!(complete.contains("Message-ID: <complete@client.test>"));
    assert!(complete.contains("Date: Mon, 23 Nov 2026 10:00:00 +0000"));
    assert_eq!(count(&alice[1], "date:"), 1, "{complete}");
    assert_eq!(
        count(&alice[2], "message-id:"),
        0,
        "MX mail is left as it came"
    );
    assert_eq!(count(&alice[2], "date:"), 0, "MX mail is left as it came");
}

async fn implicit_tls_and_starttls_on_mx(backend: Backend) {
    let s = start(on(backend, Options::default())).await;
    s.client("implicit_tls", &[]).await;
    assert_eq!(
        subjects(&s.inbox("alice@example.test").await),
        ["over 465", "mx over tls"]
    );
    // The self-signed certificate was made and kept.
    assert!(s.dir.path().join("tls/self-signed.pem").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused() {
    let s = start(opts(&[("smtp.max_message_size", "5000")])).await;
    s.client("oversize", &[]).await;
    assert!(s.inbox("alice@example.test").await.is_empty());
}

async fn long_lines(backend: Backend) {
    let s = start(on(backend, Options::default())).await;
    s.client("long_lines", &[]).await;
    let inbox = s.inbox("alice@example.test").await;
    assert!(text(&inbox[0]).contains(&"z".repeat(20000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_with_bare_line_endings_is_refused() {
    let s = start(Options::default()).await;
    s.client("smuggling", &[]).await;
    assert!(s.inbox("alice@example.test").await.is_empty());
    assert!(s.inbox("bob@example.test").await.is_empty());
}

async fn access_rules_in_every_syntax_apply_live(backend: Backend) {
    let s = start(on(backend, Options::default())).await;
    s.client("welcome", &["mx"]).await;
    for rule in [
        "127.0.0.1",
        "127.0.0.0/8",
        "127.0.0.0-127.0.0.5",
        "127.*.*.*",
        "10.0.0.1, 127.0.*.*",
    ] {
        s.set("smtp.access.mx.deny", rule).await;
        s.client("refused", &["mx"]).await;
        // Submission has its own list.
        s.client("welcome", &["sub"]).await;
    }
    s.set("smtp.access.mx.deny", "").await;
    s.client("welcome", &["mx"]).await;
    // An allow list that does not name us shuts us out; one that does lets us in.
    s.set("smtp.access.submission.allow", "192.168.*.*").await;
    s.client("refused", &["sub"]).await;
    s.set("smtp.access.submission.allow", "192.168.*.*;127.0.0.1")
        .await;
    s.client("welcome", &["sub"]).await;
    // Deny wins over allow.
    s.set("smtp.access.submission.deny", "127.0.0.1-127.0.0.1")
        .await;
    s.client("refused", &["sub"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v2_is_honoured_from_trusted_peers() {
    let s = start(Options {
        settings: vec![("smtp.access.mx.deny", "192.0.2.0/24".into())],
        trusted_proxies: vec!["127.0.0.1"],
        ..Options::default()
    })
    .await;
    s.client("proxy", &["192.0.2.9", "554"]).await;
    s.client("proxy", &["198.51.100.7", "220"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_v2_is_ignored_from_untrusted_peers() {
    let s = start(Options {
        settings: vec![("smtp.access.mx.deny", "192.0.2.0/24".into())],
        trusted_proxies: vec!["127.0.0.2"],
        ..Options::default()
    })
    .await;
    s.client("proxy_untrusted", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits() {
    let s = start(opts(&[("smtp.max_connections_per_ip", "3")])).await;
    s.client("connections", &["3"]).await;
    s.set("smtp.max_connections_per_ip", "50").await;
    s.set("smtp.max_connections", "2").await;
    s.client("connections", &["2"]).await;
}

/// Clients that never hold more connections than the per-address limit are never refused,
/// however fast they reconnect (the slot is free before they read 221); one more than the
/// limit at once is, unless its address is in `smtp.limit_exceptions`, which holds
/// `smtp.relay_networks` by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limit_and_its_exceptions() {
    let s = start(opts(&[("smtp.max_connections_per_ip", "8")])).await;
    s.client("reconnect_loop", &["8", "40"]).await;
    s.client("over_limit", &["8", "421"]).await;
    s.set("smtp.relay_networks", "127.0.0.0/8").await;
    s.client("over_limit", &["8", "220"]).await;
    s.set("smtp.limit_exceptions", "").await;
    s.client("over_limit", &["8", "421"]).await;
    s.set("smtp.limit_exceptions", "192.0.2.1, 127.0.0.1").await;
    s.client("over_limit", &["8", "220"]).await;
}

async fn recipient_and_rate_limits(backend: Backend) {
    let s = start(on(
        backend,
        opts(&[
            ("smtp.max_recipients", "2"),
            ("smtp.rate.messages_per_sender_per_minute", "2"),
        ]),
    ))
    .await;
    s.client("recipients", &[]).await;
    s.client("rate", &[]).await;
}

async fn auth_lockout_after_failures(backend: Backend) {
    let s = start(on(backend, opts(&[("auth.lockout_failures", "3")]))).await;
    s.client("lockout", &[]).await;
}

/// Waits (at most 10 s) until the nodes' once-a-second writes put `n` messages of `sender`
/// in the store.
async fn written(s: &Server, sender: &str, n: i64) {
    let t0 = std::time::Instant::now();
    while s.store.rate_events_since(sender, 0).await.unwrap() < n {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{n} messages of {sender} not written within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two nodes on one store: failed logins and a sender's messages count for both, as they
/// would behind the balancer.
async fn lockout_and_sender_rate_hold_across_nodes(backend: Backend) {
    let a = start(on(
        backend,
        opts(&[
            ("auth.lockout_failures", "3"),
            ("smtp.rate.messages_per_sender_per_minute", "2"),
        ]),
    ))
    .await;
    let b = a.second_node().await;
    a.client("login", &["wrong", "535"]).await;
    a.client("login", &["wrong", "535"]).await;
    b.client("login", &["wrong", "535"]).await;
    // Three failures across the two nodes: both refuse even the right password.
    a.client("login", &[PASSWORD, "454"]).await;
    b.client("login", &[PASSWORD, "454"]).await;
    b.client("send_as", &["bob@example.test", "250"]).await;

    // One message through each node fills the sender's two a minute; a node sees the
    // other's after its once-a-second write.
    a.client("send_as", &["busy@remote.test", "250"]).await;
    written(&a, "busy@remote.test", 1).await;
    b.client("send_as", &["busy@remote.test", "250"]).await;
    b.client("send_as", &["busy@remote.test", "450"]).await;
    written(&a, "busy@remote.test", 2).await;
    a.client("send_as", &["busy@remote.test", "450"]).await;
    a.client("send_as", &["calm@remote.test", "250"]).await;
}

async fn quota_at_rcpt_and_at_end_of_data(backend: Backend) {
    let s = start(on(backend, Options::default())).await;
    s.store
        .create_account(&NewAccount {
            address: "carol@example.test".into(),
            password_hash: mailfleet_store::password::hash_password("x").unwrap(),
            quota_bytes: 2000,
            shard: "default".into(),
        })
        .await
        .unwrap();
    s.client("quota", &[]).await;
    assert!(s.inbox("carol@example.test").await.is_empty());
    let alice = s.inbox("alice@example.test").await;
    assert_eq!(alice.len(), 1);
    assert!(String::from_utf8_lossy(&alice[0]).contains("Subject: mixed\r\n"));
    // The full mailbox is the queue's now, with its DSN parameters: it retries and bounces.
    let queue = s.store.list_queue().await.unwrap();
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0].sender, "q@remote.test");
    let rcpts: Vec<_> = queue[0].recipients.iter().map(|r| &r.address).collect();
    assert_eq!(rcpts, ["carol@example.test"]);
    assert_eq!(queue[0].recipients[0].notify, ["FAILURE"]);
}

/// With a blob directory and `blobs_inline_max`, small messages are kept in the store.
async fn small_messages_inline_with_a_blob_directory(backend: Backend) {
    let s = start(Options {
        backend,
        inline_max: 64 * 1024,
        ..Options::default()
    })
    .await;
    with_alias_scenario(&s).await;
    s.client("aliases", &[]).await;
    let alice = s.inbox("alice@example.test").await;
    assert_eq!(subjects(&alice), ["to sales", "to catch-all"]);
    let account = s
        .store
        .get_account("alice@example.test")
        .await
        .unwrap()
        .unwrap();
    let inbox = s
        .store
        .get_mailbox(account.id, "INBOX")
        .await
        .unwrap()
        .unwrap();
    for m in s.store.list_messages(inbox.id, 1, u32::MAX).await.unwrap() {
        assert!(
            s.store.blob_get(&m.blob_id).await.unwrap().is_some(),
            "kept in the store"
        );
    }
    // The node made its blob directories when it started; no blob went there.
    use mailfleet_store::BlobStore;
    let files = mailfleet_store::blob::FsBlobs::new(s.dir.path().join("blobs"))
        .list()
        .await
        .unwrap();
    assert!(files.is_empty(), "no blob files: {files:?}");
}

/// With blobs kept in the store, a delivery's blob row is written with its message rows.
async fn delivery_with_blobs_in_the_database(backend: Backend) {
    let s = start(Options {
        backend,
        db_blobs: true,
        ..Options::default()
    })
    .await;
    with_alias_scenario(&s).await;
    s.client("aliases", &[]).await;
    let alice = s.inbox("alice@example.test").await;
    assert_eq!(subjects(&alice), ["to sales", "to catch-all"]);
    assert!(text(&alice[0]).starts_with("Return-Path: <a@remote.test>\r\n"));
    assert!(
        s.dir.path().join("blobs").read_dir().is_err(),
        "no blob directory"
    );
    let queue = s.store.list_queue().await.unwrap();
    assert_eq!(queue.len(), 1);
    assert!(s.store.blob_get(&queue[0].blob_id).await.unwrap().is_some());
}

async fn aliases_catch_all_and_remote_targets(backend: Backend) {
    let s = start(on(backend, Options::default())).await;
    with_alias_scenario(&s).await;
    s.client("aliases", &[]).await;
    assert_eq!(
        subjects(&s.inbox("alice@example.test").await),
        ["to sales", "to catch-all"]
    );
    assert_eq!(subjects(&s.inbox("bob@example.test").await), ["to sales"]);
    let queue = s.store.list_queue().await.unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].recipients[0].address, "partner@remote.test");
    assert_eq!(queue[0].sender, "a@remote.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaks_starttls_auth_and_pipelining() {
    if std::process::Command::new("swaks")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("swaks is not installed (see .ci/packages-smtp.txt)");
    }
    let s = start(Options::default()).await;
    let run = |args: Vec<String>| async move {
        let out = tokio::process::Command::new("swaks")
            .args(&args)
            .output()
            .await
            .unwrap();
        let t = format!("{}{}", text(&out.stdout), text(&out.stderr));
        (out.status.success(), t)
    };
    let port = s.submission.port().to_string();
    let (ok, t) = run(vec![
        "--server".into(),
        "127.0.0.1".into(),
        "--port".into(),
        port.clone(),
        "--tls".into(),
        "--auth".into(),
        "PLAIN".into(),
        "--auth-user".into(),
        "alice@example.test".into(),
        "--auth-password".into(),
        common::PASSWORD.into(),
        "--from".into(),
        "alice@example.test".into(),
        "--to".into(),
        "bob@example.test".into(),
        "--header".into(),
        "Subject: via swaks".into(),
    ])
    .await;
    assert!(ok, "{t}");
    // Without TLS, swaks cannot authenticate: AUTH is not offered.
    let (ok, t) = run(vec![
        "--server".into(),
        "127.0.0.1".into(),
        "--port".into(),
        port,
        "--auth".into(),
        "PLAIN".into(),
        "--auth-user".into(),
        "alice@example.test".into(),
        "--auth-password".into(),
        common::PASSWORD.into(),
        "--from".into(),
        "alice@example.test".into(),
        "--to".into(),
        "bob@example.test".into(),
    ])
    .await;
    assert!(!ok, "AUTH without TLS succeeded: {t}");
    let (ok, t) = run(vec![
        "--server".into(),
        "127.0.0.1".into(),
        "--port".into(),
        s.mx.port().to_string(),
        "--pipeline".into(),
        "--from".into(),
        "x@remote.test".into(),
        "--to".into(),
        "alice@example.test".into(),
        "--header".into(),
        "Subject: swaks pipelined".into(),
    ])
    .await;
    assert!(ok, "{t}");
    assert_eq!(subjects(&s.inbox("bob@example.test").await), ["via swaks"]);
    assert_eq!(
        subjects(&s.inbox("alice@example.test").await),
        ["swaks pipelined"]
    );
}

async fn dsn_parameters_reach_the_queue(backend: Backend) {
    let s = start(on(backend, Options::default())).await;
    s.client("dsn", &[]).await;
    let queue = s.store.list_queue().await.unwrap();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].envid.as_deref(), Some("env+2B1"));
    assert_eq!(queue[0].ret.as_deref(), Some("HDRS"));
    let r = &queue[0].recipients[0];
    assert_eq!(r.notify, ["FAILURE", "DELAY"]);
    assert_eq!(r.orcpt.as_deref(), Some("rfc822;friend+40remote.test"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_errors_close_the_connection() {
    let s = start(opts(&[("smtp.max_errors", "5")])).await;
    s.client("too_many_errors", &[]).await;
}

async fn deliver_to_addresses_for_bounces(backend: Backend) {
    use mailfleet_delivery::{AddressOutcome, deliver_to_addresses};
    let s = start(on(backend, Options::default())).await;
    let msg = b"Subject: bounce\r\n\r\nreturned\r\n";
    let out = deliver_to_addresses(
        s.store.as_ref(),
        s.blobs.as_ref(),
        "",
        &[
            "Alice@Example.test".into(),
            "nobody@example.test".into(),
            "x@remote.test".into(),
            "bad".into(),
        ],
        msg,
        false,
    )
    .await
    .unwrap();
    assert_eq!(out[0], AddressOutcome::Accepted);
    assert_eq!(out[1], AddressOutcome::Unknown);
    assert!(matches!(out[2], AddressOutcome::Failed(_)));
    assert!(matches!(out[3], AddressOutcome::Failed(_)));
    assert_eq!(s.inbox("alice@example.test").await, vec![msg.to_vec()]);
    assert!(s.store.list_queue().await.unwrap().is_empty());

    // The delivered messages' text is in the store's index, decoded: IMAP SEARCH BODY/TEXT
    // narrows with it.
    let encoded = b"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= report\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
VGhlIGRlbGl2ZXJ5IHN0YXR1cyBpcyBmaW5lLg0K\r\n";
    let out = deliver_to_addresses(
        s.store.as_ref(),
        s.blobs.as_ref(),
        "",
        &["alice@example.test".into()],
        encoded,
        false,
    )
    .await
    .unwrap();
    assert_eq!(out, [AddressOutcome::Accepted]);
    let alice = s
        .store
        .get_account("alice@example.test")
        .await
        .unwrap()
        .unwrap();
    let inbox = s
        .store
        .get_mailbox(alice.id, "INBOX")
        .await
        .unwrap()
        .unwrap()
        .id;
    let found = |needle: &'static str| {
        let store = s.store.clone();
        async move { store.text_candidates(inbox, needle).await.unwrap() }
    };
    // SQLite narrows on any substring of 3 characters or more, PostgreSQL on whole words
    // inside the needle.
    let (status, returned, subject) = match backend {
        Backend::Sqlite => ("STATUS IS", "eturne", "grüße rep"),
        Backend::Postgres => (" STATUS is ", " returned ", " GRÜßE "),
    };
    assert_eq!(found(status).await, Some(vec![2]));
    assert_eq!(found(returned).await, Some(vec![1]));
    assert_eq!(found(subject).await, Some(vec![2]));
}
