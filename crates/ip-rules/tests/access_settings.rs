//! `AccessList::from_settings`: a service's allow/deny settings, and a bad list named.

use mailfleet_ip_rules::AccessList;

#[test]
fn access_lists_from_settings_name_the_bad_key() {
    let get = |k: &str| match k {
        "x.access.allow" => Some("10.0.0.0/8"),
        "y.access.deny" => Some("300.1.1.1"),
        _ => None,
    };
    let a = AccessList::from_settings("x.access", get).unwrap();
    assert!(a.permits("10.1.2.3".parse().unwrap()));
    assert!(!a.permits("192.0.2.1".parse().unwrap()));
    let e = AccessList::from_settings("y.access", get).unwrap_err();
    assert!(e.contains("y.access.deny"), "{e}");
    let none = AccessList::deny_all();
    assert!(!none.permits("127.0.0.1".parse().unwrap()));
    assert!(!none.permits("::1".parse().unwrap()));
}
