//! `mailfleet alias ...`, `mailfleet shard ...` and `mailfleet placement ...` against SQLite
//! and PostgreSQL: where new accounts land under each policy.

mod cli_support;

use std::collections::BTreeMap;

use cli_support::{Env, keys};

both_backends!(
    aliases,
    shards_and_default,
    least_used_spreads_evenly,
    domain_keeps_domains_together,
    weighted_skips_closed_shards,
);

fn aliases(env: &Env) {
    assert_eq!(
        env.fail(&["alias", "add", "info@x.test", "a@y.test"]),
        "domain not found: x.test"
    );
    env.ok(&["domain", "add", "x.test"]);
    env.ok(&["domain", "add", "y.test"]);
    assert_eq!(
        env.ok(&[
            "alias",
            "add",
            "Info@x.test",
            "a@y.test",
            "B@elsewhere.example"
        ]),
        "alias info@x.test -> a@y.test, b@elsewhere.example\n"
    );
    env.ok(&["alias", "add", "@y.test", "catch@x.test"]);
    env.ok(&["alias", "add", "info@x.test", "c@x.test"]);
    assert!(
        env.fail(&["alias", "add", "sales@x.test", "not an address"])
            .starts_with("malformed address \"not an address\"")
    );
    assert_eq!(
        env.fail(&["alias", "add", "me@x.test", "me@x.test"]),
        "alias me@x.test cannot forward to itself"
    );

    let all = env.json(&["alias", "list"]);
    assert_eq!(all.len(), 2);
    let info = all.iter().find(|a| a["address"] == "info@x.test").unwrap();
    assert_eq!(keys(info), ["address", "targets"]);
    let mut targets: Vec<&str> = info["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(targets, ["a@y.test", "b@elsewhere.example", "c@x.test"]);
    let y = env.json(&["alias", "list", "y.test"]);
    assert_eq!(y.len(), 1);
    assert_eq!(y[0]["address"], "@y.test");
    assert_eq!(y[0]["targets"], serde_json::json!(["catch@x.test"]));
    assert!(env.ok(&["alias", "list"]).starts_with("ALIAS "));

    assert_eq!(
        env.ok(&["alias", "remove", "@y.test"]),
        "alias @y.test removed\n"
    );
    assert_eq!(
        env.fail(&["alias", "remove", "@y.test"]),
        "alias not found: @y.test"
    );
    assert_eq!(env.json(&["alias", "list"]).len(), 1);
}

fn shards_and_default(env: &Env) {
    assert!(env.json(&["shard", "list"]).is_empty());
    env.ok(&["domain", "add", "x.test"]);
    // No shard yet: the first account creates `default`.
    env.ok(&["account", "add", "a@x.test"]);
    let shards = env.json(&["shard", "list"]);
    assert_eq!(
        shards,
        [serde_json::json!({"name": "default", "weight": 1, "accounts": 1})]
    );
    assert_eq!(
        env.ok(&["shard", "add", "eu-2", "--weight", "5"]),
        "shard eu-2 (weight 5)\n"
    );
    env.ok(&["shard", "add", "eu-2", "--weight", "7"]);
    assert!(
        env.fail(&["shard", "add", "Bad Name"])
            .starts_with("malformed shard name \"Bad Name\"")
    );
    env.ok(&["account", "add", "b@x.test", "--shard", "eu-2"]);
    assert_eq!(
        env.ok(&["shard", "list"]),
        "SHARD    WEIGHT  ACCOUNTS\ndefault  1       1\neu-2     7       1\n"
    );
    assert_eq!(env.ok(&["placement", "show"]), "placement: weighted\n");
}

fn shard_counts(env: &Env) -> BTreeMap<String, i64> {
    env.json(&["shard", "list"])
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["accounts"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn least_used_spreads_evenly(env: &Env) {
    env.ok(&["domain", "add", "x.test"]);
    for s in ["s1", "s2", "s3"] {
        env.ok(&["shard", "add", s]);
    }
    // s1 starts with two accounts named explicitly.
    env.ok(&["account", "add", "p1@x.test", "--shard", "s1"]);
    env.ok(&["account", "add", "p2@x.test", "--shard", "s1"]);
    assert_eq!(
        env.ok(&["placement", "set", "least-used"]),
        "placement: least-used\n"
    );
    for i in 0..7 {
        env.ok(&["account", "add", &format!("u{i}@x.test")]);
    }
    let counts = shard_counts(env);
    assert_eq!(counts["s1"], 3);
    assert_eq!(counts["s2"], 3);
    assert_eq!(counts["s3"], 3);
    assert_eq!(env.ok(&["placement", "show"]), "placement: least-used\n");
    let r = env.run(&["placement", "set", "round-robin"]);
    assert_eq!(r.code, 2, "clap refuses an unknown policy: {}", r.stderr);
}

fn domain_keeps_domains_together(env: &Env) {
    for s in ["a", "b", "c"] {
        env.ok(&["shard", "add", s]);
    }
    env.ok(&["placement", "set", "domain"]);
    let mut homes = BTreeMap::new();
    for d in 0..6 {
        let domain = format!("d{d}.test");
        env.ok(&["domain", "add", &domain]);
        for u in 0..3 {
            env.ok(&["account", "add", &format!("u{u}@{domain}")]);
        }
        let accounts = env.json(&["account", "list", &domain]);
        let shards: Vec<&str> = accounts
            .iter()
            .map(|a| a["shard"].as_str().unwrap())
            .collect();
        assert!(
            shards.iter().all(|s| *s == shards[0]),
            "{domain}: {shards:?}"
        );
        homes.insert(domain, shards[0].to_string());
    }
    // An explicit shard still wins; afterwards the domain stays on its majority shard.
    let home = homes["d0.test"].clone();
    let other = ["a", "b", "c"].into_iter().find(|s| *s != home).unwrap();
    env.ok(&["account", "add", "x@d0.test", "--shard", other]);
    env.ok(&["account", "add", "y@d0.test"]);
    let y = env
        .json(&["account", "list", "d0.test"])
        .into_iter()
        .find(|a| a["address"] == "y@d0.test")
        .unwrap();
    assert_eq!(y["shard"], home.as_str());
}

fn weighted_skips_closed_shards(env: &Env) {
    env.ok(&["domain", "add", "x.test"]);
    env.ok(&["shard", "add", "open", "--weight", "3"]);
    env.ok(&["shard", "add", "closed", "--weight", "0"]);
    env.ok(&["placement", "set", "weighted"]);
    for i in 0..8 {
        env.ok(&["account", "add", &format!("u{i}@x.test")]);
    }
    let counts = shard_counts(env);
    assert_eq!(counts["open"], 8);
    assert_eq!(counts["closed"], 0);
    env.ok(&["shard", "add", "open", "--weight", "0"]);
    assert_eq!(
        env.fail(&["account", "add", "late@x.test"]),
        "no shard takes new accounts (every shard has weight 0)"
    );
    env.ok(&["account", "add", "late@x.test", "--shard", "closed"]);
}
