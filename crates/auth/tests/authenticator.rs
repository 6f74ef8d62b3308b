//! The authenticator over a real store, on SQLite and PostgreSQL: two authenticators on one
//! store stand for two nodes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailfleet_auth::{Authenticator, LoginOutcome, LoginPolicy};
use mailfleet_store::password::hash_password;
use mailfleet_store::{AccountUpdate, NewAccount, Store};
use mailfleet_test_support::{TestStore, both_backends};

both_backends!(
    workers = 2;
    parallel_guesses_count_one_each_across_nodes,
    a_cached_login_costs_no_password_check,
    a_password_change_or_disabling_ends_the_cache_on_every_node,
    failures_against_one_account_slow_it_without_locking_it,
);

const PASSWORD: &str = "correct horse";

fn policy() -> LoginPolicy {
    LoginPolicy {
        lockout_failures: 5,
        lockout_window: Duration::from_secs(900),
        cache_ttl: Duration::from_secs(300),
        timeout: Duration::from_secs(120),
    }
}

async fn site(b: &TestStore) -> Arc<dyn Store> {
    let store = mailfleet_store::open(&b.url).await.unwrap();
    store.add_domain("example.test").await.unwrap();
    store
        .create_account(&NewAccount {
            address: "alice@example.test".into(),
            password_hash: hash_password(PASSWORD).unwrap(),
            quota_bytes: 0,
            shard: "default".into(),
        })
        .await
        .unwrap();
    store
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

fn name(o: &LoginOutcome) -> &'static str {
    match o {
        LoginOutcome::Success(_) => "success",
        LoginOutcome::Invalid => "invalid",
        LoginOutcome::LockedOut => "locked",
        LoginOutcome::Unavailable(_) => "unavailable",
    }
}

/// Forty wrong guesses from one address at once, half on each of two nodes: at most five are
/// checked, the rest refused; the right password afterwards is refused too.
async fn parallel_guesses_count_one_each_across_nodes(b: TestStore) {
    let store = site(&b).await;
    let other = mailfleet_store::open(&b.url).await.unwrap();
    let nodes = [
        Arc::new(Authenticator::new(store)),
        Arc::new(Authenticator::new(other)),
    ];
    let mut tasks = Vec::new();
    for i in 0..40 {
        let node = nodes[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let o = node
                .login(
                    ip(1),
                    "alice@example.test",
                    &format!("guess {i}"),
                    &policy(),
                )
                .await;
            name(&o)
        }));
    }
    let mut invalid = 0;
    for t in tasks {
        match t.await.unwrap() {
            "invalid" => invalid += 1,
            "locked" => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(invalid <= 5, "{invalid} guesses checked");
    let o = nodes[0]
        .login(ip(1), "alice@example.test", PASSWORD, &policy())
        .await;
    assert_eq!(name(&o), "locked");
    // Another address is not affected.
    let o = nodes[1]
        .login(ip(2), "alice@example.test", PASSWORD, &policy())
        .await;
    assert_eq!(name(&o), "success");
}

/// After one good login the same password logs in from the cache: microseconds, not an
/// argon2 run; another password still takes the full check.
async fn a_cached_login_costs_no_password_check(b: TestStore) {
    let store = site(&b).await;
    let auth = Authenticator::new(store.clone());
    let started = Instant::now();
    let o = auth
        .login(ip(3), "alice@example.test", PASSWORD, &policy())
        .await;
    let first = started.elapsed();
    assert_eq!(name(&o), "success");
    assert_eq!(auth.cache().len(), 1);
    // The cache check itself, as a login makes it.
    let account = store
        .get_account("alice@example.test")
        .await
        .unwrap()
        .unwrap();
    let started = Instant::now();
    for _ in 0..1000 {
        assert!(auth.cache().hit(&account, PASSWORD));
    }
    let per_hit = started.elapsed() / 1000;
    eprintln!("first login {first:?}, cache check {per_hit:?}");
    assert!(
        per_hit < Duration::from_micros(200),
        "a cache check took {per_hit:?}"
    );
    assert!(!auth.cache().hit(&account, "correct horsE"));
    // Whole cached logins (two store reads each) are far below one argon2 check.
    let started = Instant::now();
    for _ in 0..20 {
        let o = auth
            .login(ip(3), "alice@example.test", PASSWORD, &policy())
            .await;
        assert_eq!(name(&o), "success");
    }
    let per_login = started.elapsed() / 20;
    eprintln!("cached login {per_login:?}");
    let o = auth
        .login(ip(3), "alice@example.test", "wrong", &policy())
        .await;
    assert_eq!(name(&o), "invalid");
    assert!(
        auth.cache().is_empty(),
        "a failed password forgets the entry"
    );
}

/// A password changed or an account disabled through the store (by an admin command on any
/// machine) ends the cached login on both nodes at their next login.
async fn a_password_change_or_disabling_ends_the_cache_on_every_node(b: TestStore) {
    let store = site(&b).await;
    let other = mailfleet_store::open(&b.url).await.unwrap();
    let n1 = Authenticator::new(store.clone());
    let n2 = Authenticator::new(other);
    for n in [&n1, &n2] {
        let o = n
            .login(ip(4), "alice@example.test", PASSWORD, &policy())
            .await;
        assert_eq!(name(&o), "success");
    }
    store
        .update_account(
            "alice@example.test",
            &AccountUpdate {
                password_hash: Some(hash_password("new password").unwrap()),
                ..AccountUpdate::default()
            },
        )
        .await
        .unwrap();
    for n in [&n1, &n2] {
        let o = n
            .login(ip(4), "alice@example.test", PASSWORD, &policy())
            .await;
        assert_eq!(name(&o), "invalid", "old password after the change");
        let o = n
            .login(ip(4), "alice@example.test", "new password", &policy())
            .await;
        assert_eq!(name(&o), "success");
    }
    store
        .update_account(
            "alice@example.test",
            &AccountUpdate {
                enabled: Some(false),
                ..AccountUpdate::default()
            },
        )
        .await
        .unwrap();
    for n in [&n1, &n2] {
        let o = n
            .login(ip(4), "alice@example.test", "new password", &policy())
            .await;
        assert_eq!(name(&o), "invalid", "disabled");
    }
}

/// Failures against one account from many addresses pace its later uncached attempts (each
/// waits its turn) but the right password still logs in.
async fn failures_against_one_account_slow_it_without_locking_it(b: TestStore) {
    let store = site(&b).await;
    let auth = Authenticator::new(store.clone());
    let fails = mailfleet_auth::ACCOUNT_FREE_FAILURES + 1;
    for i in 0..fails {
        let o = auth
            .login(ip(10 + i as u8), "alice@example.test", "wrong", &policy())
            .await;
        assert_eq!(name(&o), "invalid");
    }
    // Two failures past the free ones: the next attempt waits at least the doubled delay.
    let started = Instant::now();
    let o = auth
        .login(ip(50), "alice@example.test", PASSWORD, &policy())
        .await;
    let waited = started.elapsed();
    assert_eq!(name(&o), "success", "the owner is slowed, not locked out");
    assert!(
        waited >= mailfleet_auth::ACCOUNT_DELAY_BASE * 2,
        "waited only {waited:?}"
    );
    // The good login cleared the account's count: its next uncached login is not paced.
    let left = store
        .auth_failures("account:alice@example.test", mailfleet_store::now(), 900)
        .await
        .unwrap();
    assert_eq!(left, 0);
}
