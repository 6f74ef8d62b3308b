//! Authentication for every protocol of a node (SMTP AUTH today; IMAP and POP3 logins use the
//! same [`Authenticator`]): one place for the password check, the login cache and the
//! lockouts.
//!
//! A login, in order:
//! 1. **Address lockout, read**: an address with `lockout_failures` failures (on all nodes
//!    together, in the store) inside `lockout_window` is refused at once.
//! 2. **Account** read from the store; a disabled account never logs in.
//! 3. **Cache** ([`cache`]): a password that logged in to this account, with the password hash
//!    it has now, less than `cache_ttl` ago logs in without an argon2 run and without a write.
//! 4. **Address lockout, reservation**: the attempt is counted as a failure *before* the
//!    password is checked, in one atomic store statement that refuses once the count is
//!    reached ([`mailfleet_store::Limits::auth_attempt`]). Parallel guesses from one address,
//!    on one node or many, therefore count one each: at most `lockout_failures` are ever
//!    checked per window. A node that has that many attempts from the address in flight
//!    refuses more without a store write. A good login takes its reservation
//!    back; earlier failures stay (logging in to one's own account does not clear a count
//!    run up against others). A side effect: logins in flight from one address count
//!    against it until they succeed, so more than `lockout_failures` *uncached* logins at the
//!    same instant from one address (a large NAT) see some refused.
//! 5. **Account pacing**: failures against one account from any addresses are counted too
//!    (`account:ADDRESS` in the same table); past [`ACCOUNT_FREE_FAILURES`] each uncached
//!    attempt on that account waits its turn behind a growing delay (capped at
//!    [`ACCOUNT_DELAY_MAX`]), spaced on each node. The owner is slowed, not locked out, and a
//!    cached login is not slowed at all.
//! 6. **Password check** on the [`pool::VerifyPool`]: a few threads, a bounded queue; the
//!    wait counts against the caller's timeout. Unknown accounts are checked against a dummy
//!    hash, so they cost the same time as a wrong password.

pub mod cache;
pub mod pool;
pub mod settings;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailfleet_store::address::normalize_address;
use mailfleet_store::{Account, Store};
use tokio::sync::OnceCell;

use crate::cache::LoginCache;
use crate::pool::VerifyPool;

/// Failures against one account (inside the lockout window) before its attempts are paced.
pub const ACCOUNT_FREE_FAILURES: i64 = 3;
/// The first pacing delay; it doubles with each further failure.
pub const ACCOUNT_DELAY_BASE: Duration = Duration::from_millis(500);
/// The longest pacing delay.
pub const ACCOUNT_DELAY_MAX: Duration = Duration::from_secs(8);
/// An attempt that would wait longer than this for its turn on an account is refused as a
/// temporary failure rather than queued.
pub const ACCOUNT_QUEUE_MAX: Duration = Duration::from_secs(30);
/// Accounts the login cache remembers.
pub const CACHE_CAPACITY: usize = 100_000;

/// What a login is measured against; read from the live settings by the caller.
#[derive(Debug, Clone)]
pub struct LoginPolicy {
    /// Failures from one address before it is locked out; 0: no lockout.
    pub lockout_failures: u32,
    /// How long a lockout lasts, and the window failures are counted in.
    pub lockout_window: Duration,
    /// How long a good login is remembered; zero: no cache.
    pub cache_ttl: Duration,
    /// The longest a login may take, waits included (the session's timeout).
    pub timeout: Duration,
}

/// How a login ended.
#[derive(Debug)]
pub enum LoginOutcome {
    Success(Account),
    /// Unknown user, wrong password or disabled account.
    Invalid,
    /// Too many failures from the client's address.
    LockedOut,
    /// The check could not be made now (store unreachable, too many checks waiting, timeout).
    Unavailable(String),
}

/// The key of an account's failure count.
fn account_key(address: &str) -> String {
    format!("account:{address}")
}

fn pacing_delay(failures: i64) -> Duration {
    if failures < ACCOUNT_FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - ACCOUNT_FREE_FAILURES).min(16) as u32;
    ACCOUNT_DELAY_BASE
        .saturating_mul(1 << doublings)
        .min(ACCOUNT_DELAY_MAX)
}

/// One node's authenticator, shared by all its services.
pub struct Authenticator {
    store: Arc<dyn Store>,
    pool: VerifyPool,
    cache: LoginCache,
    /// Uncached attempts under way on this node, per client address.
    in_flight: Mutex<HashMap<IpAddr, u32>>,
    /// When the next attempt on an account may be checked, on this node.
    next_turn: Mutex<HashMap<i64, Instant>>,
    dummy_hash: OnceCell<String>,
}

/// Counts an attempt as in flight until dropped.
struct InFlight<'a> {
    auth: &'a Authenticator,
    ip: IpAddr,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut map = lock(&self.auth.in_flight);
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Authenticator {
    /// An authenticator over `store` with a pool sized to the machine.
    pub fn new(store: Arc<dyn Store>) -> Authenticator {
        Self::with_pool(store, VerifyPool::for_this_machine())
    }

    pub fn with_pool(store: Arc<dyn Store>, pool: VerifyPool) -> Authenticator {
        Authenticator {
            store,
            pool,
            cache: LoginCache::new(CACHE_CAPACITY),
            in_flight: Mutex::new(HashMap::new()),
            next_turn: Mutex::new(HashMap::new()),
            dummy_hash: OnceCell::new(),
        }
    }

    /// The login cache (for tests and statistics).
    pub fn cache(&self) -> &LoginCache {
        &self.cache
    }

    /// Checks `user`'s `password` for a client at `ip`.
    pub async fn login(
        &self,
        ip: IpAddr,
        user: &str,
        password: &str,
        policy: &LoginPolicy,
    ) -> LoginOutcome {
        let deadline = Instant::now() + policy.timeout;
        match tokio::time::timeout(
            policy.timeout,
            self.login_inner(ip, user, password, policy, deadline),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => LoginOutcome::Unavailable("login took too long".into()),
        }
    }

    async fn login_inner(
        &self,
        ip: IpAddr,
        user: &str,
        password: &str,
        policy: &LoginPolicy,
        deadline: Instant,
    ) -> LoginOutcome {
        let max = i64::from(policy.lockout_failures);
        let window = policy.lockout_window.as_secs() as i64;
        let ip_key = ip.to_string();
        let stored = if max > 0 {
            match self
                .store
                .auth_failures(&ip_key, mailfleet_store::now(), window)
                .await
            {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("failed logins of {ip} not read: {e}");
                    0
                }
            }
        } else {
            0
        };
        if max > 0 && stored >= max {
            return LoginOutcome::LockedOut;
        }
        let account = match normalize_address(user) {
            Ok(address) => match self.store.get_account(&address).await {
                Ok(a) => a.filter(|a| a.enabled),
                Err(e) => return LoginOutcome::Unavailable(format!("account not read: {e}")),
            },
            Err(_) => None,
        };
        if let Some(a) = &account
            && !policy.cache_ttl.is_zero()
            && self.cache.hit(a, password)
        {
            return LoginOutcome::Success(a.clone());
        }

        // Counted before the check, by the store for all nodes. A node with as many attempts
        // from the address in flight as the lockout allows refuses more without asking the
        // store (their reservations are there already, or on their way).
        let _in_flight = {
            let mut map = lock(&self.in_flight);
            let n = map.entry(ip).or_insert(0);
            if max > 0 && i64::from(*n) >= max {
                return LoginOutcome::LockedOut;
            }
            *n += 1;
            InFlight { auth: self, ip }
        };
        let mut reserved = false;
        if max > 0 {
            match self
                .store
                .auth_attempt(&ip_key, mailfleet_store::now(), window, max)
                .await
            {
                Ok(Some(_)) => reserved = true,
                Ok(None) => return LoginOutcome::LockedOut,
                // Counted on this node only until the store is back.
                Err(e) => tracing::warn!("login attempt of {ip} not counted in the store: {e}"),
            }
        }

        let account_failures = match &account {
            Some(a) => self
                .store
                .auth_failures(
                    &account_key(&a.address),
                    mailfleet_store::now(),
                    window.max(1),
                )
                .await
                .unwrap_or(0),
            None => 0,
        };
        if let Some(a) = &account {
            let delay = pacing_delay(account_failures);
            if !delay.is_zero() {
                let now = Instant::now();
                let turn = {
                    let mut turns = lock(&self.next_turn);
                    turns.retain(|_, t| *t > now);
                    let start = turns.get(&a.id).copied().unwrap_or(now).max(now);
                    if start.duration_since(now) > ACCOUNT_QUEUE_MAX || start >= deadline {
                        None
                    } else {
                        turns.insert(a.id, start + delay);
                        Some(start)
                    }
                };
                let Some(start) = turn else {
                    self.give_back(reserved, &ip_key).await;
                    return LoginOutcome::Unavailable(format!(
                        "too many attempts on {} waiting",
                        a.address
                    ));
                };
                tracing::info!(account = %a.address, failures = account_failures, "login paced");
                tokio::time::sleep_until((start + delay).into()).await;
            }
        }

        let hash = match &account {
            Some(a) => a.password_hash.clone(),
            None => match self.dummy().await {
                Some(h) => h,
                None => return LoginOutcome::Invalid,
            },
        };
        let ok = match self.pool.verify(hash, password.to_string()).await {
            Ok(ok) => ok,
            Err(e) => {
                self.give_back(reserved, &ip_key).await;
                return LoginOutcome::Unavailable(e.to_string());
            }
        };
        match account {
            Some(a) if ok => {
                self.give_back(reserved, &ip_key).await;
                if account_failures > 0
                    && let Err(e) = self
                        .store
                        .clear_auth_failures(&account_key(&a.address))
                        .await
                {
                    tracing::warn!("failed logins of {} not cleared: {e}", a.address);
                }
                self.cache.remember(&a, password, policy.cache_ttl);
                LoginOutcome::Success(a)
            }
            Some(a) => {
                self.cache.forget(a.id);
                if let Err(e) = self
                    .store
                    .auth_failed(
                        &account_key(&a.address),
                        mailfleet_store::now(),
                        window.max(1),
                    )
                    .await
                {
                    tracing::warn!("failed login of {} not counted: {e}", a.address);
                }
                LoginOutcome::Invalid
            }
            None => LoginOutcome::Invalid,
        }
    }

    /// Hands a reservation back: the attempt was not a failure.
    async fn give_back(&self, reserved: bool, ip_key: &str) {
        if reserved && let Err(e) = self.store.auth_attempt_succeeded(ip_key).await {
            tracing::warn!("login attempt of {ip_key} not taken back: {e}");
        }
    }

    /// A hash of a random password, checked for unknown users.
    async fn dummy(&self) -> Option<String> {
        self.dummy_hash
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(|| {
                    mailfleet_store::password::hash_password(
                        &mailfleet_store::password::generate_password(),
                    )
                    .ok()
                })
                .await
                .ok()
                .flatten()
                .ok_or(())
            })
            .await
            .ok()
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_grows_and_is_capped() {
        assert_eq!(pacing_delay(0), Duration::ZERO);
        assert_eq!(pacing_delay(ACCOUNT_FREE_FAILURES - 1), Duration::ZERO);
        assert_eq!(pacing_delay(ACCOUNT_FREE_FAILURES), ACCOUNT_DELAY_BASE);
        assert_eq!(
            pacing_delay(ACCOUNT_FREE_FAILURES + 1),
            ACCOUNT_DELAY_BASE * 2
        );
        assert_eq!(pacing_delay(1000), ACCOUNT_DELAY_MAX);
        assert_eq!(pacing_delay(i64::MAX), ACCOUNT_DELAY_MAX);
    }
}
