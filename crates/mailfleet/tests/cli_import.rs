//! `mailfleet import accounts FILE.csv` against SQLite and PostgreSQL: 100,000 accounts in one
//! run, bad lines reported by number and skipped, re-runs, and two imports racing.

mod cli_support;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use cli_support::Env;
use mailfleet_store::password::{hash_password, verify_password};

both_backends!(
    hundred_thousand_accounts,
    bad_lines_are_reported_and_skipped,
    rerun_skips_existing,
    racing_imports_create_each_account_once,
);

/// Accounts that exist without their INBOX (there must never be any), by SQL on the store.
fn accounts_without_inbox(env: &Env) -> i64 {
    const Q: &str = "SELECT COUNT(*) FROM accounts a WHERE NOT EXISTS \
                     (SELECT 1 FROM mailboxes m WHERE m.account_id = a.id AND m.name = 'INBOX')";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if env.url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&env.url).await.unwrap();
            let n: i64 = sqlx::query_scalar(Q).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        } else {
            let pool = sqlx::PgPool::connect(&env.url).await.unwrap();
            let n: i64 = sqlx::query_scalar(Q).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
    })
}

fn write_csv(env: &Env, name: &str, content: &str) -> PathBuf {
    let path = env.dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn account_count(env: &Env) -> usize {
    env.with_store(async |s| s.list_accounts(None).await.unwrap().len())
}

/// The numbers in `imported N accounts from M lines in ...`.
fn summary(stdout: &str) -> (u64, u64) {
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(words[0], "imported", "{stdout}");
    (words[1].parse().unwrap(), words[4].parse().unwrap())
}

fn hundred_thousand_accounts(env: &Env) {
    const N: usize = 100_000;
    env.ok(&["domain", "add", "big.test"]);
    env.ok(&["domain", "add", "other.test"]);
    env.ok(&["shard", "add", "s1"]);
    env.ok(&["shard", "add", "s2"]);
    env.ok(&["placement", "set", "least-used"]);
    // One precomputed hash for most rows keeps the test fast; a few rows carry plaintext.
    let hash = hash_password("shared-pw").unwrap();
    let mut csv = String::with_capacity(N * 140);
    csv.push_str("address,password,quota,shard\n");
    let mut bad_lines = Vec::new();
    let mut line = 1;
    for i in 0..N {
        line += 1;
        let domain = if i % 10 == 0 {
            "other.test"
        } else {
            "big.test"
        };
        if i % 5000 == 17 {
            writeln!(csv, "user{i}@{domain},plain-{i},1G").unwrap();
        } else if i == 77_777 {
            writeln!(csv, "user{i}@{domain},{hash},2G,s2").unwrap();
        } else {
            writeln!(csv, "user{i}@{domain},{hash},500M").unwrap();
        }
        if i % 20_000 == 3 {
            line += 1;
            bad_lines.push(line);
            writeln!(csv, "broken{i}@nowhere.test,pw,1G").unwrap();
        }
    }
    let path = write_csv(env, "big.csv", &csv);
    drop(csv);

    let started = Instant::now();
    let r = env.run(&["import", "accounts", path.to_str().unwrap()]);
    let took = started.elapsed();
    eprintln!("import of {N} accounts took {took:.2?}");
    let (imported, lines) = summary(&r.stdout);
    assert_eq!(imported, N as u64, "{}", r.stderr);
    assert_eq!(lines, (N + bad_lines.len()) as u64);
    let stderr: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(stderr.len(), bad_lines.len() + 1, "{}", r.stderr);
    for (report, line) in stderr.iter().zip(&bad_lines) {
        assert_eq!(
            *report,
            format!("line {line}: domain not found: nowhere.test")
        );
    }
    assert_eq!(
        stderr.last().unwrap(),
        &"mailfleet: 5 bad lines skipped (listed above as `line N: ...`)"
    );
    assert_eq!(r.code, 1);

    assert_eq!(account_count(env), N);
    assert_eq!(accounts_without_inbox(env), 0);
    // least-used spread the rest evenly around the one account named on s2.
    let shards = env.json(&["shard", "list"]);
    let counts: Vec<i64> = shards
        .iter()
        .map(|s| s["accounts"].as_i64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<i64>(), N as i64);
    assert!((counts[0] - counts[1]).abs() <= 1, "{counts:?}");
    let (plain, hashed, named) = env.with_store(async |s| {
        (
            s.get_account("user5017@big.test").await.unwrap().unwrap(),
            s.get_account("user42@big.test").await.unwrap().unwrap(),
            s.get_account("user77777@big.test").await.unwrap().unwrap(),
        )
    });
    assert!(verify_password(&plain.password_hash, "plain-5017"));
    assert_eq!(plain.quota_bytes, 1 << 30);
    assert_eq!(hashed.password_hash, hash);
    assert_eq!(hashed.quota_bytes, 500 << 20);
    assert_eq!(named.shard, "s2");
    assert_eq!(named.quota_bytes, 2 << 30);
    assert_eq!(env.json(&["account", "list", "other.test"]).len(), N / 10);
}

fn bad_lines_are_reported_and_skipped(env: &Env) {
    env.ok(&["domain", "add", "x.test"]);
    env.ok(&["shard", "add", "s1"]);
    env.ok(&["shard", "add", "s2"]);
    env.ok(&["account", "add", "old@x.test", "--shard", "s1"]);
    let hash = hash_password("hashed-pw").unwrap();
    let csv = format!(
        "address,password,quota,shard\n\
         good1@x.test,pw1,1G\n\
         bad address,pw,1G\n\
         u@nodomain.test,pw,1G\n\
         good2@x.test,\"p,w\"\"2\",500M,s2\n\
         good1@x.test,pw,0\n\
         old@x.test,pw,0\n\
         q@x.test,pw,12Q\n\
         s@x.test,pw,0,nope\n\
         f@x.test,pw\n\
         \n\
         h@x.test,$argon2id$bad,0\n\
         good3@x.test,{hash},\n\
         e@x.test,,0\n\
         GOOD4@X.TEST,pw4,unlimited\n\
         z@x.test,\"open,0\n\
         b2@x.test,$2y$10$abcdefghijklmnopqrstuv,0\n"
    );
    let path = write_csv(env, "bad.csv", &csv);
    let r = env.run(&["import", "accounts", path.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    let expected = [
        "line 3: malformed address \"bad address\": no @",
        "line 4: domain not found: nodomain.test",
        "line 6: good1@x.test already appears on line 2",
        "line 7: account exists: old@x.test",
        "line 8: malformed size \"12Q\" (expected bytes or a number with K, M, G or T, or unlimited)",
        "line 9: shard not found: nope",
        "line 10: expected address,password,quota[,shard], found 2 fields",
        "line 12: malformed argon2id hash",
        "line 14: empty password",
        "line 16: unterminated quoted field 2",
        "line 17: password looks like a $2y$ hash; only argon2id hashes can be imported",
        "mailfleet: 11 bad lines skipped (listed above as `line N: ...`)",
    ];
    assert_eq!(r.stderr.lines().collect::<Vec<_>>(), expected);
    assert!(
        r.stdout
            .starts_with("imported 4 accounts from 15 lines in "),
        "{}",
        r.stdout
    );
    assert!(r.stdout.trim_end().ends_with("; 11 bad lines skipped"));

    let list = env.json(&["account", "list"]);
    let addresses: Vec<&str> = list
        .iter()
        .map(|a| a["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        [
            "good1@x.test",
            "good2@x.test",
            "good3@x.test",
            "good4@x.test",
            "old@x.test"
        ]
    );
    assert_eq!(list[1]["shard"], "s2");
    assert_eq!(list[2]["quota_bytes"], 0);
    assert_eq!(list[3]["quota_bytes"], 0);
    assert_eq!(accounts_without_inbox(env), 0);
    let (g1, g2, g3, old) = env.with_store(async |s| {
        let get = async |a: &str| s.get_account(a).await.unwrap().unwrap();
        (
            get("good1@x.test").await,
            get("good2@x.test").await,
            get("good3@x.test").await,
            get("old@x.test").await,
        )
    });
    assert!(verify_password(&g1.password_hash, "pw1"));
    assert!(verify_password(&g2.password_hash, "p,w\"2"));
    assert!(verify_password(&g3.password_hash, "hashed-pw"));
    // The existing account kept its own password.
    assert!(!verify_password(&old.password_hash, "pw"));

    // A file that cannot be opened is one error, before anything happens.
    let missing = env.dir.path().join("missing.csv");
    let line = env.fail(&["import", "accounts", missing.to_str().unwrap()]);
    assert!(line.starts_with("cannot open "), "{line}");
}

fn rerun_skips_existing(env: &Env) {
    env.ok(&["domain", "add", "x.test"]);
    let mut csv = String::new();
    for i in 0..50 {
        writeln!(csv, "u{i}@x.test,pw{i},10M").unwrap();
    }
    let path = write_csv(env, "a.csv", &csv);
    let out = env.ok(&[
        "import",
        "accounts",
        path.to_str().unwrap(),
        "--batch-size",
        "7",
    ]);
    assert_eq!(summary(&out), (50, 50));
    // Without --skip-existing every line is now an existing account.
    let r = env.run(&["import", "accounts", path.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.lines().count(), 51);
    assert!(r.stderr.starts_with("line 1: account exists: u0@x.test\n"));
    // With it, they are counted as present.
    writeln!(csv, "new@x.test,pw,0").unwrap();
    let path = write_csv(env, "b.csv", &csv);
    let out = env.ok(&[
        "import",
        "accounts",
        path.to_str().unwrap(),
        "--skip-existing",
    ]);
    assert_eq!(summary(&out), (1, 51));
    assert!(out.trim_end().ends_with("; 50 already existed"), "{out}");
    assert_eq!(account_count(env), 51);
}

fn racing_imports_create_each_account_once(env: &Env) {
    const N: u64 = 3000;
    env.ok(&["domain", "add", "x.test"]);
    let hash = hash_password("pw").unwrap();
    let mut csv = String::new();
    for i in 0..N {
        writeln!(csv, "u{i}@x.test,{hash},0").unwrap();
    }
    let path = write_csv(env, "race.csv", &csv);
    let args = [
        "import",
        "accounts",
        path.to_str().unwrap(),
        "--batch-size",
        "50",
    ];
    let spawn = || {
        env.command(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let runs: Vec<cli_support::Run> = [a, b]
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().into())
        .collect();
    let mut imported = 0;
    let mut reported = 0;
    for r in &runs {
        let (n, lines) = summary(&r.stdout);
        assert_eq!(lines, N);
        imported += n;
        for l in r.stderr.lines().filter(|l| l.starts_with("line ")) {
            assert!(l.contains(": account exists: u"), "{l}");
            reported += 1;
        }
    }
    // Every line was created by exactly one of the two runs and reported by the other.
    assert_eq!(imported, N);
    assert_eq!(reported, N);
    assert_eq!(account_count(env) as u64, N);
    assert_eq!(accounts_without_inbox(env), 0);
}
