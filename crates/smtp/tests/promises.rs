//! What the SMTP settings and the blob store promise, over real sockets on 127.0.0.1:
//! `smtp.auth.allow_cleartext`, `smtp.sender_must_match` and `smtp.auth.lockout_seconds` (each
//! on SQLite and on PostgreSQL), and a blob root that vanishes while the node runs (451, not
//! re-created).

mod common;
mod script;

use std::time::{Duration, Instant};

use common::{Backend, Options, Server, start};
use script::{scenario, subjects, text};

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

both_backends!(
    allow_cleartext_offers_auth_without_tls_only_when_true,
    sender_must_match_limits_a_user_to_own_addresses_and_aliases,
    lockout_seconds_is_how_long_a_lockout_lasts,
);

fn on(backend: Backend, settings: &[(&'static str, &str)]) -> Options {
    Options {
        backend,
        settings: settings.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        ..Options::default()
    }
}

async fn allow_cleartext_offers_auth_without_tls_only_when_true(backend: Backend) {
    let s = start(on(backend, &[])).await;
    // Default: false.
    scenario(&s, "cleartext_auth", &["false"]).await;
    s.set("smtp.auth.allow_cleartext", "true").await;
    scenario(&s, "cleartext_auth", &["true"]).await;
    let bob = s.inbox("bob@example.test").await;
    assert_eq!(subjects(&bob), ["cleartext login"]);
    // Authenticated, without TLS.
    assert!(
        text(&bob[0]).contains(" with ESMTPA\r\n"),
        "{}",
        text(&bob[0])
    );
    s.set("smtp.auth.allow_cleartext", "false").await;
    scenario(&s, "cleartext_auth", &["false"]).await;
}

async fn sender_must_match_limits_a_user_to_own_addresses_and_aliases(backend: Backend) {
    let s = start(on(backend, &[])).await;
    s.store
        .add_alias(
            "sales@example.test",
            &["alice@example.test".into(), "partner@remote.test".into()],
        )
        .await
        .unwrap();
    s.store
        .add_alias("team@example.test", &["bob@example.test".into()])
        .await
        .unwrap();
    s.store
        .add_alias("@example.test", &["alice@example.test".into()])
        .await
        .unwrap();
    // Default: true. Her own address (any case) and an alias that reaches her...
    for sender in [
        "alice@example.test",
        "Alice@Example.Test",
        "sales@example.test",
    ] {
        scenario(&s, "send_as_user", &[sender, "250"]).await;
    }
    // ...but not someone else's, an alias that does not reach her, a catch-all, an address
    // elsewhere, nor the null sender.
    for sender in [
        "bob@example.test",
        "team@example.test",
        "whoever@example.test",
        "alice@remote.test",
        "",
    ] {
        scenario(&s, "send_as_user", &[sender, "553"]).await;
    }
    s.set("smtp.sender_must_match", "false").await;
    for sender in ["bob@example.test", "alice@remote.test", ""] {
        scenario(&s, "send_as_user", &[sender, "250"]).await;
    }
    let bob = s.inbox("bob@example.test").await;
    assert_eq!(
        subjects(&bob),
        [
            "sent as alice@example.test",
            "sent as Alice@Example.Test",
            "sent as sales@example.test",
            "sent as bob@example.test",
            "sent as alice@remote.test",
            "sent as null",
        ]
    );
    assert!(text(&bob[3]).starts_with("Return-Path: <bob@example.test>\r\n"));
    assert!(text(&bob[5]).starts_with("Return-Path: <>\r\n"));
}

/// One AUTH PLAIN as alice with `password`; the reply code.
async fn login(s: &Server, password: &str) -> u16 {
    let out = scenario(s, "login_code", &[password]).await;
    out.lines()
        .find_map(|l| l.strip_prefix("CODE "))
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or_else(|| panic!("no code in {out}"))
}

async fn lockout_seconds_is_how_long_a_lockout_lasts(backend: Backend) {
    let s = start(on(
        backend,
        &[
            ("smtp.auth.lockout_failures", "2"),
            ("smtp.auth.lockout_seconds", "6"),
        ],
    ))
    .await;
    assert_eq!(login(&s, "wrong").await, 535);
    assert_eq!(login(&s, "wrong").await, 535);
    let locked_at = Instant::now();
    assert_eq!(login(&s, common::PASSWORD).await, 454, "locked out");
    // Counted in whole seconds from the last failure: over within 5 to 6 s of it. The
    // default of 900 s would keep it locked far past the deadline. (6 s, not less: the
    // third login must come inside the window even on a loaded machine.)
    let mut codes = Vec::new();
    let opened = loop {
        let code = login(&s, common::PASSWORD).await;
        codes.push(code);
        if code == 235 {
            break locked_at.elapsed();
        }
        assert_eq!(code, 454, "{codes:?}");
        assert!(
            locked_at.elapsed() < Duration::from_secs(30),
            "still locked after 30 s: {codes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        opened >= Duration::from_secs(3) && opened < Duration::from_secs(20),
        "lockout of 6 s ended after {opened:?}"
    );
    // One new failure does not lock again: the count starts over.
    assert_eq!(login(&s, "wrong").await, 535);
    assert_eq!(login(&s, common::PASSWORD).await, 235);
}

/// The blob root (say a shared mount) disappears while the node runs: writes fail with 451,
/// nothing is written under the empty mount point, and once it is back writes go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_blob_root_is_not_recreated_and_writes_get_451() {
    let s = start(Options::default()).await;
    let root = s.dir.path().join("blobs");
    let away = s.dir.path().join("blobs-unmounted");
    scenario(&s, "send_expect", &["before", "250"]).await;
    assert!(root.is_dir());
    std::fs::rename(&root, &away).unwrap();
    for n in 0..2 {
        scenario(&s, "send_expect", &[&format!("while away {n}"), "451"]).await;
        assert!(!root.exists(), "the blob root was made again");
    }
    std::fs::rename(&away, &root).unwrap();
    scenario(&s, "send_expect", &["after", "250"]).await;
    assert_eq!(
        subjects(&s.inbox("alice@example.test").await),
        ["before", "after"]
    );
    assert!(s.store.list_queue().await.unwrap().is_empty());
}

/// The same when the root goes before the node's first message: it was there when the node
/// started, so it is not made again either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_root_gone_before_the_first_message_is_not_recreated() {
    let s = start(Options::default()).await;
    let root = s.dir.path().join("blobs");
    // The mount is there (the node has made its directories already: no-op).
    std::fs::create_dir_all(&root).unwrap();
    let away = s.dir.path().join("blobs-unmounted");
    std::fs::rename(&root, &away).unwrap();
    scenario(&s, "send_expect", &["first", "451"]).await;
    assert!(!root.exists(), "the blob root was made again");
    std::fs::rename(&away, &root).unwrap();
    scenario(&s, "send_expect", &["second", "250"]).await;
    assert_eq!(subjects(&s.inbox("alice@example.test").await), ["second"]);
}
