//! `mailfleet settings list|get|set|unset`: cluster settings kept in the store; every node
//! applies a change live. Keys are checked by the subsystem that owns them.

use clap::{Args, Subcommand};
use serde::Serialize;

use super::output::{print_json, print_table};
use super::{JsonOpt, StoreOpt, placement, store_err};

#[derive(Args)]
pub struct SettingsCmd {
    #[command(flatten)]
    store: StoreOpt,
    #[command(subcommand)]
    action: SettingsAction,
}

#[derive(Subcommand)]
enum SettingsAction {
    /// Every known key with its value (or default), and any other key found in the store.
    List {
        #[command(flatten)]
        json: JsonOpt,
    },
    /// Print one key's value (its default when unset).
    Get { key: String },
    /// Set a key; every node applies it within seconds.
    Set { key: String, value: String },
    /// Remove a key from the store, so its default applies again.
    Unset { key: String },
}

type Validate = fn(&str, &str) -> Option<Result<(), String>>;

/// A subsystem's keys, (key, default, meaning), and its validator.
struct Owner {
    keys: &'static [(&'static str, &'static str, &'static str)],
    validate: Validate,
}

const OWNERS: &[Owner] = &[
    Owner {
        keys: placement::KEYS,
        validate: placement::validate,
    },
    Owner {
        keys: mailfleet_auth::settings::KEYS,
        validate: mailfleet_auth::settings::validate,
    },
    Owner {
        keys: mailfleet_smtp::settings::KEYS,
        validate: mailfleet_smtp::settings::validate,
    },
    Owner {
        keys: mailfleet_pop3::settings::KEYS,
        validate: mailfleet_pop3::settings::validate,
    },
    Owner {
        keys: mailfleet_imap::settings::KEYS,
        validate: mailfleet_imap::settings::validate,
    },
    Owner {
        keys: mailfleet_queue::settings::KEYS,
        validate: mailfleet_queue::settings::validate,
    },
    Owner {
        keys: mailfleet_cluster::watchdog::KEYS,
        validate: mailfleet_cluster::watchdog::validate,
    },
    Owner {
        keys: mailfleet_cluster::backup::KEYS,
        validate: mailfleet_cluster::backup::validate,
    },
];

/// (key, default, meaning) of every known key, in key order.
fn known_keys() -> Vec<(&'static str, &'static str, &'static str)> {
    let mut keys: Vec<_> = OWNERS.iter().flat_map(|o| o.keys.iter().copied()).collect();
    keys.sort_by_key(|(k, _, _)| *k);
    keys
}

fn default_of(key: &str) -> Option<&'static str> {
    OWNERS
        .iter()
        .flat_map(|o| o.keys.iter())
        .find(|(k, _, _)| *k == key)
        .map(|(_, d, _)| *d)
}

fn unknown(key: &str) -> anyhow::Error {
    anyhow::anyhow!("unknown setting: {key} (see `mailfleet settings list`)")
}

/// Checks a key and value with the subsystem that owns the key (its messages name the key).
pub fn validate(key: &str, value: &str) -> anyhow::Result<()> {
    for owner in OWNERS {
        if let Some(result) = (owner.validate)(key, value) {
            return result.map_err(|e| anyhow::anyhow!("bad value: {e}"));
        }
    }
    Err(unknown(key))
}

/// Keys outside the fixed lists that a subsystem accepts, one per domain.
fn is_open_ended(key: &str) -> bool {
    key.starts_with(mailfleet_queue::settings::TRANSPORT_PREFIX)
}

/// Secrets are not echoed by `set` or `list` (`get` prints them on request).
fn shown(key: &str, value: &str) -> String {
    if key.ends_with(".password") && !value.is_empty() {
        "***".to_string()
    } else {
        value.to_string()
    }
}

#[derive(Serialize)]
struct SettingRow {
    key: String,
    value: String,
    default: Option<String>,
    /// Whether the value is stored (false: the default applies).
    set: bool,
    /// The store's version of the stored value (0 when unset).
    version: i64,
    description: Option<String>,
    /// The former name the value is stored under, when the key is set only there.
    #[serde(skip_serializing_if = "Option::is_none")]
    set_as: Option<String>,
}

pub async fn run(cmd: SettingsCmd) -> anyhow::Result<()> {
    match cmd.action {
        SettingsAction::Set { key, value } => {
            validate(&key, &value)?;
            let store = cmd.store.open().await?;
            let s = store.set_setting(&key, &value).await.map_err(store_err)?;
            println!(
                "{} = {} (version {})",
                s.key,
                shown(&s.key, &s.value),
                s.version
            );
            Ok(())
        }
        SettingsAction::Get { key } => {
            let store = cmd.store.open().await?;
            match store.get_setting(&key).await.map_err(store_err)? {
                Some(s) => println!("{}", s.value),
                None => match default_of(&key) {
                    Some(d) => println!("{d}"),
                    None if is_open_ended(&key) => anyhow::bail!("not set: {key}"),
                    None => return Err(unknown(&key)),
                },
            }
            Ok(())
        }
        SettingsAction::Unset { key } => {
            let store = cmd.store.open().await?;
            if store.delete_setting(&key).await.map_err(store_err)? {
                match default_of(&key) {
                    Some(d) => println!("{key} unset (default: {d})"),
                    None => println!("{key} unset"),
                }
                Ok(())
            } else if default_of(&key).is_some() || is_open_ended(&key) {
                println!("{key} was not set");
                Ok(())
            } else {
                Err(unknown(&key))
            }
        }
        SettingsAction::List { json } => {
            let store = cmd.store.open().await?;
            let mut stored: std::collections::BTreeMap<String, (String, i64)> = store
                .list_settings()
                .await
                .map_err(store_err)?
                .into_iter()
                .map(|s| (s.key, (s.value, s.version)))
                .collect();
            let mut rows = Vec::new();
            for (key, default, meaning) in known_keys() {
                // A key still set under its former name is read from there while the new
                // name is unset: show the value in effect.
                let former = mailfleet_auth::settings::FORMER_NAMES
                    .iter()
                    .find(|(_, new)| *new == key)
                    .and_then(|(old, _)| stored.get(*old).map(|(v, _)| (*old, v.clone())));
                let (value, set, version, set_as) = match stored.remove(key) {
                    Some((v, version)) => (v, true, version, None),
                    None => match former {
                        Some((old, v)) => (v, true, 0, Some(old.to_string())),
                        None => (default.to_string(), false, 0, None),
                    },
                };
                rows.push(SettingRow {
                    key: key.to_string(),
                    value: shown(key, &value),
                    default: Some(default.to_string()),
                    set,
                    version,
                    description: Some(meaning.to_string()),
                    set_as,
                });
            }
            // Per-domain keys, and keys in the store that no subsystem knows (written by a newer
            // or older mailfleet).
            for (key, (value, version)) in stored {
                let former = mailfleet_auth::settings::FORMER_NAMES
                    .iter()
                    .find(|(old, _)| *old == key);
                let description = match former {
                    Some((_, new)) => Some(format!("former name of {new}")),
                    None => is_open_ended(&key).then(|| "per-domain entry".to_string()),
                };
                rows.push(SettingRow {
                    value: shown(&key, &value),
                    key,
                    default: None,
                    set: true,
                    version,
                    description,
                    set_as: None,
                });
            }
            if json.json {
                return print_json(&rows);
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.key.clone(),
                        r.value.clone(),
                        match (&r.default, r.set) {
                            (None, _) => match &r.description {
                                Some(d) if d.starts_with("former name of") => format!("({d})"),
                                Some(_) => String::new(),
                                None => "(unknown key)".to_string(),
                            },
                            (Some(_), false) => "(default)".to_string(),
                            (Some(d), true) => match &r.set_as {
                                Some(old) => format!("set as {old}; default: {d}"),
                                None => format!("default: {d}"),
                            },
                        },
                    ]
                })
                .collect();
            print_table(&["KEY", "VALUE", ""], &table)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_defaults_valid() {
        let keys = known_keys();
        let mut names: Vec<&str> = keys.iter().map(|(k, _, _)| *k).collect();
        names.dedup();
        assert_eq!(names.len(), keys.len(), "a key is owned twice");
        for (key, default, _) in keys {
            assert!(validate(key, default).is_ok(), "default of {key} refused");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(
            validate("no.such.key", "1")
                .unwrap_err()
                .to_string()
                .starts_with("unknown setting: no.such.key")
        );
        let e = validate("placement", "round-robin")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad value: placement \"round-robin\""), "{e}");
        // The SMTP and queue services check their own keys.
        assert!(validate("smtp.max_recipients", "50").is_ok());
        assert!(validate("smtp.max_recipients", "many").is_err());
        assert!(validate("queue.lifetime", "2d").is_ok());
        assert!(known_keys().iter().any(|(k, _, _)| k.starts_with("smtp.")));
        assert!(known_keys().iter().any(|(k, _, _)| k.starts_with("queue.")));
    }
}
