//! `mailfleet domain ...` and `mailfleet account ...` against SQLite and PostgreSQL, and the
//! errors every admin command shares.

mod cli_support;

use cli_support::{Env, expect_one_error_line, keys};
use mailfleet_store::password::verify_password;

both_backends!(domains, accounts, account_changes, generated_password_works);

fn domains(env: &Env) {
    assert_eq!(
        env.json(&["domain", "list"]),
        Vec::<serde_json::Value>::new()
    );
    assert_eq!(
        env.ok(&["domain", "add", "Example.TEST"]),
        "domain example.test added\n"
    );
    env.ok(&["domain", "add", "b.test"]);
    assert_eq!(
        env.fail(&["domain", "add", "b.test"]),
        "domain exists: b.test"
    );
    assert!(
        env.fail(&["domain", "add", "bad_domain.test"])
            .starts_with("malformed domain \"bad_domain.test\"")
    );

    let list = env.json(&["domain", "list"]);
    let names: Vec<&str> = list.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["b.test", "example.test"]);
    assert_eq!(keys(&list[0]), ["created", "name"]);
    assert!(list[0]["created"].as_i64().unwrap() > 1_700_000_000);

    let table = env.ok(&["domain", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("DOMAIN        CREATED (UTC)"),
        "{table}"
    );
    assert!(lines[1].starts_with("b.test        20"), "{table}");
    assert!(lines[2].starts_with("example.test  20"), "{table}");

    // Removing a domain removes its accounts.
    env.ok(&["account", "add", "a@b.test"]);
    assert_eq!(
        env.ok(&["domain", "remove", "b.test"]),
        "domain b.test removed\n"
    );
    assert_eq!(
        env.fail(&["domain", "remove", "b.test"]),
        "domain not found: b.test"
    );
    assert!(env.json(&["account", "list"]).is_empty());
    let names: Vec<String> = env
        .json(&["domain", "list"])
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["example.test"]);
}

fn accounts(env: &Env) {
    assert_eq!(
        env.fail(&["account", "add", "a@x.test"]),
        "domain not found: x.test"
    );
    env.ok(&["domain", "add", "x.test"]);
    let r = env.run_stdin(
        &[
            "account",
            "add",
            "Alice@X.test",
            "--password-stdin",
            "--quota",
            "500M",
        ],
        "s3cret pw\n",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "account alice@x.test created on shard default (quota 500M)\n"
    );
    assert_eq!(
        env.fail(&["account", "add", "alice@x.test"]),
        "account exists: alice@x.test"
    );
    assert_eq!(
        env.fail(&["account", "add", "b@x.test", "--quota", "12Q"]),
        "malformed size \"12Q\" (expected bytes or a number with K, M, G or T, or unlimited)"
    );
    assert!(
        env.fail(&["account", "add", "no-at-sign.x.test"])
            .starts_with("malformed address \"no-at-sign.x.test\"")
    );
    assert_eq!(
        env.fail(&["account", "add", "b@x.test", "--shard", "nope"]),
        "shard not found: nope"
    );
    env.ok(&["account", "add", "bob@x.test", "--quota", "1024K"]);
    env.ok(&["account", "add", "carol@x.test", "--quota", "unlimited"]);

    let list = env.json(&["account", "list", "x.test"]);
    assert_eq!(list.len(), 3);
    assert_eq!(
        keys(&list[0]),
        ["address", "enabled", "quota_bytes", "shard", "used_bytes"]
    );
    assert_eq!(
        list[0],
        serde_json::json!({"address": "alice@x.test", "shard": "default",
            "quota_bytes": 524288000, "used_bytes": 0, "enabled": true})
    );
    assert_eq!(list[1]["address"], "bob@x.test");
    assert_eq!(list[1]["quota_bytes"], 1048576);
    assert_eq!(list[2]["quota_bytes"], 0);
    assert_eq!(env.json(&["account", "list"]).len(), 3);
    assert_eq!(
        env.fail(&["account", "list", "other.test"]),
        "domain not found: other.test"
    );

    let table = env.ok(&["account", "list"]);
    assert_eq!(
        table,
        "ADDRESS       SHARD    QUOTA      USED  ENABLED\n\
         alice@x.test  default  500M       0     yes\n\
         bob@x.test    default  1M         0     yes\n\
         carol@x.test  default  unlimited  0     yes\n"
    );

    // Every account got its INBOX and special-use mailboxes with it.
    for a in ["alice@x.test", "bob@x.test", "carol@x.test"] {
        let status = env.json(&["mailbox", "status", a]);
        let names: Vec<&str> = status.iter().map(|m| m["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"],
            "{a}"
        );
    }
    let hash = env.with_store(async |s| s.get_account("alice@x.test").await.unwrap().unwrap());
    assert!(verify_password(&hash.password_hash, "s3cret pw"));

    assert_eq!(
        env.ok(&["account", "remove", "BOB@x.test"]),
        "account bob@x.test removed\n"
    );
    assert_eq!(
        env.fail(&["account", "remove", "bob@x.test"]),
        "account not found: bob@x.test"
    );
    assert_eq!(env.json(&["account", "list"]).len(), 2);
}

fn account_changes(env: &Env) {
    env.ok(&["domain", "add", "x.test"]);
    env.ok(&["account", "add", "a@x.test"]);
    let out = env.ok(&[
        "account",
        "set",
        "a@x.test",
        "--quota",
        "2G",
        "--enabled",
        "false",
    ]);
    assert_eq!(out, "account a@x.test updated (quota 2G, disabled)\n");
    let list = env.json(&["account", "list"]);
    assert_eq!(list[0]["quota_bytes"], 2147483648i64);
    assert_eq!(list[0]["enabled"], false);

    let r = env.run_stdin(
        &["account", "set", "a@x.test", "--password-stdin"],
        "new-pw\r\n",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let a = env.with_store(async |s| s.get_account("a@x.test").await.unwrap().unwrap());
    assert!(verify_password(&a.password_hash, "new-pw"));
    assert!(!a.enabled);
    assert_eq!(a.quota_bytes, 2 << 30);

    env.ok(&[
        "account",
        "set",
        "a@x.test",
        "--enabled",
        "true",
        "--quota",
        "0",
    ]);
    let list = env.json(&["account", "list"]);
    assert_eq!(list[0]["enabled"], true);
    assert_eq!(list[0]["quota_bytes"], 0);

    assert_eq!(
        env.fail(&["account", "set", "a@x.test"]),
        "nothing to change: give --password-stdin, --quota or --enabled"
    );
    assert_eq!(
        env.fail(&["account", "set", "zz@x.test", "--quota", "1G"]),
        "account not found: zz@x.test"
    );
    assert!(
        env.fail(&["account", "set", "a@x.test", "--quota", "1.5G"])
            .starts_with("malformed size \"1.5G\"")
    );
    let r = env.run_stdin(&["account", "set", "a@x.test", "--password-stdin"], "\n");
    assert_eq!(expect_one_error_line(&[], &r), "empty password on stdin");
}

fn generated_password_works(env: &Env) {
    env.ok(&["domain", "add", "x.test"]);
    let out = env.ok(&["account", "add", "gen@x.test"]);
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("account gen@x.test created on shard default (quota unlimited)")
    );
    let password = lines
        .next()
        .and_then(|l| l.strip_prefix("password: "))
        .unwrap_or_else(|| panic!("no generated password: {out}"));
    assert_eq!(password.len(), 20);
    let a = env.with_store(async |s| s.get_account("gen@x.test").await.unwrap().unwrap());
    assert!(verify_password(&a.password_hash, password));
    // The password is printed once: it is not in any listing.
    assert!(!env.ok(&["account", "list"]).contains(password));
}

#[test]
fn unreachable_store_is_named_without_its_password() {
    let r: cli_support::Run = std::process::Command::new(env!("CARGO_BIN_EXE_mailfleet"))
        .args([
            "domain",
            "list",
            "--store",
            "postgres://admin:topsecret@127.0.0.1:1/mail",
        ])
        .env_remove("MAILFLEET_STORE")
        .output()
        .unwrap()
        .into();
    let line = expect_one_error_line(&["domain", "list"], &r);
    assert!(
        line.starts_with("cannot reach the store at postgres://admin:***@127.0.0.1:1/mail: "),
        "{line}"
    );
    assert!(!r.stderr.contains("topsecret"));
}

#[test]
fn store_from_the_environment_or_none() {
    let dir = tempfile::tempdir().unwrap();
    let url = mailfleet_test_support::sqlite_url(dir.path());
    let run = |env: Option<&str>| -> cli_support::Run {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_mailfleet"));
        c.args(["domain", "add", "env.test"])
            .env_remove("MAILFLEET_STORE");
        if let Some(u) = env {
            c.env("MAILFLEET_STORE", u);
        }
        c.output().unwrap().into()
    };
    let r = run(None);
    assert_eq!(
        expect_one_error_line(&[], &r),
        "no store given: pass --store URL or set MAILFLEET_STORE"
    );
    let r = run(Some(&url));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "domain env.test added\n");
    let r = run(Some("mysql://x"));
    assert!(
        expect_one_error_line(&[], &r).starts_with("bad store URL mysql://x"),
        "{}",
        r.stderr
    );
}
