//! SMTP commands out of their place: MAIL before EHLO/HELO, DATA after a partial BDAT, BDAT
//! then RSET, a second STARTTLS, AUTH cancelled with `*`. Real clients (`tests/states.py`:
//! smtplib and raw sockets) against a server on 127.0.0.1; then the mailboxes are read.

mod common;
mod script;

use common::{Options, start};
use script::{scenario, subjects, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_before_ehlo_or_helo_is_refused() {
    let s = start(Options::default()).await;
    scenario(&s, "mail_before_helo", &[]).await;
    let alice = s.inbox("alice@example.test").await;
    assert_eq!(subjects(&alice), ["after helo"]);
    assert!(
        text(&alice[0]).contains(" with SMTP\r\n"),
        "{}",
        text(&alice[0])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_after_a_partial_bdat_is_refused_and_the_chunks_stay() {
    let s = start(Options::default()).await;
    scenario(&s, "data_after_bdat", &[]).await;
    let alice = s.inbox("alice@example.test").await;
    assert_eq!(alice.len(), 1);
    let m = text(&alice[0]);
    assert!(
        m.ends_with("Subject: partial then last\r\n\r\nfirst part\r\nsecond part\r\n"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rset_after_bdat_drops_the_chunks() {
    let s = start(Options::default()).await;
    scenario(&s, "bdat_then_rset", &[]).await;
    let alice = s.inbox("alice@example.test").await;
    assert_eq!(subjects(&alice), ["fresh"]);
    let m = text(&alice[0]);
    assert!(m.ends_with("\r\n\r\nonly this\r\n"), "{m}");
    assert!(!m.contains("reset") && !m.contains("orphan"), "{m}");
    assert!(s.store.list_queue().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_starttls_is_refused() {
    let s = start(Options::default()).await;
    scenario(&s, "second_starttls", &[]).await;
    let bob = s.inbox("bob@example.test").await;
    assert_eq!(subjects(&bob), ["after two starttls"]);
    assert!(
        text(&bob[0]).contains(" with ESMTPSA (TLS"),
        "{}",
        text(&bob[0])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_cancelled_with_a_star() {
    let s = start(Options::default()).await;
    scenario(&s, "auth_cancel", &[]).await;
    assert_eq!(
        subjects(&s.inbox("bob@example.test").await),
        ["after cancel"]
    );
}
