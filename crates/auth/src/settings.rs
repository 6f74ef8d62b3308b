//! The login settings every protocol shares (`mailfleet settings set KEY VALUE`), applied live:
//! one address lockout and one login cache per node, whichever protocol a login comes by.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `auth.lockout_failures` | 5 | failed logins from one address (SMTP AUTH, IMAP, POP3; all nodes together) before it is locked out; 0 = never |
//! | `auth.lockout_seconds` | 900 | how long a lockout lasts (and the window failures are counted in) |
//! | `auth.cache_seconds` | 300 | how long a good login is remembered (keyed hash, never the password); a repeated login within it costs no argon2 run; 0 = no cache |
//!
//! Each key's former name, `smtp.auth.lockout_failures`, `smtp.auth.lockout_seconds` and
//! `smtp.auth.cache_seconds`, is still accepted and read when the new key is not set.

use std::time::Duration;

/// Every shared login key: (key, default, meaning).
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "auth.lockout_failures",
        "5",
        "failed logins from one address (every protocol, all nodes together) before a lockout; 0 = never",
    ),
    (
        "auth.lockout_seconds",
        "900",
        "length of a login lockout, and the window failures are counted in",
    ),
    (
        "auth.cache_seconds",
        "300",
        "seconds a good login is remembered (keyed hash of the password); 0 = no cache",
    ),
];

/// The former names, `(old, new)`: accepted by `settings set`, read when the new key is unset.
pub const FORMER_NAMES: &[(&str, &str)] = &[
    ("smtp.auth.lockout_failures", "auth.lockout_failures"),
    ("smtp.auth.lockout_seconds", "auth.lockout_seconds"),
    ("smtp.auth.cache_seconds", "auth.cache_seconds"),
];

/// Largest values: a lockout of 30 days, a cache of a day.
fn range_of(key: &str) -> Option<(u64, u64)> {
    match key {
        "auth.lockout_failures" => Some((0, 1_000_000)),
        "auth.lockout_seconds" => Some((1, 86_400 * 30)),
        "auth.cache_seconds" => Some((0, 86_400)),
        _ => None,
    }
}

/// The key a name stands for: itself, or the new name of a former one.
fn canonical(key: &str) -> &str {
    FORMER_NAMES
        .iter()
        .find(|(old, _)| *old == key)
        .map_or(key, |(_, new)| new)
}

/// Checks a value for a login key (or a former name of one). `None` if `key` is neither.
pub fn validate(key: &str, value: &str) -> Option<Result<(), String>> {
    let (min, max) = range_of(canonical(key))?;
    Some(match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(()),
        _ => Err(format!(
            "{key}: {value:?} must be a whole number from {min} to {max}"
        )),
    })
}

/// The login policy every protocol applies, read from one settings snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginSettings {
    /// Failures from one address before it is locked out; 0: no lockout.
    pub lockout_failures: u32,
    /// How long a lockout lasts, and the window failures are counted in (at least 1 s).
    pub lockout_window: Duration,
    /// How long a good login is remembered; zero: not at all.
    pub cache: Duration,
}

impl LoginSettings {
    /// Reads the keys through `get` (a settings snapshot's lookup): the key, else its former
    /// name, else the default. A value out of range or not a number counts as unset.
    pub fn read<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Self {
        let num = |key: &str| -> u64 {
            let (min, max) = range_of(key).unwrap_or((0, u64::MAX));
            let former = FORMER_NAMES
                .iter()
                .find(|(_, new)| *new == key)
                .map(|(old, _)| *old);
            let parsed = |name: &str| {
                get(name)
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .filter(|n| (min..=max).contains(n))
            };
            parsed(key)
                .or_else(|| former.and_then(parsed))
                .or_else(|| {
                    KEYS.iter()
                        .find(|(k, _, _)| *k == key)
                        .and_then(|(_, d, _)| d.parse().ok())
                })
                .unwrap_or(0)
        };
        LoginSettings {
            lockout_failures: u32::try_from(num("auth.lockout_failures")).unwrap_or(u32::MAX),
            lockout_window: Duration::from_secs(num("auth.lockout_seconds").max(1)),
            cache: Duration::from_secs(num("auth.cache_seconds")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(pairs: &[(&str, &str)]) -> LoginSettings {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LoginSettings::read(|k| map.get(k).map(String::as_str))
    }

    #[test]
    fn new_keys_win_over_former_names_which_win_over_defaults() {
        assert_eq!(
            read(&[]),
            LoginSettings {
                lockout_failures: 5,
                lockout_window: Duration::from_secs(900),
                cache: Duration::from_secs(300),
            }
        );
        let s = read(&[
            ("smtp.auth.lockout_failures", "3"),
            ("smtp.auth.cache_seconds", "0"),
        ]);
        assert_eq!(s.lockout_failures, 3);
        assert_eq!(s.cache, Duration::ZERO);
        let s = read(&[
            ("smtp.auth.lockout_failures", "3"),
            ("auth.lockout_failures", "7"),
            ("auth.lockout_seconds", "60"),
        ]);
        assert_eq!(s.lockout_failures, 7);
        assert_eq!(s.lockout_window, Duration::from_secs(60));
        // Out of range or not a number: as if unset.
        let s = read(&[("auth.lockout_seconds", "0"), ("auth.cache_seconds", "x")]);
        assert_eq!(s.lockout_window, Duration::from_secs(900));
        assert_eq!(s.cache, Duration::from_secs(300));
    }

    #[test]
    fn values_are_checked_under_either_name() {
        assert_eq!(validate("auth.lockout_failures", "10"), Some(Ok(())));
        assert_eq!(validate("smtp.auth.lockout_failures", "10"), Some(Ok(())));
        let e = validate("auth.lockout_seconds", "0").unwrap().unwrap_err();
        assert!(
            e.contains("auth.lockout_seconds") && e.contains("from 1"),
            "{e}"
        );
        let e = validate("smtp.auth.cache_seconds", "-1")
            .unwrap()
            .unwrap_err();
        assert!(e.contains("smtp.auth.cache_seconds"), "{e}");
        assert_eq!(validate("auth.nope", "1"), None);
        assert_eq!(validate("smtp.auth.allow_cleartext", "true"), None);
    }
}
