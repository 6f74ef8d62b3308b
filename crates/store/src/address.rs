//! Mail addresses as the directory keys them: `local@domain`, lower-case.

use crate::error::StoreError;

/// Longest address accepted (RFC 5321 §4.5.3.1.3 path limit minus the angle brackets).
pub const MAX_ADDRESS_LEN: usize = 254;

/// Checks and lower-cases an address `local@domain`. Quoted local parts, source routes,
/// `%` and `!` relaying forms and trailing dots are refused: the directory never holds them.
pub fn normalize_address(input: &str) -> Result<String, StoreError> {
    let bad = |why: &str| StoreError::Invalid(format!("malformed address {input:?}: {why}"));
    let s = input.trim();
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if s.len() > MAX_ADDRESS_LEN {
        return Err(bad("too long"));
    }
    let (local, domain) = s.rsplit_once('@').ok_or_else(|| bad("no @"))?;
    if local.is_empty() || local.len() > 64 {
        return Err(bad("local part empty or longer than 64"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(bad("dots at the ends of or doubled in the local part"));
    }
    for c in local.chars() {
        let ok = c.is_alphanumeric() || "!#$&'*+-/=?^_`{|}~.".contains(c);
        if !ok || c == '!' {
            return Err(bad("character not allowed in the local part"));
        }
    }
    Ok(format!(
        "{}@{}",
        local.to_lowercase(),
        normalize_domain(domain).map_err(|e| bad(&e.to_string()))?
    ))
}

/// Checks and lower-cases a domain name (no trailing dot, labels of letters, digits and hyphens;
/// internationalised labels are kept as UTF-8).
pub fn normalize_domain(input: &str) -> Result<String, StoreError> {
    let bad = |why: &str| StoreError::Invalid(format!("malformed domain {input:?}: {why}"));
    let d = input.trim();
    if d.is_empty() || d.len() > 253 {
        return Err(bad("empty or longer than 253"));
    }
    for label in d.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("empty label or label longer than 63"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("label starts or ends with '-'"));
        }
        if !label.chars().all(|c| c.is_alphanumeric() || c == '-') {
            return Err(bad("character not allowed"));
        }
    }
    Ok(d.to_lowercase())
}

/// The domain of a normalised address.
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
}

/// An alias key: a normalised address, or `@domain` for a catch-all.
pub fn normalize_alias(input: &str) -> Result<String, StoreError> {
    match input.trim().strip_prefix('@') {
        Some(domain) => Ok(format!("@{}", normalize_domain(domain)?)),
        None => normalize_address(input),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_lowercases() {
        assert_eq!(
            normalize_address("Demo@Example.TEST").unwrap(),
            "demo@example.test"
        );
        assert_eq!(normalize_address("a.b+tag@x.y").unwrap(), "a.b+tag@x.y");
    }

    #[test]
    fn refuses_relay_forms() {
        for bad in [
            "a%b@x.y",
            "\"a@b\"@x.y",
            "a@x.y.",
            "@x.y",
            "a@",
            "a",
            "a!b@x.y",
            "a@x..y",
            ".a@x.y",
            "a..b@x.y",
            "a@-x.y",
            "a@x_y.z",
            "a b@x.y",
        ] {
            assert!(normalize_address(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn catch_all() {
        assert_eq!(normalize_alias("@Example.test").unwrap(), "@example.test");
        assert!(normalize_alias("@").is_err());
    }
}
