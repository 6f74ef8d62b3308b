//! The login cache: a good login is remembered for a while, so clients that log in again and
//! again (IMAP clients reconnecting, webmails logging in per request) cost a keyed hash, not an
//! argon2 run.
//!
//! An entry holds, per account, HMAC-SHA256 under a key made at random when the process
//! starts, over the account id, the account's password hash as stored and the password that
//! logged in. The password itself is never kept. A login hits only when the presented
//! password gives the same tag *and* the account row read for this login still has the same
//! password hash: so a password change anywhere in the cluster ends every node's entry at the
//! next login, with no message between nodes. Disabled accounts are refused before the cache
//! is looked at.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use mailfleet_store::Account;
use rand::RngCore;
use sha2::Sha256;

type Tag = [u8; 32];

struct Entry {
    tag: Tag,
    expires: Instant,
}

/// Remembered good logins, at most `capacity` accounts.
pub struct LoginCache {
    key: [u8; 32],
    entries: Mutex<HashMap<i64, Entry>>,
    capacity: usize,
}

impl LoginCache {
    pub fn new(capacity: usize) -> LoginCache {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        LoginCache {
            key,
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn mac(&self, account: &Account, password: &str) -> Hmac<Sha256> {
        // HMAC takes a key of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        mac.update(&account.id.to_be_bytes());
        mac.update(account.password_hash.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac
    }

    /// True when `password` logged in to `account` (as it is now) less than the TTL ago.
    pub fn hit(&self, account: &Account, password: &str) -> bool {
        let expected = {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            match entries.get(&account.id) {
                Some(e) if e.expires > Instant::now() => e.tag,
                _ => return false,
            }
        };
        // Constant-time comparison.
        self.mac(account, password).verify_slice(&expected).is_ok()
    }

    /// Remembers a good login for `ttl`.
    pub fn remember(&self, account: &Account, password: &str, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let tag: Tag = self.mac(account, password).finalize().into_bytes().into();
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&account.id) {
            entries.retain(|_, e| e.expires > now);
            if entries.len() >= self.capacity {
                // Full of live entries: start again rather than grow (a miss costs one
                // argon2 run, no correctness).
                entries.clear();
            }
        }
        entries.insert(
            account.id,
            Entry {
                tag,
                expires: now + ttl,
            },
        );
    }

    /// Forgets an account's entry (its password failed here, or it was changed).
    pub fn forget(&self, account_id: i64) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&account_id);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: i64, hash: &str) -> Account {
        Account {
            id,
            address: format!("u{id}@x.test"),
            password_hash: hash.into(),
            quota_bytes: 0,
            used_bytes: 0,
            enabled: true,
            shard: "default".into(),
            created: 0,
        }
    }

    #[test]
    fn hits_only_the_same_password_and_hash_within_the_ttl() {
        let c = LoginCache::new(10);
        let a = account(1, "$argon2id$one");
        assert!(!c.hit(&a, "pw"));
        c.remember(&a, "pw", Duration::from_secs(60));
        assert!(c.hit(&a, "pw"));
        assert!(!c.hit(&a, "pW"), "another password");
        assert!(
            !c.hit(&account(1, "$argon2id$two"), "pw"),
            "password changed"
        );
        assert!(
            !c.hit(&account(2, "$argon2id$one"), "pw"),
            "another account"
        );
        c.forget(1);
        assert!(!c.hit(&a, "pw"));
        c.remember(&a, "pw", Duration::ZERO);
        assert!(!c.hit(&a, "pw"), "a zero TTL remembers nothing");
        c.remember(&a, "pw", Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!c.hit(&a, "pw"), "expired");
    }

    #[test]
    fn stays_within_its_capacity() {
        let c = LoginCache::new(3);
        for id in 0..10 {
            c.remember(&account(id, "h"), "pw", Duration::from_secs(60));
            assert!(c.len() <= 3);
        }
        assert!(c.hit(&account(9, "h"), "pw"));
    }
}
